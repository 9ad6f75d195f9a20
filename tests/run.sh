#!/bin/sh
# Run every test program in BUILD/tests (Criterion suites, each test in its
# own process) and every tests/cli/*.sh script, each under a timeout, and end
# with the kernel version and one line: "N passed, N failed, N skipped".
# Exit 1 on any failure.
B=${1:-build}
export MMKIT_BUILD="$B"
pass=0 fail=0 skip=0 failed_names=""
tap=$(mktemp)
trap 'rm -f "$tap"' EXIT
for t in "$B"/tests/test_*; do
    [ -x "$t" ] || continue
    name=$(basename "$t")
    : > "$tap"
    timeout 900 "$t" --timeout 300 --tap="$tap" -S > "$tap.out" 2>&1
    rc=$?
    p=$(grep -c '^ok ' "$tap" | tr -d ' ')
    s=$(grep -c '^ok .*# SKIP' "$tap" | tr -d ' ')
    f=$(grep -c '^not ok ' "$tap" | tr -d ' ')
    p=$((p - s))
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        f=1 # the runner itself died or timed out
    fi
    if [ "$f" -gt 0 ]; then
        cat "$tap.out"
        grep '^not ok ' "$tap"
        failed_names="$failed_names $name"
    fi
    printf '%-28s %3d passed, %d failed, %d skipped\n' "$name" "$p" "$f" "$s"
    pass=$((pass + p)) fail=$((fail + f)) skip=$((skip + s))
    rm -f "$tap.out"
done
for t in tests/cli/*.sh; do
    [ -f "$t" ] || continue
    name=$(basename "$t")
    out=$(timeout 600 sh "$t" "$B" 2>&1)
    rc=$?
    if [ "$rc" -eq 0 ]; then
        pass=$((pass + 1)); r=passed
    elif [ "$rc" -eq 77 ]; then
        skip=$((skip + 1)); r=skipped
    else
        fail=$((fail + 1)); r=FAILED; failed_names="$failed_names $name"
        printf '%s\n' "$out"
    fi
    printf '%-28s %s\n' "$name" "$r"
done
[ -n "$failed_names" ] && echo "failed:$failed_names"
echo "kernel $(uname -r) ($(uname -m)), build $B"
echo "$pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ]
