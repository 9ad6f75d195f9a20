/* test_server_http.c - the HTTP feed under slow and garbage clients: idle
 * connections, a 1 MiB header, an /events stream that reads nothing, more
 * connections than the limit.  Socket clients and other HTTP clients must
 * not stall. */
#include "mmkit.h"
#include "server_util.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <poll.h>

static struct test_server srv;
static int port;

static int free_port(void)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof a;
    bind(s, (struct sockaddr *)&a, sizeof a);
    getsockname(s, (struct sockaddr *)&a, &len);
    close(s);
    return ntohs(a.sin_port);
}

static void start(void)
{
    static char addr[32];
    memset(&srv, 0, sizeof srv);
    port = free_port();
    snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
    const char *args[] = { "--http", addr, "--hello-timeout", "500", NULL };
    cr_assert_eq(ts_start_args(&srv, args), 0, "server did not start");
}

static void stop(void)
{
    ts_cleanup(&srv);
}

static int tcp(void)
{
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    if (connect(s, (struct sockaddr *)&a, sizeof a) != 0) {
        close(s);
        return -1;
    }
    return s;
}

/* Send a request, read the whole answer (the server closes) into buf. */
static int get(const char *req, char *buf, size_t cap)
{
    int s = tcp();
    if (s < 0)
        return -1;
    if (send(s, req, strlen(req), MSG_NOSIGNAL) < 0) {
        close(s);
        return -1;
    }
    size_t n = 0;
    for (;;) {
        struct pollfd p = { .fd = s, .events = POLLIN };
        if (poll(&p, 1, 5000) <= 0)
            break;
        ssize_t r = recv(s, buf + n, cap - 1 - n, 0);
        if (r <= 0)
            break;
        n += (size_t)r;
        if (n == cap - 1)
            break;
    }
    buf[n] = '\0';
    close(s);
    return (int)n;
}

static int status_of(const char *resp)
{
    int st = 0;
    return sscanf(resp, "HTTP/1.1 %d", &st) == 1 ? st : -1;
}

static void assert_all_serving(void)
{
    cr_assert(ts_alive(&srv), "the server died");
    mmk_client *c = mmk_client_connect(srv.sock, 2000);
    cr_assert_not_null(c, "a socket client cannot connect");
    mmk_seg_info in;
    int e = mmk_seg_stat(c, "probe", &in);
    cr_assert(e == 0 || e == -ENOENT, "a socket client is not served");
    mmk_client_close(c);
    char buf[4096];
    cr_assert_gt(get("GET /segments HTTP/1.1\r\nHost: t\r\n\r\n", buf, sizeof buf), 0);
    cr_assert_eq(status_of(buf), 200, "an HTTP client is not served: %s", buf);
}

TestSuite(http, .init = start, .fini = stop, .timeout = 90);

Test(http, idle_connections_do_not_stall_anyone_and_time_out)
{
    enum { IDLE = 300 };
    int fds[IDLE];
    for (int i = 0; i < IDLE; i++) {
        fds[i] = tcp();
        cr_assert_geq(fds[i], 0, "connection %d", i);
    }
    assert_all_serving();
    /* Each is closed after the head timeout (500 ms here). */
    char b[64];
    struct pollfd p = { .fd = fds[0], .events = POLLIN };
    cr_assert_eq(poll(&p, 1, 5000), 1, "an idle connection was never closed");
    cr_assert_eq(recv(fds[0], b, sizeof b, 0), 0);
    for (int i = 0; i < IDLE; i++)
        close(fds[i]);
}

Test(http, a_megabyte_of_header_is_refused)
{
    int s = tcp();
    cr_assert_geq(s, 0);
    static char junk[1 << 20];
    memcpy(junk, "GET /segments HTTP/1.1\r\nX-Junk: ", 32);
    memset(junk + 32, 'j', sizeof junk - 32);
    size_t sent = 0;
    while (sent < sizeof junk) {
        ssize_t n = send(s, junk + sent, sizeof junk - sent, MSG_NOSIGNAL);
        if (n <= 0)
            break; /* the server stopped reading and closed: fine */
        sent += (size_t)n;
    }
    char buf[256] = { 0 };
    recv(s, buf, sizeof buf - 1, 0); /* 431, or a reset */
    if (buf[0])
        cr_assert_eq(status_of(buf), 431, "%s", buf);
    close(s);
    assert_all_serving();
}

Test(http, stream_that_reads_nothing_is_dropped)
{
    int lazy = tcp();
    cr_assert_geq(lazy, 0);
    int rcv = 4096;
    setsockopt(lazy, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof rcv);
    const char *req = "GET /events HTTP/1.1\r\nHost: t\r\n\r\n";
    cr_assert_eq(send(lazy, req, strlen(req), 0), (ssize_t)strlen(req));
    ts_sleep_ms(200);
    mmk_client *c = mmk_client_connect(srv.sock, 5000);
    cr_assert_not_null(c);
    cr_assert_eq(mmk_seg_create(c, "flood", 4096, 0644), 0);
    /* ~150 bytes per event: 20,000 events pass the 1 MiB bound. */
    for (int i = 0; i < 20000; i++)
        cr_assert_eq(mmk_seg_publish(c, "flood", 0, 1, NULL), 0, "publish %d stalled", i);
    mmk_client_close(c);
    assert_all_serving();
    /* Drain what the kernel buffered: the stream must end (dropped). */
    char buf[65536];
    ssize_t n;
    size_t total = 0;
    for (;;) {
        struct pollfd p = { .fd = lazy, .events = POLLIN };
        if (poll(&p, 1, 5000) <= 0)
            break;
        n = recv(lazy, buf, sizeof buf, 0);
        if (n <= 0)
            break;
        total += (size_t)n;
    }
    cr_assert_lt(total, 20000u * 150, "the slow stream got everything: it was never dropped");
    close(lazy);
}

Test(http, over_the_connection_limit_is_503)
{
    enum { N = 520 };
    int fds[N];
    int n = 0;
    for (; n < N; n++) {
        fds[n] = tcp();
        if (fds[n] < 0)
            break;
    }
    cr_assert_eq(n, N);
    /* The 513th and later got a 503 and were closed. */
    char buf[512] = { 0 };
    struct pollfd p = { .fd = fds[N - 1], .events = POLLIN };
    cr_assert_eq(poll(&p, 1, 5000), 1);
    cr_assert_gt(recv(fds[N - 1], buf, sizeof buf - 1, 0), 0);
    cr_assert_eq(status_of(buf), 503, "%s", buf);
    for (int i = 0; i < N; i++)
        close(fds[i]);
    ts_sleep_ms(100);
    assert_all_serving();
}

Test(http, garbage_requests_get_400)
{
    const char *bad[] = {
        "GARBAGE\r\n\r\n",
        "GET nopath HTTP/1.1\r\n\r\n",
        "GET / HTTP/2.0\r\n\r\n",
        "GET / HTTP/1.1\r\nNo colon here\r\n\r\n",
        "GET / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello",
        "GET /events?segment=../x HTTP/1.1\r\n\r\n",
        "\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char buf[1024];
        cr_assert_gt(get(bad[i], buf, sizeof buf), 0, "no answer to request %zu", i);
        cr_assert_eq(status_of(buf), 400, "request %zu: %s", i, buf);
    }
    assert_all_serving();
}

Test(http, segments_list_larger_than_a_stream_buffer)
{
    mmk_client *c = mmk_client_connect(srv.sock, 5000);
    cr_assert_not_null(c);
    enum { N = 8000 }; /* ~170 bytes each: more than the 1 MiB stream bound */
    for (int i = 0; i < N; i++) {
        char name[64];
        snprintf(name, sizeof name, "a-rather-long-segment-name-number-%05d", i);
        mmk_request q = { .op = MMK_OP_CREATE, .name = name, .size = 4096, .mode = 0644 };
        cr_assert_gt(mmk_client_submit(c, &q), 0);
        if (i % 500 == 499) /* take the replies now and then */
            for (int k = 0; k < 500; k++) {
                mmk_message m;
                cr_assert_eq(mmk_client_recv(c, &m, 5000), 0);
                cr_assert_eq(m.status, 0);
            }
    }
    mmk_client_close(c);
    static char buf[4 << 20];
    int n = get("GET /segments HTTP/1.1\r\nHost: t\r\n\r\n", buf, sizeof buf);
    cr_assert_gt(n, 0);
    cr_assert_eq(status_of(buf), 200);
    const char *body = strstr(buf, "\r\n\r\n");
    cr_assert_not_null(body);
    body += 4;
    size_t clen = 0;
    const char *cl = strstr(buf, "Content-Length: ");
    cr_assert_not_null(cl);
    sscanf(cl, "Content-Length: %zu", &clen);
    cr_assert_eq(clen, strlen(body), "Content-Length %zu, body %zu", clen, strlen(body));
    int count = 0;
    for (const char *p = body; (p = strstr(p, "\"name\":")); p++)
        count++;
    cr_assert_eq(count, N);
}
