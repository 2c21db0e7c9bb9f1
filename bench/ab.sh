#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# A/B comparison of two dlrd builds under the `make bench` load: the runs
# alternate (A, B, A, B, ...) so that a machine whose speed drifts affects
# both alike.  Each run starts dlrd on a fresh SQLite database
# (synchronous=FULL), replays pre-signed Twilio callbacks with wrk like
# bench/run.sh, and prints the durable rate, latency, dlrd's CPU time per
# callback (/proc/PID/stat), bytes written per callback (/proc/PID/io) and the
# share of CPU time the hypervisor stole during the run (/proc/stat).
# No nginx run and no verification: bench/run.sh does those.
#
# Usage: bench/ab.sh BUILD_A BUILD_B [ROUNDS] [SECONDS]
# Environment (all optional):
#   AB_MESSAGES=100000    messages in each run's data set (~5.4 requests each)
#   AB_ENV_A, AB_ENV_B    extra environment for dlrd, "K=V K2=V2"
#   BENCH_CONNECTIONS=128, BENCH_THREADS=2 as for bench/run.sh
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
a=$(cd "${1:?usage: bench/ab.sh BUILD_A BUILD_B [ROUNDS] [SECONDS]}" && pwd)
b=$(cd "${2:?usage: bench/ab.sh BUILD_A BUILD_B [ROUNDS] [SECONDS]}" && pwd)
rounds=${3:-3}
secs=${4:-10}
conns=${BENCH_CONNECTIONS:-128}
threads=${BENCH_THREADS:-2}
messages=${AB_MESSAGES:-100000}
token=bench-auth-token-0123456789abcdef
url=https://bench.example.com
hz=$(getconf CLK_TCK)

die() { echo "ab: $*" >&2; exit 2; }
# shellcheck source=bench/lib.sh
. "$here/lib.sh"

for x in "$a/dlrd" "$b/dlrd" "$a/bench/gen_callbacks"; do
	[ -x "$x" ] || die "$x not built"
done
command -v wrk >/dev/null || die "wrk not installed (scripts/deps.sh bench)"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/dlrd-ab.XXXXXX")
pid=
trap '[ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null; rm -rf "$tmp"' EXIT
"$a/bench/gen_callbacks" gen --out "$tmp/reqs" --slices "$threads" --messages "$messages" \
	--seed 42 --token "$token" --url "$url" >/dev/null

field() { awk -F= -v k="$1" '$1 == k { print $2 }' "$2"; }

# one_run NAME BUILD EXTRA_ENV
one_run() {
	local port db="$tmp/run"
	port=$(free_port)
	rm -rf "$db" && mkdir "$db"
	# shellcheck disable=SC2086 # word splitting of the extra environment is wanted
	env DLRD_SERVER_LISTEN="127.0.0.1:$port" DLRD_SERVER_PUBLIC_URL="$url" \
		DLRD_SERVER_LOG_LEVEL=warn DLRD_STORAGE_URL="sqlite:$db/dlrd.db" \
		DLRD_STORAGE_SYNCHRONOUS=full DLRD_TWILIO_AUTH_TOKENS="$token" \
		DLRD_PRIVACY_HASH_KEY=bench0hash0key0not0a0secret0000000000000000 \
		$3 "$2/dlrd" serve >"$db/dlrd.log" 2>&1 &
	pid=$!
	if ! wait_http "http://127.0.0.1:$port/healthz" 10 || ! owns_port "$pid" "$port"; then
		tail -c 2000 "$db/dlrd.log" >&2
		die "$1: dlrd did not start on port $port"
	fi
	local cpu0 cpu1 w0 w1
	cpu0=$(awk '{ print $14 + $15 }' "/proc/$pid/stat")
	w0=$(awk '$1 == "write_bytes:" { print $2 }' "/proc/$pid/io")
	st0=$(head -1 /proc/stat)
	BENCH_REQS=$tmp/reqs BENCH_STATS=$db/stats wrk -t"$threads" -c"$conns" -d"$secs"s \
		--timeout 5s --latency -s "$here/callbacks.lua" "http://127.0.0.1:$port" >"$db/wrk.out"
	cpu1=$(awk '{ print $14 + $15 }' "/proc/$pid/stat")
	st1=$(head -1 /proc/stat)
	w1=$(awk '$1 == "write_bytes:" { print $2 }' "/proc/$pid/io")
	kill -TERM "$pid" && wait "$pid" || true
	pid=
	awk -v n="$1" -v ok="$(field ok "$db/stats")" -v rate="$(field ok_per_s "$db/stats")" \
		-v p50="$(field lat_p50_us "$db/stats")" -v p99="$(field lat_p99_us "$db/stats")" \
		-v bad="$(field non2xx "$db/stats")" -v cpu=$((cpu1 - cpu0)) -v hz="$hz" \
		-v wb=$((w1 - w0)) -v d="$(wrk_secs "$db/wrk.out")" -v steal="$(steal_pct "$st0" "$st1")" 'BEGIN {
		printf "%-2s %8.0f req/s  p50 %5.2f ms  p99 %5.2f ms  non-2xx %d  cpu %4.0f%%  %5.1f us/req  %5.0f B/req written  steal %2.0f%%\n",
		       n, rate, p50 / 1000, p99 / 1000, bad, 100 * cpu / hz / d, 1e6 * cpu / hz / ok, wb / ok, steal }'
}

# How long wrk really sent requests ("N requests in 8.01s"), which can differ
# from the -d it was given; dlrd's CPU share is taken over that time.
wrk_secs() {
	awk -v d="$secs" '/ requests in / {
		for (i = 1; i < NF; i++)
			if ($i == "in") {
				t = $(i + 1); sub(/,$/, "", t)
				d = t ~ /ms$/ ? t / 1000 : t ~ /m$/ ? t * 60 : t + 0
			}
	} END { print d }' "$1"
}

echo "ab: A=$a B=$b, $rounds rounds of ${secs}s, wrk -t$threads -c$conns, $messages messages"
for ((r = 0; r < rounds; r++)); do
	one_run A "$a" "${AB_ENV_A:-}"
	one_run B "$b" "${AB_ENV_B:-}"
done
