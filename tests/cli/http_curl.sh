#!/bin/sh
# http_curl.sh BUILD - the HTTP feed seen by curl: an event stream that gets
# create, write and remove events as they happen (content type and event
# format checked), Last-Event-ID resume and reset, ?segment= filters, the
# JSON views, which segments are shown, and the error statuses.
set -eu
B=${1:-build}
command -v curl >/dev/null 2>&1 || { echo "http_curl.sh: skip: no curl" >&2; exit 77; }
tmp=$(mktemp -d)
trap 'feed_stop; kill $(jobs -p) 2>/dev/null || true; rm -rf "$tmp"' EXIT INT TERM
. tests/cli/http.inc

fail() { echo "http_curl.sh: FAIL: $*" >&2; exit 1; }

# status METHOD PATH [curl args...]: print the HTTP status.
status() {
    m=$1 p=$2
    shift 2
    curl -s -o "$tmp/body" -w '%{http_code}' -X "$m" "$@" "$url${p#/}"
}

feed_start --heartbeat-ms 300 --backlog 8

# --- a stream sees create, write, remove as they happen ----------------------
listen "$tmp/all" /events
listen "$tmp/only_a" '/events?segment=a'
feed create a 65536 644
feed create b 4096 644
feed write a 100 200
feed attach a
feed remove b
feed remove a
wait_for "$tmp/all" '^event: remove'
sleep 0.4
grep -qi '^content-type: text/event-stream' "$tmp/all.head" || fail "content type: $(cat "$tmp/all.head")"
grep -q '^: heartbeat' "$tmp/all" || fail "no heartbeat comment in $(cat "$tmp/all")"
# Events in order, each "id: N", "event: KIND", "data: {...}", blank line.
kinds=$(sed -n 's/^event: //p' "$tmp/all" | tr '\n' ' ')
[ "$kinds" = "create create write attach remove remove " ] || fail "kinds: $kinds"
ids=$(sed -n 's/^id: //p' "$tmp/all" | tr '\n' ' ')
[ "$ids" = "1 2 3 4 5 6 " ] || fail "ids: $ids"
awk '/^id: /{s=1; next} s==1 && /^event: /{s=2; next} s==2 && /^data: \{.*\}$/{s=3; next}
     s==3 && /^$/{n++; s=0; next} s!=0 {bad=1} END{exit !(n==6 && !bad)}' "$tmp/all" ||
    fail "event format: $(cat "$tmp/all")"
grep -q '^data: {"name":"a","size":65536,"mode":"0644",.*"version":1,.*"offset":100,"length":200}$' "$tmp/all" ||
    fail "write data: $(grep '^data' "$tmp/all")"
if command -v node >/dev/null 2>&1; then
    sed -n 's/^data: //p' "$tmp/all" |
        node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{for(const l of s.trim().split("\n"))JSON.parse(l)})' ||
        fail "data lines are not JSON"
fi
# The filter: only a's events.
wait_for "$tmp/only_a" '^event: remove'
names=$(sed -n 's/^data: {"name":"\([^"]*\)".*/\1/p' "$tmp/only_a" | sort -u | tr '\n' ' ')
[ "$names" = "a " ] || fail "?segment=a got: $names"

# --- resume ------------------------------------------------------------------
curl -s -N --max-time 1 -H 'Last-Event-ID: 3' "${url}events" > "$tmp/resume" || true
ids=$(sed -n 's/^id: //p' "$tmp/resume" | tr '\n' ' ')
[ "$ids" = "4 5 6 " ] || fail "resume after 3 gave ids: $ids"
curl -s -N --max-time 1 "${url}events?since=5" > "$tmp/since" || true
[ "$(sed -n 's/^id: //p' "$tmp/since" | tr '\n' ' ')" = "6 " ] || fail "since=5: $(cat "$tmp/since")"
curl -s -N --max-time 1 -H 'Last-Event-ID: 6' "${url}events" > "$tmp/uptodate" || true
! grep -q '^id: ' "$tmp/uptodate" || fail "resume at the end replayed: $(cat "$tmp/uptodate")"
# The backlog holds 8: after 10 more events, resuming after 3 is too old.
i=0
while [ $i -lt 10 ]; do feed create "c$i" 4096 644; i=$((i + 1)); done
curl -s -N --max-time 1 -H 'Last-Event-ID: 3' "${url}events" > "$tmp/old" || true
grep -q '^event: reset$' "$tmp/old" || fail "no reset for an id older than the backlog: $(cat "$tmp/old")"
grep -q '^data: {"seq":16,"after":3}$' "$tmp/old" || fail "reset data: $(cat "$tmp/old")"
curl -s -N --max-time 1 -H 'Last-Event-ID: 99' "${url}events" > "$tmp/future" || true
grep -q '^event: reset$' "$tmp/future" || fail "no reset for an id from the future"

# --- the JSON views; only other-readable segments ------------------------------
feed create secret 4096 640
[ "$(status GET /segments)" = 200 ] || fail "GET /segments"
grep -q '"name":"c0"' "$tmp/body" || fail "/segments lacks c0: $(cat "$tmp/body")"
! grep -q secret "$tmp/body" || fail "/segments shows a 0640 segment"
[ "$(status GET /segments/c1)" = 200 ] || fail "GET /segments/c1"
grep -q '^{"name":"c1","size":4096,"mode":"0644","owner":[0-9]*,"group":[0-9]*,"version":0,"holders":0,"subscribers":0}$' "$tmp/body" ||
    fail "segment JSON: $(cat "$tmp/body")"
[ "$(status GET /segments/secret)" = 404 ] || fail "a 0640 segment is not 404"
[ "$(status GET /segments/nosuch)" = 404 ] || fail "unknown segment"
grep -q '^{"error":"no such segment"}$' "$tmp/body" || fail "404 body: $(cat "$tmp/body")"
! grep -q secret "$tmp/all" || fail "the stream showed a 0640 segment"

# --- errors --------------------------------------------------------------------
[ "$(status GET /nope)" = 404 ] || fail "unknown path"
grep -q '"error"' "$tmp/body" || fail "404 without a JSON error"
[ "$(status POST /segments -d x=1)" = 405 ] || fail "POST"
[ "$(status DELETE /segments/c1)" = 405 ] || fail "DELETE"
[ "$(status GET /events -H 'Last-Event-ID: 12x')" = 400 ] || fail "bad Last-Event-ID"
[ "$(status GET '/events?since=-1')" = 400 ] || fail "bad since"
[ "$(status GET '/events?segment=')" = 400 ] || fail "empty filter"
big=$(head -c 9000 /dev/zero | tr '\0' a)
[ "$(status GET /segments -H "X-Big: $big")" = 431 ] || fail "a 9000-byte header is not refused with 431"
[ "$(curl -s -o /dev/null -w '%{http_code}' -I "$url")" = 200 ] || fail "HEAD /"
[ "$(status GET /)" = 200 ] || fail "GET /"
grep -q 'new EventSource' "$tmp/body" || fail "the page has no EventSource"
! grep -qi ' src=\|href="https\{0,1\}:\|href="//\|@import\|url(' "$tmp/body" ||
    fail "the page loads something from elsewhere"
feed_stop

# --- --all shows every segment; a non-loopback address needs --any -------------
feed_start --all
feed create secret 4096 600
[ "$(status GET /segments/secret)" = 200 ] || fail "--all does not show a 0600 segment"
feed_stop
if "$driver" --addr 0.0.0.0:0 < /dev/null > /dev/null 2> "$tmp/any.err"; then
    fail "listening on 0.0.0.0 without --any"
fi
grep -q 'Permission denied' "$tmp/any.err" || fail "0.0.0.0 refused with: $(cat "$tmp/any.err")"
echo "http_curl.sh: ok"
