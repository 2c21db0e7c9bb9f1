/* SPDX-License-Identifier: MIT */
/*
 * Replays fuzz/corpus/provider_sns/ and fuzz/regressions/provider_sns/
 * through fuzz/fuzz_provider_sns.c's entry point (see fuzz_replay.h).
 */
#include "../../fuzz/fuzz_provider_sns.c"
#include "fuzz_replay.h"
FR_MAIN("provider_sns", LLVMFuzzerTestOneInput)
