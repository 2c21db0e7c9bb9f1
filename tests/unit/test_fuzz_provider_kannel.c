/* SPDX-License-Identifier: MIT */
/*
 * Replays fuzz/corpus/provider_kannel/ and fuzz/regressions/provider_kannel/
 * through fuzz/fuzz_provider_kannel.c's entry point (see fuzz_replay.h).
 */
#include "../../fuzz/fuzz_provider_kannel.c"
#include "fuzz_replay.h"
FR_MAIN("provider_kannel", LLVMFuzzerTestOneInput)
