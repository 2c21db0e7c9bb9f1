/* SPDX-License-Identifier: MIT */
/*
 * Replays fuzz/corpus/provider_telnyx/ and fuzz/regressions/provider_telnyx/
 * through fuzz/fuzz_provider_telnyx.c's entry point (see fuzz_replay.h).
 */
#include "../../fuzz/fuzz_provider_telnyx.c"
#include "fuzz_replay.h"
FR_MAIN("provider_telnyx", LLVMFuzzerTestOneInput)
