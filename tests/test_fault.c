/* test_fault.c - the fault router: dispatch, retry, chaining, SIGBUS, the
 * write flag, stack overflow, bad input and concurrent (un)registration. */
#include "mmkit.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fault_helpers.h"

/* Faulting accesses go through volatile so the compiler keeps them where
 * they are written, before the checks that follow them. */
static void poke(char *p, char v)
{
    *(volatile char *)p = v;
}

static char *page_of(const void *a)
{
    return (char *)((uintptr_t)a & ~(uintptr_t)(page - 1));
}

/* ---- dispatch among 1,000 areas ------------------------------------------ */

#define NAREAS 1000
/* Written by handlers, so volatile: the compiler cannot see that an access
 * calls them. */
static volatile int hits[NAREAS];
static volatile int last_write[NAREAS];

static int record_and_open(const mmk_fault *f, void *ctx)
{
    int i = (int)(intptr_t)ctx;
    hits[i]++;
    last_write[i] = f->write;
    if (mprotect(page_of(f->addr), page, PROT_READ | PROT_WRITE) != 0)
        return MMK_FAULT_PASS;
    return MMK_FAULT_RETRY;
}

Test(fault, dispatch_among_1000_areas, .init = setup)
{
    /* Areas on every other page, so a neighbour's address would be wrong. */
    char *mem = map_none(2 * NAREAS);
    static mmk_area *areas[NAREAS];
    /* Register in a shuffled order so the table is built by insertion. */
    int order[NAREAS];
    for (int i = 0; i < NAREAS; i++)
        order[i] = i;
    srand(42);
    for (int i = NAREAS - 1; i > 0; i--) {
        int j = rand() % (i + 1), t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
    for (int k = 0; k < NAREAS; k++) {
        int i = order[k];
        areas[i] = mmk_area_register(mem + 2 * (size_t)i * page, page, record_and_open,
                                     (void *)(intptr_t)i);
        cr_assert_not_null(areas[i], "register %d: %s", i, strerror(errno));
    }
    cr_assert_eq(mmk_fault_area_count(), NAREAS);
    for (int i = NAREAS - 1; i >= 0; i--) {
        volatile char *p = mem + 2 * (size_t)i * page + (size_t)(i % 97);
        if (i % 2)
            *p = (char)i; /* write fault */
        else
            (void)*p; /* read fault */
    }
    for (int i = 0; i < NAREAS; i++) {
        cr_assert_eq(hits[i], 1, "area %d handled %d faults", i, hits[i]);
        cr_assert_eq(last_write[i], i % 2, "area %d write flag %d", i, last_write[i]);
        if (i % 2)
            cr_assert_eq(mem[2 * (size_t)i * page + (size_t)(i % 97)], (char)i);
    }
    for (int i = 0; i < NAREAS; i++)
        cr_assert_eq(mmk_area_unregister(areas[i]), 0);
    cr_assert_eq(mmk_fault_area_count(), 0);
}

/* ---- the write flag -------------------------------------------------------- */

Test(fault, write_flag_read_then_write, .init = setup)
{
    char *mem = map_none(1);
    hits[0] = 0;
    mmk_area *a = mmk_area_register(mem, page, record_and_open, (void *)0);
    cr_assert_not_null(a);
    volatile char *p = mem;
    (void)*p;
    cr_assert_eq(hits[0], 1);
    cr_assert_eq(last_write[0], 0, "a read reported write=%d", last_write[0]);
    /* Now read-only: a write faults as a write. */
    cr_assert_eq(mprotect(mem, page, PROT_READ), 0);
    *p = 7;
    cr_assert_eq(hits[0], 2);
    cr_assert_eq(last_write[0], 1, "a write reported write=%d", last_write[0]);
    cr_assert_eq(*p, 7);
    cr_assert_eq(mmk_area_unregister(a), 0);
}

/* ---- retry: the handler fixes the protection and the access completes ----- */

static volatile int retry_count;

static int open_after_three(const mmk_fault *f, void *ctx)
{
    (void)ctx;
    /* Decline to fix it twice: the access must be retried each time. */
    if (++retry_count < 3)
        return MMK_FAULT_RETRY;
    mprotect(page_of(f->addr), page, PROT_READ | PROT_WRITE);
    return MMK_FAULT_RETRY;
}

Test(fault, retry_reexecutes_the_access, .init = setup)
{
    char *mem = map_none(1);
    mmk_area *a = mmk_area_register(mem, page, open_after_three, NULL);
    cr_assert_not_null(a);
    poke(mem + 123, 'z');
    cr_assert_eq(retry_count, 3, "retry_count=%d", retry_count);
    cr_assert_eq(mem[123], 'z');
    mmk_area_unregister(a);
}

/* ---- chaining to a previously installed handler ---------------------------- */

static volatile sig_atomic_t prev_calls;
static void *volatile prev_addr;

static void previous_handler(int sig, siginfo_t *si, void *uc)
{
    (void)sig;
    (void)uc;
    prev_calls++;
    prev_addr = si->si_addr;
    mprotect(page_of(si->si_addr), page, PROT_READ | PROT_WRITE);
}

static int always_pass(const mmk_fault *f, void *ctx)
{
    (void)f;
    ++*(volatile int *)ctx;
    return MMK_FAULT_PASS;
}

Test(fault, chains_to_previous_siginfo_handler, .init = setup)
{
    struct sigaction sa = { 0 };
    sa.sa_sigaction = previous_handler;
    sa.sa_flags = SA_SIGINFO;
    cr_assert_eq(sigaction(SIGSEGV, &sa, NULL), 0);

    char *mem = map_none(3);
    volatile int passed = 0;
    mmk_area *a = mmk_area_register(mem, page, always_pass, (void *)&passed);
    cr_assert_not_null(a);
    /* Inside an area whose handler passes: both run, the previous one fixes. */
    poke(mem + 10, 1);
    cr_assert_eq(passed, 1);
    cr_assert_eq(prev_calls, 1);
    cr_assert_eq(prev_addr, mem + 10);
    /* Outside every area: only the previous handler runs. */
    poke(mem + 2 * page + 5, 1);
    cr_assert_eq(passed, 1);
    cr_assert_eq(prev_calls, 2);
    cr_assert_eq(prev_addr, mem + 2 * page + 5);
    mmk_area_unregister(a);
}

static volatile sig_atomic_t plain_calls;
static char *plain_target;

static void plain_handler(int sig)
{
    (void)sig;
    plain_calls++;
    mprotect(plain_target, page, PROT_READ | PROT_WRITE);
}

Test(fault, chains_to_previous_plain_handler, .init = setup)
{
    plain_target = map_none(1);
    cr_assert_neq(signal(SIGSEGV, plain_handler), SIG_ERR);
    cr_assert_eq(mmk_fault_install(), 0);
    poke(plain_target, 1);
    cr_assert_eq(plain_calls, 1);
}

Test(fault, unclaimed_fault_dies_of_sigsegv, .init = setup, .signal = SIGSEGV)
{
    char *mem = map_none(2);
    volatile int passed = 0;
    cr_assert_not_null(mmk_area_register(mem, page, always_pass, (void *)&passed));
    poke(mem + page, 1); /* the next page: no area, SIG_DFL before mmkit */
    cr_assert_fail("survived a fault nobody handles");
}

Test(fault, passed_fault_dies_of_sigsegv, .init = setup, .signal = SIGSEGV)
{
    char *mem = map_none(1);
    volatile int passed = 0;
    cr_assert_not_null(mmk_area_register(mem, page, always_pass, (void *)&passed));
    poke(mem, 1);
    cr_assert_fail("survived a fault its area passed");
}

/* The same, observed from outside: the child's wait status is "killed by
 * SIGSEGV", exactly what it would be without mmkit. */
Test(fault, child_wait_status_is_sigsegv, .init = setup)
{
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        struct rlimit no_core = { 0, 0 };
        setrlimit(RLIMIT_CORE, &no_core);
        char *mem = mmap(NULL, page, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        volatile int passed = 0;
        if (!mmk_area_register(mem, page, always_pass, (void *)&passed))
            _exit(3);
        poke(mem, 1);
        _exit(4);
    }
    int st;
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    cr_assert(WIFSIGNALED(st), "child exited with %d", WEXITSTATUS(st));
    cr_assert_eq(WTERMSIG(st), SIGSEGV);
}

Test(fault, kill_of_sigsegv_is_not_swallowed, .init = setup, .signal = SIGSEGV)
{
    cr_assert_eq(mmk_fault_install(), 0);
    kill(getpid(), SIGSEGV); /* si_code SI_USER: no fault to re-run */
    cr_assert_fail("survived kill(SIGSEGV)");
}

/* ---- SIGBUS past the end of a file ---------------------------------------- */

struct bus_ctx {
    int fd, signo, code, calls;
};

static int grow_file(const mmk_fault *f, void *ctx)
{
    struct bus_ctx *b = ctx;
    b->calls++;
    b->signo = f->signo;
    b->code = f->code;
    if (ftruncate(b->fd, (off_t)(4 * page)) != 0)
        return MMK_FAULT_PASS;
    return MMK_FAULT_RETRY;
}

Test(fault, sigbus_past_end_of_file_reaches_area, .init = setup)
{
    struct bus_ctx b = { 0 };
    b.fd = memfd_create("mmk-test-bus", MFD_CLOEXEC);
    cr_assert_geq(b.fd, 0);
    cr_assert_eq(ftruncate(b.fd, (off_t)page), 0);
    char *mem = mmap(NULL, 4 * page, PROT_READ | PROT_WRITE, MAP_SHARED, b.fd, 0);
    cr_assert(mem != MAP_FAILED);
    mmk_area *a = mmk_area_register(mem, 4 * page, grow_file, &b);
    cr_assert_not_null(a);
    poke(mem, 'a'); /* inside the file: no fault */
    cr_assert_eq(b.calls, 0);
    poke(mem + 2 * page + 1, 'b');
    cr_assert_eq(b.calls, 1);
    cr_assert_eq(b.signo, SIGBUS);
    cr_assert_eq(b.code, BUS_ADRERR);
    cr_assert_eq(mem[2 * page + 1], 'b');
    char c = 0;
    cr_assert_eq(pread(b.fd, &c, 1, (off_t)(2 * page + 1)), 1);
    cr_assert_eq(c, 'b');
    mmk_area_unregister(a);
}

/* ---- a fault inside a handler is not re-dispatched ------------------------- */

static int fault_in_handler(const mmk_fault *f, void *ctx)
{
    (void)f;
    ++*(volatile int *)ctx;
    *(volatile char *)f->addr = 1; /* faults again on the same thread */
    return MMK_FAULT_RETRY;
}

Test(fault, nested_fault_goes_to_previous_handler, .init = setup)
{
    struct sigaction sa = { 0 };
    sa.sa_sigaction = previous_handler;
    sa.sa_flags = SA_SIGINFO;
    cr_assert_eq(sigaction(SIGSEGV, &sa, NULL), 0);
    char *mem = map_none(1);
    volatile int calls = 0;
    mmk_area *a = mmk_area_register(mem, page, fault_in_handler, (void *)&calls);
    cr_assert_not_null(a);
    poke(mem, 9);
    /* mmkit's handler ran once; the nested fault went to the previous handler
     * (which opened the page) instead of looping through the area again. */
    cr_assert_eq(calls, 1);
    cr_assert_eq(prev_calls, 1);
    cr_assert_eq(mem[0], 9);
    mmk_area_unregister(a);
}

Test(fault, nested_fault_with_sig_dfl_dies, .init = setup, .signal = SIGSEGV)
{
    char *mem = map_none(1);
    volatile int calls = 0;
    cr_assert_not_null(mmk_area_register(mem, page, fault_in_handler, (void *)&calls));
    poke(mem, 9);
    cr_assert_fail("survived a fault inside a handler");
}

static int unregister_inside(const mmk_fault *f, void *ctx)
{
    volatile int *res = ctx;
    res[0] = mmk_area_unregister(*(mmk_area *const *)(res + 2));
    mprotect(page_of(f->addr), page, PROT_READ | PROT_WRITE);
    return MMK_FAULT_RETRY;
}

Test(fault, unregister_from_handler_is_edeadlk, .init = setup)
{
    char *mem = map_none(1);
    volatile int res[2 + sizeof(void *) / sizeof(int) + 1] = { 0 };
    mmk_area *a = mmk_area_register(mem, page, unregister_inside, (void *)res);
    cr_assert_not_null(a);
    memcpy((void *)(res + 2), &a, sizeof a);
    poke(mem, 1);
    cr_assert_eq(res[0], -EDEADLK);
    cr_assert_eq(mmk_area_unregister(a), 0);
}

static int never_called(const mmk_fault *f, void *ctx)
{
    (void)f;
    (void)ctx;
    return MMK_FAULT_PASS;
}

static volatile int register_errno;

static int register_inside(const mmk_fault *f, void *ctx)
{
    (void)ctx;
    static char spare[64];
    mmk_area *a = mmk_area_register(spare, sizeof spare, never_called, NULL);
    register_errno = a ? 0 : errno;
    mprotect(page_of(f->addr), page, PROT_READ | PROT_WRITE);
    return MMK_FAULT_RETRY;
}

Test(fault, register_from_handler_is_edeadlk, .init = setup)
{
    char *mem = map_none(1);
    mmk_area *a = mmk_area_register(mem, page, register_inside, NULL);
    cr_assert_not_null(a);
    poke(mem, 1);
    cr_assert_eq(register_errno, EDEADLK);
    cr_assert_eq(mmk_fault_area_count(), 1);
    cr_assert_eq(mmk_area_unregister(a), 0);
}

/* ---- stack overflow on a thread with an alternate signal stack ------------- */

static int overflow_seen(const mmk_fault *f, void *ctx)
{
    (void)f;
    (void)ctx;
    _exit(42); /* async-signal-safe proof that the handler ran */
}

#pragma GCC diagnostic ignored "-Winfinite-recursion"
static int recurse(volatile char *p, int depth)
{
    volatile char buf[512];
    buf[0] = (char)depth;
    buf[511] = p ? p[0] : 0;
    return recurse(buf, depth + 1) + buf[3];
}

static void *overflow_thread(void *arg)
{
    (void)arg;
    if (mmk_fault_altstack(0) != 0)
        _exit(5);
    recurse(NULL, 0);
    return NULL;
}

Test(fault, stack_overflow_reaches_handler_on_altstack, .init = setup, .exit_code = 42)
{
    /* A thread stack of our own, with a guard page we register as an area. */
    size_t stack_pages = 32;
    char *stack = map_none(stack_pages + 1);
    cr_assert_eq(mprotect(stack + page, stack_pages * page, PROT_READ | PROT_WRITE), 0);
    cr_assert_not_null(mmk_area_register(stack, page, overflow_seen, NULL));
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstack(&attr, stack + page, stack_pages * page);
    pthread_t t;
    cr_assert_eq(pthread_create(&t, &attr, overflow_thread, NULL), 0);
    pthread_join(t, NULL);
    cr_assert_fail("the overflow was not seen");
}

Test(fault, altstack_is_idempotent_and_freed, .init = setup)
{
    /* Start without one (sanitizer runtimes install their own). */
    stack_t ss = { .ss_flags = SS_DISABLE };
    cr_assert_eq(sigaltstack(&ss, NULL), 0);
    cr_assert_eq(mmk_fault_altstack(0), 0);
    cr_assert_eq(sigaltstack(NULL, &ss), 0);
    cr_assert_eq(ss.ss_flags & SS_DISABLE, 0);
    void *sp = ss.ss_sp;
    cr_assert_eq(mmk_fault_altstack(1 << 20), 0); /* already has one */
    cr_assert_eq(sigaltstack(NULL, &ss), 0);
    cr_assert_eq(ss.ss_sp, sp);
    cr_assert_eq(mmk_fault_altstack_free(), 0);
    cr_assert_eq(sigaltstack(NULL, &ss), 0);
    cr_assert_neq(ss.ss_flags & SS_DISABLE, 0);
}

/* ---- bad input --------------------------------------------------------------- */

Test(fault, bad_input_registers_nothing, .init = setup)
{
    char *mem = map_none(4);
    mmk_area *a = mmk_area_register(mem + page, 2 * page, never, NULL);
    cr_assert_not_null(a);

    errno = 0;
    cr_assert_null(mmk_area_register(mem, 0, never, NULL));
    cr_assert_eq(errno, EINVAL);
    errno = 0;
    cr_assert_null(mmk_area_register(mem, page, NULL, NULL));
    cr_assert_eq(errno, EINVAL);
    errno = 0;
    cr_assert_null(mmk_area_register((void *)(UINTPTR_MAX - page + 1), 2 * page, never, NULL));
    cr_assert_eq(errno, EOVERFLOW);
    /* Overlaps: the same range, a tail, a head, a range that contains it. */
    void *starts[] = { mem + page, mem + 2 * page, mem, mem };
    size_t lens[] = { 2 * page, 2 * page, 2 * page, 4 * page };
    for (int i = 0; i < 4; i++) {
        errno = 0;
        cr_assert_null(mmk_area_register(starts[i], lens[i], never, NULL), "overlap %d", i);
        cr_assert_eq(errno, EEXIST, "overlap %d gave %d", i, errno);
    }
    cr_assert_eq(mmk_fault_area_count(), 1);
    /* Touching neighbours are fine. */
    mmk_area *b = mmk_area_register(mem, page, never, NULL);
    mmk_area *c = mmk_area_register(mem + 3 * page, page, never, NULL);
    cr_assert_not_null(b);
    cr_assert_not_null(c);
    cr_assert_eq(mmk_fault_area_count(), 3);
    cr_assert_eq(mmk_area_unregister(NULL), -EINVAL);
    cr_assert_eq(mmk_area_unregister(a), 0);
    cr_assert_eq(mmk_area_unregister(b), 0);
    cr_assert_eq(mmk_area_unregister(c), 0);
    cr_assert_eq(mmk_fault_area_count(), 0);
}

Test(fault, strerror_names_every_code)
{
    cr_assert_str_eq(mmk_strerror(0), "success");
    cr_assert_str_eq(mmk_strerror(-ENOMEM), strerror(ENOMEM));
    cr_assert_str_eq(mmk_strerror(EEXIST), strerror(EEXIST));
    for (int e = MMK_EBASE + 1; e < MMK_ELAST; e++) {
        const char *s = mmk_strerror(-e);
        cr_assert_not_null(s);
        cr_assert_str_neq(s, "unknown error", "code %d has no name", e);
    }
    cr_assert_str_eq(mmk_strerror(-MMK_ELAST), "unknown error");
    cr_assert_str_eq(mmk_strerror(123456), "unknown error");
    cr_assert_str_eq(mmk_version(), MMK_VERSION_STRING);
}

/* ---- unregister waits for a running handler --------------------------------- */

static atomic_int slow_state; /* 0 idle, 1 inside the handler, 2 finished */

static int slow_handler(const mmk_fault *f, void *ctx)
{
    (void)ctx;
    atomic_store(&slow_state, 1);
    struct timespec ts = { 0, 200 * 1000 * 1000 };
    nanosleep(&ts, NULL);
    mprotect(page_of(f->addr), page, PROT_READ | PROT_WRITE);
    atomic_store(&slow_state, 2);
    return MMK_FAULT_RETRY;
}

static void *touch_thread(void *arg)
{
    *(volatile char *)arg = 1;
    return NULL;
}

Test(fault, unregister_waits_for_running_handler, .init = setup)
{
    char *mem = map_none(1);
    mmk_area *a = mmk_area_register(mem, page, slow_handler, NULL);
    cr_assert_not_null(a);
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, touch_thread, mem), 0);
    while (atomic_load(&slow_state) == 0)
        sched_yield();
    cr_assert_eq(mmk_area_unregister(a), 0);
    cr_assert_eq(atomic_load(&slow_state), 2, "unregister returned while the handler ran");
    pthread_join(t, NULL);
    cr_assert_eq(mem[0], 1);
}

/* ---- 4 faulting threads while a fifth registers and unregisters ------------- */

#define WORKERS 4
#define ROUNDS 20000

struct worker {
    char *mem;
    atomic_long handled;
    long touched;
};

static int reopen_counted(const mmk_fault *f, void *ctx)
{
    struct worker *w = ctx;
    atomic_fetch_add(&w->handled, 1);
    return mprotect(page_of(f->addr), page, PROT_READ | PROT_WRITE) == 0 ? MMK_FAULT_RETRY
                                                                         : MMK_FAULT_PASS;
}

static void *fault_loop(void *arg)
{
    struct worker *w = arg;
    for (int i = 0; i < ROUNDS; i++) {
        if (mprotect(w->mem, page, PROT_NONE) != 0)
            abort();
        ((volatile char *)w->mem)[i % page] = (char)i;
        w->touched++;
    }
    return NULL;
}

static atomic_int stop_churn;

static void *churn_loop(void *arg)
{
    char *spare = arg;
    long n = 0;
    while (!atomic_load(&stop_churn) || n < 2000) {
        mmk_area *x = mmk_area_register(spare + (size_t)(n % 8) * page, page, never, NULL);
        if (!x)
            abort();
        if (mmk_area_unregister(x) != 0)
            abort();
        n++;
    }
    return (void *)(intptr_t)n;
}

Test(fault, four_threads_fault_while_a_fifth_churns_the_table, .init = setup, .timeout = 120)
{
    static struct worker w[WORKERS];
    mmk_area *areas[WORKERS];
    char *mem = map_none(2 * WORKERS);
    char *spare = map_none(8);
    for (int i = 0; i < WORKERS; i++) {
        w[i].mem = mem + 2 * (size_t)i * page;
        areas[i] = mmk_area_register(w[i].mem, page, reopen_counted, &w[i]);
        cr_assert_not_null(areas[i]);
    }
    pthread_t churn, t[WORKERS];
    cr_assert_eq(pthread_create(&churn, NULL, churn_loop, spare), 0);
    for (int i = 0; i < WORKERS; i++)
        cr_assert_eq(pthread_create(&t[i], NULL, fault_loop, &w[i]), 0);
    for (int i = 0; i < WORKERS; i++)
        pthread_join(t[i], NULL);
    atomic_store(&stop_churn, 1);
    void *churned;
    pthread_join(churn, &churned);
    cr_assert_geq((intptr_t)churned, 2000, "the churn thread ran %ld rounds", (long)(intptr_t)churned);
    for (int i = 0; i < WORKERS; i++) {
        cr_assert_eq(w[i].touched, ROUNDS);
        cr_assert_eq(atomic_load(&w[i].handled), ROUNDS, "worker %d: %ld faults handled of %d", i,
                     atomic_load(&w[i].handled), ROUNDS);
        cr_assert_eq(mmk_area_unregister(areas[i]), 0);
    }
    cr_assert_eq(mmk_fault_area_count(), 0);
}

/* ---- a large table: overlap checks across chunks, removal in any order ------ */

Test(fault, large_table_overlaps_and_removal_in_random_order, .init = setup, .timeout = 120)
{
    enum { N = 3000 };
    char *mem = map_none(2 * N + 2);
    static mmk_area *areas[N];
    int order[N];
    for (int i = 0; i < N; i++)
        order[i] = i;
    srand(7);
    for (int i = N - 1; i > 0; i--) {
        int j = rand() % (i + 1), t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
    for (int k = 0; k < N; k++) {
        int i = order[k];
        areas[i] = mmk_area_register(mem + (2 * (size_t)i + 1) * page, page, never_called, NULL);
        cr_assert_not_null(areas[i]);
    }
    cr_assert_eq(mmk_fault_area_count(), N);
    /* Every gap is free; anything reaching into a neighbour is refused. */
    for (int i = 0; i < N; i += 7) {
        char *gap = mem + 2 * (size_t)i * page;
        errno = 0;
        cr_assert_null(mmk_area_register(gap, 2 * page, never_called, NULL), "gap %d", i);
        cr_assert_eq(errno, EEXIST);
        if (i > 0) {
            errno = 0;
            cr_assert_null(mmk_area_register(gap - page / 2, page, never_called, NULL));
            cr_assert_eq(errno, EEXIST);
        }
        mmk_area *g = mmk_area_register(gap, page, never_called, NULL);
        cr_assert_not_null(g, "gap %d: %s", i, strerror(errno));
        cr_assert_eq(mmk_area_unregister(g), 0);
    }
    cr_assert_eq(mmk_fault_area_count(), N);
    /* Remove half in random order; the rest still dispatch. */
    for (int k = 0; k < N; k += 2)
        cr_assert_eq(mmk_area_unregister(areas[order[k]]), 0);
    cr_assert_eq(mmk_fault_area_count(), N / 2);
    cr_assert_eq(mmk_area_unregister(areas[order[0]]), -EINVAL, "removed twice");
    for (int k = 1; k < N; k += 2 * 37) {
        int i = order[k];
        hits[0] = 0;
        mmk_area *x = areas[i];
        cr_assert_eq(mmk_area_unregister(x), 0);
        areas[i] = mmk_area_register(mem + (2 * (size_t)i + 1) * page, page, record_and_open,
                                     (void *)0);
        cr_assert_not_null(areas[i]);
        poke(mem + (2 * (size_t)i + 1) * page, 1);
        cr_assert_eq(hits[0], 1, "area %d", i);
    }
    for (int k = 1; k < N; k += 2)
        cr_assert_eq(mmk_area_unregister(areas[order[k]]), 0);
    cr_assert_eq(mmk_fault_area_count(), 0);
}
