/* demo_gc.c - demo chapter: a lazy copying garbage collector on the fault
 * router (the collector is examples/lazy_gc.h, the full example
 * examples/lazy_gc.c). */
#include "cli.h"
#include "../examples/lazy_gc.h"

#include <stdio.h>

#define DEMO_SEMI ((size_t)16 << 20)
#define DEMO_NODES 40000

static struct gc demo_heap;

/* A list of DEMO_NODES nodes (next, payload), three dead objects for each
 * live one. */
static int demo_build(void)
{
    void *head = NULL;
    for (uint64_t i = 0; i < DEMO_NODES; i++) {
        for (int k = 0; k < 3; k++)
            if (!gc_alloc(&demo_heap, 1, 56))
                return -1;
        void *n = gc_alloc(&demo_heap, 1, 56);
        if (!n)
            return -1;
        gc_ptrs(n)[0] = head;
        memcpy(gc_bytes(n), &i, sizeof i);
        head = n;
    }
    demo_heap.roots[0] = head;
    return 0;
}

/* Walk the first `steps` nodes; the sum of their payloads. */
static uint64_t demo_walk(size_t steps, size_t *walked)
{
    uint64_t sum = 0;
    size_t k = 0;
    for (void *n = demo_heap.roots[0]; n && k < steps; n = gc_ptrs(n)[0], k++) {
        uint64_t v;
        memcpy(&v, gc_bytes(n), sizeof v);
        sum += v;
    }
    *walked = k;
    return sum;
}

int demo_gc(void)
{
    int r = gc_init(&demo_heap, DEMO_SEMI, 1, 1);
    if (r < 0) {
        cli_error("gc_init: %s", mmk_strerror(r));
        return 1;
    }
    int bad = 0;
    if (demo_build() != 0) {
        cli_error("the demo heap is full");
        gc_destroy(&demo_heap);
        return 1;
    }
    size_t n0, n1;
    uint64_t sum0 = demo_walk(SIZE_MAX, &n0);
    printf("A heap of %zu MiB semispaces: a list of %zu live nodes among %zu dead\n"
           "objects.  Two views of one memfd: the program's, whose unscanned to-space\n"
           "pages are PROT_NONE, and the collector's, always writable.\n\n",
           DEMO_SEMI >> 20, n0, 3 * n0);

    struct gc_stats stw;
    if (gc_stw_in_child(&demo_heap, NULL, NULL, &stw) != 0) {
        cli_error("the stop-the-world run in a child failed");
        bad = 1;
    }
    gc_collect(&demo_heap);
    struct gc_stats st = demo_heap.stats;
    printf("gc_collect: flip, copy the root, return.  Pause %.1f us (a stop-the-world\n"
           "copy of the same heap, in a child process: %.2f ms).\n",
           st.pause_ns / 1e3, stw.pause_ns / 1e6);

    size_t k;
    demo_walk(DEMO_NODES / 10, &k);
    size_t faults = demo_heap.stats.faults;
    printf("The program walks %zu nodes: %zu faults, each scans one page and opens it.\n",
           k, faults);
    gc_finish(&demo_heap);
    st = demo_heap.stats;
    printf("gc_finish scans the %zu pages nobody touched (%.2f ms).\n", st.finish_pages,
           st.finish_ns / 1e6);

    uint64_t sum1 = demo_walk(SIZE_MAX, &n1);
    printf("\nAfter the collection: %zu objects copied (%zu bytes), the list has %zu\n"
           "nodes with the same contents%s.\n",
           st.objects, st.bytes, n1, sum1 == sum0 ? "" : " - NOT the same");
    if (n1 != n0 || sum1 != sum0 || st.objects != n0 || faults == 0 || st.finish_pages == 0 ||
        stw.objects != st.objects)
        bad = 1;
    gc_destroy(&demo_heap);
    printf("gc: %s\n", bad ? "FAILED" : "ok");
    return bad;
}
