/*
 * kernels.c: the per-row constants, the portable kernels, and which kernels run.
 *
 * Three instruction-set levels, chosen at run time (the wheel must run on any x86-64, so nothing
 * is compiled with -march): "portable" (this file: plain C, what the compiler makes of it for the
 * baseline ISA), "avx2" (AVX2 + F16C, kernels_avx2.c) and "avx512" (float16 and float64 on
 * AVX-512F, kernels_avx512.c; float32 stays on AVX2, see there). Every level gives the same
 * bits: the golden suite and tests/test_native.py run each one.
 */
#include <math.h>
#include <string.h>

#include "half.h"
#include "internal.h"

/* h: the six hyper-parameter values (beta1_power, beta2_power, lr, beta1, beta2, epsilon), each
 * read from the buffer at element index base + k * stride (any alignment). */
void ams_make_consts(int dt, const void *hyper, size_t base, size_t stride, consts_t *c) {
    const unsigned char *h = (const unsigned char *)hyper;
    const size_t isz = AMS_DT_SIZE(dt);
#define AMS_AT(k) (h + (base + (size_t)(k) * stride) * isz)
    if (dt == DT_F64) {
        double b1p = ams_ld_f64(AMS_AT(0)), b2p = ams_ld_f64(AMS_AT(1)), lr = ams_ld_f64(AMS_AT(2));
        double b1 = ams_ld_f64(AMS_AT(3)), b2 = ams_ld_f64(AMS_AT(4)), eps = ams_ld_f64(AMS_AT(5));
        double s = sqrt(1.0 - b2p);
        c->lrt = (lr * s) / (1.0 - b1p);
        c->c1 = 1.0 - b1;
        c->c2 = 1.0 - b2;
        c->eps = eps;
    } else if (dt == DT_F32) {
        float b1p = ams_ld_f32(AMS_AT(0)), b2p = ams_ld_f32(AMS_AT(1)), lr = ams_ld_f32(AMS_AT(2));
        float b1 = ams_ld_f32(AMS_AT(3)), b2 = ams_ld_f32(AMS_AT(4)), eps = ams_ld_f32(AMS_AT(5));
        float omb2p = 1.0f - b2p;
        float s = (float)sqrt((double)omb2p);
        float num = lr * s;
        float den = 1.0f - b1p;
        c->lrt = (double)(float)(num / den);
        c->c1 = (double)(float)(1.0f - b1);
        c->c2 = (double)(float)(1.0f - b2);
        c->eps = (double)eps;
    } else {
#define AMS_H(k) ams_h2f(ams_ld_u16(AMS_AT(k)))
        float b1p = AMS_H(0), b2p = AMS_H(1), lr = AMS_H(2);
        float b1 = AMS_H(3), b2 = AMS_H(4), eps = AMS_H(5);
#undef AMS_H
        float omb2p = ams_rh(1.0f - b2p);
        /* sqrt in float then to half equals sqrt in double then to half (24 >= 2*11 + 2) */
        float s = ams_rh(sqrtf(omb2p));
        c->lrt = (double)ams_rh(ams_rh(lr * s) / ams_rh(1.0f - b1p));
        c->c1 = (double)ams_rh(1.0f - b1);
        c->c2 = (double)ams_rh(1.0f - b2);
        c->eps = (double)eps;
    }
#undef AMS_AT
}

/* ------------------------------------------------------------------------------------------ */
/* Portable kernels: one element at a time (the compiler may vectorize the loop for the         */
/* baseline ISA). Each comes twice: "_any" loads and stores through memcpy, defined at any      */
/* address; "_aligned", used when all five pointers are aligned to the element (NumPy's arrays  */
/* are), dereferences typed pointers: GCC then turns the vhat rule into maxps on x86, which it  */
/* does not through memcpy (the float32 loop is about 30% faster for it).                       */

#define KB_ADD(a, b) ((a) + (b))
#define KB_SUB(a, b) ((a) - (b))
#define KB_MUL(a, b) ((a) * (b))
#define KB_DIV(a, b) ((a) / (b))
#define KB_VHAT(h, v) (((h) < (v)) ? (v) : (h))

/* typed access, for addresses known to be aligned */
#define AMS_LD(T, p) (*(const T *)(const void *)(p))
#define AMS_ST(T, p, a) (*(T *)(void *)(p) = (a))

#define KB_VEC double
#define KB_SET1(d) (d)
#define KB_SQRT(a) sqrt(a)

#define KB_NAME ams_k_f64_port_any
#define KB_ATTR
#define KB_ELEM double
#define KB_LANES 1
#define KB_UNROLL 1
#define KB_LOAD(p) ams_ld_f64(p)
#define KB_STORE(p, a) ams_st_f64((p), (a))
#define KB_R(a) (a)
#include "kernel_body.h"

#define KB_NAME ams_k_f64_port_aligned
#define KB_ATTR
#define KB_ELEM double
#define KB_LANES 1
#define KB_UNROLL 1
#define KB_LOAD(p) AMS_LD(double, p)
#define KB_STORE(p, a) AMS_ST(double, p, a)
#define KB_R(a) (a)
#include "kernel_body.h"

#undef KB_VEC
#undef KB_SET1
#undef KB_SQRT
#define KB_VEC float
#define KB_SET1(d) ((float)(d))
#define KB_SQRT(a) sqrtf(a)

#define KB_NAME ams_k_f32_port_any
#define KB_ATTR
#define KB_ELEM float
#define KB_LANES 1
#define KB_UNROLL 1
#define KB_LOAD(p) ams_ld_f32(p)
#define KB_STORE(p, a) ams_st_f32((p), (a))
#define KB_R(a) (a)
#include "kernel_body.h"

#define KB_NAME ams_k_f32_port_aligned
#define KB_ATTR
#define KB_ELEM float
#define KB_LANES 1
#define KB_UNROLL 1
#define KB_LOAD(p) AMS_LD(float, p)
#define KB_STORE(p, a) AMS_ST(float, p, a)
#define KB_R(a) (a)
#include "kernel_body.h"

/* float16: each operation in float32, rounded to half right after (ams_rh). */
#define KB_NAME ams_k_f16_port_any
#define KB_ATTR
#define KB_ELEM uint16_t
#define KB_LANES 1
#define KB_UNROLL 1
#define KB_LOAD(p) ams_h2f(ams_ld_u16(p))
#define KB_STORE(p, a) ams_st_u16((p), ams_f2h(a))
#define KB_R(a) ams_rh(a)
#include "kernel_body.h"

#define KB_NAME ams_k_f16_port_aligned
#define KB_ATTR
#define KB_ELEM uint16_t
#define KB_LANES 1
#define KB_UNROLL 1
#define KB_LOAD(p) ams_h2f(AMS_LD(uint16_t, p))
#define KB_STORE(p, a) AMS_ST(uint16_t, p, ams_f2h(a))
#define KB_R(a) ams_rh(a)
#include "kernel_body.h"

#undef KB_VEC
#undef KB_SET1
#undef KB_SQRT
#undef KB_ADD
#undef KB_SUB
#undef KB_MUL
#undef KB_DIV
#undef KB_VHAT
#undef AMS_LD
#undef AMS_ST

/* element sizes are powers of two: one test covers the five addresses */
#define AMS_PORTABLE(name, T)                                                                    \
    static void name(void *x, void *m, void *v, void *vh, const void *g, size_t n,              \
                     const consts_t *c) {                                                        \
        uintptr_t any = (uintptr_t)x | (uintptr_t)m | (uintptr_t)v | (uintptr_t)vh | (uintptr_t)g; \
        if (any % sizeof(T) == 0)                                                                \
            name##_aligned(x, m, v, vh, g, n, c);                                                \
        else                                                                                     \
            name##_any(x, m, v, vh, g, n, c);                                                    \
    }
AMS_PORTABLE(ams_k_f64_port, double)
AMS_PORTABLE(ams_k_f32_port, float)
AMS_PORTABLE(ams_k_f16_port, uint16_t)
#undef AMS_PORTABLE

/* ------------------------------------------------------------------------------------------ */
/* Levels                                                                                      */

static const char *const level_names[LV_COUNT] = {"portable", "avx2", "avx512"};
static const char *const level_descriptions[LV_COUNT] = {"portable", "avx2+f16c",
                                                         "avx512f+avx2+f16c"};

/* kernels[level][dtype]; a level's row is used only where the CPU supports it */
static const kernel_fn kernels[LV_COUNT][3] = {
    {ams_k_f16_port, ams_k_f32_port, ams_k_f64_port},
#if AMS_X86
    {ams_k_f16_avx2, ams_k_f32_avx2, ams_k_f64_avx2},
#if AMS_AVX512_F32
    {ams_k_f16_avx512, ams_k_f32_avx512, ams_k_f64_avx512},
#else
    {ams_k_f16_avx512, ams_k_f32_avx2, ams_k_f64_avx512},
#endif
#else
    {ams_k_f16_port, ams_k_f32_port, ams_k_f64_port},
    {ams_k_f16_port, ams_k_f32_port, ams_k_f64_port},
#endif
};

/* Written only under the GIL (module init, set_simd); a call copies its kernel into its job
 * before releasing the GIL, so a change never reaches a call in progress. */
static int g_level = LV_PORTABLE;

int ams_level_supported(int level) {
    if (level == LV_PORTABLE) return 1;
#if AMS_X86
    __builtin_cpu_init();
    int avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("f16c");
    if (level == LV_AVX2) return avx2;
    if (level == LV_AVX512) return avx2 && __builtin_cpu_supports("avx512f");
#endif
    return 0;
}

int ams_best_level(void) {
    int level = LV_COUNT - 1;
    while (level > LV_PORTABLE && !ams_level_supported(level)) level--;
    return level;
}

void ams_set_level(int level) { g_level = level; }
int ams_level(void) { return g_level; }
const char *ams_level_name(int level) { return level_names[level]; }
const char *ams_level_description(int level) { return level_descriptions[level]; }
kernel_fn ams_kernel(int dt) { return kernels[g_level][dt]; }
