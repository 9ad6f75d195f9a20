#!/bin/sh
# server_http.sh BUILD - mmkitd's HTTP feed with curl: /events (SSE) sees
# create, write and remove done with `mmkit seg` while it listens; content
# types; Last-Event-ID resume and reset; ?segment= filter; /segments and
# /segments/NAME; only other-readable segments unless --http-all; the error
# statuses 400, 404, 405, 431; loopback only without --http-any.
set -eu

B=${1:-build}
mmkit=$B/mmkit
[ -x "$mmkit" ] || { echo "server_http.sh: skip: $mmkit not built" >&2; exit 77; }
command -v curl > /dev/null 2>&1 || { echo "server_http.sh: skip: no curl" >&2; exit 77; }

tmp=$(mktemp -d)
sock=$tmp/sock
pid=""
cpid=""
cleanup() {
    [ -n "$cpid" ] && kill "$cpid" 2>/dev/null || true
    [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT INT TERM
fail() { echo "server_http.sh: FAIL: $*" >&2; exit 1; }

# A free port: ask the kernel for one through a throwaway listener.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null || echo 18000)
url=http://127.0.0.1:$port

start() {
    "$mmkit" server --quiet --socket "$sock" --http "127.0.0.1:$port" "$@" &
    pid=$!
    i=0
    until curl -s -o /dev/null "$url/segments"; do
        i=$((i + 1)); [ $i -lt 300 ] || fail "server with --http did not start"
        kill -0 "$pid" 2>/dev/null || fail "server exited at start"
        sleep 0.02
    done
}
stop() { kill -TERM "$pid"; wait "$pid" || fail "server exit status"; pid=""; }
m() { "$mmkit" "$@" --socket "$sock"; }
status() { curl -s -o /dev/null -w '%{http_code}' "$@"; }

start
m seg create public 64K --mode 0644
m seg create private 4K --mode 0600

# /segments: JSON, only what "other" may read
curl -s -D "$tmp/h" "$url/segments" > "$tmp/b"
grep -qi '^content-type: application/json' "$tmp/h" || fail "/segments content type: $(cat "$tmp/h")"
grep -q '"name":"public"' "$tmp/b" || fail "/segments lacks public: $(cat "$tmp/b")"
if grep -q private "$tmp/b"; then fail "/segments shows a 0600 segment"; fi
curl -s "$url/segments/public" | grep -q '^{"name":"public","size":65536,"mode":"0644"' || fail "/segments/public"
[ "$(status "$url/segments/private")" = 404 ] || fail "/segments/private is not 404"
[ "$(status "$url/segments/nosuch")" = 404 ] || fail "/segments/nosuch is not 404"
curl -s "$url/segments/nosuch" | grep -q '"error"' || fail "404 body is not a JSON error"

# errors
[ "$(status "$url/nowhere")" = 404 ] || fail "unknown path"
[ "$(status -X POST "$url/segments")" = 405 ] || fail "POST is not 405"
[ "$(status -X DELETE "$url/events")" = 405 ] || fail "DELETE is not 405"
[ "$(status -H 'Last-Event-ID: x' "$url/events" --max-time 2)" = 400 ] || fail "bad Last-Event-ID is not 400"
big=$(head -c 9000 /dev/zero | tr '\0' a)
[ "$(status -H "X-Big: $big" "$url/segments")" = 431 ] || fail "a 9 KB header is not 431"

# the page: one self-contained document
curl -s -D "$tmp/h" "$url/" > "$tmp/page"
grep -qi '^content-type: text/html' "$tmp/h" || fail "/ content type"
grep -q "new EventSource('/events')" "$tmp/page" || fail "the page has no EventSource"
if grep -E '<script[^>]+src=|<link[^>]+href=|https?://' "$tmp/page" | grep -v -e 'http://www.w3.org/2000/svg' -e 'href="data:,"' | grep -q .; then
    fail "the page loads something external"
fi

# /events while segments are created, written and removed
curl -s -N -D "$tmp/eh" "$url/events" > "$tmp/ev" &
cpid=$!
sleep 0.3
m seg create live 4K --mode 0644
printf 'pushed' | m seg write live --offset 8
m seg rm live
m seg create hidden 4K --mode 0600
m seg rm hidden
i=0
until grep -q 'event: remove' "$tmp/ev"; do
    i=$((i + 1)); [ $i -lt 300 ] || fail "no remove event: $(cat "$tmp/ev")"; sleep 0.02
done
kill "$cpid"; wait "$cpid" 2>/dev/null || true; cpid=""
grep -qi '^content-type: text/event-stream' "$tmp/eh" || fail "/events content type: $(cat "$tmp/eh")"
grep -q '^event: create$' "$tmp/ev" || fail "no create event"
grep -A1 '^event: write$' "$tmp/ev" | grep -q '^data: {"name":"live",.*"offset":8,"length":6' || fail "write event: $(cat "$tmp/ev")"
grep -q '^id: [0-9][0-9]*$' "$tmp/ev" || fail "events carry no id"
if grep -q hidden "$tmp/ev"; then fail "an 0600 segment's events were served"; fi
first=$(grep '^id: ' "$tmp/ev" | head -1 | cut -d' ' -f2)

# Last-Event-ID: what came after it, from the backlog
curl -s -N --max-time 1 -H "Last-Event-ID: $first" "$url/events" > "$tmp/resume" || true
[ "$(grep -c '^event: ' "$tmp/resume")" -eq "$(($(grep -c '^event: ' "$tmp/ev") - 1))" ] || fail "resume after $first: $(cat "$tmp/resume")"

# ?segment= filter
curl -s -N --max-time 2 "$url/events?segment=other" > "$tmp/filtered" &
cpid=$!
sleep 0.3
m seg create other 4K --mode 0644
m seg create notthis 4K --mode 0644
wait "$cpid" 2>/dev/null || true; cpid=""
grep -q '"name":"other"' "$tmp/filtered" || fail "filter lost its segment: $(cat "$tmp/filtered")"
if grep -q notthis "$tmp/filtered"; then fail "filter let another segment through"; fi
stop

# a restart: old ids get a reset; --http-all shows 0600 segments; an idle
# stream gets heartbeat comments
start --http-all --http-heartbeat 200
curl -s -N --max-time 1 "$url/events" > "$tmp/beat" || true
grep -q '^: heartbeat$' "$tmp/beat" || fail "no heartbeat on an idle stream: $(cat "$tmp/beat")"
curl -s -N --max-time 1 -H "Last-Event-ID: 3" "$url/events" > "$tmp/reset" || true
grep -q '^event: reset$' "$tmp/reset" || fail "no reset for an id the backlog no longer has: $(cat "$tmp/reset")"
m seg create secret 4K --mode 0600
curl -s "$url/segments" | grep -q '"name":"secret"' || fail "--http-all does not show 0600 segments"
stop

# only loopback unless --http-any
if "$mmkit" server --quiet --socket "$sock" --http 0.0.0.0:$port 2> "$tmp/err"; then fail "a non-loopback address was accepted"; fi
grep -q 'loopback' "$tmp/err" || fail "no reason given: $(cat "$tmp/err")"
exit 0
