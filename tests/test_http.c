/*
 * test_http.c - the HTTP feed against clients that misbehave: the connection
 * limit answers 503; a 1 MiB header, 300 idle connections, half a request
 * and a stream that reads nothing stall no one; malformed requests get 400.
 * Each test runs the feed in its own process (helper_http_feed, beside this
 * program) and talks HTTP over raw sockets.
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

struct feed {
    pid_t pid;
    FILE *in, *out;
    int port;
};

static void feed_start(struct feed *f, const char *const *args)
{
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 32);
    cr_assert_gt(n, 0);
    exe[n] = '\0';
    strcpy(strrchr(exe, '/') + 1, "helper_http_feed");
    cr_assert_eq(access(exe, X_OK), 0, "%s is missing", exe);
    int to[2], from[2];
    cr_assert_eq(pipe(to), 0);
    cr_assert_eq(pipe(from), 0);
    f->pid = fork();
    cr_assert_geq(f->pid, 0);
    if (f->pid == 0) {
        dup2(to[0], 0);
        dup2(from[1], 1);
        close(to[1]);
        close(from[0]);
        const char *argv[16] = { exe };
        for (int i = 0; args && args[i] && i < 14; i++)
            argv[i + 1] = args[i];
        execv(exe, (char **)argv);
        _exit(127);
    }
    close(to[0]);
    close(from[1]);
    f->in = fdopen(to[1], "w");
    f->out = fdopen(from[0], "r");
    setvbuf(f->in, NULL, _IONBF, 0);
    char line[256];
    cr_assert_not_null(fgets(line, sizeof line, f->out), "the feed did not start");
    cr_assert_eq(sscanf(line, "url http://127.0.0.1:%d/", &f->port), 1, "%s", line);
}

static void feed_stop(struct feed *f)
{
    fclose(f->in);
    int st;
    waitpid(f->pid, &st, 0);
    fclose(f->out);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the feed did not exit cleanly: %d", st);
}

/* One command, one answer line. */
static void feed_cmd(struct feed *f, const char *cmd, char *ans, size_t cap)
{
    fprintf(f->in, "%s\n", cmd);
    cr_assert_not_null(fgets(ans, (int)cap, f->out));
}

struct stats { unsigned conns, streams; unsigned long long refused, dropped, seq; };

static struct stats feed_stats(struct feed *f)
{
    char ans[256];
    struct stats s;
    feed_cmd(f, "stats", ans, sizeof ans);
    cr_assert_eq(sscanf(ans, "stats %u %u %llu %llu %llu", &s.conns, &s.streams, &s.refused,
                        &s.dropped, &s.seq), 5, "%s", ans);
    return s;
}

static long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

/* Wait until the feed holds `want` connections (it registers them when it
 * runs its loop). */
static void wait_conns(struct feed *f, unsigned want)
{
    long end = now_ms() + 10000;
    while (feed_stats(f).conns != want) {
        cr_assert_lt(now_ms(), end, "feed holds %u connections, want %u", feed_stats(f).conns, want);
        usleep(10000);
    }
}

static int dial(int port, int rcvbuf)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_geq(fd, 0);
    if (rcvbuf)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof a), 0, "connect: %s", strerror(errno));
    return fd;
}

static void send_str(int fd, const char *s)
{
    size_t len = strlen(s);
    while (len) {
        ssize_t n = send(fd, s, len, MSG_NOSIGNAL);
        cr_assert_gt(n, 0, "send: %s", strerror(errno));
        s += n;
        len -= (size_t)n;
    }
}

/* Read until the peer closes, `stop` appears, or ms pass.  Returns the
 * bytes read (NUL-terminated in buf); *closed tells whether it closed. */
static size_t read_until(int fd, char *buf, size_t cap, const char *stop, int ms, int *closed)
{
    size_t have = 0;
    long end = now_ms() + ms;
    *closed = 0;
    buf[0] = '\0';
    while (have < cap - 1) {
        long left = end - now_ms();
        if (left <= 0)
            break;
        struct pollfd p = { .fd = fd, .events = POLLIN };
        if (poll(&p, 1, (int)left) <= 0)
            break;
        ssize_t n = recv(fd, buf + have, cap - 1 - have, 0);
        if (n <= 0) {
            *closed = 1;
            break;
        }
        have += (size_t)n;
        buf[have] = '\0';
        if (stop && strstr(buf, stop))
            break;
    }
    return have;
}

/* GET path on a new connection; returns the status code (0: none). */
static int get_status(int port, const char *path)
{
    int fd = dial(port, 0);
    char req[512], buf[8192];
    snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", path);
    send_str(fd, req);
    int closed, code = 0;
    read_until(fd, buf, sizeof buf, "\r\n\r\n", 10000, &closed);
    close(fd);
    sscanf(buf, "HTTP/1.%*d %d", &code);
    return code;
}

static int raw_status(int port, const char *request)
{
    int fd = dial(port, 0);
    char buf[8192];
    send_str(fd, request);
    int closed, code = 0;
    read_until(fd, buf, sizeof buf, "\r\n\r\n", 10000, &closed);
    close(fd);
    sscanf(buf, "HTTP/1.%*d %d", &code);
    return code;
}

Test(http, connections_past_the_limit_get_503)
{
    struct feed f;
    feed_start(&f, (const char *[]){ "--max-conns", "5", NULL });
    int held[5];
    for (int i = 0; i < 5; i++)
        held[i] = dial(f.port, 0);
    wait_conns(&f, 5);
    int fd = dial(f.port, 0);
    send_str(fd, "GET /segments HTTP/1.1\r\nHost: t\r\n\r\n");
    char buf[4096];
    int closed;
    read_until(fd, buf, sizeof buf, "}", 10000, &closed);
    cr_assert(strncmp(buf, "HTTP/1.1 503 ", 13) == 0, "past the limit: %s", buf);
    cr_assert(strstr(buf, "{\"error\":\"too many connections\"}") != NULL, "%s", buf);
    close(fd);
    cr_assert_eq(feed_stats(&f).refused, 1);
    close(held[0]);
    wait_conns(&f, 4);
    cr_assert_eq(get_status(f.port, "/segments"), 200, "below the limit again");
    for (int i = 1; i < 5; i++)
        close(held[i]);
    feed_stop(&f);
}

Test(http, malformed_requests_get_400)
{
    struct feed f;
    /* An idle timeout longer than the reads below wait: a close seen there
     * is an answer to the request, not the timeout. */
    feed_start(&f, (const char *[]){ "--timeout", "60", NULL });
    /* A request line libmicrohttpd 0.9.75 cannot split gets no answer: the
     * connection is closed at once (see docs/http.md). */
    const char *lines[] = { "GARBAGE\r\n\r\n", "GET\r\n\r\n", "GET /x y HTTP/1.1\r\nHost: t\r\n\r\n" };
    for (size_t i = 0; i < 3; i++) {
        int fd = dial(f.port, 0), closed;
        char buf[1024];
        send_str(fd, lines[i]);
        read_until(fd, buf, sizeof buf, "\r\n\r\n", 20000, &closed);
        close(fd);
        cr_assert(strncmp(buf, "HTTP/1.1 400 ", 13) == 0 || (closed && buf[0] == '\0'),
                  "request %zu: %s", i, buf);
    }
    cr_assert_eq(raw_status(f.port, "GET / HTTP/1.1\r\nHost: t\r\nno colon here\r\n\r\n"), 400);
    cr_assert_eq(raw_status(f.port, "GET / HTTP/1.1\r\n\r\n"), 400, "HTTP/1.1 without Host");
    cr_assert_eq(raw_status(f.port, "GET /events?since=x HTTP/1.1\r\nHost: t\r\n\r\n"), 400);
    cr_assert_eq(raw_status(f.port, "PUT /segments HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc"), 405);
    cr_assert_eq(get_status(f.port, "/segments"), 200, "the feed still serves");
    feed_stop(&f);
}

Test(http, a_1mib_header_is_refused_while_others_are_served)
{
    struct feed f;
    feed_start(&f, NULL);
    int big = dial(f.port, 0);
    send_str(big, "GET /segments HTTP/1.1\r\nHost: t\r\nX-Big: ");
    char *chunk = malloc(64 * 1024);
    memset(chunk, 'a', 64 * 1024);
    size_t sent = 0;
    int cut = 0;
    for (int i = 0; i < 16 && !cut; i++) {
        /* Between pieces another client is served at once. */
        cr_assert_eq(get_status(f.port, "/segments"), 200);
        size_t off = 0;
        while (off < 64 * 1024) {
            ssize_t n = send(big, chunk + off, 64 * 1024 - off, MSG_NOSIGNAL);
            if (n <= 0) { cut = 1; break; }
            off += (size_t)n;
        }
        sent += off;
    }
    free(chunk);
    char buf[4096];
    int closed;
    read_until(big, buf, sizeof buf, "\r\n\r\n", 10000, &closed);
    cr_assert(cut || closed || strncmp(buf, "HTTP/1.1 4", 10) == 0,
              "a 1 MiB header was neither refused nor cut (%zu bytes sent): %s", sent, buf);
    cr_assert(strstr(buf, " 200 ") == NULL, "a 1 MiB header was answered: %s", buf);
    close(big);
    cr_assert_eq(get_status(f.port, "/segments"), 200);
    feed_stop(&f);
}

Test(http, a_half_request_is_closed_after_the_timeout)
{
    struct feed f;
    feed_start(&f, (const char *[]){ "--timeout", "1", NULL });
    int silent = dial(f.port, 0);
    int half = dial(f.port, 0);
    send_str(half, "GET /segments HTTP/1.1\r\nHost: t\r\n");
    char buf[1024];
    int closed;
    cr_assert_eq(get_status(f.port, "/segments"), 200, "others are served meanwhile");
    read_until(silent, buf, sizeof buf, NULL, 15000, &closed);
    cr_assert(closed, "a connection that sent nothing was not closed");
    read_until(half, buf, sizeof buf, NULL, 15000, &closed);
    cr_assert(closed, "a connection that sent half a request was not closed");
    close(silent);
    close(half);
    feed_stop(&f);
}

Test(http, three_hundred_idle_connections_stall_no_one)
{
    struct feed f;
    feed_start(&f, (const char *[]){ "--max-conns", "400", NULL });
    int idle[300];
    for (int i = 0; i < 300; i++)
        idle[i] = dial(f.port, 0);
    wait_conns(&f, 300);
    int s = dial(f.port, 0);
    send_str(s, "GET /events HTTP/1.1\r\nHost: t\r\n\r\n");
    char buf[8192], ans[128];
    int closed;
    read_until(s, buf, sizeof buf, "retry: ", 10000, &closed);
    cr_assert(strstr(buf, "retry: ") != NULL, "stream did not open: %s", buf);
    feed_cmd(&f, "create live 4096 644", ans, sizeof ans);
    read_until(s, buf, sizeof buf, "event: create", 10000, &closed);
    cr_assert(strstr(buf, "\"name\":\"live\"") != NULL, "the event did not arrive: %s", buf);
    cr_assert_eq(get_status(f.port, "/segments/live"), 200);
    for (int i = 0; i < 300; i++)
        close(idle[i]);
    close(s);
    feed_stop(&f);
}

/* Count "\nid: " occurrences and remember the last id. */
static unsigned long count_ids(const char *buf, unsigned long *last)
{
    unsigned long n = 0;
    for (const char *p = buf; (p = strstr(p, "id: ")); p += 4) {
        if (p != buf && p[-1] != '\n')
            continue;
        n++;
        *last = strtoul(p + 4, NULL, 10);
    }
    return n;
}

Test(http, a_stream_that_reads_nothing_is_dropped_and_others_get_everything)
{
    struct feed f;
    feed_start(&f, (const char *[]){ "--backlog", "256", NULL });
    int stuck = dial(f.port, 2048);
    int good = dial(f.port, 0);
    send_str(stuck, "GET /events HTTP/1.1\r\nHost: t\r\n\r\n");
    send_str(good, "GET /events HTTP/1.1\r\nHost: t\r\n\r\n");
    long end = now_ms() + 10000;
    while (feed_stats(&f).streams != 2)
        cr_assert_lt(now_ms(), end, "streams did not open");
    fcntl(good, F_SETFL, O_NONBLOCK);

    /* Long names make big events; 120 commands per batch, then the good
     * client reads while the feed sends. */
    char name[201];
    memset(name, 'n', 200);
    name[200] = '\0';
    size_t cap = 64u << 20, have = 0;
    char *got = malloc(cap);
    unsigned long events = 0;
    char cmd[300], ans[128];
    snprintf(cmd, sizeof cmd, "create %s 4096 644", name);
    feed_cmd(&f, cmd, ans, sizeof ans);
    events++;
    for (int batch = 0; batch < 200 && feed_stats(&f).dropped == 0; batch++) {
        for (int i = 0; i < 120; i++) {
            snprintf(cmd, sizeof cmd, "write %s %d 1\n", name, i);
            fputs(cmd, f.in);
        }
        for (int i = 0; i < 120; i++)
            cr_assert_not_null(fgets(ans, sizeof ans, f.out));
        events += 120;
        for (int spin = 0; spin < 50; spin++) {
            ssize_t n = recv(good, got + have, cap - 1 - have, 0);
            if (n > 0)
                have += (size_t)n;
            else
                usleep(1000);
        }
    }
    struct stats st = feed_stats(&f);
    cr_assert_eq(st.dropped, 1, "the stuck stream was not dropped (%lu events)", events);
    /* The good stream still gets everything, in order, with no gap. */
    end = now_ms() + 20000;
    unsigned long last = 0, n = 0;
    while (now_ms() < end) {
        ssize_t r = recv(good, got + have, cap - 1 - have, 0);
        if (r > 0) {
            have += (size_t)r;
            got[have] = '\0';
            if (strstr(got + (have > 4096 ? have - 4096 : 0), "write"))
                if ((n = count_ids(got, &last)) == events)
                    break;
        } else {
            usleep(2000);
        }
    }
    got[have] = '\0';
    n = count_ids(got, &last);
    cr_assert_eq(n, events, "the reading stream got %lu of %lu events", n, events);
    cr_assert_eq(last, st.seq);
    /* The stuck one ends (after what its socket already holds). */
    char *sink = malloc(1 << 20);
    int closed = 0;
    end = now_ms() + 20000;
    while (!closed && now_ms() < end)
        read_until(stuck, sink, 1 << 20, NULL, 1000, &closed);
    cr_assert(closed, "the dropped stream was not closed");
    free(sink);
    free(got);
    close(stuck);
    close(good);
    feed_stop(&f);
}
