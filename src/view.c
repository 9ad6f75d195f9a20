/*
 * view.c - mapping a view: page states, the marks the mapping count is
 * made of, read and write faults (write-protection for a snapshot is in
 * view_protect.c).
 *
 * A view (mmk_region) has a page table (vm.h) and, once someone asks for its
 * address, an address range.  The range starts PROT_NONE; every page is in
 * one of four states, kept in the low bits of a byte per page:
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
 * page mapped costs no mapping at all.  Every change of a view's mappings
 * goes through mmk__view_change(), which marks where a kernel mapping may
 * now begin (the high bit of the page's state byte, or the view's edges):
 * one mmap call makes one mapping, so the marks inside its range go; any
 * call may split at the two ends of its range, so those are marked.  Whether
 * the kernel merged anything is never assumed: engine.c asks the kernel at
 * checkpoints and lowers the marks.  The sum of the marks is kept under a
 * budget: views are unmapped (back to NONE) - those not faulted on recently
 * first - and refault on demand.  No data is lost by that, and no write
 * fails for lack of mappings.
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

/* ---- the marks ---------------------------------------------------------------- */

static void count_marks(long d)
{
    mmk__eng.maps.total += d;
    if (d > 0)
        mmk__eng.maps.since_cal += d;
}

/* A kernel mapping may begin at page i (0: at base; npages: at the end). */
void mmk__view_mark_break(struct mmk_region *v, size_t i)
{
    if (i == 0) {
        if (!v->edge_lo)
            v->edge_lo = 1, count_marks(1);
    } else if (i >= v->npages) {
        if (!v->edge_hi)
            v->edge_hi = 1, count_marks(1);
    } else if (!(v->state[i] & ST_BREAK)) {
        v->state[i] |= ST_BREAK;
        v->nbreaks++;
        count_marks(1);
        if (i < v->brk_lo)
            v->brk_lo = i;
        if (i + 1 > v->brk_hi)
            v->brk_hi = i + 1;
    }
}

void mmk__view_clear_breaks(struct mmk_region *v)
{
    for (size_t i = v->brk_lo; i < v->brk_hi; i++)
        if (v->state[i] & ST_BREAK)
            v->state[i] &= (uint8_t)~ST_BREAK;
    count_marks(-mmk__view_charge(v));
    v->nbreaks = 0;
    v->edge_lo = v->edge_hi = 0;
    v->brk_lo = v->npages;
    v->brk_hi = 0;
}

/* Pages [s, e) now have state st.  `one_mapping`: the range was made by one
 * mmap call, so no mapping begins inside it. */
static void record(struct mmk_region *v, size_t s, size_t e, int st, int one_mapping)
{
    long cleared = 0;
    for (size_t i = s; i < e; i++) {
        uint8_t old = v->state[i], now;
        if (old & ST_LOST)
            continue; /* (view_change never gives it one) */
        if (one_mapping && i > s && (old & ST_BREAK)) {
            old &= (uint8_t)~ST_BREAK;
            cleared++;
        }
        now = (uint8_t)((old & ST_BREAK) | st);
        if ((old & ST_MASK) == ST_NONE && st != ST_NONE)
            v->nmapped++;
        else if ((old & ST_MASK) != ST_NONE && st == ST_NONE)
            v->nmapped--;
        if (now != v->state[i]) /* untouched pages of a huge view stay untouched */
            v->state[i] = now;
    }
    v->nbreaks -= cleared;
    count_marks(-cleared);
    mmk__view_mark_break(v, s);
    mmk__view_mark_break(v, e);
}

/* An mprotect to read-only over [s, e) succeeded (VIEW_SPAN): its RW pages
 * are RO now, every other page keeps its state (the call left mappings that
 * were read-only already as they were).  Breaks inside stay; a mapping may
 * now begin at s and at e. */
static void record_span(struct mmk_region *v, size_t s, size_t e)
{
    for (size_t i = s; i < e; i++)
        if ((v->state[i] & (ST_MASK | ST_LOST)) == ST_RW)
            v->state[i] = (uint8_t)((v->state[i] & ST_BREAK) | ST_RO);
    mmk__view_mark_break(v, s);
    mmk__view_mark_break(v, e);
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

/* ---- the one call that changes mappings ------------------------------------------ */

static int kernel_map(struct mmk_region *v, size_t s, size_t n, int st, uint32_t p)
{
    void *out;
    char *a = v->base + s * page_size();
    size_t len = n * page_size();
    switch (st) {
    case ST_NONE:
        return mmk__sys_mmap(&out, a, len, PROT_NONE,
                             MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0);
    case ST_ZERO:
        return mmk__sys_mmap(&out, a, len, PROT_READ,
                             MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0);
    default:
        return mmk__sys_mmap(&out, a, len, st == ST_RW ? PROT_READ | PROT_WRITE : PROT_READ,
                             MAP_SHARED | MAP_FIXED, mmk__eng.pool.fd,
                             (off_t)((uint64_t)p * page_size()));
    }
}

/* Page i's address is someone else's now (see ST_LOST). */
static void lose(struct mmk_region *v, size_t i)
{
    if (vstate(v, i) != ST_NONE)
        v->nmapped--;
    v->state[i] = (uint8_t)((v->state[i] & ST_BREAK) | ST_LOST);
    v->nlost++;
    mmk__view_mark_break(v, i);
    mmk__view_mark_break(v, i + 1);
}

/*
 * Fill the hole [s, s+n) a move left with a fresh read-only mapping of pool
 * pages p, p+1, ...  MAP_FIXED_NOREPLACE: if another thread mapped something
 * into the hole meanwhile, the kernel refuses (EEXIST) and that mapping
 * stays; the hole is then filled in halves around it, and the pages it
 * holds are marked lost.  0, or -errno (the hole may be partly unfilled).
 */
static int fill_fresh(struct mmk_region *v, size_t s, size_t n, uint32_t p)
{
    size_t pg = page_size();
    char *a = v->base + s * pg;
    void *out = NULL;
    int r;
    for (int k = 0;; k++) {
        r = mmk__sys_mmap(&out, a, n * pg, PROT_READ, MAP_SHARED | MAP_FIXED_NOREPLACE,
                          mmk__eng.pool.fd, (off_t)((uint64_t)p * pg));
        if (r == 0 && out != a) { /* a kernel before 4.17 took it as a hint */
            mmk__sys_munmap(out, n * pg);
            r = -EEXIST;
        }
        /* The kernel's own mapping limit: unmap other views, try again. */
        if (r != -ENOMEM || k == 8 || mmk__engine_shed(v) < 0)
            break;
    }
    if (r == 0) {
        record(v, s, s + n, ST_RO, 1);
        return 0;
    }
    if (r != -EEXIST)
        return r;
    if (n == 1) {
        lose(v, s);
        return 0;
    }
    size_t h = n / 2;
    r = fill_fresh(v, s, h, p);
    if (r == 0)
        r = fill_fresh(v, s + h, n - h, p + (uint32_t)h);
    return r;
}

long mmk__view_inner_breaks(const struct mmk_region *v, size_t s, size_t n)
{
    long k = 0;
    for (size_t i = s + 1; i < s + n; i++)
        k += (v->state[i] & ST_BREAK) != 0;
    return k;
}

/* Write-protect [s, s+n) by the method chosen (protect.c).  0 (recorded:
 * *done set), or 1: not done, mprotect it; or -errno after a move (the
 * range may be partly a hole). */
static int protect_fast(struct mmk_region *v, size_t s, size_t n, uint32_t p, int *done)
{
    char *a = v->base + s * page_size();
    size_t len = n * page_size();
    long inner = mmk__view_inner_breaks(v, s, n);
    int m = mmk__protect_method(), r = 1;
    if (m == MMK__PROTECT_MOVE && p) {
        if (mmk__protect_move_away(a, len, inner) == 0) {
            if (mmk__protect_hole_hook)
                mmk__protect_hole_hook(a, len);
            r = fill_fresh(v, s, n, p);
            *done = r == 0;
            return r;
        }
        /* Nothing changed (the run is several mappings, the kernel refuses
         * a move): the next method. */
    }
    return r;
}

static int change_one(struct mmk_region *v, size_t s, size_t n, int st, uint32_t p, unsigned how)
{
    int r, done = 0;
    if (how & VIEW_PROTECT) {
        r = 1;
        if ((how & VIEW_MOVE) && st == ST_RO && n >= mmk__protect_min_pages())
            r = protect_fast(v, s, n, p, &done);
        if (r > 0)
            r = mmk__sys_mprotect(v->base + s * page_size(), n * page_size(),
                                  st == ST_RW ? PROT_READ | PROT_WRITE : PROT_READ);
    } else {
        r = kernel_map(v, s, n, st, p);
    }
    if (r == -ENOMEM && !(how & VIEW_RETRY)) {
        /*
         * The kernel's own limit (vm.max_map_count counts the rest of the
         * program's mappings too): it refuses before changing anything.
         * Unmap other views and try again, so a store does not die of it.
         */
        for (int k = 0; k < 8 && mmk__engine_shed(v) == 0; k++)
            if (change_one(v, s, n, st, p, how | VIEW_RETRY) == 0)
                return 0;
    }
    if (r < 0) {
        /* The call may have split the range's ends, and left who knows what
         * inside (a failed MAP_FIXED can leave a hole): unmap the view. */
        mmk__view_mark_break(v, s);
        mmk__view_mark_break(v, s + n);
        if (!(how & VIEW_WIPING))
            mmk__view_wipe(v);
        return r;
    }
    if (how & VIEW_SPAN)
        record_span(v, s, s + n);
    else if (!done)
        record(v, s, s + n, st, !(how & VIEW_PROTECT));
    return 0;
}

int mmk__view_change(struct mmk_region *v, size_t s, size_t n, int st, uint32_t p, unsigned how)
{
    if (n == 0)
        return 0;
    if (v->nlost) {
        /* Leave the pages someone else maps alone: change the runs between. */
        size_t e = s + n;
        for (size_t i = s; i < e;) {
            if (v->state[i] & ST_LOST) {
                i++;
                continue;
            }
            size_t j = i + 1;
            while (j < e && !(v->state[j] & ST_LOST))
                j++;
            int r = change_one(v, i, j - i, st, p ? p + (uint32_t)(i - s) : 0, how);
            if (r < 0)
                return r;
            i = j;
        }
        return 0;
    }
    return change_one(v, s, n, st, p, how);
}

int mmk__view_wipe(struct mmk_region *v)
{
    /* (No retry: shedding views for a wipe could recurse through them.) */
    return mmk__view_change(v, 0, v->npages, ST_NONE, 0, VIEW_MAP | VIEW_RETRY | VIEW_WIPING);
}

static void note_recent(struct mmk_region *v)
{
    for (int k = 0; k < MMK__RECENT; k++)
        if (mmk__eng.recent[k] == v)
            return;
    mmk__eng.recent[mmk__eng.recent_next++ % MMK__RECENT] = v;
}

/* ---- faults ----------------------------------------------------------------- */

static int read_fault(struct mmk_region *v, size_t i)
{
    int r = mmk__engine_make_room(v, 2);
    if (r < 0)
        return r;
    uint32_t p = mmk__pt_lookup(v->root, v->levels, i);
    size_t block = i - i % READ_RUN_PAGES;
    size_t lo = i, hi = i + 1, end = block + READ_RUN_PAGES;
    if (end > v->npages)
        end = v->npages;
    /* Grow the run while the neighbours are unmapped and one mapping can
     * hold them (the same zero memory, or the next pool pages). */
    while (lo > block && vstate(v, lo - 1) == ST_NONE &&
           mmk__pt_lookup(v->root, v->levels, lo - 1) == (p ? p - (uint32_t)(i - lo + 1) : 0))
        lo--;
    while (hi < end && vstate(v, hi) == ST_NONE &&
           mmk__pt_lookup(v->root, v->levels, hi) == (p ? p + (uint32_t)(hi - i) : 0))
        hi++;
    return mmk__view_change(v, lo, hi - lo, p ? ST_RO : ST_ZERO, p ? p - (uint32_t)(i - lo) : 0,
                            VIEW_MAP);
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
    int r = mmk__engine_make_room(v, 2);
    if (r < 0)
        return r;
    uint32_t q;
    r = mmk__pool_alloc_run((uint32_t)(hi - lo), &q);
    if (r < 0) { /* no contiguous room: one page */
        lo = i;
        hi = i + 1;
        r = mmk__pool_alloc(0, &q);
        if (r < 0)
            return r;
    }
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
    /* On failure the table keeps the (zero) new pages, which is fine. */
    r = mmk__view_change(v, lo, hi - lo, ST_RW, q, VIEW_MAP);
    if (r == 0)
        mmk__view_dirty_add(v, lo, hi - lo);
    return r;
}

/*
 * Copy n pages of contents at src into pool pages from q.  pwrite puts the
 * bytes straight into the memfd's pages, so the pool window never has to
 * fault the destination in.  When pwrite fails (a full tmpfs, a memory
 * cgroup at its limit) the error is returned: a copy through the window
 * would raise SIGBUS for the same reason, with the engine lock held.
 */
int mmk__view_copy_pages(uint32_t q, const void *src, size_t n)
{
    size_t pg = page_size();
    return mmk__sys_pwrite_all(mmk__eng.pool.fd, src, n * pg, (off_t)((uint64_t)q * pg));
}

/* Unmap page i from every view other than v that maps pool page p there
 * (read-only): p is about to become v's own, and they are about to get a
 * copy.  They refault the copy on their next read. */
static int maps_page(const struct mmk_region *w, size_t i, uint32_t p)
{
    return i < w->npages && vstate(w, i) == ST_RO && mmk__pt_lookup(w->root, w->levels, i) == p;
}

/* How many views other than v map pool page p at page i. */
static long count_others(const struct mmk_region *v, size_t i, uint32_t p)
{
    long n = 0;
    for (const struct mmk_region *w = mmk__eng.views; w; w = w->next)
        n += w != v && maps_page(w, i, p);
    return n;
}

static void unmap_others(struct mmk_region *v, size_t i, uint32_t p)
{
    for (struct mmk_region *w = mmk__eng.views; w; w = w->next)
        if (w != v && maps_page(w, i, p))
            mmk__view_change(w, i, 1, ST_NONE, 0, VIEW_MAP); /* on failure w is unmapped */
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
    int r = mmk__engine_make_room(v, 2 + 2 * count_others(v, i, p));
    if (r < 0)
        return r;
    int keep = mmk__pt_exclusive(v->root, v->levels, i) && mmk__eng.pool.ref[p] == 1;
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
        const char *src = vstate(v, i) != ST_NONE ? v->base + i * pg : mmk__pool_addr(p);
        uint32_t q;
        if (t && t->slot[idx] == p && mmk__eng.pool.ref[p] == 2) {
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
            if ((r = mmk__view_copy_pages(q, src, 1)) < 0) {
                mmk__pool_put(q);
                return r;
            }
            unmap_others(v, i, p);
            t->slot[idx] = q;
            mmk__eng.pool.ref[p]--;
            keep = 1;
        } else {
            /* Copy on write.  Prefer the pool page after the left
             * neighbour's, so that the new mapping can merge with it. */
            uint32_t left = i > 0 ? mmk__pt_lookup(v->root, v->levels, i - 1) : 0;
            r = mmk__pool_alloc(left ? left + 1 : 0, &q);
            if (r < 0)
                return r;
            if ((r = mmk__view_copy_pages(q, src, 1)) < 0) {
                mmk__pool_put(q);
                return r;
            }
            mmk__eng.pool.ref[p]--; /* still >= 1: another table holds it */
            *slot = q;
            r = mmk__view_change(v, i, 1, ST_RW, q, VIEW_MAP);
        }
    }
    if (keep) {
        if (vstate(v, i) == ST_RO)
            r = mmk__view_change(v, i, 1, ST_RW, 0, VIEW_PROTECT);
        else
            r = mmk__view_change(v, i, 1, ST_RW, p, VIEW_MAP);
    }
    if (r == 0)
        mmk__view_dirty_add(v, i, 1);
    return r;
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
    if (f->signo != SIGSEGV || mmk__engine_forked() || mmk__vm_lock_held())
        return MMK_FAULT_PASS;
    mmk__vm_lock();
    struct mmk_region *v = mmk__space_owner(f->addr);
    if (!v || (void *)v == (void *)&mmk__scratch_owner || !v->base || (char *)f->addr >= v->base + v->size) {
        mmk__vm_unlock(); /* no view there: a stray pointer */
        return MMK_FAULT_PASS;
    }
    size_t i = (size_t)((char *)f->addr - v->base) / page_size();
    if (v->state[i] & ST_LOST) {
        mmk__vm_unlock(); /* someone else's mapping (see ST_LOST) */
        return MMK_FAULT_PASS;
    }
    int st = vstate(v, i), r;
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
    mmk__pool_flush(); /* pages a failed fault gave back */
    mmk__vm_unlock();
    if (r < 0) {
        report_failure(f, v, r);
        return MMK_FAULT_PASS;
    }
    return MMK_FAULT_RETRY;
}

static void link_view(struct mmk_region *v)
{
    v->prev = NULL;
    v->next = mmk__eng.views;
    if (mmk__eng.views)
        mmk__eng.views->prev = v;
    mmk__eng.views = v;
}

static void unlink_view(struct mmk_region *v)
{
    if (v->prev)
        v->prev->next = v->next;
    else
        mmk__eng.views = v->next;
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
    /* All PROT_NONE, part of one free extent's mapping: no mark. */
    v->nbreaks = 0;
    v->edge_lo = v->edge_hi = 0;
    v->brk_lo = v->npages;
    v->brk_hi = 0;
    v->nmapped = 0;
    v->base = base;
    link_view(v);
    return 0;
}

/* Forget a materialized view that is being destroyed: its edges stay
 * counted, as orphans, until the kernel is asked.  pre: lock held. */
void mmk__view_forget(struct mmk_region *v)
{
    unlink_view(v);
    long left = mmk__view_charge(v);
    mmk__view_clear_breaks(v);
    mmk__engine_orphan_breaks(left);
    for (int k = 0; k < MMK__RECENT; k++)
        if (mmk__eng.recent[k] == v)
            mmk__eng.recent[k] = NULL;
}
