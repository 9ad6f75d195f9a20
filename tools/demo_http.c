/* demo_http.c - the server demo's HTTP part: a port for the feed, and one
 * event read back the way curl -N would. */
#include "demo_http.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int demo_http_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = { .sin_family = AF_INET };
    socklen_t len = sizeof a;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int port = 0;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    if (fd >= 0)
        close(fd);
    return port;
}

int demo_http_event(int port, char *out, size_t cap)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((unsigned short)port) };
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    static const char req[] = "GET /events?since=0 HTTP/1.1\r\nHost: demo\r\n\r\n";
    char buf[8192];
    size_t have = 0;
    int rc = -1;
    if (send(fd, req, sizeof req - 1, MSG_NOSIGNAL) == (ssize_t)(sizeof req - 1)) {
        while (have < sizeof buf - 1) {
            struct pollfd p = { .fd = fd, .events = POLLIN };
            ssize_t n = poll(&p, 1, 3000) == 1 ? recv(fd, buf + have, sizeof buf - 1 - have, 0) : -1;
            if (n <= 0)
                break;
            have += (size_t)n;
            buf[have] = '\0';
            char *ev = strstr(buf, "\nevent: write\n");
            char *id = ev ? ev : NULL;
            while (id && id > buf && strncmp(id, "\nid: ", 5) != 0)
                id--;
            if (ev && id > buf) {
                unsigned long long seq = 0;
                sscanf(id, "\nid: %llu", &seq);
                snprintf(out, cap, "id: %llu, event: write", seq);
                rc = 0;
                break;
            }
        }
    }
    close(fd);
    return rc;
}
