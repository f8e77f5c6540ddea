/* test_flow.c - back-pressure: the water-mark events (HIGH_WATER then
 * LOW_WATER once per crossing, from the connection's loop, for sends from
 * the loop and from other threads, plain and TLS, push and pack), the
 * unsent-bytes query, live marks, automatic pausing (bounded memory
 * against a peer that does not read, composed with the application's own
 * pause), the echo server example under streaming clients that read
 * slower than they write, and the relay example under a slow upstream and
 * a slow client. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "hps_test.h"

#define HOST "127.0.0.1"
#define FIX HPS_FIXTURES_DIR "/tls/"
#define HIGH_DEFAULT (1u << 20)
#define LOW_DEFAULT (256u << 10)
#define CHUNK (64 * 1024)
/* what one read of the engine can add past high water before the pause
 * takes (HPS__READ_BUF), and as much again for what TCP may hold back */
#define READ_SLACK (512u << 10)
/* ThreadSanitizer's shadow memory makes every byte held cost several in
 * RSS (the examples run built the same way) */
#ifdef HPS_TSAN
#define RSS_SCALE 4
#else
#define RSS_SCALE 1
#endif

/* ------------------------------------------------------------------ */
/* helpers                                                             */
/* ------------------------------------------------------------------ */

/* A server's per-test state, behind its recorder (r.user). */
typedef struct srv {
  hps_endpoint *ep;
  uint32_t seed;
  uint64_t pos;     /* pattern bytes sent so far (loop sends) */
  size_t bulk;      /* bytes a "go" message makes the loop send */
  pthread_t thread; /* the connection's loop: ACCEPT's thread */
  int have_thread;
  int wrong_thread; /* an event came on another thread */
  int send_err;
} srv;

static int srv_hook(t_rec *r, const hps_event *ev) {
  srv *s = r->user;
  if (ev->type == HPS_EV_ACCEPT) {
    s->thread = pthread_self();
    s->have_thread = 1;
  } else if (ev->type != HPS_EV_SHUTDOWN && ev->type != HPS_EV_PREPARE &&
             (!s->have_thread || !pthread_equal(s->thread, pthread_self()))) {
    s->wrong_thread = 1;
  }
  if (ev->type == HPS_EV_RECEIVE && ev->len == 1 && s->bulk > 0) {
    /* "go": the loop sends the bulk itself */
    unsigned char *b = malloc(CHUNK);
    size_t left = s->bulk;
    while (left > 0) {
      size_t n = left < CHUNK ? left : CHUNK;
      int e;
      t_pat_fill(b, n, s->seed, s->pos);
      e = hps_send(ev->endpoint, ev->conn, b, n);
      if (e != 0) s->send_err = e;
      s->pos += n;
      left -= n;
    }
    free(b);
  }
  return HPS_HR_OK;
}

static void set_tls_server(hps_endpoint *ep) {
  assert_int_equal(hps_setopt(ep, HPS_OPT_TLS, 1), 0);
  assert_int_equal(hps_setopt_str(ep, HPS_OPT_TLS_CERT_FILE, FIX "server.pem"),
                   0);
  assert_int_equal(hps_setopt_str(ep, HPS_OPT_TLS_KEY_FILE, FIX "server.key"),
                   0);
}

static uint64_t unsent(hps_endpoint *ep, hps_conn_id id) {
  uint64_t u = 0;
  assert_int_equal(hps_get_unsent(ep, id, &u), 0);
  return u;
}

typedef struct unsent_arg {
  hps_endpoint *ep;
  hps_conn_id id;
} unsent_arg;

static int unsent_zero(void *arg) {
  unsent_arg *a = arg;
  uint64_t u = 1;
  return hps_get_unsent(a->ep, a->id, &u) == 0 && u == 0;
}

/* The i-th event of type (0-based) of the recorder, which must exist. */
static t_ev nth(t_rec *r, int type, int i) {
  t_ev e;
  if (t_rec_wait(r, type, i + 1, T_WAIT_MS) != 0)
    fail_msg("event %d number %d did not come within %d ms (have %d)", type,
             i + 1, T_WAIT_MS, t_rec_count(r, type));
  assert_int_equal(t_rec_get(r, type, i, &e), 0);
  return e;
}

/* The water events of conn, in order, alternate HIGH, LOW, HIGH, ... */
static void check_alternate(t_rec *r, hps_conn_id conn) {
  int types[4096];
  size_t n = t_rec_conn_types(r, conn, types, 4096), i;
  int want = HPS_EV_HIGH_WATER, seen_close = 0;
  assert_true(n <= 4096);
  for (i = 0; i < n; i++) {
    if (types[i] == HPS_EV_CLOSE) seen_close = 1;
    else if (seen_close)
      fail_msg("event %d after CLOSE", types[i]);
    if (types[i] != HPS_EV_HIGH_WATER && types[i] != HPS_EV_LOW_WATER)
      continue;
    if (types[i] != want)
      fail_msg("water events out of order: event %zu is %d, expected %d", i,
               types[i], want);
    want = want == HPS_EV_HIGH_WATER ? HPS_EV_LOW_WATER : HPS_EV_HIGH_WATER;
  }
}

/* ------------------------------------------------------------------ */
/* HIGH then LOW, once per crossing                                    */
/* ------------------------------------------------------------------ */

/* A server sends `bulk` bytes per round to an agent that does not read
 * (paused, small receive buffer; the server's send buffer small too), from
 * its loop (a "go" message's handler) or from this thread. Each round
 * must give exactly one HIGH_WATER (len over high water, the unsent bytes
 * then over low water) and, once the agent reads, one LOW_WATER (len at
 * or under low water), from the connection's loop, with every byte
 * intact; then nothing is unsent. */
static void crossing(int model, int tls, int from_thread) {
  t_rec sr, ar;
  srv s;
  hps_endpoint *ag;
  hps_conn_id a, id;
  uint16_t port;
  size_t bulk = 4u << 20;
  int round;
  memset(&s, 0, sizeof(s));
  s.seed = 41;
  s.bulk = from_thread ? 0 : bulk;
  t_rec_init(&sr);
  t_rec_init(&ar);
  sr.user = &s;
  sr.hook = srv_hook;
  assert_int_equal(hps_create(HPS_TCP_SERVER, t_rec_handler, &sr, &s.ep), 0);
  assert_int_equal(hps_setopt(s.ep, HPS_OPT_WORKERS, 2), 0);
  assert_int_equal(hps_setopt(s.ep, HPS_OPT_RECV_MODEL, model), 0);
  assert_int_equal(hps_setopt(s.ep, HPS_OPT_SNDBUF, 65536), 0);
  if (tls) set_tls_server(s.ep);
  assert_int_equal(hps_start(s.ep, HOST, 0), 0);
  assert_int_equal(hps_listen_address(s.ep, NULL, 0, &port), 0);

  assert_int_equal(hps_create(HPS_TCP_AGENT, t_rec_handler, &ar, &ag), 0);
  assert_int_equal(hps_setopt(ag, HPS_OPT_RECV_MODEL, model), 0);
  assert_int_equal(hps_setopt(ag, HPS_OPT_RCVBUF, 65536), 0);
  if (tls) {
    assert_int_equal(hps_setopt(ag, HPS_OPT_TLS, 1), 0);
    assert_int_equal(hps_setopt_str(ag, HPS_OPT_TLS_CA_FILE, FIX "ca.pem"), 0);
  }
  assert_int_equal(hps_start(ag, NULL, 0), 0);
  assert_int_equal(hps_connect(ag, HOST, port, &a), 0);
  t_conn_event(&ar, a, HPS_EV_HANDSHAKE);
  id = t_nth_conn(&sr, HPS_EV_HANDSHAKE, 0);

  for (round = 0; round < 2; round++) {
    t_ev hi, lo;
    unsigned char *got;
    size_t n;
    unsent_arg ua = {s.ep, id};
    assert_int_equal(hps_pause_receive(ag, a, 1), 0);
    if (from_thread) {
      unsigned char *b = malloc(CHUNK);
      size_t left = bulk;
      while (left > 0) {
        t_pat_fill(b, CHUNK, s.seed, s.pos);
        assert_int_equal(hps_send(s.ep, id, b, CHUNK), 0);
        s.pos += CHUNK;
        left -= CHUNK;
      }
      free(b);
    } else {
      assert_int_equal(hps_send(ag, a, "g", 1), 0);
    }
    hi = nth(&sr, HPS_EV_HIGH_WATER, round);
    if (hi.len <= HIGH_DEFAULT)
      fail_msg("HIGH_WATER len %zu, not above high water %u", hi.len,
               HIGH_DEFAULT);
    /* the agent reads nothing: the bytes stay unsent */
    if (unsent(s.ep, id) <= LOW_DEFAULT)
      fail_msg("unsent %llu after HIGH_WATER with a peer not reading",
               (unsigned long long)unsent(s.ep, id));
    assert_int_equal(t_rec_count(&sr, HPS_EV_LOW_WATER), round);
    assert_int_equal(hps_pause_receive(ag, a, 0), 0);
    if (t_rec_wait_bytes(&ar, (size_t)s.pos, 3 * T_WAIT_MS) != 0)
      fail_msg("agent got %zu of %llu bytes", ar.ndata,
               (unsigned long long)s.pos);
    lo = nth(&sr, HPS_EV_LOW_WATER, round);
    if (lo.len > LOW_DEFAULT)
      fail_msg("LOW_WATER len %zu, above low water %u", lo.len, LOW_DEFAULT);
    assert_int_equal(t_poll(unsent_zero, &ua, T_WAIT_MS), 0);
    assert_int_equal(t_rec_count(&sr, HPS_EV_HIGH_WATER), round + 1);
    assert_int_equal(t_rec_count(&sr, HPS_EV_LOW_WATER), round + 1);
    got = t_rec_data_copy(&ar, &n);
    assert_int_equal(n, s.pos);
    if (t_pat_check(got, n, s.seed, 0) != -1)
      fail_msg("byte %ld of %zu differs", t_pat_check(got, n, s.seed, 0), n);
    free(got);
  }
  assert_int_equal(s.send_err, 0);
  t_stop_free(ag);
  t_stop_free(s.ep);
  check_alternate(&sr, id);
  if (s.wrong_thread) fail_msg("an event came off the connection's loop");
  assert_int_equal(t_rec_count(&sr, HPS_EV_CLOSE), 1);
  t_rec_free(&ar);
  t_rec_free(&sr);
}

static void test_water_push_loop_sends(void **st) {
  (void)st;
  crossing(HPS_MODEL_PUSH, 0, 0);
}
static void test_water_push_thread_sends(void **st) {
  (void)st;
  crossing(HPS_MODEL_PUSH, 0, 1);
}
static void test_water_pack_loop_sends(void **st) {
  (void)st;
  crossing(HPS_MODEL_PACK, 0, 0);
}
static void test_water_pack_thread_sends(void **st) {
  (void)st;
  crossing(HPS_MODEL_PACK, 0, 1);
}
static void test_water_tls_loop_sends(void **st) {
  (void)st;
  crossing(HPS_MODEL_PUSH, 1, 0);
}
static void test_water_tls_thread_sends(void **st) {
  (void)st;
  crossing(HPS_MODEL_PUSH, 1, 1);
}

/* ------------------------------------------------------------------ */
/* live marks                                                          */
/* ------------------------------------------------------------------ */

/* Marks changed while running take effect for the next bytes: under a
 * raised high water mark a burst gives no event; lowered (and a low mark
 * not below it, taken as high - 1) the same burst gives HIGH_WATER over
 * the new mark and LOW_WATER under it. */
static void test_water_marks_change_live(void **st) {
  t_rec sr, ar;
  srv s;
  hps_endpoint *ag;
  hps_conn_id a, id;
  uint16_t port;
  unsigned char *b = malloc(CHUNK);
  int i, round;
  int64_t v;
  unsent_arg ua;
  (void)st;
  memset(&s, 0, sizeof(s));
  t_rec_init(&sr);
  t_rec_init(&ar);
  sr.user = &s;
  sr.hook = srv_hook;
  assert_int_equal(hps_create(HPS_TCP_SERVER, t_rec_handler, &sr, &s.ep), 0);
  assert_int_equal(hps_setopt(s.ep, HPS_OPT_SNDBUF, 65536), 0);
  assert_int_equal(hps_start(s.ep, HOST, 0), 0);
  assert_int_equal(hps_listen_address(s.ep, NULL, 0, &port), 0);
  ag = t_agent_opts(&ar, 1, HPS_MODEL_PUSH,
                    (const int64_t[]){HPS_OPT_RCVBUF, 65536, 0});
  assert_int_equal(hps_connect(ag, HOST, port, &a), 0);
  t_conn_event(&ar, a, HPS_EV_HANDSHAKE);
  id = t_nth_conn(&sr, HPS_EV_HANDSHAKE, 0);
  ua.ep = s.ep;
  ua.id = id;
  for (round = 0; round < 2; round++) {
    if (round == 0) {
      assert_int_equal(hps_setopt(s.ep, HPS_OPT_SEND_HIGH_WATER, 8 << 20), 0);
    } else {
      assert_int_equal(hps_setopt(s.ep, HPS_OPT_SEND_HIGH_WATER, 512 << 10),
                       0);
      assert_int_equal(hps_setopt(s.ep, HPS_OPT_SEND_LOW_WATER, 1 << 20), 0);
      assert_int_equal(hps_getopt(s.ep, HPS_OPT_SEND_LOW_WATER, &v), 0);
      assert_int_equal(v, 1 << 20); /* kept as set, used as high - 1 */
    }
    assert_int_equal(hps_pause_receive(ag, a, 1), 0);
    for (i = 0; i < 48; i++) { /* 3 MiB */
      t_pat_fill(b, CHUNK, 5, s.pos);
      assert_int_equal(hps_send(s.ep, id, b, CHUNK), 0);
      s.pos += CHUNK;
    }
    if (round == 1) {
      t_ev hi = nth(&sr, HPS_EV_HIGH_WATER, 0);
      if (hi.len <= (512u << 10))
        fail_msg("HIGH_WATER len %zu not above the new mark", hi.len);
    } else {
      /* the bytes sit unsent, under the raised mark */
      assert_true(unsent(s.ep, id) > (1u << 20));
    }
    assert_int_equal(hps_pause_receive(ag, a, 0), 0);
    assert_int_equal(t_rec_wait_bytes(&ar, (size_t)s.pos, 3 * T_WAIT_MS), 0);
    assert_int_equal(t_poll(unsent_zero, &ua, T_WAIT_MS), 0);
    if (round == 0) assert_int_equal(t_rec_count(&sr, HPS_EV_HIGH_WATER), 0);
  }
  {
    t_ev lo = nth(&sr, HPS_EV_LOW_WATER, 0);
    if (lo.len > (512u << 10) - 1)
      fail_msg("LOW_WATER len %zu above high - 1", lo.len);
  }
  assert_int_equal(t_rec_count(&sr, HPS_EV_HIGH_WATER), 1);
  assert_int_equal(t_rec_count(&sr, HPS_EV_LOW_WATER), 1);
  {
    size_t n;
    unsigned char *got = t_rec_data_copy(&ar, &n);
    assert_int_equal(n, s.pos);
    assert_int_equal(t_pat_check(got, n, 5, 0), -1);
    free(got);
  }
  free(b);
  t_stop_free(ag);
  t_stop_free(s.ep);
  t_rec_free(&ar);
  t_rec_free(&sr);
}

/* ------------------------------------------------------------------ */
/* automatic pause                                                     */
/* ------------------------------------------------------------------ */

/* An echo that counts the water events; no copy of the data kept. */
typedef struct echo {
  int high, low, closes, close_err, send_err;
  hps_conn_id conn;
} echo;

static int echo_handler(void *user, const hps_event *ev) {
  echo *e = user;
  int r;
  switch (ev->type) {
  case HPS_EV_ACCEPT:
    __atomic_store_n(&e->conn, ev->conn, __ATOMIC_SEQ_CST);
    break;
  case HPS_EV_RECEIVE:
    r = hps_send(ev->endpoint, ev->conn, ev->data, ev->len);
    if (r != 0) {
      __atomic_store_n(&e->send_err, r, __ATOMIC_SEQ_CST);
      return HPS_HR_ERROR;
    }
    break;
  case HPS_EV_HIGH_WATER:
    __atomic_add_fetch(&e->high, 1, __ATOMIC_SEQ_CST);
    break;
  case HPS_EV_LOW_WATER:
    __atomic_add_fetch(&e->low, 1, __ATOMIC_SEQ_CST);
    break;
  case HPS_EV_CLOSE:
    __atomic_store_n(&e->close_err, ev->error, __ATOMIC_SEQ_CST);
    __atomic_add_fetch(&e->closes, 1, __ATOMIC_SEQ_CST);
    break;
  }
  return HPS_HR_OK;
}

static hps_endpoint *echo_server(echo *e, int auto_pause, uint16_t *port) {
  hps_endpoint *ep;
  memset(e, 0, sizeof(*e));
  assert_int_equal(hps_create(HPS_TCP_SERVER, echo_handler, e, &ep), 0);
  assert_int_equal(hps_setopt(ep, HPS_OPT_AUTO_PAUSE, auto_pause), 0);
  assert_int_equal(hps_setopt(ep, HPS_OPT_SNDBUF, 65536), 0);
  assert_int_equal(hps_setopt(ep, HPS_OPT_RCVBUF, 65536), 0);
  assert_int_equal(hps_start(ep, HOST, 0), 0);
  assert_int_equal(hps_listen_address(ep, NULL, 0, port), 0);
  return ep;
}

static long rss_kib(pid_t pid) {
  char path[64], line[256];
  long kib = -1;
  FILE *f;
  snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
  f = fopen(path, "r");
  if (f == NULL) return -1;
  while (fgets(line, sizeof(line), f))
    if (sscanf(line, "VmRSS: %ld", &kib) == 1) break;
  fclose(f);
  return kib;
}

static void nonblock(int fd) {
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

/* Write the pattern (seed, from *pos) on non-blocking fd until the socket
 * takes nothing for stall_ms, or *pos reaches limit. 1: stalled. A write
 * error (the peer dropped us) fails the test. */
static int write_until_stall(int fd, uint32_t seed, uint64_t *pos,
                             uint64_t limit, int stall_ms) {
  unsigned char *b = malloc(CHUNK);
  int stalled = 0;
  while (*pos < limit) {
    struct pollfd p = {fd, POLLOUT, 0};
    size_t n = limit - *pos < CHUNK ? (size_t)(limit - *pos) : CHUNK;
    ssize_t w;
    int pr = poll(&p, 1, stall_ms);
    if (pr == 0) {
      stalled = 1;
      break;
    }
    t_pat_fill(b, n, seed, *pos);
    w = send(fd, b, n, MSG_NOSIGNAL);
    if (w < 0 && (errno == EAGAIN || errno == EINTR)) continue;
    if (w < 0) fail_msg("write failed after %llu bytes: %s (dropped?)",
                        (unsigned long long)*pos, strerror(errno));
    *pos += (uint64_t)w;
  }
  free(b);
  return stalled;
}

/* Read n pattern bytes (seed, from pos) from fd within timeout_ms. */
static void read_pattern(int fd, uint32_t seed, uint64_t pos, uint64_t n,
                         int timeout_ms, const char *who) {
  unsigned char *b = malloc(CHUNK);
  uint64_t end = pos + n, t0 = t_now_ms();
  while (pos < end) {
    struct pollfd p = {fd, POLLIN, 0};
    size_t want = end - pos < CHUNK ? (size_t)(end - pos) : CHUNK;
    ssize_t r;
    long bad;
    if (t_now_ms() - t0 > (uint64_t)timeout_ms)
      fail_msg("%s: %llu of %llu bytes within %d ms", who,
               (unsigned long long)(pos - (end - n)), (unsigned long long)n,
               timeout_ms);
    if (poll(&p, 1, 100) <= 0) continue;
    r = recv(fd, b, want, 0);
    if (r < 0 && (errno == EAGAIN || errno == EINTR)) continue;
    if (r <= 0)
      fail_msg("%s: the stream ended after %llu of %llu bytes (%s)", who,
               (unsigned long long)(pos - (end - n)), (unsigned long long)n,
               r == 0 ? "EOF" : strerror(errno));
    bad = t_pat_check(b, (size_t)r, seed, pos);
    if (bad != -1)
      fail_msg("%s: byte %llu differs", who,
               (unsigned long long)(pos + (uint64_t)bad));
    pos += (uint64_t)r;
  }
  free(b);
}

/* A client that writes and never reads, against an auto-paused echo
 * server: the server stops reading once the echo it cannot send passes
 * high water, so the client's writes stall with the server's unsent bytes
 * near high water and its memory bounded (not the 16 MiB send queue limit
 * and a drop); once the client reads, every byte comes back. */
static void test_auto_pause_bounds_a_client_that_never_reads(void **st) {
  echo e;
  uint16_t port;
  hps_endpoint *ep = echo_server(&e, 1, &port);
  uint64_t pos = 0, u, pauses = 0;
  long rss0 = rss_kib(getpid()), rss1;
  int fd;
  (void)st;
  fd = t_connect_rcvbuf(port, 65536);
  nonblock(fd);
  if (!write_until_stall(fd, 9, &pos, 64u << 20, 500))
    fail_msg("64 MiB written to a server whose echo is not read: it never "
             "stopped reading");
  u = unsent(ep, __atomic_load_n(&e.conn, __ATOMIC_SEQ_CST));
  rss1 = rss_kib(getpid());
  if (u > HIGH_DEFAULT + READ_SLACK)
    fail_msg("unsent %llu past high water %u + %u", (unsigned long long)u,
             HIGH_DEFAULT, READ_SLACK);
  if (rss1 - rss0 > 8 * 1024 * RSS_SCALE)
    fail_msg("RSS grew by %ld KiB with %llu bytes written", rss1 - rss0,
             (unsigned long long)pos);
  assert_int_equal(hps_get_counter(ep, HPS_CNT_AUTO_PAUSES, &pauses), 0);
  assert_true(pauses >= 1);
  assert_true(__atomic_load_n(&e.high, __ATOMIC_SEQ_CST) >= 1);
  read_pattern(fd, 9, 0, pos, 20000, "echo");
  assert_int_equal(__atomic_load_n(&e.closes, __ATOMIC_SEQ_CST), 0);
  close(fd);
  t_stop_free(ep);
  assert_int_equal(e.send_err, 0);
  assert_int_equal(e.high, e.low);
}

/* The silence timeout and an automatic pause: while the server does not
 * read a client it paused, that client's taking of its echo is its sign of
 * life. A client that reads steadily but slowly (draining from high to low
 * water takes several silence timeouts) is not closed as silent. */
static void test_auto_paused_slow_reader_is_not_silent(void **st) {
  echo e;
  uint16_t port;
  hps_endpoint *ep;
  uint64_t pos = 0, got = 0, t0;
  unsigned char *b = malloc(16384);
  int fd;
  (void)st;
  memset(&e, 0, sizeof(e));
  assert_int_equal(hps_create(HPS_TCP_SERVER, echo_handler, &e, &ep), 0);
  assert_int_equal(hps_setopt(ep, HPS_OPT_AUTO_PAUSE, 1), 0);
  assert_int_equal(hps_setopt(ep, HPS_OPT_SILENCE_TIMEOUT, 400), 0);
  assert_int_equal(hps_setopt(ep, HPS_OPT_SEND_HIGH_WATER, 512 << 10), 0);
  assert_int_equal(hps_setopt(ep, HPS_OPT_SEND_LOW_WATER, 16 << 10), 0);
  assert_int_equal(hps_setopt(ep, HPS_OPT_SNDBUF, 65536), 0);
  assert_int_equal(hps_setopt(ep, HPS_OPT_RCVBUF, 65536), 0);
  assert_int_equal(hps_start(ep, HOST, 0), 0);
  assert_int_equal(hps_listen_address(ep, NULL, 0, &port), 0);
  fd = t_connect_rcvbuf(port, 65536);
  nonblock(fd);
  if (!write_until_stall(fd, 11, &pos, 64u << 20, 300))
    fail_msg("the server never paused reading");
  t0 = t_now_ms();
  while (got < pos) { /* 16 KiB per 10 ms */
    struct pollfd p = {fd, POLLIN, 0};
    ssize_t r;
    if (poll(&p, 1, 2000) <= 0)
      fail_msg("no echo for 2 s after %llu of %llu bytes",
               (unsigned long long)got, (unsigned long long)pos);
    r = recv(fd, b, pos - got < 16384 ? (size_t)(pos - got) : 16384, 0);
    if (r < 0 && (errno == EAGAIN || errno == EINTR)) continue;
    if (r <= 0)
      fail_msg("closed after %llu of %llu bytes, %llu ms into a steady read "
               "(CLOSE error %s)",
               (unsigned long long)got, (unsigned long long)pos,
               (unsigned long long)(t_now_ms() - t0),
               hps_err_name(__atomic_load_n(&e.close_err, __ATOMIC_SEQ_CST)));
    if (t_pat_check(b, (size_t)r, 11, got) != -1)
      fail_msg("echo differs near byte %llu", (unsigned long long)got);
    got += (uint64_t)r;
    usleep(10000);
  }
  print_message("read %llu bytes in %llu ms with SILENCE_TIMEOUT 400\n",
                (unsigned long long)got,
                (unsigned long long)(t_now_ms() - t0));
  if (t_now_ms() - t0 < 800)
    fail_msg("read in %llu ms: too fast to prove anything",
             (unsigned long long)(t_now_ms() - t0));
  assert_int_equal(__atomic_load_n(&e.closes, __ATOMIC_SEQ_CST), 0);
  free(b);
  close(fd);
  t_stop_free(ep);
}

typedef struct recv_arg {
  hps_endpoint *ep;
  hps_conn_id id;
  uint64_t base;
} recv_arg;

static uint64_t bytes_received(hps_endpoint *ep, hps_conn_id id) {
  hps_stats s;
  assert_int_equal(hps_get_stats(ep, id, &s), 0);
  return s.bytes_received;
}

static int received_more(void *arg) {
  recv_arg *a = arg;
  return bytes_received(a->ep, a->id) > a->base;
}

/* Reading stays stopped for ms: fails as soon as the server reads. */
static void expect_no_reading(hps_endpoint *ep, hps_conn_id id, int ms,
                              const char *why) {
  recv_arg a = {ep, id, bytes_received(ep, id)};
  if (t_poll(received_more, &a, ms) == 0)
    fail_msg("%s: the server read on (%llu -> %llu bytes)", why,
             (unsigned long long)a.base,
             (unsigned long long)bytes_received(ep, id));
}

static int low_seen(void *arg) {
  echo *e = arg;
  return __atomic_load_n(&e->low, __ATOMIC_SEQ_CST) >= 1;
}

/* The two pauses are two reasons: the application's resume does not end
 * an automatic pause still needed, and the automatic resume at low water
 * does not end the application's pause; reading starts when both ended. */
static void test_app_pause_and_auto_pause_compose(void **st) {
  echo e;
  uint16_t port;
  hps_endpoint *ep = echo_server(&e, 1, &port);
  uint64_t pos = 0, echoed = 0;
  hps_conn_id id;
  recv_arg ra;
  int fd;
  (void)st;
  fd = t_connect_rcvbuf(port, 65536);
  nonblock(fd);
  assert_true(write_until_stall(fd, 3, &pos, 64u << 20, 500));
  id = __atomic_load_n(&e.conn, __ATOMIC_SEQ_CST);
  assert_true(unsent(ep, id) > HIGH_DEFAULT);
  /* the application's resume while above high water: still paused */
  assert_int_equal(hps_pause_receive(ep, id, 0), 0);
  expect_no_reading(ep, id, 300, "application resume during an auto pause");
  /* the application's pause, then the echo is read: low water resumes the
   * automatic pause only */
  assert_int_equal(hps_pause_receive(ep, id, 1), 0);
  {
    unsigned char *b = malloc(CHUNK);
    uint64_t t0 = t_now_ms();
    while (!low_seen(&e)) {
      struct pollfd p = {fd, POLLIN, 0};
      ssize_t r;
      if (t_now_ms() - t0 > T_WAIT_MS) fail_msg("no LOW_WATER");
      if (poll(&p, 1, 50) <= 0) continue;
      r = recv(fd, b, CHUNK, 0);
      if (r <= 0) continue;
      assert_int_equal(t_pat_check(b, (size_t)r, 3, echoed), -1);
      echoed += (uint64_t)r;
    }
    free(b);
  }
  expect_no_reading(ep, id, 300, "low water during the application's pause");
  ra.ep = ep;
  ra.id = id;
  ra.base = bytes_received(ep, id);
  assert_int_equal(hps_pause_receive(ep, id, 0), 0);
  assert_int_equal(t_poll(received_more, &ra, T_WAIT_MS), 0);
  read_pattern(fd, 3, echoed, pos - echoed, 20000, "echo");
  assert_int_equal(__atomic_load_n(&e.closes, __ATOMIC_SEQ_CST), 0);
  close(fd);
  t_stop_free(ep);
  assert_int_equal(e.send_err, 0);
}

/* The pack model: a pause taken inside a read holds the frames not yet
 * delivered; the automatic resume delivers them, in order. 200 frames of
 * 100 KiB written without reading until the writes stall (the server's
 * unsent bytes then near high water), then read while the rest is
 * written: the echoed stream is the stream sent, byte for byte. */
static void test_auto_pause_pack_holds_and_delivers_frames(void **st) {
  hps_endpoint *ep;
  echo e;
  uint16_t port;
  int fd, i, nframes = 200, stalled = 0;
  size_t body = 100 * 1024, total = (size_t)nframes * (body + 4);
  size_t off_w = 0, off_r = 0;
  unsigned char *stream = malloc(total), *g = malloc(CHUNK);
  uint64_t t0;
  (void)st;
  memset(&e, 0, sizeof(e));
  assert_int_equal(hps_create(HPS_TCP_SERVER, echo_handler, &e, &ep), 0);
  assert_int_equal(hps_setopt(ep, HPS_OPT_AUTO_PAUSE, 1), 0);
  assert_int_equal(hps_setopt(ep, HPS_OPT_RECV_MODEL, HPS_MODEL_PACK), 0);
  assert_int_equal(hps_setopt(ep, HPS_OPT_SNDBUF, 65536), 0);
  assert_int_equal(hps_start(ep, HOST, 0), 0);
  assert_int_equal(hps_listen_address(ep, NULL, 0, &port), 0);
  for (i = 0; i < nframes; i++) {
    unsigned char *f = stream + (size_t)i * (body + 4);
    f[0] = (unsigned char)body;
    f[1] = (unsigned char)(body >> 8);
    f[2] = (unsigned char)(body >> 16);
    f[3] = 0;
    t_pat_fill(f + 4, body, 77, (uint64_t)i * body);
  }
  fd = t_connect_rcvbuf(port, 65536);
  nonblock(fd);
  t0 = t_now_ms();
  while (off_r < total) {
    struct pollfd p = {fd, (short)((off_w < total ? POLLOUT : 0) |
                                   (stalled ? POLLIN : 0)), 0};
    int pr = poll(&p, 1, 500);
    if (t_now_ms() - t0 > 30000)
      fail_msg("echo: %zu of %zu bytes back in 30 s", off_r, total);
    if (pr == 0 && !stalled) {
      uint64_t u = unsent(ep, __atomic_load_n(&e.conn, __ATOMIC_SEQ_CST));
      if (u > HIGH_DEFAULT + READ_SLACK)
        fail_msg("unsent %llu past high water + %u", (unsigned long long)u,
                 READ_SLACK);
      stalled = 1;
      continue;
    }
    if (pr <= 0) continue;
    if (p.revents & POLLOUT) {
      size_t n = total - off_w < CHUNK ? total - off_w : CHUNK;
      ssize_t w = send(fd, stream + off_w, n, MSG_NOSIGNAL);
      if (w < 0 && errno != EAGAIN && errno != EINTR)
        fail_msg("write after %zu bytes: %s (dropped?)", off_w,
                 strerror(errno));
      if (w > 0) off_w += (size_t)w;
    }
    if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
      ssize_t r = recv(fd, g, CHUNK, 0);
      if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR))
        fail_msg("echo ended after %zu bytes", off_r);
      if (r > 0) {
        if (off_r + (size_t)r > total || memcmp(g, stream + off_r, (size_t)r))
          fail_msg("echoed bytes at %zu differ from those sent", off_r);
        off_r += (size_t)r;
      }
    }
  }
  if (!stalled) fail_msg("the writes never stalled: nothing was paused");
  assert_int_equal(__atomic_load_n(&e.closes, __ATOMIC_SEQ_CST), 0);
  assert_true(__atomic_load_n(&e.high, __ATOMIC_SEQ_CST) >= 1);
  close(fd);
  t_stop_free(ep);
  free(stream);
  free(g);
}

/* ------------------------------------------------------------------ */
/* the examples                                                        */
/* ------------------------------------------------------------------ */

#ifdef HPS_EXAMPLES_DIR
/* Start an example (path under the build's examples/, args after it,
 * NULL-terminated) and read the port from its "listening on H:P" line. */
static pid_t spawn(const char *name, const char *const *args,
                   uint16_t *port) {
  char path[512], line[256];
  const char *argv[16];
  int pfd[2], n = 0, i;
  size_t len = 0;
  pid_t pid;
  uint64_t t0;
  snprintf(path, sizeof(path), "%s/%s", HPS_EXAMPLES_DIR, name);
  argv[n++] = path;
  for (i = 0; args[i] != NULL && n < 15; i++) argv[n++] = args[i];
  argv[n] = NULL;
  assert_int_equal(pipe(pfd), 0);
  pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL); /* a failed test leaves none behind */
    dup2(pfd[1], 1);
    close(pfd[0]);
    close(pfd[1]);
    execv(path, (char *const *)argv);
    _exit(127);
  }
  close(pfd[1]);
  t0 = t_now_ms();
  while (len + 1 < sizeof(line)) {
    struct pollfd p = {pfd[0], POLLIN, 0};
    ssize_t r;
    if (t_now_ms() - t0 > T_WAIT_MS) break;
    if (poll(&p, 1, 100) <= 0) continue;
    r = read(pfd[0], line + len, 1);
    if (r <= 0) break;
    if (line[len] == '\n') break;
    len++;
  }
  line[len] = '\0';
  close(pfd[0]);
  {
    const char *colon = strrchr(line, ':');
    if (strncmp(line, "listening on ", 13) != 0 || colon == NULL) {
      kill(pid, SIGKILL);
      waitpid(pid, NULL, 0);
      fail_msg("%s did not say where it listens (\"%s\")", path, line);
    }
    *port = (uint16_t)atoi(colon + 1);
  }
  return pid;
}

/* SIGTERM, and it must exit 0. */
static void stop_child(pid_t pid) {
  int status = 0;
  kill(pid, SIGTERM);
  assert_int_equal(waitpid(pid, &status, 0), pid);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    fail_msg("example exited with status %d", status);
}

/* One streaming client: writes 16 KiB blocks for `ms` while reading (at
 * most 2 KiB a time, with a small receive buffer: it reads slower than it
 * writes, so the echo server's
 * unsent bytes grow unless it stops reading), then reads every byte back. */
typedef struct streamer {
  uint16_t port;
  uint32_t seed;
  int ms;
  int pack; /* each block is one frame: header, then 16380 pattern bytes */
  uint64_t written, read;
  char err[200];
} streamer;

#define BLK 16384
/* Fill a block of stream s at stream offset pos (a multiple of BLK). */
static void block_fill(const streamer *s, unsigned char *b, uint64_t pos) {
  if (!s->pack) {
    t_pat_fill(b, BLK, s->seed, pos);
    return;
  }
  b[0] = (BLK - 4) & 0xff;
  b[1] = (BLK - 4) >> 8;
  b[2] = 0;
  b[3] = 0;
  t_pat_fill(b + 4, BLK - 4, s->seed, pos / BLK * (BLK - 4));
}

/* Offset of the first of n bytes at stream offset pos that differs, or
 * -1. */
static long block_check(const streamer *s, const unsigned char *b, size_t n,
                        uint64_t pos) {
  unsigned char want[BLK];
  size_t i = 0;
  if (!s->pack) return t_pat_check(b, n, s->seed, pos);
  while (i < n) {
    uint64_t start = (pos + i) / BLK * BLK;
    size_t off = (size_t)(pos + i - start), k = BLK - off;
    if (k > n - i) k = n - i;
    block_fill(s, want, start);
    if (memcmp(want + off, b + i, k) != 0) {
      size_t j = 0;
      while (want[off + j] == b[i + j]) j++;
      return (long)(i + j);
    }
    i += k;
  }
  return -1;
}

static void *stream_client(void *arg) {
  streamer *s = arg;
  unsigned char *blk = malloc(16384), rb[2048];
  size_t boff = 16384;
  int fd = t_connect_rcvbuf(s->port, 65536);
  uint64_t t0 = t_now_ms(), end = t0 + (uint64_t)s->ms;
  nonblock(fd);
  for (;;) {
    int writing = t_now_ms() < end;
    struct pollfd p = {fd, (short)(POLLIN | (writing ? POLLOUT : 0)), 0};
    if (!writing && s->read == s->written) break;
    if (t_now_ms() > end + 30000) {
      snprintf(s->err, sizeof(s->err), "read %llu of %llu within 30 s",
               (unsigned long long)s->read, (unsigned long long)s->written);
      break;
    }
    if (poll(&p, 1, 100) <= 0) continue;
    if (writing && (p.revents & POLLOUT)) {
      ssize_t w;
      if (boff == 16384) {
        block_fill(s, blk, s->written);
        boff = 0;
      }
      w = send(fd, blk + boff, 16384 - boff, MSG_NOSIGNAL);
      if (w < 0 && errno != EAGAIN && errno != EINTR) {
        snprintf(s->err, sizeof(s->err), "write: %s after %llu bytes",
                 strerror(errno), (unsigned long long)s->written);
        break;
      }
      if (w > 0) {
        boff += (size_t)w;
        s->written += (uint64_t)w;
      }
    }
    if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
      ssize_t r = recv(fd, rb, sizeof(rb), 0);
      if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
        snprintf(s->err, sizeof(s->err), "dropped after %llu of %llu: %s",
                 (unsigned long long)s->read, (unsigned long long)s->written,
                 r == 0 ? "EOF" : strerror(errno));
        break;
      }
      if (r > 0) {
        long bad = block_check(s, rb, (size_t)r, s->read);
        if (bad != -1) {
          snprintf(s->err, sizeof(s->err), "byte %llu differs",
                   (unsigned long long)(s->read + (uint64_t)bad));
          break;
        }
        s->read += (uint64_t)r;
      }
    }
  }
  close(fd);
  free(blk);
  return NULL;
}

static void streaming(const char *mode_args[], int pack) {
  streamer s[8];
  pthread_t th[8];
  uint16_t port;
  pid_t pid = spawn("hps_echo_server", mode_args, &port);
  int i;
  uint64_t total = 0;
  for (i = 0; i < 8; i++) {
    memset(&s[i], 0, sizeof(s[i]));
    s[i].port = port;
    s[i].seed = 1000u + (uint32_t)i;
    s[i].ms = 3000;
    s[i].pack = pack;
    assert_int_equal(pthread_create(&th[i], NULL, stream_client, &s[i]), 0);
  }
  for (i = 0; i < 8; i++) pthread_join(th[i], NULL);
  stop_child(pid);
  for (i = 0; i < 8; i++) {
    if (getenv("FLOW_VERBOSE"))
      fprintf(stderr, "client %d: %llu bytes written, %llu read\n", i,
              (unsigned long long)s[i].written,
              (unsigned long long)s[i].read);
    if (s[i].err[0]) fail_msg("client %d: %s", i, s[i].err);
    total += s[i].read;
  }
  assert_true(total > 0);
}

/* 8 clients x 16 KiB blocks, each reading slower than it writes, for 3 s
 * against the echo server example (AUTO_PAUSE on): no connection dropped,
 * every byte back in order. The send queue limit is 4 MiB, so that a
 * server that read on regardless would reach it within the run. */
static void test_echo_example_streaming_clients_never_dropped(void **st) {
  const char *args[] = {"--port", "0", "--max-send-queue", "4194304", NULL};
  (void)st;
  streaming(args, 0);
}

/* The same in the pack model, each block one frame. */
static void test_echo_example_pack_streaming_clients_never_dropped(void **st) {
  const char *args[] = {"--port", "0", "--mode", "pack", "--max-send-queue",
                        "4194304", NULL};
  (void)st;
  streaming(args, 1);
}

/* ---- the relay ---- */

typedef struct pump_arg {
  int fd;
  uint32_t seed;
  uint64_t pos, n;
  int reader; /* 1: read and check n bytes; 0: write them */
  char err[200];
} pump_arg;

/* Read (check) or write the pattern from pos to n, blocking with poll. */
static void *pump(void *arg) {
  pump_arg *a = arg;
  unsigned char *b = malloc(CHUNK);
  uint64_t t0 = t_now_ms();
  while (a->pos < a->n) {
    struct pollfd p = {a->fd, (short)(a->reader ? POLLIN : POLLOUT), 0};
    size_t want = a->n - a->pos < CHUNK ? (size_t)(a->n - a->pos) : CHUNK;
    ssize_t r;
    if (t_now_ms() - t0 > 60000) {
      snprintf(a->err, sizeof(a->err), "%llu of %llu bytes in 60 s",
               (unsigned long long)a->pos, (unsigned long long)a->n);
      break;
    }
    if (poll(&p, 1, 100) <= 0) continue;
    if (a->reader) {
      r = recv(a->fd, b, want, 0);
      if (r > 0) {
        long bad = t_pat_check(b, (size_t)r, a->seed, a->pos);
        if (bad != -1) {
          snprintf(a->err, sizeof(a->err), "byte %llu differs",
                   (unsigned long long)(a->pos + (uint64_t)bad));
          break;
        }
      }
    } else {
      t_pat_fill(b, want, a->seed, a->pos);
      r = send(a->fd, b, want, MSG_NOSIGNAL);
    }
    if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
      snprintf(a->err, sizeof(a->err), "stream ended at %llu of %llu: %s",
               (unsigned long long)a->pos, (unsigned long long)a->n,
               r == 0 ? "EOF" : strerror(errno));
      break;
    }
    if (r > 0) a->pos += (uint64_t)r;
  }
  free(b);
  return NULL;
}

static int accept_within(int lfd, int ms) {
  struct pollfd p = {lfd, POLLIN, 0};
  if (poll(&p, 1, ms) <= 0) return -1;
  return accept(lfd, NULL, NULL);
}

/* 48 MiB (three times the send queue limit) from one side of the relay to
 * the other, whose reader does not read until the writer stalls: the
 * relay's RSS grows by a bounded amount meanwhile, then every byte
 * arrives in order; closing the writer's side closes the other side
 * after the bytes. slow_upstream: the client writes, the upstream reads
 * late; else the upstream writes and the client reads late. */
static void relay_case(int slow_upstream) {
  uint16_t up_port, port;
  char upstream[64];
  int lfd = t_listen(16, &up_port), cfd, ufd, wfd, rfd;
  const char *args[] = {"--upstream", upstream, "--port", "0", "--workers",
                        "1", NULL};
  pid_t pid;
  long rss0, rss1;
  uint64_t total = 48u << 20, pos = 0;
  pump_arg rd, wr;
  pthread_t rt, wt;
  snprintf(upstream, sizeof(upstream), HOST ":%u", (unsigned)up_port);
  pid = spawn("hps_relay", args, &port);
  cfd = t_connect(HOST, port);
  ufd = accept_within(lfd, T_WAIT_MS);
  assert_true(ufd >= 0);
  /* one round trip each way first, so the relay's buffers are in use */
  t_send_all(cfd, "ping", 4);
  {
    char b[4];
    assert_int_equal(t_recv_exact(ufd, b, 4, T_WAIT_MS), 4);
    t_send_all(ufd, "pong", 4);
    assert_int_equal(t_recv_exact(cfd, b, 4, T_WAIT_MS), 4);
    assert_memory_equal(b, "pong", 4);
  }
  wfd = slow_upstream ? cfd : ufd;
  rfd = slow_upstream ? ufd : cfd;
  rss0 = rss_kib(pid);
  nonblock(wfd);
  if (!write_until_stall(wfd, 21, &pos, total, 500))
    fail_msg("48 MiB went into the relay with nobody reading: it never "
             "stopped reading");
  rss1 = rss_kib(pid);
  if (rss1 - rss0 > 12 * 1024 * RSS_SCALE)
    fail_msg("relay RSS grew by %ld KiB while %llu bytes waited",
             rss1 - rss0, (unsigned long long)pos);
  memset(&rd, 0, sizeof(rd));
  memset(&wr, 0, sizeof(wr));
  rd.fd = rfd;
  rd.seed = 21;
  rd.n = total;
  rd.reader = 1;
  wr.fd = wfd;
  wr.seed = 21;
  wr.pos = pos;
  wr.n = total;
  assert_int_equal(pthread_create(&rt, NULL, pump, &rd), 0);
  assert_int_equal(pthread_create(&wt, NULL, pump, &wr), 0);
  pthread_join(wt, NULL);
  pthread_join(rt, NULL);
  if (wr.err[0]) fail_msg("writer: %s", wr.err);
  if (rd.err[0]) fail_msg("reader: %s", rd.err);
  /* the writer's side closes: the other side ends after the bytes */
  close(wfd);
  if (!t_wait_eof(rfd, T_WAIT_MS))
    fail_msg("the relay did not close the other side");
  close(rfd);
  close(lfd);
  stop_child(pid);
}

static void test_relay_slow_upstream(void **st) {
  (void)st;
  relay_case(1);
}

static void test_relay_slow_client(void **st) {
  (void)st;
  relay_case(0);
}
#endif

int main(int argc, char **argv) {
  const char *filter = argc > 1 ? argv[1] : getenv("HPS_TEST_FILTER");
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_water_push_loop_sends),
      cmocka_unit_test(test_water_push_thread_sends),
      cmocka_unit_test(test_water_pack_loop_sends),
      cmocka_unit_test(test_water_pack_thread_sends),
      cmocka_unit_test(test_water_tls_loop_sends),
      cmocka_unit_test(test_water_tls_thread_sends),
      cmocka_unit_test(test_water_marks_change_live),
      cmocka_unit_test(test_auto_pause_bounds_a_client_that_never_reads),
      cmocka_unit_test(test_auto_paused_slow_reader_is_not_silent),
      cmocka_unit_test(test_app_pause_and_auto_pause_compose),
      cmocka_unit_test(test_auto_pause_pack_holds_and_delivers_frames),
#ifdef HPS_EXAMPLES_DIR
      cmocka_unit_test(test_echo_example_streaming_clients_never_dropped),
      cmocka_unit_test(
          test_echo_example_pack_streaming_clients_never_dropped),
      cmocka_unit_test(test_relay_slow_upstream),
      cmocka_unit_test(test_relay_slow_client),
#endif
  };
  signal(SIGPIPE, SIG_IGN);
  if (filter) cmocka_set_test_filter(filter);
  return cmocka_run_group_tests_name("flow", tests, NULL, NULL);
}
