#!/bin/sh
# report.sh BUILD - fault reports name the culprit first: the stray-write
# example, a culprit in a shared library, a static function of a program
# linked without -rdynamic, a plugin loaded with dlopen, inlined calls, the
# arena's and the region's fatal lines, watch mode, a stripped binary named
# later by `mmkit symbolize --debug-dir`, and the raw fallback when the
# symbolizer is missing, fails or hangs.
# Run from the repository root.  Exit 0 pass, 77 skip, anything else fail.
set -eu

B=${1:-build}
skip() {
    echo "report.sh: skip: $*" >&2
    exit 77
}
[ -x "$B/mmkit" ] && [ -x "$B/examples/stray_write" ] && [ -f "$B/libmmkit.a" ] ||
    skip "$B/mmkit, $B/examples/stray_write or $B/libmmkit.a not built"
for t in cc objcopy strip readelf nm; do
    command -v $t > /dev/null 2>&1 || skip "no $t"
done
B=$(cd "$B" && pwd)
root=$(pwd)
MMKIT=$B/mmkit

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM

fail() {
    echo "report.sh: FAIL: $*" >&2
    exit 1
}

# run PROGRAM ARGS... : in $tmp, core dumps off; stdout, stderr and status kept.
# Environment for the report: $symbolizer (MMKIT_SYMBOLIZER), $limit_ms.
symbolizer=$MMKIT
limit_ms=20000
run() {
    rc=0
    ( (cd "$tmp" && ulimit -c 0 && MMKIT_SYMBOLIZER=$symbolizer MMKIT_SYMBOLIZE_MS=$limit_ms \
        exec timeout 120 "$@") > "$tmp/out" 2> "$tmp/err" ) 2> /dev/null || rc=$?
}
show() {
    printf -- '--- stdout\n%s\n--- stderr\n%s\n' "$(cat "$tmp/out")" "$(cat "$tmp/err")"
}
expect_rc() { # status what
    [ "$rc" -eq "$1" ] || fail "$2: exit status $rc, expected $1
$(show)"
}
# The line after the first line matching $1 must match $2: the first frame.
expect_first_frame() { # header-pattern frame-pattern what
    n=$(grep -n -- "$1" "$tmp/err" | head -n 1 | cut -d: -f1)
    got=$( [ -n "$n" ] && sed -n "$((n + 1))p" "$tmp/err")
    printf '%s\n' "$got" | grep -q -- "$2" || fail "$3: the first frame is '$got', expected '$2'
$(show)"
}
expect_err() { # pattern what
    grep -q -- "$1" "$tmp/err" || fail "$2: stderr has no line matching '$1'
$(show)"
}
# No frame of mmkit's handler or of the signal trampoline.
expect_no_handler_frames() { # what
    ! grep -E -q '#[0-9]+ .*(mirror_fault|arena_fault|view_fault|mmk_|mmk__|__restore_rt|killpg)' \
        "$tmp/err" || fail "$1: the report shows mmkit's handler or the trampoline
$(show)"
}
# Every frame line carries its key: path + file offset + build-id.
expect_keys() { # what
    n=$(grep -c '^    #[0-9]' "$tmp/err" || true)
    k=$(grep -E -c '^    #[0-9]+ .* \[/[^ ]*\+0x[0-9a-f]+ va=0x[0-9a-f]+ id=[0-9a-f]{16,}\]$' "$tmp/err" || true)
    [ "$n" -gt 0 ] && [ "$k" -eq "$n" ] || fail "$1: $k of $n frame lines carry path+offset+build-id
$(show)"
}
line_of() { # file pattern: the line number of the one line matching pattern
    grep -n -- "$2" "$1" | cut -d: -f1
}

# ASan builds of the library need the same sanitizers at link time.
san=""
nm "$B/libmmkit.a" 2> /dev/null | grep -q __asan_init &&
    san="-fsanitize=address,undefined -fno-omit-frame-pointer"

# ---- the stray-write example: plugin_round first, main below ---------------------
culprit=$(line_of "$root/examples/stray_write.c" 'p->value = (double)(long)(p->value + 0.5);')
caller=$(line_of "$root/examples/stray_write.c" 'plugin_round(view); /\* the stray write')
[ -n "$culprit" ] && [ -n "$caller" ] || fail "cannot find the stray write in examples/stray_write.c"
head='^mmkit: stray write at 0x[0-9a-f]* (mirror 0x[0-9a-f]*, offset 32)$'

run "$B/examples/stray_write"
expect_rc 139 "stray_write"
expect_first_frame "$head" "^    #0 plugin_round (stray_write.c:$culprit) \[" "stray_write"
expect_err "^    #[1-9] main (stray_write.c:$caller) \[" "stray_write"
expect_no_handler_frames "stray_write"
expect_keys "stray_write"

# ---- watch mode: named by the reporter thread, and the program goes on -------------
if [ "$(uname -m)" = x86_64 ]; then
    run "$B/examples/stray_write" --watch
    expect_rc 0 "stray_write --watch"
    grep -q '^still running (watch mode)' "$tmp/out" || fail "watch mode did not go on
$(show)"
    expect_first_frame '^mmkit: watched write at ' "^    #0 plugin_round (stray_write.c:$culprit) \[" \
        "stray_write --watch"
    expect_err "^    #[1-9] main (stray_write.c:$caller) \[" "stray_write --watch"
    expect_no_handler_frames "stray_write --watch"
fi

# ---- the symbolizer missing, failing or hanging: raw frames, same death ------------
raw="^    #0 stray_write+0x[0-9a-f]* \[/.*/stray_write+0x[0-9a-f]* va=0x[0-9a-f]* id=[0-9a-f]*\]$"
symbolizer=$tmp/no-such-symbolizer
run "$B/examples/stray_write"
expect_rc 139 "symbolizer missing"
expect_first_frame "$head" "$raw" "symbolizer missing"
expect_keys "symbolizer missing"

symbolizer=/bin/false
run "$B/examples/stray_write"
expect_rc 139 "symbolizer failing"
expect_first_frame "$head" "$raw" "symbolizer failing"

printf '#!/bin/sh\necho $$ > "%s/hang.pid"\nexec sleep 60\n' "$tmp" > "$tmp/hang.sh"
chmod +x "$tmp/hang.sh"
symbolizer=$tmp/hang.sh
limit_ms=300
run "$B/examples/stray_write"
expect_rc 139 "symbolizer hanging"
expect_first_frame "$head" "$raw" "symbolizer hanging"
[ -s "$tmp/hang.pid" ] || fail "the hanging symbolizer never ran"
! kill -0 "$(cat "$tmp/hang.pid")" 2> /dev/null || fail "the hanging symbolizer was left running"
symbolizer=$MMKIT
limit_ms=20000

# ---- a stripped binary: build-id + offsets now, names later -------------------------
cp "$B/examples/stray_write" "$tmp/shipped"
objcopy --only-keep-debug "$tmp/shipped" "$tmp/shipped.debug"
strip --strip-all "$tmp/shipped"
id=$(readelf -n "$tmp/shipped" | sed -n 's/.*Build ID: *\([0-9a-f]*\).*/\1/p')
[ -n "$id" ] || fail "the example has no build-id note"
mkdir -p "$tmp/dbg/.build-id/$(printf %s "$id" | cut -c1-2)" "$tmp/byname"
cp "$tmp/shipped.debug" "$tmp/dbg/.build-id/$(printf %s "$id" | cut -c1-2)/$(printf %s "$id" | cut -c3-).debug"
mv "$tmp/shipped.debug" "$tmp/byname/shipped.debug"
run "$tmp/shipped"
expect_rc 139 "stripped"
expect_first_frame "$head" "^    #0 shipped+0x[0-9a-f]* \[/.*/shipped+0x[0-9a-f]* va=0x[0-9a-f]* id=$id\]$" "stripped"
cp "$tmp/err" "$tmp/stripped.report"
for dir in "$tmp/dbg" "$tmp/byname"; do
    "$MMKIT" symbolize --debug-dir "$dir" < "$tmp/stripped.report" > "$tmp/err" ||
        fail "mmkit symbolize --debug-dir $dir failed"
    expect_first_frame "$head" "^    #0 plugin_round (stray_write.c:$culprit) \[/.*/shipped+0x[0-9a-f]* va=0x[0-9a-f]* id=$id\]$" \
        "mmkit symbolize --debug-dir ${dir##*/}"
    expect_err "^    #[1-9] main (stray_write.c:$caller) \[" "mmkit symbolize --debug-dir ${dir##*/}"
done
# A debug file of another build is not used: its build-id differs.
cp "$root/examples/stray_write.c" "$tmp/other.c"
echo 'int other_build_marker(void) { return 1; }' >> "$tmp/other.c"
cc -g -O2 -Iinclude $san -o "$tmp/other" "$tmp/other.c" "$B/libmmkit.a" -pthread -ldw -lelf
mkdir -p "$tmp/wrong" && objcopy --only-keep-debug "$tmp/other" "$tmp/wrong/shipped.debug"
"$MMKIT" symbolize --debug-dir "$tmp/wrong" < "$tmp/stripped.report" > "$tmp/err"
! grep -q 'plugin_round' "$tmp/err" || fail "a debug file with another build-id was used
$(show)"
# Lines that are not frames pass unchanged, and so does a frame with no object.
printf 'hello\n    #0 foo [bar]\n    #1 x+0x1 [/nonexistent+0x1 id=00]\n' > "$tmp/plain"
"$MMKIT" symbolize < "$tmp/plain" | cmp -s - "$tmp/plain" || fail "symbolize changed non-frame lines"

# ---- a shared library, a static function without -rdynamic, arena, region ----------
cat > "$tmp/plugin.c" <<'EOF'
void plugin_scribble(const double *p);
void plugin_scribble(const double *p)
{
    *(double *)p = 42; /* the library's stray write */
}
EOF
cat > "$tmp/host.c" <<'EOF'
#include "mmkit.h"
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
void plugin_scribble(const double *p);
static __attribute__((noinline)) void static_scribble(const double *p)
{
    *(volatile double *)p = 7; /* the program's stray write */
    __asm__ volatile("" ::: "memory");
}
static inline void inner_poke(const double *p)
{
    *(volatile double *)p = 3; /* the inlined stray write */
}
static inline void outer_poke(const double *p)
{
    inner_poke(p); /* the inlined call; */
}
static __attribute__((noinline)) void arena_store(unsigned char *b)
{
    b[3 << 20] = 1; /* the arena store the file cannot back */
    __asm__ volatile("" ::: "memory");
}
static __attribute__((noinline)) void region_store(int *p)
{
    *(volatile int *)p = 1; /* the write into a read-only snapshot */
    __asm__ volatile("" ::: "memory");
}
int main(int argc, char **argv)
{
    if (argc > 2 && !strcmp(argv[1], "closed-stderr")) {
        /* Run argv[2] with stderr a pipe nobody reads; print its signal. */
        int p[2], st;
        if (pipe(p) != 0)
            return 3;
        close(p[0]);
        signal(SIGPIPE, SIG_DFL);
        pid_t pid = fork();
        if (pid == 0) {
            dup2(p[1], 2);
            execv(argv[2], argv + 2);
            _exit(127);
        }
        if (pid < 0 || waitpid(pid, &st, 0) != pid)
            return 3;
        printf("%d\n", WIFSIGNALED(st) ? WTERMSIG(st) : -WEXITSTATUS(st));
        return 0;
    }
    if (argc > 2 && !strcmp(argv[1], "arena")) {
        mmk_arena *a = mmk_arena_open(argv[2], (size_t)1 << 30, MMK_ARENA_CREATE);
        struct rlimit rl = { 2 << 20, 2 << 20 };
        if (!a || setrlimit(RLIMIT_FSIZE, &rl) != 0)
            return 3;
        arena_store(mmk_arena_base(a));
        return 4;
    }
    if (argc > 1 && !strcmp(argv[1], "region")) {
        mmk_region *r = mmk_region_create(1 << 16, 0);
        mmk_region *s = r ? mmk_region_snapshot(r, 0) : NULL;
        if (!s)
            return 3;
        region_store(mmk_region_base(s));
        return 4;
    }
    if (argc > 1 && !strcmp(argv[1], "sigchld-ignored"))
        signal(SIGCHLD, SIG_IGN); /* children reaped by the kernel */
    mmk_mirror *m = mmk_mirror_create(4096, 0);
    if (!m)
        return 3;
    const double *ro = mmk_mirror_ro(m);
    if (argc > 1 && !strcmp(argv[1], "lib"))
        plugin_scribble(ro + 4); /* the host calls the library */
    else if (argc > 1 && !strcmp(argv[1], "inline"))
        outer_poke(ro + 4); /* the host calls inlined code */
    else if (argc > 2 && !strcmp(argv[1], "dlopen")) {
        /* A plugin loaded after the mirror was made. */
        void *h = dlopen(argv[2], RTLD_NOW);
        void (*fn)(const double *) = h ? (void (*)(const double *))dlsym(h, "plugin_scribble") : NULL;
        if (!fn)
            return 5;
        fn(ro + 4); /* the host calls the loaded plugin */
    }
    else
        static_scribble(ro + 4); /* the host's own code */
    return 4;
}
EOF
cc -g -O2 -fPIC -shared $san -o "$tmp/libplugin.so" "$tmp/plugin.c"
cc -g -O2 -Iinclude $san -o "$tmp/host" "$tmp/host.c" -L"$tmp" -lplugin -Wl,-rpath,"$tmp" \
    "$B/libmmkit.a" -pthread -ldw -lelf -ldl
! nm -D "$tmp/host" | grep -q static_scribble || fail "host exports its functions (-rdynamic?)"
mhead='^mmkit: stray write at 0x[0-9a-f]* (mirror 0x[0-9a-f]*, offset 32)$'

run "$tmp/host" lib
expect_rc 139 "shared-library culprit"
expect_first_frame "$mhead" "^    #0 plugin_scribble (plugin.c:$(line_of "$tmp/plugin.c" 'stray write')) \[/.*/libplugin.so+0x" \
    "shared-library culprit"
expect_err "^    #[1-9] main (host.c:$(line_of "$tmp/host.c" 'the host calls the library')) \[" \
    "shared-library culprit"
expect_no_handler_frames "shared-library culprit"
expect_keys "shared-library culprit"

cp "$tmp/libplugin.so" "$tmp/loaded.so"
run "$tmp/host" dlopen "$tmp/loaded.so"
expect_rc 139 "dlopen'ed culprit"
expect_first_frame "$mhead" "^    #0 plugin_scribble (plugin.c:$(line_of "$tmp/plugin.c" 'stray write')) \[/.*/loaded.so+0x" \
    "dlopen'ed culprit"
expect_err "^    #[1-9] main (host.c:$(line_of "$tmp/host.c" 'the host calls the loaded plugin')) \[" \
    "dlopen'ed culprit"

run "$tmp/host" static
expect_rc 139 "static culprit, no -rdynamic"
expect_first_frame "$mhead" "^    #0 static_scribble (host.c:$(line_of "$tmp/host.c" "program's stray write")) \[" \
    "static culprit, no -rdynamic"
expect_err "^    #[1-9] main (host.c:$(line_of "$tmp/host.c" "the host's own code")) \[" \
    "static culprit, no -rdynamic"

# A program that ignores SIGCHLD (its children are reaped behind our back).
run "$tmp/host" sigchld-ignored
expect_rc 139 "SIGCHLD ignored"
expect_first_frame "$mhead" "^    #0 static_scribble (host.c:$(line_of "$tmp/host.c" "program's stray write")) \[" \
    "SIGCHLD ignored"

# Inlined calls: each on a line of its own, innermost first, same frame number.
run "$tmp/host" inline
expect_rc 139 "inlined culprit"
expect_first_frame "$mhead" "^    #0 inner_poke (host.c:$(line_of "$tmp/host.c" 'the inlined stray write')) (inlined)$" \
    "inlined culprit"
grep -A 2 "$mhead" "$tmp/err" | sed -n 3p |
    grep -q "^    #0 outer_poke (host.c:$(line_of "$tmp/host.c" 'the inlined call;')) (inlined)$" ||
    fail "inlined culprit: no outer_poke line second
$(show)"
grep -A 3 "$mhead" "$tmp/err" | sed -n 4p |
    grep -q "^    #0 main (host.c:$(line_of "$tmp/host.c" 'the host calls inlined code')) \[" ||
    fail "inlined culprit: main is not the frame's own line
$(show)"

run "$tmp/host" arena "$tmp/arena.bin"
expect_rc 135 "arena fatal store"
expect_first_frame '^mmkit: arena .*: cannot extend the file' \
    "^    #0 arena_store (host.c:$(line_of "$tmp/host.c" 'cannot back')) \[" "arena fatal store"
expect_no_handler_frames "arena fatal store"

run "$tmp/host" region
expect_rc 139 "region fatal write"
expect_first_frame '^mmkit: write to read-only snapshot at ' \
    "^    #0 region_store (host.c:$(line_of "$tmp/host.c" 'read-only snapshot')) \[" "region fatal write"
expect_no_handler_frames "region fatal write"

# A reader of stderr that is gone before the report: still SIGSEGV, not SIGPIPE.
run "$tmp/host" closed-stderr "$B/examples/stray_write"
[ "$rc" -eq 0 ] && [ "$(tail -n 1 "$tmp/out")" = 11 ] ||
    fail "with stderr a closed pipe the example did not die of SIGSEGV (11)
$(show)"

echo "report.sh: ok"
