#!/bin/sh
# SPDX-License-Identifier: MIT
# A throwaway PostgreSQL cluster for the tests and the benchmark: its own
# folder under $TMPDIR, a free loopback port, trust authentication for the
# superuser "dlrd", removed again afterwards.  Nothing of the system's own
# clusters (Debian's "main" on 5432) is used or touched.
#
# initdb and the server refuse to run as root, so as root the cluster belongs
# to an unprivileged system user ($DLRD_PG_USER, default dlrd-test, created
# when missing) and every PostgreSQL command runs through runuser.
#
# Usage:
#   scripts/pg-test.sh start        creates and starts a cluster; prints
#                                   shell "export" lines (eval them)
#   scripts/pg-test.sh stop DIR     stops the cluster in DIR and removes DIR
#   scripts/pg-test.sh run CMD...   start, run CMD with the variables below
#                                   exported, stop; exits with CMD's status
# Exported:
#   DLRD_TEST_PG_URL   postgresql://dlrd@127.0.0.1:PORT/postgres (superuser;
#                      tests create a database of their own from it)
#   DLRD_TEST_PG_CTL   DIR/ctl: "ctl stop [fast|immediate]" and "ctl start"
#                      stop and start the server (the outage test)
#   DLRD_TEST_PG_DIR   the cluster's folder
# Environment:
#   DLRD_PG_FAST=1     fsync=off, synchronous_commit stays on (tests: the
#                      commit path is the same, without the disk flush)
#   DLRD_PG_USER       the owner when run as root (default dlrd-test)
#   DLRD_PG_CONF       extra postgresql.conf lines
set -eu

die() { echo "pg-test.sh: $*" >&2; exit 2; }

bindir() {
	for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k5 -n -r); do
		if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then
			echo "$d"
			return 0
		fi
	done
	die "no PostgreSQL server found under /usr/lib/postgresql (scripts/deps.sh pg)"
}

owner() {
	if [ "$(id -u)" -ne 0 ]; then
		id -un
		return 0
	fi
	u=${DLRD_PG_USER:-dlrd-test}
	if ! id "$u" >/dev/null 2>&1; then
		useradd --system --no-create-home --home-dir /nonexistent \
			--shell /usr/sbin/nologin "$u" >/dev/null ||
			die "cannot create the system user $u"
	fi
	echo "$u"
}

# as USER CMD...: CMD as USER (directly when we are USER)
as() {
	u=$1
	shift
	if [ "$(id -un)" = "$u" ]; then
		"$@"
	else
		runuser -u "$u" -- "$@"
	fi
}

port_free() {
	if command -v ss >/dev/null 2>&1; then
		[ -z "$(ss -Htan "( sport = :$1 )" 2>/dev/null)" ]
	else
		! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
	fi
}

cmd_start() {
	bin=$(bindir)
	user=$(owner)
	dir=$(mktemp -d "${TMPDIR:-/tmp}/dlrd-pg.XXXXXX")
	touch "$dir/.dlrd-pg-test"
	mkdir "$dir/data" "$dir/sock"
	chown -R "$user" "$dir"
	chmod 0755 "$dir"
	chmod 0700 "$dir/data"
	as "$user" "$bin/initdb" -D "$dir/data" -U dlrd --auth=trust -E UTF8 --no-locale \
		--no-sync >"$dir/initdb.log" 2>&1 || {
		cat "$dir/initdb.log" >&2
		rm -rf "$dir"
		die "initdb failed"
	}
	tries=0
	while :; do
		tries=$((tries + 1))
		[ "$tries" -le 20 ] || { rm -rf "$dir"; die "no free port for PostgreSQL"; }
		port=$(( ($(od -An -N2 -tu2 /dev/urandom) % 30000) + 25000 ))
		port_free "$port" || continue
		{
			echo "# dlrd test cluster"
			echo "listen_addresses = '127.0.0.1'"
			echo "port = $port"
			echo "unix_socket_directories = '$dir/sock'"
			echo "max_connections = 200"
			echo "shared_buffers = 128MB"
			echo "logging_collector = off"
			echo "log_min_messages = warning"
			if [ "${DLRD_PG_FAST:-}" = 1 ]; then
				echo "fsync = off"
				echo "full_page_writes = off"
			fi
			[ -z "${DLRD_PG_CONF:-}" ] || printf '%s\n' "$DLRD_PG_CONF"
		} >"$dir/data/postgresql.auto.conf"
		if as "$user" "$bin/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t 60 \
			start >/dev/null 2>&1; then
			break
		fi
		grep -q "could not bind\|Address already in use" "$dir/postgres.log" 2>/dev/null ||
			{ cat "$dir/postgres.log" >&2; rm -rf "$dir"; die "PostgreSQL did not start"; }
	done
	cat >"$dir/ctl" <<EOF
#!/bin/sh
# Stops or starts the dlrd test cluster in $dir (written by pg-test.sh).
set -eu
run() { if [ "\$(id -un)" = "$user" ]; then "\$@"; else runuser -u "$user" -- "\$@"; fi; }
case "\${1:-}" in
stop) run "$bin/pg_ctl" -D "$dir/data" -m "\${2:-fast}" -w -t 60 stop ;;
start) run "$bin/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t 60 start ;;
status) run "$bin/pg_ctl" -D "$dir/data" status ;;
*) echo "usage: \$0 stop [fast|immediate] | start | status" >&2; exit 2 ;;
esac
EOF
	chmod 0755 "$dir/ctl"
	{
		echo "export DLRD_TEST_PG_URL='postgresql://dlrd@127.0.0.1:$port/postgres'"
		echo "export DLRD_TEST_PG_CTL='$dir/ctl'"
		echo "export DLRD_TEST_PG_DIR='$dir'"
	} >"$dir/env"
	cat "$dir/env"
}

cmd_stop() {
	dir=${1:-${DLRD_TEST_PG_DIR:-}}
	[ -n "$dir" ] || die "usage: pg-test.sh stop DIR"
	[ -f "$dir/.dlrd-pg-test" ] || die "$dir is not a dlrd test cluster"
	if [ -x "$dir/ctl" ] && "$dir/ctl" status >/dev/null 2>&1; then
		"$dir/ctl" stop fast >/dev/null 2>&1 || "$dir/ctl" stop immediate >/dev/null 2>&1 || true
	fi
	rm -rf "$dir"
}

cmd_run() {
	[ $# -gt 0 ] || die "usage: pg-test.sh run CMD..."
	envs=$(cmd_start)
	eval "$envs"
	trap 'cmd_stop "$DLRD_TEST_PG_DIR"' EXIT
	trap 'exit 130' INT TERM
	echo "pg-test.sh: PostgreSQL at $DLRD_TEST_PG_URL ($DLRD_TEST_PG_DIR)" >&2
	rc=0
	"$@" || rc=$?
	exit "$rc"
}

case "${1:-}" in
start) cmd_start ;;
stop) shift; cmd_stop "$@" ;;
run) shift; cmd_run "$@" ;;
*) echo "usage: pg-test.sh start | stop DIR | run CMD..." >&2; exit 2 ;;
esac
