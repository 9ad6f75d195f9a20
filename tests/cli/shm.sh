#!/bin/sh
# shm.sh BUILD - SysV shm over files end to end: an unmodified SysV client
# (helper_shm_client) under LD_PRELOAD=libmmkit-sysv.so, through libc and
# through syscall(2), across fork and exec; `mmkit ipcs` (table and --json)
# and `mmkit ipcrm`; the kernel's segment table untouched; an unsafe store
# refused; uid nobody refused what the mode denies (when run as root).
set -eu
B=${1:-build}
B=$(cd "$B" && pwd)
mmkit=$B/mmkit
client=$B/tests/helper_shm_client
preload=$B/libmmkit-sysv.so
for f in "$mmkit" "$client" "$preload"; do
    [ -e "$f" ] || { echo "shm.sh: skip: $f not built" >&2; exit 77; }
done
[ -r /proc/sysvipc/shm ] || { echo "shm.sh: skip: no /proc/sysvipc/shm" >&2; exit 77; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM
chmod 755 "$tmp"
mkdir "$tmp/store"
chmod 1777 "$tmp/store"
export MMKIT_SHM_DIR="$tmp/store"
# The client may be built with ASan (make test-asan); the shim is not.
export ASAN_OPTIONS="${ASAN_OPTIONS:-}:verify_asan_link_order=0:detect_leaks=0"

fail() { echo "shm.sh: FAIL: $*" >&2; exit 1; }
pre() { LD_PRELOAD="$preload" "$client" "$@"; }
kernel_keys() { awk 'NR > 1 { print $1 }' /proc/sysvipc/shm | sort; }

kernel_before=$(kernel_keys)

id1=$(pre create 0x5151 8192 "hello from libc") || fail "create through libc"
[ "$(pre read 0x5151)" = "hello from libc" ] || fail "read back through libc"
id2=$(pre syscall-create 0x5152 5000 "hello from syscall") || fail "create through syscall(2)"
[ "$(pre syscall-read 0x5152)" = "hello from syscall 5000" ] || fail "read back through syscall(2)"
[ "$(pre exec-read 0x5151)" = "hello from libc" ] || fail "a forked and exec'd child sees the segment"
pre getpid || fail "other system calls pass through syscall(2)"
[ "$(pre nattch 0x5151)" = 0 ] || fail "nattch after every client exited"
# Without the shim the kernel knows nothing of these keys.
if "$client" read 0x5151 2>/dev/null; then fail "the kernel has key 0x5151"; fi
[ "$(kernel_keys)" = "$kernel_before" ] || {
    # Other programs on this machine may have changed the table; ours would
    # show our keys (decimal 20817, 20818).
    kernel_keys | grep -qx -e 20817 -e 20818 && fail "a segment reached the kernel's table"
}
[ -f "$tmp/store/s.$id1" ] || fail "segment file s.$id1 missing"

out=$("$mmkit" ipcs)
echo "$out" | grep -q "^0x00005151 *$id1 *root *600 *8192 *0 *\$" ||
    [ "$(id -u)" != 0 ] || fail "ipcs row for 0x5151:
$out"
echo "$out" | grep -q "^0x00005152 *$id2 " || fail "ipcs row for 0x5152:
$out"
json=$("$mmkit" ipcs --json)
if [ -x /usr/bin/python3 ]; then
    /usr/bin/python3 - "$id1" "$id2" "$json" <<'PY' || fail "ipcs --json: $json"
import json, sys
id1, id2, text = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
rows = json.loads(text)
assert isinstance(rows, list) and len(rows) == 2, rows
keys = {"key", "shmid", "owner", "perms", "bytes", "nattch", "status"}
for r in rows:
    assert set(r) == keys, r
    assert isinstance(r["shmid"], int) and isinstance(r["bytes"], int) and isinstance(r["nattch"], int)
    assert isinstance(r["key"], str) and isinstance(r["perms"], str)
by = {r["key"]: r for r in rows}
assert by["0x00005151"]["shmid"] == id1 and by["0x00005151"]["bytes"] == 8192, by
assert by["0x00005152"]["shmid"] == id2 and by["0x00005152"]["perms"] == "600", by
PY
else
    echo "$json" | grep -q "\"key\":\"0x00005151\",\"shmid\":$id1," || fail "ipcs --json: $json"
fi

# ipcrm: by key, by id, bad input.
"$mmkit" ipcrm -M 0x5151 || fail "ipcrm -M"
if pre read 0x5151 2>/dev/null; then fail "key 0x5151 still resolves after ipcrm -M"; fi
"$mmkit" ipcs | grep -q 0x00005151 && fail "ipcs still lists 0x5151"
rc=0; "$mmkit" ipcrm -m 32767 2>"$tmp/err" || rc=$?
[ "$rc" = 1 ] && grep -q "no such segment" "$tmp/err" || fail "ipcrm -m of a missing id: status $rc"
rc=0; "$mmkit" ipcrm 2>/dev/null || rc=$?
[ "$rc" = 2 ] || fail "ipcrm without arguments: status $rc"
"$mmkit" ipcrm -m "$id2" || fail "ipcrm -m $id2"
[ -z "$(ls -A "$tmp/store")" ] || fail "store not empty: $(ls -A "$tmp/store")"
pre create 0x5153 4096 a >/dev/null && pre create 0x5154 4096 b >/dev/null
"$mmkit" ipcrm --all || fail "ipcrm --all"
[ "$(ls -A "$tmp/store")" = "" ] || fail "store not empty after --all"

# Another user (when we can become one): the mode decides.
if [ "$(id -u)" = 0 ] && command -v setpriv >/dev/null 2>&1 && id nobody >/dev/null 2>&1; then
    chmod 755 "$B" "$B/tests" 2>/dev/null || true
    pre create 0x5155 4096 secret >/dev/null
    as_nobody() { setpriv --reuid=nobody --regid="$(id -g nobody)" --clear-groups env \
        MMKIT_SHM_DIR="$MMKIT_SHM_DIR" LD_PRELOAD="$preload" ASAN_OPTIONS="$ASAN_OPTIONS" "$@"; }
    if as_nobody "$client" read 0x5155 > "$tmp/out" 2> "$tmp/err"; then
        fail "nobody read root's 0600 segment: $(cat "$tmp/out")"
    fi
    grep -q "Permission denied" "$tmp/err" || fail "nobody's read: $(cat "$tmp/err")"
    rc=0; as_nobody "$mmkit" ipcrm -M 0x5155 2> "$tmp/err" || rc=$?
    [ "$rc" = 1 ] && grep -q "not permitted" "$tmp/err" || fail "nobody's ipcrm: status $rc $(cat "$tmp/err")"
    as_nobody "$mmkit" ipcs | grep -q "^0x00005155 " || fail "nobody's ipcs does not list root's segment"
    "$mmkit" ipcrm -M 0x5155
fi

# The demo chapter, in a store of its own.
env -u MMKIT_SHM_DIR "$mmkit" demo shm > "$tmp/out" 2>&1 || fail "mmkit demo shm: $(cat "$tmp/out")"
grep -q '^shm: ok$' "$tmp/out" || fail "mmkit demo shm did not print 'shm: ok'"

# An unsafe store is refused with a clear message.
chmod 0777 "$tmp/store"
rc=0; "$mmkit" ipcs 2> "$tmp/err" >/dev/null || rc=$?
[ "$rc" = 1 ] && grep -q "unsafe" "$tmp/err" || fail "unsafe store: status $rc, $(cat "$tmp/err")"
exit 0
