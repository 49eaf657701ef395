/*
 * ndarray.c: an exact numpy.ndarray's memory read from its fields through NumPy's C API, for
 * the buffer protocol's decisions without its cost.
 *
 * PyObject_GetBuffer on an ndarray makes NumPy look up (or build) a description of its layout
 * and format string each time: 60 to 80 ns an array, 5 arrays a tensor, most of the overhead of
 * apply_many() on many small tensors and of apply_fast() on one. Here the same answer is read
 * from the array: its data pointer, flags, dtype number, byte order, item size and shape.
 *
 * The rule that keeps the two paths equal: this file only ever accepts. It takes an array when
 * the buffer protocol would certainly hand over the same memory with the format "e", "f" or "d"
 * (what NumPy writes for an aligned native float16/32/64 array), and otherwise declines without
 * an exception; the caller then asks the buffer protocol, which makes every refusal, with its
 * message. Taken: exactly numpy.ndarray (a subclass may define its own __buffer__), dtype
 * float16, float32 or float64 in native byte order with the item size of that type, the flags
 * C-contiguous and aligned (and writeable when the caller will write), and no flag outside
 * the public ones read here (NumPy keeps private ones there, such as "warn on write", that its
 * buffer export acts on).
 *
 * Built only with NumPy 2 or later's headers (setup.py defines AMS_HAVE_NUMPY; they target the
 * older runtime C-API given by NPY_TARGET_VERSION below, the oldest NumPy pyproject.toml
 * accepts). Without them, or when NumPy's C-API cannot be loaded at import, every array goes
 * through the buffer protocol, and ndarray_direct() says why.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "internal.h"

#ifdef AMS_HAVE_NUMPY
#define NPY_NO_DEPRECATED_API NPY_1_23_API_VERSION
#define NPY_TARGET_VERSION NPY_1_23_API_VERSION
#include <numpy/arrayobject.h>

/* the buffer's shape is the array's dims, read in place: npy_intp must be Py_ssize_t's size */
typedef char ams_intp_is_ssize_t[sizeof(npy_intp) == sizeof(Py_ssize_t) ? 1 : -1];
#endif

/* views filled here are marked so (Py_buffer.internal): their release is one reference */
static const char direct_tag = 0;

static int available;               /* NumPy's C-API loaded at import */
static int enabled = 1;             /* set_ndarray_direct() */
static PyObject *why_not;           /* str: why not available */
static unsigned long long acquired; /* arrays taken here, for tests (under the GIL) */

int ams_ndarray_init(void) {
#ifdef AMS_HAVE_NUMPY
    if (_import_array() == 0) {
        available = 1;
        return 0;
    }
    PyObject *et, *ev, *tb;
    PyErr_Fetch(&et, &ev, &tb);
    PyObject *text = ev ? PyObject_Str(ev) : NULL;
    PyErr_Clear();
    why_not = PyUnicode_FromFormat("NumPy's C-API did not load: %s: %S",
                                   et ? ((PyTypeObject *)et)->tp_name : "error",
                                   text ? text : Py_None);
    Py_XDECREF(text);
    Py_XDECREF(et);
    Py_XDECREF(ev);
    Py_XDECREF(tb);
#else
    why_not = PyUnicode_FromString("built without NumPy's headers");
#endif
    if (why_not == NULL) return -1; /* out of memory */
    return 0;
}

int ams_ndarray_view(PyObject *obj, Py_buffer *view, int writable) {
#ifdef AMS_HAVE_NUMPY
    static const char *const formats[3] = {"e", "f", "d"};
    /* the flags a plain array may carry that this file knows the meaning of */
    enum {
        KNOWN = NPY_ARRAY_C_CONTIGUOUS | NPY_ARRAY_F_CONTIGUOUS | NPY_ARRAY_OWNDATA |
                NPY_ARRAY_ALIGNED | NPY_ARRAY_WRITEABLE,
    };
    if (!available || !enabled || !PyArray_CheckExact(obj)) return -1;
    PyArrayObject *a = (PyArrayObject *)obj;
    int flags = PyArray_FLAGS(a);
    int need = NPY_ARRAY_C_CONTIGUOUS | NPY_ARRAY_ALIGNED | (writable ? NPY_ARRAY_WRITEABLE : 0);
    if ((flags & need) != need || (flags & ~KNOWN) != 0) return -1;
    PyArray_Descr *descr = PyArray_DESCR(a);
    int dt;
    switch (descr->type_num) {
        case NPY_HALF: dt = DT_F16; break;
        case NPY_FLOAT: dt = DT_F32; break;
        case NPY_DOUBLE: dt = DT_F64; break;
        default: return -1;
    }
    if (!PyArray_ISNBO(descr->byteorder) || (size_t)PyArray_ITEMSIZE(a) != AMS_DT_SIZE(dt))
        return -1;
    int ndim = PyArray_NDIM(a);
    npy_intp *dims = PyArray_DIMS(a);
    Py_ssize_t count = 1;
    for (int k = 0; k < ndim; k++) count *= dims[k]; /* NumPy keeps the byte size in range */
    Py_INCREF(obj);
    view->obj = obj;
    view->buf = PyArray_DATA(a);
    view->len = count * (Py_ssize_t)AMS_DT_SIZE(dt);
    view->itemsize = (Py_ssize_t)AMS_DT_SIZE(dt);
    view->readonly = (flags & NPY_ARRAY_WRITEABLE) == 0;
    view->ndim = ndim;
    view->format = (char *)formats[dt];
    view->shape = (Py_ssize_t *)dims;
    view->strides = NULL;
    view->suboffsets = NULL;
    view->internal = (void *)&direct_tag;
    acquired++;
    return dt;
#else
    (void)obj;
    (void)view;
    (void)writable;
    return -1;
#endif
}

void ams_release_buf(Py_buffer *view) {
    if (view->internal == (void *)&direct_tag) {
        view->internal = NULL;
        Py_CLEAR(view->obj);
    } else {
        PyBuffer_Release(view);
    }
}

PyObject *ams_py_set_ndarray_direct(PyObject *self, PyObject *arg) {
    (void)self;
    int on = PyObject_IsTrue(arg);
    if (on < 0) return NULL;
    int before = enabled;
    enabled = on;
    return PyBool_FromLong(before);
}

PyObject *ams_py_ndarray_direct(PyObject *self, PyObject *unused) {
    (void)self;
    (void)unused;
    return Py_BuildValue("{s:O,s:O,s:O,s:K}", "available", available ? Py_True : Py_False,
                         "enabled", enabled ? Py_True : Py_False, "reason",
                         why_not ? why_not : Py_None, "acquired", acquired);
}
