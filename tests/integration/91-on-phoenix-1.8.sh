#!/bin/sh
# SPDX-License-Identifier: MIT
# phxd's integration tests, and phoenix.js's conformance tests, again with
# phxd-testserver emulating Phoenix 1.8.12 (the 1.8 differences listed in
# docs/phxd-testserver.md). One closing line sums them.
set -u
here=$(cd "$(dirname "$0")" && pwd)
conf=$here/../conformance
passed=0 failed=0 skipped=0
count() {
	line=$(printf '%s\n' "$1" | grep -E '^[0-9]+ passed, [0-9]+ failed' | tail -1)
	if [ -z "$line" ]; then
		failed=$((failed + 1))
		return
	fi
	set -- $(printf '%s' "$line" | tr -dc '0-9 ')
	passed=$((passed + $1)) failed=$((failed + $2)) skipped=$((skipped + ${3:-0}))
}
export PHXD_TS_EMULATE=1.8.12
for t in 10-basics 20-resilience 35-hostile-server 30-ipc-bad-input; do
	out=$(python3 "$here/$t.py" 2>&1)
	printf '%s\n' "$out"
	count "$out"
done
if [ -d "$conf/node_modules/phoenix" ]; then
	out=$("${NODE:-node}" --test --test-reporter=spec "$conf/phoenixjs.mjs" 2>&1)
	rc=$?
	printf '%s\n' "$out"
	p=$(printf '%s\n' "$out" | sed -n 's/^ℹ pass \([0-9]*\)$/\1/p')
	f=$(printf '%s\n' "$out" | sed -n 's/^ℹ fail \([0-9]*\)$/\1/p')
	passed=$((passed + ${p:-0})) failed=$((failed + ${f:-1}))
	[ $rc -eq 0 ] || [ "${f:-1}" -gt 0 ] || failed=$((failed + 1))
else
	echo "skip phoenix.js on 1.8.12: tests/conformance/node_modules missing (./dev setup)"
	skipped=$((skipped + 1))
fi
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
