#!/bin/sh
# server.sh BUILD - mmkitd end to end through the CLI: a private server,
# seg create/ls/stat/write/cat/publish/grow/rm, watch, errors, --daemon,
# and a restart with --state-dir.  Exit 0 pass, 77 skip, else fail.
set -eu

B=${1:-build}
mmkit=$B/mmkit
[ -x "$mmkit" ] || { echo "server.sh: skip: $mmkit not built" >&2; exit 77; }

tmp=$(mktemp -d)
sock=$tmp/sock
pid=""
wpid=""
cleanup() {
    [ -n "$wpid" ] && kill "$wpid" 2>/dev/null || true
    [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

fail() {
    echo "server.sh: FAIL: $*" >&2
    exit 1
}

start() { # extra server arguments...
    "$mmkit" server --quiet --socket "$sock" "$@" &
    pid=$!
    i=0
    until "$mmkit" seg ls --socket "$sock" > /dev/null 2>&1; do
        i=$((i + 1))
        [ $i -lt 300 ] || fail "server did not start"
        kill -0 "$pid" 2>/dev/null || fail "server exited at start"
        sleep 0.02
    done
}

stop() {
    kill -TERM "$pid"
    wait "$pid" || fail "server did not exit cleanly on SIGTERM"
    pid=""
}

m() { "$mmkit" "$@" --socket "$sock"; }

start --state-dir "$tmp/state"

# create, with size suffixes and a mode
m seg create alpha 64K --mode 0640
m seg create beta 1M
m seg create gamma 0
m seg stat alpha | grep -q '^alpha .* 65536 0640 ' || fail "stat alpha: $(m seg stat alpha)"
m seg stat beta --json | grep -q '"size":1048576' || fail "stat --json beta: $(m seg stat beta --json)"
[ "$(m seg ls | wc -l)" -eq 3 ] || fail "ls shows $(m seg ls | wc -l) segments, expected 3"
m seg ls --json | grep -q '^\[{"name":"alpha"' || fail "ls --json: $(m seg ls --json)"

# errors: one line, non-zero status
if m seg create alpha 4K 2> "$tmp/err"; then fail "creating alpha twice succeeded"; fi
[ "$(wc -l < "$tmp/err")" -eq 1 ] || fail "error is not one line: $(cat "$tmp/err")"
grep -q 'exists' "$tmp/err" || fail "unexpected error text: $(cat "$tmp/err")"
if m seg stat nosuch 2> "$tmp/err"; then fail "stat of a missing segment succeeded"; fi
if m seg create bad 12Q 2> /dev/null; then fail "a bad size was accepted"; fi
if m seg create 'a/b' 4K 2> /dev/null; then fail "a bad name was accepted"; fi
if "$mmkit" seg ls --socket "$tmp/nothing" 2> "$tmp/err"; then fail "ls without a server succeeded"; fi
grep -q 'cannot reach the server' "$tmp/err" || fail "no-server error: $(cat "$tmp/err")"

# watch prints events as they arrive
m watch alpha --count 4 > "$tmp/watch" &
wpid=$!
i=0
until m seg stat alpha | grep -q 'subscribers 1'; do
    i=$((i + 1)); [ $i -lt 300 ] || fail "watch never subscribed"; sleep 0.02
done
printf 'hello, segment' | m seg write alpha --offset 100
m seg publish alpha --offset 0 --length 16 > /dev/null
wait "$wpid" || fail "watch failed"
wpid=""
grep -q ' write alpha .* offset 100 length 14 ' "$tmp/watch" || fail "watch output: $(cat "$tmp/watch")"
grep -q ' write alpha .* offset 0 length 16 ' "$tmp/watch" || fail "watch output: $(cat "$tmp/watch")"
grep -q ' attach alpha ' "$tmp/watch" || fail "no attach event: $(cat "$tmp/watch")"

# watch --json: one object per line
m watch --json --count 1 > "$tmp/watch.json" &
wpid=$!
sleep 0.2
m seg create delta 4K
wait "$wpid" || fail "watch --json failed"
wpid=""
grep -q '^{"seq":[0-9]*,"event":"create",.*"name":"delta"' "$tmp/watch.json" || fail "watch --json: $(cat "$tmp/watch.json")"

# cat gives the bytes back; write past the end fails
[ "$(m seg cat alpha | dd bs=1 skip=100 count=14 2>/dev/null)" = "hello, segment" ] || fail "cat alpha"
[ "$(m seg cat alpha | wc -c)" -eq 65536 ] || fail "cat alpha length"
if head -c 5000 /dev/zero | m seg write alpha --offset 63000 2> /dev/null; then fail "a write past the end succeeded"; fi
m seg grow gamma 8K
m seg stat gamma | grep -q ' 8192 ' || fail "grow gamma: $(m seg stat gamma)"

# restart with the state dir: contents back
stop
start --state-dir "$tmp/state"
[ "$(m seg cat alpha | dd bs=1 skip=100 count=14 2>/dev/null)" = "hello, segment" ] || fail "contents lost over a restart"
m seg stat alpha | grep -q ' 0640 ' || fail "mode lost over a restart"

# rm
m seg rm beta
if m seg stat beta 2> /dev/null; then fail "beta still there after rm"; fi
stop

# --daemon detaches and prints the pid; SIGTERM stops it
dpid=$("$mmkit" server --daemon --quiet --socket "$sock")
case $dpid in ''|*[!0-9]*|0|1) fail "--daemon printed '$dpid', not a pid" ;; esac # kill 0 would hit the group
kill -0 "$dpid" || fail "--daemon printed '$dpid', which is not running"
m seg create via-daemon 4K || fail "daemon does not serve"
kill -TERM "$dpid"
i=0
while kill -0 "$dpid" 2>/dev/null; do
    i=$((i + 1)); [ $i -lt 300 ] || fail "daemon ignores SIGTERM"; sleep 0.02
done
[ ! -e "$sock" ] || fail "the daemon left its socket behind"
exit 0
