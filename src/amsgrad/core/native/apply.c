/*
 * apply.c: the two entry points of the update, apply() and apply_many(): arguments checked and
 * buffers acquired under the GIL, then the job run with the GIL released (for calls worth it).
 * Nothing is written unless every check passed; overlapping arrays are reported, not updated.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <string.h>

#include "internal.h"

void ams_run_job_released(const job_t *j, size_t total) {
    if (total >= AMS_GIL_MIN) {
        Py_BEGIN_ALLOW_THREADS
        ams_run_job(j, total);
        Py_END_ALLOW_THREADS
    } else {
        ams_run_job(j, total);
    }
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

PyObject *ams_py_apply(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
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
        const char *what = got < 5 ? ams_role_names[got] : "hyper";
        int d = ams_get_buf(args[got], &b[got], got < 4, what);
        if (d < 0) goto done;
        if (got == 0) dt = d;
        if (d != dt) {
            PyErr_Format(PyExc_TypeError, "%s: format '%s' differs from var's format '%s'", what,
                         b[got].format, b[0].format);
            got++;
            goto done;
        }
    }
    size_t isz = AMS_DT_SIZE(dt);
    size_t n = (size_t)b[0].len / isz;
    for (int k = 1; k < 5; k++) {
        if ((size_t)b[k].len != (size_t)b[0].len) {
            PyErr_Format(PyExc_ValueError, "%s has %zd elements, var has %zu", ams_role_names[k],
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
            if (ams_overlaps(&b[i], &b[k])) {
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
        if (ams_overlaps(&b[i], &b[5])) { /* hyper aliased by an output: read a private copy */
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
    j.nthreads = ams_num_threads;
    j.dt = dt;
    j.kern = ams_kernel(dt);
    j.isz = isz;
    for (int k = 0; k < 5; k++) j.p[k] = (char *)b[k].buf;
    j.nrows = (size_t)nrows;
    j.L = n / (size_t)nrows;
    j.hyper = hyper;
    ams_run_job_released(&j, n);
    result = Py_None;
    Py_INCREF(result);
done:
    for (int k = 0; k < got; k++) ams_release_buf(&b[k]);
    PyMem_RawFree(hyper_copy);
    return result;
}

/* ------------------------------------------------------------------------------------------ */
/* apply_many(vars, ms, vs, vhats, grads, hyper)                                               */

static int same_shape(const Py_buffer *a, const Py_buffer *b) {
    if (a->ndim != b->ndim) return 0;
    for (int k = 0; k < a->ndim; k++)
        if (a->shape[k] != b->shape[k]) return 0;
    return 1;
}

PyObject *ams_py_apply_many(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
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
    int dt = ams_get_buf(args[5], &hb, 0, "hyper");
    if (dt < 0) goto done;
    have_hb = 1;
    size_t isz = AMS_DT_SIZE(dt);
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
            int d = ams_get_buf(items[r][i], vb, r < 4, ams_role_names[r]);
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
    uint32_t ov_a, ov_b;
    if (ams_find_overlap(iv, ivtmp, niv, &ov_a, &ov_b)) {
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
        j.K = (size_t)K;
        j.ptrs = ptrs;
        j.pref = pref;
        ams_make_consts(dt, hb.buf, 0, 1, &j.c);
        ams_run_job_released(&j, total);
    }
    result = Py_None;
    Py_INCREF(result);
done:
    for (size_t k = 0; k < got; k++) ams_release_buf(&bufs[k]);
    if (have_hb) ams_release_buf(&hb);
    PyMem_RawFree(block);
    return result;
}

