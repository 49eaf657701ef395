/*
 * threads.c: one call's work (a job) over its flat element space, split over threads.
 *
 * apply() sees one tensor of nrows rows, each row with its own hyper-parameters; apply_many()
 * sees K tensors one after the other, with one set of hyper-parameters. Either way the job is a
 * range [0, total) of elements; parallel.h cuts it into contiguous chunks (boundaries at
 * multiples of AMS_ALIGN elements inside an array, so that chunks start on cache lines when the
 * arrays do) and each chunk walks the rows or tensors it covers.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* sched_getaffinity, CPU_COUNT */
#endif
#include "internal.h"
#include "parallel.h"

#if AMS_HAVE_PTHREADS
#include <unistd.h>
#if defined(__linux__)
#include <sched.h>
#endif
#endif

static void run_single(const job_t *j, size_t lo, size_t hi) {
    const size_t isz = j->isz;
    if (j->nrows == 1) {
        consts_t c;
        ams_make_consts(j->dt, j->hyper, 0, 1, &c);
        j->kern(j->p[0] + lo * isz, j->p[1] + lo * isz, j->p[2] + lo * isz, j->p[3] + lo * isz,
                j->p[4] + lo * isz, hi - lo, &c);
        return;
    }
    size_t L = j->L, r = lo / L;
    while (lo < hi) {
        size_t end = (r + 1) * L;
        if (end > hi) end = hi;
        consts_t c;
        ams_make_consts(j->dt, j->hyper, r, j->nrows, &c);
        j->kern(j->p[0] + lo * isz, j->p[1] + lo * isz, j->p[2] + lo * isz, j->p[3] + lo * isz,
                j->p[4] + lo * isz, end - lo, &c);
        lo = end;
        r++;
    }
}

/* index of the tensor holding flat element e (pref[i] <= e < pref[i+1]), e < pref[K] */
static size_t find_tensor(const size_t *pref, size_t K, size_t e) {
    size_t a = 0, b = K; /* pref[a] <= e < pref[b] */
    while (b - a > 1) {
        size_t mid = a + (b - a) / 2;
        if (pref[mid] <= e)
            a = mid;
        else
            b = mid;
    }
    return a;
}

static void run_many(const job_t *j, size_t lo, size_t hi) {
    if (lo >= hi) return;
    const size_t isz = j->isz;
    size_t i = find_tensor(j->pref, j->K, lo);
    while (lo < hi) {
        size_t end = j->pref[i + 1];
        if (end > hi) end = hi;
        if (end > lo) {
            size_t off = (lo - j->pref[i]) * isz;
            char *const *q = j->ptrs + 5 * i;
            const consts_t *c = j->cs ? &j->cs[j->ci[i]] : &j->c;
            j->kern(q[0] + off, q[1] + off, q[2] + off, q[3] + off, q[4] + off, end - lo, c);
        }
        lo = end;
        i++;
    }
}

static void run_range(const void *ctx, size_t lo, size_t hi) {
    const job_t *j = (const job_t *)ctx;
    if (j->ptrs)
        run_many(j, lo, hi);
    else
        run_single(j, lo, hi);
}

/* a chunk boundary b < total, moved down to a multiple of AMS_ALIGN elements inside its tensor */
static size_t align_boundary(const void *ctx, size_t b, size_t total) {
    const job_t *j = (const job_t *)ctx;
    (void)total;
    if (!j->ptrs) return b - (b % AMS_ALIGN);
    size_t i = find_tensor(j->pref, j->K, b);
    size_t local = b - j->pref[i];
    return j->pref[i] + (local - local % AMS_ALIGN);
}

static const size_t work_per_element[3] = {AMS_WORK_F16, AMS_WORK_F32, AMS_WORK_F64};

void ams_run_job(const job_t *j, size_t total) {
    int nt = ams_plan_threads(total * work_per_element[j->dt], j->nthreads);
    ams_parallel(j, total, nt, run_range, align_boundary);
}

/* The CPUs this process may run on (its affinity mask where there is one), 1 to
 * AMS_MAX_THREADS: the default thread count. */
int ams_cpu_count(void) {
    long n = 1;
#if defined(__linux__)
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof set, &set) == 0) {
        n = CPU_COUNT(&set);
    } else {
        n = sysconf(_SC_NPROCESSORS_ONLN);
    }
#elif AMS_HAVE_PTHREADS && defined(_SC_NPROCESSORS_ONLN)
    n = sysconf(_SC_NPROCESSORS_ONLN);
#endif
    if (n < 1) n = 1;
    if (n > AMS_MAX_THREADS) n = AMS_MAX_THREADS;
    return (int)n;
}
