/* child.c - run a function in a child process and capture what it says. */
#include "cli.h"

#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

int cli_run_captured(void (*fn)(void *), void *arg, char *buf, size_t cap)
{
    int p[2];
    if (cap == 0 || pipe(p) != 0)
        return -1;
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        close(p[0]);
        close(p[1]);
        return -1;
    }
    if (pid == 0) {
        dup2(p[1], 2);
        close(p[0]);
        close(p[1]);
        fn(arg);
        _exit(0);
    }
    close(p[1]);
    size_t n = 0;
    ssize_t k;
    while (n < cap - 1 && (k = read(p[0], buf + n, cap - 1 - n)) > 0)
        n += (size_t)k;
    buf[n] = 0;
    close(p[0]);
    int st = 0;
    waitpid(pid, &st, 0);
    return st;
}

void cli_print_end(const char *prefix, int st)
{
    if (WIFSIGNALED(st))
        printf("%schild died of signal %d (%s)\n", prefix, WTERMSIG(st), strsignal(WTERMSIG(st)));
    else
        printf("%schild exited with status %d\n", prefix, WEXITSTATUS(st));
}
