/* SPDX-License-Identifier: MIT */
/*
 * Replays fuzz/corpus/provider_messagebird/ and fuzz/regressions/provider_messagebird/
 * through fuzz/fuzz_provider_messagebird.c's entry point (see fuzz_replay.h).
 */
#include "../../fuzz/fuzz_provider_messagebird.c"
#include "fuzz_replay.h"
FR_MAIN("provider_messagebird", LLVMFuzzerTestOneInput)
