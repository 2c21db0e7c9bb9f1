/* SPDX-License-Identifier: MIT */
/*
 * Replays fuzz/corpus/tz/ and fuzz/regressions/tz/ through
 * fuzz/fuzz_tz.c's entry point (see fuzz_replay.h); a target of its own,
 * since it includes src/tz.c.
 */
#include "../../fuzz/fuzz_tz.c"
#include "fuzz_replay.h"
FR_MAIN("tz", LLVMFuzzerTestOneInput)
