/*
 * bench/arena.c - filling 1 GiB sequentially through a growable arena,
 * against write(2) of the same bytes and against the lower bound: a file
 * ftruncate'd to its final size up front, mapped and filled.
 *
 * Every case writes a fresh file under $TMPDIR (or /tmp) into the page cache;
 * the file is deleted after each run, so no case pays for writeback (1 GiB of
 * fsync would take seconds and measure the disk, not the technique).  The
 * arena cases include mmk_arena_open and mmk_arena_used (the backwards scan
 * that close uses to trim), and their growth faults.  Median of BENCH_RUNS.
 *
 * A second reference sizes the file with fallocate instead of ftruncate: the
 * arena grows with fallocate, and on ext4 a page fault into a preallocated
 * (unwritten) extent is cheaper than one into a hole, which must reserve a
 * delayed-allocation block per page.  That is why the arena can beat the
 * ftruncate lower bound; the fallocate row is the bound for its technique.
 */
#define BENCH_RUNS 5 /* 1 GiB per run: keep the whole benchmark under a minute */
#include "bench.h"
#include "mmkit.h"

#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>

#define MiB ((size_t)1 << 20)
#define TOTAL ((size_t)1 << 30)
#define STEP MiB

static char path[PATH_MAX];

static void die(const char *what)
{
    perror(what);
    exit(1);
}

/* Size the file up front: ftruncate (sparse, as the issue defines the lower
 * bound) or fallocate (blocks allocated up front, as the arena grows). */
static double run_lower_bound(int preallocate)
{
    double t0 = bench_now();
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0)
        die("open");
    if ((preallocate ? fallocate(fd, 0, 0, (off_t)TOTAL) : ftruncate(fd, (off_t)TOTAL)) != 0)
        die("ftruncate/fallocate");
    char *p = mmap(NULL, TOTAL, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED)
        die("mmap");
    for (size_t off = 0; off < TOTAL; off += STEP)
        memset(p + off, (int)(off / STEP % 255 + 1), STEP);
    double t = bench_now() - t0;
    munmap(p, TOTAL);
    close(fd);
    unlink(path);
    return t;
}

static double run_write(void)
{
    static char buf[STEP];
    double t0 = bench_now();
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0)
        die("open");
    for (size_t off = 0; off < TOTAL; off += STEP) {
        memset(buf, (int)(off / STEP % 255 + 1), STEP);
        for (size_t done = 0; done < STEP;) {
            ssize_t n = write(fd, buf + done, STEP - done);
            if (n < 0)
                die("write");
            done += (size_t)n;
        }
    }
    double t = bench_now() - t0;
    close(fd);
    unlink(path);
    return t;
}

static double run_arena(size_t chunk, struct mmk_arena_stats *st)
{
    double t0 = bench_now();
    mmk_arena *a = mmk_arena_open(path, 4 * TOTAL, MMK_ARENA_CREATE | MMK_ARENA_TRUNC);
    if (!a)
        die("mmk_arena_open");
    if (chunk && mmk_arena_set_growth(a, chunk, chunk) != 0)
        die("mmk_arena_set_growth");
    char *p = mmk_arena_base(a);
    for (size_t off = 0; off < TOTAL; off += STEP)
        memset(p + off, (int)(off / STEP % 255 + 1), STEP);
    size_t used = mmk_arena_used(a);
    double t = bench_now() - t0;
    if (used != TOTAL) {
        fprintf(stderr, "arena used %zu, expected %zu\n", used, TOTAL);
        exit(1);
    }
    mmk_arena_stats(a, st);
    /* Drop the bytes before close so that close has nothing to fsync. */
    if (truncate(path, 0) != 0)
        die("truncate");
    mmk_arena_close(a);
    unlink(path);
    return t;
}

int main(void)
{
    const char *dir = getenv("TMPDIR");
    snprintf(path, sizeof path, "%s/mmk-bench-arena-%d", dir && *dir ? dir : "/tmp", (int)getpid());
    double lb[BENCH_RUNS], fa[BENCH_RUNS], wr[BENCH_RUNS], ar[BENCH_RUNS], small[3];
    struct mmk_arena_stats st = { 0 }, st_small = { 0 };
    run_lower_bound(0); /* warm up: page cache, page tables, the allocator */
    for (int i = 0; i < BENCH_RUNS; i++) {
        lb[i] = run_lower_bound(0);
        fa[i] = run_lower_bound(1);
        ar[i] = run_arena(0, &st);
        wr[i] = run_write();
    }
    for (int i = 0; i < 3; i++)
        small[i] = run_arena(64 * 1024, &st_small);

    bench_header("arena", "fill 1 GiB sequentially into a file of unknown final size");
    double anchor = bench_median(lb, BENCH_RUNS);
    bench_row("lower bound: ftruncate to final size, mmap, fill", anchor * 1e3, "ms", 0);
    bench_row("fallocate to final size, mmap, fill", bench_median(fa, BENCH_RUNS) * 1e3, "ms",
              anchor * 1e3);
    char label[160];
    snprintf(label, sizeof label, "mmk_arena (default chunks: %zu growth faults)", st.faults);
    bench_row(label, bench_median(ar, BENCH_RUNS) * 1e3, "ms", anchor * 1e3);
    bench_row("write(2), 1 MiB at a time", bench_median(wr, BENCH_RUNS) * 1e3, "ms", anchor * 1e3);
    snprintf(label, sizeof label, "mmk_arena, fixed 64 KiB chunks (%zu growth faults)",
             st_small.faults);
    bench_row(label, bench_median(small, 3) * 1e3, "ms", anchor * 1e3);
    printf("\nGoal: mmk_arena within 1.2x of the lower bound.  Growth faults per GiB with\n"
           "default chunks (1 MiB doubling to 256 MiB): %zu; file extended %zu times.\n",
           st.faults, st.grows);
    return 0;
}
