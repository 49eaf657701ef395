/*
 * kernel_body.h: the update loop, written once. Not a normal header: it is included once per
 * kernel, each time under a different set of macros (the way NumPy's and numexpr's templated
 * loops are made), and defines one function, KB_NAME, of type kernel_fn.
 *
 * The arithmetic, per element, in the order of the SPEC (every operation rounded to T; for
 * float16 computed in float32 and rounded to half right after each operation, KB_R):
 *
 *   m    = m + (g - m) * c1
 *   v    = v + (g * g - v) * c2
 *   vhat = (vhat < v) ? v : vhat         ordered compare: a NaN v keeps the old vhat
 *   x    = x - (lrt * m) / (sqrt(vhat) + eps)
 *
 * No fused multiply-add: the build uses -ffp-contract=off and no target attribute names "fma".
 * Vector loops run two vectors at a time (more independent work in flight), then one; the last
 * n % KB_LANES elements go through the same vector code on a zero-padded copy (or KB_TAIL), so
 * every element gets identical bits whatever the split (threads, rows, tensors).
 *
 * The includer defines, for one kernel (this file #undefs them at the end):
 *   KB_NAME            the function's name
 *   KB_ATTR            attributes (the target instruction set), may be empty
 *   KB_ELEM            the stored element type (uint16_t for float16, float, double)
 *   KB_LANES           elements per vector
 *   KB_UNROLL          1 or 2 vectors per iteration of the main loop
 *   KB_LOAD(p)         KB_LANES elements at byte address p (any alignment) -> KB_VEC
 *   KB_STORE(p, a)     the reverse (rounds to half for float16)
 *   KB_R(a)            rounding to T after an operation: identity, or to half for float16
 *   KB_TAIL            optional: a kernel_fn for the last n % KB_LANES elements, instead of the
 *                      padded copy (it must give the same bits)
 * and, for a family of kernels sharing a compute type (defined and #undef'd by the includer):
 *   KB_VEC             the compute type (__m256, __m512, float, ...)
 *   KB_SET1(d)         a double constant (exact in T) broadcast to KB_VEC
 *   KB_ADD, KB_SUB, KB_MUL, KB_DIV (a, b), KB_SQRT(a)    correctly rounded, no FMA
 *   KB_VHAT(h, v)      (h < v) ? v : h, lane by lane, ordered (false if either is NaN)
 */

#define KB_STEP(X, M, V, H, G)                                                                 \
    do {                                                                                       \
        (M) = KB_R(KB_ADD((M), KB_R(KB_MUL(KB_R(KB_SUB((G), (M))), c1))));                     \
        (V) = KB_R(KB_ADD((V), KB_R(KB_MUL(KB_R(KB_SUB(KB_R(KB_MUL((G), (G))), (V))), c2)))); \
        (H) = KB_VHAT((H), (V));                                                               \
        KB_VEC den_ = KB_R(KB_ADD(KB_R(KB_SQRT(H)), eps));                                     \
        KB_VEC q_ = KB_R(KB_DIV(KB_R(KB_MUL(lrt, (M))), den_));                                \
        (X) = KB_SUB((X), q_); /* rounded to T by the store */                                 \
    } while (0)

KB_ATTR AMS_HIDDEN void KB_NAME(void *x_, void *m_, void *v_, void *vh_, const void *g_, size_t n,
                                const consts_t *c) {
    /* byte pointers: the buffers may be misaligned for KB_ELEM */
    unsigned char *Xp = (unsigned char *)x_, *Mp = (unsigned char *)m_;
    unsigned char *Vp = (unsigned char *)v_, *Hp = (unsigned char *)vh_;
    const unsigned char *Gp = (const unsigned char *)g_;
    const KB_VEC lrt = KB_SET1(c->lrt), c1 = KB_SET1(c->c1);
    const KB_VEC c2 = KB_SET1(c->c2), eps = KB_SET1(c->eps);
    const size_t lanes = KB_LANES;
    size_t i = 0;
#if KB_UNROLL > 1
    const size_t vb = KB_LANES * sizeof(KB_ELEM); /* bytes a vector */
    for (; i + 2 * lanes <= n; i += 2 * lanes) {
        const size_t o = i * sizeof(KB_ELEM);
        KB_VEC G0 = KB_LOAD(Gp + o), M0 = KB_LOAD(Mp + o), V0 = KB_LOAD(Vp + o);
        KB_VEC H0 = KB_LOAD(Hp + o), X0 = KB_LOAD(Xp + o);
        KB_VEC G1 = KB_LOAD(Gp + o + vb), M1 = KB_LOAD(Mp + o + vb), V1 = KB_LOAD(Vp + o + vb);
        KB_VEC H1 = KB_LOAD(Hp + o + vb), X1 = KB_LOAD(Xp + o + vb);
        KB_STEP(X0, M0, V0, H0, G0);
        KB_STEP(X1, M1, V1, H1, G1);
        KB_STORE(Mp + o, M0);
        KB_STORE(Vp + o, V0);
        KB_STORE(Hp + o, H0);
        KB_STORE(Xp + o, X0);
        KB_STORE(Mp + o + vb, M1);
        KB_STORE(Vp + o + vb, V1);
        KB_STORE(Hp + o + vb, H1);
        KB_STORE(Xp + o + vb, X1);
    }
#endif
    for (; i + lanes <= n; i += lanes) {
        const size_t o = i * sizeof(KB_ELEM);
        KB_VEC G0 = KB_LOAD(Gp + o), M0 = KB_LOAD(Mp + o), V0 = KB_LOAD(Vp + o);
        KB_VEC H0 = KB_LOAD(Hp + o), X0 = KB_LOAD(Xp + o);
        KB_STEP(X0, M0, V0, H0, G0);
        KB_STORE(Mp + o, M0);
        KB_STORE(Vp + o, V0);
        KB_STORE(Hp + o, H0);
        KB_STORE(Xp + o, X0);
    }
#if defined(KB_TAIL)
    if (i < n) { /* tail: another kernel */
        const size_t o = i * sizeof(KB_ELEM);
        KB_TAIL(Xp + o, Mp + o, Vp + o, Hp + o, Gp + o, n - i, c);
    }
#elif KB_LANES > 1
    if (i < n) { /* tail: the same vector code on a zero-padded copy */
        const size_t o = i * sizeof(KB_ELEM), rb = (n - i) * sizeof(KB_ELEM);
        KB_ELEM t[5][KB_LANES];
        memset(t, 0, sizeof t);
        memcpy(t[0], Xp + o, rb);
        memcpy(t[1], Mp + o, rb);
        memcpy(t[2], Vp + o, rb);
        memcpy(t[3], Hp + o, rb);
        memcpy(t[4], Gp + o, rb);
        KB_VEC X0 = KB_LOAD((unsigned char *)t[0]), M0 = KB_LOAD((unsigned char *)t[1]);
        KB_VEC V0 = KB_LOAD((unsigned char *)t[2]), H0 = KB_LOAD((unsigned char *)t[3]);
        KB_VEC G0 = KB_LOAD((unsigned char *)t[4]);
        KB_STEP(X0, M0, V0, H0, G0);
        KB_STORE((unsigned char *)t[0], X0);
        KB_STORE((unsigned char *)t[1], M0);
        KB_STORE((unsigned char *)t[2], V0);
        KB_STORE((unsigned char *)t[3], H0);
        memcpy(Xp + o, t[0], rb);
        memcpy(Mp + o, t[1], rb);
        memcpy(Vp + o, t[2], rb);
        memcpy(Hp + o, t[3], rb);
    }
#endif
}

#undef KB_STEP
#undef KB_TAIL
#undef KB_NAME
#undef KB_ATTR
#undef KB_ELEM
#undef KB_LANES
#undef KB_UNROLL
#undef KB_LOAD
#undef KB_STORE
#undef KB_R
