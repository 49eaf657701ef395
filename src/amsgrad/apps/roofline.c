/*
 * amsgrad.apps._roofline: the memory roofline of the update, for the benchmark (amsgrad bench).
 *
 * roofline(a, b, c, d, e) moves the data the update moves, five reads and four writes per
 * element, with no arithmetic to speak of (a bitwise or):
 *
 *   a = b;  b = c;  c = d;  d = e | a_old          (byte for byte; e is only read)
 *
 * with the vector width of the update for the dtype (two vectors an iteration, as the update's
 * loop: with AVX2, 32 bytes for float32 and float64, and 16 bytes for float16, the 8 halves an
 * AVX2 vector of the update loads; with AVX-512F, 64 bytes for float64 and 32 bytes for float32
 * and float16) and its threading: the same split over the same
 * number of threads (set_num_threads; the benchmark passes amsgrad.get_num_threads()), through
 * the kernel's parallel.h. Its time is the floor set by memory bandwidth for the update.
 *
 * A separate, optional extension: it is benchmark code and not part of the product kernel. The
 * instruction set follows the kernel's default: the best the CPU has, or AMSGRAD_SIMD
 * (portable, avx2, avx512, best) read at import (an invalid value is the kernel's to report).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdlib.h>
#include <string.h>

#include "parallel.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(AMS_NO_SIMD)
#define R_X86 1
#include <immintrin.h>
#else
#define R_X86 0
#endif

enum { R_PORTABLE = 0, R_AVX2 = 1, R_AVX512 = 2 };
static int g_level = R_PORTABLE;
static int g_threads = 1;

static void r_port(unsigned char *a, unsigned char *b, unsigned char *c, unsigned char *d,
                   const unsigned char *e, size_t nb) {
    for (size_t i = 0; i < nb; i++) {
        unsigned char ta = a[i];
        a[i] = b[i];
        b[i] = c[i];
        c[i] = d[i];
        d[i] = (unsigned char)(e[i] | ta);
    }
}

#if R_X86
#define R_LD32(p) _mm256_loadu_si256((const __m256i *)(const void *)(p))
#define R_ST32(p, x) _mm256_storeu_si256((__m256i *)(void *)(p), (x))
#define R_LD16(p) _mm_loadu_si128((const __m128i *)(const void *)(p))
#define R_ST16(p, x) _mm_storeu_si128((__m128i *)(void *)(p), (x))

__attribute__((target("avx512f"))) static void r_vec64(unsigned char *a, unsigned char *b,
                                                       unsigned char *c, unsigned char *d,
                                                       const unsigned char *e, size_t nb) {
    size_t i = 0;
    for (; i + 128 <= nb; i += 128) {
        __m512i A0 = _mm512_loadu_si512(a + i), A1 = _mm512_loadu_si512(a + i + 64);
        __m512i B0 = _mm512_loadu_si512(b + i), B1 = _mm512_loadu_si512(b + i + 64);
        __m512i C0 = _mm512_loadu_si512(c + i), C1 = _mm512_loadu_si512(c + i + 64);
        __m512i D0 = _mm512_loadu_si512(d + i), D1 = _mm512_loadu_si512(d + i + 64);
        __m512i E0 = _mm512_loadu_si512(e + i), E1 = _mm512_loadu_si512(e + i + 64);
        _mm512_storeu_si512(a + i, B0);
        _mm512_storeu_si512(a + i + 64, B1);
        _mm512_storeu_si512(b + i, C0);
        _mm512_storeu_si512(b + i + 64, C1);
        _mm512_storeu_si512(c + i, D0);
        _mm512_storeu_si512(c + i + 64, D1);
        _mm512_storeu_si512(d + i, _mm512_or_si512(E0, A0));
        _mm512_storeu_si512(d + i + 64, _mm512_or_si512(E1, A1));
    }
    if (i < nb) r_port(a + i, b + i, c + i, d + i, e + i, nb - i);
}

/* two vectors an iteration, like the update's unrolled loop */
__attribute__((target("avx2"))) static void r_vec32(unsigned char *a, unsigned char *b,
                                                    unsigned char *c, unsigned char *d,
                                                    const unsigned char *e, size_t nb) {
    size_t i = 0;
    for (; i + 64 <= nb; i += 64) {
        __m256i A0 = R_LD32(a + i), A1 = R_LD32(a + i + 32);
        __m256i B0 = R_LD32(b + i), B1 = R_LD32(b + i + 32);
        __m256i C0 = R_LD32(c + i), C1 = R_LD32(c + i + 32);
        __m256i D0 = R_LD32(d + i), D1 = R_LD32(d + i + 32);
        __m256i E0 = R_LD32(e + i), E1 = R_LD32(e + i + 32);
        R_ST32(a + i, B0);
        R_ST32(a + i + 32, B1);
        R_ST32(b + i, C0);
        R_ST32(b + i + 32, C1);
        R_ST32(c + i, D0);
        R_ST32(c + i + 32, D1);
        R_ST32(d + i, _mm256_or_si256(E0, A0));
        R_ST32(d + i + 32, _mm256_or_si256(E1, A1));
    }
    if (i < nb) r_port(a + i, b + i, c + i, d + i, e + i, nb - i);
}

__attribute__((target("avx2"))) static void r_vec16(unsigned char *a, unsigned char *b,
                                                    unsigned char *c, unsigned char *d,
                                                    const unsigned char *e, size_t nb) {
    size_t i = 0;
    for (; i + 32 <= nb; i += 32) {
        __m128i A0 = R_LD16(a + i), A1 = R_LD16(a + i + 16);
        __m128i B0 = R_LD16(b + i), B1 = R_LD16(b + i + 16);
        __m128i C0 = R_LD16(c + i), C1 = R_LD16(c + i + 16);
        __m128i D0 = R_LD16(d + i), D1 = R_LD16(d + i + 16);
        __m128i E0 = R_LD16(e + i), E1 = R_LD16(e + i + 16);
        R_ST16(a + i, B0);
        R_ST16(a + i + 16, B1);
        R_ST16(b + i, C0);
        R_ST16(b + i + 16, C1);
        R_ST16(c + i, D0);
        R_ST16(c + i + 16, D1);
        R_ST16(d + i, _mm_or_si128(E0, A0));
        R_ST16(d + i + 16, _mm_or_si128(E1, A1));
    }
    if (i < nb) r_port(a + i, b + i, c + i, d + i, e + i, nb - i);
}
#endif

typedef struct {
    unsigned char *p[5];
    size_t isz; /* bytes an element */
    int level;
} rjob_t;

static void r_range(const void *ctx, size_t lo, size_t hi) {
    const rjob_t *j = (const rjob_t *)ctx;
    const size_t o = lo * j->isz, nb = (hi - lo) * j->isz;
    unsigned char *a = j->p[0] + o, *b = j->p[1] + o, *c = j->p[2] + o, *d = j->p[3] + o;
    const unsigned char *e = j->p[4] + o;
#if R_X86
    if (j->level == R_AVX512 && j->isz == 8) {
        r_vec64(a, b, c, d, e, nb);
        return;
    }
    if (j->level == R_AVX512 || (j->level == R_AVX2 && j->isz > 2)) {
        r_vec32(a, b, c, d, e, nb);
        return;
    }
    if (j->level == R_AVX2) {
        r_vec16(a, b, c, d, e, nb);
        return;
    }
#endif
    r_port(a, b, c, d, e, nb);
}

static size_t r_cut(const void *ctx, size_t b, size_t total) {
    (void)ctx;
    (void)total;
    return b - b % 64; /* the kernel's chunk alignment, in elements */
}

static int format_size(const char *f) {
    if (f && (f[0] == '@' || f[0] == '=' || f[0] == '<')) f++;
    if (f == NULL || f[0] == '\0' || f[1] != '\0') return 0;
    return f[0] == 'e' ? 2 : f[0] == 'f' ? 4 : f[0] == 'd' ? 8 : 0;
}

static PyObject *py_roofline(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    static const char *const names[5] = {"a", "b", "c", "d", "e"};
    if (nargs != 5) {
        PyErr_Format(PyExc_TypeError, "roofline() takes 5 arguments, got %zd", nargs);
        return NULL;
    }
    Py_buffer b[5];
    int got = 0;
    PyObject *result = NULL;
    for (; got < 5; got++) {
        int flags = PyBUF_ND | PyBUF_FORMAT | (got < 4 ? PyBUF_WRITABLE : 0);
        if (PyObject_GetBuffer(args[got], &b[got], flags) != 0) goto done;
        int size = format_size(b[got].format);
        if (size == 0 || b[got].itemsize != size) {
            PyErr_Format(PyExc_TypeError, "roofline: %s must be float16, float32 or float64 data",
                         names[got]);
            got++;
            goto done;
        }
        if (got > 0 && (b[got].itemsize != b[0].itemsize || b[got].len != b[0].len)) {
            PyErr_Format(PyExc_ValueError, "roofline: %s differs from a in format or size",
                         names[got]);
            got++;
            goto done;
        }
    }
    rjob_t j;
    j.isz = (size_t)b[0].itemsize;
    j.level = g_level;
    for (int k = 0; k < 5; k++) j.p[k] = (unsigned char *)b[k].buf;
    size_t n = (size_t)b[0].len / j.isz;
    size_t work = n * (j.isz == 2 ? AMS_WORK_F16 : j.isz == 4 ? AMS_WORK_F32 : AMS_WORK_F64);
    int nt = ams_plan_threads(work, g_threads);
    if (n >= 2048) { /* the kernel's threshold for releasing the GIL */
        Py_BEGIN_ALLOW_THREADS
        ams_parallel(&j, n, nt, r_range, r_cut);
        Py_END_ALLOW_THREADS
    } else {
        ams_parallel(&j, n, nt, r_range, r_cut);
    }
    result = Py_None;
    Py_INCREF(result);
done:
    for (int k = 0; k < got; k++) PyBuffer_Release(&b[k]);
    return result;
}

static PyObject *py_set_num_threads(PyObject *self, PyObject *arg) {
    (void)self;
    long n = PyLong_Check(arg) ? PyLong_AsLong(arg) : -1;
    if (n == -1 && PyErr_Occurred()) return NULL;
    if (n < 1) {
        PyErr_SetString(PyExc_ValueError, "set_num_threads: expected an int >= 1");
        return NULL;
    }
    g_threads = n > AMS_MAX_THREADS ? AMS_MAX_THREADS : (int)n;
    Py_RETURN_NONE;
}

static PyObject *py_get_num_threads(PyObject *self, PyObject *unused) {
    (void)self;
    (void)unused;
    return PyLong_FromLong(g_threads);
}

static PyObject *py_simd(PyObject *self, PyObject *unused) {
    (void)self;
    (void)unused;
    return PyUnicode_FromString(g_level == R_AVX512 ? "avx512f+avx2+f16c"
                                : g_level == R_AVX2 ? "avx2+f16c"
                                                    : "portable");
}

static void choose_level(void) {
    const char *env = getenv("AMSGRAD_SIMD");
    int asked = R_AVX512;
    if (env && strcmp(env, "portable") == 0) asked = R_PORTABLE;
    if (env && strcmp(env, "avx2") == 0) asked = R_AVX2;
    g_level = R_PORTABLE;
#if R_X86
    __builtin_cpu_init();
    if (asked >= R_AVX2 && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("f16c"))
        g_level = asked >= R_AVX512 && __builtin_cpu_supports("avx512f") ? R_AVX512 : R_AVX2;
#else
    (void)asked;
#endif
}

static PyMethodDef methods[] = {
    {"roofline", (PyCFunction)(void (*)(void))py_roofline, METH_FASTCALL,
     "roofline(a, b, c, d, e) -> None\n\n"
     "Memory roofline of the update: five reads and four writes (a=b, b=c, c=d, d=e|a), no\n"
     "arithmetic, the update's vector width and threading."},
    {"set_num_threads", py_set_num_threads, METH_O, "set_num_threads(n): threads (n >= 1)."},
    {"get_num_threads", py_get_num_threads, METH_NOARGS, "get_num_threads() -> int"},
    {"simd", py_simd, METH_NOARGS, "simd() -> str: the instruction set of the loop."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef moduledef = {PyModuleDef_HEAD_INIT,
                                       "amsgrad.apps._roofline",
                                       "Memory roofline of the update (benchmark only).",
                                       -1,
                                       methods,
                                       NULL,
                                       NULL,
                                       NULL,
                                       NULL};

PyMODINIT_FUNC PyInit__roofline(void) {
    choose_level();
    return PyModule_Create(&moduledef);
}
