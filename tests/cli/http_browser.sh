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
trap 'feed_stop; server_stop; rm -rf "$tmp"' EXIT INT TERM
. tests/cli/http.inc

if [ -x "$B/mmkit" ]; then
    # The real server; segments changed with mmkit seg.
    server_start
    cat > "$tmp/act" <<ACT
#!/bin/sh
s="--socket $tmp/sock"
case "\$1" in
create) exec "$B/mmkit" seg create "\$2" "\$3" --mode "0\$4" \$s > /dev/null ;;
write) head -c "\$4" /dev/zero | exec "$B/mmkit" seg write "\$2" --offset "\$3" \$s > /dev/null ;;
remove) exec "$B/mmkit" seg rm "\$2" \$s ;;
esac
ACT
else
    feed_start
    cat > "$tmp/act" <<ACT
#!/bin/sh
echo "\$*" > "$tmp/feed.in"
ACT
fi
chmod +x "$tmp/act"
rc=0
MMKIT_ACT=$tmp/act node tests/browser/page.mjs "$url" "$B/http-page.png" || rc=$?
exit $rc
