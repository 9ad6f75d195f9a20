#!/bin/sh
# shm_python.sh BUILD - a real, unmodified SysV client: Python's sysv_ipc
# module (Debian's python3-sysv-ipc) under LD_PRELOAD=libmmkit-sysv.so.  One
# interpreter creates and writes, exits; another finds the bytes, checks the
# attributes and removes the segment.  Skipped without the module.
set -eu
B=${1:-build}
B=$(cd "$B" && pwd)
preload=$B/libmmkit-sysv.so
py=/usr/bin/python3
[ -e "$preload" ] || { echo "shm_python.sh: skip: $preload not built" >&2; exit 77; }
"$py" -c 'import sysv_ipc' 2>/dev/null || {
    echo "shm_python.sh: skip: no sysv_ipc (apt-get install python3-sysv-ipc)" >&2; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM
mkdir "$tmp/store"
chmod 1777 "$tmp/store"
export MMKIT_SHM_DIR="$tmp/store"
fail() { echo "shm_python.sh: FAIL: $*" >&2; exit 1; }

LD_PRELOAD="$preload" "$py" - <<'PY' || fail "writer"
import os, sysv_ipc
m = sysv_ipc.SharedMemory(0x7171, sysv_ipc.IPC_CREX, mode=0o640, size=10000)
assert m.size == 10000, m.size
assert m.number_attached == 1, m.number_attached
assert m.creator_pid == os.getpid()
m.write(b"written by python")
try:
    sysv_ipc.SharedMemory(0x7171, sysv_ipc.IPC_CREX, size=10000)
    raise SystemExit("IPC_CREX twice succeeded")
except sysv_ipc.ExistentialError:
    pass
m.detach()
PY
[ -n "$(ls "$tmp/store" | grep '^s\.')" ] || fail "no segment file in the store"
LD_PRELOAD="$preload" "$py" - <<'PY' || fail "reader"
import os, sysv_ipc
m = sysv_ipc.SharedMemory(0x7171)
assert m.read(17) == b"written by python", m.read(17)
assert m.mode & 0o777 == 0o640, oct(m.mode)
assert m.uid == os.geteuid() and m.size == 10000
assert m.number_attached == 1
assert m.last_pid == os.getpid()
m.detach()
m.remove()
try:
    sysv_ipc.SharedMemory(0x7171)
    raise SystemExit("key still resolves after remove")
except sysv_ipc.ExistentialError:
    pass
PY
[ -z "$(ls -A "$tmp/store")" ] || fail "store not empty: $(ls -A "$tmp/store")"
exit 0
