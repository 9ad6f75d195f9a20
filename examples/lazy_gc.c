/*
 * lazy_gc.c - a lazy copying garbage collector at work, and the proof that
 * it keeps exactly the live graph.
 *
 * The collector is examples/lazy_gc.h: gc_collect() flips the semispaces,
 * copies the roots and returns, with the to-space pages that hold unscanned
 * copies protected; the program's first touch of such a page faults, mmkit's
 * fault router calls the collector, which scans that page and unprotects it;
 * gc_finish() scans the rest.
 *
 * The mutator here builds a graph - a linked list, a binary tree, a table of
 * 1,500 pointers (an object spanning several pages), byte blobs of up to
 * 24 KiB, random cross links between all of them, and plenty of garbage - and
 * rewires it between collections.  Before each collection it takes a
 * checksum of the whole live graph (every object's size, bytes, and the
 * identity of every object it points to).  A stop-the-world collection of
 * the same heap runs in a child process on a private copy, for its pause and
 * as a twin to compare with.
 *
 * Between gc_collect() and gc_finish() the program reads a different share of
 * the graph each time (1%, 10%, 50%, all of it, nothing), so the faults and
 * the pages left for gc_finish() vary; it also moves links (some stores are
 * the first access to their page), allocates young objects and links some
 * into the graph, and allocates a few MiB of garbage.  The twin does the same
 * after its collection.  Then the checks:
 *
 *   - right after either collection, the graph has the checksum, object
 *     count and byte count it had before (directly when the program reads
 *     it all during the collection; in the twin otherwise);
 *   - after gc_finish(), the graph equals the twin's;
 *   - to-space holds exactly the objects live at the flip (a linear walk
 *     finds no more and no fewer: nothing unreachable was kept) and no
 *     pointer to anything else than them and the objects allocated since;
 *   - every pointer the program read during the collection pointed into
 *     to-space, and the young objects are intact;
 *   - the twin copied the same objects and bytes.
 *
 * One line per collection:
 *
 *   gc 1: 62808 live objects, 5950920 bytes copied, pause 3 us, 304 faults
 *   after, 1151 pages left to finish; stop-the-world pause 3.9 ms (0.0008x);
 *   checked
 *
 *   lazy_gc                 lazy collections (the default)
 *   lazy_gc --stw           stop-the-world collections only (no twin)
 *   lazy_gc --break         corrupt one byte after the second collection:
 *                           the check must fail (exit status 1)
 *
 * Exit status 0 if every check passed, 1 otherwise.  Single-threaded: the
 * collector supports one mutator thread.
 */
#include "lazy_gc.h"

#include <inttypes.h>
#include <stdio.h>

enum { R_LIST, R_TREE, R_TABLE, R_YOUNG, R_SPARE, NROOTS };

#define SEMI ((size_t)48 << 20)
#define LIST_NODES 30000
#define TREE_DEPTH 15           /* 32767 tree nodes */
#define TABLE_PTRS 1500
#define BLOBS 40
#define YOUNG_PER_CYCLE 500
#define YOUNG_BIT ((uint64_t)1 << 63)

static struct gc heap;
static uint64_t rng_state = 0x9e3779b97f4a7c15u;
static uint64_t next_id = 1;
static int failures;

static uint64_t mix(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9u;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebu;
    return x ^ (x >> 31);
}
static uint64_t rnd(void) { return mix(rng_state += 0x9e3779b97f4a7c15u); }
static size_t below(size_t n) { return (size_t)(rnd() % n); }

static void fail(const char *what, size_t cycle)
{
    printf("gc %zu: check FAILED: %s\n", cycle, what);
    failures++;
}

/* ---- building ------------------------------------------------------------ */

/* Every object's bytes start with a unique id; the rest is random. */
static uint64_t id_of(void *o) { return *(uint64_t *)gc_bytes(o); }

static void *new_object(size_t nptrs, size_t nbytes)
{
    if (nbytes < 8)
        nbytes = 8;
    void *o = gc_alloc(&heap, nptrs, nbytes);
    if (!o) {
        fprintf(stderr, "lazy_gc: the heap is full\n");
        exit(2);
    }
    unsigned char *b = gc_bytes(o);
    uint64_t id = next_id++;
    memcpy(b, &id, 8);
    for (size_t i = 8; i < nbytes; i++)
        b[i] = (unsigned char)rnd();
    return o;
}

/* Pointers to every list and tree node, valid until the next collection. */
static void **nodes;
static size_t nnodes, capnodes;

static void remember(void *o)
{
    if (nnodes == capnodes) {
        capnodes = capnodes ? 2 * capnodes : 4096;
        nodes = realloc(nodes, capnodes * sizeof *nodes);
        if (!nodes)
            abort();
    }
    nodes[nnodes++] = o;
}

static void *random_node(void) { return nnodes ? nodes[below(nnodes)] : NULL; }

/* Objects nobody will point to, some pointing into the graph. */
static void garbage(int n)
{
    for (int i = 0; i < n; i++) {
        size_t np = below(4);
        void *o = new_object(np, 8 + below(200));
        for (size_t k = 0; k < np; k++)
            gc_ptrs(o)[k] = random_node();
    }
}

static void *list_node(void)
{
    void *o = new_object(2, 8 + below(120)); /* next, cross */
    remember(o);
    garbage((int)below(3));
    return o;
}

static void *tree(int depth)
{
    if (depth == 0)
        return NULL;
    void *o = new_object(3, 8 + below(64)); /* left, right, cross */
    remember(o);
    garbage((int)below(2));
    gc_ptrs(o)[0] = tree(depth - 1);
    gc_ptrs(o)[1] = tree(depth - 1);
    return o;
}

/* A table of pointers (12 KiB: it straddles several pages), half to nodes,
 * some to byte blobs of up to 24 KiB. */
static void *table(void *old)
{
    void *t = new_object(TABLE_PTRS, 16);
    for (size_t i = 0; i < TABLE_PTRS; i++) {
        void *v;
        if (i < BLOBS)
            v = old && below(4) ? gc_ptrs(old)[i] : new_object(0, 1000 + below(24000));
        else
            v = old && below(2) ? gc_ptrs(old)[i] : random_node();
        gc_ptrs(t)[i] = v;
    }
    return t;
}

static void gather_tree(void *t)
{
    while (t) {
        remember(t);
        gather_tree(gc_ptrs(t)[0]);
        t = gc_ptrs(t)[1];
    }
}

/* Collect the nodes reachable by list and tree edges (cross links may keep
 * more alive; they are simply not picked as targets). */
static void gather(void)
{
    nnodes = 0;
    for (void *n = heap.roots[R_LIST]; n; n = gc_ptrs(n)[0])
        remember(n);
    gather_tree(heap.roots[R_TREE]);
}

static void build(void)
{
    void *head = NULL;
    for (int i = 0; i < LIST_NODES; i++) {
        void *n = list_node();
        gc_ptrs(n)[0] = head;
        head = n;
    }
    heap.roots[R_LIST] = head;
    heap.roots[R_TREE] = tree(TREE_DEPTH);
    for (size_t i = 0; i < nnodes; i++)
        if (below(5) == 0)
            gc_ptrs(nodes[i])[gc_nptrs(nodes[i]) - 1] = random_node();
    heap.roots[R_TABLE] = table(NULL);
}

/* Rewire between collections: unlink a quarter of the list, insert new
 * nodes, replace subtrees, move cross links, renew the table. */
static void mutate(size_t cycle)
{
    gather();
    void **link = &heap.roots[R_LIST];
    while (*link) {
        void *n = *link;
        if (below(4) == 0) {
            *link = gc_ptrs(n)[0]; /* unlinked: garbage unless a cross link holds it */
            continue;
        }
        if (below(3) == 0) {
            void *m = list_node();
            gc_ptrs(m)[0] = n;
            gc_ptrs(m)[1] = random_node();
            *link = m;
            link = &gc_ptrs(n)[0];
            continue;
        }
        link = &gc_ptrs(n)[0];
    }
    for (int k = 0; k < 6; k++) {
        void **slot = &heap.roots[R_TREE];
        int depth = 3 + (int)below(5);
        for (int d = 0; d < depth && *slot; d++)
            slot = &gc_ptrs(*slot)[below(2)];
        *slot = tree(TREE_DEPTH - depth - (int)below(2));
    }
    for (size_t i = 0; i < nnodes / 10; i++) {
        void *n = random_node();
        gc_ptrs(n)[gc_nptrs(n) - 1] = below(3) ? random_node() : NULL;
    }
    if (cycle % 2 == 0)
        heap.roots[R_TABLE] = table(heap.roots[R_TABLE]);
    else
        for (size_t i = BLOBS; i < TABLE_PTRS; i += 1 + below(8))
            gc_ptrs(heap.roots[R_TABLE])[i] = random_node();
    /* Last cycle's young objects survive one more collection, then go. */
    heap.roots[R_SPARE] = heap.roots[R_YOUNG];
    heap.roots[R_YOUNG] = NULL;
    garbage(20000);
}

/* ---- checking -------------------------------------------------------------- */

struct sum {
    size_t objects, bytes;
    uint64_t hash;
    size_t bad_pointers; /* pointers outside to-space (during a collection) */
};

static uint64_t *seen;  /* one bit per 8 bytes of the program's view */
static void **stack;
static size_t stack_cap;

static int mark(void *o)
{
    size_t bit = (size_t)((char *)o - heap.view) / 8;
    uint64_t m = (uint64_t)1 << (bit % 64);
    if (seen[bit / 64] & m)
        return 0;
    seen[bit / 64] |= m;
    return 1;
}

/*
 * Walk everything reachable from the roots (skipping R_YOUNG if asked) and
 * sum a hash of each object: its size, its pointer count, the id of every
 * object it points to and every one of its bytes.  Addresses do not enter
 * the hash, so a copy of the graph anywhere has the same sum.  A plain
 * program: during an unfinished lazy collection every page it touches for
 * the first time faults and is scanned on the spot.
 */
static struct sum checksum(int skip_young)
{
    struct sum s = { 0, 0, 0, 0 };
    memset(seen, 0, 2 * heap.semi / 64);
    size_t sp = 0;
    for (size_t r = 0; r < heap.nroots; r++) {
        if (r == R_YOUNG && skip_young)
            continue;
        if (heap.roots[r] && mark(heap.roots[r]))
            stack[sp++] = heap.roots[r];
    }
    while (sp) {
        void *o = stack[--sp];
        size_t n = gc_nptrs(o), size = gc_size(o);
        uint64_t h = mix(size * 31 + n);
        for (size_t i = 0; i < n; i++) {
            void *t = gc_ptrs(o)[i];
            if (t && !gc_in_to_space(&heap, t))
                s.bad_pointers++;
            h = mix(h ^ (t ? id_of(t) : 0));
            if (t && mark(t)) {
                if (sp == stack_cap) {
                    stack_cap *= 2;
                    stack = realloc(stack, stack_cap * sizeof *stack);
                    if (!stack)
                        abort();
                }
                stack[sp++] = t;
            }
        }
        const uint64_t *w = (const uint64_t *)gc_bytes(o);
        for (size_t i = 0; i < gc_nbytes(o) / 8; i++)
            h = mix(h ^ w[i]);
        s.hash += h;
        s.objects++;
        s.bytes += size;
    }
    return s;
}

/* What a program does right after a collection: read part of the list and
 * some tree paths, check that it only ever sees to-space pointers, change
 * some links (some of them stores into objects it has not read yet: the
 * first access to their page is a write), and allocate young objects that
 * point at what it read, some of them linked into the graph.  Deterministic
 * for a given graph and random state, so that the stop-the-world child can
 * do exactly the same.  Returns the number of problems seen. */
static size_t young_count;
static volatile uint64_t sink;

static size_t work_during_collection(double share, size_t cycle)
{
    size_t bad = 0, steps = (size_t)(share * LIST_NODES), k = 0;
    uint64_t acc = 0;
    void *last = NULL;
    for (void *n = heap.roots[R_LIST]; n && k < steps; n = gc_ptrs(n)[0], k++) {
        acc += id_of(n);
        void *c = gc_ptrs(n)[1], *m = gc_ptrs(n)[0];
        if (c && !gc_in_to_space(&heap, c))
            bad++;
        if (m && !gc_in_to_space(&heap, m))
            bad++;
        if (m && k % 5 == 0)
            gc_ptrs(m)[1] = n; /* a store into the next node, before any load of it */
        last = n;
    }
    for (size_t d = 0; d < (size_t)(share * 2000); d++) {
        void *t = heap.roots[R_TREE];
        while (t) {
            if (!gc_in_to_space(&heap, t))
                bad++;
            acc += id_of(t);
            if (last && below(8) == 0)
                gc_ptrs(t)[2] = last; /* move a cross link */
            last = t;
            t = gc_ptrs(t)[below(2)];
        }
    }
    young_count = 0;
    for (int i = 0; i < YOUNG_PER_CYCLE; i++) {
        void *y = gc_alloc(&heap, 2, 64);
        if (!y) {
            bad++;
            break;
        }
        uint64_t id = YOUNG_BIT | ((uint64_t)cycle << 32) | (uint64_t)i;
        memcpy(gc_bytes(y), &id, 8);
        memset(gc_bytes(y) + 8, (int)(id & 0xff), 56);
        gc_ptrs(y)[0] = heap.roots[R_YOUNG];
        gc_ptrs(y)[1] = last;
        heap.roots[R_YOUNG] = y;
        young_count++;
        if (last && i % 50 == 0)
            gc_ptrs(last)[gc_nptrs(last) - 1] = y; /* old points to young */
    }
    /* And a few MiB of short-lived objects: gc_alloc opens page after page
     * of to-space from the top while copies still grow from the bottom. */
    for (int i = 0; i < 20000; i++) {
        void *o = gc_alloc(&heap, 1, 16 + below(180));
        if (!o) {
            bad++;
            break;
        }
        gc_ptrs(o)[0] = last;
    }
    sink = acc; /* so the reads above are not optimised away */
    return bad;
}

/* The stop-the-world child's report, in memory shared with it. */
struct twin {
    struct sum collected; /* right after its collection */
    struct sum worked;    /* after the same work_during_collection() */
    size_t problems;
};
static struct twin *twin;
static double cur_share;
static size_t cur_cycle;

/* In the stop-the-world child, before: read the graph as the parent just
 * did; after: check it, do what the parent will do, check it again. */
static void warm(void);
static void twin_after(void)
{
    twin->collected = checksum(0);
    twin->problems = work_during_collection(cur_share, cur_cycle);
    twin->worked = checksum(0);
}

/* After the collection: a linear walk of to-space must find exactly the live
 * objects, and no pointer out of to-space. */
static void check_to_space(const struct sum *before, size_t cycle)
{
    struct gc *g = &heap;
    size_t objects = 0, bytes = 0, outside = 0;
    for (char *o = g->to; o < g->copy; o += gc_size(o)) {
        uint64_t h = *(uint64_t *)o;
        if (h & GC_FILLER)
            continue;
        objects++;
        bytes += gc_hdr_size(h);
        for (size_t i = 0; i < gc_hdr_nptrs(h); i++) {
            char *t = gc_ptrs(o)[i];
            if (t && !(t >= g->to && t < g->copy) && !(t >= g->alloc && t < g->to_end))
                outside++; /* neither a copy nor an object allocated since the flip */
        }
    }
    if (objects != before->objects || bytes != before->bytes)
        fail("to-space holds other objects than the live ones", cycle);
    if (outside)
        fail("a copied object points outside to-space's objects", cycle);
    /* The young objects: above the copies, intact, pointing at copies. */
    size_t young = 0;
    for (void *y = g->roots[R_YOUNG]; y; y = gc_ptrs(y)[0]) {
        unsigned char *b = gc_bytes(y);
        uint64_t id = id_of(y);
        char *t = gc_ptrs(y)[1];
        int ok = (char *)y >= g->alloc && (char *)y < g->to_end && (id & YOUNG_BIT) &&
                 (!t || (t >= g->to && t < g->copy));
        for (int i = 8; i < 64; i++)
            ok &= b[i] == (unsigned char)(id & 0xff);
        if (!ok) {
            fail("a young object is damaged", cycle);
            break;
        }
        young++;
    }
    if (young != young_count)
        fail("young objects lost", cycle);
}

static void warm(void)
{
    (void)checksum(0);
}

static int equal(const struct sum *a, const struct sum *b)
{
    return a->objects == b->objects && a->bytes == b->bytes && a->hash == b->hash;
}

int main(int argc, char **argv)
{
    int lazy = 1, sabotage = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--stw"))
            lazy = 0;
        else if (!strcmp(argv[i], "--break"))
            sabotage = 1;
        else {
            fprintf(stderr, "usage: lazy_gc [--stw] [--break]\n");
            return 2;
        }
    }
    int r = gc_init(&heap, SEMI, NROOTS, lazy);
    if (r < 0) {
        fprintf(stderr, "lazy_gc: gc_init: %s\n", mmk_strerror(r));
        return 2;
    }
    seen = calloc(2 * heap.semi / 64, 1);
    stack_cap = 1 << 16;
    stack = malloc(stack_cap * sizeof *stack);
    twin = mmap(NULL, sizeof *twin, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (!seen || !stack || twin == MAP_FAILED)
        return 2;

    static const double shares[] = { 0.01, 0.1, 0.5, 1.0, 0.0 };
    const size_t ncycles = sizeof shares / sizeof shares[0];
    build();
    for (size_t cycle = 1; cycle <= ncycles; cycle++) {
        if (cycle > 1)
            mutate(cycle);
        int failures_before = failures;
        struct sum before = checksum(0);
        struct gc_stats stw = { 0 };
        double share = shares[cycle - 1];
        cur_share = share;
        cur_cycle = cycle;
        memset(twin, 0, sizeof *twin);
        if (lazy && gc_stw_in_child(&heap, warm, twin_after, &stw) != 0) {
            fail("the stop-the-world run in a child failed", cycle);
            continue;
        }
        gc_collect(&heap);
        struct gc_stats now;
        if (!lazy) {
            struct sum collected = checksum(0);
            if (!equal(&collected, &before))
                fail("the live graph changed (checksum, objects or bytes)", cycle);
        }
        if (lazy && share >= 1.0) {
            /* The whole graph, read by the program: every page by a fault. */
            struct sum during = checksum(0);
            if (!equal(&during, &before) || during.bad_pointers)
                fail("the graph read during the collection differs", cycle);
        }
        if (work_during_collection(share, cycle))
            fail("the program saw a from-space pointer, or could not allocate", cycle);
        size_t faults = heap.stats.faults;
        gc_finish(&heap);
        now = heap.stats;
        if (sabotage && cycle == 2)
            gc_bytes(heap.roots[R_TABLE])[8] ^= 0x40; /* a payload byte */

        struct sum after = checksum(0);
        if (lazy && !equal(&twin->collected, &before))
            fail("stop-the-world changed the live graph", cycle);
        if (lazy && (!equal(&after, &twin->worked) || twin->problems))
            fail("the live graph changed (it differs from a stop-the-world collection "
                 "followed by the same changes)", cycle);
        if (after.bad_pointers)
            fail("a live object points outside to-space", cycle);
        if (now.objects != before.objects || now.bytes != before.bytes)
            fail("the collector copied other objects than the live ones", cycle);
        if (lazy && (stw.objects != now.objects || stw.bytes != now.bytes))
            fail("stop-the-world copied other objects", cycle);
        check_to_space(&before, cycle);

        if (lazy)
            printf("gc %zu: %zu live objects, %zu bytes copied, pause %.0f us, %zu faults after, "
                   "%zu pages left to finish; stop-the-world pause %.1f ms (%.4fx); %s\n",
                   cycle, now.objects, now.bytes, now.pause_ns / 1e3, faults, now.finish_pages,
                   stw.pause_ns / 1e6, (double)now.pause_ns / (double)stw.pause_ns,
                   failures > failures_before ? "FAILED" : "checked");
        else
            printf("gc %zu: %zu live objects, %zu bytes copied, stop-the-world pause %.1f ms; %s\n",
                   cycle, now.objects, now.bytes, now.pause_ns / 1e6,
                   failures > failures_before ? "FAILED" : "checked");
        fflush(stdout);
    }
    printf("lazy_gc: %zu %s collections, %s\n", ncycles, lazy ? "lazy" : "stop-the-world",
           failures ? "SOME CHECKS FAILED" : "every check passed");
    free(seen);
    free(stack);
    free(nodes);
    gc_destroy(&heap);
    return failures ? 1 : 0;
}
