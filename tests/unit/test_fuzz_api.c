/* SPDX-License-Identifier: MIT */
/*
 * Replays fuzz/corpus/api/ and fuzz/regressions/api/ through
 * fuzz/fuzz_api.c's entry point (see fuzz_replay.h); a target of its own,
 * since it includes src/api.c.
 */
#include "../../fuzz/fuzz_api.c"
#include "fuzz_replay.h"
FR_MAIN("api", LLVMFuzzerTestOneInput)
