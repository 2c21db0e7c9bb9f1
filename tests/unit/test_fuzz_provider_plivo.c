/* SPDX-License-Identifier: MIT */
/*
 * Replays fuzz/corpus/provider_plivo/ and fuzz/regressions/provider_plivo/
 * through fuzz/fuzz_provider_plivo.c's entry point (see fuzz_replay.h).
 */
#include "../../fuzz/fuzz_provider_plivo.c"
#include "fuzz_replay.h"
FR_MAIN("provider_plivo", LLVMFuzzerTestOneInput)
