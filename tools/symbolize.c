/*
 * symbolize.c - `mmkit symbolize [--debug-dir DIR] < report`: name the
 * frames of an mmkit fault report.
 *
 * Reads the whole report from stdin, renames every frame line by its key
 * (object path, build-id, file offset) and writes the result to stdout in
 * one piece at the end: a dying process runs this as its symbolizer and
 * treats "exit status 0" as "the frames are out", so nothing may be
 * written before the answer is complete.  Other lines pass unchanged.
 */
#include "cli.h"
#include "mmkit.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void usage(void)
{
    fputs("usage: mmkit symbolize [--debug-dir DIR] < REPORT\n", stderr);
}

/* All of stdin, NUL-terminated. */
static char *read_all(size_t *len)
{
    size_t cap = 65536, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        if (cap - n < 4096) {
            char *b = cap > ((size_t)1 << 30) ? NULL : realloc(buf, cap * 2);
            if (!b)
                break;
            buf = b;
            cap *= 2;
        }
        ssize_t r = read(0, buf + n, cap - n - 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            break;
        if (r == 0) {
            buf[n] = '\0';
            *len = n;
            return buf;
        }
        n += (size_t)r;
    }
    free(buf);
    return NULL;
}

int cmd_symbolize(int argc, char **argv)
{
    const char *dir = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--debug-dir") && i + 1 < argc) {
            dir = argv[++i];
        } else if (!strncmp(argv[i], "--debug-dir=", 12)) {
            dir = argv[i] + 12;
        } else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage();
            return 0;
        } else {
            usage();
            return 2;
        }
    }
    size_t len, out_len;
    char *in = read_all(&len);
    if (!in) {
        cli_error("symbolize: cannot read the report: %s", strerror(errno));
        return 1;
    }
    char *out = mmk_report_symbolize(in, len, dir, &out_len);
    int rc = 0;
    if (!out) {
        cli_error("symbolize: %s", strerror(errno));
        rc = 1;
    } else {
        size_t done = 0;
        while (done < out_len) {
            ssize_t w = write(1, out + done, out_len - done);
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0) {
                rc = 1;
                break;
            }
            done += (size_t)w;
        }
    }
    free(out);
    free(in);
    return rc;
}
