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

/*
 * Run fn(arg) in a child process whose stderr goes into buf (at most cap-1
 * bytes, NUL-terminated).  Returns the child's wait status, or -1.
 */
int cli_run_captured(void (*fn)(void *), void *arg, char *buf, size_t cap);
/* Print how a child ended ("child died of signal N (name)" or its status). */
void cli_print_end(const char *prefix, int status);

/* Print "mmkit: " + a formatted message + newline to stderr. */
void cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
