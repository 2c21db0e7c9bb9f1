#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# `make soak`: holds dlrd (SQLite, synchronous=FULL) at about half of its
# maximum rate for ten minutes with duplicates, out-of-order events and ~2%
# bad requests (forged signatures -> 401, undecodable bodies -> 400), and
# watches its memory.  Not part of CI.  See bench/README.md.
#
# Usage: bench/soak.sh BUILD_DIR
# Environment (all optional):
#   SOAK_SECONDS=600    length of the held phase
#   BENCH_RATE=         requests/s to hold (default: SOAK_PERCENT of the rate
#                       measured in a 10 s all-out phase first)
#   SOAK_PERCENT=50
#   SOAK_CONNECTIONS=64 connections of the held phase (128 for the max phase)
#   SOAK_BAD=0.02       fraction of bad requests
#   SOAK_RSS_GROWTH=20  max % of RSS growth from the 1-minute mark to the end
#   SOAK_REPORT=10      seconds between progress lines
#   BENCH_KEEP=1        keep the temporary folder
# Exit status: 0 when the rate was held (95%), every answer was the expected
# one, the database checks pass and RSS stayed within bounds; 1 otherwise;
# 2 on a setup problem.
set -euo pipefail

build=${1:?usage: bench/soak.sh BUILD_DIR}
here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "$build" && pwd)
dlrd=$build/dlrd
gen=$build/bench/gen_callbacks
loadgen=$build/bench/loadgen
seconds=${SOAK_SECONDS:-600}
percent=${SOAK_PERCENT:-50}
conns=${SOAK_CONNECTIONS:-64}
bad=${SOAK_BAD:-0.02}
growth_max=${SOAK_RSS_GROWTH:-20}
report=${SOAK_REPORT:-10}
token=bench-auth-token-0123456789abcdef
public_url=https://bench.example.com

die() { echo "soak: $*" >&2; exit 2; }
# shellcheck source=bench/lib.sh
. "$here/lib.sh"
for x in "$dlrd" "$gen" "$loadgen"; do [ -x "$x" ] || die "$x not built (cmake --build $build)"; done
for x in curl ss awk; do command -v "$x" >/dev/null || die "$x not installed"; done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/dlrd-soak.XXXXXX")
dlrd_pid=

cleanup() {
	if [ -n "$dlrd_pid" ]; then
		kill -TERM "$dlrd_pid" 2>/dev/null || true
		for ((i = 0; i < 100; i++)); do kill -0 "$dlrd_pid" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$dlrd_pid" 2>/dev/null || true
		wait "$dlrd_pid" 2>/dev/null || true
	fi
	if [ "${BENCH_KEEP:-}" = 1 ]; then echo "soak: kept $tmp" >&2; else rm -rf "$tmp"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

stat() { awk -F= -v k="$2" '$1 == k { print substr($0, length(k) + 2) }' "$1"; }

port=$(free_port)
env DLRD_SERVER_LISTEN="127.0.0.1:$port" DLRD_SERVER_PUBLIC_URL="$public_url" \
	DLRD_SERVER_LOG_LEVEL=warn DLRD_STORAGE_URL="sqlite:$tmp/dlrd.db" \
	DLRD_STORAGE_SYNCHRONOUS=full DLRD_TWILIO_AUTH_TOKENS="$token" \
	DLRD_PRIVACY_HASH_KEY=bench0hash0key0not0a0secret0000000000000000 \
	"$dlrd" serve >"$tmp/dlrd.log" 2>&1 &
dlrd_pid=$!
wait_http "http://127.0.0.1:$port/healthz" 10 || true
owns_port "$dlrd_pid" "$port" || { cat "$tmp/dlrd.log" >&2; die "dlrd did not start on port $port"; }

common=(--port "$port" --token "$token" --url "$public_url" --pid "$dlrd_pid")
if [ -n "${BENCH_RATE:-}" ]; then
	rate=$BENCH_RATE
	: >"$tmp/max.out"
else
	echo "soak: measuring the maximum rate (10 s, 128 connections, no bad requests) ..."
	timeout 60 "$loadgen" "${common[@]}" --conns 128 --rate 0 --duration 10 --seed 101 \
		--report 5 >"$tmp/max.out" || die "loadgen failed (max phase)"
	max=$(stat "$tmp/max.out" ok_rate)
	rate=$(awk -v m="$max" -v p="$percent" 'BEGIN { printf "%d", m * p / 100 }')
	echo "soak: max ${max%.*} req/s (p99 $(stat "$tmp/max.out" p99_ms) ms); holding $rate req/s"
fi
[ "$rate" -gt 0 ] || die "rate is 0"

echo "soak: ${seconds}s at $rate req/s, $conns connections, bad=$bad, dlrd pid $dlrd_pid"
timeout $((seconds + 120)) "$loadgen" "${common[@]}" --conns "$conns" --rate "$rate" \
	--duration "$seconds" --seed 202 --bad "$bad" --report "$report" \
	>"$tmp/soak.out" || die "loadgen failed (soak phase)"
grep '^[#0-9]' "$tmp/soak.out" | column -t 2>/dev/null || grep '^[#0-9]' "$tmp/soak.out"

kill -TERM "$dlrd_pid"
dlrd_rc=0
wait "$dlrd_pid" || dlrd_rc=$?
dlrd_pid=

# Exact expectations from both loadgen runs (the max phase stored events too).
sum() { local k=$1 t=0 f v; for f in "$tmp/max.out" "$tmp/soak.out"; do v=$(stat "$f" "$k"); t=$((t + ${v:-0})); done; echo $t; }
events=$(sum sent_first_ok)
events_min=$((events - $(sum first_ok_failed)))
acked=$(sum ok)
max_log=$((acked + $(sum conn_errors) + $(sum unanswered)))
msgs_args=()
[ "$(sum first_ok_failed)" -eq 0 ] && msgs_args=(--messages "$(sum sent_new_msg)")
verify_rc=0
"$gen" verify --db "$tmp/dlrd.db" --events "$events" --events-min "$events_min" \
	--acked "$acked" --max-log "$max_log" "${msgs_args[@]}" >"$tmp/verify.txt" 2>&1 || verify_rc=$?

s=$tmp/soak.out
# RSS is compared from the one-minute mark (caches fill during the first
# minute); a run shorter than that has no baseline and is not judged on it.
rss1=$(stat "$s" rss_1min_kb)
rss_end=$(stat "$s" rss_end_kb)
growth=n/a
growth_txt="n/a (shorter than a minute)"
if [ "${rss1:--1}" -gt 0 ]; then
	growth=$(awk -v a="$rss1" -v b="$rss_end" 'BEGIN { printf "%.1f", 100 * (b - a) / a }')
	growth_txt="$growth%"
fi
held=$(awk -v a="$(stat "$s" answered)" -v r="$rate" -v d="$seconds" 'BEGIN { printf "%.0f", 100 * a / (r * d) }')
fail=0
echo
echo "== dlrd soak: $(nproc) CPUs shared with the load generator; ${seconds}s at $rate req/s"
echo "  answered $(stat "$s" answered) of $(stat "$s" sent) (rate $(stat "$s" rate)/s): 2xx $(stat "$s" ok)," \
	"400 $(stat "$s" s400), 401 $(stat "$s" s401), 503 $(stat "$s" s503), other $(stat "$s" other)"
echo "  rate held: ${held}% of $rate req/s (answered / (rate * seconds); at least 95% wanted)"
echo "  unexpected answers $(stat "$s" mismatch), connection errors $(stat "$s" conn_errors)," \
	"unanswered at the end $(stat "$s" unanswered), sent late $(stat "$s" late)," \
	"generator stalls $(stat "$s" generator_stall_ms) ms, failed connects $(stat "$s" connect_errors)"
echo "  latency from due time: p50 $(stat "$s" p50_ms) ms, p99 $(stat "$s" p99_ms) ms," \
	"p99.9 $(stat "$s" p999_ms) ms, max $(stat "$s" max_ms) ms"
echo "  dlrd RSS: start $(stat "$s" rss_start_kb) kB, 1 min $(stat "$s" rss_1min_kb) kB," \
	"end $rss_end kB, max $(stat "$s" rss_max_kb) kB; growth after 1 min $growth_txt (limit ${growth_max}%)"
sed 's/^/  /' "$tmp/verify.txt"
if [ "$growth" != n/a ] && awk -v g="$growth" -v m="$growth_max" 'BEGIN { exit !(g > m) }'; then
	echo "  RSS grew more than ${growth_max}%: FAIL"
	fail=1
fi
if [ "$(stat "$s" mismatch)" != 0 ] || [ "$(stat "$s" conn_errors)" != 0 ] ||
	[ "$(stat "$s" unanswered)" != 0 ]; then
	echo "  rate held: ${held}% of $rate req/s (answered / (rate * seconds); at least 95% wanted)"
echo "  unexpected answers or lost requests: FAIL"
	fail=1
fi
if [ "$held" -lt 95 ]; then
	echo "  dlrd could not keep up with ${percent}% of its initial maximum rate: FAIL"
	fail=1
fi
[ "$dlrd_rc" -eq 0 ] || { echo "  dlrd exited with $dlrd_rc: FAIL"; fail=1; }
[ "$verify_rc" -eq 0 ] || fail=1
if [ "$fail" -eq 0 ]; then
	echo "== soak: PASS"
else
	echo "== soak: FAIL"
	BENCH_KEEP=1
	exit 1
fi
