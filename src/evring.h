/*
 * evring.h - the event ring of one segment: how mmkitd hands an event to
 * every subscriber of a segment at once.
 *
 * The server writes each event of the segment into a ring of fixed-size
 * slots in a memfd of its own, then makes one pipe readable (the "bell").
 * Every subscriber maps the ring read-only and watches the bell's read
 * end edge-triggered, so one publish costs the server one slot write and
 * one wake-up however many subscribers there are, and a subscriber reads
 * events with plain loads, no system call.
 *
 *   header (64 bytes)  u32 magic "MMKR" | u32 layout (1) | u32 nslots
 *                      | u32 slot_words (16) | u64 head | u32 closed | pad
 *   slots              nslots x 16 u64 words:
 *                      stamp | seq | kind | offset | length | size
 *                      | mode + uid << 32 | gid + holders << 32 | subscribers
 *                      | version | mtime_ns | 0 ...
 *
 * head counts the slots ever written; slot p % nslots holds position p.
 * A slot's stamp is p + 1 once position p is complete and 0 while it is
 * being rewritten (a per-slot sequence lock): the writer stores stamp 0,
 * the words, then stamp p + 1 and head p + 1, each with release order; a
 * reader checks the stamp before and after copying the words.  Native
 * byte order: both ends run on one machine.  The ring is sealed against
 * writes after the server has mapped it (F_SEAL_FUTURE_WRITE), so only
 * the server's own mapping can change it.
 */
#ifndef MMK_EVRING_H
#define MMK_EVRING_H

#include "mmkit.h"

#include <stddef.h>
#include <stdint.h>

#define MMK__EVRING_MAGIC  0x524b4d4du /* "MMKR" read as a little-endian u32 */
#define MMK__EVRING_LAYOUT 1
#define MMK__EVRING_HDR    64
#define MMK__EVRING_WORDS  16

struct mmk__evring_hdr {
    uint32_t magic, layout, nslots, slot_words;
    uint64_t head;
    uint32_t closed; /* the segment was removed: no more events */
    uint32_t pad[9];
};

/* Bytes of a ring of nslots slots (a power of two). */
static inline size_t mmk__evring_size(uint32_t nslots)
{
    return MMK__EVRING_HDR + (size_t)nslots * MMK__EVRING_WORDS * 8;
}

/* 0 if the mapping of len bytes at map is a ring this code can read. */
int mmk__evring_check(const void *map, size_t len);

/*
 * Read the event at *pos into *ev (name left empty: the ring belongs to
 * one segment).  1 and *pos advanced; 0 if there is none yet; -EOVERFLOW if
 * the writer has overwritten *pos (the reader fell more than nslots behind):
 * *pos then moves to the oldest position still held.  Any bytes at map are
 * safe to read (a ring that never settles is reported as an overrun and
 * skipped): the client trusts the server only with the events' contents.
 */
int mmk__evring_read(const void *map, uint64_t *pos, mmk_seg_event *ev);

/* The number of events at and after pos (0 if none; nslots at most). */
uint64_t mmk__evring_ready(const void *map, uint64_t pos);

/* 1 once the writer closed the ring and every event before was read. */
int mmk__evring_done(const void *map, uint64_t pos);

/* Writer side (the server's own mapping). */
void mmk__evring_init(void *map, uint32_t nslots);
void mmk__evring_put(void *map, const mmk_seg_event *ev);
void mmk__evring_close(void *map);

#endif
