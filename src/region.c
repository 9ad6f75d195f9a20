/*
 * region.c - regions and snapshots: the public calls, setup and fork.
 *
 * view.c maps views and serves their faults; engine.c holds the engine's
 * state, its budget and its mapping count; vm.h describes the pool and the
 * page-table trees underneath.  Every call here takes the engine lock for
 * its whole length, so calls are atomic with respect to each other and to
 * the fault handler.
 */
#include "mmkit.h"
#include "sys.h"
#include "view.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

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
    if (mmk__engine_forked()) {
        errno = MMK_ESTATE;
        return NULL;
    }
    mmk__engine_atfork();
    int r = mmk__engine_start();
    if (r < 0) {
        errno = -r;
        return NULL;
    }
    size_t pg = page_size();
    if (size > (size_t)mmk__eng.pool.max_pages * pg - pg) {
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
    r = mmk__view_materialize(v);
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
mmk_region *mmk_region_snapshot(mmk_region *r, unsigned flags)
{
    if (!r || (flags & ~(unsigned)MMK_SNAP_WRITABLE)) {
        errno = EINVAL;
        return NULL;
    }
    if (mmk__engine_forked()) {
        errno = MMK_ESTATE;
        return NULL;
    }
    struct mmk_region *s = view_new(r->size, V_SNAPSHOT | ((flags & MMK_SNAP_WRITABLE) ? V_WRITABLE : 0));
    if (!s) {
        errno = ENOMEM;
        return NULL;
    }
    mmk__vm_lock();
    int err = mmk__view_protect_dirty(r);
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
    if (r->base && !mmk__engine_forked()) {
        /* Back to plain reservation; a late fault on it finds no view. */
        int e = r->nmapped || r->nbreaks ? mmk__view_wipe(r) : 0;
        if (e < 0) {
            mmk__vm_unlock();
            return e;
        }
        if (r->nlost) /* someone else maps part of it: never hand it out */
            mmk__space_retire(r->base, r->size);
        else
            mmk__space_free(r->base, r->size);
    }
    if (r->base)
        mmk__view_forget(r);
    if (!mmk__engine_forked()) {
        mmk__node_put(r->root, r->levels);
        mmk__pool_flush();
        mmk__node_trim();
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
    if (mmk__engine_forked()) { /* not mapped in a child of fork() */
        errno = MMK_ESTATE;
        return NULL;
    }
    if (!r->base) {
        mmk__vm_lock();
        int e = mmk__view_materialize(r);
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
    if (mmk__engine_forked())
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
    int err;
};

/* Map the pages of dst that changed to their new backing, read-only, so
 * they need not refault.  Runs while dst->root is already the new table. */
static int restore_remap(size_t first, size_t count, void *ctx)
{
    struct restore_ctx *c = ctx;
    struct mmk_region *v = c->dst;
    size_t end = first + count;
    for (size_t i = first; i < end;) {
        if (vstate(v, i) == ST_NONE) {
            i++;
            continue;
        }
        int r = mmk__engine_make_room(v, 2); /* may unmap v: look again */
        if (r == 0 && vstate(v, i) == ST_NONE)
            continue;
        uint32_t p = mmk__pt_lookup(v->root, v->levels, i);
        size_t j = i + 1;
        while (j < end && vstate(v, j) != ST_NONE &&
               mmk__pt_lookup(v->root, v->levels, j) == (p ? p + (uint32_t)(j - i) : 0))
            j++;
        if (r == 0)
            r = mmk__view_change(v, i, j - i, p ? ST_RO : ST_ZERO, p, VIEW_MAP);
        if (r < 0) {
            c->err = r; /* the caller unmaps the view */
            return 1;
        }
        i = j;
    }
    return 0;
}

int mmk_region_restore(mmk_region *dst, mmk_region *src)
{
    if (!dst || !src)
        return -EINVAL;
    if (dst->size != src->size)
        return -MMK_ESIZE;
    if (!(dst->flags & V_WRITABLE))
        return -EROFS;
    if (mmk__engine_forked())
        return -MMK_ESTATE;
    if (dst == src)
        return 0;
    mmk__vm_lock();
    /* src's tree becomes shared with dst: like a snapshot of src, its
     * writable pages must be write-protected first. */
    int e = mmk__view_protect_dirty(src);
    if (e < 0) {
        mmk__vm_unlock();
        return e;
    }
    uint32_t old = dst->root;
    dst->shared_ever = src->shared_ever = 1;
    dst->root = src->root;
    mmk__node_get(dst->root);
    struct restore_ctx c = { dst, 0 };
    if (dst->base)
        mmk__pt_diff(old, dst->root, dst->levels, dst->npages, restore_remap, &c);
    if (c.err < 0 && dst->nmapped)
        mmk__view_wipe(dst); /* could not remap piecewise: unmap the whole view */
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
        /* Other threads may be writing to pages of the batch that are
         * writable now: stop them (they fault and wait for the lock) before
         * copying, or their writes after the copy would be lost. */
        if (r->base && (e = mmk__view_protect_range(r, s, s + n)) < 0)
            break;
        /* Make every slot's table path private now (this may allocate and
         * fail, but changes no contents), so the switch below cannot fail. */
        for (size_t j = 0; j < n && e == 0; j++)
            if (!mmk__pt_slot(&r->root, r->levels, s + j))
                e = -ENOMEM;
        uint32_t q;
        if (e == 0)
            e = mmk__pool_alloc_run((uint32_t)n, &q);
        if (e < 0)
            break;
        /* Copy, in runs of consecutive source pages (one pwrite each).  A
         * failed copy (a full tmpfs, a memory cgroup limit) gives the new
         * pages back and changes nothing. */
        for (size_t j = 0; j < n && e == 0;) {
            uint32_t p = mmk__pt_lookup(r->root, r->levels, s + j);
            size_t k = j + 1;
            while (p && k < n && mmk__pt_lookup(r->root, r->levels, s + k) == p + (k - j))
                k++;
            if (p)
                e = mmk__view_copy_pages(q + (uint32_t)j, mmk__pool_addr(p), k - j);
            j = k;
        }
        /* Map the copies before the table points at them: if mapping fails,
         * the table and the old pages are untouched. */
        if (e == 0 && r->base) {
            e = mmk__engine_make_room(r, 2);
            if (e == 0)
                e = mmk__view_change(r, s, n, ST_RW, q, VIEW_MAP); /* unmaps r on failure */
        }
        if (e < 0) {
            for (size_t k = 0; k < n; k++)
                mmk__pool_put(q + (uint32_t)k);
            break;
        }
        for (size_t j = 0; j < n; j++) {
            uint32_t *slot = mmk__pt_slot(&r->root, r->levels, s + j);
            uint32_t old = *slot;
            *slot = q + (uint32_t)j;
            mmk__pool_put(old); /* freed pages are punched at the flush */
        }
        if (r->base)
            mmk__view_dirty_add(r, s, n);
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
    if (mmk__engine_forked())
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
    if (mmk__engine_forked())
        return -MMK_ESTATE;
    memset(st, 0, sizeof *st);
    mmk__vm_lock();
    size_t nonzero, priv;
    mmk__pt_count(r->root, r->levels, r->npages, &nonzero, &priv);
    st->pages = r->npages;
    st->private_pages = priv;
    st->shared_pages = nonzero - priv;
    st->pool_pages = mmk__eng.pool.in_use;
    /* Mappings in the view's range: at most the breaks inside it, plus one. */
    if (r->base)
        st->mappings = (size_t)r->nbreaks + 1;
    st->total_mappings = (size_t)(mmk__eng.maps.total + mmk__protect_pending());
    st->budget = mmk__eng.budget;
    st->nodes = mmk__eng.pool.nodes_in_use;
    mmk__vm_unlock();
    return 0;
}

int mmk_region_set_budget(size_t mappings)
{
    if (mmk__engine_forked())
        return -MMK_ESTATE;
    mmk__engine_atfork();
    int r = mmk__engine_start();
    if (r < 0)
        return r;
    mmk__vm_lock();
    r = mmk__engine_set_budget(mappings);
    mmk__vm_unlock();
    return r;
}
