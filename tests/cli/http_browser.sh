#!/bin/sh
# http_browser.sh BUILD - the live page in a real browser: Debian's headless
# Chromium driven by puppeteer-core (tests/browser/page.mjs).  The page shows
# a segment made before it loaded, one made after it appears without a
# reload, a write marks its bar, a remove takes it away, and it makes no
# request after load but its one event stream; and, against the feed driver
# that can cut streams, it reconnects by itself with Last-Event-ID and
# misses nothing.  Screenshot: BUILD/http-page.png.  Skipped (77) without node, Chromium or puppeteer-core.
set -eu
B=${1:-build}
command -v node >/dev/null 2>&1 || { echo "http_browser.sh: skip: no node" >&2; exit 77; }
[ -d tests/browser/node_modules/puppeteer-core ] ||
    { echo "http_browser.sh: skip: puppeteer-core missing (npm ci --prefix tests/browser)" >&2; exit 77; }
tmp=$(mktemp -d)
trap 'feed_stop; server_stop; rm -rf "$tmp"' EXIT INT TERM
. tests/cli/http.inc

# 1. The real server; segments changed with mmkit seg.
if [ -x "$B/mmkit" ]; then
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
    chmod +x "$tmp/act"
    MMKIT_ACT=$tmp/act node tests/browser/page.mjs "$url" "$B/http-page.png" || exit $?
    server_stop
fi

# 2. The feed driver, which can cut every stream: the page reconnects by
# itself and resumes with Last-Event-ID.
feed_start
cat > "$tmp/act2" <<ACT
#!/bin/sh
echo "\$*" > "$tmp/feed.in"
ACT
chmod +x "$tmp/act2"
MMKIT_ACT=$tmp/act2 MMKIT_KICK=1 node tests/browser/page.mjs "$url" "$B/http-page-reconnect.png"
