/* server.c - `mmkit server`: run mmkitd, the segment server (src/server/). */
#include "cli.h"
#include "server/server.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static int usage(void)
{
    fputs("usage: mmkit server [--socket PATH] [--state-dir DIR] [--daemon] [--quiet] [--verbose]\n"
          "                    [--max-clients N] [--max-per-uid N] [--max-segments N] [--max-size SIZE]\n"
          "                    [--hello-timeout MS] [--backlog N] [--no-event-rings]\n"
          "                    [--http ADDR:PORT [--http-any] [--http-all] [--http-heartbeat MS]]\n",
          stderr);
    return 2;
}

/* Detach: the parent returns once the server listens (printing its pid), or
 * fails if it could not start.  Returns -1 in the daemon itself, with
 * *ready_fd the pipe to report readiness on. */
static int daemonize(int *ready_fd)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0) {
        cli_error("pipe: %s", strerror(errno));
        return 1;
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        cli_error("fork: %s", strerror(errno));
        return 1;
    }
    if (pid > 0) {
        close(p[1]);
        int st;
        waitpid(pid, &st, 0); /* the intermediate child exits at once */
        pid_t daemon_pid = 0;
        char c;
        ssize_t n = read(p[0], &daemon_pid, sizeof daemon_pid);
        ssize_t m = n == (ssize_t)sizeof daemon_pid ? read(p[0], &c, 1) : 0;
        close(p[0]);
        if (m != 1) {
            cli_error("server did not start");
            return 1;
        }
        printf("%d\n", (int)daemon_pid);
        return 0;
    }
    close(p[0]);
    setsid();
    pid = fork();
    if (pid != 0)
        _exit(pid < 0 ? 1 : 0);
    pid_t self = getpid();
    if (write(p[1], &self, sizeof self) != (ssize_t)sizeof self)
        _exit(1);
    int devnull = open("/dev/null", O_RDWR);
    if (devnull >= 0) {
        dup2(devnull, 0);
        dup2(devnull, 1);
        if (devnull > 2)
            close(devnull);
    }
    if (chdir("/") != 0)
        _exit(1);
    *ready_fd = p[1];
    return -1;
}

int cmd_server(int argc, char **argv)
{
    struct mmk__srv_opts o = { .ready_fd = -1 };
    int detach = 0;
    char *state_abs = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        unsigned long long n;
        if (!strcmp(a, "--daemon")) {
            detach = 1;
        } else if (!strcmp(a, "--quiet")) {
            o.quiet = 1;
        } else if (!strcmp(a, "--verbose")) {
            o.verbose = 1;
        } else if (!strcmp(a, "--no-event-rings")) {
            o.no_rings = 1;
        } else if (!strcmp(a, "--http-any")) {
            o.http_any = 1;
        } else if (!strcmp(a, "--http-all")) {
            o.http_all = 1;
        } else if (!v) {
            cli_error("server: unknown option or missing value: %s", a);
            return usage();
        } else if (!strcmp(a, "--socket")) {
            o.socket_path = v, i++;
        } else if (!strcmp(a, "--http")) {
            o.http_addr = v, i++;
        } else if (!strcmp(a, "--state-dir")) {
            o.state_dir = v, i++;
        } else if (!strcmp(a, "--max-size")) {
            if (cli_parse_size(v, &n)) {
                cli_error("server: bad size '%s'", v);
                return 2;
            }
            o.max_size = n, i++;
        } else if (!strcmp(a, "--max-clients") || !strcmp(a, "--max-segments") ||
                   !strcmp(a, "--hello-timeout") || !strcmp(a, "--backlog") ||
                   !strcmp(a, "--max-per-uid") || !strcmp(a, "--http-heartbeat")) {
            if (cli_parse_size(v, &n) || n == 0 || n > 1u << 30) {
                cli_error("server: bad number '%s' for %s", v, a);
                return 2;
            }
            int *field = !strcmp(a, "--max-clients")   ? &o.max_clients
                         : !strcmp(a, "--max-per-uid")  ? &o.max_per_uid
                         : !strcmp(a, "--http-heartbeat") ? &o.http_heartbeat_ms
                         : !strcmp(a, "--max-segments") ? &o.max_segments
                         : !strcmp(a, "--hello-timeout") ? &o.hello_ms
                                                         : &o.backlog;
            *field = (int)n;
            i++;
        } else {
            cli_error("server: unknown option %s", a);
            return usage();
        }
    }
    /* The daemon runs in /: a relative state dir or socket must not move. */
    char *sock_abs = NULL;
    if (detach) {
        if (o.state_dir && o.state_dir[0] != '/') {
            mkdir(o.state_dir, 0700);
            state_abs = realpath(o.state_dir, NULL);
            if (!state_abs) {
                cli_error("server: %s: %s", o.state_dir, strerror(errno));
                return 1;
            }
            o.state_dir = state_abs;
        }
        if (o.socket_path && o.socket_path[0] != '/') {
            char cwd[4096];
            if (!getcwd(cwd, sizeof cwd) || asprintf(&sock_abs, "%s/%s", cwd, o.socket_path) < 0) {
                cli_error("server: cannot resolve %s", o.socket_path);
                return 1;
            }
            o.socket_path = sock_abs;
        }
        int r = daemonize(&o.ready_fd);
        if (r >= 0) {
            free(state_abs);
            free(sock_abs);
            return r;
        }
    }
    int status = mmk__server_run(&o);
    free(state_abs);
    free(sock_abs);
    return status;
}
