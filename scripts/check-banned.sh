#!/bin/sh
# SPDX-License-Identifier: MIT
# Rejects the C string functions that have no bound (see ../shared/STYLE.md),
# as curl's checksrc does.
set -eu
cd "$(dirname "$0")/.."
hits=$(grep -rnE '\b(strcpy|strcat|sprintf|vsprintf|strtok|atoi|atol|atoll|sscanf|gets)\s*\(' \
	src tests fuzz bench --include='*.c' --include='*.h' | grep -vE ':\s*(//|\*|/\*)' || true)
if [ -n "$hits" ]; then
	echo "banned functions (use util_fmt, util_strlcpy, util_parse_u64, ...):" >&2
	echo "$hits" >&2
	exit 1
fi
echo "check-banned: ok"
