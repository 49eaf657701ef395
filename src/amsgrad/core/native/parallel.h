/*
 * parallel.h: how a call is split over threads. Shared, as a header only, by the kernel
 * (threads.c) and the benchmark's memory roofline (amsgrad/apps/roofline.c), so that both split
 * the same work the same way; neither links against the other.
 *
 * A large call is cut into contiguous chunks that the calling thread and the workers of a
 * persistent pool (pool.c, started on first need) claim one by one; if no worker can be started,
 * or the pool is busy with another call, the caller runs everything itself. The arithmetic is
 * elementwise, so the split never changes the result.
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

/* A thread takes part only for at least this much work. One unit is one float32 element (about
 * 0.25 ns in cache, 0.4 ns from L3); float64 counts 2 units an element (twice the bytes, slower
 * division and square root), float16 4 (eleven roundings to half an element: compute bound).
 * Handing a job to the pool's workers costs a few microseconds (they spin a while between calls,
 * pool.c), so a second thread starts at 16384 units: measured on a 2-core AMD EPYC (Zen 4), one
 * call, 1 thread against 2, it is then 10-30% faster (float32 20000 elements: 0.87x the time,
 * float16 4000: 0.86x, float64 10000: 0.81x), about 0.55x at 1e5 elements. Where the other
 * cores are busy the caller runs the chunks the workers did not get to (pool.c), so a second
 * thread costs little even then. */
#ifndef AMS_MIN_PER_THREAD
#define AMS_MIN_PER_THREAD 8192
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

#if defined(__GNUC__) || defined(__clang__)
#define AMS_POOL_HIDDEN __attribute__((visibility("hidden")))
#else
#define AMS_POOL_HIDDEN
#endif

#if AMS_HAVE_PTHREADS
/* pool.c: runs [0, total) on the calling thread and up to nt - 1 pool workers (nt >= 2). */
AMS_POOL_HIDDEN void ams_pool_parallel(const void *ctx, size_t total, int nt, ams_range_fn run,
                                       ams_cut_fn cut);
/* pool.c: stops the workers beyond `workers` (set_num_threads); they start again on need. */
AMS_POOL_HIDDEN void ams_pool_resize(int workers);
#endif

/* Runs [0, total) on nt threads (nt from ams_plan_threads). No Python API inside. */
static inline void ams_parallel(const void *ctx, size_t total, int nt, ams_range_fn run,
                                ams_cut_fn cut) {
#if AMS_HAVE_PTHREADS
    if (nt > 1) {
        ams_pool_parallel(ctx, total, nt, run, cut);
        return;
    }
#else
    (void)nt;
    (void)cut;
#endif
    run(ctx, 0, total);
}

#endif /* AMS_PARALLEL_H */
