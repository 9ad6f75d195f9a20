#!/bin/sh
# cli.sh BUILD - drive BUILD/mmkit end to end: version, help, usage errors and
# the fault router demo.  Exit 0 pass, 77 skip, anything else fail.
set -eu

B=${1:-build}
mmkit=$B/mmkit
[ -x "$mmkit" ] || { echo "cli.sh: skip: $mmkit not built" >&2; exit 77; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM

fail() {
    echo "cli.sh: FAIL: $*" >&2
    exit 1
}

# run ARGS... : run mmkit, keep stdout, stderr and the exit status.  Never
# stops the script, whatever the status.
run() {
    rc=0
    "$mmkit" "$@" > "$tmp/out" 2> "$tmp/err" || rc=$?
}
show() {
    printf -- '--- stdout\n%s\n--- stderr\n%s\n' "$(cat "$tmp/out")" "$(cat "$tmp/err")"
}
expect_rc() { # status what
    [ "$rc" -eq "$1" ] || fail "$2: exit status $rc, expected $1
$(show)"
}

version=$(sed -n 's/^#define MMK_VERSION_STRING "\(.*\)"$/\1/p' include/mmkit.h)
[ -n "$version" ] || fail "cannot read MMK_VERSION_STRING from include/mmkit.h"

# version / --version
for v in version --version; do
    run "$v"
    expect_rc 0 "mmkit $v"
    [ "$(cat "$tmp/out")" = "mmkit $version" ] || fail "mmkit $v printed '$(cat "$tmp/out")', expected 'mmkit $version'"
    [ ! -s "$tmp/err" ] || fail "mmkit $v wrote to stderr: $(cat "$tmp/err")"
done

# help / --help / -h list every command
for h in help --help -h; do
    run "$h"
    expect_rc 0 "mmkit $h"
    grep -q '^usage: mmkit' "$tmp/out" || fail "mmkit $h has no usage line
$(show)"
    for c in demo version help; do
        grep -q "^  $c " "$tmp/out" || fail "mmkit $h does not list '$c'
$(show)"
    done
done

# no command: the help text, and a usage error status
run
expect_rc 2 "mmkit with no command"
grep -q '^usage: mmkit' "$tmp/out" || fail "mmkit with no command prints no usage
$(show)"

# an unknown command: exactly one line on stderr, nothing on stdout, status 2
run no-such-command
expect_rc 2 "mmkit no-such-command"
[ ! -s "$tmp/out" ] || fail "mmkit no-such-command wrote to stdout
$(show)"
[ "$(wc -l < "$tmp/err")" -eq 1 ] || fail "mmkit no-such-command: expected one line on stderr
$(show)"
grep -q '^mmkit: .*no-such-command' "$tmp/err" || fail "the error does not name the command
$(show)"

# demo fault: the chapter runs and ends well
run demo fault
expect_rc 0 "mmkit demo fault"
grep -q '^fault router: ok$' "$tmp/out" || fail "mmkit demo fault did not print 'fault router: ok'
$(show)"

# demo snapshot: the regions chapter runs and ends well
run demo snapshot
expect_rc 0 "mmkit demo snapshot"
grep -q '^regions: ok$' "$tmp/out" || fail "mmkit demo snapshot did not print 'regions: ok'
$(show)"

# demo gc: the lazy collector chapter runs, faults, and keeps the list
run demo gc
expect_rc 0 "mmkit demo gc"
grep -q '^gc: ok$' "$tmp/out" || fail "mmkit demo gc did not print 'gc: ok'
$(show)"

# demo with a chapter that does not exist: an error, and the chapter list
run demo nosuch
[ "$rc" -ne 0 ] || fail "mmkit demo nosuch succeeded
$(show)"
[ -s "$tmp/err" ] || fail "mmkit demo nosuch gave no message on stderr
$(show)"
grep -q 'fault' "$tmp/err" || fail "mmkit demo nosuch does not list the chapters
$(show)"

echo "cli.sh: ok"
