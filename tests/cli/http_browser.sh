#!/bin/sh
# http_browser.sh BUILD - the live page in a real browser: Debian's headless
# Chromium driven by puppeteer-core (tests/browser/page.mjs).  The page shows
# a segment made before it loaded, one made after it appears without a
# reload, a write marks its bar, a remove takes it away, and it makes no
# request after load but its one event stream.  Screenshot:
# BUILD/http-page.png.  Skipped (77) without node, Chromium or puppeteer-core.
set -eu
B=${1:-build}
command -v node >/dev/null 2>&1 || { echo "http_browser.sh: skip: no node" >&2; exit 77; }
[ -d tests/browser/node_modules/puppeteer-core ] ||
    { echo "http_browser.sh: skip: puppeteer-core missing (npm ci --prefix tests/browser)" >&2; exit 77; }
tmp=$(mktemp -d)
trap 'feed_stop; rm -rf "$tmp"' EXIT INT TERM
. tests/cli/http.inc

feed_start
cat > "$tmp/act" <<ACT
#!/bin/sh
echo "\$*" > "$tmp/feed.in"
ACT
chmod +x "$tmp/act"
rc=0
MMKIT_ACT=$tmp/act node tests/browser/page.mjs "$url" "$B/http-page.png" || rc=$?
exit $rc
