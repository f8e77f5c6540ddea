/* fuzz_recv.c - libFuzzer target for the receive path of a real server
 * (core/tcp.c read path, pull buffers, the pack decoder behind a socket).
 *
 * Servers on 127.0.0.1 port 0 are started once per configuration (lazily,
 * then kept for the whole run): one push, two pull (default and a small
 * HPS_OPT_PULL_MAX), and pack servers for each chosen (flag, max) pair.
 * Every input is sent by a plain blocking socket, split at fuzzer-chosen
 * points, and the socket is closed (FIN, or a reset); the harness then
 * waits, with a deadline, for the server's CLOSE and checks:
 *   - exactly one ACCEPT and one CLOSE, for the same ID, and no event of
 *     any other connection (a second CLOSE of an earlier input shows up
 *     as a stray event of the next one);
 *   - push: the RECEIVE bytes concatenated equal the input (a prefix when
 *     the handler stopped the connection or the peer reset it);
 *   - pull: every RECEIVE's waiting count is consistent; the bytes fetched
 *     (peeked first, compared) equal the input's prefix of that length;
 *   - pack: the frames equal those of a reference decoder written here from
 *     the wire format, and the CLOSE error is the reference's error;
 *   - the CLOSE op/error fit the case (RECEIVE + 0, the pack error,
 *     HPS_EPULLFULL, HPS_EHANDLER, or a reset).
 *
 * Input layout:
 *   byte 0   bits 0-1 model (0 push, 1 pull, 2-3 pack); bit 2 reset close
 *            (SO_LINGER 0) instead of FIN; bit 3 sync: after each chunk
 *            wait until the server read it, so every chunk is its own read;
 *            bit 4 pull: small PULL_MAX server (64 bytes)
 *   byte 1   pack: bits 0-1 flag {0, 1, 7, 1023}, bits 2-4 max
 *            {1, 3, 16, 255, 4096, 65536, 262144, 4194303};
 *            pull: fetch size k = (byte % 32) + 1
 *   byte 2   stop: 0 never; n = the handler returns HPS_HR_ERROR from the
 *            n-th RECEIVE
 *   byte 3   c = byte % 16 chunk sizes follow (cyclic; 0 means 1)
 *   c bytes  chunk sizes
 *   rest     the stream
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
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
      fprintf(stderr, "fuzz_recv: check failed at line %d: %s\n", __LINE__,   \
              #cond);                                                         \
      abort();                                                                \
    }                                                                         \
  } while (0)

#define DEADLINE_MS 5000
#define UV_ECONNRESET_ (-ECONNRESET)

static const uint32_t k_flags[4] = {0, 1, 7, 1023};
static const uint32_t k_maxes[8] = {1, 3, 16, 255, 4096, 65536, 262144,
                                    4194303};

enum { M_PUSH = 0, M_PULL = 1, M_PACK = 2 };

typedef struct srv {
  hps_endpoint *ep;
  uint16_t port;
  int model;
  uint32_t flag, max; /* pack */
  int64_t pull_max;   /* pull */
} srv;

/* 0 push, 1 pull, 2 pull small, 3.. pack by (flag idx * 8 + max idx) */
#define NSRV (3 + 32)
static srv g_srv[NSRV];

/* The one connection in flight. Guarded by g_mu. */
typedef struct session {
  srv *s;                   /* server the input goes to */
  hps_conn_id conn;         /* from ACCEPT */
  int accepts, handshakes, closes, stray;
  int close_op, close_err;
  int order_bad;            /* an event out of order */
  /* push: bytes; pull: fetched bytes; pack: frame bodies back to back */
  uint8_t *got;
  size_t ngot, cap;
  size_t *frame_len;        /* pack: lengths */
  size_t nframes, frame_cap;
  size_t nrecv;             /* RECEIVE events */
  unsigned stop_at;         /* return ERROR from this RECEIVE (1-based) */
  int stopped;              /* it did */
  size_t k;                 /* pull fetch size */
  size_t pull_left;         /* pull: waiting after the last fetch */
  size_t expect_total;      /* bytes the client sends */
  int peek_bad, fetch_bad;
  uint64_t stat_rx;         /* stats at CLOSE (if found) */
  int stat_ok;
} session;

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_cv = PTHREAD_COND_INITIALIZER;
static session g_sess;
static int g_active; /* a session is set up */

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void grow(session *x, size_t add) {
  if (x->ngot + add > x->cap) {
    size_t cap = x->cap ? x->cap : 256;
    while (cap < x->ngot + add) cap *= 2;
    x->got = realloc(x->got, cap);
    CHECK(x->got != NULL);
    x->cap = cap;
  }
}

static int handler(void *user, const hps_event *ev) {
  srv *s = user;
  session *x = &g_sess;
  int result = HPS_HR_OK;
  pthread_mutex_lock(&g_mu);
  if (ev->type == HPS_EV_PREPARE || ev->type == HPS_EV_SHUTDOWN) {
    pthread_mutex_unlock(&g_mu);
    return HPS_HR_OK;
  }
  if (!g_active || x->s != s) {
    fprintf(stderr, "fuzz_recv: stray event type %d conn %llx\n", ev->type,
            (unsigned long long)ev->conn);
    x->stray++;
    pthread_mutex_unlock(&g_mu);
    return HPS_HR_OK;
  }
  if (ev->type == HPS_EV_ACCEPT) {
    if (x->accepts++ != 0) x->stray++;
    x->conn = ev->conn;
    CHECK(ev->conn != 0);
    pthread_cond_broadcast(&g_cv);
    pthread_mutex_unlock(&g_mu);
    return HPS_HR_OK;
  }
  if (ev->conn != x->conn || x->accepts != 1) {
    fprintf(stderr, "fuzz_recv: event type %d for conn %llx (current %llx)\n",
            ev->type, (unsigned long long)ev->conn,
            (unsigned long long)x->conn);
    x->stray++;
    pthread_mutex_unlock(&g_mu);
    return HPS_HR_OK;
  }
  if (x->closes != 0) x->order_bad = 1; /* nothing after CLOSE */
  switch (ev->type) {
  case HPS_EV_HANDSHAKE:
    if (x->handshakes++ != 0 || x->nrecv != 0) x->order_bad = 1;
    break;
  case HPS_EV_RECEIVE:
    if (x->handshakes != 1) x->order_bad = 1;
    x->nrecv++;
    if (s->model == M_PUSH) {
      CHECK(ev->data != NULL && ev->len > 0);
      grow(x, ev->len);
      memcpy(x->got + x->ngot, ev->data, ev->len);
      x->ngot += ev->len;
    } else if (s->model == M_PACK) {
      CHECK(ev->data != NULL && ev->len > 0);
      grow(x, ev->len);
      memcpy(x->got + x->ngot, ev->data, ev->len);
      x->ngot += ev->len;
      if (x->nframes == x->frame_cap) {
        x->frame_cap = x->frame_cap ? x->frame_cap * 2 : 16;
        x->frame_len = realloc(x->frame_len, x->frame_cap * sizeof(size_t));
        CHECK(x->frame_len != NULL);
      }
      x->frame_len[x->nframes++] = ev->len;
    } else {
      /* pull: len is the total waiting; new bytes arrived since the last
       * fetch, and never more than were sent. */
      size_t w = ev->len;
      uint8_t tmp[32], tmp2[32];
      CHECK(ev->data == NULL);
      if (w <= x->pull_left || x->ngot + w > x->expect_total) x->order_bad = 1;
      while (w >= x->k) {
        int r1 = hps_peek(ev->endpoint, ev->conn, tmp, x->k);
        int r2 = hps_fetch(ev->endpoint, ev->conn, tmp2, x->k);
        if (r1 != 0 || r2 != 0) {
          x->fetch_bad = 1;
          break;
        }
        if (memcmp(tmp, tmp2, x->k) != 0) x->peek_bad = 1;
        grow(x, x->k);
        memcpy(x->got + x->ngot, tmp2, x->k);
        x->ngot += x->k;
        w -= x->k;
      }
      x->pull_left = w;
      /* Asking for more than waits takes nothing. */
      if (w < x->k && hps_fetch(ev->endpoint, ev->conn, tmp, w + 1) !=
                          HPS_EAGAIN)
        x->fetch_bad = 1;
    }
    if (x->stop_at != 0 && x->nrecv == x->stop_at) {
      x->stopped = 1;
      result = HPS_HR_ERROR;
    }
    break;
  case HPS_EV_CLOSE: {
    hps_stats st;
    x->closes++;
    x->close_op = ev->op;
    x->close_err = ev->error;
    if (hps_get_stats(ev->endpoint, ev->conn, &st) == 0) {
      x->stat_ok = 1;
      x->stat_rx = st.bytes_received;
    }
    pthread_cond_broadcast(&g_cv);
    break;
  }
  default:
    x->order_bad = 1;
  }
  pthread_mutex_unlock(&g_mu);
  return result;
}

static void stop_all(void) {
  int i;
  for (i = 0; i < NSRV; i++)
    if (g_srv[i].ep) {
      CHECK(hps_free(g_srv[i].ep) == 0);
      g_srv[i].ep = NULL;
    }
}

static srv *get_srv(int idx, int model, uint32_t flag, uint32_t max,
                    int64_t pull_max) {
  srv *s = &g_srv[idx];
  if (s->ep != NULL) return s;
  s->model = model;
  s->flag = flag;
  s->max = max;
  s->pull_max = pull_max;
  CHECK(hps_create(HPS_TCP_SERVER, handler, s, &s->ep) == 0);
  CHECK(hps_setopt(s->ep, HPS_OPT_WORKERS, 1) == 0);
  CHECK(hps_setopt(s->ep, HPS_OPT_RECV_MODEL,
                   model == M_PUSH   ? HPS_MODEL_PUSH
                   : model == M_PULL ? HPS_MODEL_PULL
                                     : HPS_MODEL_PACK) == 0);
  if (model == M_PACK) {
    CHECK(hps_setopt(s->ep, HPS_OPT_PACK_FLAG, flag) == 0);
    CHECK(hps_setopt(s->ep, HPS_OPT_PACK_MAX, max) == 0);
  }
  if (model == M_PULL) CHECK(hps_setopt(s->ep, HPS_OPT_PULL_MAX, pull_max) == 0);
  CHECK(hps_start(s->ep, "127.0.0.1", 0) == 0);
  CHECK(hps_listen_address(s->ep, NULL, 0, &s->port) == 0);
  return s;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  signal(SIGPIPE, SIG_IGN);
  atexit(stop_all);
  return 0;
}

/* ---- reference pack decoder (whole stream, from the wire format) ---- */

typedef struct ref {
  size_t nframes;
  size_t *off, *len;
  int error;
} ref;

static void ref_pack(const uint8_t *p, size_t n, uint32_t flag, uint32_t max,
                     ref *out) {
  size_t i = 0;
  out->nframes = 0;
  out->error = 0;
  out->off = malloc((n / 5 + 1) * sizeof(size_t));
  out->len = malloc((n / 5 + 1) * sizeof(size_t));
  CHECK(out->off && out->len);
  while (n - i >= 4) {
    uint32_t h = (uint32_t)p[i] | (uint32_t)p[i + 1] << 8 |
                 (uint32_t)p[i + 2] << 16 | (uint32_t)p[i + 3] << 24;
    uint32_t len = h & 0x3fffffu;
    if (flag != 0 && (h >> 22) != flag) {
      out->error = HPS_EPACKFLAG;
      break;
    }
    if (len == 0) {
      out->error = HPS_EPACKEMPTY;
      break;
    }
    if (len > max) {
      out->error = HPS_EPACKSIZE;
      break;
    }
    if (n - i - 4 < len) break;
    out->off[out->nframes] = i + 4;
    out->len[out->nframes] = len;
    out->nframes++;
    i += 4 + (size_t)len;
  }
}

/* ---- client side ---- */

static int connect_to(uint16_t port) {
  struct sockaddr_in a;
  int fd, one = 1;
  memset(&a, 0, sizeof(a));
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  CHECK(fd >= 0);
  CHECK(connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0);
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  return fd;
}

/* Send all of p; 0, or -1 once the server has gone (it may close first). */
static int send_all(int fd, const uint8_t *p, size_t n) {
  while (n > 0) {
    ssize_t r = send(fd, p, n, MSG_NOSIGNAL);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return -1;
    p += r;
    n -= (size_t)r;
  }
  return 0;
}

/* Wait until the server has read `want` bytes of the connection, or the
 * connection is gone, or a short deadline passes (only a pacing aid). */
static void wait_read(srv *s, uint64_t want) {
  uint64_t end = now_ms() + 1000;
  hps_conn_id id;
  pthread_mutex_lock(&g_mu);
  while (g_sess.accepts == 0 && now_ms() < end) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += 2000000;
    if (ts.tv_nsec >= 1000000000L) {
      ts.tv_sec++;
      ts.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(&g_cv, &g_mu, &ts);
  }
  id = g_sess.conn;
  pthread_mutex_unlock(&g_mu);
  if (id == 0) return;
  while (now_ms() < end) {
    hps_stats st;
    if (hps_get_stats(s->ep, id, &st) != 0) return; /* closed */
    if (st.bytes_received >= want) return;
    usleep(20);
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  uint8_t b0, b1, b2, nsz;
  const uint8_t *sizes, *stream;
  size_t n, off, ci = 0;
  int model, reset, sync, fd, gone = 0;
  srv *s;
  session *x = &g_sess;
  ref rf = {0, NULL, NULL, 0};

  if (size < 4) return 0;
  b0 = data[0];
  b1 = data[1];
  b2 = data[2];
  nsz = data[3] % 16;
  if (size < 4u + nsz) return 0;
  sizes = data + 4;
  stream = data + 4 + nsz;
  n = size - 4 - nsz;
  model = b0 & 3;
  if (model == 3) model = M_PACK;
  reset = (b0 >> 2) & 1;
  sync = (b0 >> 3) & 1;

  if (model == M_PUSH) {
    s = get_srv(0, M_PUSH, 0, 0, 0);
  } else if (model == M_PULL) {
    int small = (b0 >> 4) & 1;
    s = get_srv(1 + small, M_PULL, 0, 0, small ? 64 : 4 << 20);
  } else {
    int fi = b1 & 3, mi = (b1 >> 2) & 7;
    s = get_srv(3 + fi * 8 + mi, M_PACK, k_flags[fi], k_maxes[mi], 0);
    ref_pack(stream, n, s->flag, s->max, &rf);
  }

  pthread_mutex_lock(&g_mu);
  free(x->got);
  free(x->frame_len);
  memset(x, 0, sizeof(*x));
  x->s = s;
  x->stop_at = b2;
  x->k = (size_t)(b1 % 32) + 1;
  x->expect_total = n;
  g_active = 1;
  pthread_mutex_unlock(&g_mu);

  fd = connect_to(s->port);
  for (off = 0; off < n && !gone;) {
    size_t len = n - off;
    if (nsz != 0) {
      size_t want = sizes[ci];
      if (want == 0) want = 1;
      ci = (ci + 1) % nsz;
      if (want < len) len = want;
    }
    if (send_all(fd, stream + off, len) != 0) gone = 1;
    off += len;
    if (sync && !gone && off < n) wait_read(s, off);
  }
  if (reset) {
    struct linger lg = {1, 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    close(fd);
    fd = -1;
  } else {
    shutdown(fd, SHUT_WR);
  }

  /* Wait for the server's CLOSE. */
  {
    uint64_t end = now_ms() + DEADLINE_MS;
    pthread_mutex_lock(&g_mu);
    while (x->closes == 0) {
      struct timespec ts;
      if (now_ms() >= end) {
        fprintf(stderr, "fuzz_recv: no CLOSE within %d ms (accepts %d)\n",
                DEADLINE_MS, x->accepts);
        abort();
      }
      clock_gettime(CLOCK_REALTIME, &ts);
      ts.tv_nsec += 10000000;
      if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
      }
      pthread_cond_timedwait(&g_cv, &g_mu, &ts);
    }
    pthread_mutex_unlock(&g_mu);
  }
  if (fd >= 0) close(fd);

  pthread_mutex_lock(&g_mu);
  CHECK(x->stray == 0);
  CHECK(x->accepts == 1 && x->closes == 1);
  CHECK(x->order_bad == 0);
  CHECK(x->close_op == HPS_OP_RECEIVE);
  CHECK(!x->stat_ok || x->stat_rx <= n);
  if (x->stopped) CHECK(x->close_err == HPS_EHANDLER);
  switch (s->model) {
  case M_PUSH:
    /* What arrived is a prefix of what was sent; all of it on a clean
     * close. */
    CHECK(x->ngot <= n && (x->ngot == 0 || memcmp(x->got, stream, x->ngot) == 0));
    if (!x->stopped && !reset) {
      CHECK(x->close_err == 0);
      CHECK(x->ngot == n);
      CHECK(!x->stat_ok || x->stat_rx == n);
    }
    if (!x->stopped && reset)
      CHECK(x->close_err == 0 || x->close_err == UV_ECONNRESET_);
    break;
  case M_PULL:
    CHECK(x->peek_bad == 0 && x->fetch_bad == 0);
    CHECK(x->ngot <= n && (x->ngot == 0 || memcmp(x->got, stream, x->ngot) == 0));
    CHECK(x->ngot % x->k == 0);
    if (!x->stopped && !reset) {
      if (x->close_err == 0) {
        CHECK(x->ngot == n / x->k * x->k);
        CHECK(x->pull_left == n - x->ngot || (n == 0 && x->nrecv == 0));
      } else {
        /* Only the small-max server can overflow, and only when more
         * than its max was sent. */
        CHECK(x->close_err == HPS_EPULLFULL);
        CHECK(s->pull_max < (int64_t)n);
      }
    }
    if (!x->stopped && reset)
      CHECK(x->close_err == 0 || x->close_err == UV_ECONNRESET_ ||
            (x->close_err == HPS_EPULLFULL && s->pull_max < (int64_t)n));
    break;
  default: {
    size_t i, boff = 0, expect_frames = rf.nframes;
    int expect_err = rf.error;
    if (x->stop_at != 0 && rf.nframes >= x->stop_at) {
      expect_frames = x->stop_at;
      expect_err = HPS_EHANDLER;
    }
    CHECK(x->nframes <= expect_frames);
    for (i = 0; i < x->nframes; i++) {
      CHECK(x->frame_len[i] == rf.len[i]);
      CHECK(memcmp(x->got + boff, stream + rf.off[i], rf.len[i]) == 0);
      boff += rf.len[i];
    }
    if (!reset) {
      CHECK(x->nframes == expect_frames);
      CHECK(x->close_err == expect_err);
    } else {
      /* A reset may cut the stream anywhere. */
      if (x->nframes == expect_frames)
        CHECK(x->close_err == expect_err || x->close_err == 0 ||
              x->close_err == UV_ECONNRESET_);
      else
        CHECK(x->close_err == 0 || x->close_err == UV_ECONNRESET_);
    }
  }
  }
  g_active = 0;
  pthread_mutex_unlock(&g_mu);
  free(rf.off);
  free(rf.len);
  return 0;
}
