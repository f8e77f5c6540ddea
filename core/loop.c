/* loop.c - worker loops: threads, the command queue, the ID slot table and
 * the free connection pool. */
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core.h"

static void on_async(uv_async_t *a);

hps__wreq *hps__wreq_new(size_t len) {
  hps__wreq *w;
  if (len > SIZE_MAX - sizeof(*w))
    return NULL; /* never a wrapped size */
  w = malloc(sizeof(*w) + len);
  if (w == NULL)
    return NULL;
  memset(w, 0, sizeof(*w));
  w->len = len;
  w->fd = -1;
  return w;
}

/* A loop object lives from the endpoint's first start that needs it to
 * hps_free: a call from another thread with a stale ID may reach it at any
 * time (it checks the state, then finds the loop), so a stop or a restart
 * must never free it. Only its run (libuv loop, handles, thread) is made
 * and ended per start; its lock, slot table (whose generations must
 * outlive runs) and free-object pool stay. */
hps__loop *hps__loop_new(hps_endpoint *ep, int index) {
  hps__loop *lp = calloc(1, sizeof(*lp));
  if (lp == NULL)
    return NULL;
  if (uv_mutex_init(&lp->lock) != 0) {
    free(lp);
    return NULL;
  }
  lp->ep = ep;
  lp->index = index;
  lp->free_slot = UINT32_MAX;
  return lp;
}

int hps__loop_init(hps__loop *lp) {
  int r;
  /* accepting_cmds is 0 (new, or ended): no other thread touches the
   * libuv handles while they are made */
  lp->has_listener = 0;
  lp->listen_fd = lp->reserve_fd = -1;
  /* a stop may have closed the trim timer with a trim due */
  lp->freed = 0;
  lp->trim_pending = 0;
  lp->t_trim = 0;
  lp->thread_started = 0;
  lp->stopping = 0;
  lp->handles_closed = 0;
  lp->corked = NULL;
  lp->cork_len = 0;
  lp->cork_ext = NULL;
  lp->echo_body = NULL;
  memset(&lp->udp, 0, sizeof(lp->udp));
  r = uv_loop_init(&lp->uv);
  if (r != 0) {
    lp->handles_closed = 1; /* nothing to close in hps__loop_end */
    return r;
  }
  r = uv_async_init(&lp->uv, &lp->async, on_async);
  if (r != 0) {
    uv_loop_close(&lp->uv);
    lp->handles_closed = 1;
    return r;
  }
  lp->async.data = lp;
  uv_timer_init(&lp->uv, &lp->timer);
  lp->timer.data = lp;
  uv_timer_init(&lp->uv, &lp->close_timer);
  lp->close_timer.data = lp;
  uv_timer_init(&lp->uv, &lp->trim_timer);
  lp->trim_timer.data = lp;
  lp->uv.data = lp;
  uv_mutex_lock(&lp->lock);
  /* the totals count from this start (hps_get_stats) */
  HPS__STORE(&lp->bytes_sent, 0);
  HPS__STORE(&lp->bytes_recv, 0);
  HPS__STORE(&lp->msgs_sent, 0);
  HPS__STORE(&lp->msgs_recv, 0);
  lp->stop_req = 0;
  lp->accepting_cmds = 1;
  lp->in_run = 1;
  uv_mutex_unlock(&lp->lock);
  return 0;
}

static void free_wreq(hps__wreq *w) {
  if (w->fd >= 0)
    close(w->fd);
  free(w);
}

/* End a run once its thread has ended (or never ran): what it left is
 * released; the object stays. */
void hps__loop_end(hps__loop *lp) {
  hps__wreq *w, *cmds;
  if (!lp->in_run)
    return;
  hps__udp_loop_free(lp);
  if (!lp->handles_closed) { /* never ran: close handles here */
    uv_close((uv_handle_t *)&lp->async, NULL);
    uv_close((uv_handle_t *)&lp->timer, NULL);
    uv_close((uv_handle_t *)&lp->close_timer, NULL);
    uv_close((uv_handle_t *)&lp->trim_timer, NULL);
    hps__listen_close(lp);
    uv_run(&lp->uv, UV_RUN_DEFAULT);
    uv_loop_close(&lp->uv);
    lp->handles_closed = 1;
  }
  lp->has_listener = 0;
  uv_mutex_lock(&lp->lock);
  lp->accepting_cmds = 0; /* a loop that never ran was never asked */
  lp->in_run = 0;
  cmds = lp->cmd_head;
  lp->cmd_head = lp->cmd_tail = NULL;
  /* only PENDING ones can remain: their slots go back, generation kept */
  while (lp->conns != NULL)
    hps__conn_release_locked(lp, lp->conns);
  uv_mutex_unlock(&lp->lock);
  while ((w = cmds) != NULL) {
    cmds = w->next;
    free_wreq(w);
  }
}

/* hps_free: the object itself. */
void hps__loop_free(hps__loop *lp) {
  hps__conn *c;
  hps__loop_end(lp);
  while ((c = lp->pool) != NULL) {
    lp->pool = c->next;
    free(c);
  }
  free(lp->slots);
  uv_mutex_destroy(&lp->lock);
  free(lp);
}

static void loop_thread(void *arg) {
  hps__loop *lp = arg;
  sigset_t sigpipe;
  /* A write to a socket the peer reset raises SIGPIPE in the writing thread,
   * which would kill the process. Every socket write happens on a loop
   * thread, so block it here rather than change the process's handlers. */
  sigemptyset(&sigpipe);
  sigaddset(&sigpipe, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &sigpipe, NULL);
  hps__tls_loop = lp;
  uv_run(&lp->uv, UV_RUN_DEFAULT);
  uv_loop_close(&lp->uv);
  lp->handles_closed = 1;
  /* Still this endpoint's loop while SHUTDOWN runs here: hps_stop, hps_wait
   * and hps_free from that handler must not wait for themselves. */
  hps__ep_loop_done(lp->ep);
  hps__tls_loop = NULL;
}

int hps__loop_start(hps__loop *lp) {
  int r;
  uint64_t silence = (uint64_t)lp->ep->opt[HPS_OPT_SILENCE_TIMEOUT];
  if (silence > 0) {
    uint64_t tick = silence / 4;
    if (tick < 10)
      tick = 10;
    if (tick > 1000)
      tick = 1000;
    uv_timer_start(&lp->timer, hps__on_timer, tick, tick);
  }
  r = uv_thread_create(&lp->thread, loop_thread, lp);
  if (r == 0)
    lp->thread_started = 1;
  return r;
}

/* The wake-up is sent under the lock: once a stopping loop has cleared
 * accepting_cmds (under the same lock) nobody touches its async handle, so
 * it can be closed safely. */
int hps__loop_post_locked(hps__loop *lp, hps__wreq *w) {
  if (!lp->accepting_cmds)
    return HPS_ESTOPPING;
  w->next = NULL;
  if (lp->cmd_tail)
    lp->cmd_tail->next = w;
  else
    lp->cmd_head = w;
  lp->cmd_tail = w;
  uv_async_send(&lp->async);
  return 0;
}

void hps__loop_request_stop(hps__loop *lp) {
  uv_mutex_lock(&lp->lock);
  if (lp->accepting_cmds) {
    lp->stop_req = 1;
    lp->accepting_cmds = 0;
    uv_async_send(&lp->async);
  }
  uv_mutex_unlock(&lp->lock);
}

/* ---- slots and connection objects (all under lp->lock) ---- */

hps__conn *hps__lookup_locked(hps_endpoint *ep, hps_conn_id id,
                              hps__loop **out) {
  hps__loop *lp;
  uint32_t li = HPS__ID_LOOP(id), si = HPS__ID_SLOT(id);
  hps__slot *s;
  if (li >= (uint32_t)hps__nloops(ep))
    return NULL;
  lp = hps__loop_at(ep, (int)li);
  if (out)
    *out = lp;
  if (si >= lp->nslots)
    return NULL;
  s = &lp->slots[si];
  if (s->conn == NULL || s->gen != HPS__ID_GEN(id))
    return NULL;
  return s->conn;
}

static int grow_slots(hps__loop *lp) {
  uint32_t cap = lp->slot_cap ? lp->slot_cap * 2 : 64;
  hps__slot *n;
  if (lp->slot_cap >= HPS__MAX_SLOTS)
    return HPS_ELIMIT;
  if (cap > HPS__MAX_SLOTS)
    cap = HPS__MAX_SLOTS;
  n = realloc(lp->slots, cap * sizeof(*n));
  if (n == NULL)
    return HPS_ENOMEM;
  memset(n + lp->slot_cap, 0, (cap - lp->slot_cap) * sizeof(*n));
  lp->slots = n;
  lp->slot_cap = cap;
  return 0;
}

/* A fresh connection with an ID, on the loop's live list. */
hps__conn *hps__conn_new_locked(hps__loop *lp) {
  hps__conn *c;
  uint32_t si;
  hps__slot *s;
  if (lp->free_slot == UINT32_MAX && lp->nslots == lp->slot_cap &&
      grow_slots(lp) != 0)
    return NULL;
  if ((c = lp->pool) != NULL) {
    lp->pool = c->next;
    lp->npool--;
  } else if ((c = malloc(sizeof(*c))) == NULL) {
    return NULL;
  }
  memset(c, 0, sizeof(*c));
  if (lp->free_slot != UINT32_MAX) {
    si = lp->free_slot;
    lp->free_slot = lp->slots[si].next_free;
  } else {
    si = lp->nslots++;
  }
  s = &lp->slots[si];
  /* A slot's generation only grows (the table outlives restarts), and a
   * slot whose generation reached UINT32_MAX is retired, never reused
   * (hps__conn_release_locked): a stale ID can never match a later
   * connection. A fresh slot starts at ep->gen_first (1; tests move it). */
  if (s->gen == 0)
    s->gen = lp->ep->gen_first != 0 ? lp->ep->gen_first : 1;
  else
    s->gen++;
  s->conn = c;
  c->id = HPS__ID(s->gen, lp->index, si);
  c->loop = lp;
  c->tcp.data = c;
  c->next = lp->conns;
  if (lp->conns)
    lp->conns->prev = c;
  lp->conns = c;
  lp->nconns++;
  return c;
}

/* Drop the ID (it is never found again) and cache or free the object. */
void hps__conn_release_locked(hps__loop *lp, hps__conn *c) {
  uint32_t si = HPS__ID_SLOT(c->id);
  lp->slots[si].conn = NULL;
  if (lp->slots[si].gen != UINT32_MAX) { /* else retired: see above */
    lp->slots[si].next_free = lp->free_slot;
    lp->free_slot = si;
  }
  if (c->prev)
    c->prev->next = c->next;
  else
    lp->conns = c->next;
  if (c->next)
    c->next->prev = c->prev;
  lp->nconns--;
  /* its counts into the loop's totals, in the same step as it leaves the
   * list that hps_get_stats walks: counted once at any time */
  HPS__BUMP(&lp->bytes_sent, HPS__LOAD(&c->bytes_sent));
  HPS__BUMP(&lp->bytes_recv, HPS__LOAD(&c->bytes_recv));
  HPS__BUMP(&lp->msgs_sent, HPS__LOAD(&c->msgs_sent));
  HPS__BUMP(&lp->msgs_recv, HPS__LOAD(&c->msgs_recv));
  free(c->pbuf);
  hps__tls_conn_free(c);
  if (c->pack) {
    hps__pack_reset(c->pack);
    free(c->pack);
  }
  if (lp->npool < lp->ep->opt[HPS_OPT_FREE_POOL]) {
    c->next = lp->pool;
    lp->pool = c;
    lp->npool++;
  } else {
    free(c);
  }
}

/* ---- stopping ---- */

static void on_handle_closed(uv_handle_t *h) {
  (void)h;
}

/* Once a stopping loop has no connection left, close its own handles so
 * uv_run returns and the thread ends. */
void hps__loop_maybe_finish(hps__loop *lp) {
  int n;
  if (!lp->stopping || lp->handles_closed)
    return;
  uv_mutex_lock(&lp->lock);
  n = lp->nconns;
  uv_mutex_unlock(&lp->lock);
  if (n > 0)
    return;
  lp->handles_closed = 1;
  uv_close((uv_handle_t *)&lp->async, on_handle_closed);
  uv_close((uv_handle_t *)&lp->timer, on_handle_closed);
  uv_close((uv_handle_t *)&lp->close_timer, on_handle_closed);
  uv_close((uv_handle_t *)&lp->trim_timer, on_handle_closed);
  hps__udp_loop_close(lp);
}

static void loop_stop(hps__loop *lp) {
  hps__conn *c, *next;
  lp->stopping = 1;
  uv_mutex_lock(&lp->lock);
  c = lp->conns; /* accepting_cmds is 0: no connection is added any more */
  uv_mutex_unlock(&lp->lock);
  hps__listen_close(lp); /* during an accept back-off too */
  /* Only this thread removes connections from the list, and only in close
   * callbacks, which do not run inside this walk. */
  for (; c != NULL; c = next) {
    next = c->next;
    if (c->state != HPS__C_PENDING)
      hps__conn_close(c, HPS_OP_CLOSE, 0);
  }
  hps__loop_maybe_finish(lp);
}

/* ---- commands ---- */

static void run_cmd(hps__loop *lp, hps__wreq *w) {
  hps__conn *c;
  if (w->kind == HPS__CMD_CONNECT) {
    hps__conn_connect(lp, w);
    return;
  }
  uv_mutex_lock(&lp->lock);
  c = hps__lookup_locked(lp->ep, w->id, NULL);
  if (c != NULL && c->posted > 0 &&
      (w->kind == HPS__CMD_SEND || w->kind == HPS__CMD_FILE))
    c->posted--;
  uv_mutex_unlock(&lp->lock);
  /* Closed meanwhile: its bytes go with it. A graceful close still takes
   * the sends posted before it began (then its SHUT), and a forced
   * disconnect still cuts it short. */
  if (c == NULL || (c->state == HPS__C_CLOSING &&
                    !(hps__closing_soft(c) &&
                      (w->kind == HPS__CMD_SHUT ||
                       (w->kind == HPS__CMD_DISCONNECT && w->arg) ||
                       (c->graceful == 2 && (w->kind == HPS__CMD_SEND ||
                                             w->kind == HPS__CMD_FILE)))))) {
    if (c != NULL && (w->kind == HPS__CMD_SEND || w->kind == HPS__CMD_FILE))
      HPS__SUB(&c->queued, hps__wreq_queued(lp->ep, w));
    free_wreq(w);
    return;
  }
  switch (w->kind) {
  case HPS__CMD_SEND:
  case HPS__CMD_FILE:
    /* what hps__post counted; re-counted by the write */
    HPS__SUB(&c->queued, hps__wreq_queued(lp->ep, w));
    hps__conn_write(c, w);
    if (!HPS__IS_UDP(lp->ep))
      hps__water_taken(c);
    break;
  case HPS__CMD_DISCONNECT:
    hps__conn_disconnect(c, w->arg, w->err);
    free_wreq(w);
    break;
  case HPS__CMD_PAUSE:
    hps__conn_pause(c, w->arg);
    free_wreq(w);
    break;
  case HPS__CMD_TLSDRAIN:
    hps__tls_drain(c);
    free_wreq(w);
    break;
  case HPS__CMD_DRAIN:
    hps__conn_drain(c);
    free_wreq(w);
    break;
  case HPS__CMD_WATER:
    c->water &= (uint8_t)~HPS__W_POSTED;
    hps__water(c);
    free_wreq(w);
    break;
  case HPS__CMD_SHUT:
    hps__conn_shut(c);
    free_wreq(w);
    break;
  default:
    free_wreq(w);
  }
}

static void on_async(uv_async_t *a) {
  hps__loop *lp = a->data;
  hps__wreq *w, *next;
  int stop;
  uv_mutex_lock(&lp->lock);
  w = lp->cmd_head;
  lp->cmd_head = lp->cmd_tail = NULL;
  stop = lp->stop_req && !lp->stopping;
  uv_mutex_unlock(&lp->lock);
  if (stop)
    lp->stopping = 1; /* queued connects close with ESTOPPING */
  for (; w != NULL; w = next) {
    next = w->next;
    run_cmd(lp, w);
  }
  if (stop)
    loop_stop(lp);
}

void hps__test_gen_first(hps_endpoint *ep, uint32_t gen) {
  ep->gen_first = gen;
}
