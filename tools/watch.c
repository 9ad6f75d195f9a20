/* watch.c - `mmkit watch [NAME]`: print a segment's events as they arrive
 * (every readable segment's without NAME). */
#include "cli.h"
#include "mmkit.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *kind_name(unsigned k)
{
    switch (k) {
    case MMK_EV_CREATE: return "create";
    case MMK_EV_WRITE:  return "write";
    case MMK_EV_REMOVE: return "remove";
    case MMK_EV_ATTACH: return "attach";
    case MMK_EV_DETACH: return "detach";
    default:            return "unknown";
    }
}

static void print_event(const mmk_seg_event *ev, int json)
{
    if (json) {
        printf("{\"seq\":%" PRIu64 ",\"event\":\"%s\",\"offset\":%" PRIu64 ",\"length\":%" PRIu64
               ",\"segment\":",
               ev->seq, kind_name(ev->kind), ev->offset, ev->length);
        cli_print_info(&ev->info, 1);
        puts("}");
    } else {
        printf("%" PRIu64 " %s %s size %" PRIu64 " version %" PRIu64, ev->seq, kind_name(ev->kind),
               ev->info.name, ev->info.size, ev->info.version);
        if (ev->kind == MMK_EV_WRITE)
            printf(" offset %" PRIu64 " length %" PRIu64, ev->offset, ev->length);
        printf(" holders %u\n", ev->info.holders);
    }
    fflush(stdout);
}

int cmd_watch(int argc, char **argv)
{
    struct cli_client_opts o = { 0 };
    cli_client_opts(&argc, argv, &o);
    long count = -1;
    const char *name = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--count") && i + 1 < argc) {
            count = atol(argv[++i]);
        } else if (argv[i][0] == '-' || name) {
            fputs("usage: mmkit watch [NAME] [--json] [--count N] [--socket PATH]\n", stderr);
            return 2;
        } else {
            name = argv[i];
        }
    }
    mmk_client *c = cli_connect(&o);
    if (!c)
        return 1;
    int e = mmk_seg_subscribe(c, name);
    if (e) {
        cli_error("watch %s: %s", name ? name : "(all)", mmk_strerror(e));
        mmk_client_close(c);
        return 1;
    }
    int rc = 0;
    for (long n = 0; count < 0 || n < count; n++) {
        mmk_seg_event ev;
        do
            e = mmk_seg_next_event(c, &ev, 3600 * 1000);
        while (e == -ETIMEDOUT);
        if (e == -EOVERFLOW) {
            /* Fell behind the segment's event ring: say so, go on. */
            fprintf(stderr, "mmkit watch: events lost (this reader fell behind)\n");
            n--;
            continue;
        }
        if (e) {
            cli_error("watch: %s", mmk_strerror(e));
            rc = 1;
            break;
        }
        print_event(&ev, o.json);
        if (ev.kind == MMK_EV_REMOVE && name)
            break; /* the name is gone: nothing more will come */
    }
    mmk_client_close(c);
    return rc;
}
