#!/bin/sh
# install.sh BUILD - install mmkit into a scratch DESTDIR the way a distro
# package would (PREFIX=/usr), check every installed file, then build and run
# a small program against the installed copy only, and uninstall again.
# Run from the repository root.  Exit 0 pass, 77 skip, anything else fail.
set -eu

B=${1:-build}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM

fail() {
    echo "install.sh: FAIL: $*" >&2
    exit 1
}
need() {
    command -v "$1" > /dev/null 2>&1 || { echo "install.sh: skip: no $1" >&2; exit 77; }
}
need make
need cc
need readelf
need nm
need pkg-config

root=$tmp/root
usr=$root/usr
version=$(sed -n 's/^#define MMK_VERSION_STRING "\(.*\)"$/\1/p' include/mmkit.h)
soversion=$(sed -n 's/^SOVERSION *:= *//p' Makefile)
[ -n "$version" ] || fail "cannot read MMK_VERSION_STRING from include/mmkit.h"
[ -n "$soversion" ] || fail "cannot read SOVERSION from the Makefile"

# ---- make install ---------------------------------------------------------
if ! make -s B="$B" install PREFIX=/usr DESTDIR="$root" > "$tmp/make.log" 2>&1; then
    cat "$tmp/make.log" >&2
    fail "make install PREFIX=/usr DESTDIR=... failed"
fi

# ---- the files --------------------------------------------------------------
for f in include/mmkit.h lib/libmmkit.a "lib/libmmkit.so.$version" \
         lib/pkgconfig/mmkit.pc bin/mmkit share/man/man1/mmkit.1 share/man/man3/mmk_fault.3; do
    [ -f "$usr/$f" ] || fail "not installed: /usr/$f"
done
cmp -s include/mmkit.h "$usr/include/mmkit.h" || fail "installed mmkit.h differs from include/mmkit.h"
[ -x "$usr/bin/mmkit" ] || fail "/usr/bin/mmkit is not executable"
[ -x "$usr/lib/libmmkit.so.$version" ] || fail "libmmkit.so.$version is not executable (mode 755)"

link_is() { # link target
    [ -L "$usr/lib/$1" ] || fail "/usr/lib/$1 is not a symlink"
    got=$(readlink "$usr/lib/$1")
    [ "$got" = "$2" ] || fail "/usr/lib/$1 points to '$got', expected '$2'"
}
link_is "libmmkit.so.$soversion" "libmmkit.so.$version"
link_is libmmkit.so "libmmkit.so.$soversion"

soname=$(readelf -d "$usr/lib/libmmkit.so.$version" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
[ "$soname" = "libmmkit.so.$soversion" ] || fail "SONAME is '$soname', expected libmmkit.so.$soversion"

# Every man page in docs/man is installed in its section.
for m in docs/man/*.[13]; do
    [ -f "$m" ] || continue
    sec=${m##*.}
    cmp -s "$m" "$usr/share/man/man$sec/${m##*/}" || fail "man page ${m##*/} not installed in man$sec"
done
# Pages render without warnings (link pages are resolved from the install).
if command -v groff > /dev/null 2>&1; then
    for m in "$usr"/share/man/man1/* "$usr"/share/man/man3/*; do
        warn=$(cd "$usr/share/man" && groff -t -man -Tutf8 -ww -z "$m" 2>&1) ||
            fail "groff failed on ${m##*/}: $warn"
        [ -z "$warn" ] || fail "groff warnings in ${m##*/}: $warn"
    done
fi

# ---- exported symbols: mmk_* only, each declared in the header --------------
nm -D --defined-only "$usr/lib/libmmkit.so.$version" > "$tmp/syms" ||
    fail "nm -D failed on libmmkit.so.$version"
# Lines are "VALUE TYPE NAME[@@VERSION]"; type A is the version node itself.
awk '$2 != "A" { sub(/@.*/, "", $3); print $3 }' "$tmp/syms" > "$tmp/names"
[ -s "$tmp/names" ] || fail "libmmkit.so exports no symbols"
bad=$(grep -v '^mmk_[a-z]' "$tmp/names" || true)
[ -z "$bad" ] || fail "libmmkit.so exports names outside mmk_*: $(echo $bad)"
bad=$(grep '^mmk__' "$tmp/names" || true)
[ -z "$bad" ] || fail "libmmkit.so exports internal mmk__ names: $(echo $bad)"
while read -r name; do
    grep -q "[^a-z_]$name(" include/mmkit.h || fail "exported $name is not declared in mmkit.h"
done < "$tmp/names"
grep -q 'mmk_area_register' "$tmp/names" || fail "mmk_area_register is not exported"

# ---- pkg-config -----------------------------------------------------------
# PKG_CONFIG_LIBDIR (not _PATH) so that no mmkit.pc elsewhere on the system is
# found; the sysroot prefixes the -I/-L paths with the DESTDIR; ALLOW_SYSTEM
# keeps pkg-config from dropping -I/usr/include, which is ours here.
pc() {
    PKG_CONFIG_LIBDIR="$usr/lib/pkgconfig" PKG_CONFIG_SYSROOT_DIR="$root" \
    PKG_CONFIG_ALLOW_SYSTEM_CFLAGS=1 PKG_CONFIG_ALLOW_SYSTEM_LIBS=1 pkg-config "$@"
}
[ "$(pc --modversion mmkit)" = "$version" ] || fail "pkg-config --modversion mmkit is not $version"
flags=$(pc --cflags --libs mmkit) || fail "pkg-config --cflags --libs mmkit failed"
case "$flags" in
*"-I$usr/include"*) ;;
*) fail "pkg-config --cflags does not point into the DESTDIR: $flags" ;;
esac
case "$flags" in
*"-L$usr/lib"*) ;;
*) fail "pkg-config --libs does not point into the DESTDIR: $flags" ;;
esac

# A library built with sanitizers (make test-asan) needs them in the program.
san=
if readelf -d "$usr/lib/libmmkit.so.$version" | grep -q 'libasan'; then
    san="-fsanitize=address,undefined"
fi

# ---- a program built against the installed copy -----------------------------
cat > "$tmp/prog.c" <<'EOF'
#include <mmkit.h>

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static size_t page;
static int calls;

static int on_fault(const mmk_fault *f, void *ctx)
{
    char *p = (char *)((uintptr_t)f->addr & ~(uintptr_t)(page - 1));
    if (mprotect(p, page, PROT_READ | PROT_WRITE) != 0)
        return MMK_FAULT_PASS;
    memcpy(p, ctx, strlen(ctx) + 1);
    calls++;
    return MMK_FAULT_RETRY;
}

int main(void)
{
    page = (size_t)sysconf(_SC_PAGESIZE);
    char *mem = mmap(NULL, 2 * page, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED)
        return 1;
    mmk_area *a = mmk_area_register(mem, 2 * page, on_fault, "filled");
    if (!a) {
        printf("register: %s\n", mmk_strerror(-errno));
        return 1;
    }
    volatile char *q = mem + page + 5;
    char c = *q; /* a read fault in the second page */
    printf("version %s\n", mmk_version());
    printf("areas %zu\n", mmk_fault_area_count());
    printf("page 1: %s, byte 5: %c, faults %d\n", mem + page, c, calls);
    int r = mmk_area_unregister(a);
    printf("unregister %d, areas %zu\n", r, mmk_fault_area_count());
    printf("EEXIST: %s\n", mmk_strerror(-EEXIST));
    return 0;
}
EOF
expected="version $version
areas 1
page 1: filled, byte 5: d, faults 1
unregister 0, areas 0"

# The text of mmk_strerror is the library's to choose: it must only exist.
check_output() { # file what
    got=$(grep -av '^EEXIST: ' "$1" || true)
    [ "$got" = "$expected" ] || fail "$2: output differs
--- expected
$expected
--- got
$got"
    line=$(sed -n 's/^EEXIST: //p' "$1")
    [ -n "$line" ] && [ "$line" != "unknown error" ] ||
        fail "$2: mmk_strerror(-EEXIST) gave '$line'"
}

# Shared, with the flags pkg-config gives.
# shellcheck disable=SC2086 # $flags and $san are word lists
cc -std=gnu11 -Wall -Wextra -Werror $san -o "$tmp/prog" "$tmp/prog.c" $flags > "$tmp/cc.log" 2>&1 || {
    cat "$tmp/cc.log" >&2
    fail "could not build a program with \$(pkg-config --cflags --libs mmkit)"
}
readelf -d "$tmp/prog" | grep -q "NEEDED.*\[libmmkit.so.$soversion\]" ||
    fail "the program does not depend on libmmkit.so.$soversion"
LD_LIBRARY_PATH="$usr/lib" "$tmp/prog" > "$tmp/out" 2> "$tmp/err" || {
    cat "$tmp/out" "$tmp/err" >&2
    fail "the program linked with the installed libmmkit.so failed"
}
# Make sure the copy that ran is the installed one.
LD_LIBRARY_PATH="$usr/lib" LD_TRACE_LOADED_OBJECTS=1 "$tmp/prog" 2>/dev/null |
    grep -q "libmmkit.so.$soversion => $usr/lib/" ||
    fail "the program did not load libmmkit from the install"
check_output "$tmp/out" "shared build"

# Static, from the installed libmmkit.a.
# shellcheck disable=SC2086
cc -std=gnu11 -Wall -Wextra -Werror $san -I"$usr/include" -o "$tmp/prog-static" "$tmp/prog.c" \
    "$usr/lib/libmmkit.a" $(pc --static --libs-only-other mmkit) > "$tmp/cc.log" 2>&1 || {
    cat "$tmp/cc.log" >&2
    fail "could not build a program against the installed libmmkit.a"
}
"$tmp/prog-static" > "$tmp/out" 2> "$tmp/err" || {
    cat "$tmp/out" "$tmp/err" >&2
    fail "the program linked with the installed libmmkit.a failed"
}
check_output "$tmp/out" "static build"

# The installed tool runs and reports the same version.
got=$("$usr/bin/mmkit" version) || fail "installed mmkit version failed"
[ "$got" = "mmkit $version" ] || fail "installed mmkit version printed '$got'"

# ---- make uninstall leaves no files behind -----------------------------------
if ! make -s B="$B" uninstall PREFIX=/usr DESTDIR="$root" > "$tmp/make.log" 2>&1; then
    cat "$tmp/make.log" >&2
    fail "make uninstall failed"
fi
left=$(find "$root" ! -type d)
[ -z "$left" ] || fail "make uninstall left files behind: $(echo $left)"

echo "install.sh: ok (mmkit $version, $(wc -l < "$tmp/names") exported symbols)"
