#!/bin/sh
# examples.sh BUILD - run the example programs in BUILD/examples and check
# what they print.  An example with no case below is run without arguments
# and must exit 0; one that needs arguments, or that is meant to crash, gets
# its own case.  Run from the repository root.
# Exit 0 pass, 77 skip, anything else fail.
set -eu

B=${1:-build}
[ -d "$B/examples" ] || { echo "examples.sh: skip: $B/examples not built" >&2; exit 77; }
B=$(cd "$B" && pwd)

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM

fail() {
    echo "examples.sh: FAIL: $*" >&2
    exit 1
}

to=""
command -v timeout > /dev/null 2>&1 && to="timeout 120"

# run NAME ARGS... : run BUILD/examples/NAME in $tmp with core dumps off (a
# crash leaves nothing in the source tree), keep stdout, stderr and the exit
# status.
run() {
    name=$1
    shift
    rc=0
    # The outer subshell is the one that waits, so the shell's own
    # "Segmentation fault" remark goes to /dev/null, not to the log.
    # Reports are named by this build's `mmkit symbolize`.
    ( (cd "$tmp" && ulimit -c 0 && MMKIT_SYMBOLIZER="$B/mmkit" exec $to "$B/examples/$name" "$@") \
        > "$tmp/out" 2> "$tmp/err" ) 2> /dev/null || rc=$?
}
show() {
    printf -- '--- stdout\n%s\n--- stderr\n%s\n' "$(cat "$tmp/out")" "$(cat "$tmp/err")"
}
expect_rc() { # status what
    [ "$rc" -eq "$1" ] || fail "$2: exit status $rc, expected $1
$(show)"
}
expect_out() { # pattern what
    grep -q -- "$1" "$tmp/out" || fail "$2: stdout has no line matching '$1'
$(show)"
}
expect_err() { # pattern what
    grep -q -- "$1" "$tmp/err" || fail "$2: stderr has no line matching '$1'
$(show)"
}

ran=0
for exe in "$B"/examples/*; do
    [ -f "$exe" ] && [ -x "$exe" ] || continue
    name=${exe##*/}
    case $name in
    cow_list)
        # The list and two snapshots of it, all read at once: exactly this.
        run cow_list
        expect_rc 0 cow_list
        [ "$(cat "$tmp/out")" = "list 1,2,3,4   s1 1,2   s2 1,2,3" ] ||
            fail "cow_list printed the wrong columns
$(show)"
        [ ! -s "$tmp/err" ] || fail "cow_list wrote to stderr
$(show)"
        ;;
    message_builder)
        # Takes FILE and MESSAGES; its default file is in /tmp, so name one.
        run message_builder "$tmp/messages.bin" 500
        expect_rc 0 message_builder
        expect_out "^built 500 messages, [0-9]* bytes, in $tmp/messages.bin" message_builder
        expect_out '^read back 500 messages with read(2): all match$' message_builder
        bytes=$(sed -n 's/^built 500 messages, \([0-9]*\) bytes.*/\1/p' "$tmp/out")
        [ "$(wc -c < "$tmp/messages.bin" | tr -d ' ')" = "$bytes" ] ||
            fail "message_builder: the file is not trimmed to the $bytes bytes used
$(show)"
        ;;
    stray_write)
        # Meant to crash: the stray write is reported, then SIGSEGV (128 + 11).
        run stray_write
        expect_rc 139 "stray_write (default policy)"
        expect_out '^running the rounding plugin' stray_write
        ! grep -q 'still running' "$tmp/out" || fail "stray_write survived its stray write
$(show)"
        expect_err '^mmkit: stray write at 0x[0-9a-f]* (mirror 0x[0-9a-f]*, offset 32)$' stray_write
        # The culprit's frame first, by name and source line; main below it.
        culprit=$(grep -n 'p->value = (double)(long)' examples/stray_write.c | cut -d: -f1)
        caller=$(grep -n 'plugin_round(view); /\* the stray write' examples/stray_write.c | cut -d: -f1)
        sed -n 2p "$tmp/err" | grep -q "^    #0 plugin_round (stray_write.c:$culprit) \[" ||
            fail "stray_write: the first frame is not plugin_round (stray_write.c:$culprit)
$(show)"
        expect_err "^    #[1-9] main (stray_write.c:$caller) \[" stray_write
        # Watch mode (x86-64 only): reported, allowed, and the program goes on.
        if [ "$(uname -m)" = x86_64 ]; then
            run stray_write --watch
            expect_rc 0 "stray_write --watch"
            expect_err '^mmkit: watched write at 0x[0-9a-f]* (mirror 0x[0-9a-f]*, offset 32)$' \
                "stray_write --watch"
            expect_out '^still running (watch mode): GLOBEX is now 100.00, 1 stray write logged$' \
                "stray_write --watch"
            expect_err "^    #0 plugin_round (stray_write.c:$culprit) \[" "stray_write --watch"
        fi
        ;;
    lazy_gc)
        # Five lazy collections, each checked against the graph as it was
        # before; the program reads 1%, 10%, 50%, all, none of it in between.
        n='[0-9][0-9]*'
        line="^gc $n: $n live objects, $n bytes copied, pause $n us, $n faults after, $n pages left to finish; stop-the-world pause $n\.$n ms ($n\.$n*x); checked$"
        run lazy_gc
        expect_rc 0 lazy_gc
        [ "$(grep -c "$line" "$tmp/out")" = 5 ] || fail "lazy_gc: not 5 checked collections
$(show)"
        expect_out '^lazy_gc: 5 lazy collections, every check passed$' lazy_gc
        # A collection followed by reads takes faults; one read in full leaves
        # nothing to gc_finish; one followed by no reads takes no fault.
        expect_out "^gc 1: .*, [1-9][0-9]* faults after, [1-9][0-9]* pages left" lazy_gc
        expect_out "^gc 4: .*, [1-9][0-9]* faults after, 0 pages left" lazy_gc
        expect_out "^gc 5: .*, 0 faults after, [1-9][0-9]* pages left" lazy_gc
        [ ! -s "$tmp/err" ] || fail "lazy_gc wrote to stderr
$(show)"
        run lazy_gc --stw
        expect_rc 0 "lazy_gc --stw"
        [ "$(grep -c "^gc $n: $n live objects, $n bytes copied, stop-the-world pause $n\.$n ms; checked$" "$tmp/out")" = 5 ] ||
            fail "lazy_gc --stw: not 5 checked collections
$(show)"
        # The checks can fail: one byte changed after collection 2 is found.
        run lazy_gc --break
        expect_rc 1 "lazy_gc --break"
        expect_out '^gc 2: check FAILED: the live graph changed' "lazy_gc --break"
        expect_out '^lazy_gc: 5 lazy collections, SOME CHECKS FAILED$' "lazy_gc --break"
        ;;
    *)
        run "$name"
        expect_rc 0 "$name (no arguments)"
        ;;
    esac
    ran=$((ran + 1))
done
[ "$ran" -gt 0 ] || { echo "examples.sh: skip: no example built in $B/examples" >&2; exit 77; }

echo "examples.sh: ok ($ran examples)"
