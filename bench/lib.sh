# SPDX-License-Identifier: MIT
# shellcheck shell=bash
# Helpers shared by the bench scripts (sourced, not run).  The script that
# sources this defines die() first, with its own prefix.

# A loopback port nobody uses, below the ephemeral range (so no outgoing
# connection, ours or anyone's, can be holding it by the time we bind).
free_port() {
	local p i lo
	lo=$(awk '{ print $1 }' /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
	[ "$lo" -gt 12000 ] || lo=61000
	for ((i = 0; i < 100; i++)); do
		p=$((10000 + RANDOM % (lo - 10000)))
		if [ -z "$(ss -Htan "( sport = :$p or dport = :$p )" 2>/dev/null)" ]; then
			echo "$p"
			return 0
		fi
	done
	die "no free port"
}

# True when process $1 holds the listening socket on port $2 (and not some
# other server that happened to take the port first).
owns_port() {
	ss -Htlnp "sport = :$2" 2>/dev/null | grep -q "pid=$1,"
}

wait_http() { # url, seconds
	local i
	for ((i = 0; i < $2 * 10; i++)); do
		curl -fsS -o /dev/null --max-time 1 "$1" 2>/dev/null && return 0
		sleep 0.1
	done
	return 1
}

# Steal share of all CPU time between two /proc/stat "cpu" lines: time the
# hypervisor gave to other guests while this VM wanted to run.  Steal makes
# both rates, and above all their ratio, unreliable.
steal_pct() {
	awk -v a="$1" -v b="$2" 'BEGIN { n = split(a, x); split(b, y); t = 0
		for (i = 2; i <= 9 && i <= n; i++) t += y[i] - x[i]
		printf "%.0f", (t > 0 && n >= 9) ? 100 * (y[9] - x[9]) / t : 0 }'
}
