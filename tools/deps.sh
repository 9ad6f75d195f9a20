#!/bin/sh
# Check the Debian packages that mmkit's tests and benchmarks need.  As root,
# install what is missing; otherwise print the exact apt-get line and fail.
missing=""
pkg-config --exists criterion 2>/dev/null || missing="$missing libcriterion-dev"
[ -f /usr/include/sigsegv.h ] || missing="$missing libsigsegv-dev"
# HTTP push feed: libmicrohttpd builds it, curl drives its tests.
[ -f /usr/include/microhttpd.h ] || missing="$missing libmicrohttpd-dev"
command -v curl >/dev/null 2>&1 || missing="$missing curl"
command -v pkg-config >/dev/null 2>&1 || missing="$missing pkgconf"
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "mmkit: installing Debian packages:$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null || true
    # shellcheck disable=SC2086
    apt-get install -y -q $missing >/dev/null && exit 0
    echo "mmkit: apt-get install failed" >&2
    exit 1
fi
echo "mmkit: missing Debian packages; run:" >&2
echo "    sudo apt-get install -y$missing" >&2
exit 1
