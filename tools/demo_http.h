/* demo_http.h - the HTTP feed's part of the server demo chapter. */
#ifndef MMKIT_DEMO_HTTP_H
#define MMKIT_DEMO_HTTP_H

#include <stddef.h>

/* A free loopback TCP port for the demo server's --http, or 0. */
int demo_http_port(void);
/* Read GET /events?since=0 from 127.0.0.1:port until a write event is in;
 * put its "id: N / event: write" lines into out (one line).  0 or -1. */
int demo_http_event(int port, char *out, size_t cap);

#endif
