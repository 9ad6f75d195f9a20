#!/bin/sh
# symbols.sh BUILD - the shared library exports exactly the mmk_ functions
# that include/mmkit.h declares (MMK_API), each under a version node of
# src/libmmkit.map, which lists exactly those; and the version is the same
# in the Makefile, the header, the library's file name and mmk_version().
# Run from the repository root.  Exit 0 pass, 77 skip, anything else fail.
set -eu

B=${1:-build}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM

fail() {
    echo "symbols.sh: FAIL: $*" >&2
    exit 1
}
command -v nm > /dev/null 2>&1 || { echo "symbols.sh: skip: no nm" >&2; exit 77; }

# ---- the version, in one place ------------------------------------------------
version=$(sed -n 's/^VERSION *:= *//p' Makefile)
[ -n "$version" ] || fail "cannot read VERSION from the Makefile"
hstring=$(sed -n 's/^#define MMK_VERSION_STRING "\(.*\)"$/\1/p' include/mmkit.h)
hnum() { sed -n "s/^#define MMK_VERSION_$1 \([0-9]*\)$/\1/p" include/mmkit.h; }
[ "$hstring" = "$version" ] || fail "MMK_VERSION_STRING is '$hstring', the Makefile says $version"
[ "$(hnum MAJOR).$(hnum MINOR).$(hnum PATCH)" = "$version" ] ||
    fail "MMK_VERSION_MAJOR/MINOR/PATCH are $(hnum MAJOR).$(hnum MINOR).$(hnum PATCH), the Makefile says $version"
lib="$B/libmmkit.so.$version"
[ -f "$lib" ] || fail "no $lib (the library is not named after VERSION)"
if [ -x "$B/mmkit" ]; then
    got=$("$B/mmkit" version) || fail "mmkit version failed"
    [ "$got" = "mmkit $version" ] || fail "mmkit version printed '$got', expected 'mmkit $version'"
fi

# ---- what the header declares --------------------------------------------------
# Declarations may wrap, so the header is joined into one line, comments are
# dropped, and it is cut into one statement per ';'.
tr '\n' ' ' < include/mmkit.h | sed -E 's,/\*[^*]*\*+([^/*][^*]*\*+)*/,,g' |
    tr ';' '\n' > "$tmp/statements"
sed -n 's/.*MMK_API[^(]*[ *]\(mmk_[a-z0-9_]*\) *(.*/\1/p' "$tmp/statements" |
    sort -u > "$tmp/declared"
[ -s "$tmp/declared" ] || fail "found no MMK_API declarations in include/mmkit.h"
# Every public function is MMK_API: an mmk_ prototype without it would be
# missing from the library.
grep -v 'MMK_API' "$tmp/statements" | grep -v '(\*' |
    sed -n 's/^[^#(]*[ *]\(mmk_[a-z0-9_]*\) *(.*/\1/p' | sort -u > "$tmp/plain"
[ ! -s "$tmp/plain" ] || fail "mmk_ functions declared without MMK_API: $(echo $(cat "$tmp/plain"))"

# ---- what the library exports ----------------------------------------------------
nm -D --defined-only "$lib" > "$tmp/nm" || fail "nm -D failed on $lib"
# "VALUE TYPE NAME@@NODE"; type A lines are the version nodes themselves.
awk '$2 != "A" { print $3 }' "$tmp/nm" > "$tmp/versioned"
sed 's/@.*//' "$tmp/versioned" | sort -u > "$tmp/exported"
unversioned=$(grep -v '@@\?MMKIT_[0-9.]*$' "$tmp/versioned" || true)
[ -z "$unversioned" ] || fail "exported without a MMKIT_ version node: $(echo $unversioned)"
if ! cmp -s "$tmp/declared" "$tmp/exported"; then
    echo "--- declared in include/mmkit.h, +++ exported by $lib" >&2
    diff -u "$tmp/declared" "$tmp/exported" >&2 || true
    fail "the exported functions are not exactly the declared ones"
fi

# ---- what the map lists --------------------------------------------------------
# Entries are "name;" lines inside nodes; the local "*;" is not one.
sed -e 's,/\*.*\*/,,' src/libmmkit.map | grep -o '^ *mmk_[a-z0-9_]* *;' |
    tr -d ' ;' | sort > "$tmp/mapped"
dups=$(uniq -d "$tmp/mapped")
[ -z "$dups" ] || fail "listed twice in src/libmmkit.map: $(echo $dups)"
if ! cmp -s "$tmp/declared" "$tmp/mapped"; then
    echo "--- declared in include/mmkit.h, +++ listed in src/libmmkit.map" >&2
    diff -u "$tmp/declared" "$tmp/mapped" >&2 || true
    fail "src/libmmkit.map does not list exactly the declared functions"
fi
# Globs would let future symbols in unlisted (the local "*;" is the only one).
globs=$(grep -nE '^[[:space:]]*[A-Za-z_][^;]*[][*?][^;]*;' src/libmmkit.map || true)
[ -z "$globs" ] || fail "src/libmmkit.map exports by pattern: $globs"

echo "symbols.sh: ok (mmkit $version, $(wc -l < "$tmp/exported") exported symbols)"
