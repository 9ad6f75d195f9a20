/*
 * backtrace.h - internal: the faulting frames of a signal context, collected
 * inside the signal handler (async-signal-safe), and the object each frame
 * lies in (path, build-id, file offset), so that it can be symbolized later,
 * elsewhere.
 *
 *     uintptr_t pcs[MMK__BT_MAX];
 *     int n = mmk__bt_collect(f->ucontext, pcs, MMK__BT_MAX);   // pcs[0]: faulting insn
 *     for (int i = 0; i < n; i++)
 *         mmk__bt_frame_line(&line, i, pcs[i]);                 // "    #i obj+0xOFF [key]"
 *
 * Call mmk__bt_prepare() once outside any handler first (mirror, arena and
 * region constructors do): it loads the unwinder and notes the program's
 * path, the two things that cannot be done inside a handler.
 */
#ifndef MMK_BACKTRACE_H
#define MMK_BACKTRACE_H

#include "report.h"

#include <stddef.h>
#include <stdint.h>

enum { MMK__BT_MAX = 48, MMK__BUILD_ID_MAX = 40 };

/* Load libgcc's unwinder and note /proc/self/exe.  Idempotent, thread-safe;
 * not for signal handlers. */
void mmk__bt_prepare(void);

/*
 * The interrupted context's frames, innermost first: pcs[0] is the faulting
 * instruction (the context's instruction pointer), pcs[1..] return
 * addresses of its callers.  Frames of the signal handler and the signal
 * trampoline are not included.  Walks with libgcc's table-driven unwinder
 * (which needs no frame pointers) and falls back to the frame-pointer chain
 * of the context, read with mmk__sys_peek (a bad chain ends the walk, it
 * never faults).  ucontext may be NULL: then the caller's own frames.
 * Returns the number of frames stored (at most max).  Async-signal-safe
 * once mmk__bt_prepare() ran.
 */
int mmk__bt_collect(const void *ucontext, uintptr_t *pcs, int max);

/* The object a code address lies in. */
struct mmk__bt_module {
    const char *path;     /* absolute path if known; points into the loader's
                             data or mmkit's copy of the program's path */
    uint64_t file_offset; /* of the address in that file */
    uint64_t vaddr;       /* the address in the file's own address space
                             (what a debug file, whose segments have no file
                             contents, can be searched by) */
    unsigned char build_id[MMK__BUILD_ID_MAX];
    size_t build_id_len;  /* 0: the object has no build-id note */
};

/* Find the loaded object holding pc (glibc's _dl_find_object, lock-free,
 * and the object's own ELF headers in memory).  0, or -ENOENT.
 * Async-signal-safe. */
int mmk__bt_module(uintptr_t pc, struct mmk__bt_module *m);

/*
 * Append the raw line of frame n at pc to l (no newline):
 *     "    #N OBJECT+0xOFF [PATH+0xOFF va=0xADDR id=BUILDID]"
 * or "    #N 0xPC" when pc is in no known object.  OBJECT is PATH's last
 * component, OFF the file offset, ADDR the ELF address.  The bracket is the frame's key, the
 * grammar of report_text.h.  Async-signal-safe.
 */
void mmk__bt_frame_line(struct mmk__line *l, int n, uintptr_t pc);

#endif
