/* cli.h - shared declarations of the mmkit command-line tool. */
#ifndef MMK_CLI_H
#define MMK_CLI_H

#include <stddef.h>
#include <stdio.h>

/* Subcommands: each returns the process exit status. */
int cmd_demo(int argc, char **argv);
int cmd_ipcs(int argc, char **argv);  /* tools/ipcs.c */
int cmd_ipcrm(int argc, char **argv); /* tools/ipcs.c */
int cmd_symbolize(int argc, char **argv); /* symbolize.c */

/*
 * Demo chapters.  Each prints a short, readable account of one module at
 * work and returns 0, or prints what went wrong and returns 1.
 */
int demo_fault(void);
int demo_mirror(void);
int demo_arena(void);
int demo_region(void);
int demo_shm(void);   /* tools/demo_shm.c */
int demo_gc(void);
int demo_server(void);

/*
 * Run fn(arg) in a child process whose stderr goes into buf (at most cap-1
 * bytes, NUL-terminated).  Returns the child's wait status, or -1.
 */
int cli_run_captured(void (*fn)(void *), void *arg, char *buf, size_t cap);
/* Print how a child ended ("child died of signal N (name)" or its status). */
void cli_print_end(const char *prefix, int status);

/* ---- segment server commands (server.c, seg.c, watch.c) ---------------- */

#include "mmkit.h"

int cmd_server(int argc, char **argv);
int cmd_seg(int argc, char **argv);
int cmd_watch(int argc, char **argv);

struct cli_client_opts {
    const char *socket; /* --socket PATH, else the default */
    int json;           /* --json */
    int timeout_ms;     /* --timeout MS, else the library's default */
};
/* Take --socket, --json and --timeout out of argv. */
int cli_client_opts(int *argc, char **argv, struct cli_client_opts *o);
/* Connect, or print why not and return NULL. */
mmk_client *cli_connect(const struct cli_client_opts *o);
/* "64K", "1M", "2G", "1T" or a plain number into bytes; 0 or -1. */
int cli_parse_size(const char *s, unsigned long long *out);
void cli_print_info(const mmk_seg_info *in, int json);

/* Print s to stdout as a JSON string literal, quotes, backslashes and
 * control bytes escaped (tools/json.c). */
void cli_json_string(const char *s);

/* Print "mmkit: " + a formatted message + newline to stderr. */
void cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
