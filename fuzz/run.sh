#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# Runs every libFuzzer target built in BUILD/fuzz/ for SECONDS each, one after
# the other, and fails when any of them finds a crash, a leak, a timeout, an
# out-of-memory or a broken property.
#
#   fuzz/run.sh BUILD [SECONDS [TARGET...]]
#
# (make fuzz runs every target 300 s; CI: make fuzz FUZZ_SECONDS=20.)  TARGET
# names limit the run to those targets (fuzz_twilio or twilio).
#
# For a target fuzz_<name>:
#   fuzz/corpus/<name>/       committed seeds; copied to a scratch folder first,
#                             so the inputs a run finds never dirty the tree
#   fuzz/<name>.dict          its dictionary, when present
#   fuzz/<name>.options       extra libFuzzer flags, one per line (-max_len=...)
#   fuzz/regressions/<name>/  inputs that once crashed: replayed before
#                             fuzzing (and by tests/unit/test_fuzz_regressions.c
#                             in the ordinary suite), then used as seeds
# A failing input is kept in BUILD/fuzz-artifacts/<name>/ and its path
# printed.  Reproduce with `BUILD/fuzz/fuzz_<name> FILE`; once fixed, commit
# the file to fuzz/regressions/<name>/ so it stays fixed.  Each target's log
# is kept in BUILD/fuzz-logs/<name>.log.
set -euo pipefail

if [ $# -lt 1 ]; then
	echo "usage: $0 BUILD_DIR [SECONDS_PER_TARGET [TARGET...]]" >&2
	exit 2
fi
build=$(cd "$1" && pwd)
secs=${2:-60}
shift $(($# < 2 ? $# : 2))
here=$(cd "$(dirname "$0")" && pwd)
bins=$(find "$build/fuzz" -maxdepth 1 -type f -name 'fuzz_*' -perm -u+x 2>/dev/null | sort)
if [ $# -gt 0 ]; then
	only=""
	for t in "$@"; do
		only="$only $build/fuzz/fuzz_${t#fuzz_}"
	done
	bins=$(for b in $bins; do case " $only " in *" $b "*) echo "$b" ;; esac; done)
fi
if [ -z "$bins" ]; then
	echo "run.sh: no fuzz targets in $build/fuzz (configure with CC=clang -DDLRD_FUZZ=ON)" >&2
	exit 2
fi

scratch=$(mktemp -d "${TMPDIR:-/tmp}/dlrd-fuzz.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
mkdir -p "$build/fuzz-logs" "$build/fuzz-artifacts"
failed=()
summary=()

for bin in $bins; do
	target=$(basename "$bin")
	name=${target#fuzz_}
	work=$scratch/$name
	log=$build/fuzz-logs/$name.log
	mkdir -p "$work/corpus" "$work/artifacts"
	if [ -d "$here/corpus/$name" ]; then
		cp -R "$here/corpus/$name/." "$work/corpus/"
	fi
	opts=(-timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=1024 -max_len=8192
	      -use_value_profile=1 -print_final_stats=1 -artifact_prefix="$work/artifacts/")
	if [ -f "$here/$name.dict" ]; then
		opts+=(-dict="$here/$name.dict")
	fi
	if [ -f "$here/$name.options" ]; then
		while IFS= read -r line; do
			case "$line" in '' | '#'*) continue ;; esac
			opts+=("$line")
		done <"$here/$name.options"
	fi
	reg=()
	if [ -d "$here/regressions/$name" ] && [ -n "$(ls -A "$here/regressions/$name")" ]; then
		reg=("$here/regressions/$name")
	fi

	echo "==== $target: ${secs}s" >&2
	rc=0
	# ASan's leak check stays on (libFuzzer reports leaks per input).
	if [ ${#reg[@]} -gt 0 ]; then
		ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1} \
			"$bin" "${opts[@]}" -runs=0 "${reg[@]}" >"$log" 2>&1 || rc=$?
	fi
	if [ $rc -eq 0 ]; then
		ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1} \
			"$bin" "${opts[@]}" -max_total_time="$secs" "$work/corpus" "${reg[@]}" \
			>>"$log" 2>&1 || rc=$?
	fi
	runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
	eps=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
	cov=$(grep -Eo 'cov: [0-9]+' "$log" | tail -n 1 | cut -d' ' -f2 || true)
	ncorp=$(find "$work/corpus" -type f | wc -l)
	summary+=("$(printf '%-30s %10s runs %8s exec/s  cov %6s  corpus %5s  %s' "$target" \
		"${runs:-?}" "${eps:-?}" "${cov:-?}" "$ncorp" "$([ $rc -eq 0 ] && echo ok || echo FAILED)")")
	if [ $rc -ne 0 ]; then
		failed+=("$target")
		mkdir -p "$build/fuzz-artifacts/$name"
		echo "---- $target failed (exit $rc); the end of $log:" >&2
		tail -n 60 "$log" >&2
		found=0
		for f in "$work/artifacts"/*; do
			[ -e "$f" ] || continue
			cp "$f" "$build/fuzz-artifacts/$name/"
			echo "reproducer: $build/fuzz-artifacts/$name/$(basename "$f")" >&2
			echo "  replay:   $bin $build/fuzz-artifacts/$name/$(basename "$f")" >&2
			found=1
		done
		if [ $found -eq 0 ]; then
			echo "no reproducer written (a failing regression input?): see $log" >&2
		fi
	fi
done

echo >&2
echo "==== fuzz summary (${secs}s per target)" >&2
printf '%s\n' "${summary[@]}" >&2
if [ ${#failed[@]} -gt 0 ]; then
	echo "FAILED: ${failed[*]}" >&2
	echo "Fix the bug, then commit each reproducer to fuzz/regressions/<name>/." >&2
	exit 1
fi
