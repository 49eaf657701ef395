/*
 * amsgrad.core._native: the fused kernel of MindSpore's ApplyAdamWithAmsgradV2.
 *
 * Plain C11 + the CPython API + the buffer protocol; NumPy's C-API (headers of NumPy 2 or later)
 * only in ndarray.c, to read exact ndarrays without the buffer protocol's cost. The arithmetic is the one
 * of the project's SPEC, bit for bit: every operation is rounded to T (float16: computed in
 * float32 and rounded to half right after), no fused multiply-add (built with -ffp-contract=off;
 * the SIMD functions are compiled for "avx2,f16c" or "avx512f,avx2,f16c", never "fma").
 *
 *   m    = m + (grad - m) * c1                     c1 = 1 - beta1
 *   v    = v + (grad * grad - v) * c2              c2 = 1 - beta2
 *   vhat = (vhat < v) ? v : vhat                   ordered compare: a NaN keeps the old vhat
 *   var  = var - (lr_t * m) / (T(sqrt(vhat)) + epsilon)
 *   lr_t = (lr * T(sqrt(1 - beta2_power))) / (1 - beta1_power)      (per row, in T)
 *
 * The files:
 *   module.c          this: the module, threads and instruction-set settings, the environment
 *   apply.c           apply() and apply_many(): arguments, buffers, running the job
 *   fast.c            apply_fast(): the common call of the functional API, checked in C
 *   buffers.c         the buffer protocol, overlap detection
 *   ndarray.c         exact ndarrays read through NumPy's C-API, the buffer protocol's decisions
 *   threads.c         a job over rows or tensors, split over threads (policy in parallel.h)
 *   pool.c            the persistent worker threads (started on first need, reset after fork)
 *   kernels.c         per-row constants, the portable kernels, the instruction-set levels
 *   kernels_avx2.c    AVX2 + F16C kernels                  \  all instantiations of the one
 *   kernels_avx512.c  AVX-512F kernels (float16, float64)  /  loop in kernel_body.h
 *   half.h            float16 conversions, loads and stores at any alignment
 *   internal.h        what the files share
 *
 * Instruction sets: the best level the CPU supports ("avx512", "avx2", "portable") is chosen at
 * import; AMSGRAD_SIMD=portable|avx2|avx512|best asks for one (a level the CPU lacks gives the
 * best below it), set_simd() changes it at run time (tests run every path in one process).
 * Compiling with -DAMS_NO_SIMD leaves the x86 code out altogether.
 *
 * Threads: large calls are split into contiguous chunks run by the calling thread and the
 * workers of a persistent pool (pool.c); elementwise arithmetic makes the result independent of
 * the split. The default count is
 * AMSGRAD_NUM_THREADS, else the CPUs available to the process.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "parallel.h"

int ams_num_threads = 1;

static PyObject *py_set_num_threads(PyObject *self, PyObject *arg) {
    (void)self;
    if (!PyLong_Check(arg) || PyBool_Check(arg)) {
        PyErr_SetString(PyExc_ValueError, "set_num_threads: expected an int >= 1");
        return NULL;
    }
    int overflow = 0;
    long n = PyLong_AsLongAndOverflow(arg, &overflow);
    if (n == -1 && PyErr_Occurred()) return NULL;
    if (overflow < 0 || (overflow == 0 && n < 1)) {
        PyErr_SetString(PyExc_ValueError, "set_num_threads: expected an int >= 1");
        return NULL;
    }
    if (overflow > 0 || n > AMS_MAX_THREADS) n = AMS_MAX_THREADS;
    ams_num_threads = (int)n;
#if AMS_HAVE_PTHREADS
    ams_pool_resize(ams_num_threads - 1); /* workers beyond the count stop */
#endif
    Py_RETURN_NONE;
}

static PyObject *py_get_num_threads(PyObject *self, PyObject *unused) {
    (void)self;
    (void)unused;
    return PyLong_FromLong(ams_num_threads);
}

static PyObject *py_simd(PyObject *self, PyObject *unused) {
    (void)self;
    (void)unused;
    return PyUnicode_FromString(ams_level_description(ams_level()));
}

static PyObject *py_simd_levels(PyObject *self, PyObject *unused) {
    (void)self;
    (void)unused;
    PyObject *list = PyList_New(0);
    if (list == NULL) return NULL;
    for (int level = LV_COUNT - 1; level >= LV_PORTABLE; level--) {
        if (!ams_level_supported(level)) continue;
        PyObject *name = PyUnicode_FromString(ams_level_name(level));
        if (name == NULL || PyList_Append(list, name) < 0) {
            Py_XDECREF(name);
            Py_DECREF(list);
            return NULL;
        }
        Py_DECREF(name);
    }
    PyObject *levels = PyList_AsTuple(list);
    Py_DECREF(list);
    return levels;
}

/* the level named `name` ("best" or a level's name), -1 if none; a supported one or not */
static int level_from_name(const char *name) {
    if (strcmp(name, "best") == 0) return ams_best_level();
    for (int level = 0; level < LV_COUNT; level++)
        if (strcmp(name, ams_level_name(level)) == 0) return level;
    return -1;
}

static PyObject *py_set_simd(PyObject *self, PyObject *arg) {
    (void)self;
    const char *name = PyUnicode_Check(arg) ? PyUnicode_AsUTF8(arg) : NULL;
    if (PyUnicode_Check(arg) && name == NULL) return NULL;
    int level = name ? level_from_name(name) : -1;
    if (level < 0 || !ams_level_supported(level)) {
        PyObject *levels = py_simd_levels(NULL, NULL);
        if (levels == NULL) return NULL;
        PyErr_Format(PyExc_ValueError,
                     "set_simd: level must be 'best' or one of %R (the levels this CPU supports), "
                     "got %R",
                     levels, arg);
        Py_DECREF(levels);
        return NULL;
    }
    ams_set_level(level);
    Py_RETURN_NONE;
}

/* ------------------------------------------------------------------------------------------ */
/* The environment, read once at import. An invalid value is not silently ignored: one           */
/* RuntimeWarning names the variable and what it accepts, then the default applies.            */

/* AMSGRAD_SIMD: the level to start with; 0, or -1 with a warning that raised */
static int level_from_env(void) {
    const char *env = getenv("AMSGRAD_SIMD");
    int level = ams_best_level();
    if (env == NULL || *env == '\0') {
        ams_set_level(level);
        return 0;
    }
    int asked = level_from_name(env);
    if (asked < 0) {
        ams_set_level(level);
        return PyErr_WarnFormat(PyExc_RuntimeWarning, 1,
                                "AMSGRAD_SIMD=%.40s is not one of best, avx512, avx2, portable: "
                                "using the best level this CPU supports (%s)",
                                env, ams_level_name(level));
    }
    while (asked > LV_PORTABLE && !ams_level_supported(asked)) asked--; /* what the CPU has */
    ams_set_level(asked);
    return 0;
}

/* AMSGRAD_NUM_THREADS: the default thread count; 0, or -1 with a warning that raised */
static int threads_from_env(void) {
    const char *env = getenv("AMSGRAD_NUM_THREADS");
    ams_num_threads = ams_cpu_count();
    if (env == NULL || *env == '\0') return 0;
    char *end = NULL;
    long v = strtol(env, &end, 10);
    while (end && end != env && (*end == ' ' || *end == '\t' || *end == '\n')) end++;
    if (end && end != env && *end == '\0' && v >= 1) {
        ams_num_threads = v > AMS_MAX_THREADS ? AMS_MAX_THREADS : (int)v;
        return 0;
    }
    return PyErr_WarnFormat(PyExc_RuntimeWarning, 1,
                            "AMSGRAD_NUM_THREADS=%.40s is not an integer >= 1: using %d (the "
                            "CPUs available to this process)",
                            env, ams_num_threads);
}

static PyMethodDef methods[] = {
    {"apply", (PyCFunction)(void (*)(void))ams_py_apply, METH_FASTCALL,
     "apply(var, m, v, vhat, grad, hyper, nrows) -> None | (i, j)\n\n"
     "One ApplyAdamWithAmsgradV2 step in place on C-contiguous buffers of one format ('e', 'f'\n"
     "or 'd'). hyper holds 6 * nrows values laid out hyper[k * nrows + r], k in (beta1_power,\n"
     "beta2_power, lr, beta1, beta2, epsilon). If two of var=0, m=1, v=2, vhat=3, grad=4 share\n"
     "memory, nothing is written and the pair (i, j) is returned."},
    {"apply_many", (PyCFunction)(void (*)(void))ams_py_apply_many, METH_FASTCALL,
     "apply_many(vars, ms, vs, vhats, grads, hyper[, exact_type]) -> None | (a, role_a, b, role_b)\n\n"
     "apply() on K tensors with one set of 6 hyper-parameters. If any two of the 5K buffers\n"
     "share memory, nothing is written and (list index, role, list index, role) is returned."},
    {"apply_addresses", (PyCFunction)(void (*)(void))ams_py_apply_addresses, METH_FASTCALL,
     "apply_addresses(addresses, sizes, hyper[, sets]) -> None | (a, role_a, b, role_b)\n\n"
     "apply_many() on memory given by address: addresses holds 5K int64 laid out\n"
     "[5 * i + role] (var, m, v, vhat, grad), sizes K int64 element counts, hyper 6 values in\n"
     "T (or 6 * G laid out [k * G + g], with sets: K int64, tensor i's g). The caller vouches\n"
     "that each run is live, C-contiguous and of T; overlap is checked here (nothing written,\n"
     "the pair returned)."},
    {"apply_fast", (PyCFunction)(void (*)(void))ams_py_apply_fast, METH_FASTCALL,
     "apply_fast(var, m, v, vhat, beta1_power, beta2_power, lr, beta1, beta2, epsilon, grad)\n"
     "-> bool\n\n"
     "The functional API's common call (exact ndarrays of one float dtype and shape,\n"
     "C-contiguous, writeable, disjoint; six float scalars in float32 range) checked and run in\n"
     "C: True when done, False (nothing written, no exception) when the call needs the full\n"
     "contract."},
    {"set_fast_types", (PyCFunction)(void (*)(void))ams_py_set_fast_types, METH_FASTCALL,
     "set_fast_types(ndarray, float64, float32, float16): the types apply_fast() takes."},
    {"set_ndarray_direct", ams_py_set_ndarray_direct, METH_O,
     "set_ndarray_direct(on) -> bool: read exact ndarrays through NumPy's C-API (the default)\n"
     "or, off, through the buffer protocol only (the same decisions; for tests). Returns the\n"
     "previous setting."},
    {"ndarray_direct", ams_py_ndarray_direct, METH_NOARGS,
     "ndarray_direct() -> dict: 'available' (NumPy's C-API loaded), 'enabled', 'reason' (why\n"
     "not available, else None), 'acquired' (arrays read directly so far)."},
    {"set_num_threads", py_set_num_threads, METH_O,
     "set_num_threads(n): threads for large calls (n >= 1)."},
    {"get_num_threads", py_get_num_threads, METH_NOARGS, "get_num_threads() -> int"},
    {"simd", py_simd, METH_NOARGS,
     "simd() -> str: the code path in use ('avx512f+avx2+f16c', 'avx2+f16c' or 'portable')."},
    {"simd_levels", py_simd_levels, METH_NOARGS,
     "simd_levels() -> tuple[str, ...]: the instruction-set levels this CPU supports, best\n"
     "first, from 'avx512', 'avx2', 'portable' ('portable' always)."},
    {"set_simd", py_set_simd, METH_O,
     "set_simd(level): run later calls on level, 'best' or one of simd_levels() (the same\n"
     "bits on every level; for tests and benchmarks)."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "amsgrad.core._native",
    "Native fused kernel of ApplyAdamWithAmsgradV2 (bit-exact with amsgrad.core.reference).", -1,
    methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__native(void) {
    PyObject *module = PyModule_Create(&moduledef);
    if (module == NULL) return NULL;
    /* NumPy's C-API failing to load is no error (arrays then go through the buffer protocol);
     * -1: out of memory, or a warning turned into an error */
    if (ams_ndarray_init() < 0 || level_from_env() < 0 || threads_from_env() < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
