/* fuzz_udp.c - libFuzzer target for the UDP roles (core/udp.c): datagrams
 * from several peers, interleaved with API calls, against endpoints that
 * live across inputs:
 *   S  a UDP server, 3 workers (SO_REUSEPORT), max datagram 512, idle
 *      detection 200 ms x 2;
 *   N  a UDP node, max datagram 512;
 *   (S and N bind 127.0.0.1, or "::" (dual stack: IPv4 peers as
 *   v4-mapped addresses) every other time they are made)
 *   C  a UDP client of S, max datagram 384 (so S can send it oversize),
 *      idle detection 100 ms x 3 (heartbeats);
 *   K  a UDP cast on group 239.255.77.1 over the loopback interface
 *      (hps_cast_interface "127.0.0.1"; its own datagrams come back);
 *   four plain UDP sockets (the "raw" peers) on 127.0.0.1.
 * An endpoint found stopped (a handler may stop it), or a client or node
 * without its connection, is checked (below) and made anew.
 *
 * Checked in the handler (the header's promises):
 *   - every event: type in range, reserved 0, fd only in PREPARE, the
 *     endpoint's own handle, conn 0 exactly for PREPARE and SHUTDOWN;
 *   - IDs: ACCEPT (server) or CONNECT (client, node) once per ID, then
 *     only events of a live ID, then exactly one CLOSE (an ACCEPT answered
 *     with ERROR: none); no event of an ID after its CLOSE;
 *   - addr/port: a server or client connection's events carry its peer,
 *     the same in every event (and for the client: S's address); a node's
 *     or cast's RECEIVE and SEND carry the sender / destination; a datagram of a raw
 *     peer arrives on the connection of that peer's port;
 *   - RECEIVE: one whole datagram, never more than the endpoint's max
 *     datagram (each datagram carries its own length and a pattern, so a
 *     cut or a mix shows), never empty on a server or client (heartbeats
 *     are not delivered); an oversize datagram on a node or cast is a
 *     RECEIVE with HPS_EDGRAMSIZE, data NULL, len 0;
 *   - CLOSE op/error pairs that the header names; SEND at most max bytes;
 *   - calls from handlers (chosen by the input per endpoint and event
 *     type) return documented codes; hps_free / hps_wait there give
 *     HPS_EINLOOP; hps_remote_address there names ev->addr/port.
 * After an endpoint stopped: every announced ID got its one CLOSE, one
 * SHUTDOWN per run, no connection left. Every API call's return must be a
 * code the header documents for that function (as in fuzz_api.c); where
 * the arguments decide the code (NULL data, len 0, len over the max, wrong
 * role, NULL handle, a closed ID) the exact code is checked.
 *
 * Bounded: at the end of an input the handler actions are cleared,
 * everything is resumed, and a marker datagram goes, from every sender the
 * input used, to every receiver it sent to, again and again, until the
 * receiver's handler saw it (a peer's datagrams reach one loop in order,
 * so the marker proves the rest was handled). Replies the raw peers got
 * are drained and checked (at most 512 bytes, pattern intact).
 *
 * Input: a sequence of operations, each an opcode byte then argument bytes
 * read as needed (missing bytes read as 0), at most MAX_OPS. Opcodes
 * (byte % OP_N): see enum op below. Seeds: tests/fixtures/fuzz/udp/.
 * FUZZ_UDP_VERBOSE=1 prints each operation and event; FUZZ_UDP_NO_CAST=1
 * leaves the cast out (as happens by itself where lo has no multicast).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "hpsock.h"

#define CHECK(cond)                                                           \
  do {                                                                        \
    if (!(cond)) {                                                            \
      fprintf(stderr, "fuzz_udp: check failed at line %d: %s\n", __LINE__,    \
              #cond);                                                         \
      abort();                                                                \
    }                                                                         \
  } while (0)

#define FAIL(...)                                                             \
  do {                                                                        \
    fprintf(stderr, "fuzz_udp: " __VA_ARGS__);                                \
    fputc('\n', stderr);                                                      \
    abort();                                                                  \
  } while (0)

#define MAX_OPS 48
#define NRAW 4
#define MAXIDS 4096
#define POOL 32
#define S_MAX 512
#define N_MAX 512
#define C_MAX 384
#define BIG 65507 /* the largest IPv4 UDP payload */

/* Datagram senders, as they appear in byte 1 of a datagram. */
enum { SRC_RAW0 = 0, SRC_NODE = NRAW, SRC_CLIENT, SRC_SERVER, SRC_CAST, NSRC };

static int g_verbose;

/* ------------------------------------------------------------------ */
/* Documented returns (as fuzz_api.c)                                  */
/* ------------------------------------------------------------------ */

static uint64_t ebit(int rc) { return 1ull << (-30000 - rc); }
#define E(x) ebit(HPS_##x)
#define R_SYS (1ull << 62)
#define R_POS (1ull << 61)

enum {
  F_SEND, F_SENDTO, F_MEMB, F_IFACE, F_DISC, F_PAUSE, F_STATS, F_LIST,
  F_ADDR, F_LISTEN, F_SETOPT, F_GETOPT, F_STOP, F_START, F_FREE, F_WAIT,
  F_FILE, F_FETCH, F_CONNECT, F_EXTRA, F_DWHERE, F_N
};
static const char *const f_name[F_N] = {
    "send/sendv", "send_to", "join/leave_group", "cast_interface",
    "disconnect", "pause_receive", "get_stats", "conn_list",
    "local/remote_address", "listen_address", "setopt", "getopt", "stop",
    "start", "free", "wait", "send_file", "fetch/peek", "connect",
    "set/get_extra", "disconnect_silent/long"};
static uint64_t f_allowed[F_N];

static void init_allowed(void) {
  uint64_t nomem = E(ENOMEM);
  /* UDP: "Every hps_send / hps_sendv is one datagram (... else
   * HPS_EDGRAMSIZE; never empty: len 0 is HPS_EINVAL)"; a node's hps_send
   * is HPS_EROLE; a system error when it failed at once on the loop. */
  f_allowed[F_SEND] = E(EHANDLE) | E(EINVAL) | E(ENOTFOUND) | E(ESENDQ) |
                      E(EDGRAMSIZE) | E(EROLE) | nomem | R_SYS;
  f_allowed[F_SENDTO] = E(EHANDLE) | E(EROLE) | E(EINVAL) | E(EADDR) |
                        E(EDGRAMSIZE) | E(ENOTFOUND) | E(ESENDQ) | nomem |
                        R_SYS;
  f_allowed[F_MEMB] = E(EHANDLE) | E(EROLE) | E(EINVAL) | E(EADDR) |
                      E(ESTATE) | R_SYS;
  f_allowed[F_IFACE] = E(EHANDLE) | E(EROLE) | E(EADDR) | E(ESTATE);
  f_allowed[F_DISC] = E(EHANDLE) | E(ENOTFOUND) | nomem;
  f_allowed[F_PAUSE] = E(EHANDLE) | E(ENOTFOUND) | nomem;
  f_allowed[F_STATS] = E(EHANDLE) | E(EINVAL) | E(ENOTFOUND);
  f_allowed[F_LIST] = E(EHANDLE) | E(EINVAL) | R_POS;
  f_allowed[F_ADDR] = E(EHANDLE) | E(ENOTFOUND) | E(EINVAL) | E(ESTATE);
  f_allowed[F_LISTEN] = E(EHANDLE) | E(EROLE) | E(ESTATE) | E(EINVAL);
  /* EMODEL: "Only the push model (HPS_OPT_RECV_MODEL, else HPS_EMODEL)" */
  f_allowed[F_SETOPT] = E(EHANDLE) | E(EINVAL) | E(ESTATE) | E(EMODEL);
  f_allowed[F_GETOPT] = E(EHANDLE) | E(EINVAL);
  f_allowed[F_STOP] = E(EHANDLE) | E(ESTATE);
  f_allowed[F_START] = E(EHANDLE) | E(ESTATE) | E(EADDR) | E(EHANDLER) |
                       E(EMODEL) | R_SYS | nomem;
  f_allowed[F_FREE] = E(EHANDLE) | E(EINLOOP);
  f_allowed[F_WAIT] = E(ETIMEDOUT) | E(EHANDLE) | E(EINLOOP);
  f_allowed[F_FILE] = E(EHANDLE) | E(EROLE) | E(EINVAL);
  f_allowed[F_FETCH] = E(EHANDLE) | E(EINVAL) | E(EMODEL);
  f_allowed[F_CONNECT] = E(EHANDLE) | E(EROLE);
  f_allowed[F_EXTRA] = E(EHANDLE) | E(ENOTFOUND) | E(EINVAL);
  f_allowed[F_DWHERE] = E(EHANDLE) | E(EINVAL) | R_POS;
}

static int known_lib_error(int rc) {
  switch (rc) {
#define XX(name, value, msg) case value:
    HPS_ERRNO_MAP(XX)
#undef XX
    return 1;
  default:
    return 0;
  }
}

static int chk(int f, int rc) {
  uint64_t a = f_allowed[f];
  int ok;
  CHECK(hps_strerror(rc) != NULL && hps_err_name(rc) != NULL);
  if (rc == 0) ok = 1;
  else if (rc > 0) ok = (a & R_POS) != 0;
  else if (known_lib_error(rc)) ok = (a & ebit(rc)) != 0;
  else ok = (a & R_SYS) != 0 && rc > -4096;
  if (g_verbose)
    fprintf(stderr, "  %s -> %d (%s)\n", f_name[f], rc,
            rc < 0 ? hps_err_name(rc) : "");
  if (!ok)
    FAIL("hps_%s returned %d (%s), not documented", f_name[f], rc,
         hps_err_name(rc));
  return rc;
}

/* ------------------------------------------------------------------ */
/* Endpoints and what their events said                                */
/* ------------------------------------------------------------------ */

enum { R_LIVE = 1, R_CLOSED = 2 };

typedef struct idrec {
  hps_conn_id id;
  int st; /* R_LIVE, R_CLOSED */
  char addr[48];
  int port;
} idrec;

enum { X_S, X_N, X_C, X_K, NX };
#define GROUP "239.255.77.1"

typedef struct epx {
  const char *name;
  hps_endpoint *ep; /* NULL: none */
  int role;
  size_t max; /* its max datagram */
  int makes;  /* S and N: made on "::" (dual stack) every other time */
  pthread_mutex_t mu;
  /* under mu: */
  idrec ids[MAXIDS];
  int nids, overflow;
  int runs, shutdowns;
  int masked;           /* ACCEPT/CONNECT were masked (HPS_OPT_EVENTS) */
  uint32_t mark[NSRC];  /* last marker nonce seen from each sender */
  hps_conn_id peer_c, peer_n; /* S only: the connections of C and N */
  int act[16];          /* per event type: what the handler does (atomic) */
} epx;

static epx g_x[NX];
static uint16_t g_sport, g_nport, g_cport; /* S, N and C's ports */
static uint16_t g_kport;                   /* K's port */
static int g_no_cast; /* the cast could not start here: left out */
/* g_sport is written by the fuzzing thread only, read by handlers too. */
static uint16_t g_ctarget;                 /* the port C was started to */
/* Handlers read these while the fuzzing thread may set them. */
#define LD(v) __atomic_load_n(&(v), __ATOMIC_RELAXED)
static uint16_t g_closed_port;             /* bound UDP socket, never read */
static int g_closed_fd = -1;
static int g_raw[NRAW];
static uint16_t g_rawport[NRAW];
static pthread_mutex_t g_pool_mu = PTHREAD_MUTEX_INITIALIZER;
static hps_conn_id g_pool[POOL];
static unsigned g_pool_n;
static uint32_t g_nonce;
static uint8_t g_dg[BIG + 16]; /* datagram being built */

static void pool_add(hps_conn_id id) {
  pthread_mutex_lock(&g_pool_mu);
  g_pool[g_pool_n++ % POOL] = id;
  pthread_mutex_unlock(&g_pool_mu);
}

static idrec *find_locked(epx *x, hps_conn_id id) {
  int i;
  for (i = 0; i < x->nids; i++)
    if (x->ids[i].id == id) return &x->ids[i];
  return NULL;
}

static idrec *add_locked(epx *x, hps_conn_id id) {
  if (x->nids == MAXIDS) { /* forget closed IDs (an event of one of them
                              now shows as an event of an unknown ID) */
    int i, j = 0;
    for (i = 0; i < x->nids; i++)
      if (x->ids[i].st == R_LIVE) x->ids[j++] = x->ids[i];
    x->nids = j;
  }
  if (x->nids == MAXIDS) {
    x->overflow = 1;
    return NULL;
  }
  memset(&x->ids[x->nids], 0, sizeof(idrec));
  x->ids[x->nids].id = id;
  return &x->ids[x->nids++];
}

static int is_closed(epx *x, hps_conn_id id) {
  idrec *r;
  int c;
  pthread_mutex_lock(&x->mu);
  r = find_locked(x, id);
  c = r != NULL && r->st == R_CLOSED;
  pthread_mutex_unlock(&x->mu);
  return c;
}

/* ------------------------------------------------------------------ */
/* Datagrams: [0] 'U' (or 'E' when echoed), [1] sender, [2..3] length,  */
/* [4..5] seq, [6..7] 5a a5, then byte i = i * 13 + seq. Shorter than   */
/* 8: all 0xaa. A marker: 'M' 'K' sender 0 nonce(4).                    */
/* ------------------------------------------------------------------ */

static void make_dgram(uint8_t *p, size_t len, int src, unsigned seq) {
  size_t i;
  if (len < 8) {
    memset(p, 0xaa, len);
    return;
  }
  p[0] = 'U';
  p[1] = (uint8_t)src;
  p[2] = (uint8_t)(len >> 8);
  p[3] = (uint8_t)len;
  p[4] = (uint8_t)(seq >> 8);
  p[5] = (uint8_t)seq;
  p[6] = 0x5a;
  p[7] = 0xa5;
  for (i = 8; i < len; i++) p[i] = (uint8_t)(i * 13 + seq);
}

static void make_marker(uint8_t *p, int src, uint32_t nonce) {
  p[0] = 'M';
  p[1] = 'K';
  p[2] = (uint8_t)src;
  p[3] = 0;
  memcpy(p + 4, &nonce, 4);
}

/* Check a datagram's integrity; returns the marker's nonce through *mark
 * (1) or 0 for data. *src gets the sender byte (-1 when short). */
static int check_dgram(const char *who, const uint8_t *p, size_t len,
                       int *src, uint32_t *mark) {
  size_t i;
  unsigned seq;
  *src = -1;
  if (len < 8) {
    for (i = 0; i < len; i++)
      if (p[i] != 0xaa)
        FAIL("%s: short datagram of %zu bytes altered: %02x %02x %02x %02x",
             who, len, p[0], len > 1 ? p[1] : 0, len > 2 ? p[2] : 0,
             len > 3 ? p[3] : 0);
    return 0;
  }
  if (len == 8 && p[0] == 'M' && p[1] == 'K' && p[3] == 0 && p[2] < NSRC) {
    *src = p[2];
    memcpy(mark, p + 4, 4);
    return 1;
  }
  if ((p[0] != 'U' && p[0] != 'E') || p[1] >= NSRC || p[6] != 0x5a ||
      p[7] != 0xa5)
    FAIL("%s: a datagram of %zu bytes that nobody sent (%02x %02x)", who, len,
         p[0], p[1]);
  if (((size_t)p[2] << 8 | p[3]) != len)
    FAIL("%s: datagram of %zu bytes delivered as %zu (cut or merged)", who,
         (size_t)p[2] << 8 | p[3], len);
  seq = (unsigned)p[4] << 8 | p[5];
  for (i = 8; i < len; i++)
    if (p[i] != (uint8_t)(i * 13 + seq))
      FAIL("%s: datagram byte %zu altered", who, i);
  *src = p[1];
  return 0;
}

/* ------------------------------------------------------------------ */
/* The handler                                                          */
/* ------------------------------------------------------------------ */

enum {
  A_NONE, A_ERROR, A_ECHO, A_DISC, A_PAUSE, A_STATS, A_STOP, A_FREE, A_WAIT,
  A_JUNK, A_N
};

/* Node and cast: RECEIVE and SEND name the other side, a datagram too
 * big is a RECEIVE with an error, a failed one a SEND with an error. */
static int dgram_role(const epx *x) {
  return x->role == HPS_UDP_NODE || x->role == HPS_UDP_CAST;
}

static int valid_host(const char *a) {
  uint8_t b[16];
  return a != NULL && (inet_pton(AF_INET, a, b) == 1 ||
                       inet_pton(AF_INET6, a, b) == 1);
}

static int act(epx *x, const hps_event *ev) {
  int a = __atomic_load_n(&x->act[ev->type & 15], __ATOMIC_RELAXED);
  hps_endpoint *ep = ev->endpoint;
  hps_stats st;
  char host[64];
  uint16_t port = 0;
  int rc;
  if (ev->type == HPS_EV_PREPARE && a != A_ERROR) return HPS_HR_OK;
  switch (a) {
  case A_ERROR:
    return HPS_HR_ERROR;
  case A_ECHO:
    /* Send a received datagram back, as 'E' (never echoed again). */
    if (ev->type == HPS_EV_RECEIVE && ev->data != NULL && ev->len >= 8 &&
        ((const uint8_t *)ev->data)[0] == 'U') {
      uint8_t *e = malloc(ev->len);
      CHECK(e != NULL);
      memcpy(e, ev->data, ev->len);
      e[0] = 'E';
      if (dgram_role(x))
        rc = chk(F_SENDTO, hps_send_to(ep, ev->addr, (uint16_t)ev->port, e,
                                       ev->len));
      else
        rc = chk(F_SEND, hps_send(ep, ev->conn, e, ev->len));
      if (ev->len > LD(x->max)) CHECK(rc == HPS_EDGRAMSIZE);
      free(e);
    }
    break;
  case A_DISC:
    rc = chk(F_DISC, hps_disconnect(ep, ev->conn, (int)(ev->conn & 1)));
    if (ev->type == HPS_EV_CLOSE) CHECK(rc == HPS_ENOTFOUND);
    break;
  case A_PAUSE:
    chk(F_PAUSE, hps_pause_receive(ep, ev->conn, 1));
    if (ev->conn & 2) chk(F_PAUSE, hps_pause_receive(ep, ev->conn, 0));
    break;
  case A_STATS:
    chk(F_STATS, hps_get_stats(ep, ev->conn, &st));
    rc = chk(F_ADDR, hps_remote_address(ep, ev->conn, host, sizeof(host),
                                        &port));
    /* A server or client connection's peer is fixed: it is the one the
     * events carry. */
    if (rc == 0 && !dgram_role(x) && ev->type != HPS_EV_CLOSE) {
      CHECK(ev->addr != NULL && strcmp(host, ev->addr) == 0);
      CHECK(port == ev->port);
    }
    chk(F_LIST, hps_conn_list(ep, NULL, 0, NULL));
    break;
  case A_STOP:
    CHECK(chk(F_STOP, hps_stop(ep)) == 0);
    break;
  case A_FREE:
    CHECK(chk(F_FREE, hps_free(ep)) == HPS_EINLOOP);
    break;
  case A_WAIT:
    CHECK(chk(F_WAIT, hps_wait(ep, 0)) == HPS_EINLOOP);
    break;
  case A_JUNK:
    CHECK(chk(F_SEND, hps_send(ep, ev->conn, NULL, 5)) == HPS_EINVAL);
    CHECK(chk(F_SEND, hps_send(ep, ev->conn, "x", 0)) == HPS_EINVAL);
    CHECK(chk(F_SENDTO, hps_send_to(ep, "127.0.0.1", 9, "x", 0)) ==
          (dgram_role(x) ? HPS_EINVAL : HPS_EROLE));
    chk(F_MEMB, hps_join_group(ep, "239.255.0.1", "127.0.0.1"));
    chk(F_MEMB, hps_leave_group(ep, "239.255.0.1", "127.0.0.1"));
    rc = chk(F_IFACE, hps_cast_interface(ep, NULL));
    /* a node's SHUTDOWN handler may see it stopped already */
    CHECK(rc == (dgram_role(x) ? HPS_ESTATE : HPS_EROLE) ||
          (dgram_role(x) && ev->type == HPS_EV_SHUTDOWN &&
           rc == 0));
    break;
  default:
    break;
  }
  return HPS_HR_OK;
}

static void check_close(epx *x, const hps_event *ev) {
  int e = ev->error, ok;
  CHECK(e <= 0 && (e == 0 || known_lib_error(e) || e > -4096));
  switch (ev->op) {
  case HPS_OP_CLOSE: /* disconnect or stop; disconnect_silent */
    ok = e == 0 || e == HPS_ESILENCE;
    break;
  case HPS_OP_RECEIVE:
    ok = e == HPS_EDGRAMSIZE || e == HPS_EUDPIDLE || e == HPS_EHANDLER ||
         (x->role == HPS_UDP_CLIENT && e < 0 && !known_lib_error(e));
    break;
  case HPS_OP_SEND:
    ok = e == HPS_EHANDLER || (e < 0 && !known_lib_error(e));
    break;
  case HPS_OP_CONNECT: /* CONNECT or HANDSHAKE returned ERROR */
    ok = x->role != HPS_UDP_SERVER && e == HPS_EHANDLER;
    break;
  case HPS_OP_ACCEPT: /* a server's HANDSHAKE returned ERROR */
    ok = x->role == HPS_UDP_SERVER && e == HPS_EHANDLER;
    break;
  default:
    ok = 0;
  }
  if (!ok)
    FAIL("%s: CLOSE with op %d and error %d (%s) not documented", x->name,
         ev->op, e, hps_err_name(e));
}

/* One of the harness's sockets: what it sends has a known form. */
static int our_port(int port) {
  int k;
  for (k = 0; k < NRAW; k++)
    if (port == g_rawport[k]) return 1;
  return port == LD(g_sport) || port == LD(g_nport) || port == LD(g_cport) ||
         port == LD(g_kport);
}

static void check_receive(epx *x, const hps_event *ev) {
  int src = -1;
  uint32_t mark = 0;
  if (ev->error != 0) {
    /* "A cast or node gets a RECEIVE with error HPS_EDGRAMSIZE, op
     * HPS_OP_RECEIVE, data NULL and len 0" */
    if (!dgram_role(x) || ev->error != HPS_EDGRAMSIZE ||
        ev->op != HPS_OP_RECEIVE || ev->data != NULL || ev->len != 0)
      FAIL("%s: RECEIVE with error %d op %d data %p len %zu", x->name,
           ev->error, ev->op, ev->data, ev->len);
    return;
  }
  CHECK(ev->op == 0);
  if (ev->len > LD(x->max))
    FAIL("%s: RECEIVE of %zu bytes, max datagram %zu", x->name, ev->len,
         LD(x->max));
  if (ev->len == 0 && !dgram_role(x))
    FAIL("%s: empty RECEIVE (a heartbeat is not delivered)", x->name);
  CHECK(ev->data != NULL || ev->len == 0);
  if (!our_port(ev->port))
    return; /* another process on this host (loopback is shared) */
  if (check_dgram(x->name, ev->data, ev->len, &src, &mark)) {
    x->mark[src] = mark;
    if (src < NRAW && x->role == HPS_UDP_SERVER &&
        ev->port != g_rawport[src])
      FAIL("S: marker of raw peer %d (port %u) on a connection of port %d",
           src, g_rawport[src], ev->port);
  } else if (src >= 0 && src < NRAW && ev->port != g_rawport[src] &&
             ((const uint8_t *)ev->data)[0] == 'U') {
    FAIL("%s: datagram of raw peer %d (port %u) arrived from port %d",
         x->name, src, g_rawport[src], ev->port);
  }
}

static int handler(void *user, const hps_event *ev) {
  epx *x = user;
  idrec *r;
  int result, needs_addr;
  CHECK(ev != NULL && ev->endpoint != NULL);
  CHECK(ev->type >= HPS_EV_PREPARE && ev->type <= HPS_EV_SHUTDOWN);
  CHECK(ev->reserved == 0);
  CHECK(ev->type == HPS_EV_PREPARE ? ev->fd >= 0 : ev->fd == -1);
  CHECK((ev->type == HPS_EV_PREPARE || ev->type == HPS_EV_SHUTDOWN) ==
        (ev->conn == 0));
  if (ev->addr == NULL) CHECK(ev->port == 0);
  else CHECK(valid_host(ev->addr) && ev->port > 0 && ev->port <= 65535);
  if (g_verbose)
    fprintf(stderr, "  %s: event %d conn %llx len %zu op %d error %d %s:%d\n",
            x->name, ev->type, (unsigned long long)ev->conn, ev->len, ev->op,
            ev->error, ev->addr ? ev->addr : "-", ev->port);
  pthread_mutex_lock(&x->mu);
  CHECK(ev->endpoint == x->ep);
  switch (ev->type) {
  case HPS_EV_PREPARE:
  case HPS_EV_SHUTDOWN:
    CHECK(ev->addr == NULL);
    if (ev->type == HPS_EV_SHUTDOWN) x->shutdowns++;
    break;
  case HPS_EV_ACCEPT:
  case HPS_EV_CONNECT:
    if ((ev->type == HPS_EV_ACCEPT) != (x->role == HPS_UDP_SERVER))
      FAIL("%s: event %d for this role", x->name, ev->type);
    if (find_locked(x, ev->conn) != NULL)
      FAIL("%s: second ACCEPT/CONNECT of ID %llx", x->name,
           (unsigned long long)ev->conn);
    r = add_locked(x, ev->conn);
    if (r != NULL) {
      r->st = R_LIVE;
      if (ev->addr) snprintf(r->addr, sizeof(r->addr), "%s", ev->addr);
      r->port = ev->port;
    }
    if (x->role == HPS_UDP_SERVER && ev->port == LD(g_cport))
      x->peer_c = ev->conn;
    if (x->role == HPS_UDP_SERVER && ev->port == LD(g_nport))
      x->peer_n = ev->conn;
    break;
  default:
    r = find_locked(x, ev->conn);
    if (r == NULL && !x->masked && !x->overflow)
      FAIL("%s: event %d of ID %llx, never accepted or connected", x->name,
           ev->type, (unsigned long long)ev->conn);
    if (r != NULL && r->st != R_LIVE)
      FAIL("%s: event %d of ID %llx after its CLOSE", x->name, ev->type,
           (unsigned long long)ev->conn);
    if (r != NULL && !dgram_role(x) &&
        (ev->addr == NULL || strcmp(ev->addr, r->addr) != 0 ||
         ev->port != r->port))
      FAIL("%s: event %d of ID %llx names peer %s:%d, was %s:%d", x->name,
           ev->type, (unsigned long long)ev->conn,
           ev->addr ? ev->addr : "(null)", ev->port, r->addr, r->port);
    if (ev->type == HPS_EV_CLOSE) {
      check_close(x, ev);
      if (r != NULL) r->st = R_CLOSED;
      if (ev->conn == x->peer_c) x->peer_c = 0;
      if (ev->conn == x->peer_n) x->peer_n = 0;
    } else if (ev->type == HPS_EV_RECEIVE) {
      check_receive(x, ev);
    } else if (ev->type == HPS_EV_SEND) {
      CHECK(ev->len <= LD(x->max) && ev->len > 0);
      CHECK(ev->error == 0 || (dgram_role(x) &&
                               ev->op == HPS_OP_SEND && ev->error < 0));
    }
    break;
  }
  /* Which events must name a peer. */
  needs_addr = ev->type != HPS_EV_PREPARE && ev->type != HPS_EV_SHUTDOWN &&
               (!dgram_role(x) || ev->type == HPS_EV_RECEIVE ||
                ev->type == HPS_EV_SEND);
  if (needs_addr && ev->addr == NULL)
    FAIL("%s: event %d without addr", x->name, ev->type);
  if (x->role == HPS_UDP_CLIENT && ev->addr != NULL &&
      (strcmp(ev->addr, "127.0.0.1") != 0 || ev->port != LD(g_ctarget)))
    FAIL("C: event %d names %s:%d, not its server", ev->type, ev->addr,
         ev->port);
  pthread_mutex_unlock(&x->mu);
  if (ev->conn != 0) pool_add(ev->conn);
  result = act(x, ev);
  if (ev->type == HPS_EV_ACCEPT && result == HPS_HR_ERROR) {
    /* Refused: it never existed, no event follows. */
    pthread_mutex_lock(&x->mu);
    r = find_locked(x, ev->conn);
    if (r != NULL) r->st = R_CLOSED;
    pthread_mutex_unlock(&x->mu);
  }
  return result;
}

/* ------------------------------------------------------------------ */
/* Life cycle                                                           */
/* ------------------------------------------------------------------ */

static void check_quiet(epx *x) {
  int i;
  size_t count = 99;
  CHECK(hps_state(x->ep) == HPS_STATE_STOPPED);
  CHECK(hps_conn_count(x->ep) == 0);
  CHECK(hps_conn_list(x->ep, NULL, 0, &count) == 0 && count == 0);
  pthread_mutex_lock(&x->mu);
  for (i = 0; i < x->nids; i++)
    if (x->ids[i].st == R_LIVE)
      FAIL("%s: ID %llx got no CLOSE", x->name,
           (unsigned long long)x->ids[i].id);
  if (x->shutdowns != x->runs)
    FAIL("%s: %d SHUTDOWN events for %d runs", x->name, x->shutdowns,
         x->runs);
  pthread_mutex_unlock(&x->mu);
}

static int x_start(epx *x) {
  int rc;
  int64_t v = 0;
  const char *host = x->role == HPS_UDP_CAST ? GROUP
                     : x->role != HPS_UDP_CLIENT && (x->makes & 1)
                         ? "::"
                         : "127.0.0.1";
  uint16_t port = 0;
  /* Set before the events that read them. */
  CHECK(hps_getopt(x->ep, HPS_OPT_UDP_MAX_DATAGRAM, &v) == 0);
  __atomic_store_n(&x->max, (size_t)v, __ATOMIC_RELAXED);
  if (x->role == HPS_UDP_CLIENT) {
    port = g_sport;
    __atomic_store_n(&g_ctarget, port, __ATOMIC_RELAXED);
  }
  rc = chk(F_START, hps_start(x->ep, host, port));
  if (rc != 0) return rc;
  pthread_mutex_lock(&x->mu);
  x->runs++;
  pthread_mutex_unlock(&x->mu);
  if (x->role == HPS_UDP_CLIENT) {
    /* A handler (CONNECT answered ERROR, a disconnect) may have closed the
     * connection already: then it is made anew before the next input. */
    if (chk(F_ADDR, hps_local_address(x->ep, 0, NULL, 0, &port)) != 0)
      port = 0;
  } else
    CHECK(hps_listen_address(x->ep, NULL, 0, &port) == 0);
  if (x->role == HPS_UDP_SERVER)
    __atomic_store_n(&g_sport, port, __ATOMIC_RELAXED);
  else
    __atomic_store_n(x->role == HPS_UDP_NODE   ? &g_nport
                     : x->role == HPS_UDP_CAST ? &g_kport
                                               : &g_cport,
                     port, __ATOMIC_RELAXED);
  return 0;
}

static void x_stop(epx *x) {
  CHECK(chk(F_STOP, hps_stop(x->ep)) == 0);
  check_quiet(x);
}

static void x_free(epx *x) {
  if (x->ep == NULL) return;
  CHECK(chk(F_FREE, hps_free(x->ep)) == 0);
  pthread_mutex_lock(&x->mu);
  {
    int i;
    for (i = 0; i < x->nids; i++)
      if (x->ids[i].st == R_LIVE)
        FAIL("%s: ID %llx got no CLOSE (free)", x->name,
             (unsigned long long)x->ids[i].id);
    if (x->shutdowns != x->runs)
      FAIL("%s: %d SHUTDOWN events for %d runs (free)", x->name,
           x->shutdowns, x->runs);
  }
  pthread_mutex_unlock(&x->mu);
  x->ep = NULL;
}

/* A new endpoint in slot x, configured, started. */
static void x_make(epx *x) {
  int i;
  x_free(x);
  x->makes++;
  pthread_mutex_lock(&x->mu);
  x->nids = x->overflow = x->runs = x->shutdowns = x->masked = 0;
  x->peer_c = x->peer_n = 0;
  pthread_mutex_unlock(&x->mu);
  for (i = 0; i < 16; i++) __atomic_store_n(&x->act[i], 0, __ATOMIC_RELAXED);
  CHECK(hps_create(x->role, handler, x, &x->ep) == 0);
  switch (x->role) {
  case HPS_UDP_SERVER:
    CHECK(hps_setopt(x->ep, HPS_OPT_WORKERS, 3) == 0);
    CHECK(hps_setopt(x->ep, HPS_OPT_UDP_MAX_DATAGRAM, S_MAX) == 0);
    CHECK(hps_setopt(x->ep, HPS_OPT_UDP_DETECT_INTERVAL, 200) == 0);
    CHECK(hps_setopt(x->ep, HPS_OPT_UDP_DETECT_ATTEMPTS, 2) == 0);
    break;
  case HPS_UDP_NODE:
    CHECK(hps_setopt(x->ep, HPS_OPT_UDP_MAX_DATAGRAM, N_MAX) == 0);
    break;
  case HPS_UDP_CAST: /* the group on loopback, own datagrams come back */
    CHECK(hps_setopt(x->ep, HPS_OPT_UDP_MAX_DATAGRAM, N_MAX) == 0);
    CHECK(hps_cast_interface(x->ep, "127.0.0.1") == 0);
    break;
  default:
    CHECK(hps_setopt(x->ep, HPS_OPT_UDP_MAX_DATAGRAM, C_MAX) == 0);
    CHECK(hps_setopt(x->ep, HPS_OPT_UDP_DETECT_INTERVAL, 100) == 0);
    CHECK(hps_setopt(x->ep, HPS_OPT_UDP_DETECT_ATTEMPTS, 3) == 0);
    break;
  }
  if (x->role == HPS_UDP_CAST && x->makes == 1 && x_start(x) != 0) {
    /* No multicast on this host's loopback: fuzz without the cast. */
    fprintf(stderr, "fuzz_udp: no multicast on lo here; the cast is left out\n");
    x_free(x);
    g_no_cast = 1;
    return;
  }
  if (x->role != HPS_UDP_CAST || x->makes > 1) CHECK(x_start(x) == 0);
}

/* Whether a client or node still has its connection. */
static int has_conn(epx *x) {
  hps_stats st;
  return hps_get_stats(x->ep, 0, &st) == 0;
}

/* Everything running: S started, N and C started with their connection,
 * C aimed at S's current port. */
static void ensure_all(void) {
  epx *s = &g_x[X_S], *n = &g_x[X_N], *c = &g_x[X_C], *k = &g_x[X_K];
  if (s->ep == NULL || hps_state(s->ep) != HPS_STATE_STARTED) {
    if (s->ep) x_stop(s);
    x_make(s);
  }
  if (n->ep == NULL || hps_state(n->ep) != HPS_STATE_STARTED ||
      !has_conn(n)) {
    if (n->ep) x_stop(n);
    x_make(n);
  }
  if (!g_no_cast && (k->ep == NULL || hps_state(k->ep) != HPS_STATE_STARTED ||
                     !has_conn(k))) {
    if (k->ep) x_stop(k);
    x_make(k);
  }
  if (c->ep == NULL || hps_state(c->ep) != HPS_STATE_STARTED ||
      !has_conn(c) || g_ctarget != g_sport) {
    if (c->ep) x_stop(c);
    x_make(c);
  }
}

/* ------------------------------------------------------------------ */
/* Raw peers                                                            */
/* ------------------------------------------------------------------ */

static int udp_sock(uint16_t *port) {
  struct sockaddr_in a;
  socklen_t len = sizeof(a);
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  int big = 1 << 20;
  CHECK(fd >= 0);
  setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
  setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
  memset(&a, 0, sizeof(a));
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  CHECK(bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0);
  CHECK(getsockname(fd, (struct sockaddr *)&a, &len) == 0);
  *port = ntohs(a.sin_port);
  return fd;
}

static void raw_send(int k, uint16_t port, const void *p, size_t len) {
  struct sockaddr_in a;
  memset(&a, 0, sizeof(a));
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(port);
  /* A full socket buffer drops it: loopback UDP may, the markers resend. */
  (void)sendto(g_raw[k], p, len, 0, (struct sockaddr *)&a, sizeof(a));
}

/* What the raw peers got back (server echoes, heartbeat answers, node
 * sends): whole datagrams of at most 512 bytes. */
static void raw_drain(void) {
  static uint8_t buf[BIG + 1];
  int k, src;
  uint32_t mark;
  for (k = 0; k < NRAW; k++)
    for (;;) {
      struct sockaddr_in from;
      socklen_t flen = sizeof(from);
      ssize_t n = recvfrom(g_raw[k], buf, sizeof(buf), 0,
                           (struct sockaddr *)&from, &flen);
      if (n < 0) break;
      if (!our_port(ntohs(from.sin_port))) continue;
      if ((size_t)n > S_MAX)
        FAIL("raw peer %d got a datagram of %zd bytes (max 512)", k, n);
      check_dgram("raw peer", buf, (size_t)n, &src, &mark);
    }
}

/* ------------------------------------------------------------------ */
/* Markers                                                              */
/* ------------------------------------------------------------------ */

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static uint32_t seen_mark(epx *x, int src) {
  uint32_t m;
  pthread_mutex_lock(&x->mu);
  m = x->mark[src];
  pthread_mutex_unlock(&x->mu);
  return m;
}

/* Resume everything, stop the handler actions, deliver every event. */
static void calm(void) {
  int i, j;
  hps_conn_id ids[64];
  for (i = 0; i < NX; i++)
    for (j = 0; j < 16; j++)
      __atomic_store_n(&g_x[i].act[j], 0, __ATOMIC_RELAXED);
  ensure_all();
  for (i = 0; i < NX; i++) {
    epx *x = &g_x[i];
    int n;
    if (x->ep == NULL) continue; /* the cast, left out */
    CHECK(hps_setopt(x->ep, HPS_OPT_EVENTS, HPS_EVENTS_ALL) == 0);
    n = hps_conn_list(x->ep, ids, 64, NULL);
    for (j = 0; j < n; j++) hps_pause_receive(x->ep, ids[j], 0);
  }
}

/* Send a marker from sender src to endpoint slot dst until dst saw it. */
static void marker(int src, int dst) {
  uint8_t m[8];
  uint32_t nonce = ++g_nonce;
  uint64_t t0 = now_ms(), wait_us = 200;
  int tries = 0;
  make_marker(m, src, nonce);
  for (;;) {
    epx *x = &g_x[dst];
    uint64_t t;
    if (src < NRAW) {
      raw_send(src, dst == X_S ? g_sport : dst == X_N ? g_nport : g_kport, m,
               8);
    } else if (src == SRC_NODE) {
      chk(F_SENDTO, hps_send_to(g_x[X_N].ep, "127.0.0.1", g_sport, m, 8));
    } else if (src == SRC_CLIENT) {
      chk(F_SEND, hps_send(g_x[X_C].ep, 0, m, 8));
    } else if (src == SRC_CAST) { /* to the group, back to itself */
      chk(F_SEND, hps_send(g_x[X_K].ep, 0, m, 8));
    } else { /* server to its connection of C or N */
      hps_conn_id id;
      pthread_mutex_lock(&g_x[X_S].mu);
      id = dst == X_C ? g_x[X_S].peer_c : g_x[X_S].peer_n;
      pthread_mutex_unlock(&g_x[X_S].mu);
      if (id == 0) return; /* that peer has no connection now */
      if (chk(F_SEND, hps_send(g_x[X_S].ep, id, m, 8)) == HPS_ENOTFOUND)
        return;
    }
    for (t = 0; t < wait_us; t += 50) {
      if (seen_mark(x, src) == nonce) return;
      usleep(50);
    }
    if (seen_mark(x, src) == nonce) return;
    if (now_ms() - t0 > 20000)
      FAIL("marker from sender %d to %s not delivered in 20 s (%d tries)",
           src, x->name, tries);
    if (wait_us < 20000) wait_us *= 2;
    tries++;
    /* A handler action still running may have stopped something. */
    if (tries % 8 == 0) calm();
  }
}

/* ------------------------------------------------------------------ */
/* Input                                                                */
/* ------------------------------------------------------------------ */

typedef struct rd {
  const uint8_t *p;
  size_t n;
} rd;

static uint8_t u8(rd *r) {
  if (r->n == 0) return 0;
  r->n--;
  return *r->p++;
}

static uint16_t u16(rd *r) {
  uint16_t v = u8(r);
  return (uint16_t)(v << 8 | u8(r));
}

static uint64_t u64(rd *r) {
  uint64_t v = 0;
  int i;
  for (i = 0; i < 8; i++) v = v << 8 | u8(r);
  return v;
}

/* Size of a datagram, around max. */
static size_t pick_size(rd *r, size_t max) {
  uint8_t b = u8(r);
  switch (b % 16) {
  case 0: return 0;
  case 1: return 1;
  case 2: return 7;
  case 3: return 8;
  case 4: return 9;
  case 5: return 100;
  case 6: return max - 1;
  case 7: return max;
  case 8: return max + 1;
  case 9: return max + 2;
  case 10: return 1432;
  case 11: return 4096;
  case 12: return BIG;
  case 13: return 65536; /* over any datagram */
  case 14: return max < 64 ? max : max - 64 + (b >> 4);
  default: return u16(r) % (BIG + 1);
  }
}

/* An endpoint handle: S, N, C or NULL. */
static epx *pick_x(rd *r) {
  uint8_t b = u8(r);
  if (b % 4 == 3) return (b & 4) && !g_no_cast ? &g_x[X_K] : NULL;
  return &g_x[b % 4];
}

/* S, N, C, or K when bit 7 is set. */
static epx *pick_slot(uint8_t b) {
  return (b & 0x80) && !g_no_cast ? &g_x[X_K] : &g_x[b % 3];
}

static hps_conn_id pick_id(rd *r) {
  uint8_t b = u8(r);
  hps_conn_id id;
  switch (b & 7) {
  case 0: return 0;
  case 1: return u64(r);
  default:
    pthread_mutex_lock(&g_pool_mu);
    id = g_pool[(b >> 3) % POOL];
    pthread_mutex_unlock(&g_pool_mu);
    if ((b & 7) == 5) id += 1ull << 32;    /* next generation */
    if ((b & 7) == 6) id |= 0xffull << 24; /* no such loop */
    return id;
  }
}

/* Numeric hosts only (and "localhost", from the hosts file): any other
 * name is a DNS query, which may wait for the resolver's timeout (a 10 s
 * input here once); hpsock resolves names synchronously by design. */
static const char *pick_host(rd *r) {
  static const char *const hosts[] = {
      "127.0.0.1",  NULL,      "",           "::1",
      "0.0.0.0",    "localhost", "::",       "224.0.0.1",
      "127.255.255.255", "::ffff:127.0.0.1", "239.255.0.1",
      "255.255.255.255", "127.0.0.2", "fe80::1%lo", "fe80::1",
      "::ffff:255.255.255.255"};
  return hosts[u8(r) % 16];
}

static uint16_t pick_port(rd *r) {
  uint8_t b = u8(r) % 8;
  switch (b) {
  case 0: return 0;
  case 1: return g_sport;
  case 2: return g_nport;
  case 3: return g_cport;
  case 4: return g_closed_port;
  case 5: return 65535;
  default: return g_rawport[b % NRAW];
  }
}

static const char *pick_group(rd *r) {
  static const char *const g[] = {
      NULL, "", "239.255.0.1", "224.0.0.1", "ff02::1", "ff05::1:3", "::1",
      "127.0.0.1", "junk", "239.255.0.1%lo", "255.255.255.255",
      "239.255.255.255", "224.0.0.0", "ff02::1%lo", "ff02::1%nosuch",
      "0.0.0.0"};
  return g[u8(r) % 16];
}

static const char *pick_iface(rd *r) {
  static char longif[100];
  static const char *const g[] = {NULL, "", "127.0.0.1", "::1", "::%lo",
                                  "eth99", "0.0.0.0", "10.255.255.1",
                                  "::%nosuch", "1.2.3", NULL};
  uint8_t b = u8(r) % 12;
  if (b == 11) {
    memset(longif, '1', sizeof(longif) - 1);
    return longif;
  }
  return g[b];
}

static const int64_t k_vals[] = {-1, 0, 1, 2, 3, 7, 8, 512, 513, 1432,
                                 65507, 65527, 65528, 100000, 1 << 30,
                                 INT64_MIN, INT64_MAX};
#define NVALS (sizeof(k_vals) / sizeof(k_vals[0]))

/* id got its CLOSE, yet a lookup found it. The connection is dropped
 * right after its CLOSE handler returns (stats and addresses stay
 * readable inside it), so a lookup may race that: it must be gone soon. */
static void gone_soon(epx *x, hps_conn_id id) {
  hps_stats st;
  uint64_t t0 = now_ms();
  while (hps_get_stats(x->ep, id, &st) == 0) {
    if (now_ms() - t0 > 5000)
      FAIL("%s: ID %llx still found 5 s after its CLOSE", x->name,
           (unsigned long long)id);
    usleep(100);
  }
}

enum op {
  OP_RAW,      /* raw peer k sends a datagram to S, N or C's port */
  OP_NODE,     /* N: hps_send_to(host, port, size) */
  OP_CLIENT,   /* C: hps_send / hps_sendv */
  OP_SENDBACK, /* S: hps_send / hps_sendv on a connection */
  OP_DISC,     /* hps_disconnect */
  OP_PAUSE,    /* hps_pause_receive */
  OP_STATS,    /* hps_get_stats */
  OP_LIST,     /* hps_conn_list */
  OP_ADDR,     /* hps_remote/local/listen_address */
  OP_MEMB,     /* hps_join_group / hps_leave_group */
  OP_IFACE,    /* hps_cast_interface */
  OP_SETOPT,   /* hps_setopt (UDP keys and more) while running */
  OP_GETOPT,   /* hps_getopt */
  OP_ACT,      /* set a handler action */
  OP_RESTART,  /* stop, check, start again */
  OP_SLEEP,    /* let the loops run */
  OP_WRONG,    /* TCP-only calls on UDP roles */
  OP_DWHERE,   /* hps_disconnect_silent / long */
  OP_N
};

static int g_used_raw[NRAW][NX]; /* raw peer k sent to slot */
static int g_used_node, g_used_client, g_used_server, g_used_cast;

static void run_op(rd *r) {
  uint8_t op = u8(r) % OP_N, b;
  epx *x;
  hps_endpoint *ep;
  hps_conn_id id;
  size_t len;
  int rc, was_closed;
  if (g_verbose) fprintf(stderr, "op %d\n", op);
  switch (op) {
  case OP_RAW: {
    int k, dst;
    b = u8(r);
    k = b % NRAW;
    dst = (b & 0x80) && !g_no_cast ? X_K : (b >> 2) % 3;
    len = pick_size(r, g_x[dst].max);
    if (len > BIG) len = BIG;
    make_dgram(g_dg, len, SRC_RAW0 + k, (unsigned)g_nonce + len);
    raw_send(k,
             dst == X_S   ? g_sport
             : dst == X_N ? g_nport
             : dst == X_K ? g_kport
                          : g_cport,
             g_dg, len);
    if (dst != X_C) g_used_raw[k][dst] = 1;
    break;
  }
  case OP_NODE: {
    int bad_addr, stopped;
    const char *host = pick_host(r);
    uint16_t port = pick_port(r);
    b = u8(r);
    len = pick_size(r, N_MAX);
    if (len > BIG) len = BIG;
    make_dgram(g_dg, len, SRC_NODE, b);
    rc = chk(F_SENDTO, hps_send_to(g_x[X_N].ep, host, port,
                                   (b & 1) ? NULL : g_dg, len));
    /* The header names no order between a bad address and a size over
     * the max: either error is clear. */
    bad_addr = host == NULL || host[0] == '\0' || port == 0;
    /* nor between a stopped node (HPS_ENOTFOUND) and those; only this
     * thread starts N, so STARTED after the call was STARTED during it */
    stopped = hps_state(g_x[X_N].ep) != HPS_STATE_STARTED;
    if (b & 1 || len == 0) CHECK(rc == HPS_EINVAL);
    else if (len > N_MAX)
      CHECK(rc == HPS_EDGRAMSIZE || rc == HPS_EADDR ||
            (rc == HPS_ENOTFOUND && stopped));
    else if (bad_addr) CHECK(rc == HPS_EADDR);
    if (port == g_sport) g_used_node = 1;
    break;
  }
  case OP_CLIENT:
  case OP_SENDBACK: {
    id = pick_id(r);
    b = u8(r);
    /* bit 7 of b: the cast sends to its group instead of C / S */
    x = (b & 0x80) && !g_no_cast ? &g_x[X_K]
        : op == OP_CLIENT            ? &g_x[X_C]
                                     : &g_x[X_S];
    len = pick_size(r, x->max);
    if (len > BIG) len = BIG;
    make_dgram(g_dg, len,
               x == &g_x[X_K]       ? SRC_CAST
               : op == OP_CLIENT ? SRC_CLIENT
                                 : SRC_SERVER,
               b);
    if (b & 2) { /* sendv: the datagram in one to three pieces (an
                    empty one between, skipped) */
      hps_buf bufs[4];
      int n = 0;
      size_t a = len / 3, c = len / 2;
      switch ((b >> 3) % 3) {
      case 0:
        bufs[n++] = (hps_buf){g_dg, len};
        break;
      case 1:
        bufs[n++] = (hps_buf){g_dg, a};
        if (b & 4) bufs[n++] = (hps_buf){NULL, 0};
        bufs[n++] = (hps_buf){g_dg + a, len - a};
        break;
      default:
        bufs[n++] = (hps_buf){g_dg, a};
        bufs[n++] = (hps_buf){g_dg + a, c - a};
        if (b & 4) bufs[n++] = (hps_buf){g_dg + c, 0};
        bufs[n++] = (hps_buf){g_dg + c, len - c};
        break;
      }
      rc = chk(F_SEND, hps_sendv(x->ep, id, bufs, n));
      if (len == 0) CHECK(rc == HPS_EINVAL);
      else if (len > x->max) CHECK(rc == HPS_EDGRAMSIZE);
    } else {
      rc = chk(F_SEND, hps_send(x->ep, id, (b & 1) ? NULL : g_dg, len));
      if (b & 1 || len == 0) CHECK(rc == HPS_EINVAL);
      else if (len > x->max) CHECK(rc == HPS_EDGRAMSIZE);
    }
    if (rc == 0 && x == &g_x[X_K]) g_used_cast = 1;
    else if (rc == 0 && op == OP_CLIENT) g_used_client = 1;
    else if (rc == 0 && op == OP_SENDBACK) g_used_server = 1;
    break;
  }
  case OP_DISC:
    x = pick_x(r);
    id = pick_id(r);
    b = u8(r);
    /* Closed before the call (the call itself may close it). */
    was_closed = x != NULL && id != 0 && is_closed(x, id);
    rc = chk(F_DISC, hps_disconnect(x ? x->ep : NULL, id, b % 3));
    if (x == NULL) CHECK(rc == HPS_EHANDLE);
    else if (was_closed && rc != HPS_ENOTFOUND)
      FAIL("closed ID %llx of %s reached a live connection (%d)",
           (unsigned long long)id, x->name, rc);
    break;
  case OP_PAUSE:
    x = pick_x(r);
    id = pick_id(r);
    was_closed = x != NULL && id != 0 && is_closed(x, id);
    rc = chk(F_PAUSE, hps_pause_receive(x ? x->ep : NULL, id, u8(r) % 3));
    if (was_closed) CHECK(rc == HPS_ENOTFOUND);
    break;
  case OP_STATS: {
    hps_stats st;
    x = pick_x(r);
    id = pick_id(r);
    b = u8(r);
    was_closed = x != NULL && id != 0 && is_closed(x, id);
    rc = chk(F_STATS, hps_get_stats(x ? x->ep : NULL, id,
                                    (b & 1) ? NULL : &st));
    if (x != NULL && (b & 1)) CHECK(rc == HPS_EINVAL);
    if (was_closed && !(b & 1) && rc != HPS_ENOTFOUND) gone_soon(x, id);
    break;
  }
  case OP_LIST: {
    hps_conn_id ids[8];
    size_t count = 12345, cap;
    int i;
    x = pick_x(r);
    b = u8(r);
    cap = b % 9;
    rc = chk(F_LIST, hps_conn_list(x ? x->ep : NULL, (b & 0x80) ? NULL : ids,
                                   cap, (b & 0x40) ? NULL : &count));
    if (rc >= 0) {
      CHECK((size_t)rc <= cap);
      if (!(b & 0x40)) CHECK(count >= (size_t)rc);
      if (!(b & 0x80))
        for (i = 0; i < rc; i++) {
          CHECK(ids[i] != 0);
          pool_add(ids[i]);
        }
    }
    if ((b & 0x80) && cap > 0) CHECK(rc == HPS_EINVAL || rc == HPS_EHANDLE);
    break;
  }
  case OP_ADDR: {
    static const size_t hl[] = {0, 1, 8, 10, 46, 64};
    char host[64];
    uint16_t port = 0;
    x = pick_x(r);
    id = pick_id(r);
    b = u8(r);
    ep = x ? x->ep : NULL;
    if ((b & 3) == 3) {
      rc = chk(F_LISTEN, hps_listen_address(ep, (b & 4) ? NULL : host,
                                            hl[(b >> 3) % 6], &port));
      if (x != NULL && x->role == HPS_UDP_CLIENT) CHECK(rc == HPS_EROLE);
      if (rc == 0 && x->role == HPS_UDP_SERVER) CHECK(port == g_sport);
    } else if (b & 1) {
      chk(F_ADDR, hps_local_address(ep, id, (b & 4) ? NULL : host,
                                    hl[(b >> 3) % 6], &port));
    } else {
      was_closed = x != NULL && id != 0 && is_closed(x, id);
      rc = chk(F_ADDR, hps_remote_address(ep, id, (b & 4) ? NULL : host,
                                          hl[(b >> 3) % 6], &port));
      if (was_closed && rc == 0) gone_soon(x, id);
      if (rc == 0 && x->role == HPS_UDP_SERVER && id != 0) {
        idrec *ir;
        pthread_mutex_lock(&x->mu);
        ir = find_locked(x, id);
        if (ir != NULL && ir->st == R_LIVE &&
            (port != ir->port || (!(b & 4) && strcmp(host, ir->addr) != 0)))
          FAIL("S: remote address of %llx is %s:%u, events said %s:%d",
               (unsigned long long)id, (b & 4) ? "?" : host, port, ir->addr,
               ir->port);
        pthread_mutex_unlock(&x->mu);
      }
    }
    break;
  }
  case OP_MEMB: {
    const char *g = pick_group(r), *i = pick_iface(r);
    x = pick_x(r);
    b = u8(r);
    ep = x ? x->ep : NULL;
    if (b & 1) rc = chk(F_MEMB, hps_join_group(ep, g, i));
    else rc = chk(F_MEMB, hps_leave_group(ep, g, i));
    if (x == NULL) CHECK(rc == HPS_EHANDLE);
    else if (!dgram_role(x)) CHECK(rc == HPS_EROLE);
    else if (g == NULL) CHECK(rc == HPS_EINVAL);
    break;
  }
  case OP_IFACE: {
    const char *i = pick_iface(r);
    x = pick_x(r);
    rc = chk(F_IFACE, hps_cast_interface(x ? x->ep : NULL, i));
    if (x == NULL) CHECK(rc == HPS_EHANDLE);
    else if (!dgram_role(x)) CHECK(rc == HPS_EROLE);
    break;
  }
  case OP_SETOPT: {
    static const int keys[] = {32, 33, 34, 35, 36, 37, 38, 63, 64,
                               1, 2, 5, 11, 14, 19, 0};
    int key;
    int64_t v, got = 0;
    x = pick_x(r);
    b = u8(r);
    key = keys[b % 16];
    v = k_vals[u8(r) % NVALS];
    if (key == HPS_OPT_EVENTS) /* live; keep ACCEPT, CONNECT, CLOSE */
      v = (b & 0x80) ? v
                     : (int64_t)(HPS_EVENTS_ALL &
                                 ~(((uint64_t)(b >> 4) & 7)
                                   << HPS_EV_HANDSHAKE));
    ep = x ? x->ep : NULL;
    rc = chk(F_SETOPT, hps_setopt(ep, key, v));
    if (x == NULL) CHECK(rc == HPS_EHANDLE);
    if (rc == 0) {
      CHECK(hps_getopt(ep, key, &got) == 0 && got == v);
      if (key == HPS_OPT_EVENTS &&
          (!(v & HPS_EVBIT(HPS_EV_ACCEPT)) ||
           !(v & HPS_EVBIT(HPS_EV_CONNECT)))) {
        pthread_mutex_lock(&x->mu);
        x->masked = 1;
        pthread_mutex_unlock(&x->mu);
      }
      /* Anything else that took: the endpoint was stopped (a handler);
       * it is made anew. */
    }
    if (rc == 0 && key == HPS_OPT_RECV_MODEL) CHECK(v == HPS_MODEL_PUSH);
    break;
  }
  case OP_GETOPT: {
    int64_t v;
    x = pick_x(r);
    b = u8(r);
    rc = chk(F_GETOPT, hps_getopt(x ? x->ep : NULL, 30 + b % 10,
                                  (b & 0x80) ? NULL : &v));
    break;
  }
  case OP_ACT: {
    uint8_t t;
    b = u8(r);
    t = u8(r);
    x = pick_slot(b);
    __atomic_store_n(&x->act[1 + t % 8], (int)(t >> 3) % A_N,
                     __ATOMIC_RELAXED);
    break;
  }
  case OP_RESTART:
    x = pick_slot(u8(r));
    rc = chk(F_STOP, hps_stop(x->ep));
    CHECK(rc == 0);
    check_quiet(x);
    x_start(x); /* may fail (PREPARE answered ERROR): made anew later */
    break;
  case OP_SLEEP:
    usleep((useconds_t)(u8(r) % 8) * 200);
    break;
  case OP_WRONG: {
    uint8_t buf[8];
    x = pick_x(r);
    id = pick_id(r);
    ep = x ? x->ep : NULL;
    rc = chk(F_FILE, hps_send_file(ep, id, "/dev/null", 0, -1));
    CHECK(rc == (x ? HPS_EROLE : HPS_EHANDLE));
    rc = chk(F_FETCH, hps_fetch(ep, id, buf, 1));
    CHECK(x == NULL || rc == HPS_EMODEL);
    rc = chk(F_FETCH, hps_peek(ep, id, buf, 1));
    CHECK(x == NULL || rc == HPS_EMODEL);
    rc = chk(F_CONNECT, hps_connect(ep, "127.0.0.1", g_sport, &id));
    CHECK(rc == (x ? HPS_EROLE : HPS_EHANDLE));
    rc = chk(F_EXTRA, hps_set_extra(ep, id, 7));
    break;
  }
  case OP_DWHERE: {
    int64_t ms;
    x = pick_x(r);
    b = u8(r);
    ms = k_vals[(b >> 1) % NVALS];
    if (b & 1)
      rc = chk(F_DWHERE, hps_disconnect_silent(x ? x->ep : NULL, ms));
    else
      rc = chk(F_DWHERE, hps_disconnect_long(x ? x->ep : NULL, ms));
    if (x != NULL && ms <= 0) CHECK(rc == HPS_EINVAL);
    break;
  }
  }
}

static void cleanup(void) {
  int i;
  for (i = 0; i < NX; i++) x_free(&g_x[i]);
  for (i = 0; i < NRAW; i++) close(g_raw[i]);
  if (g_closed_fd >= 0) close(g_closed_fd);
}

/* See fuzz_api.c: libFuzzer's per-input leak check runs while the loops
 * still free posted commands; the check at exit (after cleanup) stays. */
static void no_per_input_leak_check(int *argc, char ***argv) {
  static char *args[256];
  static char flag[] = "-detect_leaks=0";
  int i;
  for (i = 1; i < *argc; i++)
    if (strncmp((*argv)[i], "-detect_leaks=", 14) == 0) return;
  if (*argc + 2 > (int)(sizeof(args) / sizeof(args[0]))) return;
  for (i = 0; i < *argc; i++) args[i] = (*argv)[i];
  args[(*argc)++] = flag;
  args[*argc] = NULL;
  *argv = args;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  int i;
  no_per_input_leak_check(argc, argv);
  signal(SIGPIPE, SIG_IGN);
  g_verbose = getenv("FUZZ_UDP_VERBOSE") != NULL;
  g_no_cast = getenv("FUZZ_UDP_NO_CAST") != NULL;
  init_allowed();
  g_x[X_S].name = "S";
  g_x[X_S].role = HPS_UDP_SERVER;
  g_x[X_N].name = "N";
  g_x[X_N].role = HPS_UDP_NODE;
  g_x[X_C].name = "C";
  g_x[X_C].role = HPS_UDP_CLIENT;
  g_x[X_K].name = "K";
  g_x[X_K].role = HPS_UDP_CAST;
  for (i = 0; i < NX; i++) pthread_mutex_init(&g_x[i].mu, NULL);
  for (i = 0; i < NRAW; i++) g_raw[i] = udp_sock(&g_rawport[i]);
  g_closed_fd = udp_sock(&g_closed_port);
  atexit(cleanup);
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  rd r = {data, size};
  int i, k, nops = 0;
  ensure_all();
  memset(g_used_raw, 0, sizeof(g_used_raw));
  g_used_node = g_used_client = g_used_server = g_used_cast = 0;
  while (r.n > 0 && nops++ < MAX_OPS) run_op(&r);
  /* Everything the input sent is handled before the next input. */
  calm();
  for (k = 0; k < NRAW; k++)
    for (i = 0; i < NX; i++)
      if (g_used_raw[k][i]) marker(SRC_RAW0 + k, i);
  if (g_used_node) marker(SRC_NODE, X_S);
  if (g_used_client) marker(SRC_CLIENT, X_S);
  if (g_used_cast) marker(SRC_CAST, X_K);
  if (g_used_server) {
    marker(SRC_SERVER, X_C);
    marker(SRC_SERVER, X_N);
  }
  raw_drain();
  return 0;
}
