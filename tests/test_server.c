/* test_server.c - mmkitd end to end through the client library: segments,
 * sharing, permissions between uids, read-only descriptors, seals, events,
 * asynchronous calls, crashed clients, persistence, several threads. */
#include "mmkit.h"
#include "server_util.h"

#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/mman.h>

static struct test_server srv;

static void start(void)
{
    memset(&srv, 0, sizeof srv);
    cr_assert_eq(ts_start(&srv), 0, "server did not start");
}

static void stop(void)
{
    ts_cleanup(&srv);
}

static mmk_client *client(void)
{
    mmk_client *c = mmk_client_connect(srv.sock, 5000);
    cr_assert_not_null(c, "connect: %s", strerror(errno));
    return c;
}

static int is_root(void)
{
    return geteuid() == 0;
}

TestSuite(server, .init = start, .fini = stop, .timeout = 60);

/* ---- segments ---------------------------------------------------------------- */

struct names {
    char v[16][MMK_SEG_NAME_MAX + 1];
    int n;
};

static int collect(const mmk_seg_info *in, void *arg)
{
    struct names *l = arg;
    if (l->n < 16)
        strcpy(l->v[l->n++], in->name);
    return 0;
}

/* Create name (size bytes, mode) and open it with flags; the descriptor. */
static int create_and_open(mmk_client *c, const char *name, uint64_t size, unsigned mode,
                           unsigned flags)
{
    cr_assert_eq(mmk_seg_create(c, name, size, mode), 0, "create %s", name);
    int fd = mmk_seg_open(c, name, flags, NULL);
    cr_assert_geq(fd, 0, "open %s: %d", name, fd);
    return fd;
}

Test(server, create_stat_list_remove)
{
    mmk_client *c = client();
    cr_assert_eq(mmk_seg_create(c, "beta", 8192, 0640), 0);
    cr_assert_eq(mmk_seg_create(c, "alpha", 4096, 0600), 0);
    cr_assert_eq(mmk_seg_create(c, "alpha", 4096, 0600), -EEXIST);
    mmk_seg_info in;
    cr_assert_eq(mmk_seg_stat(c, "beta", &in), 0);
    cr_assert_str_eq(in.name, "beta");
    cr_assert_eq(in.size, 8192);
    cr_assert_eq(in.mode, 0640);
    cr_assert_eq(in.uid, geteuid());
    cr_assert_eq(in.gid, getegid());
    cr_assert_eq(in.holders, 0);
    struct names l = { .n = 0 };
    cr_assert_eq(mmk_seg_list(c, collect, &l), 0);
    cr_assert_eq(l.n, 2);
    cr_assert_str_eq(l.v[0], "alpha"); /* name order */
    cr_assert_str_eq(l.v[1], "beta");
    cr_assert_eq(mmk_seg_remove(c, "alpha"), 0);
    cr_assert_eq(mmk_seg_stat(c, "alpha", &in), -ENOENT);
    cr_assert_eq(mmk_seg_remove(c, "alpha"), -ENOENT);
    cr_assert_eq(mmk_seg_open(c, "alpha", MMK_SEG_RDONLY, NULL), -ENOENT);
    mmk_client_close(c);
}

Test(server, bad_arguments_are_einval)
{
    mmk_client *c = client();
    cr_assert_eq(mmk_seg_create(c, "", 1, 0600), -EINVAL);
    cr_assert_eq(mmk_seg_create(c, "../etc", 1, 0600), -EINVAL);
    cr_assert_eq(mmk_seg_create(c, ".hidden", 1, 0600), -EINVAL);
    cr_assert_eq(mmk_seg_create(c, "a/b", 1, 0600), -EINVAL);
    cr_assert_eq(mmk_seg_create(c, "ok", 1, 01777), -EINVAL);
    char longname[MMK_SEG_NAME_MAX + 2];
    memset(longname, 'x', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    cr_assert_eq(mmk_seg_create(c, longname, 1, 0600), -EINVAL);
    longname[MMK_SEG_NAME_MAX] = '\0';
    cr_assert_eq(mmk_seg_create(c, longname, 1, 0600), 0, "a name of exactly the maximum length");
    cr_assert_eq(mmk_seg_open(c, "ok", 4, NULL), -EINVAL);
    cr_assert_eq(mmk_seg_create(c, "huge", (uint64_t)1 << 62, 0600), -EFBIG);
    cr_assert_eq(mmk_seg_create(c, "s", 4096, 0600), 0);
    cr_assert_eq(mmk_seg_publish(c, "s", 4097, 0, NULL), -ERANGE);
    cr_assert_eq(mmk_seg_publish(c, "s", 4000, 200, NULL), -ERANGE);
    cr_assert_eq(mmk_seg_grow(c, "s", 100), -EINVAL, "a segment never shrinks");
    cr_assert_eq(mmk_seg_release(c, "s"), -ENOENT, "nothing to release");
    mmk_client_close(c);
}

Test(server, two_clients_share_the_memory)
{
    mmk_client *a = client(), *b = client();
    cr_assert_eq(mmk_seg_create(a, "shared", 65536, 0600), 0);
    mmk_seg_info in;
    int wfd = mmk_seg_open(a, "shared", MMK_SEG_RDWR, &in);
    cr_assert_geq(wfd, 0);
    cr_assert_eq(in.size, 65536);
    cr_assert_eq(in.holders, 1);
    int rfd = mmk_seg_open(b, "shared", MMK_SEG_RDONLY, &in);
    cr_assert_geq(rfd, 0);
    cr_assert_eq(in.holders, 2);
    char *w = mmap(NULL, 65536, PROT_READ | PROT_WRITE, MAP_SHARED, wfd, 0);
    const char *r = mmap(NULL, 65536, PROT_READ, MAP_SHARED, rfd, 0);
    cr_assert_neq(w, MAP_FAILED);
    cr_assert_neq(r, MAP_FAILED);
    strcpy(w + 60000, "through the server");
    cr_assert_str_eq(r + 60000, "through the server");
    /* Closing the connections releases the holds; the memory stays. */
    mmk_client_close(b);
    cr_assert_eq(mmk_seg_release(a, "shared"), 0);
    cr_assert_eq(mmk_seg_stat(a, "shared", &in), 0);
    cr_assert_eq(in.holders, 0);
    mmk_client_close(a);
    mmk_client *c = client();
    int fd = mmk_seg_open(c, "shared", MMK_SEG_RDONLY, NULL);
    cr_assert_geq(fd, 0);
    char buf[32] = { 0 };
    cr_assert_eq(pread(fd, buf, 18, 60000), 18);
    cr_assert_str_eq(buf, "through the server", "contents outlive every client");
    /* Remove: the name goes at once, the memory stays for who holds it. */
    cr_assert_eq(mmk_seg_remove(c, "shared"), 0);
    cr_assert_str_eq(r + 60000, "through the server");
    cr_assert_eq(mmk_seg_open(c, "shared", MMK_SEG_RDONLY, NULL), -ENOENT);
    munmap(w, 65536);
    munmap((void *)r, 65536);
    close(fd);
    close(wfd);
    close(rfd);
    mmk_client_close(c);
}

/* ---- seals ------------------------------------------------------------------ */

Test(server, nobody_can_shrink_a_segment)
{
    mmk_client *c = client();
    int fd = create_and_open(c, "fixed", 16384, 0600, MMK_SEG_RDWR);
    char *p = mmap(NULL, 16384, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    cr_assert_neq(p, MAP_FAILED);
    p[16383] = 7;
    cr_assert_eq(ftruncate(fd, 4096), -1, "a holder cannot truncate the segment");
    cr_assert_eq(errno, EPERM);
    cr_assert_eq(fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 16384), 0,
                 "punching holes is allowed (it keeps the size)");
    cr_assert_eq(fcntl(fd, F_ADD_SEALS, F_SEAL_WRITE), -1, "no holder adds seals of its own");
    cr_assert_eq(errno, EPERM);
    int seals = fcntl(fd, F_GET_SEALS);
    cr_assert(seals & F_SEAL_SHRINK);
    cr_assert(seals & F_SEAL_SEAL);
    cr_assert_eq(p[16383], 0, "the page is still there to touch (no SIGBUS)");
    /* Growing goes through the server and keeps the seals. */
    cr_assert_eq(mmk_seg_grow(c, "fixed", 32768), 0);
    struct stat st;
    cr_assert_eq(fstat(fd, &st), 0);
    cr_assert_eq(st.st_size, 32768);
    munmap(p, 16384);
    close(fd);
    mmk_client_close(c);
}

Test(server, memfds_are_not_executable)
{
    mmk_client *c = client();
    int fd = create_and_open(c, "noexec", 4096, 0600, MMK_SEG_RDWR);
    struct stat st;
    cr_assert_eq(fstat(fd, &st), 0);
    cr_assert_eq(st.st_mode & 0777, 0600, "the memfd's inode is 0600, not world-writable");
    int seals = fcntl(fd, F_GET_SEALS);
#ifdef F_SEAL_EXEC
    if (!(seals & F_SEAL_EXEC))
        cr_log_warn("kernel without MFD_NOEXEC_SEAL: exec seal not set");
#endif
    (void)seals;
    cr_assert_eq(st.st_mode & 0111, 0, "no exec bits");
    close(fd);
    mmk_client_close(c);
}

/* ---- read-only descriptors ----------------------------------------------------- */

/* The three routes to writing through a read-only descriptor; 0 if all fail. */
static int try_to_write(int fd, size_t size)
{
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    CHILD_CHECK(p == MAP_FAILED && errno == EACCES);
    p = mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
    CHILD_CHECK(p != MAP_FAILED);
    CHILD_CHECK(mprotect(p, size, PROT_READ | PROT_WRITE) == -1 && errno == EACCES);
    munmap(p, size);
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    int rw = open(path, O_RDWR);
    CHILD_CHECK(rw < 0 && errno == EACCES);
    rw = open(path, O_WRONLY);
    CHILD_CHECK(rw < 0 && errno == EACCES);
    CHILD_CHECK(write(fd, "x", 1) == -1 && errno == EBADF);
    CHILD_CHECK(ftruncate(fd, (off_t)size * 2) == -1);
    CHILD_CHECK(fchmod(fd, 0666) == -1 && errno == EPERM);
    return 0;
}

static int ro_attacks_child(void *arg)
{
    (void)arg;
    mmk_client *c = mmk_client_connect(srv.sock, 5000);
    CHILD_CHECK(c != NULL);
    CHILD_CHECK(mmk_seg_open(c, "readme", MMK_SEG_RDWR, NULL) == -EACCES);
    int fd = mmk_seg_open(c, "readme", MMK_SEG_RDONLY, NULL);
    CHILD_CHECK(fd >= 0);
    int r = try_to_write(fd, 8192);
    if (r)
        return r;
    char b[6] = { 0 };
    CHILD_CHECK(pread(fd, b, 5, 0) == 5 && !strcmp(b, "magic"));
    mmk_client_close(c);
    return 0;
}

Test(server, read_only_descriptors_never_write_other_uid)
{
    if (!is_root())
        cr_skip_test("needs root to run a client as nobody");
    mmk_client *c = client();
    int fd = create_and_open(c, "readme", 8192, 0644, MMK_SEG_RDWR);
    cr_assert_eq(pwrite(fd, "magic", 5, 0), 5);
    int r = ts_as_nobody(ro_attacks_child, NULL);
    if (r == 250)
        cr_skip_test("cannot become nobody here");
    cr_assert_eq(r, 0, "a read-only descriptor was made to write (see the child's line above)");
    char b[6] = { 0 };
    cr_assert_eq(pread(fd, b, 5, 0), 5);
    cr_assert_str_eq(b, "magic", "the segment is unchanged");
    close(fd);
    mmk_client_close(c);
}

Test(server, read_only_descriptors_refuse_mmap_and_mprotect_same_uid)
{
    /* The server's own uid (and root) may reopen /proc/self/fd/N: only the
     * two mapping routes are promised to them. */
    mmk_client *c = client();
    int fd = create_and_open(c, "ro", 4096, 0644, MMK_SEG_RDONLY);
    void *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    cr_assert_eq(p, MAP_FAILED);
    cr_assert_eq(errno, EACCES);
    p = mmap(NULL, 4096, PROT_READ, MAP_SHARED, fd, 0);
    cr_assert_neq(p, MAP_FAILED);
    cr_assert_eq(mprotect(p, 4096, PROT_READ | PROT_WRITE), -1);
    cr_assert_eq(errno, EACCES);
    cr_assert_eq(write(fd, "x", 1), -1);
    munmap(p, 4096);
    close(fd);
    mmk_client_close(c);
}

/* ---- permissions between uids ------------------------------------------------- */

static int perms_child(void *arg)
{
    (void)arg;
    mmk_client *c = mmk_client_connect(srv.sock, 5000);
    CHILD_CHECK(c != NULL);
    /* root's 0600: invisible contents, no events, no changes. */
    CHILD_CHECK(mmk_seg_open(c, "private", MMK_SEG_RDONLY, NULL) == -EACCES);
    CHILD_CHECK(mmk_seg_subscribe(c, "private") == -EACCES);
    CHILD_CHECK(mmk_seg_publish(c, "private", 0, 0, NULL) == -EACCES);
    CHILD_CHECK(mmk_seg_grow(c, "private", 8192) == -EACCES);
    CHILD_CHECK(mmk_seg_remove(c, "private") == -EPERM);
    mmk_seg_info in;
    CHILD_CHECK(mmk_seg_stat(c, "private", &in) == 0 && in.mode == 0600); /* metadata is public */
    /* root's 0644: read, not write. */
    int fd = mmk_seg_open(c, "public", MMK_SEG_RDONLY, NULL);
    CHILD_CHECK(fd >= 0);
    close(fd);
    CHILD_CHECK(mmk_seg_open(c, "public", MMK_SEG_RDWR, NULL) == -EACCES);
    CHILD_CHECK(mmk_seg_subscribe(c, "public") == 0);
    CHILD_CHECK(mmk_seg_publish(c, "public", 0, 0, NULL) == -EACCES);
    /* root's 0666: write too, but still not remove (not the owner). */
    fd = mmk_seg_open(c, "open", MMK_SEG_RDWR, NULL);
    CHILD_CHECK(fd >= 0);
    CHILD_CHECK(pwrite(fd, "nobody was here", 15, 0) == 15);
    close(fd);
    CHILD_CHECK(mmk_seg_publish(c, "open", 0, 15, NULL) == 0);
    CHILD_CHECK(mmk_seg_remove(c, "open") == -EPERM);
    /* root's 0660, group root: nobody is not in it. */
    CHILD_CHECK(mmk_seg_open(c, "group", MMK_SEG_RDONLY, NULL) == -EACCES);
    /* Its own segment: owned by nobody, removable by it. */
    CHILD_CHECK(mmk_seg_create(c, "mine", 4096, 0600) == 0);
    CHILD_CHECK(mmk_seg_stat(c, "mine", &in) == 0 && in.uid == 65534 && in.gid == 65534);
    /* Subscribing to everything shows only what it may read. */
    CHILD_CHECK(mmk_seg_subscribe(c, NULL) == 0);
    mmk_client_close(c);
    return 0;
}

Test(server, permissions_between_two_users)
{
    if (!is_root())
        cr_skip_test("needs root to run a client as nobody");
    mmk_client *c = client();
    cr_assert_eq(mmk_seg_create(c, "private", 4096, 0600), 0);
    cr_assert_eq(mmk_seg_create(c, "public", 4096, 0644), 0);
    cr_assert_eq(mmk_seg_create(c, "open", 4096, 0666), 0);
    cr_assert_eq(mmk_seg_create(c, "group", 4096, 0660), 0);
    int r = ts_as_nobody(perms_child, NULL);
    if (r == 250)
        cr_skip_test("cannot become nobody here");
    cr_assert_eq(r, 0, "a permission check failed (see the child's line above)");
    int fd = mmk_seg_open(c, "open", MMK_SEG_RDONLY, NULL);
    char b[16] = { 0 };
    cr_assert_eq(pread(fd, b, 15, 0), 15);
    cr_assert_str_eq(b, "nobody was here");
    close(fd);
    mmk_seg_info in;
    cr_assert_eq(mmk_seg_stat(c, "mine", &in), 0);
    cr_assert_eq(in.uid, 65534);
    cr_assert_eq(mmk_seg_remove(c, "mine"), 0, "root removes anything");
    mmk_client_close(c);
}

struct filter_ctx {
    int saw_private, saw_public;
};

static int sub_all_child(void *arg)
{
    (void)arg;
    mmk_client *c = mmk_client_connect(srv.sock, 5000);
    CHILD_CHECK(c != NULL);
    CHILD_CHECK(mmk_seg_subscribe(c, NULL) == 0);
    /* Tell the parent we listen, then take events until "zz-last". */
    CHILD_CHECK(mmk_seg_create(c, "nobody-ready", 0, 0644) == 0);
    int saw_secret = 0, saw_visible = 0;
    for (;;) {
        mmk_seg_event ev;
        CHILD_CHECK(mmk_seg_next_event(c, &ev, 10000) == 0);
        if (!strcmp(ev.info.name, "secret"))
            saw_secret = 1;
        if (!strcmp(ev.info.name, "visible"))
            saw_visible = 1;
        if (!strcmp(ev.info.name, "zz-last"))
            break;
    }
    CHILD_CHECK(!saw_secret);
    CHILD_CHECK(saw_visible);
    mmk_client_close(c);
    return 0;
}

Test(server, subscribe_all_shows_only_readable_segments)
{
    if (!is_root())
        cr_skip_test("needs root to run a client as nobody");
    mmk_client *c = client();
    fflush(NULL);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        if (setgroups(0, NULL) || setgid(65534) || setuid(65534))
            _exit(250);
        _exit(sub_all_child(NULL) ? 1 : 0);
    }
    mmk_seg_info in;
    int i;
    for (i = 0; i < 500 && mmk_seg_stat(c, "nobody-ready", &in) != 0; i++)
        ts_sleep_ms(10);
    cr_assert_lt(i, 500, "the child never subscribed");
    cr_assert_eq(mmk_seg_create(c, "secret", 4096, 0600), 0);
    cr_assert_eq(mmk_seg_publish(c, "secret", 0, 0, NULL), 0);
    cr_assert_eq(mmk_seg_create(c, "visible", 4096, 0604), 0);
    cr_assert_eq(mmk_seg_create(c, "zz-last", 4096, 0644), 0);
    int st;
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    if (WIFEXITED(st) && WEXITSTATUS(st) == 250)
        cr_skip_test("cannot become nobody here");
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the child saw what it may not read");
    mmk_client_close(c);
}

/* ---- events ------------------------------------------------------------------ */

#define SUBSCRIBERS 6
#define PUBLISHES 200

struct sub_arg {
    pthread_barrier_t *ready;
    mmk_client *c;
    int got, in_order, ranges_ok;
};

static void *subscriber(void *p)
{
    struct sub_arg *a = p;
    mmk_client *c = a->c;
    if (!c || mmk_seg_subscribe(c, "news") != 0) {
        pthread_barrier_wait(a->ready);
        return NULL;
    }
    pthread_barrier_wait(a->ready);
    uint64_t last_seq = 0, last_version = 0;
    a->in_order = a->ranges_ok = 1;
    while (a->got < PUBLISHES) {
        mmk_seg_event ev;
        if (mmk_seg_next_event(c, &ev, 10000) != 0)
            break;
        if (ev.kind != MMK_EV_WRITE)
            continue;
        if (ev.seq <= last_seq || ev.info.version != last_version + 1)
            a->in_order = 0;
        if (ev.offset != (uint64_t)a->got * 8 || ev.length != 8 || strcmp(ev.info.name, "news"))
            a->ranges_ok = 0;
        last_seq = ev.seq;
        last_version = ev.info.version;
        a->got++;
    }
    mmk_client_close(c);
    return NULL;
}

Test(server, subscribers_receive_every_publish_in_order)
{
    mmk_client *c = client();
    cr_assert_eq(mmk_seg_create(c, "news", 4096, 0644), 0);
    pthread_barrier_t ready;
    pthread_barrier_init(&ready, NULL, SUBSCRIBERS + 1);
    pthread_t t[SUBSCRIBERS];
    struct sub_arg args[SUBSCRIBERS];
    memset(args, 0, sizeof args);
    for (int i = 0; i < SUBSCRIBERS; i++) {
        /* Half read the segment's event ring, half get event messages. */
        setenv("MMKIT_EVENT_RING", i % 2 ? "0" : "1", 1);
        args[i].c = mmk_client_connect(srv.sock, 5000);
        unsetenv("MMKIT_EVENT_RING");
        args[i].ready = &ready;
        pthread_create(&t[i], NULL, subscriber, &args[i]);
    }
    pthread_barrier_wait(&ready);
    mmk_seg_info in;
    cr_assert_eq(mmk_seg_stat(c, "news", &in), 0);
    cr_assert_eq(in.subscribers, SUBSCRIBERS);
    for (int i = 0; i < PUBLISHES; i++) {
        uint64_t v;
        cr_assert_eq(mmk_seg_publish(c, "news", (uint64_t)i * 8, 8, &v), 0);
        cr_assert_eq(v, (uint64_t)i + 1);
    }
    for (int i = 0; i < SUBSCRIBERS; i++) {
        pthread_join(t[i], NULL);
        cr_expect_not_null(args[i].c, "subscriber %d could not connect", i);
        cr_expect_eq(args[i].got, PUBLISHES, "subscriber %d got %d events", i, args[i].got);
        cr_expect(args[i].in_order, "subscriber %d: events out of order", i);
        cr_expect(args[i].ranges_ok, "subscriber %d: wrong ranges", i);
    }
    pthread_barrier_destroy(&ready);
    mmk_client_close(c);
}

Test(server, event_kinds_create_attach_detach_remove)
{
    mmk_client *w = client(), *c = client();
    cr_assert_eq(mmk_seg_subscribe(w, NULL), 0);
    int fd = create_and_open(c, "life", 4096, 0600, MMK_SEG_RDONLY);
    close(fd);
    cr_assert_eq(mmk_seg_grow(c, "life", 8192), 0);
    cr_assert_eq(mmk_seg_release(c, "life"), 0);
    cr_assert_eq(mmk_seg_remove(c, "life"), 0);
    unsigned want[] = { MMK_EV_CREATE, MMK_EV_ATTACH, MMK_EV_WRITE, MMK_EV_DETACH, MMK_EV_REMOVE };
    uint64_t seq = 0;
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        mmk_seg_event ev;
        cr_assert_eq(mmk_seg_next_event(w, &ev, 5000), 0);
        cr_assert_eq(ev.kind, want[i], "event %zu is %u, expected %u", i, ev.kind, want[i]);
        cr_assert_str_eq(ev.info.name, "life");
        if (i)
            cr_assert_eq(ev.seq, seq + 1, "sequence numbers have no gaps");
        seq = ev.seq;
        if (want[i] == MMK_EV_ATTACH)
            cr_assert_eq(ev.info.holders, 1);
        if (want[i] == MMK_EV_WRITE) {
            cr_assert_eq(ev.offset, 4096);
            cr_assert_eq(ev.length, 4096);
            cr_assert_eq(ev.info.size, 8192);
        }
    }
    mmk_seg_event ev;
    cr_assert_eq(mmk_seg_next_event(w, &ev, 100), -ETIMEDOUT);
    mmk_client_close(c);
    mmk_client_close(w);
}

/* ---- asynchronous calls -------------------------------------------------------- */

Test(server, sixty_four_outstanding_requests_matched_by_id)
{
    mmk_client *c = client();
    cr_assert_eq(mmk_seg_create(c, "async", 4096, 0600), 0);
    enum { N = 64 };
    int ids[N];
    unsigned ops[N];
    for (int i = 0; i < N; i++) {
        mmk_request q = { .name = "async" };
        switch (i % 4) {
        case 0: q.op = MMK_OP_STAT; break;
        case 1: q.op = MMK_OP_PUBLISH; q.offset = (uint64_t)i; q.length = 1; break;
        case 2: q.op = MMK_OP_OPEN; q.flags = MMK_SEG_RDONLY; break;
        default: q.op = MMK_OP_STAT; q.name = "missing"; break;
        }
        ops[i] = q.op;
        ids[i] = mmk_client_submit(c, &q);
        cr_assert_gt(ids[i], 0);
    }
    int seen[N] = { 0 };
    for (int k = 0; k < N; k++) {
        mmk_message m;
        cr_assert_eq(mmk_client_recv(c, &m, 5000), 0);
        cr_assert_eq(m.kind, MMK_MSG_REPLY);
        int i;
        for (i = 0; i < N && ids[i] != (int)m.id; i++)
            ;
        cr_assert_lt(i, N, "reply to an id never submitted: %u", m.id);
        cr_assert_eq(seen[i], 0, "two replies to id %u", m.id);
        seen[i] = 1;
        cr_assert_eq(m.op, ops[i]);
        if (i % 4 == 3) {
            cr_assert_eq(m.status, -ENOENT);
        } else {
            cr_assert_eq(m.status, 0);
            cr_assert_str_eq(m.info.name, "async");
        }
        if (ops[i] == MMK_OP_OPEN) {
            cr_assert_geq(m.fd, 0);
            close(m.fd);
        } else {
            cr_assert_eq(m.fd, -1);
        }
    }
    mmk_seg_info in;
    cr_assert_eq(mmk_seg_stat(c, "async", &in), 0);
    cr_assert_eq(in.version, N / 4);
    cr_assert_eq(in.holders, N / 4);
    mmk_client_close(c);
}

Test(server, sync_calls_keep_async_replies_and_events)
{
    mmk_client *c = client();
    cr_assert_eq(mmk_seg_create(c, "mix", 4096, 0600), 0);
    cr_assert_eq(mmk_seg_subscribe(c, "mix"), 0);
    mmk_request q = { .op = MMK_OP_PING };
    int id = mmk_client_submit(c, &q);
    cr_assert_gt(id, 0);
    cr_assert_eq(mmk_seg_publish(c, "mix", 0, 0, NULL), 0); /* reads the ping reply and an event */
    cr_assert_eq(mmk_client_pending(c), 2);
    mmk_seg_event ev;
    cr_assert_eq(mmk_seg_next_event(c, &ev, 0), 0);
    cr_assert_eq(ev.kind, MMK_EV_WRITE);
    mmk_message m;
    cr_assert_eq(mmk_client_recv(c, &m, 0), 0);
    cr_assert_eq(m.kind, MMK_MSG_REPLY);
    cr_assert_eq(m.id, (uint32_t)id);
    cr_assert_eq(mmk_client_recv(c, &m, 0), -ETIMEDOUT);
    mmk_client_close(c);
}

/* ---- clients that go away ------------------------------------------------------ */

Test(server, crashed_client_is_detached)
{
    mmk_client *c = client();
    cr_assert_eq(mmk_seg_create(c, "crash", 4096, 0600), 0);
    fflush(NULL);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        mmk_client *k = mmk_client_connect(srv.sock, 5000);
        if (!k || mmk_seg_open(k, "crash", MMK_SEG_RDWR, NULL) < 0 ||
            mmk_seg_open(k, "crash", MMK_SEG_RDONLY, NULL) < 0 || mmk_seg_subscribe(k, "crash"))
            _exit(1);
        raise(SIGKILL);
    }
    int st;
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    cr_assert(WIFSIGNALED(st), "the child failed before crashing");
    mmk_seg_info in;
    int i;
    for (i = 0; i < 500; i++) {
        cr_assert_eq(mmk_seg_stat(c, "crash", &in), 0);
        if (in.holders == 0 && in.subscribers == 0)
            break;
        ts_sleep_ms(10);
    }
    cr_assert_eq(in.holders, 0, "the crashed client still holds the segment");
    cr_assert_eq(in.subscribers, 0);
    mmk_client_close(c);
}

/* ---- persistence ---------------------------------------------------------------- */

Test(server, restart_with_state_dir_keeps_contents)
{
    ts_stop(&srv);
    const char *args[] = { "--state-dir", srv.state, NULL };
    cr_assert_eq(ts_start_args(&srv, args), 0);
    mmk_client *c = client();
    cr_assert_eq(mmk_seg_create(c, "kept", 1 << 20, 0640), 0);
    cr_assert_eq(mmk_seg_create(c, "empty", 0, 0600), 0);
    cr_assert_eq(mmk_seg_create(c, "gone", 4096, 0600), 0);
    int fd = mmk_seg_open(c, "kept", MMK_SEG_RDWR, NULL);
    cr_assert_geq(fd, 0);
    cr_assert_eq(pwrite(fd, "first page", 10, 0), 10);
    cr_assert_eq(pwrite(fd, "last bytes", 10, (1 << 20) - 10), 10);
    cr_assert_eq(mmk_seg_publish(c, "kept", 0, 0, NULL), 0);
    cr_assert_eq(mmk_seg_remove(c, "gone"), 0);
    close(fd);
    mmk_client_close(c);
    cr_assert_eq(ts_stop(&srv), 0, "SIGTERM is a clean stop");

    cr_assert_eq(ts_start_args(&srv, args), 0);
    c = client();
    mmk_seg_info in;
    cr_assert_eq(mmk_seg_stat(c, "kept", &in), 0);
    cr_assert_eq(in.size, 1 << 20);
    cr_assert_eq(in.mode, 0640);
    cr_assert_eq(in.version, 1);
    cr_assert_eq(mmk_seg_stat(c, "empty", &in), 0);
    cr_assert_eq(in.size, 0);
    cr_assert_eq(mmk_seg_stat(c, "gone", &in), -ENOENT);
    fd = mmk_seg_open(c, "kept", MMK_SEG_RDONLY, NULL);
    cr_assert_geq(fd, 0);
    char b[11] = { 0 };
    cr_assert_eq(pread(fd, b, 10, 0), 10);
    cr_assert_str_eq(b, "first page");
    cr_assert_eq(pread(fd, b, 10, (1 << 20) - 10), 10);
    cr_assert_str_eq(b, "last bytes");
    cr_assert_eq(fcntl(fd, F_GET_SEALS) & F_SEAL_SHRINK, F_SEAL_SHRINK, "restored segments are sealed");
    close(fd);
    mmk_client_close(c);
}

/* ---- several threads ------------------------------------------------------------- */

#define THREADS 8
#define ROUNDS 50

static void *worker(void *p)
{
    long id = (long)(intptr_t)p, failures = 0;
    mmk_client *c = mmk_client_connect(srv.sock, 5000);
    if (!c)
        return (void *)(intptr_t)1000;
    for (int r = 0; r < ROUNDS; r++) {
        char name[32];
        snprintf(name, sizeof name, "t%ld-%d", id, r);
        failures += mmk_seg_create(c, name, 4096, 0600) != 0;
        int fd = mmk_seg_open(c, name, MMK_SEG_RDWR, NULL);
        failures += fd < 0;
        if (fd >= 0) {
            failures += pwrite(fd, name, strlen(name), 0) != (ssize_t)strlen(name);
            close(fd);
        }
        failures += mmk_seg_publish(c, name, 0, 0, NULL) != 0;
        failures += mmk_seg_release(c, name) != 0;
        if (r % 2)
            failures += mmk_seg_remove(c, name) != 0;
    }
    mmk_client_close(c);
    return (void *)(intptr_t)failures;
}

static int count_one(const mmk_seg_info *in, void *arg)
{
    (void)in;
    ++*(int *)arg;
    return 0;
}

Test(server, many_threads_many_clients)
{
    pthread_t t[THREADS];
    for (long i = 0; i < THREADS; i++)
        pthread_create(&t[i], NULL, worker, (void *)(intptr_t)i);
    for (int i = 0; i < THREADS; i++) {
        void *r;
        pthread_join(t[i], &r);
        cr_expect_eq((intptr_t)r, 0, "thread %d: %ld failed calls", i, (long)(intptr_t)r);
    }
    mmk_client *c = client();
    int n = 0;
    cr_assert_eq(mmk_seg_list(c, count_one, &n), 0);
    cr_assert_eq(n, THREADS * ROUNDS / 2, "list pages through every segment");
    mmk_client_close(c);
}

/* ---- socket activation ------------------------------------------------------------ */

Test(server, listen_fds_socket_activation)
{
    ts_stop(&srv); /* this test starts its own, the systemd way */
    char path[100];
    snprintf(path, sizeof path, "%.64s/activated", srv.dir);
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
    int l = socket(AF_UNIX, SOCK_SEQPACKET, 0);
    cr_assert_eq(bind(l, (struct sockaddr *)&sa, sizeof sa), 0);
    cr_assert_eq(listen(l, 16), 0);
    const char *b = getenv("MMKIT_BUILD");
    char bin[256];
    snprintf(bin, sizeof bin, "%s/mmkit", b && *b ? b : "build");
    fflush(NULL);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        char pidstr[32];
        dup2(l, 3);
        snprintf(pidstr, sizeof pidstr, "%d", (int)getpid());
        setenv("LISTEN_PID", pidstr, 1);
        setenv("LISTEN_FDS", "1", 1);
        /* --socket names a path it must not use: the passed socket wins. */
        execl(bin, bin, "server", "--quiet", "--socket", "/nonexistent/dir/sock", (char *)NULL);
        _exit(127);
    }
    close(l);
    mmk_client *c = NULL;
    for (int i = 0; i < 500 && !c; i++) {
        c = mmk_client_connect(path, 1000);
        if (!c)
            ts_sleep_ms(10);
    }
    cr_assert_not_null(c, "the activated server does not answer");
    cr_assert_eq(mmk_seg_create(c, "activated", 4096, 0600), 0);
    mmk_client_close(c);
    kill(pid, SIGTERM);
    int st;
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    cr_assert_eq(access(path, F_OK), 0, "a passed socket belongs to systemd: not unlinked");
}
