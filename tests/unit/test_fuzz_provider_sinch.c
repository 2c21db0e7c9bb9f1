/* SPDX-License-Identifier: MIT */
/*
 * Replays fuzz/corpus/provider_sinch/ and fuzz/regressions/provider_sinch/
 * through fuzz/fuzz_provider_sinch.c's entry point (see fuzz_replay.h).
 */
#include "../../fuzz/fuzz_provider_sinch.c"
#include "fuzz_replay.h"
FR_MAIN("provider_sinch", LLVMFuzzerTestOneInput)
