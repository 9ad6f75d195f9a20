/* demo_shm.c - the SysV chapter of `mmkit demo`: two processes share a
 * segment by key; after both exit the segment is still there with its bytes;
 * `mmkit ipcs` lists it and `mmkit ipcrm` removes it. */
#include "cli.h"
#include "mmkit.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define DEMO_KEY ((key_t)0x00d3e40)

/* Run fn in a child process; 0 if it exited with 0. */
static int in_child(int (*fn)(void))
{
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0)
        _exit(fn());
    int st;
    return waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
}

static int writer(void)
{
    int id = mmk_shmget(DEMO_KEY, 4096, IPC_CREAT | 0644);
    void *p;
    if (id < 0 || mmk_shmat(id, NULL, 0, &p) != 0)
        return 1;
    strcpy(p, "written by process A");
    printf("  process %d: shmget(0x%x) = %d, wrote \"%s\", exits without shmdt\n",
           (int)getpid(), (unsigned)DEMO_KEY, id, (char *)p);
    fflush(stdout);
    return 0;
}

static int reader(void)
{
    int id = mmk_shmget(DEMO_KEY, 0, 0);
    void *p;
    if (id < 0 || mmk_shmat(id, NULL, 0, &p) != 0)
        return 1;
    printf("  process %d: same key, id %d, reads \"%s\", appends to it\n", (int)getpid(), id,
           (char *)p);
    strcat(p, ", then by process B");
    fflush(stdout);
    return mmk_shmdt(p) == 0 ? 0 : 1;
}

int demo_shm(void)
{
    char tmpl[] = "/tmp/mmkit-demo-shm-XXXXXX";
    const char *dir = getenv("MMKIT_SHM_DIR");
    int own_dir = 0;
    if (!dir || !*dir) {
        if (!mkdtemp(tmpl) || chmod(tmpl, 01777) != 0) {
            cli_error("demo shm: cannot make a store in /tmp");
            return 1;
        }
        setenv("MMKIT_SHM_DIR", tmpl, 1);
        dir = tmpl;
        own_dir = 1;
    }
    printf("Segments are files in a store directory (here %s; the default is\n"
           "/var/lib/mmkit/shm, which survives reboots).\n\n", dir);
    if (in_child(writer) != 0 || in_child(reader) != 0) {
        cli_error("demo shm: a child failed");
        return 1;
    }
    int id = mmk_shmget(DEMO_KEY, 0, 0);
    void *p;
    if (id < 0 || mmk_shmat(id, NULL, SHM_RDONLY, &p) != 0) {
        cli_error("demo shm: the segment did not survive its processes");
        return 1;
    }
    printf("\nBoth have exited.  A third process finds the bytes: \"%s\"\n", (char *)p);
    mmk_shmdt(p);
    printf("\n$ mmkit ipcs");
    char *ipcs_argv[] = { "ipcs", NULL };
    fflush(stdout);
    cmd_ipcs(1, ipcs_argv);
    char key[16];
    snprintf(key, sizeof key, "0x%x", (unsigned)DEMO_KEY);
    printf("$ mmkit ipcrm -M %s\n", key);
    char *rm_argv[] = { "ipcrm", "-M", key, NULL };
    fflush(stdout);
    int r = cmd_ipcrm(3, rm_argv);
    int gone = mmk_shmget(DEMO_KEY, 0, 0) == -ENOENT;
    printf("key 0x%x %s\n", (unsigned)DEMO_KEY, gone ? "no longer resolves" : "STILL RESOLVES");
    if (own_dir) {
        rmdir(dir);
        unsetenv("MMKIT_SHM_DIR");
    }
    if (r != 0 || !gone)
        return 1;
    puts("shm: ok");
    return 0;
}
