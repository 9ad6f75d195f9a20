/* test_mirror.c - mirrors (one memory, a read-write and a read-only view),
 * write windows, stray-write policies, fd passing and the magic ring. */
#include "mmkit.h"
#include "sys.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static size_t page;

static void setup(void)
{
    page = (size_t)sysconf(_SC_PAGESIZE);
}

/* Stores that must fault go through volatile so they stay where written. */
static void poke(const void *p, char v)
{
    *(volatile char *)(uintptr_t)p = v;
}

static char peek(const void *p)
{
    return *(const volatile char *)p;
}

/* ---- running code that must crash in a child ------------------------------ */

/*
 * Run fn(arg) in a forked child whose stderr is a pipe; collect what it
 * wrote into out (NUL-terminated) and return its wait status.
 */
static int run_child(void (*fn)(void *), void *arg, char *out, size_t outlen)
{
    int p[2];
    cr_assert_eq(pipe(p), 0);
    fflush(NULL);
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        close(p[0]);
        dup2(p[1], 2);
        close(p[1]);
        fn(arg);
        _exit(0);
    }
    close(p[1]);
    size_t n = 0;
    for (;;) {
        ssize_t k = read(p[0], out + n, outlen - 1 - n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            break;
        n += (size_t)k;
        if (n == outlen - 1) { /* keep draining so the child never blocks */
            char sink[4096];
            while (read(p[0], sink, sizeof sink) > 0)
                ;
            break;
        }
    }
    out[n] = 0;
    close(p[0]);
    int st;
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    return st;
}

static void assert_died_of_segv(int st, const char *err)
{
    cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGSEGV,
              "child should die of SIGSEGV; status 0x%x, stderr:\n%s", st, err);
}

/* The first line of text must be exactly want. */
static void assert_first_line(const char *text, const char *want)
{
    size_t n = strlen(want);
    cr_assert(strncmp(text, want, n) == 0, "expected first line\n%s\ngot\n%s", want, text);
}

static int count_lines(const char *text, const char *prefix)
{
    int n = 0;
    for (const char *s = text; s && *s;) {
        if (strncmp(s, prefix, strlen(prefix)) == 0)
            n++;
        s = strchr(s, '\n');
        if (s)
            s++;
    }
    return n;
}

static int count_maps(void)
{
    FILE *f = fopen("/proc/self/maps", "r");
    cr_assert_not_null(f);
    int n = 0, c;
    while ((c = fgetc(f)) != EOF)
        n += c == '\n';
    fclose(f);
    return n;
}

static int count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    cr_assert_not_null(d);
    int n = 0;
    while (readdir(d))
        n++;
    closedir(d);
    return n;
}

/* ---- creation, sizes and errors -------------------------------------------- */

Test(mirror, create_rounds_to_pages_and_lays_out_views, .init = setup)
{
    mmk_mirror *m = mmk_mirror_create(1, 0);
    cr_assert_not_null(m, "%s", strerror(errno));
    cr_assert_eq(mmk_mirror_size(m), page);
    char *rw = mmk_mirror_rw(m);
    const char *ro = mmk_mirror_ro(m);
    cr_assert_eq(ro, rw + page, "the read-only view follows the read-write one");
    cr_assert_eq((uintptr_t)rw % page, 0);
    cr_assert_eq(ro[0], 0, "fresh memory is zero");
    cr_assert_geq(mmk_mirror_fd(m), 0);
    cr_assert_eq(mmk_mirror_strays(m), 0);
    cr_assert_eq(mmk_mirror_destroy(m), 0);

    m = mmk_mirror_create(3 * page + 1, 0);
    cr_assert_not_null(m);
    cr_assert_eq(mmk_mirror_size(m), 4 * page);
    cr_assert_eq(mmk_mirror_destroy(m), 0);
}

Test(mirror, bad_arguments, .init = setup)
{
    errno = 0;
    cr_assert_null(mmk_mirror_create(0, 0));
    cr_assert_eq(errno, EINVAL);
    errno = 0;
    cr_assert_null(mmk_mirror_create(page, 1u << 7));
    cr_assert_eq(errno, EINVAL);
    cr_assert_eq(mmk_mirror_destroy(NULL), -EINVAL);
    cr_assert_null(mmk_mirror_rw(NULL));
    cr_assert_null(mmk_mirror_ro(NULL));
    cr_assert_eq(mmk_mirror_size(NULL), 0);
    cr_assert_eq(mmk_mirror_fd(NULL), -EINVAL);
    cr_assert_eq(mmk_mirror_begin_write(NULL), -EINVAL);
    cr_assert_eq(mmk_mirror_end_write(NULL), -EINVAL);
    cr_assert_eq(mmk_mirror_set_policy(NULL, MMK_MIRROR_ABORT, NULL, NULL), -EINVAL);
    errno = 0;
    cr_assert_null(mmk_rw(NULL, &errno));
    cr_assert_eq(errno, EINVAL);

    mmk_mirror *m = mmk_mirror_create(page, 0);
    cr_assert_not_null(m);
    cr_assert_eq(mmk_mirror_set_policy(m, 7, NULL, NULL), -EINVAL);
    cr_assert_eq(mmk_mirror_set_policy(m, MMK_MIRROR_CALLBACK, NULL, NULL), -EINVAL);
    cr_assert_eq(mmk_mirror_destroy(m), 0);
}

Test(mirror, sizes_too_large_give_enomem_and_leave_nothing, .init = setup)
{
    const size_t sizes[] = { SIZE_MAX, SIZE_MAX - page, SIZE_MAX / 2, (size_t)1 << 62,
                             (size_t)1 << 48 };
    int maps = count_maps(), fds = count_fds();
    size_t areas = mmk_fault_area_count();
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        errno = 0;
        cr_assert_null(mmk_mirror_create(sizes[i], 0), "size %zu", sizes[i]);
        cr_assert_eq(errno, ENOMEM, "size %zu: %s", sizes[i], strerror(errno));
    }
    cr_assert_eq(count_maps(), maps);
    cr_assert_eq(count_fds(), fds);
    cr_assert_eq(mmk_fault_area_count(), areas);
}

Test(mirror, failing_system_calls_leave_nothing, .init = setup)
{
    const char *calls[] = { "memfd", "ftruncate", "mmap" };
    int maps = count_maps(), fds = count_fds();
    for (size_t i = 0; i < 3; i++) {
        cr_assert_eq(mmk__sys_inject(calls[i], 1, ENOSPC), 0);
        errno = 0;
        cr_assert_null(mmk_mirror_create(4 * page, 0), "%s injected", calls[i]);
        cr_assert_eq(errno, ENOSPC, "%s: %s", calls[i], strerror(errno));
        mmk__sys_inject(calls[i], 0, 0);
        cr_assert_eq(count_maps(), maps, "after a failing %s", calls[i]);
        cr_assert_eq(count_fds(), fds, "after a failing %s", calls[i]);
    }
    cr_assert_eq(mmk_fault_area_count(), 0);
    /* And the ring the same way. */
    for (size_t i = 0; i < 3; i++) {
        cr_assert_eq(mmk__sys_inject(calls[i], 1, ENOSPC), 0);
        errno = 0;
        cr_assert_null(mmk_ring_create(page));
        cr_assert_eq(errno, ENOSPC);
        mmk__sys_inject(calls[i], 0, 0);
        cr_assert_eq(count_maps(), maps);
        cr_assert_eq(count_fds(), fds);
    }
}

/* ---- write windows ----------------------------------------------------------- */

Test(mirror, writes_in_a_window_are_visible_through_the_read_only_view, .init = setup)
{
    mmk_mirror *m = mmk_mirror_create(2 * page, 0);
    cr_assert_not_null(m);
    char *rw = mmk_mirror_rw(m);
    const char *ro = mmk_mirror_ro(m);
    cr_assert_eq(mmk_mirror_begin_write(m), 0);
    strcpy(rw, "written through the window");
    rw[2 * page - 1] = 'z';
    cr_assert_eq(mmk_mirror_end_write(m), 0);
    cr_assert_str_eq(ro, "written through the window");
    cr_assert_eq(peek(ro + 2 * page - 1), 'z');
    cr_assert_eq(mmk_mirror_strays(m), 0);
    cr_assert_eq(mmk_mirror_destroy(m), 0);
}

Test(mirror, windows_nest_and_must_be_held, .init = setup)
{
    mmk_mirror *m = mmk_mirror_create(page, MMK_MIRROR_GUARD);
    cr_assert_not_null(m);
    char *rw = mmk_mirror_rw(m);
    cr_assert_eq(mmk_mirror_end_write(m), -EPERM, "no window is open");
    cr_assert_eq(mmk_mirror_begin_write(m), 0);
    cr_assert_eq(mmk_mirror_begin_write(m), 0, "nesting must not deadlock");
    rw[0] = 'a';
    cr_assert_eq(mmk_mirror_end_write(m), 0);
    rw[1] = 'b'; /* still inside the outer window: must not fault */
    cr_assert_eq(mmk_mirror_destroy(m), -EBUSY, "destroy with a window open");
    cr_assert_eq(mmk_mirror_end_write(m), 0);
    cr_assert_eq(mmk_mirror_end_write(m), -EPERM);
    cr_assert_eq(peek(mmk_mirror_ro(m)), 'a');
    cr_assert_eq(peek((const char *)mmk_mirror_ro(m) + 1), 'b');
    cr_assert_eq(mmk_mirror_strays(m), 0);
    cr_assert_eq(mmk_mirror_destroy(m), 0);
}

static void *end_from_other_thread(void *arg)
{
    return (void *)(intptr_t)mmk_mirror_end_write(arg);
}

Test(mirror, another_thread_cannot_close_my_window, .init = setup)
{
    mmk_mirror *m = mmk_mirror_create(page, 0);
    cr_assert_not_null(m);
    cr_assert_eq(mmk_mirror_begin_write(m), 0);
    pthread_t t;
    void *res;
    pthread_create(&t, NULL, end_from_other_thread, m);
    pthread_join(t, &res);
    cr_assert_eq((intptr_t)res, -EPERM);
    cr_assert_eq(mmk_mirror_end_write(m), 0);
    cr_assert_eq(mmk_mirror_destroy(m), 0);
}

/* ---- conversions -------------------------------------------------------------- */

Test(mirror, conversions_both_ways_idempotent_and_bounded, .init = setup)
{
    mmk_mirror *m = mmk_mirror_create(3 * page, 0);
    cr_assert_not_null(m);
    char *rw = mmk_mirror_rw(m);
    const char *ro = mmk_mirror_ro(m);
    size_t size = mmk_mirror_size(m);
    const size_t offs[] = { 0, 1, page - 1, page, 2 * page + 17, size - 1 };
    for (size_t i = 0; i < sizeof offs / sizeof offs[0]; i++) {
        size_t o = offs[i];
        cr_assert_eq(mmk_ro(m, rw + o), ro + o, "rw->ro at %zu", o);
        cr_assert_eq(mmk_rw(m, ro + o), rw + o, "ro->rw at %zu", o);
        cr_assert_eq(mmk_rw(m, rw + o), rw + o, "rw->rw is the identity at %zu", o);
        cr_assert_eq(mmk_ro(m, ro + o), ro + o, "ro->ro is the identity at %zu", o);
        cr_assert_eq(mmk_rw(m, mmk_ro(m, rw + o)), rw + o, "round trip at %zu", o);
        cr_assert_eq(mmk_ro(m, mmk_rw(m, mmk_rw(m, ro + o))), ro + o, "double at %zu", o);
    }
    /* Outside both views, on both sides, and one past the end. */
    const char *outside[] = { rw - 1, ro + size, ro + size + page, (const char *)16, NULL };
    for (size_t i = 0; i < sizeof outside / sizeof outside[0]; i++) {
        errno = 0;
        cr_assert_null(mmk_rw(m, outside[i]), "%p", (void *)outside[i]);
        cr_assert_eq(errno, EFAULT);
        errno = 0;
        cr_assert_null(mmk_ro(m, outside[i]), "%p", (void *)outside[i]);
        cr_assert_eq(errno, EFAULT);
    }
    /* A converted pointer really is the same memory. */
    cr_assert_eq(mmk_mirror_begin_write(m), 0);
    *(char *)mmk_rw(m, ro + 1234) = 'q';
    cr_assert_eq(mmk_mirror_end_write(m), 0);
    cr_assert_eq(peek(ro + 1234), 'q');
    cr_assert_eq(mmk_mirror_destroy(m), 0);
}

/* ---- stray writes ----------------------------------------------------------- */

Test(mirror, stray_write_crashes_in_place, .init = setup, .signal = SIGSEGV)
{
    mmk_mirror *m = mmk_mirror_create(page, 0);
    cr_assert_not_null(m);
    poke(mmk_mirror_ro(m), 1);
}

struct stray {
    mmk_mirror *m;
    const char *at;
    int read;
};

static void do_stray(void *arg)
{
    struct stray *s = arg;
    if (s->read)
        (void)peek(s->at);
    else
        poke(s->at, 'X');
    _exit(0); /* survived: the test fails on the exit status */
}

static char errbuf[1 << 16];

Test(mirror, stray_write_kills_child_and_prints_report_line, .init = setup)
{
    mmk_mirror *m = mmk_mirror_create(4 * page, 0);
    cr_assert_not_null(m);
    struct stray s = { m, (const char *)mmk_mirror_ro(m) + 3 * page + 5, 0 };
    int st = run_child(do_stray, &s, errbuf, sizeof errbuf);
    assert_died_of_segv(st, errbuf);
    char want[200];
    snprintf(want, sizeof want, "mmkit: stray write at %p (mirror %p, offset %zu)\n",
             (void *)s.at, (void *)m, 3 * page + 5);
    assert_first_line(errbuf, want);
    cr_assert_gt(count_lines(errbuf, ""), 2, "a backtrace follows the line:\n%s", errbuf);
    /* The memory was not changed by the stray store. */
    cr_assert_eq(peek(s.at), 0);
    cr_assert_eq(mmk_mirror_destroy(m), 0);
}

Test(mirror, syscall_writing_into_read_only_view_gets_efault, .init = setup)
{
    /* The documented limit: the kernel does not raise a signal for its own
     * accesses; the system call fails instead. */
    mmk_mirror *m = mmk_mirror_create(page, 0);
    cr_assert_not_null(m);
    int p[2];
    cr_assert_eq(pipe(p), 0);
    cr_assert_eq(write(p[1], "abc", 3), 3);
    errno = 0;
    cr_assert_eq(read(p[0], (void *)(uintptr_t)mmk_mirror_ro(m), 3), -1);
    cr_assert_eq(errno, EFAULT);
    cr_assert_eq(mmk_mirror_strays(m), 0);
    close(p[0]);
    close(p[1]);
    cr_assert_eq(mmk_mirror_destroy(m), 0);
}

/* ---- guard mode ----------------------------------------------------------------- */

Test(mirror, guard_catches_a_leaked_read_write_pointer, .init = setup)
{
    mmk_mirror *m = mmk_mirror_create(2 * page, MMK_MIRROR_GUARD);
    cr_assert_not_null(m);
    char *rw = mmk_mirror_rw(m);
    cr_assert_eq(mmk_mirror_begin_write(m), 0);
    char *leaked = rw + page + 9; /* a pointer that escapes the window */
    *leaked = 'w';
    cr_assert_eq(mmk_mirror_end_write(m), 0);
    cr_assert_eq(peek(mmk_ro(m, leaked)), 'w', "the write in the window landed");

    struct stray s = { m, leaked, 0 };
    int st = run_child(do_stray, &s, errbuf, sizeof errbuf);
    assert_died_of_segv(st, errbuf);
    char want[200];
    snprintf(want, sizeof want, "mmkit: stray write at %p (mirror %p, offset %zu)\n",
             (void *)leaked, (void *)m, page + 9);
    assert_first_line(errbuf, want);

    s.read = 1; /* even reading through it is caught */
    st = run_child(do_stray, &s, errbuf, sizeof errbuf);
    assert_died_of_segv(st, errbuf);
    snprintf(want, sizeof want, "mmkit: stray read at %p (mirror %p, offset %zu)\n",
             (void *)leaked, (void *)m, page + 9);
    assert_first_line(errbuf, want);

    /* Inside a new window the same pointer works again. */
    cr_assert_eq(mmk_mirror_begin_write(m), 0);
    *leaked = 'v';
    cr_assert_eq(mmk_mirror_end_write(m), 0);
    cr_assert_eq(peek(mmk_ro(m, leaked)), 'v');
    cr_assert_eq(mmk_mirror_destroy(m), 0);
}

Test(mirror, without_guard_a_leaked_pointer_writes_unnoticed, .init = setup)
{
    /* The contrast that makes guard mode worth its mprotect. */
    mmk_mirror *m = mmk_mirror_create(page, 0);
    cr_assert_not_null(m);
    char *rw = mmk_mirror_rw(m);
    poke(rw + 3, 'n');
    cr_assert_eq(peek((const char *)mmk_mirror_ro(m) + 3), 'n');
    cr_assert_eq(mmk_mirror_strays(m), 0);
    cr_assert_eq(mmk_mirror_destroy(m), 0);
}

/* ---- the callback policy ---------------------------------------------------------- */

static mmk_mirror *cb_mirror;
static void *volatile cb_addr;
static volatile int cb_write, cb_calls;

/* Open the page of the read-only view for writing, then retry: the callback
 * decides that this write is allowed. */
static int cb_allow(const mmk_fault *f, void *ctx)
{
    cb_calls++;
    cb_addr = f->addr;
    cb_write = f->write;
    if (ctx != (void *)&cb_calls)
        return MMK_FAULT_PASS;
    const char *ro = mmk_ro(cb_mirror, f->addr); /* conversions work here */
    if (ro != f->addr)
        return MMK_FAULT_PASS;
    char *pg = (char *)((uintptr_t)f->addr & ~(uintptr_t)(page - 1));
    return mprotect(pg, page, PROT_READ | PROT_WRITE) == 0 ? MMK_FAULT_RETRY : MMK_FAULT_PASS;
}

Test(mirror, callback_policy_gets_the_fault, .init = setup)
{
    mmk_mirror *m = cb_mirror = mmk_mirror_create(2 * page, 0);
    cr_assert_not_null(m);
    cr_assert_eq(mmk_mirror_set_policy(m, MMK_MIRROR_CALLBACK, cb_allow, (void *)&cb_calls), 0);
    const char *target = (const char *)mmk_mirror_ro(m) + page + 77;
    poke(target, 'c');
    cr_assert_eq(cb_calls, 1);
    cr_assert_eq(cb_addr, target);
#if defined(__x86_64__) || defined(__aarch64__)
    cr_assert_eq(cb_write, 1);
#endif
    cr_assert_eq(peek((char *)mmk_mirror_rw(m) + page + 77), 'c');
    cr_assert_eq(mmk_mirror_strays(m), 1);
    cr_assert_eq(mmk_mirror_destroy(m), 0);
}

static int cb_note_and_pass(const mmk_fault *f, void *ctx)
{
    static const char msg[] = "callback saw it\n";
    if (write(2, msg, sizeof msg - 1) < 0)
        return MMK_FAULT_PASS;
    return MMK_FAULT_PASS;
}

Test(mirror, callback_passing_dies_without_the_report, .init = setup)
{
    mmk_mirror *m = mmk_mirror_create(page, 0);
    cr_assert_not_null(m);
    cr_assert_eq(mmk_mirror_set_policy(m, MMK_MIRROR_CALLBACK, cb_note_and_pass, NULL), 0);
    struct stray s = { m, mmk_mirror_ro(m), 0 };
    int st = run_child(do_stray, &s, errbuf, sizeof errbuf);
    assert_died_of_segv(st, errbuf);
    assert_first_line(errbuf, "callback saw it\n");
    cr_assert_eq(count_lines(errbuf, "mmkit:"), 0, "%s", errbuf);
    /* Back to the default: the report comes back. */
    cr_assert_eq(mmk_mirror_set_policy(m, MMK_MIRROR_ABORT, NULL, NULL), 0);
    st = run_child(do_stray, &s, errbuf, sizeof errbuf);
    assert_died_of_segv(st, errbuf);
    cr_assert_eq(count_lines(errbuf, "mmkit: stray write at "), 1, "%s", errbuf);
    cr_assert_eq(mmk_mirror_destroy(m), 0);
}

/* ---- watch mode ---------------------------------------------------------------------- */

static void watched_writes(void *arg)
{
    mmk_mirror *m = arg;
    const char *ro = mmk_mirror_ro(m);
    poke(ro + 10, 'A');          /* reported, let through */
    poke(ro + 11, 'B');          /* same page: it was protected again */
    memset((void *)(uintptr_t)(ro + page), 'C', 300); /* a bulk write, next page */
    if (peek(ro + 10) != 'A' || peek(ro + 11) != 'B' || peek(ro + page + 299) != 'C')
        _exit(3);
    static const char ok[] = "child: writes landed\n";
    if (write(2, ok, sizeof ok - 1) < 0)
        _exit(5);
    /* Now the next one is fatal. */
    if (mmk_mirror_set_policy(m, MMK_MIRROR_ABORT, NULL, NULL) != 0)
        _exit(4);
    poke(ro + 12, 'D');
    _exit(0);
}

Test(mirror, watch_mode_lets_a_write_through_reports_it_and_catches_the_next, .init = setup)
{
    mmk_mirror *m = mmk_mirror_create(2 * page, 0);
    cr_assert_not_null(m);
    int r = mmk_mirror_set_policy(m, MMK_MIRROR_WATCH, NULL, NULL);
#if !defined(__x86_64__)
    cr_assert_eq(r, -ENOTSUP);
    cr_skip_test("watch mode is x86-64 only");
#endif
    cr_assert_eq(r, 0);
    int st = run_child(watched_writes, m, errbuf, sizeof errbuf);
    assert_died_of_segv(st, errbuf);
    const char *ro = mmk_mirror_ro(m);
    char want[200];
    snprintf(want, sizeof want, "mmkit: watched write at %p (mirror %p, offset 10)\n",
             (void *)(ro + 10), (void *)m);
    assert_first_line(errbuf, want);
    snprintf(want, sizeof want, "mmkit: watched write at %p (mirror %p, offset 11)\n",
             (void *)(ro + 11), (void *)m);
    cr_assert_not_null(strstr(errbuf, want), "second watched write:\n%s", errbuf);
    cr_assert_geq(count_lines(errbuf, "mmkit: watched write at "), 3, "%s", errbuf);
    cr_assert_not_null(strstr(errbuf, "child: writes landed\n"), "%s", errbuf);
    snprintf(want, sizeof want, "mmkit: stray write at %p (mirror %p, offset 12)\n",
             (void *)(ro + 12), (void *)m);
    const char *fatal = strstr(errbuf, want);
    cr_assert_not_null(fatal, "the write after watch mode must be fatal:\n%s", errbuf);
    cr_assert_gt(fatal, strstr(errbuf, "child: writes landed"));
    /* Shared memory: the child's watched writes are visible here too. */
    cr_assert_eq(peek(ro + 10), 'A');
    cr_assert_eq(peek(ro + page + 150), 'C');
    cr_assert_eq(peek(ro + 12), 0);
    cr_assert_eq(mmk_mirror_destroy(m), 0);
}

Test(mirror, watch_mode_in_process_keeps_counting, .init = setup)
{
#if !defined(__x86_64__)
    cr_skip_test("watch mode is x86-64 only");
#endif
    /* stderr gets the reports; silence them for this in-process check. */
    int saved = dup(2), devnull = open("/dev/null", O_WRONLY);
    cr_assert_geq(devnull, 0);
    dup2(devnull, 2);
    mmk_mirror *m = mmk_mirror_create(page, MMK_MIRROR_GUARD);
    cr_assert_not_null(m);
    cr_assert_eq(mmk_mirror_set_policy(m, MMK_MIRROR_WATCH, NULL, NULL), 0);
    const char *ro = mmk_mirror_ro(m);
    char *rw = mmk_mirror_rw(m);
    for (int i = 0; i < 100; i++)
        poke(ro + i, (char)i);
    poke(rw + 200, 'g'); /* guarded view outside a window: watched as well */
    char seen = peek(rw + 201);
    dup2(saved, 2);
    close(saved);
    close(devnull);
    cr_assert_eq(mmk_mirror_strays(m), 102);
    cr_assert_eq(seen, 0);
    for (int i = 0; i < 100; i++)
        cr_assert_eq(peek(ro + i), (char)i);
    cr_assert_eq(peek(ro + 200), 'g');
    /* Re-protected after each: the read-write view is closed again. */
    cr_assert_eq(mmk_mirror_set_policy(m, MMK_MIRROR_ABORT, NULL, NULL), 0);
    struct stray s = { m, rw + 5, 0 };
    int st = run_child(do_stray, &s, errbuf, sizeof errbuf);
    assert_died_of_segv(st, errbuf);
    cr_assert_eq(mmk_mirror_destroy(m), 0);
}

/*
 * Watch mode on a guarded view while another thread opens and closes
 * windows.  After a watched instruction its page is re-protected according
 * to whether a window is open; if the window closes between that check and
 * the mprotect, the page must not be left open.
 *
 * The stray thread pokes a new value into the guarded view in a loop.  The
 * window thread waits for a poke to fault (the stray count moves; the poker
 * is now in its report), opens a window, waits until the poked value lands
 * in memory (the watched instruction has run; its trap and re-protection
 * follow within microseconds), waits a varying fraction of that, and closes
 * the window: closing right between the re-protection's check and its
 * mprotect is what leaves the page open.  After each poke the stray thread
 * checks, while the window thread is known to be idle (epoch odd before and
 * after), that the page is closed: write(2) from it into a pipe must fail
 * with EFAULT.
 */
struct watch_race {
    mmk_mirror *m;
    atomic_ulong epoch;  /* odd: no window open and none about to be */
    atomic_ulong iters;  /* pokes done (and checked, if checkable) */
    atomic_long ret_ns;  /* when the last poke a window raced returned */
    atomic_int stop;
    atomic_long open_hits; /* page found open with no window */
    atomic_long checks;
    int rounds;
    int pipe[2];
};

enum { RACE_OFF = 64 };

static long now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000000000L + t.tv_nsec;
}

static void *race_windows(void *arg)
{
    struct watch_race *r = arg;
    const volatile char *seen = (const char *)mmk_mirror_ro(r->m) + RACE_OFF;
    unsigned seed = 12345;
    long lat = 35000; /* value landed -> poke returned; measured below */
    /* A time budget as well as a round count: under a sanitizer on a loaded
     * machine one round costs milliseconds (a report and backtrace per
     * watched access).  Fewer rounds check less, never wrongly. */
    long deadline = now_ns() + 30 * 1000000000L;
    for (int i = 0; i < r->rounds && !atomic_load(&r->stop) && now_ns() < deadline; i++) {
        unsigned long it = atomic_load(&r->iters);
        size_t s0 = mmk_mirror_strays(r->m);
        while (mmk_mirror_strays(r->m) == s0 && !atomic_load(&r->stop))
            ;
        char before = *seen;
        atomic_fetch_add(&r->epoch, 1); /* even: a window may be open */
        if (mmk_mirror_begin_write(r->m) != 0)
            break;
        long t0 = now_ns();
        while (*seen == before && now_ns() - t0 < 1000000 && !atomic_load(&r->stop))
            ;
        long landed = now_ns();
        seed = seed * 1103515245u + 12345u;
        long until = landed + (long)((seed >> 8) % (unsigned long)(lat + 2000));
        while (now_ns() < until)
            ;
        if (mmk_mirror_end_write(r->m) != 0)
            break;
        atomic_fetch_add(&r->epoch, 1); /* odd: closed, and stays closed */
        while (atomic_load(&r->iters) < it + 2 && !atomic_load(&r->stop))
            ;
        long l = atomic_load(&r->ret_ns) - landed;
        if (l > 0 && l < 200000)
            lat = (7 * lat + l) / 8;
    }
    atomic_store(&r->stop, 1);
    return NULL;
}

static void *race_strays(void *arg)
{
    struct watch_race *r = arg;
    char *target = (char *)mmk_mirror_rw(r->m) + RACE_OFF;
    for (unsigned v = 1; !atomic_load(&r->stop); v++) {
        unsigned long e0 = atomic_load(&r->epoch);
        poke(target, (char)(v % 255 + 1)); /* watched when no window is open */
        if (atomic_load(&r->epoch) != e0)
            atomic_store(&r->ret_ns, now_ns());
        unsigned long e = atomic_load(&r->epoch);
        if (e & 1) {
            ssize_t n = write(r->pipe[1], target, 1);
            int err = errno;
            if (atomic_load(&r->epoch) == e) { /* no window opened meanwhile */
                atomic_fetch_add(&r->checks, 1);
                if (n == 1) {
                    char c;
                    (void)!read(r->pipe[0], &c, 1);
                    atomic_fetch_add(&r->open_hits, 1);
                } else if (err != EFAULT) {
                    atomic_fetch_add(&r->open_hits, 1000000);
                }
            }
        }
        atomic_fetch_add(&r->iters, 1);
        if (atomic_load(&r->open_hits))
            atomic_store(&r->stop, 1);
    }
    return NULL;
}

Test(mirror, watch_mode_never_leaves_a_closed_window_open, .init = setup, .timeout = 60)
{
#if !defined(__x86_64__)
    cr_skip_test("watch mode is x86-64 only");
#endif
    static struct watch_race r;
    memset(&r, 0, sizeof r);
    r.m = mmk_mirror_create(page, MMK_MIRROR_GUARD);
    cr_assert_not_null(r.m);
    cr_assert_eq(mmk_mirror_set_policy(r.m, MMK_MIRROR_WATCH, NULL, NULL), 0);
    cr_assert_eq(pipe(r.pipe), 0);
    atomic_init(&r.epoch, 1);
    r.rounds = 20000;
    int saved = dup(2), devnull = open("/dev/null", O_WRONLY);
    cr_assert_geq(devnull, 0);
    dup2(devnull, 2); /* one report per watched access */
    pthread_t tw, ts;
    pthread_create(&ts, NULL, race_strays, &r);
    pthread_create(&tw, NULL, race_windows, &r);
    pthread_join(tw, NULL);
    pthread_join(ts, NULL);
    dup2(saved, 2);
    close(saved);
    close(devnull);
    cr_assert_eq(atomic_load(&r.open_hits), 0,
                 "the guarded page stayed open after a window closed (%ld checks, %zu strays)",
                 atomic_load(&r.checks), mmk_mirror_strays(r.m));
    cr_assert_gt(atomic_load(&r.checks), 0);
    cr_assert_gt(mmk_mirror_strays(r.m), 0);
    close(r.pipe[0]);
    close(r.pipe[1]);
    cr_assert_eq(mmk_mirror_destroy(r.m), 0);
}

/* ---- another process, by fd ----------------------------------------------------------- */

static void helper_path(char *buf, size_t len)
{
    ssize_t n = readlink("/proc/self/exe", buf, len - 1);
    cr_assert_gt(n, 0);
    buf[n] = 0;
    char *slash = strrchr(buf, '/');
    cr_assert_not_null(slash);
    snprintf(slash + 1, len - (size_t)(slash + 1 - buf), "helper_mirror_child");
    cr_assert_eq(access(buf, X_OK), 0, "%s is missing (make build/tests/helper_mirror_child)", buf);
}

static char exec_path[PATH_MAX];
static char exec_fd[16];
static char *exec_mode;

static void exec_helper(void *arg)
{
    /* Criterion's sandbox passes its state to a worker in BXFI_MAP; a helper
     * that inherited it (helpers link libcriterion too) would take itself for
     * a sandboxed worker and abort. */
    unsetenv("BXFI_MAP");
    execl(exec_path, exec_path, exec_fd, (char *)arg, exec_mode, (char *)NULL);
    _exit(127);
}

Test(mirror, another_process_opens_it_by_fd_across_exec, .init = setup)
{
    helper_path(exec_path, sizeof exec_path);
    mmk_mirror *m = mmk_mirror_create(4 * page, 0);
    cr_assert_not_null(m);
    static char greeting[] = "hello from the parent";
    cr_assert_eq(mmk_mirror_begin_write(m), 0);
    strcpy(mmk_mirror_rw(m), greeting);
    cr_assert_eq(mmk_mirror_end_write(m), 0);
    /* The mirror's own fd is close-on-exec: pass a plain duplicate. */
    int fd = fcntl(mmk_mirror_fd(m), F_DUPFD, 20);
    cr_assert_geq(fd, 0);
    snprintf(exec_fd, sizeof exec_fd, "%d", fd);

    exec_mode = "write";
    int st = run_child(exec_helper, greeting, errbuf, sizeof errbuf);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "helper status 0x%x:\n%s", st, errbuf);
    cr_assert_str_eq((const char *)mmk_mirror_ro(m) + 4096, "hello from the child");

    /* Wrong expectation: the helper must notice (the check can fail). */
    st = run_child(exec_helper, "something else", errbuf, sizeof errbuf);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 3, "status 0x%x", st);

    exec_mode = "stray";
    st = run_child(exec_helper, greeting, errbuf, sizeof errbuf);
    assert_died_of_segv(st, errbuf);
    cr_assert_eq(strncmp(errbuf, "mmkit: stray write at 0x", 24), 0, "%s", errbuf);
    cr_assert_not_null(strstr(errbuf, ", offset 100)\n"), "%s", errbuf);
    cr_assert_eq(peek((const char *)mmk_mirror_ro(m) + 100), 0, "the stray store did not land");
    close(fd);
    cr_assert_eq(mmk_mirror_destroy(m), 0);
}

Test(mirror, open_fd_in_process_shares_memory_and_checks_input, .init = setup)
{
    mmk_mirror *a = mmk_mirror_create(2 * page, 0);
    cr_assert_not_null(a);
    mmk_mirror *b = mmk_mirror_open_fd(mmk_mirror_fd(a), MMK_MIRROR_GUARD);
    cr_assert_not_null(b, "%s", strerror(errno));
    cr_assert_neq(mmk_mirror_fd(b), mmk_mirror_fd(a), "b works on its own duplicate");
    cr_assert_eq(mmk_mirror_size(b), 2 * page);
    cr_assert_eq(mmk_mirror_begin_write(a), 0);
    strcpy((char *)mmk_mirror_rw(a) + page, "shared");
    cr_assert_eq(mmk_mirror_end_write(a), 0);
    cr_assert_str_eq((const char *)mmk_mirror_ro(b) + page, "shared");
    cr_assert_eq(mmk_mirror_destroy(a), 0);
    cr_assert_str_eq((const char *)mmk_mirror_ro(b) + page, "shared", "b keeps the memory");
    cr_assert_eq(mmk_mirror_destroy(b), 0);

    errno = 0;
    cr_assert_null(mmk_mirror_open_fd(-1, 0));
    cr_assert_eq(errno, EBADF);
    int p[2];
    cr_assert_eq(pipe(p), 0);
    errno = 0;
    cr_assert_null(mmk_mirror_open_fd(p[0], 0));
    cr_assert_eq(errno, EINVAL, "a pipe is not memory");
    close(p[0]);
    close(p[1]);
    int odd = memfd_create("odd", MFD_CLOEXEC);
    cr_assert_geq(odd, 0);
    cr_assert_eq(ftruncate(odd, (off_t)page + 1), 0);
    errno = 0;
    cr_assert_null(mmk_mirror_open_fd(odd, 0));
    cr_assert_eq(errno, EINVAL, "size not a page multiple");
    cr_assert_eq(ftruncate(odd, (off_t)page), 0);
    errno = 0;
    cr_assert_null(mmk_mirror_open_fd(odd, 2));
    cr_assert_eq(errno, EINVAL, "unknown flag");
    close(odd);
}

Test(mirror, memory_is_sealed_against_resizing, .init = setup)
{
    mmk_mirror *m = mmk_mirror_create(page, 0);
    cr_assert_not_null(m);
    cr_assert_neq(ftruncate(mmk_mirror_fd(m), 0), 0, "shrinking would SIGBUS every reader");
    cr_assert_eq(errno, EPERM);
    errno = 0;
    cr_assert_neq(ftruncate(mmk_mirror_fd(m), (off_t)(2 * page)), 0, "growing is sealed too");
    cr_assert_eq(errno, EPERM);
    cr_assert_eq(lseek(mmk_mirror_fd(m), 0, SEEK_END), (off_t)page, "the size did not change");
    cr_assert_eq(mmk_mirror_destroy(m), 0);
}

/* open_fd with a descriptor a window could never write through: EACCES at
 * once, in both modes.  Guard mode maps the read-write view PROT_NONE, which
 * the kernel allows on such a descriptor, so only the check in open_fd stops
 * it; without it every begin_write would fail later. */
static void assert_open_fd_eacces(int fd, const char *what)
{
    static const unsigned modes[] = { 0, MMK_MIRROR_GUARD };
    for (size_t i = 0; i < 2; i++) {
        int maps = count_maps(), fds = count_fds();
        size_t areas = mmk_fault_area_count();
        errno = 0;
        mmk_mirror *m = mmk_mirror_open_fd(fd, modes[i]);
        int e = errno;
        if (m) {
            int b = mmk_mirror_begin_write(m);
            cr_assert_fail("%s, flags %u: opened (begin_write %d)", what, modes[i], b);
        }
        cr_assert_eq(e, EACCES, "%s, flags %u: %s", what, modes[i], strerror(e));
        cr_assert_eq(count_maps(), maps, "%s: nothing left mapped", what);
        cr_assert_eq(count_fds(), fds, "%s: nothing left open", what);
        cr_assert_eq(mmk_fault_area_count(), areas, "%s: nothing left registered", what);
    }
}

Test(mirror, open_fd_refuses_a_descriptor_it_cannot_write_with_eacces, .init = setup)
{
    mmk_mirror *a = mmk_mirror_create(page, 0);
    cr_assert_not_null(a);
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", mmk_mirror_fd(a));
    int rdonly = open(path, O_RDONLY | O_CLOEXEC);
    cr_assert_geq(rdonly, 0, "%s", strerror(errno));
    assert_open_fd_eacces(rdonly, "O_RDONLY");
    close(rdonly);
    int wronly = open(path, O_WRONLY | O_CLOEXEC);
    cr_assert_geq(wronly, 0, "%s", strerror(errno));
    assert_open_fd_eacces(wronly, "O_WRONLY");
    close(wronly);
    /* The same memory opened read-write is fine, in both modes. */
    int rdwr = open(path, O_RDWR | O_CLOEXEC);
    cr_assert_geq(rdwr, 0, "%s", strerror(errno));
    for (unsigned flags = 0; flags <= MMK_MIRROR_GUARD; flags++) {
        mmk_mirror *b = mmk_mirror_open_fd(rdwr, flags);
        cr_assert_not_null(b, "O_RDWR, flags %u: %s", flags, strerror(errno));
        cr_assert_eq(mmk_mirror_begin_write(b), 0);
        cr_assert_eq(mmk_mirror_end_write(b), 0);
        cr_assert_eq(mmk_mirror_destroy(b), 0);
    }
    close(rdwr);
    cr_assert_eq(mmk_mirror_destroy(a), 0);

    /* Read-write, but sealed against writing: just as unwritable. */
    int sealed = memfd_create("sealed", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    cr_assert_geq(sealed, 0);
    cr_assert_eq(ftruncate(sealed, (off_t)page), 0);
    cr_assert_eq(fcntl(sealed, F_ADD_SEALS, F_SEAL_WRITE), 0, "%s", strerror(errno));
    assert_open_fd_eacces(sealed, "F_SEAL_WRITE");
    close(sealed);
#ifdef F_SEAL_FUTURE_WRITE
    sealed = memfd_create("sealed", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    cr_assert_geq(sealed, 0);
    cr_assert_eq(ftruncate(sealed, (off_t)page), 0);
    if (fcntl(sealed, F_ADD_SEALS, F_SEAL_FUTURE_WRITE) == 0)
        assert_open_fd_eacces(sealed, "F_SEAL_FUTURE_WRITE");
    else
        cr_assert_eq(errno, EINVAL, "only a kernel older than 5.1 may refuse the seal");
    close(sealed);
#endif
}

/* ---- 4 writers in windows, 4 lock-free readers ------------------------------------------ */

enum { SLOTS = 64, WRITERS = 4, READERS = 4 };

struct shared_test {
    mmk_mirror *m;
    int iters;
    atomic_int writers_done;
    atomic_int violations; /* two writers inside windows at once */
    atomic_int regressions; /* a reader saw a counter go backwards */
    atomic_long reads;
    atomic_int started; /* a start gate, so that the threads really overlap */
    uint64_t final_seen[READERS][SLOTS];
};

struct worker { struct shared_test *t; int id; };

static void wait_for_everyone(struct shared_test *t)
{
    atomic_fetch_add(&t->started, 1);
    while (atomic_load(&t->started) < WRITERS + READERS)
        sched_yield();
}

static void *writer(void *arg)
{
    struct worker *w = arg;
    mmk_mirror *m = w->t->m;
    uint64_t *rw = mmk_mirror_rw(m);
    wait_for_everyone(w->t);
    for (int i = 0; i < w->t->iters; i++) {
        if (mmk_mirror_begin_write(m) != 0)
            break;
        mmk_mirror_begin_write(m); /* nested, under contention */
        __atomic_store_n(&rw[SLOTS], (uint64_t)w->id + 1, __ATOMIC_RELAXED);
        for (int k = 0; k < SLOTS; k++) {
            /* Load and store, not an atomic add: only the window's lock keeps
             * increments from being lost. */
            uint64_t v = __atomic_load_n(&rw[k], __ATOMIC_RELAXED);
            __atomic_store_n(&rw[k], v + 1, __ATOMIC_RELEASE);
        }
        if (__atomic_load_n(&rw[SLOTS], __ATOMIC_RELAXED) != (uint64_t)w->id + 1)
            atomic_fetch_add(&w->t->violations, 1);
        mmk_mirror_end_write(m);
        mmk_mirror_end_write(m);
    }
    atomic_fetch_add(&w->t->writers_done, 1);
    return NULL;
}

static void *reader(void *arg)
{
    struct worker *w = arg;
    const uint64_t *ro = mmk_mirror_ro(w->t->m);
    uint64_t last[SLOTS] = { 0 };
    int done;
    wait_for_everyone(w->t);
    do {
        done = atomic_load(&w->t->writers_done) == WRITERS;
        for (int k = 0; k < SLOTS; k++) {
            uint64_t v = __atomic_load_n(&ro[k], __ATOMIC_ACQUIRE);
            if (v < last[k])
                atomic_fetch_add(&w->t->regressions, 1);
            last[k] = v;
        }
        atomic_fetch_add(&w->t->reads, 1);
    } while (!done);
    memcpy(w->t->final_seen[w->id], last, sizeof last);
    return NULL;
}

static void writers_and_readers(unsigned flags, int iters)
{
    static struct shared_test t;
    memset(&t, 0, sizeof t);
    t.m = mmk_mirror_create((SLOTS + 1) * sizeof(uint64_t), flags);
    cr_assert_not_null(t.m);
    t.iters = iters;
    pthread_t th[WRITERS + READERS];
    struct worker w[WRITERS + READERS];
    for (int i = 0; i < READERS; i++) {
        w[WRITERS + i] = (struct worker){ &t, i };
        pthread_create(&th[WRITERS + i], NULL, reader, &w[WRITERS + i]);
    }
    for (int i = 0; i < WRITERS; i++) {
        w[i] = (struct worker){ &t, i };
        pthread_create(&th[i], NULL, writer, &w[i]);
    }
    for (int i = 0; i < WRITERS + READERS; i++)
        pthread_join(th[i], NULL);
    cr_assert_eq(atomic_load(&t.violations), 0, "two writers were inside windows at once");
    cr_assert_eq(atomic_load(&t.regressions), 0, "a reader saw a counter go backwards");
    cr_assert_geq(atomic_load(&t.reads), READERS);
    const uint64_t *ro = mmk_mirror_ro(t.m);
    uint64_t want = (uint64_t)WRITERS * (uint64_t)iters;
    for (int k = 0; k < SLOTS; k++) {
        cr_assert_eq(ro[k], want, "slot %d: %lu, want %lu (lost updates)", k,
                     (unsigned long)ro[k], (unsigned long)want);
        for (int r = 0; r < READERS; r++)
            cr_assert_eq(t.final_seen[r][k], want, "reader %d slot %d", r, k);
    }
    cr_assert_eq(mmk_mirror_strays(t.m), 0);
    cr_assert_eq(mmk_mirror_destroy(t.m), 0);
}

Test(mirror, four_writers_in_windows_and_four_lock_free_readers_agree, .init = setup)
{
    writers_and_readers(0, 20000);
}

Test(mirror, four_writers_and_four_readers_guarded, .init = setup)
{
    writers_and_readers(MMK_MIRROR_GUARD, 3000);
}

/* ---- the magic ring ------------------------------------------------------------------- */

Test(ring, wraps_for_every_offset, .init = setup)
{
    mmk_ring *r = mmk_ring_create(1);
    cr_assert_not_null(r, "%s", strerror(errno));
    size_t size = mmk_ring_size(r);
    cr_assert_eq(size, page);
    unsigned char *base = mmk_ring_base(r);
    unsigned char *pattern = malloc(size), *out = malloc(size);
    cr_assert(pattern && out);
    for (size_t off = 0; off < size; off++) {
        for (size_t i = 0; i < size; i++)
            pattern[i] = (unsigned char)(i * 7 + off * 13 + 1);
        memcpy(base + off, pattern, size); /* one contiguous write that wraps */
        for (size_t i = 0; i < size; i++)
            if (base[(off + i) % size] != pattern[i])
                cr_assert_fail("offset %zu: byte %zu did not wrap", off, i);
        memcpy(out, base + off, size); /* one contiguous read that wraps */
        if (memcmp(out, pattern, size) != 0)
            cr_assert_fail("offset %zu: read back differs", off);
    }
    free(pattern);
    free(out);
    cr_assert_eq(mmk_ring_destroy(r), 0);
}

Test(ring, larger_ring_halves_are_one_memory_and_errors, .init = setup)
{
    mmk_ring *r = mmk_ring_create(3 * page + 1);
    cr_assert_not_null(r);
    size_t size = mmk_ring_size(r);
    cr_assert_eq(size, 4 * page);
    char *b = mmk_ring_base(r);
    b[size + 5] = 'h';
    cr_assert_eq(b[5], 'h');
    b[size - 1] = 't';
    cr_assert_eq(b[2 * size - 1], 't');
    /* A write of a whole ring's worth starting near the end. */
    memset(b + size - 3, 'w', size);
    for (size_t i = 0; i < size - 3; i++)
        if (b[(size - 3 + i) % size] != 'w')
            cr_assert_fail("byte %zu", i);
    cr_assert_eq(mmk_ring_destroy(r), 0);

    errno = 0;
    cr_assert_null(mmk_ring_create(0));
    cr_assert_eq(errno, EINVAL);
    errno = 0;
    cr_assert_null(mmk_ring_create(SIZE_MAX));
    cr_assert_eq(errno, ENOMEM);
    cr_assert_null(mmk_ring_base(NULL));
    cr_assert_eq(mmk_ring_size(NULL), 0);
    cr_assert_eq(mmk_ring_destroy(NULL), -EINVAL);
}
