/* test_shm_users.c - one store, two users: root and uid nobody.  What the
 * segment's mode denies, the other user can do neither through mmkit nor
 * by going at the store's files directly.  Needs root (to become nobody):
 * skipped otherwise. */
#include "shm_helpers.h"

#include <grp.h>
#include <pwd.h>

static uid_t nobody_uid;
static gid_t nobody_gid;

static void users_setup(void)
{
    if (geteuid() != 0)
        cr_skip_test("needs root to switch to uid nobody");
    struct passwd *pw = getpwnam("nobody");
    if (!pw)
        cr_skip_test("no user nobody");
    nobody_uid = pw->pw_uid;
    nobody_gid = pw->pw_gid;
    shm_setup();
}

static void become_nobody(void)
{
    if (setgroups(0, NULL) != 0 || setresgid(nobody_gid, nobody_gid, nobody_gid) != 0 ||
        setresuid(nobody_uid, nobody_uid, nobody_uid) != 0)
        _exit(100);
}

/* Run fn as nobody in a child; returns its exit status (0: all checks held,
 * else the number of the failed check). */
static int as_nobody(int (*fn)(void *), void *arg)
{
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        become_nobody();
        _exit(fn(arg));
    }
    return shm_wait_exit(pid);
}

struct ids {
    key_t key_private, key_readable, key_shared;
    int private_id, readable_id, shared_id;
};

#define CHECK(n, cond) do { if (!(cond)) return (n); } while (0)

static int nobody_attacks(void *arg)
{
    struct ids *s = arg;
    void *p;
    struct shmid_ds ds;
    char path[PATH_MAX + 64];
    /* 0600 root segment: the key resolves (no access asked), nothing else. */
    CHECK(1, mmk_shmget(s->key_private, 0, 0) == s->private_id);
    CHECK(2, mmk_shmget(s->key_private, 0, 0400) == -EACCES);
    CHECK(3, mmk_shmat(s->private_id, NULL, SHM_RDONLY, &p) == -EACCES);
    CHECK(4, mmk_shmctl(s->private_id, IPC_STAT, &ds) == -EACCES);
    CHECK(5, mmk_shmctl(s->private_id, IPC_RMID, NULL) == -EPERM);
    memset(&ds, 0, sizeof ds);
    ds.shm_perm.uid = nobody_uid;
    ds.shm_perm.mode = 0666;
    CHECK(6, mmk_shmctl(s->private_id, IPC_SET, &ds) == -EPERM);
    CHECK(7, mmk_shmctl(s->private_id, SHM_LOCK, NULL) == -EPERM);
    /* 0644: read-only attach works and reads root's bytes; writing does not. */
    CHECK(10, mmk_shmat(s->readable_id, NULL, 0, &p) == -EACCES);
    CHECK(11, mmk_shmat(s->readable_id, NULL, SHM_RDONLY, &p) == 0);
    CHECK(12, strcmp(p, "root's bytes") == 0);
    CHECK(13, mprotect(p, 4096, PROT_READ | PROT_WRITE) == -1);
    CHECK(14, mmk_shmctl(s->readable_id, IPC_STAT, &ds) == 0 && ds.shm_nattch == 1);
    CHECK(15, mmk_shmdt(p) == 0);
    /* Going at the files: no unlink, rename, open or replacement. */
    snprintf(path, sizeof path, "%s/s.%d", shm_dir, s->private_id);
    CHECK(20, unlink(path) == -1 && errno == EPERM);
    CHECK(21, open(path, O_RDONLY) == -1 && errno == EACCES);
    char other[PATH_MAX + 64];
    snprintf(other, sizeof other, "%s/mine", shm_dir);
    CHECK(22, rename(path, other) == -1 && errno == EPERM);
    snprintf(path, sizeof path, "%s/k.%08x", shm_dir, (unsigned)s->key_private);
    CHECK(23, unlink(path) == -1 && errno == EPERM);
    snprintf(path, sizeof path, "%s/s.%d", shm_dir, s->readable_id);
    CHECK(24, open(path, O_RDWR) == -1 && errno == EACCES);
    CHECK(25, truncate(path, 0) == -1 && errno == EACCES);
    /* A forged key entry of nobody's pointing at root's segment. */
    snprintf(path, sizeof path, "%s/k.%08x", shm_dir, (unsigned)(s->key_private + 100));
    snprintf(other, sizeof other, "%d", s->private_id);
    CHECK(26, symlink(other, path) == 0);
    CHECK(27, mmk_shmget(s->key_private + 100, 0, 0) == -MMK_ECORRUPT);
    /* The limits are root's. */
    struct shminfo lim;
    CHECK(28, mmk_shm_limits(&lim) == 0);
    lim.shmmni = 1;
    CHECK(29, mmk_shm_set_limits(&lim) == -EPERM);
    /* 0666: nobody writes, and makes its own segment. */
    CHECK(30, mmk_shmat(s->shared_id, NULL, 0, &p) == 0);
    strcpy(p, "nobody was here");
    CHECK(31, mmk_shmdt(p) == 0);
    int mine = mmk_shmget(s->key_shared + 1, 4096, IPC_CREAT | IPC_EXCL | 0600);
    CHECK(32, mine >= 0);
    return 0;
}

Test(shm_users, root_and_nobody_share_one_store, .init = users_setup, .fini = shm_teardown)
{
    struct ids s;
    s.key_private = shm_test_key(1);
    s.key_readable = shm_test_key(2);
    s.key_shared = shm_test_key(3);
    s.private_id = mmk_shmget(s.key_private, 4096, IPC_CREAT | 0600);
    s.readable_id = mmk_shmget(s.key_readable, 4096, IPC_CREAT | 0644);
    s.shared_id = mmk_shmget(s.key_shared, 4096, IPC_CREAT | 0666);
    cr_assert(s.private_id >= 0 && s.readable_id >= 0 && s.shared_id >= 0);
    void *p;
    cr_assert_eq(mmk_shmat(s.readable_id, NULL, 0, &p), 0);
    strcpy(p, "root's bytes");
    cr_assert_eq(mmk_shmdt(p), 0);

    int r = as_nobody(nobody_attacks, &s);
    cr_assert_eq(r, 0, "check %d failed as nobody", r);

    /* Root's view after the attacks: everything still there and intact. */
    cr_assert_eq(mmk_shmget(s.key_private, 0, 0), s.private_id);
    cr_assert_eq(mmk_shmget(s.key_private + 100, 0, 0), -MMK_ECORRUPT);
    cr_assert_eq(mmk_shmat(s.shared_id, NULL, SHM_RDONLY, &p), 0);
    cr_assert_str_eq(p, "nobody was here");
    int mine = mmk_shmget(s.key_shared + 1, 0, 0);
    cr_assert_geq(mine, 0);
    struct shmid_ds ds;
    cr_assert_eq(mmk_shmctl(mine, IPC_STAT, &ds), 0);
    cr_assert_eq(ds.shm_perm.uid, nobody_uid);
    cr_assert_eq(ds.shm_perm.cuid, nobody_uid);
    cr_assert_eq(ds.shm_perm.mode & 0777, 0600);
    /* Root may take it over, like CAP_SYS_ADMIN may: uid and key follow. */
    ds.shm_perm.uid = 0;
    cr_assert_eq(mmk_shmctl(mine, IPC_SET, &ds), 0);
    cr_assert_eq(mmk_shmget(s.key_shared + 1, 0, 0), mine);
    cr_assert_eq(mmk_shmctl(mine, IPC_STAT, &ds), 0);
    cr_assert_eq(ds.shm_perm.uid, 0);
    cr_assert_eq(mmk_shmctl(mine, IPC_RMID, NULL), 0);
}

static int nobody_holds(void *arg)
{
    int *fds = arg;
    void *p;
    close(fds[0]);
    char c = mmk_shmat(fds[2], NULL, SHM_RDONLY, &p) == 0 ? 'y' : 'n';
    if (write(fds[1], &c, 1) != 1)
        return 1;
    pause();
    return 0;
}

Test(shm_users, attach_counts_across_users, .init = users_setup, .fini = shm_teardown)
{
    int id = mmk_shmget(shm_test_key(4), 4096, IPC_CREAT | 0644);
    cr_assert_geq(id, 0);
    int fds[3];
    cr_assert_eq(pipe(fds), 0);
    fds[2] = id;
    pid_t pid = fork();
    if (pid == 0) {
        become_nobody();
        _exit(nobody_holds(fds));
    }
    close(fds[1]);
    char c;
    cr_assert_eq(read(fds[0], &c, 1), 1);
    cr_assert_eq(c, 'y');
    cr_assert_eq(shm_nattch(id), 1, "root sees nobody's attach");
    kill(pid, SIGKILL);
    shm_wait_exit(pid);
    cr_assert_eq(shm_nattch(id), 0, "and sees it go when nobody is killed");
}

static int nobody_lists(void *arg)
{
    int *id = arg;
    struct shmid_ds ds;
    struct shm_info info;
    CHECK(1, mmk_shmctl(0, SHM_INFO, (struct shmid_ds *)&info) >= *id);
    CHECK(2, info.used_ids == 1);
    CHECK(3, mmk_shmctl(*id, SHM_STAT, &ds) == -EACCES);
    CHECK(4, mmk_shmctl(*id, SHM_STAT_ANY, &ds) == *id);
    CHECK(5, ds.shm_perm.uid == 0 && (ds.shm_perm.mode & 0777) == 0600);
    CHECK(6, ds.shm_segsz == 5000);
    return 0;
}

Test(shm_users, listing_others_segments, .init = users_setup, .fini = shm_teardown)
{
    int id = mmk_shmget(shm_test_key(5), 5000, IPC_CREAT | 0600);
    cr_assert_geq(id, 0);
    int r = as_nobody(nobody_lists, &id);
    cr_assert_eq(r, 0, "check %d failed as nobody", r);
}

/* ---- the same permission scenario against the kernel and mmkit, as nobody ---- */

struct perm_backend {
    int (*get)(key_t, size_t, int);
    int (*at)(int, int);
    int (*ctl)(int, int, struct shmid_ds *);
};

static int k_get(key_t k, size_t s, int f) { int r = shmget(k, s, f); return r < 0 ? -errno : r; }
static int k_ctl(int id, int c, struct shmid_ds *b) { int r = shmctl(id, c, b); return r < 0 ? -errno : r; }
static int k_at(int id, int f)
{
    void *p = shmat(id, NULL, f);
    return p == (void *)-1 ? -errno : shmdt(p);
}
static int m_at(int id, int f)
{
    void *p;
    int r = mmk_shmat(id, NULL, f, &p);
    return r < 0 ? r : mmk_shmdt(p);
}

static const struct perm_backend pk = { k_get, k_at, k_ctl };
static const struct perm_backend pm = { mmk_shmget, m_at, mmk_shmctl };

enum { NOBS = 16 };

/* As nobody: what may be done to root's 0600 and 0644 segments. */
static void perm_scenario(const struct perm_backend *b, key_t k600, key_t k644, int *o)
{
    struct shmid_ds ds;
    int id600 = b->get(k600, 0, 0), id644 = b->get(k644, 0, 0);
    int n = 0;
    o[n++] = id600 >= 0;
    o[n++] = id644 >= 0;
    o[n++] = b->get(k600, 0, 0400);
    o[n++] = b->get(k644, 0, 0400) == id644;
    o[n++] = b->get(k644, 0, 0600);
    o[n++] = b->get(k644, 0, IPC_CREAT | IPC_EXCL | 0600);
    o[n++] = b->at(id600, SHM_RDONLY);
    o[n++] = b->at(id644, 0);
    o[n++] = b->at(id644, SHM_RDONLY);
    o[n++] = b->ctl(id600, IPC_STAT, &ds);
    o[n++] = b->ctl(id644, IPC_STAT, &ds);
    o[n++] = b->ctl(id644, IPC_RMID, NULL);
    memset(&ds, 0, sizeof ds);
    ds.shm_perm.mode = 0666;
    o[n++] = b->ctl(id644, IPC_SET, &ds);
    o[n++] = b->ctl(id644, SHM_LOCK, NULL);
    o[n++] = b->ctl(id600, SHM_STAT, &ds);
    o[n++] = b->ctl(id600, SHM_STAT_ANY, &ds) == id600;
}

static void perm_run(const struct perm_backend *b, key_t k600, key_t k644, int *o)
{
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    pid_t pid = fork();
    if (pid == 0) {
        become_nobody();
        int obs[NOBS];
        perm_scenario(b, k600, k644, obs);
        _exit(write(fds[1], obs, sizeof obs) == sizeof obs ? 0 : 1);
    }
    cr_assert_eq(read(fds[0], o, sizeof(int) * NOBS), (ssize_t)(sizeof(int) * NOBS));
    cr_assert_eq(shm_wait_exit(pid), 0);
    close(fds[0]);
    close(fds[1]);
}

Test(shm_users, permissions_match_the_kernel, .init = users_setup, .fini = shm_teardown)
{
    unsigned r = (unsigned)getpid() << 4;
    key_t kk600 = (key_t)(0x6e000000u | (r & 0xfffff0)), kk644 = kk600 + 1;
    key_t mk600 = shm_test_key(6), mk644 = shm_test_key(7);
    int kid[2] = { shmget(kk600, 4096, IPC_CREAT | 0600), shmget(kk644, 4096, IPC_CREAT | 0644) };
    int mid[2] = { mmk_shmget(mk600, 4096, IPC_CREAT | 0600),
                   mmk_shmget(mk644, 4096, IPC_CREAT | 0644) };
    cr_assert(kid[0] >= 0 && kid[1] >= 0 && mid[0] >= 0 && mid[1] >= 0);
    int ko[NOBS], mo[NOBS];
    perm_run(&pk, kk600, kk644, ko);
    perm_run(&pm, mk600, mk644, mo);
    shmctl(kid[0], IPC_RMID, NULL);
    shmctl(kid[1], IPC_RMID, NULL);
    for (int i = 0; i < NOBS; i++)
        cr_log_info("observation %d: kernel %d, mmkit %d", i, ko[i], mo[i]);
    for (int i = 0; i < NOBS; i++)
        cr_expect_eq(ko[i], mo[i], "observation %d: kernel %d, mmkit %d", i, ko[i], mo[i]);
    /* And the checks meant something: nobody was refused somewhere. */
    cr_assert_eq(mo[2], -EACCES);
    cr_assert_eq(mo[11], -EPERM);
}
