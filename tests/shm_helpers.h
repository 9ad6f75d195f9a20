/* shm_helpers.h - fixtures shared by the SysV shm tests: a fresh store
 * directory per test (sticky, world-writable, under a searchable parent so
 * uid nobody can reach it), and small helpers around fork. */
#ifndef MMK_TEST_SHM_HELPERS_H
#define MMK_TEST_SHM_HELPERS_H

#include "mmkit.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char shm_parent[PATH_MAX];
static char shm_dir[PATH_MAX + 16];

__attribute__((unused)) static void shm_setup(void)
{
    const char *t = getenv("TMPDIR");
    snprintf(shm_parent, sizeof shm_parent, "%s/mmk-shm-test-XXXXXX", t && *t ? t : "/tmp");
    cr_assert_not_null(mkdtemp(shm_parent));
    cr_assert_eq(chmod(shm_parent, 0755), 0);
    snprintf(shm_dir, sizeof shm_dir, "%s/store", shm_parent);
    cr_assert_eq(mkdir(shm_dir, 0700), 0);
    cr_assert_eq(chmod(shm_dir, 01777), 0);
    cr_assert_eq(setenv("MMKIT_SHM_DIR", shm_dir, 1), 0);
}

__attribute__((unused)) static void shm_teardown(void)
{
    char cmd[PATH_MAX + 32];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", shm_parent);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", shm_parent);
}

/* A key no other test run uses. */
__attribute__((unused)) static key_t shm_test_key(int n)
{
    return (key_t)(0x4d000000 | ((getpid() & 0xffff) << 8) | (n & 0xff));
}

/* Number of entries in the store whose name starts with prefix. */
__attribute__((unused)) static int shm_store_count(const char *prefix)
{
    char cmd[PATH_MAX + 64];
    snprintf(cmd, sizeof cmd, "ls -A '%s' | grep -c '^%s' || true", shm_dir, prefix);
    FILE *f = popen(cmd, "r");
    cr_assert_not_null(f);
    int n = -1;
    if (fscanf(f, "%d", &n) != 1)
        n = -1;
    pclose(f);
    return n;
}

__attribute__((unused)) static int shm_wait_exit(pid_t pid)
{
    int st;
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

__attribute__((unused)) static unsigned long shm_nattch(int id)
{
    struct shmid_ds ds;
    int r = mmk_shmctl(id, IPC_STAT, &ds);
    cr_assert_eq(r, 0, "IPC_STAT %d: %s", id, mmk_strerror(r));
    return (unsigned long)ds.shm_nattch;
}

#endif
