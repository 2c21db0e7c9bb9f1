/* SPDX-License-Identifier: MIT */
/*
 * Replays fuzz/corpus/provider_generic/ and fuzz/regressions/provider_generic/
 * through fuzz/fuzz_provider_generic.c's entry point (see fuzz_replay.h).
 */
#include "../../fuzz/fuzz_provider_generic.c"
#include "fuzz_replay.h"
FR_MAIN("provider_generic", LLVMFuzzerTestOneInput)
