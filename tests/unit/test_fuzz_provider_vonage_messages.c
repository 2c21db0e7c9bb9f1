/* SPDX-License-Identifier: MIT */
/*
 * Replays fuzz/corpus/provider_vonage_messages/ and fuzz/regressions/provider_vonage_messages/
 * through fuzz/fuzz_provider_vonage_messages.c's entry point (see fuzz_replay.h).
 */
#include "../../fuzz/fuzz_provider_vonage_messages.c"
#include "fuzz_replay.h"
FR_MAIN("provider_vonage_messages", LLVMFuzzerTestOneInput)
