/*
 * half_exhaustive.c: half.h's two implementations of each float16 rounding, compared on every
 * input. Built and run by tests/test_half_conversions.py.
 *
 * Prints, on stdout: one line "rh <count>" and one "f2h <count>" with the number of the 2^32
 * float32 bit patterns for which the float-arithmetic version (ams_rh_float, ams_f2h_float, the
 * ones the kernels use) and the integer version (ams_rh_int, ams_f2h_int) give different bits,
 * then the 65536 results of ams_h2f as 8-digit hex words, 8 per line.
 */
#include <inttypes.h>
#include <stdio.h>

#include "half.h"

int main(void) {
    uint64_t rh_differ = 0, f2h_differ = 0;
    uint32_t u = 0;
    do {
        float x = ams_bits_f(u);
        rh_differ += ams_f_bits(ams_rh_float(x)) != ams_f_bits(ams_rh_int(x));
        f2h_differ += ams_f2h_float(x) != ams_f2h_int(x);
        u++;
    } while (u != 0);
    printf("rh %" PRIu64 "\nf2h %" PRIu64 "\n", rh_differ, f2h_differ);
    for (uint32_t h = 0; h < 65536u; h++)
        printf("%08" PRIx32 "%c", ams_f_bits(ams_h2f((uint16_t)h)), h % 8u == 7u ? '\n' : ' ');
    return 0;
}
