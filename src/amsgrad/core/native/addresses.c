/*
 * addresses.c: apply_addresses(), the multi-tensor update on memory given by address.
 *
 * For callers that hold tensors which are not NumPy arrays (the torch optimizer holds CPU
 * tensors and reads their addresses with data_ptr()): no buffer protocol, no per-array Python
 * object, so its cost per tensor is a few nanoseconds. The caller vouches for what the
 * addresses cannot say: each is the start of a live, C-contiguous, aligned-to-its-itemsize
 * run of `sizes[i]` elements of hyper's dtype, var/m/v/vhat writable, all kept alive for the
 * call. What the addresses can say is checked here: no two of the 5K runs share memory (grads
 * included; the caller then takes its general path), before anything is written.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <string.h>

#include "internal.h"

/* a C-contiguous buffer of 64-bit integers ('q', 'l' or 'Q', 'L' of size 8) */
static int get_int64s(PyObject *obj, Py_buffer *view, const char *what) {
    if (PyObject_GetBuffer(obj, view, PyBUF_ND | PyBUF_FORMAT) != 0) return -1;
    const char *f = view->format;
    if (f != NULL && (f[0] == '@' || f[0] == '=' || f[0] == '<')) f++;
    if (view->itemsize != 8 || f == NULL || f[0] == '\0' || f[1] != '\0' ||
        (f[0] != 'q' && f[0] != 'l' && f[0] != 'Q' && f[0] != 'L')) {
        PyErr_Format(PyExc_TypeError, "%s: expected a buffer of 64-bit integers, got format '%s'",
                     what, view->format ? view->format : "B");
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

/* apply_addresses(addresses, sizes, hyper[, sets]) -> None | (a, role_a, b, role_b)
 * hyper: 6 * G values laid out hyper[k * G + g]; sets: K int64 in [0, G), tensor i's set of
 * hyper-parameters (without it, G must be 1). */
PyObject *ams_py_apply_addresses(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 3 && nargs != 4) {
        PyErr_Format(PyExc_TypeError,
                     "apply_addresses() takes 3 or 4 arguments (addresses, sizes, hyper[, sets]), "
                     "got %zd",
                     nargs);
        return NULL;
    }
    Py_buffer ab, sb, hb, gb;
    int have_gb = 0;
    if (get_int64s(args[0], &ab, "addresses") < 0) return NULL;
    if (get_int64s(args[1], &sb, "sizes") < 0) {
        PyBuffer_Release(&ab);
        return NULL;
    }
    PyObject *result = NULL;
    void *block = NULL;
    int dt = ams_get_buf(args[2], &hb, 0, "hyper");
    if (dt < 0) {
        PyBuffer_Release(&sb);
        PyBuffer_Release(&ab);
        return NULL;
    }
    size_t isz = AMS_DT_SIZE(dt);
    size_t K = (size_t)sb.len / 8;
    size_t G = 1;
    if (nargs == 4) {
        if (get_int64s(args[3], &gb, "sets") < 0) goto done;
        have_gb = 1;
        if ((size_t)gb.len != K * 8) {
            PyErr_Format(PyExc_ValueError, "sets has %zd items, expected one per size (%zu)",
                         gb.len / 8, K);
            goto done;
        }
        G = (size_t)hb.len / isz / 6;
    }
    if (G < 1 || G > (size_t)1 << 20 || (size_t)hb.len != 6 * G * isz) {
        PyErr_Format(PyExc_ValueError, "hyper has %zd elements, expected 6%s",
                     hb.len / (Py_ssize_t)isz, have_gb ? " per set" : "");
        goto done;
    }
    if ((size_t)ab.len != 5 * K * 8) {
        PyErr_Format(PyExc_ValueError, "addresses has %zd items, expected 5 per size (%zu)",
                     ab.len / 8, 5 * K);
        goto done;
    }
    if (K > (size_t)UINT32_MAX / 5) {
        PyErr_SetString(PyExc_ValueError, "too many tensors");
        goto done;
    }
    if (K == 0) {
        result = Py_None;
        Py_INCREF(result);
        goto done;
    }
    const int64_t *addr = (const int64_t *)ab.buf, *size = (const int64_t *)sb.buf;
    size_t nb = 5 * K;
    size_t sz_ptrs = nb * sizeof(char *), sz_pref = (K + 1) * sizeof(size_t);
    size_t sz_iv = nb * sizeof(ival_t), sz_cs = G * sizeof(consts_t);
    block = PyMem_RawMalloc(sz_cs + sz_ptrs + sz_pref + 2 * sz_iv);
    if (!block) {
        PyErr_NoMemory();
        goto done;
    }
    consts_t *cs = (consts_t *)block;
    char **ptrs = (char **)((char *)block + sz_cs);
    size_t *pref = (size_t *)((char *)ptrs + sz_ptrs);
    ival_t *iv = (ival_t *)((char *)pref + sz_pref);
    size_t total = 0, niv = 0;
    pref[0] = 0;
    const int64_t *sets = have_gb ? (const int64_t *)gb.buf : NULL;
    for (size_t i = 0; i < K; i++) {
        int64_t n = size[i];
        if (sets && (sets[i] < 0 || (uint64_t)sets[i] >= G)) {
            PyErr_Format(PyExc_ValueError, "sets[%zu]: %lld is not in [0, %zu)", i,
                         (long long)sets[i], G);
            goto done;
        }
        if (n < 0 || (uint64_t)n > (uint64_t)(SIZE_MAX / 8 / isz) - total) {
            PyErr_Format(PyExc_ValueError, "sizes[%zu]: %lld is not a valid element count", i,
                         (long long)n);
            goto done;
        }
        for (int r = 0; r < 5; r++) {
            uintptr_t start = (uintptr_t)(uint64_t)addr[5 * i + (size_t)r];
            if (n > 0 && (start == 0 || start % isz != 0)) {
                PyErr_Format(PyExc_ValueError, "addresses[%zu]: not an address of %zu-byte items",
                             5 * i + (size_t)r, isz);
                goto done;
            }
            ptrs[5 * i + (size_t)r] = (char *)start;
            if (n > 0) {
                iv[niv].start = start;
                iv[niv].end = start + (uintptr_t)n * isz;
                iv[niv].id = (uint32_t)(5 * i + (size_t)r);
                niv++;
            }
        }
        total += (size_t)n;
        pref[i + 1] = total;
    }
    uint32_t ov_a, ov_b;
    if (ams_find_overlap(iv, iv + nb, niv, &ov_a, &ov_b)) {
        result = Py_BuildValue("(iiii)", (int)(ov_a / 5), (int)(ov_a % 5), (int)(ov_b / 5),
                               (int)(ov_b % 5));
        goto done;
    }
    if (total > 0) {
        job_t j;
        memset(&j, 0, sizeof j);
        j.nthreads = ams_num_threads;
        j.dt = dt;
        j.kern = ams_kernel(dt);
        j.isz = isz;
        j.K = K;
        j.ptrs = ptrs;
        j.pref = pref;
        if (sets) {
            for (size_t g = 0; g < G; g++) ams_make_consts(dt, hb.buf, g, G, &cs[g]);
            j.cs = cs;
            j.ci = sets;
        } else {
            ams_make_consts(dt, hb.buf, 0, 1, &j.c);
        }
        ams_run_job_released(&j, total);
    }
    result = Py_None;
    Py_INCREF(result);
done:
    PyMem_RawFree(block);
    if (have_gb) PyBuffer_Release(&gb);
    ams_release_buf(&hb);
    PyBuffer_Release(&sb);
    PyBuffer_Release(&ab);
    return result;
}
