/* swig/python/hpsock_python.i - the Python side of the SWIG interface.
 *
 * Built with `swig -python -threads`: every wrapped call releases the GIL
 * around the C call, so a handler running on a loop thread can take it.
 * What this file adds to the shared swig/hpsock.i:
 *
 * - the callback bridge (hpsb_*): one hpsb_ctx per endpoint carries the
 *   Python callables per event type. Loop threads take the GIL to call them
 *   (each loop thread keeps one Python thread state for its life, so an
 *   event costs one GIL acquisition, not a thread-state allocation). The
 *   callables are referenced from hpsb_start() until SHUTDOWN, the last
 *   event, and released there (or when start fails).
 * - typemaps: any buffer-protocol object in for send/sendv, bytes out for
 *   fetch/peek, out-parameters returned as values, and every negative int
 *   result raised as the registered hpsock.Error.
 *
 * The idiomatic layer (python/hpsock/) is the public API; this module is its
 * private engine. */
%module(package="hpsock", threads="1") hpsock_swig

%begin %{
#define PY_SSIZE_T_CLEAN
%}

%{
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include "hpsock.h"
%}

/* Bridged here rather than wrapped: the endpoint's life cycle goes through
 * hpsb_ctx, and the stats struct comes back as a tuple. */
%ignore hps_start;
%ignore hps_free;
%ignore hps_stats;

/* The functions hps_state and hps_role share their names with enum tags,
 * which SWIG would take for a redefinition and drop the functions. Python
 * needs only the enums' constants, so the tags get other names. */
%rename("enum_%s", %$isenum) "";

/* ------------------------------------------------------------------ */
/* Errors: a negative int result raises hpsock.Error(code)             */
/* ------------------------------------------------------------------ */

%{
static PyObject *hpsb_error_class; /* hpsock.Error, set at import */

static void hpsb_raise(int code) {
  PyObject *exc;
  if (hpsb_error_class == NULL) {
    PyErr_Format(PyExc_RuntimeError, "hpsock error %d (%s)", code,
                 hps_err_name(code));
    return;
  }
  exc = PyObject_CallFunction(hpsb_error_class, "i", code);
  if (exc != NULL) {
    PyErr_SetObject(hpsb_error_class, exc);
    Py_DECREF(exc);
  }
}
%}

%typemap(out) int {
  if ($1 < 0) {
    hpsb_raise($1);
    SWIG_fail;
  }
  $result = PyLong_FromLong($1);
}

%nothreadallow hpsb_set_error_class;
%inline %{
/* Register the exception class raised for negative results. */
void hpsb_set_error_class(PyObject *cls) {
  Py_XINCREF(cls);
  Py_XDECREF(hpsb_error_class);
  hpsb_error_class = cls;
}
%}

/* ------------------------------------------------------------------ */
/* The callback bridge                                                 */
/* ------------------------------------------------------------------ */

%{
#define HPSB_NEV 11 /* event types 1..10 */

typedef struct hpsb_ctx {
  hps_endpoint *ep;
  /* Set under the GIL by hpsb_start before hps_start, cleared under the GIL
   * by SHUTDOWN (the endpoint's last event) or a failed start; loop threads
   * read them in between. */
  PyObject *owner;         /* first argument of every handler call */
  PyObject *fn[HPSB_NEV];  /* callable per event type, or NULL */
  int armed;
  int pull;                /* RECEIVE carries the waiting count, not bytes */
  int with_addr;           /* UDP cast/node: RECEIVE/SEND carry (addr, port);
                              one with an error goes to fn[0] (on_error) */
} hpsb_ctx;

#if PY_VERSION_HEX >= 0x030D0000
#define hpsb_finalizing() Py_IsFinalizing()
#else
#define hpsb_finalizing() _Py_IsFinalizing()
#endif

/* Loop threads are not Python threads. The first event on one creates a
 * Python thread state (PyGILState_Ensure) and keeps it for the thread's
 * life; later events only swap it in and out with the GIL. The thread-exit
 * destructor deletes it. Threads that already had a Python thread state
 * (the caller of hps_start, for a server's PREPARE) use plain
 * PyGILState_Ensure/Release. */
static pthread_key_t hpsb_tkey;
static pthread_once_t hpsb_tkey_once = PTHREAD_ONCE_INIT;
static _Thread_local PyThreadState *hpsb_tstate;

/* Runs at loop-thread exit. Python's own thread-local slot may already be
 * cleared by then, so this uses no PyGILState_* call. */
static void hpsb_tstate_dtor(void *p) {
  PyThreadState *ts = p;
  if (ts == NULL || hpsb_finalizing()) return; /* finalization frees it */
  PyEval_RestoreThread(ts);
  PyThreadState_Clear(ts);
  PyThreadState_DeleteCurrent(); /* and releases the GIL */
}

static void hpsb_tkey_init(void) {
  pthread_key_create(&hpsb_tkey, hpsb_tstate_dtor);
}

/* Take the GIL; returns 1 when the thread state is this thread's kept one
 * (drop with PyEval_SaveThread), else 0 (drop with PyGILState_Release). */
static int hpsb_gil_take(PyGILState_STATE *gs) {
  if (hpsb_tstate != NULL) {
    PyEval_RestoreThread(hpsb_tstate);
    return 1;
  }
  if (PyGILState_GetThisThreadState() != NULL) {
    *gs = PyGILState_Ensure();
    return 0;
  }
  (void)PyGILState_Ensure(); /* new thread state, counter 1, kept */
  hpsb_tstate = PyThreadState_Get();
  pthread_once(&hpsb_tkey_once, hpsb_tkey_init);
  pthread_setspecific(hpsb_tkey, hpsb_tstate);
  return 1;
}

static void hpsb_gil_drop(int kept, PyGILState_STATE gs) {
  if (kept)
    (void)PyEval_SaveThread();
  else
    PyGILState_Release(gs);
}

/* Drop the references to the Python objects. GIL held. May run the
 * owner's finalizer, so the caller must not touch ctx afterwards unless it
 * holds its own reference to the owner. */
static void hpsb_disarm(hpsb_ctx *ctx) {
  PyObject *old[HPSB_NEV + 1];
  int i;
  if (!ctx->armed) return;
  ctx->armed = 0;
  for (i = 0; i < HPSB_NEV; i++) {
    old[i] = ctx->fn[i];
    ctx->fn[i] = NULL;
  }
  old[HPSB_NEV] = ctx->owner;
  ctx->owner = NULL;
  for (i = 0; i <= HPSB_NEV; i++) Py_XDECREF(old[i]);
}

/* A handler's return value as an hps_result. None is OK. An exception,
 * or a value that is not OK/IGNORE/ERROR, is reported through
 * sys.unraisablehook and counts as ERROR. */
static int hpsb_result(PyObject *fn, PyObject *res) {
  long v;
  if (res == NULL) {
    PyErr_WriteUnraisable(fn);
    return HPS_HR_ERROR;
  }
  if (res == Py_None) {
    Py_DECREF(res);
    return HPS_HR_OK;
  }
  v = PyLong_Check(res) ? PyLong_AsLong(res) : -1;
  if (v == -1 && PyErr_Occurred()) PyErr_Clear();
  if (v < HPS_HR_OK || v > HPS_HR_ERROR) {
    PyErr_Format(PyExc_ValueError,
                 "hpsock handler returned %R; expected None, hpsock.OK, "
                 "hpsock.IGNORE or hpsock.ERROR", res);
    Py_DECREF(res);
    PyErr_WriteUnraisable(fn);
    return HPS_HR_ERROR;
  }
  Py_DECREF(res);
  return (int)v;
}

/* The one hps_event_fn of every Python endpoint. */
static int hpsb_on_event(void *user, const hps_event *ev) {
  hpsb_ctx *ctx = user;
  int type = ev->type, rv = HPS_HR_OK, kept;
  PyGILState_STATE gs = PyGILState_UNLOCKED;
  PyObject *fn, *res, *args[5], *tmp[3] = {NULL, NULL, NULL};
  size_t nargs = 0, i;

  if (type <= 0 || type >= HPSB_NEV) return HPS_HR_OK;
  /* A cast/node datagram that failed: on_error(owner, conn, op, error,
   * (addr, port)), slot 0 of the handlers. */
  if (ctx->with_addr && ev->error != 0 &&
      (type == HPS_EV_RECEIVE || type == HPS_EV_SEND)) {
    if (ctx->fn[0] == NULL || hpsb_finalizing()) return HPS_HR_OK;
    kept = hpsb_gil_take(&gs);
    fn = ctx->fn[0];
    if (fn != NULL) {
      res = PyObject_CallFunction(fn, "OKii(si)", ctx->owner,
                                  (unsigned long long)ev->conn, ev->op,
                                  ev->error, ev->addr ? ev->addr : "",
                                  ev->port);
      rv = hpsb_result(fn, res);
    }
    hpsb_gil_drop(kept, gs);
    return rv;
  }
  /* No handler and nothing to release: no GIL at all. */
  if (ctx->fn[type] == NULL && type != HPS_EV_SHUTDOWN) return HPS_HR_OK;
  if (hpsb_finalizing()) return HPS_HR_OK; /* Python is going away */

  kept = hpsb_gil_take(&gs);
  fn = ctx->fn[type];
  if (fn != NULL && ctx->with_addr &&
      (type == HPS_EV_RECEIVE || type == HPS_EV_SEND)) {
    /* cast/node: the sender (RECEIVE) or destination (SEND) too */
    res = PyObject_CallFunction(fn, "OKy#(si)", ctx->owner,
                                (unsigned long long)ev->conn,
                                (const char *)ev->data, (Py_ssize_t)ev->len,
                                ev->addr ? ev->addr : "", ev->port);
    rv = hpsb_result(fn, res);
    fn = NULL;
  }
  if (fn != NULL) {
    args[0] = NULL; /* room for PY_VECTORCALL_ARGUMENTS_OFFSET */
    args[1] = ctx->owner;
    if (type != HPS_EV_SHUTDOWN)
      tmp[0] = PyLong_FromUnsignedLongLong(ev->conn);
    switch (type) { /* nargs: the arguments after the owner */
    case HPS_EV_PREPARE:
      tmp[1] = PyLong_FromLongLong(ev->fd);
      nargs = 2;
      break;
    case HPS_EV_RECEIVE:
      tmp[1] = ctx->pull ? PyLong_FromSize_t(ev->len)
                         : PyBytes_FromStringAndSize(ev->data,
                                                     (Py_ssize_t)ev->len);
      nargs = 2;
      break;
    case HPS_EV_SEND:
      tmp[1] = PyBytes_FromStringAndSize(ev->data, (Py_ssize_t)ev->len);
      nargs = 2;
      break;
    case HPS_EV_HIGH_WATER:
    case HPS_EV_LOW_WATER: /* len: the connection's unsent bytes */
      tmp[1] = PyLong_FromSize_t(ev->len);
      nargs = 2;
      break;
    case HPS_EV_CLOSE:
      tmp[1] = PyLong_FromLong(ev->op);
      tmp[2] = PyLong_FromLong(ev->error);
      nargs = 3;
      break;
    case HPS_EV_SHUTDOWN:
      nargs = 0;
      break;
    default: /* ACCEPT, CONNECT, HANDSHAKE */
      nargs = 1;
      break;
    }
    for (i = 0; i < nargs; i++) {
      if (tmp[i] == NULL) break;
      args[2 + i] = tmp[i];
    }
    if (i < nargs) { /* out of memory building the arguments */
      PyErr_WriteUnraisable(fn);
      rv = HPS_HR_ERROR;
    } else {
      res = PyObject_Vectorcall(fn, args + 1,
                                (1 + nargs) | PY_VECTORCALL_ARGUMENTS_OFFSET,
                                NULL);
      rv = hpsb_result(fn, res);
    }
    for (i = 0; i < 3; i++) Py_XDECREF(tmp[i]);
  }
  if (type == HPS_EV_SHUTDOWN) hpsb_disarm(ctx); /* no event follows */
  hpsb_gil_drop(kept, gs);
  return rv;
}

static void *hpsb_reaper(void *p) {
  hpsb_ctx *ctx = p;
  hps_free(ctx->ep);
  free(ctx);
  return NULL;
}
%}

/* The bridge's context is an opaque pointer to Python. */
typedef struct hpsb_ctx hpsb_ctx;

/* These touch Python objects and release the GIL themselves around the
 * hpsock call. */
%nothreadallow hpsb_start;
%nothreadallow hpsb_conn_list;

%inline %{
/* Create an endpoint of a role bridged to Python; NULL if out of memory or
 * the role is unknown. */
hpsb_ctx *hpsb_new(int role) {
  hpsb_ctx *ctx = calloc(1, sizeof(*ctx));
  if (ctx == NULL) return NULL;
  if (hps_create(role, hpsb_on_event, ctx, &ctx->ep) != 0) {
    free(ctx);
    return NULL;
  }
  return ctx;
}

/* The endpoint handle, for the hps_* calls. */
hps_endpoint *hpsb_endpoint(hpsb_ctx *ctx) { return ctx ? ctx->ep : NULL; }

/* Arm the bridge with owner (the first argument of every handler call)
 * and handlers (an 11-tuple indexed by event type, None = no handler), then
 * hps_start. A failed start releases them again; a running endpoint keeps
 * its current ones (and hps_start reports HPS_ESTATE). */
int hpsb_start(hpsb_ctx *ctx, PyObject *owner, PyObject *handlers,
               const char *host, uint16_t port) {
  int r, armed_here = 0, i;
  int64_t model = HPS_MODEL_PUSH;
  if (ctx == NULL) return HPS_EHANDLE;
  if (!PyTuple_Check(handlers) || PyTuple_GET_SIZE(handlers) != HPSB_NEV)
    return HPS_EINVAL;
  if (!ctx->armed) {
    for (i = 0; i < HPSB_NEV; i++) {
      PyObject *f = PyTuple_GET_ITEM(handlers, i);
      ctx->fn[i] = (f == Py_None) ? NULL : (Py_INCREF(f), f);
    }
    Py_INCREF(owner);
    ctx->owner = owner;
    hps_getopt(ctx->ep, HPS_OPT_RECV_MODEL, &model);
    ctx->pull = model == HPS_MODEL_PULL;
    ctx->with_addr = hps_role(ctx->ep) == HPS_UDP_CAST ||
                     hps_role(ctx->ep) == HPS_UDP_NODE;
    ctx->armed = armed_here = 1;
  }
  Py_BEGIN_ALLOW_THREADS
  r = hps_start(ctx->ep, host, port);
  Py_END_ALLOW_THREADS
  /* A failed start delivered no SHUTDOWN, or one that disarmed already. */
  if (r != 0 && armed_here) hpsb_disarm(ctx);
  return r;
}

/* Stop and free the endpoint, then the context. From one of the
 * endpoint's own loop threads (its last reference dropped in a handler)
 * the free is handed to a detached thread, as hps_free requires. */
int hpsb_free(hpsb_ctx *ctx) {
  int r;
  pthread_t t;
  pthread_attr_t attr;
  if (ctx == NULL) return 0;
  r = hps_free(ctx->ep);
  if (r == HPS_EINLOOP) {
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    r = pthread_create(&t, &attr, hpsb_reaper, ctx) == 0 ? 0 : HPS_ENOMEM;
    pthread_attr_destroy(&attr);
    return r; /* on failure the endpoint leaks rather than crashing */
  }
  if (r != 0) return r;
  if (ctx->armed && !hpsb_finalizing()) { /* no SHUTDOWN came */
    PyGILState_STATE gs = PyGILState_Ensure();
    hpsb_disarm(ctx);
    PyGILState_Release(gs);
  }
  free(ctx);
  return 0;
}
%}

/* ------------------------------------------------------------------ */
/* Typemaps for the calls hpsock.i leaves to each language             */
/* ------------------------------------------------------------------ */

/* Any C-contiguous buffer-protocol object (bytes, bytearray, memoryview,
 * array, ...), held for the call. */
%typemap(in) (const void *data, size_t len) (Py_buffer view = {0}) {
  if (PyObject_GetBuffer($input, &view, PyBUF_SIMPLE) != 0) SWIG_fail;
  $1 = view.buf;
  $2 = (size_t)view.len;
}
%typemap(freearg) (const void *data, size_t len) {
  if (view$argnum.obj != NULL) PyBuffer_Release(&view$argnum);
}

/* An iterable of buffers, gathered into one send. */
%typemap(in) (const hps_buf *bufs, int n)
    (Py_buffer *views = NULL, Py_ssize_t nviews = 0, PyObject *seq = NULL) {
  Py_ssize_t k, cnt;
  hps_buf *b;
  seq = PySequence_Fast($input, "sendv() takes an iterable of buffers");
  if (seq == NULL) SWIG_fail;
  cnt = PySequence_Fast_GET_SIZE(seq);
  if (cnt > INT_MAX) {
    PyErr_SetString(PyExc_OverflowError, "too many buffers");
    SWIG_fail;
  }
  /* one block: the Py_buffers, then the hps_bufs */
  views = PyMem_Malloc((size_t)(cnt ? cnt : 1) * (sizeof(Py_buffer) + sizeof(hps_buf)));
  if (views == NULL) {
    PyErr_NoMemory();
    SWIG_fail;
  }
  b = (hps_buf *)(views + (cnt ? cnt : 1));
  for (k = 0; k < cnt; k++) {
    if (PyObject_GetBuffer(PySequence_Fast_GET_ITEM(seq, k), &views[k],
                           PyBUF_SIMPLE) != 0)
      SWIG_fail;
    nviews = k + 1;
    b[k].base = views[k].buf;
    b[k].len = (size_t)views[k].len;
  }
  $1 = b;
  $2 = (int)cnt;
}
%typemap(freearg) (const hps_buf *bufs, int n) {
  {
    Py_ssize_t k;
    for (k = 0; k < nviews$argnum; k++) PyBuffer_Release(&views$argnum[k]);
    PyMem_Free(views$argnum);
    Py_XDECREF(seq$argnum);
  }
}

/* fetch/peek: a byte count in, a new bytes object of that size out. */
%typemap(in) (void *buf, size_t len) (PyObject *out = NULL) {
  Py_ssize_t n = PyLong_AsSsize_t($input);
  if (n == -1 && PyErr_Occurred()) SWIG_fail;
  if (n > 0) {
    out = PyBytes_FromStringAndSize(NULL, n);
    if (out == NULL) SWIG_fail;
    $1 = PyBytes_AS_STRING(out);
    $2 = (size_t)n;
  } else {
    $1 = NULL; /* hpsock answers HPS_EINVAL */
    $2 = 0;
  }
}
%typemap(argout) (void *buf, size_t len) {
  Py_DECREF($result);
  $result = out$argnum;
  out$argnum = NULL;
}
%typemap(freearg) (void *buf, size_t len) { Py_XDECREF(out$argnum); }

/* Out-parameters become the return value. */
%typemap(in, numinputs=0) int64_t *out_value (int64_t tmp) { $1 = &tmp; }
%typemap(argout) int64_t *out_value {
  Py_DECREF($result);
  $result = PyLong_FromLongLong(*$1);
}
%typemap(in, numinputs=0) uintptr_t *out_extra (uintptr_t tmp) { $1 = &tmp; }
%typemap(argout) uintptr_t *out_extra {
  Py_DECREF($result);
  $result = PyLong_FromSize_t((size_t)*$1);
}
%typemap(in, numinputs=0) uint64_t *out_u64 (uint64_t tmp) { $1 = &tmp; }
%typemap(argout) uint64_t *out_u64 {
  Py_DECREF($result);
  $result = PyLong_FromUnsignedLongLong(*$1);
}
%typemap(in, numinputs=0) hps_conn_id *out_id (hps_conn_id tmp) { $1 = &tmp; }
%typemap(argout) hps_conn_id *out_id {
  Py_DECREF($result);
  $result = PyLong_FromUnsignedLongLong(*$1);
}
/* host and port as a (str, int) tuple */
%typemap(in, numinputs=0) (char *host, size_t hostlen, uint16_t *port)
    (char hbuf[64], uint16_t p) {
  hbuf[0] = '\0';
  $1 = hbuf;
  $2 = sizeof(hbuf);
  $3 = &p;
}
%typemap(argout) (char *host, size_t hostlen, uint16_t *port) {
  Py_DECREF($result);
  $result = Py_BuildValue("(sH)", $1, *$3);
}
/* the counters as a 6-tuple, in hps_stats order */
%typemap(in, numinputs=0) hps_stats *out_stats (hps_stats tmp) { $1 = &tmp; }
%typemap(argout) hps_stats *out_stats {
  Py_DECREF($result);
  $result = Py_BuildValue("(KKKKKK)",
      (unsigned long long)$1->bytes_sent, (unsigned long long)$1->bytes_received,
      (unsigned long long)$1->msgs_sent, (unsigned long long)$1->msgs_received,
      (unsigned long long)$1->age_ms, (unsigned long long)$1->silence_ms);
}

%inline %{
int hpsb_send(hps_endpoint *ep, hps_conn_id id, const void *data,
              size_t len) {
  return hps_send(ep, id, data, len);
}
int hpsb_sendv(hps_endpoint *ep, hps_conn_id id, const hps_buf *bufs, int n) {
  return hps_sendv(ep, id, bufs, n);
}
int hpsb_fetch(hps_endpoint *ep, hps_conn_id id, void *buf, size_t len) {
  return hps_fetch(ep, id, buf, len);
}
int hpsb_peek(hps_endpoint *ep, hps_conn_id id, void *buf, size_t len) {
  return hps_peek(ep, id, buf, len);
}
int hpsb_getopt(hps_endpoint *ep, int opt, int64_t *out_value) {
  return hps_getopt(ep, opt, out_value);
}
int hpsb_connect(hps_endpoint *ep, const char *host, uint16_t port,
                 hps_conn_id *out_id) {
  return hps_connect(ep, host, port, out_id);
}
int hpsb_listen_address(hps_endpoint *ep, char *host, size_t hostlen,
                        uint16_t *port) {
  return hps_listen_address(ep, host, hostlen, port);
}
int hpsb_local_address(hps_endpoint *ep, hps_conn_id id, char *host,
                       size_t hostlen, uint16_t *port) {
  return hps_local_address(ep, id, host, hostlen, port);
}
int hpsb_remote_address(hps_endpoint *ep, hps_conn_id id, char *host,
                        size_t hostlen, uint16_t *port) {
  return hps_remote_address(ep, id, host, hostlen, port);
}
int hpsb_get_extra(hps_endpoint *ep, hps_conn_id id, uintptr_t *out_extra) {
  return hps_get_extra(ep, id, out_extra);
}
int hpsb_get_stats(hps_endpoint *ep, hps_conn_id id, hps_stats *out_stats) {
  return hps_get_stats(ep, id, out_stats);
}
int hpsb_get_unsent(hps_endpoint *ep, hps_conn_id id, uint64_t *out_u64) {
  return hps_get_unsent(ep, id, out_u64);
}
int hpsb_get_counter(hps_endpoint *ep, int counter, uint64_t *out_u64) {
  return hps_get_counter(ep, counter, out_u64);
}
int hpsb_send_to(hps_endpoint *ep, const char *host, uint16_t port,
                 const void *data, size_t len) {
  return hps_send_to(ep, host, port, data, len);
}

/* The open connections' IDs as a list. */
PyObject *hpsb_conn_list(hps_endpoint *ep) {
  hps_conn_id *ids = NULL, *nids;
  size_t cap = 0, count = 0, k;
  int r;
  PyObject *list;
  for (;;) {
    Py_BEGIN_ALLOW_THREADS
    r = hps_conn_list(ep, ids, cap, &count);
    Py_END_ALLOW_THREADS
    if (r < 0) {
      PyMem_Free(ids);
      hpsb_raise(r);
      return NULL;
    }
    if ((size_t)r >= count) break; /* got them all */
    cap = count + 16; /* more opened meanwhile: room for some more */
    nids = PyMem_Realloc(ids, cap * sizeof(*ids));
    if (nids == NULL) {
      PyMem_Free(ids);
      return PyErr_NoMemory();
    }
    ids = nids;
  }
  list = PyList_New((Py_ssize_t)r);
  for (k = 0; list != NULL && k < (size_t)r; k++) {
    PyObject *v = PyLong_FromUnsignedLongLong(ids[k]);
    if (v == NULL) {
      Py_CLEAR(list);
      break;
    }
    PyList_SET_ITEM(list, (Py_ssize_t)k, v);
  }
  PyMem_Free(ids);
  return list;
}
%}

%include "../hpsock.i"
