/* demo_region.c - demo chapter: regions and snapshots. */
#include "cli.h"
#include "mmkit.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MiB ((size_t)1 << 20)

/* The list of the issue: a count and the items, at the start of a region. */
struct list {
    size_t count;
    int items[];
};

static void put(struct list *l, int value)
{
    l->items[l->count++] = value;
}

/* "1,2,3" (in one of a few rotating buffers, so a printf can take several). */
static const char *items(const struct list *l)
{
    static char bufs[6][128];
    static int next;
    char *buf = bufs[next++ % 6];
    size_t n = 0;
    buf[0] = 0;
    for (size_t i = 0; i < l->count && n < sizeof bufs[0]; i++)
        n += (size_t)snprintf(buf + n, sizeof bufs[0] - n, "%s%d", i ? "," : "", l->items[i]);
    return buf;
}

static int is(const struct list *l, const char *want)
{
    return strcmp(items(l), want) == 0;
}

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

static mmk_region *snap(mmk_region *r, unsigned flags)
{
    mmk_region *s = mmk_region_snapshot(r, flags);
    if (!s)
        cli_error("mmk_region_snapshot: %s", mmk_strerror(errno));
    return s;
}

/* Destroy the views that exist; complain about any failure. */
static int destroy_all(mmk_region **v, size_t n)
{
    int ok = 1;
    for (size_t i = 0; i < n; i++) {
        int r = v[i] ? mmk_region_destroy(v[i]) : 0;
        if (r < 0) {
            cli_error("mmk_region_destroy: %s", mmk_strerror(r));
            ok = 0;
        }
    }
    return ok;
}

/* ---- the list: snapshots, a branch, restore -------------------------------- */

static int list_scene(void)
{
    /* live, s1, s2, branch, snapshot of the branch */
    mmk_region *v[5] = { mmk_region_create(MiB, 0) };
    if (!v[0]) {
        cli_error("mmk_region_create: %s", mmk_strerror(errno));
        return 0;
    }
    struct list *live = mmk_region_base(v[0]);
    put(live, 1);
    put(live, 2);
    if (!(v[1] = snap(v[0], 0)))
        goto fail;
    put(live, 3);
    if (!(v[2] = snap(v[0], 0)))
        goto fail;
    put(live, 4);
    const struct list *s1 = mmk_region_base(v[1]), *s2 = mmk_region_base(v[2]);
    if (!s1 || !s2) {
        cli_error("mmk_region_base: %s", mmk_strerror(errno));
        goto fail;
    }

    printf("A list lives in a 1 MiB region: put(1) put(2), snapshot s1, put(3),\n"
           "snapshot s2, put(4).  Three views at three addresses, read by pointer\n"
           "at the same time:\n\n"
           "  live at %p, s1 at %p, s2 at %p\n\n"
           "           live  s1  s2\n", (void *)live, (const void *)s1, (const void *)s2);
    const struct list *cols[3] = { live, s1, s2 };
    for (size_t row = 0; row < live->count; row++) {
        printf("    item %zu", row);
        for (int c = 0; c < 3; c++) {
            if (row < cols[c]->count)
                printf("%4d", cols[c]->items[row]);
            else
                printf("   .");
        }
        printf("\n");
    }
    int ok = is(live, "1,2,3,4") && is(s1, "1,2") && is(s2, "1,2,3");

    printf("\nA writable branch of s1 (MMK_SNAP_WRITABLE) goes its own way, and can\n"
           "be snapshotted in turn:\n");
    if (!(v[3] = snap(v[1], MMK_SNAP_WRITABLE)))
        goto fail;
    struct list *branch = mmk_region_base(v[3]);
    if (!branch) {
        cli_error("mmk_region_base: %s", mmk_strerror(errno));
        goto fail;
    }
    put(branch, 10);
    put(branch, 11);
    if (!(v[4] = snap(v[3], 0)))
        goto fail;
    put(branch, 12);
    const struct list *bsnap = mmk_region_base(v[4]);
    if (!bsnap) {
        cli_error("mmk_region_base: %s", mmk_strerror(errno));
        goto fail;
    }
    printf("  branch          %s   (put 10, 11, snapshot, put 12)\n"
           "  branch's snap   %s\n"
           "  s1 %s, live %s, s2 %s: untouched\n",
           items(branch), items(bsnap), items(s1), items(live), items(s2));
    ok &= is(branch, "1,2,10,11,12") && is(bsnap, "1,2,10,11") && is(s1, "1,2") &&
          is(live, "1,2,3,4") && is(s2, "1,2,3");

    printf("\nRestore: the live list becomes s1 again, at the same address; time\n"
           "follows the pages that differ, not the size:\n");
    int r = mmk_region_restore(v[0], v[1]);
    if (r < 0)
        cli_error("mmk_region_restore: %s", mmk_strerror(r));
    ok &= r == 0 && mmk_region_base(v[0]) == live && is(live, "1,2");
    printf("  restore(live, s1)  live %s\n", items(live));
    put(live, 5);
    printf("  put(5)             live %s   s1 still %s   s2 still %s\n", items(live), items(s1),
           items(s2));
    ok &= is(live, "1,2,5") && is(s1, "1,2") && is(s2, "1,2,3");

    return destroy_all(v, 5) && ok;
fail:
    destroy_all(v, 5);
    return 0;
}

/* ---- diff, stats, EFAULT --------------------------------------------------- */

struct runs {
    size_t n;
    size_t off[8], len[8];
};

static int on_diff(size_t off, size_t len, void *ctx)
{
    struct runs *d = ctx;
    if (d->n < 8) {
        d->off[d->n] = off;
        d->len[d->n] = len;
    }
    d->n++;
    return 0;
}

static void print_stats(const char *name, const struct mmk_region_stats *st)
{
    printf("  %-8s %zu pages: %zu private, %zu shared, %zu mapping%s\n", name, st->pages,
           st->private_pages, st->shared_pages, st->mappings, st->mappings == 1 ? "" : "s");
}

static int table_scene(void)
{
    size_t pg = (size_t)sysconf(_SC_PAGESIZE), size = 16 * MiB, npages = size / pg;
    mmk_region *v[2] = { mmk_region_create(size, 0) };
    if (!v[0]) {
        cli_error("mmk_region_create: %s", mmk_strerror(errno));
        return 0;
    }
    char *table = mmk_region_base(v[0]);
    memset(table, 'a', size);
    struct mmk_region_stats before, live_st, snap_st;
    if (!(v[1] = snap(v[0], 0)))
        goto fail;
    const char *old = mmk_region_base(v[1]);
    int ok = old != NULL && mmk_region_stats(v[0], &before) == 0;

    /* Pages 3-5, 100 and the last page are written again. */
    const size_t changed[] = { 3, 4, 5, 100, npages - 1 };
    const size_t nchanged = sizeof changed / sizeof changed[0];
    for (size_t i = 0; i < nchanged; i++)
        table[changed[i] * pg + 17] = 'b';

    printf("Diff and stats: a 16 MiB table, every page written, then snapshotted;\n"
           "pages 3-5, 100 and %zu are written again.  mmk_region_diff(snapshot, live):\n",
           npages - 1);
    struct runs d = { 0 };
    int r = mmk_region_diff(v[1], v[0], on_diff, &d);
    if (r < 0)
        cli_error("mmk_region_diff: %s", mmk_strerror(r));
    for (size_t i = 0; i < d.n && i < 8; i++) {
        size_t first = d.off[i] / pg, last = (d.off[i] + d.len[i]) / pg - 1;
        printf("  offset %9zu  length %6zu   ", d.off[i], d.len[i]);
        if (first == last)
            printf("(page %zu)\n", first);
        else
            printf("(pages %zu-%zu)\n", first, last);
    }
    ok &= r == 0 && d.n == 3 && d.off[0] == 3 * pg && d.len[0] == 3 * pg &&
          d.off[1] == 100 * pg && d.len[1] == pg && d.off[2] == (npages - 1) * pg &&
          d.len[2] == pg;
    ok &= old && old[3 * pg + 17] == 'a' && table[3 * pg + 17] == 'b';

    ok &= mmk_region_stats(v[0], &live_st) == 0 && mmk_region_stats(v[1], &snap_st) == 0;
    printf("\nmmk_region_stats: only the pages written since the snapshot have memory\n"
           "of their own; the rest is shared:\n");
    print_stats("live", &live_st);
    print_stats("snapshot", &snap_st);
    printf("  pool pages in use %zu (%zu before the writes: one copy per page written)\n"
           "  mappings of all views %zu, budget %zu\n", live_st.pool_pages, before.pool_pages,
           live_st.total_mappings, live_st.budget);
    ok &= live_st.pages == npages && live_st.private_pages == nchanged &&
          live_st.shared_pages == npages - nchanged && snap_st.shared_pages == npages - nchanged &&
          live_st.pool_pages == before.pool_pages + nchanged &&
          live_st.total_mappings <= live_st.budget && live_st.mappings > 0;

    /* EFAULT: the kernel does not fault on a write-protected page, it fails. */
    printf("\nSystem calls do not take the copy-on-write fault: read(2) from a pipe\n"
           "into page 7, shared with the snapshot, fails; mmk_region_prepare_write\n"
           "makes the page private first:\n");
    int p[2];
    if (pipe2(p, O_NONBLOCK) != 0) {
        cli_error("pipe: %s", mmk_strerror(errno));
        goto fail;
    }
    char *dst = table + 7 * pg;
    ssize_t n = write(p[1], "hello", 5);
    errno = 0;
    ssize_t got = read(p[0], dst, 5);
    int err = errno;
    printf("  read(pipe, page 7) -> %zd, errno %s (%s)\n", got,
           err == EFAULT ? "EFAULT" : err ? "not EFAULT" : "0", mmk_strerror(err));
    ok &= n == 5 && got == -1 && err == EFAULT;
    r = mmk_region_prepare_write(v[0], 7 * pg, pg);
    got = read(p[0], dst, 5);
    printf("  mmk_region_prepare_write(page 7) -> %d; read -> %zd, \"%.5s\"; the\n"
           "  snapshot's page 7 still starts \"%.5s\"\n", r, got, dst, old ? old + 7 * pg : "");
    ok &= r == 0 && got == 5 && !memcmp(dst, "hello", 5) && old && !memcmp(old + 7 * pg, "aaaaa", 5);
    close(p[0]);
    close(p[1]);

    return destroy_all(v, 2) && ok;
fail:
    destroy_all(v, 2);
    return 0;
}

/* ---- a number -------------------------------------------------------------- */

static int speed_scene(void)
{
    size_t pg = (size_t)sysconf(_SC_PAGESIZE), size = 256 * MiB;
    mmk_region *v[3] = { mmk_region_create(size, 0) };
    char *copy = malloc(size);
    if (!v[0] || !copy) {
        cli_error("a 256 MiB region and buffer: %s", mmk_strerror(errno));
        free(copy);
        destroy_all(v, 3);
        return 0;
    }
    char *live = mmk_region_base(v[0]);
    memset(live, 'x', size);
    memset(copy, 0, size); /* fault the buffer in: time the copy alone */

    double t0 = now_ms();
    memcpy(copy, live, size);
    double t_copy = now_ms() - t0;
    free(copy);

    t0 = now_ms();
    v[1] = snap(v[0], 0);
    double t_snap = now_ms() - t0;
    if (!v[1])
        goto fail;

    t0 = now_ms();
    memset(live, 'y', MiB); /* one copy-on-write fault per page */
    double t_write = now_ms() - t0;

    t0 = now_ms();
    v[2] = snap(v[0], 0);
    double t_again = now_ms() - t0;
    if (!v[2])
        goto fail;

    printf("A number: a 256 MiB region, every page written.\n"
           "  memcpy of the 256 MiB    %8.2f ms\n"
           "  mmk_region_snapshot      %8.2f ms   (%.0fx less; write-protects %zu pages)\n"
           "  write 1 MiB after it     %8.2f ms   (%zu copy-on-write faults, %.1f us each)\n"
           "  snapshot again           %8.2f ms   (protects only the %zu pages written since)\n",
           t_copy, t_snap, t_snap > 0 ? t_copy / t_snap : 0.0, size / pg, t_write, MiB / pg,
           t_write * 1e3 / (double)(MiB / pg), t_again, MiB / pg);

    const char *s1 = mmk_region_base(v[1]), *s2 = mmk_region_base(v[2]);
    int ok = s1 && s2 && s1[0] == 'x' && s1[MiB - 1] == 'x' && s1[size - 1] == 'x' &&
             s2[0] == 'y' && s2[MiB - 1] == 'y' && s2[MiB] == 'x' && live[0] == 'y';
    return destroy_all(v, 3) && ok;
fail:
    destroy_all(v, 3);
    return 0;
}

int demo_region(void)
{
    int ok = list_scene();
    printf("\n");
    fflush(stdout);
    ok &= table_scene();
    printf("\n");
    fflush(stdout);
    ok &= speed_scene();
    printf("\n%s\n", ok ? "regions: ok" : "regions: UNEXPECTED RESULT");
    return ok ? 0 : 1;
}
