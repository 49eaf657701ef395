/*
 * kernels_avx512.c: the update on AVX-512F vectors (x86-64), compiled for "avx512f,avx2,f16c"
 * (never "fma") and called only where the CPU has AVX-512F (the "avx512" level).
 *
 * float16, 16 halves widened to floats: the update is bound by its eleven roundings to half per
 * element, and vcvtps2ph/vcvtph2ps on zmm registers (part of AVX-512F) do 16 at a time; where
 * 512-bit units are full width that halves their cost.
 *
 * Measured bound (AMD EPYC Zen 4, 3.65 GHz, in cache): a zmm conversion costs about 2.3 cycles
 * and an element needs 31 of them per 16 lanes (5 loads, 4 stores, 11 round trips), about 71
 * cycles, 1.2 ns an element: the loop runs at that bound (1.23 ns). Without the eleven round
 * trips it takes 0.38 ns. Rounding in float32 arithmetic instead (add and subtract 1.5 * 2^(e+13)
 * with e the exponent clamped to -14, sign and overflow fixed up: 9 instructions, exact) was
 * measured slower alone (2.07 ns an element) and in every mix with the conversions tried
 * (1.43-1.59 ns): both compete for the same vector pipes. Unrolling 4 vectors: no change.
 *
 * float64, 8 doubles: measured faster than AVX2 (division and square root dominate in cache) on
 * an AMD EPYC with AVX-512 BF16/VBMI2 (Zen 4 or later), one thread, medians of interleaved runs:
 * about 3% at 1e3 elements, 6% at 1e5, 2-4% at 1e7, so the avx512 level uses it.
 *
 * float32, 16 floats: measured no faster than AVX2 there (1e3: 0-10% slower, 1e5 and 1e7:
 * within +-2%), so the avx512 level runs the AVX2 float32 kernel; -DAMS_AVX512_F32=1 builds this
 * one and makes the avx512 level use it.
 */
#include <string.h>

#include "internal.h"

#if AMS_X86
#include <immintrin.h>

#define AMS_TGT512 __attribute__((target("avx512f,avx2,f16c")))

#define KB_ADD _mm512_add_ps
#define KB_SUB _mm512_sub_ps
#define KB_MUL _mm512_mul_ps
#define KB_DIV _mm512_div_ps
#define KB_SQRT _mm512_sqrt_ps
#define KB_VEC __m512
#define KB_SET1(d) _mm512_set1_ps((float)(d))
/* the vhat rule: take v where h < v (ordered, quiet: false when either is NaN) */
#define KB_VHAT(h, v) _mm512_mask_blend_ps(_mm512_cmp_ps_mask((h), (v), _CMP_LT_OQ), (h), (v))

/* float16: every operation in float32, rounded to half (round to nearest even) right after. */
#define AMS_RH16(a) _mm512_cvtph_ps(_mm512_cvtps_ph((a), _MM_FROUND_TO_NEAREST_INT))

/* The tail (under 32 halves) goes to the AVX2 kernel, as a padded copy here would make GCC
 * schedule the main loop differently: 3% slower at 1e6 elements on the machine above. */
#define KB_NAME ams_k_f16_avx512
#define KB_TAIL ams_k_f16_avx2
#define KB_ATTR AMS_TGT512
#define KB_ELEM uint16_t
#define KB_LANES 16
#define KB_UNROLL 2
#define KB_LOAD(p) _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(const void *)(p)))
#define KB_STORE(p, a) \
    _mm256_storeu_si256((__m256i *)(void *)(p), _mm512_cvtps_ph((a), _MM_FROUND_TO_NEAREST_INT))
#define KB_R(a) AMS_RH16(a)
#include "kernel_body.h"

#if AMS_AVX512_F32
#define KB_NAME ams_k_f32_avx512
#define KB_ATTR AMS_TGT512
#define KB_ELEM float
#define KB_LANES 16
#define KB_UNROLL 2
#define KB_LOAD(p) _mm512_loadu_ps((const void *)(p))
#define KB_STORE(p, a) _mm512_storeu_ps((void *)(p), (a))
#define KB_R(a) (a)
#include "kernel_body.h"
#endif

#undef KB_ADD
#undef KB_SUB
#undef KB_MUL
#undef KB_DIV
#undef KB_SQRT
#undef KB_VEC
#undef KB_SET1
#undef KB_VHAT

#define KB_ADD _mm512_add_pd
#define KB_SUB _mm512_sub_pd
#define KB_MUL _mm512_mul_pd
#define KB_DIV _mm512_div_pd
#define KB_SQRT _mm512_sqrt_pd
#define KB_VEC __m512d
#define KB_SET1(d) _mm512_set1_pd(d)
#define KB_VHAT(h, v) _mm512_mask_blend_pd(_mm512_cmp_pd_mask((h), (v), _CMP_LT_OQ), (h), (v))

#define KB_NAME ams_k_f64_avx512
#define KB_ATTR AMS_TGT512
#define KB_ELEM double
#define KB_LANES 8
#define KB_UNROLL 2
#define KB_LOAD(p) _mm512_loadu_pd((const void *)(p))
#define KB_STORE(p, a) _mm512_storeu_pd((void *)(p), (a))
#define KB_R(a) (a)
#include "kernel_body.h"

#undef KB_ADD
#undef KB_SUB
#undef KB_MUL
#undef KB_DIV
#undef KB_SQRT
#undef KB_VEC
#undef KB_SET1
#undef KB_VHAT

#else
typedef int ams_no_avx512_kernels; /* ISO C wants something in a translation unit */
#endif /* AMS_X86 */
