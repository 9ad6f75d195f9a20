/*
 * view.c - mapping a view: page states, the mapping count and budget, read
 * and write faults, write-protection.
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
 * Faults go through the fault router to mmk__view_fault().  A read fault
 * maps a run of pages around the faulting one.  A write fault makes the page
 * private (copying the pool page if it is shared, copying the table path if
 * it is shared) and maps it read-write.  Pages made RW since the last
 * snapshot are listed in the view's dirty runs, so the next snapshot
 * write-protects only those: its cost follows the pages written since, not
 * the region's size.
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
#include "view.h"
#include "report.h"
#include "sys.h"

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>

/* Pages a read fault maps at most (an aligned block around the fault). */
#define READ_RUN_PAGES 64
/* Pages of never-written memory a write fault claims at once. */
#define ZERO_RUN_PAGES 256
/* Runs at least this long are write-protected by moving their page tables
 * away (protect.c) rather than by mprotect. */
#define MOVE_PROTECT_PAGES 512

struct mmk_region *mmk__views;
long mmk__total_maps;
size_t mmk__map_budget;
int mmk__forked_child;

/* Views faulted on most recently: evicted last, so that an instruction
 * touching two views (a memcpy between them) cannot evict its own source. */
#define RECENT 4
static struct mmk_region *recent[RECENT];
static unsigned recent_next;

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
long mmk__view_breaks(const struct mmk_region *v, size_t s, size_t e, int edges_only)
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

void mmk__view_account(struct mmk_region *v, long before, long after)
{
    v->nmaps += after - before;
    mmk__total_maps += after - before;
}

void mmk__view_dirty_add(struct mmk_region *v, size_t s, size_t n)
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

int mmk__view_map_zero(struct mmk_region *v, size_t s, size_t n)
{
    void *out;
    return mmk__sys_mmap(&out, v->base + s * page_size(), n * page_size(), PROT_READ,
                         MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0);
}

int mmk__view_map_pool(struct mmk_region *v, size_t s, size_t n, uint32_t p, int prot)
{
    void *out;
    return mmk__sys_mmap(&out, v->base + s * page_size(), n * page_size(), prot,
                         MAP_SHARED | MAP_FIXED, mmk__pool.fd, (off_t)((uint64_t)p * page_size()));
}

/* Unmap a whole view back to one PROT_NONE mapping. */
int mmk__view_wipe(struct mmk_region *v)
{
    int r = map_none(v, 0, v->npages);
    if (r < 0)
        return r;
    memset(v->state, ST_NONE, v->npages);
    mmk__view_account(v, v->nmaps, 0);
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
int mmk__view_make_room(struct mmk_region *cur, long need)
{
    /* Also count the reservation, the pool window and the scratch ranges
     * that page tables were moved into and the reaper has not dropped. */
    need += 2 + 2 * (long)mmk__protect_pending();
    while (mmk__total_maps + need > (long)mmk__map_budget) {
        struct mmk_region *pick = NULL;
        for (int pass = 0; pass < 3 && !pick; pass++) {
            for (struct mmk_region *v = mmk__views; v; v = v->next) {
                if (!v->base || v->nmaps == 0 || (pass < 2 && v == cur) ||
                    (pass == 0 && is_recent(v)))
                    continue;
                if (!pick || v->nmaps > pick->nmaps)
                    pick = v;
            }
        }
        if (!pick)
            return -MMK_EBUDGET;
        int r = mmk__view_wipe(pick);
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
    int r = mmk__view_make_room(v, 3);
    if (r < 0)
        return r;
    long before = mmk__view_breaks(v, lo, hi, 0);
    r = p ? mmk__view_map_pool(v, lo, hi - lo, p - (uint32_t)(i - lo), PROT_READ)
          : mmk__view_map_zero(v, lo, hi - lo);
    if (r < 0) {
        mmk__view_wipe(v); /* a failed MAP_FIXED may leave a hole: fill it */
        return r;
    }
    memset(v->state + lo, p ? ST_RO : ST_ZERO, hi - lo);
    mmk__view_account(v, before, mmk__view_breaks(v, lo, hi, 0));
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
    r = mmk__view_make_room(v, 3);
    long before = r == 0 ? mmk__view_breaks(v, lo, hi, 0) : 0;
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
    r = mmk__view_map_pool(v, lo, hi - lo, q, PROT_READ | PROT_WRITE);
    if (r < 0) {
        /* The table holds the (zero) new pages, which is fine; what the
         * failed mmap left is unknown, so unmap the view and recount. */
        mmk__view_wipe(v);
        return r;
    }
    memset(v->state + lo, ST_RW, hi - lo);
    mmk__view_account(v, before, mmk__view_breaks(v, lo, hi, 0));
    mmk__view_dirty_add(v, lo, hi - lo);
    return 0;
}

/*
 * Copy n pool pages starting at p (contents at src) into pool pages from q.
 * pwrite puts the bytes straight into the memfd's pages, so the pool window
 * never has to fault the destination in.
 */
int mmk__view_copy_pages(uint32_t q, const void *src, size_t n)
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
static int maps_page(const struct mmk_region *w, size_t i, uint32_t p)
{
    return i < w->npages && w->state[i] == ST_RO && mmk__pt_lookup(w->root, w->levels, i) == p;
}

/* How many views other than v map pool page p at page i. */
static long count_others(const struct mmk_region *v, size_t i, uint32_t p)
{
    long n = 0;
    for (const struct mmk_region *w = mmk__views; w; w = w->next)
        n += w != v && maps_page(w, i, p);
    return n;
}

static void unmap_others(struct mmk_region *v, size_t i, uint32_t p)
{
    for (struct mmk_region *w = mmk__views; w; w = w->next) {
        if (w == v || !maps_page(w, i, p))
            continue;
        long before = mmk__view_breaks(w, i, i + 1, 0);
        if (map_none(w, i, 1) < 0) {
            mmk__view_wipe(w);
            continue;
        }
        w->state[i] = ST_NONE;
        mmk__view_account(w, before, mmk__view_breaks(w, i, i + 1, 0));
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
    /* Room for this page, and for splitting every other view that maps the
     * page if it gets the copy (copy before write, below). */
    int r = mmk__view_make_room(v, 3 + 2 * count_others(v, i, p));
    if (r < 0)
        return r;
    long before = mmk__view_breaks(v, i, i + 1, 0);
    int keep = mmk__pt_exclusive(v->root, v->levels, i) && mmk__pool.ref[p] == 1;
    if (!keep) {
        uint32_t *slot = mmk__pt_slot(&v->root, v->levels, i);
        if (!slot)
            return -ENOMEM;
        unsigned idx = mmk__pt_leaf_index(i);
        uint32_t leaf = mmk__pt_leaf_of(slot), twin = mmk__node(leaf)->twin;
        /* The hint is checked: a live leaf that holds p at this index. */
        struct mmk__node *t = twin && twin != leaf ? mmk__node(twin) : NULL;
        if (t && !(t->ref > 0 && t->leaf))
            t = NULL;
        /* The source page's contents: through this view's own mapping when
         * it has one (already faulted in), else through the pool window. */
        const char *src = v->state[i] != ST_NONE ? v->base + i * pg : mmk__pool_addr(p);
        uint32_t q;
        if (t && t->slot[idx] == p && mmk__pool.ref[p] == 2) {
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
            mmk__view_copy_pages(q, src, 1);
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
            mmk__view_copy_pages(q, src, 1);
            mmk__pool.ref[p]--; /* still >= 1: another table holds it */
            *slot = q;
            r = mmk__view_map_pool(v, i, 1, q, PROT_READ | PROT_WRITE);
        }
    }
    if (keep) {
        if (v->state[i] == ST_RO)
            r = mmk__sys_mprotect(v->base + i * pg, pg, PROT_READ | PROT_WRITE);
        else
            r = mmk__view_map_pool(v, i, 1, p, PROT_READ | PROT_WRITE);
    }
    if (r < 0) {
        mmk__view_wipe(v); /* what is mapped at i is unknown now */
        return r;
    }
    v->state[i] = ST_RW;
    mmk__view_account(v, before, mmk__view_breaks(v, i, i + 1, 0));
    mmk__view_dirty_add(v, i, 1);
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
    mmk__report_fault(&l, f->ucontext, MMK__REPORT_NOW);
}

int mmk__view_fault(const mmk_fault *f, void *ctx)
{
    (void)ctx;
    /* A fault inside the engine itself (it holds the lock) or in a child of
     * fork() (the region is not mapped there) is not ours to fix. */
    if (f->signo != SIGSEGV || mmk__forked_child || mmk__vm_lock_held())
        return MMK_FAULT_PASS;
    mmk__vm_lock();
    struct mmk_region *v = mmk__space_owner(f->addr);
    if (!v || (void *)v == (void *)&mmk__scratch_owner || !v->base || (char *)f->addr >= v->base + v->size) {
        mmk__vm_unlock(); /* no view there: a stray pointer */
        return MMK_FAULT_PASS;
    }
    size_t i = (size_t)((char *)f->addr - v->base) / page_size();
    int st = v->state[i], r;
    if (st == ST_RW)
        r = 0; /* writable already (another thread's fault did it) */
    else if (f->write == 1 || (f->write == -1 && st != ST_NONE))
        r = write_fault(v, i);
    else if (st == ST_NONE)
        r = read_fault(v, i);
    else
        r = 0; /* readable already: another thread's fault mapped it while
                * this one waited for the lock; just retry */
    if (r == 0)
        note_recent(v);
    mmk__vm_unlock();
    if (r < 0) {
        report_failure(f, v, r);
        return MMK_FAULT_PASS;
    }
    return MMK_FAULT_RETRY;
}

static void link_view(struct mmk_region *v)
{
    v->next = mmk__views;
    if (mmk__views)
        mmk__views->prev = v;
    mmk__views = v;
}

static void unlink_view(struct mmk_region *v)
{
    if (v->prev)
        v->prev->next = v->next;
    else
        mmk__views = v->next;
    if (v->next)
        v->next->prev = v->prev;
}

/* Give a view its address range (idempotent).  pre: engine lock held. */
int mmk__view_materialize(struct mmk_region *v)
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

/* Make the RW pages in [i, end) read-only.  If that fails, the whole view
 * is unmapped instead (as safe).  pre: engine lock held, v materialized. */
int mmk__view_protect_range(struct mmk_region *v, size_t i, size_t end)
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
        long before = mmk__view_breaks(v, i, j, 1);
        int r = -1;
        if (j - i >= MOVE_PROTECT_PAGES)
            r = mmk__protect_by_move(v->base + i * pg, (j - i) * pg);
        if (r < 0)
            r = mmk__sys_mprotect(v->base + i * pg, (j - i) * pg, PROT_READ);
        if (r < 0)
            return mmk__view_wipe(v);
        memset(v->state + i, ST_RO, j - i);
        mmk__view_account(v, before, mmk__view_breaks(v, i, j, 1));
        i = j;
    }
    return 0;
}

int mmk__view_protect_dirty(struct mmk_region *v)
{
    if (!v->base)
        return 0;
    struct run all = { 0, v->npages };
    struct run *runs = v->dirty_overflow ? &all : v->dirty;
    size_t nruns = v->dirty_overflow ? 1 : v->ndirty;
    int err = 0;
    for (size_t k = 0; k < nruns && err == 0; k++)
        err = mmk__view_protect_range(v, runs[k].start, runs[k].start + runs[k].len);
    if (err < 0) {
        /* Some page may still be writable: keep it on the books (scan
         * every page next time) so no later snapshot shares it unprotected. */
        v->dirty_overflow = 1;
        return err;
    }
    v->ndirty = 0;
    v->dirty_overflow = 0;
    return 0;
}

/* Forget a materialized view that is being destroyed.  pre: lock held. */
void mmk__view_forget(struct mmk_region *v)
{
    unlink_view(v);
    for (int k = 0; k < RECENT; k++)
        if (recent[k] == v)
            recent[k] = NULL;
}
