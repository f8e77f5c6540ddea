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
  hps__wreq *w = malloc(sizeof(*w) + len);
  if (w == NULL) return NULL;
  memset(w, 0, sizeof(*w));
  w->len = len;
  w->fd = -1;
  return w;
}

int hps__loop_init(hps__loop *lp, hps_endpoint *ep, int index) {
  int r = uv_loop_init(&lp->uv);
  if (r != 0) return r;
  lp->ep = ep;
  lp->index = index;
  lp->free_slot = UINT32_MAX;
  lp->accepting_cmds = 1;
  lp->listen_fd = lp->reserve_fd = -1;
  r = uv_async_init(&lp->uv, &lp->async, on_async);
  if (r != 0) {
    uv_loop_close(&lp->uv);
    return r;
  }
  lp->async.data = lp;
  uv_timer_init(&lp->uv, &lp->timer);
  lp->timer.data = lp;
  if (uv_mutex_init(&lp->lock) != 0) {
    uv_close((uv_handle_t *)&lp->async, NULL);
    uv_close((uv_handle_t *)&lp->timer, NULL);
    uv_run(&lp->uv, UV_RUN_DEFAULT);
    uv_loop_close(&lp->uv);
    return HPS_ENOMEM;
  }
  lp->uv.data = lp;
  return 0;
}

static void free_wreq(hps__wreq *w) {
  if (w->fd >= 0) close(w->fd);
  free(w);
}

/* Release what a loop holds once its thread has ended (or never ran). */
void hps__loop_free(hps__loop *lp) {
  hps__wreq *w;
  hps__conn *c;
  hps__udp_loop_free(lp);
  if (!lp->handles_closed) { /* never ran: close handles here */
    uv_close((uv_handle_t *)&lp->async, NULL);
    uv_close((uv_handle_t *)&lp->timer, NULL);
    hps__listen_close(lp);
    uv_run(&lp->uv, UV_RUN_DEFAULT);
    uv_loop_close(&lp->uv);
  }
  while ((w = lp->cmd_head) != NULL) {
    lp->cmd_head = w->next;
    free_wreq(w);
  }
  while ((c = lp->pool) != NULL) {
    lp->pool = c->next;
    free(c);
  }
  while ((c = lp->conns) != NULL) { /* only PENDING ones can remain */
    lp->conns = c->next;
    hps__tls_conn_free(c);
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
    if (tick < 10) tick = 10;
    if (tick > 1000) tick = 1000;
    uv_timer_start(&lp->timer, hps__on_timer, tick, tick);
  }
  r = uv_thread_create(&lp->thread, loop_thread, lp);
  if (r == 0) lp->thread_started = 1;
  return r;
}

/* The wake-up is sent under the lock: once a stopping loop has cleared
 * accepting_cmds (under the same lock) nobody touches its async handle, so
 * it can be closed safely. */
int hps__loop_post_locked(hps__loop *lp, hps__wreq *w) {
  if (!lp->accepting_cmds) return HPS_ESTOPPING;
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
  if (li >= (uint32_t)ep->nloops) return NULL;
  lp = ep->loops[li];
  if (out) *out = lp;
  if (si >= lp->nslots) return NULL;
  s = &lp->slots[si];
  if (s->conn == NULL || s->gen != HPS__ID_GEN(id)) return NULL;
  return s->conn;
}

static int grow_slots(hps__loop *lp) {
  uint32_t cap = lp->slot_cap ? lp->slot_cap * 2 : 64;
  hps__slot *n;
  if (lp->slot_cap >= HPS__MAX_SLOTS) return HPS_ELIMIT;
  if (cap > HPS__MAX_SLOTS) cap = HPS__MAX_SLOTS;
  n = realloc(lp->slots, cap * sizeof(*n));
  if (n == NULL) return HPS_ENOMEM;
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
  /* One endpoint-wide counter (never reset by a restart, which makes new
   * slot tables), so no earlier ID is handed out again; 0 is never used. */
  do
    s->gen = HPS__ADD(&lp->ep->gen, 1) + 1;
  while (s->gen == 0);
  s->conn = c;
  c->id = HPS__ID(s->gen, lp->index, si);
  c->loop = lp;
  c->tcp.data = c;
  c->next = lp->conns;
  if (lp->conns) lp->conns->prev = c;
  lp->conns = c;
  lp->nconns++;
  return c;
}

/* Drop the ID (it is never found again) and cache or free the object. */
void hps__conn_release_locked(hps__loop *lp, hps__conn *c) {
  uint32_t si = HPS__ID_SLOT(c->id);
  lp->slots[si].conn = NULL;
  lp->slots[si].next_free = lp->free_slot;
  lp->free_slot = si;
  if (c->prev)
    c->prev->next = c->next;
  else
    lp->conns = c->next;
  if (c->next) c->next->prev = c->prev;
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

static void on_handle_closed(uv_handle_t *h) { (void)h; }

/* Once a stopping loop has no connection left, close its own handles so
 * uv_run returns and the thread ends. */
void hps__loop_maybe_finish(hps__loop *lp) {
  int n;
  if (!lp->stopping || lp->handles_closed) return;
  uv_mutex_lock(&lp->lock);
  n = lp->nconns;
  uv_mutex_unlock(&lp->lock);
  if (n > 0) return;
  lp->handles_closed = 1;
  uv_close((uv_handle_t *)&lp->async, on_handle_closed);
  uv_close((uv_handle_t *)&lp->timer, on_handle_closed);
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
    if (c->state != HPS__C_PENDING) hps__conn_close(c, HPS_OP_CLOSE, 0);
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
  uv_mutex_unlock(&lp->lock);
  if (c == NULL || c->state == HPS__C_CLOSING) {
    free_wreq(w); /* closed meanwhile: its bytes go with it */
    return;
  }
  switch (w->kind) {
  case HPS__CMD_SEND:
  case HPS__CMD_FILE:
    /* what hps__post counted; re-counted by the write */
    HPS__SUB(&c->queued, hps__wreq_queued(lp->ep, w));
    hps__conn_write(c, w);
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
  if (stop) lp->stopping = 1; /* queued connects close with ESTOPPING */
  for (; w != NULL; w = next) {
    next = w->next;
    run_cmd(lp, w);
  }
  if (stop) loop_stop(lp);
}
