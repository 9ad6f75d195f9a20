/*
 * report_text.h - internal: the text of a fault report's frame lines, read
 * and rewritten outside signal handlers (by the reporter thread and by
 * `mmkit symbolize`).  The input is untrusted: it may come from anywhere.
 *
 * A frame line is
 *     "    #N NAME [PATH+0xOFF va=0xADDR id=BUILDID]"
 * where NAME is what a reader reads ("function (file.c:LINE)",
 * "function+0xOFF (object)", "object+0xOFF") and the bracket, the key, is
 * what a symbolizer needs: the object's path when the report was made, the
 * file offset of the address in it, its address in the file's own address
 * space (optional; a debug file has segments without file contents, so only
 * the address finds a place in it) and, if the object has one, its build-id
 * in hex.  Frame 0 is the faulting instruction; every later frame
 * is a return address (the call is the instruction before it).
 */
#ifndef MMK_REPORT_TEXT_H
#define MMK_REPORT_TEXT_H

#include <stddef.h>
#include <stdint.h>

enum { MMK__KEY_ID_MAX = 64 };

struct mmk__frame_key {
    unsigned index;               /* N */
    size_t indent;                /* characters before '#' */
    const char *path;             /* into the line, not NUL-terminated */
    size_t path_len;
    uint64_t offset;              /* file offset */
    uint64_t vaddr;               /* ELF address, if has_vaddr */
    int has_vaddr;
    unsigned char build_id[MMK__KEY_ID_MAX];
    size_t build_id_len;          /* 0: none given */
    const char *key;              /* "[...]", into the line */
    size_t key_len;
};

enum { MMK__INLINED_MAX = 8 };

/* What a symbolizer found for a frame; NULL/0 fields are unknown. */
struct mmk__frame_name {
    const char *function;
    uint64_t function_offset;     /* of the address from the function's start */
    const char *file;             /* shown as its last component */
    int line;
    /* Calls inlined into function at this address, innermost first, each
     * with its own line: written as lines of their own before the frame's,
     * "    #N callee (file.c:LINE) (inlined)", which carry no key. */
    size_t ninlined;
    struct {
        const char *function, *file;
        int line;
    } inlined[MMK__INLINED_MAX];
};

/* Parse one line (len bytes, no newline).  0 if it is a frame line, else
 * -EINVAL; k's pointers point into line. */
int mmk__frame_parse(const char *line, size_t len, struct mmk__frame_key *k);

/* Write the frame line of k named by nm into out (cap bytes, NUL-terminated,
 * cut if too long), preceded by its inlined calls' lines (each ending in a
 * newline).  Returns the length the whole text needs, as snprintf. */
size_t mmk__frame_format(char *out, size_t cap, const struct mmk__frame_key *k,
                         const struct mmk__frame_name *nm);

/* Fill nm for k; 0 if anything was found, else negative (the line stays). */
typedef int (*mmk__resolve_fn)(void *ctx, const struct mmk__frame_key *k,
                               struct mmk__frame_name *nm);

/*
 * The report in[0, len) with every frame line renamed by resolve (other
 * lines, and frames resolve knows nothing of, unchanged).  Returns a
 * malloc'ed, NUL-terminated text (length in *out_len), or NULL with errno
 * ENOMEM.
 */
char *mmk__report_rewrite(const char *in, size_t len, mmk__resolve_fn resolve, void *ctx,
                          size_t *out_len);

#endif
