/*
 * view.h - the views of the snapshot engine (mmk_region), shared by view.c
 * (mapping, faults, write-protection), engine.c (budget, eviction,
 * calibration) and region.c (the public calls).
 * Everything here runs under the engine lock unless it says otherwise.
 */
#ifndef MMK_VIEW_H
#define MMK_VIEW_H

#include "mmkit.h"
#include "vm.h"

#include <stddef.h>
#include <stdint.h>

/* A page's state: the low bits of its state byte. */
enum { ST_NONE = 0, ST_ZERO = 1, ST_RO = 2, ST_RW = 3, ST_MASK = 3 };
/* The high bit: a kernel mapping may begin at this page (a "break"). */
#define ST_BREAK 0x80u
/* The page's address is held by a mapping that is not mmkit's: another
 * thread mapped something into the hole a write-protect by move leaves for
 * a moment (protect.c), before it was filled.  That mapping is never
 * destroyed: the page is never mapped or protected again (its state stays
 * NONE, faults there are not mmkit's), and when the view is destroyed its
 * range is never handed out again.  Its contents stay readable through
 * mmk_region_read and other views. */
#define ST_LOST 0x40u

enum { V_WRITABLE = 1, V_SNAPSHOT = 2 };

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
    uint8_t *state;       /* npages bytes, with base: state | ST_BREAK */
    struct run *dirty;    /* runs made RW since the last snapshot */
    size_t ndirty, dirty_cap;
    int dirty_overflow;   /* the list filled up: scan every state instead */
    /* The mapping count (engine.h): breaks inside the range, and whether a
     * mapping may begin at base (edge_lo) or at base + size (edge_hi).
     * Breaks sit only in pages [brk_lo, brk_hi). */
    long nbreaks;
    uint8_t edge_lo, edge_hi;
    size_t brk_lo, brk_hi;
    size_t nmapped;       /* pages not NONE */
    size_t nlost;         /* pages marked ST_LOST */
    struct mmk_region *prev, *next; /* the list of materialized views */
};

static inline size_t page_size(void)
{
    return mmk__eng.pool.page;
}

static inline int vstate(const struct mmk_region *v, size_t i)
{
    return v->state[i] & ST_MASK;
}

/* Mappings this view adds to the count. */
static inline long mmk__view_charge(const struct mmk_region *v)
{
    return v->nbreaks + v->edge_lo + v->edge_hi;
}

/* The fault-router handler of the view space. */
int mmk__view_fault(const mmk_fault *f, void *ctx);

/* Give a view its address range (idempotent). */
int mmk__view_materialize(struct mmk_region *v);
/* Unlink a materialized view that is being destroyed; its edges stay
 * counted (as orphans) until the kernel is asked. */
void mmk__view_forget(struct mmk_region *v);

/*
 * The one call that changes a view's mappings, and its count with them.
 * Pages marked ST_LOST are skipped (the runs between them are changed).
 * Pages [s, s+n) get state st:
 *   VIEW_MAP      one mmap MAP_FIXED: NONE (PROT_NONE), ZERO (read-only
 *                 anonymous), RO / RW (pool pages p, p+1, ...).  The range
 *                 becomes one mapping: breaks inside it go.
 *   VIEW_PROTECT  mprotect to st (RO or RW) with the same backing; breaks
 *                 inside stay.  | VIEW_MOVE: a long run may be protected by
 *                 moving its page tables away (protect.c); with p != 0 the
 *                 run is backed by pool pages p, p+1, ... and may be moved
 *                 away and mapped afresh read-only (one mapping).
 *   | VIEW_SPAN   (with VIEW_PROTECT, st RO, p 0) one mprotect over a
 *                 span of short runs and the pages between them, all of
 *                 them mapped (view_protect.c): only the RW pages change
 *                 state, the others were read-only already.
 * Either way a mapping may now begin at s and at s + n.  The caller made
 * room (mmk__engine_make_room) for 2 more breaks.  When the kernel refuses
 * for its own mapping limit (ENOMEM), other views are unmapped and the call
 * tried again.  If the kernel call fails the view is unmapped whole (what
 * the failed call left is unknown) and the error returned.
 */
enum { VIEW_MAP = 0, VIEW_PROTECT = 1, VIEW_MOVE = 2, VIEW_RETRY = 4, VIEW_WIPING = 8,
       VIEW_SPAN = 16 };
int mmk__view_change(struct mmk_region *v, size_t s, size_t n, int st, uint32_t p, unsigned how);
/* Unmap a whole view back to NONE.  0 or -errno. */
int mmk__view_wipe(struct mmk_region *v);
/* Calibration: forget every break of v (edges too), then mark one. */
void mmk__view_clear_breaks(struct mmk_region *v);
void mmk__view_mark_break(struct mmk_region *v, size_t i);

void mmk__view_dirty_add(struct mmk_region *v, size_t s, size_t n);
/* Copy n pages of contents at src into pool pages from q.  0 or -errno
 * (nothing is copied through the pool window on failure). */
int mmk__view_copy_pages(uint32_t q, const void *src, size_t n);

/* Breaks inside (s, s+n): mappings that may begin there. */
long mmk__view_inner_breaks(const struct mmk_region *v, size_t s, size_t n);

/* Write-protect the RW pages of [i, end) / those made RW since the last
 * snapshot (view_protect.c). */
int mmk__view_protect_range(struct mmk_region *v, size_t i, size_t end);
int mmk__view_protect_dirty(struct mmk_region *v);

#endif
