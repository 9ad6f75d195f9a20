/*
 * server.c - mmkitd start-up and shutdown: the listening socket (bound to
 * a path, or handed over by systemd through LISTEN_FDS), the signals that
 * stop it (SIGTERM, SIGINT, SIGHUP through a signalfd, so they are ordinary
 * loop events), and the final save to the state directory.
 */
#include "server.h"
#include "sys.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/un.h>
#include <unistd.h>

/* The first descriptor systemd passes (sd_listen_fds(3)). */
#define SD_LISTEN_FDS_START 3

static void vlog(const char *fmt, va_list ap)
{
    char line[1024];
    vsnprintf(line, sizeof line, fmt, ap);
    fprintf(stderr, "mmkitd: %s\n", line);
}

void mmk__log(const struct mmk__srv *srv, const char *fmt, ...)
{
    if (srv->opts.quiet)
        return;
    va_list ap;
    va_start(ap, fmt);
    vlog(fmt, ap);
    va_end(ap);
}

void mmk__err(const struct mmk__srv *srv, const char *fmt, ...)
{
    (void)srv;
    va_list ap;
    va_start(ap, fmt);
    vlog(fmt, ap);
    va_end(ap);
}

static void on_listen(struct mmk__watch *w, uint32_t events)
{
    (void)events;
    mmk__conn_accept((struct mmk__srv *)((char *)w - offsetof(struct mmk__srv, listen_w)));
}

static void on_signal(struct mmk__watch *w, uint32_t events)
{
    struct mmk__srv *srv = (struct mmk__srv *)((char *)w - offsetof(struct mmk__srv, signal_w));
    struct signalfd_siginfo si;
    (void)events;
    while (mmk__sys_read(w->fd, &si, sizeof si) == (ssize_t)sizeof si) {
        if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT || si.ssi_signo == SIGHUP) {
            mmk__log(srv, "signal %u: stopping", si.ssi_signo);
            srv->loop.stop = 1;
        }
    }
}

/* A socket systemd passed, if LISTEN_PID/LISTEN_FDS name one for us. */
static int socket_from_systemd(void)
{
    const char *pid = getenv("LISTEN_PID"), *fds = getenv("LISTEN_FDS");
    if (!pid || !fds || atol(pid) != (long)getpid() || atoi(fds) < 1)
        return -ENOENT;
    unsetenv("LISTEN_PID");
    unsetenv("LISTEN_FDS");
    unsetenv("LISTEN_FDNAMES");
    int fd = SD_LISTEN_FDS_START, type = 0, domain = 0;
    socklen_t len = sizeof type;
    if (mmk__sys_getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) || type != SOCK_SEQPACKET)
        return -ENOTSOCK;
    len = sizeof domain;
    if (mmk__sys_getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) || domain != AF_UNIX)
        return -ENOTSOCK;
    int fl = mmk__sys_fcntl(fd, F_GETFL, 0);
    if (fl < 0 || mmk__sys_fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0 ||
        mmk__sys_fcntl(fd, F_SETFD, FD_CLOEXEC) < 0)
        return -EBADF;
    return fd;
}

/* Bind path, replacing a stale socket but never a live server's. */
static int socket_at(const char *path)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    if (strlen(path) >= sizeof sa.sun_path)
        return -ENAMETOOLONG;
    strcpy(sa.sun_path, path);
    int fd = mmk__sys_socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return fd;
    int e = mmk__sys_bind(fd, (struct sockaddr *)&sa, sizeof sa);
    if (e == -EADDRINUSE) {
        int probe = mmk__sys_socket(AF_UNIX, SOCK_SEQPACKET, 0);
        int live = probe >= 0 && mmk__sys_connect(probe, (struct sockaddr *)&sa, sizeof sa) == 0;
        if (probe >= 0)
            mmk__sys_close(probe);
        if (live) {
            mmk__sys_close(fd);
            return -EADDRINUSE;
        }
        mmk__sys_unlink(path);
        e = mmk__sys_bind(fd, (struct sockaddr *)&sa, sizeof sa);
    }
    /* Everyone may connect; each segment's mode decides what they get. */
    if (!e)
        e = mmk__sys_chmod(path, 0666);
    if (!e)
        e = mmk__sys_listen(fd, SOMAXCONN);
    if (e) {
        mmk__sys_close(fd);
        return e;
    }
    return fd;
}

/* After each batch of loop events: the socket clients' deferred closes
 * (and the index write).  The HTTP feed (http_srv.c) needs no hook here. */
static void after_batch(void *arg)
{
    mmk__conn_after_batch(arg);
}

static int setup(struct mmk__srv *srv, const char *path)
{
    int e = mmk__loop_init(&srv->loop);
    if (e)
        return e;
    srv->loop.after_batch = after_batch;
    srv->loop.after_ctx = srv;
    e = mmk__events_init(&srv->events, (size_t)srv->opts.backlog, 1);
    if (!e)
        e = mmk__events_add_sink(&srv->events, mmk__conn_event_sink, srv);
    if (e)
        return e;
    mmk__segtab_init(&srv->segs, (size_t)srv->opts.max_segments, srv->opts.max_size);
    if (srv->opts.state_dir) {
        e = mmk__persist_load(srv);
        if (e) {
            mmk__err(srv, "state dir %s: %s", srv->opts.state_dir, mmk_strerror(e));
            return e;
        }
    }

    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGHUP); /* a closed terminal: stop cleanly, do not lose contents */
    e = mmk__sys_sigmask(SIG_BLOCK, &mask, NULL);
    int sfd = e ? e : mmk__sys_signalfd(&mask);
    if (sfd < 0)
        return sfd;
    srv->signal_w.fd = sfd;
    srv->signal_w.fn = on_signal;
    struct sigaction ign = { .sa_handler = SIG_IGN };
    mmk__sys_sigaction(SIGPIPE, &ign, NULL);

    int lfd = socket_from_systemd();
    if (lfd == -ENOENT) {
        lfd = socket_at(path);
        srv->own_socket = lfd >= 0;
        if (lfd == -EADDRINUSE)
            mmk__err(srv, "%s: another server is running there", path);
        else if (lfd < 0)
            mmk__err(srv, "%s: %s", path, mmk_strerror(lfd));
    } else if (lfd < 0) {
        mmk__err(srv, "LISTEN_FDS: descriptor 3 is not a Unix SOCK_SEQPACKET socket");
    }
    if (lfd < 0)
        return lfd;
    srv->listen_w.fd = lfd;
    srv->listen_w.fn = on_listen;
    e = mmk__loop_add(&srv->loop, &srv->listen_w, EPOLLIN);
    if (!e)
        e = mmk__loop_add(&srv->loop, &srv->signal_w, EPOLLIN);
    if (!e)
        e = mmk__http_srv_start(srv);
    return e;
}

static void teardown(struct mmk__srv *srv, const char *path, int served)
{
    mmk__http_srv_stop(srv);
    if (srv->listen_w.fd >= 0)
        mmk__sys_close(srv->listen_w.fd);
    if (srv->own_socket)
        mmk__sys_unlink(path);
    /* Only a server that served may write the state: one that failed to
     * start (another server owns the socket) must not overwrite it. */
    if (served && srv->opts.state_dir) {
        int e = mmk__persist_all(srv);
        if (!e)
            mmk__log(srv, "saved %zu segment%s to %s", srv->segs.n, srv->segs.n == 1 ? "" : "s",
                     srv->opts.state_dir);
    }
    /* Nobody listens any more: no events while the connections go. */
    srv->events.nsinks = 0;
    while (srv->conns)
        mmk__conn_close(srv->conns, NULL);
    srv->index_dirty = 0;
    mmk__conn_after_batch(srv);
    free(srv->suball);
    mmk__segtab_fini(&srv->segs);
    mmk__events_fini(&srv->events);
    if (srv->signal_w.fd >= 0)
        mmk__sys_close(srv->signal_w.fd);
    mmk__loop_fini(&srv->loop);
}

int mmk__server_run(const struct mmk__srv_opts *opts)
{
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    struct mmk__srv *srv = calloc(1, sizeof *srv);
    if (!srv) {
        fprintf(stderr, "mmkitd: out of memory\n");
        return 1;
    }
    srv->opts = *opts;
    srv->listen_w.fd = srv->signal_w.fd = -1;
    if (srv->opts.max_clients <= 0)
        srv->opts.max_clients = 4096;
    if (srv->opts.max_per_uid <= 0)
        srv->opts.max_per_uid = 1024;
    if (srv->opts.max_segments <= 0)
        srv->opts.max_segments = 65536;
    if (!srv->opts.max_size)
        srv->opts.max_size = (uint64_t)1 << 40;
    if (srv->opts.hello_ms <= 0)
        srv->opts.hello_ms = 5000;
    if (srv->opts.http_heartbeat_ms <= 0)
        srv->opts.http_heartbeat_ms = 15000;
    if (srv->opts.backlog <= 0)
        srv->opts.backlog = 4096;
    if (opts->socket_path) {
        snprintf(path, sizeof path, "%s", opts->socket_path);
        if (strlen(opts->socket_path) >= sizeof path) {
            fprintf(stderr, "mmkitd: socket path too long\n");
            free(srv);
            return 1;
        }
    } else if (mmk_server_default_path(path, sizeof path) < 0) {
        fprintf(stderr, "mmkitd: socket path too long\n");
        free(srv);
        return 1;
    }
    int limit = mmk__sys_raise_nofile();
    if (limit > 0 && limit < srv->opts.max_clients + 64) {
        srv->opts.max_clients = limit > 128 ? limit - 64 : limit / 2;
        mmk__log(srv, "descriptor limit %d: at most %d clients", limit, srv->opts.max_clients);
    }

    int e = setup(srv, path);
    int status = 1, served = 0;
    if (!e) {
        served = 1;
        mmk__log(srv, "serving %zu segment%s on %s", srv->segs.n, srv->segs.n == 1 ? "" : "s",
                 srv->own_socket ? path : "the socket systemd passed");
        if (opts->ready_fd >= 0) {
            char c = 1;
            mmk__sys_write_all(opts->ready_fd, &c, 1);
            mmk__sys_close(opts->ready_fd);
        }
        e = mmk__loop_run(&srv->loop);
        if (e)
            mmk__err(srv, "event loop: %s", mmk_strerror(e));
        status = e ? 1 : 0;
    }
    teardown(srv, path, served);
    free(srv);
    return status;
}
