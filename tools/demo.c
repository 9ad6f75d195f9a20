/* demo.c - `mmkit demo`: a guided tour, one chapter per module. */
#include "cli.h"

#include <string.h>

static const struct {
    const char *name;
    const char *title;
    int (*run)(void);
} chapters[] = {
    { "fault", "The fault router: one SIGSEGV/SIGBUS handler, many owners", demo_fault },
    { "mirror", "Mirrors: one memory, a read-write and a read-only address", demo_mirror },
    { "arena", "Growable arenas: a mapped file that grows when touched", demo_arena },
    { "snapshot", "Regions and snapshots: unlimited, nested, copy-on-write", demo_region },
    { "shm", "SysV shared memory over files: segments that outlive their processes", demo_shm },
    { "gc", "A lazy copying garbage collector: pauses that follow the roots", demo_gc },
    { "server", "mmkitd: segments handed out by a server, with pushed events", demo_server },
};

#define NCHAPTERS (sizeof chapters / sizeof chapters[0])

int cmd_demo(int argc, char **argv)
{
    int failed = 0, ran = 0;
    for (size_t i = 0; i < NCHAPTERS; i++) {
        int wanted = argc < 2;
        for (int j = 1; j < argc; j++)
            wanted |= !strcmp(argv[j], chapters[i].name);
        if (!wanted)
            continue;
        printf("\n== %zu. %s ==\n\n", i + 1, chapters[i].title);
        fflush(stdout);
        if (chapters[i].run() != 0)
            failed++;
        ran++;
    }
    if (ran == 0) {
        cli_error("no such chapter; chapters are:");
        for (size_t i = 0; i < NCHAPTERS; i++)
            fprintf(stderr, "  %s\n", chapters[i].name);
        return 2;
    }
    printf("\n%d chapter%s, %s\n", ran, ran == 1 ? "" : "s",
           failed ? "SOME FAILED" : "all working");
    return failed ? 1 : 0;
}
