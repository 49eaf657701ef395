/*
 * parallel.h: how a call is split over threads. Shared, as a header only, by the kernel
 * (threads.c) and the benchmark's memory roofline (amsgrad/apps/roofline.c), so that both split
 * the same work the same way; neither links against the other.
 *
 * A large call is cut into contiguous chunks, one per thread; the threads are pthreads created
 * for the call and joined before it returns (a persistent pool would save the ~16 us a thread
 * costs, but is not done yet). Chunk 0 runs on the calling thread. If a thread cannot be started,
 * the caller runs its chunk itself. The arithmetic is elementwise, so the split never changes
 * the result.
 */
#ifndef AMS_PARALLEL_H
#define AMS_PARALLEL_H

#include <stddef.h>

#if defined(_WIN32)
#define AMS_HAVE_PTHREADS 0
#else
#define AMS_HAVE_PTHREADS 1
#include <pthread.h>
#endif

/* A thread is only started for at least this much work. Creating and joining a pthread costs
 * about 16 us (measured); one unit is one float32 element (about 0.25 ns in cache, or 36 bytes of
 * traffic), so a chunk of 262144 units takes about 65 us on one core: threads start at 524288
 * float32 elements. float64 counts 2 units an element (twice the bytes, slower division and
 * square root), float16 4 (eleven roundings to half an element: compute bound). On a shared
 * 2-core machine a second thread paid only from a few million elements (the other core is
 * rarely free), hence a threshold above the idle-machine break-even (about 1e5 float32). */
#ifndef AMS_MIN_PER_THREAD
#define AMS_MIN_PER_THREAD 262144
#endif
/* work units per element, indexed by dtype: float16, float32, float64 */
#define AMS_WORK_F16 4
#define AMS_WORK_F32 1
#define AMS_WORK_F64 2

#define AMS_MAX_THREADS 256

/* How many threads to use for `work` units when `nt` are allowed. */
static inline int ams_plan_threads(size_t work, int nt) {
    if (nt <= 1 || work < 2 * (size_t)AMS_MIN_PER_THREAD) return 1;
    size_t most = work / AMS_MIN_PER_THREAD;
    if ((size_t)nt > most) nt = (int)most;
    if (nt > AMS_MAX_THREADS) nt = AMS_MAX_THREADS;
    return nt < 1 ? 1 : nt;
}

/* run(ctx, lo, hi) does the elements [lo, hi); cut(ctx, b, total) moves a chunk boundary b
 * (0 < b < total) down to where a chunk may end (an alignment inside the arrays). */
typedef void (*ams_range_fn)(const void *ctx, size_t lo, size_t hi);
typedef size_t (*ams_cut_fn)(const void *ctx, size_t b, size_t total);

#if AMS_HAVE_PTHREADS
typedef struct {
    const void *ctx;
    ams_range_fn run;
    size_t lo, hi;
} ams_chunk_t;

static inline void *ams_chunk_main(void *arg) {
    const ams_chunk_t *ch = (const ams_chunk_t *)arg;
    ch->run(ch->ctx, ch->lo, ch->hi);
    return NULL;
}
#endif

/* Runs [0, total) on nt threads (nt from ams_plan_threads). No Python API inside. */
static inline void ams_parallel(const void *ctx, size_t total, int nt, ams_range_fn run,
                                ams_cut_fn cut) {
#if AMS_HAVE_PTHREADS
    if (nt > 1) {
        ams_chunk_t chunks[AMS_MAX_THREADS];
        pthread_t tids[AMS_MAX_THREADS];
        int started[AMS_MAX_THREADS];
        size_t prev = 0;
        for (int t = 0; t < nt; t++) {
            size_t b = total;
            if (t + 1 < nt) {
                b = (size_t)((double)total * (t + 1) / nt);
                b = b >= total ? total : cut(ctx, b, total);
            }
            if (b < prev) b = prev;
            chunks[t].ctx = ctx;
            chunks[t].run = run;
            chunks[t].lo = prev;
            chunks[t].hi = b;
            prev = b;
        }
        for (int t = 1; t < nt; t++) {
            started[t] = 0;
            if (chunks[t].hi > chunks[t].lo)
                started[t] = pthread_create(&tids[t], NULL, ams_chunk_main, &chunks[t]) == 0;
        }
        run(ctx, chunks[0].lo, chunks[0].hi);
        for (int t = 1; t < nt; t++) {
            if (started[t])
                pthread_join(tids[t], NULL);
            else if (chunks[t].hi > chunks[t].lo)
                run(ctx, chunks[t].lo, chunks[t].hi); /* could not start a thread: do it here */
        }
        return;
    }
#else
    (void)nt;
    (void)cut;
#endif
    run(ctx, 0, total);
}

#endif /* AMS_PARALLEL_H */
