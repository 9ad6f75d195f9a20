#!/bin/sh
# http_server.sh BUILD - `mmkit server --http` end to end: curl -N /events
# receives create, write and remove events for a segment created, written
# and removed by `mmkit seg` while it listens; resume with Last-Event-ID;
# ?segment= filter; only other-readable segments; --http-all; loopback only
# without --http-any.
set -eu
B=${1:-build}
command -v curl >/dev/null 2>&1 || { echo "http_server.sh: skip: no curl" >&2; exit 77; }
tmp=$(mktemp -d)
trap 'server_stop; kill $(jobs -p) 2>/dev/null || true; rm -rf "$tmp"' EXIT INT TERM
. tests/cli/http.inc

fail() { echo "http_server.sh: FAIL: $*" >&2; exit 1; }
server_start
listen "$tmp/all" /events
listen "$tmp/two" '/events?segment=two'
seg create one 64K --mode 0644
seg create two 4K --mode 0644
seg create private 4K --mode 0600
printf 'hello' | seg write one --offset 4096
seg publish one --offset 0 --length 16
seg rm two
seg rm one
wait_for "$tmp/all" '"name":"one".*' 
wait_for "$tmp/two" '^event: remove'
i=0
until [ "$(grep -c '^event: remove' "$tmp/all")" -eq 2 ]; do
    i=$((i + 1)); [ "$i" -lt 250 ] || fail "both removes not seen: $(cat "$tmp/all")"; sleep 0.02
done
grep -qi '^content-type: text/event-stream' "$tmp/all.head" || fail "content type"
kinds=$(sed -n 's/^event: //p' "$tmp/all" | tr '\n' ' ')
# seg write opens the segment (attach), writes and publishes, and closes (detach).
[ "$kinds" = "create create attach write detach write remove remove " ] || fail "events: $kinds"
grep -q '^data: {"name":"one",.*"offset":4096,"length":5}$' "$tmp/all" || fail "write range: $(cat "$tmp/all")"
grep -q '^data: {"name":"one",.*"version":2,.*"offset":0,"length":16}$' "$tmp/all" || fail "publish range"
! grep -q private "$tmp/all" || fail "a 0600 segment was shown"
names=$(sed -n 's/^data: {"name":"\([^"]*\)".*/\1/p' "$tmp/two" | sort -u | tr '\n' ' ')
[ "$names" = "two " ] || fail "?segment=two got: $names"
# Ids are the server's sequence numbers: the hidden segment leaves a gap.
ids=$(sed -n 's/^id: //p' "$tmp/all" | tr '\n' ' ')
[ "$ids" = "1 2 4 5 6 7 8 9 " ] || fail "ids: $ids"

# Resume after 5: 6..9 again.
curl -s -N --max-time 1 -H 'Last-Event-ID: 5' "${url}events" > "$tmp/resume" || true
[ "$(sed -n 's/^id: //p' "$tmp/resume" | tr '\n' ' ')" = "6 7 8 9 " ] || fail "resume: $(cat "$tmp/resume")"

# The JSON views follow the table.
seg create three 1M --mode 0644
[ "$(curl -s "${url}segments")" = "$(printf '[{"name":"three","size":1048576,"mode":"0644","owner":%s,"group":%s,"version":0,"holders":0,"subscribers":0}]' "$(id -u)" "$(id -g)")" ] ||
    fail "/segments: $(curl -s "${url}segments")"
[ "$(curl -s -o /dev/null -w '%{http_code}' "${url}segments/private")" = 404 ] || fail "/segments/private"
server_stop

# --http-all shows a 0600 segment; a non-loopback address needs --http-any.
server_start --http-all
seg create private 4K --mode 0600
curl -s "${url}segments/private" | grep -q '"mode":"0600"' || fail "--http-all"
server_stop
if "$mmkit" server --socket "$tmp/sock2" --http 0.0.0.0:0 2> "$tmp/any.err"; then
    fail "the server listened on 0.0.0.0 without --http-any"
fi
grep -q 'http-any' "$tmp/any.err" || fail "no hint at --http-any: $(cat "$tmp/any.err")"
echo "http_server.sh: ok"
