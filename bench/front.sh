#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# What the HTTP front alone costs per request: bench/front.c in its two modes
# (libmicrohttpd with suspend/resume, as dlrd runs it; one epoll loop per
# thread with connections parked in place), alternating, each under the
# `make bench` load (the same signed Twilio requests, wrk -t2 -c128) with a
# simulated 1 ms group commit and no storage.  Prints the rate, p99 and the
# front's CPU time per request (/proc/PID/stat).  See bench/README.md.
#
# Usage: bench/front.sh BUILD_DIR [ROUNDS] [SECONDS]
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "${1:?usage: bench/front.sh BUILD_DIR [ROUNDS] [SECONDS]}" && pwd)
rounds=${2:-3}
secs=${3:-8}
hz=$(getconf CLK_TCK)

die() { echo "front: $*" >&2; exit 2; }
# shellcheck source=bench/lib.sh
. "$here/lib.sh"

for x in "$build/bench/front" "$build/bench/gen_callbacks"; do
	[ -x "$x" ] || die "$x not built"
done
command -v wrk >/dev/null || die "wrk not installed (scripts/deps.sh bench)"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/dlrd-front.XXXXXX")
pid=
trap '[ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null; rm -rf "$tmp"' EXIT
"$build/bench/gen_callbacks" gen --out "$tmp/reqs" --slices 2 --messages 100000 --seed 42 \
	--token bench-auth-token-0123456789abcdef --url https://bench.example.com >/dev/null

field() { awk -F= -v k="$1" '$1 == k { print $2 }' "$2"; }

one_run() { # MODE
	local port i cpu0 cpu1
	port=$(free_port)
	"$build/bench/front" "$1" "$port" 2 &
	pid=$!
	for i in $(seq 50); do
		curl -fs -o /dev/null -X POST -d x "http://127.0.0.1:$port/" && break
		sleep 0.1
	done
	owns_port "$pid" "$port" || die "$1: bench/front did not start on port $port"
	cpu0=$(awk '{ print $14 + $15 }' "/proc/$pid/stat")
	BENCH_REQS=$tmp/reqs BENCH_STATS=$tmp/stats wrk -t2 -c128 -d"$secs"s --timeout 5s \
		--latency -s "$here/callbacks.lua" "http://127.0.0.1:$port" >"$tmp/wrk.out"
	cpu1=$(awk '{ print $14 + $15 }' "/proc/$pid/stat")
	kill -TERM "$pid" && wait "$pid" 2>/dev/null || true
	pid=
	awk -v m="$1" -v ok="$(field ok "$tmp/stats")" -v rate="$(field ok_per_s "$tmp/stats")" \
		-v p99="$(field lat_p99_us "$tmp/stats")" -v cpu=$((cpu1 - cpu0)) -v hz="$hz" 'BEGIN {
		printf "%-6s %8.0f req/s  p99 %5.2f ms  front CPU %5.1f us/req\n",
		       m, rate, p99 / 1000, 1e6 * cpu / hz / ok }'
}

echo "front: $rounds rounds of ${secs}s, wrk -t2 -c128, 2 front threads, 1 ms simulated commit"
for ((r = 0; r < rounds; r++)); do
	one_run mhd
	one_run epoll
done
