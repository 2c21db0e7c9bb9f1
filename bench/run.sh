#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# `make bench`: dlrd (SQLite, synchronous=FULL) under wrk with pre-signed
# Twilio callbacks, then nginx `return 200;` under the same wrk settings, then
# a check that the database holds exactly the distinct events that were sent.
# See bench/README.md.
#
# Usage: bench/run.sh BUILD_DIR
# Environment (all optional):
#   BENCH_DURATION=10     seconds of each measured wrk run
#   BENCH_CONNECTIONS=128 wrk connections
#   BENCH_THREADS=2       wrk threads
#   BENCH_WARMUP=3        seconds of warm-up against dlrd (also sizes the data set)
#   BENCH_MESSAGES=       messages in the measured data set (default: sized so
#                         one pass over it lasts about the whole run)
#   BENCH_PERF=FILE       record `perf` on dlrd for 5 s of the run, report to FILE
#   BENCH_KEEP=1          keep the temporary folder (database, logs, stats)
# Exit status: 0 when verification passes (missed performance targets are
# reported, not fatal), 1 when it fails, 2 on a setup problem.
set -euo pipefail

build=${1:?usage: bench/run.sh BUILD_DIR}
here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "$build" && pwd)
dlrd=$build/dlrd
gen=$build/bench/gen_callbacks
duration=${BENCH_DURATION:-10}
conns=${BENCH_CONNECTIONS:-128}
threads=${BENCH_THREADS:-2}
warmup=${BENCH_WARMUP:-3}
token=bench-auth-token-0123456789abcdef
public_url=https://bench.example.com
wrk_timeout=5s

die() { echo "bench: $*" >&2; exit 2; }
# shellcheck source=bench/lib.sh
. "$here/lib.sh"
for x in "$dlrd" "$gen"; do [ -x "$x" ] || die "$x not built (cmake --build $build)"; done
for x in wrk nginx curl ss awk; do
	command -v "$x" >/dev/null || die "$x not installed (scripts/deps.sh bench)"
done
if [ "$threads" -lt 1 ] || [ "$conns" -lt "$threads" ]; then
	die "need BENCH_CONNECTIONS >= BENCH_THREADS >= 1"
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/dlrd-bench.XXXXXX")
dlrd_pid=
nginx_pid=
perf_pid=

stop_pid() { # pid, seconds: TERM, wait, then KILL
	local pid=$1 i
	[ -n "$pid" ] || return 0
	kill -TERM "$pid" 2>/dev/null || return 0
	for ((i = 0; i < $2 * 10; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
}

cleanup() {
	stop_pid "$perf_pid" 5
	stop_pid "$dlrd_pid" 10
	stop_pid "$nginx_pid" 10
	if [ "${BENCH_KEEP:-}" = 1 ]; then
		echo "bench: kept $tmp" >&2
	else
		rm -rf "$tmp"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# run_wrk NAME URL PREFIX SECONDS: writes $tmp/NAME.stats and $tmp/NAME.wrk
run_wrk() {
	BENCH_REQS=$3 BENCH_STATS=$tmp/$1.stats timeout $(($4 + 30)) \
		wrk -t"$threads" -c"$conns" -d"$4"s --timeout "$wrk_timeout" --latency \
		-s "$here/callbacks.lua" "$2" >"$tmp/$1.wrk" 2>&1 ||
		{ cat "$tmp/$1.wrk" >&2; die "wrk failed against $2"; }
	[ -s "$tmp/$1.stats" ] || { cat "$tmp/$1.wrk" >&2; die "wrk wrote no stats"; }
}

# stat FILE KEY: one value from a stats file
stat() { awk -F= -v k="$2" '$1 == k { v = substr($0, length(k) + 2); gsub(/'\''/, "", v); print v }' "$1"; }

metric() { # name (a counter or histogram _sum/_count) from a /metrics dump
	awk -v k="$1" '$1 == k { print $2 }' "$2"
}

# Busy share of all CPUs over one second (other processes skew the numbers).
cpu_busy() {
	local a b
	a=$(head -1 /proc/stat)
	sleep 1
	b=$(head -1 /proc/stat)
	awk -v a="$a" -v b="$b" 'BEGIN { n = split(a, x); split(b, y); t = 0
		for (i = 2; i <= n; i++) t += y[i] - x[i]
		idle = (y[5] - x[5]) + (y[6] - x[6]); printf "%.0f", (t > 0) ? 100 * (t - idle) / t : 0 }'
}
# CPU seconds (user + system) a process has used so far.
cpu_secs() {
	awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / hz }' "/proc/$1/stat" 2>/dev/null || echo 0
}
# CPU seconds used by the finished children of this shell (wrk) so far:
# `times` must run in this shell, not in a $(...) subshell.
wrk_cpu0=0 wrk_cpu1=0 nwrk_cpu0=0 nwrk_cpu1=0
child_secs() { # variable name
	times >"$tmp/times"
	printf -v "$1" '%s' "$(awk 'NR == 2 { split($1, u, "m"); split($2, s, "m")
		printf "%.2f", u[1] * 60 + u[2] + s[1] * 60 + s[2] }' "$tmp/times")"
}

background=$(cpu_busy)
if [ "$background" -gt 10 ]; then
	echo "bench: warning: the machine is already ${background}% busy; the numbers will be low" >&2
fi

# ---- dlrd ----
port=$(free_port)
url=http://127.0.0.1:$port
env DLRD_SERVER_LISTEN="127.0.0.1:$port" DLRD_SERVER_PUBLIC_URL="$public_url" \
	DLRD_SERVER_LOG_LEVEL=warn DLRD_STORAGE_URL="sqlite:$tmp/dlrd.db" \
	DLRD_STORAGE_SYNCHRONOUS=full DLRD_TWILIO_AUTH_TOKENS="$token" \
	DLRD_PRIVACY_HASH_KEY=bench0hash0key0not0a0secret0000000000000000 \
	"$dlrd" serve >"$tmp/dlrd.log" 2>&1 &
dlrd_pid=$!
if ! wait_http "$url/healthz" 10 || ! owns_port "$dlrd_pid" "$port"; then
	cat "$tmp/dlrd.log" >&2
	die "dlrd did not start on port $port"
fi

echo "bench: dlrd on $url (SQLite synchronous=FULL, $tmp/dlrd.db); wrk -t$threads -c$conns"
# Warm-up on its own messages; its rate sizes the measured data set so that
# one pass over it lasts about the whole run (few wrap-around repeats).
"$gen" gen --out "$tmp/warm" --slices "$threads" --messages $((threads * 1500)) \
	--seed 7 --token "$token" --url "$public_url" >"$tmp/warm.gen"
run_wrk warm "$url" "$tmp/warm" "$warmup"
warm_rate=$(stat "$tmp/warm.stats" ok_per_s)
messages=${BENCH_MESSAGES:-$(awk -v r="$warm_rate" -v d="$duration" -v t="$threads" \
	'BEGIN { m = int(r * d * 1.25 / 5.4); if (m < 2000) m = 2000; if (m > 2000000) m = 2000000;
	         if (m < t) m = t; print m }')}
"$gen" gen --out "$tmp/main" --slices "$threads" --messages "$messages" \
	--seed 42 --token "$token" --url "$public_url" >"$tmp/main.gen"
echo "bench: warm-up ${warmup}s at ${warm_rate%.*} req/s; data set: $(cat "$tmp/main.gen")"

curl -fsS --max-time 5 "$url/metrics" >"$tmp/metrics.before"
if [ -n "${BENCH_PERF:-}" ] && command -v perf >/dev/null; then
	(sleep 2 && exec perf record -q -g -p "$dlrd_pid" -o "$tmp/perf.data" -- sleep 5) \
		>"$tmp/perf.log" 2>&1 &
	perf_pid=$!
fi
echo "bench: dlrd: ${duration}s ..."
dlrd_cpu0=$(cpu_secs "$dlrd_pid")
child_secs wrk_cpu0
st0=$(head -1 /proc/stat)
run_wrk dlrd "$url" "$tmp/main" "$duration"
d_steal=$(steal_pct "$st0" "$(head -1 /proc/stat)")
child_secs wrk_cpu1
dlrd_cpu=$(awk -v a="$dlrd_cpu0" -v b="$(cpu_secs "$dlrd_pid")" -v d="$duration" 'BEGIN { printf "%.0f", 100 * (b - a) / d }')
wrk_cpu=$(awk -v a="$wrk_cpu0" -v b="$wrk_cpu1" -v d="$duration" 'BEGIN { printf "%.0f", 100 * (b - a) / d }')
curl -fsS --max-time 5 "$url/metrics" >"$tmp/metrics.after"
if [ -n "$perf_pid" ]; then
	wait "$perf_pid" || true
	perf_pid=
	{
		perf report -i "$tmp/perf.data" --no-children --stdio --sort comm,dso -g none
		perf report -i "$tmp/perf.data" --no-children --stdio --sort comm,dso,sym -g none \
			--percent-limit 0.3
		perf report -i "$tmp/perf.data" --no-children --stdio --percent-limit 1
	} >"$BENCH_PERF" 2>/dev/null || echo "bench: perf report failed" >&2
fi

# Stop dlrd cleanly (it commits and answers whatever is queued), then check.
kill -TERM "$dlrd_pid"
dlrd_rc=0
wait "$dlrd_pid" || dlrd_rc=$?
dlrd_pid=
[ "$dlrd_rc" -eq 0 ] || { tail -20 "$tmp/dlrd.log" >&2; echo "bench: dlrd exited with $dlrd_rc" >&2; }

acked=$(($(stat "$tmp/warm.stats" ok) + $(stat "$tmp/dlrd.stats" ok)))
sent=$(($(stat "$tmp/warm.stats" issued) + $(stat "$tmp/dlrd.stats" issued)))
verify_rc=0
# shellcheck disable=SC2046 # the slice lists are space-separated on purpose
"$gen" verify --db "$tmp/dlrd.db" --acked "$acked" --max-log "$sent" \
	$(stat "$tmp/warm.stats" slices) $(stat "$tmp/dlrd.stats" slices) >"$tmp/verify.txt" 2>&1 ||
	verify_rc=$?

# ---- nginx, same wrk settings, same requests ----
nport=$(free_port)
nurl=http://127.0.0.1:$nport
mkdir -p "$tmp/nginx"
temp_paths="    client_body_temp_path $tmp/nginx/body;"
for m in proxy fastcgi uwsgi scgi; do
	nginx -V 2>&1 | grep -q -- "--without-http_${m}_module" ||
		temp_paths="$temp_paths
    ${m}_temp_path $tmp/nginx/$m;"
done
awk -v prefix="$tmp/nginx" -v port="$nport" -v tp="$temp_paths" \
	'{ gsub(/@PREFIX@/, prefix); gsub(/@PORT@/, port); if ($0 == "@TEMP_PATHS@") $0 = tp; print }' \
	"$here/nginx.conf.in" >"$tmp/nginx/nginx.conf"
nginx -p "$tmp/nginx" -c "$tmp/nginx/nginx.conf" -e "$tmp/nginx/error.log" -g 'daemon off;' \
	>"$tmp/nginx/stdout.log" 2>&1 &
nginx_pid=$!
if ! wait_http "$nurl/" 10 || ! owns_port "$nginx_pid" "$nport"; then
	cat "$tmp/nginx/error.log" "$tmp/nginx/stdout.log" >&2
	die "nginx did not start on port $nport"
fi
echo "bench: nginx return 200 on $nurl: ${duration}s ..."
nginx_cpu0=0
for p in $(pgrep -P "$nginx_pid") "$nginx_pid"; do nginx_cpu0=$(awk -v a="$nginx_cpu0" -v b="$(cpu_secs "$p")" 'BEGIN { print a + b }'); done
child_secs nwrk_cpu0
st0=$(head -1 /proc/stat)
run_wrk nginx "$nurl" "$tmp/main" "$duration"
n_steal=$(steal_pct "$st0" "$(head -1 /proc/stat)")
child_secs nwrk_cpu1
nginx_cpu1=0
for p in $(pgrep -P "$nginx_pid") "$nginx_pid"; do nginx_cpu1=$(awk -v a="$nginx_cpu1" -v b="$(cpu_secs "$p")" 'BEGIN { print a + b }'); done
nginx_cpu=$(awk -v a="$nginx_cpu0" -v b="$nginx_cpu1" -v d="$duration" 'BEGIN { printf "%.0f", 100 * (b - a) / d }')
nwrk_cpu=$(awk -v a="$nwrk_cpu0" -v b="$nwrk_cpu1" -v d="$duration" 'BEGIN { printf "%.0f", 100 * (b - a) / d }')
stop_pid "$nginx_pid" 10
nginx_pid=

# ---- summary ----
d=$tmp/dlrd.stats
n=$tmp/nginx.stats
ms() { awk -v u="$1" 'BEGIN { printf "%.2f ms", u / 1000 }'; }
d_rate=$(stat "$d" ok_per_s)
n_rate=$(stat "$n" req_per_s)
ratio=$(awk -v a="$d_rate" -v b="$n_rate" 'BEGIN { printf "%.1f", (b > 0) ? 100 * a / b : 0 }')
d_p99=$(stat "$d" lat_p99_us)
d_err=$(($(stat "$d" err_connect) + $(stat "$d" err_read) + $(stat "$d" err_write) + $(stat "$d" err_timeout)))
n_err=$(($(stat "$n" err_connect) + $(stat "$n" err_read) + $(stat "$n" err_write) + $(stat "$n" err_timeout)))
pass() { if [ "$1" = 1 ]; then echo PASS; else echo MISS; fi; }
b=$tmp/metrics.before
a=$tmp/metrics.after
commits=$(awk -v x="$(metric dlrd_commit_batch_size_count "$a")" -v y="$(metric dlrd_commit_batch_size_count "$b")" 'BEGIN { print x - y }')
batch=$(awk -v s1="$(metric dlrd_commit_batch_size_sum "$a")" -v s0="$(metric dlrd_commit_batch_size_sum "$b")" -v c="$commits" \
	'BEGIN { printf "%.1f", (c > 0) ? (s1 - s0) / c : 0 }')
commit_ms=$(awk -v s1="$(metric dlrd_commit_duration_seconds_sum "$a")" -v s0="$(metric dlrd_commit_duration_seconds_sum "$b")" -v c="$commits" \
	'BEGIN { printf "%.2f", (c > 0) ? 1000 * (s1 - s0) / c : 0 }')

echo
echo "== dlrd benchmark: $(nproc) CPUs shared by server and wrk; wrk -t$threads -c$conns -d${duration}s; SQLite synchronous=FULL"
echo "   (CPU: % of one core during the run; machine ${background}% busy before the run;"
echo "    CPU time stolen by the hypervisor: ${d_steal}% during dlrd's run, ${n_steal}% during nginx's)"
if [ "$d_steal" -gt 5 ] || [ "$n_steal" -gt 5 ]; then
	echo "   warning: the host took CPU time from this VM during the runs; the rates and their ratio are not comparable with a quiet machine's"
fi
printf '  %-22s %9s %10s %10s %10s %8s %7s %11s %9s\n' "" "req/s" "p50" "p90" "p99" "non-2xx" "errors" \
	"server CPU" "wrk CPU"
printf '  %-22s %9.0f %10s %10s %10s %8s %7s %10s%% %8s%%\n' "dlrd (durable 2xx)" "$d_rate" \
	"$(ms "$(stat "$d" lat_p50_us)")" "$(ms "$(stat "$d" lat_p90_us)")" "$(ms "$d_p99")" \
	"$(stat "$d" non2xx)" "$d_err" "$dlrd_cpu" "$wrk_cpu"
printf '  %-22s %9.0f %10s %10s %10s %8s %7s %10s%% %8s%%\n' "nginx return 200" "$n_rate" \
	"$(ms "$(stat "$n" lat_p50_us)")" "$(ms "$(stat "$n" lat_p90_us)")" "$(ms "$(stat "$n" lat_p99_us)")" \
	"$(stat "$n" non2xx)" "$n_err" "$nginx_cpu" "$nwrk_cpu"
[ "$(stat "$d" non2xx)" = 0 ] || echo "  dlrd non-2xx answers: $(stat "$d" non2xx_codes) (503 = overload)"
printf '  %-22s %8s%%   target >= 40%%     %s\n' "dlrd / nginx" "$ratio" \
	"$(pass "$(awk -v r="$ratio" 'BEGIN { print ((r >= 40) ? 1 : 0) }')")"
printf '  %-22s %9s   target < 10 ms    %s\n' "dlrd p99" "$(ms "$d_p99")" \
	"$(pass "$(awk -v p="$d_p99" 'BEGIN { print ((p < 10000) ? 1 : 0) }')")"
echo "  group commit: $commits transactions, mean batch $batch requests, mean commit ${commit_ms} ms"
for h in dlrd_commit_batch_size dlrd_commit_duration_seconds; do
	# per-bucket counts of the measured run (the histograms are cumulative)
	awk -v h="${h}_bucket" 'FNR == 1 { f++ } index($1, h "{") == 1 {
		match($1, /le="[^"]*"/); le = substr($1, RSTART + 4, RLENGTH - 5)
		if (f == 1) before[le] = $2; else { d = $2 - before[le]; order[++n] = le; cum[le] = d } }
		END { line = ""; prev = 0; for (i = 1; i <= n; i++) { le = order[i]; c = cum[le] - prev; prev = cum[le]
			if (c > 0) line = line sprintf(" <=%s:%d", le, c) }
			print line }' "$b" "$a" | sed "s/^/    ${h#dlrd_}:/"
done
echo "  sent: $(stat "$d" issued) requests over $(stat "$d" duration_s) s; data set $(stat "$d" thread1_lines)+ lines per thread"
sed 's/^/  /' "$tmp/verify.txt"
if [ "$dlrd_rc" -ne 0 ]; then
	echo "  dlrd did not stop cleanly (exit $dlrd_rc): FAIL"
	verify_rc=1
fi
[ "$d_err" -eq 0 ] || echo "  note: wrk socket errors against dlrd: $d_err"
if [ "$verify_rc" -eq 0 ]; then
	echo "== verification: PASS"
else
	echo "== verification: FAIL"
	BENCH_KEEP=1
	exit 1
fi
