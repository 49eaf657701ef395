/*
 * internal.h: what the translation units of amsgrad.core._native share (not installed, not an
 * API). Types of the update (per-row constants, kernel signature, the job a call runs), the
 * instruction-set levels and the functions each file provides to the others.
 */
#ifndef AMS_INTERNAL_H
#define AMS_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

/* The x86 SIMD kernels need GCC or clang (target attributes, __builtin_cpu_supports);
 * -DAMS_NO_SIMD leaves them out altogether. */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(AMS_NO_SIMD)
#define AMS_X86 1
#else
#define AMS_X86 0
#endif

/* The AVX-512F float32 kernel (the avx512 level then uses it): off by default, measured no
 * faster than AVX2 (see kernels_avx512.c). */
#ifndef AMS_AVX512_F32
#define AMS_AVX512_F32 0
#endif

/* Symbols shared between the files but not exported from the shared object. */
#if defined(__GNUC__) || defined(__clang__)
#define AMS_HIDDEN __attribute__((visibility("hidden")))
#else
#define AMS_HIDDEN
#endif

/* The GIL is released only for calls with at least this many elements (NumPy does the same with
 * its own small threshold): for tiny calls, handing the GIL over to a waiting thread costs more
 * than the work. */
#ifndef AMS_GIL_MIN
#define AMS_GIL_MIN 2048
#endif
#define AMS_ALIGN 64 /* chunk boundaries inside one array, in elements */

enum { DT_F16 = 0, DT_F32 = 1, DT_F64 = 2 };
#define AMS_DT_SIZE(dt) ((size_t)2 << (dt)) /* 2, 4, 8 bytes */

/* Per-row constants, computed in T as the SPEC says. Stored as double (exact for every T). */
typedef struct {
    double lrt, c1, c2, eps;
} consts_t;

/* kernel: update n elements of (x, m, v, vh) from g with constants c. The pointers may have any
 * alignment. */
typedef void (*kernel_fn)(void *x, void *m, void *v, void *vh, const void *g, size_t n,
                          const consts_t *c);

/* Instruction-set levels, lowest first. */
enum { LV_PORTABLE = 0, LV_AVX2 = 1, LV_AVX512 = 2, LV_COUNT = 3 };

/* kernels.c: constants, the portable kernels, the level in use */
AMS_HIDDEN void ams_make_consts(int dt, const void *hyper, size_t base, size_t stride,
                                consts_t *c);
AMS_HIDDEN int ams_level_supported(int level);
AMS_HIDDEN int ams_best_level(void);
AMS_HIDDEN void ams_set_level(int level); /* a supported level */
AMS_HIDDEN int ams_level(void);
AMS_HIDDEN const char *ams_level_name(int level);        /* "avx512", "avx2", "portable" */
AMS_HIDDEN const char *ams_level_description(int level); /* "avx512f+avx2+f16c", ... */
AMS_HIDDEN kernel_fn ams_kernel(int dt);                 /* of the level in use */

#if AMS_X86
/* kernels_avx2.c, kernels_avx512.c */
AMS_HIDDEN void ams_k_f16_avx2(void *, void *, void *, void *, const void *, size_t,
                               const consts_t *);
AMS_HIDDEN void ams_k_f32_avx2(void *, void *, void *, void *, const void *, size_t,
                               const consts_t *);
AMS_HIDDEN void ams_k_f64_avx2(void *, void *, void *, void *, const void *, size_t,
                               const consts_t *);
AMS_HIDDEN void ams_k_f16_avx512(void *, void *, void *, void *, const void *, size_t,
                                 const consts_t *);
AMS_HIDDEN void ams_k_f64_avx512(void *, void *, void *, void *, const void *, size_t,
                                 const consts_t *);
#if AMS_AVX512_F32
AMS_HIDDEN void ams_k_f32_avx512(void *, void *, void *, void *, const void *, size_t,
                                 const consts_t *);
#endif
#endif

/* threads.c: one call's work, run over threads */
typedef struct {
    int dt;
    int nthreads; /* the thread count read (under the GIL) when the job was made */
    kernel_fn kern;
    size_t isz;
    /* single tensor (apply): flat element space [0, n) */
    char *p[5];
    size_t L;          /* row length */
    size_t nrows;      /* rows */
    const void *hyper; /* 6 * nrows elements, hyper[k * nrows + r] */
    /* many tensors (apply_many): flat element space is the concatenation */
    size_t K;
    char *const *ptrs;  /* ptrs[5 * i + role] */
    const size_t *pref; /* pref[i] = first element of tensor i; pref[K] = total */
    consts_t c;         /* constants of apply_many */
    const consts_t *cs; /* or, when not NULL, tensor i's constants are cs[ci[i]] */
    const int64_t *ci;  /* (apply_addresses with several sets of hyper-parameters) */
} job_t;

AMS_HIDDEN void ams_run_job(const job_t *j, size_t total);
/* apply.c: ams_run_job from a caller that holds the GIL, released for jobs of AMS_GIL_MIN
 * elements or more */
AMS_HIDDEN void ams_run_job_released(const job_t *j, size_t total);
/* module.c: the thread count for new jobs (read and written under the GIL) */
AMS_HIDDEN extern int ams_num_threads;
AMS_HIDDEN int ams_cpu_count(void);

/* buffers.c: the buffer protocol and memory overlap (files that include Python.h first) */
#ifdef Py_PYTHON_H
AMS_HIDDEN extern const char *const ams_role_names[5]; /* var, m, v, vhat, grad */

/* Acquire a C-contiguous buffer of 'e', 'f' or 'd'; returns the dtype or -1 with an exception
 * set (what: the argument's name, for the message). An exact ndarray is read directly
 * (ndarray.c) when it certainly qualifies. Release with ams_release_buf. */
AMS_HIDDEN int ams_get_buf(PyObject *obj, Py_buffer *view, int writable, const char *what);

/* ndarray.c: an exact numpy.ndarray read through NumPy's C-API, with the buffer protocol's
 * decisions. ams_ndarray_init: at import, 0 (the direct path may be unavailable: no exception
 * then) or -1 on a memory error. ams_ndarray_view: the dtype, with view filled as the buffer
 * protocol would (flags PyBUF_ND | PyBUF_FORMAT [| PyBUF_WRITABLE]), or -1 with no exception
 * set: the caller then asks the buffer protocol. ams_release_buf: releases either kind. */
AMS_HIDDEN int ams_ndarray_init(void);
AMS_HIDDEN int ams_ndarray_view(PyObject *obj, Py_buffer *view, int writable);
AMS_HIDDEN void ams_release_buf(Py_buffer *view);
AMS_HIDDEN PyObject *ams_py_set_ndarray_direct(PyObject *self, PyObject *arg);
AMS_HIDDEN PyObject *ams_py_ndarray_direct(PyObject *self, PyObject *unused);
AMS_HIDDEN int ams_overlaps(const Py_buffer *a, const Py_buffer *b);

/* A buffer's memory [start, end) and who it is (5 * tensor index + role). */
typedef struct {
    uintptr_t start, end;
    uint32_t id;
} ival_t;

/* Sorts iv[0..n) by start (tmp: room for n more) and looks for two intervals that overlap:
 * returns 1 and their ids (a < b), or 0. */
AMS_HIDDEN int ams_find_overlap(ival_t *iv, ival_t *tmp, size_t n, uint32_t *a, uint32_t *b);

/* apply.c: the module's apply() and apply_many() */
AMS_HIDDEN PyObject *ams_py_apply(PyObject *self, PyObject *const *args, Py_ssize_t nargs);
AMS_HIDDEN PyObject *ams_py_apply_many(PyObject *self, PyObject *const *args, Py_ssize_t nargs);
/* addresses.c: apply_addresses() */
AMS_HIDDEN PyObject *ams_py_apply_addresses(PyObject *self, PyObject *const *args,
                                            Py_ssize_t nargs);
/* fast.c: apply_fast() and set_fast_types() */
AMS_HIDDEN PyObject *ams_py_apply_fast(PyObject *self, PyObject *const *args, Py_ssize_t nargs);
AMS_HIDDEN PyObject *ams_py_set_fast_types(PyObject *self, PyObject *const *args,
                                           Py_ssize_t nargs);
#endif

#endif /* AMS_INTERNAL_H */
