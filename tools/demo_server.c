/* demo_server.c - demo chapter: mmkitd, the segment server. */
#include "cli.h"
#include "mmkit.h"
#include "server/server.h"
#include "demo_http.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

static char http_addr[32]; /* the first server also serves HTTP (demo_http.c) */

/* Run a server in a child process; return its pid once it answers. */
static pid_t start(const char *sock, const char *state)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        struct mmk__srv_opts o = { .socket_path = sock, .state_dir = state, .ready_fd = -1, .quiet = 1,
                                   .http_addr = http_addr[0] ? http_addr : NULL };
        _exit(mmk__server_run(&o));
    }
    for (int i = 0; pid > 0 && i < 500; i++) {
        mmk_client *c = mmk_client_connect(sock, 1000);
        if (c) {
            mmk_client_close(c);
            return pid;
        }
        usleep(10000);
    }
    return -1;
}

static int stop(pid_t pid)
{
    int st;
    kill(pid, SIGTERM);
    return waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
}

#define FAIL(...) do { printf("  FAILED: " __VA_ARGS__); putchar('\n'); goto out; } while (0)

int demo_server(void)
{
    char dir[] = "/tmp/mmkit-demo-XXXXXX", sock[64], state[64];
    if (!mkdtemp(dir)) {
        printf("  cannot make a temporary directory\n");
        return 1;
    }
    snprintf(sock, sizeof sock, "%s/sock", dir);
    snprintf(state, sizeof state, "%s/state", dir);
    int rc = 1, fd = -1;
    char *w = NULL;
    mmk_client *a = NULL, *b = NULL;
    int port = demo_http_port();
    if (port)
        snprintf(http_addr, sizeof http_addr, "127.0.0.1:%d", port);
    pid_t pid = start(sock, state);
    if (pid < 0)
        FAIL("the server did not start");
    printf("A server owns the segments (memfds) and listens on %s.\n", sock);
    if (port)
        printf("It also pushes its events over HTTP: http://%s/ (a live page; curl -N http://%s/events)\n",
               http_addr, http_addr);

    a = mmk_client_connect(sock, 0);
    b = mmk_client_connect(sock, 0);
    if (!a || !b)
        FAIL("connect: %s", strerror(errno));
    int e = mmk_seg_create(a, "greeting", 4096, 0644);
    if (e)
        FAIL("create: %s", mmk_strerror(e));
    fd = mmk_seg_open(a, "greeting", MMK_SEG_RDWR, NULL);
    if (fd < 0)
        FAIL("open: %s", mmk_strerror(fd));
    w = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (w == MAP_FAILED)
        FAIL("mmap: %s", strerror(errno));
    printf("Client A created 'greeting' (4 KiB, mode 0644) and mapped it read-write.\n");

    e = mmk_seg_subscribe(b, "greeting");
    if (e)
        FAIL("subscribe: %s", mmk_strerror(e));
    int rfd = mmk_seg_open(b, "greeting", MMK_SEG_RDONLY, NULL);
    if (rfd < 0)
        FAIL("open read-only: %s", mmk_strerror(rfd));
    const char *r = mmap(NULL, 4096, PROT_READ, MAP_SHARED, rfd, 0);
    void *try_rw = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, rfd, 0);
    printf("Client B subscribed and opened it read-only: mapping it writable fails (%s).\n",
           try_rw == MAP_FAILED ? strerror(errno) : "it did NOT fail");
    if (try_rw != MAP_FAILED)
        FAIL("a read-only descriptor mapped writable");
    close(rfd);

    strcpy(w, "hello from A");
    uint64_t version;
    e = mmk_seg_publish(a, "greeting", 0, 12, &version);
    if (e)
        FAIL("publish: %s", mmk_strerror(e));
    mmk_seg_event ev;
    do
        e = mmk_seg_next_event(b, &ev, 2000);
    while (!e && ev.kind != MMK_EV_WRITE);
    if (e)
        FAIL("no event: %s", mmk_strerror(e));
    printf("A wrote and published bytes 0-11; B was pushed event #%llu (version %llu) and reads \"%s\".\n",
           (unsigned long long)ev.seq, (unsigned long long)ev.info.version, r);
    char line[64];
    if (port && demo_http_event(port, line, sizeof line) == 0)
        printf("An HTTP client of /events got the same event as Server-Sent Events (%s).\n", line);
    else if (port)
        FAIL("the HTTP feed did not deliver the event");
    http_addr[0] = '\0';
    munmap((void *)r, 4096);
    mmk_client_close(a);
    mmk_client_close(b);
    a = b = NULL;

    if (stop(pid))
        FAIL("the server did not stop cleanly");
    printf("SIGTERM: the server saved its segments to %s and stopped.\n", state);
    pid = start(sock, state);
    if (pid < 0)
        FAIL("the server did not restart");
    a = mmk_client_connect(sock, 0);
    int fd2 = a ? mmk_seg_open(a, "greeting", MMK_SEG_RDONLY, NULL) : -1;
    char back[16] = { 0 };
    if (fd2 < 0 || pread(fd2, back, 12, 0) != 12)
        FAIL("segment not back after the restart");
    close(fd2);
    printf("Restarted with --state-dir: 'greeting' is back and holds \"%s\".\n", back);
    rc = strcmp(back, "hello from A") != 0;
    if (!rc)
        printf("server: ok\n");
out:
    if (w && w != MAP_FAILED)
        munmap(w, 4096);
    if (fd >= 0)
        close(fd);
    mmk_client_close(a);
    mmk_client_close(b);
    if (pid > 0)
        stop(pid);
    char cmd[96];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        rc = 1;
    return rc;
}
