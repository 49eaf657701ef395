/*
 * pool.c: the persistent worker threads behind ams_parallel() (parallel.h). Compiled into each
 * extension that splits work (the kernel and the benchmark's roofline), each with its own pool.
 * Plain C11 atomics and pthreads, no Python API.
 *
 * Workers are started lazily, the first time a job wants them, and stay: starting and joining a
 * pthread per call cost about 16 us, which kept a second thread out of calls under a few hundred
 * thousand elements. One job runs at a time (`owner`); a caller that finds the pool busy (another
 * Python thread's call with the GIL released) runs its job alone.
 *
 * A job is [0, total) cut into nchunks contiguous chunks (more chunks than threads). The caller
 * publishes it by writing one 64-bit word, `state` = generation | nchunks | next chunk, and every
 * participant, the caller included, claims chunks with a compare-and-swap on that word until none
 * is left. A worker that is slow to wake (the other cores busy on a shared machine) finds the
 * chunks taken and the caller never waits for a thread that is not running: it waits only for
 * chunks that were claimed. The generation in the word makes a late worker's claim fail once the
 * caller has moved on to another job. The arithmetic is elementwise, so the split never changes
 * the result.
 *
 * Idle workers spin for a short while (a few tens of microseconds: back-to-back calls find them
 * awake), then sleep on a condition variable. The caller, once out of chunks, spins the same way
 * then sleeps until the claimed chunks are done.
 *
 * Workers block every signal (grow()), so that signals reach Python's main thread.
 * Process life: an atexit handler stops and joins the workers. pthread_atfork: the pool is held
 * (no job in progress) across fork(), and the child, which has none of the parent's threads,
 * starts with an empty pool and fresh locks; its workers are started again on first need.
 * ams_pool_resize() (set_num_threads) stops and joins the workers beyond a count.
 */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L /* pthread_sigmask, sigfillset */
#endif
#include "parallel.h"

#if AMS_HAVE_PTHREADS
#include <limits.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* chunks per participating thread, and the fewest elements in a chunk (boundaries fall on
 * multiples of the caller's alignment anyway) */
#define CHUNKS_PER_THREAD 4
#define MAX_CHUNKS (CHUNKS_PER_THREAD * AMS_MAX_THREADS)
#define SPIN_ROUNDS 4000 /* pause instructions before sleeping: roughly 20-60 us */

#if defined(__x86_64__) || defined(__i386__)
#define CPU_RELAX() __builtin_ia32_pause()
#else
#define CPU_RELAX() ((void)0)
#endif

/* state: generation (32 bits) | nchunks (16 bits) | next chunk to claim (16 bits) */
#define ST_GEN(s) ((uint32_t)((s) >> 32))
#define ST_COUNT(s) ((uint32_t)(((s) >> 16) & 0xffffu))
#define ST_NEXT(s) ((uint32_t)((s) & 0xffffu))

static pthread_mutex_t owner = PTHREAD_MUTEX_INITIALIZER; /* one job at a time */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;    /* sleeping and waking */
static pthread_cond_t wake = PTHREAD_COND_INITIALIZER;    /* workers: a job, or stop */
static pthread_cond_t finished = PTHREAD_COND_INITIALIZER; /* the caller: all chunks done */
static pthread_once_t once = PTHREAD_ONCE_INIT;

static _Atomic uint64_t state;
static _Atomic uint32_t done;      /* chunks finished in the current job */
static _Atomic int sleepers;       /* workers asleep (or about to be) on `wake` */
static _Atomic int caller_asleep;  /* the caller waits on `finished` */
static _Atomic int stop_from = INT_MAX; /* workers with index >= stop_from exit */

/* the current job; written by the owner before `state` publishes it */
static const void *job_ctx;
static ams_range_fn job_run;
static size_t bounds[MAX_CHUNKS + 1];

static int nworkers; /* started workers, indices 1..nworkers (under owner) */
static pthread_t tids[AMS_MAX_THREADS];
static uint32_t start_gen[AMS_MAX_THREADS]; /* the generation a worker starts from */

/* Claims and runs chunks of job `gen` until none is left; returns how many it ran. */
static uint32_t run_chunks(uint32_t gen) {
    uint32_t ran = 0;
    uint64_t s = atomic_load_explicit(&state, memory_order_acquire);
    for (;;) {
        if (ST_GEN(s) != gen || ST_NEXT(s) >= ST_COUNT(s)) break;
        if (!atomic_compare_exchange_weak_explicit(&state, &s, s + 1, memory_order_acq_rel,
                                                   memory_order_acquire))
            continue;
        uint32_t c = ST_NEXT(s);
        job_run(job_ctx, bounds[c], bounds[c + 1]);
        ran++;
        s = atomic_load_explicit(&state, memory_order_acquire);
    }
    return ran;
}

static void chunks_done(uint32_t ran, uint32_t count) {
    if (ran == 0) return;
    if (atomic_fetch_add(&done, ran) + ran == count && /* seq_cst: see caller_asleep */
        atomic_load(&caller_asleep)) {
        pthread_mutex_lock(&mu);
        pthread_cond_signal(&finished);
        pthread_mutex_unlock(&mu);
    }
}

static void *worker_main(void *arg) {
    const int index = (int)(intptr_t)arg;
    uint32_t seen = start_gen[index];
    for (;;) {
        uint64_t s = atomic_load_explicit(&state, memory_order_acquire);
        for (int k = 0; ST_GEN(s) == seen && k < SPIN_ROUNDS; k++) {
            if (index >= atomic_load_explicit(&stop_from, memory_order_relaxed)) break;
            CPU_RELAX();
            s = atomic_load_explicit(&state, memory_order_acquire);
        }
        if (ST_GEN(s) == seen) {
            pthread_mutex_lock(&mu);
            atomic_fetch_add(&sleepers, 1);
            while (ST_GEN(s = atomic_load(&state)) == seen && index < atomic_load(&stop_from))
                pthread_cond_wait(&wake, &mu);
            atomic_fetch_sub(&sleepers, 1);
            pthread_mutex_unlock(&mu);
        }
        if (index >= atomic_load(&stop_from)) return NULL;
        seen = ST_GEN(s);
        chunks_done(run_chunks(seen), ST_COUNT(s));
    }
}

static void wake_all(void) {
    pthread_mutex_lock(&mu);
    pthread_cond_broadcast(&wake);
    pthread_mutex_unlock(&mu);
}

/* Stops and joins workers keep+1..nworkers. The caller holds owner. */
static void stop_workers(int keep) {
    if (nworkers <= keep) return;
    atomic_store(&stop_from, keep + 1);
    wake_all();
    for (int w = keep + 1; w <= nworkers; w++) pthread_join(tids[w - 1], NULL);
    nworkers = keep;
    atomic_store(&stop_from, INT_MAX);
}

static void at_exit(void) {
    pthread_mutex_lock(&owner);
    stop_workers(0);
    pthread_mutex_unlock(&owner);
}

static void before_fork(void) {
    pthread_mutex_lock(&owner);
    pthread_mutex_lock(&mu);
}

static void after_fork_parent(void) {
    pthread_mutex_unlock(&mu);
    pthread_mutex_unlock(&owner);
}

/* The child has only the thread that forked, which holds both locks: an empty pool. */
static void after_fork_child(void) {
    nworkers = 0;
    atomic_store(&sleepers, 0);
    atomic_store(&caller_asleep, 0);
    atomic_store(&stop_from, INT_MAX);
    pthread_cond_init(&wake, NULL);
    pthread_cond_init(&finished, NULL);
    pthread_mutex_unlock(&mu);
    pthread_mutex_unlock(&owner);
}

static void register_handlers(void) {
    pthread_atfork(before_fork, after_fork_parent, after_fork_child);
    atexit(at_exit);
}

/* Workers 1..want started (as many as could be); the caller holds owner. A worker starts with
 * every signal blocked (the mask it inherits): a process-directed signal (SIGALRM, SIGINT) must
 * reach a thread that can act on it, Python's main thread, not interrupt a worker. */
static int grow(int want) {
    if (want > AMS_MAX_THREADS - 1) want = AMS_MAX_THREADS - 1;
    if (nworkers >= want) return nworkers;
    uint32_t gen = ST_GEN(atomic_load(&state));
    sigset_t all, old;
    sigfillset(&all);
    int masked = pthread_sigmask(SIG_SETMASK, &all, &old) == 0;
    while (nworkers < want) {
        int w = nworkers + 1;
        start_gen[w] = gen;
        if (pthread_create(&tids[w - 1], NULL, worker_main, (void *)(intptr_t)w) != 0) break;
        nworkers = w;
    }
    if (masked) pthread_sigmask(SIG_SETMASK, &old, NULL);
    return nworkers;
}

void ams_pool_resize(int workers) {
    if (workers < 0) workers = 0;
    pthread_mutex_lock(&owner);
    stop_workers(workers);
    pthread_mutex_unlock(&owner);
}

void ams_pool_parallel(const void *ctx, size_t total, int nt, ams_range_fn run, ams_cut_fn cut) {
    pthread_once(&once, register_handlers);
    if (pthread_mutex_trylock(&owner) != 0) { /* another call is using the pool */
        run(ctx, 0, total);
        return;
    }
    if (grow(nt - 1) < 1) {
        pthread_mutex_unlock(&owner);
        run(ctx, 0, total);
        return;
    }
    uint32_t count = (uint32_t)nt * CHUNKS_PER_THREAD;
    size_t prev = 0;
    bounds[0] = 0;
    for (uint32_t c = 1; c < count; c++) {
        size_t b = (size_t)((double)total * c / count);
        b = b >= total ? total : b == 0 ? 0 : cut(ctx, b, total);
        if (b < prev) b = prev;
        bounds[c] = prev = b;
    }
    bounds[count] = total;
    job_ctx = ctx;
    job_run = run;
    atomic_store_explicit(&done, 0, memory_order_relaxed);
    uint32_t gen = ST_GEN(atomic_load(&state)) + 1;
    atomic_store(&state, ((uint64_t)gen << 32) | ((uint64_t)count << 16)); /* seq_cst */
    if (atomic_load(&sleepers) > 0) wake_all();
    uint32_t ran = run_chunks(gen);
    if (atomic_fetch_add(&done, ran) + ran != count) {
        for (int k = 0; atomic_load_explicit(&done, memory_order_acquire) != count; k++) {
            if (k < SPIN_ROUNDS) {
                CPU_RELAX();
                continue;
            }
            pthread_mutex_lock(&mu);
            atomic_store(&caller_asleep, 1);
            while (atomic_load(&done) != count) pthread_cond_wait(&finished, &mu);
            atomic_store(&caller_asleep, 0);
            pthread_mutex_unlock(&mu);
        }
    }
    pthread_mutex_unlock(&owner);
}

#else
typedef int ams_no_pool; /* ISO C wants something in a translation unit */
#endif /* AMS_HAVE_PTHREADS */
