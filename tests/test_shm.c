/* test_shm.c - SysV shm over files: a conformance suite that runs the same
 * scenarios against the kernel's SysV shm and against mmkit and compares
 * every return value, errno and observation; persistence across processes;
 * SHM_RDONLY; limits and disk full; store directory safety. */
#include "shm_helpers.h"
#include "sys.h"

#include <stdint.h>

/* ---- the two backends, with one calling convention (-errno) ------------------ */

struct backend {
    const char *name;
    int (*get)(key_t, size_t, int);
    int (*at)(int, const void *, int, void **);
    int (*dt)(const void *);
    int (*ctl)(int, int, struct shmid_ds *);
    key_t key_base;
};

static int k_get(key_t k, size_t s, int f)
{
    int r = shmget(k, s, f);
    return r < 0 ? -errno : r;
}
static int k_at(int id, const void *a, int f, void **out)
{
    void *p = shmat(id, a, f);
    if (p == (void *)-1)
        return -errno;
    *out = p;
    return 0;
}
static int k_dt(const void *a)
{
    return shmdt(a) < 0 ? -errno : 0;
}
static int k_ctl(int id, int cmd, struct shmid_ds *b)
{
    int r = shmctl(id, cmd, b);
    return r < 0 ? -errno : r;
}

static const struct backend kernel = { "kernel", k_get, k_at, k_dt, k_ctl, 0 };
static const struct backend mmkit = { "mmkit", mmk_shmget, mmk_shmat, mmk_shmdt, mmk_shmctl, 0 };

/* What a scenario observed: a list of labelled numbers. */
struct trace {
    int n;
    const char *label[64];
    long value[64];
    int ids[16], nids; /* segments to remove at the end */
};

static void obs(struct trace *t, const char *label, long v)
{
    cr_assert_lt(t->n, 64);
    t->label[t->n] = label;
    t->value[t->n++] = v;
}

/* Results that are ids or addresses differ between backends: record only
 * whether they succeeded (>= 0) or the error. */
static long ok_or_err(long r)
{
    return r >= 0 ? 0 : r;
}

static int keep(struct trace *t, int id)
{
    if (id >= 0 && t->nids < 16)
        t->ids[t->nids++] = id;
    return id;
}

typedef void (*scenario_fn)(const struct backend *b, key_t key, struct trace *t);

static key_t kernel_key(int n)
{
    /* Kernel keys are machine-wide: random, so parallel runs do not meet. */
    unsigned r = 0;
    mmk__sys_getrandom(&r, sizeof r);
    return (key_t)(0x6d000000u | ((r & 0xfff) << 12) | (unsigned)(n & 0xfff));
}

static void run_both(const char *name, scenario_fn fn)
{
    struct trace tk, tm;
    memset(&tk, 0, sizeof tk);
    memset(&tm, 0, sizeof tm);
    fn(&kernel, kernel_key(1), &tk);
    fn(&mmkit, shm_test_key(1), &tm);
    for (int i = 0; i < tk.nids; i++)
        shmctl(tk.ids[i], IPC_RMID, NULL);
    for (int i = 0; i < tm.nids; i++)
        mmk_shmctl(tm.ids[i], IPC_RMID, NULL);
    cr_assert_eq(tk.n, tm.n, "%s: kernel made %d observations, mmkit %d", name, tk.n, tm.n);
    cr_assert_gt(tk.n, 0);
    for (int i = 0; i < tk.n; i++)
        cr_expect_eq(tk.value[i], tm.value[i], "%s: %s: kernel %ld, mmkit %ld", name,
                     tk.label[i], tk.value[i], tm.value[i]);
}

#define SCENARIO(name)                                                              \
    static void sc_##name(const struct backend *b, key_t key, struct trace *t);    \
    Test(shm_conformance, name, .init = shm_setup, .fini = shm_teardown)            \
    {                                                                               \
        run_both(#name, sc_##name);                                                 \
    }                                                                               \
    static void sc_##name(const struct backend *b, key_t key, struct trace *t)

SCENARIO(create_excl_exists_enoent)
{
    obs(t, "get absent", b->get(key, 4096, 0));
    int id = keep(t, b->get(key, 4096, IPC_CREAT | IPC_EXCL | 0600));
    obs(t, "create excl", ok_or_err(id));
    obs(t, "create excl again", b->get(key, 4096, IPC_CREAT | IPC_EXCL | 0600));
    obs(t, "creat same id", b->get(key, 4096, IPC_CREAT | 0600) == id);
    obs(t, "get same id", b->get(key, 0, 0) == id);
    obs(t, "get smaller", b->get(key, 100, 0) == id);
    obs(t, "get larger", b->get(key, 8192, 0));
    obs(t, "new size 0", b->get(key + 1, 0, IPC_CREAT | 0600));
}

SCENARIO(private_segments_are_distinct)
{
    int a = keep(t, b->get(IPC_PRIVATE, 4096, 0600));
    int c = keep(t, b->get(IPC_PRIVATE, 4096, IPC_CREAT | 0600));
    obs(t, "a ok", ok_or_err(a));
    obs(t, "c ok", ok_or_err(c));
    obs(t, "distinct", a != c);
    struct shmid_ds ds;
    obs(t, "stat", b->ctl(a, IPC_STAT, &ds));
    obs(t, "key", ds.shm_perm.__key);
}

SCENARIO(bad_ids_and_addresses)
{
    void *p;
    int x = 0;
    obs(t, "at bad id", b->at(-1, NULL, 0, &p));
    obs(t, "dt not attached", b->dt(&x));
    struct shmid_ds ds;
    obs(t, "stat bad id", b->ctl(-1, IPC_STAT, &ds));
    obs(t, "rmid bad id", b->ctl(-1, IPC_RMID, NULL));
    int id = keep(t, b->get(key, 4096, IPC_CREAT | 0600));
    obs(t, "unknown cmd", b->ctl(id, 12345, &ds));
    obs(t, "stat null", b->ctl(id, IPC_STAT, NULL));
    obs(t, "set null", b->ctl(id, IPC_SET, NULL));
}

SCENARIO(attach_write_stat_detach)
{
    int id = keep(t, b->get(key, 10000, IPC_CREAT | 0640));
    void *p = NULL;
    obs(t, "attach", b->at(id, NULL, 0, &p));
    obs(t, "aligned", ((uintptr_t)p & (SHMLBA - 1)) == 0);
    memset(p, 0xab, 10000);
    struct shmid_ds ds;
    obs(t, "stat", b->ctl(id, IPC_STAT, &ds));
    obs(t, "segsz", (long)ds.shm_segsz);
    obs(t, "nattch", (long)ds.shm_nattch);
    obs(t, "mode", ds.shm_perm.mode);
    obs(t, "uid", ds.shm_perm.uid == geteuid());
    obs(t, "cuid", ds.shm_perm.cuid == geteuid());
    obs(t, "gid", ds.shm_perm.gid == getegid());
    obs(t, "cpid", ds.shm_cpid == getpid());
    obs(t, "lpid", ds.shm_lpid == getpid());
    obs(t, "atime set", ds.shm_atime != 0);
    obs(t, "dtime unset", ds.shm_dtime == 0);
    obs(t, "ctime set", ds.shm_ctime != 0);
    void *q = NULL;
    obs(t, "second attach", b->at(id, NULL, 0, &q));
    obs(t, "same bytes", ((unsigned char *)q)[9999]);
    obs(t, "stat2", b->ctl(id, IPC_STAT, &ds));
    obs(t, "nattch2", (long)ds.shm_nattch);
    obs(t, "dt", b->dt(p));
    obs(t, "dt again", b->dt(p));
    obs(t, "dt q", b->dt(q));
    obs(t, "stat3", b->ctl(id, IPC_STAT, &ds));
    obs(t, "nattch3", (long)ds.shm_nattch);
    obs(t, "dtime set", ds.shm_dtime != 0);
}

SCENARIO(attach_addresses_rnd_remap)
{
    int id = keep(t, b->get(key, 8192, IPC_CREAT | 0600));
    size_t pg = (size_t)sysconf(_SC_PAGESIZE);
    char *area = mmap(NULL, 16 * pg, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    cr_assert_neq(area, MAP_FAILED);
    void *p = NULL;
    obs(t, "remap without addr", b->at(id, NULL, SHM_REMAP, &p));
    obs(t, "unaligned", b->at(id, area + 4 * pg + 1, 0, &p));
    obs(t, "overlap no remap", b->at(id, area + 4 * pg, 0, &p));
    obs(t, "rnd + remap", b->at(id, area + 4 * pg + 1, SHM_RND | SHM_REMAP, &p));
    obs(t, "rounded down", (char *)p == area + 4 * pg);
    *(volatile char *)p = 1; /* the remapped page is the segment's, writable */
    obs(t, "remap exact", b->at(id, area + 8 * pg, SHM_REMAP, &p));
    obs(t, "at exact", (char *)p == area + 8 * pg);
    obs(t, "dt1", b->dt(area + 4 * pg));
    obs(t, "dt2", b->dt(area + 8 * pg));
    munmap(area, 16 * pg);
}

SCENARIO(rmid_while_attached)
{
    int id = keep(t, b->get(key, 4096, IPC_CREAT | 0600));
    void *p = NULL;
    obs(t, "attach", b->at(id, NULL, 0, &p));
    strcpy(p, "still here");
    obs(t, "rmid", b->ctl(id, IPC_RMID, NULL));
    obs(t, "key gone", b->get(key, 0, 0));
    struct shmid_ds ds;
    obs(t, "stat removed", b->ctl(id, IPC_STAT, &ds));
    obs(t, "dest bit", (ds.shm_perm.mode & SHM_DEST) != 0);
    obs(t, "key private", ds.shm_perm.__key);
    obs(t, "nattch", (long)ds.shm_nattch);
    obs(t, "bytes", strcmp(p, "still here"));
    obs(t, "new key segment", ok_or_err(keep(t, b->get(key, 4096, IPC_CREAT | IPC_EXCL | 0600))));
    obs(t, "dt", b->dt(p));
    obs(t, "stat after last detach", b->ctl(id, IPC_STAT, &ds));
}

SCENARIO(ipc_set_mode_and_lock)
{
    int id = keep(t, b->get(key, 4096, IPC_CREAT | 0600));
    struct shmid_ds ds;
    obs(t, "stat", b->ctl(id, IPC_STAT, &ds));
    ds.shm_perm.mode = 0644;
    obs(t, "set", b->ctl(id, IPC_SET, &ds));
    obs(t, "stat2", b->ctl(id, IPC_STAT, &ds));
    obs(t, "mode", ds.shm_perm.mode & 0777);
    obs(t, "lock", b->ctl(id, SHM_LOCK, NULL));
    obs(t, "stat3", b->ctl(id, IPC_STAT, &ds));
    obs(t, "locked bit", (ds.shm_perm.mode & SHM_LOCKED) != 0);
    obs(t, "unlock", b->ctl(id, SHM_UNLOCK, NULL));
    obs(t, "stat4", b->ctl(id, IPC_STAT, &ds));
    obs(t, "unlocked", (ds.shm_perm.mode & SHM_LOCKED) != 0);
}

SCENARIO(info_and_stat_by_index)
{
    int id = keep(t, b->get(key, 3 * 4096, IPC_CREAT | 0600));
    struct shminfo si;
    int maxidx = b->ctl(0, IPC_INFO, (struct shmid_ds *)&si);
    obs(t, "ipc_info ok", maxidx >= 0);
    obs(t, "shmmni > 0", si.shmmni > 0);
    obs(t, "shmmin", (long)si.shmmin);
    struct shm_info in;
    int maxidx2 = b->ctl(0, SHM_INFO, (struct shmid_ds *)&in);
    obs(t, "shm_info ok", maxidx2 >= 0);
    obs(t, "used ids", in.used_ids >= 1);
    obs(t, "info null", b->ctl(0, IPC_INFO, NULL));
    int found = 0;
    for (int i = 0; i <= maxidx2 && !found; i++) {
        struct shmid_ds ds;
        int r = b->ctl(i, SHM_STAT, &ds);
        if (r == id) {
            found = 1;
            obs(t, "stat by index size", (long)ds.shm_segsz);
        }
    }
    obs(t, "found by index", found);
}

/* ---- beyond the kernel's behaviour: persistence and files --------------------- */

Test(shm, persists_after_every_process_exits, .init = shm_setup, .fini = shm_teardown)
{
    key_t key = shm_test_key(2);
    pid_t pid = fork();
    if (pid == 0) {
        int id = mmk_shmget(key, 100000, IPC_CREAT | 0600);
        void *p;
        if (id < 0 || mmk_shmat(id, NULL, 0, &p) != 0)
            _exit(1);
        for (int i = 0; i < 100000; i++)
            ((unsigned char *)p)[i] = (unsigned char)(i * 7);
        _exit(0); /* no shmdt: exit detaches */
    }
    cr_assert_eq(shm_wait_exit(pid), 0);
    pid = fork();
    if (pid == 0) {
        int id = mmk_shmget(key, 0, 0);
        void *p;
        if (id < 0 || mmk_shmat(id, NULL, SHM_RDONLY, &p) != 0)
            _exit(1);
        for (int i = 0; i < 100000; i++)
            if (((unsigned char *)p)[i] != (unsigned char)(i * 7))
                _exit(2);
        struct shmid_ds ds;
        if (mmk_shmctl(id, IPC_STAT, &ds) != 0 || ds.shm_nattch != 1 || ds.shm_segsz != 100000)
            _exit(3);
        _exit(0);
    }
    cr_assert_eq(shm_wait_exit(pid), 0);
    cr_assert_eq(shm_store_count("s."), 1);
    cr_assert_eq(shm_store_count("k."), 1);
    int id = mmk_shmget(key, 0, 0);
    cr_assert_geq(id, 0);
    cr_assert_eq(shm_nattch(id), 0);
    cr_assert_eq(mmk_shmctl(id, IPC_RMID, NULL), 0);
    cr_assert_eq(shm_store_count(""), 0, "the store is empty after IPC_RMID");
}

Test(shm, rdonly_write_faults, .init = shm_setup, .fini = shm_teardown, .signal = SIGSEGV)
{
    int id = mmk_shmget(IPC_PRIVATE, 4096, 0600);
    cr_assert_geq(id, 0);
    void *p;
    cr_assert_eq(mmk_shmat(id, NULL, SHM_RDONLY, &p), 0);
    cr_assert_eq(((volatile char *)p)[0], 0);
    /* The mapping may not be made writable either (as the kernel refuses). */
    cr_assert_eq(mprotect(p, 4096, PROT_READ | PROT_WRITE), -1);
    cr_assert_eq(errno, EACCES);
    mmk_shmctl(id, IPC_RMID, NULL);
    ((volatile char *)p)[0] = 1;
}

Test(shm, limits_are_settable_and_enforced, .init = shm_setup, .fini = shm_teardown)
{
    struct shminfo lim;
    cr_assert_eq(mmk_shm_limits(&lim), 0);
    cr_assert_eq(lim.shmmni, 4096);
    lim.shmmax = 8192;
    lim.shmmni = 2;
    cr_assert_eq(mmk_shm_set_limits(&lim), 0);
    struct shminfo got;
    cr_assert_geq(mmk_shmctl(0, IPC_INFO, (struct shmid_ds *)&got), 0);
    cr_assert_eq(got.shmmax, 8192);
    cr_assert_eq(got.shmmni, 2);
    cr_assert_eq(mmk_shmget(IPC_PRIVATE, 8193, 0600), -EINVAL);
    cr_assert_geq(mmk_shmget(IPC_PRIVATE, 8192, 0600), 0);
    cr_assert_geq(mmk_shmget(shm_test_key(3), 100, IPC_CREAT | 0600), 0);
    cr_assert_eq(mmk_shmget(shm_test_key(4), 100, IPC_CREAT | 0600), -ENOSPC);
    cr_assert_eq(shm_store_count("k."), 1, "a refused create leaves no key entry");
    cr_assert_eq(shm_store_count("s."), 2);
    lim.shmmni = 0;
    cr_assert_eq(mmk_shm_set_limits(&lim), -EINVAL);
    /* A limits file others may write is not trusted. */
    char path[PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/limits", shm_dir);
    cr_assert_eq(chmod(path, 0666), 0);
    cr_assert_eq(mmk_shm_limits(&got), 0);
    cr_assert_eq(got.shmmni, 4096);
}

Test(shm, disk_full_leaves_nothing, .init = shm_setup, .fini = shm_teardown)
{
    cr_assert_eq(mmk__sys_inject("fallocate", 1, ENOSPC), 0);
    cr_assert_eq(mmk_shmget(shm_test_key(5), 1 << 20, IPC_CREAT | 0600), -ENOSPC);
    cr_assert_eq(shm_store_count(""), 0, "nothing half-created");
    cr_assert_eq(mmk__sys_inject("ftruncate", 0, 0), 0);
    cr_assert_geq(mmk_shmget(shm_test_key(5), 1 << 20, IPC_CREAT | 0600), 0);
}

Test(shm, unsafe_directory_is_refused, .init = shm_setup, .fini = shm_teardown)
{
    char d[PATH_MAX + 32];
    snprintf(d, sizeof d, "%s/open", shm_parent);
    cr_assert_eq(mkdir(d, 0700), 0);
    cr_assert_eq(chmod(d, 0777), 0);
    cr_assert_eq(setenv("MMKIT_SHM_DIR", d, 1), 0);
    cr_assert_eq(mmk_shmget(IPC_PRIVATE, 4096, 0600), -EPERM);
    cr_assert_eq(chmod(d, 01777), 0);
    cr_assert_geq(mmk_shmget(IPC_PRIVATE, 4096, 0600), 0);
    snprintf(d, sizeof d, "%s/missing", shm_parent);
    cr_assert_eq(setenv("MMKIT_SHM_DIR", d, 1), 0);
    cr_assert_eq(mmk_shmget(IPC_PRIVATE, 4096, 0600), -ENOENT);
}

Test(shm, forged_entries_are_not_followed, .init = shm_setup, .fini = shm_teardown)
{
    char p[PATH_MAX + 64];
    /* A key entry pointing at a symlink to a file outside the store. */
    snprintf(p, sizeof p, "%s/s.7", shm_dir);
    cr_assert_eq(symlink("/etc/passwd", p), 0);
    snprintf(p, sizeof p, "%s/k.%08x", shm_dir, (unsigned)shm_test_key(6));
    cr_assert_eq(symlink("7", p), 0);
    cr_assert_eq(mmk_shmget(shm_test_key(6), 0, 0), -MMK_ECORRUPT);
    void *a;
    cr_assert_eq(mmk_shmat(7, NULL, SHM_RDONLY, &a), -MMK_ECORRUPT);
    /* A regular file without a valid header. */
    snprintf(p, sizeof p, "%s/s.8", shm_dir);
    int fd = open(p, O_RDWR | O_CREAT | O_EXCL, 0600);
    cr_assert_geq(fd, 0);
    cr_assert_eq(ftruncate(fd, 65536), 0);
    close(fd);
    cr_assert_eq(mmk_shmat(8, NULL, 0, &a), -MMK_ECORRUPT);
    struct shmid_ds ds;
    cr_assert_eq(mmk_shmctl(8, IPC_STAT, &ds), -MMK_ECORRUPT);
    /* A key entry that is a regular file, or points at a bad id. */
    snprintf(p, sizeof p, "%s/k.%08x", shm_dir, (unsigned)shm_test_key(7));
    fd = open(p, O_RDWR | O_CREAT | O_EXCL, 0600);
    cr_assert_geq(fd, 0);
    close(fd);
    cr_assert_eq(mmk_shmget(shm_test_key(7), 0, 0), -MMK_ECORRUPT);
    snprintf(p, sizeof p, "%s/k.%08x", shm_dir, (unsigned)shm_test_key(8));
    cr_assert_eq(symlink("../../etc/passwd", p), 0);
    cr_assert_eq(mmk_shmget(shm_test_key(8), 0, 0), -MMK_ECORRUPT);
    /* A key aliasing someone's segment: the header's id is checked. */
    int id = mmk_shmget(shm_test_key(9), 4096, IPC_CREAT | 0600);
    cr_assert_geq(id, 0);
    snprintf(p, sizeof p, "%s/s.%d", shm_dir, id);
    char alias[PATH_MAX + 64];
    snprintf(alias, sizeof alias, "%s/s.%d", shm_dir, id == 9 ? 10 : 9);
    cr_assert_eq(link(p, alias), 0);
    cr_assert_eq(mmk_shmat(id == 9 ? 10 : 9, NULL, 0, &a), -MMK_ECORRUPT);
    /* A segment file a writer truncated is refused, not mapped into SIGBUS. */
    int tid = mmk_shmget(IPC_PRIVATE, 65536, 0600);
    cr_assert_geq(tid, 0);
    snprintf(p, sizeof p, "%s/s.%d", shm_dir, tid);
    cr_assert_eq(truncate(p, 8192), 0);
    cr_assert_eq(mmk_shmat(tid, NULL, 0, &a), -MMK_ECORRUPT);
    cr_assert_eq(mmk_shmctl(tid, IPC_RMID, NULL), 0, "a damaged segment can still be removed");
}

Test(shm, kernel_table_untouched, .init = shm_setup, .fini = shm_teardown)
{
    struct shm_info before, after;
    int r = shmctl(0, SHM_INFO, (struct shmid_ds *)&before);
    cr_assert_geq(r, 0);
    int id = mmk_shmget(shm_test_key(10), 4096, IPC_CREAT | 0600);
    void *p;
    cr_assert_eq(mmk_shmat(id, NULL, 0, &p), 0);
    cr_assert_geq(shmctl(0, SHM_INFO, (struct shmid_ds *)&after), 0);
    /* Other programs may create kernel segments meanwhile; ours must not be
     * among them: no kernel segment with our key. */
    cr_assert_eq(shmget(shm_test_key(10), 0, 0), -1);
    cr_assert_eq(errno, ENOENT);
    cr_assert_eq(mmk_shmdt(p), 0);
}
