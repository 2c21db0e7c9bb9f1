#!/bin/sh
# SPDX-License-Identifier: MIT
# Installs the Debian packages dlrd needs to build, test and benchmark.
# Idempotent: when every package is present it only runs dpkg-query once.
# Usage: scripts/deps.sh [build|test|bench|pg|fuzz ...]   (default: build)
set -eu

build="cmake make gcc pkg-config libmicrohttpd-dev libsqlite3-dev libjansson-dev libssl-dev libinih-dev libcurl4-openssl-dev libpq-dev tzdata"
test="$build libcmocka-dev sqlite3 curl clang libclang-rt-dev clang-format"
bench="$build wrk nginx-light sqlite3 curl iproute2"
pg="postgresql"
fuzz="clang libclang-rt-dev"

want=""
[ $# -eq 0 ] && set -- build
for group in "$@"; do
	case "$group" in
	build) want="$want $build" ;;
	test) want="$want $test" ;;
	bench) want="$want $bench" ;;
	pg) want="$want $pg" ;;
	fuzz) want="$want $fuzz" ;;
	*) echo "deps.sh: unknown group '$group'" >&2; exit 2 ;;
	esac
done

missing=""
for p in $want; do
	case " $missing " in *" $p "*) continue ;; esac
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
		missing="$missing $p"
	fi
done
[ -z "$missing" ] && exit 0

echo "deps.sh: installing:$missing" >&2
sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
# nginx-light's postinst starts nginx on port 80; policy-rc.d stops that on
# machines where it would clash, and the benchmark starts its own instance.
$sudo apt-get install -y -qq --no-install-recommends $missing >/dev/null
