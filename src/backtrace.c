/*
 * backtrace.c - the faulting frames of a signal context, async-signal-safe.
 *
 * Walking.  glibc's backtrace() runs libgcc's unwinder, which reads the
 * .eh_frame tables (no frame pointers needed) and knows the kernel's signal
 * frame, so from inside the handler it goes: handler frames, the signal
 * trampoline, then the interrupted code at its exact faulting address (a
 * signal frame's address is not a return address).  We walk from the
 * handler and keep the frames from the one whose address equals the
 * context's instruction pointer: everything before it is mmkit's handler
 * and the trampoline.  libgcc finds each object's tables with glibc's
 * _dl_find_object (lock-free since glibc 2.35 and GCC 12), so the walk takes
 * no lock; it is loaded once outside any handler (mmk__bt_prepare), because
 * its first use dlopens libgcc_s.
 *
 * If the interrupted instruction is not among the unwound frames (no unwind
 * tables, a corrupted stack), the context's own instruction pointer is frame
 * 0 and its frame-pointer chain gives the callers, each word read with
 * process_vm_readv on ourselves, so a broken chain ends the walk instead of
 * faulting inside the handler.
 *
 * Objects.  _dl_find_object gives the object's link map (its path and load
 * bias) and the start of its mapping, where the ELF header and program
 * headers of an ordinarily linked object lie.  The PT_LOAD segment holding
 * the address converts it to a file offset, the PT_NOTE segments give the
 * build-id.  The main program's link map has an empty name: its path is
 * read from /proc/self/exe beforehand.
 */
#include "backtrace.h"
#include "sys.h"

#include <dlfcn.h>
#include <elf.h>
#include <errno.h>
#include <execinfo.h>
#include <link.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/auxv.h>
#include <ucontext.h>

static char exe_path[4096];
static pthread_once_t prepare_once = PTHREAD_ONCE_INIT;

static void prepare(void)
{
    void *frame[2];
    backtrace(frame, 2); /* dlopens libgcc_s now, not inside a handler */
    if (mmk__sys_readlink("/proc/self/exe", exe_path, sizeof exe_path) <= 0) {
        const char *fn = (const char *)getauxval(AT_EXECFN);
        size_t n = fn ? strlen(fn) : 0;
        if (n >= sizeof exe_path)
            n = 0;
        memcpy(exe_path, fn ? fn : "", n);
        exe_path[n] = '\0';
    }
}

void mmk__bt_prepare(void)
{
    pthread_once(&prepare_once, prepare);
}

/* ---- walking ---------------------------------------------------------------- */

static int context_regs(const void *ucontext, uintptr_t *pc, uintptr_t *fp)
{
    const ucontext_t *uc = ucontext;
#if defined(__x86_64__)
    *pc = (uintptr_t)uc->uc_mcontext.gregs[REG_RIP];
    *fp = (uintptr_t)uc->uc_mcontext.gregs[REG_RBP];
    return 0;
#elif defined(__aarch64__)
    *pc = (uintptr_t)uc->uc_mcontext.pc;
    *fp = (uintptr_t)uc->uc_mcontext.regs[29];
    return 0;
#else
    (void)uc;
    *pc = *fp = 0;
    return -ENOTSUP;
#endif
}

/* Callers by the frame-pointer chain: [fp] is the caller's fp, [fp + 1 word]
 * the return address (x86-64 and aarch64 alike).  The chain must climb. */
static int walk_frame_pointers(uintptr_t fp, uintptr_t *pcs, int n, int max)
{
    while (n < max && fp != 0 && (fp & (sizeof(uintptr_t) - 1)) == 0) {
        uintptr_t pair[2];
        if (mmk__sys_peek(pair, (const void *)fp, sizeof pair) < 0 || pair[1] == 0)
            break;
        pcs[n++] = pair[1];
        if (pair[0] <= fp || pair[0] - fp > ((uintptr_t)64 << 20))
            break;
        fp = pair[0];
    }
    return n;
}

int mmk__bt_collect(const void *ucontext, uintptr_t *pcs, int max)
{
    if (max <= 0)
        return 0;
    void *raw[MMK__BT_MAX + 16];
    int got = backtrace(raw, (int)(sizeof raw / sizeof raw[0]));
    uintptr_t pc, fp;
    if (!ucontext) {
        int n = 0;
        for (int i = 1; i < got && n < max; i++) /* skip mmk__bt_collect */
            pcs[n++] = (uintptr_t)raw[i];
        return n;
    }
    if (context_regs(ucontext, &pc, &fp) < 0)
        return 0;
    for (int i = 0; i < got; i++) {
        if ((uintptr_t)raw[i] != pc)
            continue;
        int n = 0;
        while (i < got && n < max)
            pcs[n++] = (uintptr_t)raw[i++];
        return n;
    }
    pcs[0] = pc;
    return walk_frame_pointers(fp, pcs, 1, max);
}

/* ---- objects ------------------------------------------------------------------ */

/* The build-id in the notes [p, p + len), or 0. */
static size_t note_build_id(const unsigned char *p, size_t len, unsigned char *out)
{
    size_t i = 0;
    while (i + sizeof(ElfW(Nhdr)) <= len) {
        ElfW(Nhdr) nh;
        memcpy(&nh, p + i, sizeof nh);
        size_t name = (nh.n_namesz + 3u) & ~(size_t)3, desc = (nh.n_descsz + 3u) & ~(size_t)3;
        size_t body = i + sizeof nh;
        if (name > len - body || desc > len - body - name)
            return 0;
        if (nh.n_type == NT_GNU_BUILD_ID && nh.n_namesz == 4 && memcmp(p + body, "GNU", 4) == 0) {
            size_t n = nh.n_descsz < MMK__BUILD_ID_MAX ? nh.n_descsz : MMK__BUILD_ID_MAX;
            memcpy(out, p + body + name, n);
            return n;
        }
        i = body + name + desc;
    }
    return 0;
}

int mmk__bt_module(uintptr_t pc, struct mmk__bt_module *m)
{
    struct dl_find_object fo;
    if (_dl_find_object((void *)pc, &fo) != 0)
        return -ENOENT;
    const struct link_map *lm = fo.dlfo_link_map;
    uintptr_t start = (uintptr_t)fo.dlfo_map_start, end = (uintptr_t)fo.dlfo_map_end;
    uintptr_t bias = lm ? (uintptr_t)lm->l_addr : 0;
    m->path = lm && lm->l_name && lm->l_name[0] ? lm->l_name : exe_path;
    m->file_offset = pc - start;
    m->vaddr = pc - bias;
    m->build_id_len = 0;
    /* The ELF header and program headers at the start of the mapping. */
    const ElfW(Ehdr) *eh = (const void *)start;
    if (end - start < sizeof *eh || memcmp(eh->e_ident, ELFMAG, SELFMAG) != 0 ||
        eh->e_phentsize != sizeof(ElfW(Phdr)) || eh->e_phoff > end - start ||
        (uintptr_t)eh->e_phnum * sizeof(ElfW(Phdr)) > end - start - eh->e_phoff)
        return 0; /* no headers there: offset from the mapping's start */
    const ElfW(Phdr) *ph = (const void *)(start + eh->e_phoff);
    uintptr_t vaddr = pc - bias;
    for (unsigned i = 0; i < eh->e_phnum; i++) {
        if (ph[i].p_type == PT_LOAD && vaddr >= ph[i].p_vaddr &&
            vaddr - ph[i].p_vaddr < ph[i].p_memsz)
            m->file_offset = vaddr - ph[i].p_vaddr + ph[i].p_offset;
        uintptr_t note = bias + ph[i].p_vaddr;
        if (ph[i].p_type == PT_NOTE && m->build_id_len == 0 && note >= start &&
            note < end && ph[i].p_memsz <= end - note)
            m->build_id_len = note_build_id((const void *)note, ph[i].p_memsz, m->build_id);
    }
    return 0;
}

/* ---- the raw line ---------------------------------------------------------------- */

static const char *last_component(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

void mmk__bt_frame_line(struct mmk__line *l, int n, uintptr_t pc)
{
    struct mmk__bt_module m;
    mmk__line_str(l, "    #");
    mmk__line_dec(l, n);
    mmk__line_str(l, " ");
    if (mmk__bt_module(pc, &m) < 0 || !m.path[0]) {
        mmk__line_hex(l, pc);
        return;
    }
    mmk__line_str(l, last_component(m.path));
    mmk__line_str(l, "+");
    mmk__line_hex(l, (uintptr_t)m.file_offset);
    mmk__line_str(l, " [");
    mmk__line_str(l, m.path);
    mmk__line_str(l, "+");
    mmk__line_hex(l, (uintptr_t)m.file_offset);
    mmk__line_str(l, " va=");
    mmk__line_hex(l, (uintptr_t)m.vaddr);
    if (m.build_id_len) {
        mmk__line_str(l, " id=");
        for (size_t i = 0; i < m.build_id_len; i++) {
            char hx[3] = { "0123456789abcdef"[m.build_id[i] >> 4],
                           "0123456789abcdef"[m.build_id[i] & 15], 0 };
            mmk__line_str(l, hx);
        }
    }
    mmk__line_str(l, "]");
}
