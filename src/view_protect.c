/*
 * view_protect.c - write-protecting a view for a snapshot: the pages made
 * writable since the last one become read-only, so the next write faults
 * and copies (view.c).
 *
 * Long runs (MMK__PROTECT_MIN_PAGES and more) are protected by the method
 * protect.c picks (moving their page tables away, or mprotect).  Short runs
 * are mprotected, and that is where a repeat snapshot after scattered writes
 * spends its time: one system call per run, each rewriting one page-table
 * entry and the mapping's flags.  What a call costs is mostly the call and
 * the walk to the mapping, not the entries (docs/snapshot-speed.md: 1.3 us
 * per single-page call here, 0.2-0.5 us per run when one call covers many).
 * So short runs are gathered into spans: the dirty runs are taken in address
 * order, and a short run joins the span before it when at most
 * mmk__protect_span_gap() pages lie between them and every page between is
 * mapped (ZERO, RO or RW; never NONE, which mprotect would make readable as
 * anonymous zeros, and never a page someone else maps, ST_LOST).  One
 * mprotect(PROT_READ) then covers the span: the mappings between that are
 * read-only already keep their flags and entries (the kernel skips them),
 * only the writable ones change.  The call may split mappings at the span's
 * two ends only, so the span is counted like one run.
 *
 * The promises stay those of mprotect per run: a writer that touches a page
 * after it was protected faults and waits for the engine lock until the
 * snapshot is complete, so every writer's writes in a snapshot are a prefix
 * of its program order.  Everything here runs under the engine lock, from
 * API calls only (it may sort with qsort).
 */
#include "view.h"

#include <stdlib.h>
#include <string.h>

/* The leaf node that holds page's slot, or NULL (an all-zero subtree). */
static const struct mmk__node *leaf_at(const struct mmk_region *v, size_t page)
{
    uint32_t n = v->root;
    for (unsigned level = v->levels; n && level > 1; level--)
        n = mmk__node(n)->slot[(page >> ((level - 1) * MMK__FANOUT_BITS)) & (MMK__FANOUT - 1)];
    return n ? mmk__node(n) : NULL;
}

/* The end (<= end) of the run from page i backed by consecutive pool pages;
 * *first: i's pool page.  Walks the leaves, not a lookup per page. */
static size_t pool_run_end(const struct mmk_region *v, size_t i, size_t end, uint32_t *first)
{
    uint32_t p = mmk__pt_lookup(v->root, v->levels, i);
    *first = p;
    if (!p)
        return i + 1;
    size_t j = i + 1;
    while (j < end) {
        const struct mmk__node *leaf = leaf_at(v, j);
        if (!leaf)
            return j;
        size_t stop = (j | (MMK__FANOUT - 1)) + 1;
        if (stop > end)
            stop = end;
        for (; j < stop; j++)
            if (leaf->slot[mmk__pt_leaf_index(j)] != p + (uint32_t)(j - i))
                return j;
    }
    return j;
}

/* ---- spans ---------------------------------------------------------------- */

struct span {
    size_t s, e; /* [s, e): short runs and the mapped pages between them */
    int open;
};

#define LOW_BITS 0x0101010101010101ull

/* 1 if every page of [a, b) is mapped (state not NONE) and mmkit's (not
 * ST_LOST).  Eight state bytes at a time: ST_NONE is 0 in the low two bits
 * of its byte, ST_LOST is bit 6. */
static int all_mapped(const struct mmk_region *v, size_t a, size_t b)
{
    const uint8_t *st = v->state;
    for (; a < b && (a & 7); a++)
        if ((st[a] & ST_MASK) == ST_NONE || (st[a] & ST_LOST))
            return 0;
    for (; a + 8 <= b; a += 8) {
        uint64_t w;
        memcpy(&w, st + a, 8);
        if (((w | (w >> 1)) & LOW_BITS) != LOW_BITS || ((w >> 6) & LOW_BITS))
            return 0;
    }
    for (; a < b; a++)
        if ((st[a] & ST_MASK) == ST_NONE || (st[a] & ST_LOST))
            return 0;
    return 1;
}

/* Protect the span with one mprotect.  0 or -errno (v unmapped whole). */
static int flush(struct mmk_region *v, struct span *sp)
{
    if (!sp->open)
        return 0;
    sp->open = 0;
    /* The call may split the span off its neighbours; making room may
     * unmap v itself (whole: then nothing is writable any more). */
    int r = mmk__engine_make_room(v, 4);
    if (r < 0)
        return r;
    if (vstate(v, sp->s) == ST_NONE)
        return 0;
    r = mmk__view_change(v, sp->s, sp->e - sp->s, ST_RO, 0, VIEW_PROTECT | VIEW_SPAN);
    return r < 0 && v->nmapped != 0 ? r : 0;
}

/* A short run [i, j) to mprotect: into the open span, or a span of its own. */
static int add_short(struct mmk_region *v, struct span *sp, size_t i, size_t j)
{
    size_t gap = mmk__protect_span_gap();
    if (sp->open && i >= sp->e && i - sp->e <= gap && all_mapped(v, sp->e, i)) {
        sp->e = j;
        return 0;
    }
    int r = flush(v, sp);
    if (r == 0)
        *sp = (struct span){ i, j, 1 };
    return r;
}

/* Make the RW pages in [i, end) read-only; short runs go into *sp (NULL:
 * each run its own call).  If that fails, the view is unmapped instead (as
 * safe).  pre: engine lock held, v materialized. */
static int protect_runs(struct mmk_region *v, size_t i, size_t end, struct span *sp)
{
    size_t min = mmk__protect_min_pages();
    while (i < end) {
        if (sp && sp->open && i < sp->e) {
            i = sp->e; /* (an overlapping dirty run) the span has it */
            continue;
        }
        if (vstate(v, i) != ST_RW) {
            i++;
            continue;
        }
        size_t j = i + 1;
        while (j < end && vstate(v, j) == ST_RW)
            j++;
        uint32_t p = 0;
        unsigned how = VIEW_PROTECT;
        int m = mmk__protect_method();
        if (j - i >= min && m != MMK__PROTECT_MPROTECT) {
            how |= VIEW_MOVE;
            if (m == MMK__PROTECT_MOVE) {
                /* A fresh mapping holds consecutive pool pages only: a run
                 * of them long enough is moved, a shorter one mprotected. */
                size_t e = pool_run_end(v, i, j, &p);
                j = e;
                if (e - i < min) {
                    how = VIEW_PROTECT;
                    p = 0;
                }
            }
        }
        int r;
        if (how == VIEW_PROTECT && sp && mmk__protect_span_gap() > 0) {
            if ((r = add_short(v, sp, i, j)) < 0)
                return r;
            i = j;
            continue;
        }
        if (sp && (r = flush(v, sp)) < 0)
            return r;
        /* Protecting a run may split it off its neighbours; a move adds a
         * scratch range holding what was inside.  Making room may unmap v
         * itself: look again. */
        r = mmk__engine_make_room(v, 4 + ((how & VIEW_MOVE) ? mmk__view_inner_breaks(v, i, j - i) : 0));
        if (r < 0)
            return r;
        if (vstate(v, i) != ST_RW)
            continue;
        r = mmk__view_change(v, i, j - i, ST_RO, p, how);
        if (r < 0)
            return v->nmapped == 0 ? 0 : r; /* unmapped whole: nothing left writable */
        i = j;
    }
    return 0;
}

int mmk__view_protect_range(struct mmk_region *v, size_t i, size_t end)
{
    struct span sp = { 0, 0, 0 };
    int r = protect_runs(v, i, end, &sp);
    if (r == 0)
        r = flush(v, &sp);
    return r;
}

static int by_start(const void *a, const void *b)
{
    size_t x = ((const struct run *)a)->start, y = ((const struct run *)b)->start;
    return (x > y) - (x < y);
}

int mmk__view_protect_dirty(struct mmk_region *v)
{
    if (!v->base)
        return 0;
    struct run all = { 0, v->npages };
    struct run *runs = v->dirty_overflow ? &all : v->dirty;
    size_t nruns = v->dirty_overflow ? 1 : v->ndirty;
    /* In address order, so that neighbouring short runs share a span (the
     * list is in the order the pages were written). */
    if (nruns > 1 && mmk__protect_span_gap() > 0)
        qsort(runs, nruns, sizeof *runs, by_start);
    struct span sp = { 0, 0, 0 };
    int err = 0;
    for (size_t k = 0; k < nruns && err == 0; k++)
        err = protect_runs(v, runs[k].start, runs[k].start + runs[k].len, &sp);
    if (err == 0)
        err = flush(v, &sp);
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
