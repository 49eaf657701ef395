/*
 * half.h: IEEE float16 <-> float32 in portable C, and loads/stores at any address.
 *
 * Round to nearest even, subnormals, infinities and NaN (quiet, top payload bits kept), exactly
 * as the F16C instructions vcvtps2ph/vcvtph2ps do: the portable kernel and the F16C kernels give
 * the same bits. Header only, so that the conversions inline into the loops that use them.
 * Written without branches (selects and masks), so that compilers vectorize the portable
 * float16 loop; the integer versions of the two roundings (ams_f2h_int, ams_rh_int) stay as the
 * readable statement, and a test compares them with the ones in use on all 2^32 inputs.
 *
 * The ams_ld_* / ams_st_* helpers read and write one element through memcpy: the buffers come
 * from Python and may sit at any address (np.frombuffer(bytearray(81), np.float32, 5, 1)), and
 * dereferencing a misaligned float* is undefined behaviour (UBSan reports it). Compilers turn
 * these memcpy calls into plain moves.
 */
#ifndef AMS_HALF_H
#define AMS_HALF_H

#include <float.h>
#include <stdint.h>
#include <string.h>

static inline uint32_t ams_f_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}
static inline float ams_bits_f(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static inline float ams_ld_f32(const void *p) {
    float x;
    memcpy(&x, p, sizeof x);
    return x;
}
static inline double ams_ld_f64(const void *p) {
    double x;
    memcpy(&x, p, sizeof x);
    return x;
}
static inline uint16_t ams_ld_u16(const void *p) {
    uint16_t x;
    memcpy(&x, p, sizeof x);
    return x;
}
static inline void ams_st_f32(void *p, float x) { memcpy(p, &x, sizeof x); }
static inline void ams_st_f64(void *p, double x) { memcpy(p, &x, sizeof x); }
static inline void ams_st_u16(void *p, uint16_t x) { memcpy(p, &x, sizeof x); }

static inline float ams_h2f(uint16_t h) {
    /* without branches (selects), so that compilers can vectorize the loops that use it */
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t mant = h & 0x3ffu;
    uint32_t normal = ((exp + 112u) << 23) | (mant << 13);
    uint32_t special = 0x7f800000u | (mant << 13);
    /* zero or subnormal: mant * 2^-24, exact in float */
    uint32_t tiny = ams_f_bits((float)(int32_t)mant * 5.9604644775390625e-08f);
    uint32_t is_special = 0u - (uint32_t)(exp == 0x1fu), is_tiny = 0u - (uint32_t)(exp == 0u);
    uint32_t r = (special & is_special) | (tiny & is_tiny) | (normal & ~(is_special | is_tiny));
    return ams_bits_f(sign | r);
}

static inline uint16_t ams_f2h_int(float f) {
    uint32_t x = ams_f_bits(f);
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

/* a float32 value rounded to the nearest half, as a float32 */
static inline float ams_rh_int(float x) { return ams_h2f(ams_f2h_int(x)); }

/*
 * The same two roundings with the FPU doing the rounding, without branches (a compiler turns
 * the selects into conditional moves or blends): 2^32 inputs give the same bits as the integer
 * versions above (tests/test_half_conversions.py compiles both and compares them all). It
 * needs float expressions evaluated in float (FLT_EVAL_METHOD 0: SSE, NEON; not the x87) and
 * the default rounding to nearest even, as every kernel here does.
 *
 * |x| with biased exponent e is rounded at half's step for its binade, 2^(e-127-10), by adding
 * and subtracting c = 2^(e-127+13), whose float32 step is that: the addition rounds to nearest
 * even and the subtraction is exact. Below 2^-14 half's step is fixed at 2^-24, the step of
 * c = 2^-1 (half's subnormals). A result above 65504 is inf in half; a NaN is quietened and
 * keeps its top 10 payload bits, as F16C's vcvtps2ph does.
 */
static inline float ams_rh_float(float x) {
    uint32_t u = ams_f_bits(x);
    uint32_t sign = u & 0x80000000u, a = u ^ sign;
    uint32_t ce = (a >> 23) + 13u;
    ce = ce < 126u ? 126u : (ce > 254u ? 254u : ce);
    float c = ams_bits_f(ce << 23);
    float ar = (ams_bits_f(a) + c) - c;
    uint32_t r = ams_f_bits(ar);
    r = r > 0x477fe000u ? 0x7f800000u : r; /* above 65504 (ar >= 0: bits order as values) */
    r = a > 0x7f800000u ? ((a | 0x00400000u) & 0x7fffe000u) : r;
    return ams_bits_f(r | sign);
}

/* float32 -> half bits: rounded by ams_rh_float, then the exact value repacked. */
static inline uint16_t ams_f2h_float(float x) {
    uint32_t r = ams_f_bits(ams_rh_float(x));
    uint32_t a = r & 0x7fffffffu, sign = (r >> 16) & 0x8000u;
    uint32_t normal = (a - (112u << 23)) >> 13;                     /* >= 2^-14: exact shift */
    uint32_t special = 0x7c00u | ((a & 0x7fffffu) >> 13);           /* inf, or the quiet NaN */
    uint32_t is_special = 0u - (uint32_t)(a >= 0x7f800000u);
    uint32_t is_normal = ~is_special & (0u - (uint32_t)(a >= 0x38800000u));
    /* below 2^-14, k * 2^-24 -> k (others masked to 0 first: no out-of-range conversion) */
    uint32_t tiny = (uint32_t)(int32_t)(ams_bits_f(a & ~(is_special | is_normal)) * 16777216.0f);
    uint32_t h = (special & is_special) | (normal & is_normal) | (tiny & ~(is_special | is_normal));
    return (uint16_t)(sign | h);
}

#if defined(FLT_EVAL_METHOD) && FLT_EVAL_METHOD == 0
#define ams_rh ams_rh_float
#define ams_f2h ams_f2h_float
#else
#define ams_rh ams_rh_int
#define ams_f2h ams_f2h_int
#endif

#endif /* AMS_HALF_H */
