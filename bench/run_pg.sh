#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The PostgreSQL half of `make bench`: dlrd on a throwaway PostgreSQL cluster
# (scripts/pg-test.sh; fsync on, synchronous_commit on: a 2xx means the
# COMMIT's WAL record was flushed), first one node, then two nodes on one
# database behind an nginx upstream (round robin, keep-alive), as in
# docs/deployment.md.  The same pre-signed callbacks as bench/run.sh
# (gen_callbacks, callbacks.lua); durable callbacks per second and latency
# from wrk; then the database is checked against what was sent with
# `gen_callbacks verify`, on an SQLite copy of the columns it reads.
#
# Usage: bench/run_pg.sh BUILD_DIR
# Environment (all optional):
#   BENCH_DURATION=10     seconds of each measured wrk run
#   BENCH_CONNECTIONS=128 wrk connections
#   BENCH_THREADS=2       wrk threads
#   BENCH_WARMUP=3        seconds of warm-up against each setup
#   BENCH_MESSAGES=       messages in the measured data set (default: sized
#                         from the warm-up rate)
#   BENCH_NODES="1 2"     which setups to run
#   BENCH_KEEP=1          keep the temporary folder (logs, stats, CSV)
# Exit status: 0 when verification passes, 1 when it fails, 2 on a setup
# problem.
set -euo pipefail

build=${1:?usage: bench/run_pg.sh BUILD_DIR}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
build=$(cd "$build" && pwd)
dlrd=$build/dlrd
gen=$build/bench/gen_callbacks
duration=${BENCH_DURATION:-10}
conns=${BENCH_CONNECTIONS:-128}
threads=${BENCH_THREADS:-2}
warmup=${BENCH_WARMUP:-3}
setups=${BENCH_NODES:-1 2}
token=bench-auth-token-0123456789abcdef
public_url=https://bench.example.com
hash_key=bench-hash-key-not-a-secret-0123456789
wrk_timeout=5s

die() { echo "bench-pg: $*" >&2; exit 2; }
# shellcheck source=bench/lib.sh
. "$here/lib.sh"
for x in "$dlrd" "$gen"; do [ -x "$x" ] || die "$x not built (cmake --build $build)"; done
for x in wrk nginx curl ss awk psql sqlite3; do
	command -v "$x" >/dev/null || die "$x not installed (scripts/deps.sh bench pg)"
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/dlrd-bench-pg.XXXXXX")
pids=()
nginx_pid=
pg_dir=

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
	local p
	for p in "${pids[@]}"; do stop_pid "$p" 10; done
	stop_pid "$nginx_pid" 10
	[ -z "$pg_dir" ] || "$root/scripts/pg-test.sh" stop "$pg_dir" || true
	if [ "${BENCH_KEEP:-}" = 1 ]; then
		echo "bench-pg: kept $tmp" >&2
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

stat() { awk -F= -v k="$2" '$1 == k { v = substr($0, length(k) + 2); gsub(/'\''/, "", v); print v }' "$1"; }
metric() { awk -v k="$1" '$1 == k { print $2 }' "$2"; }
ms() { awk -v u="$1" 'BEGIN { printf "%.2f ms", u / 1000 }'; }

# ---- the cluster: fsync on, no checkpoints during a run ----
echo "bench-pg: starting a throwaway PostgreSQL cluster ..."
pg_env=$(DLRD_PG_FAST= DLRD_PG_CONF="max_wal_size = 4GB
checkpoint_timeout = 30min
wal_buffers = 16MB" "$root/scripts/pg-test.sh" start) || die "cannot start PostgreSQL"
eval "$pg_env"
pg_dir=$DLRD_TEST_PG_DIR
pg_url=$DLRD_TEST_PG_URL
pg_port=${pg_url##*:}
pg_port=${pg_port%%/*}
pg_version=$(psql "$pg_url" -Atc "SHOW server_version")

# db_url NAME: a libpq URL for database NAME on the cluster
db_url() { echo "postgresql://dlrd@127.0.0.1:$pg_port/$1"; }

# start_node DB LOGNAME: starts one dlrd (a child of this shell); sets
# node_pid and node_port
start_node() {
	node_port=$(free_port)
	mkdir -p "$tmp/$2"
	env DLRD_SERVER_LISTEN=127.0.0.1:$node_port DLRD_SERVER_PUBLIC_URL=$public_url \
		DLRD_SERVER_LOG_LEVEL=warn DLRD_SERVER_DATA_DIR="$tmp/$2" \
		DLRD_STORAGE_URL="$(db_url "$1")" DLRD_STORAGE_SYNCHRONOUS=full \
		DLRD_TWILIO_AUTH_TOKENS=$token DLRD_PRIVACY_HASH_KEY=$hash_key \
		"$dlrd" serve >"$tmp/$2/dlrd.log" 2>&1 &
	node_pid=$!
	pids+=("$node_pid")
	wait_http "http://127.0.0.1:$node_port/healthz" 15 ||
		{ cat "$tmp/$2/dlrd.log" >&2; die "dlrd ($2) did not start"; }
}

# export_db DB FILE: the columns gen_callbacks verify reads, into SQLite
export_db() {
	local u f=$2
	u=$(db_url "$1")
	rm -f "$f"
	sqlite3 "$f" "CREATE TABLE sms_message_events (provider TEXT, provider_message_id TEXT,
	                raw_status TEXT, error_code TEXT);
	              CREATE TABLE sms_messages (id TEXT, provider TEXT, provider_message_id TEXT,
	                current_status TEXT, current_error_code TEXT, is_final INTEGER,
	                event_count INTEGER, callback_count INTEGER);
	              CREATE TABLE sms_callback_log (duplicate INTEGER);
	              CREATE TABLE review_queue (reason TEXT);"
	psql "$u" -Atqc "\\copy (SELECT provider, provider_message_id, raw_status, error_code
	      FROM sms_message_events) TO '$tmp/events.csv' CSV"
	psql "$u" -Atqc "\\copy (SELECT id, provider, provider_message_id, current_status,
	      current_error_code, is_final, event_count, callback_count FROM sms_messages)
	      TO '$tmp/messages.csv' CSV"
	psql "$u" -Atqc "\\copy (SELECT duplicate FROM sms_callback_log) TO '$tmp/log.csv' CSV"
	psql "$u" -Atqc "\\copy (SELECT reason FROM review_queue) TO '$tmp/review.csv' CSV"
	# CSV has no NULL: an absent error code arrives as '', which is what
	# verify compares after coalesce(error_code, '') anyway.
	sqlite3 "$f" ".mode csv" ".import '$tmp/events.csv' sms_message_events" \
		".import '$tmp/messages.csv' sms_messages" ".import '$tmp/log.csv' sms_callback_log" \
		".import '$tmp/review.csv' review_queue"
}

# run_setup N: N nodes on a fresh database; fills $tmp/nN.* and res_* vars
run_setup() {
	local n=$1 db=bench_n$1 url target i
	local -a ports=() node_pids=()
	psql "$pg_url" -qc "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db" >/dev/null
	for ((i = 0; i < n; i++)); do
		start_node "$db" "n$n-node$i"
		node_pids+=("$node_pid")
		ports+=("$node_port")
	done
	if [ "$n" -eq 1 ]; then
		url=http://127.0.0.1:${ports[0]}
		target="dlrd"
	else
		# nginx in front, as in production (without TLS here)
		local nport
		nport=$(free_port)
		mkdir -p "$tmp/nginx$n"
		{
			echo "worker_processes 1;"
			echo "pid $tmp/nginx$n/nginx.pid;"
			echo "error_log $tmp/nginx$n/error.log warn;"
			echo "events { worker_connections 4096; }"
			echo "http {"
			echo "  access_log off;"
			echo "  client_body_temp_path $tmp/nginx$n/body;"
			for m in proxy fastcgi uwsgi scgi; do
				nginx -V 2>&1 | grep -q -- "--without-http_${m}_module" ||
					echo "  ${m}_temp_path $tmp/nginx$n/$m;"
			done
			echo "  keepalive_requests 100000000;"
			echo "  upstream dlrd {"
			for port in "${ports[@]}"; do echo "    server 127.0.0.1:$port;"; done
			echo "    keepalive 256;"
			echo "  }"
			echo "  server {"
			echo "    listen 127.0.0.1:$nport;"
			echo "    location / {"
			echo "      proxy_pass http://dlrd;"
			echo "      proxy_http_version 1.1;"
			echo "      proxy_set_header Connection \"\";"
			echo "      proxy_next_upstream off;"
			echo "    }"
			echo "  }"
			echo "}"
		} >"$tmp/nginx$n/nginx.conf"
		nginx -p "$tmp/nginx$n" -c "$tmp/nginx$n/nginx.conf" -e "$tmp/nginx$n/error.log" \
			-g 'daemon off;' >"$tmp/nginx$n/stdout.log" 2>&1 &
		nginx_pid=$!
		url=http://127.0.0.1:$nport
		wait_http "$url/healthz" 10 || { cat "$tmp/nginx$n/error.log" >&2; die "nginx did not start"; }
		target="nginx -> ${n} dlrd"
	fi

	echo "bench-pg: $n node(s) on PostgreSQL $pg_version ($target); wrk -t$threads -c$conns"
	"$gen" gen --out "$tmp/n$n-warm" --slices "$threads" --messages $((threads * 1500)) \
		--seed $((7 + n)) --token "$token" --url "$public_url" >"$tmp/n$n-warm.gen"
	run_wrk "n$n-warm" "$url" "$tmp/n$n-warm" "$warmup"
	local warm_rate messages
	warm_rate=$(stat "$tmp/n$n-warm.stats" ok_per_s)
	messages=${BENCH_MESSAGES:-$(awk -v r="$warm_rate" -v d="$duration" -v t="$threads" \
		'BEGIN { m = int(r * d * 1.25 / 5.4); if (m < 2000) m = 2000; if (m > 2000000) m = 2000000;
		         if (m < t) m = t; print m }')}
	"$gen" gen --out "$tmp/n$n-main" --slices "$threads" --messages "$messages" \
		--seed $((42 + n)) --token "$token" --url "$public_url" >"$tmp/n$n-main.gen"
	for ((i = 0; i < n; i++)); do
		curl -fsS --max-time 5 "http://127.0.0.1:${ports[$i]}/metrics" >"$tmp/n$n-m$i.before"
	done
	echo "bench-pg: $n node(s): warm-up at ${warm_rate%.*} req/s; ${duration}s ..."
	run_wrk "n$n" "$url" "$tmp/n$n-main" "$duration"
	for ((i = 0; i < n; i++)); do
		curl -fsS --max-time 5 "http://127.0.0.1:${ports[$i]}/metrics" >"$tmp/n$n-m$i.after"
	done

	# stop: every node commits and answers what it holds, exits 0
	local rc=0 p
	stop_pid "$nginx_pid" 10
	nginx_pid=
	for p in "${node_pids[@]}"; do
		kill -TERM "$p"
		wait "$p" || rc=$?
	done
	pids=()
	[ "$rc" -eq 0 ] || echo "bench-pg: a node exited with $rc" >&2

	# group commit per node
	local commits=0 bsum=0 csum=0
	for ((i = 0; i < n; i++)); do
		local a=$tmp/n$n-m$i.after b=$tmp/n$n-m$i.before
		commits=$(awk -v c="$commits" -v x="$(metric dlrd_commit_batch_size_count "$a")" \
			-v y="$(metric dlrd_commit_batch_size_count "$b")" 'BEGIN { print c + x - y }')
		bsum=$(awk -v c="$bsum" -v x="$(metric dlrd_commit_batch_size_sum "$a")" \
			-v y="$(metric dlrd_commit_batch_size_sum "$b")" 'BEGIN { print c + x - y }')
		csum=$(awk -v c="$csum" -v x="$(metric dlrd_commit_duration_seconds_sum "$a")" \
			-v y="$(metric dlrd_commit_duration_seconds_sum "$b")" 'BEGIN { print c + x - y }')
	done
	local batch commit_ms
	batch=$(awk -v s="$bsum" -v c="$commits" 'BEGIN { printf "%.1f", (c > 0 ? s / c : 0) }')
	commit_ms=$(awk -v s="$csum" -v c="$commits" 'BEGIN { printf "%.2f", (c > 0 ? 1000 * s / c : 0) }')

	# verify against what was sent
	local acked sent verify_rc=0
	acked=$(($(stat "$tmp/n$n-warm.stats" ok) + $(stat "$tmp/n$n.stats" ok)))
	sent=$(($(stat "$tmp/n$n-warm.stats" issued) + $(stat "$tmp/n$n.stats" issued)))
	export_db "$db" "$tmp/n$n-verify.db"
	# shellcheck disable=SC2046
	"$gen" verify --db "$tmp/n$n-verify.db" --acked "$acked" --max-log "$sent" \
		$(stat "$tmp/n$n-warm.stats" slices) $(stat "$tmp/n$n.stats" slices) \
		>"$tmp/n$n-verify.txt" 2>&1 || verify_rc=$?
	[ "$rc" -eq 0 ] || verify_rc=1

	local deadlocks
	deadlocks=$(psql "$pg_url" -Atc "SELECT deadlocks FROM pg_stat_database WHERE datname = '$db'")

	local d=$tmp/n$n.stats err
	err=$(($(stat "$d" err_connect) + $(stat "$d" err_read) + $(stat "$d" err_write) + $(stat "$d" err_timeout)))
	printf '%s|%.0f|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s\n' "$n" "$(stat "$d" ok_per_s)" \
		"$(ms "$(stat "$d" lat_p50_us)")" "$(ms "$(stat "$d" lat_p90_us)")" \
		"$(ms "$(stat "$d" lat_p99_us)")" "$(stat "$d" non2xx)" "$err" "$commits" "$batch" \
		"$commit_ms" "$deadlocks" "$verify_rc" >>"$tmp/results"
	sed "s/^/  [$n node(s)] /" "$tmp/n$n-verify.txt" >>"$tmp/verify-all.txt"
	psql "$pg_url" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null || true
}

: >"$tmp/results"
: >"$tmp/verify-all.txt"
for n in $setups; do
	run_setup "$n"
done

echo
echo "== dlrd on PostgreSQL $pg_version: $(nproc) CPUs shared by PostgreSQL, dlrd, nginx and wrk;"
echo "   wrk -t$threads -c$conns -d${duration}s; fsync=on, synchronous_commit=on (durable 2xx)"
printf '  %-22s %10s %10s %10s %10s %8s %7s %8s %7s %9s %9s\n' "" "req/s" "p50" "p90" "p99" \
	"non-2xx" "errors" "commits" "batch" "commit" "deadlocks"
fail=0
while IFS='|' read -r n rate p50 p90 p99 non2xx err commits batch commit_ms deadlocks vrc; do
	label="1 node"
	[ "$n" = 1 ] || label="$n nodes (nginx)"
	printf '  %-22s %10s %10s %10s %10s %8s %7s %8s %7s %6s ms %9s\n' "$label" "$rate" "$p50" \
		"$p90" "$p99" "$non2xx" "$err" "$commits" "$batch" "$commit_ms" "$deadlocks"
	[ "$vrc" = 0 ] || fail=1
done <"$tmp/results"
echo "  req/s counts 2xx answers only: each was durable (COMMIT returned) when sent."
echo "  commits and batch: transactions and callbacks per transaction, all nodes together;"
echo "  deadlocks: detected by PostgreSQL in the run's database (each one is retried)."
cat "$tmp/verify-all.txt"
if [ "$fail" = 0 ]; then
	echo "== verification: PASS"
else
	echo "== verification: FAIL"
	BENCH_KEEP=1
	exit 1
fi
