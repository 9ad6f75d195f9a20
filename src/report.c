/* report.c - async-signal-safe line formatting for fatal reports. */
#include "report.h"
#include "sys.h"

void mmk__line_str(struct mmk__line *l, const char *s)
{
    while (*s && l->n < sizeof l->buf - 1)
        l->buf[l->n++] = *s++;
}

void mmk__line_hex(struct mmk__line *l, uintptr_t v)
{
    char tmp[2 + 2 * sizeof v];
    int i = (int)sizeof tmp;
    do {
        tmp[--i] = "0123456789abcdef"[v & 15];
        v >>= 4;
    } while (v);
    tmp[--i] = 'x';
    tmp[--i] = '0';
    while (i < (int)sizeof tmp && l->n < sizeof l->buf - 1)
        l->buf[l->n++] = tmp[i++];
}

void mmk__line_dec(struct mmk__line *l, long long v)
{
    char tmp[24];
    int i = (int)sizeof tmp;
    unsigned long long u = v < 0 ? 0ull - (unsigned long long)v : (unsigned long long)v;
    do {
        tmp[--i] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0)
        tmp[--i] = '-';
    while (i < (int)sizeof tmp && l->n < sizeof l->buf - 1)
        l->buf[l->n++] = tmp[i++];
}

void mmk__line_end(struct mmk__line *l)
{
    l->buf[l->n++] = '\n';
    mmk__sys_write_all(2, l->buf, l->n);
    l->n = 0;
}

/* ---- fault reports with their frames ------------------------------------- */

/*
 * Two ways out for the frames of a report.
 *
 * NOW (the process is about to die).  Naming frames needs the ELF and DWARF
 * readers, which allocate and open files: not inside a signal handler, and
 * not in a forked child of a threaded process either (another thread may
 * have held malloc's lock at the fork).  A fresh program can, so the frames
 * are written into a pipe and `mmkit symbolize` is started with fork and
 * execve (async-signal-safe; the fork skips the fork handlers), its stdin
 * that pipe, its stdout another one, which we copy to stderr.  It writes
 * its whole answer in one write at the end, so on success stderr gets the
 * named frames, and on failure (not found, an error, killed at the time
 * limit) nothing, and we write the raw frames ourselves.
 *
 * LATER (the process goes on).  The report is written into a free slot of a
 * small queue and a semaphore is posted (sem_post is async-signal-safe);
 * the reporter thread names the frames with libdwfl, writes the report in
 * one write, frees the slot and bumps the slot's generation.  The handler
 * waits for that (a futex wait, at most the time limit), so the report is
 * out before the faulting code goes on: in order with the program's own
 * output, and not lost if the program then calls _exit.  Past the limit
 * (the reporter blocked, say on a lock the faulting thread holds) the
 * handler returns and the thread writes the report when it can.  Slots
 * change state only by atomic exchange, so handlers on several threads
 * never share a slot.
 */
#include "backtrace.h"
#include "mmkit.h"
#include "symbolize.h"

#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef MMK_DEFAULT_SYMBOLIZER
#define MMK_DEFAULT_SYMBOLIZER "/usr/local/bin/mmkit"
#endif

extern char **environ;

static char symbolizer[4096];      /* "" : none */
static long long symbolize_limit_ns = 3000000000LL;
static pthread_once_t report_once = PTHREAD_ONCE_INIT;

static void report_prepare_once(void)
{
    mmk__bt_prepare();
    const char *s = getenv("MMKIT_SYMBOLIZER");
    if (!s)
        s = access(MMK_DEFAULT_SYMBOLIZER, X_OK) == 0 ? MMK_DEFAULT_SYMBOLIZER : "";
    if (strlen(s) < sizeof symbolizer)
        memcpy(symbolizer, s, strlen(s) + 1);
    const char *ms = getenv("MMKIT_SYMBOLIZE_MS");
    if (ms && *ms) {
        char *end;
        long v = strtol(ms, &end, 10);
        if (*end == '\0' && v >= 0 && v <= 600000)
            symbolize_limit_ns = (long long)v * 1000000LL;
    }
}

void mmk__report_prepare(void)
{
    pthread_once(&report_once, report_prepare_once);
}

__attribute__((constructor)) static void report_init(void)
{
    mmk__report_prepare();
}

/* Write l's text plus a newline to fd; l is left empty. */
static void line_out(int fd, struct mmk__line *l)
{
    l->buf[l->n++] = '\n';
    mmk__sys_write_all(fd, l->buf, l->n);
    l->n = 0;
}

static void frames_out(int fd, const uintptr_t *pcs, int n)
{
    for (int i = 0; i < n; i++) {
        struct mmk__line l = MMK__LINE_INIT;
        mmk__bt_frame_line(&l, i, pcs[i]);
        line_out(fd, &l);
    }
}

/* Wait for child pid until the deadline, then kill it; always reaped. */
static void reap(int pid, long long deadline)
{
    int status;
    while (mmk__sys_waitpid(pid, &status, WNOHANG) == 0) {
        if (mmk__sys_now_ns() >= deadline) {
            mmk__sys_kill(pid, SIGKILL);
            mmk__sys_waitpid(pid, &status, 0);
            return;
        }
        mmk__sys_sleep_ns(1000000);
    }
    /* pid reaped, or -ECHILD: SIGCHLD ignored or someone else's waitpid */
}

/*
 * Run the symbolizer on the frames; 0 if it wrote them, else negative.
 * Its answer comes back through a pipe and we write it to stderr, so
 * success does not depend on its exit status (which the program's own
 * SIGCHLD handling may take from us): an answer read to its end is success,
 * no answer by the deadline is failure.
 */
static int symbolize_now(const uintptr_t *pcs, int n)
{
    if (!symbolizer[0] || n == 0)
        return -ENOENT;
    int in[2], out[2];
    int r = mmk__sys_pipe2(in, O_CLOEXEC);
    if (r < 0)
        return r;
    r = mmk__sys_pipe2(out, O_CLOEXEC);
    if (r < 0) {
        mmk__sys_close(in[0]);
        mmk__sys_close(in[1]);
        return r;
    }
    /* 48 lines of at most 512 bytes fit in a pipe's 64 KiB: no blocking. */
    frames_out(in[1], pcs, n);
    mmk__sys_close(in[1]);
    long long deadline = mmk__sys_now_ns() + symbolize_limit_ns;
    int pid = mmk__sys_fork_bare();
    if (pid == 0) {
        sigset_t all;
        sigemptyset(&all);
        mmk__sys_sigmask(SIG_SETMASK, &all, NULL);
        int null = mmk__sys_open("/dev/null", O_WRONLY, 0);
        if (mmk__sys_dup2(in[0], 0) < 0 || mmk__sys_dup2(out[1], 1) < 0 || null < 0 ||
            mmk__sys_dup2(null, 2) < 0)
            _exit(127);
        char *argv[] = { symbolizer, (char *)"symbolize", NULL };
        mmk__sys_execve(symbolizer, argv, environ);
        _exit(127);
    }
    mmk__sys_close(in[0]);
    mmk__sys_close(out[1]);
    if (pid < 0) {
        mmk__sys_close(out[0]);
        return pid;
    }
    size_t total = 0;
    int done = 0;
    for (;;) {
        long long left = deadline - mmk__sys_now_ns();
        if (left <= 0)
            break;
        int ev = mmk__sys_poll1(out[0], POLLIN, (int)(left / 1000000) + 1);
        if (ev < 0)
            break;
        if (ev == 0)
            continue;
        char buf[4096];
        ssize_t got = mmk__sys_read(out[0], buf, sizeof buf);
        if (got <= 0) {
            done = got == 0;
            break;
        }
        mmk__sys_write_all(2, buf, (size_t)got);
        total += (size_t)got;
    }
    mmk__sys_close(out[0]);
    reap(pid, deadline);
    return done && total > 0 ? 0 : -EIO;
}

/* ---- the queue for the reporter thread ---- */

enum { SLOTS = 8, SLOT_TEXT = 16384 };
enum { SLOT_FREE, SLOT_FILLING, SLOT_READY, SLOT_WRITING };

struct slot {
    atomic_int state;
    atomic_int done;       /* generation: bumped when the slot is written */
    unsigned long seq;
    size_t len;
    char text[SLOT_TEXT];
};

static struct slot slots[SLOTS];
_Static_assert(sizeof(atomic_uint) == sizeof(unsigned), "a futex word is 32 bits");
static atomic_ulong next_seq;
static sem_t wake;
static atomic_int reporter_running;
static pthread_mutex_t start_lock = PTHREAD_MUTEX_INITIALIZER;

static void slot_add(struct slot *s, struct mmk__line *l)
{
    l->buf[l->n++] = '\n';
    size_t n = l->n < SLOT_TEXT - s->len ? l->n : SLOT_TEXT - s->len;
    memcpy(s->text + s->len, l->buf, n);
    s->len += n;
    l->n = 0;
}

static int queue_report(struct mmk__line *head, const uintptr_t *pcs, int n)
{
    if (!atomic_load(&reporter_running))
        return -ENOENT;
    for (int i = 0; i < SLOTS; i++) {
        int expect = SLOT_FREE;
        struct slot *s = &slots[i];
        if (!atomic_compare_exchange_strong(&s->state, &expect, SLOT_FILLING))
            continue;
        s->len = 0;
        s->seq = atomic_fetch_add(&next_seq, 1);
        slot_add(s, head);
        for (int f = 0; f < n; f++) {
            struct mmk__line l = MMK__LINE_INIT;
            mmk__bt_frame_line(&l, f, pcs[f]);
            slot_add(s, &l);
        }
        int gen = atomic_load(&s->done);
        long long deadline = mmk__sys_now_ns() + symbolize_limit_ns;
        atomic_store(&s->state, SLOT_READY);
        sem_post(&wake);
        while (atomic_load(&s->done) == gen) {
            long long left = deadline - mmk__sys_now_ns();
            if (left <= 0)
                break;
            mmk__sys_futex_timedwait(&s->done, gen, left);
        }
        return 0;
    }
    return -EBUSY;
}

/*
 * A report written to a pipe nobody reads any more must not end the process
 * with SIGPIPE: a dying process is to die of its own signal, a watched one
 * to go on.  So SIGPIPE is blocked while the report is written, and one
 * raised by our writes (not pending before) is taken back before the mask
 * is restored.
 */
struct pipe_guard {
    sigset_t old;
    int was_pending;
};

static void pipe_guard_on(struct pipe_guard *g)
{
    sigset_t pipe_only, pending;
    sigemptyset(&pipe_only);
    sigaddset(&pipe_only, SIGPIPE);
    mmk__sys_sigmask(SIG_BLOCK, &pipe_only, &g->old);
    g->was_pending = mmk__sys_sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE);
}

static void pipe_guard_off(struct pipe_guard *g)
{
    if (!g->was_pending)
        mmk__sys_sigtake(SIGPIPE);
    mmk__sys_sigmask(SIG_SETMASK, &g->old, NULL);
}

void mmk__report_fault(struct mmk__line *head, const void *ucontext, int when)
{
    int saved = errno;
    struct pipe_guard guard;
    pipe_guard_on(&guard);
    uintptr_t pcs[MMK__BT_MAX];
    int n = mmk__bt_collect(ucontext, pcs, MMK__BT_MAX);
    if (when != MMK__REPORT_LATER || queue_report(head, pcs, n) < 0) {
        line_out(2, head);
        if (when != MMK__REPORT_NOW || symbolize_now(pcs, n) < 0)
            frames_out(2, pcs, n);
    }
    pipe_guard_off(&guard);
    errno = saved;
}

/* The oldest ready slot, or NULL. */
static struct slot *oldest_ready(void)
{
    struct slot *best = NULL;
    for (int i = 0; i < SLOTS; i++)
        if (atomic_load(&slots[i].state) == SLOT_READY && (!best || slots[i].seq < best->seq))
            best = &slots[i];
    return best;
}

static void *reporter_main(void *arg)
{
    (void)arg;
    struct mmk__symbolizer *sym = mmk__symbolizer_new(getenv("MMKIT_DEBUG_DIR"));
    for (;;) {
        while (sem_wait(&wake) < 0 && errno == EINTR)
            ;
        struct slot *s;
        while ((s = oldest_ready()) != NULL) {
            atomic_store(&s->state, SLOT_WRITING);
            size_t n = 0;
            char *text = sym ? mmk__report_rewrite(s->text, s->len, mmk__symbolize_key, sym, &n)
                             : NULL;
            if (text)
                mmk__sys_write_all(2, text, n);
            else
                mmk__sys_write_all(2, s->text, s->len);
            free(text);
            atomic_store(&s->state, SLOT_FREE);
            atomic_fetch_add(&s->done, 1);
            mmk__sys_futex_wake(&s->done, INT_MAX);
        }
    }
    return NULL;
}

static void after_fork_child(void)
{
    atomic_store(&reporter_running, 0); /* the thread did not come along */
}

static void flush_at_exit(void)
{
    mmk__report_flush(2000);
}

int mmk__report_start(void)
{
    mmk__report_prepare();
    int r = 0;
    pthread_mutex_lock(&start_lock);
    if (!atomic_load(&reporter_running)) {
        static int once;
        if (!once) {
            if (sem_init(&wake, 0, 0) != 0) {
                r = -errno;
                goto out;
            }
            pthread_atfork(NULL, NULL, after_fork_child);
            atexit(flush_at_exit);
            once = 1;
        }
        pthread_attr_t attr;
        pthread_t t;
        sigset_t all, old;
        sigfillset(&all);
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        /* The thread starts with every signal blocked: it takes none. */
        pthread_sigmask(SIG_SETMASK, &all, &old);
        int e = pthread_create(&t, &attr, reporter_main, NULL);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        pthread_attr_destroy(&attr);
        if (e != 0)
            r = -e;
        else
            atomic_store(&reporter_running, 1);
    }
out:
    pthread_mutex_unlock(&start_lock);
    return r;
}

int mmk__report_flush(long timeout_ms)
{
    long long deadline = mmk__sys_now_ns() + (long long)timeout_ms * 1000000LL;
    for (;;) {
        int busy = 0;
        for (int i = 0; i < SLOTS; i++)
            busy |= atomic_load(&slots[i].state) != SLOT_FREE;
        if (!busy || !atomic_load(&reporter_running))
            return 0;
        if (mmk__sys_now_ns() >= deadline)
            return -ETIMEDOUT;
        mmk__sys_sleep_ns(1000000);
    }
}

/* ---- public ---- */

int mmk_report_start(void)
{
    return mmk__report_start();
}

int mmk_fault_report(const mmk_fault *f, const char *text, unsigned flags)
{
    if (!f || !text || (flags & ~(unsigned)MMK_REPORT_NOW))
        return -EINVAL;
    struct mmk__line l = MMK__LINE_INIT;
    mmk__line_str(&l, "mmkit: ");
    mmk__line_str(&l, text);
    mmk__report_fault(&l, f->ucontext, (flags & MMK_REPORT_NOW) ? MMK__REPORT_NOW : MMK__REPORT_LATER);
    return 0;
}
