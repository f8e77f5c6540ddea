/* core.h - the engine's internal types. Not installed, not exported.
 *
 * Ownership and threads:
 * - An endpoint owns N loops; each loop runs on its own thread and owns the
 *   connections it accepted or connected, for life.
 * - Each loop's `lock` guards its ID slot table, its connection list, its
 *   command queue, its free-object pool and (pull model) connections' pull
 *   buffers. Everything else of a connection is touched only by its loop's
 *   thread, except fields read with atomics (counters, extra, times).
 * - Another thread never dereferences a connection outside the loop's lock;
 *   it queues a command naming the connection by ID instead.
 */
#ifndef HPS_CORE_CORE_H
#define HPS_CORE_CORE_H

#include <netinet/in.h>
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

#include "hpsock.h"
#include "pack.h"

#define HPS__MAGIC 0x68707363u /* "hpsc" */
#define HPS__MAX_WORKERS 64
/* The loop's read buffer (and cork): one recv takes up to this much. At 64
 * KiB a stream's reads were often exactly full (4 x 16 KiB in flight), and
 * a full read costs one more recv that finds nothing. */
#define HPS__READ_BUF (256 * 1024)
/* Reading one socket stops after this much (then the next poll comes back
 * for the rest), so one busy peer cannot hold the loop: 2 MiB, libuv's 32
 * reads of 64 KiB. */
#define HPS__READ_BUDGET (2 * 1024 * 1024)
#define HPS__FILE_CHUNK (64 * 1024)
/* File sends of one connection waiting behind the one being sent (each
 * holds its path, no descriptor); past it hps_send_file gives
 * HPS_ESENDQ. */
#define HPS__FILES_PENDING 64
/* No length limit (MAX_SEND_QUEUE, PACK_MAX, PULL_MAX, UDP_MAX_DATAGRAM)
 * can be set above this, so a longer length is refused before any sum or
 * allocation is made with it. */
#define HPS__LEN_MAX ((size_t)1 << 30)
#define HPS__OPT_SLOTS 96 /* option keys 1..95 */
#define HPS__CNT_SLOTS 8  /* enum hps_counter keys 1..7 */

/* Relaxed atomics for counters written by one thread and read by others. */
#define HPS__LOAD(p) __atomic_load_n((p), __ATOMIC_RELAXED)
#define HPS__STORE(p, v) __atomic_store_n((p), (v), __ATOMIC_RELAXED)
#define HPS__ADD(p, v) __atomic_fetch_add((p), (v), __ATOMIC_RELAXED)
#define HPS__SUB(p, v) __atomic_fetch_sub((p), (v), __ATOMIC_RELAXED)
/* ms from t to now; 0 when t is a little ahead (coarse vs fine clock). */
static inline uint64_t hps__elapsed(uint64_t now, uint64_t t) {
  return now > t ? now - t : 0;
}

/* Single-writer increment: no read-modify-write bus lock needed. */
#define HPS__BUMP(p, v) HPS__STORE((p), HPS__LOAD(p) + (v))

/* Big enough for IPv4 and IPv6, far smaller than sockaddr_storage. */
typedef union hps__addr {
  struct sockaddr sa;
  struct sockaddr_in in4;
  struct sockaddr_in6 in6;
} hps__addr;

typedef struct hps__loop hps__loop;
typedef struct hps__conn hps__conn;
typedef struct hps__wreq hps__wreq;

/* ID layout: generation (32) | loop index (8) | slot (24). Generation
 * starts at 1, so a valid ID is never 0. */
#define HPS__ID(gen, loop, slot)                                               \
  (((uint64_t)(gen) << 32) | ((uint64_t)(loop) << 24) | (uint64_t)(slot))
#define HPS__ID_GEN(id) ((uint32_t)((id) >> 32))
#define HPS__ID_LOOP(id) ((uint32_t)(((id) >> 24) & 0xff))
#define HPS__ID_SLOT(id) ((uint32_t)((id)&0xffffff))
#define HPS__MAX_SLOTS 0xffffffu

enum hps__cstate {
  HPS__C_PENDING = 0,    /* agent: ID handed out, connect not begun */
  HPS__C_CONNECTING = 1, /* agent/client: uv_tcp_connect in progress */
  HPS__C_OPEN = 2,
  HPS__C_CLOSING = 3 /* uv_close or shutdown under way; ID not found */
};

enum hps__cmd_kind {
  HPS__CMD_SEND = 1,
  HPS__CMD_FILE = 2,
  HPS__CMD_DISCONNECT = 3,
  HPS__CMD_PAUSE = 4,
  HPS__CMD_CONNECT = 5,
  HPS__CMD_TLSRAW = 6,   /* TLS: ciphertext write (tls.c) */
  HPS__CMD_TLSDRAIN = 7, /* TLS: deliver plaintext buffered while paused */
  HPS__CMD_DRAIN = 8,    /* deliver what a pause held back (c->held) */
  HPS__CMD_WATER = 9,    /* deliver a water-mark crossing (tcp.c) */
  HPS__CMD_SHUT = 10     /* graceful close: the sends posted before it have
                            run, shut down now */
};

/* hps__conn.pause_why: why reading is paused. The application's pause and
 * the automatic one (HPS_OPT_AUTO_PAUSE) are kept apart, so neither's
 * resume undoes the other; c->paused is set while either holds. */
#define HPS__PAUSE_APP 1
#define HPS__PAUSE_AUTO 2
/* hps__conn.water: where the connection's unsent bytes stand against the
 * water marks (TCP only, loop thread only). */
#define HPS__W_ABOVE 1  /* rose above high water; LOW_WATER not yet given */
#define HPS__W_TOLD 2   /* HIGH_WATER of this crossing delivered */
#define HPS__W_POSTED 4 /* a WATER command is queued */

/* One queued write, and also the cross-thread command carrying it: the
 * bytes are copied once, into data[], and written from there. */
struct hps__wreq {
  uv_write_t req;
  hps__wreq *next;
  hps_conn_id id;
  int kind;    /* enum hps__cmd_kind */
  int arg;     /* DISCONNECT: force; PAUSE: pause */
  int err;     /* DISCONNECT: the CLOSE event's error */
  size_t cap;  /* FILE: bytes data[] can hold */
  size_t len;  /* bytes in data */
  size_t off;  /* bytes of data already written (try-write) */
  size_t skip; /* leading header bytes not reported in SEND (pack) */
  int fd;      /* FILE: open file; -1 otherwise */
  int64_t file_off, file_left;
  hps__wreq *plain; /* TLSRAW: the plaintext request it carries, or NULL */
  char data[];
};

/* Laid out for the hot path: libuv's handle first (its read path touches
 * its first three cache lines), then everything a received message and its
 * echo touch, together (120 bytes: two or three cache lines), then what
 * connecting, closing, the pull model and UDP use. With 1,000 busy
 * connections each line is a likely cache miss per message. (Aligning the
 * object to 64 bytes as well costs RSS per connection and measured no
 * better.) */
struct hps__conn {
  uv_tcp_t tcp; /* tcp.data == this */
  hps__loop *loop;
  /* ---- hot: every message ---- */
  struct hps__tls_conn *tls; /* NULL on plain connections */
  hps__wreq *file;           /* the FILE command being sent, or NULL */
  hps__pack_dec *pack;       /* pack model (loop thread only) */
  /* pack model (loop thread only): the rest of a read (whole frames and a
   * partial tail) whose delivery a pause from a RECEIVE handler stopped;
   * delivered, in order, by a DRAIN command after the resume and before
   * the next read. At most one read buffer (HPS__READ_BUF); NULL when
   * nothing is held. One pointer, so a connection that never pauses pays
   * 8 bytes for it. */
  struct hps__held *held;
  hps_conn_id id;
  uint8_t state;    /* enum hps__cstate */
  uint8_t reported; /* ACCEPT/hps_connect made it visible: CLOSE is due */
  uint8_t paused;   /* reading paused (pause_why != 0; UDP: by the app) */
  /* 1: shut down once the file and deferred writes end; 2: once
   * HPS__CMD_SHUT has run (the sends posted before the close first) */
  uint8_t graceful;
  uint8_t handle_closing; /* uv_close called */
  uint8_t drain_posted;   /* a DRAIN command is queued (loop thread only) */
  /* tcp.c, edge-triggered reading: drained reads since libuv last
   * registered the socket (low 5 bits), and how often libuv took
   * edge-triggering back (high 3). One plain byte: a bit-field would be
   * read and written as a word with its neighbours */
  uint8_t edge;
  int close_op, close_err;
  uintptr_t extra; /* atomic */
  /* atomic, set under loop->lock: a disconnect is queued (1), a forced one
   * (2). Among atomics only: the loop thread's plain tests of the bytes
   * above (state, handle_closing ...) may be compiled into one wider load,
   * which must not take in a byte other threads write. */
  uint32_t doomed;
  size_t queued;   /* atomic: bytes accepted but not yet written */
  uint64_t t_recv; /* atomic: ms, last receive */
  uint64_t bytes_sent, bytes_recv, msgs_sent, msgs_recv; /* atomic */
  /* ---- cold ---- */
  hps__conn *prev, *next; /* the loop's list of live connections */
  uint64_t t_open;        /* atomic: ms, uv_hrtime based */
  /* atomic: file sends accepted and not begun (at most
   * HPS__FILES_PENDING), and the bytes of accepted file sends not read
   * yet (in hps_get_unsent, not against HPS_OPT_MAX_SEND_QUEUE) */
  uint32_t files;
  uint64_t file_unsent;
  /* deferred writes while a file send is in progress (loop thread only) */
  hps__wreq *defer_head, *defer_tail;
  /* pull model (under loop->lock) */
  char *pbuf;
  size_t plen, pcap;
  uv_timer_t *connect_timer; /* also the TLS handshake timer */
  /* Graceful close (tcp.c): when it began (ms, loop clock; atomic, 0 when
   * none is under way: other threads tell a graceful close, which a forced
   * disconnect may still cut short, from one already being torn down),
   * and its place in the loop's deadline list. */
  uint64_t t_close;
  hps__conn *cl_prev, *cl_next;
  size_t cl_wq; /* libuv's write queue then: less later is progress */
  /* SEND and FILE commands posted for it and not run yet (under
   * loop->lock): a graceful close lets them go out before FIN. */
  uint32_t posted;
  hps__addr peer;
  hps__addr local;
  /* UDP (udp.c, loop thread only) */
  hps__conn *udp_next; /* server: peer table chain; then the CLOSE list */
  uint64_t t_sent;     /* ms, last datagram sent (client heartbeats) */
  char peer_text[46];  /* numeric host of peer, for events */
  /* flow control (tcp.c, loop thread only): touched only where writes get
   * queued or complete, so they live here, off the hot lines */
  uint8_t pause_why; /* HPS__PAUSE_* */
  uint8_t water;     /* HPS__W_* */
  uint8_t udp_peer;  /* server: enum hps__udp_peer */
  /* server: the loop's list of unconfirmed peers, oldest first */
  hps__conn *unc_prev, *unc_next;
};

/* A UDP server's peer: one datagram so far (evictable by a new address
 * when the table is full), more than one, or evicted (its place in
 * ep->nconns went to the address that evicted it). */
enum hps__udp_peer {
  HPS__UDP_NEW = 0,
  HPS__UDP_CONFIRMED = 1,
  HPS__UDP_EVICTED = 2
};

/* What a pause held back: len bytes. */
typedef struct hps__held {
  size_t len;
  char data[];
} hps__held;

typedef struct hps__slot {
  hps__conn *conn;
  uint32_t gen;
  uint32_t next_free; /* free list, valid when conn == NULL */
} hps__slot;

/* A loop's UDP part (udp.c). Server: one socket per loop; client, cast
 * and node: one loop, one socket, one connection (`one`). */
typedef struct hps__udp_batch hps__udp_batch; /* udp.c */
typedef struct hps__udp_loop {
  uv_udp_t sock;
  uv_idle_t reaper;  /* delivers due CONNECTs and CLOSEs outside handlers */
  uv_timer_t detect; /* idle detection and client heartbeats */
  int inited, has_sock, closed;
  hps__conn **table; /* server: peer address -> connection */
  uint32_t tcap, tcount;
  uint64_t key[2];     /* server: the table's SipHash key, random per start */
  uint32_t max_probes; /* atomic: most peers compared by one lookup */
  hps__conn *unc_head, *unc_tail; /* server: unconfirmed peers, oldest first */
  hps__conn *reap_head, *reap_tail; /* closed, CLOSE due */
  hps__conn *one;
  int announce; /* one's CONNECT and HANDSHAKE are due */
  /* recvmmsg: the loop's batch buffer (NULL: one recvmsg per datagram into
   * readbuf), whether libuv is handing out a batch, and whether datagrams a
   * pause held back in it are due (the reaper delivers them). */
  hps__udp_batch *batch;
  int in_batch, drain;
} hps__udp_loop;

struct hps__loop {
  uv_loop_t uv;
  uv_async_t async;
  uv_timer_t timer; /* silence detection */
  /* Graceful closes under way, oldest first: HPS_OPT_CLOSE_TIMEOUT is the
   * same for all of a run, so only the head can be due, and one timer,
   * armed for the head, bounds them all (loop thread only). */
  uv_timer_t close_timer;
  hps__conn *cl_head, *cl_tail;
  /* Bytes the loop's closes freed since the last malloc_trim, and whether
   * a trim is due (loop thread only). */
  uv_timer_t trim_timer;
  size_t freed;
  int trim_pending;
  uint64_t t_trim; /* loop clock of the last trim, 0: none yet */
  /* TCP server (tcp.c, accept): this loop's listening socket, polled by
   * hand (not uv_listen) so that an accept error can pause it; the
   * back-off timer of such a pause; a spare descriptor given up to shed
   * a connection when descriptors run out. -1: none. */
  uv_poll_t accept_poll;
  uv_timer_t accept_timer;
  int has_listener;
  int listen_fd, reserve_fd;
  unsigned backoff_ms; /* the next pause; 0 after a successful accept */
  int index;
  hps_endpoint *ep;
  uv_thread_t thread;
  int thread_started;
  int in_run; /* hps__loop_init made the run, hps__loop_end not yet */
  uv_mutex_t lock;
  /* under lock */
  hps__wreq *cmd_head, *cmd_tail;
  int accepting_cmds; /* 0 once a stop was requested */
  int stop_req;
  hps__slot *slots;
  uint32_t nslots, slot_cap, free_slot; /* free_slot: UINT32_MAX = none */
  hps__conn *conns;                     /* live list head */
  int nconns;
  hps__conn *pool;
  int npool;
  /* loop thread only */
  int stopping;
  int handles_closed;
  uv__io_cb stream_io; /* tcp.c: libuv's io callback of a TCP stream */
  /* atomic: the counts of the connections released so far; hps_get_stats
   * adds the live ones (under lock), so a message costs no second set of
   * counter updates here */
  uint64_t bytes_sent, bytes_recv, msgs_sent, msgs_recv;
  /* Write corking: while one read of `corked` is being delivered, its own
   * sends from the handler gather here and go out in one write at the end
   * (a read of 16 pack frames answered frame by frame is 1 write, not 16). */
  hps__conn *corked;
  size_t cork_len;
  /* When what is corked is one send of bytes inside readbuf (an echo), or
   * pack frames echoed one after another with their headers as they came,
   * it is written from there: cork_ext points at them and nothing is
   * copied. They stay put until the delivery ends, where the cork is
   * flushed. */
  const char *cork_ext;
  /* Pack model, while a frame of `corked` is being delivered: its body
   * when its header lies right before it in the bytes being fed (which
   * stay put until the cork is flushed), else NULL. A send of exactly
   * that frame (an echo) is then recognised with one compare and added to
   * the cork where it lies (cork_echo, ops.c). NULL outside a feed. */
  const char *echo_body;
  /* Pack model: the RECEIVE event of the frames being fed, its fields but
   * data, len and extra filled in once per feed (feeds never nest). */
  hps_event frame_ev;
  char readbuf[HPS__READ_BUF];
  char cork[HPS__READ_BUF];
  hps__udp_loop udp; /* UDP roles only */
};

struct hps_endpoint {
  uint32_t magic;
  int role;
  hps_event_fn fn;
  void *user;
  /* options */
  int64_t opt[HPS__OPT_SLOTS];
  struct hps__tls_ep *tls; /* string options, SSL_CTX; NULL until used */
  uint32_t events;         /* atomic: live event mask */
  /* life cycle, under mutex */
  uv_mutex_t mutex;
  uv_cond_t cond;
  int state; /* enum hps_state; atomic reads */
  int need_join;
  int starting; /* hps_start is opening sockets, unlocked */
  /* loops[HPS__MAX_WORKERS], allocated by hps_create; a loop object, once
   * made, stays until hps_free (see hps__loop_new). nloops: the loops of
   * the current or last run; loops[0..nloops) exist. Read both with
   * atomics outside ep->mutex. */
  int nloops;
  hps__loop **loops;
  int running; /* atomic: loops still running */
  int nconns;  /* atomic: open connections, for MAX_CONNECTIONS */
  /* atomic: enum hps_counter, since hps_create (hps__counter_add) */
  uint64_t counters[HPS__CNT_SLOTS];
  uint32_t rr; /* atomic: round robin for agent connects */
  /* generation of a slot's first connection; 0 = 1 (hps__test_gen_first) */
  uint32_t gen_first;
  hps_conn_id client_id; /* atomic */
  hps__addr listen_addr;
  char udp_iface[64]; /* cast/node: multicast interface, "" = default */
  int udp_family;     /* UDP: the socket's address family */
};

/* Another thread's view of the loops: each is published (release) before
 * nloops counts it (release), and lives until hps_free. */
static inline int hps__nloops(hps_endpoint *ep) {
  return __atomic_load_n(&ep->nloops, __ATOMIC_ACQUIRE);
}
static inline hps__loop *hps__loop_at(hps_endpoint *ep, int i) {
  return __atomic_load_n(&ep->loops[i], __ATOMIC_ACQUIRE);
}

static inline void hps__counter_add(hps_endpoint *ep, int counter, uint64_t n) {
  HPS__ADD(&ep->counters[counter], n);
}

#define HPS__IS_UDP(ep) ((ep)->role >= HPS_UDP_SERVER)
/* The bytes of a posted SEND w that count in c->queued (and so against
 * HPS_OPT_MAX_SEND_QUEUE): what goes on the wire. A TCP pack header is
 * sent, so it counts; a UDP datagram's leading destination (w->skip) is
 * not, so it does not -- a limit of N bytes holds N bytes of datagrams
 * from any thread. hps__post adds these bytes, the loop takes them off. */
static inline size_t hps__wreq_queued(const hps_endpoint *ep,
                                      const hps__wreq *w) {
  return HPS__IS_UDP(ep) ? w->len - w->skip : w->len;
}

/* Roles with one connection, reachable as ID 0. */
#define HPS__SINGLE(ep)                                                        \
  ((ep)->role == HPS_TCP_CLIENT || (ep)->role == HPS_UDP_CLIENT ||             \
   (ep)->role == HPS_UDP_CAST || (ep)->role == HPS_UDP_NODE)

/* The loop whose thread this is, NULL elsewhere. initial-exec: read with one
 * %fs-relative load, not a __tls_get_addr call per send; a pointer fits the
 * static TLS glibc reserves for libraries loaded with dlopen (bindings). */
extern _Thread_local hps__loop *hps__tls_loop
    __attribute__((tls_model("initial-exec")));

/* endpoint.c */
int hps__on_own_loop(hps_endpoint *ep);
int hps__opt_check(int opt, int64_t value);
void hps__opt_defaults(hps_endpoint *ep);
int hps__ep_start(hps_endpoint *ep, const char *host, uint16_t port);
int hps__ep_stop(hps_endpoint *ep);
int hps__ep_wait(hps_endpoint *ep, int timeout_ms);
void hps__ep_destroy(hps_endpoint *ep);
void hps__ep_loop_done(hps_endpoint *ep);
int hps__opt_live(int opt);
int hps__opt_known(int opt);
int hps__connect(hps_endpoint *ep, const char *host, uint16_t port,
                 hps_conn_id *id);
int hps__resolve(const char *host, uint16_t port, hps__addr *a);
int hps__addr_str(const hps__addr *a, char *host, size_t hostlen,
                  uint16_t *port);

/* loop.c */
hps__loop *hps__loop_new(hps_endpoint *ep, int index);
int hps__loop_init(hps__loop *lp);  /* a run: libuv loop and handles */
void hps__loop_end(hps__loop *lp);  /* after the run's thread ended */
void hps__loop_free(hps__loop *lp); /* hps_free */
/* Tests: the generation fresh slots start at (before the first start). */
void hps__test_gen_first(hps_endpoint *ep, uint32_t gen);
/* Tests: the longest chain of a UDP server's peer tables, and the most
 * addresses compared by one lookup since the start (all loops). */
void hps__test_udp_chains(hps_endpoint *ep, uint32_t *longest,
                          uint32_t *max_probes);
int hps__loop_start(hps__loop *lp);
/* Queue a command for the loop owning its ID (or any loop for CONNECT) and
 * wake the loop. Takes ownership of w on success. Returns 0 or
 * HPS_ESTOPPING. */
int hps__loop_post_locked(hps__loop *lp, hps__wreq *w);
/* Ask the loop to stop: no command is accepted any more. */
void hps__loop_request_stop(hps__loop *lp);
void hps__loop_maybe_finish(hps__loop *lp);
hps__conn *hps__lookup_locked(hps_endpoint *ep, hps_conn_id id, hps__loop **lp);
hps__conn *hps__conn_new_locked(hps__loop *lp);
void hps__conn_release_locked(hps__loop *lp, hps__conn *c);

/* ops.c: operations from any thread (ep validated by the caller) */
int hps__send(hps_endpoint *ep, hps_conn_id id, const hps_buf *bufs, int n);
/* hps_send: one buffer, with a short way for a handler's echo. */
int hps__send1(hps_endpoint *ep, hps_conn_id id, const void *data, size_t len);
int hps__send_file(hps_endpoint *ep, hps_conn_id id, const char *path,
                   int64_t offset, int64_t length);
int hps__disconnect(hps_endpoint *ep, hps_conn_id id, int force);
int hps__pause(hps_endpoint *ep, hps_conn_id id, int pause);
int hps__fetch(hps_endpoint *ep, hps_conn_id id, void *buf, size_t len,
               int take);
int hps__conn_count(hps_endpoint *ep);
int hps__conn_list(hps_endpoint *ep, hps_conn_id *ids, size_t cap,
                   size_t *count);
int hps__address(hps_endpoint *ep, hps_conn_id id, int remote, char *host,
                 size_t hostlen, uint16_t *port);
int hps__extra(hps_endpoint *ep, hps_conn_id id, uintptr_t *get, uintptr_t set);
int hps__stats(hps_endpoint *ep, hps_conn_id id, hps_stats *st);
int hps__disconnect_where(hps_endpoint *ep, int64_t ms, int by_silence);
int hps__unsent(hps_endpoint *ep, hps_conn_id id, uint64_t *unsent);
/* The error of a send longer than HPS__LEN_MAX: what the limit that
 * applies to it gives (HPS_EDGRAMSIZE, HPS_EPACKSIZE or HPS_ESENDQ). */
int hps__len_error(hps_endpoint *ep);

/* tcp.c */
/* Server: accept on listening socket fd (bound, listening) on lp, whose
 * thread has not started yet; takes fd (closed on failure). */
int hps__listen_start(hps__loop *lp, int fd);
/* Stop accepting and close the listening socket (loop thread, or a loop
 * that never ran); no-op without one. */
void hps__listen_close(hps__loop *lp);
int hps__emit(hps__conn *c, int type, const void *data, size_t len);
void hps__conn_close(hps__conn *c, int op, int err);
void hps__conn_disconnect(hps__conn *c, int force, int err);
void hps__conn_pause(hps__conn *c, int pause); /* the application's */
/* Water marks, on the loop at a point where no handler of the connection
 * runs: deliver the HIGH_WATER / LOW_WATER now due, and pause or resume
 * (HPS_OPT_AUTO_PAUSE). */
void hps__water(hps__conn *c);
/* A command that moved bytes was taken (run_cmd): the sends of other
 * threads are counted in c->queued before the loop sees them, so their
 * crossings are noticed here. */
static inline void hps__water_taken(hps__conn *c) {
  if (c->water != 0 ||
      HPS__LOAD(&c->queued) >
          (size_t)HPS__LOAD(&c->loop->ep->opt[HPS_OPT_SEND_HIGH_WATER]))
    hps__water(c);
}
/* Close after what was accepted for sending has gone out (then FIN), within
 * HPS_OPT_CLOSE_TIMEOUT: reading stops now; the CLOSE has op and err (or a
 * write's failure, or HPS_ECLOSETIMEOUT). */
void hps__conn_graceful(hps__conn *c, int op, int err);
/* Is c closing gracefully (not yet torn down)? Any thread. */
static inline int hps__closing_soft(hps__conn *c) {
  return HPS__LOAD(&c->t_close) != 0;
}
void hps__on_close_timer(uv_timer_t *t);
/* HPS__CMD_SHUT: the sends posted before the graceful close have run. */
void hps__conn_shut(hps__conn *c);
void hps__on_trim_timer(uv_timer_t *t);
int hps__conn_write(hps__conn *c, hps__wreq *w);
/* Loop thread: append bytes to the cork of c if it is being delivered a
 * read and they fit; 1 if taken, 0 if the caller must write them itself. */
int hps__cork_append(hps__conn *c, const hps_buf *bufs, int n,
                     const uint8_t *hdr, size_t hdrlen, size_t total);
/* Count bytes and messages sent on the connection (its loop's totals
 * take them when it is released). */
static inline __attribute__((always_inline)) void
hps__count_sent(hps__conn *c, size_t n, uint64_t msgs) {
  HPS__BUMP(&c->bytes_sent, n);
  HPS__BUMP(&c->msgs_sent, msgs);
}
/* Loop thread: the same for one send of bytes that lie in the loop's read
 * buffer (an echo): they are written from there, not copied. Inline: it
 * is the push echo's hot path. */
static inline int hps__cork_borrow(hps__conn *c, const void *base, size_t len) {
  hps__loop *lp = c->loop;
  if (lp->corked != c || c->file != NULL || lp->cork_len != 0 ||
      (uintptr_t)base < (uintptr_t)lp->readbuf ||
      (uintptr_t)base + len > (uintptr_t)lp->readbuf + sizeof(lp->readbuf))
    return 0;
  lp->cork_ext = base;
  lp->cork_len = len;
  hps__count_sent(c, len, 1);
  return 1;
}
/* Write out what c's cork holds (no-op when it holds nothing of c's). */
void hps__cork_flush(hps__conn *c);
/* uv_try_write of n bytes on c's socket with one send(2) and none of
 * libuv's stream bookkeeping (its try-write path costs about 60
 * instructions per call, callgrind): the bytes written, UV_EAGAIN when the
 * socket takes none or libuv still has writes queued (they must not be
 * overtaken), or a libuv error (negative errno). */
ssize_t hps__try_write(hps__conn *c, const char *p, size_t n);
void hps__conn_connect(hps__loop *lp, hps__wreq *w);
/* ops.c, loop thread: a FILE request's turn has come: its file opened
 * again and checked to be the one hps_send_file checked, w grown to hold
 * a chunk. NULL when that fails: w is freed and c closes (op SEND,
 * HPS_EFILE). */
hps__wreq *hps__file_begin(hps__conn *c, hps__wreq *w);
void hps__setup_fd(hps_endpoint *ep, int fd);
void hps__on_timer(uv_timer_t *t);
hps__wreq *hps__wreq_new(size_t len);
/* Count plaintext bytes received and deliver them in the receive model,
 * corking the connection's own sends from the handlers. */
void hps__deliver_plain(hps__conn *c, char *base, size_t n);
/* Write ciphertext cw (kind TLSRAW): try-write first when nothing is queued
 * and cw carries no plaintext request, else queue it. On error cw is freed
 * (its plain request is not) and the connection closes. */
int hps__write_cipher(hps__conn *c, hps__wreq *cw);
/* Write what waited in the deferred list (behind a file send or the TLS
 * handshake), then the graceful shutdown if one waits. */
void hps__drain_deferred(hps__conn *c);
void hps__start_reading(hps__conn *c);
void hps__read_stop(hps__conn *c); /* every stop of reading goes here */
/* DRAIN command: deliver what a pause held back, then read again. */
void hps__conn_drain(hps__conn *c);

#include "tls.h"

/* ops.c: post a command for w->id from any thread (frees w on failure). */
int hps__post(hps_endpoint *ep, hps__wreq *w, size_t queued_bytes);

/* udp.c */
/* hps_start of a UDP role: sockets, PREPARE (on this thread), the single
 * connection. Loops initialised, not running. */
int hps__udp_open(hps_endpoint *ep, const char *host, uint16_t port);
/* Close the loop's UDP handles (stop or a loop that never ran). */
void hps__udp_loop_close(hps__loop *lp);
/* Release what hps__udp_loop_close left (after the loop's last run). */
void hps__udp_loop_free(hps__loop *lp);
/* Connection hooks, dispatched from tcp.c for UDP connections. */
void hps__udp_close(hps__conn *c, int op, int err);
void hps__udp_pause(hps__conn *c, int pause);
int hps__udp_write(hps__conn *c, hps__wreq *w);
/* hps_send/hps_sendv (to NULL) and hps_send_to (to set) of UDP roles. */
int hps__udp_send(hps_endpoint *ep, hps_conn_id id, const hps__addr *to,
                  const hps_buf *bufs, int n);
int hps__udp_send_to(hps_endpoint *ep, const char *host, uint16_t port,
                     const hps_buf *bufs, int n);
int hps__udp_membership(hps_endpoint *ep, const char *group, const char *iface,
                        int join);
int hps__udp_set_iface(hps_endpoint *ep, const char *iface);

#endif
