/*
 * ptable.c - page tables as persistent radix trees.
 *
 * A view's page table maps page numbers to pool pages through a tree of
 * MMK__FANOUT-slot nodes.  Snapshots share whole trees (a reference on the
 * root: O(1)); a write copies only the path from the root to its leaf where
 * nodes are shared - path copying, as in persistent vectors.  So the metadata
 * a snapshot costs is a few nodes per page written after it, not a copy of
 * the table.
 */
#include "vm.h"
#include "sys.h"

#include <sys/mman.h>

#include <string.h>

uint32_t mmk__node_alloc(void)
{
    struct mmk__pool *P = &mmk__eng.pool;
    uint32_t n;
    if (P->node_free) {
        n = P->node_free;
        P->node_free = P->nodes[n].slot[0];
    } else {
        if (P->node_top >= P->max_nodes)
            return 0;
        n = P->node_top++;
    }
    memset(&P->nodes[n], 0, sizeof P->nodes[n]);
    P->nodes[n].ref = 1;
    P->nodes_in_use++;
    return n;
}

void mmk__node_put(uint32_t n, unsigned level)
{
    struct mmk__pool *P = &mmk__eng.pool;
    if (n == 0 || --P->nodes[n].ref != 0)
        return;
    struct mmk__node *node = &P->nodes[n];
    for (unsigned i = 0; i < MMK__FANOUT; i++) {
        uint32_t c = node->slot[i];
        if (!c)
            continue;
        if (level == 1)
            mmk__pool_put(c);
        else
            mmk__node_put(c, level - 1);
    }
    node->slot[0] = P->node_free;
    P->node_free = n;
    P->nodes_in_use--;
}

unsigned mmk__pt_levels(size_t npages)
{
    unsigned levels = 1;
    size_t span = MMK__FANOUT;
    while (span < npages) {
        span <<= MMK__FANOUT_BITS;
        levels++;
    }
    return levels;
}

static inline unsigned slot_index(size_t page, unsigned level)
{
    return (unsigned)(page >> ((level - 1) * MMK__FANOUT_BITS)) & (MMK__FANOUT - 1);
}

uint32_t mmk__pt_lookup(uint32_t root, unsigned levels, size_t page)
{
    uint32_t n = root;
    for (unsigned level = levels; n && level >= 1; level--) {
        uint32_t c = mmk__eng.pool.nodes[n].slot[slot_index(page, level)];
        if (level == 1)
            return c;
        n = c;
    }
    return 0;
}

int mmk__pt_exclusive(uint32_t root, unsigned levels, size_t page)
{
    uint32_t n = root;
    for (unsigned level = levels; level >= 1; level--) {
        if (!n || mmk__eng.pool.nodes[n].ref != 1)
            return 0;
        if (level == 1)
            return 1;
        n = mmk__eng.pool.nodes[n].slot[slot_index(page, level)];
    }
    return 0;
}

/* A private copy of node n (one reference of n moves to the copy). */
static uint32_t copy_node(uint32_t n, unsigned level)
{
    uint32_t c = mmk__node_alloc();
    if (!c)
        return 0;
    struct mmk__node *src = mmk__node(n), *dst = mmk__node(c);
    memcpy(dst->slot, src->slot, sizeof dst->slot);
    for (unsigned i = 0; i < MMK__FANOUT; i++) {
        uint32_t x = dst->slot[i];
        if (!x)
            continue;
        if (level == 1)
            mmk__pool_get(x);
        else
            mmk__node_get(x);
    }
    if (level == 1) {
        dst->twin = n & 0x7fffffffu;
        dst->leaf = 1;
    }
    src->ref--; /* > 0: it was shared */
    return c;
}

uint32_t *mmk__pt_slot(uint32_t *root, unsigned levels, size_t page)
{
    uint32_t *slot = root;
    for (unsigned level = levels; level >= 1; level--) {
        uint32_t n = *slot;
        if (n == 0) {
            n = mmk__node_alloc();
            if (!n)
                return NULL;
            mmk__eng.pool.nodes[n].leaf = level == 1;
            *slot = n;
        } else if (mmk__eng.pool.nodes[n].ref > 1) {
            n = copy_node(n, level);
            if (!n)
                return NULL;
            *slot = n;
        }
        slot = &mmk__eng.pool.nodes[n].slot[slot_index(page, level)];
    }
    return slot;
}

struct diff_state {
    mmk__pt_diff_fn fn;
    void *ctx;
    size_t npages;
    size_t run_start, run_len;
    int stop;
};

static void diff_emit(struct diff_state *d, size_t page)
{
    if (page >= d->npages || d->stop)
        return;
    if (d->run_len && d->run_start + d->run_len == page) {
        d->run_len++;
        return;
    }
    if (d->run_len && (d->stop = d->fn(d->run_start, d->run_len, d->ctx)) != 0)
        return;
    d->run_start = page;
    d->run_len = 1;
}

static void diff_rec(struct diff_state *d, uint32_t a, uint32_t b, unsigned level, size_t first)
{
    if (a == b || d->stop || first >= d->npages)
        return;
    const struct mmk__node *na = a ? mmk__node(a) : NULL;
    const struct mmk__node *nb = b ? mmk__node(b) : NULL;
    size_t span = (size_t)1 << ((level - 1) * MMK__FANOUT_BITS);
    for (unsigned i = 0; i < MMK__FANOUT; i++) {
        uint32_t x = na ? na->slot[i] : 0, y = nb ? nb->slot[i] : 0;
        if (x == y)
            continue;
        if (level == 1)
            diff_emit(d, first + i);
        else
            diff_rec(d, x, y, level - 1, first + i * span);
    }
}

int mmk__pt_diff(uint32_t a, uint32_t b, unsigned levels, size_t npages, mmk__pt_diff_fn fn,
                 void *ctx)
{
    struct diff_state d = { .fn = fn, .ctx = ctx, .npages = npages };
    diff_rec(&d, a, b, levels, 0);
    if (!d.stop && d.run_len)
        d.stop = fn(d.run_start, d.run_len, ctx);
    return d.stop;
}

static void count_rec(uint32_t n, unsigned level, int exclusive, size_t *nonzero, size_t *priv)
{
    const struct mmk__node *node = mmk__node(n);
    exclusive = exclusive && node->ref == 1;
    for (unsigned i = 0; i < MMK__FANOUT; i++) {
        uint32_t c = node->slot[i];
        if (!c)
            continue;
        if (level > 1) {
            count_rec(c, level - 1, exclusive, nonzero, priv);
            continue;
        }
        (*nonzero)++;
        if (exclusive && mmk__eng.pool.ref[c] == 1)
            (*priv)++;
    }
}

void mmk__pt_count(uint32_t root, unsigned levels, size_t npages, size_t *nonzero,
                   size_t *private_pages)
{
    (void)npages;
    *nonzero = *private_pages = 0;
    if (root)
        count_rec(root, levels, 1, nonzero, private_pages);
}

void mmk__node_trim(void)
{
    struct mmk__pool *P = &mmk__eng.pool;
    if (P->nodes_in_use || P->node_top <= 1)
        return;
    /* Nothing alive: the arena starts over, and its memory goes back. */
    size_t len = (size_t)P->node_top * sizeof(struct mmk__node);
    len = (len + P->page - 1) & ~(P->page - 1);
    mmk__sys_madvise(P->nodes, len, MADV_DONTNEED);
    P->node_top = 1;
    P->node_free = 0;
}
