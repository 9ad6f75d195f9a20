/*
 * evring.c - reading and writing a segment's event ring (layout in
 * evring.h).  The writer is mmkitd's one thread; readers are any number
 * of processes holding a read-only mapping, so every access to shared
 * words is an atomic load or store, and a reader never trusts a slot
 * whose stamp changed while it copied it.
 */
#include "evring.h"

#include <errno.h>
#include <string.h>

#define LOAD(p)      __atomic_load_n((p), __ATOMIC_RELAXED)
#define LOAD_ACQ(p)  __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define STORE(p, v)  __atomic_store_n((p), (v), __ATOMIC_RELAXED)
#define STORE_REL(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)

static const struct mmk__evring_hdr *hdr_of(const void *map)
{
    return map;
}

static const uint64_t *slot_of(const void *map, uint32_t nslots, uint64_t pos)
{
    return (const uint64_t *)((const char *)map + MMK__EVRING_HDR) +
           (size_t)(pos & (nslots - 1)) * MMK__EVRING_WORDS;
}

int mmk__evring_check(const void *map, size_t len)
{
    const struct mmk__evring_hdr *h = hdr_of(map);
    if (len < MMK__EVRING_HDR)
        return -EPROTO;
    uint32_t n = LOAD(&h->nslots);
    if (LOAD(&h->magic) != MMK__EVRING_MAGIC || LOAD(&h->layout) != MMK__EVRING_LAYOUT ||
        LOAD(&h->slot_words) != MMK__EVRING_WORDS || n == 0 || (n & (n - 1)) || n > (1u << 20) ||
        mmk__evring_size(n) > len)
        return -EPROTO;
    return 0;
}

uint64_t mmk__evring_ready(const void *map, uint64_t pos)
{
    const struct mmk__evring_hdr *h = hdr_of(map);
    uint64_t head = LOAD_ACQ(&h->head);
    uint64_t n = LOAD(&h->nslots);
    if (head <= pos)
        return 0;
    return head - pos > n ? n : head - pos;
}

int mmk__evring_done(const void *map, uint64_t pos)
{
    const struct mmk__evring_hdr *h = hdr_of(map);
    /* closed is stored after the last head, so it implies that head. */
    return LOAD_ACQ(&h->closed) && LOAD_ACQ(&h->head) <= pos;
}

int mmk__evring_read(const void *map, uint64_t *pos, mmk_seg_event *ev)
{
    const struct mmk__evring_hdr *h = hdr_of(map);
    uint32_t n = LOAD(&h->nslots);
    /* A writer that is only being fast keeps moving head, so a few retries
     * end in a slot read or an overrun; one that leaves a stamp wrong for
     * good (a broken or hostile server) must not hang the reader. */
    for (int tries = 0;; tries++) {
        uint64_t head = LOAD_ACQ(&h->head);
        if (tries == 1000) {
            *pos = head;
            return -EOVERFLOW;
        }
        if (head <= *pos)
            return 0;
        if (head - *pos > n) {
            *pos = head - n;
            return -EOVERFLOW;
        }
        const uint64_t *s = slot_of(map, n, *pos);
        uint64_t w[MMK__EVRING_WORDS];
        uint64_t stamp = LOAD_ACQ(&s[0]);
        if (stamp != *pos + 1) {
            /* Being rewritten for a later lap: we fell behind meanwhile. */
            continue;
        }
        for (int i = 1; i < MMK__EVRING_WORDS; i++)
            w[i] = LOAD(&s[i]);
        __atomic_thread_fence(__ATOMIC_ACQUIRE);
        if (LOAD(&s[0]) != stamp)
            continue;
        memset(ev, 0, sizeof *ev);
        ev->seq = w[1];
        ev->kind = (unsigned)w[2];
        ev->offset = w[3];
        ev->length = w[4];
        ev->info.size = w[5];
        ev->info.mode = (uint32_t)w[6];
        ev->info.uid = (uint32_t)(w[6] >> 32);
        ev->info.gid = (uint32_t)w[7];
        ev->info.holders = (uint32_t)(w[7] >> 32);
        ev->info.subscribers = (uint32_t)w[8];
        ev->info.version = w[9];
        ev->info.mtime_ns = w[10];
        ++*pos;
        return 1;
    }
}

void mmk__evring_init(void *map, uint32_t nslots)
{
    struct mmk__evring_hdr *h = map;
    memset(map, 0, mmk__evring_size(nslots));
    h->magic = MMK__EVRING_MAGIC;
    h->layout = MMK__EVRING_LAYOUT;
    h->nslots = nslots;
    h->slot_words = MMK__EVRING_WORDS;
    __atomic_thread_fence(__ATOMIC_RELEASE);
}

void mmk__evring_put(void *map, const mmk_seg_event *ev)
{
    struct mmk__evring_hdr *h = map;
    uint64_t pos = LOAD(&h->head);
    uint64_t *s = (uint64_t *)((char *)map + MMK__EVRING_HDR) +
                  (size_t)(pos & (h->nslots - 1)) * MMK__EVRING_WORDS;
    STORE(&s[0], 0);
    __atomic_thread_fence(__ATOMIC_RELEASE);
    const mmk_seg_info *in = &ev->info;
    uint64_t w[MMK__EVRING_WORDS] = {
        0, ev->seq, ev->kind, ev->offset, ev->length, in->size,
        in->mode | (uint64_t)in->uid << 32, in->gid | (uint64_t)in->holders << 32,
        in->subscribers, in->version, in->mtime_ns,
    };
    for (int i = 1; i < MMK__EVRING_WORDS; i++)
        STORE(&s[i], w[i]);
    STORE_REL(&s[0], pos + 1);
    STORE_REL(&h->head, pos + 1);
}

void mmk__evring_close(void *map)
{
    struct mmk__evring_hdr *h = map;
    STORE_REL(&h->closed, 1);
}
