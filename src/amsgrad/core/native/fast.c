/*
 * fast.c: apply_fast(), the common call of the functional API checked and run in C, with no
 * Python-side contract work: about 1 us for 1000 float32 elements instead of 5.
 *
 * It takes the operator's eleven arguments as the caller passed them and runs the update only
 * when the call is certainly one the contract (core/contract.py) accepts as it is:
 *
 *   var, m, v, vhat, grad  exactly numpy.ndarray (set_fast_types), one format 'e', 'f' or 'd',
 *                          one shape, C-contiguous; var, m, v, vhat writeable; no two sharing
 *                          memory;
 *   the six scalars        exactly float, numpy.float64, numpy.float32 or numpy.float16, finite,
 *                          of magnitude below 2**128 - 2**103 (no overflow to float32), and for
 *                          float16 below 65520 once in float32 (no overflow to half: NumPy would
 *                          warn there).
 *
 * Each scalar is converted by the SPEC's rule for Python floats and NumPy floating scalars, as
 * contract.fast_hyper does: to float32 (round to nearest even), then to T (exact for float32 and
 * float64, round to nearest even for float16). Anything else, or any doubt, returns False with
 * no exception set and nothing written: the caller then runs the full contract, which raises the
 * precise error or handles the general case. tests/test_fast_path.py holds the two paths equal.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <string.h>

#include "half.h"
#include "internal.h"

static PyObject *t_ndarray, *t_f64, *t_f32, *t_f16; /* set_fast_types(); NULL: never fast */

PyObject *ams_py_set_fast_types(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError,
                        "set_fast_types(ndarray, float64, float32, float16) takes 4 types");
        return NULL;
    }
    for (int k = 0; k < 4; k++)
        if (!PyType_Check(args[k])) {
            PyErr_SetString(PyExc_TypeError, "set_fast_types: expected types");
            return NULL;
        }
    PyObject **slots[4] = {&t_ndarray, &t_f64, &t_f32, &t_f16};
    for (int k = 0; k < 4; k++) {
        Py_INCREF(args[k]);
        Py_XSETREF(*slots[k], args[k]);
    }
    Py_RETURN_NONE;
}

/* float32 overflow bound (2**128 - 2**103): |x| below it rounds to a finite float */
#define F32_OVERFLOW 3.4028235677973366e38

/* A hyper-parameter as float32 by the Python-float rule; 0 when the value is not a plain float
 * scalar in range (no exception left set). */
static int scalar_f32(PyObject *o, float *out) {
    PyTypeObject *t = Py_TYPE(o);
    double d;
    if (t == &PyFloat_Type || (PyObject *)t == t_f64) {
        d = PyFloat_AS_DOUBLE(o); /* numpy.float64 is a float subclass */
    } else if ((PyObject *)t == t_f32 || (PyObject *)t == t_f16) {
        d = PyFloat_AsDouble(o); /* exact: a float32 or float16 value */
        if (d == -1.0 && PyErr_Occurred()) {
            PyErr_Clear();
            return 0;
        }
    } else {
        return 0;
    }
    if (!(d > -F32_OVERFLOW && d < F32_OVERFLOW)) return 0; /* NaN, inf, overflow */
    *out = (float)d;
    return 1;
}

static PyObject *decline(Py_buffer *b, int got) {
    for (int k = 0; k < got; k++) ams_release_buf(&b[k]);
    if (PyErr_Occurred()) PyErr_Clear();
    Py_RETURN_FALSE;
}

/* apply_fast(var, m, v, vhat, beta1_power, beta2_power, lr, beta1, beta2, epsilon, grad)
 *   -> True (updated) | False (not taken, nothing written) */
PyObject *ams_py_apply_fast(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    static const int array_arg[5] = {0, 1, 2, 3, 10};
    Py_buffer b[5];
    if (nargs != 11 || t_ndarray == NULL) Py_RETURN_FALSE;
    for (int k = 0; k < 5; k++)
        if ((PyObject *)Py_TYPE(args[array_arg[k]]) != t_ndarray) Py_RETURN_FALSE;
    float h32[6];
    for (int k = 0; k < 6; k++)
        if (!scalar_f32(args[4 + k], &h32[k])) Py_RETURN_FALSE;
    int got = 0, dt = -1;
    for (; got < 5; got++) {
        PyObject *arr = args[array_arg[got]];
        int d = ams_ndarray_view(arr, &b[got], got < 4); /* or the buffer protocol: */
        if (d < 0) {
            int flags = PyBUF_ND | PyBUF_FORMAT | (got < 4 ? PyBUF_WRITABLE : 0);
            if (PyObject_GetBuffer(arr, &b[got], flags) != 0) return decline(b, got);
            const char *f = b[got].format;
            if (f != NULL && f[0] != '\0' && f[1] == '\0')
                d = f[0] == 'e' ? DT_F16 : f[0] == 'f' ? DT_F32 : f[0] == 'd' ? DT_F64 : -1;
        }
        if (d < 0 || (got > 0 && d != dt) || (size_t)b[got].itemsize != AMS_DT_SIZE(d))
            return decline(b, got + 1);
        dt = d;
        if (got > 0) {
            if (b[got].ndim != b[0].ndim || b[got].len != b[0].len) return decline(b, got + 1);
            for (int a = 0; a < b[0].ndim; a++)
                if (b[got].shape[a] != b[0].shape[a]) return decline(b, got + 1);
        }
    }
    for (int i = 0; i < 5; i++)
        for (int k = i + 1; k < 5; k++)
            if (ams_overlaps(&b[i], &b[k])) return decline(b, 5);
    /* the (6, 1) table in T */
    union {
        uint16_t h[6];
        float f[6];
        double d[6];
    } hyper;
    for (int k = 0; k < 6; k++) {
        if (dt == DT_F16) {
            if (!(h32[k] > -65520.0f && h32[k] < 65520.0f)) return decline(b, 5);
            hyper.h[k] = ams_f2h(h32[k]);
        } else if (dt == DT_F32) {
            hyper.f[k] = h32[k];
        } else {
            hyper.d[k] = (double)h32[k];
        }
    }
    size_t n = (size_t)b[0].len / AMS_DT_SIZE(dt);
    if (n > 0) {
        job_t j;
        memset(&j, 0, sizeof j);
        j.nthreads = ams_num_threads;
        j.dt = dt;
        j.kern = ams_kernel(dt);
        j.isz = AMS_DT_SIZE(dt);
        for (int k = 0; k < 5; k++) j.p[k] = (char *)b[k].buf;
        j.nrows = 1;
        j.L = n;
        j.hyper = &hyper;
        ams_run_job_released(&j, n);
    }
    for (int k = 0; k < 5; k++) ams_release_buf(&b[k]);
    Py_RETURN_TRUE;
}
