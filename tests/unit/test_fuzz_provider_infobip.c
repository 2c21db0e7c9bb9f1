/* SPDX-License-Identifier: MIT */
/*
 * Replays fuzz/corpus/provider_infobip/ and fuzz/regressions/provider_infobip/
 * through fuzz/fuzz_provider_infobip.c's entry point (see fuzz_replay.h).
 */
#include "../../fuzz/fuzz_provider_infobip.c"
#include "fuzz_replay.h"
FR_MAIN("provider_infobip", LLVMFuzzerTestOneInput)
