/*
 * mirror.c - one memfd mapped twice, read-write and read-only.
 *
 * Layout.  A mirror is one reservation of 2 * size bytes: the read-write view
 * in the low half, the read-only view in the high half, both MAP_SHARED
 * mappings of the same memfd.  Conversions are then a compare and an add, and
 * the whole reservation is a single fault-router area, so a stray access is
 * routed to mirror_fault() below with the mirror as its context.
 *
 * Write windows.  A pthread mutex serialises writers; an uncontended lock and
 * unlock stay in user space (a futex is only entered on contention), so a
 * window costs no system call in the default mode.  Nesting is counted by the
 * owner itself: `owner` holds a per-thread tag of the thread inside the
 * window, and only that thread ever stores its own tag there, so a thread can
 * read `owner` without the lock to learn whether it is already inside.
 *
 * Watch mode (x86-64).  The fault handler reports the access, opens the page
 * (mprotect to read-write), sets the trap flag (EFLAGS.TF) in the interrupted
 * context and asks for a retry.  The kernel restores TF on sigreturn, so the
 * CPU runs exactly the faulting instruction and then raises a debug trap,
 * delivered as SIGTRAP with si_code TRAP_TRACE.  Our SIGTRAP handler clears
 * TF and protects the page again.  The pages opened are remembered per thread
 * (an instruction may straddle two pages, so a few slots); a REP-string
 * instruction traps after every iteration with the same RIP, so the page
 * stays open until RIP moves on.  ptrace-based debuggers and rr also use TF:
 * run them without watch mode.
 */
#include "mmkit.h"
#include "fault.h"
#include "mirror.h"
#include "report.h"
#include "sys.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <ucontext.h>

#ifndef F_SEAL_FUTURE_WRITE
#define F_SEAL_FUTURE_WRITE 0x0010 /* Linux 5.1; older headers lack it */
#endif

struct policy {
    unsigned policy;
    mmk_fault_fn cb;
    void *ctx;
};

struct mmk_mirror {
    char *rw;            /* read-write view; the reservation starts here */
    char *ro;            /* read-only view, rw + size */
    size_t size;
    int fd;
    unsigned flags;
    mmk_area *area;      /* covers [rw, rw + 2 * size) */
    pthread_mutex_t lock;
    atomic_uintptr_t owner; /* tag of the thread in the window, 0 if none */
    atomic_ulong transitions; /* guard mode: windows opened + closed; see
                                 watch_close_slot */
    unsigned depth;      /* nesting of the owner's window; owner-only */
    /* The policy, its callback and ctx: one immutable triple, published with
     * one pointer store (see mmk_mirror_set_policy). */
    _Atomic(const struct policy *) policy;
    struct policy policy_slot[2];
    pthread_mutex_t policy_lock; /* serialises set_policy */
    atomic_size_t strays;
};

static const struct policy default_policy = { MMK_MIRROR_ABORT, NULL, NULL };

#define KNOWN_FLAGS MMK_MIRROR_GUARD

/* The address of a thread-local byte: unique among live threads. */
static __thread char thread_tag __attribute__((tls_model("initial-exec")));

static uintptr_t self_tag(void)
{
    return (uintptr_t)&thread_tag;
}

/* ---- shared with ring.c -------------------------------------------------- */

int mmk__double_map(int fd, size_t size, int prot_first, int prot_second, char **base)
{
    void *res;
    int r = mmk__sys_mmap(&res, NULL, 2 * size, PROT_NONE,
                          MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (r < 0)
        return r;
    char *b = res;
    void *got;
    r = mmk__sys_mmap(&got, b, size, prot_first, MAP_SHARED | MAP_FIXED, fd, 0);
    if (r == 0)
        r = mmk__sys_mmap(&got, b + size, size, prot_second, MAP_SHARED | MAP_FIXED, fd, 0);
    if (r < 0) {
        mmk__sys_munmap(b, 2 * size);
        return r;
    }
    *base = b;
    return 0;
}

int mmk__sealed_memfd(const char *name, size_t size)
{
    if (size > (size_t)INT64_MAX)
        return -ENOMEM;
    int fd = mmk__sys_memfd(name, MFD_ALLOW_SEALING);
    if (fd < 0)
        return fd;
    int r = mmk__sys_ftruncate(fd, (off_t)size);
    if (r == -EFBIG || r == -EINVAL)
        r = -ENOMEM; /* larger than a file may be: the same as no room */
    if (r == 0)
        r = mmk__sys_fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL);
    if (r < 0) {
        mmk__sys_close(fd);
        return r;
    }
    return fd;
}

/* ---- reporting (async-signal-safe) --------------------------------------- */

/*
 * "mmkit: <verb> <kind> at ADDR (mirror M, offset N)" and the frames of the
 * faulting code (report.h): named now by the symbolizer process when the
 * process dies, named later by the reporter thread when it goes on.
 */
static void report(const mmk_fault *f, const mmk_mirror *m, const char *verb, const char *kind,
                   uintptr_t addr, size_t off, int when)
{
    struct mmk__line l = MMK__LINE_INIT;
    mmk__line_str(&l, "mmkit: ");
    mmk__line_str(&l, verb);
    mmk__line_str(&l, " ");
    mmk__line_str(&l, kind);
    mmk__line_str(&l, " at ");
    mmk__line_hex(&l, addr);
    mmk__line_str(&l, " (mirror ");
    mmk__line_hex(&l, (uintptr_t)m);
    mmk__line_str(&l, ", offset ");
    mmk__line_dec(&l, (long long)off);
    mmk__line_str(&l, ")");
    mmk__report_fault(&l, f->ucontext, when);
}

static pthread_once_t unwinder_once = PTHREAD_ONCE_INIT;

static void load_unwinder_once(void)
{
    mmk__report_prepare(); /* loads the unwinder now, not inside a handler */
}

static void load_unwinder(void)
{
    pthread_once(&unwinder_once, load_unwinder_once);
}

/* ---- watch mode ---------------------------------------------------------- */

#if defined(__x86_64__)
#define WATCH_SUPPORTED 1
#define EFLAGS_TF 0x100

enum { WATCH_SLOTS = 4 };

struct watch_slot {
    mmk_mirror *m;
    char *page;
};

/* Pages this thread opened for the instruction it is single-stepping. */
static __thread struct {
    int n;
    greg_t rip;
    struct watch_slot s[WATCH_SLOTS];
} watching __attribute__((tls_model("initial-exec")));

static pthread_mutex_t trap_lock = PTHREAD_MUTEX_INITIALIZER;
static int trap_installed;
static struct sigaction prev_trap;

/* The protection a page of m has when no instruction is being watched. */
static int resting_prot(const mmk_mirror *m, const char *page)
{
    if (page >= m->ro)
        return PROT_READ;
    if (!(m->flags & MMK_MIRROR_GUARD) || atomic_load(&m->owner) != 0)
        return PROT_READ | PROT_WRITE;
    return PROT_NONE;
}

/*
 * Give a page its resting protection back after a watched instruction.
 *
 * For a page of a guarded read-write view the resting protection depends on
 * whether a window is open, and a window can open or close (in another
 * thread) between our reading `owner` and our mprotect.  Applied blindly, a
 * stale "window open" would leave the page read-write after the window has
 * closed.  So window transitions and this function follow a protocol:
 *
 *   a transition (begin_write, end_write; serialised by m->lock):
 *     T1. store the new owner;
 *     T2. increment m->transitions (release);
 *     T3. mprotect the whole view to the new state.
 *   closing a watched page, here:
 *     W1. g = transitions (acquire);
 *     W2. read owner, choose the protection;
 *     W3. mprotect the page;
 *     W4. if transitions != g, start again at W1.
 *
 * Claim: once W4 reads the same count as W1, the page's protection matches
 * the state of the latest transition, or a transition whose T3 is still to
 * come will set it.  Take any transition X:
 *   (a) W1 reads X's increment or a later one.  T1 is sequenced before T2
 *       and W1 acquires what T2 released, so X's owner store happens-before
 *       W2: W2 sees X's state, or that of a transition after X.
 *   (b) W1 does not read X's increment but W4 does: we start again.
 *   (c) W4 does not read X's increment.  Then X's T3 took the mm's mmap
 *       lock (mprotect holds it for writing) after our W3 did: had it taken
 *       it before, W3 would have synchronised with it, X's T2 would
 *       happen-before W4, and W4 would see the increment.  X's T3 therefore
 *       overwrites what W3 wrote, with X's own state.
 * On return every transition is (a) or (c).  If W2 saw the state of the
 * last (a) transition, W3 applied it and only (c) transitions follow, each
 * rewriting the page with its own state in order (transitions are
 * serialised by m->lock).  If W2 saw the owner of a (c) transition, its T3
 * rewrites the page anyway.  Either way the last protection applied is that
 * of the last transition: a closed window stays closed.
 *
 * Only atomics and mprotect: async-signal-safe.  A retry needs a whole
 * transition to land inside one mprotect of ours; the loop is bounded all
 * the same (a thread cycling windows flat out must not hold a signal
 * handler hostage), and when it gives up it chooses PROT_NONE, which never
 * leaves the view open: if a window is open after all, its owner's next
 * access faults once and mirror_fault opens the page again.  (A system call
 * of the owner's that reads or writes that page meanwhile would get EFAULT;
 * that needs a stray access, watch mode and an adversarial schedule.)
 */
static void watch_close_slot(struct watch_slot *s)
{
    mmk_mirror *m = s->m;
    size_t pg = mmk__page_size();
    if (s->page >= m->ro || !(m->flags & MMK_MIRROR_GUARD)) {
        /* Fixed resting protection: no window changes it. */
        mmk__sys_mprotect(s->page, pg, resting_prot(m, s->page));
        return;
    }
    for (int tries = 0; tries < 16; tries++) {
        unsigned long g = atomic_load_explicit(&m->transitions, memory_order_acquire);
        mmk__sys_mprotect(s->page, pg, resting_prot(m, s->page));
        if (atomic_load_explicit(&m->transitions, memory_order_acquire) == g)
            return;
    }
    mmk__sys_mprotect(s->page, pg, PROT_NONE);
}

static void on_trap(int sig, siginfo_t *si, void *uctx)
{
    int saved_errno = errno;
    ucontext_t *uc = uctx;
    if (watching.n > 0 && si->si_code == TRAP_TRACE) {
        /* A REP-string instruction traps after each iteration without moving
         * RIP: keep its pages open until it is done. */
        if (uc->uc_mcontext.gregs[REG_RIP] != watching.rip) {
            uc->uc_mcontext.gregs[REG_EFL] &= ~(greg_t)EFLAGS_TF;
            for (int i = 0; i < watching.n; i++)
                watch_close_slot(&watching.s[i]);
            watching.n = 0;
        }
        errno = saved_errno;
        return;
    }
    /* Not ours: behave as if mmkit had never touched SIGTRAP. */
    if (prev_trap.sa_flags & SA_SIGINFO) {
        prev_trap.sa_sigaction(sig, si, uctx);
    } else if (prev_trap.sa_handler == SIG_DFL) {
        mmk__sys_sigdefault(SIGTRAP);
        mmk__sys_raise(SIGTRAP); /* a trap does not recur on return: send it again */
    } else if (prev_trap.sa_handler != SIG_IGN) {
        prev_trap.sa_handler(sig);
    }
    errno = saved_errno;
}

/* trap_lock is held across fork() so that a child never inherits it locked
 * by a thread it does not have (a watch policy set in the child would wait
 * for it forever).  Nothing waits for anything else while holding it. */
static void trap_fork_prepare(void)
{
    pthread_mutex_lock(&trap_lock);
}

static void trap_fork_parent(void)
{
    pthread_mutex_unlock(&trap_lock);
}

static void trap_fork_child(void)
{
    pthread_mutex_init(&trap_lock, NULL);
}

__attribute__((constructor)) static void trap_atfork_init(void)
{
    pthread_atfork(trap_fork_prepare, trap_fork_parent, trap_fork_child);
}

static int install_trap_handler(void)
{
    int r = 0;
    pthread_mutex_lock(&trap_lock);
    if (!trap_installed) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_sigaction = on_trap;
        sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER | SA_RESTART;
        sigemptyset(&sa.sa_mask);
        r = mmk__sys_sigaction(SIGTRAP, &sa, &prev_trap);
        if (r == 0)
            trap_installed = 1;
    }
    pthread_mutex_unlock(&trap_lock);
    return r;
}

/* Open the faulting page for one instruction.  Returns MMK_FAULT_RETRY, or
 * MMK_FAULT_PASS if the page could not be opened. */
static int watch_step(mmk_mirror *m, const mmk_fault *f)
{
    size_t pg = mmk__page_size();
    char *page = (char *)((uintptr_t)f->addr & ~(uintptr_t)(pg - 1));
    ucontext_t *uc = f->ucontext;
    greg_t rip = uc->uc_mcontext.gregs[REG_RIP];
    if (watching.n > 0 && watching.rip != rip) {
        /* A different instruction: whatever was open is done with. */
        for (int i = 0; i < watching.n; i++)
            watch_close_slot(&watching.s[i]);
        watching.n = 0;
    }
    if (watching.n == WATCH_SLOTS) {
        watch_close_slot(&watching.s[0]);
        memmove(&watching.s[0], &watching.s[1], (WATCH_SLOTS - 1) * sizeof watching.s[0]);
        watching.n--;
    }
    if (mmk__sys_mprotect(page, pg, PROT_READ | PROT_WRITE) < 0)
        return MMK_FAULT_PASS;
    watching.s[watching.n++] = (struct watch_slot){ m, page };
    watching.rip = rip;
    uc->uc_mcontext.gregs[REG_EFL] |= EFLAGS_TF;
    return MMK_FAULT_RETRY;
}
#else
#define WATCH_SUPPORTED 0
#endif

/* ---- the fault handler ---------------------------------------------------- */

/* Die of SIGSEGV, whatever handler the process had: re-running the access
 * with the default action in place faults again and ends the process. */
static int die_of_segv(void)
{
    mmk__sys_sigdefault(SIGSEGV);
    return MMK_FAULT_RETRY;
}

static int mirror_fault(const mmk_fault *f, void *ctx)
{
    mmk_mirror *m = ctx;
    uintptr_t a = (uintptr_t)f->addr;
    if (f->signo != SIGSEGV)
        return MMK_FAULT_PASS; /* SIGBUS: the file was cut short; not ours */
    int in_ro = a >= (uintptr_t)m->ro;
    size_t off = a - (uintptr_t)(in_ro ? m->ro : m->rw);
    const char *kind;
    if (in_ro) {
        if (f->write == 0)
            return MMK_FAULT_PASS; /* a read of a readable page: not a stray */
        kind = "write";
    } else {
        if (!(m->flags & MMK_MIRROR_GUARD))
            return MMK_FAULT_PASS;
        if (atomic_load(&m->owner) == self_tag()) {
            /* Our own window, but a watched instruction of another thread
             * re-protected this page as the window opened (a passing state,
             * or the give-up case of watch_close_slot): open it again. */
            size_t pg = mmk__page_size();
            char *page = (char *)(a & ~(uintptr_t)(pg - 1));
            if (mmk__sys_mprotect(page, pg, PROT_READ | PROT_WRITE) < 0)
                return MMK_FAULT_PASS;
            return MMK_FAULT_RETRY;
        }
        kind = f->write == 1 ? "write" : f->write == 0 ? "read" : "access";
    }
    atomic_fetch_add(&m->strays, 1);
    const struct policy *p = atomic_load(&m->policy);
    switch (p->policy) {
    case MMK_MIRROR_CALLBACK:
        if (p->cb)
            return p->cb(f, p->ctx);
        break;
#if WATCH_SUPPORTED
    case MMK_MIRROR_WATCH:
        report(f, m, "watched", kind, a, off, MMK__REPORT_LATER);
        return watch_step(m, f);
#endif
    default:
        break;
    }
    report(f, m, "stray", kind, a, off, MMK__REPORT_NOW);
    return die_of_segv();
}

/* ---- life cycle ------------------------------------------------------------ */

/* Build a mirror over fd (taken over: closed on failure). */
static mmk_mirror *mirror_new(int fd, size_t size, unsigned flags)
{
    mmk_mirror *m = calloc(1, sizeof *m);
    if (!m) {
        mmk__sys_close(fd);
        errno = ENOMEM;
        return NULL;
    }
    int rw_prot = (flags & MMK_MIRROR_GUARD) ? PROT_NONE : PROT_READ | PROT_WRITE;
    char *base;
    int r = mmk__double_map(fd, size, rw_prot, PROT_READ, &base);
    if (r < 0) {
        free(m);
        mmk__sys_close(fd);
        errno = -r;
        return NULL;
    }
    m->rw = base;
    m->ro = base + size;
    m->size = size;
    m->fd = fd;
    m->flags = flags;
    pthread_mutex_init(&m->lock, NULL);
    atomic_init(&m->owner, 0);
    atomic_init(&m->transitions, 0);
    atomic_init(&m->policy, &default_policy);
    pthread_mutex_init(&m->policy_lock, NULL);
    atomic_init(&m->strays, 0);
    load_unwinder();
    m->area = mmk_area_register(base, 2 * size, mirror_fault, m);
    if (!m->area) {
        int e = errno;
        mmk__sys_munmap(base, 2 * size);
        mmk__sys_close(fd);
        pthread_mutex_destroy(&m->lock);
        pthread_mutex_destroy(&m->policy_lock);
        free(m);
        errno = e;
        return NULL;
    }
    return m;
}

/* Round size up to pages; 0 if that is impossible or both views cannot fit. */
static size_t round_size(size_t size)
{
    size_t pg = mmk__page_size();
    if (size > (SIZE_MAX / 2 - pg) || size > (size_t)INT64_MAX / 2)
        return 0;
    return (size + pg - 1) & ~(pg - 1);
}

mmk_mirror *mmk_mirror_create(size_t size, unsigned flags)
{
    if (size == 0 || (flags & ~KNOWN_FLAGS)) {
        errno = EINVAL;
        return NULL;
    }
    size = round_size(size);
    if (size == 0) {
        errno = ENOMEM;
        return NULL;
    }
    int fd = mmk__sealed_memfd("mmkit-mirror", size);
    if (fd < 0) {
        errno = -fd;
        return NULL;
    }
    return mirror_new(fd, size, flags);
}

mmk_mirror *mmk_mirror_open_fd(int fd, unsigned flags)
{
    if (flags & ~KNOWN_FLAGS) {
        errno = EINVAL;
        return NULL;
    }
    if (fd < 0) {
        errno = EBADF;
        return NULL;
    }
    struct stat st;
    int r = mmk__sys_fstat(fd, &st);
    if (r < 0) {
        errno = -r;
        return NULL;
    }
    size_t pg = mmk__page_size();
    if (!S_ISREG(st.st_mode) || st.st_size <= 0 || ((size_t)st.st_size & (pg - 1)) ||
        round_size((size_t)st.st_size) != (size_t)st.st_size) {
        errno = EINVAL;
        return NULL;
    }
    /* Writable, or a window could never open.  Check it here, in every mode:
     * in guard mode the read-write view is mapped PROT_NONE, which the kernel
     * allows on a read-only or write-sealed descriptor, and only the first
     * begin_write would fail (mprotect to read-write: EACCES). */
    r = mmk__sys_fcntl(fd, F_GETFL, 0);
    if (r < 0) {
        errno = -r;
        return NULL;
    }
    if ((r & O_ACCMODE) != O_RDWR) {
        errno = EACCES;
        return NULL;
    }
    r = mmk__sys_fcntl(fd, F_GET_SEALS, 0);
    if (r == -EINVAL)
        r = 0; /* a file that cannot be sealed (not a memfd): no seals */
    if (r < 0) {
        errno = -r;
        return NULL;
    }
    if (r & (F_SEAL_WRITE | F_SEAL_FUTURE_WRITE)) {
        errno = EACCES;
        return NULL;
    }
    int own = mmk__sys_fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (own < 0) {
        errno = -own;
        return NULL;
    }
    return mirror_new(own, (size_t)st.st_size, flags);
}

int mmk_mirror_destroy(mmk_mirror *m)
{
    if (!m)
        return -EINVAL;
    if (atomic_load(&m->owner) != 0)
        return -EBUSY;
    int r = mmk_area_unregister(m->area);
    if (r < 0)
        return r;
    mmk__sys_munmap(m->rw, 2 * m->size);
    mmk__sys_close(m->fd);
    pthread_mutex_destroy(&m->lock);
    pthread_mutex_destroy(&m->policy_lock);
    free(m);
    return 0;
}

/* ---- accessors and conversions -------------------------------------------- */

void *mmk_mirror_rw(mmk_mirror *m)
{
    return m ? m->rw : NULL;
}

const void *mmk_mirror_ro(mmk_mirror *m)
{
    return m ? m->ro : NULL;
}

size_t mmk_mirror_size(const mmk_mirror *m)
{
    return m ? m->size : 0;
}

int mmk_mirror_fd(const mmk_mirror *m)
{
    return m ? m->fd : -EINVAL;
}

size_t mmk_mirror_strays(const mmk_mirror *m)
{
    return m ? atomic_load(&m->strays) : 0;
}

/* Offset of p in the mirror, or -1 (errno set) if p is in neither view. */
static ptrdiff_t offset_of(const mmk_mirror *m, const void *p)
{
    if (!m) {
        errno = EINVAL;
        return -1;
    }
    /* One unsigned compare covers both views: they are adjacent. */
    uintptr_t d = (uintptr_t)p - (uintptr_t)m->rw;
    if (d >= 2 * m->size) {
        errno = EFAULT;
        return -1;
    }
    return (ptrdiff_t)(d < m->size ? d : d - m->size);
}

void *mmk_rw(mmk_mirror *m, const void *p)
{
    ptrdiff_t off = offset_of(m, p);
    return off < 0 ? NULL : m->rw + off;
}

const void *mmk_ro(mmk_mirror *m, const void *p)
{
    ptrdiff_t off = offset_of(m, p);
    return off < 0 ? NULL : m->ro + off;
}

/* ---- write windows --------------------------------------------------------- */

int mmk_mirror_begin_write(mmk_mirror *m)
{
    if (!m)
        return -EINVAL;
    uintptr_t self = self_tag();
    if (atomic_load_explicit(&m->owner, memory_order_relaxed) == self) {
        m->depth++;
        return 0;
    }
    pthread_mutex_lock(&m->lock);
    m->depth = 1;
    /* Owner, count, then protection: the order watch_close_slot relies on.
     * Publishing the owner before the view is open is harmless: only this
     * thread acts on owner == self, and it touches nothing before we return. */
    atomic_store(&m->owner, self);
    if (m->flags & MMK_MIRROR_GUARD) {
        atomic_fetch_add_explicit(&m->transitions, 1, memory_order_acq_rel);
        int r = mmk__sys_mprotect(m->rw, m->size, PROT_READ | PROT_WRITE);
        if (r < 0) {
            /* Not open after all: a closing transition, in the same order. */
            atomic_store(&m->owner, 0);
            atomic_fetch_add_explicit(&m->transitions, 1, memory_order_acq_rel);
            mmk__sys_mprotect(m->rw, m->size, PROT_NONE);
            pthread_mutex_unlock(&m->lock);
            return r;
        }
    }
    return 0;
}

int mmk_mirror_end_write(mmk_mirror *m)
{
    if (!m)
        return -EINVAL;
    if (atomic_load_explicit(&m->owner, memory_order_relaxed) != self_tag())
        return -EPERM;
    if (--m->depth > 0)
        return 0;
    int r = 0;
    /* Owner, count, then protection: the order watch_close_slot relies on
     * (a watched instruction that re-protects a page from now on chooses
     * PROT_NONE, and one that chose read-write before sees the count move
     * and chooses again). */
    atomic_store(&m->owner, 0);
    if (m->flags & MMK_MIRROR_GUARD) {
        atomic_fetch_add_explicit(&m->transitions, 1, memory_order_acq_rel);
        r = mmk__sys_mprotect(m->rw, m->size, PROT_NONE);
    }
    pthread_mutex_unlock(&m->lock);
    return r;
}

/* ---- policy ------------------------------------------------------------------ */

int mmk_mirror_set_policy(mmk_mirror *m, unsigned policy, mmk_fault_fn cb, void *ctx)
{
    if (!m)
        return -EINVAL;
    switch (policy) {
    case MMK_MIRROR_ABORT:
        if (cb)
            return -EINVAL;
        break;
    case MMK_MIRROR_CALLBACK:
        if (!cb)
            return -EINVAL;
        break;
    case MMK_MIRROR_WATCH:
        if (cb)
            return -EINVAL;
#if WATCH_SUPPORTED
        {
            int r = install_trap_handler();
            if (r < 0)
                return r;
        }
        break;
#else
        return -ENOTSUP;
#endif
    default:
        return -EINVAL;
    }
    /*
     * The handler reads the triple through one pointer, so it sees either
     * the old triple or the new one, never the old callback with the new
     * ctx.  The new triple is written into the slot that is not published;
     * the grace period after publishing waits for every handler that may
     * still be reading the old slot, so the next call may overwrite it.
     * A side effect worth promising: once this returns, no thread runs the
     * old callback any more.
     */
    if (mmk__fault_in_handler())
        return -EDEADLK;
    if (policy != MMK_MIRROR_ABORT)
        mmk__report_start(); /* names reports of a process that goes on */
    pthread_mutex_lock(&m->policy_lock);
    const struct policy *cur = atomic_load(&m->policy);
    struct policy *next = cur == &m->policy_slot[0] ? &m->policy_slot[1] : &m->policy_slot[0];
    *next = (struct policy){ policy, cb, ctx };
    atomic_store(&m->policy, next);
    mmk__fault_synchronize(); /* cannot fail: not in a handler */
    pthread_mutex_unlock(&m->policy_lock);
    return 0;
}
