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
#include <structmember.h>
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
enum { RECV_AS_POLLED = 2 }; /* OP_RECV's c (fsdp.tcp.usercalls) */

/* The arrays of calls whose `out` / `ids` / `buf` carry nothing (usercalls.UC_U8 ...): one
 * item each, as the Numba entries pass them. */
static uint8_t unused_u8[1];
static int64_t out_i64[8]; /* OP_ACCEPT writes usercalls.CI_LIP .. CI_RPORT (0..3) here */
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

/* ---- Socket fast paths ------------------------------------------------------------------
 * fsdp.sockapi.socket.Socket's accept, recv, send, sendall and close: the usual case of each
 * in C, everything else in the Python method it replaces (the reference, kept as the class's
 * `_py_<name>`).  A Socket has __slots__; these read and write the slots at their offsets,
 * taken from the class's member descriptors by bind_socket_class().  The usual case: a
 * connection (or a one-core listener) on a stack whose engine is this module's and whose clock
 * is the host's, no flags, exact ints and bytes.  What each does there is what the Python
 * method does; tests/sockapi runs its parity suite through both. */

enum { SLOT_STACK, SLOT_CLOSED, SLOT_RELEASED, SLOT_CID, SLOT_CORE, SLOT_TIMEOUT, SLOT_IO_REFS,
       SLOT_NUMBERED, SLOT_FILENO, SLOT_WREF, SLOT_LIDS, SLOT_LINGER, SLOT_SELECTORS,
       SLOT_PENDING_OPTS, SLOT_REUSEADDR, SLOT_REUSEPORT, SLOT_BOUND_REUSEPORT, SLOT_BOUND,
       SLOT_PEER, N_SLOTS };
static const char *slot_names[N_SLOTS] = {
    "_stack", "_closed", "_released", "_cid", "_core", "_timeout", "_io_refs", "_numbered",
    "_fileno", "_wref", "_lids", "_linger", "_selectors", "_pending_opts", "_reuseaddr",
    "_reuseport", "_bound_reuseport", "_bound", "_peer"};

static struct {
    PyTypeObject *cls;      /* Socket */
    Py_ssize_t off[N_SLOTS];
    PyMemberDef *members;   /* every slot of Socket (the template's copy) */
    Py_ssize_t n_members;
    PyObject *template;     /* a Socket as Socket._init_fields leaves a new one */
    PyObject *by_fileno;    /* socket._by_fileno */
    PyObject *fileno_counter;
    PyObject *ip_str;       /* socket._ip_str */
    PyObject *default_timeout; /* socket.getdefaulttimeout */
    PyObject *py_accept, *py_recv, *py_send, *py_sendall, *py_sendall_rest, *py_close;
    PyObject *s_engine, *s_sockets, *s_closed; /* Stack attribute names */
} sk;

#define SLOT(obj, i) (*(PyObject **)((char *)(obj) + sk.off[i]))

static void slot_set(PyObject *obj, int i, PyObject *v) { /* steals v */
    PyObject *old = SLOT(obj, i);
    SLOT(obj, i) = v;
    Py_XDECREF(old);
}

/* The stack's native engine with the host's clock, borrowed; NULL (no exception) otherwise. */
static Engine *native_engine(PyObject *stack, PyObject **engine_ref) {
    PyObject *e = PyObject_GetAttr(stack, sk.s_engine);
    if (e == NULL) {
        PyErr_Clear();
        return NULL;
    }
    if (!Py_IS_TYPE(e, &EngineType) || ((Engine *)e)->clock != NULL) {
        Py_DECREF(e);
        return NULL;
    }
    *engine_ref = e;
    return (Engine *)e;
}

static int64_t small_int(PyObject *v, int *ok) { /* an exact int's value, *ok = 0 if not one */
    if (v == NULL || !PyLong_CheckExact(v)) {
        *ok = 0;
        return 0;
    }
    int overflow;
    long long x = PyLong_AsLongLongAndOverflow(v, &overflow);
    *ok = !overflow;
    return x;
}

static PyObject *raise_errno(int64_t code) { /* socket._oserror: OSError(code, strerror) */
    PyObject *exc = PyObject_CallFunction(PyExc_OSError, "is", (int)code, strerror((int)code));
    if (exc != NULL) {
        PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
        Py_DECREF(exc);
    }
    return NULL;
}

/* the Python method `fn` with self and the call's arguments */
static PyObject *call_python(PyObject *fn, PyObject *self, PyObject *const *args,
                             Py_ssize_t nargs, PyObject *kwnames) {
    Py_ssize_t total = nargs + (kwnames ? PyTuple_GET_SIZE(kwnames) : 0);
    PyObject *small[8];
    PyObject **stack = total < 8 ? small : PyMem_Malloc((total + 1) * sizeof(PyObject *));
    if (stack == NULL)
        return PyErr_NoMemory();
    stack[0] = self;
    memcpy(stack + 1, args, total * sizeof(PyObject *));
    PyObject *r = PyObject_Vectorcall(fn, stack, nargs + 1, kwnames);
    if (stack != small)
        PyMem_Free(stack);
    return r;
}

/* the connection's (core, cid) and the stack's native engine, when the call may be made here */
static Engine *usual_connection(PyObject *self, int64_t *core, int64_t *cid, PyObject **eref) {
    if (SLOT(self, SLOT_CLOSED) != Py_False)
        return NULL;
    int ok1, ok2;
    *cid = small_int(SLOT(self, SLOT_CID), &ok1);
    *core = small_int(SLOT(self, SLOT_CORE), &ok2);
    if (!ok1 || !ok2 || *cid < 0)
        return NULL;
    return native_engine(SLOT(self, SLOT_STACK), eref);
}

static int zero_flags(PyObject *const *args, Py_ssize_t nargs, Py_ssize_t at) {
    if (nargs <= at)
        return 1;
    int ok;
    return small_int(args[at], &ok) == 0 && ok;
}

/* recv(bufsize, flags=0) */
static PyObject *sock_recv(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                           PyObject *kwnames) {
    if (kwnames == NULL && (nargs == 1 || nargs == 2) && zero_flags(args, nargs, 1)) {
        int ok;
        int64_t n = small_int(args[0], &ok), core, cid;
        PyObject *eref = NULL;
        Engine *e;
        /* (any size, as CPython's recv: the result is made that large, then cut to what
         * came; asyncio's transports ask for 256 KiB) */
        if (ok && n > 0 && n <= PY_SSIZE_T_MAX
            && (e = usual_connection(self, &core, &cid, &eref))) {
            PyObject *out = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)n);
            int64_t ret;
            /* a socket with a timeout reads as CPython's poll-then-recv (usercalls
             * RECV_AS_POLLED) */
            PyObject *timeout = SLOT(self, SLOT_TIMEOUT);
            int64_t mode = PyFloat_CheckExact(timeout) && PyFloat_AS_DOUBLE(timeout) > 0
                ? RECV_AS_POLLED : 0;
            if (out == NULL
                || call(e, core, OP_RECV, cid, 0, n, mode, 0, PyBytes_AS_STRING(out), n, &ret)
                       < 0) {
                Py_XDECREF(out);
                Py_DECREF(eref);
                return NULL;
            }
            Py_DECREF(eref);
            if (ret >= 0) {
                if (ret != n && _PyBytes_Resize(&out, (Py_ssize_t)ret) < 0)
                    return NULL;
                return out;
            }
            Py_DECREF(out);
            if (ret != -EAGAIN)
                return raise_errno(-ret);
        }
    }
    return call_python(sk.py_recv, self, args, nargs, kwnames);
}

/* sendall(data, flags=0): bytes the send buffer takes whole; the rest (a part taken, or none)
 * in Python's _sendall_rest(data, flags, sent) */
static PyObject *sock_sendall(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                              PyObject *kwnames) {
    if (kwnames == NULL && (nargs == 1 || nargs == 2) && PyBytes_CheckExact(args[0])
        && PyBytes_GET_SIZE(args[0]) > 0 && zero_flags(args, nargs, 1)) {
        PyObject *timeout = SLOT(self, SLOT_TIMEOUT);
        int64_t core, cid, ret;
        PyObject *eref = NULL;
        Engine *e;
        /* (`not self._timeout`: blocking, or non-blocking; a timed socket takes Python's way) */
        if ((timeout == Py_None || (PyFloat_CheckExact(timeout) && PyFloat_AS_DOUBLE(timeout) == 0))
            && (e = usual_connection(self, &core, &cid, &eref))) {
            Py_ssize_t n = PyBytes_GET_SIZE(args[0]);
            int rc = call(e, core, OP_SEND, cid, 0, n, 0, 0, PyBytes_AS_STRING(args[0]), n, &ret);
            Py_DECREF(eref);
            if (rc < 0)
                return NULL;
            if (ret == n)
                Py_RETURN_NONE;
            if (ret < 0 && ret != -EAGAIN)
                return raise_errno(-ret);
            PyObject *sent = PyLong_FromLongLong(ret > 0 ? ret : 0);
            if (sent == NULL)
                return NULL;
            PyObject *flags = nargs == 2 ? args[1] : PyLong_FromLong(0);
            PyObject *r = flags == NULL ? NULL : PyObject_CallFunctionObjArgs(
                sk.py_sendall_rest, self, args[0], flags, sent, NULL);
            if (nargs != 2)
                Py_XDECREF(flags);
            Py_DECREF(sent);
            return r;
        }
    }
    return call_python(sk.py_sendall, self, args, nargs, kwnames);
}

/* send(data, flags=0): bytes, bytearray or a contiguous memoryview, on a connection; what the
 * send buffer took, or Python's way when it took nothing (it waits or says EAGAIN) or, on a
 * blocking socket, only part (Linux queues all of a blocking send) */
static PyObject *sock_send(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                           PyObject *kwnames) {
    if (kwnames == NULL && (nargs == 1 || nargs == 2) && zero_flags(args, nargs, 1)
        && (PyBytes_CheckExact(args[0]) || PyByteArray_CheckExact(args[0])
            || PyMemoryView_Check(args[0]))) {
        int64_t core, cid, ret;
        PyObject *eref = NULL;
        Engine *e;
        Py_buffer view;
        if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0) {
            PyErr_Clear(); /* (not contiguous, released: Python's way says what it says) */
            return call_python(sk.py_send, self, args, nargs, kwnames);
        }
        if (view.len > 0 && (e = usual_connection(self, &core, &cid, &eref))) {
            Py_ssize_t len = view.len;
            int rc = call(e, core, OP_SEND, cid, 0, view.len, 0, 0, view.buf, view.len, &ret);
            PyBuffer_Release(&view);
            Py_DECREF(eref);
            if (rc < 0)
                return NULL;
            if (ret == len || (ret >= 0 && SLOT(self, SLOT_TIMEOUT) != Py_None))
                return PyLong_FromLongLong(ret);
            if (ret > 0) /* a blocking send queues it all, as Linux's (Socket._send_rest) */
                return PyObject_CallMethod(self, "_send_rest", "OiL", args[0], 0,
                                           (long long)ret);
            if (ret != -EAGAIN)
                return raise_errno(-ret);
        } else {
            PyBuffer_Release(&view);
        }
    }
    return call_python(sk.py_send, self, args, nargs, kwnames);
}

/* close(): a connection no makefile() object, listener, linger or selector holds; what
 * Socket.close and _release do for it */
static PyObject *sock_close(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                            PyObject *kwnames) {
    PyObject *linger = SLOT(self, SLOT_LINGER), *sel = SLOT(self, SLOT_SELECTORS);
    int64_t core, cid;
    PyObject *eref = NULL;
    Engine *e;
    int ok;
    /* (every slot is set once _closed is: Socket._init_fields sets them together) */
    if (nargs != 0 || kwnames != NULL || SLOT(self, SLOT_CLOSED) != Py_False
        || SLOT(self, SLOT_LIDS) != Py_None
        || small_int(SLOT(self, SLOT_IO_REFS), &ok) != 0 || !ok
        || !PyTuple_CheckExact(linger) || PyTuple_GET_SIZE(linger) != 2
        || small_int(PyTuple_GET_ITEM(linger, 0), &ok) != 0 || !ok
        || !(sel == Py_None || (PyList_CheckExact(sel) && PyList_GET_SIZE(sel) == 0)))
        return call_python(sk.py_close, self, args, nargs, kwnames);
    if (!(e = usual_connection(self, &core, &cid, &eref)))
        return call_python(sk.py_close, self, args, nargs, kwnames);
    PyObject *stack = SLOT(self, SLOT_STACK);
    PyObject *stack_closed = PyObject_GetAttr(stack, sk.s_closed);
    if (stack_closed == NULL) {
        Py_DECREF(eref);
        return NULL;
    }
    Py_DECREF(stack_closed);
    if (stack_closed != Py_False) {
        Py_DECREF(eref);
        return call_python(sk.py_close, self, args, nargs, kwnames);
    }
    Py_INCREF(Py_True);
    slot_set(self, SLOT_CLOSED, Py_True);
    Py_INCREF(Py_True);
    slot_set(self, SLOT_RELEASED, Py_True);
    PyObject *wref = SLOT(self, SLOT_WREF);
    if (SLOT(self, SLOT_NUMBERED) == Py_True) { /* _unnumber */
        PyObject *fd = SLOT(self, SLOT_FILENO);
        PyObject *r = PyDict_GetItemWithError(sk.by_fileno, fd);
        if (r == wref && PyDict_DelItem(sk.by_fileno, fd) < 0) {
            Py_DECREF(eref);
            return NULL;
        }
        if (r == NULL && PyErr_Occurred()) {
            Py_DECREF(eref);
            return NULL;
        }
        Py_INCREF(Py_False);
        slot_set(self, SLOT_NUMBERED, Py_False);
    }
    int64_t ret;
    int rc = call(e, core, OP_CLOSE, cid, 0, 0, 0, 0, unused_u8, 1, &ret);
    Py_DECREF(eref);
    if (rc < 0)
        return NULL;
    slot_set(self, SLOT_CID, PyLong_FromLong(-1));
    PyObject *sockets = PyObject_GetAttr(stack, sk.s_sockets); /* Stack._sockets */
    if (sockets == NULL)
        return NULL;
    PyObject *key = PyLong_FromVoidPtr(self); /* id(self) */
    PyObject *r = key ? PyDict_GetItemWithError(sockets, key) : NULL;
    int err = key == NULL || (r == NULL && PyErr_Occurred())
        || (r == wref && PyDict_DelItem(sockets, key) < 0);
    Py_XDECREF(key);
    Py_DECREF(sockets);
    if (err)
        return NULL;
    Py_RETURN_NONE;
}

/* accept(): a one-core listener's next connection, made as Socket.accept makes it */
static PyObject *sock_accept(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                             PyObject *kwnames) {
    PyObject *lids = SLOT(self, SLOT_LIDS), *opts = SLOT(self, SLOT_PENDING_OPTS);
    PyObject *stack = SLOT(self, SLOT_STACK), *eref = NULL;
    Engine *e;
    int ok;
    if (nargs != 0 || kwnames != NULL || SLOT(self, SLOT_CLOSED) != Py_False
        || !PyList_CheckExact(lids) || PyList_GET_SIZE(lids) != 1
        || !PyDict_CheckExact(opts) || PyDict_GET_SIZE(opts) != 0
        || !(e = native_engine(stack, &eref)))
        return call_python(sk.py_accept, self, args, nargs, kwnames);
    int64_t lid = small_int(PyList_GET_ITEM(lids, 0), &ok), cid;
    if (!ok || e->ncores != 1) {
        Py_DECREF(eref);
        return call_python(sk.py_accept, self, args, nargs, kwnames);
    }
    if (call(e, 0, OP_ACCEPT, lid, 0, 0, 0, 0, unused_u8, 1, &cid) < 0) {
        Py_DECREF(eref);
        return NULL;
    }
    if (cid < 0) { /* none ready: Python's way waits, or says why not */
        Py_DECREF(eref);
        return call_python(sk.py_accept, self, args, nargs, kwnames);
    }
    int64_t lip = out_i64[0], lport = out_i64[1], rip = out_i64[2], rport = out_i64[3];
    PyObject *conn = sk.cls->tp_alloc(sk.cls, 0);
    if (conn == NULL)
        goto fail_engine;
    for (Py_ssize_t i = 0; i < sk.n_members; i++) { /* Socket._init_fields' values */
        Py_ssize_t off = sk.members[i].offset;
        PyObject *v = *(PyObject **)((char *)sk.template + off);
        Py_XINCREF(v);
        *(PyObject **)((char *)conn + off) = v;
    }
    PyObject *fileno = PyIter_Next(sk.fileno_counter);
    PyObject *wref = PyWeakref_NewRef(conn, NULL);
    PyObject *timeout = PyObject_CallNoArgs(sk.default_timeout);
    PyObject *opts_new = PyDict_New();
    PyObject *bound = Py_BuildValue("(LL)", (long long)lip, (long long)lport);
    PyObject *peer = Py_BuildValue("(LL)", (long long)rip, (long long)rport);
    PyObject *cidv = PyLong_FromLongLong(cid);
    slot_set(conn, SLOT_FILENO, fileno);
    slot_set(conn, SLOT_WREF, wref);
    slot_set(conn, SLOT_TIMEOUT, timeout);
    slot_set(conn, SLOT_PENDING_OPTS, opts_new);
    slot_set(conn, SLOT_BOUND, bound);
    slot_set(conn, SLOT_PEER, peer);
    slot_set(conn, SLOT_CID, cidv);
    if (!fileno || !wref || !timeout || !opts_new || !bound || !peer || !cidv)
        goto fail_conn;
    Py_INCREF(stack);
    slot_set(conn, SLOT_STACK, stack);
    slot_set(conn, SLOT_CORE, PyLong_FromLong(0));
    /* Linux sk_clone_lock: the child keeps the listener's reuse settings and linger */
    static const int inherited[] = {SLOT_REUSEADDR, SLOT_REUSEPORT, SLOT_BOUND_REUSEPORT,
                                    SLOT_LINGER};
    for (size_t i = 0; i < sizeof inherited / sizeof inherited[0]; i++) {
        PyObject *v = SLOT(self, inherited[i]);
        Py_XINCREF(v);
        slot_set(conn, inherited[i], v);
    }
    PyObject *sockets = PyObject_GetAttr(stack, sk.s_sockets);
    PyObject *key = PyLong_FromVoidPtr(conn);
    int err = !sockets || !key || PyDict_SetItem(sockets, key, wref) < 0;
    Py_XDECREF(sockets);
    Py_XDECREF(key);
    if (err)
        goto fail_conn;
    Py_DECREF(eref);
    PyObject *ip = PyObject_CallOneArg(sk.ip_str, PyTuple_GET_ITEM(peer, 0));
    if (ip == NULL) {
        Py_DECREF(conn); /* (its __del__ closes the connection) */
        return NULL;
    }
    return Py_BuildValue("(N(NL))", conn, ip, (long long)rport);
fail_conn:
    /* a socket that never was: its connection is closed here, not by __del__ */
    Py_INCREF(Py_True);
    slot_set(conn, SLOT_CLOSED, Py_True);
    Py_DECREF(conn);
fail_engine:
    {
        PyObject *type, *value, *tb;
        PyErr_Fetch(&type, &value, &tb);
        int64_t ignored;
        if (call(e, 0, OP_CLOSE, cid, 0, 0, 0, 0, unused_u8, 1, &ignored) < 0)
            PyErr_Clear();
        PyErr_Restore(type, value, tb);
    }
    Py_DECREF(eref);
    return NULL;
}

#define SOCKET_METHOD(name, fn, doc) \
    {name, (PyCFunction)(void (*)(void))fn, METH_FASTCALL | METH_KEYWORDS, doc}
static PyMethodDef socket_methods[] = {
    SOCKET_METHOD("accept", sock_accept, "accept() -> (socket, address)"),
    SOCKET_METHOD("recv", sock_recv, "recv(bufsize[, flags]) -> bytes"),
    SOCKET_METHOD("send", sock_send, "send(data[, flags]) -> int"),
    SOCKET_METHOD("sendall", sock_sendall, "sendall(data[, flags])"),
    SOCKET_METHOD("close", sock_close, "close()"),
};
#define N_SOCKET_METHODS (sizeof socket_methods / sizeof socket_methods[0])

/* each slot's offset in instances of `t`, from its member descriptor */
static int slot_offsets(PyTypeObject *t, const char **names, int n, Py_ssize_t *off) {
    for (int i = 0; i < n; i++) {
        PyObject *d = PyDict_GetItemString(t->tp_dict, names[i]);
        if (d == NULL || !Py_IS_TYPE(d, &PyMemberDescr_Type)
            || ((PyMemberDescrObject *)d)->d_member->type != T_OBJECT_EX) {
            PyErr_Format(PyExc_TypeError, "%s is not a slot of %s", names[i], t->tp_name);
            return -1;
        }
        off[i] = ((PyMemberDescrObject *)d)->d_member->offset;
    }
    return 0;
}

/* bind_socket_class(cls, template, references, by_fileno, fileno_counter, ip_str,
 *                   getdefaulttimeout) -> {name: method descriptor}
 * `references`: {name: the Python method} for accept, recv, send, sendall, close, and
 * "_sendall_rest".  The descriptors are the C methods, for the caller to set on `cls`. */
static PyObject *bind_socket_class(PyObject *module, PyObject *args) {
    PyObject *cls, *template, *refs, *by_fileno, *counter, *ip_str, *deftimeout;
    if (!PyArg_ParseTuple(args, "O!OO!O!OOO", &PyType_Type, &cls, &template, &PyDict_Type, &refs,
                          &PyDict_Type, &by_fileno, &counter, &ip_str, &deftimeout))
        return NULL;
    PyTypeObject *t = (PyTypeObject *)cls;
    if (!(t->tp_flags & Py_TPFLAGS_HEAPTYPE) || t->tp_dictoffset != 0
        || !PyObject_TypeCheck(template, t)) {
        PyErr_SetString(PyExc_TypeError, "a class with __slots__ only, and one of its instances");
        return NULL;
    }
    if (slot_offsets(t, slot_names, N_SLOTS, sk.off) < 0)
        return NULL;
    for (PyMemberDef *m = t->tp_members; m && m->name; m++) {
        if (m->type != T_OBJECT_EX || (m->flags & READONLY)) {
            PyErr_Format(PyExc_TypeError, "%s.%s is not a plain slot", t->tp_name, m->name);
            return NULL;
        }
    }
    static const char *ref_names[] = {"accept", "recv", "send", "sendall", "_sendall_rest",
                                      "close"};
    enum { N_REFS = sizeof ref_names / sizeof ref_names[0] };
    PyObject *fns[N_REFS];
    for (int i = 0; i < N_REFS; i++) {
        fns[i] = PyDict_GetItemString(refs, ref_names[i]);
        if (fns[i] == NULL) {
            PyErr_Format(PyExc_KeyError, "no reference method %s", ref_names[i]);
            return NULL;
        }
    }
    PyObject *out = PyDict_New();
    if (out == NULL)
        return NULL;
    for (size_t i = 0; i < N_SOCKET_METHODS; i++) {
        PyObject *d = PyDescr_NewMethod(t, &socket_methods[i]);
        if (d == NULL || PyDict_SetItemString(out, socket_methods[i].ml_name, d) < 0) {
            Py_XDECREF(d);
            Py_DECREF(out);
            return NULL;
        }
        Py_DECREF(d);
    }
    /* (kept for the life of the process: a class is bound once, at import) */
    Py_INCREF(cls);
    Py_INCREF(template);
    Py_INCREF(by_fileno);
    Py_INCREF(counter);
    Py_INCREF(ip_str);
    Py_INCREF(deftimeout);
    sk.cls = t;
    /* (a class's __slots__ are its tp_members, NULL-terminated, all T_OBJECT_EX) */
    sk.members = t->tp_members;
    sk.n_members = 0;
    while (sk.members && sk.members[sk.n_members].name != NULL)
        sk.n_members++;
    sk.template = template;
    sk.by_fileno = by_fileno;
    sk.fileno_counter = counter;
    sk.ip_str = ip_str;
    sk.default_timeout = deftimeout;
    PyObject **slots[N_REFS] = {&sk.py_accept, &sk.py_recv, &sk.py_send, &sk.py_sendall,
                                &sk.py_sendall_rest, &sk.py_close};
    for (int i = 0; i < N_REFS; i++) {
        Py_INCREF(fns[i]);
        *slots[i] = fns[i];
    }
    sk.s_engine = PyUnicode_InternFromString("_engine");
    sk.s_sockets = PyUnicode_InternFromString("_sockets");
    sk.s_closed = PyUnicode_InternFromString("_closed");
    if (!sk.s_engine || !sk.s_sockets || !sk.s_closed) {
        Py_DECREF(out);
        return NULL;
    }
    return out;
}

/* ---- Selector fast paths ----------------------------------------------------------------
 * fsdp.selectors.FsdpSelector's register and unregister of a connected fsdp Socket (what a
 * server does for every connection), with _CoreRows.add / remove for its row: in C, as the
 * Python methods do it; anything else (listeners, kernel fds, bare numbers, a row array to
 * grow, a core's last row, errors) in the Python methods, kept as `_py_register` /
 * `_py_unregister`.  The rows arrays are reached through the addresses _CoreRows._views()
 * keeps in `_ptrs` beside its memoryviews (the arrays live as long as those). */

enum { SS_CLOSED, SS_FD_TO_KEY, SS_FSDP, SS_FD_OF_SOCK, SS_STACK_ROWS, SS_ROWS_OF, N_SSLOTS };
static const char *sel_slot_names[N_SSLOTS] = {"_closed", "_fd_to_key", "_fsdp", "_fd_of_sock",
                                               "_stack_rows", "_rows_of"};
enum { RS_FREE, RS_KEYS, RS_CIDS, RS_COUNT, RS_PTRS, N_RSLOTS };
static const char *rows_slot_names[N_RSLOTS] = {"free", "keys", "cids", "count", "_ptrs"};

static struct {
    Py_ssize_t soff[N_SSLOTS], roff[N_RSLOTS];
    PyTypeObject *rows_cls, *key_cls;
    PyObject *conn_wanted; /* selectors._CONN_WANTED: the EV_* bits wanted for events 0..3 */
    PyObject *py_register, *py_unregister;
    int64_t poll_row, pr_id, pr_kind, pr_wanted, sel_nready, sel_full, sel_shared;
} se;

#define SSLOT(obj, i) (*(PyObject **)((char *)(obj) + se.soff[i]))
#define RSLOT(obj, i) (*(PyObject **)((char *)(obj) + se.roff[i]))

typedef struct { /* a _CoreRows' arrays (its `_ptrs`) */
    int64_t *rows, *ready, *sel;
    int32_t *rowof;
    int64_t nready, nrowof;
} RowArrays;

static int row_arrays(PyObject *rows, RowArrays *a) {
    PyObject *p = RSLOT(rows, RS_PTRS);
    if (p == NULL || !PyTuple_CheckExact(p) || PyTuple_GET_SIZE(p) != 6)
        return 0;
    int64_t v[6];
    for (int i = 0; i < 6; i++) {
        int ok;
        v[i] = small_int(PyTuple_GET_ITEM(p, i), &ok);
        if (!ok)
            return 0;
    }
    a->rows = (int64_t *)(intptr_t)v[0];
    a->ready = (int64_t *)(intptr_t)v[1];
    a->nready = v[2];
    a->sel = (int64_t *)(intptr_t)v[3];
    a->rowof = (int32_t *)(intptr_t)v[4];
    a->nrowof = v[5];
    return 1;
}

/* the selector's tables are the dicts __init__ made (not a subclass's replacements) */
static int selector_dicts(PyObject *self) {
    for (int i = SS_FD_TO_KEY; i <= SS_ROWS_OF; i++) {
        PyObject *d = SSLOT(self, i);
        if (d == NULL || !PyDict_CheckExact(d))
            return 0;
    }
    return 1;
}

/* a registered connection's place: (stack, ((rows, row),)) */
static PyObject *conn_place(PyObject *stack, PyObject *rows, Py_ssize_t row) {
    return Py_BuildValue("(O((On)))", stack, rows, row);
}

/* register(fileobj, events, data=None) */
static PyObject *sel_register(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                              PyObject *kwnames) {
    PyObject *sock = nargs >= 1 ? args[0] : NULL;
    int ok = 0, ok2 = 0;
    int64_t events = nargs >= 2 ? small_int(args[1], &ok) : 0;
    if (kwnames != NULL || (nargs != 2 && nargs != 3) || !ok || events < 1 || events > 3
        || SSLOT(self, SS_CLOSED) != Py_False || !selector_dicts(self)
        || !Py_IS_TYPE(sock, sk.cls) || SLOT(sock, SLOT_CLOSED) != Py_False
        || SLOT(sock, SLOT_LIDS) != Py_None)
        return call_python(se.py_register, self, args, nargs, kwnames);
    int64_t cid = small_int(SLOT(sock, SLOT_CID), &ok);
    int64_t core = small_int(SLOT(sock, SLOT_CORE), &ok2);
    PyObject *stack = SLOT(sock, SLOT_STACK);
    PyObject *per_core = ok && ok2 && cid >= 0 && core >= 0
        ? PyDict_GetItemWithError(SSLOT(self, SS_STACK_ROWS), stack) : NULL;
    if (per_core == NULL || !PyList_CheckExact(per_core) || core >= PyList_GET_SIZE(per_core)) {
        if (PyErr_Occurred())
            return NULL;
        return call_python(se.py_register, self, args, nargs, kwnames);
    }
    PyObject *rows = PyList_GET_ITEM(per_core, core);
    PyObject *stack_closed = PyObject_GetAttr(stack, sk.s_closed);
    if (stack_closed == NULL)
        return NULL;
    Py_DECREF(stack_closed);
    RowArrays a;
    if (stack_closed != Py_False || !Py_IS_TYPE(rows, se.rows_cls) || !row_arrays(rows, &a))
        return call_python(se.py_register, self, args, nargs, kwnames);
    PyObject *free_rows = RSLOT(rows, RS_FREE), *keys = RSLOT(rows, RS_KEYS);
    PyObject *cids = RSLOT(rows, RS_CIDS), *count = RSLOT(rows, RS_COUNT);
    if (!PyList_CheckExact(free_rows) || PyList_GET_SIZE(free_rows) == 0
        || !PyList_CheckExact(keys) || !PyList_CheckExact(cids) || cid >= a.nrowof
        || !PyLong_CheckExact(count)) /* (no free row: Python's add() grows the arrays) */
        return call_python(se.py_register, self, args, nargs, kwnames);
    Py_ssize_t nfree = PyList_GET_SIZE(free_rows);
    Py_ssize_t row = PyLong_AsSsize_t(PyList_GET_ITEM(free_rows, nfree - 1));
    if (row < 0 || row >= PyList_GET_SIZE(keys) || row >= PyList_GET_SIZE(cids)) {
        PyErr_Clear();
        return call_python(se.py_register, self, args, nargs, kwnames);
    }
    /* the socket's fileno(): a number given out is registered in _by_fileno */
    PyObject *fd = SLOT(sock, SLOT_FILENO);
    if (SLOT(sock, SLOT_NUMBERED) != Py_True) {
        if (PyDict_SetItem(sk.by_fileno, fd, SLOT(sock, SLOT_WREF)) < 0)
            return NULL;
        Py_INCREF(Py_True);
        slot_set(sock, SLOT_NUMBERED, Py_True);
    }
    PyObject *fd_to_key = SSLOT(self, SS_FD_TO_KEY);
    int has = PyDict_Contains(fd_to_key, fd);
    if (has != 0)
        return has < 0 ? NULL : call_python(se.py_register, self, args, nargs, kwnames);
    int64_t wanted = small_int(PyTuple_GET_ITEM(se.conn_wanted, events), &ok);
    /* What can fail is made first: the key, the place, the ids, the row's new count. */
    PyObject *key = se.key_cls->tp_alloc(se.key_cls, 4); /* SelectorKey(sock, fd, events, data) */
    PyObject *sock_id = PyLong_FromVoidPtr(sock);
    PyObject *place = conn_place(stack, rows, row);
    PyObject *cidv = PyLong_FromLongLong(cid);
    PyObject *n = PyLong_FromSsize_t(PyLong_AsSsize_t(count) + 1);
    PyObject *watchers = SLOT(sock, SLOT_SELECTORS), *new_watchers = NULL;
    if (watchers == Py_None && (new_watchers = PyList_New(1)) != NULL) {
        Py_INCREF(self);
        PyList_SET_ITEM(new_watchers, 0, self);
    }
    if (!key || !sock_id || !place || !cidv || !n || (watchers == Py_None && !new_watchers)
        || !ok || (watchers != Py_None && !PyList_CheckExact(watchers))) {
        Py_XDECREF(key);
        Py_XDECREF(sock_id);
        Py_XDECREF(place);
        Py_XDECREF(cidv);
        Py_XDECREF(n);
        Py_XDECREF(new_watchers);
        if (PyErr_Occurred())
            return NULL;
        return call_python(se.py_register, self, args, nargs, kwnames);
    }
    PyObject *data = nargs == 3 ? args[2] : Py_None;
    Py_INCREF(sock);
    PyTuple_SET_ITEM(key, 0, sock);
    Py_INCREF(fd);
    PyTuple_SET_ITEM(key, 1, fd);
    Py_INCREF(args[1]);
    PyTuple_SET_ITEM(key, 2, args[1]);
    Py_INCREF(data);
    PyTuple_SET_ITEM(key, 3, data);
    /* register() and _add_fsdp() */
    int err = PyDict_SetItem(fd_to_key, fd, key) < 0
        || PyDict_SetItem(SSLOT(self, SS_FSDP), fd, sock) < 0
        || PyDict_SetItem(SSLOT(self, SS_FD_OF_SOCK), sock_id, fd) < 0
        || PyDict_SetItem(SSLOT(self, SS_ROWS_OF), fd, place) < 0;
    Py_DECREF(sock_id);
    Py_DECREF(place);
    if (!err && new_watchers != NULL) {
        slot_set(sock, SLOT_SELECTORS, new_watchers);
        new_watchers = NULL;
    } else if (!err) {
        int in = PySequence_Contains(watchers, self);
        err = in < 0 || (!in && PyList_Append(watchers, self) < 0);
    }
    Py_XDECREF(new_watchers);
    if (err || PyList_SetSlice(free_rows, nfree - 1, nfree, NULL) < 0) {
        Py_DECREF(key);
        Py_DECREF(cidv);
        Py_DECREF(n);
        return NULL;
    }
    /* _CoreRows.add(cid, 0, _CONN_WANTED[events], key) */
    int64_t base = row * se.poll_row;
    a.rows[base + se.pr_id] = cid;
    a.rows[base + se.pr_kind] = 0;
    a.rows[base + se.pr_wanted] = wanted;
    Py_INCREF(key);
    PyList_SetItem(keys, row, key); /* (steals; replaces the free row's None) */
    PyList_SetItem(cids, row, cidv);
    RSLOT(rows, RS_COUNT) = n;
    Py_DECREF(count);
    if (a.rowof[cid] >= 0)
        a.sel[se.sel_shared] += 1; /* (not expected: one socket per connection; but exact) */
    a.rowof[cid] = (int32_t)row;
    int64_t k = a.sel[se.sel_nready]; /* a new row is looked at on the next pass */
    if (k < a.nready) {
        a.ready[k] = row;
        a.sel[se.sel_nready] = k + 1;
    } else {
        a.sel[se.sel_full] = 1;
    }
    return key;
}

/* unregister(fileobj) */
static PyObject *sel_unregister(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                                PyObject *kwnames) {
    PyObject *sock = nargs == 1 ? args[0] : NULL;
    if (kwnames != NULL || nargs != 1 || SSLOT(self, SS_CLOSED) != Py_False
        || !selector_dicts(self) || !Py_IS_TYPE(sock, sk.cls)
        || SLOT(sock, SLOT_CLOSED) != Py_False)
        return call_python(se.py_unregister, self, args, nargs, kwnames);
    PyObject *fd = SLOT(sock, SLOT_FILENO);
    PyObject *fd_to_key = SSLOT(self, SS_FD_TO_KEY), *fsdp = SSLOT(self, SS_FSDP);
    PyObject *rows_of = SSLOT(self, SS_ROWS_OF);
    PyObject *key = PyDict_GetItemWithError(fd_to_key, fd);
    PyObject *placed = key ? PyDict_GetItemWithError(rows_of, fd) : NULL;
    PyObject *watchers = SLOT(sock, SLOT_SELECTORS);
    if (PyErr_Occurred())
        return NULL;
    /* a connection's one row, not its core's last (that drops the core's rows: Python) */
    PyObject *places, *rows, *count, *cids, *keys, *free_rows;
    Py_ssize_t row;
    RowArrays a;
    int ok;
    if (key == NULL || placed == NULL || PyDict_GetItemWithError(fsdp, fd) != sock
        || !PyTuple_CheckExact(placed) || PyTuple_GET_SIZE(placed) != 2
        || !PyTuple_CheckExact(places = PyTuple_GET_ITEM(placed, 1))
        || PyTuple_GET_SIZE(places) != 1
        || !PyTuple_CheckExact(PyTuple_GET_ITEM(places, 0))
        || !Py_IS_TYPE(rows = PyTuple_GET_ITEM(PyTuple_GET_ITEM(places, 0), 0), se.rows_cls)
        || !row_arrays(rows, &a)
        || (row = (Py_ssize_t)small_int(PyTuple_GET_ITEM(PyTuple_GET_ITEM(places, 0), 1), &ok),
            !ok)
        || !PyLong_CheckExact(count = RSLOT(rows, RS_COUNT)) || PyLong_AsSsize_t(count) < 2
        || !PyList_CheckExact(cids = RSLOT(rows, RS_CIDS)) || row < 0
        || row >= PyList_GET_SIZE(cids) || !PyList_CheckExact(keys = RSLOT(rows, RS_KEYS))
        || row >= PyList_GET_SIZE(keys) || !PyList_CheckExact(free_rows = RSLOT(rows, RS_FREE))
        || !PyList_CheckExact(watchers)) {
        if (PyErr_Occurred())
            return NULL;
        return call_python(se.py_unregister, self, args, nargs, kwnames);
    }
    int64_t cid = small_int(PyList_GET_ITEM(cids, row), &ok);
    if (!ok || cid < 0 || cid >= a.nrowof)
        return call_python(se.py_unregister, self, args, nargs, kwnames);
    PyObject *sock_id = PyLong_FromVoidPtr(sock);
    PyObject *minus1 = PyLong_FromLong(-1);
    PyObject *rowv = PyLong_FromSsize_t(row);
    PyObject *n = PyLong_FromSsize_t(PyLong_AsSsize_t(count) - 1);
    if (!sock_id || !minus1 || !rowv || !n) {
        Py_XDECREF(sock_id);
        Py_XDECREF(minus1);
        Py_XDECREF(rowv);
        Py_XDECREF(n);
        return NULL;
    }
    Py_INCREF(key); /* the result (the dict's reference goes with the entry) */
    /* unregister(): _fd_to_key.pop(fd); _drop_fsdp(fd) */
    int err = PyDict_DelItem(fd_to_key, fd) < 0 || PyDict_DelItem(fsdp, fd) < 0
        || PyDict_DelItem(SSLOT(self, SS_FD_OF_SOCK), sock_id) < 0;
    Py_DECREF(sock_id);
    if (!err) {
        Py_INCREF(rows); /* (held while its place's tuple goes) */
        err = PyDict_DelItem(rows_of, fd) < 0;
    } else {
        rows = NULL;
    }
    if (err) {
        Py_XDECREF(rows);
        Py_DECREF(minus1);
        Py_DECREF(rowv);
        Py_DECREF(n);
        Py_DECREF(key);
        return NULL;
    }
    /* _CoreRows.remove(row) */
    PyList_SetItem(cids, row, minus1);
    if (a.rowof[cid] == row)
        a.rowof[cid] = -1;
    else
        a.sel[se.sel_shared] -= 1;
    a.rows[row * se.poll_row + se.pr_id] = -1; /* a free row is never ready */
    Py_INCREF(Py_None);
    PyList_SetItem(keys, row, Py_None);
    err = PyList_Append(free_rows, rowv) < 0;
    Py_DECREF(rowv);
    PyObject *oldn = RSLOT(rows, RS_COUNT);
    RSLOT(rows, RS_COUNT) = n;
    Py_DECREF(oldn);
    Py_DECREF(rows);
    /* the socket's watchers: this selector no longer */
    for (Py_ssize_t i = 0; !err && i < PyList_GET_SIZE(watchers); i++) {
        if (PyList_GET_ITEM(watchers, i) == self) {
            err = PySequence_DelItem(watchers, i) < 0;
            break;
        }
    }
    if (err) {
        Py_DECREF(key);
        return NULL;
    }
    return key;
}

#define SELECTOR_METHOD(name, fn, doc) \
    {name, (PyCFunction)(void (*)(void))fn, METH_FASTCALL | METH_KEYWORDS, doc}
static PyMethodDef selector_methods[] = {
    SELECTOR_METHOD("register", sel_register, "register(fileobj, events, data=None) -> key"),
    SELECTOR_METHOD("unregister", sel_unregister, "unregister(fileobj) -> key"),
};

/* bind_selector_class(cls, rows_cls, key_cls, conn_wanted, references, layout)
 *   -> {name: method descriptor}
 * After bind_socket_class.  `references`: {"register": ..., "unregister": ...}, the Python
 * methods; `layout`: (POLL_ROW, PR_ID, PR_KIND, PR_WANTED, SEL_NREADY, SEL_FULL, SEL_SHARED)
 * of fsdp.core.loop. */
static PyObject *bind_selector_class(PyObject *module, PyObject *args) {
    PyObject *cls, *rows_cls, *key_cls, *wanted, *refs;
    long long lay[7];
    if (!PyArg_ParseTuple(args, "O!O!O!O!O!(LLLLLLL)", &PyType_Type, &cls, &PyType_Type,
                          &rows_cls, &PyType_Type, &key_cls, &PyTuple_Type, &wanted,
                          &PyDict_Type, &refs, &lay[0], &lay[1], &lay[2], &lay[3], &lay[4],
                          &lay[5], &lay[6]))
        return NULL;
    if (sk.cls == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "bind_socket_class first");
        return NULL;
    }
    if (PyTuple_GET_SIZE(wanted) != 4 || !PyType_IsSubtype((PyTypeObject *)key_cls,
                                                            &PyTuple_Type)) {
        PyErr_SetString(PyExc_TypeError, "conn_wanted: 4 ints; key_cls: a tuple class");
        return NULL;
    }
    if (slot_offsets((PyTypeObject *)cls, sel_slot_names, N_SSLOTS, se.soff) < 0
        || slot_offsets((PyTypeObject *)rows_cls, rows_slot_names, N_RSLOTS, se.roff) < 0)
        return NULL;
    PyObject *reg = PyDict_GetItemString(refs, "register");
    PyObject *unreg = PyDict_GetItemString(refs, "unregister");
    if (reg == NULL || unreg == NULL) {
        PyErr_SetString(PyExc_KeyError, "register and unregister are needed");
        return NULL;
    }
    PyObject *out = PyDict_New();
    if (out == NULL)
        return NULL;
    for (size_t i = 0; i < sizeof selector_methods / sizeof selector_methods[0]; i++) {
        PyObject *d = PyDescr_NewMethod((PyTypeObject *)cls, &selector_methods[i]);
        if (d == NULL || PyDict_SetItemString(out, selector_methods[i].ml_name, d) < 0) {
            Py_XDECREF(d);
            Py_DECREF(out);
            return NULL;
        }
        Py_DECREF(d);
    }
    Py_INCREF(rows_cls);
    Py_INCREF(key_cls);
    Py_INCREF(wanted);
    Py_INCREF(reg);
    Py_INCREF(unreg);
    se.rows_cls = (PyTypeObject *)rows_cls;
    se.key_cls = (PyTypeObject *)key_cls;
    se.conn_wanted = wanted;
    se.py_register = reg;
    se.py_unregister = unreg;
    se.poll_row = lay[0];
    se.pr_id = lay[1];
    se.pr_kind = lay[2];
    se.pr_wanted = lay[3];
    se.sel_nready = lay[4];
    se.sel_full = lay[5];
    se.sel_shared = lay[6];
    return out;
}

static PyMethodDef module_functions[] = {
    {"bind_selector_class", bind_selector_class, METH_VARARGS,
     "bind_selector_class(cls, rows_cls, key_cls, conn_wanted, references, layout) -> "
     "{name: C method}: FsdpSelector's register / unregister fast paths (see the C file)"},
    {"bind_socket_class", bind_socket_class, METH_VARARGS,
     "bind_socket_class(cls, template, references, by_fileno, fileno_counter, ip_str, "
     "getdefaulttimeout) -> {name: C method}: Socket's fast paths (see the C file)"},
    {NULL},
};

/* What fastcall.py checks this file against. */
#define NATIVE_TYPE \
    "i32 (i64*, {i8*, i32, i8*, i8*, i32}**, i64, i64, i64, i64, i64, i64, i64, i64, " \
    "i8*, i8*, i64, i64, i8*, i64, i64, i8*, i8*, i64, i64, i64*, i64, i64, " \
    "i8*, i8*, i64, i64, i32*, i64, i64)"

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "fsdp._native",
    "The engine's per-connection usercalls called from C (see native/fsdp_native.c).", -1,
    module_functions,
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
        || PyModule_AddIntConstant(m, "OP_CLOSE", OP_CLOSE) < 0
        || PyModule_AddIntConstant(m, "RECV_AS_POLLED", RECV_AS_POLLED) < 0) {
        Py_DECREF(&EngineType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
