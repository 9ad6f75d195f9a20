/*
 * shm.c - SysV shm over files against the kernel's SysV shm, side by side in
 * one run:
 *
 *   - machine floors: a bare system call, an anonymous first-touch fault;
 *   - shmget + shmat + touch one page + shmdt on an existing key (goal: mmkit
 *     <= 2x the kernel);
 *   - shmat + shmdt alone;
 *   - creating and removing a segment;
 *   - attaching a fresh 1 GiB segment and touching every page (goal <=
 *     1.2x), with the store on disk (the default's kind) and on tmpfs;
 *   - the get/attach/touch/detach cycle from an unmodified program, once
 *     plain (the kernel) and once under LD_PRELOAD=libmmkit-sysv.so.
 *
 * The store is a fresh directory under $BENCH_SHM_DISK (default /var/tmp)
 * and under /dev/shm.  BENCH_SHM_BIG_MIB sets the big segment's size.
 */
#include "bench.h"
#include "mmkit.h"

#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define ITERS 2000

static double per_op_us(double t0, double t1, int n)
{
    return (t1 - t0) * 1e6 / n;
}

/* ---- the SysV calls, as a table, so each loop is written once ---------------- */

struct api {
    int (*get)(key_t, size_t, int);
    int (*at)(int, void **);
    int (*dt)(const void *);
    int (*rm)(int);
};

static int k_get(key_t k, size_t s, int f) { int r = shmget(k, s, f); return r < 0 ? -errno : r; }
static int k_at(int id, void **p) { *p = shmat(id, NULL, 0); return *p == (void *)-1 ? -errno : 0; }
static int k_dt(const void *p) { return shmdt(p) ? -errno : 0; }
static int k_rm(int id) { return shmctl(id, IPC_RMID, NULL) ? -errno : 0; }
static int m_at(int id, void **p) { return mmk_shmat(id, NULL, 0, p); }
static int m_rm(int id) { return mmk_shmctl(id, IPC_RMID, NULL); }

static const struct api kernel = { k_get, k_at, k_dt, k_rm };
static const struct api mmkit = { mmk_shmget, m_at, mmk_shmdt, m_rm };

static void die(const char *what, int r)
{
    fprintf(stderr, "bench/shm: %s: %s\n", what, mmk_strerror(r));
    exit(1);
}

static double cycle(const struct api *a, key_t key, int iters)
{
    double t0 = bench_now();
    for (int i = 0; i < iters; i++) {
        int id = a->get(key, 4096, 0600);
        void *p;
        if (id < 0 || a->at(id, &p) < 0)
            die("cycle", id < 0 ? id : -errno);
        *(volatile char *)p = (char)i;
        a->dt(p);
    }
    return per_op_us(t0, bench_now(), iters);
}

static double attach_detach(const struct api *a, int id, int iters)
{
    double t0 = bench_now();
    for (int i = 0; i < iters; i++) {
        void *p;
        if (a->at(id, &p) < 0)
            die("attach", -errno);
        a->dt(p);
    }
    return per_op_us(t0, bench_now(), iters);
}

static double create_remove(const struct api *a, int iters)
{
    double t0 = bench_now();
    for (int i = 0; i < iters; i++) {
        int id = a->get(IPC_PRIVATE, 4096, 0600);
        if (id < 0)
            die("create", id);
        a->rm(id);
    }
    return per_op_us(t0, bench_now(), iters);
}

/* Attach a fresh segment of len bytes and write one byte per page (ms). */
static double big_touch(const struct api *a, size_t len)
{
    int id = a->get(IPC_PRIVATE, len, 0600);
    if (id < 0)
        die("big create", id);
    void *p;
    double t0 = bench_now();
    if (a->at(id, &p) < 0)
        die("big attach", -errno);
    size_t pg = (size_t)sysconf(_SC_PAGESIZE);
    for (size_t off = 0; off < len; off += pg)
        ((volatile char *)p)[off] = 1;
    double t = (bench_now() - t0) * 1e3;
    a->dt(p);
    a->rm(id);
    return t;
}

/* ---- floors -------------------------------------------------------------------- */

static double floor_syscall(void)
{
    double t0 = bench_now();
    for (int i = 0; i < 100000; i++)
        getppid();
    return per_op_us(t0, bench_now(), 100000);
}

static double floor_fault(void)
{
    size_t pg = (size_t)sysconf(_SC_PAGESIZE), n = 4096;
    char *p = mmap(NULL, n * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        die("mmap", -errno);
    double t0 = bench_now();
    for (size_t i = 0; i < n; i++)
        p[i * pg] = 1;
    double t = per_op_us(t0, bench_now(), (int)n);
    munmap(p, n * pg);
    return t;
}

/* ---- an unmodified client, run plain and under the preload library ------------- */

static int client(key_t key, int iters)
{
    int id = shmget(key, 4096, IPC_CREAT | 0600);
    if (id < 0)
        return 1;
    double t = cycle(&kernel, key, iters);
    printf("%.6f\n", t);
    shmctl(id, IPC_RMID, NULL);
    return 0;
}

static double run_client(const char *self, const char *preload, key_t key)
{
    int fds[2];
    if (pipe(fds) != 0)
        die("pipe", -errno);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fds[1], 1);
        char k[32], n[32];
        snprintf(k, sizeof k, "%d", (int)key);
        snprintf(n, sizeof n, "%d", ITERS);
        if (preload)
            setenv("LD_PRELOAD", preload, 1);
        execl(self, self, "--client", k, n, (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    char buf[64] = "";
    ssize_t got = read(fds[0], buf, sizeof buf - 1);
    close(fds[0]);
    int st;
    waitpid(pid, &st, 0);
    if (got <= 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
        die("client", -EIO);
    return atof(buf);
}

static void make_store(char *dir, size_t len, const char *base)
{
    snprintf(dir, len, "%s/mmk-bench-shm-XXXXXX", base);
    if (!mkdtemp(dir))
        die("mkdtemp", -errno);
    chmod(dir, 01777);
    setenv("MMKIT_SHM_DIR", dir, 1);
}

static void remove_store(const char *dir)
{
    char cmd[PATH_MAX + 32];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "bench/shm: could not remove %s\n", dir);
}

int main(int argc, char **argv)
{
    if (argc == 4 && !strcmp(argv[1], "--client"))
        return client((key_t)atoi(argv[2]), atoi(argv[3]));

    const char *disk = getenv("BENCH_SHM_DISK");
    const char *big_env = getenv("BENCH_SHM_BIG_MIB");
    size_t big = (size_t)(big_env ? atol(big_env) : 1024) << 20;
    char disk_dir[PATH_MAX], tmpfs_dir[PATH_MAX];
    make_store(disk_dir, sizeof disk_dir, disk && *disk ? disk : "/var/tmp");
    key_t kkey = (key_t)(0x6b000000 | (getpid() & 0xffffff));
    key_t mkey = (key_t)(0x6c000000 | (getpid() & 0xffffff));
    double v[BENCH_RUNS], w[BENCH_RUNS];

    bench_header("shm floors", "what this machine charges for the parts");
    for (int r = 0; r < BENCH_RUNS; r++)
        v[r] = floor_syscall(), w[r] = floor_fault();
    bench_row("system call (getppid)", bench_median(v, BENCH_RUNS), "us", 0);
    bench_row("anonymous first-touch fault", bench_median(w, BENCH_RUNS), "us", 0);

    int kid = shmget(kkey, 4096, IPC_CREAT | 0600);
    int mid = mmk_shmget(mkey, 4096, IPC_CREAT | 0600);
    if (kid < 0 || mid < 0)
        die("setup", kid < 0 ? -errno : mid);

    bench_header("shm cycle", "shmget + shmat + touch one page + shmdt, existing key (goal <= 2x)");
    for (int r = 0; r < BENCH_RUNS; r++)
        v[r] = cycle(&kernel, kkey, ITERS), w[r] = cycle(&mmkit, mkey, ITERS);
    double anchor = bench_median(v, BENCH_RUNS);
    bench_row("kernel SysV", anchor, "us", 0);
    bench_row("mmkit (store on disk)", bench_median(w, BENCH_RUNS), "us", anchor);

    bench_header("shm attach", "shmat + shmdt of an existing segment");
    for (int r = 0; r < BENCH_RUNS; r++)
        v[r] = attach_detach(&kernel, kid, ITERS), w[r] = attach_detach(&mmkit, mid, ITERS);
    anchor = bench_median(v, BENCH_RUNS);
    bench_row("kernel SysV", anchor, "us", 0);
    bench_row("mmkit", bench_median(w, BENCH_RUNS), "us", anchor);

    bench_header("shm create", "shmget(IPC_PRIVATE, 4096) + IPC_RMID");
    for (int r = 0; r < BENCH_RUNS; r++)
        v[r] = create_remove(&kernel, ITERS / 4), w[r] = create_remove(&mmkit, ITERS / 4);
    anchor = bench_median(v, BENCH_RUNS);
    bench_row("kernel SysV", anchor, "us", 0);
    bench_row("mmkit (store on disk)", bench_median(w, BENCH_RUNS), "us", anchor);

    char what[128];
    snprintf(what, sizeof what, "attach a fresh %zu MiB segment, write every page (goal <= 1.2x)",
             big >> 20);
    bench_header("shm big", what);
    make_store(tmpfs_dir, sizeof tmpfs_dir, "/dev/shm");
    double x[3], y[3], z[3];
    for (int r = 0; r < 3; r++) {
        x[r] = big_touch(&kernel, big);
        setenv("MMKIT_SHM_DIR", disk_dir, 1);
        y[r] = big_touch(&mmkit, big);
        setenv("MMKIT_SHM_DIR", tmpfs_dir, 1);
        z[r] = big_touch(&mmkit, big);
    }
    anchor = bench_median(x, 3);
    bench_row("kernel SysV", anchor, "ms", 0);
    bench_row("mmkit, store on disk (ext4 here)", bench_median(y, 3), "ms", anchor);
    bench_row("mmkit, store on tmpfs", bench_median(z, 3), "ms", anchor);
    setenv("MMKIT_SHM_DIR", disk_dir, 1);

    bench_header("shm preload", "an unmodified program's shmget+shmat+touch+shmdt cycle");
    char self[PATH_MAX], preload[PATH_MAX + 32];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0)
        die("readlink", -errno);
    self[n] = '\0';
    snprintf(preload, sizeof preload, "%s", self);
    char *slash = strrchr(preload, '/');
    *slash = '\0';
    slash = strrchr(preload, '/');
    strcpy(slash ? slash + 1 : preload, "libmmkit-sysv.so");
    if (access(preload, R_OK) != 0) {
        printf("(skipped: %s not built)\n", preload);
    } else {
        for (int r = 0; r < BENCH_RUNS; r++)
            v[r] = run_client(self, NULL, kkey + 1), w[r] = run_client(self, preload, mkey + 1);
        anchor = bench_median(v, BENCH_RUNS);
        bench_row("plain (kernel SysV)", anchor, "us", 0);
        bench_row("LD_PRELOAD=libmmkit-sysv.so", bench_median(w, BENCH_RUNS), "us", anchor);
    }

    shmctl(kid, IPC_RMID, NULL);
    mmk_shmctl(mid, IPC_RMID, NULL);
    remove_store(disk_dir);
    remove_store(tmpfs_dir);
    return 0;
}
