/*
 * amsgrad.core._native: the fused kernel of MindSpore's ApplyAdamWithAmsgradV2.
 *
 * Plain C11 + the CPython API + the buffer protocol (no NumPy headers). The arithmetic is the one of
 * the project's SPEC, bit for bit: every operation is rounded to T (float16: computed in float32
 * and rounded to half right after), no fused multiply-add (build with -ffp-contract=off; the AVX2
 * functions are compiled for "avx2,f16c" only, never "fma").
 *
 *   m    = m + (grad - m) * c1                     c1 = 1 - beta1
 *   v    = v + (grad * grad - v) * c2              c2 = 1 - beta2
 *   vhat = (vhat < v) ? v : vhat                   ordered compare: a NaN keeps the old vhat
 *   var  = var - (lr_t * m) / (T(sqrt(vhat)) + epsilon)
 *   lr_t = (lr * T(sqrt(1 - beta2_power))) / (1 - beta1_power)      (per row, in T)
 *
 * Code paths: AVX2 + F16C (chosen at run time with __builtin_cpu_supports on x86-64; 8 floats,
 * 4 doubles or 8 halves per vector; tails go through the same vector code on a padded copy, so every
 * element gets identical bits whatever the split) and a portable scalar path. The environment
 * variable AMSGRAD_SIMD=portable, read at import, forces the portable path (for testing); compiling
 * with -DAMS_NO_SIMD leaves the x86 code out altogether.
 *
 * Threads: large calls are split into contiguous chunks (aligned to 64 elements) run by pthreads
 * created for the call; elementwise arithmetic makes the result independent of the split.
 */
#define PY_SSIZE_T_CLEAN
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <Python.h>

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(_WIN32)
#define AMS_HAVE_PTHREADS 0
#else
#define AMS_HAVE_PTHREADS 1
#include <pthread.h>
#include <unistd.h>
#if defined(__linux__)
#include <sched.h>
#endif
#endif

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(AMS_NO_SIMD)
#define AMS_X86 1
#include <immintrin.h>
#else
#define AMS_X86 0
#endif

/* ------------------------------------------------------------------------------------------ */
/* Tunables                                                                                    */

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
static const size_t dt_work[3] = {4, 1, 2};
/* The GIL is released only for calls with at least this many elements (NumPy does the same with
 * its own small threshold): for tiny calls, handing the GIL over to a waiting thread costs more
 * than the work. */
#ifndef AMS_GIL_MIN
#define AMS_GIL_MIN 2048
#endif
#define AMS_MAX_THREADS 256
#define AMS_ALIGN 64 /* chunk boundaries inside one array, in elements */

/* ------------------------------------------------------------------------------------------ */
/* float16 <-> float32, round to nearest even, subnormals, inf and NaN (portable, integer only). */

static inline uint32_t f_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}
static inline float bits_f(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static inline float h2f(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t mant = h & 0x3ffu;
    if (exp == 0x1f) return bits_f(sign | 0x7f800000u | (mant << 13));
    if (exp == 0) {
        /* zero or subnormal: mant * 2^-24, exact in float */
        float f = (float)mant * 5.9604644775390625e-08f;
        return bits_f(f_bits(f) | sign);
    }
    return bits_f(sign | ((exp + 112u) << 23) | (mant << 13));
}

static inline uint16_t f2h(float f) {
    uint32_t x = f_bits(f);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
    x &= 0x7fffffffu;
    if (x >= 0x7f800000u) {
        if (x == 0x7f800000u) return (uint16_t)(sign | 0x7c00u);
        return (uint16_t)(sign | 0x7e00u | ((x & 0x7fffffu) >> 13)); /* quiet NaN, top payload */
    }
    if (x >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* >= 65520 rounds to inf */
    if (x >= 0x38800000u) {                                   /* normal half */
        uint32_t b = x - (112u << 23);
        uint32_t o = b >> 13, rem = b & 0x1fffu;
        if (rem > 0x1000u || (rem == 0x1000u && (o & 1u))) o++;
        return (uint16_t)(sign | o);
    }
    {
        uint32_t e = x >> 23;
        if (e < 102) return sign; /* below 2^-25: rounds to zero */
        uint32_t mm = (x & 0x7fffffu) | 0x800000u;
        uint32_t shift = 126u - e; /* 14 .. 24 */
        uint32_t o = mm >> shift, rem = mm & ((1u << shift) - 1u), half = 1u << (shift - 1u);
        if (rem > half || (rem == half && (o & 1u))) o++;
        return (uint16_t)(sign | o);
    }
}

static inline float rh(float x) { return h2f(f2h(x)); }

/* ------------------------------------------------------------------------------------------ */
/* Per-row constants, computed in T as the SPEC says. Stored as double (exact for every T).    */

typedef struct {
    double lrt, c1, c2, eps;
} consts_t;

enum { DT_F16 = 0, DT_F32 = 1, DT_F64 = 2 };
static const size_t dt_size[3] = {2, 4, 8};

/* h: the six hyper-parameter values (beta1_power, beta2_power, lr, beta1, beta2, epsilon), each
 * read from the buffer at element index base + k * stride. */
static void make_consts(int dt, const void *hyper, size_t base, size_t stride, consts_t *c) {
    if (dt == DT_F64) {
        const double *h = (const double *)hyper;
        double b1p = h[base], b2p = h[base + stride], lr = h[base + 2 * stride];
        double b1 = h[base + 3 * stride], b2 = h[base + 4 * stride], eps = h[base + 5 * stride];
        double s = sqrt(1.0 - b2p);
        c->lrt = (lr * s) / (1.0 - b1p);
        c->c1 = 1.0 - b1;
        c->c2 = 1.0 - b2;
        c->eps = eps;
    } else if (dt == DT_F32) {
        const float *h = (const float *)hyper;
        float b1p = h[base], b2p = h[base + stride], lr = h[base + 2 * stride];
        float b1 = h[base + 3 * stride], b2 = h[base + 4 * stride], eps = h[base + 5 * stride];
        float omb2p = 1.0f - b2p;
        float s = (float)sqrt((double)omb2p);
        float num = lr * s;
        float den = 1.0f - b1p;
        c->lrt = (double)(float)(num / den);
        c->c1 = (double)(float)(1.0f - b1);
        c->c2 = (double)(float)(1.0f - b2);
        c->eps = (double)eps;
    } else {
        const uint16_t *h = (const uint16_t *)hyper;
        float b1p = h2f(h[base]), b2p = h2f(h[base + stride]), lr = h2f(h[base + 2 * stride]);
        float b1 = h2f(h[base + 3 * stride]), b2 = h2f(h[base + 4 * stride]);
        float eps = h2f(h[base + 5 * stride]);
        float omb2p = rh(1.0f - b2p);
        /* sqrt in float then to half equals sqrt in double then to half (24 >= 2*11 + 2) */
        float s = rh(sqrtf(omb2p));
        c->lrt = (double)rh(rh(lr * s) / rh(1.0f - b1p));
        c->c1 = (double)rh(1.0f - b1);
        c->c2 = (double)rh(1.0f - b2);
        c->eps = (double)eps;
    }
}

/* kernel: update n elements of (x, m, v, vh) from g with constants c. */
typedef void (*kernel_fn)(void *x, void *m, void *v, void *vh, const void *g, size_t n,
                          const consts_t *c);

/* ------------------------------------------------------------------------------------------ */
/* Portable kernels                                                                            */

static void k_f64_port(void *x_, void *m_, void *v_, void *vh_, const void *g_, size_t n,
                       const consts_t *c) {
    double *X = (double *)x_, *M = (double *)m_, *V = (double *)v_, *H = (double *)vh_;
    const double *G = (const double *)g_;
    const double lrt = c->lrt, c1 = c->c1, c2 = c->c2, eps = c->eps;
    for (size_t i = 0; i < n; i++) {
        double g = G[i], m = M[i], v = V[i], h = H[i];
        m = m + (g - m) * c1;
        v = v + (g * g - v) * c2;
        h = (h < v) ? v : h;
        M[i] = m;
        V[i] = v;
        H[i] = h;
        X[i] = X[i] - (lrt * m) / (sqrt(h) + eps);
    }
}

static void k_f32_port(void *x_, void *m_, void *v_, void *vh_, const void *g_, size_t n,
                       const consts_t *c) {
    float *X = (float *)x_, *M = (float *)m_, *V = (float *)v_, *H = (float *)vh_;
    const float *G = (const float *)g_;
    const float lrt = (float)c->lrt, c1 = (float)c->c1, c2 = (float)c->c2, eps = (float)c->eps;
    for (size_t i = 0; i < n; i++) {
        float g = G[i], m = M[i], v = V[i], h = H[i];
        m = m + (g - m) * c1;
        v = v + (g * g - v) * c2;
        h = (h < v) ? v : h;
        M[i] = m;
        V[i] = v;
        H[i] = h;
        X[i] = X[i] - (lrt * m) / (sqrtf(h) + eps);
    }
}

static void k_f16_port(void *x_, void *m_, void *v_, void *vh_, const void *g_, size_t n,
                       const consts_t *c) {
    uint16_t *X = (uint16_t *)x_, *M = (uint16_t *)m_, *V = (uint16_t *)v_, *H = (uint16_t *)vh_;
    const uint16_t *G = (const uint16_t *)g_;
    const float lrt = (float)c->lrt, c1 = (float)c->c1, c2 = (float)c->c2, eps = (float)c->eps;
    for (size_t i = 0; i < n; i++) {
        float g = h2f(G[i]), m = h2f(M[i]), v = h2f(V[i]), h = h2f(H[i]), x = h2f(X[i]);
        m = rh(m + rh(rh(g - m) * c1));
        v = rh(v + rh(rh(rh(g * g) - v) * c2));
        h = (h < v) ? v : h;
        float den = rh(rh(sqrtf(h)) + eps);
        float q = rh(rh(lrt * m) / den);
        M[i] = f2h(m);
        V[i] = f2h(v);
        H[i] = f2h(h);
        X[i] = f2h(x - q);
    }
}

/* Roofline: five reads, four writes, no arithmetic to speak of (a bitwise or). */
static void r_port(void *a_, void *b_, void *c_, void *d_, const void *e_, size_t n, size_t isz) {
    unsigned char *a = (unsigned char *)a_, *b = (unsigned char *)b_, *c = (unsigned char *)c_,
                  *d = (unsigned char *)d_;
    const unsigned char *e = (const unsigned char *)e_;
    size_t nb = n * isz;
    for (size_t i = 0; i < nb; i++) {
        unsigned char ta = a[i];
        a[i] = b[i];
        b[i] = c[i];
        c[i] = d[i];
        d[i] = (unsigned char)(e[i] | ta);
    }
}

/* ------------------------------------------------------------------------------------------ */
/* AVX2 + F16C kernels (x86-64)                                                                */

#if AMS_X86
#define AMS_TGT __attribute__((target("avx2,f16c")))

#define F32_BODY(X, M, V, H, G)                                                         \
    do {                                                                                \
        (M) = _mm256_add_ps((M), _mm256_mul_ps(_mm256_sub_ps((G), (M)), c1));           \
        (V) = _mm256_add_ps(                                                            \
            (V), _mm256_mul_ps(_mm256_sub_ps(_mm256_mul_ps((G), (G)), (V)), c2));       \
        (H) = _mm256_blendv_ps((H), (V), _mm256_cmp_ps((H), (V), _CMP_LT_OQ));          \
        (X) = _mm256_sub_ps((X), _mm256_div_ps(_mm256_mul_ps(lrt, (M)),                 \
                                               _mm256_add_ps(_mm256_sqrt_ps(H), eps))); \
    } while (0)

AMS_TGT static void k_f32_avx2(void *x_, void *m_, void *v_, void *vh_, const void *g_, size_t n,
                               const consts_t *c) {
    float *Xp = (float *)x_, *Mp = (float *)m_, *Vp = (float *)v_, *Hp = (float *)vh_;
    const float *Gp = (const float *)g_;
    const __m256 lrt = _mm256_set1_ps((float)c->lrt), c1 = _mm256_set1_ps((float)c->c1);
    const __m256 c2 = _mm256_set1_ps((float)c->c2), eps = _mm256_set1_ps((float)c->eps);
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256 G0 = _mm256_loadu_ps(Gp + i), G1 = _mm256_loadu_ps(Gp + i + 8);
        __m256 M0 = _mm256_loadu_ps(Mp + i), M1 = _mm256_loadu_ps(Mp + i + 8);
        __m256 V0 = _mm256_loadu_ps(Vp + i), V1 = _mm256_loadu_ps(Vp + i + 8);
        __m256 H0 = _mm256_loadu_ps(Hp + i), H1 = _mm256_loadu_ps(Hp + i + 8);
        __m256 X0 = _mm256_loadu_ps(Xp + i), X1 = _mm256_loadu_ps(Xp + i + 8);
        F32_BODY(X0, M0, V0, H0, G0);
        F32_BODY(X1, M1, V1, H1, G1);
        _mm256_storeu_ps(Mp + i, M0);
        _mm256_storeu_ps(Mp + i + 8, M1);
        _mm256_storeu_ps(Vp + i, V0);
        _mm256_storeu_ps(Vp + i + 8, V1);
        _mm256_storeu_ps(Hp + i, H0);
        _mm256_storeu_ps(Hp + i + 8, H1);
        _mm256_storeu_ps(Xp + i, X0);
        _mm256_storeu_ps(Xp + i + 8, X1);
    }
    for (; i + 8 <= n; i += 8) {
        __m256 G0 = _mm256_loadu_ps(Gp + i), M0 = _mm256_loadu_ps(Mp + i);
        __m256 V0 = _mm256_loadu_ps(Vp + i), H0 = _mm256_loadu_ps(Hp + i);
        __m256 X0 = _mm256_loadu_ps(Xp + i);
        F32_BODY(X0, M0, V0, H0, G0);
        _mm256_storeu_ps(Mp + i, M0);
        _mm256_storeu_ps(Vp + i, V0);
        _mm256_storeu_ps(Hp + i, H0);
        _mm256_storeu_ps(Xp + i, X0);
    }
    if (i < n) { /* tail: the same vector code on a zero-padded copy */
        size_t r = n - i;
        float t[5][8];
        memset(t, 0, sizeof t);
        memcpy(t[0], Xp + i, r * 4);
        memcpy(t[1], Mp + i, r * 4);
        memcpy(t[2], Vp + i, r * 4);
        memcpy(t[3], Hp + i, r * 4);
        memcpy(t[4], Gp + i, r * 4);
        __m256 X0 = _mm256_loadu_ps(t[0]), M0 = _mm256_loadu_ps(t[1]), V0 = _mm256_loadu_ps(t[2]);
        __m256 H0 = _mm256_loadu_ps(t[3]), G0 = _mm256_loadu_ps(t[4]);
        F32_BODY(X0, M0, V0, H0, G0);
        _mm256_storeu_ps(t[0], X0);
        _mm256_storeu_ps(t[1], M0);
        _mm256_storeu_ps(t[2], V0);
        _mm256_storeu_ps(t[3], H0);
        memcpy(Xp + i, t[0], r * 4);
        memcpy(Mp + i, t[1], r * 4);
        memcpy(Vp + i, t[2], r * 4);
        memcpy(Hp + i, t[3], r * 4);
    }
}

#define F64_BODY(X, M, V, H, G)                                                         \
    do {                                                                                \
        (M) = _mm256_add_pd((M), _mm256_mul_pd(_mm256_sub_pd((G), (M)), c1));           \
        (V) = _mm256_add_pd(                                                            \
            (V), _mm256_mul_pd(_mm256_sub_pd(_mm256_mul_pd((G), (G)), (V)), c2));       \
        (H) = _mm256_blendv_pd((H), (V), _mm256_cmp_pd((H), (V), _CMP_LT_OQ));          \
        (X) = _mm256_sub_pd((X), _mm256_div_pd(_mm256_mul_pd(lrt, (M)),                 \
                                               _mm256_add_pd(_mm256_sqrt_pd(H), eps))); \
    } while (0)

AMS_TGT static void k_f64_avx2(void *x_, void *m_, void *v_, void *vh_, const void *g_, size_t n,
                               const consts_t *c) {
    double *Xp = (double *)x_, *Mp = (double *)m_, *Vp = (double *)v_, *Hp = (double *)vh_;
    const double *Gp = (const double *)g_;
    const __m256d lrt = _mm256_set1_pd(c->lrt), c1 = _mm256_set1_pd(c->c1);
    const __m256d c2 = _mm256_set1_pd(c->c2), eps = _mm256_set1_pd(c->eps);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256d G0 = _mm256_loadu_pd(Gp + i), G1 = _mm256_loadu_pd(Gp + i + 4);
        __m256d M0 = _mm256_loadu_pd(Mp + i), M1 = _mm256_loadu_pd(Mp + i + 4);
        __m256d V0 = _mm256_loadu_pd(Vp + i), V1 = _mm256_loadu_pd(Vp + i + 4);
        __m256d H0 = _mm256_loadu_pd(Hp + i), H1 = _mm256_loadu_pd(Hp + i + 4);
        __m256d X0 = _mm256_loadu_pd(Xp + i), X1 = _mm256_loadu_pd(Xp + i + 4);
        F64_BODY(X0, M0, V0, H0, G0);
        F64_BODY(X1, M1, V1, H1, G1);
        _mm256_storeu_pd(Mp + i, M0);
        _mm256_storeu_pd(Mp + i + 4, M1);
        _mm256_storeu_pd(Vp + i, V0);
        _mm256_storeu_pd(Vp + i + 4, V1);
        _mm256_storeu_pd(Hp + i, H0);
        _mm256_storeu_pd(Hp + i + 4, H1);
        _mm256_storeu_pd(Xp + i, X0);
        _mm256_storeu_pd(Xp + i + 4, X1);
    }
    for (; i + 4 <= n; i += 4) {
        __m256d G0 = _mm256_loadu_pd(Gp + i), M0 = _mm256_loadu_pd(Mp + i);
        __m256d V0 = _mm256_loadu_pd(Vp + i), H0 = _mm256_loadu_pd(Hp + i);
        __m256d X0 = _mm256_loadu_pd(Xp + i);
        F64_BODY(X0, M0, V0, H0, G0);
        _mm256_storeu_pd(Mp + i, M0);
        _mm256_storeu_pd(Vp + i, V0);
        _mm256_storeu_pd(Hp + i, H0);
        _mm256_storeu_pd(Xp + i, X0);
    }
    if (i < n) {
        size_t r = n - i;
        double t[5][4];
        memset(t, 0, sizeof t);
        memcpy(t[0], Xp + i, r * 8);
        memcpy(t[1], Mp + i, r * 8);
        memcpy(t[2], Vp + i, r * 8);
        memcpy(t[3], Hp + i, r * 8);
        memcpy(t[4], Gp + i, r * 8);
        __m256d X0 = _mm256_loadu_pd(t[0]), M0 = _mm256_loadu_pd(t[1]);
        __m256d V0 = _mm256_loadu_pd(t[2]), H0 = _mm256_loadu_pd(t[3]);
        __m256d G0 = _mm256_loadu_pd(t[4]);
        F64_BODY(X0, M0, V0, H0, G0);
        _mm256_storeu_pd(t[0], X0);
        _mm256_storeu_pd(t[1], M0);
        _mm256_storeu_pd(t[2], V0);
        _mm256_storeu_pd(t[3], H0);
        memcpy(Xp + i, t[0], r * 8);
        memcpy(Mp + i, t[1], r * 8);
        memcpy(Vp + i, t[2], r * 8);
        memcpy(Hp + i, t[3], r * 8);
    }
}

/* float16: every operation in float32, rounded to half (round to nearest even) right after. */
#define RH8(a) _mm256_cvtph_ps(_mm256_cvtps_ph((a), _MM_FROUND_TO_NEAREST_INT))
#define LDH8(p) _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(p)))
#define STH8(p, a) _mm_storeu_si128((__m128i *)(void *)(p), _mm256_cvtps_ph((a), _MM_FROUND_TO_NEAREST_INT))

#define F16_BODY(X, M, V, H, G)                                                              \
    do {                                                                                     \
        (M) = RH8(_mm256_add_ps((M), RH8(_mm256_mul_ps(RH8(_mm256_sub_ps((G), (M))), c1)))); \
        (V) = RH8(_mm256_add_ps(                                                             \
            (V), RH8(_mm256_mul_ps(RH8(_mm256_sub_ps(RH8(_mm256_mul_ps((G), (G))), (V))),    \
                                   c2))));                                                   \
        (H) = _mm256_blendv_ps((H), (V), _mm256_cmp_ps((H), (V), _CMP_LT_OQ));               \
        __m256 den_ = RH8(_mm256_add_ps(RH8(_mm256_sqrt_ps(H)), eps));                       \
        __m256 q_ = RH8(_mm256_div_ps(RH8(_mm256_mul_ps(lrt, (M))), den_));                  \
        (X) = _mm256_sub_ps((X), q_); /* rounded by the store */                             \
    } while (0)

AMS_TGT static void k_f16_avx2(void *x_, void *m_, void *v_, void *vh_, const void *g_, size_t n,
                               const consts_t *c) {
    uint16_t *Xp = (uint16_t *)x_, *Mp = (uint16_t *)m_, *Vp = (uint16_t *)v_;
    uint16_t *Hp = (uint16_t *)vh_;
    const uint16_t *Gp = (const uint16_t *)g_;
    const __m256 lrt = _mm256_set1_ps((float)c->lrt), c1 = _mm256_set1_ps((float)c->c1);
    const __m256 c2 = _mm256_set1_ps((float)c->c2), eps = _mm256_set1_ps((float)c->eps);
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256 G0 = LDH8(Gp + i), M0 = LDH8(Mp + i), V0 = LDH8(Vp + i), H0 = LDH8(Hp + i);
        __m256 X0 = LDH8(Xp + i);
        __m256 G1 = LDH8(Gp + i + 8), M1 = LDH8(Mp + i + 8), V1 = LDH8(Vp + i + 8);
        __m256 H1 = LDH8(Hp + i + 8), X1 = LDH8(Xp + i + 8);
        F16_BODY(X0, M0, V0, H0, G0);
        F16_BODY(X1, M1, V1, H1, G1);
        STH8(Mp + i, M0);
        STH8(Vp + i, V0);
        STH8(Hp + i, H0);
        STH8(Xp + i, X0);
        STH8(Mp + i + 8, M1);
        STH8(Vp + i + 8, V1);
        STH8(Hp + i + 8, H1);
        STH8(Xp + i + 8, X1);
    }
    for (; i + 8 <= n; i += 8) {
        __m256 G0 = LDH8(Gp + i), M0 = LDH8(Mp + i), V0 = LDH8(Vp + i), H0 = LDH8(Hp + i);
        __m256 X0 = LDH8(Xp + i);
        F16_BODY(X0, M0, V0, H0, G0);
        STH8(Mp + i, M0);
        STH8(Vp + i, V0);
        STH8(Hp + i, H0);
        STH8(Xp + i, X0);
    }
    if (i < n) {
        size_t r = n - i;
        uint16_t t[5][8];
        memset(t, 0, sizeof t);
        memcpy(t[0], Xp + i, r * 2);
        memcpy(t[1], Mp + i, r * 2);
        memcpy(t[2], Vp + i, r * 2);
        memcpy(t[3], Hp + i, r * 2);
        memcpy(t[4], Gp + i, r * 2);
        __m256 X0 = LDH8(t[0]), M0 = LDH8(t[1]), V0 = LDH8(t[2]), H0 = LDH8(t[3]);
        __m256 G0 = LDH8(t[4]);
        F16_BODY(X0, M0, V0, H0, G0);
        STH8(t[0], X0);
        STH8(t[1], M0);
        STH8(t[2], V0);
        STH8(t[3], H0);
        memcpy(Xp + i, t[0], r * 2);
        memcpy(Mp + i, t[1], r * 2);
        memcpy(Vp + i, t[2], r * 2);
        memcpy(Hp + i, t[3], r * 2);
    }
}

/* float16 with AVX-512F: the same operations on 16 lanes (vcvtps2ph/vcvtph2ps on zmm are part of
 * AVX-512F). Where 512-bit units are full width this halves the cost of the roundings, which bound
 * the float16 update. The tail (fewer than 16 elements) goes to the AVX2 kernel. */
#define AMS_TGT512 __attribute__((target("avx512f,avx2,f16c")))
#define RH16(a) _mm512_cvtph_ps(_mm512_cvtps_ph((a), _MM_FROUND_TO_NEAREST_INT))
#define LDH16(p) _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(const void *)(p)))
#define STH16(p, a) \
    _mm256_storeu_si256((__m256i *)(void *)(p), _mm512_cvtps_ph((a), _MM_FROUND_TO_NEAREST_INT))

AMS_TGT512 static void k_f16_avx512(void *x_, void *m_, void *v_, void *vh_, const void *g_, size_t n,
                                    const consts_t *c) {
    uint16_t *Xp = (uint16_t *)x_, *Mp = (uint16_t *)m_, *Vp = (uint16_t *)v_;
    uint16_t *Hp = (uint16_t *)vh_;
    const uint16_t *Gp = (const uint16_t *)g_;
    const __m512 lrt = _mm512_set1_ps((float)c->lrt), c1 = _mm512_set1_ps((float)c->c1);
    const __m512 c2 = _mm512_set1_ps((float)c->c2), eps = _mm512_set1_ps((float)c->eps);
    size_t i = 0;
#define F16_BODY16(X, M, V, H, G)                                                              \
    do {                                                                                       \
        (M) = RH16(_mm512_add_ps((M), RH16(_mm512_mul_ps(RH16(_mm512_sub_ps((G), (M))), c1)))); \
        (V) = RH16(_mm512_add_ps(                                                              \
            (V), RH16(_mm512_mul_ps(RH16(_mm512_sub_ps(RH16(_mm512_mul_ps((G), (G))), (V))),    \
                                    c2))));                                                    \
        (H) = _mm512_mask_blend_ps(_mm512_cmp_ps_mask((H), (V), _CMP_LT_OQ), (H), (V));        \
        __m512 den_ = RH16(_mm512_add_ps(RH16(_mm512_sqrt_ps(H)), eps));                       \
        __m512 q_ = RH16(_mm512_div_ps(RH16(_mm512_mul_ps(lrt, (M))), den_));                  \
        (X) = _mm512_sub_ps((X), q_); /* rounded by the store */                               \
    } while (0)
    for (; i + 32 <= n; i += 32) { /* two independent vectors: more work in flight */
        __m512 G0 = LDH16(Gp + i), M0 = LDH16(Mp + i), V0 = LDH16(Vp + i), H0 = LDH16(Hp + i);
        __m512 X0 = LDH16(Xp + i);
        __m512 G1 = LDH16(Gp + i + 16), M1 = LDH16(Mp + i + 16), V1 = LDH16(Vp + i + 16);
        __m512 H1 = LDH16(Hp + i + 16), X1 = LDH16(Xp + i + 16);
        F16_BODY16(X0, M0, V0, H0, G0);
        F16_BODY16(X1, M1, V1, H1, G1);
        STH16(Mp + i, M0);
        STH16(Vp + i, V0);
        STH16(Hp + i, H0);
        STH16(Xp + i, X0);
        STH16(Mp + i + 16, M1);
        STH16(Vp + i + 16, V1);
        STH16(Hp + i + 16, H1);
        STH16(Xp + i + 16, X1);
    }
    for (; i + 16 <= n; i += 16) {
        __m512 G = LDH16(Gp + i), M = LDH16(Mp + i), V = LDH16(Vp + i), H = LDH16(Hp + i);
        __m512 X = LDH16(Xp + i);
        F16_BODY16(X, M, V, H, G);
        STH16(Mp + i, M);
        STH16(Vp + i, V);
        STH16(Hp + i, H);
        STH16(Xp + i, X);
    }
    if (i < n) k_f16_avx2(Xp + i, Mp + i, Vp + i, Hp + i, Gp + i, n - i, c);
}

/* Roofline with the vector width of the update: 32 bytes a vector for float32/float64 (one
 * vector of 8 floats or 4 doubles), 16 bytes for float16 (8 halves), unrolled the same way. */
AMS_TGT static void r_avx2_32(void *a_, void *b_, void *c_, void *d_, const void *e_, size_t nb) {
    char *a = (char *)a_, *b = (char *)b_, *c = (char *)c_, *d = (char *)d_;
    const char *e = (const char *)e_;
    size_t i = 0;
    for (; i + 64 <= nb; i += 64) {
        __m256 A0 = _mm256_loadu_ps((const float *)(a + i)), A1 = _mm256_loadu_ps((const float *)(a + i + 32));
        __m256 B0 = _mm256_loadu_ps((const float *)(b + i)), B1 = _mm256_loadu_ps((const float *)(b + i + 32));
        __m256 C0 = _mm256_loadu_ps((const float *)(c + i)), C1 = _mm256_loadu_ps((const float *)(c + i + 32));
        __m256 D0 = _mm256_loadu_ps((const float *)(d + i)), D1 = _mm256_loadu_ps((const float *)(d + i + 32));
        __m256 E0 = _mm256_loadu_ps((const float *)(e + i)), E1 = _mm256_loadu_ps((const float *)(e + i + 32));
        _mm256_storeu_ps((float *)(a + i), B0);
        _mm256_storeu_ps((float *)(a + i + 32), B1);
        _mm256_storeu_ps((float *)(b + i), C0);
        _mm256_storeu_ps((float *)(b + i + 32), C1);
        _mm256_storeu_ps((float *)(c + i), D0);
        _mm256_storeu_ps((float *)(c + i + 32), D1);
        _mm256_storeu_ps((float *)(d + i), _mm256_or_ps(E0, A0));
        _mm256_storeu_ps((float *)(d + i + 32), _mm256_or_ps(E1, A1));
    }
    if (i < nb) r_port(a + i, b + i, c + i, d + i, e + i, nb - i, 1);
}

AMS_TGT static void r_avx2_16(void *a_, void *b_, void *c_, void *d_, const void *e_, size_t nb) {
    char *a = (char *)a_, *b = (char *)b_, *c = (char *)c_, *d = (char *)d_;
    const char *e = (const char *)e_;
    size_t i = 0;
    for (; i + 16 <= nb; i += 16) {
        __m128i A0 = _mm_loadu_si128((const __m128i *)(const void *)(a + i));
        __m128i B0 = _mm_loadu_si128((const __m128i *)(const void *)(b + i));
        __m128i C0 = _mm_loadu_si128((const __m128i *)(const void *)(c + i));
        __m128i D0 = _mm_loadu_si128((const __m128i *)(const void *)(d + i));
        __m128i E0 = _mm_loadu_si128((const __m128i *)(const void *)(e + i));
        _mm_storeu_si128((__m128i *)(void *)(a + i), B0);
        _mm_storeu_si128((__m128i *)(void *)(b + i), C0);
        _mm_storeu_si128((__m128i *)(void *)(c + i), D0);
        _mm_storeu_si128((__m128i *)(void *)(d + i), _mm_or_si128(E0, A0));
    }
    if (i < nb) r_port(a + i, b + i, c + i, d + i, e + i, nb - i, 1);
}
#endif /* AMS_X86 */

/* ------------------------------------------------------------------------------------------ */
/* Dispatch                                                                                    */

static int g_simd = 0; /* 1: avx2+f16c, 2: the same with AVX-512F for float16 */
static kernel_fn g_kern[3] = {k_f16_port, k_f32_port, k_f64_port};
static int g_num_threads = 1;

static void roofline_kernel(int dt, void *a, void *b, void *c, void *d, const void *e, size_t n) {
#if AMS_X86
    if (g_simd) {
        if (dt == DT_F16)
            r_avx2_16(a, b, c, d, e, n * 2);
        else
            r_avx2_32(a, b, c, d, e, n * dt_size[dt]);
        return;
    }
#endif
    r_port(a, b, c, d, e, n, dt_size[dt]);
}

/* ------------------------------------------------------------------------------------------ */
/* Jobs and threads                                                                            */

typedef struct {
    int dt;
    int roofline;
    kernel_fn kern;
    size_t isz;
    /* single tensor (apply, roofline): flat element space [0, n) */
    char *p[5];
    size_t L;            /* row length (apply) */
    size_t nrows;        /* rows (apply) */
    const void *hyper;   /* 6 * nrows elements, hyper[k * nrows + r] */
    /* many tensors (apply_many): flat element space is the concatenation */
    int nthreads;        /* the thread count read (under the GIL) when the job was made */
    size_t K;
    char *const *ptrs;   /* ptrs[5 * i + role] */
    const size_t *pref;  /* pref[i] = first element of tensor i; pref[K] = total */
    consts_t c;          /* constants of apply_many */
} job_t;

static void run_single(const job_t *j, size_t lo, size_t hi) {
    const size_t isz = j->isz;
    if (j->roofline) {
        roofline_kernel(j->dt, j->p[0] + lo * isz, j->p[1] + lo * isz, j->p[2] + lo * isz,
                        j->p[3] + lo * isz, j->p[4] + lo * isz, hi - lo);
        return;
    }
    if (j->nrows == 1) {
        consts_t c;
        make_consts(j->dt, j->hyper, 0, 1, &c);
        j->kern(j->p[0] + lo * isz, j->p[1] + lo * isz, j->p[2] + lo * isz, j->p[3] + lo * isz,
                j->p[4] + lo * isz, hi - lo, &c);
        return;
    }
    size_t L = j->L, r = lo / L;
    while (lo < hi) {
        size_t end = (r + 1) * L;
        if (end > hi) end = hi;
        consts_t c;
        make_consts(j->dt, j->hyper, r, j->nrows, &c);
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
            j->kern(q[0] + off, q[1] + off, q[2] + off, q[3] + off, q[4] + off, end - lo, &j->c);
        }
        lo = end;
        i++;
    }
}

static void run_range(const job_t *j, size_t lo, size_t hi) {
    if (j->ptrs)
        run_many(j, lo, hi);
    else
        run_single(j, lo, hi);
}

/* a chunk boundary near b, moved down to a multiple of AMS_ALIGN elements inside its tensor */
static size_t align_boundary(const job_t *j, size_t b, size_t total) {
    if (b >= total) return total;
    if (!j->ptrs) return b - (b % AMS_ALIGN);
    size_t i = find_tensor(j->pref, j->K, b);
    size_t local = b - j->pref[i];
    return j->pref[i] + (local - local % AMS_ALIGN);
}

static int plan_threads(size_t total, int dt, int nt) {
    size_t work = total * dt_work[dt];
    if (nt <= 1 || work < 2 * (size_t)AMS_MIN_PER_THREAD) return 1;
    size_t most = work / AMS_MIN_PER_THREAD;
    if ((size_t)nt > most) nt = (int)most;
    return nt < 1 ? 1 : nt;
}

#if AMS_HAVE_PTHREADS
typedef struct {
    const job_t *job;
    size_t lo, hi;
} chunk_t;

static void *thread_main(void *arg) {
    chunk_t *ch = (chunk_t *)arg;
    run_range(ch->job, ch->lo, ch->hi);
    return NULL;
}
#endif

/* Runs the job on [0, total), split over threads when that pays. No Python API inside. */
static void run_job(const job_t *j, size_t total) {
    int nt = plan_threads(total, j->dt, j->nthreads);
#if AMS_HAVE_PTHREADS
    if (nt > 1) {
        chunk_t chunks[AMS_MAX_THREADS];
        pthread_t tids[AMS_MAX_THREADS];
        int started[AMS_MAX_THREADS];
        size_t prev = 0;
        for (int t = 0; t < nt; t++) {
            size_t b = (t + 1 == nt) ? total : align_boundary(j, (size_t)((double)total * (t + 1) / nt), total);
            if (b < prev) b = prev;
            chunks[t].job = j;
            chunks[t].lo = prev;
            chunks[t].hi = b;
            prev = b;
        }
        for (int t = 1; t < nt; t++) {
            started[t] = 0;
            if (chunks[t].hi > chunks[t].lo)
                started[t] = pthread_create(&tids[t], NULL, thread_main, &chunks[t]) == 0;
        }
        run_range(j, chunks[0].lo, chunks[0].hi);
        for (int t = 1; t < nt; t++) {
            if (started[t])
                pthread_join(tids[t], NULL);
            else if (chunks[t].hi > chunks[t].lo)
                run_range(j, chunks[t].lo, chunks[t].hi); /* could not start a thread: do it here */
        }
        return;
    }
#else
    (void)nt;
#endif
    run_range(j, 0, total);
}

/* ------------------------------------------------------------------------------------------ */
/* Buffers                                                                                     */

static const char *const role_names[5] = {"var", "m", "v", "vhat", "grad"};

/* dtype from a struct format: 'e', 'f', 'd' with an optional native/little-endian prefix */
static int format_dtype(const char *f) {
    if (f == NULL) return -1;
    if (f[0] == '@' || f[0] == '=' || f[0] == '<') {
#if PY_BIG_ENDIAN
        if (f[0] == '<') return -1;
#endif
        f++;
    }
    if (f[0] == '\0' || f[1] != '\0') return -1;
    switch (f[0]) {
        case 'e': return DT_F16;
        case 'f': return DT_F32;
        case 'd': return DT_F64;
        default: return -1;
    }
}

/* Acquire a C-contiguous buffer of 'e', 'f' or 'd'; returns the dtype or -1 with an exception. */
static int get_buf(PyObject *obj, Py_buffer *view, int writable, const char *what) {
    int flags = PyBUF_ND | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, view, flags) != 0) {
        if (!PyObject_CheckBuffer(obj)) {
            PyErr_Clear();
            PyErr_Format(PyExc_TypeError, "%s: expected a buffer (a NumPy array), got %.100s", what,
                         Py_TYPE(obj)->tp_name);
        } else {
            PyObject *et, *ev, *tb;
            PyErr_Fetch(&et, &ev, &tb);
            PyObject *msg = ev ? PyObject_Str(ev) : NULL;
            PyErr_Clear();
            PyErr_Format(PyExc_ValueError, "%s: expected a %sC-contiguous buffer (%S)", what,
                         writable ? "writable " : "", msg ? msg : Py_None);
            Py_XDECREF(msg);
            Py_XDECREF(et);
            Py_XDECREF(ev);
            Py_XDECREF(tb);
        }
        return -1;
    }
    int dt = format_dtype(view->format);
    if (dt < 0 || (size_t)view->itemsize != dt_size[dt] || view->len % view->itemsize != 0) {
        PyErr_Format(PyExc_TypeError, "%s: expected float16, float32 or float64 data (format 'e', 'f' or 'd'), got '%s'",
                     what, view->format ? view->format : "B");
        PyBuffer_Release(view);
        return -1;
    }
    return dt;
}

static inline int overlaps(const Py_buffer *a, const Py_buffer *b) {
    if (a->len == 0 || b->len == 0) return 0;
    uintptr_t a0 = (uintptr_t)a->buf, a1 = a0 + (uintptr_t)a->len;
    uintptr_t b0 = (uintptr_t)b->buf, b1 = b0 + (uintptr_t)b->len;
    return a0 < b1 && b0 < a1;
}

static int parse_size(PyObject *o, const char *what, Py_ssize_t *out) {
    if (!PyLong_Check(o)) {
        PyErr_Format(PyExc_TypeError, "%s must be an int", what);
        return -1;
    }
    Py_ssize_t x = PyLong_AsSsize_t(o);
    if (x == -1 && PyErr_Occurred()) return -1;
    *out = x;
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* apply(var, m, v, vhat, grad, hyper, nrows)                                                  */

static PyObject *py_apply(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 7) {
        PyErr_Format(PyExc_TypeError, "apply() takes 7 arguments (var, m, v, vhat, grad, hyper, nrows), got %zd", nargs);
        return NULL;
    }
    Py_ssize_t nrows;
    if (parse_size(args[6], "nrows", &nrows) < 0) return NULL;
    if (nrows < 1 || (size_t)nrows > SIZE_MAX / 64) {
        PyErr_Format(PyExc_ValueError, "nrows must be >= 1 and divide the element count, got %zd", nrows);
        return NULL;
    }
    Py_buffer b[6];
    int got = 0, dt = -1;
    PyObject *result = NULL;
    void *hyper_copy = NULL;
    for (; got < 6; got++) {
        const char *what = got < 5 ? role_names[got] : "hyper";
        int d = get_buf(args[got], &b[got], got < 4, what);
        if (d < 0) goto done;
        if (got == 0) dt = d;
        if (d != dt) {
            PyErr_Format(PyExc_TypeError, "%s: format '%s' differs from var's format '%s'", what,
                         b[got].format, b[0].format);
            got++;
            goto done;
        }
    }
    size_t isz = dt_size[dt];
    size_t n = (size_t)b[0].len / isz;
    for (int k = 1; k < 5; k++) {
        if ((size_t)b[k].len != (size_t)b[0].len) {
            PyErr_Format(PyExc_ValueError, "%s has %zd elements, var has %zu", role_names[k],
                         b[k].len / (Py_ssize_t)isz, n);
            goto done;
        }
    }
    if ((size_t)b[5].len / isz != 6 * (size_t)nrows) {
        PyErr_Format(PyExc_ValueError, "hyper has %zd elements, expected 6 * nrows = %zu",
                     b[5].len / (Py_ssize_t)isz, 6 * (size_t)nrows);
        goto done;
    }
    if (n % (size_t)nrows != 0) {
        PyErr_Format(PyExc_ValueError, "nrows = %zd does not divide the element count %zu", nrows, n);
        goto done;
    }
    for (int i = 0; i < 5; i++)
        for (int k = i + 1; k < 5; k++)
            if (overlaps(&b[i], &b[k])) {
                result = Py_BuildValue("(ii)", i, k);
                goto done;
            }
    if (n == 0) {
        result = Py_None;
        Py_INCREF(result);
        goto done;
    }
    const void *hyper = b[5].buf;
    for (int i = 0; i < 4; i++)
        if (overlaps(&b[i], &b[5])) { /* hyper aliased by an output: read a private copy */
            hyper_copy = PyMem_RawMalloc((size_t)b[5].len);
            if (!hyper_copy) {
                PyErr_NoMemory();
                goto done;
            }
            memcpy(hyper_copy, b[5].buf, (size_t)b[5].len);
            hyper = hyper_copy;
            break;
        }
    job_t j;
    memset(&j, 0, sizeof j);
    j.nthreads = g_num_threads;
    j.dt = dt;
    j.kern = g_kern[dt];
    j.isz = isz;
    for (int k = 0; k < 5; k++) j.p[k] = (char *)b[k].buf;
    j.nrows = (size_t)nrows;
    j.L = n / (size_t)nrows;
    j.hyper = hyper;
    if (n >= AMS_GIL_MIN) {
        Py_BEGIN_ALLOW_THREADS
        run_job(&j, n);
        Py_END_ALLOW_THREADS
    } else {
        run_job(&j, n);
    }
    result = Py_None;
    Py_INCREF(result);
done:
    for (int k = 0; k < got; k++) PyBuffer_Release(&b[k]);
    PyMem_RawFree(hyper_copy);
    return result;
}

/* ------------------------------------------------------------------------------------------ */
/* roofline(a, b, c, d, e)                                                                     */

static PyObject *py_roofline(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 5) {
        PyErr_Format(PyExc_TypeError, "roofline() takes 5 arguments, got %zd", nargs);
        return NULL;
    }
    Py_buffer b[5];
    int got = 0, dt = -1;
    PyObject *result = NULL;
    static const char *const names[5] = {"a", "b", "c", "d", "e"};
    for (; got < 5; got++) {
        int d = get_buf(args[got], &b[got], got < 4, names[got]);
        if (d < 0) goto done;
        if (got == 0) dt = d;
        if (d != dt || b[got].len != b[0].len) {
            PyErr_Format(PyExc_ValueError, "roofline: %s differs from a in format or size", names[got]);
            got++;
            goto done;
        }
    }
    size_t n = (size_t)b[0].len / dt_size[dt];
    job_t j;
    memset(&j, 0, sizeof j);
    j.nthreads = g_num_threads;
    j.dt = dt;
    j.roofline = 1;
    j.isz = dt_size[dt];
    for (int k = 0; k < 5; k++) j.p[k] = (char *)b[k].buf;
    if (n >= AMS_GIL_MIN) {
        Py_BEGIN_ALLOW_THREADS
        run_job(&j, n);
        Py_END_ALLOW_THREADS
    } else {
        run_job(&j, n);
    }
    result = Py_None;
    Py_INCREF(result);
done:
    for (int k = 0; k < got; k++) PyBuffer_Release(&b[k]);
    return result;
}

/* ------------------------------------------------------------------------------------------ */
/* apply_many(vars, ms, vs, vhats, grads, hyper)                                               */

typedef struct {
    uintptr_t start, end;
    uint32_t id; /* 5 * tensor index + role */
} ival_t;

static void sort_ivals(ival_t *a, ival_t *tmp, size_t n) {
    if (n <= 48) { /* insertion sort */
        for (size_t i = 1; i < n; i++) {
            ival_t x = a[i];
            size_t k = i;
            while (k > 0 && a[k - 1].start > x.start) {
                a[k] = a[k - 1];
                k--;
            }
            a[k] = x;
        }
        return;
    }
    /* LSD radix sort on the start address, 8 bits a pass, only over the bytes that differ */
    enum { PASSES = (int)sizeof(uintptr_t) };
    uintptr_t diff = 0, first = a[0].start;
    for (size_t i = 1; i < n; i++) diff |= a[i].start ^ first;
    int which[PASSES], np_ = 0;
    for (int p = 0; p < PASSES; p++)
        if ((diff >> (8 * p)) & 0xff) which[np_++] = p;
    uint32_t cnt[PASSES][256];
    memset(cnt, 0, (size_t)np_ * sizeof cnt[0]);
    for (size_t i = 0; i < n; i++) {
        uintptr_t st = a[i].start;
        for (int q = 0; q < np_; q++) cnt[q][(st >> (8 * which[q])) & 0xff]++;
    }
    ival_t *src = a, *dst = tmp;
    for (int q = 0; q < np_; q++) {
        int shift = 8 * which[q];
        uint32_t pos[256], acc = 0;
        for (int k = 0; k < 256; k++) {
            pos[k] = acc;
            acc += cnt[q][k];
        }
        for (size_t i = 0; i < n; i++) dst[pos[(src[i].start >> shift) & 0xff]++] = src[i];
        ival_t *t = src;
        src = dst;
        dst = t;
    }
    if (src != a) memcpy(a, src, n * sizeof *a);
}

static int same_shape(const Py_buffer *a, const Py_buffer *b) {
    if (a->ndim != b->ndim) return 0;
    for (int k = 0; k < a->ndim; k++)
        if (a->shape[k] != b->shape[k]) return 0;
    return 1;
}

static PyObject *py_apply_many(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    static const char *const list_names[5] = {"vars", "ms", "vs", "vhats", "grads"};
    if (nargs != 6 && nargs != 7) {
        PyErr_Format(PyExc_TypeError,
                     "apply_many() takes 6 or 7 arguments (vars, ms, vs, vhats, grads, hyper[, exact_type]), got %zd",
                     nargs);
        return NULL;
    }
    /* exact_type: when given, every item must be of exactly this type (NumPy's ndarray) and have
       the shape of vars[i], not only its length: the caller then needs no per-item checks. */
    PyTypeObject *exact = NULL;
    if (nargs == 7 && args[6] != Py_None) {
        if (!PyType_Check(args[6])) {
            PyErr_SetString(PyExc_TypeError, "exact_type must be a type");
            return NULL;
        }
        exact = (PyTypeObject *)args[6];
    }
    PyObject *seq[5] = {NULL, NULL, NULL, NULL, NULL};
    PyObject *result = NULL;
    Py_buffer hb;
    int have_hb = 0;
    Py_buffer *bufs = NULL;
    size_t got = 0;
    void *block = NULL;
    Py_ssize_t K = -1;
    for (int r = 0; r < 5; r++) {
        if (!PyList_Check(args[r]) && !PyTuple_Check(args[r])) {
            PyErr_Format(PyExc_TypeError, "%s must be a list or a tuple", list_names[r]);
            goto done;
        }
        seq[r] = args[r];
        Py_ssize_t len = PySequence_Fast_GET_SIZE(args[r]);
        if (r == 0) K = len;
        if (len != K) {
            PyErr_Format(PyExc_ValueError, "%s has %zd items, vars has %zd", list_names[r], len, K);
            goto done;
        }
    }
    if ((size_t)K > (size_t)UINT32_MAX / 5) {
        PyErr_SetString(PyExc_ValueError, "too many tensors");
        goto done;
    }
    int dt = get_buf(args[5], &hb, 0, "hyper");
    if (dt < 0) goto done;
    have_hb = 1;
    size_t isz = dt_size[dt];
    if ((size_t)hb.len != 6 * isz) {
        PyErr_Format(PyExc_ValueError, "hyper has %zd elements, expected 6", hb.len / (Py_ssize_t)isz);
        goto done;
    }
    if (K == 0) {
        result = Py_None;
        Py_INCREF(result);
        goto done;
    }
    /* one block: buffers, pointers, prefix sums, intervals and their sort buffer */
    size_t nb = 5 * (size_t)K;
    size_t sz_bufs = nb * sizeof(Py_buffer), sz_ptrs = nb * sizeof(char *);
    size_t sz_pref = ((size_t)K + 1) * sizeof(size_t), sz_iv = nb * sizeof(ival_t);
    block = PyMem_RawMalloc(sz_bufs + sz_ptrs + sz_pref + 2 * sz_iv);
    if (!block) {
        PyErr_NoMemory();
        goto done;
    }
    bufs = (Py_buffer *)block;
    char **ptrs = (char **)((char *)block + sz_bufs);
    size_t *pref = (size_t *)((char *)ptrs + sz_ptrs);
    ival_t *iv = (ival_t *)((char *)pref + sz_pref);
    ival_t *ivtmp = iv + nb;
    PyObject **items[5];
    for (int r = 0; r < 5; r++) items[r] = PySequence_Fast_ITEMS(seq[r]);
    size_t total = 0, niv = 0;
    pref[0] = 0;
    for (Py_ssize_t i = 0; i < K; i++) {
        Py_ssize_t len0 = 0;
        for (int r = 0; r < 5; r++) {
            Py_buffer *vb = &bufs[5 * (size_t)i + r];
            if (exact && Py_TYPE(items[r][i]) != exact) {
                PyErr_Format(PyExc_TypeError, "%s[%zd]: expected %.100s, got %.100s", list_names[r], i,
                             exact->tp_name, Py_TYPE(items[r][i])->tp_name);
                goto done;
            }
            int d = get_buf(items[r][i], vb, r < 4, role_names[r]);
            if (d < 0) {
                PyObject *et, *ev, *tb;
                PyErr_Fetch(&et, &ev, &tb);
                PyObject *msg = ev ? PyObject_Str(ev) : NULL;
                PyErr_Format(et ? et : PyExc_ValueError, "%s[%zd]: %S", list_names[r], i,
                             msg ? msg : Py_None);
                Py_XDECREF(msg);
                Py_XDECREF(et);
                Py_XDECREF(ev);
                Py_XDECREF(tb);
                goto done;
            }
            got++;
            if (d != dt) {
                PyErr_Format(PyExc_TypeError, "%s[%zd]: format '%s' differs from hyper's format '%s'",
                             list_names[r], i, vb->format, hb.format);
                goto done;
            }
            if (r == 0) len0 = vb->len;
            else if (exact && !same_shape(vb, &bufs[5 * (size_t)i])) {
                PyErr_Format(PyExc_ValueError, "%s[%zd]: shape differs from vars[%zd]'s", list_names[r], i, i);
                goto done;
            } else if (vb->len != len0) {
                PyErr_Format(PyExc_ValueError, "%s[%zd] has %zd elements, vars[%zd] has %zd",
                             list_names[r], i, vb->len / (Py_ssize_t)isz, i, len0 / (Py_ssize_t)isz);
                goto done;
            }
            ptrs[5 * (size_t)i + r] = (char *)vb->buf;
            if (vb->len > 0) {
                iv[niv].start = (uintptr_t)vb->buf;
                iv[niv].end = (uintptr_t)vb->buf + (uintptr_t)vb->len;
                iv[niv].id = (uint32_t)(5 * (size_t)i + r);
                niv++;
            }
        }
        total += (size_t)len0 / isz;
        pref[i + 1] = total;
    }
    /* overlap: sort by start, sweep keeping the interval that reaches furthest */
    if (niv > 1) {
        sort_ivals(iv, ivtmp, niv);
        size_t far = 0;
        for (size_t k = 1; k < niv; k++) {
            if (iv[k].start < iv[far].end) {
                uint32_t a = iv[far].id, c = iv[k].id;
                if (a > c) {
                    uint32_t t = a;
                    a = c;
                    c = t;
                }
                result = Py_BuildValue("(iiii)", (int)(a / 5), (int)(a % 5), (int)(c / 5), (int)(c % 5));
                goto done;
            }
            if (iv[k].end > iv[far].end) far = k;
        }
    }
    if (total > 0) {
        job_t j;
        memset(&j, 0, sizeof j);
        j.nthreads = g_num_threads;
        j.dt = dt;
        j.kern = g_kern[dt];
        j.isz = isz;
        j.K = (size_t)K;
        j.ptrs = ptrs;
        j.pref = pref;
        make_consts(dt, hb.buf, 0, 1, &j.c);
        if (total >= AMS_GIL_MIN) {
            Py_BEGIN_ALLOW_THREADS
            run_job(&j, total);
            Py_END_ALLOW_THREADS
        } else {
            run_job(&j, total);
        }
    }
    result = Py_None;
    Py_INCREF(result);
done:
    for (size_t k = 0; k < got; k++) PyBuffer_Release(&bufs[k]);
    if (have_hb) PyBuffer_Release(&hb);
    PyMem_RawFree(block);
    return result;
}

/* ------------------------------------------------------------------------------------------ */
/* threads and simd                                                                            */

static PyObject *py_set_num_threads(PyObject *self, PyObject *arg) {
    (void)self;
    if (!PyLong_Check(arg) || PyBool_Check(arg)) {
        PyErr_SetString(PyExc_ValueError, "set_num_threads: expected an int >= 1");
        return NULL;
    }
    int overflow = 0;
    long n = PyLong_AsLongAndOverflow(arg, &overflow);
    if (n == -1 && PyErr_Occurred()) return NULL;
    if (overflow < 0 || (overflow == 0 && n < 1)) {
        PyErr_SetString(PyExc_ValueError, "set_num_threads: expected an int >= 1");
        return NULL;
    }
    if (overflow > 0 || n > AMS_MAX_THREADS) n = AMS_MAX_THREADS;
    g_num_threads = (int)n;
    Py_RETURN_NONE;
}

static PyObject *py_get_num_threads(PyObject *self, PyObject *unused) {
    (void)self;
    (void)unused;
    return PyLong_FromLong(g_num_threads);
}

static PyObject *py_simd(PyObject *self, PyObject *unused) {
    (void)self;
    (void)unused;
    return PyUnicode_FromString(g_simd == 2 ? "avx512f+avx2+f16c" : g_simd ? "avx2+f16c" : "portable");
}

static int default_threads(void) {
    const char *env = getenv("AMSGRAD_NUM_THREADS");
    if (env && *env) {
        char *end = NULL;
        long v = strtol(env, &end, 10);
        while (end && (*end == ' ' || *end == '\t' || *end == '\n')) end++;
        if (end && *end == '\0' && v >= 1) return v > AMS_MAX_THREADS ? AMS_MAX_THREADS : (int)v;
    }
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

static void choose_simd(void) {
    const char *env = getenv("AMSGRAD_SIMD");
    int force_portable = env && strcmp(env, "portable") == 0;
#if AMS_X86
    __builtin_cpu_init();
    if (!force_portable && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("f16c")) {
        g_simd = 1;
        g_kern[DT_F16] = k_f16_avx2;
        g_kern[DT_F32] = k_f32_avx2;
        g_kern[DT_F64] = k_f64_avx2;
        if (!(env && strcmp(env, "avx2") == 0) && __builtin_cpu_supports("avx512f")) {
            g_simd = 2;
            g_kern[DT_F16] = k_f16_avx512;
        }
        return;
    }
#endif
    (void)force_portable;
    g_simd = 0;
    g_kern[DT_F16] = k_f16_port;
    g_kern[DT_F32] = k_f32_port;
    g_kern[DT_F64] = k_f64_port;
}

static PyMethodDef methods[] = {
    {"apply", (PyCFunction)(void (*)(void))py_apply, METH_FASTCALL,
     "apply(var, m, v, vhat, grad, hyper, nrows) -> None | (i, j)\n\n"
     "One ApplyAdamWithAmsgradV2 step in place on C-contiguous buffers of one format ('e', 'f'\n"
     "or 'd'). hyper holds 6 * nrows values laid out hyper[k * nrows + r], k in (beta1_power,\n"
     "beta2_power, lr, beta1, beta2, epsilon). If two of var=0, m=1, v=2, vhat=3, grad=4 share\n"
     "memory, nothing is written and the pair (i, j) is returned."},
    {"apply_many", (PyCFunction)(void (*)(void))py_apply_many, METH_FASTCALL,
     "apply_many(vars, ms, vs, vhats, grads, hyper) -> None | (a, role_a, b, role_b)\n\n"
     "apply() on K tensors with one set of 6 hyper-parameters. If any two of the 5K buffers\n"
     "share memory, nothing is written and (list index, role, list index, role) is returned."},
    {"roofline", (PyCFunction)(void (*)(void))py_roofline, METH_FASTCALL,
     "roofline(a, b, c, d, e) -> None\n\n"
     "Memory roofline of apply(): five reads and four writes, no arithmetic, same vector width\n"
     "and threading."},
    {"set_num_threads", py_set_num_threads, METH_O, "set_num_threads(n): threads for large calls (n >= 1)."},
    {"get_num_threads", py_get_num_threads, METH_NOARGS, "get_num_threads() -> int"},
    {"simd", py_simd, METH_NOARGS, "simd() -> str: the code path in use ('avx2+f16c' or 'portable')."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "amsgrad.core._native",
    "Native fused kernel of ApplyAdamWithAmsgradV2 (bit-exact with amsgrad.core.reference).", -1,
    methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__native(void) {
    choose_simd();
    g_num_threads = default_threads();
    return PyModule_Create(&moduledef);
}
