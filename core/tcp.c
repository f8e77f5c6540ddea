/* tcp.c - TCP connections on a loop: accept, connect, read (push, pull,
 * pack), write (try-write first, queue the rest), file send, close. Every
 * function here runs on the connection's loop thread. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* accept4 */
#endif
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif
#if defined(__linux__)
#include <poll.h>
#include <sys/epoll.h>
#endif

#include "core.h"

/* recv(2) and send(2) as bare system calls on Linux: libc's wrappers are
 * cancellation points, and in a threaded process each call enables and
 * disables asynchronous cancellation around the system call (two atomic
 * updates per call). No loop thread is ever cancelled.
 * Under sanitizers the libc calls stay: their interceptors check the
 * buffers and (TSan) see the file descriptor's synchronisation. */
#if defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) ||     \
    __has_feature(memory_sanitizer)
#define HPS__SANITIZED 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define HPS__SANITIZED 1
#endif
#if defined(__linux__) && defined(SYS_recvfrom) && defined(SYS_sendto) &&      \
    !defined(HPS__SANITIZED)
static inline ssize_t sock_recv(int fd, void *buf, size_t n) {
  return syscall(SYS_recvfrom, fd, buf, n, 0, NULL, NULL);
}
static inline ssize_t sock_send(int fd, const void *p, size_t n, int flags) {
  return syscall(SYS_sendto, fd, p, n, flags, NULL, 0);
}
#else
static inline ssize_t sock_recv(int fd, void *buf, size_t n) {
  return recv(fd, buf, n, 0);
}
static inline ssize_t sock_send(int fd, const void *p, size_t n, int flags) {
  return send(fd, p, n, flags);
}
#endif

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);
static int close_behind_posted(hps__conn *c);
static void on_write(uv_write_t *req, int status);
static void start_reading(hps__conn *c);
static void drop_held(hps__conn *c);

static uint64_t now_ms(void) {
  return uv_hrtime() / 1000000u;
}

/* The socket of a TCP connection, -1 once closed: what uv_fileno answers
 * for a TCP handle (uv_close closes a stream's socket at once and sets
 * this -1), without its call and type switch (twice a read). */
static inline int conn_fd(const hps__conn *c) {
  return c->tcp.io_watcher.fd;
}

static hps_endpoint *conn_ep(hps__conn *c) {
  return c->loop->ep;
}

int hps__emit(hps__conn *c, int type, const void *data, size_t len) {
  hps_endpoint *ep = conn_ep(c);
  hps_event ev;
  if (type != HPS_EV_CLOSE && !(HPS__LOAD(&ep->events) & HPS_EVBIT(type)))
    return HPS_HR_OK;
  ev.type = type;
  ev.op = type == HPS_EV_CLOSE ? c->close_op : 0;
  ev.error = type == HPS_EV_CLOSE ? c->close_err : 0;
  ev.reserved = 0;
  ev.endpoint = ep;
  ev.conn = c->id;
  ev.data = data;
  ev.len = len;
  ev.extra = HPS__LOAD(&c->extra);
  ev.fd = -1;
  ev.addr = NULL;
  ev.port = 0;
  if (type == HPS_EV_PREPARE) {
    uv_os_fd_t fd;
    if (uv_fileno((uv_handle_t *)&c->tcp, &fd) == 0)
      ev.fd = fd;
  }
  return ep->fn(ep->user, &ev);
}

/* The endpoint's socket options on fd: a connecting socket, or a listener,
 * whose options Linux copies into every socket accept() makes from it
 * (nodelay, keepalive and its timers, buffer sizes): accepted connections
 * then need no setsockopt of their own, one syscall fewer per accept. */
void hps__setup_fd(hps_endpoint *ep, int fd) {
  int one = 1;
  if (ep->opt[HPS_OPT_NODELAY])
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  if (ep->opt[HPS_OPT_KEEPALIVE_TIME] > 0) {
    int idle = (int)((ep->opt[HPS_OPT_KEEPALIVE_TIME] + 999) / 1000);
    int iv = (int)((ep->opt[HPS_OPT_KEEPALIVE_INTERVAL] + 999) / 1000);
    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &iv, sizeof(iv));
  }
  if (ep->opt[HPS_OPT_SNDBUF]) {
    int v = (int)ep->opt[HPS_OPT_SNDBUF];
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &v, sizeof(v));
  }
  if (ep->opt[HPS_OPT_RCVBUF]) {
    int v = (int)ep->opt[HPS_OPT_RCVBUF];
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &v, sizeof(v));
  }
}

/* ---- close ---- */

static void free_deferred(hps__conn *c) {
  hps__wreq *w;
  while ((w = c->defer_head) != NULL) {
    c->defer_head = w->next;
    if (w->fd >= 0)
      close(w->fd);
    free(w);
  }
  c->defer_tail = NULL;
}

/* The last step of every connection: CLOSE (if it was ever visible), then
 * the ID is dropped and the object recycled. */
static void conn_finish(hps__conn *c) {
  hps__loop *lp = c->loop;
  hps_endpoint *ep = lp->ep;
  free_deferred(c);
  drop_held(c);
  /* Not in hps__conn_close: the silence timer calls it under the lock the
   * text is written under. */
  if (c->tls != NULL && c->close_err != 0)
    hps__tls_close_text(c, c->close_err);
  if (c->reported)
    hps__emit(c, HPS_EV_CLOSE, NULL, 0);
  uv_mutex_lock(&lp->lock);
  hps__conn_release_locked(lp, c);
  uv_mutex_unlock(&lp->lock);
  HPS__SUB(&ep->nconns, 1);
  hps__loop_maybe_finish(lp);
}

static void on_closed(uv_handle_t *h) {
  conn_finish(h->data);
}

static void on_timer_closed(uv_handle_t *h) {
  free(h);
}

/* ---- graceful closes: a deadline, and memory given back ---- */

/* A graceful close began: it joins the loop's list, oldest first, and the
 * timer is armed for it when it is the only one (otherwise the timer is
 * armed for an older one, and re-armed from there). */
static void closing_add(hps__conn *c) {
  hps__loop *lp = c->loop;
  uint64_t now = uv_now(&lp->uv);
  HPS__STORE(&c->t_close, now != 0 ? now : 1);
  c->cl_wq = uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp);
  c->cl_next = NULL;
  c->cl_prev = lp->cl_tail;
  if (lp->cl_tail != NULL)
    lp->cl_tail->cl_next = c;
  else
    lp->cl_head = c;
  lp->cl_tail = c;
  if (c->cl_prev == NULL)
    uv_timer_start(&lp->close_timer, hps__on_close_timer,
                   (uint64_t)lp->ep->opt[HPS_OPT_CLOSE_TIMEOUT], 0);
}

static void closing_del(hps__conn *c) {
  hps__loop *lp = c->loop;
  if (HPS__LOAD(&c->t_close) == 0)
    return;
  HPS__STORE(&c->t_close, 0);
  if (c->cl_prev != NULL)
    c->cl_prev->cl_next = c->cl_next;
  else
    lp->cl_head = c->cl_next;
  if (c->cl_next != NULL)
    c->cl_next->cl_prev = c->cl_prev;
  else
    lp->cl_tail = c->cl_prev;
  c->cl_prev = c->cl_next = NULL;
}

/* The peer of a closing connection took bytes (a write completed, or
 * libuv's write queue shrank since the deadline began: one large write
 * completes only at its end), so the deadline counts from now (it goes to
 * the tail: the list stays in deadline order). */
static void closing_progress(hps__conn *c) {
  closing_del(c);
  closing_add(c);
}

/* Graceful closes that made no progress for HPS_OPT_CLOSE_TIMEOUT are
 * closed by force: their peer does not take what is queued for it. Each run
 * costs the closes it ends, plus one look at the head. */
void hps__on_close_timer(uv_timer_t *t) {
  hps__loop *lp = t->data;
  uint64_t limit = (uint64_t)lp->ep->opt[HPS_OPT_CLOSE_TIMEOUT];
  uint64_t now = uv_now(&lp->uv);
  hps__conn *c;
  while ((c = lp->cl_head) != NULL) {
    uint64_t age = hps__elapsed(now, HPS__LOAD(&c->t_close));
    if (age < limit) {
      uv_timer_start(&lp->close_timer, hps__on_close_timer, limit - age, 0);
      return;
    }
    if (uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) < c->cl_wq) {
      closing_progress(c);
      continue;
    }
    hps__counter_add(lp->ep, HPS_CNT_CLOSE_TIMEOUTS, 1);
    c->close_err = HPS_ECLOSETIMEOUT; /* replaces a protocol error too */
    hps__conn_close(c, c->close_op, HPS_ECLOSETIMEOUT);
  }
}

/* glibc keeps what free() returns in its arenas: after a burst of peers
 * that held megabytes each, the process would stay that large. Closes
 * count what they free; past TRIM_BYTES, once the loop has had
 * TRIM_DELAY_MS to finish the burst, malloc_trim hands the free pages
 * back. At most one trim per TRIM_BYTES freed, and per TRIM_EVERY_MS, per
 * loop: a trim walks the heap, and peers that come and go must not make
 * the loop do that continuously. */
#define TRIM_BYTES ((size_t)32 << 20)
#define TRIM_DELAY_MS 100
#define TRIM_EVERY_MS 1000

void hps__on_trim_timer(uv_timer_t *t) {
  hps__loop *lp = t->data;
  lp->trim_pending = 0;
  lp->freed = 0;
  lp->t_trim = uv_now(&lp->uv);
#if defined(__GLIBC__)
  malloc_trim(0);
#endif
}

static void count_freed(hps__loop *lp, size_t n) {
  uint64_t wait = TRIM_DELAY_MS, since;
  lp->freed += n;
  if (lp->freed < TRIM_BYTES || lp->trim_pending || lp->stopping)
    return;
  since = hps__elapsed(uv_now(&lp->uv), lp->t_trim);
  if (lp->t_trim != 0 && since + TRIM_DELAY_MS < TRIM_EVERY_MS)
    wait = TRIM_EVERY_MS - since;
  lp->trim_pending = 1;
  uv_timer_start(&lp->trim_timer, hps__on_trim_timer, wait, 0);
}

void hps__conn_close(hps__conn *c, int op, int err) {
  if (HPS__IS_UDP(conn_ep(c))) {
    hps__udp_close(c, op, err);
    return;
  }
  if (c->handle_closing) {
    /* A write can take a reset's error off the socket before the read that
     * then sees only the end of the stream; the write's callback runs after
     * that EOF began the close. Report the reset, not a normal close. */
    if (err != 0 && c->close_err == 0 && c->close_op == HPS_OP_RECEIVE) {
      c->close_op = op;
      c->close_err = err;
    }
    return;
  }
  if (c->state != HPS__C_CLOSING || (err != 0 && c->close_err == 0)) {
    c->close_op = op;
    c->close_err = err;
  }
  HPS__STORE(&c->state, HPS__C_CLOSING);
  c->handle_closing = 1;
  closing_del(c);
  if (c->connect_timer) {
    uv_close((uv_handle_t *)c->connect_timer, on_timer_closed);
    c->connect_timer = NULL;
  }
  if (c->pack)
    hps__pack_reset(c->pack);
  /* what the close frees: the queue (cancelled now), held and pull bytes */
  count_freed(c->loop, HPS__LOAD(&c->queued) + c->pcap +
                           (c->held != NULL ? c->held->len : 0));
  drop_held(c); /* closed: the frames a pause held back go with it */
  uv_close((uv_handle_t *)&c->tcp, on_closed);
}

/* A connection whose socket was never made (agent, before its connect). */
static void close_pending(hps__conn *c, int op, int err) {
  c->close_op = op;
  c->close_err = err;
  HPS__STORE(&c->state, HPS__C_CLOSING);
  c->handle_closing = 1;
  conn_finish(c);
}

/* The write queue drained and FIN went out: now close. A close that came
 * first (stop, error) cancelled the shutdown and owns the connection. */
static void on_shutdown(uv_shutdown_t *req, int status) {
  hps__conn *c = req->data;
  free(req);
  if (status == UV_ECANCELED || c->handle_closing)
    return;
  hps__conn_close(c, c->close_op, c->close_err);
}

static void start_shutdown(hps__conn *c) {
  uv_shutdown_t *req;
  if (c->tls != NULL)
    hps__tls_shutdown(c); /* close_notify before FIN */
  if (c->handle_closing)
    return;
  req = malloc(sizeof(*req));
  if (req != NULL) {
    req->data = c;
    if (uv_shutdown(req, (uv_stream_t *)&c->tcp, on_shutdown) == 0)
      return;
    free(req);
  }
  hps__conn_close(c, c->close_op, c->close_err);
}

void hps__conn_disconnect(hps__conn *c, int force, int err) {
  if (c->state == HPS__C_CLOSING) {
    /* A forced disconnect cuts a graceful close short; its CLOSE keeps
     * the op and error of that close (err, if it had none). */
    if (force && hps__closing_soft(c))
      hps__conn_close(c, HPS_OP_CLOSE, err);
    return;
  }
  if (HPS__IS_UDP(conn_ep(c))) {
    hps__udp_close(c, HPS_OP_CLOSE, err);
    return;
  }
  if (c->state == HPS__C_PENDING) {
    close_pending(c, HPS_OP_CLOSE, err);
    return;
  }
  /* Mid-handshake and graceful: after the handshake, behind the sends
   * accepted before it. */
  if (!force && c->tls != NULL && !hps__tls_done(c) &&
      hps__tls_disconnect_later(c, err))
    return;
  if (force || c->state != HPS__C_OPEN ||
      (c->tls != NULL && !hps__tls_done(c))) {
    hps__conn_close(c, HPS_OP_CLOSE, err);
    return;
  }
  hps__conn_graceful(c, HPS_OP_CLOSE, err);
}

void hps__conn_graceful(hps__conn *c, int op, int err) {
  if (c->handle_closing)
    return;
  if (c->state == HPS__C_CLOSING) { /* already: a first error stays */
    if (err != 0 && c->close_err == 0) {
      c->close_op = op;
      c->close_err = err;
    }
    return;
  }
  if (c->state != HPS__C_OPEN || (c->tls != NULL && !hps__tls_done(c))) {
    hps__conn_close(c, op, err); /* nothing accepted can go out yet */
    return;
  }
  c->close_op = op;
  c->close_err = err;
  hps__cork_flush(c); /* sent before the close: goes out before FIN */
  /* the flush failed: closed, or (TLS) closing gracefully already */
  if (c->handle_closing || c->state != HPS__C_OPEN)
    return;
  hps__read_stop(c);
  drop_held(c); /* read, not delivered: reading has ended */
  closing_add(c);
  if (close_behind_posted(c))
    return;
  if (c->file != NULL || c->defer_head != NULL)
    c->graceful = 1; /* shut down when the file and what waits behind end */
  else
    start_shutdown(c);
}

/* The connection becomes CLOSING, under the lock other threads post
 * under: a send either sees it (HPS_ENOTFOUND) or was posted before. Sends
 * posted before and not run yet were accepted (hps_send returned 0): a
 * SHUT command queued behind them starts the shutdown once they have
 * gone the way of every send. 1 if it was queued. */
static int close_behind_posted(hps__conn *c) {
  hps__loop *lp = c->loop;
  hps__wreq *w = NULL;
  uint32_t n;
  uv_mutex_lock(&lp->lock);
  HPS__STORE(&c->state, HPS__C_CLOSING);
  n = c->posted;
  uv_mutex_unlock(&lp->lock);
  if (n == 0 || (w = hps__wreq_new(0)) == NULL)
    return 0; /* (no memory: what was posted is dropped, as on a close) */
  w->kind = HPS__CMD_SHUT;
  w->id = c->id;
  uv_mutex_lock(&lp->lock);
  if (hps__loop_post_locked(lp, w) != 0) { /* stopping: it closes them all */
    free(w);
    w = NULL;
  }
  uv_mutex_unlock(&lp->lock);
  if (w == NULL)
    return 0;
  c->graceful = 2;
  return 1;
}

void hps__conn_shut(hps__conn *c) {
  if (c->graceful != 2 || c->handle_closing)
    return;
  c->graceful = 0;
  if (c->file != NULL || c->defer_head != NULL)
    c->graceful = 1;
  else
    start_shutdown(c);
}

/* ---- frames a pause held back ---- */

static void drop_held(hps__conn *c) {
  free(c->held);
  c->held = NULL;
}

/* Keep the n undelivered bytes at p of the read being delivered: a handler
 * paused the connection. Read buffers are reused, so they are copied; this
 * is the only copy, and only a pause mid-read makes it. */
__attribute__((cold, noinline)) static void hold(hps__conn *c, const char *p,
                                                 size_t n) {
  hps__held *h;
  if (n == 0)
    return; /* paused on the read's last frame: nothing waits */
  h = malloc(sizeof(*h) + n);
  if (h == NULL) {
    hps__conn_close(c, HPS_OP_RECEIVE, HPS_ENOMEM);
    return;
  }
  h->len = n;
  memcpy(h->data, p, n);
  c->held = h;
}

__attribute__((cold, noinline)) static void post_drain(hps__conn *c) {
  hps__loop *lp = c->loop;
  hps__wreq *w;
  if (c->drain_posted)
    return;
  w = hps__wreq_new(0);
  if (w == NULL) {
    hps__conn_close(c, HPS_OP_RECEIVE, HPS_ENOMEM);
    return;
  }
  w->kind = HPS__CMD_DRAIN;
  w->id = c->id;
  uv_mutex_lock(&lp->lock);
  if (hps__loop_post_locked(lp, w) != 0)
    free(w); /* the loop is stopping: it closes the connection */
  else
    c->drain_posted = 1;
  uv_mutex_unlock(&lp->lock);
}

/* Set or clear one reason (HPS__PAUSE_*) to pause reading; reading stops
 * when the first reason is set and starts again when the last is cleared. */
static void set_pause(hps__conn *c, int why, int on) {
  int pause;
  if (c->state == HPS__C_CLOSING)
    return;
  c->pause_why = (uint8_t)(on ? c->pause_why | why : c->pause_why & ~why);
  pause = c->pause_why != 0;
  if (c->paused == pause)
    return;
  c->paused = (uint8_t)pause;
  if (c->state != HPS__C_OPEN)
    return; /* applied once connected */
  /* The TLS handshake reads on; its end applies the pause. */
  if (c->tls != NULL && !hps__tls_done(c))
    return;
  if (pause) {
    hps__read_stop(c);
  } else if (c->held != NULL) {
    /* What the pause held back goes first, from the loop: the caller may
     * be a handler (of this connection or another), which must not be
     * re-entered. Reading starts again once it is delivered. */
    post_drain(c);
  } else {
    start_reading(c);
    if (c->tls != NULL && c->state == HPS__C_OPEN)
      hps__tls_resume(c);
  }
}

void hps__conn_pause(hps__conn *c, int pause) {
  pause = pause != 0;
  if (HPS__IS_UDP(conn_ep(c))) {
    if (c->state != HPS__C_CLOSING && c->paused != pause)
      hps__udp_pause(c, pause);
    return;
  }
  set_pause(c, HPS__PAUSE_APP, pause);
}

/* ---- water marks ----
 *
 * c->queued rises where a write is queued (queue_write, defer,
 * hps__write_cipher: only sends the socket did not take at once) and, for
 * other threads' sends, in hps__post; it falls where a queued write
 * completes (on_write) or a command is taken. A rise over high water is
 * marked at once (and pauses reading, with AUTO_PAUSE, before the next
 * read), but its event waits for a point where no handler runs: the rise
 * may happen inside one (a send from RECEIVE, or from another
 * connection's handler), and an event must not re-enter it. */

static size_t low_water(const hps_endpoint *ep, size_t high) {
  size_t low = (size_t)HPS__LOAD(&ep->opt[HPS_OPT_SEND_LOW_WATER]);
  return low < high ? low : high - 1; /* not below high: high - 1 */
}

/* Queue a WATER command for c, once. */
__attribute__((cold, noinline)) static void post_water(hps__conn *c) {
  hps__loop *lp = c->loop;
  hps__wreq *w;
  if (c->water & HPS__W_POSTED)
    return;
  w = hps__wreq_new(0);
  if (w == NULL) {
    hps__conn_close(c, HPS_OP_SEND, HPS_ENOMEM);
    return;
  }
  w->kind = HPS__CMD_WATER;
  w->id = c->id;
  uv_mutex_lock(&lp->lock);
  if (hps__loop_post_locked(lp, w) != 0)
    free(w); /* the loop is stopping: it closes the connection */
  else
    c->water |= HPS__W_POSTED;
  uv_mutex_unlock(&lp->lock);
}

/* Unsent bytes rose over high water. post: maybe inside a handler, so
 * HIGH_WATER comes from a command. */
__attribute__((cold, noinline)) static void water_rise(hps__conn *c, int post) {
  hps_endpoint *ep = conn_ep(c);
  if (c->state != HPS__C_OPEN || (c->water & HPS__W_ABOVE))
    return;
  c->water |= HPS__W_ABOVE;
  if (ep->opt[HPS_OPT_AUTO_PAUSE]) {
    hps__counter_add(ep, HPS_CNT_AUTO_PAUSES, 1);
    /* We stop reading, not the peer sending: silence counts from here,
     * so it measures a peer that takes nothing of its bytes. */
    HPS__STORE(&c->t_recv, uv_now(&c->loop->uv));
    set_pause(c, HPS__PAUSE_AUTO, 1);
  }
  if (post)
    post_water(c);
}

/* Bytes were queued: c->queued grew. */
static inline void water_added(hps__conn *c) {
  if (!(c->water & HPS__W_ABOVE) &&
      HPS__LOAD(&c->queued) >
          (size_t)HPS__LOAD(&conn_ep(c)->opt[HPS_OPT_SEND_HIGH_WATER]))
    water_rise(c, 1);
}

void hps__water(hps__conn *c) {
  hps_endpoint *ep = conn_ep(c);
  size_t high, q;
  if (c->state != HPS__C_OPEN || c->handle_closing)
    return;
  high = (size_t)HPS__LOAD(&ep->opt[HPS_OPT_SEND_HIGH_WATER]);
  q = HPS__LOAD(&c->queued);
  if (!(c->water & HPS__W_ABOVE) && q > high)
    water_rise(c, 0);
  if ((c->water & (HPS__W_ABOVE | HPS__W_TOLD)) == HPS__W_ABOVE) {
    c->water |= HPS__W_TOLD;
    if (hps__emit(c, HPS_EV_HIGH_WATER, NULL, q) == HPS_HR_ERROR) {
      hps__conn_close(c, HPS_OP_SEND, HPS_EHANDLER);
      return;
    }
    if (c->state != HPS__C_OPEN || c->handle_closing)
      return;
  }
  if (!(c->water & HPS__W_ABOVE))
    return;
  high = (size_t)HPS__LOAD(&ep->opt[HPS_OPT_SEND_HIGH_WATER]);
  q = HPS__LOAD(&c->queued);
  if (q > low_water(ep, high))
    return;
  c->water &= (uint8_t) ~(HPS__W_ABOVE | HPS__W_TOLD);
  /* Resumed before the event: a handler that pauses in it keeps its own
   * pause, and one that sends a lot again starts the next crossing. */
  if (c->pause_why & HPS__PAUSE_AUTO) {
    HPS__STORE(&c->t_recv, uv_now(&c->loop->uv));
    set_pause(c, HPS__PAUSE_AUTO, 0);
  }
  if (c->state != HPS__C_OPEN || c->handle_closing)
    return;
  if (hps__emit(c, HPS_EV_LOW_WATER, NULL, q) == HPS_HR_ERROR)
    hps__conn_close(c, HPS_OP_SEND, HPS_EHANDLER);
}

/* c->queued fell (a queued write completed, deferred bytes went out).
 * direct: no handler runs (a write callback), so the LOW_WATER (and a
 * HIGH_WATER still due before it) is delivered now; else by a command. */
static inline void water_fell(hps__conn *c, int direct) {
  hps_endpoint *ep;
  if (!(c->water & HPS__W_ABOVE) || c->handle_closing)
    return;
  ep = conn_ep(c);
  if (HPS__LOAD(&c->queued) >
      low_water(ep, (size_t)HPS__LOAD(&ep->opt[HPS_OPT_SEND_HIGH_WATER])))
    return;
  if (direct)
    hps__water(c);
  else
    post_water(c);
}

/* ---- read ---- */

/* No buffer: libuv then makes no read(2) of its own and calls on_read with
 * UV_ENOBUFS (uv_alloc_cb's documented contract), and on_read receives
 * itself, with recv(2) into the loop's buffer. recv skips the VFS layer
 * read(2) goes through (vfs_read, fdget_pos, rw_verify_area) and libuv's
 * own read bookkeeping. */
static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  (void)h;
  (void)suggested;
  buf->base = NULL;
  buf->len = 0;
}

static void start_reading(hps__conn *c) {
  int r = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
  /* Already reading is fine: a handler may have paused and resumed the
   * connection inside ACCEPT/CONNECT/HANDSHAKE, before conn_ready starts. */
  if (r != 0 && r != UV_EALREADY)
    hps__conn_close(c, HPS_OP_RECEIVE, r);
}

void hps__start_reading(hps__conn *c) {
  start_reading(c);
}

/* On the connection only: its loop's totals take them when it is
 * released. */
static inline void count_recv(hps__conn *c, size_t n, uint64_t msgs) {
  HPS__BUMP(&c->bytes_recv, n);
  HPS__BUMP(&c->msgs_recv, msgs);
}

/* Pull and pack: the bytes of a read; its messages are counted as they
 * are delivered. */
static inline void count_recv_bytes(hps__conn *c, size_t n) {
  HPS__BUMP(&c->bytes_recv, n);
}

/* on_frame's answers to the decoder: go on, stop (closed), stop and hold
 * the rest (paused). */
#define FRAME_ON 0
#define FRAME_PAUSED 1 /* c->paused itself: no arithmetic per frame */
#define FRAME_CLOSED 2

/* A frame for c's handler: lp->frame_ev, filled in by feed_pack, with
 * this frame's data, len and extra (a handler gets it as const). Only c
 * and the decoder's state stay in registers across the handler's call. */
static inline __attribute__((always_inline)) int
frame(hps__conn *c, const uint8_t *body, size_t len) {
  hps__loop *lp = c->loop;
  hps_endpoint *ep = lp->ep;
  /* the bytes were counted when read: one more message, nothing else */
  HPS__BUMP(&c->msgs_recv, 1);
  if (HPS__LOAD(&ep->events) & HPS_EVBIT(HPS_EV_RECEIVE)) {
    lp->frame_ev.data = body;
    lp->frame_ev.len = len;
    lp->frame_ev.extra = HPS__LOAD(&c->extra);
    if (ep->fn(ep->user, &lp->frame_ev) == HPS_HR_ERROR) {
      hps__conn_graceful(c, HPS_OP_RECEIVE, HPS_EHANDLER);
      return FRAME_CLOSED;
    }
  }
  /* The handler may have closed or paused the connection (a pause and a
   * resume within it leave it going on). paused is 0 or 1. */
  if (c->state != HPS__C_OPEN)
    return FRAME_CLOSED;
  return c->paused;
}

/* A frame completed from earlier feeds: not echoed where it lies. */
static int on_frame(void *ctx, const uint8_t *body, size_t len) {
  hps__conn *c = ctx;
  c->loop->echo_body = NULL;
  return frame(c, body, len);
}

/* A frame whose header lies right before it in the fed bytes. */
static int on_frame_in(void *ctx, const uint8_t *body, size_t len) {
  hps__conn *c = ctx;
  c->loop->echo_body = (const char *)body;
  return frame(c, body, len);
}

/* The decoder stopped on r: an error, or a frame whose handler closed or
 * paused the connection. The fed bytes end at end. */
__attribute__((cold, noinline)) static void
feed_stopped(hps__conn *c, const char *end, int r) {
  const char *rest = (const char *)c->pack->stop;
  if (r < 0) /* the frames before it were delivered: their answers go out */
    hps__conn_graceful(c, HPS_OP_RECEIVE, r);
  else if (r == FRAME_PAUSED)
    hold(c, rest, (size_t)(end - rest));
}

/* Feed bytes to the pack decoder; a pause from a handler stops it after
 * that frame and the rest of the bytes wait in c->held. The bytes stay
 * put until the caller flushes the cork (read buffer, held bytes). */
static void feed_pack(hps__conn *c, const char *base, size_t n) {
  hps__loop *lp = c->loop;
  hps_event *ev = &lp->frame_ev;
  int r;
  ev->type = HPS_EV_RECEIVE;
  ev->op = 0;
  ev->error = 0;
  ev->reserved = 0;
  ev->endpoint = lp->ep;
  ev->conn = c->id;
  ev->fd = -1;
  ev->addr = NULL;
  ev->port = 0;
  r = hps__pack_feed_in(c->pack, (const uint8_t *)base, n, on_frame,
                        on_frame_in, c);
  /* c->loop again, not lp: lp kept live across the frames would push the
   * end of the bytes out of the registers (a spill per frame) */
  c->loop->echo_body = NULL;
  if (__builtin_expect(r != 0, 0))
    feed_stopped(c, base + n, r);
}

__attribute__((cold)) void hps__conn_drain(hps__conn *c) {
  hps__loop *lp = c->loop;
  hps__held *h = c->held;
  c->drain_posted = 0;
  /* Paused again since the resume: the next resume posts another drain.
   * Stopping: the stop closes the connection, and the bytes go with it. */
  if (c->state != HPS__C_OPEN || c->paused || h == NULL || lp->stopping)
    return;
  /* Taken off the connection while delivered: a handler that pauses again
   * makes c->held anew from what is left of h. */
  c->held = NULL;
  lp->corked = c;
  feed_pack(c, h->data, h->len); /* bytes counted when read, frames now */
  hps__cork_flush(c);
  lp->corked = NULL;
  free(h);
  if (c->state != HPS__C_OPEN || c->paused)
    return;
  /* Everything held was delivered and the connection is not paused
   * (a handler's pause and resume left it reading): read again, and with
   * TLS deliver the plaintext that waited behind the held bytes first. */
  start_reading(c);
  if (c->tls != NULL && c->state == HPS__C_OPEN)
    hps__tls_drain(c);
}

static void read_pull(hps__conn *c, const char *data, size_t n) {
  hps__loop *lp = c->loop;
  size_t total = 0;
  int err = 0;
  uv_mutex_lock(&lp->lock);
  if (c->plen + n > (size_t)lp->ep->opt[HPS_OPT_PULL_MAX]) {
    err = HPS_EPULLFULL;
  } else {
    if (c->plen + n > c->pcap) {
      size_t cap = c->pcap ? c->pcap : 4096;
      char *nb;
      while (cap < c->plen + n)
        cap *= 2;
      nb = realloc(c->pbuf, cap);
      if (nb == NULL)
        err = HPS_ENOMEM;
      else {
        c->pbuf = nb;
        c->pcap = cap;
      }
    }
    if (err == 0) {
      memcpy(c->pbuf + c->plen, data, n);
      c->plen += n;
      total = c->plen;
    }
  }
  uv_mutex_unlock(&lp->lock);
  if (err != 0) {
    hps__conn_graceful(c, HPS_OP_RECEIVE, err);
    return;
  }
  count_recv(c, 0, 1);
  if (hps__emit(c, HPS_EV_RECEIVE, NULL, total) == HPS_HR_ERROR)
    hps__conn_graceful(c, HPS_OP_RECEIVE, HPS_EHANDLER);
}

/* One read's bytes (or TLS plaintext) in the receive model. */
static inline __attribute__((always_inline)) void
deliver(hps__conn *c, char *base, size_t nread) {
  switch (conn_ep(c)->opt[HPS_OPT_RECV_MODEL]) {
  case HPS_MODEL_PULL:
    count_recv_bytes(c, nread);
    read_pull(c, base, nread);
    break;
  case HPS_MODEL_PACK:
    count_recv_bytes(c, nread);
    feed_pack(c, base, nread);
    break;
  default: /* push: one read, one message */
    count_recv(c, nread, 1);
    if (hps__emit(c, HPS_EV_RECEIVE, base, nread) == HPS_HR_ERROR)
      hps__conn_graceful(c, HPS_OP_RECEIVE, HPS_EHANDLER);
  }
}

/* Deliver a read (or TLS plaintext) with the handler's sends to this
 * connection gathered into one write after it. Inlined into on_read,
 * the hot caller, whatever gcc's inlining budget says. */
static inline __attribute__((always_inline)) void
deliver_plain(hps__conn *c, char *base, size_t n) {
  c->loop->corked = c;
  deliver(c, base, n);
  hps__cork_flush(c);
  c->loop->corked = NULL;
}

/* The end of the peer's stream (UV_EOF) or an error, as libuv would have
 * reported it: reading has stopped. */
static void read_ended(hps__conn *c, int err) {
  if (c->tls != NULL && c->state == HPS__C_OPEN) {
    hps__tls_on_eof(c, err);
    return;
  }
  if (err == UV_EOF && c->state == HPS__C_OPEN) {
    /* The peer is done sending but may still read (half-close): what is
     * queued or posted for it goes out first, then FIN, then the close
     * (still op RECEIVE, error 0), within HPS_OPT_CLOSE_TIMEOUT. Closing
     * at once would drop those bytes. Nothing waits: CLOSING under the
     * lock, so no send is accepted between the look and the close. */
    hps__loop *lp = c->loop;
    int wait =
        c->tcp.write_queue_size > 0 || c->file != NULL || c->defer_head != NULL;
    if (!wait) {
      uv_mutex_lock(&lp->lock);
      wait = c->posted != 0;
      if (!wait)
        HPS__STORE(&c->state, HPS__C_CLOSING);
      uv_mutex_unlock(&lp->lock);
    }
    if (wait) {
      hps__conn_graceful(c, HPS_OP_RECEIVE, 0);
      return;
    }
    c->close_op = HPS_OP_RECEIVE;
    c->close_err = 0;
  }
  hps__conn_close(c, HPS_OP_RECEIVE, err == UV_EOF ? 0 : err);
}

/* Edge-triggered reading (Linux, libuv 1.x). libuv registers a socket
 * with epoll level-triggered: after every event the kernel puts the socket
 * back on the ready list and polls it again at the next epoll_wait, to
 * find it drained: one more tcp_poll per message (examples/perf/README.md
 * has what it cost).
 *
 * So a connection that has drained its socket HPS__EDGE_AFTER times (a
 * short-lived one never pays the epoll_ctl) is re-registered on libuv's
 * epoll with EPOLLIN | EPOLLRDHUP | EPOLLET, and its io watcher's callback
 * becomes edge_io, which reads itself and hands everything else (POLLOUT,
 * errors) to libuv's own callback. Edge-triggered reading must not stop
 * while the socket has something to report:
 * - read_ready reads until a short read, EAGAIN, EOF or an error, and
 *   goes on past a short read when the event said the peer shut down or
 *   reset (EPOLLRDHUP, POLLHUP, POLLERR): data and FIN that arrive
 *   together make one event, and the FIN would never be reported again.
 *   That is why edge_io takes the event mask, which libuv's read path
 *   does not pass on.
 * - A read that stops with data left (the read budget, or a pause or
 *   hold that left reading on) re-arms the registration, which makes the
 *   kernel report the socket again.
 * The mark is the EPOLLET bit in io_watcher.events, where libuv keeps the
 * mask it registered. Any change libuv makes (pause, resume, a queued
 * write's POLLOUT, close) re-registers the socket level-triggered and
 * overwrites the mask, so the mark is never stale; edge_io reads the same
 * way level-triggered, and a later drained read arms again: after 4, 8,
 * then 16 more drained reads, then never. (A connection with SEND events
 * goes through uv_write, and libuv re-registers the socket after every
 * write it completes; that one stays level-triggered after a few tries
 * rather than pay an epoll_ctl per message.) Stopping to
 * read goes through read_stop, which takes EPOLLRDHUP out of the watched
 * events first (a paused socket whose peer has shut down must not wake
 * the loop level-triggered). TLS connections stay level-triggered: tls.c
 * reads once per poll. */
#if defined(__linux__) && UV_VERSION_MAJOR == 1
#define HPS__EDGE 1
#define HPS__EDGE_AFTER 4u /* drained reads before the first try */
#define HPS__EDGE_TRIES 3  /* then 8, then 16; then never */
#define HPS__EDGE_ARMED 31 /* reads: registered edge-triggered */
#define EDGE_READS(c) ((unsigned)(c)->edge & 31u)
#define EDGE_LOSSES(c) ((unsigned)(c)->edge >> 5)
#define EDGE_SET(c, losses, reads)                                             \
  ((c)->edge = (uint8_t)((losses) << 5 | (reads)))
static void edge_io(uv_loop_t *l, uv__io_t *w, unsigned int events);

static int edge_mod(hps__conn *c, int fd) {
  uv__io_t *w = &c->tcp.io_watcher;
  struct epoll_event e;
  memset(&e, 0, sizeof(e));
  e.events = EPOLLIN | EPOLLRDHUP | EPOLLET;
  e.data.fd = fd; /* what libuv registers: it looks the watcher up by fd */
  if (epoll_ctl(uv_backend_fd(&c->loop->uv), EPOLL_CTL_MOD, fd, &e) != 0)
    return -errno; /* the registration is unchanged */
  if (w->cb != edge_io) {
    c->loop->stream_io = w->cb;
    w->cb = edge_io;
  }
  w->pevents = POLLIN | EPOLLRDHUP;
  w->events = POLLIN | EPOLLRDHUP | EPOLLET;
  EDGE_SET(c, EDGE_LOSSES(c), HPS__EDGE_ARMED);
  return 0;
}

/* The socket was drained: go edge-triggered if it is time. */
static inline void edge_drained(hps__conn *c, int fd) {
  const uv__io_t *w = &c->tcp.io_watcher;
  /* (armed, events has EPOLLET, which pevents never has) */
  if (w->events != w->pevents || (w->pevents & ~EPOLLRDHUP) != POLLIN ||
      c->tls != NULL || c->state != HPS__C_OPEN)
    return; /* already edge-triggered, or not just reading */
  if (EDGE_READS(c) == HPS__EDGE_ARMED) /* and libuv registered it again */
    EDGE_SET(c, EDGE_LOSSES(c) + 1, 0);
  if (EDGE_LOSSES(c) >= HPS__EDGE_TRIES)
    return; /* stays as libuv has it */
  if (EDGE_READS(c) < (HPS__EDGE_AFTER << EDGE_LOSSES(c))) {
    EDGE_SET(c, EDGE_LOSSES(c), EDGE_READS(c) + 1);
    return;
  }
  (void)edge_mod(c, fd); /* failed: it stays level-triggered */
}

/* Reading stopped with data left: have the kernel report it again. */
static inline void edge_undrained(hps__conn *c, int fd) {
  int r;
  if ((c->tcp.io_watcher.events & EPOLLET) == 0 ||
      c->tcp.io_watcher.pevents != (POLLIN | EPOLLRDHUP))
    return;
  r = edge_mod(c, fd);
  if (r != 0)
    hps__conn_close(c, HPS_OP_RECEIVE, r); /* it would stall */
}
#else
static inline void edge_drained(hps__conn *c, int fd) {
  (void)c;
  (void)fd;
}
static inline void edge_undrained(hps__conn *c, int fd) {
  (void)c;
  (void)fd;
}
#endif

/* Stop reading (pause, disconnect, EOF). */
void hps__read_stop(hps__conn *c) {
#ifdef HPS__EDGE
  c->tcp.io_watcher.pevents &= ~(unsigned)EPOLLRDHUP; /* see above */
#endif
  uv_read_stop((uv_stream_t *)&c->tcp);
}

/* The socket is readable: one recv into the loop's buffer, delivered;
 * again while reads fill the buffer (or, `hup`, the event said the peer
 * shut down or reset: that is read too) and the connection still reads,
 * HPS__READ_BUDGET at most (then the next poll comes back for the rest). */
static void read_ready(hps__conn *c, int hup) {
  char *base = c->loop->readbuf;
  int count = HPS__READ_BUDGET / HPS__READ_BUF;
  int fd = conn_fd(c);
  if (fd < 0)
    return;
  while (count-- > 0) {
    ssize_t n;
    do
      n = sock_recv(fd, base, sizeof(c->loop->readbuf));
    while (n < 0 && errno == EINTR);
    if (n <= 0) {
      int err = n == 0 ? UV_EOF : -errno;
      if (err == UV_EAGAIN || err == -EWOULDBLOCK) {
        edge_drained(c, fd);
        return;
      }
      hps__read_stop(c); /* as libuv at EOF or on an error */
      read_ended(c, err);
      return;
    }
    if (c->state != HPS__C_OPEN)
      return;
    /* The loop's cached time: same monotonic clock as now_ms(), no
     * syscall */
    HPS__STORE(&c->t_recv, uv_now(&c->loop->uv));
    if (c->tls != NULL) { /* ciphertext: plaintext comes back through */
      hps__tls_on_read(c, base, (size_t)n); /* hps__deliver_plain */
      return; /* one read per poll: TLS may have stopped reading */
    }
    deliver_plain(c, base, (size_t)n);
    /* A short read emptied the socket (unless the peer shut down: its
     * EOF is read next). Else read on unless a handler closed, paused or
     * disconnected the connection. */
    if (c->state != HPS__C_OPEN || c->paused || c->handle_closing ||
        c->held != NULL)
      break;
    if ((size_t)n < sizeof(c->loop->readbuf) && !hup) {
      edge_drained(c, fd);
      return;
    }
  }
  /* (closing, paused or disconnecting: libuv watches no POLLIN now, and
   * edge_undrained does nothing) */
  edge_undrained(c, fd);
}

/* libuv's read callback (level-triggered, until edge_io takes over) */
static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  (void)nread; /* always UV_ENOBUFS: see on_alloc */
  (void)buf;
  read_ready(s->data, 0);
}

#ifdef HPS__EDGE
/* The io callback of an edge-triggered connection (see above): reading
 * here, with the event mask; the rest (POLLOUT, errors for the write
 * side) to libuv's own callback. */
static void edge_io(uv_loop_t *l, uv__io_t *w, unsigned int events) {
  hps__conn *c = (hps__conn *)((char *)w - offsetof(uv_tcp_t, io_watcher));
  uv__io_cb stream_io = c->loop->stream_io;
  if ((w->pevents & POLLIN) != 0 &&
      (events & (POLLIN | EPOLLRDHUP | POLLERR | POLLHUP)) != 0) {
    read_ready(c, (events & (EPOLLRDHUP | POLLERR | POLLHUP)) != 0);
    if (c->handle_closing || conn_fd(c) < 0)
      return;
  }
  events &= ~(unsigned)(POLLIN | EPOLLRDHUP);
  if (events != 0)
    stream_io(l, w, events);
}
#endif

/* For TLS plaintext (tls.c). */
void hps__deliver_plain(hps__conn *c, char *base, size_t n) {
  deliver_plain(c, base, n);
}

/* ---- becoming open ---- */

static int model_init(hps__conn *c) {
  hps_endpoint *ep = conn_ep(c);
  if (ep->opt[HPS_OPT_RECV_MODEL] != HPS_MODEL_PACK)
    return 0;
  c->pack = malloc(sizeof(*c->pack));
  if (c->pack == NULL)
    return HPS_ENOMEM;
  hps__pack_init(c->pack, (uint32_t)ep->opt[HPS_OPT_PACK_FLAG],
                 (uint32_t)ep->opt[HPS_OPT_PACK_MAX]);
  return 0;
}

/* ACCEPT/CONNECT was delivered and the connection is visible: HANDSHAKE,
 * then reading. */
static void conn_ready(hps__conn *c, int op) {
  int r;
  if (c->state != HPS__C_OPEN)
    return;             /* closed from inside the handler */
  if (c->tls != NULL) { /* HANDSHAKE comes when the TLS handshake is done;
                         * it reads even when paused (pause stops RECEIVE) */
    if (hps__tls_start(c, op) == 0 && c->state == HPS__C_OPEN)
      start_reading(c);
    return;
  }
  r = hps__emit(c, HPS_EV_HANDSHAKE, NULL, 0);
  if (r == HPS_HR_ERROR) {
    hps__conn_close(c, op, HPS_EHANDLER);
    return;
  }
  if (c->state == HPS__C_OPEN && !c->paused)
    start_reading(c);
}

/* Is a the listener's own address, not a wildcard? Then it is the local
 * address of every connection accepted on it, known without a syscall. */
static int addr_specific(const hps__addr *a) {
  if (a->sa.sa_family == AF_INET)
    return a->in4.sin_addr.s_addr != htonl(INADDR_ANY);
  if (a->sa.sa_family == AF_INET6)
    return !IN6_IS_ADDR_UNSPECIFIED(&a->in6.sin6_addr);
  return 0;
}

/* accepted: the peer's address as accept gave it (NULL: connected). */
static void conn_opened(hps__conn *c, const hps__addr *accepted) {
  int len;
  uint64_t t = now_ms();
  hps_endpoint *ep = conn_ep(c);
  hps__addr peer, local;
  len = sizeof(peer);
  if (accepted != NULL)
    peer = *accepted;
  else if (uv_tcp_getpeername(&c->tcp, &peer.sa, &len) != 0)
    peer = c->peer;
  len = sizeof(local);
  if (accepted != NULL && addr_specific(&ep->listen_addr))
    local = ep->listen_addr; /* written before the loops started */
  else if (uv_tcp_getsockname(&c->tcp, &local.sa, &len) != 0)
    memset(&local, 0, sizeof(local));
  uv_mutex_lock(&c->loop->lock); /* other threads read them under it */
  c->peer = peer;
  c->local = local;
  uv_mutex_unlock(&c->loop->lock);
  HPS__STORE(&c->t_open, t);
  HPS__STORE(&c->t_recv, t);
  HPS__STORE(&c->state, HPS__C_OPEN);
}

/* ---- accept (server) ----
 *
 * Each loop accepts on its own listening socket (SO_REUSEPORT when there
 * are several loops), polled with a uv_poll_t and accepted here rather
 * than through uv_listen: libuv's accept loop calls back and tries again
 * at once, without end, when accept fails for lack of descriptors or
 * memory, and its spare-descriptor trick fails once several loops share
 * the process's descriptor table, so an overload made every loop spin and
 * never serve, close or stop again. Here every accept error that is not
 * one connection's own pauses this loop's accepting for a back-off (10 ms,
 * doubling to 1 s; an accept that succeeds resets it), and connections
 * already accepted are served meanwhile, which is what frees descriptors.
 * Out of descriptors, the loop's reserve descriptor is given up for a
 * moment to take one waiting connection and refuse it: its client learns
 * at once instead of waiting in the queue. */
/* accepts per poll: a flood of connections cannot hold the loop */
#define HPS__ACCEPT_BATCH 64
#define HPS__BACKOFF_MIN 10u
#define HPS__BACKOFF_MAX 1000u

static void on_accept_ready(uv_poll_t *p, int status, int events);

static int open_reserve(void) {
  int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    fd = open("/", O_RDONLY | O_CLOEXEC);
  return fd;
}

/* Refuse an accepted socket: closed at once with a reset, so the peer is
 * told and the kernel keeps no state for it. */
static void shed(hps_endpoint *ep, int fd) {
  struct linger l = {1, 0};
  (void)setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
  close(fd);
  hps__counter_add(ep, HPS_CNT_ACCEPT_SHED, 1);
}

static void on_accept_resume(uv_timer_t *t) {
  hps__loop *lp = t->data;
  unsigned ms;
  if (lp->stopping || !lp->has_listener)
    return;
  if (lp->reserve_fd < 0)
    lp->reserve_fd = open_reserve();
  if (uv_poll_start(&lp->accept_poll, UV_READABLE, on_accept_ready) == 0)
    return;
  ms = lp->backoff_ms ? lp->backoff_ms : HPS__BACKOFF_MIN;
  uv_timer_start(&lp->accept_timer, on_accept_resume, ms, 0);
  lp->backoff_ms = ms * 2 > HPS__BACKOFF_MAX ? HPS__BACKOFF_MAX : ms * 2;
}

/* accept failed with err (a libuv error): count it, shed one waiting
 * connection if descriptors ran out, and pause accepting. */
static void accept_failed(hps__loop *lp, int err) {
  hps_endpoint *ep = lp->ep;
  unsigned ms = lp->backoff_ms ? lp->backoff_ms : HPS__BACKOFF_MIN;
  hps__counter_add(ep, HPS_CNT_ACCEPT_ERRORS, 1);
  if ((err == UV_EMFILE || err == UV_ENFILE) && lp->reserve_fd >= 0) {
    int fd;
    close(lp->reserve_fd);
    fd = accept4(lp->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0)
      shed(ep, fd);
    /* -1 when another thread took the room meanwhile: taken again when
     * accepting resumes */
    lp->reserve_fd = open_reserve();
  }
  uv_poll_stop(&lp->accept_poll);
  uv_timer_start(&lp->accept_timer, on_accept_resume, ms, 0);
  lp->backoff_ms = ms * 2 > HPS__BACKOFF_MAX ? HPS__BACKOFF_MAX : ms * 2;
}

/* A socket accept gave us, from peer: a connection, or refused. */
static void accept_one(hps__loop *lp, int fd, const hps__addr *peer) {
  hps_endpoint *ep = lp->ep;
  hps__conn *c;
  int r;
  /* Count first, then check: loops accepting at once cannot both take
   * the last place. */
  if (HPS__ADD(&ep->nconns, 1) >= ep->opt[HPS_OPT_MAX_CONNECTIONS]) {
    HPS__SUB(&ep->nconns, 1);
    shed(ep, fd);
    return;
  }
  uv_mutex_lock(&lp->lock);
  c = hps__conn_new_locked(lp);
  uv_mutex_unlock(&lp->lock);
  if (c == NULL) { /* no memory */
    HPS__SUB(&ep->nconns, 1);
    shed(ep, fd);
    return;
  }
  uv_tcp_init(&lp->uv, &c->tcp);
  c->tcp.data = c;
  if (uv_tcp_open(&c->tcp, fd) != 0) {
    close(fd);
    hps__counter_add(ep, HPS_CNT_ACCEPT_SHED, 1);
    hps__conn_close(c, HPS_OP_ACCEPT, 0); /* never visible: no CLOSE */
    return;
  }
  if (model_init(c) != 0 ||
      (hps__tls_active(ep) && hps__tls_conn_new(c, NULL, NULL) != 0)) {
    hps__counter_add(ep, HPS_CNT_ACCEPT_SHED, 1);
    hps__conn_close(c, HPS_OP_ACCEPT, 0);
    return;
  }
  /* The socket options came with the socket: the listener has them. */
  conn_opened(c, peer);
  c->reported = 1;
  r = hps__emit(c, HPS_EV_ACCEPT, NULL, 0);
  if (r == HPS_HR_ERROR) {
    c->reported = 0; /* refused: it never existed for the application */
    hps__conn_close(c, HPS_OP_ACCEPT, HPS_EHANDLER);
    return;
  }
  conn_ready(c, HPS_OP_ACCEPT);
}

static void on_accept_ready(uv_poll_t *p, int status, int events) {
  hps__loop *lp = p->data;
  int n;
  (void)events;
  if (lp->stopping || !lp->has_listener)
    return;
  if (status < 0) {
    accept_failed(lp, status);
    return;
  }
  for (n = 0; n < HPS__ACCEPT_BATCH; n++) {
    hps__addr peer;
    socklen_t len = sizeof(peer);
    int fd =
        accept4(lp->listen_fd, &peer.sa, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) {
      lp->backoff_ms = 0;
      accept_one(lp, fd, &peer);
      if (lp->stopping || !lp->has_listener)
        return;
      continue;
    }
    switch (errno) {
    case EAGAIN:
#if EWOULDBLOCK != EAGAIN
    case EWOULDBLOCK:
#endif
      return;
    /* That connection's own failure (accept(2): Linux passes pending
     * network errors of the new socket on): the next one may be fine. */
    case EINTR:
    case ECONNABORTED:
    case EPROTO:
    case EPERM:
    case ENETDOWN:
    case ENOPROTOOPT:
    case EHOSTDOWN:
#ifdef ENONET
    case ENONET:
#endif
    case EHOSTUNREACH:
    case EOPNOTSUPP:
    case ENETUNREACH:
      continue;
    default: /* EMFILE, ENFILE, ENOBUFS, ENOMEM, ... */
      accept_failed(lp, -errno);
      return;
    }
  }
}

int hps__listen_start(hps__loop *lp, int fd) {
  int r = uv_poll_init_socket(&lp->uv, &lp->accept_poll, fd);
  if (r != 0) {
    close(fd);
    return r;
  }
  lp->accept_poll.data = lp;
  uv_timer_init(&lp->uv, &lp->accept_timer);
  lp->accept_timer.data = lp;
  lp->listen_fd = fd;
  lp->has_listener = 1;
  lp->backoff_ms = 0;
  lp->reserve_fd = open_reserve(); /* none yet: taken at a resume */
  return uv_poll_start(&lp->accept_poll, UV_READABLE, on_accept_ready);
}

void hps__listen_close(hps__loop *lp) {
  if (!lp->has_listener)
    return;
  lp->has_listener = 0;
  /* Polling stops here (the socket leaves epoll), so it can close now. */
  uv_close((uv_handle_t *)&lp->accept_poll, NULL);
  uv_close((uv_handle_t *)&lp->accept_timer, NULL);
  close(lp->listen_fd);
  lp->listen_fd = -1;
  if (lp->reserve_fd >= 0)
    close(lp->reserve_fd);
  lp->reserve_fd = -1;
}

/* ---- connect (agent, client) ---- */

int hps__connect(hps_endpoint *ep, const char *host, uint16_t port,
                 hps_conn_id *id) {
  hps__addr a;
  hps__loop *lp;
  hps__conn *c;
  hps__wreq *w;
  int r;
  if (host == NULL || host[0] == '\0' || port == 0)
    return HPS_EADDR;
  r = hps__resolve(host, port, &a);
  if (r != 0)
    return r;
  if (HPS__LOAD(&ep->state) != HPS_STATE_STARTED)
    return HPS_ESTATE;
  /* The address, then the host as given (TLS: server name to verify). */
  w = hps__wreq_new(sizeof(a) + strlen(host) + 1);
  if (w == NULL)
    return HPS_ENOMEM;
  w->kind = HPS__CMD_CONNECT;
  memcpy(w->data, &a, sizeof(a));
  memcpy(w->data + sizeof(a), host, strlen(host) + 1);
  if (HPS__ADD(&ep->nconns, 1) >= ep->opt[HPS_OPT_MAX_CONNECTIONS]) {
    HPS__SUB(&ep->nconns, 1);
    free(w);
    return HPS_ELIMIT;
  }
  lp = ep->loops[HPS__ADD(&ep->rr, 1) % (uint32_t)ep->nloops];
  uv_mutex_lock(&lp->lock);
  if (!lp->accepting_cmds) {
    r = HPS_ESTATE; /* stopped since the check above */
  } else if ((c = hps__conn_new_locked(lp)) == NULL) {
    r = HPS_ENOMEM;
  } else {
    HPS__STORE(&c->state, HPS__C_PENDING);
    c->reported = 1;
    c->peer = a;
    w->id = c->id;
    hps__loop_post_locked(lp, w);
    if (ep->role == HPS_TCP_CLIENT)
      HPS__STORE(&ep->client_id, c->id);
    if (id)
      *id = c->id;
  }
  uv_mutex_unlock(&lp->lock);
  if (r != 0) {
    HPS__SUB(&ep->nconns, 1);
    free(w);
    return r;
  }
  return 0;
}

static void on_connect_timeout(uv_timer_t *t) {
  hps__conn_close(t->data, HPS_OP_CONNECT, HPS_ETIMEDOUT);
}

static void on_connect(uv_connect_t *req, int status) {
  hps__conn *c = req->handle->data;
  free(req);
  if (c->state != HPS__C_CONNECTING)
    return; /* closed while connecting */
  if (c->connect_timer) {
    uv_close((uv_handle_t *)c->connect_timer, on_timer_closed);
    c->connect_timer = NULL;
  }
  if (status < 0) {
    hps__conn_close(c, HPS_OP_CONNECT, status);
    return;
  }
  if (model_init(c) != 0) {
    hps__conn_close(c, HPS_OP_CONNECT, HPS_ENOMEM);
    return;
  }
  conn_opened(c, NULL);
  if (hps__emit(c, HPS_EV_CONNECT, NULL, 0) == HPS_HR_ERROR) {
    hps__conn_close(c, HPS_OP_CONNECT, HPS_EHANDLER);
    return;
  }
  conn_ready(c, HPS_OP_CONNECT);
}

void hps__conn_connect(hps__loop *lp, hps__wreq *w) {
  hps_endpoint *ep = lp->ep;
  hps__conn *c;
  uv_connect_t *req;
  hps__addr a;
  int r, tls_err = 0;
  memcpy(&a, w->data, sizeof(a));
  uv_mutex_lock(&lp->lock);
  c = hps__lookup_locked(ep, w->id, NULL);
  uv_mutex_unlock(&lp->lock);
  if (c != NULL && c->state == HPS__C_PENDING && !lp->stopping &&
      hps__tls_active(ep))
    tls_err = hps__tls_conn_new(c, w->data + sizeof(a), &a);
  free(w);
  if (c == NULL || c->state != HPS__C_PENDING)
    return;
  if (lp->stopping) {
    close_pending(c, HPS_OP_CONNECT, HPS_ESTOPPING);
    return;
  }
  if (tls_err != 0) {
    close_pending(c, HPS_OP_CONNECT, tls_err);
    return;
  }
  r = uv_tcp_init_ex(&lp->uv, &c->tcp, a.sa.sa_family);
  if (r != 0) {
    close_pending(c, HPS_OP_CONNECT, r);
    return;
  }
  c->tcp.data = c;
  HPS__STORE(&c->state, HPS__C_CONNECTING);
  if (conn_fd(c) >= 0)
    hps__setup_fd(ep, conn_fd(c));
  if (hps__emit(c, HPS_EV_PREPARE, NULL, 0) == HPS_HR_ERROR) {
    hps__conn_close(c, HPS_OP_CONNECT, HPS_EHANDLER);
    return;
  }
  if (c->state != HPS__C_CONNECTING)
    return;
  req = malloc(sizeof(*req));
  c->connect_timer = malloc(sizeof(*c->connect_timer));
  if (req == NULL || c->connect_timer == NULL) {
    free(req);
    free(c->connect_timer);
    c->connect_timer = NULL;
    hps__conn_close(c, HPS_OP_CONNECT, HPS_ENOMEM);
    return;
  }
  uv_timer_init(&lp->uv, c->connect_timer);
  c->connect_timer->data = c;
  uv_timer_start(c->connect_timer, on_connect_timeout,
                 (uint64_t)ep->opt[HPS_OPT_CONNECT_TIMEOUT], 0);
  r = uv_tcp_connect(req, &c->tcp, &a.sa, on_connect);
  if (r != 0) {
    free(req);
    hps__conn_close(c, HPS_OP_CONNECT, r);
  }
}

/* ---- write ---- */

static int send_events_on(hps__conn *c) {
  return (HPS__LOAD(&conn_ep(c)->events) & HPS_EVBIT(HPS_EV_SEND)) != 0;
}

static void file_next(hps__conn *c);

/* Queue the unwritten part of w with libuv. */
static int queue_write(hps__conn *c, hps__wreq *w) {
  uv_buf_t b = uv_buf_init(w->data + w->off, (unsigned)(w->len - w->off));
  int r;
  if (c->tls != NULL) { /* queued as ciphertext, counted there */
    r = hps__tls_write(c, w);
    if (r != 0) {
      if (w->fd >= 0)
        close(w->fd);
      if (c->file == w)
        c->file = NULL;
      free(w);
      hps__conn_close(c, HPS_OP_SEND, r);
    }
    return r;
  }
  HPS__ADD(&c->queued, w->len - w->off);
  r = uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_write);
  if (r != 0) {
    HPS__SUB(&c->queued, w->len - w->off);
    if (w->fd >= 0)
      close(w->fd);
    if (c->file == w)
      c->file = NULL;
    free(w);
    hps__conn_close(c, HPS_OP_SEND, r);
    return r;
  }
  water_added(c);
  return 0;
}

static void defer(hps__conn *c, hps__wreq *w) {
  w->next = NULL;
  if (c->defer_tail)
    c->defer_tail->next = w;
  else
    c->defer_head = w;
  c->defer_tail = w;
  HPS__ADD(&c->queued, w->len);
  water_added(c);
}

int hps__cork_append(hps__conn *c, const hps_buf *bufs, int n,
                     const uint8_t *hdr, size_t hdrlen, size_t total) {
  hps__loop *lp = c->loop;
  char *p;
  int i;
  if (lp->corked != c || c->file != NULL ||
      lp->cork_len + hdrlen + total > sizeof(lp->cork))
    return 0;
  if (lp->cork_ext != NULL) { /* a second send: gather them after all */
    memcpy(lp->cork, lp->cork_ext, lp->cork_len);
    lp->cork_ext = NULL;
  }
  p = lp->cork + lp->cork_len;
  if (hdrlen != 0) { /* a pack header: a constant-size copy, no call */
    memcpy(p, hdr, HPS__PACK_HEADER);
    p += HPS__PACK_HEADER;
  }
  for (i = 0; i < n; i++) {
    if (bufs[i].len == 0)
      continue; /* base may be NULL */
    memcpy(p, bufs[i].base, bufs[i].len);
    p += bufs[i].len;
  }
  lp->cork_len += hdrlen + total;
  hps__count_sent(c, total, 1);
  return 1;
}

ssize_t hps__try_write(hps__conn *c, const char *p, size_t n) {
  int fd = conn_fd(c);
  ssize_t r;
  if (c->tcp.write_queue_size != 0)
    return UV_EAGAIN;
  if (fd < 0)
    return UV_EBADF;
  do
    r = sock_send(fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
  while (r < 0 && errno == EINTR);
  if (r >= 0)
    return r;
  if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS)
    return UV_EAGAIN;
  return -errno;
}

void hps__cork_flush(hps__conn *c) {
  hps__loop *lp = c->loop;
  size_t n = lp->cork_len;
  const char *base = lp->cork_ext != NULL ? lp->cork_ext : lp->cork;
  ssize_t r = 0;
  hps__wreq *w;
  if (lp->corked != c || n == 0)
    return;
  lp->cork_len = 0;
  lp->cork_ext = NULL;
  if (c->handle_closing)
    return; /* closed by force: the bytes go with it */
  if (c->tls != NULL && c->file == NULL) {
    hps__tls_write_bytes(c, base, n);
    return;
  }
  if (c->file == NULL) { /* UV_EAGAIN while libuv has writes queued */
    r = hps__try_write(c, base, n);
    if (r == (ssize_t)n)
      return;
    if (r < 0 && r != UV_EAGAIN) {
      hps__conn_close(c, HPS_OP_SEND, (int)r);
      return;
    }
    if (r < 0)
      r = 0;
  }
  w = hps__wreq_new(n - (size_t)r);
  if (w == NULL) {
    hps__conn_close(c, HPS_OP_SEND, HPS_ENOMEM);
    return;
  }
  memcpy(w->data, base + r, n - (size_t)r);
  w->kind = HPS__CMD_SEND;
  w->id = c->id;
  if (c->file != NULL)
    defer(c, w);
  else
    queue_write(c, w);
}

/* noinline: with LTO, gcc otherwise inlines it into send_own (ops.c),
 * where a pack echo -- whose sends the cork takes, so it never gets here --
 * then pays a register spill per message. */
__attribute__((noinline)) int hps__conn_write(hps__conn *c, hps__wreq *w) {
  ssize_t r;
  if (HPS__IS_UDP(conn_ep(c)))
    return hps__udp_write(c, w);
  hps__cork_flush(c); /* what the handler sent before goes first */
  /* keep order behind the file being sent, or the TLS handshake */
  if (c->file != NULL || (c->tls != NULL && !hps__tls_done(c))) {
    defer(c, w);
    return 0;
  }
  if (w->kind == HPS__CMD_FILE) {
    if ((w = hps__file_begin(c, w)) == NULL)
      return HPS_EFILE;
    c->file = w;
    hps__count_sent(c, 0, 1);
    file_next(c);
    return 0;
  }
  hps__count_sent(c, w->len - w->skip, 1);
  if (!send_events_on(c) && c->tls == NULL) {
    r = hps__try_write(c, w->data + w->off, w->len - w->off);
    if (r == (ssize_t)(w->len - w->off)) {
      free(w);
      return 0;
    }
    if (r < 0 && r != UV_EAGAIN) {
      free(w);
      hps__conn_close(c, HPS_OP_SEND, (int)r);
      return (int)r;
    }
    if (r > 0)
      w->off += (size_t)r;
  }
  return queue_write(c, w);
}

/* Read and write the next chunk of the file being sent, or finish it. */
static void file_next(hps__conn *c) {
  hps__wreq *w = c->file;
  size_t n = w->cap;
  ssize_t got;
  if (w->file_left > 0) {
    if ((int64_t)n > w->file_left)
      n = (size_t)w->file_left;
    do
      got = pread(w->fd, w->data, n, w->file_off);
    while (got < 0 && errno == EINTR);
    if (got <= 0) {
      c->file = NULL;
      close(w->fd);
      free(w);
      hps__conn_close(c, HPS_OP_SEND, HPS_EFILE);
      return;
    }
    w->file_off += got;
    w->file_left -= got;
    HPS__SUB(&c->file_unsent, (uint64_t)got);
    w->len = (size_t)got;
    w->off = 0;
    hps__count_sent(c, (size_t)got, 0);
    queue_write(c, w);
    return;
  }
  c->file = NULL;
  close(w->fd);
  free(w);
  hps__drain_deferred(c);
}

void hps__drain_deferred(hps__conn *c) {
  hps__wreq *d;
  while (c->file == NULL && (d = c->defer_head) != NULL) {
    c->defer_head = d->next;
    if (c->defer_head == NULL)
      c->defer_tail = NULL;
    HPS__SUB(&c->queued, d->len);
    if (hps__conn_write(c, d) != 0)
      return;
  }
  if (c->graceful == 1 && c->file == NULL) {
    c->graceful = 0;
    start_shutdown(c);
    return;
  }
  /* written at once, with no write callback to notice */
  water_fell(c, 0);
}

static void on_write(uv_write_t *req, int status) {
  hps__wreq *w = (hps__wreq *)req;
  hps__conn *c = req->handle->data;
  HPS__SUB(&c->queued, w->len - w->off);
  if (status >= 0 && HPS__LOAD(&c->t_close) != 0)
    closing_progress(c);
  /* Paused by us, the peer is silent because we do not read: the bytes it
   * takes are its sign of life (the silence timeout). */
  if (status >= 0 && (c->pause_why & HPS__PAUSE_AUTO))
    HPS__STORE(&c->t_recv, uv_now(&c->loop->uv));
  if (w->kind == HPS__CMD_TLSRAW) { /* ciphertext: its plaintext completes */
    hps__wreq *p = w->plain;
    free(w);
    if (p == NULL) {
      if (status < 0 && status != UV_ECANCELED)
        hps__conn_close(c, hps__tls_send_op(c), status);
      else
        water_fell(c, 1);
      return;
    }
    w = p;
  }
  if (status < 0) {
    if (c->file == w)
      c->file = NULL;
    if (w->fd >= 0)
      close(w->fd);
    free(w);
    if (status != UV_ECANCELED)
      hps__conn_close(c, HPS_OP_SEND, status);
    return;
  }
  if (send_events_on(c) && hps__emit(c, HPS_EV_SEND, w->data + w->skip,
                                     w->len - w->skip) == HPS_HR_ERROR) {
    if (c->file == w)
      c->file = NULL;
    if (w->fd >= 0)
      close(w->fd);
    free(w);
    hps__conn_close(c, HPS_OP_SEND, HPS_EHANDLER);
    return;
  }
  if (c->file == w) {
    if (!c->handle_closing)
      file_next(c);
    else {
      c->file = NULL;
      close(w->fd);
      free(w);
    }
  } else {
    free(w);
  }
  water_fell(c, 1);
}

int hps__write_cipher(hps__conn *c, hps__wreq *cw) {
  uv_buf_t b;
  ssize_t r;
  int e;
  if (c->handle_closing) {
    free(cw);
    return UV_EBADF;
  }
  if (cw->plain == NULL) { /* UV_EAGAIN while libuv has writes queued */
    r = hps__try_write(c, cw->data, cw->len);
    if (r == (ssize_t)cw->len) {
      free(cw);
      return 0;
    }
    if (r < 0 && r != UV_EAGAIN) {
      free(cw);
      hps__conn_close(c, hps__tls_send_op(c), (int)r);
      return (int)r;
    }
    if (r > 0)
      cw->off = (size_t)r;
  }
  b = uv_buf_init(cw->data + cw->off, (unsigned)(cw->len - cw->off));
  HPS__ADD(&c->queued, cw->len - cw->off);
  e = uv_write(&cw->req, (uv_stream_t *)&c->tcp, &b, 1, on_write);
  if (e != 0) {
    HPS__SUB(&c->queued, cw->len - cw->off);
    free(cw);
    hps__conn_close(c, hps__tls_send_op(c), e);
    return e;
  }
  water_added(c);
  return 0;
}

/* ---- silence detection ---- */

void hps__on_timer(uv_timer_t *t) {
  hps__loop *lp = t->data;
  uint64_t limit = (uint64_t)lp->ep->opt[HPS_OPT_SILENCE_TIMEOUT];
  uint64_t now = now_ms();
  hps__conn *c;
  /* hps__conn_close runs no handler, so walking under the lock is safe.
   * A graceful close counts as silent too: a peer that neither reads nor
   * sends holds it as long as an open one. */
  uv_mutex_lock(&lp->lock);
  for (c = lp->conns; c != NULL; c = c->next) {
    if ((c->state == HPS__C_OPEN || hps__closing_soft(c)) &&
        hps__elapsed(now, HPS__LOAD(&c->t_recv)) >= limit)
      hps__conn_close(c, HPS_OP_RECEIVE, HPS_ESILENCE);
  }
  uv_mutex_unlock(&lp->lock);
}
