/*
 * buffers.c: getting at the caller's memory (the buffer protocol, or for an exact ndarray its
 * fields: ndarray.c) and finding memory shared between the arrays of a call before anything is
 * written.
 *
 * The kernel reads and writes each element once, in place: if two of the arrays overlapped, the
 * result would depend on the order of the loop (and on the thread split). The caller is told
 * which pair overlaps and nothing is written. hyper may overlap an output: apply() then reads a
 * private copy of it.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <string.h>

#include "internal.h"

const char *const ams_role_names[5] = {"var", "m", "v", "vhat", "grad"};

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

int ams_get_buf(PyObject *obj, Py_buffer *view, int writable, const char *what) {
    int direct = ams_ndarray_view(obj, view, writable);
    if (direct >= 0) return direct;
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
    if (dt < 0 || (size_t)view->itemsize != AMS_DT_SIZE(dt) || view->len % view->itemsize != 0) {
        PyErr_Format(PyExc_TypeError,
                     "%s: expected float16, float32 or float64 data (format 'e', 'f' or 'd'), "
                     "got '%s'",
                     what, view->format ? view->format : "B");
        PyBuffer_Release(view);
        return -1;
    }
    return dt;
}

int ams_overlaps(const Py_buffer *a, const Py_buffer *b) {
    if (a->len == 0 || b->len == 0) return 0;
    uintptr_t a0 = (uintptr_t)a->buf, a1 = a0 + (uintptr_t)a->len;
    uintptr_t b0 = (uintptr_t)b->buf, b1 = b0 + (uintptr_t)b->len;
    return a0 < b1 && b0 < a1;
}

/* apply_many() may get thousands of tensors: sorting their 5K intervals by address makes the
 * overlap check O(K log K) instead of comparing every pair. */
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

/* sort by start, sweep keeping the interval that reaches furthest */
int ams_find_overlap(ival_t *iv, ival_t *tmp, size_t n, uint32_t *a, uint32_t *b) {
    if (n < 2) return 0;
    sort_ivals(iv, tmp, n);
    size_t far = 0;
    for (size_t k = 1; k < n; k++) {
        if (iv[k].start < iv[far].end) {
            uint32_t x = iv[far].id, y = iv[k].id;
            *a = x < y ? x : y;
            *b = x < y ? y : x;
            return 1;
        }
        if (iv[k].end > iv[far].end) far = k;
    }
    return 0;
}
