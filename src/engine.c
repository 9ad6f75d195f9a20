/*
 * engine.c - the region engine's one state object: its lock, set-up, fork
 * handling, the mapping budget, eviction, and calibration of the mapping
 * count against the kernel.
 *
 * The count (engine.h) is an upper bound kept from what every kernel
 * guarantees.  It may drift above the kernel's (the kernel merged two
 * mappings the engine kept apart), never below.  When the count nears the
 * budget the engine first drops the scratch ranges it still holds, then asks
 * the kernel where the mappings in the view space begin (PROCMAP_QUERY on
 * /proc/self/maps since Linux 6.11; the text of /proc/self/maps before) and
 * lowers its marks to exactly that, and only then unmaps views.  Nothing
 * here allocates: the fault handler runs all of it.
 */
#include "fault.h"
#include "sys.h"
#include "view.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

struct mmk__engine mmk__eng = { .pool = { .fd = -1 }, .maps = { .maps_fd = -1 } };

/* ---- lock ------------------------------------------------------------------ */

/*
 * A three-state futex mutex (0 free, 1 locked, 2 locked with waiters).  It is
 * taken from signal handlers, so it must be async-signal-safe: atomics and
 * the futex system call only.  `mine` is set before the lock is taken and
 * cleared after it is released, so a fault raised on this thread anywhere
 * inside a locked section (by a signal handler that touches region memory)
 * is seen as "inside the engine" and passed on, never left waiting for a
 * lock its own thread holds.
 */
static __thread int vm_lock_mine __attribute__((tls_model("initial-exec")));

void mmk__vm_lock(void)
{
    int saved = errno;
    vm_lock_mine = 1;
    atomic_signal_fence(memory_order_seq_cst);
    int c = 0;
    if (!atomic_compare_exchange_strong(&mmk__eng.lock_word, &c, 1)) {
        if (c != 2)
            c = atomic_exchange(&mmk__eng.lock_word, 2);
        while (c != 0) {
            mmk__sys_futex_wait(&mmk__eng.lock_word, 2);
            c = atomic_exchange(&mmk__eng.lock_word, 2);
        }
    }
    errno = saved;
}

void mmk__vm_unlock(void)
{
    int saved = errno;
    if (atomic_fetch_sub(&mmk__eng.lock_word, 1) != 1) {
        atomic_store(&mmk__eng.lock_word, 0);
        mmk__sys_futex_wake(&mmk__eng.lock_word, 1);
    }
    atomic_signal_fence(memory_order_seq_cst);
    vm_lock_mine = 0;
    errno = saved;
}

int mmk__vm_lock_held(void)
{
    return vm_lock_mine;
}

/* ---- fork ------------------------------------------------------------------- */

/*
 * A child of fork() must never write into the parent's pool.  Before fork,
 * the view space and the pool window are marked MADV_DONTFORK, so the child
 * gets no mapping there at all (an access in the child faults, and the
 * region handler passes it on: the child dies of SIGSEGV as for any bad
 * pointer).  The parent's marks are removed again right after fork.
 * madvise only changes flags of whole mappings inside the range it is given,
 * so it splits nothing inside the view space.
 */
static void madvise_all(int advice)
{
    struct mmk__engine *E = &mmk__eng;
    if (E->space.base)
        mmk__sys_madvise(E->space.base, E->space.granules << 21, advice);
    if (E->pool.win)
        mmk__sys_madvise(E->pool.win, (size_t)E->pool.max_pages * E->pool.page, advice);
}

/* The fault router's writer lock comes before the engine lock (fault.h). */
static void atfork_prepare(void)
{
    mmk__fault_fork_prepare();
    mmk__vm_lock();
    madvise_all(MADV_DONTFORK);
}

static void atfork_parent(void)
{
    madvise_all(MADV_DOFORK);
    mmk__vm_unlock();
    mmk__fault_fork_parent();
}

static void atfork_child(void)
{
    mmk__eng.forked_child = 1;
    mmk__protect_forked();
    mmk__vm_unlock();
    mmk__fault_fork_child();
}

static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

static void register_atfork(void)
{
    pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
}

void mmk__engine_atfork(void)
{
    pthread_once(&atfork_once, register_atfork);
}

/* ---- PROCMAP_QUERY (Linux 6.11), declared here for older headers ------- */

struct mmk__procmap_query {
    uint64_t size;
    uint64_t query_flags;
    uint64_t query_addr;
    uint64_t vma_start;
    uint64_t vma_end;
    uint64_t vma_flags;
    uint64_t vma_page_size;
    uint64_t vma_offset;
    uint64_t inode;
    uint32_t dev_major;
    uint32_t dev_minor;
    uint32_t vma_name_size;
    uint32_t build_id_size;
    uint64_t vma_name_addr;
    uint64_t build_id_addr;
};
#define MMK__PROCMAP_QUERY _IOWR('f', 17, struct mmk__procmap_query)
#define MMK__PROCMAP_COVERING_OR_NEXT 0x10

/* Call fn(start, end) for every kernel mapping that intersects [lo, hi), in
 * address order.  0, or -errno if the kernel could not be asked. */
typedef void (*vma_fn)(uintptr_t start, uintptr_t end, void *ctx);

static int walk_query(uintptr_t lo, uintptr_t hi, vma_fn fn, void *ctx)
{
    uintptr_t at = lo;
    while (at < hi) {
        struct mmk__procmap_query q;
        memset(&q, 0, sizeof q);
        q.size = sizeof q;
        q.query_flags = MMK__PROCMAP_COVERING_OR_NEXT;
        q.query_addr = at;
        int r = mmk__sys_ioctl(mmk__eng.maps.maps_fd, MMK__PROCMAP_QUERY, &q);
        if (r == -ENOENT)
            return 0; /* no mapping at or above `at` */
        if (r < 0)
            return r;
        if (q.vma_start >= hi || q.vma_end <= at)
            return 0;
        fn((uintptr_t)q.vma_start, (uintptr_t)q.vma_end, ctx);
        at = (uintptr_t)q.vma_end;
    }
    return 0;
}

/* The text of /proc/self/maps, read in pieces into a static buffer (we are
 * under the engine lock, maybe in a signal handler: no malloc). */
static char maps_text[65536];

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* Parse "start-end" at the beginning of a line.  1 on success. */
static int parse_range(const char *s, const char *end, uintptr_t *a, uintptr_t *b)
{
    uintptr_t x = 0, y = 0;
    int d, n = 0;
    while (s < end && (d = hexval(*s)) >= 0)
        x = x * 16 + (uintptr_t)d, s++, n++;
    if (!n || s >= end || *s != '-')
        return 0;
    s++;
    n = 0;
    while (s < end && (d = hexval(*s)) >= 0)
        y = y * 16 + (uintptr_t)d, s++, n++;
    if (!n)
        return 0;
    *a = x;
    *b = y;
    return 1;
}

static int walk_text(uintptr_t lo, uintptr_t hi, vma_fn fn, void *ctx)
{
    int fd = mmk__eng.maps.maps_fd;
    if (mmk__sys_lseek(fd, 0, SEEK_SET) < 0)
        return -EIO;
    size_t have = 0;
    for (;;) {
        ssize_t n = mmk__sys_read(fd, maps_text + have, sizeof maps_text - have);
        if (n < 0)
            return (int)n;
        have += (size_t)n;
        /* Every complete line in the buffer. */
        char *line = maps_text, *stop = maps_text + have;
        for (;;) {
            char *nl = memchr(line, '\n', (size_t)(stop - line));
            if (!nl)
                break;
            uintptr_t a, b;
            if (parse_range(line, nl, &a, &b) && a < hi && b > lo)
                fn(a, b, ctx);
            line = nl + 1;
        }
        size_t rest = (size_t)(stop - line);
        if (n == 0)
            return 0; /* end of file (a last line without '\n' is ignored) */
        if (rest == sizeof maps_text)
            return -EOVERFLOW; /* a line longer than the buffer */
        memmove(maps_text, line, rest);
        have = rest;
    }
}

static int walk_kernel(uintptr_t lo, uintptr_t hi, vma_fn fn, void *ctx)
{
    if (mmk__eng.maps.maps_fd < 0)
        return -ENOSYS;
    return mmk__eng.maps.use_query ? walk_query(lo, hi, fn, ctx) : walk_text(lo, hi, fn, ctx);
}

static void count_one(uintptr_t start, uintptr_t end, void *ctx)
{
    (void)start;
    (void)end;
    ++*(long *)ctx;
}

long mmk__engine_kernel_count(uintptr_t lo, uintptr_t hi)
{
    long n = 0;
    int r = walk_kernel(lo, hi, count_one, &n);
    return r < 0 ? r : n;
}

void mmk__engine_force_text(int on)
{
    mmk__vm_lock();
    if (on)
        mmk__eng.maps.use_query = 0;
    else if (mmk__eng.maps.maps_fd >= 0) {
        mmk__eng.maps.use_query = 1;
        if (mmk__engine_kernel_count(0, 1) < 0) /* no PROCMAP_QUERY here */
            mmk__eng.maps.use_query = 0;
    }
    mmk__vm_unlock();
}

void mmk__engine_space_range(char **base, size_t *len)
{
    *base = mmk__eng.space.base;
    *len = mmk__eng.space.granules << 21;
}

unsigned long mmk__engine_calibrations(void)
{
    return mmk__eng.maps.calibrations;
}

/* ---- calibration ---------------------------------------------------------- */

struct cal {
    uintptr_t lo, hi;
    long scratch; /* breaks found in scratch ranges */
    long orphans;
};

/* A kernel mapping begins at `start`: give the break to whoever owns it. */
static void cal_one(uintptr_t start, uintptr_t end, void *ctx)
{
    struct cal *c = ctx;
    (void)end;
    if (start <= c->lo || start >= c->hi)
        return; /* not a break inside the view space */
    void *o = mmk__space_owner((const void *)start);
    if (o == (void *)&mmk__scratch_owner) {
        c->scratch++;
        return;
    }
    struct mmk_region *v = o;
    uintptr_t b = v ? (uintptr_t)v->base : 0;
    if (v && start >= b && start <= b + v->size) {
        mmk__view_mark_break(v, (start - b) / page_size());
        return;
    }
    struct mmk_region *u = mmk__space_owner((const void *)(start - 1));
    if (u && (void *)u != (void *)&mmk__scratch_owner && start == (uintptr_t)u->base + u->size) {
        mmk__view_mark_break(u, u->npages);
        return;
    }
    c->orphans++;
}

int mmk__engine_calibrate(void)
{
    struct mmk__engine *E = &mmk__eng;
    if (!E->space.base || E->maps.maps_fd < 0)
        return -ENOSYS;
    long before = E->maps.total;
    for (struct mmk_region *v = E->views; v; v = v->next)
        mmk__view_clear_breaks(v);
    E->maps.total -= E->maps.orphans;
    E->maps.orphans = 0;
    struct cal c = { (uintptr_t)E->space.base, (uintptr_t)E->space.base + (E->space.granules << 21),
                     0, 0 };
    int r = walk_kernel(c.lo, c.hi, cal_one, &c);
    /* Scratch ranges are charged as long as they are pending; only breaks
     * beyond that are orphans (left there by earlier owners). */
    long scratch_charge = mmk__protect_pending();
    if (c.scratch > scratch_charge)
        c.orphans += c.scratch - scratch_charge;
    if (r < 0) /* asked halfway: keep every old mark's worth, as orphans */
        c.orphans += before;
    E->maps.orphans = c.orphans;
    E->maps.total += c.orphans;
    E->maps.since_cal = 0;
    E->maps.calibrations++;
    return r;
}

/* ---- set-up and budget ------------------------------------------------------ */

static size_t max_map_count(void)
{
    size_t max = 65530;
    int fd = mmk__sys_open("/proc/sys/vm/max_map_count", O_RDONLY, 0);
    if (fd >= 0) {
        char buf[32];
        ssize_t n = mmk__sys_read(fd, buf, sizeof buf - 1);
        mmk__sys_close(fd);
        if (n > 0) {
            buf[n] = 0;
            unsigned long long x = strtoull(buf, NULL, 10);
            if (x > 64 && x < (unsigned long long)LONG_MAX / 4)
                max = (size_t)x;
        }
    }
    return max;
}

size_t mmk__engine_max_budget(void)
{
    return max_map_count();
}

static void open_maps(void)
{
    struct mmk__maps *M = &mmk__eng.maps;
    if (M->maps_fd >= 0)
        return;
    int fd = mmk__sys_open("/proc/self/maps", O_RDONLY, 0);
    if (fd < 0)
        return; /* no /proc: the count is never lowered, only kept */
    M->maps_fd = fd;
    M->use_query = 1;
    if (mmk__engine_kernel_count(0, 1) < 0)
        M->use_query = 0;
    mmk__protect_configure();
    const char *env = getenv("MMKIT_MAPS_TEXT");
    if (env && env[0] == '1')
        M->use_query = 0;
}

/* Pool, space and budget.  pre: engine lock held. */
static int init_locked(void)
{
    struct mmk__engine *E = &mmk__eng;
    int r = mmk__pool_init();
    if (r < 0)
        return r;
    r = mmk__space_init();
    if (r < 0)
        return r;
    if (!E->budget)
        E->budget = max_map_count() / 2;
    if (!E->maps_opened) {
        open_maps();
        E->maps.total = 2; /* the reservation and the pool window */
        E->maps_opened = 1;
    }
    return 0;
}

/*
 * Lock order: the fault router's writer lock comes before the engine lock
 * (a writer waits out handlers, and a region handler waits for the engine
 * lock; fork takes both in that order, fault.h).  So the view space's area
 * is registered with the engine lock released, and concurrent first callers
 * are serialised by a mutex of their own that no handler and no fork hook
 * ever takes.
 */
static pthread_mutex_t start_mutex = PTHREAD_MUTEX_INITIALIZER;

int mmk__engine_start(void)
{
    struct mmk__engine *E = &mmk__eng;
    if (atomic_load_explicit(&E->ready, memory_order_acquire))
        return 0;
    pthread_mutex_lock(&start_mutex);
    int r = 0;
    if (!atomic_load_explicit(&E->ready, memory_order_relaxed)) {
        mmk__vm_lock();
        r = init_locked();
        mmk__vm_unlock();
        if (r == 0 && !E->space.area) {
            /* Nothing is mapped in the view space yet: no handler of it
             * can be running, and none can start before this returns. */
            E->space.area = mmk_area_register(E->space.base, E->space.granules << 21,
                                              mmk__view_fault, NULL);
            if (!E->space.area)
                r = -errno;
        }
        if (r == 0)
            atomic_store_explicit(&E->ready, 1, memory_order_release);
    }
    pthread_mutex_unlock(&start_mutex);
    return r;
}

int mmk__engine_set_budget(size_t mappings)
{
    if (mappings != 0 && (mappings < 16 || mappings > max_map_count()))
        return -EINVAL;
    mmk__eng.budget = mappings ? mappings : max_map_count() / 2;
    return mmk__engine_make_room(NULL, 0);
}

/* ---- making room ------------------------------------------------------------- */

static int fits(long need)
{
    const struct mmk__engine *E = &mmk__eng;
    return E->maps.total + mmk__protect_pending() + need <= (long)E->budget;
}

static int is_recent(const struct mmk_region *v)
{
    for (int k = 0; k < MMK__RECENT; k++)
        if (mmk__eng.recent[k] == v)
            return 1;
    return 0;
}

/* A view worth unmapping, or NULL: one that maps a page or holds breaks.
 * Largest first among views not faulted on recently; then other views; the
 * view being served (cur) last. */
static struct mmk_region *pick_victim(const struct mmk_region *cur)
{
    struct mmk_region *pick = NULL;
    for (int pass = 0; pass < 3 && !pick; pass++) {
        for (struct mmk_region *v = mmk__eng.views; v; v = v->next) {
            if (!v->base || (v->nmapped == 0 && v->nbreaks == 0) || (pass < 2 && v == cur) ||
                (pass == 0 && is_recent(v)))
                continue;
            if (!pick || mmk__view_charge(v) > mmk__view_charge(pick))
                pick = v;
        }
    }
    return pick;
}

int mmk__engine_shed(struct mmk_region *cur)
{
    struct mmk_region *pick = NULL;
    for (struct mmk_region *v = mmk__eng.views; v; v = v->next)
        if (v != cur && v->base && (v->nmapped || v->nbreaks) &&
            (!pick || mmk__view_charge(v) > mmk__view_charge(pick)))
            pick = v;
    if (!pick)
        return -MMK_EBUDGET;
    return mmk__view_wipe(pick);
}

int mmk__engine_make_room(struct mmk_region *cur, long need)
{
    struct mmk__engine *E = &mmk__eng;
    if (fits(need))
        return 0;
    /* Scratch ranges the reaper has not dropped yet: drop them here. */
    if (mmk__protect_pending()) {
        mmk__protect_drain();
        if (fits(need))
            return 0;
    }
    long budget = (long)E->budget;
    long interval = budget / 4 > 8 ? budget / 4 : 8;
    long batch = budget / 8 > 4 ? budget / 8 : 4;
    /* A checkpoint: enough breaks were marked since the kernel was last
     * asked that it may have merged some; ask before unmapping anything. */
    if (E->maps.since_cal >= interval && mmk__engine_calibrate() == 0 && fits(need))
        return 0;
    long hidden = 0; /* edges left by unmapped views: the kernel may have merged them */
    for (;;) {
        struct mmk_region *v = pick_victim(cur);
        if (v) {
            int r = mmk__view_wipe(v);
            if (r < 0)
                return r;
            if (fits(need))
                return 0;
            hidden += mmk__view_charge(v);
            if (hidden >= batch) {
                hidden = 0;
                if (mmk__engine_calibrate() == 0 && fits(need))
                    return 0;
            }
            continue;
        }
        if (E->maps.since_cal > 0 && mmk__engine_calibrate() == 0) {
            hidden = 0;
            if (fits(need))
                return 0;
            continue;
        }
        return -MMK_EBUDGET;
    }
}
