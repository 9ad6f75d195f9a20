/* main.c - the mmkit command-line tool: a thin dispatcher over subcommands. */
#include "cli.h"
#include "mmkit.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void cli_error(const char *fmt, ...)
{
    va_list ap;
    fputs("mmkit: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

static int cmd_version(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    printf("mmkit %s\n", mmk_version());
    return 0;
}

static int cmd_help(int argc, char **argv);

static const struct {
    const char *name;
    int (*fn)(int, char **);
    const char *help;
} commands[] = {
    { "demo", cmd_demo, "a guided tour of every module (demo [CHAPTER...])" },
    { "ipcs", cmd_ipcs, "list mmkit's SysV segments (ipcs [--json] [-l])" },
    { "ipcrm", cmd_ipcrm, "remove mmkit SysV segments (ipcrm -m ID | -M KEY | --all)" },
    { "symbolize", cmd_symbolize, "name the frames of a fault report (symbolize [--debug-dir DIR] < REPORT)" },
    { "server", cmd_server, "run mmkitd, the segment server (server --help)" },
    { "seg", cmd_seg, "segments of a running server: create, ls, stat, rm, write, cat, ..." },
    { "watch", cmd_watch, "print a segment's events as they arrive (watch [NAME] [--json])" },
    { "version", cmd_version, "print the library version" },
    { "help", cmd_help, "this list" },
};

static int cmd_help(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    puts("usage: mmkit COMMAND [ARGS...]\n\ncommands:");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        printf("  %-10s %s\n", commands[i].name, commands[i].help);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        cmd_help(0, NULL);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))
        return cmd_help(argc - 1, argv + 1);
    if (!strcmp(argv[1], "--version"))
        return cmd_version(argc - 1, argv + 1);
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name))
            return commands[i].fn(argc - 1, argv + 1);
    cli_error("unknown command '%s' (try 'mmkit help')", argv[1]);
    return 2;
}
