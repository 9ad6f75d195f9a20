#!/bin/sh
# server_browser.sh BUILD - mmkitd's live page in a real browser: headless
# Chromium (Debian's chromium-headless-shell) driven by puppeteer-core
# (npm, installed into BUILD/npm).  A screenshot goes to
# BUILD/server-page.png.  Skipped (77) when Chromium or Node is missing.
set -eu

B=${1:-build}
mmkit=$B/mmkit
[ -x "$mmkit" ] || { echo "server_browser.sh: skip: $mmkit not built" >&2; exit 77; }
chromium=$(command -v chromium-headless-shell || command -v chromium || true)
[ -n "$chromium" ] || { echo "server_browser.sh: skip: no chromium-headless-shell" >&2; exit 77; }
command -v node > /dev/null 2>&1 || { echo "server_browser.sh: skip: no node" >&2; exit 77; }
if [ ! -d "$B/npm/node_modules/puppeteer-core" ]; then
    mkdir -p "$B/npm"
    # puppeteer-core 23 is the last major that runs on Debian 12's Node 18/20.
    (cd "$B/npm" && npm install --prefix . puppeteer-core@23 --no-audit --no-fund > /dev/null 2>&1) ||
        { echo "server_browser.sh: skip: cannot install puppeteer-core" >&2; exit 77; }
fi

tmp=$(mktemp -d)
sock=$tmp/sock
cleanup() {
    # page.js restarts the server: the pid file names the current one.
    p=$(cat "$tmp/pid" 2>/dev/null || true)
    case $p in ''|*[!0-9]*|0|1) p="" ;; esac # never kill 0: that is the whole group
    if [ -n "$p" ]; then
        kill "$p" 2>/dev/null || true
        i=0
        while kill -0 "$p" 2>/dev/null && [ $i -lt 250 ]; do i=$((i + 1)); sleep 0.02; done
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT INT TERM
fail() { echo "server_browser.sh: FAIL: $*" >&2; exit 1; }

port=$(node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')
"$mmkit" server --daemon --quiet --socket "$sock" --state-dir "$tmp/state" --http "127.0.0.1:$port" > "$tmp/pid" ||
    fail "server did not start"
grep -Eq '^[0-9]+$' "$tmp/pid" || fail "server --daemon printed no pid: $(cat "$tmp/pid")"
i=0
until "$mmkit" seg ls --socket "$sock" > /dev/null 2>&1; do
    i=$((i + 1)); [ $i -lt 300 ] || fail "server did not start"; sleep 0.02
done
"$mmkit" seg create before 1M --mode 0644 --socket "$sock"

abs() { case $1 in /*) echo "$1" ;; *) echo "$PWD/$1" ;; esac; }
NODE_PATH=$(abs "$B/npm/node_modules") node tests/browser/page.js "http://127.0.0.1:$port" \
    "$(abs "$mmkit")" "$sock" "$(abs "$B/server-page.png")" "$chromium" "$tmp/pid" "$tmp/state" "$port" ||
    fail "the page test failed"
[ -s "$B/server-page.png" ] || fail "no screenshot"
exit 0
