/*
 * view.h - the views of the snapshot engine (mmk_region), shared by view.c
 * (mapping, accounting, faults) and region.c (the public calls).
 * Everything here runs under the engine lock unless it says otherwise.
 */
#ifndef MMK_VIEW_H
#define MMK_VIEW_H

#include "mmkit.h"
#include "vm.h"

#include <stddef.h>
#include <stdint.h>

enum { ST_NONE = 0, ST_ZERO = 1, ST_RO = 2, ST_RW = 3 };
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
    uint8_t *state;       /* npages bytes, with base */
    struct run *dirty;    /* runs made RW since the last snapshot */
    size_t ndirty, dirty_cap;
    int dirty_overflow;   /* the list filled up: scan every state instead */
    long nmaps;           /* mappings this view adds: breaks inside its
                           * range plus its mapped edge pages (each can
                           * split the space's reservation once) */
    struct mmk_region *prev, *next; /* the list of materialized views */
};

extern struct mmk_region *mmk__views; /* every materialized view */
extern long mmk__total_maps;          /* sum of nmaps over them */
extern size_t mmk__map_budget;        /* 0 until the engine is set up */
extern int mmk__forked_child;         /* in a child of fork(): nothing works */

static inline size_t page_size(void)
{
    return mmk__pool.page;
}

/* The fault-router handler of the view space. */
int mmk__view_fault(const mmk_fault *f, void *ctx);

/* Give a view its address range (idempotent). */
int mmk__view_materialize(struct mmk_region *v);
/* Unlink a materialized view that is being destroyed. */
void mmk__view_forget(struct mmk_region *v);
/* Unmap a whole view back to PROT_NONE. */
int mmk__view_wipe(struct mmk_region *v);
/* Make room under the budget for `need` more mappings (cur: the view being
 * served, evicted last).  0 or -MMK_EBUDGET. */
int mmk__view_make_room(struct mmk_region *cur, long need);

/* Map pages [s, s+n) to pool pages from p with prot / to zero memory.  The
 * caller updates states and the count (mmk__view_breaks before and after,
 * then mmk__view_account). */
int mmk__view_map_pool(struct mmk_region *v, size_t s, size_t n, uint32_t p, int prot);
int mmk__view_map_zero(struct mmk_region *v, size_t s, size_t n);
long mmk__view_breaks(const struct mmk_region *v, size_t s, size_t e, int edges_only);
void mmk__view_account(struct mmk_region *v, long before, long after);
void mmk__view_dirty_add(struct mmk_region *v, size_t s, size_t n);
/* Copy n pages of contents at src into pool pages from q. */
int mmk__view_copy_pages(uint32_t q, const void *src, size_t n);

/* Write-protect the RW pages of [i, end) / those made RW since the last
 * snapshot. */
int mmk__view_protect_range(struct mmk_region *v, size_t i, size_t end);
int mmk__view_protect_dirty(struct mmk_region *v);

#endif
