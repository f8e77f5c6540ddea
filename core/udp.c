/* udp.c - the UDP roles on loops. A server keeps a connection per peer
 * address (a hash table per loop, one SO_REUSEPORT socket per loop), a
 * client one connected peer, a cast a multicast group or broadcast address,
 * a node sends to anyone. Datagram reads and writes, idle detection and
 * heartbeats. Everything here runs on the loop thread except hps__udp_open
 * (the thread calling hps_start, before the loops run), hps__udp_send /
 * _send_to (any thread: own loop direct, else a command) and membership.
 *
 * A UDP connection has no handle of its own: closing it drops it from the
 * peer table at once and queues it for the reaper (an idle handle), which
 * delivers its CLOSE on the next loop turn -- never inside the caller, which
 * may hold the loop's lock or be a handler. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core.h"

/* A datagram to send is one allocation: a hps__wreq whose data holds
 * [hps__addr destination][datagram] (w->len bytes) and then, aligned, the
 * libuv request that sends it (its data points back at w). A request
 * malloc'd on its own would be small enough for the loop thread's malloc
 * cache (tcache), which keeps it after its free, in place between the
 * freed datagrams: such pinned chunks kept glibc from giving the arena's
 * free space back (~360 KiB per loop after 16 datagrams of 60000 bytes,
 * never returned; test_burst_of_big_sends_leaves_no_heap_behind). */
#define DEST_LEN sizeof(hps__addr)
#define SREQ_ROOM (sizeof(uv_udp_send_t) + _Alignof(uv_udp_send_t) - 1)

static uv_udp_send_t *sreq_of(hps__wreq *w) {
  uintptr_t p = (uintptr_t)(w->data + w->len);
  uintptr_t a = _Alignof(uv_udp_send_t);
  return (uv_udp_send_t *)((p + a - 1) & ~(a - 1));
}

/* Linux values, for C libraries that do not define them. */
#ifndef IP_MULTICAST_ALL
#define IP_MULTICAST_ALL 49
#endif
#ifndef IPV6_MULTICAST_ALL
#define IPV6_MULTICAST_ALL 29
#endif

static hps_endpoint *c_ep(hps__conn *c) {
  return c->loop->ep;
}

static socklen_t addr_len(const hps__addr *a) {
  return a->sa.sa_family == AF_INET6 ? sizeof(a->in6) : sizeof(a->in4);
}

static int addr_port(const hps__addr *a) {
  return ntohs(a->sa.sa_family == AF_INET6 ? a->in6.sin6_port
                                           : a->in4.sin_port);
}

static void addr_text(const hps__addr *a, char *buf, size_t len) {
  buf[0] = '\0';
  if (a->sa.sa_family == AF_INET6)
    uv_ip6_name(&a->in6, buf, len);
  else if (a->sa.sa_family == AF_INET)
    uv_ip4_name(&a->in4, buf, len);
}

static int addr_eq(const hps__addr *a, const hps__addr *b) {
  if (a->sa.sa_family != b->sa.sa_family)
    return 0;
  if (a->sa.sa_family == AF_INET6)
    return a->in6.sin6_port == b->in6.sin6_port &&
           a->in6.sin6_scope_id == b->in6.sin6_scope_id &&
           memcmp(&a->in6.sin6_addr, &b->in6.sin6_addr, 16) == 0;
  return a->in4.sin_port == b->in4.sin_port &&
         a->in4.sin_addr.s_addr == b->in4.sin_addr.s_addr;
}

/* SipHash-1-3 (Aumasson, Bernstein) of a short message under key k: a
 * peer cannot choose addresses that collide without knowing the key, so a
 * lookup stays constant-time whatever addresses datagrams come from. */
#define SIP_ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIP_ROUND                                                              \
  do {                                                                         \
    v0 += v1;                                                                  \
    v1 = SIP_ROTL(v1, 13);                                                     \
    v1 ^= v0;                                                                  \
    v0 = SIP_ROTL(v0, 32);                                                     \
    v2 += v3;                                                                  \
    v3 = SIP_ROTL(v3, 16);                                                     \
    v3 ^= v2;                                                                  \
    v0 += v3;                                                                  \
    v3 = SIP_ROTL(v3, 21);                                                     \
    v3 ^= v0;                                                                  \
    v2 += v1;                                                                  \
    v1 = SIP_ROTL(v1, 17);                                                     \
    v1 ^= v2;                                                                  \
    v2 = SIP_ROTL(v2, 32);                                                     \
  } while (0)

static uint64_t siphash13(const uint64_t k[2], const uint8_t *in, size_t len) {
  uint64_t v0 = 0x736f6d6570736575ull ^ k[0];
  uint64_t v1 = 0x646f72616e646f6dull ^ k[1];
  uint64_t v2 = 0x6c7967656e657261ull ^ k[0];
  uint64_t v3 = 0x7465646279746573ull ^ k[1];
  uint64_t m, b = (uint64_t)len << 56;
  size_t i, full = len & ~(size_t)7;
  for (i = 0; i < full; i += 8) {
    memcpy(&m, in + i, 8);
    v3 ^= m;
    SIP_ROUND;
    v0 ^= m;
  }
  for (i = 0; i < (len & 7); i++)
    b |= (uint64_t)in[full + i] << (8 * i);
  v3 ^= b;
  SIP_ROUND;
  v0 ^= b;
  v2 ^= 0xff;
  SIP_ROUND;
  SIP_ROUND;
  SIP_ROUND;
  return v0 ^ v1 ^ v2 ^ v3;
}

static uint32_t addr_hash(const hps__udp_loop *u, const hps__addr *a) {
  uint8_t m[24];
  uint64_t h;
  if (a->sa.sa_family == AF_INET6) {
    memcpy(m, &a->in6.sin6_addr, 16);
    memcpy(m + 16, &a->in6.sin6_port, 2);
    memcpy(m + 18, &a->in6.sin6_scope_id, 4);
    h = siphash13(u->key, m, 22);
  } else {
    memcpy(m, &a->in4.sin_addr, 4);
    memcpy(m + 4, &a->in4.sin_port, 2);
    h = siphash13(u->key, m, 6);
  }
  return (uint32_t)(h ^ (h >> 32));
}

/* Copy a sockaddr from libuv; 0, or -1 for a family we do not know. */
static int addr_from(hps__addr *a, const struct sockaddr *sa) {
  memset(a, 0, sizeof(*a));
  if (sa->sa_family == AF_INET)
    memcpy(&a->in4, sa, sizeof(a->in4));
  else if (sa->sa_family == AF_INET6)
    memcpy(&a->in6, sa, sizeof(a->in6));
  else
    return -1;
  return 0;
}

/* ---- the server's peer table (loop thread only) ---- */

static hps__conn *table_find(hps__udp_loop *u, const hps__addr *a) {
  hps__conn *c;
  uint32_t n = 0;
  if (u->tcap == 0)
    return NULL;
  for (c = u->table[addr_hash(u, a) & (u->tcap - 1)]; c; c = c->udp_next) {
    n++;
    if (addr_eq(&c->peer, a))
      break;
  }
  if (n > u->max_probes) /* rare: a new longest walk (test hook) */
    HPS__STORE(&u->max_probes, n);
  return c;
}

static int table_insert(hps__udp_loop *u, hps__conn *c) {
  uint32_t i;
  if (u->tcount >= u->tcap) { /* load <= 1: rehash into twice the size */
    uint32_t cap = u->tcap ? u->tcap * 2 : 64;
    hps__conn **t = calloc(cap, sizeof(*t)), *x, *next;
    if (t == NULL)
      return HPS_ENOMEM;
    for (i = 0; i < u->tcap; i++)
      for (x = u->table[i]; x; x = next) {
        uint32_t h = addr_hash(u, &x->peer) & (cap - 1);
        next = x->udp_next;
        x->udp_next = t[h];
        t[h] = x;
      }
    free(u->table);
    u->table = t;
    u->tcap = cap;
  }
  i = addr_hash(u, &c->peer) & (u->tcap - 1);
  c->udp_next = u->table[i];
  u->table[i] = c;
  u->tcount++;
  return 0;
}

static void table_remove(hps__udp_loop *u, hps__conn *c) {
  hps__conn **pp;
  if (u->tcap == 0)
    return;
  for (pp = &u->table[addr_hash(u, &c->peer) & (u->tcap - 1)]; *pp;
       pp = &(*pp)->udp_next)
    if (*pp == c) {
      *pp = c->udp_next;
      c->udp_next = NULL;
      u->tcount--;
      return;
    }
}

/* The unconfirmed peers, oldest first: a full table makes room for a new
 * address by evicting the head. */
static void unc_add(hps__udp_loop *u, hps__conn *c) {
  c->unc_next = NULL;
  c->unc_prev = u->unc_tail;
  if (u->unc_tail)
    u->unc_tail->unc_next = c;
  else
    u->unc_head = c;
  u->unc_tail = c;
}

static void unc_remove(hps__udp_loop *u, hps__conn *c) {
  if (c->udp_peer != HPS__UDP_NEW)
    return;
  if (c->unc_prev)
    c->unc_prev->unc_next = c->unc_next;
  else
    u->unc_head = c->unc_next;
  if (c->unc_next)
    c->unc_next->unc_prev = c->unc_prev;
  else
    u->unc_tail = c->unc_prev;
  c->unc_prev = c->unc_next = NULL;
}

/* ---- events ---- */

/* Deliver an event of c. addr/port: the peer for connection events, the
 * sender / destination of a cast or node datagram. */
static int emit(hps__conn *c, int type, const void *data, size_t len,
                const char *addr, int port, int err) {
  hps_endpoint *ep = c_ep(c);
  hps_event ev;
  int r;
  if (type != HPS_EV_CLOSE && !(HPS__LOAD(&ep->events) & HPS_EVBIT(type)))
    return HPS_HR_OK;
  memset(&ev, 0, sizeof(ev));
  ev.type = type;
  if (type == HPS_EV_CLOSE) {
    ev.op = c->close_op;
    ev.error = c->close_err;
  } else if (err != 0) {
    ev.op = type == HPS_EV_SEND ? HPS_OP_SEND : HPS_OP_RECEIVE;
    ev.error = err;
  }
  ev.endpoint = ep;
  ev.conn = c->id;
  ev.data = data;
  ev.len = len;
  ev.extra = HPS__LOAD(&c->extra);
  ev.fd = -1;
  if (addr == NULL && c->peer_text[0] != '\0') {
    addr = c->peer_text;
    port = addr_port(&c->peer);
  }
  ev.addr = addr;
  ev.port = addr ? port : 0;
  r = ep->fn(ep->user, &ev);
  /* A cast's or node's one connection stands for the socket, not a peer:
   * an ERROR about one datagram (a binding's exception too) must not make
   * the endpoint deaf. CONNECT/HANDSHAKE keep their meaning (refuse). */
  if (r == HPS_HR_ERROR && (type == HPS_EV_RECEIVE || type == HPS_EV_SEND) &&
      (ep->role == HPS_UDP_CAST || ep->role == HPS_UDP_NODE))
    return HPS_HR_OK;
  return r;
}

/* On the connection only: its loop's totals take them when it is
 * released. */
static void count_recv(hps__conn *c, size_t n) {
  HPS__BUMP(&c->bytes_recv, n);
  HPS__BUMP(&c->msgs_recv, 1);
}

/* ---- close ---- */

static void on_reap(uv_idle_t *h);
static void drain_held(hps__loop *lp);
static void on_recv(uv_udp_t *h, ssize_t nread, const uv_buf_t *buf,
                    const struct sockaddr *from, unsigned flags);

void hps__udp_close(hps__conn *c, int op, int err) {
  hps__udp_loop *u = &c->loop->udp;
  if (c->handle_closing)
    return;
  c->close_op = op;
  c->close_err = err;
  HPS__STORE(&c->state, HPS__C_CLOSING);
  c->handle_closing = 1;
  if (c_ep(c)->role == HPS_UDP_SERVER) {
    table_remove(u, c);
    unc_remove(u, c);
    if (c->udp_peer == HPS__UDP_NEW)
      c->udp_peer = HPS__UDP_CONFIRMED; /* out of the list for good */
  }
  c->udp_next = NULL;
  if (u->reap_tail)
    u->reap_tail->udp_next = c;
  else
    u->reap_head = c;
  u->reap_tail = c;
  if (!u->closed)
    uv_idle_start(&u->reaper, on_reap);
}

static void finish(hps__conn *c) {
  hps__loop *lp = c->loop;
  hps_endpoint *ep = lp->ep;
  if (c->reported)
    emit(c, HPS_EV_CLOSE, NULL, 0, NULL, 0, 0);
  if (lp->udp.one == c)
    lp->udp.one = NULL;
  int evicted = c->udp_peer == HPS__UDP_EVICTED;
  uv_mutex_lock(&lp->lock);
  hps__conn_release_locked(lp, c);
  uv_mutex_unlock(&lp->lock);
  if (!evicted) /* else its place went to the address that evicted it */
    HPS__SUB(&ep->nconns, 1);
}

/* The single connection of a client, cast or node becomes visible. */
static void announce(hps__loop *lp) {
  hps__conn *c = lp->udp.one;
  lp->udp.announce = 0;
  if (c == NULL || c->state != HPS__C_OPEN)
    return;
  if (emit(c, HPS_EV_CONNECT, NULL, 0, NULL, 0, 0) == HPS_HR_ERROR) {
    hps__udp_close(c, HPS_OP_CONNECT, HPS_EHANDLER);
    return;
  }
  if (c->state == HPS__C_OPEN &&
      emit(c, HPS_EV_HANDSHAKE, NULL, 0, NULL, 0, 0) == HPS_HR_ERROR)
    hps__udp_close(c, HPS_OP_CONNECT, HPS_EHANDLER);
}

static void on_reap(uv_idle_t *h) {
  hps__loop *lp = h->data;
  hps__udp_loop *u = &lp->udp;
  hps__conn *c;
  if (u->announce)
    announce(lp);
  if (u->drain)
    drain_held(lp);
  /* A CLOSE handler may close more: they join the list's tail. */
  while ((c = u->reap_head) != NULL) {
    u->reap_head = c->udp_next;
    if (u->reap_head == NULL)
      u->reap_tail = NULL;
    finish(c);
  }
  if (!u->closed && !u->announce && !u->drain)
    uv_idle_stop(&u->reaper);
  hps__loop_maybe_finish(lp);
}

/* ---- receive ---- */

static void deliver(hps__conn *c, const char *data, size_t n, const char *addr,
                    int port) {
  count_recv(c, n);
  if (emit(c, HPS_EV_RECEIVE, data, n, addr, port, 0) == HPS_HR_ERROR)
    hps__udp_close(c, HPS_OP_RECEIVE, HPS_EHANDLER);
}

static const char empty_dgram[1];

/* An empty datagram is a heartbeat: a server answers it. */
static void heartbeat(hps__conn *c, const struct sockaddr *to) {
  uv_buf_t b = uv_buf_init((char *)empty_dgram, 0);
  if (uv_udp_try_send(&c->loop->udp.sock, &b, 1, to) >= 0)
    HPS__STORE(&c->t_sent, uv_now(&c->loop->uv));
}

static hps__conn *server_accept(hps__loop *lp, const hps__addr *a) {
  hps_endpoint *ep = lp->ep;
  hps__udp_loop *u = &lp->udp;
  uint64_t now = uv_now(&lp->uv);
  hps__conn *c;
  /* Count first, then check: loops accepting at once cannot both take
   * the last place. */
  if (HPS__ADD(&ep->nconns, 1) >= ep->opt[HPS_OPT_MAX_CONNECTIONS]) {
    hps__conn *old = u->unc_head;
    HPS__SUB(&ep->nconns, 1);
    if (old == NULL) { /* every peer of this loop is confirmed */
      hps__counter_add(ep, HPS_CNT_UDP_PEERS_REFUSED, 1);
      return NULL; /* the datagram is dropped */
    }
    /* A flood of new (perhaps spoofed) addresses only ever displaces
     * peers that sent one datagram, never one that sent more: the oldest
     * of those gives its place to this address. */
    hps__udp_close(old, HPS_OP_CLOSE, HPS_ELIMIT);
    old->udp_peer = HPS__UDP_EVICTED;
    hps__counter_add(ep, HPS_CNT_UDP_PEERS_EVICTED, 1);
  }
  uv_mutex_lock(&lp->lock);
  c = hps__conn_new_locked(lp);
  if (c != NULL) {
    c->peer = *a;
    c->local = ep->listen_addr;
  }
  uv_mutex_unlock(&lp->lock);
  if (c == NULL) {
    HPS__SUB(&ep->nconns, 1);
    return NULL;
  }
  addr_text(a, c->peer_text, sizeof(c->peer_text));
  HPS__STORE(&c->t_open, now);
  HPS__STORE(&c->t_recv, now);
  HPS__STORE(&c->state, HPS__C_OPEN);
  if (table_insert(u, c) != 0) {
    hps__udp_close(c, HPS_OP_ACCEPT, HPS_ENOMEM); /* not reported: silent */
    return NULL;
  }
  c->udp_peer = HPS__UDP_NEW;
  unc_add(u, c);
  c->reported = 1;
  if (emit(c, HPS_EV_ACCEPT, NULL, 0, NULL, 0, 0) == HPS_HR_ERROR) {
    c->reported = 0; /* refused: it never existed for the application */
    hps__udp_close(c, HPS_OP_ACCEPT, HPS_EHANDLER);
    return NULL;
  }
  if (c->state == HPS__C_OPEN &&
      emit(c, HPS_EV_HANDSHAKE, NULL, 0, NULL, 0, 0) == HPS_HR_ERROR)
    hps__udp_close(c, HPS_OP_ACCEPT, HPS_EHANDLER);
  return c;
}

static void server_recv(hps__loop *lp, const hps__addr *a, const char *data,
                        size_t n, int big) {
  hps__conn *c = table_find(&lp->udp, a);
  if (c == NULL) {
    if ((c = server_accept(lp, a)) == NULL)
      return;
  } else if (c->udp_peer == HPS__UDP_NEW) { /* its second datagram */
    unc_remove(&lp->udp, c);
    c->udp_peer = HPS__UDP_CONFIRMED;
  }
  if (c->state != HPS__C_OPEN)
    return;
  HPS__STORE(&c->t_recv, uv_now(&lp->uv));
  if (big) {
    hps__udp_close(c, HPS_OP_RECEIVE, HPS_EDGRAMSIZE);
    return;
  }
  if (n == 0) {
    heartbeat(c, &c->peer.sa);
    return;
  }
  if (c->paused)
    return; /* a paused peer's datagrams are dropped */
  deliver(c, data, n, NULL, 0);
}

/* Batched receive. libuv (UV_UDP_RECVMMSG) cuts the buffer the alloc
 * callback hands out into 64 KiB chunks, one datagram each, fills up to 20
 * of them with one recvmmsg and calls on_recv once per datagram
 * (UV_UDP_MMSG_CHUNK, buf inside its chunk) and then once more with
 * UV_UDP_MMSG_FREE. A chunk is larger than the largest max datagram
 * (65527), so a datagram over the max still shows whole in nread and is
 * reported, never delivered cut; one past 64 KiB would come with
 * UV_UDP_PARTIAL, reported the same way.
 *
 * Every role batches. A server drops a paused peer's datagrams anyway. A
 * client, cast or node pauses by not reading its socket, so the kernel
 * keeps what arrives; a pause from a handler in the middle of a batch must
 * not lose the datagrams already read with it. So the pause does not stop
 * reading at once (libuv would drop the rest of the batch): the rest is
 * held in the batch buffer, reading stops when the batch ends, and the
 * resume delivers the held datagrams (from the reaper, in order, before
 * any new one) and only then reads again. Nothing is read into the buffer
 * while it holds any. */
#define DGRAM_CHUNK (64 * 1024) /* libuv's UV__UDP_DGRAM_MAXSIZE */
/* Datagrams per recvmmsg, at most 20. libuv reads at most 32 datagrams
 * per wake-up: 16 is two full batches; 8, 16 and 20 measured alike. */
#ifndef HPS__UDP_BATCH
#define HPS__UDP_BATCH 16
#endif
#define BATCH_DGRAMS HPS__UDP_BATCH
/* A datagram dirties only the pages it lands in, so a batch keeps about
 * chunks x max datagram resident: fewer chunks for big max datagrams keep
 * that under this (16 x 4 KiB pages at the default 1432; 4 at 65527). */
#define BATCH_RESIDENT (256 * 1024)

typedef struct udp_held {
  hps__addr from;
  const char *data;
  size_t len;
  int big;
} udp_held;

struct hps__udp_batch {
  int chunks;      /* datagrams per read, 2..BATCH_DGRAMS */
  int nheld, next; /* held[next..nheld) are due */
  udp_held held[BATCH_DGRAMS];
  char *buf; /* chunks x DGRAM_CHUNK */
};

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  hps__loop *lp = h->data;
  (void)suggested;
  if (lp->udp.batch != NULL) {
    buf->base = lp->udp.batch->buf;
    buf->len = (size_t)lp->udp.batch->chunks * DGRAM_CHUNK;
    return;
  }
  /* One byte more than the max: a datagram that fills it is too big, and
   * is reported instead of being delivered cut. */
  buf->base = lp->readbuf;
  buf->len = (size_t)lp->ep->opt[HPS_OPT_UDP_MAX_DATAGRAM] + 1;
}

/* A datagram for the single connection c of a client, cast or node. */
static void single_recv(hps__loop *lp, hps__conn *c, const hps__addr *a,
                        const char *data, size_t n, int big) {
  hps_endpoint *ep = lp->ep;
  char text[INET6_ADDRSTRLEN];
  HPS__STORE(&c->t_recv, uv_now(&lp->uv));
  if (ep->role == HPS_UDP_CLIENT) {
    if (big)
      hps__udp_close(c, HPS_OP_RECEIVE, HPS_EDGRAMSIZE);
    else if (n > 0)
      deliver(c, data, n, NULL, 0);
    return; /* an empty one answered a heartbeat */
  }
  addr_text(a, text, sizeof(text));
  if (big) {
    if (emit(c, HPS_EV_RECEIVE, NULL, 0, text, addr_port(a), HPS_EDGRAMSIZE) ==
        HPS_HR_ERROR)
      hps__udp_close(c, HPS_OP_RECEIVE, HPS_EHANDLER);
    return;
  }
  deliver(c, data, n, text, addr_port(a));
}

static void start_recv(hps__loop *lp) {
  hps__udp_loop *u = &lp->udp;
  /* Not while held datagrams wait in the batch buffer: a read would
   * overwrite them. */
  if (u->has_sock && !u->closed && (u->batch == NULL || u->batch->nheld == 0))
    uv_udp_recv_start(&u->sock, on_alloc, on_recv);
}

static void stop_recv(hps__loop *lp) {
  hps__udp_loop *u = &lp->udp;
  if (u->has_sock && !u->closed)
    uv_udp_recv_stop(&u->sock);
}

/* The reaper delivers the held datagrams on its next turn. */
static void drain_later(hps__loop *lp) {
  hps__udp_loop *u = &lp->udp;
  u->drain = 1;
  if (!u->closed)
    uv_idle_start(&u->reaper, on_reap);
}

/* The last callback of a batch: a pause during it stops reading now. */
static void batch_end(hps__loop *lp) {
  hps__udp_loop *u = &lp->udp;
  hps__udp_batch *b = u->batch;
  hps__conn *c = u->one;
  u->in_batch = 0;
  if (lp->ep->role == HPS_UDP_SERVER)
    return;
  if (b->nheld > 0 && (c == NULL || c->state != HPS__C_OPEN || lp->stopping))
    b->nheld = b->next = 0; /* closed meanwhile: they go with it */
  if (b->nheld > 0 || (c != NULL && c->paused))
    stop_recv(lp);
  if (b->nheld > 0 && !c->paused)
    drain_later(lp); /* paused and resumed within the batch */
}

/* Reaper: deliver the held datagrams until a handler pauses again; then
 * read again. */
static void drain_held(hps__loop *lp) {
  hps__udp_loop *u = &lp->udp;
  hps__udp_batch *b = u->batch;
  hps__conn *c = u->one;
  u->drain = 0;
  if (b == NULL)
    return;
  while (b->next < b->nheld) {
    udp_held *h;
    if (lp->stopping || c == NULL || c->state != HPS__C_OPEN)
      break;
    if (c->paused)
      return; /* the rest waits for the next resume */
    h = &b->held[b->next++];
    single_recv(lp, c, &h->from, h->data, h->len, h->big);
  }
  b->nheld = b->next = 0;
  if (!lp->stopping && (c == NULL || !c->paused))
    start_recv(lp);
}

static void on_recv(uv_udp_t *h, ssize_t nread, const uv_buf_t *buf,
                    const struct sockaddr *from, unsigned flags) {
  hps__loop *lp = h->data;
  hps_endpoint *ep = lp->ep;
  hps__udp_loop *u = &lp->udp;
  size_t max = (size_t)ep->opt[HPS_OPT_UDP_MAX_DATAGRAM];
  hps__conn *c = u->one;
  hps__addr a;
  int big;
  if (flags & UV_UDP_MMSG_FREE) {
    batch_end(lp);
    return;
  }
  if (flags & UV_UDP_MMSG_CHUNK)
    u->in_batch = 1; /* until the FREE callback */
  if (lp->stopping)
    return;
  if (u->announce)
    announce(lp);
  if (nread < 0) {
    /* Only a connected socket hears of ICMP errors (port unreachable). */
    if (ep->role == HPS_UDP_CLIENT && c != NULL && c->state == HPS__C_OPEN)
      hps__udp_close(c, HPS_OP_RECEIVE, (int)nread);
    return;
  }
  if (from == NULL || addr_from(&a, from) != 0)
    return; /* nothing more */
  big = (size_t)nread > max || (flags & UV_UDP_PARTIAL) != 0;
  if (ep->role == HPS_UDP_SERVER) {
    server_recv(lp, &a, buf->base, (size_t)nread, big);
    return;
  }
  if (c == NULL || c->state != HPS__C_OPEN)
    return;
  if ((flags & UV_UDP_MMSG_CHUNK) && (c->paused || u->batch->nheld > 0)) {
    /* paused in this batch: held, in order, for the resume */
    udp_held *hd;
    if (u->batch->nheld == u->batch->chunks)
      return; /* cannot happen: one batch is at most that many */
    hd = &u->batch->held[u->batch->nheld++];
    hd->from = a;
    hd->data = buf->base;
    hd->len = (size_t)nread;
    hd->big = big;
    return;
  }
  single_recv(lp, c, &a, buf->base, (size_t)nread, big);
}

void hps__udp_pause(hps__conn *c, int pause) {
  hps__loop *lp = c->loop;
  hps__udp_loop *u = &lp->udp;
  c->paused = (uint8_t)pause;
  /* A server's peers share the socket: their datagrams are dropped while
   * paused (server_recv). The single roles stop reading; in a batch, when
   * it ends (batch_end). */
  if (c_ep(c)->role == HPS_UDP_SERVER || !u->has_sock || u->closed)
    return;
  if (pause) {
    if (!u->in_batch)
      stop_recv(lp);
  } else if (!lp->stopping) {
    /* idle detection counts from the resume, not from the last datagram
     * before the pause */
    HPS__STORE(&c->t_recv, uv_now(&lp->uv));
    if (u->in_batch)
      return; /* batch_end sees to what this batch held */
    if (u->batch != NULL && u->batch->nheld > 0)
      drain_later(lp);
    else
      start_recv(lp);
  }
}

/* ---- send ---- */

static int send_events_on(hps_endpoint *ep) {
  return (HPS__LOAD(&ep->events) & HPS_EVBIT(HPS_EV_SEND)) != 0;
}

/* Where a datagram of c goes: NULL on a connected client socket. */
static const struct sockaddr *dest_of(hps__conn *c, const hps__addr *to) {
  if (to != NULL && to->sa.sa_family != 0)
    return &to->sa;
  if (c_ep(c)->role == HPS_UDP_CLIENT)
    return NULL;
  return &c->peer.sa;
}

/* A datagram failed. Server and client connections close; a cast or node
 * reports it (async) or only returns it (sync). */
static int send_failed(hps__conn *c, const hps__addr *to, const void *data,
                       size_t len, int err, int sync) {
  hps_endpoint *ep = c_ep(c);
  char text[INET6_ADDRSTRLEN];
  const struct sockaddr *d;
  hps__addr da;
  if (ep->role == HPS_UDP_SERVER || ep->role == HPS_UDP_CLIENT) {
    hps__udp_close(c, HPS_OP_SEND, err);
    return err;
  }
  if (sync)
    return err;
  d = dest_of(c, to);
  if (d == NULL || addr_from(&da, d) != 0)
    return err;
  addr_text(&da, text, sizeof(text));
  if (emit(c, HPS_EV_SEND, data, len, text, addr_port(&da), err) ==
      HPS_HR_ERROR)
    hps__udp_close(c, HPS_OP_SEND, HPS_EHANDLER);
  return err;
}

static void on_sent(uv_udp_send_t *req, int status) {
  hps__wreq *w = req->data;
  hps__loop *lp = req->handle->data;
  hps__conn *c;
  hps__addr to;
  size_t len = w->len - DEST_LEN;
  memcpy(&to, w->data, sizeof(to));
  uv_mutex_lock(&lp->lock);
  c = hps__lookup_locked(lp->ep, w->id, NULL);
  uv_mutex_unlock(&lp->lock);
  if (c != NULL)
    HPS__SUB(&c->queued, len);
  if (c != NULL && c->state == HPS__C_OPEN) {
    if (status < 0 && status != UV_ECANCELED) {
      send_failed(c, &to, w->data + DEST_LEN, len, status, 0);
    } else if (status >= 0 && send_events_on(lp->ep)) {
      char text[INET6_ADDRSTRLEN];
      const char *addr = NULL;
      int port = 0;
      if (to.sa.sa_family != 0) {
        addr_text(&to, text, sizeof(text));
        addr = text;
        port = addr_port(&to);
      }
      if (emit(c, HPS_EV_SEND, w->data + DEST_LEN, len, addr, port, 0) ==
          HPS_HR_ERROR)
        hps__udp_close(c, HPS_OP_SEND, HPS_EHANDLER);
    }
  }
  free(w);
}

/* Send the datagram of w (owned) on c's loop. */
static int udp_write(hps__conn *c, hps__wreq *w, int sync) {
  hps__loop *lp = c->loop;
  hps__udp_loop *u = &lp->udp;
  hps__addr to;
  const struct sockaddr *d;
  size_t len = w->len - DEST_LEN;
  uv_buf_t b = uv_buf_init(w->data + DEST_LEN, (unsigned)len);
  uv_udp_send_t *s;
  int r;
  memcpy(&to, w->data, sizeof(to));
  d = dest_of(c, &to);
  if (d == NULL && c_ep(c)->role != HPS_UDP_CLIENT) {
    free(w);
    return HPS_EROLE;
  }
  if (!u->has_sock || u->closed) {
    free(w);
    return HPS_ENOTFOUND;
  }
  hps__count_sent(c, len, 1);
  HPS__STORE(&c->t_sent, uv_now(&lp->uv));
  if (!send_events_on(lp->ep)) {
    r = uv_udp_try_send(&u->sock, &b, 1, d);
    if (r >= 0) {
      free(w);
      return 0;
    }
    if (r != UV_EAGAIN) {
      r = send_failed(c, &to, w->data + DEST_LEN, len, r, sync);
      free(w);
      return r;
    }
  }
  s = sreq_of(w);
  s->data = w;
  HPS__ADD(&c->queued, len);
  r = uv_udp_send(s, &u->sock, &b, 1, d, on_sent);
  if (r != 0) {
    HPS__SUB(&c->queued, len);
    r = send_failed(c, &to, w->data + DEST_LEN, len, r, sync);
    free(w);
    return r;
  }
  return 0;
}

int hps__udp_write(hps__conn *c, hps__wreq *w) {
  return udp_write(c, w, 0);
}

static int on_owner(hps_endpoint *ep, hps_conn_id id) {
  hps__loop *lp = hps__tls_loop;
  uint32_t li = HPS__ID_LOOP(id);
  return lp != NULL && lp->ep == ep && li < (uint32_t)hps__nloops(ep) &&
         hps__loop_at(ep, (int)li) == lp;
}

/* On the owning loop: the open connection, or NULL with *err set. */
static hps__conn *own_conn(hps_endpoint *ep, hps_conn_id id, int *err) {
  hps__loop *lp = hps__tls_loop;
  hps__conn *c;
  int gone;
  uv_mutex_lock(&lp->lock);
  c = hps__lookup_locked(ep, id, NULL);
  gone = c == NULL || c->state != HPS__C_OPEN || HPS__LOAD(&c->doomed);
  uv_mutex_unlock(&lp->lock);
  if (gone) {
    *err = HPS_ENOTFOUND;
    return NULL;
  }
  return c;
}

int hps__udp_send(hps_endpoint *ep, hps_conn_id id, const hps__addr *to,
                  const hps_buf *bufs, int n) {
  size_t total = 0, off = DEST_LEN;
  hps__wreq *w;
  int i, err = 0, s;
  for (i = 0; i < n; i++)
    total += bufs[i].len;
  if (total == 0)
    return HPS_EINVAL;
  if (total > (size_t)ep->opt[HPS_OPT_UDP_MAX_DATAGRAM])
    return HPS_EDGRAMSIZE;
  if (to == NULL && ep->role == HPS_UDP_NODE)
    return HPS_EROLE;
  s = HPS__LOAD(&ep->state);
  if (s != HPS_STATE_STARTED && s != HPS_STATE_STOPPING)
    return HPS_ENOTFOUND;
  if (id == 0 && HPS__SINGLE(ep))
    id = HPS__LOAD(&ep->client_id);
  if (on_owner(ep, id)) {
    hps__conn *c = own_conn(ep, id, &err);
    if (c == NULL)
      return err;
    if (HPS__LOAD(&c->queued) + total > (size_t)ep->opt[HPS_OPT_MAX_SEND_QUEUE])
      return HPS_ESENDQ;
    /* The fast path: straight from the caller's buffers, no copy. */
    if (!send_events_on(ep) && n <= 8 && c->loop->udp.has_sock &&
        !c->loop->udp.closed) {
      uv_buf_t b[8];
      const struct sockaddr *d = dest_of(c, to);
      int r;
      for (i = 0; i < n; i++)
        b[i] = uv_buf_init((char *)bufs[i].base, (unsigned)bufs[i].len);
      r = uv_udp_try_send(&c->loop->udp.sock, b, (unsigned)n, d);
      if (r >= 0) {
        hps__count_sent(c, total, 1);
        HPS__STORE(&c->t_sent, uv_now(&c->loop->uv));
        return 0;
      }
      if (r != UV_EAGAIN)
        return send_failed(c, to, NULL, total, r, 1);
    }
  }
  w = hps__wreq_new(DEST_LEN + total + SREQ_ROOM);
  if (w == NULL)
    return HPS_ENOMEM;
  w->len = DEST_LEN + total; /* the request's room follows (sreq_of) */
  w->kind = HPS__CMD_SEND;
  w->id = id;
  w->skip = DEST_LEN;
  if (to != NULL)
    memcpy(w->data, to, sizeof(*to));
  else
    memset(w->data, 0, DEST_LEN);
  for (i = 0; i < n; i++) {
    if (bufs[i].len == 0)
      continue;
    memcpy(w->data + off, bufs[i].base, bufs[i].len);
    off += bufs[i].len;
  }
  if (on_owner(ep, id)) {
    hps__conn *c = own_conn(ep, id, &err);
    if (c == NULL) {
      free(w);
      return err;
    }
    return udp_write(c, w, 1);
  }
  /* Counted as on the loop thread: the datagram, not its destination.
   * A send refused with HPS_ESENDQ has been copied first: the connection
   * can only be looked at under its loop's lock (its loop may free or
   * reuse it at any time), so checking before the copy would cost every
   * accepted send a second lock and lookup; a refusal is the rare case. */
  return hps__post(ep, w, hps__wreq_queued(ep, w));
}

int hps__udp_send_to(hps_endpoint *ep, const char *host, uint16_t port,
                     const hps_buf *bufs, int n) {
  hps__addr a;
  int s = HPS__LOAD(&ep->state), r;
  if (host == NULL || host[0] == '\0' || port == 0)
    return HPS_EADDR;
  if ((r = hps__resolve(host, port, &a)) != 0)
    return r;
  if (s != HPS_STATE_STARTED && s != HPS_STATE_STOPPING)
    return HPS_ENOTFOUND;
  if (a.sa.sa_family != ep->udp_family) {
    if (a.sa.sa_family == AF_INET6)
      return HPS_EADDR; /* v6 to a v4 socket */
    /* v4 to a v6 socket: as a v4-mapped address (dual stack) */
    struct sockaddr_in in4 = a.in4;
    memset(&a, 0, sizeof(a));
    a.in6.sin6_family = AF_INET6;
    a.in6.sin6_port = in4.sin_port;
    a.in6.sin6_addr.s6_addr[10] = 0xff;
    a.in6.sin6_addr.s6_addr[11] = 0xff;
    memcpy(&a.in6.sin6_addr.s6_addr[12], &in4.sin_addr, 4);
  }
  return hps__udp_send(ep, 0, &a, bufs, n);
}

/* ---- idle detection ---- */

static void on_detect(uv_timer_t *t) {
  hps__loop *lp = t->data;
  hps_endpoint *ep = lp->ep;
  uint64_t iv = (uint64_t)ep->opt[HPS_OPT_UDP_DETECT_INTERVAL];
  uint64_t limit = iv * (uint64_t)ep->opt[HPS_OPT_UDP_DETECT_ATTEMPTS];
  uint64_t now = uv_now(&lp->uv);
  hps__conn *c;
  /* Only this thread changes the list; closing does not (the reaper
   * does), so the walk needs no lock. */
  for (c = lp->conns; c != NULL; c = c->next) {
    if (c->state != HPS__C_OPEN)
      continue;
    /* A paused client, cast or node does not read its socket: silence
     * then proves nothing (its heartbeats still go out). */
    if (hps__elapsed(now, HPS__LOAD(&c->t_recv)) >= limit &&
        !(c->paused && ep->role != HPS_UDP_SERVER))
      hps__udp_close(c, HPS_OP_RECEIVE, HPS_EUDPIDLE);
    else if (ep->role == HPS_UDP_CLIENT &&
             hps__elapsed(now, HPS__LOAD(&c->t_sent)) + 1 >= iv)
      heartbeat(c, NULL);
  }
}

/* ---- start ---- */

/* The peer table's key: from the kernel's random source; should that
 * fail, from clocks and addresses (weaker, but never a fixed key). */
static void table_key(hps__loop *lp) {
  uint64_t *k = lp->udp.key;
  if (uv_random(NULL, NULL, k, 2 * sizeof(*k), 0, NULL) == 0)
    return;
  k[0] = uv_hrtime() ^ (uint64_t)(uintptr_t)lp;
  k[1] = (uint64_t)(uintptr_t)&k ^ ((uint64_t)getpid() << 32) ^ uv_hrtime();
}

static int init_loop(hps__loop *lp) {
  hps__udp_loop *u = &lp->udp;
  memset(u, 0, sizeof(*u));
  table_key(lp);
  uv_idle_init(&lp->uv, &u->reaper);
  u->reaper.data = lp;
  uv_timer_init(&lp->uv, &u->detect);
  u->detect.data = lp;
  u->inited = 1;
  return 0;
}

static void set_buffers(hps_endpoint *ep, uv_udp_t *s) {
  if (ep->opt[HPS_OPT_SNDBUF])
    uv_send_buffer_size((uv_handle_t *)s, &(int){(int)ep->opt[HPS_OPT_SNDBUF]});
  if (ep->opt[HPS_OPT_RCVBUF])
    uv_recv_buffer_size((uv_handle_t *)s, &(int){(int)ep->opt[HPS_OPT_RCVBUF]});
}

/* The loop's batch buffer, or NULL (no memory: one datagram per read).
 * malloc'd, not calloc'd: only the pages datagrams land in (the first
 * max datagram bytes of each chunk) ever become resident. */
static hps__udp_batch *batch_new(hps_endpoint *ep) {
  size_t page = 4096, max = (size_t)ep->opt[HPS_OPT_UDP_MAX_DATAGRAM];
  size_t chunks = BATCH_RESIDENT / ((max + page) / page * page);
  hps__udp_batch *b = malloc(sizeof(*b));
  if (b == NULL)
    return NULL;
  memset(b, 0, sizeof(*b));
  b->chunks = chunks > BATCH_DGRAMS ? BATCH_DGRAMS
              : chunks < 2          ? 2
                                    : (int)chunks;
  b->buf = malloc((size_t)b->chunks * DGRAM_CHUNK);
  if (b->buf == NULL) {
    free(b);
    return NULL;
  }
  return b;
}

static void batch_free(hps__udp_loop *u) {
  if (u->batch != NULL)
    free(u->batch->buf);
  free(u->batch);
  u->batch = NULL;
}

/* A socket of the loop, of a's family, options set, not yet bound. It
 * reads with recvmmsg when the batch buffer could be had: with
 * UV_UDP_RECVMMSG a buffer under 64 KiB would make libuv spin on
 * zero-width recvmmsg calls, so without the buffer the flag stays off. */
static int new_sock(hps__loop *lp, int family) {
  hps__udp_loop *u = &lp->udp;
  unsigned flags = (unsigned)family;
  int r;
  u->batch = batch_new(lp->ep);
  if (u->batch != NULL)
    flags |= UV_UDP_RECVMMSG;
  r = uv_udp_init_ex(&lp->uv, &u->sock, flags);
  if (r != 0) {
    batch_free(u);
    return r;
  }
  u->sock.data = lp;
  u->has_sock = 1;
  if (!uv_udp_using_recvmmsg(&u->sock))
    batch_free(u); /* no recvmmsg in this kernel: plain reads */
  set_buffers(lp->ep, &u->sock);
  return 0;
}

static int sock_fd(hps__loop *lp) {
  uv_os_fd_t fd = -1;
  uv_fileno((uv_handle_t *)&lp->udp.sock, &fd);
  return fd;
}

static int prepare(hps_endpoint *ep, hps__loop *lp) {
  hps_event ev;
  if (!(HPS__LOAD(&ep->events) & HPS_EVBIT(HPS_EV_PREPARE)))
    return 0;
  memset(&ev, 0, sizeof(ev));
  ev.type = HPS_EV_PREPARE;
  ev.endpoint = ep;
  ev.fd = sock_fd(lp);
  return ep->fn(ep->user, &ev) == HPS_HR_ERROR ? HPS_EHANDLER : 0;
}

static unsigned bind_flags(hps_endpoint *ep, const hps__addr *a, int reuse) {
  unsigned f = 0;
  if (a->sa.sa_family == AF_INET6 && ep->opt[HPS_OPT_IPV6_ONLY])
    f |= UV_UDP_IPV6ONLY;
  if (reuse)
    f |= UV_UDP_REUSEADDR;
  return f;
}

static int bound_addr(hps__loop *lp, hps__addr *a) {
  int len = sizeof(*a);
  memset(a, 0, sizeof(*a));
  return uv_udp_getsockname(&lp->udp.sock, &a->sa, &len);
}

static void set_port(hps__addr *a, uint16_t port_be) {
  if (a->sa.sa_family == AF_INET6)
    a->in6.sin6_port = port_be;
  else
    a->in4.sin_port = port_be;
}

static uint16_t port_be(const hps__addr *a) {
  return a->sa.sa_family == AF_INET6 ? a->in6.sin6_port : a->in4.sin_port;
}

/* Server: see the TCP server's probe_port in endpoint.c. Several loops bind
 * with SO_REUSEPORT; a plain bind first fails when the port is taken and,
 * for port 0, picks the port the group shares. */
static int probe_port(hps_endpoint *ep, hps__addr *a) {
  hps__addr got;
  socklen_t len = sizeof(got);
  int fd = socket(a->sa.sa_family, SOCK_DGRAM | SOCK_CLOEXEC, 0), r = 0;
  if (fd < 0)
    return -errno;
  if (a->sa.sa_family == AF_INET6) {
    int v6only = ep->opt[HPS_OPT_IPV6_ONLY] ? 1 : 0;
    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof(v6only));
  }
  if (bind(fd, &a->sa, addr_len(a)) != 0)
    r = -errno;
  else if (getsockname(fd, &got.sa, &len) == 0)
    set_port(a, port_be(&got));
  close(fd);
  return r;
}

static int open_server(hps_endpoint *ep, const char *host, uint16_t port) {
  hps__addr a;
  int i, r, one = 1, reuseport = ep->nloops > 1;
  if ((r = hps__resolve(host, port, &a)) != 0)
    return r;
  if (reuseport && (r = probe_port(ep, &a)) != 0)
    return r;
  for (i = 0; i < ep->nloops; i++) {
    hps__loop *lp = ep->loops[i];
    if ((r = new_sock(lp, a.sa.sa_family)) != 0)
      return r;
    if (reuseport && setsockopt(sock_fd(lp), SOL_SOCKET, SO_REUSEPORT, &one,
                                sizeof(one)) != 0)
      return -errno;
    if ((r = uv_udp_bind(&lp->udp.sock, &a.sa, bind_flags(ep, &a, 0))) != 0)
      return r;
    if (i == 0) {
      if ((r = bound_addr(lp, &ep->listen_addr)) != 0)
        return r;
      set_port(&a, port_be(&ep->listen_addr)); /* port 0: share the pick */
      if ((r = prepare(ep, lp)) != 0)
        return r;
    }
  }
  return 0;
}

static int join_default(hps_endpoint *ep, hps__loop *lp, const char *group) {
  const char *iface = ep->udp_iface[0] ? ep->udp_iface : NULL;
  return uv_udp_set_membership(&lp->udp.sock, group, iface, UV_JOIN_GROUP);
}

/* TTL, loop, interface and broadcast on a cast or node socket. */
static int cast_options(hps_endpoint *ep, hps__loop *lp) {
  uv_udp_t *s = &lp->udp.sock;
  int r, zero = 0, fd = sock_fd(lp);
  /* Linux hands a socket bound to the wildcard address the datagrams of
   * every group any socket of the host joined; only its own, please (so a
   * leave is a leave). Best effort: older kernels lack the IPv6 one. */
  setsockopt(fd, IPPROTO_IP, IP_MULTICAST_ALL, &zero, sizeof(zero));
  setsockopt(fd, IPPROTO_IPV6, IPV6_MULTICAST_ALL, &zero, sizeof(zero));
  if ((r = uv_udp_set_multicast_ttl(
           s, (int)ep->opt[HPS_OPT_UDP_MULTICAST_TTL])) != 0)
    return r;
  if ((r = uv_udp_set_multicast_loop(
           s, (int)ep->opt[HPS_OPT_UDP_MULTICAST_LOOP])) != 0)
    return r;
  if (ep->udp_iface[0] &&
      (r = uv_udp_set_multicast_interface(s, ep->udp_iface)) != 0)
    return r;
  if (ep->opt[HPS_OPT_UDP_CAST_MODE] == HPS_CAST_BROADCAST &&
      (r = uv_udp_set_broadcast(s, 1)) != 0)
    return r;
  return 0;
}

static int is_multicast(const hps__addr *a) {
  if (a->sa.sa_family == AF_INET6)
    return a->in6.sin6_addr.s6_addr[0] == 0xff;
  return IN_MULTICAST(ntohl(a->in4.sin_addr.s_addr));
}

/* Client, cast, node: one socket on the one loop; *peer: the destination
 * of hps_send (family 0 for a node). */
static int open_single(hps_endpoint *ep, const char *host, uint16_t port,
                       hps__addr *peer) {
  hps__loop *lp = ep->loops[0];
  hps__addr a;
  int r;
  memset(peer, 0, sizeof(*peer));
  if (ep->role != HPS_UDP_NODE && (host == NULL || host[0] == '\0'))
    return HPS_EADDR;
  if ((r = hps__resolve(host, port, &a)) != 0)
    return r;
  if (ep->role == HPS_UDP_CLIENT) {
    if (port == 0)
      return HPS_EADDR;
    if ((r = new_sock(lp, a.sa.sa_family)) != 0)
      return r;
    if ((r = prepare(ep, lp)) != 0)
      return r;
    if ((r = uv_udp_connect(&lp->udp.sock, &a.sa)) != 0)
      return r;
    *peer = a;
    return bound_addr(lp, &ep->listen_addr);
  }
  if (ep->role == HPS_UDP_CAST) {
    hps__addr any;
    int mcast = ep->opt[HPS_OPT_UDP_CAST_MODE] == HPS_CAST_MULTICAST;
    if (mcast && !is_multicast(&a))
      return HPS_EADDR;
    memset(&any, 0, sizeof(any));
    if (a.sa.sa_family == AF_INET6) {
      any.in6.sin6_family = AF_INET6;
      any.in6.sin6_port = htons(port);
    } else {
      any.in4.sin_family = AF_INET;
      any.in4.sin_port = htons(port);
    }
    if ((r = new_sock(lp, a.sa.sa_family)) != 0)
      return r;
    if ((r = uv_udp_bind(
             &lp->udp.sock, &any.sa,
             bind_flags(ep, &any, ep->opt[HPS_OPT_REUSE_ADDR] != 0))) != 0)
      return r;
    if ((r = bound_addr(lp, &ep->listen_addr)) != 0)
      return r;
    set_port(&a, port_be(&ep->listen_addr)); /* port 0: the one picked */
    if ((r = cast_options(ep, lp)) != 0)
      return r;
    if (mcast) {
      char g[INET6_ADDRSTRLEN];
      addr_text(&a, g, sizeof(g));
      if ((r = join_default(ep, lp, g)) != 0)
        return r;
    }
    *peer = a;
    return prepare(ep, lp);
  }
  /* node */
  if ((r = new_sock(lp, a.sa.sa_family)) != 0)
    return r;
  if ((r = uv_udp_bind(&lp->udp.sock, &a.sa, bind_flags(ep, &a, 0))) != 0)
    return r;
  if ((r = bound_addr(lp, &ep->listen_addr)) != 0)
    return r;
  if ((r = cast_options(ep, lp)) != 0)
    return r;
  return prepare(ep, lp);
}

int hps__udp_open(hps_endpoint *ep, const char *host, uint16_t port) {
  hps__addr peer;
  hps__conn *c;
  hps__loop *lp;
  uint64_t now, iv = (uint64_t)ep->opt[HPS_OPT_UDP_DETECT_INTERVAL];
  int i, r;
  if (ep->opt[HPS_OPT_RECV_MODEL] != HPS_MODEL_PUSH)
    return HPS_EMODEL;
  for (i = 0; i < ep->nloops; i++)
    init_loop(ep->loops[i]);
  if (ep->role == HPS_UDP_SERVER) {
    r = open_server(ep, host, port);
  } else {
    r = open_single(ep, host, port, &peer);
  }
  if (r != 0)
    return r;
  ep->udp_family = ep->listen_addr.sa.sa_family;
  for (i = 0; i < ep->nloops; i++) {
    lp = ep->loops[i];
    start_recv(lp);
    if (iv > 0 && (ep->role == HPS_UDP_SERVER || ep->role == HPS_UDP_CLIENT))
      uv_timer_start(&lp->udp.detect, on_detect, iv, iv);
  }
  if (ep->role == HPS_UDP_SERVER)
    return 0;
  /* The one connection: open now, CONNECT/HANDSHAKE on the loop's first
   * turn (before any datagram is read). */
  lp = ep->loops[0];
  uv_mutex_lock(&lp->lock);
  c = hps__conn_new_locked(lp);
  if (c != NULL) {
    c->peer = peer;
    c->local = ep->listen_addr;
  }
  uv_mutex_unlock(&lp->lock);
  if (c == NULL)
    return HPS_ENOMEM;
  HPS__ADD(&ep->nconns, 1);
  addr_text(&peer, c->peer_text, sizeof(c->peer_text));
  now = uv_hrtime() / 1000000u;
  HPS__STORE(&c->t_open, now);
  HPS__STORE(&c->t_recv, now);
  HPS__STORE(&c->t_sent, now);
  HPS__STORE(&c->state, HPS__C_OPEN);
  c->reported = 1;
  HPS__STORE(&ep->client_id, c->id);
  lp->udp.one = c;
  lp->udp.announce = 1;
  uv_idle_start(&lp->udp.reaper, on_reap);
  return 0;
}

/* ---- stop ---- */

static void on_closed(uv_handle_t *h) {
  (void)h;
}

void hps__udp_loop_close(hps__loop *lp) {
  hps__udp_loop *u = &lp->udp;
  if (!u->inited || u->closed)
    return;
  u->closed = 1;
  if (u->has_sock)
    uv_close((uv_handle_t *)&u->sock, on_closed);
  uv_close((uv_handle_t *)&u->reaper, on_closed);
  uv_close((uv_handle_t *)&u->detect, on_closed);
}

void hps__udp_loop_free(hps__loop *lp) {
  hps__udp_loop *u = &lp->udp;
  if (!u->inited)
    return;
  hps__udp_loop_close(lp); /* a loop that never ran: its uv_run follows */
  batch_free(u);
  free(u->table);
  u->table = NULL;
  u->tcap = u->tcount = 0;
}

/* ---- multicast ---- */

static int check_iface(const char *iface) {
  struct sockaddr_in a4;
  struct sockaddr_in6 a6;
  if (iface == NULL || iface[0] == '\0')
    return 0;
  if (strlen(iface) >= 64)
    return HPS_EADDR;
  if (uv_ip4_addr(iface, 0, &a4) == 0 || uv_ip6_addr(iface, 0, &a6) == 0)
    return 0;
  return HPS_EADDR;
}

int hps__udp_membership(hps_endpoint *ep, const char *group, const char *iface,
                        int join) {
  hps__addr g;
  int r;
  memset(&g, 0, sizeof(g));
  if (uv_ip4_addr(group, 0, &g.in4) != 0 && uv_ip6_addr(group, 0, &g.in6) != 0)
    return HPS_EADDR;
  if (!is_multicast(&g) || check_iface(iface) != 0)
    return HPS_EADDR;
  if (iface != NULL && iface[0] == '\0')
    iface = NULL;
  /* Under the endpoint's mutex while STARTED: the loop closes its socket
   * only after a stop, which takes this mutex first. */
  uv_mutex_lock(&ep->mutex);
  if (ep->state != HPS_STATE_STARTED || ep->nloops < 1 ||
      !ep->loops[0]->udp.has_sock)
    r = HPS_ESTATE;
  else
    r = uv_udp_set_membership(&ep->loops[0]->udp.sock, group, iface,
                              join ? UV_JOIN_GROUP : UV_LEAVE_GROUP);
  uv_mutex_unlock(&ep->mutex);
  return r;
}

int hps__udp_set_iface(hps_endpoint *ep, const char *iface) {
  int r = check_iface(iface);
  if (r != 0)
    return r;
  uv_mutex_lock(&ep->mutex);
  if (ep->starting || ep->state == HPS_STATE_STARTED ||
      ep->state == HPS_STATE_STOPPING) {
    r = HPS_ESTATE;
  } else if (iface == NULL) {
    ep->udp_iface[0] = '\0';
  } else {
    memcpy(ep->udp_iface, iface, strlen(iface) + 1);
  }
  uv_mutex_unlock(&ep->mutex);
  return r;
}

void hps__test_udp_chains(hps_endpoint *ep, uint32_t *longest,
                          uint32_t *max_probes) {
  int i, n = hps__nloops(ep);
  uint32_t j, len;
  hps__conn *c;
  *longest = *max_probes = 0;
  for (i = 0; i < n; i++) {
    hps__udp_loop *u = &ep->loops[i]->udp;
    uint32_t p = HPS__LOAD(&u->max_probes);
    if (p > *max_probes)
      *max_probes = p;
    /* the table is the loop thread's: only from a handler on it */
    if (hps__tls_loop != ep->loops[i])
      continue;
    for (j = 0; j < u->tcap; j++) {
      for (len = 0, c = u->table[j]; c; c = c->udp_next)
        len++;
      if (len > *longest)
        *longest = len;
    }
  }
}
