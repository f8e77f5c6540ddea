/* hpsock_jni.c - the hand-written JNI half of the Java binding.
 *
 * Two jobs:
 * 1. The event bridge: one C callback (on_event) for every endpoint. It
 *    finds the JNIEnv of the calling loop thread (attached once, as a
 *    daemon, and detached when the thread exits), copies event bytes into
 *    that thread's direct ByteBuffer and calls TcpEndpoint.receive() (bytes
 *    received) or TcpEndpoint.dispatch() (every other event) on the
 *    endpoint object held by a global ref while the endpoint runs.
 * 2. The functions swig/hpsock.i leaves to each language (callback,
 *    buffers, out-parameters), declared with %native in hpsock_java.i.
 *
 * Ownership: an endpoint's bridge context (hpsj_ctx) is the `user` pointer
 * of its hps_endpoint. It lives from create() to destroy(). Its global ref
 * to the Java endpoint is taken by start() and released right after the
 * SHUTDOWN event (the core promises no event after it), or by start()
 * itself when the start fails without a SHUTDOWN. A running endpoint is so
 * kept reachable by the JVM; a stopped one can be collected.
 *
 * Threads: on_event runs on a loop thread (or, for a server's PREPARE, on
 * the Java thread calling start). An attached loop thread has no Java frame
 * to pop local refs, so every local ref made here is deleted here. */
#include <jni.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hpsock.h"

#define HPSJ_JNI_VERSION JNI_VERSION_1_8
#define HPSJ_BUF_MIN (64 * 1024) /* the core's read size */
#define HPSJ_STACK_COPY 4096     /* byte[] up to this goes via the stack */
#define HPSJ_MAX_SENDV 1024      /* buffers in one sendv */

#define HPSJ_FN(name) Java_org_hpsock_internal_NativeJNI_##name
#define HPSJ_EP(x) ((hps_endpoint *)(uintptr_t)(x))

static JavaVM *g_vm;
static jmethodID g_dispatch; /* TcpEndpoint.dispatch(IJIIJLjava/nio/ByteBuffer;)I */
/* TcpEndpoint.dispatchFrom(IJIIJLjava/nio/ByteBuffer;Ljava/lang/String;I)I:
 * a UDP cast's or node's RECEIVE/SEND, with the sender or destination. */
static jmethodID g_dispatch_from;
static jmethodID g_receive;  /* TcpEndpoint.receive(JILjava/nio/ByteBuffer;)I */
static jclass g_bytes;       /* byte[] */
static pthread_key_t g_key;  /* its destructor detaches loop threads */
static long g_refs;          /* global refs held for endpoints and threads */
static long g_attached;      /* loop threads attached now */
static long g_contexts;      /* endpoint contexts alive (created, not destroyed) */
static int g_seq;            /* thread names */

typedef struct hpsj_ctx {
  hps_endpoint *ep;
  jobject target;       /* the TcpEndpoint while started, else NULL */
  pthread_mutex_t lock; /* guards target between start, SHUTDOWN, destroy */
} hpsj_ctx;

/* What a loop thread keeps: its env and its event ByteBuffer. */
typedef struct hpsj_thread {
  JNIEnv *env;
  jobject buf; /* global ref: direct ByteBuffer over mem, or NULL */
  void *mem;
  size_t cap;
} hpsj_thread;

static void refs_add(long n) { __atomic_add_fetch(&g_refs, n, __ATOMIC_RELAXED); }

/* ---- loop threads ---- */

/* pthread key destructor: runs on the exiting loop thread. */
static void thread_exit(void *p) {
  hpsj_thread *t = p;
  JNIEnv *env = NULL;
  if ((*g_vm)->GetEnv(g_vm, (void **)&env, HPSJ_JNI_VERSION) == JNI_OK) {
    if (t->buf != NULL) {
      (*env)->DeleteGlobalRef(env, t->buf);
      refs_add(-1);
    }
    (*g_vm)->DetachCurrentThread(g_vm);
    __atomic_sub_fetch(&g_attached, 1, __ATOMIC_RELAXED);
  }
  free(t->mem);
  free(t);
}

static hpsj_thread *thread_attach(void) {
  JavaVMAttachArgs args;
  JNIEnv *env = NULL;
  hpsj_thread *t;
  char name[32];
  snprintf(name, sizeof(name), "hpsock-loop-%d",
           __atomic_add_fetch(&g_seq, 1, __ATOMIC_RELAXED));
  args.version = HPSJ_JNI_VERSION;
  args.name = name;
  args.group = NULL;
  if ((*g_vm)->AttachCurrentThreadAsDaemon(g_vm, (void **)&env, &args) !=
      JNI_OK)
    return NULL;
  t = calloc(1, sizeof(*t));
  if (t == NULL || pthread_setspecific(g_key, t) != 0) {
    free(t);
    (*g_vm)->DetachCurrentThread(g_vm);
    return NULL;
  }
  __atomic_add_fetch(&g_attached, 1, __ATOMIC_RELAXED);
  t->env = env;
  return t;
}

/* The env of this thread. *self is the loop thread's state, or NULL on a
 * Java thread (which is used as it is and never detached here). A loop
 * thread's state is the value of g_key: pthread_getspecific is an index
 * into the thread's block, cheaper than a __thread variable in a dlopen'ed
 * library (a __tls_get_addr call each time). */
static JNIEnv *thread_env(hpsj_thread **self) {
  JNIEnv *env = NULL;
  hpsj_thread *t = pthread_getspecific(g_key);
  if (t != NULL) {
    *self = t;
    return t->env;
  }
  *self = NULL;
  if ((*g_vm)->GetEnv(g_vm, (void **)&env, HPSJ_JNI_VERSION) == JNI_OK)
    return env;
  if ((*self = thread_attach()) == NULL) return NULL;
  return (*self)->env;
}

/* The event bytes as a direct ByteBuffer: copied into the loop thread's
 * buffer (grown on demand, kept for the thread's life). On a Java thread a
 * temporary buffer over the bytes is made (*local = 1). NULL on failure. */
static jobject event_bytes(JNIEnv *env, hpsj_thread *t, const void *data,
                           size_t len, int *local) {
  if (t == NULL) {
    *local = 1;
    return (*env)->NewDirectByteBuffer(env, (void *)data, (jlong)len);
  }
  if (len > t->cap || t->buf == NULL) {
    size_t cap = t->cap < HPSJ_BUF_MIN ? HPSJ_BUF_MIN : t->cap;
    void *mem;
    jobject lb, gb;
    while (cap < len) cap *= 2;
    if ((mem = malloc(cap)) == NULL) return NULL;
    lb = (*env)->NewDirectByteBuffer(env, mem, (jlong)cap);
    gb = lb != NULL ? (*env)->NewGlobalRef(env, lb) : NULL;
    if (lb != NULL) (*env)->DeleteLocalRef(env, lb);
    if (gb == NULL) {
      free(mem);
      return NULL;
    }
    if (t->buf != NULL) (*env)->DeleteGlobalRef(env, t->buf);
    else refs_add(1);
    free(t->mem);
    t->buf = gb;
    t->mem = mem;
    t->cap = cap;
  }
  memcpy(t->mem, data, len);
  return t->buf;
}

static void release_target(JNIEnv *env, hpsj_ctx *ctx) {
  jobject g;
  pthread_mutex_lock(&ctx->lock);
  g = ctx->target;
  ctx->target = NULL;
  pthread_mutex_unlock(&ctx->lock);
  if (g != NULL) {
    (*env)->DeleteGlobalRef(env, g);
    refs_add(-1);
  }
}

/* A pending exception never crosses into C: print it with its stack trace
 * and clear it. The Java dispatcher already reports a listener's exception
 * through the thread's uncaught-exception handler; this catches what is
 * left (an exception from that handler, an Error in the dispatcher). */
static int exception_clear(JNIEnv *env) {
  if (!(*env)->ExceptionCheck(env)) return 0;
  (*env)->ExceptionDescribe(env);
  (*env)->ExceptionClear(env);
  return 1;
}

/* The one hps_event_fn of every Java endpoint. */
static int on_event(void *user, const hps_event *ev) {
  hpsj_ctx *ctx = user;
  hpsj_thread *t;
  JNIEnv *env = thread_env(&t);
  jobject target = ctx->target, data = NULL, host = NULL;
  jvalue args[8];
  jlong n = 0;
  int local = 0, r;
  if (env == NULL) { /* cannot reach Java: refuse what can be refused */
    fprintf(stderr, "hpsock: cannot attach a loop thread to the JVM\n");
    return HPS_HR_ERROR;
  }
  if (target == NULL) return HPS_HR_OK; /* no Java endpoint (cannot happen) */
  /* The hot event, bytes received: receive() takes three arguments and
   * returns the result plus one, so a 0 alone says an exception escaped
   * (a JNI call returns 0 then) and only then is the VM asked. A received
   * block is at most the read size or one frame (< 4 MiB): fits a jint. */
  if (ev->type == HPS_EV_RECEIVE && ev->data != NULL &&
      (ev->addr == NULL || /* TCP; a UDP cast/node goes to dispatchFrom */
       (hps_role(ev->endpoint) != HPS_UDP_CAST &&
        hps_role(ev->endpoint) != HPS_UDP_NODE))) {
    if ((data = event_bytes(env, t, ev->data, ev->len, &local)) == NULL) {
      exception_clear(env);
      fprintf(stderr, "hpsock: no memory for an event of %zu bytes\n",
              ev->len);
      return HPS_HR_ERROR;
    }
    r = (*env)->CallIntMethod(env, target, g_receive, (jlong)ev->conn,
                              (jint)ev->len, data);
    if (r == 0) {
      exception_clear(env);
      r = HPS_HR_ERROR;
    } else {
      r -= 1;
    }
    if (local) (*env)->DeleteLocalRef(env, data);
    return r;
  }
  switch (ev->type) {
  case HPS_EV_PREPARE:
    n = (jlong)ev->fd;
    break;
  case HPS_EV_HIGH_WATER:
  case HPS_EV_LOW_WATER:
    n = (jlong)ev->len; /* the unsent bytes */
    break;
  case HPS_EV_RECEIVE:
  case HPS_EV_SEND:
    n = (jlong)ev->len;
    if (ev->data != NULL &&
        (data = event_bytes(env, t, ev->data, ev->len, &local)) == NULL) {
      exception_clear(env);
      fprintf(stderr, "hpsock: no memory for an event of %zu bytes\n",
              ev->len);
      return HPS_HR_ERROR;
    }
    break;
  default:
    break;
  }
  args[0].i = ev->type;
  args[1].j = (jlong)ev->conn;
  args[2].i = ev->op;
  args[3].i = ev->error;
  args[4].j = n;
  args[5].l = data;
  if (ev->addr != NULL &&
      (ev->type == HPS_EV_RECEIVE || ev->type == HPS_EV_SEND) &&
      (hps_role(ev->endpoint) == HPS_UDP_CAST ||
       hps_role(ev->endpoint) == HPS_UDP_NODE)) {
    host = (*env)->NewStringUTF(env, ev->addr);
    if (host == NULL) {
      exception_clear(env);
      if (local) (*env)->DeleteLocalRef(env, data);
      return HPS_HR_ERROR;
    }
    args[6].l = host;
    args[7].i = ev->port;
    r = (*env)->CallIntMethodA(env, target, g_dispatch_from, args);
    (*env)->DeleteLocalRef(env, host);
  } else {
    r = (*env)->CallIntMethodA(env, target, g_dispatch, args);
  }
  if (exception_clear(env)) r = HPS_HR_ERROR;
  if (local) (*env)->DeleteLocalRef(env, data);
  if (ev->type == HPS_EV_SHUTDOWN) release_target(env, ctx);
  return r;
}

/* ---- library life cycle ---- */

JNIEXPORT jint JNICALL JNI_OnLoad(JavaVM *vm, void *reserved) {
  JNIEnv *env;
  jclass c;
  (void)reserved;
  g_vm = vm;
  if ((*vm)->GetEnv(vm, (void **)&env, HPSJ_JNI_VERSION) != JNI_OK)
    return JNI_ERR;
  if (pthread_key_create(&g_key, thread_exit) != 0) return JNI_ERR;
  c = (*env)->FindClass(env, "org/hpsock/TcpEndpoint");
  if (c == NULL) return JNI_ERR;
  g_dispatch = (*env)->GetMethodID(env, c, "dispatch",
                                   "(IJIIJLjava/nio/ByteBuffer;)I");
  g_dispatch_from = g_dispatch == NULL ? NULL
      : (*env)->GetMethodID(env, c, "dispatchFrom",
                            "(IJIIJLjava/nio/ByteBuffer;Ljava/lang/String;I)I");
  g_receive = g_dispatch_from == NULL ? NULL
              : (*env)->GetMethodID(env, c, "receive",
                                    "(JILjava/nio/ByteBuffer;)I");
  (*env)->DeleteLocalRef(env, c);
  if (g_dispatch == NULL || g_dispatch_from == NULL || g_receive == NULL)
    return JNI_ERR;
  c = (*env)->FindClass(env, "[B");
  if (c == NULL) return JNI_ERR;
  g_bytes = (*env)->NewGlobalRef(env, c);
  (*env)->DeleteLocalRef(env, c);
  if (g_bytes == NULL) return JNI_ERR;
  return HPSJ_JNI_VERSION;
}

/* ---- endpoints ---- */

JNIEXPORT jlong JNICALL HPSJ_FN(create)(JNIEnv *env, jclass cls, jint role) {
  hpsj_ctx *ctx = calloc(1, sizeof(*ctx));
  int r;
  (void)env, (void)cls;
  if (ctx == NULL) return HPS_ENOMEM;
  if (pthread_mutex_init(&ctx->lock, NULL) != 0) {
    free(ctx);
    return HPS_ENOMEM;
  }
  r = hps_create(role, on_event, ctx, &ctx->ep);
  if (r != 0) {
    pthread_mutex_destroy(&ctx->lock);
    free(ctx);
    return r;
  }
  __atomic_add_fetch(&g_contexts, 1, __ATOMIC_RELAXED);
  return (jlong)(uintptr_t)ctx;
}

JNIEXPORT jlong JNICALL HPSJ_FN(handle)(JNIEnv *env, jclass cls, jlong c) {
  (void)env, (void)cls;
  return (jlong)(uintptr_t)((hpsj_ctx *)(uintptr_t)c)->ep;
}

JNIEXPORT jint JNICALL HPSJ_FN(start)(JNIEnv *env, jclass cls, jlong c,
                                      jobject self, jstring jhost,
                                      jint port) {
  hpsj_ctx *ctx = (hpsj_ctx *)(uintptr_t)c;
  const char *host = NULL;
  int r, took = 0;
  (void)cls;
  if (port < 0 || port > 65535) return HPS_EINVAL;
  if (jhost != NULL && (host = (*env)->GetStringUTFChars(env, jhost, NULL)) == NULL)
    return HPS_ENOMEM;
  pthread_mutex_lock(&ctx->lock);
  if (ctx->target == NULL) {
    ctx->target = (*env)->NewGlobalRef(env, self);
    took = ctx->target != NULL;
    if (took) refs_add(1);
  }
  pthread_mutex_unlock(&ctx->lock);
  if (ctx->target == NULL) {
    r = HPS_ENOMEM;
  } else {
    r = hps_start(ctx->ep, host, (uint16_t)port);
    /* A failed start delivered no SHUTDOWN, or one that already released
     * the ref; either way the ref this call took must not outlive it. A
     * start refused because the endpoint runs keeps the running ref. */
    if (r != 0 && took) release_target(env, ctx);
  }
  if (host != NULL) (*env)->ReleaseStringUTFChars(env, jhost, host);
  return r;
}

JNIEXPORT jint JNICALL HPSJ_FN(destroy)(JNIEnv *env, jclass cls, jlong c) {
  hpsj_ctx *ctx = (hpsj_ctx *)(uintptr_t)c;
  int r;
  (void)cls;
  if (ctx == NULL) return HPS_EHANDLE;
  r = hps_free(ctx->ep); /* stops first: SHUTDOWN releases the ref */
  if (r != 0) return r;
  release_target(env, ctx);
  pthread_mutex_destroy(&ctx->lock);
  free(ctx);
  __atomic_sub_fetch(&g_contexts, 1, __ATOMIC_RELAXED);
  return 0;
}

/* ---- sends ---- */

JNIEXPORT jint JNICALL HPSJ_FN(sendDirect)(JNIEnv *env, jclass cls, jlong ep,
                                           jlong id, jobject buf, jint off,
                                           jint len) {
  char *base = (*env)->GetDirectBufferAddress(env, buf);
  (void)cls;
  if (base == NULL) return HPS_EINVAL;
  return hps_send(HPSJ_EP(ep), (hps_conn_id)id, base + off, (size_t)len);
}

/* A direct buffer's bytes by address (the Java side read the address and
 * keeps the buffer reachable): a call with no object argument at all. */
JNIEXPORT jint JNICALL HPSJ_FN(sendAddress)(JNIEnv *env, jclass cls, jlong ep,
                                            jlong id, jlong address,
                                            jint len) {
  (void)env, (void)cls;
  if (address == 0) return HPS_EINVAL;
  return hps_send(HPSJ_EP(ep), (hps_conn_id)id, (const void *)(uintptr_t)address,
                  (size_t)len);
}

JNIEXPORT jint JNICALL HPSJ_FN(sendArray)(JNIEnv *env, jclass cls, jlong ep,
                                          jlong id, jbyteArray arr, jint off,
                                          jint len) {
  void *p;
  int r;
  (void)cls;
  if (len <= 0) return hps_send(HPSJ_EP(ep), (hps_conn_id)id, "", 0);
  if (len <= HPSJ_STACK_COPY) {
    char tmp[HPSJ_STACK_COPY];
    (*env)->GetByteArrayRegion(env, arr, off, len, (jbyte *)tmp);
    return hps_send(HPSJ_EP(ep), (hps_conn_id)id, tmp, (size_t)len);
  }
  /* hps_send copies or writes before it returns and never calls back into
   * Java, so pinning the array for its duration is safe. */
  p = (*env)->GetPrimitiveArrayCritical(env, arr, NULL);
  if (p == NULL) return HPS_ENOMEM;
  r = hps_send(HPSJ_EP(ep), (hps_conn_id)id, (char *)p + off, (size_t)len);
  (*env)->ReleasePrimitiveArrayCritical(env, arr, p, JNI_ABORT);
  return r;
}

/* UDP cast/node: one datagram of arr[off, off + len) to host:port. */
JNIEXPORT jint JNICALL HPSJ_FN(sendTo)(JNIEnv *env, jclass cls, jlong ep,
                                       jstring jhost, jint port,
                                       jbyteArray arr, jint off, jint len) {
  const char *host;
  jbyte *p;
  int r;
  (void)cls;
  if (jhost == NULL) return HPS_EADDR;
  if (port < 0 || port > 65535) return HPS_EADDR;
  if ((host = (*env)->GetStringUTFChars(env, jhost, NULL)) == NULL)
    return HPS_ENOMEM;
  if (len <= 0) {
    r = hps_send_to(HPSJ_EP(ep), host, (uint16_t)port, "", 0);
  } else if (len <= HPSJ_STACK_COPY) {
    char tmp[HPSJ_STACK_COPY];
    (*env)->GetByteArrayRegion(env, arr, off, len, (jbyte *)tmp);
    r = hps_send_to(HPSJ_EP(ep), host, (uint16_t)port, tmp, (size_t)len);
  } else if ((p = (*env)->GetByteArrayElements(env, arr, NULL)) == NULL) {
    r = HPS_ENOMEM;
  } else {
    /* Not a critical region: name resolution may block for a while. */
    r = hps_send_to(HPSJ_EP(ep), host, (uint16_t)port, (char *)p + off,
                    (size_t)len);
    (*env)->ReleaseByteArrayElements(env, arr, p, JNI_ABORT);
  }
  (*env)->ReleaseStringUTFChars(env, jhost, host);
  return r;
}

/* items[i] is a byte[] or a direct ByteBuffer; offs/lens say which bytes. */
JNIEXPORT jint JNICALL HPSJ_FN(sendv)(JNIEnv *env, jclass cls, jlong ep,
                                      jlong id, jobjectArray items,
                                      jintArray joffs, jintArray jlens) {
  jint n = (*env)->GetArrayLength(env, items), i, offs[HPSJ_MAX_SENDV],
       lens[HPSJ_MAX_SENDV];
  jobject objs[HPSJ_MAX_SENDV];
  void *pins[HPSJ_MAX_SENDV];
  hps_buf bufs[HPSJ_MAX_SENDV];
  int r = 0;
  (void)cls;
  if (n <= 0 || n > HPSJ_MAX_SENDV) return HPS_EINVAL;
  if ((*env)->EnsureLocalCapacity(env, n) != 0) return HPS_ENOMEM;
  (*env)->GetIntArrayRegion(env, joffs, 0, n, offs);
  (*env)->GetIntArrayRegion(env, jlens, 0, n, lens);
  /* Every JNI call first; the critical sections come last. */
  for (i = 0; i < n; i++) {
    objs[i] = (*env)->GetObjectArrayElement(env, items, i);
    pins[i] = NULL;
    bufs[i].len = (size_t)lens[i];
    if ((*env)->IsInstanceOf(env, objs[i], g_bytes)) {
      bufs[i].base = NULL;
    } else {
      char *a = (*env)->GetDirectBufferAddress(env, objs[i]);
      if (a == NULL) return HPS_EINVAL;
      bufs[i].base = a + offs[i];
    }
  }
  for (i = 0; i < n && r == 0; i++) {
    if (bufs[i].base != NULL) continue;
    pins[i] = (*env)->GetPrimitiveArrayCritical(env, objs[i], NULL);
    if (pins[i] == NULL) r = HPS_ENOMEM;
    else bufs[i].base = (char *)pins[i] + offs[i];
  }
  if (r == 0) r = hps_sendv(HPSJ_EP(ep), (hps_conn_id)id, bufs, n);
  for (i = n - 1; i >= 0; i--) {
    if (pins[i] != NULL)
      (*env)->ReleasePrimitiveArrayCritical(env, objs[i], pins[i], JNI_ABORT);
  }
  for (i = 0; i < n; i++) (*env)->DeleteLocalRef(env, objs[i]);
  return r;
}

/* ---- pull model ---- */

static int fetch(hps_endpoint *ep, jlong id, void *p, jint len, jboolean take) {
  return take ? hps_fetch(ep, (hps_conn_id)id, p, (size_t)len)
              : hps_peek(ep, (hps_conn_id)id, p, (size_t)len);
}

JNIEXPORT jint JNICALL HPSJ_FN(fetchDirect)(JNIEnv *env, jclass cls, jlong ep,
                                            jlong id, jobject buf, jint off,
                                            jint len, jboolean take) {
  char *base = (*env)->GetDirectBufferAddress(env, buf);
  (void)cls;
  if (base == NULL) return HPS_EINVAL;
  return fetch(HPSJ_EP(ep), id, base + off, len, take);
}

JNIEXPORT jint JNICALL HPSJ_FN(fetchAddress)(JNIEnv *env, jclass cls,
                                             jlong ep, jlong id, jlong address,
                                             jint len, jboolean take) {
  (void)env, (void)cls;
  if (address == 0) return HPS_EINVAL;
  return fetch(HPSJ_EP(ep), id, (void *)(uintptr_t)address, len, take);
}

JNIEXPORT jint JNICALL HPSJ_FN(fetchArray)(JNIEnv *env, jclass cls, jlong ep,
                                           jlong id, jbyteArray arr, jint off,
                                           jint len, jboolean take) {
  void *p;
  int r;
  (void)cls;
  if (len <= 0) return fetch(HPSJ_EP(ep), id, NULL, 0, take);
  if (len <= HPSJ_STACK_COPY) {
    char tmp[HPSJ_STACK_COPY];
    r = fetch(HPSJ_EP(ep), id, tmp, len, take);
    if (r == 0) (*env)->SetByteArrayRegion(env, arr, off, len, (jbyte *)tmp);
    return r;
  }
  p = (*env)->GetPrimitiveArrayCritical(env, arr, NULL);
  if (p == NULL) return HPS_ENOMEM;
  r = fetch(HPSJ_EP(ep), id, (char *)p + off, len, take);
  (*env)->ReleasePrimitiveArrayCritical(env, arr, p, 0);
  return r;
}

/* ---- out-parameters ---- */

static void put_long(JNIEnv *env, jlongArray out, jlong v) {
  (*env)->SetLongArrayRegion(env, out, 0, 1, &v);
}

JNIEXPORT jint JNICALL HPSJ_FN(getopt)(JNIEnv *env, jclass cls, jlong ep,
                                       jint opt, jlongArray out) {
  int64_t v = 0;
  int r = hps_getopt(HPSJ_EP(ep), opt, &v);
  (void)cls;
  if (r == 0) put_long(env, out, (jlong)v);
  return r;
}

JNIEXPORT jint JNICALL HPSJ_FN(connect)(JNIEnv *env, jclass cls, jlong ep,
                                        jstring jhost, jint port,
                                        jlongArray out) {
  hps_conn_id id = 0;
  const char *host = NULL;
  int r;
  (void)cls;
  if (port < 0 || port > 65535) return HPS_EINVAL;
  if (jhost != NULL && (host = (*env)->GetStringUTFChars(env, jhost, NULL)) == NULL)
    return HPS_ENOMEM;
  r = hps_connect(HPSJ_EP(ep), host, (uint16_t)port, &id);
  if (host != NULL) (*env)->ReleaseStringUTFChars(env, jhost, host);
  if (r == 0) put_long(env, out, (jlong)id);
  return r;
}

/* Every open connection's ID; NULL with no exception on a bad handle. */
JNIEXPORT jlongArray JNICALL HPSJ_FN(connList)(JNIEnv *env, jclass cls,
                                               jlong ep) {
  size_t count = 0, cap;
  hps_conn_id *ids = NULL;
  jlongArray out;
  int got;
  (void)cls;
  got = hps_conn_list(HPSJ_EP(ep), NULL, 0, &count);
  for (;;) {
    hps_conn_id *n;
    if (got < 0) {
      free(ids);
      return NULL;
    }
    cap = count + 16; /* room for connections opened meanwhile */
    if ((n = realloc(ids, cap * sizeof(*ids))) == NULL) {
      free(ids);
      return NULL;
    }
    ids = n;
    got = hps_conn_list(HPSJ_EP(ep), ids, cap, &count);
    if (got >= 0 && count <= cap) break;
  }
  out = (*env)->NewLongArray(env, got);
  if (out != NULL && got > 0)
    (*env)->SetLongArrayRegion(env, out, 0, got, (const jlong *)ids);
  free(ids);
  return out;
}

/* which: 0 listen, 1 local, 2 remote. Returns the port, or an error. */
JNIEXPORT jint JNICALL HPSJ_FN(address)(JNIEnv *env, jclass cls, jlong ep,
                                        jlong id, jint which,
                                        jobjectArray hostOut) {
  char host[64];
  uint16_t port = 0;
  jstring s;
  int r;
  (void)cls;
  if (which == 0)
    r = hps_listen_address(HPSJ_EP(ep), host, sizeof(host), &port);
  else if (which == 1)
    r = hps_local_address(HPSJ_EP(ep), (hps_conn_id)id, host, sizeof(host), &port);
  else
    r = hps_remote_address(HPSJ_EP(ep), (hps_conn_id)id, host, sizeof(host), &port);
  if (r != 0) return r;
  if ((s = (*env)->NewStringUTF(env, host)) == NULL) return HPS_ENOMEM;
  (*env)->SetObjectArrayElement(env, hostOut, 0, s);
  (*env)->DeleteLocalRef(env, s);
  return port;
}

JNIEXPORT jint JNICALL HPSJ_FN(getExtra)(JNIEnv *env, jclass cls, jlong ep,
                                         jlong id, jlongArray out) {
  uintptr_t v = 0;
  int r = hps_get_extra(HPSJ_EP(ep), (hps_conn_id)id, &v);
  (void)cls;
  if (r == 0) put_long(env, out, (jlong)v);
  return r;
}

JNIEXPORT jint JNICALL HPSJ_FN(getStats)(JNIEnv *env, jclass cls, jlong ep,
                                         jlong id, jlongArray out) {
  hps_stats st;
  jlong v[6];
  int r = hps_get_stats(HPSJ_EP(ep), (hps_conn_id)id, &st);
  (void)cls;
  if (r != 0) return r;
  v[0] = (jlong)st.bytes_sent;
  v[1] = (jlong)st.bytes_received;
  v[2] = (jlong)st.msgs_sent;
  v[3] = (jlong)st.msgs_received;
  v[4] = (jlong)st.age_ms;
  v[5] = (jlong)st.silence_ms;
  (*env)->SetLongArrayRegion(env, out, 0, 6, v);
  return 0;
}

JNIEXPORT jint JNICALL HPSJ_FN(getUnsent)(JNIEnv *env, jclass cls, jlong ep,
                                          jlong id, jlongArray out) {
  uint64_t v = 0;
  int r = hps_get_unsent(HPSJ_EP(ep), (hps_conn_id)id, &v);
  (void)cls;
  if (r == 0) put_long(env, out, (jlong)v);
  return r;
}

JNIEXPORT jint JNICALL HPSJ_FN(getCounter)(JNIEnv *env, jclass cls, jlong ep,
                                           jint counter, jlongArray out) {
  uint64_t v = 0;
  int r = hps_get_counter(HPSJ_EP(ep), counter, &v);
  (void)cls;
  if (r == 0) put_long(env, out, (jlong)v);
  return r;
}

/* ---- bookkeeping (tests) ---- */

JNIEXPORT jlong JNICALL HPSJ_FN(liveGlobalRefs)(JNIEnv *env, jclass cls) {
  (void)env, (void)cls;
  return __atomic_load_n(&g_refs, __ATOMIC_RELAXED);
}

JNIEXPORT jlong JNICALL HPSJ_FN(attachedThreads)(JNIEnv *env, jclass cls) {
  (void)env, (void)cls;
  return __atomic_load_n(&g_attached, __ATOMIC_RELAXED);
}

JNIEXPORT jlong JNICALL HPSJ_FN(liveContexts)(JNIEnv *env, jclass cls) {
  (void)env, (void)cls;
  return __atomic_load_n(&g_contexts, __ATOMIC_RELAXED);
}

/* GetDirectBufferAddress, to check the Java side's fast address read. */
JNIEXPORT jlong JNICALL HPSJ_FN(bufferAddress)(JNIEnv *env, jclass cls,
                                               jobject buf) {
  (void)cls;
  return (jlong)(uintptr_t)(*env)->GetDirectBufferAddress(env, buf);
}
