/* test_region_spans.c - snapshots that protect short runs in spans (one
 * mprotect over neighbouring runs and the pages between them, see
 * src/view_protect.c): pages that are not mapped between the runs stay
 * unmapped and fault in their own bytes, never-written pages keep reading
 * zero, every written page is protected, and the mapping count never drops
 * below the kernel's.  Each case runs with spans off, at the default
 * distance and at any distance. */
#include "mmkit.h"
#include "maps_util.h"

#include <criterion/criterion.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* Internals (tests link the static library). */
void mmk__vm_lock(void);
void mmk__vm_unlock(void);
int mmk__view_wipe(mmk_region *v);
void mmk__engine_space_range(char **base, size_t *len);
void mmk__protect_force_gap(size_t gap);
size_t mmk__protect_span_gap(void);

static size_t PG;

static void setup(void)
{
    PG = (size_t)sysconf(_SC_PAGESIZE);
}

static void teardown(void)
{
    mmk__protect_force_gap((size_t)-2);
}

static void check_counts(mmk_region *r, const char *what)
{
    struct mmk_region_stats st;
    cr_assert_eq(mmk_region_stats(r, &st), 0);
    char *base;
    size_t len;
    mmk__engine_space_range(&base, &len);
    size_t space = kernel_mappings(base, len);
    size_t view = kernel_mappings(mmk_region_base(r), mmk_region_size(r));
    cr_assert_geq(st.total_mappings, space, "%s: engine %zu < kernel %zu", what,
                  st.total_mappings, space);
    cr_assert_geq(st.mappings, view, "%s: view %zu < kernel %zu", what, st.mappings, view);
}

#define N 4096      /* pages; [0, N/2) written at first, [N/2, N) never */
#define BLOCK 64    /* a read fault maps at most this aligned block */

static char fill_of(size_t i)
{
    return (char)(i * 13 + 1) ? (char)(i * 13 + 1) : 1;
}

/* Blocks mapped again after the wipe: even ones, and 9 (so 8, 9, 10 lie
 * side by side); the other blocks stay unmapped (NONE). */
static int mapped_block(size_t b)
{
    return b % 2 == 0 || b == 9;
}

/* Pages written between the two snapshots: three short runs in a mapped
 * block, one page in an unmapped one. */
static int written(size_t i)
{
    size_t b = i / BLOCK, k = i % BLOCK;
    if (mapped_block(b))
        return k == 5 || k == 20 || k == 21 || k == 40;
    return k == 7;
}

/* Unmap r's live view (as the budget's eviction does), then map every
 * mapped block again by reading it. */
static void wipe_and_remap(mmk_region *r)
{
    const char *p = mmk_region_base(r);
    mmk__vm_lock();
    int e = mmk__view_wipe(r);
    mmk__vm_unlock();
    cr_assert_eq(e, 0);
    for (size_t b = 0; b < N / BLOCK; b++)
        if (mapped_block(b))
            (void)*(const volatile char *)(p + b * BLOCK * PG);
}

/* The scene both cases start from: a region whose first half is written,
 * snapshot s0 taken, the live view unmapped (as the budget's eviction
 * does), every mapped block mapped again by reading it (read-only pool
 * pages or zero pages, checked), then the written() pages written. */
static mmk_region *scattered_scene(size_t gap, mmk_region **s0)
{
    mmk__protect_force_gap(gap);
    mmk_region *r = mmk_region_create(N * PG, 0);
    cr_assert_not_null(r);
    char *p = mmk_region_base(r);
    for (size_t i = 0; i < N / 2; i++)
        p[i * PG] = fill_of(i);
    *s0 = mmk_region_snapshot(r, 0);
    cr_assert_not_null(*s0);
    wipe_and_remap(r);
    for (size_t b = 0; b < N / BLOCK; b++)
        if (mapped_block(b))
            cr_assert_eq(p[b * BLOCK * PG], b * BLOCK < N / 2 ? fill_of(b * BLOCK) : 0);
    for (size_t i = 0; i < N; i++)
        if (written(i))
            p[i * PG] = 'w';
    return r;
}

static void spans_case(size_t gap)
{
    mmk_region *s0;
    mmk_region *r = scattered_scene(gap, &s0);
    char *p = mmk_region_base(r);
    mmk_region *s1 = mmk_region_snapshot(r, 0);
    cr_assert_not_null(s1);
    check_counts(r, "after the snapshot");
    /* Every page reads its bytes by pointer, unmapped ones included. */
    for (size_t i = 0; i < N; i++) {
        char want = written(i) ? 'w' : i < N / 2 ? fill_of(i) : 0;
        cr_assert_eq(p[i * PG], want, "gap %zu page %zu", gap, i);
    }
    /* Every written page was protected: writing it again leaves s1 alone;
     * never-written pages between the runs are still writable zero pages. */
    for (size_t i = 0; i < N; i++)
        if (written(i) || (i >= N / 2 && i % 9 == 0))
            p[i * PG] = 'v';
    for (size_t i = 0; i < N; i++) {
        char a = 1, b = 1;
        cr_assert_eq(mmk_region_read(s1, i * PG, &a, 1), 0);
        cr_assert_eq(a, written(i) ? 'w' : i < N / 2 ? fill_of(i) : 0, "gap %zu page %zu", gap, i);
        cr_assert_eq(mmk_region_read(s0, i * PG, &b, 1), 0);
        cr_assert_eq(b, i < N / 2 ? fill_of(i) : 0);
        char want = (written(i) || (i >= N / 2 && i % 9 == 0)) ? 'v' : i < N / 2 ? fill_of(i) : 0;
        cr_assert_eq(p[i * PG], want);
    }
    /* And by pointer through the snapshot's own view. */
    const char *q = mmk_region_base(s1);
    for (size_t i = 0; i < N; i += 3)
        cr_assert_eq(q[i * PG], written(i) ? 'w' : i < N / 2 ? fill_of(i) : 0);
    check_counts(r, "after the writes");
    mmk_region_destroy(s1);
    mmk_region_destroy(s0);
    mmk_region_destroy(r);
}

Test(region_spans, unmapped_and_zero_pages_between_short_runs, .init = setup, .fini = teardown)
{
    spans_case(0);
    spans_case(1024);
    spans_case(SIZE_MAX);
}

/* Scattered writes over a large view, snapshot after snapshot: each
 * snapshot keeps its bytes whatever the distance between runs. */
Test(region_spans, scattered_runs_snapshot_after_snapshot, .init = setup, .fini = teardown)
{
    const size_t gaps[] = { 0, 1024, SIZE_MAX };
    for (size_t g = 0; g < 3; g++) {
        mmk__protect_force_gap(gaps[g]);
        cr_assert_eq(mmk__protect_span_gap(), gaps[g]);
        size_t n = 16384;
        mmk_region *r = mmk_region_create(n * PG, 0);
        cr_assert_not_null(r);
        uint32_t *p = mmk_region_base(r);
        size_t w = PG / sizeof *p;
        for (size_t i = 0; i < n; i++)
            p[i * w] = 0;
        mmk_region *snaps[6];
        uint64_t x = 88172645463325252ull + g;
        for (int k = 0; k < 6; k++) {
            for (int j = 0; j < 300; j++) {
                x ^= x << 13, x ^= x >> 7, x ^= x << 17;
                size_t i = (size_t)(x % n);
                p[i * w] = (uint32_t)(k + 1) << 20 | (uint32_t)i;
            }
            snaps[k] = mmk_region_snapshot(r, 0);
            cr_assert_not_null(snaps[k]);
        }
        check_counts(r, "scattered");
        /* Snapshot k holds, at each page, the last value written before it:
         * check against the next snapshot's view of the same page. */
        for (int k = 0; k < 6; k++)
            for (size_t i = 0; i < n; i++) {
                uint32_t a;
                cr_assert_eq(mmk_region_read(snaps[k], i * PG, &a, sizeof a), 0);
                cr_assert(a == 0 || ((a & 0xfffff) == i && (a >> 20) <= (uint32_t)k + 1),
                          "gap %zu snapshot %d page %zu holds %#x", gaps[g], k, i, a);
                if (k < 5) {
                    uint32_t later;
                    cr_assert_eq(mmk_region_read(snaps[k + 1], i * PG, &later, sizeof later), 0);
                    cr_assert_geq(later >> 20, a >> 20);
                }
            }
        for (int k = 0; k < 6; k++)
            mmk_region_destroy(snaps[k]);
        mmk_region_destroy(r);
    }
}

/* prepare_write and restore protect the writable pages of their range /
 * source first, through the same spans: their promises hold over scattered
 * runs with unmapped pages between them. */
static void prepare_and_restore_case(size_t gap)
{
    mmk_region *s0;
    mmk_region *r = scattered_scene(gap, &s0);
    char *p = mmk_region_base(r);
    cr_assert_eq(mmk_region_prepare_write(r, 0, N * PG), 0);
    for (size_t i = 0; i < N; i++)
        cr_assert_eq(p[i * PG], written(i) ? 'w' : i < N / 2 ? fill_of(i) : 0, "gap %zu page %zu",
                     gap, i);
    /* Scattered short runs again, with unmapped pages between them. */
    mmk_region *s1 = mmk_region_snapshot(r, 0);
    cr_assert_not_null(s1);
    wipe_and_remap(r);
    for (size_t i = 0; i < N; i++)
        if (written(i))
            p[i * PG] = 'x';
    /* Restore from the live region: its writable pages are protected first,
     * so its writes after the call never reach the copy. */
    mmk_region *copy = mmk_region_snapshot(s0, MMK_SNAP_WRITABLE);
    cr_assert_not_null(copy);
    cr_assert_eq(mmk_region_restore(copy, r), 0);
    for (size_t i = 0; i < N; i++) {
        cr_assert_eq(p[i * PG], written(i) ? 'x' : i < N / 2 ? fill_of(i) : 0, "gap %zu page %zu",
                     gap, i);
        p[i * PG] = 'y';
    }
    const char *c = mmk_region_base(copy);
    for (size_t i = 0; i < N; i++) {
        char want = written(i) ? 'x' : i < N / 2 ? fill_of(i) : 0;
        cr_assert_eq(c[i * PG], want, "gap %zu page %zu", gap, i);
        char a = 1, b = 1;
        cr_assert_eq(mmk_region_read(s0, i * PG, &a, 1), 0);
        cr_assert_eq(a, i < N / 2 ? fill_of(i) : 0);
        cr_assert_eq(mmk_region_read(s1, i * PG, &b, 1), 0);
        cr_assert_eq(b, written(i) ? 'w' : i < N / 2 ? fill_of(i) : 0);
    }
    check_counts(r, "prepare and restore");
    mmk_region_destroy(copy);
    mmk_region_destroy(s1);
    mmk_region_destroy(s0);
    mmk_region_destroy(r);
}

Test(region_spans, prepare_write_and_restore_over_scattered_runs, .init = setup,
     .fini = teardown)
{
    prepare_and_restore_case(0);
    prepare_and_restore_case(1024);
    prepare_and_restore_case(SIZE_MAX);
}
