/* fsdp._native: the socket layer's per-connection calls into the engine, made from C.
 *
 * A socket call (accept, recv, send, close) is one call of the engine's compiled `usercall`
 * (fsdp/tcp/usercalls.py).  From Python that call goes through Numba's CPython wrapper, which
 * builds an argument tuple and unboxes eleven arguments, three of them arrays (each array gets
 * an NRT meminfo made and freed): ~200 ns of a call whose engine part is often less.  This
 * module calls the compiled function itself, with Numba's native calling convention, from a
 * METH_FASTCALL method: ~40 ns.  It also reads the clock (CLOCK_MONOTONIC, the one
 * time.monotonic_ns reads) and passes the caller's bytes to the engine in place, so recv()
 * makes its result with one copy and send() copies nothing in Python.
 *
 * The function's address and its native type come from fsdp/sockapi/fastcall.py, which checks the
 * type against the one this file is written for and falls back to the Numba entries when they
 * differ (another Numba) or when this module was not built.  Nothing here keeps state between
 * calls but the scratch arrays the engine writes to; the GIL is held throughout, as it is for
 * the Numba entry.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

/* Numba's native calling convention (numba.core.callconv.CPUCallConv): status return, a
 * pointer to the result, a pointer to exception info, then every argument flattened.  A 1-D
 * C-contiguous array is seven words: meminfo, parent, nitems, itemsize, data, shape, stride. */
#define ARRAY_ARGS(p) void *p##_mi, void *p##_parent, int64_t p##_n, int64_t p##_isz, \
    void *p##_data, int64_t p##_shape, int64_t p##_stride
typedef int32_t (*usercall_fn)(int64_t *ret, void **excinfo, int64_t core, int64_t op,
                               int64_t cid, int64_t a, int64_t b, int64_t c, int64_t d,
                               int64_t now, ARRAY_ARGS(buf), ARRAY_ARGS(out), ARRAY_ARGS(ids));
/* an array argument the engine may write n items of `size` bytes to, at data */
#define ARRAY(data, n, size) NULL, NULL, (int64_t)(n), (int64_t)(size), (void *)(data), \
    (int64_t)(n), (int64_t)(size)

/* fsdp/tcp/usercalls.py's op numbers (checked against it by fastcall.py) */
enum { OP_ACCEPT = 3, OP_SEND = 9, OP_RECV = 10, OP_CLOSE = 13 };
#define ACCEPT_ADDRS 4 /* usercalls.CI_LIP .. CI_RPORT: what OP_ACCEPT writes to `out` */

/* The arrays of calls whose `out` / `ids` / `buf` carry nothing (usercalls.UC_U8 ...): one
 * item each, as the Numba entries pass them. */
static uint8_t unused_u8[1];
static int64_t out_i64[8];
static int32_t unused_i32[1];

typedef struct {
    usercall_fn fn; /* usercall compiled for this core's CoreRef type */
    int64_t ref;    /* the CoreRef's table address (fsdp.driver.jitmem.CoreRef._addr) */
} Core;

typedef struct {
    PyObject_HEAD
    Py_ssize_t ncores;
    Core *cores;
    PyObject *refs;  /* the CoreRefs: their tables must live as long as this */
    PyObject *clock; /* NULL: CLOCK_MONOTONIC in µs; else a callable returning µs (virtual) */
} Engine;

static int64_t now_us(Engine *e, int *err) {
    if (e->clock == NULL) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
    }
    PyObject *r = PyObject_CallNoArgs(e->clock);
    if (r == NULL) {
        *err = 1;
        return 0;
    }
    int64_t v = PyLong_AsLongLong(r);
    Py_DECREF(r);
    if (v == -1 && PyErr_Occurred())
        *err = 1;
    return v;
}

/* One usercall; 0, or -1 with an exception set (a bad core index, a clock that failed, or an
 * exception raised inside the engine, which Numba reports as a non-zero status). */
static int call(Engine *e, int64_t core, int64_t op, int64_t cid, int64_t a, int64_t b,
                int64_t c, int64_t d, void *buf, int64_t buflen, int64_t *ret) {
    if (core < 0 || core >= e->ncores) {
        PyErr_Format(PyExc_IndexError, "no core %lld in this stack", (long long)core);
        return -1;
    }
    int err = 0;
    int64_t now = now_us(e, &err);
    if (err)
        return -1;
    void *excinfo = NULL;
    *ret = 0;
    int32_t status = e->cores[core].fn(ret, &excinfo, e->cores[core].ref, op, cid, a, b, c, d, now,
                           ARRAY(buf, buflen, 1), ARRAY(out_i64, 8, 8),
                           ARRAY(unused_i32, 1, 4));
    if (status != 0) {
        PyErr_Format(PyExc_SystemError, "fsdp engine call %lld failed (status %d)",
                     (long long)op, (int)status);
        return -1;
    }
    return 0;
}

static int int_args(PyObject *const *args, Py_ssize_t nargs, Py_ssize_t want, int64_t *v,
                    const char *name) {
    if (nargs != want) {
        PyErr_Format(PyExc_TypeError, "%s() takes %zd arguments (%zd given)", name, want, nargs);
        return -1;
    }
    for (Py_ssize_t i = 0; i < want; i++) {
        v[i] = PyLong_AsLongLong(args[i]);
        if (v[i] == -1 && PyErr_Occurred())
            return -1;
    }
    return 0;
}

/* call(core, op, cid, a, b, c, d) -> int: a usercall that reads and writes no buffer (send
 * and recv trust their sizes against the buffer they are given: they have methods of their
 * own; the calls that write `out` or `ids` stop at the arrays' sizes) */
static PyObject *Engine_call(Engine *self, PyObject *const *args, Py_ssize_t nargs) {
    int64_t v[7], ret;
    if (int_args(args, nargs, 7, v, "call") < 0)
        return NULL;
    if (v[1] == OP_SEND || v[1] == OP_RECV) {
        PyErr_SetString(PyExc_ValueError, "call() makes no send or recv: use send() / recv()");
        return NULL;
    }
    if (call(self, v[0], v[1], v[2], v[3], v[4], v[5], v[6], unused_u8, 1, &ret) < 0)
        return NULL;
    return PyLong_FromLongLong(ret);
}

/* close(core, cid) -> int */
static PyObject *Engine_close(Engine *self, PyObject *const *args, Py_ssize_t nargs) {
    int64_t v[2], ret;
    if (int_args(args, nargs, 2, v, "close") < 0)
        return NULL;
    if (call(self, v[0], OP_CLOSE, v[1], 0, 0, 0, 0, unused_u8, 1, &ret) < 0)
        return NULL;
    return PyLong_FromLongLong(ret);
}

/* send(core, cid, data) -> int: the bytes the send queue took, or -errno.  `data` is any
 * C-contiguous buffer; the engine copies out of it during the call. */
static PyObject *Engine_send(Engine *self, PyObject *const *args, Py_ssize_t nargs) {
    int64_t v[2], ret;
    if (nargs != 3) {
        PyErr_Format(PyExc_TypeError, "send() takes 3 arguments (%zd given)", nargs);
        return NULL;
    }
    if (int_args(args, 2, 2, v, "send") < 0)
        return NULL;
    Py_buffer view;
    if (PyObject_GetBuffer(args[2], &view, PyBUF_SIMPLE) < 0)
        return NULL;
    int rc = view.len == 0
        ? call(self, v[0], OP_SEND, v[1], 0, 0, 0, 0, unused_u8, 1, &ret)
        : call(self, v[0], OP_SEND, v[1], 0, view.len, 0, 0, view.buf, view.len, &ret);
    PyBuffer_Release(&view);
    if (rc < 0)
        return NULL;
    return PyLong_FromLongLong(ret);
}

/* recv(core, cid, n) -> bytes (up to n > 0, b"" at end of file) or int -errno */
static PyObject *Engine_recv(Engine *self, PyObject *const *args, Py_ssize_t nargs) {
    int64_t v[3], ret;
    if (int_args(args, nargs, 3, v, "recv") < 0)
        return NULL;
    if (v[2] <= 0) {
        PyErr_SetString(PyExc_ValueError, "recv() needs a size > 0");
        return NULL;
    }
    /* the result is made first and filled by the engine: one copy, as the kernel's */
    PyObject *out = PyBytes_FromStringAndSize(NULL, v[2]);
    if (out == NULL)
        return NULL;
    if (call(self, v[0], OP_RECV, v[1], 0, v[2], 0, 0, PyBytes_AS_STRING(out), v[2], &ret) < 0) {
        Py_DECREF(out);
        return NULL;
    }
    if (ret < 0) {
        Py_DECREF(out);
        return PyLong_FromLongLong(ret);
    }
    if (ret != v[2] && _PyBytes_Resize(&out, (Py_ssize_t)ret) < 0)
        return NULL;
    return out;
}

/* accept(core, lid) -> (cid, lip, lport, rip, rport), or int -errno */
static PyObject *Engine_accept(Engine *self, PyObject *const *args, Py_ssize_t nargs) {
    int64_t v[2], ret;
    if (int_args(args, nargs, 2, v, "accept") < 0)
        return NULL;
    if (call(self, v[0], OP_ACCEPT, v[1], 0, 0, 0, 0, unused_u8, 1, &ret) < 0)
        return NULL;
    if (ret < 0)
        return PyLong_FromLongLong(ret);
    return Py_BuildValue("(LLLLL)", (long long)ret, (long long)out_i64[0],
                         (long long)out_i64[1], (long long)out_i64[2], (long long)out_i64[3]);
}

static PyMethodDef Engine_methods[] = {
    {"call", (PyCFunction)(void (*)(void))Engine_call, METH_FASTCALL,
     "call(core, op, cid, a, b, c, d) -> int: a usercall with no buffer"},
    {"send", (PyCFunction)(void (*)(void))Engine_send, METH_FASTCALL,
     "send(core, cid, data) -> int: bytes taken or -errno"},
    {"recv", (PyCFunction)(void (*)(void))Engine_recv, METH_FASTCALL,
     "recv(core, cid, n) -> bytes, or int -errno"},
    {"accept", (PyCFunction)(void (*)(void))Engine_accept, METH_FASTCALL,
     "accept(core, lid) -> (cid, lip, lport, rip, rport), or int -errno"},
    {"close", (PyCFunction)(void (*)(void))Engine_close, METH_FASTCALL,
     "close(core, cid) -> int"},
    {NULL},
};

static void Engine_dealloc(Engine *self) {
    PyMem_Free(self->cores);
    Py_XDECREF(self->refs);
    Py_XDECREF(self->clock);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* Engine(functions, refs, clock=None): core i's usercall at address functions[i], called
 * with CoreRef refs[i] (its `_addr`); `clock` a callable giving µs, None for CLOCK_MONOTONIC */
static PyObject *Engine_new(PyTypeObject *type, PyObject *args, PyObject *kwargs) {
    static char *names[] = {"functions", "refs", "clock", NULL};
    PyObject *fns, *refs, *clock = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O!O!|O", names, &PyTuple_Type, &fns,
                                     &PyTuple_Type, &refs, &clock))
        return NULL;
    Py_ssize_t n = PyTuple_GET_SIZE(refs);
    if (PyTuple_GET_SIZE(fns) != n) {
        PyErr_SetString(PyExc_ValueError, "one function address per core");
        return NULL;
    }
    Engine *self = (Engine *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->cores = PyMem_Calloc(n ? n : 1, sizeof(Core));
    if (self->cores == NULL) {
        Py_DECREF(self);
        return PyErr_NoMemory();
    }
    Py_INCREF(refs);
    self->refs = refs;
    for (Py_ssize_t i = 0; i < n; i++) {
        void *fn = PyLong_AsVoidPtr(PyTuple_GET_ITEM(fns, i));
        if (fn == NULL) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_ValueError, "a function address is 0");
            Py_DECREF(self);
            return NULL;
        }
        PyObject *addr = PyObject_GetAttrString(PyTuple_GET_ITEM(refs, i), "_addr");
        if (addr == NULL) {
            Py_DECREF(self);
            return NULL;
        }
        int64_t ref = PyLong_AsLongLong(addr);
        Py_DECREF(addr);
        if (ref == -1 && PyErr_Occurred()) {
            Py_DECREF(self);
            return NULL;
        }
        self->cores[i].fn = (usercall_fn)fn;
        self->cores[i].ref = ref;
    }
    self->ncores = n;
    if (clock != Py_None) {
        Py_INCREF(clock);
        self->clock = clock;
    }
    return (PyObject *)self;
}

static PyTypeObject EngineType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "fsdp._native.Engine",
    .tp_basicsize = sizeof(Engine),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A stack's usercalls, called natively (see fsdp/sockapi/fastcall.py)",
    .tp_new = Engine_new,
    .tp_dealloc = (destructor)Engine_dealloc,
    .tp_methods = Engine_methods,
};

/* What fastcall.py checks this file against. */
#define NATIVE_TYPE \
    "i32 (i64*, {i8*, i32, i8*, i8*, i32}**, i64, i64, i64, i64, i64, i64, i64, i64, " \
    "i8*, i8*, i64, i64, i8*, i64, i64, i8*, i8*, i64, i64, i64*, i64, i64, " \
    "i8*, i8*, i64, i64, i32*, i64, i64)"

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "fsdp._native",
    "The engine's per-connection usercalls called from C (see native/fsdp_native.c).", -1,
    NULL,
};

PyMODINIT_FUNC PyInit__native(void) {
    if (PyType_Ready(&EngineType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    Py_INCREF(&EngineType);
    if (PyModule_AddObject(m, "Engine", (PyObject *)&EngineType) < 0
        || PyModule_AddStringConstant(m, "NATIVE_TYPE", NATIVE_TYPE) < 0
        || PyModule_AddIntConstant(m, "OP_ACCEPT", OP_ACCEPT) < 0
        || PyModule_AddIntConstant(m, "OP_SEND", OP_SEND) < 0
        || PyModule_AddIntConstant(m, "OP_RECV", OP_RECV) < 0
        || PyModule_AddIntConstant(m, "OP_CLOSE", OP_CLOSE) < 0) {
        Py_DECREF(&EngineType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
