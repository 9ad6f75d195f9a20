/*
 * sys_http.c - the few system call wrappers the HTTP feed adds to those of
 * sys.c and sys_net.c.  Same contract: 0 or a result, -errno on failure,
 * errno left as the caller had it.
 */
#include "sys.h"

#include <errno.h>
#include <time.h>

#define SAVE_ERRNO int saved_errno_ = errno
#define RESULT(ok_expr, res) \
    do { long r_ = (ok_expr) ? (long)(res) : -(long)errno; errno = saved_errno_; return r_; } while (0)

int mmk__sys_getsockname(int fd, struct sockaddr *addr, socklen_t *len)
{
    SAVE_ERRNO;
    RESULT(getsockname(fd, addr, len) == 0, 0);
}

int mmk__sys_getpeername(int fd, struct sockaddr *addr, socklen_t *len)
{
    SAVE_ERRNO;
    RESULT(getpeername(fd, addr, len) == 0, 0);
}

int mmk__sys_shutdown(int fd, int how)
{
    SAVE_ERRNO;
    RESULT(shutdown(fd, how) == 0, 0);
}

ssize_t mmk__sys_send_now(int fd, const void *buf, size_t len)
{
    SAVE_ERRNO;
    ssize_t n;
    do
        n = send(fd, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT);
    while (n < 0 && errno == EINTR);
    RESULT(n >= 0, n);
}

ssize_t mmk__sys_recv_now(int fd, void *buf, size_t len)
{
    SAVE_ERRNO;
    ssize_t n;
    do
        n = recv(fd, buf, len, MSG_DONTWAIT);
    while (n < 0 && errno == EINTR);
    RESULT(n >= 0, n);
}

uint64_t mmk__sys_monotonic_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}
