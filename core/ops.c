/* ops.c - connection operations callable from any thread. On the owning
 * loop's thread they act directly; elsewhere they check the ID under the
 * loop's lock and queue a command to that loop. */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core.h"

static hps_conn_id resolve_id(hps_endpoint *ep, hps_conn_id id) {
  if (id == 0 && HPS__SINGLE(ep))
    return HPS__LOAD(&ep->client_id);
  return id;
}

static hps__loop *owner(hps_endpoint *ep, hps_conn_id id) {
  uint32_t li = HPS__ID_LOOP(id);
  /* a loop object, once made, stays until hps_free: safe to lock even if
   * the endpoint stops or restarts meanwhile */
  if (li >= (uint32_t)hps__nloops(ep))
    return NULL;
  return hps__loop_at(ep, (int)li);
}

/* Is the endpoint running loops whose tables may be read? */
static int running(hps_endpoint *ep) {
  int s = HPS__LOAD(&ep->state);
  return s == HPS_STATE_STARTED || s == HPS_STATE_STOPPING;
}

/* Look a live connection up; on success returns with lp->lock held. */
static hps__conn *lock_conn(hps_endpoint *ep, hps_conn_id id, hps__loop **out,
                            int *err) {
  hps__loop *lp;
  hps__conn *c;
  if (!running(ep) || (lp = owner(ep, id)) == NULL) {
    *err = HPS_ENOTFOUND;
    return NULL;
  }
  uv_mutex_lock(&lp->lock);
  c = hps__lookup_locked(ep, id, NULL);
  if (c == NULL) {
    uv_mutex_unlock(&lp->lock);
    *err = HPS_ENOTFOUND;
    return NULL;
  }
  *out = lp;
  return c;
}

/* Post a command for the connection w->id; frees w on failure. */
static int post(hps_endpoint *ep, hps__wreq *w, size_t queued_bytes) {
  hps__loop *lp;
  hps__conn *c;
  int err = 0, state;
  c = lock_conn(ep, w->id, &lp, &err);
  if (c == NULL) {
    free(w);
    return err;
  }
  /* One read: the loop may close it meanwhile, and CLOSING is not "not
   * connected yet". */
  state = HPS__LOAD(&c->state);
  if (state == HPS__C_CLOSING || HPS__LOAD(&c->doomed)) {
    err = HPS_ENOTFOUND;
  } else if (queued_bytes > 0 && state != HPS__C_OPEN) {
    err = HPS_ESTATE;
  } else if (queued_bytes > 0 && HPS__LOAD(&c->queued) + queued_bytes >
                                     (size_t)ep->opt[HPS_OPT_MAX_SEND_QUEUE]) {
    err = HPS_ESENDQ;
  } else if (hps__loop_post_locked(lp, w) != 0) {
    err = HPS_ENOTFOUND; /* the loop is stopping: it closes them all */
  } else {
    HPS__ADD(&c->queued, queued_bytes);
    if (w->kind == HPS__CMD_SEND)
      c->posted++;
    /* A queued disconnect ends the connection for every later call, even
     * before its loop runs it: later sends fail instead of vanishing. */
    if (w->kind == HPS__CMD_DISCONNECT)
      HPS__STORE(&c->doomed, 1);
  }
  uv_mutex_unlock(&lp->lock);
  if (err != 0) {
    free(w);
    return err;
  }
  return 0;
}

/* On the owning loop: the connection, or NULL with *err set. The one whose
 * read is being delivered (a handler answering what it got: the hot path)
 * needs neither the lock nor the table: only this thread closes or recycles
 * it, and `doomed`, set by other threads, is read atomically. */
static hps__conn *own_conn(hps_endpoint *ep, hps_conn_id id, int *err) {
  hps__loop *lp = hps__tls_loop;
  hps__conn *c = lp->corked;
  if (c == NULL || c->id != id) {
    c = lock_conn(ep, id, &lp, err);
    if (c == NULL)
      return NULL;
    uv_mutex_unlock(&lp->lock); /* only this thread may free it */
  }
  if (HPS__LOAD(&c->state) == HPS__C_CLOSING || HPS__LOAD(&c->doomed)) {
    *err = HPS_ENOTFOUND;
    return NULL;
  }
  return c;
}

static int on_owner(hps_endpoint *ep, hps_conn_id id) {
  hps__loop *lp = hps__tls_loop;
  return lp != NULL && lp->ep == ep && owner(ep, id) == lp;
}

/* The bytes of one send as a write request: pack header, then the buffers
 * gathered into one block. */
static hps__wreq *send_wreq(hps_endpoint *ep, hps_conn_id id,
                            const hps_buf *bufs, int n, size_t total,
                            size_t hdr) {
  hps__wreq *w = hps__wreq_new(total + hdr);
  size_t off = hdr;
  int i;
  if (w == NULL)
    return NULL;
  w->kind = HPS__CMD_SEND;
  w->id = id;
  w->skip = hdr;
  if (hdr)
    hps__pack_header((uint8_t *)w->data, (uint32_t)ep->opt[HPS_OPT_PACK_FLAG],
                     (uint32_t)total);
  for (i = 0; i < n; i++) {
    if (bufs[i].len == 0)
      continue; /* base may be NULL */
    memcpy(w->data + off, bufs[i].base, bufs[i].len);
    off += bufs[i].len;
  }
  return w;
}

/* On the owning loop: gather into the cork while the connection's read is
 * being delivered, else try-write straight from the caller's buffer, and
 * copy only what the socket did not take. */
static int send_own(hps_endpoint *ep, hps__conn *c, const hps_buf *bufs, int n,
                    size_t total, size_t hdr) {
  int send_events = (HPS__LOAD(&ep->events) & HPS_EVBIT(HPS_EV_SEND)) != 0;
  ssize_t r = 0;
  hps__wreq *w;
  int state = HPS__LOAD(&c->state);
  if (state == HPS__C_CLOSING || HPS__LOAD(&c->doomed))
    return HPS_ENOTFOUND;
  if (state != HPS__C_OPEN)
    return HPS_ESTATE;
  if (HPS__LOAD(&c->queued) + total + hdr >
      (size_t)ep->opt[HPS_OPT_MAX_SEND_QUEUE])
    return HPS_ESENDQ;
  if (!send_events) {
    uint8_t h[HPS__PACK_HEADER];
    if (hdr)
      hps__pack_header(h, (uint32_t)ep->opt[HPS_OPT_PACK_FLAG],
                       (uint32_t)total);
    else if (n == 1 && hps__cork_borrow(c, bufs[0].base, total))
      return 0;
    if (hps__cork_append(c, bufs, n, h, hdr, total))
      return 0;
    hps__cork_flush(c); /* full or not delivering: keep order first */
    if (c->handle_closing)
      return HPS_ENOTFOUND;
  }
  /* hps__try_write itself declines while libuv has writes queued */
  if (n == 1 && hdr == 0 && !send_events && c->file == NULL && c->tls == NULL) {
    r = hps__try_write(c, bufs[0].base, total);
    if (r == (ssize_t)total) {
      hps__count_sent(c, total, 1);
      return 0;
    }
    if (r < 0 && r != UV_EAGAIN) {
      hps__conn_close(c, HPS_OP_SEND, (int)r);
      return (int)r;
    }
    if (r < 0)
      r = 0;
  }
  w = send_wreq(ep, c->id, bufs, n, total, hdr);
  if (w == NULL)
    return HPS_ENOMEM;
  w->off = (size_t)r; /* already written; hps__conn_write counts it all */
  return hps__conn_write(c, w);
}

int hps__send(hps_endpoint *ep, hps_conn_id id, const hps_buf *bufs, int n) {
  hps__loop *lp = hps__tls_loop;
  int pack = ep->opt[HPS_OPT_RECV_MODEL] == HPS_MODEL_PACK;
  size_t hdr = pack ? HPS__PACK_HEADER : 0, total = 0;
  hps__wreq *w;
  int i;
  if (HPS__IS_UDP(ep))
    return hps__udp_send(ep, id, NULL, bufs, n);
  for (i = 0; i < n; i++)
    total += bufs[i].len;
  if (total == 0)
    return pack ? HPS_EPACKEMPTY : HPS_EINVAL;
  if (pack && total > (size_t)ep->opt[HPS_OPT_PACK_MAX])
    return HPS_EPACKSIZE;
  /* The hot path: a handler answering the connection whose read it is
   * being given. That one is this loop's and not freed before the delivery
   * ends, so neither the ID's loop nor the table is consulted. */
  if (lp != NULL && lp->corked != NULL && lp->corked->id == id && lp->ep == ep)
    return send_own(ep, lp->corked, bufs, n, total, hdr);
  id = resolve_id(ep, id);
  if (on_owner(ep, id)) {
    int err = 0;
    hps__conn *c = own_conn(ep, id, &err);
    return c == NULL ? err : send_own(ep, c, bufs, n, total, hdr);
  }
  w = send_wreq(ep, id, bufs, n, total, hdr);
  if (w == NULL)
    return HPS_ENOMEM;
  return post(ep, w, total + hdr);
}

/* A handler answering, with one buffer, the connection whose read it is
 * being given: straight into the loop's cork, skipping the general path's
 * gathering and its calls. These take only what would succeed there and
 * end in the cork (checked as send_own checks, in its order); anything
 * else -- SEND events on, an error to report, a file going out, a full
 * cork -- returns 0 and goes the general way. */
static inline int cork_ok(hps_endpoint *ep, hps__conn *c, size_t len,
                          size_t hdr) {
  return !(HPS__LOAD(&ep->events) & HPS_EVBIT(HPS_EV_SEND)) &&
         HPS__LOAD(&c->state) == HPS__C_OPEN && !HPS__LOAD(&c->doomed) &&
         HPS__LOAD(&c->queued) + len + hdr <=
             (size_t)ep->opt[HPS_OPT_MAX_SEND_QUEUE];
}

/* Pack model: the send of exactly the frame being delivered (an echo:
 * data is lp->echo_body, and the header before it is the one this send
 * writes, which also makes len that frame's length) goes into the cork
 * where it lies, header included, extending the range of the frames
 * echoed before it when it follows on from them: a read's frames echoed
 * go out as they came in, in one send and with no copy. The bytes sent are
 * the same either way. No file is ever sent in the pack model, so none
 * can be going out. */
static inline int cork_echo(hps_endpoint *ep, hps__loop *lp, hps__conn *c,
                            const char *body, size_t len) {
  /* len over the max first: the header compare alone could match a len of
   * 2^22 or more by its bits in the flag's place */
  if (len > (size_t)ep->opt[HPS_OPT_PACK_MAX] ||
      !cork_ok(ep, c, len, HPS__PACK_HEADER))
    return 0;
  if (hps__pack_load_le32((const uint8_t *)body - HPS__PACK_HEADER) !=
      (((uint32_t)ep->opt[HPS_OPT_PACK_FLAG] << 22) | (uint32_t)len))
    return 0;
  /* (body, not its header's address, in the compares: one register less,
   * none to save) */
  if (lp->cork_ext != NULL &&
      lp->cork_ext + lp->cork_len + HPS__PACK_HEADER == body)
    ; /* follows on from the frames echoed before it */
  else if (lp->cork_len == 0)
    lp->cork_ext = body - HPS__PACK_HEADER;
  else
    return 0; /* the cork holds other bytes: copied after them */
  lp->cork_len += HPS__PACK_HEADER + len;
  hps__count_sent(c, len, 1);
  return 1;
}

/* hps_send's every other way, out of line: the echoes in hps__send1 then
 * need no saved registers. */
__attribute__((noinline)) static int
send1_general(hps_endpoint *ep, hps_conn_id id, const void *data, size_t len) {
  hps__loop *lp = hps__tls_loop;
  hps__conn *c;
  hps_buf b;
  b.base = data;
  b.len = len;
  /* pack: one frame, its header and body copied into the cork */
  if (lp != NULL && (c = lp->corked) != NULL && c->id == id && lp->ep == ep &&
      len != 0 && ep->opt[HPS_OPT_RECV_MODEL] == HPS_MODEL_PACK &&
      len <= (size_t)ep->opt[HPS_OPT_PACK_MAX] &&
      cork_ok(ep, c, len, HPS__PACK_HEADER)) {
    uint8_t h[HPS__PACK_HEADER];
    hps__pack_header(h, (uint32_t)ep->opt[HPS_OPT_PACK_FLAG], (uint32_t)len);
    if (hps__cork_append(c, &b, 1, h, HPS__PACK_HEADER, len))
      return 0;
  }
  return hps__send(ep, id, &b, 1);
}

int hps__send1(hps_endpoint *ep, hps_conn_id id, const void *data, size_t len) {
  hps__loop *lp = hps__tls_loop;
  hps__conn *c;
  if (lp == NULL || data == NULL) /* data: api.c checked it */
    return send1_general(ep, id, data, len);
  if ((const char *)data == lp->echo_body) {
    /* echo_body is set only while lp->corked is fed its frames */
    c = lp->corked;
    if (c->id == id && lp->ep == ep && cork_echo(ep, lp, c, data, len))
      return 0;
  } else if ((c = lp->corked) != NULL && c->id == id && lp->ep == ep &&
             len != 0 && ep->opt[HPS_OPT_RECV_MODEL] != HPS_MODEL_PACK &&
             cork_ok(ep, c, len, 0) && hps__cork_borrow(c, data, len)) {
    return 0; /* push (or pull): bytes of the read's buffer, an echo */
  }
  return send1_general(ep, id, data, len);
}

/* A file send waits as [dev][ino][path] in its request's data (no
 * descriptor, no chunk buffer) until its turn: a peer that pipelines
 * requests and never reads holds a connection to one open file. */
typedef struct file_id {
  uint64_t dev, ino;
} file_id;

/* Open path and check it is the regular file id (NULL: any) with
 * offset + length (length < 0: to its end) inside it. The descriptor, or
 * -1; *st is filled. */
static int file_open(const char *path, const file_id *id, int64_t offset,
                     int64_t length, struct stat *st) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return -1;
  if (fstat(fd, st) != 0 || !S_ISREG(st->st_mode) ||
      (id != NULL &&
       (id->dev != (uint64_t)st->st_dev || id->ino != (uint64_t)st->st_ino)) ||
      offset > st->st_size || (length >= 0 && length > st->st_size - offset)) {
    close(fd);
    return -1;
  }
  return fd;
}

hps__wreq *hps__file_begin(hps__conn *c, hps__wreq *w) {
  file_id id;
  struct stat st;
  hps__wreq *n;
  int fd;
  HPS__SUB(&c->files, 1);
  memcpy(&id, w->data, sizeof(id));
  /* The file checked at the call, still as long: else the bytes promised
   * cannot be sent, and what was sent after it must not go out in their
   * place. */
  fd = file_open(w->data + sizeof(id), &id, w->file_off, w->file_left, &st);
  if (fd < 0 || (n = realloc(w, sizeof(*w) + HPS__FILE_CHUNK)) == NULL) {
    if (fd >= 0)
      close(fd);
    HPS__SUB(&c->file_unsent, (uint64_t)w->file_left);
    free(w);
    hps__conn_close(c, HPS_OP_SEND, HPS_EFILE);
    return NULL;
  }
  n->fd = fd;
  n->cap = HPS__FILE_CHUNK;
  n->len = 0;
  return n;
}

int hps__send_file(hps_endpoint *ep, hps_conn_id id, const char *path,
                   int64_t offset, int64_t length) {
  struct stat st;
  hps__wreq *w;
  hps__loop *lp;
  hps__conn *c;
  file_id fid;
  size_t plen;
  int fd, err = 0, state;
  if (ep->opt[HPS_OPT_RECV_MODEL] == HPS_MODEL_PACK)
    return HPS_EMODEL;
  if (length < -1)
    return HPS_EFILE;
  id = resolve_id(ep, id);
  fd = file_open(path, NULL, offset, length, &st);
  if (fd < 0)
    return HPS_EFILE;
  close(fd);
  if (length < 0)
    length = st.st_size - offset;
  if (length == 0)
    return HPS_EINVAL;
  fid.dev = (uint64_t)st.st_dev;
  fid.ino = (uint64_t)st.st_ino;
  plen = strlen(path) + 1; /* open() took it: at most PATH_MAX */
  w = hps__wreq_new(sizeof(fid) + plen);
  if (w == NULL)
    return HPS_ENOMEM;
  memcpy(w->data, &fid, sizeof(fid));
  memcpy(w->data + sizeof(fid), path, plen);
  w->kind = HPS__CMD_FILE;
  w->id = id;
  w->len = 0; /* its bytes count in file_unsent, not in queued */
  w->file_off = offset;
  w->file_left = length;
  if (on_owner(ep, id)) {
    c = own_conn(ep, id, &err);
    if (c != NULL && HPS__LOAD(&c->state) != HPS__C_OPEN)
      err = HPS_ESTATE;
    else if (c != NULL && HPS__LOAD(&c->files) >= HPS__FILES_PENDING)
      err = HPS_ESENDQ;
    if (c == NULL || err != 0) {
      free(w);
      return err;
    }
    HPS__ADD(&c->files, 1);
    HPS__ADD(&c->file_unsent, (uint64_t)length);
    hps__conn_write(c, w); /* a failure closes the connection */
    return 0;
  }
  c = lock_conn(ep, id, &lp, &err);
  if (c == NULL) {
    free(w);
    return err;
  }
  state = HPS__LOAD(&c->state);
  if (state == HPS__C_CLOSING || HPS__LOAD(&c->doomed))
    err = HPS_ENOTFOUND;
  else if (state != HPS__C_OPEN)
    err = HPS_ESTATE;
  else if (HPS__LOAD(&c->files) >= HPS__FILES_PENDING)
    err = HPS_ESENDQ;
  else if (hps__loop_post_locked(lp, w) != 0)
    err = HPS_ENOTFOUND; /* the loop is stopping: it closes them all */
  if (err == 0) {
    c->posted++; /* a graceful close waits for it (under the lock) */
    HPS__ADD(&c->files, 1);
    HPS__ADD(&c->file_unsent, (uint64_t)length);
  }
  uv_mutex_unlock(&lp->lock);
  if (err != 0)
    free(w);
  return err;
}

static int simple_cmd(hps_endpoint *ep, hps_conn_id id, int kind, int arg,
                      int cerr) {
  hps__wreq *w;
  int err = 0;
  id = resolve_id(ep, id);
  if (on_owner(ep, id)) {
    hps__conn *c = own_conn(ep, id, &err);
    if (c == NULL)
      return err;
    if (kind == HPS__CMD_DISCONNECT)
      hps__conn_disconnect(c, arg, cerr);
    else
      hps__conn_pause(c, arg);
    return 0;
  }
  w = hps__wreq_new(0);
  if (w == NULL)
    return HPS_ENOMEM;
  w->kind = kind;
  w->id = id;
  w->arg = arg;
  w->err = cerr;
  return post(ep, w, 0);
}

/* A forced disconnect: of an open connection, or one closing gracefully
 * (its peer may never take what is queued). Refused (HPS_ENOTFOUND) only
 * when the connection is gone, being torn down, or a forced disconnect of
 * it is queued already: the CLOSE comes once. */
static int disconnect_force(hps_endpoint *ep, hps_conn_id id) {
  hps__loop *lp;
  hps__conn *c;
  hps__wreq *w;
  int err = 0;
  id = resolve_id(ep, id);
  w = hps__wreq_new(0);
  if (w == NULL)
    return HPS_ENOMEM;
  w->kind = HPS__CMD_DISCONNECT;
  w->id = id;
  w->arg = 1;
  c = lock_conn(ep, id, &lp, &err);
  if (c == NULL) {
    free(w);
    return err;
  }
  if (HPS__LOAD(&c->doomed) == 2 ||
      (HPS__LOAD(&c->state) == HPS__C_CLOSING && !hps__closing_soft(c))) {
    err = HPS_ENOTFOUND;
  } else if (on_owner(ep, id)) {
    /* only this thread closes it: safe once the lock is dropped */
    uv_mutex_unlock(&lp->lock);
    free(w);
    hps__conn_disconnect(c, 1, 0);
    return 0;
  } else if (hps__loop_post_locked(lp, w) != 0) {
    err = HPS_ENOTFOUND; /* the loop is stopping: it closes them all */
  } else {
    w = NULL;
    HPS__STORE(&c->doomed, 2);
  }
  uv_mutex_unlock(&lp->lock);
  free(w);
  return err;
}

int hps__disconnect(hps_endpoint *ep, hps_conn_id id, int force) {
  if (force)
    return disconnect_force(ep, id);
  return simple_cmd(ep, id, HPS__CMD_DISCONNECT, 0, 0);
}

int hps__pause(hps_endpoint *ep, hps_conn_id id, int pause) {
  return simple_cmd(ep, id, HPS__CMD_PAUSE, pause != 0, 0);
}

int hps__fetch(hps_endpoint *ep, hps_conn_id id, void *buf, size_t len,
               int take) {
  hps__loop *lp;
  hps__conn *c;
  int err = 0;
  if (ep->opt[HPS_OPT_RECV_MODEL] != HPS_MODEL_PULL)
    return HPS_EMODEL;
  c = lock_conn(ep, resolve_id(ep, id), &lp, &err);
  if (c == NULL)
    return err;
  if (c->plen < len) {
    err = HPS__LOAD(&c->state) == HPS__C_CLOSING && c->plen == 0 ? HPS_ENOTFOUND
                                                                 : HPS_EAGAIN;
  } else {
    memcpy(buf, c->pbuf, len);
    if (take) {
      memmove(c->pbuf, c->pbuf + len, c->plen - len);
      c->plen -= len;
    }
  }
  uv_mutex_unlock(&lp->lock);
  return err;
}

/* ---- queries ---- */

int hps__conn_count(hps_endpoint *ep) {
  size_t n = 0;
  /* What hps_conn_list counts: open connections and graceful closes
   * under way; one being torn down (its CLOSE on its way) no longer. */
  hps__conn_list(ep, NULL, 0, &n);
  return (int)n;
}

int hps__conn_list(hps_endpoint *ep, hps_conn_id *ids, size_t cap,
                   size_t *count) {
  size_t got = 0, total = 0;
  int i;
  hps__conn *c;
  if (running(ep)) {
    int nl = hps__nloops(ep);
    for (i = 0; i < nl; i++) {
      hps__loop *lp = hps__loop_at(ep, i);
      uv_mutex_lock(&lp->lock);
      for (c = lp->conns; c != NULL; c = c->next) {
        /* a graceful close still holds the slot: it counts */
        if (HPS__LOAD(&c->state) == HPS__C_CLOSING && !hps__closing_soft(c))
          continue;
        if (got < cap)
          ids[got++] = c->id;
        total++;
      }
      uv_mutex_unlock(&lp->lock);
    }
  }
  if (count)
    *count = total;
  return (int)got;
}

int hps__address(hps_endpoint *ep, hps_conn_id id, int remote, char *host,
                 size_t hostlen, uint16_t *port) {
  hps__loop *lp;
  hps__conn *c;
  hps__addr a;
  int err = 0;
  c = lock_conn(ep, resolve_id(ep, id), &lp, &err);
  if (c == NULL)
    return err;
  a = remote ? c->peer : c->local;
  uv_mutex_unlock(&lp->lock);
  if (a.sa.sa_family == 0)
    return HPS_ESTATE; /* not connected yet */
  return hps__addr_str(&a, host, hostlen, port);
}

int hps__extra(hps_endpoint *ep, hps_conn_id id, uintptr_t *get,
               uintptr_t set) {
  hps__loop *lp;
  hps__conn *c;
  int err = 0;
  c = lock_conn(ep, resolve_id(ep, id), &lp, &err);
  if (c == NULL)
    return err;
  if (get)
    *get = HPS__LOAD(&c->extra);
  else
    HPS__STORE(&c->extra, set);
  uv_mutex_unlock(&lp->lock);
  return 0;
}

int hps__stats(hps_endpoint *ep, hps_conn_id id, hps_stats *st) {
  hps__loop *lp;
  hps__conn *c;
  uint64_t now = uv_hrtime() / 1000000u, t;
  int err = 0, i;
  memset(st, 0, sizeof(*st));
  if (id == 0 && !HPS__SINGLE(ep)) {
    /* The loops' totals hold the released connections; the live ones
     * (running: under the lock, which a connection is released under)
     * add their own. Stopped, every connection has been released. */
    int live = running(ep), n = hps__nloops(ep);
    for (i = 0; i < n; i++) {
      lp = __atomic_load_n(&ep->loops[i], __ATOMIC_ACQUIRE);
      if (lp == NULL)
        continue; /* a start making its loops */
      if (live)
        uv_mutex_lock(&lp->lock);
      st->bytes_sent += HPS__LOAD(&lp->bytes_sent);
      st->bytes_received += HPS__LOAD(&lp->bytes_recv);
      st->msgs_sent += HPS__LOAD(&lp->msgs_sent);
      st->msgs_received += HPS__LOAD(&lp->msgs_recv);
      if (live) {
        for (c = lp->conns; c != NULL; c = c->next) {
          st->bytes_sent += HPS__LOAD(&c->bytes_sent);
          st->bytes_received += HPS__LOAD(&c->bytes_recv);
          st->msgs_sent += HPS__LOAD(&c->msgs_sent);
          st->msgs_received += HPS__LOAD(&c->msgs_recv);
        }
        uv_mutex_unlock(&lp->lock);
      }
    }
    return 0;
  }
  c = lock_conn(ep, resolve_id(ep, id), &lp, &err);
  if (c == NULL)
    return err;
  st->bytes_sent = HPS__LOAD(&c->bytes_sent);
  st->bytes_received = HPS__LOAD(&c->bytes_recv);
  st->msgs_sent = HPS__LOAD(&c->msgs_sent);
  st->msgs_received = HPS__LOAD(&c->msgs_recv);
  t = HPS__LOAD(&c->t_open); /* 0 until connected */
  st->age_ms = t ? hps__elapsed(now, t) : 0;
  t = HPS__LOAD(&c->t_recv);
  st->silence_ms = t ? hps__elapsed(now, t) : 0;
  uv_mutex_unlock(&lp->lock);
  return 0;
}

/* hps_get_unsent: bytes queued for the socket and file bytes not read. */
int hps__unsent(hps_endpoint *ep, hps_conn_id id, uint64_t *unsent) {
  hps__loop *lp;
  hps__conn *c;
  int err = 0;
  c = lock_conn(ep, resolve_id(ep, id), &lp, &err);
  if (c == NULL)
    return err;
  *unsent = HPS__LOAD(&c->queued) + HPS__LOAD(&c->file_unsent);
  uv_mutex_unlock(&lp->lock);
  return 0;
}

/* Disconnect every connection, closing ones too, whose (silence or age)
 * >= ms. */
int hps__disconnect_where(hps_endpoint *ep, int64_t ms, int by_silence) {
  uint64_t now = uv_hrtime() / 1000000u;
  int i, n = 0;
  hps__conn *c;
  if (!running(ep))
    return 0;
  for (i = 0; i < hps__nloops(ep); i++) {
    hps__loop *lp = hps__loop_at(ep, i);
    int mine = hps__tls_loop == lp;
    uv_mutex_lock(&lp->lock);
    for (c = lp->conns; c != NULL; c = c->next) {
      uint64_t t = HPS__LOAD(by_silence ? &c->t_recv : &c->t_open);
      int err = by_silence ? HPS_ESILENCE : 0;
      int state = HPS__LOAD(&c->state);
      /* graceful closes too: their peer may hold them for good */
      if ((state != HPS__C_OPEN && !hps__closing_soft(c)) || t == 0 ||
          HPS__LOAD(&c->doomed) == 2 || hps__elapsed(now, t) < (uint64_t)ms)
        continue;
      n++;
      if (mine) { /* runs no handler: safe under the lock */
        hps__conn_close(c, HPS_OP_CLOSE, err);
      } else {
        hps__wreq *w = hps__wreq_new(0);
        if (w == NULL)
          continue;
        w->kind = HPS__CMD_DISCONNECT;
        w->id = c->id;
        w->arg = 1;
        w->err = err;
        if (hps__loop_post_locked(lp, w) != 0)
          free(w);
        else
          HPS__STORE(&c->doomed, 2);
      }
    }
    uv_mutex_unlock(&lp->lock);
  }
  return n;
}

int hps__len_error(hps_endpoint *ep) {
  if (HPS__IS_UDP(ep))
    return HPS_EDGRAMSIZE;
  if (ep->opt[HPS_OPT_RECV_MODEL] == HPS_MODEL_PACK)
    return HPS_EPACKSIZE;
  return HPS_ESENDQ;
}

int hps__post(hps_endpoint *ep, hps__wreq *w, size_t queued_bytes) {
  return post(ep, w, queued_bytes);
}
