/* test_server_robust.c - clients that misbehave: silent ones, garbage,
 * oversized and truncated messages, descriptors sent to the server, slow
 * readers, too many clients.  None may crash or stall the server. */
#include "mmkit.h"
#include "proto.h"
#include "server_util.h"

#include <criterion/criterion.h>
#include <poll.h>
#include <stdint.h>

static struct test_server srv;

static void start_with(const char *const *args)
{
    memset(&srv, 0, sizeof srv);
    cr_assert_eq(ts_start_args(&srv, args), 0, "server did not start");
}

static void start(void)
{
    static const char *const args[] = { "--hello-timeout", "300", "--max-clients", "200", NULL };
    start_with(args);
}

static void stop(void)
{
    ts_cleanup(&srv);
}

/* The server still answers a well-behaved client, quickly. */
static void assert_serving(void)
{
    cr_assert(ts_alive(&srv), "the server died");
    mmk_client *c = mmk_client_connect(srv.sock, 2000);
    cr_assert_not_null(c, "a good client cannot connect: %s", strerror(errno));
    mmk_seg_info in;
    int e = mmk_seg_stat(c, "probe", &in);
    if (e == -ENOENT)
        e = mmk_seg_create(c, "probe", 4096, 0600);
    cr_assert_eq(e, 0, "a good client is not served: %s", mmk_strerror(e));
    mmk_client_close(c);
}

/* Wait for a datagram (or the end) on fd; returns recv's result. */
static ssize_t recv_wait(int fd, void *buf, size_t len, int ms)
{
    struct pollfd p = { .fd = fd, .events = POLLIN };
    if (poll(&p, 1, ms) <= 0)
        return -2;
    return recv(fd, buf, len, 0);
}

static size_t hello(uint8_t *buf, uint32_t id)
{
    struct mmk__req q = { .op = MMK__T_HELLO, .id = id };
    return (size_t)mmk__proto_put_req(buf, &q);
}

TestSuite(robust, .init = start, .fini = stop, .timeout = 60);

Test(robust, silent_client_is_closed_after_the_hello_timeout)
{
    int fd = ts_raw(&srv);
    cr_assert_geq(fd, 0);
    assert_serving(); /* while it sits there */
    uint8_t buf[256];
    ssize_t n = recv_wait(fd, buf, sizeof buf, 5000);
    cr_assert_eq(n, 0, "the server should have hung up on a client that said nothing (got %zd)", n);
    close(fd);
}

Test(robust, many_idle_connections_do_not_stall_others)
{
    int fds[100];
    for (int i = 0; i < 100; i++) {
        fds[i] = ts_raw(&srv);
        cr_assert_geq(fds[i], 0);
    }
    for (int i = 0; i < 20; i++)
        assert_serving();
    for (int i = 0; i < 100; i++)
        close(fds[i]);
}

Test(robust, garbage_gets_an_error_or_a_hangup_never_a_crash)
{
    uint8_t buf[MMK__PROTO_MAX + 64];
    unsigned seed = 12345;
    for (int round = 0; round < 200; round++) {
        int fd = ts_raw(&srv);
        cr_assert_geq(fd, 0);
        size_t len = hello(buf, 1);
        cr_assert_eq(send(fd, buf, len, 0), (ssize_t)len);
        cr_assert_gt(recv_wait(fd, buf, sizeof buf, 2000), 0);
        /* A valid request, then bytes changed at random. */
        struct mmk__req q = { .op = (uint16_t)(2 + round % 11), .id = 7, .a = 4096, .namelen = 3 };
        memcpy(q.name, "abc", 3);
        len = (size_t)mmk__proto_put_req(buf, &q);
        for (int k = 0; k < 1 + round % 5; k++) {
            seed = seed * 1103515245 + 12345;
            buf[(seed >> 8) % len] = (uint8_t)(seed >> 16);
        }
        if (round % 7 == 0)
            len = (seed >> 4) % len; /* truncated */
        send(fd, buf, len, 0);
        ssize_t n = recv_wait(fd, buf, sizeof buf, 2000);
        cr_assert_neq(n, -2, "round %d: no reply and no hang-up", round);
        close(fd);
    }
    assert_serving();
}

Test(robust, bad_request_gets_an_error_reply_with_its_id)
{
    int fd = ts_raw(&srv);
    uint8_t buf[512];
    size_t len = hello(buf, 1);
    send(fd, buf, len, 0);
    cr_assert_gt(recv_wait(fd, buf, sizeof buf, 2000), 0);
    struct mmk__req q = { .op = MMK_OP_CREATE, .id = 99, .a = 4096, .namelen = 4 };
    memcpy(q.name, "a/..", 4); /* bad name: the client library would refuse it */
    len = (size_t)mmk__proto_put_req(buf, &q);
    cr_assert_eq(send(fd, buf, len, 0), (ssize_t)len);
    ssize_t n = recv_wait(fd, buf, sizeof buf, 2000);
    cr_assert_gt(n, 0);
    struct mmk__reply r;
    cr_assert_eq(mmk__proto_parse_reply(buf, (size_t)n, &r), 0);
    cr_assert_eq(r.id, 99);
    cr_assert_eq(r.status, -EINVAL);
    /* Unknown flag bits, a mode on a non-create, a name on a ping. */
    struct mmk__req bad[] = {
        { .op = MMK_OP_OPEN, .id = 100, .flags = 0x80, .namelen = 1, .name = "x" },
        { .op = MMK_OP_STAT, .id = 101, .mode = 0644, .namelen = 1, .name = "x" },
        { .op = MMK_OP_PING, .id = 102, .namelen = 1, .name = "x" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        len = (size_t)mmk__proto_put_req(buf, &bad[i]);
        send(fd, buf, len, 0);
        n = recv_wait(fd, buf, sizeof buf, 2000);
        cr_assert_gt(n, 0);
        cr_assert_eq(mmk__proto_parse_reply(buf, (size_t)n, &r), 0);
        cr_assert_eq(r.id, bad[i].id);
        cr_assert_eq(r.status, -EINVAL);
    }
    /* The connection still works. */
    struct mmk__req ping = { .op = MMK_OP_PING, .id = 103 };
    len = (size_t)mmk__proto_put_req(buf, &ping);
    send(fd, buf, len, 0);
    n = recv_wait(fd, buf, sizeof buf, 2000);
    cr_assert_eq(mmk__proto_parse_reply(buf, (size_t)n, &r), 0);
    cr_assert_eq(r.id, 103);
    cr_assert_eq(r.status, 0);
    close(fd);
}

Test(robust, request_before_hello_is_refused)
{
    int fd = ts_raw(&srv);
    uint8_t buf[512];
    struct mmk__req q = { .op = MMK_OP_LIST, .id = 5 };
    size_t len = (size_t)mmk__proto_put_req(buf, &q);
    send(fd, buf, len, 0);
    ssize_t n = recv_wait(fd, buf, sizeof buf, 2000);
    struct mmk__reply r;
    cr_assert_eq(mmk__proto_parse_reply(buf, (size_t)n, &r), 0);
    cr_assert_eq(r.id, 5);
    cr_assert_eq(r.status, -EPROTO);
    close(fd);
}

Test(robust, oversized_message_is_refused)
{
    int fd = ts_raw(&srv);
    static uint8_t big[MMK__PROTO_MAX * 2];
    size_t len = hello(big, 1);
    send(fd, big, len, 0);
    recv_wait(fd, big, 512, 2000);
    memset(big, 0xab, sizeof big);
    int sz = 1 << 20;
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz);
    ssize_t s = send(fd, big, sizeof big, 0);
    cr_assert_eq(s, (ssize_t)sizeof big);
    uint8_t reply[512];
    ssize_t n = recv_wait(fd, reply, sizeof reply, 2000);
    cr_assert_neq(n, -2, "no answer to an oversized message");
    if (n > 0) {
        struct mmk__reply r;
        cr_assert_eq(mmk__proto_parse_reply(reply, (size_t)n, &r), 0);
        cr_assert_lt(r.status, 0);
    }
    close(fd);
    assert_serving();
}

Test(robust, descriptors_sent_to_the_server_are_closed)
{
    /* The server must not keep what a client pushes at it.  We cannot see
     * its table directly; send many and check it keeps serving and that
     * our own descriptors are refused, not accepted. */
    int fd = ts_raw(&srv);
    uint8_t buf[512];
    size_t len = hello(buf, 1);
    send(fd, buf, len, 0);
    recv_wait(fd, buf, sizeof buf, 2000);
    int before = ts_count_fds(getpid());
    for (int i = 0; i < 300; i++) {
        int p[2];
        cr_assert_eq(pipe(p), 0);
        struct mmk__req q = { .op = MMK_OP_PING, .id = (uint32_t)(10 + i) };
        len = (size_t)mmk__proto_put_req(buf, &q);
        union { struct cmsghdr h; char space[CMSG_SPACE(2 * sizeof(int))]; } ctl;
        memset(&ctl, 0, sizeof ctl);
        struct iovec iov = { buf, len };
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.space,
                             .msg_controllen = sizeof ctl.space };
        struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(2 * sizeof(int));
        memcpy(CMSG_DATA(cm), p, sizeof p);
        ssize_t s = sendmsg(fd, &mh, 0);
        close(p[0]);
        close(p[1]);
        if (s < 0)
            break; /* the server hung up on us: also fine */
        ssize_t n = recv_wait(fd, buf, sizeof buf, 2000);
        if (n <= 0)
            break;
        struct mmk__reply r;
        cr_assert_eq(mmk__proto_parse_reply(buf, (size_t)n, &r), 0);
        cr_assert_lt(r.status, 0, "a message carrying descriptors was accepted");
    }
    close(fd);
    cr_assert_eq(ts_count_fds(getpid()), before - 1, "descriptors leaked on our side");
    assert_serving();
}

Test(robust, slow_subscriber_is_dropped_publisher_unaffected)
{
    setenv("MMKIT_EVENT_RING", "0", 1); /* events as messages on its socket */
    mmk_client *slow = mmk_client_connect(srv.sock, 5000);
    unsetenv("MMKIT_EVENT_RING");
    mmk_client *pub = mmk_client_connect(srv.sock, 5000);
    cr_assert_not_null(slow);
    cr_assert_not_null(pub);
    cr_assert_eq(mmk_seg_create(pub, "flood", 4096, 0644), 0);
    cr_assert_eq(mmk_seg_subscribe(slow, "flood"), 0);
    /* The slow one never reads: its socket buffer, then its bounded queue,
     * fill, and the server lets it go instead of growing without bound. */
    for (int i = 0; i < 20000; i++)
        cr_assert_eq(mmk_seg_publish(pub, "flood", 0, 0, NULL), 0, "publish %d", i);
    mmk_seg_info in;
    cr_assert_eq(mmk_seg_stat(pub, "flood", &in), 0);
    cr_assert_eq(in.subscribers, 0, "the slow subscriber is still attached");
    mmk_client_close(slow);
    mmk_client_close(pub);
    assert_serving();
}

Test(robust, slow_ring_subscriber_learns_it_lost_events_publisher_unaffected)
{
    mmk_client *slow = mmk_client_connect(srv.sock, 5000);
    mmk_client *pub = mmk_client_connect(srv.sock, 5000);
    cr_assert_not_null(slow);
    cr_assert_not_null(pub);
    cr_assert_eq(mmk_seg_create(pub, "flood", 4096, 0644), 0);
    cr_assert_eq(mmk_seg_subscribe(slow, "flood"), 0);
    /* A ring reader costs the server nothing per event: it stays, and when
     * it reads again it is told that it fell behind, then gets the newest. */
    uint64_t v = 0;
    for (int i = 0; i < 20000; i++)
        cr_assert_eq(mmk_seg_publish(pub, "flood", 0, 0, &v), 0, "publish %d", i);
    mmk_seg_info in;
    cr_assert_eq(mmk_seg_stat(pub, "flood", &in), 0);
    cr_assert_eq(in.subscribers, 1);
    mmk_seg_event ev;
    cr_assert_eq(mmk_seg_next_event(slow, &ev, 0), -EOVERFLOW);
    uint64_t last = 0;
    int n = 0;
    while (mmk_seg_next_event(slow, &ev, 0) == 0) {
        cr_assert_eq(ev.kind, MMK_EV_WRITE);
        cr_assert_str_eq(ev.info.name, "flood");
        if (n++)
            cr_assert_eq(ev.info.version, last + 1, "the events kept are consecutive");
        last = ev.info.version;
    }
    cr_assert_gt(n, 0);
    cr_assert_eq(last, v, "the newest event is there");
    mmk_client_close(slow);
    mmk_client_close(pub);
    assert_serving();
}

Test(robust, client_limit_gives_a_clear_error)
{
    ts_cleanup(&srv);
    static const char *const args[] = { "--max-clients", "4", NULL };
    start_with(args);
    mmk_client *c[4];
    for (int i = 0; i < 4; i++) {
        c[i] = mmk_client_connect(srv.sock, 2000);
        cr_assert_not_null(c[i], "client %d", i);
    }
    errno = 0;
    mmk_client *x = mmk_client_connect(srv.sock, 2000);
    cr_assert_null(x, "a fifth client was accepted");
    cr_assert_eq(errno, EMFILE, "errno %d (%s)", errno, strerror(errno));
    mmk_client_close(c[0]);
    int ok = 0;
    for (int i = 0; i < 100 && !ok; i++) { /* the server sees the close soon */
        x = mmk_client_connect(srv.sock, 2000);
        ok = x != NULL;
        if (!ok)
            ts_sleep_ms(10);
    }
    cr_assert(ok, "a freed slot is not reused");
    mmk_client_close(x);
    for (int i = 1; i < 4; i++)
        mmk_client_close(c[i]);
}

Test(robust, client_times_out_instead_of_waiting_forever)
{
    /* A "server" that accepts and never answers. */
    char path[100];
    snprintf(path, sizeof path, "%.64s/mute", srv.dir);
    int l = socket(AF_UNIX, SOCK_SEQPACKET, 0);
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
    cr_assert_eq(bind(l, (struct sockaddr *)&sa, sizeof sa), 0);
    cr_assert_eq(listen(l, 4), 0);
    errno = 0;
    mmk_client *c = mmk_client_connect(path, 200);
    cr_assert_null(c);
    cr_assert_eq(errno, ETIMEDOUT);
    close(l);
}

Test(robust, segment_limit_gives_enospc)
{
    ts_cleanup(&srv);
    static const char *const args[] = { "--max-segments", "3", "--max-size", "1M", NULL };
    start_with(args);
    mmk_client *c = mmk_client_connect(srv.sock, 2000);
    cr_assert_not_null(c);
    cr_assert_eq(mmk_seg_create(c, "a", 4096, 0600), 0);
    cr_assert_eq(mmk_seg_create(c, "b", 4096, 0600), 0);
    cr_assert_eq(mmk_seg_create(c, "too-big", (1 << 20) + 1, 0600), -EFBIG);
    cr_assert_eq(mmk_seg_create(c, "c", 1 << 20, 0600), 0);
    cr_assert_eq(mmk_seg_create(c, "d", 4096, 0600), -ENOSPC);
    cr_assert_eq(mmk_seg_grow(c, "a", (1 << 20) + 4096), -EFBIG);
    cr_assert_eq(mmk_seg_remove(c, "a"), 0);
    cr_assert_eq(mmk_seg_create(c, "d", 4096, 0600), 0, "a removed name frees its slot");
    mmk_client_close(c);
}

Test(robust, sighup_stops_cleanly_and_keeps_contents)
{
    ts_stop(&srv); /* again, with a state dir */
    const char *args[] = { "--state-dir", srv.state, NULL };
    cr_assert_eq(ts_start_args(&srv, args), 0);
    mmk_client *c = mmk_client_connect(srv.sock, 2000);
    cr_assert_eq(mmk_seg_create(c, "hup", 4096, 0600), 0);
    int fd = mmk_seg_open(c, "hup", MMK_SEG_RDWR, NULL);
    cr_assert_eq(pwrite(fd, "kept", 4, 0), 4);
    close(fd);
    mmk_client_close(c);
    kill(srv.pid, SIGHUP);
    int st;
    cr_assert_eq(waitpid(srv.pid, &st, 0), srv.pid);
    srv.pid = 0;
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "SIGHUP is a clean stop");
    cr_assert_eq(ts_start_args(&srv, args), 0);
    c = mmk_client_connect(srv.sock, 2000);
    fd = mmk_seg_open(c, "hup", MMK_SEG_RDONLY, NULL);
    cr_assert_geq(fd, 0);
    char b[5] = { 0 };
    cr_assert_eq(pread(fd, b, 4, 0), 4);
    cr_assert_str_eq(b, "kept");
    close(fd);
    mmk_client_close(c);
}

static int per_uid_child(void *arg)
{
    (void)arg;
    mmk_client *a = mmk_client_connect(srv.sock, 2000), *b = mmk_client_connect(srv.sock, 2000);
    CHILD_CHECK(a && b);
    errno = 0;
    CHILD_CHECK(mmk_client_connect(srv.sock, 2000) == NULL && errno == EMFILE);
    mmk_client_close(a);
    mmk_client_close(b);
    return 0;
}

Test(robust, one_uid_cannot_take_every_slot)
{
    if (geteuid() != 0)
        cr_skip_test("needs root to run clients as nobody");
    ts_cleanup(&srv);
    static const char *const args[] = { "--max-per-uid", "2", NULL };
    start_with(args);
    int r = ts_as_nobody(per_uid_child, NULL);
    if (r == 250)
        cr_skip_test("cannot become nobody here");
    cr_assert_eq(r, 0, "the per-uid limit did not hold (see the child's line above)");
    mmk_client *c[3];
    for (int i = 0; i < 3; i++) {
        c[i] = mmk_client_connect(srv.sock, 2000);
        cr_assert_not_null(c[i], "root is not limited per uid");
    }
    for (int i = 0; i < 3; i++)
        mmk_client_close(c[i]);
}
