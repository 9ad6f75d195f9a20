/* seg.c - `mmkit seg ...`: segments of a running mmkitd, over the public
 * client API (mmk_client_*, mmk_seg_*). */
#include "cli.h"
#include "mmkit.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

int cli_parse_size(const char *s, unsigned long long *out)
{
    char *end;
    if (!s || !*s || *s == '-')
        return -1;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s)
        return -1;
    unsigned shift = 0;
    switch (*end) {
    case 'k': case 'K': shift = 10; end++; break;
    case 'm': case 'M': shift = 20; end++; break;
    case 'g': case 'G': shift = 30; end++; break;
    case 't': case 'T': shift = 40; end++; break;
    default: break;
    }
    if (*end && strcmp(end, "B") && strcmp(end, "iB"))
        return -1;
    if (shift && v > (~0ull >> shift))
        return -1;
    *out = v << shift;
    return 0;
}

/* Options shared by seg and watch; removes them from argv.  Returns 0. */
int cli_client_opts(int *argc, char **argv, struct cli_client_opts *o)
{
    int j = 0;
    for (int i = 0; i < *argc; i++) {
        if (!strcmp(argv[i], "--socket") && i + 1 < *argc) {
            o->socket = argv[++i];
        } else if (!strcmp(argv[i], "--json")) {
            o->json = 1;
        } else if (!strcmp(argv[i], "--timeout") && i + 1 < *argc) {
            o->timeout_ms = atoi(argv[++i]);
        } else {
            argv[j++] = argv[i];
        }
    }
    *argc = j;
    argv[j] = NULL;
    return 0;
}

mmk_client *cli_connect(const struct cli_client_opts *o)
{
    mmk_client *c = mmk_client_connect(o->socket, o->timeout_ms);
    if (!c) {
        char path[256];
        int e = errno;
        if (!o->socket && mmk_server_default_path(path, sizeof path) < 0)
            strcpy(path, "(default socket)");
        cli_error("cannot reach the server at %s: %s", o->socket ? o->socket : path,
                  mmk_strerror(e));
    }
    return c;
}

void cli_print_info(const mmk_seg_info *in, int json)
{
    if (json) {
        printf("{\"name\":");
        cli_json_string(in->name);
        printf(",\"size\":%" PRIu64 ",\"mode\":\"%04o\",\"uid\":%u,\"gid\":%u,\"version\":%" PRIu64
               ",\"holders\":%u,\"subscribers\":%u,\"mtime_ns\":%" PRIu64 "}",
               in->size, in->mode, in->uid, in->gid, in->version, in->holders, in->subscribers,
               in->mtime_ns);
    } else {
        printf("%-24s %12" PRIu64 " %04o %6u %6u v%-6" PRIu64 " holders %u subscribers %u", in->name,
               in->size, in->mode, in->uid, in->gid, in->version, in->holders, in->subscribers);
    }
}

struct list_ctx {
    int json, n;
};

static int print_one(const mmk_seg_info *in, void *arg)
{
    struct list_ctx *l = arg;
    if (l->json)
        fputs(l->n ? ",\n " : "[", stdout);
    cli_print_info(in, l->json);
    if (!l->json)
        putchar('\n');
    l->n++;
    return 0;
}

static int fail(const char *what, const char *name, int e)
{
    cli_error("%s %s: %s", what, name, mmk_strerror(e));
    return 1;
}

/* Find "--opt N" in argv; 0 and *v (default kept) or -1 for a bad value. */
static int opt_size(int argc, char **argv, const char *opt, unsigned long long *v)
{
    for (int i = 0; i < argc; i++)
        if (!strcmp(argv[i], opt))
            return i + 1 < argc && !cli_parse_size(argv[i + 1], v) ? 0 : -1;
    return 0;
}

static int seg_write(mmk_client *c, const char *name, unsigned long long off)
{
    mmk_seg_info in;
    int fd = mmk_seg_open(c, name, MMK_SEG_RDWR, &in);
    if (fd < 0)
        return fail("open", name, fd);
    int rc = 1;
    char *map = NULL;
    if (off > in.size) {
        cli_error("write %s: offset %llu is past the end (%" PRIu64 " bytes)", name, off, in.size);
        goto out;
    }
    if (in.size) {
        map = mmap(NULL, in.size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (map == MAP_FAILED) {
            map = NULL;
            cli_error("mmap %s: %s", name, strerror(errno));
            goto out;
        }
    }
    uint64_t pos = off;
    for (;;) {
        char extra;
        ssize_t n = pos < in.size ? read(0, map + pos, in.size - pos) : read(0, &extra, 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            cli_error("write %s: reading stdin: %s", name, strerror(errno));
            goto out;
        }
        if (n == 0)
            break;
        if (pos >= in.size) {
            cli_error("write %s: input does not fit in %" PRIu64 " bytes at offset %llu", name,
                      in.size, off);
            goto out;
        }
        pos += (uint64_t)n;
    }
    uint64_t version;
    int e = mmk_seg_publish(c, name, off, pos - off, &version);
    if (e) {
        fail("publish", name, e);
        goto out;
    }
    rc = 0;
out:
    if (map)
        munmap(map, in.size);
    close(fd);
    mmk_seg_release(c, name);
    return rc;
}

static int seg_cat(mmk_client *c, const char *name)
{
    mmk_seg_info in;
    int fd = mmk_seg_open(c, name, MMK_SEG_RDONLY, &in);
    if (fd < 0)
        return fail("open", name, fd);
    int rc = 0;
    if (in.size) {
        char *map = mmap(NULL, in.size, PROT_READ, MAP_SHARED, fd, 0);
        if (map == MAP_FAILED) {
            cli_error("mmap %s: %s", name, strerror(errno));
            rc = 1;
        } else {
            if (fwrite(map, 1, in.size, stdout) != in.size)
                rc = 1;
            munmap(map, in.size);
        }
    }
    close(fd);
    mmk_seg_release(c, name);
    return rc;
}

static int seg_usage(void)
{
    fputs("usage: mmkit seg create NAME SIZE [--mode 0640]\n"
          "       mmkit seg ls [--json]\n"
          "       mmkit seg stat NAME [--json]\n"
          "       mmkit seg rm NAME\n"
          "       mmkit seg grow NAME SIZE\n"
          "       mmkit seg write NAME [--offset N] < data\n"
          "       mmkit seg publish NAME [--offset N --length N]\n"
          "       mmkit seg cat NAME\n"
          "  every one also takes --socket PATH and --timeout MS\n",
          stderr);
    return 2;
}

int cmd_seg(int argc, char **argv)
{
    struct cli_client_opts o = { 0 };
    cli_client_opts(&argc, argv, &o);
    if (argc < 2)
        return seg_usage();
    const char *sub = argv[1], *name = argc > 2 ? argv[2] : NULL;
    unsigned long long off = 0, len = 0, mode = 0600, size = 0;
    int needs_name = strcmp(sub, "ls") != 0;
    if ((needs_name && !name) || opt_size(argc, argv, "--offset", &off) ||
        opt_size(argc, argv, "--length", &len))
        return seg_usage();
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--mode")) {
            char *end;
            if (i + 1 >= argc || (mode = strtoull(argv[i + 1], &end, 8), *end) || mode > 0777) {
                cli_error("seg: bad mode (octal, at most 0777)");
                return 2;
            }
        }
    }
    if ((!strcmp(sub, "create") || !strcmp(sub, "grow")) &&
        (argc < 4 || cli_parse_size(argv[3], &size))) {
        cli_error("seg %s: SIZE must be a number with an optional K, M, G or T suffix", sub);
        return 2;
    }
    mmk_client *c = cli_connect(&o);
    if (!c)
        return 1;
    int rc = 0, e = 0;
    if (!strcmp(sub, "create")) {
        e = mmk_seg_create(c, name, size, (unsigned)mode);
        rc = e ? fail("create", name, e) : 0;
    } else if (!strcmp(sub, "ls")) {
        struct list_ctx l = { o.json, 0 };
        e = mmk_seg_list(c, print_one, &l);
        if (o.json)
            puts(l.n ? "]" : "[]");
        rc = e ? fail("list", "", e) : 0;
    } else if (!strcmp(sub, "stat")) {
        mmk_seg_info in;
        e = mmk_seg_stat(c, name, &in);
        if (e) {
            rc = fail("stat", name, e);
        } else {
            cli_print_info(&in, o.json);
            putchar('\n');
        }
    } else if (!strcmp(sub, "rm")) {
        e = mmk_seg_remove(c, name);
        rc = e ? fail("remove", name, e) : 0;
    } else if (!strcmp(sub, "grow")) {
        e = mmk_seg_grow(c, name, size);
        rc = e ? fail("grow", name, e) : 0;
    } else if (!strcmp(sub, "write")) {
        rc = seg_write(c, name, off);
    } else if (!strcmp(sub, "publish")) {
        uint64_t v;
        e = mmk_seg_publish(c, name, off, len, &v);
        if (e)
            rc = fail("publish", name, e);
        else
            printf("%s version %" PRIu64 "\n", name, v);
    } else if (!strcmp(sub, "cat")) {
        rc = seg_cat(c, name);
    } else {
        cli_error("seg: unknown subcommand '%s'", sub);
        rc = seg_usage();
    }
    mmk_client_close(c);
    return rc;
}
