/*
 * kernels_avx2.c: the update on AVX2 + F16C vectors (x86-64): 8 floats, 4 doubles, or 8 halves
 * widened to floats. Each function is compiled for "avx2,f16c" by a target attribute, never
 * "fma", and is called only where __builtin_cpu_supports says the CPU has both.
 */
#include <string.h>

#include "internal.h"

#if AMS_X86
#include <immintrin.h>

#define AMS_TGT __attribute__((target("avx2,f16c")))

/* the vhat rule: blend where h < v (ordered, quiet: false when either is NaN) */
#define KB_ADD _mm256_add_ps
#define KB_SUB _mm256_sub_ps
#define KB_MUL _mm256_mul_ps
#define KB_DIV _mm256_div_ps
#define KB_SQRT _mm256_sqrt_ps
#define KB_VEC __m256
#define KB_SET1(d) _mm256_set1_ps((float)(d))
#define KB_VHAT(h, v) _mm256_blendv_ps((h), (v), _mm256_cmp_ps((h), (v), _CMP_LT_OQ))

#define KB_NAME ams_k_f32_avx2
#define KB_ATTR AMS_TGT
#define KB_ELEM float
#define KB_LANES 8
#define KB_UNROLL 2
#define KB_LOAD(p) _mm256_loadu_ps((const float *)(const void *)(p))
#define KB_STORE(p, a) _mm256_storeu_ps((float *)(void *)(p), (a))
#define KB_R(a) (a)
#include "kernel_body.h"

/* float16: every operation in float32, rounded to half (round to nearest even) right after. The
 * round trip through vcvtps2ph/vcvtph2ps is exact rounding to half, subnormals included. */
#define AMS_RH8(a) _mm256_cvtph_ps(_mm256_cvtps_ph((a), _MM_FROUND_TO_NEAREST_INT))

#define KB_NAME ams_k_f16_avx2
#define KB_ATTR AMS_TGT
#define KB_ELEM uint16_t
#define KB_LANES 8
#define KB_UNROLL 2
#define KB_LOAD(p) _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(p)))
#define KB_STORE(p, a) \
    _mm_storeu_si128((__m128i *)(void *)(p), _mm256_cvtps_ph((a), _MM_FROUND_TO_NEAREST_INT))
#define KB_R(a) AMS_RH8(a)
#include "kernel_body.h"

#undef KB_ADD
#undef KB_SUB
#undef KB_MUL
#undef KB_DIV
#undef KB_SQRT
#undef KB_VEC
#undef KB_SET1
#undef KB_VHAT

#define KB_ADD _mm256_add_pd
#define KB_SUB _mm256_sub_pd
#define KB_MUL _mm256_mul_pd
#define KB_DIV _mm256_div_pd
#define KB_SQRT _mm256_sqrt_pd
#define KB_VEC __m256d
#define KB_SET1(d) _mm256_set1_pd(d)
#define KB_VHAT(h, v) _mm256_blendv_pd((h), (v), _mm256_cmp_pd((h), (v), _CMP_LT_OQ))

#define KB_NAME ams_k_f64_avx2
#define KB_ATTR AMS_TGT
#define KB_ELEM double
#define KB_LANES 4
#define KB_UNROLL 2
#define KB_LOAD(p) _mm256_loadu_pd((const double *)(const void *)(p))
#define KB_STORE(p, a) _mm256_storeu_pd((double *)(void *)(p), (a))
#define KB_R(a) (a)
#include "kernel_body.h"

#else
typedef int ams_no_avx2_kernels; /* ISO C wants something in a translation unit */
#endif /* AMS_X86 */
