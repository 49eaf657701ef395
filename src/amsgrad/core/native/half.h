/*
 * half.h: IEEE float16 <-> float32 in portable integer C, and loads/stores at any address.
 *
 * Round to nearest even, subnormals, infinities and NaN (quiet, top payload bits kept), exactly
 * as the F16C instructions vcvtps2ph/vcvtph2ps do: the portable kernel and the F16C kernels give
 * the same bits. Header only, so that the conversions inline into the loops that use them.
 *
 * The ams_ld_* / ams_st_* helpers read and write one element through memcpy: the buffers come
 * from Python and may sit at any address (np.frombuffer(bytearray(81), np.float32, 5, 1)), and
 * dereferencing a misaligned float* is undefined behaviour (UBSan reports it). Compilers turn
 * these memcpy calls into plain moves.
 */
#ifndef AMS_HALF_H
#define AMS_HALF_H

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
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t mant = h & 0x3ffu;
    if (exp == 0x1f) return ams_bits_f(sign | 0x7f800000u | (mant << 13));
    if (exp == 0) {
        /* zero or subnormal: mant * 2^-24, exact in float */
        float f = (float)mant * 5.9604644775390625e-08f;
        return ams_bits_f(ams_f_bits(f) | sign);
    }
    return ams_bits_f(sign | ((exp + 112u) << 23) | (mant << 13));
}

static inline uint16_t ams_f2h(float f) {
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
static inline float ams_rh(float x) { return ams_h2f(ams_f2h(x)); }

#endif /* AMS_HALF_H */
