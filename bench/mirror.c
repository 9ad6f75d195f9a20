/*
 * bench/mirror.c - what a mirror costs.
 *
 * Reading through the read-only view against reading plain anonymous memory
 * (the same hardware, so the ratio should be 1.00x), and the cost of a write
 * window: plain (a mutex, no system call) against guarded (two mprotects,
 * whose cost grows with the resident pages they walk), with an uncontended
 * mutex as the anchor.  A watched stray write (two signals, two mprotects and
 * a backtrace) closes the table.
 */
#include "bench.h"
#include "mmkit.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>

#define READ_BYTES ((size_t)64 << 20)
#define WINDOWS 200000

static volatile uint64_t sink;

static double read_ms(const uint64_t *p, size_t bytes)
{
    double t = bench_now();
    uint64_t s = 0;
    for (size_t i = 0; i < bytes / sizeof *p; i++)
        s += p[i];
    sink = s;
    return (bench_now() - t) * 1e3;
}

static double median_read_ms(const void *p, size_t bytes)
{
    double v[BENCH_RUNS];
    read_ms(p, bytes); /* warm */
    for (int i = 0; i < BENCH_RUNS; i++)
        v[i] = read_ms(p, bytes);
    return bench_median(v, BENCH_RUNS);
}

static double window_ns(mmk_mirror *m, int n)
{
    double v[BENCH_RUNS];
    for (int r = 0; r < BENCH_RUNS; r++) {
        double t = bench_now();
        for (int i = 0; i < n; i++) {
            if (mmk_mirror_begin_write(m) != 0 || mmk_mirror_end_write(m) != 0) {
                fprintf(stderr, "bench/mirror: write window failed\n");
                exit(1);
            }
        }
        v[r] = (bench_now() - t) * 1e9 / n;
    }
    return bench_median(v, BENCH_RUNS);
}

static double mutex_ns(int n)
{
    static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    double v[BENCH_RUNS];
    for (int r = 0; r < BENCH_RUNS; r++) {
        double t = bench_now();
        for (int i = 0; i < n; i++) {
            pthread_mutex_lock(&mu);
            __asm__ volatile("" ::: "memory");
            pthread_mutex_unlock(&mu);
        }
        v[r] = (bench_now() - t) * 1e9 / n;
    }
    return bench_median(v, BENCH_RUNS);
}

static mmk_mirror *filled_mirror(size_t size, unsigned flags)
{
    mmk_mirror *m = mmk_mirror_create(size, flags);
    if (!m) {
        perror("mmk_mirror_create");
        exit(1);
    }
    mmk_mirror_begin_write(m);
    memset(mmk_mirror_rw(m), 1, size); /* resident, as a real cache would be */
    mmk_mirror_end_write(m);
    return m;
}

int main(void)
{
    bench_header("mirror", "reads through the read-only view, write windows, watched writes");

    uint64_t *plain = mmap(NULL, READ_BYTES, PROT_READ | PROT_WRITE,
                           MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (plain == MAP_FAILED) {
        perror("mmap");
        return 1;
    }
    memset(plain, 1, READ_BYTES);
    mmk_mirror *big = filled_mirror(READ_BYTES, 0);
    double anchor = median_read_ms(plain, READ_BYTES);
    bench_row("read 64 MiB, plain anonymous memory", anchor, "ms", 0);
    bench_row("read 64 MiB, mirror read-only view", median_read_ms(mmk_mirror_ro(big), READ_BYTES),
              "ms", anchor);
    bench_row("read 64 MiB, mirror read-write view", median_read_ms(mmk_mirror_rw(big), READ_BYTES),
              "ms", anchor);
    munmap(plain, READ_BYTES);
    mmk_mirror_destroy(big);

    double mu = mutex_ns(WINDOWS);
    bench_row("uncontended mutex lock + unlock", mu, "ns", 0);
    mmk_mirror *m = filled_mirror(64 << 10, 0);
    bench_row("write window begin + end, default", window_ns(m, WINDOWS), "ns", mu);
    mmk_mirror_destroy(m);
    m = filled_mirror(64 << 10, MMK_MIRROR_GUARD);
    bench_row("write window begin + end, guarded 64 KiB", window_ns(m, WINDOWS / 10), "ns", mu);
    mmk_mirror_destroy(m);
    m = filled_mirror(READ_BYTES, MMK_MIRROR_GUARD);
    bench_row("write window begin + end, guarded 64 MiB resident", window_ns(m, 50), "ns", mu);
    mmk_mirror_destroy(m);

#if defined(__x86_64__)
    /* A watched stray write: reported (to /dev/null here) and let through. */
    m = filled_mirror(64 << 10, 0);
    mmk_mirror_set_policy(m, MMK_MIRROR_WATCH, NULL, NULL);
    int saved = dup(2), devnull = open("/dev/null", O_WRONLY);
    dup2(devnull, 2);
    volatile char *ro = (volatile char *)(uintptr_t)mmk_mirror_ro(m);
    double v[BENCH_RUNS];
    for (int r = 0; r < BENCH_RUNS; r++) {
        double t = bench_now();
        for (int i = 0; i < 1000; i++)
            ro[(size_t)i * 64] = (char)i;
        v[r] = (bench_now() - t) * 1e9 / 1000;
    }
    dup2(saved, 2);
    close(saved);
    close(devnull);
    bench_row("watched stray write (report + single-step)", bench_median(v, BENCH_RUNS), "ns", mu);
    mmk_mirror_destroy(m);
#endif
    return 0;
}
