/*
 * symbolize.c - frame keys (object path, build-id, file offset) to names,
 * with elfutils' libdwfl doing the ELF and DWARF work.
 *
 * Each object gets its own Dwfl session with that one file reported
 * "offline" (not as part of a live process), so the addresses are the
 * file's own: the file offset of a frame becomes an address through the
 * file's PT_LOAD program headers, which a debug file made with
 * `objcopy --only-keep-debug` keeps too.  A file whose DWARF lives
 * elsewhere (a stripped binary with its debug file in the debug
 * directory) gets it through libdwfl's standard search (by build-id under
 * DIR/.build-id, then by name in DIR), and its symbol table likewise.
 */
#include "symbolize.h"
#include "mmkit.h"

#include <dwarf.h>
#include <elfutils/libdwfl.h>
#include <errno.h>
#include <fcntl.h>
#include <gelf.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { MAX_OBJECTS = 128 };

struct object {
    char *path;                        /* as the report names it */
    unsigned char id[MMK__KEY_ID_MAX];
    size_t id_len;
    Dwfl *dwfl;                        /* NULL: looked for, not found */
    Dwfl_Module *mod;
};

/* Names already found, by object and address: a watched loop reports the
 * same few addresses again and again, and the DWARF scope walk is the
 * expensive part.  Direct-mapped; emptied when an object is evicted (the
 * names point into its data). */
enum { CACHE_SLOTS = 1024 };

struct cached {
    const struct object *o;            /* NULL: empty */
    Dwarf_Addr addr;
    unsigned exact;                    /* frame 0: not a return address */
    int found;
    struct mmk__frame_name nm;
};

struct mmk__symbolizer {
    char *debug_path;                  /* libdwfl's debuginfo_path string */
    char *debug_dir;
    Dwfl_Callbacks cb;
    struct object obj[MAX_OBJECTS];
    size_t nobj, next_evict;
    struct cached cache[CACHE_SLOTS];
};

struct mmk__symbolizer *mmk__symbolizer_new(const char *debug_dir)
{
    struct mmk__symbolizer *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    const char *dflt = ":.debug:/usr/lib/debug";
    size_t n = (debug_dir ? strlen(debug_dir) + 1 : 0) + strlen(dflt) + 1;
    s->debug_path = malloc(n);
    s->debug_dir = debug_dir ? strdup(debug_dir) : NULL;
    if (!s->debug_path || (debug_dir && !s->debug_dir)) {
        mmk__symbolizer_free(s);
        errno = ENOMEM;
        return NULL;
    }
    /* The debug directory first: an absolute entry is searched by build-id
     * and, last of all, for the debug file's name directly in it. */
    snprintf(s->debug_path, n, "%s%s%s", debug_dir ? debug_dir : "", debug_dir ? ":" : "", dflt);
    s->cb.find_elf = dwfl_build_id_find_elf;
    s->cb.find_debuginfo = dwfl_standard_find_debuginfo;
    s->cb.section_address = dwfl_offline_section_address;
    s->cb.debuginfo_path = &s->debug_path;
    return s;
}

static void object_drop(struct object *o)
{
    if (o->dwfl)
        dwfl_end(o->dwfl);
    free(o->path);
    memset(o, 0, sizeof *o);
}

void mmk__symbolizer_free(struct mmk__symbolizer *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->nobj; i++)
        object_drop(&s->obj[i]);
    free(s->debug_path);
    free(s->debug_dir);
    free(s);
}

/* Report file as the only module of a new session; keep it if its build-id
 * is want (or, with no want, unconditionally). */
static int try_file(struct mmk__symbolizer *s, struct object *o, const char *file)
{
    if (access(file, R_OK) != 0)
        return -ENOENT;
    Dwfl *d = dwfl_begin(&s->cb);
    if (!d)
        return -ENOMEM;
    Dwfl_Module *m = dwfl_report_offline(d, file, file, -1);
    dwfl_report_end(d, NULL, NULL);
    if (m && o->id_len) {
        const unsigned char *bits;
        GElf_Addr vaddr;
        int n = dwfl_module_build_id(m, &bits, &vaddr);
        if (n <= 0 || (size_t)n != o->id_len || memcmp(bits, o->id, o->id_len) != 0)
            m = NULL;
    }
    if (!m) {
        dwfl_end(d);
        return -ENOENT;
    }
    o->dwfl = d;
    o->mod = m;
    return 0;
}

static void find_object(struct mmk__symbolizer *s, struct object *o)
{
    char hex[2 * MMK__KEY_ID_MAX + 1];
    for (size_t i = 0; i < o->id_len; i++)
        snprintf(hex + 2 * i, 3, "%02x", o->id[i]);
    hex[2 * o->id_len] = '\0';
    const char *base = strrchr(o->path, '/');
    base = base ? base + 1 : o->path;
    char file[8192];
    if (s->debug_dir) {
        if (o->id_len > 1) {
            snprintf(file, sizeof file, "%s/.build-id/%.2s/%s.debug", s->debug_dir, hex, hex + 2);
            if (try_file(s, o, file) == 0)
                return;
        }
        snprintf(file, sizeof file, "%s/%s.debug", s->debug_dir, base);
        if (o->id_len && try_file(s, o, file) == 0)
            return;
        snprintf(file, sizeof file, "%s/%s", s->debug_dir, base);
        if (o->id_len && try_file(s, o, file) == 0)
            return;
    }
    if (o->path[0] == '/' && try_file(s, o, o->path) == 0)
        return;
    if (o->id_len > 1) {
        snprintf(file, sizeof file, "/usr/lib/debug/.build-id/%.2s/%s.debug", hex, hex + 2);
        try_file(s, o, file);
    }
}

static struct object *object_for(struct mmk__symbolizer *s, const struct mmk__frame_key *k)
{
    for (size_t i = 0; i < s->nobj; i++) {
        struct object *o = &s->obj[i];
        if (o->id_len == k->build_id_len && memcmp(o->id, k->build_id, k->build_id_len) == 0 &&
            strlen(o->path) == k->path_len && memcmp(o->path, k->path, k->path_len) == 0)
            return o;
    }
    struct object *o;
    if (s->nobj < MAX_OBJECTS) {
        o = &s->obj[s->nobj++];
    } else {
        o = &s->obj[s->next_evict];
        s->next_evict = (s->next_evict + 1) % MAX_OBJECTS;
        object_drop(o);
        memset(s->cache, 0, sizeof s->cache);
    }
    o->path = strndup(k->path, k->path_len);
    if (!o->path)
        return NULL;
    memcpy(o->id, k->build_id, k->build_id_len);
    o->id_len = k->build_id_len;
    find_object(s, o);
    return o;
}

/* The module address of file offset off, from the PT_LOAD headers (those of
 * a debug file have no file offsets: the key's va= is used for them). */
static int offset_to_address(Dwfl_Module *m, uint64_t off, Dwarf_Addr *addr)
{
    Dwarf_Addr bias;
    Elf *elf = dwfl_module_getelf(m, &bias);
    size_t n;
    if (!elf || elf_getphdrnum(elf, &n) != 0)
        return -ENOENT;
    for (size_t i = 0; i < n; i++) {
        GElf_Phdr ph;
        if (!gelf_getphdr(elf, (int)i, &ph) || ph.p_type != PT_LOAD)
            continue;
        if (off >= ph.p_offset && off - ph.p_offset < ph.p_memsz) {
            *addr = off - ph.p_offset + ph.p_vaddr + bias;
            return 0;
        }
    }
    return -ENOENT;
}

/* The file and line a DW_TAG_inlined_subroutine was called from. */
static int call_site(Dwarf_Die *cu, Dwarf_Die *inl, const char **file, int *line)
{
    Dwarf_Attribute a;
    Dwarf_Word f, l;
    Dwarf_Files *files;
    size_t nfiles;
    if (!dwarf_attr(inl, DW_AT_call_file, &a) || dwarf_formudata(&a, &f) != 0 ||
        !dwarf_attr(inl, DW_AT_call_line, &a) || dwarf_formudata(&a, &l) != 0 || l == 0 ||
        l > 0x7fffffff || dwarf_getsrcfiles(cu, &files, &nfiles) != 0 || f >= nfiles)
        return -ENOENT;
    *file = dwarf_filesrc(files, f, NULL, NULL);
    *line = (int)l;
    return *file ? 0 : -ENOENT;
}

/*
 * Calls inlined at address at, from the DWARF scopes around it (innermost
 * first): the line table's file and line belong to the innermost inlined
 * function; each inlined call's call site is the line in the function
 * around it, and the last one is the line in nm->function itself.
 */
static void add_inlined(Dwfl_Module *m, Dwarf_Addr at, struct mmk__frame_name *nm)
{
    Dwarf_Addr bias;
    Dwarf_Die *cu = dwfl_module_addrdie(m, at, &bias);
    Dwarf_Die *scopes = NULL, *chain = NULL;
    int n = cu ? dwarf_getscopes(cu, at - bias, &scopes) : -1;
    /* dwarf_getscopes goes from an inlined call to its abstract definition;
     * the calls around it are the DIE's own parents (dwarf_getscopes_die). */
    int inner = -1;
    for (int i = 0; i < n && inner < 0; i++)
        if (dwarf_tag(&scopes[i]) == DW_TAG_inlined_subroutine)
            inner = i;
    n = inner >= 0 ? dwarf_getscopes_die(&scopes[inner], &chain) : -1;
    const char *file = nm->file;
    int line = nm->line;
    for (int i = 0; i < n; i++) {
        int tag = dwarf_tag(&chain[i]);
        if (tag == DW_TAG_subprogram)
            break;
        if (tag != DW_TAG_inlined_subroutine)
            continue;
        const char *cfile;
        int cline;
        if (nm->ninlined == MMK__INLINED_MAX || call_site(cu, &chain[i], &cfile, &cline) < 0)
            break;
        const char *name = dwarf_diename(&chain[i]);
        nm->inlined[nm->ninlined].function = name ? name : "??";
        nm->inlined[nm->ninlined].file = file;
        nm->inlined[nm->ninlined].line = line;
        nm->ninlined++;
        file = cfile;
        line = cline;
    }
    free(chain);
    free(scopes);
    nm->file = file;
    nm->line = line;
}

static int name_address(struct object *o, Dwarf_Addr addr, unsigned exact,
                        struct mmk__frame_name *nm);

int mmk__symbolize_key(void *ctx, const struct mmk__frame_key *k, struct mmk__frame_name *nm)
{
    struct mmk__symbolizer *s = ctx;
    struct object *o = object_for(s, k);
    if (!o || !o->mod)
        return -ENOENT;
    Dwarf_Addr addr, bias;
    if (k->has_vaddr && dwfl_module_getelf(o->mod, &bias))
        addr = k->vaddr + bias;
    else if (offset_to_address(o->mod, k->offset, &addr) < 0)
        return -ENOENT;
    unsigned exact = k->index == 0;
    size_t h = (size_t)((addr * 0x9e3779b97f4a7c15ull) >> 40) % CACHE_SLOTS;
    struct cached *c = &s->cache[h];
    if (c->o != o || c->addr != addr || c->exact != exact) {
        c->o = o;
        c->addr = addr;
        c->exact = exact;
        memset(&c->nm, 0, sizeof c->nm);
        c->found = name_address(o, addr, exact, &c->nm) == 0;
    }
    if (!c->found)
        return -ENOENT;
    *nm = c->nm;
    return 0;
}

static int name_address(struct object *o, Dwarf_Addr addr, unsigned exact,
                        struct mmk__frame_name *nm)
{
    /* A return address: the call is the instruction before it. */
    Dwarf_Addr at = !exact && addr > 0 ? addr - 1 : addr;
    GElf_Off off;
    GElf_Sym sym;
    const char *fn = dwfl_module_addrinfo(o->mod, at, &off, &sym, NULL, NULL, NULL);
    if (!fn || !fn[0])
        return -ENOENT;
    nm->function = fn;
    nm->function_offset = off + (addr - at);
    Dwfl_Line *line = dwfl_module_getsrc(o->mod, at);
    int lineno = 0;
    const char *file = line ? dwfl_lineinfo(line, NULL, &lineno, NULL, NULL, NULL) : NULL;
    if (file && lineno > 0) {
        nm->file = file;
        nm->line = lineno;
        add_inlined(o->mod, at, nm);
    }
    return 0;
}

char *mmk_report_symbolize(const char *text, size_t len, const char *debug_dir, size_t *out_len)
{
    if (!text) {
        errno = EINVAL;
        return NULL;
    }
    struct mmk__symbolizer *s = mmk__symbolizer_new(debug_dir);
    if (!s)
        return NULL;
    char *out = mmk__report_rewrite(text, len, mmk__symbolize_key, s, out_len);
    int e = errno;
    mmk__symbolizer_free(s);
    errno = e;
    return out;
}
