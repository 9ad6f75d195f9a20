/* helper_shm_client.c - an ordinary SysV shm client, compiled against
 * <sys/shm.h> and knowing nothing of mmkit: tests/cli/shm.sh runs it under
 * LD_PRELOAD=libmmkit-sysv.so.
 *
 *   create KEY SIZE TEXT    shmget(IPC_CREAT|0600) + shmat + copy TEXT + shmdt
 *   read KEY                print the segment's string (read-only attach)
 *   syscall-create KEY SIZE TEXT, syscall-read KEY   the same via syscall(2)
 *   exec-read KEY           fork, and exec this program with "read KEY"
 *   nattch KEY              print shm_nattch
 *   rm KEY                  IPC_RMID
 *   getpid                  syscall(SYS_getpid) == getpid() (pass-through)
 * Exit 0 on success; on failure print the failing call's errno and exit 1. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/shm.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static int fail(const char *what)
{
    fprintf(stderr, "helper_shm_client: %s: %s\n", what, strerror(errno));
    return 1;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return 2;
    const char *cmd = argv[1];
    key_t key = argc > 2 ? (key_t)strtoul(argv[2], NULL, 0) : 0;
    if (!strcmp(cmd, "create") && argc == 5) {
        int id = shmget(key, strtoul(argv[3], NULL, 0), IPC_CREAT | 0600);
        if (id < 0)
            return fail("shmget");
        char *p = shmat(id, NULL, 0);
        if (p == (void *)-1)
            return fail("shmat");
        strcpy(p, argv[4]);
        if (shmdt(p) != 0)
            return fail("shmdt");
        printf("%d\n", id);
        return 0;
    }
    if (!strcmp(cmd, "read") && argc == 3) {
        int id = shmget(key, 0, 0);
        if (id < 0)
            return fail("shmget");
        char *p = shmat(id, NULL, SHM_RDONLY);
        if (p == (void *)-1)
            return fail("shmat");
        printf("%s\n", p);
        return shmdt(p) == 0 ? 0 : fail("shmdt");
    }
    if (!strcmp(cmd, "syscall-create") && argc == 5) {
        long id = syscall(SYS_shmget, key, strtoul(argv[3], NULL, 0), IPC_CREAT | 0600);
        if (id < 0)
            return fail("SYS_shmget");
        long p = syscall(SYS_shmat, id, 0L, 0L);
        if (p == -1)
            return fail("SYS_shmat");
        strcpy((char *)p, argv[4]);
        if (syscall(SYS_shmdt, p) != 0)
            return fail("SYS_shmdt");
        printf("%ld\n", id);
        return 0;
    }
    if (!strcmp(cmd, "syscall-read") && argc == 3) {
        long id = syscall(SYS_shmget, key, 0L, 0L);
        if (id < 0)
            return fail("SYS_shmget");
        struct shmid_ds ds;
        if (syscall(SYS_shmctl, id, IPC_STAT, &ds) != 0)
            return fail("SYS_shmctl");
        long p = syscall(SYS_shmat, id, 0L, (long)SHM_RDONLY);
        if (p == -1)
            return fail("SYS_shmat");
        printf("%s %zu\n", (char *)p, (size_t)ds.shm_segsz);
        return syscall(SYS_shmdt, p) == 0 ? 0 : fail("SYS_shmdt");
    }
    if (!strcmp(cmd, "exec-read") && argc == 3) {
        pid_t pid = fork();
        if (pid == 0) {
            execl("/proc/self/exe", argv[0], "read", argv[2], (char *)NULL);
            _exit(127);
        }
        int st;
        waitpid(pid, &st, 0);
        return WIFEXITED(st) ? WEXITSTATUS(st) : 1;
    }
    if (!strcmp(cmd, "nattch") && argc == 3) {
        struct shmid_ds ds;
        int id = shmget(key, 0, 0);
        if (id < 0 || shmctl(id, IPC_STAT, &ds) != 0)
            return fail("shmctl");
        printf("%lu\n", (unsigned long)ds.shm_nattch);
        return 0;
    }
    if (!strcmp(cmd, "rm") && argc == 3) {
        int id = shmget(key, 0, 0);
        if (id < 0 || shmctl(id, IPC_RMID, NULL) != 0)
            return fail("IPC_RMID");
        return 0;
    }
    if (!strcmp(cmd, "getpid")) {
        long r = syscall(SYS_getpid);
        return r == (long)getpid() ? 0 : fail("SYS_getpid");
    }
    return 2;
}
