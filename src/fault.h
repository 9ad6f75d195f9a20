/*
 * fault.h - internal: what other modules need from the fault router.
 */
#ifndef MMK_FAULT_INTERNAL_H
#define MMK_FAULT_INTERNAL_H

/* 1 while the calling thread runs an area handler, else 0. */
int mmk__fault_in_handler(void);

/*
 * Wait until every area handler that was running on any thread when the call
 * began has returned (a grace period of the router's table).  After it, a
 * handler can no longer see a pointer that was replaced before the call.
 * -EDEADLK from inside a handler (it would wait for itself), else 0.
 */
int mmk__fault_synchronize(void);

/*
 * The router's atfork handlers.  They run on their own (registered by the
 * router), and the region engine calls them too: prepare before it takes its
 * engine lock, parent/child after it released it, because a writer of the
 * router's table may wait for a region handler that waits for that lock.
 * Nested calls within one fork are counted and only the outermost acts.
 */
void mmk__fault_fork_prepare(void);
void mmk__fault_fork_parent(void);
void mmk__fault_fork_child(void);

#endif
