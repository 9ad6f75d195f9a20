/*
 * region.c - regions and snapshots: views of the pool, mapped on demand, and
 * the write-fault handler that copies on write.
 *
 * A view (mmk_region) has a page table (vm.h) and, once someone asks for its
 * address, an address range.  The range starts PROT_NONE; every page is in
 * one of four states, kept in a byte per page:
 *
 *   NONE  not mapped (PROT_NONE): the next access faults and maps it
 *   ZERO  mapped read-only to anonymous zero memory (a never-written page)
 *   RO    mapped read-only to its pool page
 *   RW    mapped read-write to its pool page; only a private page may be RW
 *
 * Faults go through the fault router to region_fault().  A read fault maps a
 * run of pages around the faulting one.  A write fault makes the page private
 * (copying the pool page if it is shared, copying the table path if it is
 * shared) and maps it read-write.  Pages made RW since the last snapshot are
 * listed in the view's dirty runs, so the next snapshot write-protects only
 * those: its cost follows the pages written since, not the region's size.
 *
 * Mappings.  The kernel allows vm.max_map_count mappings per process.  All
 * views live inside one PROT_NONE reservation (space.c), so a view with no
 * page mapped costs no mapping at all.  The engine counts the mappings each
 * view adds (a run of pages merges into one kernel mapping when the pages
 * have the same state and, for pool pages, consecutive pool offsets) and
 * keeps the total under a budget: when a new mapping would pass it, whole
 * views are unmapped (back to NONE) - those not faulted on recently first -
 * and refault on demand.  No data is lost by that, and no write fails for
 * lack of mappings.
 */
#include "mmkit.h"
#include "report.h"
#include "sys.h"
#include "vm.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

enum { ST_NONE = 0, ST_ZERO = 1, ST_RO = 2, ST_RW = 3 };
enum { V_WRITABLE = 1, V_SNAPSHOT = 2 };

/* Pages a read fault maps at most (an aligned block around the fault). */
#define READ_RUN_PAGES 64
/* Pages of never-written memory a write fault claims at once. */
#define ZERO_RUN_PAGES 256
/* Runs at least this long are write-protected by moving their page tables
 * away (protect.c) rather than by mprotect. */
#define MOVE_PROTECT_PAGES 512

struct run {
    size_t start, len;
};

struct mmk_region {
    size_t size, npages;
    unsigned levels;
    unsigned flags;
    uint32_t root;
    char *base;           /* NULL until materialized */
    int shared_ever;      /* ever snapshotted, restored, or a snapshot */
    uint8_t *state;       /* npages bytes, with base */
    struct run *dirty;    /* runs made RW since the last snapshot */
    size_t ndirty, dirty_cap;
    int dirty_overflow;   /* the list filled up: scan every state instead */
    long nmaps;           /* mappings this view adds: breaks inside its
                           * range plus its mapped edge pages (each can
                           * split the space's reservation once) */
    struct mmk_region *prev, *next;
};

static struct mmk_region *views;   /* every materialized view (engine lock) */
static long total_maps;            /* sum of nmaps over materialized views */
static size_t map_budget;          /* 0 until the pool is initialized */
static int forked_child;           /* set in a child of fork(): nothing works */
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;
static char *space_start;          /* the views' address space (space.c) */
static size_t space_len;
static mmk_area *space_area;       /* its one fault-router area */
/* Views faulted on most recently: evicted last, so that an instruction
 * touching two views (a memcpy between them) cannot evict its own source. */
#define RECENT 4
static struct mmk_region *recent[RECENT];
static unsigned recent_next;

static size_t page_size(void)
{
    return mmk__pool.page;
}

/* ---- mapping accounting --------------------------------------------------- */

/* The kind of kernel mapping page i sits in, and its pool page. */
static inline int kind_of(const struct mmk_region *v, size_t i, uint32_t *pp)
{
    int st = v->state[i];
    *pp = st >= ST_RO ? mmk__pt_lookup(v->root, v->levels, i) : 0;
    return st;
}

/* 1 if pages i-1 and i cannot share one kernel mapping. */
static int breaks_at(const struct mmk_region *v, size_t i)
{
    uint32_t pa, pb;
    int ka = kind_of(v, i - 1, &pa), kb = kind_of(v, i, &pb);
    if (ka != kb)
        return 1;
    if (ka == ST_NONE || ka == ST_ZERO)
        return 0;
    return pb != pa + 1;
}

/* Breaks at the boundaries inside [first, last] (each i: between i-1 and i). */
static long breaks_between(const struct mmk_region *v, size_t first, size_t last)
{
    long n = 0;
    if (first == 0)
        first = 1;
    if (last > v->npages - 1)
        last = v->npages - 1;
    for (size_t i = first; i <= last && i < v->npages; i++)
        n += breaks_at(v, i);
    return n;
}

/* Mapping count change of [s, e): call before and after changing it.
 * Only boundaries s and e can change when the run changes uniformly
 * (RW <-> RO over the same pool pages): `edges_only` says so. */
static long span_breaks(const struct mmk_region *v, size_t s, size_t e, int edges_only)
{
    long n = 0;
    if (edges_only) {
        if (s > 0)
            n += breaks_at(v, s);
        if (e < v->npages)
            n += breaks_at(v, e);
    } else {
        n = breaks_between(v, s, e);
    }
    /* A mapped first or last page may split the reservation around the view. */
    if (s == 0)
        n += v->state[0] != ST_NONE;
    if (e >= v->npages)
        n += v->state[v->npages - 1] != ST_NONE;
    return n;
}

static void account(struct mmk_region *v, long before, long after)
{
    v->nmaps += after - before;
    total_maps += after - before;
}

static void dirty_add(struct mmk_region *v, size_t s, size_t n)
{
    if (v->ndirty && v->dirty[v->ndirty - 1].start + v->dirty[v->ndirty - 1].len == s) {
        v->dirty[v->ndirty - 1].len += n;
        return;
    }
    if (v->ndirty == v->dirty_cap) {
        v->dirty_overflow = 1;
        return;
    }
    v->dirty[v->ndirty++] = (struct run){ s, n };
}

/* ---- mapping primitives (engine lock held) -------------------------------- */

static int map_none(struct mmk_region *v, size_t s, size_t n)
{
    void *out;
    return mmk__sys_mmap(&out, v->base + s * page_size(), n * page_size(), PROT_NONE,
                         MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0);
}

static int map_zero(struct mmk_region *v, size_t s, size_t n)
{
    void *out;
    return mmk__sys_mmap(&out, v->base + s * page_size(), n * page_size(), PROT_READ,
                         MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0);
}

static int map_pool(struct mmk_region *v, size_t s, size_t n, uint32_t p, int prot)
{
    void *out;
    return mmk__sys_mmap(&out, v->base + s * page_size(), n * page_size(), prot,
                         MAP_SHARED | MAP_FIXED, mmk__pool.fd, (off_t)((uint64_t)p * page_size()));
}

/* Unmap a whole view back to one PROT_NONE mapping. */
static int wipe(struct mmk_region *v)
{
    int r = map_none(v, 0, v->npages);
    if (r < 0)
        return r;
    memset(v->state, ST_NONE, v->npages);
    account(v, v->nmaps, 0);
    return 0;
}

static int is_recent(const struct mmk_region *v)
{
    for (int k = 0; k < RECENT; k++)
        if (recent[k] == v)
            return 1;
    return 0;
}

static void note_recent(struct mmk_region *v)
{
    if (!is_recent(v))
        recent[recent_next++ % RECENT] = v;
}

/*
 * Make room for `need` more mappings under the budget (the reservation and
 * the pool window count too).  Victims, largest first: views not faulted on
 * recently; then other views; last the faulting view `cur` itself.
 */
static int make_room(struct mmk_region *cur, long need)
{
    while (total_maps + need + 2 > (long)map_budget) {
        struct mmk_region *pick = NULL;
        for (int pass = 0; pass < 3 && !pick; pass++) {
            for (struct mmk_region *v = views; v; v = v->next) {
                if (!v->base || v->nmaps == 0 || (pass < 2 && v == cur) ||
                    (pass == 0 && is_recent(v)))
                    continue;
                if (!pick || v->nmaps > pick->nmaps)
                    pick = v;
            }
        }
        if (!pick)
            return -MMK_EBUDGET;
        int r = wipe(pick);
        if (r < 0)
            return r;
    }
    return 0;
}

/* ---- faults ----------------------------------------------------------------- */

static int read_fault(struct mmk_region *v, size_t i)
{
    uint32_t p = mmk__pt_lookup(v->root, v->levels, i);
    size_t block = i - i % READ_RUN_PAGES;
    size_t lo = i, hi = i + 1, end = block + READ_RUN_PAGES;
    if (end > v->npages)
        end = v->npages;
    /* Grow the run while the neighbours are unmapped and would merge. */
    while (lo > block && v->state[lo - 1] == ST_NONE &&
           mmk__pt_lookup(v->root, v->levels, lo - 1) == (p ? p - (uint32_t)(i - lo + 1) : 0))
        lo--;
    while (hi < end && v->state[hi] == ST_NONE &&
           mmk__pt_lookup(v->root, v->levels, hi) == (p ? p + (uint32_t)(hi - i) : 0))
        hi++;
    int r = make_room(v, 3);
    if (r < 0)
        return r;
    long before = span_breaks(v, lo, hi, 0);
    r = p ? map_pool(v, lo, hi - lo, p - (uint32_t)(i - lo), PROT_READ) : map_zero(v, lo, hi - lo);
    if (r < 0)
        return r;
    memset(v->state + lo, p ? ST_RO : ST_ZERO, hi - lo);
    account(v, before, span_breaks(v, lo, hi, 0));
    return 0;
}

/* A write to never-written memory: claim a run of zero pages at once. */
static int zero_fill(struct mmk_region *v, size_t i)
{
    /* A view that never shared anything fills in blocks (fast first fill).
     * Once it has relatives, only the page written becomes its own, so that
     * diff and stats show exactly the pages written. */
    size_t run = v->shared_ever ? 1 : ZERO_RUN_PAGES;
    size_t block = i - i % run;
    size_t end = block + run;
    if (end > v->npages)
        end = v->npages;
    size_t lo = i, hi = i + 1;
    while (lo > block && mmk__pt_lookup(v->root, v->levels, lo - 1) == 0)
        lo--;
    while (hi < end && mmk__pt_lookup(v->root, v->levels, hi) == 0)
        hi++;
    uint32_t q;
    int r = mmk__pool_alloc_run((uint32_t)(hi - lo), &q);
    if (r < 0) { /* no contiguous room: one page */
        lo = i;
        hi = i + 1;
        r = mmk__pool_alloc(0, &q);
        if (r < 0)
            return r;
    }
    r = make_room(v, 3);
    long before = r == 0 ? span_breaks(v, lo, hi, 0) : 0;
    for (size_t j = lo; r == 0 && j < hi; j++) {
        uint32_t *slot = mmk__pt_slot(&v->root, v->levels, j);
        if (!slot)
            r = -ENOMEM;
        else
            *slot = q + (uint32_t)(j - lo);
    }
    if (r < 0) { /* give back the pages not yet placed in the table */
        for (size_t j = lo; j < hi; j++)
            if (mmk__pt_lookup(v->root, v->levels, j) != q + (uint32_t)(j - lo))
                mmk__pool_put(q + (uint32_t)(j - lo));
        return r;
    }
    r = map_pool(v, lo, hi - lo, q, PROT_READ | PROT_WRITE);
    if (r < 0) {
        memset(v->state + lo, ST_NONE, hi - lo); /* the old mapping may be gone */
        return r;
    }
    memset(v->state + lo, ST_RW, hi - lo);
    account(v, before, span_breaks(v, lo, hi, 0));
    dirty_add(v, lo, hi - lo);
    return 0;
}

/*
 * Copy n pool pages starting at p (contents at src) into pool pages from q.
 * pwrite puts the bytes straight into the memfd's pages, so the pool window
 * never has to fault the destination in.
 */
static int copy_pages(uint32_t q, const void *src, size_t n)
{
    size_t pg = page_size();
    int r = mmk__sys_pwrite_all(mmk__pool.fd, src, n * pg, (off_t)((uint64_t)q * pg));
    if (r < 0) /* e.g. a full tmpfs: fall back to the window */
        memcpy(mmk__pool_addr(q), src, n * pg);
    return 0;
}

/* Unmap page i from every view other than v that maps pool page p there
 * (read-only): p is about to become v's own, and they are about to get a
 * copy.  They refault the copy on their next read. */
static void unmap_others(struct mmk_region *v, size_t i, uint32_t p)
{
    for (struct mmk_region *w = views; w; w = w->next) {
        if (w == v || i >= w->npages || w->state[i] != ST_RO ||
            mmk__pt_lookup(w->root, w->levels, i) != p)
            continue;
        long before = span_breaks(w, i, i + 1, 0);
        if (map_none(w, i, 1) < 0) {
            wipe(w);
            continue;
        }
        w->state[i] = ST_NONE;
        account(w, before, span_breaks(w, i, i + 1, 0));
    }
}

static int write_fault(struct mmk_region *v, size_t i)
{
    if (!(v->flags & V_WRITABLE))
        return -EROFS;
    size_t pg = page_size();
    uint32_t p = mmk__pt_lookup(v->root, v->levels, i);
    if (p == 0)
        return zero_fill(v, i);
    int r = make_room(v, 3);
    if (r < 0)
        return r;
    long before = span_breaks(v, i, i + 1, 0);
    int keep = mmk__pt_exclusive(v->root, v->levels, i) && mmk__pool.ref[p] == 1;
    if (!keep) {
        uint32_t *slot = mmk__pt_slot(&v->root, v->levels, i);
        if (!slot)
            return -ENOMEM;
        unsigned idx = mmk__pt_leaf_index(i);
        uint32_t twin = mmk__node(mmk__pt_leaf_of(slot))->twin;
        struct mmk__node *t = twin ? mmk__node(twin) : NULL;
        /* The source page's contents: through this view's own mapping when
         * it has one (already faulted in), else through the pool window. */
        const char *src = v->state[i] != ST_NONE ? v->base + i * pg : mmk__pool_addr(p);
        uint32_t q;
        if (t && t->ref > 0 && t->slot[idx] == p && mmk__pool.ref[p] == 2) {
            /*
             * Copy before write.  The page's only other holder is the leaf
             * this one was copied from: give that leaf the copy and keep the
             * page here, mapped where it is.  This view's mapping stays in
             * pool order (it merges back after the next snapshot), and the
             * page becomes writable with an mprotect instead of a new
             * mapping.  Views that map the old page read-only are unmapped
             * there and refault the copy.
             */
            uint32_t left = idx ? t->slot[idx - 1] : 0;
            r = mmk__pool_alloc(left ? left + 1 : 0, &q);
            if (r < 0)
                return r;
            copy_pages(q, src, 1);
            unmap_others(v, i, p);
            t->slot[idx] = q;
            mmk__pool.ref[p]--;
            keep = 1;
        } else {
            /* Copy on write.  Prefer the pool page after the left
             * neighbour's, so that the new mapping merges with it. */
            uint32_t left = i > 0 ? mmk__pt_lookup(v->root, v->levels, i - 1) : 0;
            r = mmk__pool_alloc(left ? left + 1 : 0, &q);
            if (r < 0)
                return r;
            copy_pages(q, src, 1);
            mmk__pool.ref[p]--; /* still >= 1: another table holds it */
            *slot = q;
            r = map_pool(v, i, 1, q, PROT_READ | PROT_WRITE);
        }
    }
    if (keep) {
        if (v->state[i] == ST_RO)
            r = mmk__sys_mprotect(v->base + i * pg, pg, PROT_READ | PROT_WRITE);
        else
            r = map_pool(v, i, 1, p, PROT_READ | PROT_WRITE);
    }
    if (r < 0) {
        wipe(v); /* what is mapped at i is unknown now */
        return r;
    }
    v->state[i] = ST_RW;
    account(v, before, span_breaks(v, i, i + 1, 0));
    dirty_add(v, i, 1);
    return 0;
}

static void report_failure(const mmk_fault *f, const struct mmk_region *v, int err)
{
    struct mmk__line l = MMK__LINE_INIT;
    mmk__line_str(&l, err == -EROFS ? "mmkit: write to read-only snapshot at "
                                    : "mmkit: region fault at ");
    mmk__line_hex(&l, (uintptr_t)f->addr);
    mmk__line_str(&l, " (region ");
    mmk__line_hex(&l, (uintptr_t)v);
    mmk__line_str(&l, ", offset ");
    mmk__line_dec(&l, (long long)((char *)f->addr - v->base));
    mmk__line_str(&l, ")");
    if (err != -EROFS) {
        mmk__line_str(&l, ": ");
        mmk__line_str(&l, mmk_strerror(err));
    }
    mmk__line_end(&l);
}

static int region_fault(const mmk_fault *f, void *ctx)
{
    (void)ctx;
    /* A fault inside the engine itself (it holds the lock) or in a child of
     * fork() (the region is not mapped there) is not ours to fix. */
    if (f->signo != SIGSEGV || forked_child || mmk__vm_lock_held())
        return MMK_FAULT_PASS;
    mmk__vm_lock();
    struct mmk_region *v = mmk__space_owner(f->addr);
    if (!v || (void *)v == (void *)&mmk__scratch_owner || !v->base || (char *)f->addr >= v->base + v->size) {
        mmk__vm_unlock(); /* no view there: a stray pointer */
        return MMK_FAULT_PASS;
    }
    size_t i = (size_t)((char *)f->addr - v->base) / page_size();
    int st = v->state[i], r;
    if (f->write == 1 || (f->write == -1 && st != ST_NONE))
        r = write_fault(v, i);
    else if (st == ST_NONE)
        r = read_fault(v, i);
    else
        r = -EFAULT; /* a read fault on a readable page: not ours */
    if (r == 0)
        note_recent(v);
    mmk__vm_unlock();
    if (r < 0) {
        if (r != -EFAULT)
            report_failure(f, v, r);
        return MMK_FAULT_PASS;
    }
    return MMK_FAULT_RETRY;
}

/* ---- fork ------------------------------------------------------------------- */

/*
 * A child of fork() must never write into the parent's pool.  Before fork,
 * every view and the pool window are marked MADV_DONTFORK, so the child gets
 * no mapping there at all (an access in the child faults, and the region
 * handler passes it on: the child dies of SIGSEGV as for any bad pointer).
 * The parent's marks are removed again right after fork.
 */
static void madvise_all(int advice)
{
    if (space_start)
        mmk__sys_madvise(space_start, space_len, advice);
    if (mmk__pool.win)
        mmk__sys_madvise(mmk__pool.win, (size_t)mmk__pool.max_pages * page_size(), advice);
}

static void atfork_prepare(void)
{
    mmk__vm_lock();
    madvise_all(MADV_DONTFORK);
}

static void atfork_parent(void)
{
    madvise_all(MADV_DOFORK);
    mmk__vm_unlock();
}

static void atfork_child(void)
{
    forked_child = 1;
    mmk__protect_forked();
    mmk__vm_unlock();
}

static void register_atfork(void)
{
    pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
}

/* ---- setup ------------------------------------------------------------------- */

static size_t default_budget(void)
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
            if (x > 64)
                max = (size_t)x;
        }
    }
    return max / 2;
}

/* pre: engine lock held. */
static int engine_init(void)
{
    int r = mmk__pool_init();
    if (r < 0)
        return r;
    if (!space_area) {
        r = mmk__space_init(&space_len, &space_start);
        if (r < 0)
            return r;
        /* No region handler can be running yet, so registering under the
         * engine lock cannot wait for one that waits for this lock. */
        space_area = mmk_area_register(space_start, space_len, region_fault, NULL);
        if (!space_area)
            return -errno;
    }
    if (!map_budget)
        map_budget = default_budget();
    return 0;
}

static void link_view(struct mmk_region *v)
{
    v->next = views;
    if (views)
        views->prev = v;
    views = v;
}

static void unlink_view(struct mmk_region *v)
{
    if (v->prev)
        v->prev->next = v->next;
    else
        views = v->next;
    if (v->next)
        v->next->prev = v->prev;
}

/* Give a view its address range (idempotent).  pre: engine lock held. */
static int materialize(struct mmk_region *v)
{
    if (v->base)
        return 0;
    void *state = NULL, *dirty = NULL;
    size_t dirty_cap = (v->flags & V_WRITABLE) ? v->npages : 0;
    int r = mmk__sys_mmap(&state, NULL, v->npages, PROT_READ | PROT_WRITE,
                          MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (r == 0 && dirty_cap)
        r = mmk__sys_mmap(&dirty, NULL, dirty_cap * sizeof(struct run), PROT_READ | PROT_WRITE,
                          MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    char *base = NULL;
    if (r == 0)
        r = mmk__space_alloc(v->size, v, &base);
    if (r < 0) {
        if (state)
            mmk__sys_munmap(state, v->npages);
        if (dirty)
            mmk__sys_munmap(dirty, dirty_cap * sizeof(struct run));
        return r;
    }
    v->state = state;
    v->dirty = dirty;
    v->dirty_cap = dirty_cap;
    v->nmaps = 0; /* all PROT_NONE: part of the reservation */
    v->base = base;
    link_view(v);
    return 0;
}

static struct mmk_region *view_new(size_t size, unsigned flags)
{
    struct mmk_region *v = calloc(1, sizeof *v);
    if (!v)
        return NULL;
    v->size = size;
    v->npages = size / page_size();
    v->levels = mmk__pt_levels(v->npages);
    v->flags = flags;
    return v;
}

/* ---- public API ---------------------------------------------------------------- */

mmk_region *mmk_region_create(size_t size, unsigned flags)
{
    if (flags != 0 || size == 0) {
        errno = EINVAL;
        return NULL;
    }
    if (forked_child) {
        errno = MMK_ESTATE;
        return NULL;
    }
    pthread_once(&atfork_once, register_atfork);
    mmk__vm_lock();
    int r = engine_init();
    mmk__vm_unlock();
    if (r < 0) {
        errno = -r;
        return NULL;
    }
    size_t pg = page_size();
    if (size > (size_t)mmk__pool.max_pages * pg - pg) {
        errno = ENOMEM;
        return NULL;
    }
    size = (size + pg - 1) & ~(pg - 1);
    struct mmk_region *v = view_new(size, V_WRITABLE);
    if (!v) {
        errno = ENOMEM;
        return NULL;
    }
    mmk__vm_lock();
    r = materialize(v);
    mmk__vm_unlock();
    if (r < 0) {
        free(v);
        errno = -r;
        return NULL;
    }
    return v;
}

/* Write-protect every page of v made writable since its last snapshot.
 * pre: engine lock held. */
/* Make the RW pages in [i, end) read-only.  If that fails, the whole view
 * is unmapped instead (as safe).  pre: engine lock held, v materialized. */
static int protect_range(struct mmk_region *v, size_t i, size_t end)
{
    size_t pg = page_size();
    while (i < end) {
        if (v->state[i] != ST_RW) {
            i++;
            continue;
        }
        size_t j = i + 1;
        while (j < end && v->state[j] == ST_RW)
            j++;
        long before = span_breaks(v, i, j, 1);
        int r = -1;
        if (j - i >= MOVE_PROTECT_PAGES)
            r = mmk__protect_by_move(v->base + i * pg, (j - i) * pg);
        if (r < 0)
            r = mmk__sys_mprotect(v->base + i * pg, (j - i) * pg, PROT_READ);
        if (r < 0)
            return wipe(v);
        memset(v->state + i, ST_RO, j - i);
        account(v, before, span_breaks(v, i, j, 1));
        i = j;
    }
    return 0;
}

static int write_protect_dirty(struct mmk_region *v)
{
    if (!v->base)
        return 0;
    struct run all = { 0, v->npages };
    struct run *runs = v->dirty_overflow ? &all : v->dirty;
    size_t nruns = v->dirty_overflow ? 1 : v->ndirty;
    int err = 0;
    for (size_t k = 0; k < nruns && err == 0; k++)
        err = protect_range(v, runs[k].start, runs[k].start + runs[k].len);
    v->ndirty = 0;
    v->dirty_overflow = 0;
    return err;
}

mmk_region *mmk_region_snapshot(mmk_region *r, unsigned flags)
{
    if (!r || (flags & ~(unsigned)MMK_SNAP_WRITABLE)) {
        errno = EINVAL;
        return NULL;
    }
    if (forked_child) {
        errno = MMK_ESTATE;
        return NULL;
    }
    struct mmk_region *s = view_new(r->size, V_SNAPSHOT | ((flags & MMK_SNAP_WRITABLE) ? V_WRITABLE : 0));
    if (!s) {
        errno = ENOMEM;
        return NULL;
    }
    mmk__vm_lock();
    int err = write_protect_dirty(r);
    if (err < 0) {
        mmk__vm_unlock();
        free(s);
        errno = -err;
        return NULL;
    }
    s->root = r->root;
    mmk__node_get(s->root);
    r->shared_ever = s->shared_ever = 1;
    mmk__vm_unlock();
    return s;
}

int mmk_region_destroy(mmk_region *r)
{
    if (!r)
        return -EINVAL;
    mmk__vm_lock();
    if (r->base && !forked_child) {
        /* Back to plain reservation; a late fault on it finds no view. */
        int e = wipe(r);
        if (e < 0) {
            mmk__vm_unlock();
            return e;
        }
        mmk__space_free(r->base, r->size);
    }
    if (r->base)
        unlink_view(r);
    for (int k = 0; k < RECENT; k++)
        if (recent[k] == r)
            recent[k] = NULL;
    if (!forked_child) {
        mmk__node_put(r->root, r->levels);
        mmk__pool_flush();
    }
    mmk__vm_unlock();
    if (r->base) {
        mmk__sys_munmap(r->state, r->npages);
        if (r->dirty)
            mmk__sys_munmap(r->dirty, r->dirty_cap * sizeof(struct run));
    }
    free(r);
    return 0;
}

void *mmk_region_base(mmk_region *r)
{
    if (!r) {
        errno = EINVAL;
        return NULL;
    }
    if (!r->base) {
        if (forked_child) {
            errno = MMK_ESTATE;
            return NULL;
        }
        mmk__vm_lock();
        int e = materialize(r);
        mmk__vm_unlock();
        if (e < 0) {
            errno = -e;
            return NULL;
        }
    }
    return r->base;
}

size_t mmk_region_size(const mmk_region *r)
{
    return r ? r->size : 0;
}

static int check_range(const mmk_region *r, size_t off, size_t len)
{
    if (!r)
        return -EINVAL;
    if (off > r->size || len > r->size - off)
        return -ERANGE;
    if (forked_child)
        return -MMK_ESTATE;
    return 0;
}

int mmk_region_read(const mmk_region *r, size_t off, void *buf, size_t len)
{
    int e = check_range(r, off, len);
    if (e < 0)
        return e;
    if (len && !buf)
        return -EINVAL;
    /* Copy through a bounce buffer: buf may itself be region memory, and a
     * fault on it while the engine lock is held could not be served. */
    char bounce[16384];
    size_t pg = page_size();
    char *out = buf;
    while (len > 0) {
        size_t chunk = len < sizeof bounce ? len : sizeof bounce, done = 0;
        mmk__vm_lock();
        while (done < chunk) {
            size_t page = (off + done) / pg, in = (off + done) % pg;
            size_t n = pg - in < chunk - done ? pg - in : chunk - done;
            uint32_t p = mmk__pt_lookup(r->root, r->levels, page);
            if (p)
                memcpy(bounce + done, mmk__pool_addr(p) + in, n);
            else
                memset(bounce + done, 0, n);
            done += n;
        }
        mmk__vm_unlock();
        memcpy(out, bounce, chunk);
        out += chunk;
        off += chunk;
        len -= chunk;
    }
    return 0;
}

struct restore_ctx {
    struct mmk_region *dst;
    uint32_t old_root; /* dst's table before the restore */
    int err;
};

/* Map the pages of dst that changed to their new backing, read-only, so
 * they need not refault.  Runs while dst->root is already the new table. */
static int restore_remap(size_t first, size_t count, void *ctx)
{
    struct restore_ctx *c = ctx;
    struct mmk_region *v = c->dst;
    uint32_t new_root = v->root;
    size_t i = first, end = first + count;
    while (i < end) {
        if (v->state[i] == ST_NONE) {
            i++;
            continue;
        }
        uint32_t p = mmk__pt_lookup(new_root, v->levels, i);
        size_t j = i + 1;
        while (j < end && v->state[j] != ST_NONE &&
               mmk__pt_lookup(new_root, v->levels, j) == (p ? p + (uint32_t)(j - i) : 0))
            j++;
        v->root = c->old_root; /* count what is mapped now */
        long before = span_breaks(v, i, j, 0);
        v->root = new_root;
        int r = p ? map_pool(v, i, j - i, p, PROT_READ) : map_zero(v, i, j - i);
        if (r < 0) {
            c->err = r;
            return 1;
        }
        memset(v->state + i, p ? ST_RO : ST_ZERO, j - i);
        account(v, before, span_breaks(v, i, j, 0));
        i = j;
    }
    return 0;
}

int mmk_region_restore(mmk_region *dst, const mmk_region *src)
{
    if (!dst || !src)
        return -EINVAL;
    if (dst->size != src->size)
        return -MMK_ESIZE;
    if (!(dst->flags & V_WRITABLE))
        return -EROFS;
    if (forked_child)
        return -MMK_ESTATE;
    if (dst == src)
        return 0;
    mmk__vm_lock();
    /* src's tree becomes shared with dst: like a snapshot of src, its
     * writable pages must be write-protected first. */
    int e = write_protect_dirty((struct mmk_region *)src);
    if (e < 0) {
        mmk__vm_unlock();
        return e;
    }
    uint32_t old = dst->root;
    dst->shared_ever = ((struct mmk_region *)src)->shared_ever = 1;
    dst->root = src->root;
    mmk__node_get(dst->root);
    struct restore_ctx c = { dst, old, 0 };
    if (dst->base)
        mmk__pt_diff(old, dst->root, dst->levels, dst->npages, restore_remap, &c);
    if (c.err < 0)
        wipe(dst); /* could not remap piecewise: unmap the whole view */
    mmk__node_put(old, dst->levels);
    mmk__pool_flush();
    /* Every page dst had made writable differed from src, so it is mapped
     * read-only now; nothing is left to write-protect at the next snapshot. */
    dst->ndirty = 0;
    dst->dirty_overflow = 0;
    mmk__vm_unlock();
    return 0;
}

int mmk_region_prepare_write(mmk_region *r, size_t off, size_t len)
{
    int e = check_range(r, off, len);
    if (e < 0)
        return e;
    if (!(r->flags & V_WRITABLE))
        return -EROFS;
    if (len == 0)
        return 0;
    size_t pg = page_size();
    size_t first = off / pg, end = (off + len + pg - 1) / pg;
    /* In batches, so one contiguous pool run and one mmap serve each. */
    const size_t batch = 16384;
    mmk__vm_lock();
    for (size_t s = first; s < end; s += batch) {
        size_t n = end - s < batch ? end - s : batch;
        uint32_t q;
        e = mmk__pool_alloc_run((uint32_t)n, &q);
        if (e < 0)
            break;
        /* Other threads may be writing to pages of the batch that are
         * writable now: stop them (they fault and wait for the lock) before
         * copying, or their writes after the copy would be lost. */
        if (r->base && (e = protect_range(r, s, s + n)) < 0) {
            for (size_t k = 0; k < n; k++)
                mmk__pool_put(q + (uint32_t)k);
            break;
        }
        /* Copy first, in runs of consecutive source pages (one pwrite
         * each); only then change the table, since dropping a source page
         * may punch it. */
        for (size_t j = 0; j < n;) {
            uint32_t p = mmk__pt_lookup(r->root, r->levels, s + j);
            size_t k = j + 1;
            while (p && k < n && mmk__pt_lookup(r->root, r->levels, s + k) == p + (k - j))
                k++;
            if (p)
                copy_pages(q + (uint32_t)j, mmk__pool_addr(p), k - j);
            j = k;
        }
        for (size_t j = 0; j < n; j++) {
            uint32_t p = mmk__pt_lookup(r->root, r->levels, s + j);
            uint32_t *slot = mmk__pt_slot(&r->root, r->levels, s + j);
            if (!slot) {
                for (size_t k = j; k < n; k++)
                    mmk__pool_put(q + (uint32_t)k);
                e = -ENOMEM;
                break;
            }
            *slot = q + (uint32_t)j;
            mmk__pool_put(p);
        }
        if (e < 0)
            break;
        if (r->base) {
            e = make_room(r, 3);
            long before = span_breaks(r, s, s + n, 0);
            if (e == 0)
                e = map_pool(r, s, n, q, PROT_READ | PROT_WRITE);
            if (e < 0) {
                wipe(r);
                break;
            }
            memset(r->state + s, ST_RW, n);
            account(r, before, span_breaks(r, s, s + n, 0));
            dirty_add(r, s, n);
        }
    }
    mmk__pool_flush();
    mmk__vm_unlock();
    return e;
}

struct diff_collect {
    struct run *runs;
    size_t n, cap;
    int err;
};

static int collect_run(size_t first, size_t count, void *ctx)
{
    struct diff_collect *d = ctx;
    if (d->n == d->cap) {
        size_t cap = d->cap ? 2 * d->cap : 64;
        struct run *nr = realloc(d->runs, cap * sizeof *nr);
        if (!nr) {
            d->err = -ENOMEM;
            return 1;
        }
        d->runs = nr;
        d->cap = cap;
    }
    d->runs[d->n++] = (struct run){ first, count };
    return 0;
}

int mmk_region_diff(const mmk_region *a, const mmk_region *b, mmk_diff_fn fn, void *ctx)
{
    if (!a || !b || !fn)
        return -EINVAL;
    if (a->size != b->size)
        return -MMK_ESIZE;
    if (forked_child)
        return -MMK_ESTATE;
    /* Collect under the lock, call back outside it: fn may touch regions. */
    struct diff_collect d = { 0 };
    mmk__vm_lock();
    mmk__pt_diff(a->root, b->root, a->levels, a->npages, collect_run, &d);
    mmk__vm_unlock();
    int r = d.err;
    size_t pg = page_size();
    for (size_t k = 0; r == 0 && k < d.n; k++)
        r = fn(d.runs[k].start * pg, d.runs[k].len * pg, ctx);
    free(d.runs);
    return r;
}

int mmk_region_stats(const mmk_region *r, struct mmk_region_stats *st)
{
    if (!r || !st)
        return -EINVAL;
    if (forked_child)
        return -MMK_ESTATE;
    memset(st, 0, sizeof *st);
    mmk__vm_lock();
    size_t nonzero, priv;
    mmk__pt_count(r->root, r->levels, r->npages, &nonzero, &priv);
    st->pages = r->npages;
    st->private_pages = priv;
    st->shared_pages = nonzero - priv;
    st->pool_pages = mmk__pool.in_use;
    /* Mappings in the view's range: the breaks inside it, plus one. */
    if (r->base)
        st->mappings = (size_t)r->nmaps + 1 - (r->state[0] != ST_NONE) -
                       (r->state[r->npages - 1] != ST_NONE);
    st->total_mappings = (size_t)total_maps;
    st->budget = map_budget;
    st->nodes = mmk__pool.nodes_in_use;
    mmk__vm_unlock();
    return 0;
}

int mmk_region_set_budget(size_t mappings)
{
    if (mappings != 0 && mappings < 16)
        return -EINVAL;
    mmk__vm_lock();
    map_budget = mappings ? mappings : default_budget();
    int r = make_room(NULL, 0);
    mmk__vm_unlock();
    return r;
}
