/* SPDX-License-Identifier: MIT */
/*
 * Replays fuzz/corpus/provider_vonage/ and fuzz/regressions/provider_vonage/
 * through fuzz/fuzz_provider_vonage.c's entry point (see fuzz_replay.h).
 */
#include "../../fuzz/fuzz_provider_vonage.c"
#include "fuzz_replay.h"
FR_MAIN("provider_vonage", LLVMFuzzerTestOneInput)
