/* server_util.h - start and stop a private mmkitd for a test, talk raw
 * bytes to it, and run checks in a child of another uid. */
#ifndef MMK_TEST_SERVER_UTIL_H
#define MMK_TEST_SERVER_UTIL_H

#include "mmkit.h"

#include <errno.h>
#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

struct test_server {
    char dir[64];
    char sock[100];
    char state[100];
    pid_t pid;
};

static inline void ts_sleep_ms(int ms)
{
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

/* Start `mmkit server` on a socket in a fresh directory (readable by every
 * uid, for the other-uid tests).  extra: more arguments, NULL-terminated.
 * Returns 0 once a client can connect, -1 otherwise. */
static inline int ts_start_args(struct test_server *s, const char *const *extra)
{
    if (!s->dir[0]) {
        snprintf(s->dir, sizeof s->dir, "/tmp/mmkitd-test-XXXXXX");
        if (!mkdtemp(s->dir))
            return -1;
        chmod(s->dir, 0755);
        snprintf(s->sock, sizeof s->sock, "%s/sock", s->dir);
        snprintf(s->state, sizeof s->state, "%s/state", s->dir);
    }
    const char *b = getenv("MMKIT_BUILD");
    char bin[256];
    snprintf(bin, sizeof bin, "%s/mmkit", b && *b ? b : "build");
    const char *argv[32] = { bin, "server", "--quiet", "--socket", s->sock };
    int n = 5;
    for (int i = 0; extra && extra[i] && n < 31; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    fflush(NULL);
    s->pid = fork();
    if (s->pid < 0)
        return -1;
    if (s->pid == 0) {
        execv(bin, (char *const *)argv);
        _exit(127);
    }
    for (int i = 0; i < 500; i++) {
        mmk_client *c = mmk_client_connect(s->sock, 1000);
        if (c) {
            mmk_client_close(c);
            return 0;
        }
        int st;
        if (waitpid(s->pid, &st, WNOHANG) == s->pid) {
            s->pid = 0;
            return -1;
        }
        ts_sleep_ms(10);
    }
    return -1;
}

static inline int ts_start(struct test_server *s)
{
    return ts_start_args(s, NULL);
}

/* SIGTERM and wait; returns the server's exit status (or -1). */
static inline int ts_stop(struct test_server *s)
{
    if (s->pid <= 0)
        return -1;
    int st = 0;
    kill(s->pid, SIGTERM);
    waitpid(s->pid, &st, 0);
    s->pid = 0;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* 1 if the server process is still running. */
static inline int ts_alive(struct test_server *s)
{
    int st;
    return s->pid > 0 && waitpid(s->pid, &st, WNOHANG) == 0;
}

static inline void ts_cleanup(struct test_server *s)
{
    ts_stop(s);
    if (s->dir[0]) {
        char cmd[160];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", s->dir);
        if (system(cmd) != 0)
            fprintf(stderr, "cannot remove %s\n", s->dir);
    }
}

/* Descriptors process pid holds (entries of /proc/PID/fd), or -1. */
static inline int ts_count_fds(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/fd", (int)pid);
    DIR *d = opendir(path);
    if (!d)
        return -1;
    int n = 0;
    while (readdir(d))
        n++;
    closedir(d);
    return n;
}

/* A raw SOCK_SEQPACKET connection to the server (no hello), or -1. */
static inline int ts_raw(const struct test_server *s)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", s->sock);
    int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        close(fd);
        fd = -1;
    }
    return fd;
}

/*
 * Run fn in a child that became uid/gid `nobody` (65534).  fn returns 0 on
 * success or the line number of the first failed check (printed to stderr
 * by CHILD_CHECK).  Returns 0 if every check passed, 1 if one failed, 250 if
 * the uid could not be changed, -1 if the child died otherwise.
 */
static inline int ts_as_nobody(int (*fn)(void *), void *arg)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        if (setgroups(0, NULL) != 0 || setgid(65534) != 0 || setuid(65534) != 0)
            _exit(250);
        int r = fn(arg);
        fflush(NULL);
        _exit(r == 0 ? 0 : 1);
    }
    int st;
    if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st))
        return -1;
    return WEXITSTATUS(st);
}

/* In a child: fail with the line number (exit status is at most 255). */
#define CHILD_CHECK(cond) do { if (!(cond)) { fprintf(stderr, "child check failed: %s (line %d)\n", #cond, __LINE__); return __LINE__; } } while (0)

#endif
