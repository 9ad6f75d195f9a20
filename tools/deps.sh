#!/bin/sh
# Check the Debian packages that mmkit's tests and benchmarks need.  As root,
# install what is missing; otherwise print the exact apt-get line and fail.
missing=""
if [ "${1:-}" = fuzz ]; then # `make fuzz`: clang with libFuzzer, and libdw
    command -v clang >/dev/null 2>&1 || missing="$missing clang"
    [ -n "$(ls /usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.fuzzer-*.a 2>/dev/null)" ] ||
        missing="$missing libclang-rt-dev"
fi
[ -f /usr/include/elfutils/libdwfl.h ] || missing="$missing libdw-dev"
if [ "${1:-}" != build ]; then # `deps.sh build`: only what the library needs
command -v objcopy >/dev/null 2>&1 || missing="$missing binutils"
pkg-config --exists criterion 2>/dev/null || missing="$missing libcriterion-dev"
[ -f /usr/include/sigsegv.h ] || missing="$missing libsigsegv-dev"
# HTTP push feed: libmicrohttpd builds it, curl drives its tests.
[ -f /usr/include/microhttpd.h ] || missing="$missing libmicrohttpd-dev"
command -v curl >/dev/null 2>&1 || missing="$missing curl"
command -v pkg-config >/dev/null 2>&1 || missing="$missing pkgconf"
# SysV shm: Python's sysv_ipc is the unmodified client of tests/cli/shm_python.sh.
/usr/bin/python3 -c 'import sysv_ipc' 2>/dev/null || missing="$missing python3-sysv-ipc"
fi
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
