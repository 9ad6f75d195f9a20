/* test_shm_crash.c - attach counts follow the kernel's rules and survive
 * crashes (fork inherits, exit and exec detach, kill -9 leaves no count
 * behind), removed segments go when their last attacher dies, and racing
 * creators agree; a store hit by kill -9 in the middle of updates stays
 * consistent. */
#include "shm_helpers.h"

#include <dirent.h>
#include <time.h>

/* A child that attaches id, reports on the pipe, then waits to be killed. */
static pid_t attach_and_wait(int id, int flg)
{
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        close(fds[0]);
        void *p;
        char c = mmk_shmat(id, NULL, flg, &p) == 0 ? 'y' : 'n';
        if (write(fds[1], &c, 1) != 1)
            _exit(1);
        for (;;)
            pause();
    }
    close(fds[1]);
    char c = 0;
    cr_assert_eq(read(fds[0], &c, 1), 1);
    close(fds[0]);
    cr_assert_eq(c, 'y');
    return pid;
}

Test(shm_crash, kill9_leaves_no_attach_behind, .init = shm_setup, .fini = shm_teardown)
{
    int id = mmk_shmget(shm_test_key(1), 4096, IPC_CREAT | 0600);
    cr_assert_geq(id, 0);
    pid_t a = attach_and_wait(id, 0);
    pid_t b = attach_and_wait(id, SHM_RDONLY);
    cr_assert_eq(shm_nattch(id), 2);
    kill(a, SIGKILL);
    cr_assert_eq(shm_wait_exit(a), 128 + SIGKILL);
    cr_assert_eq(shm_nattch(id), 1);
    kill(b, SIGKILL);
    shm_wait_exit(b);
    cr_assert_eq(shm_nattch(id), 0);
}

Test(shm_crash, removed_segment_goes_with_its_killed_attacher, .init = shm_setup,
     .fini = shm_teardown)
{
    key_t key = shm_test_key(2);
    int id = mmk_shmget(key, 1 << 20, IPC_CREAT | 0600);
    pid_t a = attach_and_wait(id, 0);
    cr_assert_eq(mmk_shmctl(id, IPC_RMID, NULL), 0);
    cr_assert_eq(mmk_shmget(key, 0, 0), -ENOENT, "the key stops resolving at once");
    cr_assert_eq(shm_store_count(""), 0, "no name left: the memory goes with the last mapping");
    /* The file lives on only inside the attacher: its /proc maps show it
     * deleted, and it is gone once the attacher is. */
    char cmd[PATH_MAX + 128];
    snprintf(cmd, sizeof cmd, "grep -q '%s/s.%d (deleted)' /proc/%d/maps", shm_dir, id, (int)a);
    cr_assert_eq(system(cmd), 0);
    kill(a, SIGKILL);
    shm_wait_exit(a);
    struct shmid_ds ds;
    cr_assert_eq(mmk_shmctl(id, IPC_STAT, &ds), -EINVAL);
}

Test(shm_crash, fork_inherits_attach, .init = shm_setup, .fini = shm_teardown)
{
    int id = mmk_shmget(IPC_PRIVATE, 4096, 0600);
    void *p;
    cr_assert_eq(mmk_shmat(id, NULL, 0, &p), 0);
    void *q;
    cr_assert_eq(mmk_shmat(id, NULL, 0, &q), 0);
    cr_assert_eq(shm_nattch(id), 2);
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    pid_t pid = fork();
    if (pid == 0) {
        struct shmid_ds ds;
        int r = mmk_shmctl(id, IPC_STAT, &ds);
        unsigned long n = r == 0 ? ds.shm_nattch : 999;
        /* The child detaches one of its two inherited attaches. */
        r = mmk_shmdt(q);
        unsigned long n2 = mmk_shmctl(id, IPC_STAT, &ds) == 0 ? ds.shm_nattch : 999;
        strcpy(p, "from child");
        unsigned long msg[3] = { n, n2, (unsigned long)r };
        if (write(fds[1], msg, sizeof msg) != sizeof msg)
            _exit(1);
        _exit(0);
    }
    unsigned long msg[3];
    cr_assert_eq(read(fds[0], msg, sizeof msg), (ssize_t)sizeof msg);
    cr_assert_eq(msg[0], 4, "two attaches here, two inherited");
    cr_assert_eq(msg[2], 0);
    cr_assert_eq(msg[1], 3);
    cr_assert_eq(shm_wait_exit(pid), 0);
    cr_assert_eq(shm_nattch(id), 2, "the child's exit detached its attaches");
    cr_assert_str_eq(p, "from child");
    mmk_shmctl(id, IPC_RMID, NULL);
}

Test(shm_crash, exec_detaches, .init = shm_setup, .fini = shm_teardown)
{
    int id = mmk_shmget(IPC_PRIVATE, 4096, 0600);
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    pid_t pid = fork();
    if (pid == 0) {
        close(fds[0]);
        void *p;
        if (mmk_shmat(id, NULL, 0, &p) != 0)
            _exit(1);
        /* exec a program that holds the pipe open until killed. */
        dup2(fds[1], 3);
        execl("/bin/sh", "sh", "-c", "echo x >&3; exec sleep 30", (char *)NULL);
        _exit(1);
    }
    close(fds[1]);
    char c;
    cr_assert_eq(read(fds[0], &c, 1), 1);
    cr_assert_eq(shm_nattch(id), 0, "after exec the process is detached");
    kill(pid, SIGKILL);
    shm_wait_exit(pid);
    mmk_shmctl(id, IPC_RMID, NULL);
}

/* Eight processes race one key; each reports its result on the pipe. */
static void race(key_t key, int flg, int *results)
{
    int go[2], res[2];
    cr_assert_eq(pipe(go), 0);
    cr_assert_eq(pipe(res), 0);
    pid_t pids[8];
    for (int i = 0; i < 8; i++) {
        pids[i] = fork();
        if (pids[i] == 0) {
            close(go[1]);
            char c;
            if (read(go[0], &c, 1) != 0) /* wait until the pipe closes */
                _exit(1);
            int r = mmk_shmget(key, 4096, flg);
            if (write(res[1], &r, sizeof r) != sizeof r)
                _exit(1);
            _exit(0);
        }
    }
    close(go[0]);
    close(go[1]);
    for (int i = 0; i < 8; i++)
        cr_assert_eq(read(res[0], &results[i], sizeof results[i]), (ssize_t)sizeof results[i]);
    for (int i = 0; i < 8; i++)
        cr_assert_eq(shm_wait_exit(pids[i]), 0);
    close(res[0]);
    close(res[1]);
}

Test(shm_crash, racing_excl_creators_one_wins, .init = shm_setup, .fini = shm_teardown)
{
    for (int round = 0; round < 5; round++) {
        key_t key = shm_test_key(10 + round);
        int r[8], wins = 0, exists = 0;
        race(key, IPC_CREAT | IPC_EXCL | 0600, r);
        for (int i = 0; i < 8; i++) {
            if (r[i] >= 0)
                wins++;
            else if (r[i] == -EEXIST)
                exists++;
            else
                cr_assert_fail("unexpected result %d", r[i]);
        }
        cr_assert_eq(wins, 1);
        cr_assert_eq(exists, 7);
    }
    cr_assert_eq(shm_store_count("s."), 5, "losers left no files");
}

Test(shm_crash, racing_creators_share_one_id, .init = shm_setup, .fini = shm_teardown)
{
    for (int round = 0; round < 5; round++) {
        key_t key = shm_test_key(20 + round);
        int r[8];
        race(key, IPC_CREAT | 0600, r);
        cr_assert_geq(r[0], 0);
        for (int i = 1; i < 8; i++)
            cr_assert_eq(r[i], r[0], "process %d got %d, process 0 got %d", i, r[i], r[0]);
    }
    cr_assert_eq(shm_store_count("s."), 5);
}

/* Every key entry points at a segment whose header names that key, and
 * every segment can be stated. */
static void check_store_consistent(void)
{
    DIR *d = opendir(shm_dir);
    cr_assert_not_null(d);
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        if (!strncmp(e->d_name, "k.", 2)) {
            unsigned key;
            cr_assert_eq(sscanf(e->d_name, "k.%x", &key), 1);
            int id = mmk_shmget((key_t)key, 0, 0);
            cr_assert_geq(id, 0, "key entry %s resolves: %s", e->d_name, mmk_strerror(id));
            struct shmid_ds ds;
            cr_assert_eq(mmk_shmctl(id, IPC_STAT, &ds), 0);
            cr_assert_eq((unsigned)ds.shm_perm.__key, key);
        } else if (!strncmp(e->d_name, "s.", 2)) {
            int id = atoi(e->d_name + 2);
            struct shmid_ds ds;
            int r = mmk_shmctl(id, IPC_STAT, &ds);
            cr_assert_eq(r, 0, "segment %s: %s", e->d_name, mmk_strerror(r));
        } else {
            cr_assert_fail("stray entry %s (a temporary name left behind)", e->d_name);
        }
    }
    closedir(d);
}

Test(shm_crash, kill9_during_updates_keeps_store_consistent, .init = shm_setup,
     .fini = shm_teardown)
{
    struct timespec seed;
    clock_gettime(CLOCK_MONOTONIC, &seed);
    srand((unsigned)seed.tv_nsec);
    for (int round = 0; round < 40; round++) {
        pid_t pid = fork();
        if (pid == 0) {
            for (int i = 0;; i++) {
                key_t key = shm_test_key(i % 4);
                int id = mmk_shmget(key, 4096 * (1 + i % 3), IPC_CREAT | 0600);
                void *p;
                if (id >= 0 && mmk_shmat(id, NULL, 0, &p) == 0) {
                    struct shmid_ds ds;
                    mmk_shmctl(id, IPC_STAT, &ds);
                    ds.shm_perm.mode = 0600 | (i & 1 ? 040 : 0);
                    mmk_shmctl(id, IPC_SET, &ds);
                    mmk_shmdt(p);
                }
                if (id >= 0 && i % 2)
                    mmk_shmctl(id, IPC_RMID, NULL);
            }
        }
        usleep((useconds_t)(rand() % 3000));
        kill(pid, SIGKILL);
        shm_wait_exit(pid);
        check_store_consistent();
    }
    /* Nothing killed mid-way stays attached. */
    for (int k = 0; k < 4; k++) {
        int id = mmk_shmget(shm_test_key(k), 0, 0);
        if (id >= 0)
            cr_assert_eq(shm_nattch(id), 0);
    }
}

/* ---- threads ------------------------------------------------------------------ */

#include <pthread.h>

static int thread_id;

static void *attach_loop(void *arg)
{
    long bad = 0;
    for (int i = 0; i < 200; i++) {
        void *p;
        if (mmk_shmat(thread_id, NULL, (i & 1) ? SHM_RDONLY : 0, &p) != 0) {
            bad++;
            continue;
        }
        if (!(i & 1))
            ((volatile char *)p)[(long)arg] = 1;
        struct shmid_ds ds;
        if (mmk_shmctl(thread_id, IPC_STAT, &ds) != 0 || ds.shm_nattch < 1 || ds.shm_nattch > 4)
            bad++;
        if (mmk_shmdt(p) != 0)
            bad++;
    }
    return (void *)bad;
}

Test(shm_crash, threads_attach_and_detach_at_once, .init = shm_setup, .fini = shm_teardown)
{
    thread_id = mmk_shmget(IPC_PRIVATE, 4096, 0600);
    cr_assert_geq(thread_id, 0);
    pthread_t t[4];
    for (long i = 0; i < 4; i++)
        cr_assert_eq(pthread_create(&t[i], NULL, attach_loop, (void *)i), 0);
    for (int i = 0; i < 4; i++) {
        void *bad;
        pthread_join(t[i], &bad);
        cr_assert_eq((long)bad, 0, "thread %d: %ld failed calls or counts", i, (long)bad);
    }
    cr_assert_eq(shm_nattch(thread_id), 0);
    void *p;
    cr_assert_eq(mmk_shmat(thread_id, NULL, SHM_RDONLY, &p), 0);
    for (int i = 0; i < 4; i++)
        cr_assert_eq(((char *)p)[i], 1);
    mmk_shmctl(thread_id, IPC_RMID, NULL);
}
