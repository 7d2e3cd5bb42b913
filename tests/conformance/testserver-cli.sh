#!/bin/sh
# SPDX-License-Identifier: MIT
# phxd-testserver's command line: every bad argument gets exit status 2 and
# a message naming it; --help and --version work; a taken port is an error.
set -u
ts=${PHXD_TESTSERVER:?PHXD_TESTSERVER is not set}
fail=0
pass=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"; [ -n "${pid:-}" ] && kill "$pid" 2>/dev/null' EXIT

expect() { # expect STATUS PATTERN -- ARGS...
	want=$1 pattern=$2
	shift 3
	"$ts" "$@" >"$tmp/out" 2>&1
	got=$?
	if [ "$got" -ne "$want" ] || ! grep -q -- "$pattern" "$tmp/out"; then
		echo "FAIL: phxd-testserver $*: status $got (want $want), output:"
		sed 's/^/    /' "$tmp/out"
		fail=$((fail + 1))
	else
		pass=$((pass + 1))
	fi
}

expect 0 "usage: phxd-testserver" -- --help
expect 0 "phxd-testserver [0-9]" -- --version
expect 2 "--port is required" --
expect 2 "'abc' is not a port" -- --port abc
expect 2 "'70000' is not a port" -- --port 70000
expect 2 "'-1' is not a port" -- --port -1
expect 2 "is not a port" -- --port ""
expect 2 "'1.x' is not a Phoenix version" -- --port 0 --emulate 1.x
expect 2 "'1.5.0' is not a Phoenix version" -- --port 0 --emulate 1.5.0
expect 2 "'1006' is not a close code" -- --port 0 --disconnect-code 1006
expect 2 "'999' is not a close code" -- --port 0 --disconnect-code 999
expect 2 "'ten' is not a" -- --port 0 --idle-timeout ten
expect 2 "'x' is not a count" -- --port 0 --max-channels x
expect 2 "unrecognized option" -- --port 0 --bogus
expect 2 "unexpected argument 'extra'" -- --port 0 extra

# A port that is already taken: exit 1 with a message.
"$ts" --port 0 >"$tmp/first" 2>&1 &
pid=$!
for _ in $(seq 50); do grep -q listening "$tmp/first" && break; sleep 0.1; done
port=$(sed -n 's/.*127.0.0.1:\([0-9]*\).*/\1/p' "$tmp/first")
if [ -z "$port" ]; then
	echo "FAIL: server on port 0 did not print its port"; fail=$((fail + 1))
else
	expect 1 "cannot listen on 127.0.0.1:$port" -- --port "$port"
	kill -TERM "$pid"
	wait "$pid"
	st=$?
	if [ "$st" -ne 0 ]; then
		echo "FAIL: SIGTERM exit status $st, want 0"; fail=$((fail + 1))
	else
		pass=$((pass + 1))
	fi
	pid=
fi

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
