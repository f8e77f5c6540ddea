/* test_echo.c - the data path end to end in the push model: echo with a
 * plain socket, an hpsock agent and an hpsock client as the peer; the order
 * of a connection's events; addresses; extra data; connection lists; close
 * semantics; concurrency (events never overlap per connection, sends from
 * many threads never interleave); the event mask. It also runs every case
 * of tests/fixtures/close/cases.txt and every scenario of
 * tests/fixtures/echo/scenarios.txt as tests of their own. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "hps_test.h"

#define HOST "127.0.0.1"

/* ------------------------------------------------------------------ */
/* helpers                                                             */
/* ------------------------------------------------------------------ */

static const int SERVER_HEAD[] = {HPS_EV_ACCEPT, HPS_EV_HANDSHAKE};
static const int AGENT_HEAD[] = {HPS_EV_PREPARE, HPS_EV_CONNECT,
                                 HPS_EV_HANDSHAKE};

/* SHUTDOWN was delivered once and was the endpoint's last event. */
static void check_shutdown_last(t_rec *r) {
  assert_int_equal(t_rec_count(r, HPS_EV_SHUTDOWN), 1);
  pthread_mutex_lock(&r->mu);
  assert_true(r->nevs > 0);
  assert_int_equal(r->evs[r->nevs - 1].type, HPS_EV_SHUTDOWN);
  pthread_mutex_unlock(&r->mu);
}

static void sockname(int fd, int peer, char *host, uint16_t *port) {
  struct sockaddr_in a;
  socklen_t len = sizeof(a);
  if (peer)
    assert_int_equal(getpeername(fd, (struct sockaddr *)&a, &len), 0);
  else
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
  assert_int_equal(a.sin_family, AF_INET);
  assert_non_null(inet_ntop(AF_INET, &a.sin_addr, host, 64));
  *port = ntohs(a.sin_port);
}

/* hps_{local,remote}_address of conn equals the fd's sock/peer name. */
static void expect_address(hps_endpoint *ep, hps_conn_id conn, int remote,
                           int fd, int fd_peer) {
  char h1[64], h2[64];
  uint16_t p1 = 0, p2 = 0;
  int rc = remote ? hps_remote_address(ep, conn, h1, sizeof(h1), &p1)
                  : hps_local_address(ep, conn, h1, sizeof(h1), &p1);
  assert_int_equal(rc, 0);
  sockname(fd, fd_peer, h2, &p2);
  assert_string_equal(h1, h2);
  assert_int_equal(p1, p2);
}

static void expect_same_address(hps_endpoint *a, hps_conn_id ca, int ra,
                                hps_endpoint *b, hps_conn_id cb, int rb) {
  char h1[64], h2[64];
  uint16_t p1 = 0, p2 = 0;
  assert_int_equal(ra ? hps_remote_address(a, ca, h1, sizeof(h1), &p1)
                      : hps_local_address(a, ca, h1, sizeof(h1), &p1),
                   0);
  assert_int_equal(rb ? hps_remote_address(b, cb, h2, sizeof(h2), &p2)
                      : hps_local_address(b, cb, h2, sizeof(h2), &p2),
                   0);
  assert_string_equal(h1, h2);
  assert_int_equal(p1, p2);
}

/* Send len pattern bytes (stream seed, from position 0) in blocks from
 * this thread; every send must succeed. */
static void send_pattern(hps_endpoint *ep, hps_conn_id conn, uint32_t seed,
                         size_t len, size_t block) {
  unsigned char *b = malloc(block);
  size_t off = 0;
  assert_non_null(b);
  while (off < len) {
    size_t n = len - off < block ? len - off : block;
    t_pat_fill(b, n, seed, off);
    assert_int_equal(hps_send(ep, conn, b, n), 0);
    off += n;
  }
  free(b);
}

/* ------------------------------------------------------------------ */
/* echo with each kind of peer                                         */
/* ------------------------------------------------------------------ */

static void test_push_echo_with_plain_socket_peer(void **state) {
  t_rec r;
  hps_endpoint *ep;
  uint16_t port;
  hps_conn_id conn;
  enum { N = 300000 };
  unsigned char *out = malloc(N), *in = malloc(N);
  int fd;
  (void)state;
  t_rec_init(&r);
  r.echo = 1;
  ep = t_server(&r, 2, HPS_MODEL_PUSH, &port);
  fd = t_connect(HOST, port);
  conn = t_nth_conn(&r, HPS_EV_ACCEPT, 0);
  t_pat_fill(out, N, 1, 0);
  t_send_all(fd, out, N);
  assert_int_equal(t_recv_exact(fd, in, N, T_WAIT_MS), N);
  assert_memory_equal(in, out, N);
  close(fd);
  t_expect_close(t_conn_event(&r, conn, HPS_EV_CLOSE), HPS_OP_RECEIVE, 0);
  t_stop_free(ep);
  t_check_conn_events(&r, conn, SERVER_HEAD, 2);
  check_shutdown_last(&r);
  free(out);
  free(in);
  t_rec_free(&r);
}

static void test_push_echo_with_agent_peer(void **state) {
  t_rec rs, ra;
  hps_endpoint *srv, *agent;
  uint16_t port;
  hps_conn_id id = 0, sconn;
  enum { N = 200000 };
  unsigned char *out = malloc(N), *in;
  size_t got;
  (void)state;
  t_rec_init(&rs);
  t_rec_init(&ra);
  rs.echo = 1;
  srv = t_server(&rs, 2, HPS_MODEL_PUSH, &port);
  agent = t_agent(&ra, 2, HPS_MODEL_PUSH);
  assert_int_equal(hps_connect(agent, HOST, port, &id), 0);
  assert_true(id != 0);
  t_conn_event(&ra, id, HPS_EV_HANDSHAKE);
  sconn = t_nth_conn(&rs, HPS_EV_ACCEPT, 0);
  t_pat_fill(out, N, 2, 0);
  /* three sends of different sizes, one stream */
  assert_int_equal(hps_send(agent, id, out, 1), 0);
  assert_int_equal(hps_send(agent, id, out + 1, 65537), 0);
  assert_int_equal(hps_send(agent, id, out + 65538, N - 65538), 0);
  assert_int_equal(t_rec_wait_bytes(&ra, N, T_WAIT_MS), 0);
  in = t_rec_data_copy(&ra, &got);
  assert_int_equal(got, N);
  assert_memory_equal(in, out, N);
  free(in);
  assert_int_equal(hps_disconnect(agent, id, 0), 0);
  t_expect_close(t_conn_event(&ra, id, HPS_EV_CLOSE), HPS_OP_CLOSE, 0);
  t_expect_close(t_conn_event(&rs, sconn, HPS_EV_CLOSE), HPS_OP_RECEIVE, 0);
  t_stop_free(agent);
  t_stop_free(srv);
  t_check_conn_events(&ra, id, AGENT_HEAD, 3);
  t_check_conn_events(&rs, sconn, SERVER_HEAD, 2);
  check_shutdown_last(&ra);
  check_shutdown_last(&rs);
  free(out);
  t_rec_free(&rs);
  t_rec_free(&ra);
}

static void test_push_echo_with_client_peer(void **state) {
  t_rec rs, rc;
  hps_endpoint *srv, *cl;
  uint16_t port;
  hps_conn_id id, sconn;
  enum { N = 100000 };
  unsigned char *out = malloc(N), *in;
  size_t got;
  (void)state;
  t_rec_init(&rs);
  t_rec_init(&rc);
  rs.echo = 1;
  srv = t_server(&rs, 1, HPS_MODEL_PUSH, &port);
  cl = t_client(&rc, HPS_MODEL_PUSH, port);
  id = t_nth_conn(&rc, HPS_EV_CONNECT, 0);
  t_conn_event(&rc, id, HPS_EV_HANDSHAKE);
  sconn = t_nth_conn(&rs, HPS_EV_ACCEPT, 0);
  t_pat_fill(out, N, 3, 0);
  assert_int_equal(hps_send(cl, 0, out, N), 0); /* 0: the client's conn */
  assert_int_equal(t_rec_wait_bytes(&rc, N, T_WAIT_MS), 0);
  in = t_rec_data_copy(&rc, &got);
  assert_int_equal(got, N);
  assert_memory_equal(in, out, N);
  free(in);
  assert_int_equal(hps_disconnect(cl, 0, 0), 0);
  t_expect_close(t_conn_event(&rc, id, HPS_EV_CLOSE), HPS_OP_CLOSE, 0);
  t_expect_close(t_conn_event(&rs, sconn, HPS_EV_CLOSE), HPS_OP_RECEIVE, 0);
  t_stop_free(cl);
  t_stop_free(srv);
  t_check_conn_events(&rc, id, AGENT_HEAD, 3);
  t_check_conn_events(&rs, sconn, SERVER_HEAD, 2);
  check_shutdown_last(&rc);
  free(out);
  t_rec_free(&rs);
  t_rec_free(&rc);
}

/* Every per-connection call on a client accepts ID 0 for its connection. */
static void test_client_id_zero_means_the_clients_connection(void **state) {
  t_rec rs, rc;
  hps_endpoint *srv, *cl;
  uint16_t port, p0, p1;
  hps_conn_id id, ids[4];
  char h0[64], h1[64];
  uintptr_t x = 0;
  hps_stats s0, s1;
  size_t count = 0;
  (void)state;
  t_rec_init(&rs);
  t_rec_init(&rc);
  rs.echo = 1;
  srv = t_server(&rs, 1, HPS_MODEL_PUSH, &port);
  cl = t_client(&rc, HPS_MODEL_PUSH, port);
  id = t_nth_conn(&rc, HPS_EV_CONNECT, 0);
  t_conn_event(&rc, id, HPS_EV_HANDSHAKE);
  assert_int_equal(hps_conn_list(cl, ids, 4, &count), 1);
  assert_int_equal(count, 1);
  assert_true(ids[0] == id);
  assert_int_equal(hps_local_address(cl, 0, h0, sizeof(h0), &p0), 0);
  assert_int_equal(hps_local_address(cl, id, h1, sizeof(h1), &p1), 0);
  assert_string_equal(h0, h1);
  assert_int_equal(p0, p1);
  assert_int_equal(hps_remote_address(cl, 0, h0, sizeof(h0), &p0), 0);
  assert_int_equal(p0, port);
  assert_int_equal(hps_set_extra(cl, 0, 0x77), 0);
  assert_int_equal(hps_get_extra(cl, id, &x), 0);
  assert_true(x == 0x77);
  assert_int_equal(hps_send(cl, 0, "ping", 4), 0);
  assert_int_equal(t_rec_wait_bytes(&rc, 4, T_WAIT_MS), 0);
  assert_int_equal(hps_get_stats(cl, 0, &s0), 0);
  assert_int_equal(hps_get_stats(cl, id, &s1), 0);
  assert_true(s0.bytes_sent == 4 && s1.bytes_sent == 4);
  assert_true(s0.bytes_received == 4 && s1.bytes_received == 4);
  assert_int_equal(hps_pause_receive(cl, 0, 1), 0);
  assert_int_equal(hps_pause_receive(cl, 0, 0), 0);
  assert_int_equal(hps_disconnect(cl, 0, 1), 0);
  t_expect_close(t_conn_event(&rc, id, HPS_EV_CLOSE), HPS_OP_CLOSE, 0);
  /* the CLOSE carried the extra data set through ID 0 */
  assert_true(t_conn_event(&rc, id, HPS_EV_CLOSE).extra == 0x77);
  assert_int_equal(hps_send(cl, 0, "x", 1), HPS_ENOTFOUND);
  assert_int_equal(hps_send(cl, id, "x", 1), HPS_ENOTFOUND);
  t_stop_free(cl);
  t_stop_free(srv);
  t_rec_free(&rs);
  t_rec_free(&rc);
}

/* ------------------------------------------------------------------ */
/* addresses                                                           */
/* ------------------------------------------------------------------ */

static void test_addresses_agree_with_plain_socket(void **state) {
  t_rec r;
  hps_endpoint *ep;
  uint16_t port;
  hps_conn_id conn;
  int fd;
  (void)state;
  t_rec_init(&r);
  ep = t_server(&r, 2, HPS_MODEL_PUSH, &port);
  fd = t_connect(HOST, port);
  conn = t_nth_conn(&r, HPS_EV_ACCEPT, 0);
  /* server local = the peer's peer name; server remote = its sock name */
  expect_address(ep, conn, 0, fd, 1);
  expect_address(ep, conn, 1, fd, 0);
  close(fd);
  t_conn_event(&r, conn, HPS_EV_CLOSE);
  t_stop_free(ep);
  t_rec_free(&r);
}

typedef struct fd_note {
  hps_conn_id conn;
  int64_t fd;
} fd_note;

/* Keep the socket of the agent's PREPARE event. */
static int hook_keep_prepare_fd(t_rec *r, const hps_event *ev) {
  fd_note *n = r->user;
  if (ev->type == HPS_EV_PREPARE) {
    __atomic_store_n(&n->conn, ev->conn, __ATOMIC_SEQ_CST);
    __atomic_store_n(&n->fd, ev->fd, __ATOMIC_SEQ_CST);
  }
  return HPS_HR_OK;
}

static void test_addresses_agree_with_agent_socket(void **state) {
  t_rec rs, ra;
  hps_endpoint *srv, *agent;
  uint16_t port;
  hps_conn_id id = 0, sconn;
  fd_note note = {0, -1};
  int fd;
  (void)state;
  t_rec_init(&rs);
  t_rec_init(&ra);
  ra.hook = hook_keep_prepare_fd;
  ra.user = &note;
  srv = t_server(&rs, 2, HPS_MODEL_PUSH, &port);
  agent = t_agent(&ra, 2, HPS_MODEL_PUSH);
  assert_int_equal(hps_connect(agent, HOST, port, &id), 0);
  t_conn_event(&ra, id, HPS_EV_HANDSHAKE);
  sconn = t_nth_conn(&rs, HPS_EV_ACCEPT, 0);
  assert_true(__atomic_load_n(&note.conn, __ATOMIC_SEQ_CST) == id);
  fd = (int)__atomic_load_n(&note.fd, __ATOMIC_SEQ_CST);
  assert_true(fd >= 0);
  expect_address(agent, id, 0, fd, 0); /* agent local = getsockname */
  expect_address(agent, id, 1, fd, 1); /* agent remote = getpeername */
  expect_same_address(agent, id, 0, srv, sconn, 1);
  expect_same_address(agent, id, 1, srv, sconn, 0);
  t_stop_free(agent);
  t_conn_event(&rs, sconn, HPS_EV_CLOSE);
  t_stop_free(srv);
  t_rec_free(&rs);
  t_rec_free(&ra);
}

/* The socket of this process whose local address is peer's remote one and
 * whose remote address is peer's local one: the other end of peer. */
static int other_end(int peer) {
  struct sockaddr_storage pl, pr, l, r;
  socklen_t len;
  int fd;
  len = sizeof(pl);
  assert_int_equal(getsockname(peer, (struct sockaddr *)&pl, &len), 0);
  len = sizeof(pr);
  assert_int_equal(getpeername(peer, (struct sockaddr *)&pr, &len), 0);
  for (fd = 0; fd < 4096; fd++) {
    struct stat st;
    if (fd == peer || fstat(fd, &st) != 0 || !S_ISSOCK(st.st_mode)) continue;
    len = sizeof(l);
    if (getsockname(fd, (struct sockaddr *)&l, &len) != 0) continue;
    len = sizeof(r);
    if (getpeername(fd, (struct sockaddr *)&r, &len) != 0) continue;
    if (memcmp(&l, &pr, sizeof(struct sockaddr_in)) == 0 &&
        memcmp(&r, &pl, sizeof(struct sockaddr_in)) == 0)
      return fd;
  }
  fail_msg("the other end of fd %d is not in this process", peer);
  return -1;
}

static int sockopt(int fd, int level, int name) {
  int v = -1;
  socklen_t len = sizeof(v);
  assert_int_equal(getsockopt(fd, level, name, &v, &len), 0);
  return v;
}

/* What HPS_OPT_NODELAY, KEEPALIVE_TIME/INTERVAL, SNDBUF and RCVBUF ask. */
static void expect_sockopts(int fd, int nodelay, int keepidle, int keepintvl,
                            int sndbuf, int rcvbuf) {
  assert_int_equal(sockopt(fd, IPPROTO_TCP, TCP_NODELAY) != 0, nodelay);
  assert_int_equal(sockopt(fd, SOL_SOCKET, SO_KEEPALIVE) != 0, keepidle > 0);
  if (keepidle > 0) {
    assert_int_equal(sockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE), keepidle);
    assert_int_equal(sockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL), keepintvl);
  }
  /* Linux doubles the size asked for (bookkeeping overhead) */
  if (sndbuf > 0) assert_int_equal(sockopt(fd, SOL_SOCKET, SO_SNDBUF), 2 * sndbuf);
  if (rcvbuf > 0) assert_int_equal(sockopt(fd, SOL_SOCKET, SO_RCVBUF), 2 * rcvbuf);
}

/* The socket options reach the sockets a server accepts (they come from
 * its listeners, one per worker) and the ones an agent connects, in both
 * settings of NODELAY; and an endpoint without them leaves the defaults. */
static void test_socket_options_reach_accepted_and_connected_sockets(
    void **state) {
  int round;
  (void)state;
  for (round = 0; round < 3; round++) {
    /* round 0: all set, nodelay on; 1: all set, nodelay off; 2: defaults
     * with nodelay and keepalive off */
    int nodelay = round == 0;
    int64_t opts[] = {HPS_OPT_NODELAY, nodelay,
                      HPS_OPT_KEEPALIVE_TIME, round < 2 ? 7000 : 0,
                      HPS_OPT_KEEPALIVE_INTERVAL, 3000,
                      HPS_OPT_SNDBUF, round < 2 ? 48 * 1024 : 0,
                      HPS_OPT_RCVBUF, round < 2 ? 40 * 1024 : 0,
                      0};
    int keepidle = round < 2 ? 7 : 0;
    int buf_s = round < 2 ? 48 * 1024 : 0, buf_r = round < 2 ? 40 * 1024 : 0;
    t_rec rs, ra;
    hps_endpoint *srv, *agent;
    uint16_t port;
    hps_conn_id ids[4];
    fd_note note = {0, -1};
    int i, fd, afd;
    t_rec_init(&rs);
    t_rec_init(&ra);
    ra.hook = hook_keep_prepare_fd;
    ra.user = &note;
    srv = t_server_opts(&rs, 2, HPS_MODEL_PUSH, opts, &port);
    agent = t_agent_opts(&ra, 1, HPS_MODEL_PUSH, opts);
    /* several connections, so both of the server's listeners serve some
     * (SO_REUSEPORT spreads them by address hash) */
    for (i = 0; i < 4; i++) {
      assert_int_equal(hps_connect(agent, HOST, port, &ids[i]), 0);
      t_conn_event(&ra, ids[i], HPS_EV_CONNECT);
      fd = (int)__atomic_load_n(&note.fd, __ATOMIC_SEQ_CST);
      assert_true(fd >= 0);
      expect_sockopts(fd, nodelay, keepidle, 3, buf_s, buf_r);
      /* CONNECT can come before the server's accept(): wait for it */
      assert_int_equal(t_rec_wait(&rs, HPS_EV_ACCEPT, i + 1, T_WAIT_MS), 0);
      afd = other_end(fd);
      expect_sockopts(afd, nodelay, keepidle, 3, buf_s, buf_r);
    }
    t_stop_free(agent);
    t_stop_free(srv);
    t_rec_free(&rs);
    t_rec_free(&ra);
  }
}

/* ------------------------------------------------------------------ */
/* extra data, connection count and list                               */
/* ------------------------------------------------------------------ */

/* Distinct per connection ID (IDs of different loops share low bits). */
static uintptr_t extra_for(hps_conn_id conn) {
  return (uintptr_t)(conn ^ 0x5eed5eed00000000ull) + 1;
}

static int hook_set_extra_in_accept(t_rec *r, const hps_event *ev) {
  (void)r;
  if (ev->type == HPS_EV_ACCEPT)
    hps_set_extra(ev->endpoint, ev->conn, extra_for(ev->conn));
  return HPS_HR_OK;
}

/* conn's events after its first (ACCEPT) carry v1, then (once it was
 * changed) v2 and never v1 again; returns how many carry v2. */
static int expect_extra(t_rec *r, hps_conn_id conn, uintptr_t v1,
                        uintptr_t v2) {
  size_t k, i = 0;
  int n2 = 0;
  pthread_mutex_lock(&r->mu);
  for (k = 0; k < r->nevs; k++) {
    uintptr_t x = r->evs[k].extra;
    if (r->evs[k].conn != conn) continue;
    if (i++ == 0) continue;
    if (x == v2) n2++;
    if ((x == v1 && n2 == 0) || x == v2) continue;
    pthread_mutex_unlock(&r->mu);
    fail_msg("connection %llx event %zu (type %d): extra %#lx, expected "
             "%#lx then %#lx",
             (unsigned long long)conn, i - 1, r->evs[k].type,
             (unsigned long)x, (unsigned long)v1, (unsigned long)v2);
  }
  pthread_mutex_unlock(&r->mu);
  return n2;
}

static void test_extra_set_in_accept_comes_back_in_every_event(void **state) {
  t_rec r;
  hps_endpoint *ep;
  uint16_t port;
  hps_conn_id a, b;
  int fa, fb, i;
  uintptr_t x;
  t_ev e;
  char buf[8];
  (void)state;
  t_rec_init(&r);
  r.echo = 1;
  r.hook = hook_set_extra_in_accept;
  ep = t_server(&r, 2, HPS_MODEL_PUSH, &port);
  fa = t_connect(HOST, port);
  a = t_nth_conn(&r, HPS_EV_ACCEPT, 0);
  fb = t_connect(HOST, port);
  b = t_nth_conn(&r, HPS_EV_ACCEPT, 1);
  assert_true(extra_for(a) != extra_for(b));
  for (i = 0; i < 3; i++) { /* RECEIVE and SEND events, one by one */
    t_send_all(fa, "abc", 3);
    assert_int_equal(t_recv_exact(fa, buf, 3, T_WAIT_MS), 3);
    t_send_all(fb, "xyz", 3);
    assert_int_equal(t_recv_exact(fb, buf, 3, T_WAIT_MS), 3);
  }
  assert_int_equal(hps_get_extra(ep, a, &x), 0);
  assert_true(x == extra_for(a));
  assert_int_equal(hps_get_extra(ep, b, &x), 0);
  assert_true(x == extra_for(b));
  /* ACCEPT itself carries the initial 0; every later event the value */
  assert_true(t_conn_event(&r, a, HPS_EV_ACCEPT).extra == 0);
  assert_int_equal(t_rec_conn_count(&r, a, HPS_EV_RECEIVE), 3);
  assert_int_equal(expect_extra(&r, a, extra_for(a), 0xfeed), 0);
  /* a new value set from another thread shows from then on */
  assert_int_equal(hps_set_extra(ep, a, 0xfeed), 0);
  t_send_all(fa, "q", 1);
  assert_int_equal(t_recv_exact(fa, buf, 1, T_WAIT_MS), 1);
  close(fa);
  e = t_conn_event(&r, a, HPS_EV_CLOSE);
  t_expect_close(e, HPS_OP_RECEIVE, 0);
  assert_true(e.extra == 0xfeed);
  assert_int_equal(t_rec_get(&r, HPS_EV_RECEIVE, 6, &e), 0); /* the "q" */
  assert_true(e.conn == a && e.extra == 0xfeed);
  assert_true(expect_extra(&r, a, extra_for(a), 0xfeed) >= 2);
  close(fb);
  t_conn_event(&r, b, HPS_EV_CLOSE);
  assert_int_equal(expect_extra(&r, b, extra_for(b), 0), 0);
  t_stop_free(ep);
  t_rec_free(&r);
}

typedef struct count_note {
  int count, listed, listed_ids, saw_self;
  int claimed; /* atomic: the first CLOSE takes the note */
  int done;    /* atomic: set after the fields */
} count_note;

/* In the first CLOSE: what hps_conn_count and hps_conn_list say at that
 * moment. Later CLOSEs (two loops, so possibly at once) leave it alone. */
static int hook_count_in_close(t_rec *r, const hps_event *ev) {
  count_note *n = r->user;
  hps_conn_id ids[16];
  size_t count = 0;
  int i, got;
  if (ev->type != HPS_EV_CLOSE ||
      __atomic_exchange_n(&n->claimed, 1, __ATOMIC_ACQ_REL))
    return HPS_HR_OK;
  n->count = hps_conn_count(ev->endpoint);
  got = hps_conn_list(ev->endpoint, ids, 16, &count);
  n->listed = (int)count;
  n->listed_ids = got;
  for (i = 0; i < got; i++)
    if (ids[i] == ev->conn) n->saw_self = 1;
  __atomic_store_n(&n->done, 1, __ATOMIC_RELEASE);
  return HPS_HR_OK;
}

static int note_done(void *arg) {
  count_note *n = arg;
  return __atomic_load_n(&n->done, __ATOMIC_ACQUIRE);
}

static int has_id(const hps_conn_id *ids, int n, hps_conn_id id) {
  int i;
  for (i = 0; i < n; i++)
    if (ids[i] == id) return 1;
  return 0;
}

static void test_conn_count_and_list_track_open_connections(void **state) {
  t_rec r;
  hps_endpoint *ep;
  uint16_t port;
  hps_conn_id c[3], ids[8];
  int fd[3], i;
  size_t count = 99;
  count_note note;
  (void)state;
  memset(&note, 0, sizeof(note));
  t_rec_init(&r);
  r.hook = hook_count_in_close;
  r.user = &note;
  ep = t_server(&r, 2, HPS_MODEL_PUSH, &port);
  assert_int_equal(hps_conn_count(ep), 0);
  for (i = 0; i < 3; i++) {
    fd[i] = t_connect(HOST, port);
    c[i] = t_nth_conn(&r, HPS_EV_ACCEPT, i);
  }
  assert_int_equal(hps_conn_count(ep), 3);
  assert_int_equal(hps_conn_list(ep, ids, 8, &count), 3);
  assert_int_equal(count, 3);
  for (i = 0; i < 3; i++) assert_true(has_id(ids, 3, c[i]));
  assert_int_equal(hps_conn_list(ep, ids, 2, &count), 2); /* cap wins */
  assert_int_equal(count, 3);
  assert_true(has_id(c, 3, ids[0]) && has_id(c, 3, ids[1]));
  assert_true(ids[0] != ids[1]);
  assert_int_equal(hps_conn_list(ep, NULL, 0, &count), 0);
  assert_int_equal(count, 3);
  assert_int_equal(hps_conn_list(ep, NULL, 1, &count), HPS_EINVAL);

  close(fd[1]);
  t_conn_event(&r, c[1], HPS_EV_CLOSE);
  assert_int_equal(t_poll(note_done, &note, T_WAIT_MS), 0);
  /* inside its CLOSE the connection is no longer open: count and list
   * agree and leave it out */
  assert_int_equal(note.saw_self, 0);
  assert_int_equal(note.listed, 2);
  assert_int_equal(note.listed_ids, 2);
  assert_int_equal(note.count, 2);
  assert_int_equal(hps_conn_count(ep), 2);
  assert_int_equal(hps_conn_list(ep, ids, 8, &count), 2);
  assert_true(has_id(ids, 2, c[0]) && has_id(ids, 2, c[2]));
  close(fd[0]);
  close(fd[2]);
  t_conn_event(&r, c[0], HPS_EV_CLOSE);
  t_conn_event(&r, c[2], HPS_EV_CLOSE);
  assert_int_equal(hps_conn_count(ep), 0);
  assert_int_equal(hps_conn_list(ep, ids, 8, &count), 0);
  assert_int_equal(count, 0);
  t_stop_free(ep);
  t_rec_free(&r);
}

/* ------------------------------------------------------------------ */
/* closing                                                             */
/* ------------------------------------------------------------------ */

/* A graceful disconnect from another thread, right after sends that are
 * still queued: the peer reads every byte, then EOF. */
static void test_graceful_disconnect_sends_queued_bytes_then_fin(
    void **state) {
  t_rec r;
  hps_endpoint *ep;
  uint16_t port;
  hps_conn_id conn;
  enum { N = 4 << 20 };
  unsigned char *in = malloc(N + 1);
  size_t got, total;
  int fd, eof;
  (void)state;
  t_rec_init(&r);
  ep = t_server(&r, 2, HPS_MODEL_PUSH, &port);
  fd = t_connect_rcvbuf(port, 65536);
  conn = t_nth_conn(&r, HPS_EV_ACCEPT, 0);
  t_conn_event(&r, conn, HPS_EV_HANDSHAKE);
  send_pattern(ep, conn, 10, N, 65536);
  assert_int_equal(hps_disconnect(ep, conn, 0), 0);
  got = t_recv_until_eof(fd, in, N + 1, &total, &eof, 20000);
  assert_int_equal(eof, 1);
  assert_int_equal(total, N);
  assert_int_equal(got, N);
  assert_int_equal(t_pat_check(in, N, 10, 0), -1);
  t_expect_close(t_conn_event(&r, conn, HPS_EV_CLOSE), HPS_OP_CLOSE, 0);
  close(fd);
  t_stop_free(ep);
  t_check_conn_events(&r, conn, SERVER_HEAD, 2);
  free(in);
  t_rec_free(&r);
}

/* The same from inside a handler (the loop's own thread): the sends are
 * written or queued directly, then the disconnect. */
static int hook_send_then_disconnect(t_rec *r, const hps_event *ev) {
  size_t *n = r->user;
  if (ev->type == HPS_EV_RECEIVE) {
    unsigned char *b = malloc(65536);
    size_t off;
    for (off = 0; off < *n; off += 65536) {
      t_pat_fill(b, 65536, 11, off);
      if (hps_send(ev->endpoint, ev->conn, b, 65536) != 0) *n = 0;
    }
    free(b);
    if (hps_disconnect(ev->endpoint, ev->conn, 0) != 0) *n = 0;
  }
  return HPS_HR_OK;
}

static void test_graceful_disconnect_from_handler_sends_queued_bytes_first(
    void **state) {
  t_rec r;
  hps_endpoint *ep;
  uint16_t port;
  hps_conn_id conn;
  size_t n = 2 << 20, got, total;
  unsigned char *in = malloc(n + 1);
  int fd, eof;
  (void)state;
  t_rec_init(&r);
  r.hook = hook_send_then_disconnect;
  r.user = &n;
  ep = t_server(&r, 1, HPS_MODEL_PUSH, &port);
  fd = t_connect_rcvbuf(port, 65536);
  conn = t_nth_conn(&r, HPS_EV_ACCEPT, 0);
  t_send_all(fd, "go", 2);
  got = t_recv_until_eof(fd, in, (2 << 20) + 1, &total, &eof, 20000);
  t_expect_close(t_conn_event(&r, conn, HPS_EV_CLOSE), HPS_OP_CLOSE, 0);
  assert_int_equal(n, 2 << 20); /* every send and the disconnect gave 0 */
  assert_int_equal(eof, 1);
  assert_int_equal(total, n);
  assert_int_equal(got, n);
  assert_int_equal(t_pat_check(in, n, 11, 0), -1);
  close(fd);
  t_stop_free(ep);
  free(in);
  t_rec_free(&r);
}

/* A handler answers its own connection (the send fast path, no table
 * look-up), disconnects it, and sends again: the reply made before the
 * disconnect goes out, the send after it fails with HPS_ENOTFOUND and sends
 * nothing. r->user: the disconnect's force; the codes go into codes[]. */
static int codes[3];
static int hook_reply_disconnect_reply(t_rec *r, const hps_event *ev) {
  if (ev->type == HPS_EV_RECEIVE) {
    codes[0] = hps_send(ev->endpoint, ev->conn, ev->data, ev->len);
    codes[1] = hps_disconnect(ev->endpoint, ev->conn, *(int *)r->user);
    codes[2] = hps_send(ev->endpoint, ev->conn, "late", 4);
  }
  return HPS_HR_OK;
}

static void test_send_from_handler_after_own_disconnect_fails(void **state) {
  int force;
  (void)state;
  for (force = 0; force <= 1; force++) {
    t_rec r;
    hps_endpoint *ep;
    uint16_t port;
    hps_conn_id conn;
    char in[16];
    size_t got, total;
    int fd, eof;
    t_rec_init(&r);
    r.hook = hook_reply_disconnect_reply;
    r.user = &force;
    memset(codes, 0x55, sizeof(codes));
    ep = t_server(&r, 1, HPS_MODEL_PUSH, &port);
    fd = t_connect(HOST, port);
    conn = t_nth_conn(&r, HPS_EV_ACCEPT, 0);
    t_send_all(fd, "ping", 4);
    got = t_recv_until_eof(fd, in, sizeof(in), &total, &eof, T_WAIT_MS);
    t_expect_close(t_conn_event(&r, conn, HPS_EV_CLOSE), HPS_OP_CLOSE, 0);
    assert_int_equal(codes[0], 0);
    assert_int_equal(codes[1], 0);
    assert_int_equal(codes[2], HPS_ENOTFOUND);
    assert_int_equal(eof, 1);
    if (force) {
      /* forced: the corked reply may be dropped, "late" never goes */
      assert_true(total == 0 || (total == 4 && !memcmp(in, "ping", 4)));
    } else {
      assert_int_equal(total, 4); /* graceful: the reply, then FIN */
      assert_int_equal(got, 4);
      assert_memory_equal(in, "ping", 4);
    }
    close(fd);
    t_stop_free(ep);
    t_rec_free(&r);
  }
}

/* A forced disconnect closes at once (the peer is not reading) and drops
 * what was not sent yet. */
static void test_forced_disconnect_closes_at_once_and_drops_unsent(
    void **state) {
  t_rec r;
  hps_endpoint *ep;
  uint16_t port;
  hps_conn_id conn;
  enum { N = 8 << 20 };
  unsigned char *in = malloc(N);
  size_t got, total;
  int fd, eof;
  const int64_t opts[] = {HPS_OPT_SNDBUF, 65536, 0};
  (void)state;
  t_rec_init(&r);
  ep = t_server_opts(&r, 1, HPS_MODEL_PUSH, opts, &port);
  fd = t_connect_rcvbuf(port, 65536);
  conn = t_nth_conn(&r, HPS_EV_ACCEPT, 0);
  t_conn_event(&r, conn, HPS_EV_HANDSHAKE);
  send_pattern(ep, conn, 12, N, 65536);
  assert_int_equal(hps_disconnect(ep, conn, 1), 0);
  t_expect_close(t_conn_event(&r, conn, HPS_EV_CLOSE), HPS_OP_CLOSE, 0);
  assert_int_equal(hps_send(ep, conn, "x", 1), HPS_ENOTFOUND);
  got = t_recv_until_eof(fd, in, N, &total, &eof, T_WAIT_MS);
  assert_int_equal(eof, 1);
  assert_true(total < N); /* the unsent rest was dropped */
  assert_int_equal(t_pat_check(in, got, 12, 0), -1); /* a clean prefix */
  close(fd);
  t_stop_free(ep);
  free(in);
  t_rec_free(&r);
}

/* The peer resets the connection while the server is sending to it and it
 * is sending too: CLOSE with an error, and the server serves the next. */
static void test_peer_reset_mid_transfer_closes_with_error(void **state) {
  t_rec r;
  hps_endpoint *ep;
  uint16_t port;
  hps_conn_id conn, next;
  unsigned char buf[65536];
  t_ev e;
  int fd;
  (void)state;
  t_rec_init(&r);
  ep = t_server(&r, 2, HPS_MODEL_PUSH, &port);
  fd = t_connect_rcvbuf(port, 65536);
  conn = t_nth_conn(&r, HPS_EV_ACCEPT, 0);
  t_conn_event(&r, conn, HPS_EV_HANDSHAKE);
  send_pattern(ep, conn, 13, 4 << 20, 65536);
  memset(buf, 'p', sizeof(buf));
  t_send_all(fd, buf, sizeof(buf));
  assert_int_equal(t_recv_exact(fd, buf, sizeof(buf), T_WAIT_MS),
                   sizeof(buf));
  assert_int_equal(t_pat_check(buf, sizeof(buf), 13, 0), -1);
  t_close_reset(fd);
  e = t_conn_event(&r, conn, HPS_EV_CLOSE);
  if (e.error == 0 || (e.op != HPS_OP_RECEIVE && e.op != HPS_OP_SEND))
    fail_msg("reset: CLOSE op %d error %d (%s)", e.op, e.error,
             hps_err_name(e.error));
  /* sends to the gone connection fail cleanly */
  assert_int_equal(hps_send(ep, conn, "x", 1), HPS_ENOTFOUND);
  fd = t_connect(HOST, port);
  next = t_nth_conn(&r, HPS_EV_ACCEPT, 1);
  assert_true(next != conn);
  t_send_all(fd, "alive", 5);
  t_conn_event(&r, next, HPS_EV_RECEIVE);
  assert_int_equal(hps_send(ep, next, "ok", 2), 0);
  assert_int_equal(t_recv_exact(fd, buf, 2, T_WAIT_MS), 2);
  assert_memory_equal(buf, "ok", 2);
  close(fd);
  t_conn_event(&r, next, HPS_EV_CLOSE);
  t_stop_free(ep);
  t_check_conn_events(&r, conn, SERVER_HEAD, 2);
  t_rec_free(&r);
}

/* A long-lived connection (several drained reads: the core reads such a
 * socket edge-triggered on Linux) whose peer's last bytes and FIN, or
 * bytes and reset, arrive together: one readiness event for both. The
 * bytes and the CLOSE must both come; a core that stops at the short read
 * of those bytes never hears of the FIN again. Then the same with the
 * connection paused: nothing is delivered and the loop does not spin on
 * the peer's FIN meanwhile; the resume delivers the bytes and the CLOSE. */
static void arm_by_round_trips(int fd) {
  char b[8];
  int i;
  for (i = 0; i < 8; i++) { /* each one read, each drained */
    t_send_all(fd, "ping", 4);
    assert_int_equal(t_recv_exact(fd, b, 4, T_WAIT_MS), 4);
    assert_memory_equal(b, "ping", 4);
  }
}

/* "Slow" keeps the loop in its handler for 60 ms: what the peer sends
 * meanwhile is waiting, all of it, at the next poll. */
static int hook_slow(t_rec *r, const hps_event *ev) {
  (void)r;
  if (ev->type == HPS_EV_RECEIVE && ev->len == 4 &&
      memcmp(ev->data, "Slow", 4) == 0)
    usleep(60 * 1000);
  /* "Paus" pauses (at once: from the handler), then says so */
  if (ev->type == HPS_EV_RECEIVE && ev->len == 4 &&
      memcmp(ev->data, "Paus", 4) == 0) {
    assert_int_equal(hps_pause_receive(ev->endpoint, ev->conn, 1), 0);
    assert_int_equal(hps_send(ev->endpoint, ev->conn, "!", 1), 0);
  }
  return HPS_HR_OK;
}

static double process_cpu_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void test_long_lived_connection_sees_fin_or_reset_that_comes_with_data(
    void **state) {
  t_rec r;
  hps_endpoint *ep;
  uint16_t port;
  int i, fd;
  (void)state;
  t_rec_init(&r);
  /* No SEND events: with them every write goes through libuv, which
   * registers the socket again after each (level-triggered). */
  const int64_t opts[] = {HPS_OPT_EVENTS,
                          HPS_EVBIT(HPS_EV_ACCEPT) |
                              HPS_EVBIT(HPS_EV_HANDSHAKE) |
                              HPS_EVBIT(HPS_EV_RECEIVE) |
                              HPS_EVBIT(HPS_EV_CLOSE) |
                              HPS_EVBIT(HPS_EV_SHUTDOWN),
                          0};
  r.echo = 1;
  r.hook = hook_slow;
  ep = t_server_opts(&r, 1, HPS_MODEL_PUSH, opts, &port);
  for (i = 0; i < 8; i++) {
    hps_conn_id conn;
    t_ev e;
    size_t len;
    fd = t_connect(HOST, port);
    conn = t_nth_conn(&r, HPS_EV_ACCEPT, i);
    arm_by_round_trips(fd);
    t_send_all(fd, "Slow", 4);
    usleep(20 * 1000); /* the server is in its handler */
    t_send_all(fd, "last", 4); /* and at once: */
    if (i % 2 == 0) {
      char b[16];
      int eof = 0;
      assert_int_equal(shutdown(fd, SHUT_WR), 0);
      e = t_conn_event(&r, conn, HPS_EV_CLOSE);
      t_expect_close(e, HPS_OP_RECEIVE, 0);
      /* the bytes came before the CLOSE: their echo, then EOF */
      len = t_recv_until_eof(fd, b, sizeof(b), NULL, &eof, T_WAIT_MS);
      assert_int_equal(len, 8);
      assert_memory_equal(b, "Slowlast", 8);
      assert_true(eof);
      close(fd);
    } else {
      t_close_reset(fd);
      e = t_conn_event(&r, conn, HPS_EV_CLOSE);
      if (e.error == 0)
        fail_msg("reset after data: CLOSE op %d error 0", e.op);
    }
  }
  { /* paused when the bytes and FIN come */
    hps_conn_id conn;
    hps_stats st;
    double cpu0, cpu1;
    fd = t_connect(HOST, port);
    conn = t_nth_conn(&r, HPS_EV_ACCEPT, 8);
    arm_by_round_trips(fd);
    {
      char b[5];
      t_send_all(fd, "Paus", 4);
      assert_int_equal(t_recv_exact(fd, b, 5, T_WAIT_MS), 5);
      assert_memory_equal(b, "Paus!", 5);
    }
    assert_int_equal(hps_get_stats(ep, conn, &st), 0);
    t_send_all(fd, "held", 4);
    assert_int_equal(shutdown(fd, SHUT_WR), 0);
    cpu0 = process_cpu_ms();
    usleep(300 * 1000);
    cpu1 = process_cpu_ms();
    if (cpu1 - cpu0 > 150)
      fail_msg("paused connection, peer shut down: %.0f ms CPU in 300 ms "
               "(the loop spins)", cpu1 - cpu0);
    assert_int_equal(t_rec_conn_count(&r, conn, HPS_EV_CLOSE), 0);
    assert_int_equal(hps_pause_receive(ep, conn, 0), 0);
    t_expect_close(t_conn_event(&r, conn, HPS_EV_CLOSE), HPS_OP_RECEIVE, 0);
    {
      char b[64];
      size_t n = t_recv_until_eof(fd, b, sizeof(b), NULL, &i, T_WAIT_MS);
      /* the echo of what the pause held (the pings' came back before) */
      assert_int_equal(n, 4);
      assert_memory_equal(b, "held", 4);
      assert_int_equal(st.bytes_received, 9 * 4);
    }
    close(fd);
  }
  t_stop_free(ep);
  t_rec_free(&r);
}

/* ERROR from RECEIVE closes that connection with HPS_EHANDLER only. */
static int hook_error_on_x(t_rec *r, const hps_event *ev) {
  (void)r;
  if (ev->type == HPS_EV_RECEIVE && ev->len > 0 &&
      ((const char *)ev->data)[0] == 'X')
    return HPS_HR_ERROR;
  return HPS_HR_OK;
}

static void test_handler_error_from_receive_closes_only_that_connection(
    void **state) {
  t_rec r;
  hps_endpoint *ep;
  uint16_t port;
  hps_conn_id c[3];
  int fd[3], i;
  char buf[8];
  (void)state;
  t_rec_init(&r);
  r.echo = 1;
  r.hook = hook_error_on_x;
  ep = t_server(&r, 2, HPS_MODEL_PUSH, &port);
  for (i = 0; i < 3; i++) {
    fd[i] = t_connect(HOST, port);
    c[i] = t_nth_conn(&r, HPS_EV_ACCEPT, i);
    t_conn_event(&r, c[i], HPS_EV_HANDSHAKE);
  }
  t_send_all(fd[1], "X", 1);
  t_expect_close(t_conn_event(&r, c[1], HPS_EV_CLOSE), HPS_OP_RECEIVE,
               HPS_EHANDLER);
  assert_int_equal(t_wait_eof(fd[1], T_WAIT_MS), 1);
  assert_int_equal(hps_conn_count(ep), 2);
  for (i = 0; i < 3; i += 2) {
    t_send_all(fd[i], "hello", 5);
    assert_int_equal(t_recv_exact(fd[i], buf, 5, T_WAIT_MS), 5);
    assert_memory_equal(buf, "hello", 5);
  }
  assert_int_equal(t_rec_conn_count(&r, c[0], HPS_EV_CLOSE), 0);
  assert_int_equal(t_rec_conn_count(&r, c[2], HPS_EV_CLOSE), 0);
  for (i = 0; i < 3; i++) close(fd[i]);
  t_stop_free(ep);
  for (i = 0; i < 3; i++) t_check_conn_events(&r, c[i], SERVER_HEAD, 2);
  t_rec_free(&r);
}

static void test_agent_connect_refused_closes_with_econnrefused(
    void **state) {
  t_rec r;
  hps_endpoint *agent;
  hps_conn_id id = 0;
  struct sockaddr_in a;
  socklen_t len = sizeof(a);
  int fd, types[8];
  (void)state;
  /* a bound socket that does not listen: the port is ours and refuses */
  fd = socket(AF_INET, SOCK_STREAM, 0);
  memset(&a, 0, sizeof(a));
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
  assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
  t_rec_init(&r);
  agent = t_agent(&r, 1, HPS_MODEL_PUSH);
  assert_int_equal(hps_connect(agent, HOST, ntohs(a.sin_port), &id), 0);
  t_expect_close(t_conn_event(&r, id, HPS_EV_CLOSE), HPS_OP_CONNECT,
               -ECONNREFUSED);
  assert_int_equal(-ECONNREFUSED, -111);
  t_stop_free(agent);
  /* PREPARE, then CLOSE: never CONNECT or HANDSHAKE */
  assert_int_equal(t_rec_conn_types(&r, id, types, 8), 2);
  assert_int_equal(types[0], HPS_EV_PREPARE);
  assert_int_equal(types[1], HPS_EV_CLOSE);
  close(fd);
  t_rec_free(&r);
}

/* A plain listener with backlog 0 whose accept queue is full: further
 * SYNs are dropped. *fill gets the filler sockets (nfill). */
static int full_listener(uint16_t *port, int *fill, int nfill) {
  int lfd = t_listen(0, port), i;
  for (i = 0; i < nfill; i++) {
    fill[i] = t_connect_nb(*port);
    if (i == 0) { /* the first one completes and fills the queue */
      struct pollfd p = {fill[0], POLLOUT, 0};
      assert_int_equal(poll(&p, 1, T_WAIT_MS), 1);
    }
  }
  return lfd;
}

static void test_agent_connect_timeout_closes_with_etimedout(void **state) {
  t_rec r;
  hps_endpoint *agent;
  hps_conn_id id = 0;
  uint16_t port;
  int lfd, fill[3], i, types[8];
  uint64_t t0, dt;
  const int64_t opts[] = {HPS_OPT_CONNECT_TIMEOUT, 200, 0};
  (void)state;
  lfd = full_listener(&port, fill, 3);
  t_rec_init(&r);
  agent = t_agent_opts(&r, 1, HPS_MODEL_PUSH, opts);
  t0 = t_now_ms();
  assert_int_equal(hps_connect(agent, HOST, port, &id), 0);
  t_expect_close(t_conn_event(&r, id, HPS_EV_CLOSE), HPS_OP_CONNECT,
               HPS_ETIMEDOUT);
  dt = t_now_ms() - t0;
  assert_true(dt >= 150); /* it was the timeout, not something sooner */
  t_stop_free(agent);
  assert_int_equal(t_rec_conn_types(&r, id, types, 8), 2);
  assert_int_equal(types[0], HPS_EV_PREPARE);
  assert_int_equal(types[1], HPS_EV_CLOSE);
  for (i = 0; i < 3; i++) close(fill[i]);
  close(lfd);
  t_rec_free(&r);
}

/* A handler's sends of the bytes it was given are written from the read
 * buffer itself (no copy) unless more follows: then everything is gathered
 * in order. Mixed here: the whole read, a stack byte, a slice of the read;
 * and, on the next read, only a slice (an interior pointer). */
static int hook_echo_mixed(t_rec *r, const hps_event *ev) {
  const char *d = ev->data;
  (void)r;
  if (ev->type != HPS_EV_RECEIVE || d == NULL || ev->len < 2)
    return HPS_HR_OK;
  if (d[0] == 'A') {
    if (hps_send(ev->endpoint, ev->conn, d, ev->len) != 0 ||
        hps_send(ev->endpoint, ev->conn, "|", 1) != 0 ||
        hps_send(ev->endpoint, ev->conn, d + 1, ev->len - 1) != 0)
      return HPS_HR_ERROR;
  } else if (hps_send(ev->endpoint, ev->conn, d + 1, ev->len - 1) != 0) {
    return HPS_HR_ERROR;
  }
  return HPS_HR_OK;
}

static void test_sends_of_the_received_bytes_keep_content_and_order(
    void **state) {
  t_rec r;
  hps_endpoint *ep;
  uint16_t port;
  char got[64];
  int fd, i;
  /* without SEND events: the path that gathers a handler's sends */
  const int64_t opts[] = {HPS_OPT_EVENTS,
                          HPS_EVENTS_ALL & ~HPS_EVBIT(HPS_EV_SEND), 0};
  (void)state;
  t_rec_init(&r);
  r.hook = hook_echo_mixed;
  ep = t_server_opts(&r, 1, HPS_MODEL_PUSH, opts, &port);
  fd = t_connect(HOST, port);
  for (i = 0; i < 20; i++) {
    /* one message at a time, each answered before the next: one read each */
    t_send_all(fd, "Abcdef", 6);
    memset(got, 0, sizeof(got));
    assert_int_equal(t_recv_exact(fd, got, 12, T_WAIT_MS), 12);
    assert_string_equal(got, "Abcdef|bcdef");
    t_send_all(fd, "Bxyz", 4);
    memset(got, 0, sizeof(got));
    assert_int_equal(t_recv_exact(fd, got, 3, T_WAIT_MS), 3);
    assert_string_equal(got, "xyz");
  }
  close(fd);
  t_stop_free(ep);
  t_rec_free(&r);
}

/* ------------------------------------------------------------------ */
/* many connections, concurrency                                       */
/* ------------------------------------------------------------------ */

static int hook_sink_receive(t_rec *r, const hps_event *ev) {
  if (ev->type == HPS_EV_RECEIVE && ev->data)
    t_conns_add(r->user, ev->conn, ev->data, ev->len);
  return HPS_HR_OK;
}

typedef struct sinks_full {
  t_conns *t;
  const hps_conn_id *ids;
  int n;
  size_t len;
} sinks_full;

static int all_sinks_have(void *arg) {
  sinks_full *s = arg;
  int i;
  for (i = 0; i < s->n; i++)
    if (t_conns_get(s->t, s->ids[i], NULL, 0) < s->len) return 0;
  return 1;
}

static void test_agent_with_fifty_connections_to_one_server(void **state) {
  enum { N = 50 };
  t_rec rs, ra;
  hps_endpoint *srv, *agent;
  uint16_t port;
  hps_conn_id ids[N];
  t_conns *sinks = t_conns_new();
  sinks_full sf;
  char msg[32], got[32];
  int i;
  (void)state;
  t_rec_init(&rs);
  t_rec_init(&ra);
  rs.echo = 1;
  ra.hook = hook_sink_receive;
  ra.user = sinks;
  srv = t_server(&rs, 2, HPS_MODEL_PUSH, &port);
  agent = t_agent(&ra, 2, HPS_MODEL_PUSH);
  for (i = 0; i < N; i++)
    assert_int_equal(hps_connect(agent, HOST, port, &ids[i]), 0);
  assert_int_equal(t_rec_wait(&ra, HPS_EV_HANDSHAKE, N, T_WAIT_MS), 0);
  assert_int_equal(t_rec_wait(&rs, HPS_EV_HANDSHAKE, N, T_WAIT_MS), 0);
  assert_int_equal(t_rec_count(&ra, HPS_EV_CLOSE), 0);
  assert_int_equal(hps_conn_count(agent), N);
  assert_int_equal(hps_conn_count(srv), N);
  for (i = 0; i < N; i++) {
    snprintf(msg, sizeof(msg), "connection %02d says hi", i);
    assert_int_equal(hps_send(agent, ids[i], msg, strlen(msg)), 0);
  }
  sf.t = sinks;
  sf.ids = ids;
  sf.n = N;
  sf.len = strlen("connection 00 says hi");
  assert_int_equal(t_poll(all_sinks_have, &sf, T_WAIT_MS), 0);
  for (i = 0; i < N; i++) {
    snprintf(msg, sizeof(msg), "connection %02d says hi", i);
    memset(got, 0, sizeof(got));
    assert_int_equal(t_conns_get(sinks, ids[i], got, sizeof(got) - 1),
                     strlen(msg));
    assert_string_equal(got, msg);
  }
  assert_int_equal(hps_stop(agent), 0);
  assert_int_equal(t_rec_count(&ra, HPS_EV_CLOSE), N);
  for (i = 0; i < N; i++) {
    t_expect_close(t_conn_event(&ra, ids[i], HPS_EV_CLOSE), HPS_OP_CLOSE, 0);
    t_check_conn_events(&ra, ids[i], AGENT_HEAD, 3);
  }
  assert_int_equal(t_rec_wait(&rs, HPS_EV_CLOSE, N, T_WAIT_MS), 0);
  for (i = 0; i < N; i++) {
    t_ev e;
    assert_int_equal(t_rec_get(&rs, HPS_EV_CLOSE, i, &e), 0);
    t_expect_close(e, HPS_OP_RECEIVE, 0);
  }
  assert_int_equal(hps_free(agent), 0);
  t_stop_free(srv);
  t_conns_free(sinks);
  t_rec_free(&rs);
  t_rec_free(&ra);
}

/* Every event: count it as inside its connection (an overlap is
 * remembered), linger a little so an overlap would show, keep RECEIVE
 * bytes per connection. */
static int hook_probe_overlap(t_rec *r, const hps_event *ev) {
  t_conns *t = r->user;
  int i;
  if (ev->conn == 0) return HPS_HR_OK;
  t_conns_enter(t, ev->conn);
  for (i = 0; i < 20; i++) sched_yield();
  if (ev->type == HPS_EV_RECEIVE && ev->data)
    t_conns_add(t, ev->conn, ev->data, ev->len);
  t_conns_leave(t, ev->conn);
  return HPS_HR_OK;
}

typedef struct peer_job {
  uint16_t port;
  int index, msgs, msglen, ok;
  hps_endpoint *ep; /* also send from this foreign thread */
} peer_job;

#define PEER_SEED(i) (100u + (uint32_t)(i))

/* A plain peer: sends msgs messages of its own pattern, reads the echo. */
static void *peer_sender(void *arg) {
  peer_job *j = arg;
  int fd = t_connect(HOST, j->port), m;
  size_t total = (size_t)j->msgs * (size_t)j->msglen;
  unsigned char *b = malloc(total);
  t_pat_fill(b, total, PEER_SEED(j->index), 0);
  for (m = 0; m < j->msgs; m++)
    t_send_all(fd, b + (size_t)m * (size_t)j->msglen, (size_t)j->msglen);
  memset(b, 0, total);
  j->ok = t_recv_exact(fd, b, total, 20000) == total &&
          t_pat_check(b, total, PEER_SEED(j->index), 0) == -1;
  close(fd);
  free(b);
  return NULL;
}

static void test_events_of_one_connection_never_overlap(void **state) {
  enum { P = 8, MSGS = 200, LEN = 137 };
  t_rec r;
  hps_endpoint *ep;
  uint16_t port;
  pthread_t th[P];
  peer_job jobs[P];
  t_conns *t = t_conns_new();
  int i, k, used[P] = {0};
  t_ev e;
  (void)state;
  t_rec_init(&r);
  r.echo = 1; /* RECEIVE and SEND events on every connection */
  r.hook = hook_probe_overlap;
  r.user = t;
  ep = t_server(&r, 4, HPS_MODEL_PUSH, &port);
  for (i = 0; i < P; i++) {
    jobs[i].port = port;
    jobs[i].index = i;
    jobs[i].msgs = MSGS;
    jobs[i].msglen = LEN;
    jobs[i].ok = 0;
    assert_int_equal(pthread_create(&th[i], NULL, peer_sender, &jobs[i]), 0);
  }
  for (i = 0; i < P; i++) {
    pthread_join(th[i], NULL);
    assert_true(jobs[i].ok);
  }
  assert_int_equal(t_rec_wait(&r, HPS_EV_CLOSE, P, T_WAIT_MS), 0);
  assert_int_equal(t_conns_overlaps(t), 0);
  assert_int_equal(t_conns_thread_switches(t), 0); /* one loop for life */
  /* each connection's bytes are exactly one peer's stream */
  for (i = 0; i < P; i++) {
    unsigned char *b = malloc(MSGS * LEN);
    assert_int_equal(t_rec_get(&r, HPS_EV_ACCEPT, i, &e), 0);
    assert_int_equal(t_conns_get(t, e.conn, b, MSGS * LEN), MSGS * LEN);
    for (k = 0; k < P; k++)
      if (!used[k] && t_pat_check(b, MSGS * LEN, PEER_SEED(k), 0) == -1)
        break;
    assert_true(k < P);
    used[k] = 1;
    free(b);
  }
  t_stop_free(ep);
  t_conns_free(t);
  t_rec_free(&r);
}

/* An odd record size, so no record boundary falls on a power of two. */
#define REC_LEN 1000

typedef struct send_job {
  hps_endpoint *ep;
  hps_conn_id conn;
  int th, n, failures;
} send_job;

static void *record_sender(void *arg) {
  send_job *j = arg;
  unsigned char rec[REC_LEN];
  int i;
  for (i = 0; i < j->n; i++) {
    t_record_fill(rec, REC_LEN, j->th, (uint32_t)i);
    if (hps_send(j->ep, j->conn, rec, REC_LEN) != 0) j->failures++;
  }
  return NULL;
}

static void test_sends_from_many_threads_never_interleave(void **state) {
  enum { T = 8, PER = 400 };
  t_rec r;
  hps_endpoint *ep;
  uint16_t port;
  hps_conn_id conn;
  pthread_t th[T];
  send_job jobs[T];
  size_t total = (size_t)T * PER * REC_LEN;
  unsigned char *b = malloc(total);
  int fd, i;
  (void)state;
  t_rec_init(&r);
  ep = t_server(&r, 2, HPS_MODEL_PUSH, &port);
  fd = t_connect(HOST, port);
  conn = t_nth_conn(&r, HPS_EV_ACCEPT, 0);
  t_conn_event(&r, conn, HPS_EV_HANDSHAKE);
  for (i = 0; i < T; i++) {
    jobs[i].ep = ep;
    jobs[i].conn = conn;
    jobs[i].th = i;
    jobs[i].n = PER;
    jobs[i].failures = 0;
    assert_int_equal(pthread_create(&th[i], NULL, record_sender, &jobs[i]),
                     0);
  }
  assert_int_equal(t_recv_exact(fd, b, total, 30000), total);
  for (i = 0; i < T; i++) {
    pthread_join(th[i], NULL);
    assert_int_equal(jobs[i].failures, 0);
  }
  t_records_check(b, total, REC_LEN, T, PER);
  close(fd);
  t_stop_free(ep);
  free(b);
  t_rec_free(&r);
}

/* ------------------------------------------------------------------ */
/* SEND events, the event mask                                         */
/* ------------------------------------------------------------------ */

static int hook_sink_send(t_rec *r, const hps_event *ev) {
  if (ev->type == HPS_EV_SEND) {
    if (ev->data == NULL || ev->len == 0) return HPS_HR_ERROR;
    t_conns_add(r->user, ev->conn, ev->data, ev->len);
  }
  return HPS_HR_OK;
}

typedef struct sink_len {
  t_conns *t;
  hps_conn_id conn;
  size_t len;
} sink_len;

static int sink_has(void *arg) {
  sink_len *s = arg;
  return t_conns_get(s->t, s->conn, NULL, 0) >= s->len;
}

static void test_send_events_carry_the_sent_bytes(void **state) {
  t_rec r;
  hps_endpoint *ep;
  uint16_t port;
  hps_conn_id conn;
  t_conns *sent = t_conns_new();
  enum { N = 300000 };
  const size_t sizes[] = {1, 10, 1000, 65536, 70000};
  unsigned char *out = malloc(N), *in = malloc(N), *ev = malloc(N + 1);
  size_t off = 0, i;
  sink_len sl;
  int fd;
  (void)state;
  t_rec_init(&r);
  r.hook = hook_sink_send;
  r.user = sent;
  ep = t_server(&r, 2, HPS_MODEL_PUSH, &port); /* default: all events */
  fd = t_connect(HOST, port);
  conn = t_nth_conn(&r, HPS_EV_ACCEPT, 0);
  t_conn_event(&r, conn, HPS_EV_HANDSHAKE);
  t_pat_fill(out, N, 20, 0);
  for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
    assert_int_equal(hps_send(ep, conn, out + off, sizes[i]), 0);
    off += sizes[i];
  }
  assert_int_equal(t_recv_exact(fd, in, off, T_WAIT_MS), off);
  assert_memory_equal(in, out, off);
  sl.t = sent;
  sl.conn = conn;
  sl.len = off;
  assert_int_equal(t_poll(sink_has, &sl, T_WAIT_MS), 0);
  assert_int_equal(t_conns_get(sent, conn, ev, N + 1), off);
  assert_memory_equal(ev, out, off);
  assert_true(t_rec_count(&r, HPS_EV_SEND) >= 1);
  /* switched off (live): no more SEND events, the bytes still go */
  assert_int_equal(hps_setopt(ep, HPS_OPT_EVENTS,
                              HPS_EVENTS_ALL & ~HPS_EVBIT(HPS_EV_SEND)),
                   0);
  assert_int_equal(hps_send(ep, conn, out + off, 5000), 0);
  assert_int_equal(t_recv_exact(fd, in, 5000, T_WAIT_MS), 5000);
  assert_memory_equal(in, out + off, 5000);
  close(fd);
  t_conn_event(&r, conn, HPS_EV_CLOSE);
  assert_int_equal(t_conns_get(sent, conn, NULL, 0), off);
  t_stop_free(ep);
  free(out);
  free(in);
  free(ev);
  t_conns_free(sent);
  t_rec_free(&r);
}

typedef struct stat_q {
  hps_endpoint *ep;
  hps_conn_id conn;
  uint64_t bytes;
} stat_q;

static int received_bytes(void *arg) {
  stat_q *q = arg;
  hps_stats s;
  return hps_get_stats(q->ep, q->conn, &s) == 0 &&
         s.bytes_received >= q->bytes;
}

static int one_listed(void *ep) {
  size_t count = 0;
  hps_conn_list(ep, NULL, 0, &count);
  return count == 1;
}

/* Edge-triggered reading stops after 2 MiB (HPS__READ_BUDGET) of one
 * socket, as libuv does, to let the loop's other connections in; the
 * kernel must then report that socket again, though no new byte arrives
 * to make a new edge. The server stalls 500 ms while 3 MiB pile up. */
static int hook_ping_then_stall(t_rec *r, const hps_event *ev) {
  if (ev->type != HPS_EV_RECEIVE) return HPS_HR_OK;
  if (ev->len == 4 && memcmp(ev->data, "ping", 4) == 0) {
    assert_int_equal(hps_send(ev->endpoint, ev->conn, "ping", 4), 0);
  } else if (r->user == NULL) {
    r->user = r; /* once */
    usleep(500 * 1000);
  }
  return HPS_HR_OK;
}

static void test_edge_read_stopped_by_its_budget_is_reported_again(
    void **state) {
  t_rec r;
  hps_endpoint *ep;
  uint16_t port;
  stat_q q;
  size_t bulk = 3u << 20;
  unsigned char *big;
  int fd, v = 4 << 20, got = 0;
  socklen_t vl = sizeof(got);
  const int64_t opts[] = {HPS_OPT_EVENTS,
                          HPS_EVBIT(HPS_EV_ACCEPT) |
                              HPS_EVBIT(HPS_EV_RECEIVE) |
                              HPS_EVBIT(HPS_EV_CLOSE),
                          HPS_OPT_RCVBUF, 4 << 20, 0};
  (void)state;
  /* The 3 MiB must fit in the server's receive buffer, or the window
   * opening as it reads brings new bytes (and edges) anyway. */
  fd = socket(AF_INET, SOCK_STREAM, 0);
  assert_true(fd >= 0);
  setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &v, sizeof(v));
  getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &got, &vl);
  close(fd);
  if (got < (int)(7u << 20)) {
    print_message("budget: SO_RCVBUF caps at %d bytes here "
                  "(net.core.rmem_max); needs 4 MiB: skipped\n", got);
    skip();
  }
  t_rec_init(&r);
  r.hook = hook_ping_then_stall;
  ep = t_server_opts(&r, 1, HPS_MODEL_PUSH, opts, &port);
  fd = t_connect(HOST, port);
  assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &v, sizeof(v)), 0);
  q.ep = ep;
  q.conn = t_nth_conn(&r, HPS_EV_ACCEPT, 0);
  arm_by_round_trips(fd);
  big = malloc(bulk);
  assert_non_null(big);
  memset(big, 'b', bulk);
  t_send_all(fd, big, 100); /* the server stalls in its handler */
  usleep(50 * 1000);
  t_send_all(fd, big, bulk); /* all of it into the server's buffer */
  q.bytes = 8 * 4 + 100 + bulk;
  if (t_poll(received_bytes, &q, T_WAIT_MS) != 0) {
    hps_stats st;
    assert_int_equal(hps_get_stats(ep, q.conn, &st), 0);
    fail_msg("%llu of %llu bytes received: the rest was never reported",
             (unsigned long long)st.bytes_received,
             (unsigned long long)q.bytes);
  }
  close(fd);
  free(big);
  t_stop_free(ep);
  t_rec_free(&r);
}

static void test_events_mask_suppresses_receive_but_never_close_or_shutdown(
    void **state) {
  t_rec r;
  hps_endpoint *ep;
  uint16_t port;
  hps_conn_id conn, ids[4];
  int64_t v = -1;
  size_t count;
  stat_q q;
  char buf[1000];
  int fd;
  const int64_t opts[] = {
      HPS_OPT_EVENTS, HPS_EVBIT(HPS_EV_ACCEPT) | HPS_EVBIT(HPS_EV_HANDSHAKE),
      0};
  (void)state;
  t_rec_init(&r);
  r.echo = 1; /* would answer, if a RECEIVE came */
  ep = t_server_opts(&r, 1, HPS_MODEL_PUSH, opts, &port);
  assert_int_equal(t_rec_count(&r, HPS_EV_PREPARE), 0); /* masked too */
  fd = t_connect(HOST, port);
  conn = t_nth_conn(&r, HPS_EV_ACCEPT, 0);
  memset(buf, 'm', sizeof(buf));
  t_send_all(fd, buf, sizeof(buf));
  q.ep = ep;
  q.conn = conn;
  q.bytes = sizeof(buf);
  assert_int_equal(t_poll(received_bytes, &q, T_WAIT_MS), 0);
  close(fd);
  t_expect_close(t_conn_event(&r, conn, HPS_EV_CLOSE), HPS_OP_RECEIVE, 0);
  assert_int_equal(t_rec_count(&r, HPS_EV_RECEIVE), 0);
  assert_int_equal(t_rec_count(&r, HPS_EV_SEND), 0);

  /* mask 0, live: only CLOSE (and SHUTDOWN) still come */
  assert_int_equal(hps_setopt(ep, HPS_OPT_EVENTS, 0), 0);
  assert_int_equal(hps_getopt(ep, HPS_OPT_EVENTS, &v), 0);
  assert_int_equal(v, 0);
  fd = t_connect(HOST, port);
  t_send_all(fd, buf, 10);
  {
    /* the connection is known by listing only */
    hps_conn_id c2 = 0;
    assert_int_equal(t_poll(one_listed, ep, T_WAIT_MS), 0);
    assert_int_equal(hps_conn_list(ep, ids, 4, &count), 1);
    c2 = ids[0];
    q.conn = c2;
    q.bytes = 10;
    assert_int_equal(t_poll(received_bytes, &q, T_WAIT_MS), 0);
    close(fd);
    t_expect_close(t_conn_event(&r, c2, HPS_EV_CLOSE), HPS_OP_RECEIVE, 0);
    assert_int_equal(t_rec_conn_count(&r, c2, HPS_EV_ACCEPT), 0);
    assert_int_equal(t_rec_conn_count(&r, c2, HPS_EV_HANDSHAKE), 0);
  }
  assert_int_equal(t_rec_count(&r, HPS_EV_RECEIVE), 0);

  /* back to all, live: RECEIVE comes again */
  assert_int_equal(hps_setopt(ep, HPS_OPT_EVENTS, HPS_EVENTS_ALL), 0);
  fd = t_connect(HOST, port);
  t_send_all(fd, "back", 4);
  assert_int_equal(t_recv_exact(fd, buf, 4, T_WAIT_MS), 4);
  assert_int_equal(t_rec_count(&r, HPS_EV_RECEIVE), 1);
  assert_int_equal(hps_setopt(ep, HPS_OPT_EVENTS, 0), 0);
  assert_int_equal(hps_stop(ep), 0); /* its CLOSE and SHUTDOWN still come */
  assert_int_equal(t_rec_count(&r, HPS_EV_CLOSE), 3);
  check_shutdown_last(&r);
  close(fd);
  assert_int_equal(hps_free(ep), 0);
  t_rec_free(&r);
}

/* ------------------------------------------------------------------ */
/* tests/fixtures/close/cases.txt                                      */
/* ------------------------------------------------------------------ */

typedef struct close_case {
  char name[64], op[32], error[64];
} close_case;

/* One server, one plain peer, a connection that completed its handshake.
 * The case then makes it close; *out gets the server's CLOSE. */
typedef struct case_env {
  t_rec r;
  hps_endpoint *ep;
  uint16_t port;
  int fd;
  hps_conn_id conn;
} case_env;

static void env_open(case_env *e, int model, const int64_t *opts,
                     t_hook hook) {
  t_rec_init(&e->r);
  e->r.hook = hook;
  e->ep = t_server_opts(&e->r, 1, model, opts, &e->port);
  e->fd = t_connect(HOST, e->port);
  e->conn = t_nth_conn(&e->r, HPS_EV_ACCEPT, 0);
  t_conn_event(&e->r, e->conn, HPS_EV_HANDSHAKE);
}

static t_ev env_close(case_env *e) {
  t_ev ev = t_conn_event(&e->r, e->conn, HPS_EV_CLOSE);
  if (e->fd >= 0) close(e->fd);
  t_stop_free(e->ep);
  t_rec_free(&e->r);
  return ev;
}

static t_ev case_peer_close(void) {
  case_env e;
  env_open(&e, HPS_MODEL_PUSH, NULL, NULL);
  close(e.fd);
  e.fd = -1;
  return env_close(&e);
}

static t_ev case_local_disconnect(void) {
  case_env e;
  env_open(&e, HPS_MODEL_PUSH, NULL, NULL);
  assert_int_equal(hps_disconnect(e.ep, e.conn, 0), 0);
  assert_int_equal(t_wait_eof(e.fd, T_WAIT_MS), 1);
  return env_close(&e);
}

static t_ev case_local_disconnect_force(void) {
  case_env e;
  env_open(&e, HPS_MODEL_PUSH, NULL, NULL);
  assert_int_equal(hps_disconnect(e.ep, e.conn, 1), 0);
  assert_int_equal(t_wait_eof(e.fd, T_WAIT_MS), 1);
  return env_close(&e);
}

static t_ev case_stop(void) {
  case_env e;
  t_ev ev;
  env_open(&e, HPS_MODEL_PUSH, NULL, NULL);
  assert_int_equal(hps_stop(e.ep), 0);
  assert_int_equal(t_rec_conn_count(&e.r, e.conn, HPS_EV_CLOSE), 1);
  ev = env_close(&e);
  return ev;
}

static t_ev case_peer_reset(void) {
  case_env e;
  env_open(&e, HPS_MODEL_PUSH, NULL, NULL);
  t_close_reset(e.fd);
  e.fd = -1;
  return env_close(&e);
}

static t_ev case_handler_error(void) {
  case_env e;
  env_open(&e, HPS_MODEL_PUSH, NULL, hook_error_on_x);
  t_send_all(e.fd, "X", 1);
  return env_close(&e);
}

static t_ev agent_close_to(uint16_t port, const int64_t *opts) {
  t_rec r;
  hps_endpoint *agent;
  hps_conn_id id = 0;
  t_ev ev;
  t_rec_init(&r);
  agent = t_agent_opts(&r, 1, HPS_MODEL_PUSH, opts);
  assert_int_equal(hps_connect(agent, HOST, port, &id), 0);
  ev = t_conn_event(&r, id, HPS_EV_CLOSE);
  t_stop_free(agent);
  t_rec_free(&r);
  return ev;
}

static t_ev case_connect_refused(void) {
  struct sockaddr_in a;
  socklen_t len = sizeof(a);
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  t_ev ev;
  memset(&a, 0, sizeof(a));
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
  assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
  ev = agent_close_to(ntohs(a.sin_port), NULL);
  close(fd);
  return ev;
}

static t_ev case_connect_timeout(void) {
  const int64_t opts[] = {HPS_OPT_CONNECT_TIMEOUT, 200, 0};
  uint16_t port;
  int fill[2], lfd = full_listener(&port, fill, 2);
  t_ev ev = agent_close_to(port, opts);
  close(fill[0]);
  close(fill[1]);
  close(lfd);
  return ev;
}

static int silent_100ms(void *arg) {
  stat_q *q = arg;
  hps_stats s;
  return hps_get_stats(q->ep, q->conn, &s) == 0 && s.silence_ms >= 100;
}

static t_ev case_disconnect_silent(void) {
  case_env e;
  stat_q q;
  env_open(&e, HPS_MODEL_PUSH, NULL, NULL);
  q.ep = e.ep;
  q.conn = e.conn;
  assert_int_equal(t_poll(silent_100ms, &q, T_WAIT_MS), 0);
  assert_int_equal(hps_disconnect_silent(e.ep, 100), 1);
  return env_close(&e);
}

static t_ev case_silence_timeout(void) {
  case_env e;
  const int64_t opts[] = {HPS_OPT_SILENCE_TIMEOUT, 200, 0};
  env_open(&e, HPS_MODEL_PUSH, opts, NULL);
  return env_close(&e);
}

static t_ev case_pull_full(void) {
  case_env e;
  char buf[1500];
  const int64_t opts[] = {HPS_OPT_PULL_MAX, 1000, 0};
  env_open(&e, HPS_MODEL_PULL, opts, NULL);
  memset(buf, 'f', sizeof(buf));
  t_send_all(e.fd, buf, sizeof(buf));
  return env_close(&e);
}

static t_ev pack_case(const int64_t *opts, const void *bytes,
                      size_t len) {
  case_env e;
  env_open(&e, HPS_MODEL_PACK, opts, NULL);
  t_send_all(e.fd, bytes, len);
  return env_close(&e);
}

static t_ev case_pack_bad_flag(void) {
  const int64_t opts[] = {HPS_OPT_PACK_FLAG, 1, 0};
  return pack_case(opts, "\x01\x00\x80\x00\x41", 5);
}

static t_ev case_pack_oversize(void) {
  const int64_t opts[] = {HPS_OPT_PACK_MAX, 16, 0};
  return pack_case(opts, "\x11\x00\x00\x00", 4);
}

static t_ev case_pack_empty(void) {
  return pack_case(NULL, "\x00\x00\x00\x00", 4);
}

static const struct {
  const char *name;
  t_ev (*run)(void);
} CLOSE_CASES[] = {
    {"peer_close", case_peer_close},
    {"local_disconnect", case_local_disconnect},
    {"local_disconnect_force", case_local_disconnect_force},
    {"stop", case_stop},
    {"peer_reset", case_peer_reset},
    {"handler_error", case_handler_error},
    {"connect_refused", case_connect_refused},
    {"connect_timeout", case_connect_timeout},
    {"disconnect_silent", case_disconnect_silent},
    {"silence_timeout", case_silence_timeout},
    {"pull_full", case_pull_full},
    {"pack_bad_flag", case_pack_bad_flag},
    {"pack_oversize", case_pack_oversize},
    {"pack_empty", case_pack_empty},
};

static const char *op_name(int op) {
  switch (op) {
  case HPS_OP_UNKNOWN: return "UNKNOWN";
  case HPS_OP_ACCEPT: return "ACCEPT";
  case HPS_OP_CONNECT: return "CONNECT";
  case HPS_OP_SEND: return "SEND";
  case HPS_OP_RECEIVE: return "RECEIVE";
  case HPS_OP_CLOSE: return "CLOSE";
  default: return "?";
  }
}

static void run_close_case(void **state) {
  const close_case *c = *state;
  size_t i;
  t_ev ev;
  const char *got_err;
  for (i = 0; i < sizeof(CLOSE_CASES) / sizeof(CLOSE_CASES[0]); i++)
    if (strcmp(CLOSE_CASES[i].name, c->name) == 0) break;
  if (i == sizeof(CLOSE_CASES) / sizeof(CLOSE_CASES[0]))
    fail_msg("close case '%s' has no procedure in the C suite", c->name);
  ev = CLOSE_CASES[i].run();
  got_err = ev.error == 0 ? "0" : hps_err_name(ev.error);
  if (strcmp(op_name(ev.op), c->op) != 0 || strcmp(got_err, c->error) != 0)
    fail_msg("%s: CLOSE op=%s error=%s, expected op=%s error=%s", c->name,
             op_name(ev.op), got_err, c->op, c->error);
}

static void fixture_missing(void **state) {
  fail_msg("%s", (const char *)*state);
}

/* Split text into lines in place; calls fn for each non-comment line. */
static void for_each_line(char *text, void (*fn)(char *line, void *arg),
                          void *arg) {
  char *save = NULL, *line;
  for (line = strtok_r(text, "\n", &save); line;
       line = strtok_r(NULL, "\n", &save)) {
    size_t n = strlen(line);
    while (n > 0 && (line[n - 1] == '\r' || line[n - 1] == ' ')) line[--n] = 0;
    while (*line == ' ' || *line == '\t') line++;
    if (*line == 0 || *line == '#') continue;
    fn(line, arg);
  }
}

typedef struct case_list {
  close_case *c;
  size_t n;
  int bad;
} case_list;

static void parse_close_line(char *line, void *arg) {
  case_list *l = arg;
  close_case *c;
  l->c = realloc(l->c, (l->n + 1) * sizeof(*l->c));
  c = &l->c[l->n];
  memset(c, 0, sizeof(*c));
  if (sscanf(line, "%63s op=%31s error=%63s", c->name, c->op, c->error) != 3)
    l->bad = 1;
  else
    l->n++;
}

/* ------------------------------------------------------------------ */
/* tests/fixtures/echo/scenarios.txt                                   */
/* ------------------------------------------------------------------ */

typedef struct scenario {
  char name[64];
  int conns, size, rounds, model;
} scenario;

typedef struct scen_list {
  scenario *s;
  size_t n;
  int bad;
} scen_list;

static void parse_scenario_line(char *line, void *arg) {
  scen_list *l = arg;
  scenario s;
  char *save = NULL, *tok;
  int fields = 0;
  memset(&s, 0, sizeof(s));
  s.model = -1;
  tok = strtok_r(line, " \t", &save);
  snprintf(s.name, sizeof(s.name), "%s", tok);
  while ((tok = strtok_r(NULL, " \t", &save)) != NULL) {
    char *eq = strchr(tok, '=');
    if (eq == NULL) {
      l->bad = 1;
      return;
    }
    *eq++ = 0;
    if (strcmp(tok, "conns") == 0) s.conns = atoi(eq);
    else if (strcmp(tok, "size") == 0) s.size = atoi(eq);
    else if (strcmp(tok, "rounds") == 0) s.rounds = atoi(eq);
    else if (strcmp(tok, "model") == 0)
      s.model = strcmp(eq, "push") == 0   ? HPS_MODEL_PUSH
                : strcmp(eq, "pull") == 0 ? HPS_MODEL_PULL
                : strcmp(eq, "pack") == 0 ? HPS_MODEL_PACK
                                          : -2;
    else {
      l->bad = 1;
      return;
    }
    fields++;
  }
  if (fields != 4 || s.conns < 1 || s.size < 1 || s.rounds < 1 ||
      s.model < 0) {
    l->bad = 1;
    return;
  }
  l->s = realloc(l->s, (l->n + 1) * sizeof(*l->s));
  l->s[l->n++] = s;
}

static unsigned char scen_byte(int c, int r, int j) {
  return (unsigned char)((7 * c + 13 * r + j) % 251);
}

typedef struct echo_conn {
  hps_conn_id id;
  int index, round;
  size_t got;
  unsigned char *msg, *buf;
} echo_conn;

typedef struct echo_run {
  const scenario *s;
  echo_conn *c;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int connected, done, closed, close_errors;
  char failure[256];
} echo_run;

static void echo_fail(echo_run *er, const char *what, const echo_conn *c) {
  pthread_mutex_lock(&er->mu);
  if (er->failure[0] == 0)
    snprintf(er->failure, sizeof(er->failure), "connection %d round %d: %s",
             c ? c->index : -1, c ? c->round : -1, what);
  pthread_cond_broadcast(&er->cv);
  pthread_mutex_unlock(&er->mu);
}

static void echo_fill(echo_run *er, echo_conn *c) {
  int j;
  for (j = 0; j < er->s->size; j++) c->msg[j] = scen_byte(c->index, c->round, j);
}

/* A whole echo of the current round arrived in c->buf (or data). */
static void echo_round_done(echo_run *er, echo_conn *c, hps_endpoint *ep,
                            const unsigned char *data) {
  if (memcmp(data, c->msg, (size_t)er->s->size) != 0) {
    echo_fail(er, "echoed bytes differ from the message", c);
    return;
  }
  c->got = 0;
  if (++c->round == er->s->rounds) {
    pthread_mutex_lock(&er->mu);
    er->done++;
    pthread_cond_broadcast(&er->cv);
    pthread_mutex_unlock(&er->mu);
    return;
  }
  echo_fill(er, c);
  if (hps_send(ep, c->id, c->msg, (size_t)er->s->size) != 0)
    echo_fail(er, "hps_send failed", c);
}

static int echo_client_fn(void *user, const hps_event *ev) {
  echo_run *er = user;
  echo_conn *c = NULL;
  size_t size = (size_t)er->s->size;
  int i;
  if (ev->type == HPS_EV_CONNECT) {
    pthread_mutex_lock(&er->mu);
    er->connected++;
    pthread_cond_broadcast(&er->cv);
    pthread_mutex_unlock(&er->mu);
    return HPS_HR_OK;
  }
  if (ev->type == HPS_EV_CLOSE) {
    pthread_mutex_lock(&er->mu);
    er->closed++;
    if (ev->error != 0) er->close_errors++;
    pthread_cond_broadcast(&er->cv);
    pthread_mutex_unlock(&er->mu);
    return HPS_HR_OK;
  }
  if (ev->type != HPS_EV_RECEIVE) return HPS_HR_OK;
  for (i = 0; i < er->s->conns; i++)
    if (er->c[i].id == ev->conn) c = &er->c[i];
  if (c == NULL) {
    echo_fail(er, "RECEIVE for an unknown connection", NULL);
    return HPS_HR_OK;
  }
  switch (er->s->model) {
  case HPS_MODEL_PACK:
    if (ev->len != size) {
      echo_fail(er, "frame of the wrong size", c);
      return HPS_HR_OK;
    }
    echo_round_done(er, c, ev->endpoint, ev->data);
    break;
  case HPS_MODEL_PULL:
    if (c->got + ev->len > size) {
      echo_fail(er, "more bytes waiting than were sent", c);
      return HPS_HR_OK;
    }
    if (hps_fetch(ev->endpoint, ev->conn, c->buf + c->got, ev->len) != 0) {
      echo_fail(er, "hps_fetch of the waiting bytes failed", c);
      return HPS_HR_OK;
    }
    c->got += ev->len;
    if (c->got == size) echo_round_done(er, c, ev->endpoint, c->buf);
    break;
  default:
    if (c->got + ev->len > size) {
      echo_fail(er, "more bytes than were sent", c);
      return HPS_HR_OK;
    }
    memcpy(c->buf + c->got, ev->data, ev->len);
    c->got += ev->len;
    if (c->got == size) echo_round_done(er, c, ev->endpoint, c->buf);
  }
  return HPS_HR_OK;
}

static int echo_wait(echo_run *er, int *field, int n, int timeout_ms) {
  uint64_t deadline = t_now_ms() + (uint64_t)timeout_ms;
  int ok;
  pthread_mutex_lock(&er->mu);
  for (;;) {
    struct timespec ts;
    uint64_t now = t_now_ms();
    ok = *field >= n || er->failure[0] != 0;
    if (ok || now >= deadline) break;
    t_deadline(&ts, 10);
    pthread_cond_timedwait(&er->cv, &er->mu, &ts);
  }
  ok = *field >= n;
  pthread_mutex_unlock(&er->mu);
  return ok ? 0 : -1;
}

static void run_echo_scenario(void **state) {
  const scenario *s = *state;
  echo_run er;
  t_rec rs;
  hps_endpoint *srv, *agent = NULL;
  uint16_t port;
  int i;
  memset(&er, 0, sizeof(er));
  er.s = s;
  pthread_mutex_init(&er.mu, NULL);
  pthread_cond_init(&er.cv, NULL);
  er.c = calloc((size_t)s->conns, sizeof(*er.c));
  t_rec_init(&rs);
  rs.echo = 1;
  rs.autofetch = 1; /* pull: fetch all waiting bytes, echo them */
  srv = t_server(&rs, 2, s->model, &port);
  assert_int_equal(hps_create(HPS_TCP_AGENT, echo_client_fn, &er, &agent), 0);
  assert_int_equal(hps_setopt(agent, HPS_OPT_WORKERS, 2), 0);
  assert_int_equal(hps_setopt(agent, HPS_OPT_RECV_MODEL, s->model), 0);
  assert_int_equal(hps_start(agent, NULL, 0), 0);
  for (i = 0; i < s->conns; i++) {
    er.c[i].index = i;
    er.c[i].msg = malloc((size_t)s->size);
    er.c[i].buf = malloc((size_t)s->size);
    assert_int_equal(hps_connect(agent, HOST, port, &er.c[i].id), 0);
  }
  assert_int_equal(echo_wait(&er, &er.connected, s->conns, T_WAIT_MS), 0);
  /* all IDs are known before the first byte moves; then each connection's
   * rounds run from its own events */
  for (i = 0; i < s->conns; i++) {
    echo_fill(&er, &er.c[i]);
    assert_int_equal(
        hps_send(agent, er.c[i].id, er.c[i].msg, (size_t)s->size), 0);
  }
  if (echo_wait(&er, &er.done, s->conns, 30000) != 0)
    fail_msg("%s: %d of %d connections finished; %s", s->name, er.done,
             s->conns, er.failure[0] ? er.failure : "timed out");
  for (i = 0; i < s->conns; i++)
    assert_int_equal(hps_disconnect(agent, er.c[i].id, 0), 0);
  assert_int_equal(echo_wait(&er, &er.closed, s->conns, T_WAIT_MS), 0);
  assert_int_equal(er.close_errors, 0);
  assert_int_equal(t_rec_wait(&rs, HPS_EV_CLOSE, s->conns, T_WAIT_MS), 0);
  for (i = 0; i < s->conns; i++) {
    t_ev e;
    assert_int_equal(t_rec_get(&rs, HPS_EV_CLOSE, i, &e), 0);
    assert_int_equal(e.error, 0);
  }
  t_stop_free(agent);
  t_stop_free(srv);
  assert_int_equal(er.closed, s->conns); /* exactly one each */
  assert_int_equal(t_rec_count(&rs, HPS_EV_CLOSE), s->conns);
  for (i = 0; i < s->conns; i++) {
    free(er.c[i].msg);
    free(er.c[i].buf);
  }
  free(er.c);
  pthread_mutex_destroy(&er.mu);
  pthread_cond_destroy(&er.cv);
  t_rec_free(&rs);
}

/* ------------------------------------------------------------------ */

static int run_fixture_groups(void) {
  char *text;
  case_list cl = {NULL, 0, 0};
  scen_list sl = {NULL, 0, 0};
  struct CMUnitTest *tests;
  size_t i;
  int failed = 0;
  static const char *missing_close =
      "tests/fixtures/close/cases.txt is missing, empty or malformed";
  static const char *missing_echo =
      "tests/fixtures/echo/scenarios.txt is missing, empty or malformed";
  FILE *f;
  char path[1024];

  snprintf(path, sizeof(path), "%s/close/cases.txt", HPS_FIXTURES_DIR);
  if ((f = fopen(path, "rb")) != NULL) {
    fclose(f);
    text = t_fixture("close/cases.txt", NULL);
    for_each_line(text, parse_close_line, &cl);
    free(text);
  }
  if (cl.n == 0 || cl.bad) {
    struct CMUnitTest t = {"close_cases_fixture", fixture_missing, NULL, NULL,
                           (void *)missing_close};
    failed += _cmocka_run_group_tests("close_cases", &t, 1, NULL, NULL);
  } else {
    tests = calloc(cl.n, sizeof(*tests));
    for (i = 0; i < cl.n; i++) {
      tests[i].name = cl.c[i].name;
      tests[i].test_func = run_close_case;
      tests[i].initial_state = &cl.c[i];
    }
    failed += _cmocka_run_group_tests("close_cases", tests, cl.n, NULL, NULL);
    free(tests);
  }

  snprintf(path, sizeof(path), "%s/echo/scenarios.txt", HPS_FIXTURES_DIR);
  if ((f = fopen(path, "rb")) != NULL) {
    fclose(f);
    text = t_fixture("echo/scenarios.txt", NULL);
    for_each_line(text, parse_scenario_line, &sl);
    free(text);
  }
  if (sl.n == 0 || sl.bad) {
    struct CMUnitTest t = {"echo_scenarios_fixture", fixture_missing, NULL,
                           NULL, (void *)missing_echo};
    failed += _cmocka_run_group_tests("echo_scenarios", &t, 1, NULL, NULL);
  } else {
    tests = calloc(sl.n, sizeof(*tests));
    for (i = 0; i < sl.n; i++) {
      tests[i].name = sl.s[i].name;
      tests[i].test_func = run_echo_scenario;
      tests[i].initial_state = &sl.s[i];
    }
    failed +=
        _cmocka_run_group_tests("echo_scenarios", tests, sl.n, NULL, NULL);
    free(tests);
  }
  free(cl.c);
  free(sl.s);
  return failed;
}

int main(void) {
  const char *filter = getenv("HPS_TEST_FILTER"); /* e.g. "*reset*" */
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_push_echo_with_plain_socket_peer),
      cmocka_unit_test(test_push_echo_with_agent_peer),
      cmocka_unit_test(test_push_echo_with_client_peer),
      cmocka_unit_test(test_client_id_zero_means_the_clients_connection),
      cmocka_unit_test(test_addresses_agree_with_plain_socket),
      cmocka_unit_test(test_addresses_agree_with_agent_socket),
      cmocka_unit_test(
          test_socket_options_reach_accepted_and_connected_sockets),
      cmocka_unit_test(test_extra_set_in_accept_comes_back_in_every_event),
      cmocka_unit_test(test_conn_count_and_list_track_open_connections),
      cmocka_unit_test(test_graceful_disconnect_sends_queued_bytes_then_fin),
      cmocka_unit_test(
          test_graceful_disconnect_from_handler_sends_queued_bytes_first),
      cmocka_unit_test(test_send_from_handler_after_own_disconnect_fails),
      cmocka_unit_test(test_forced_disconnect_closes_at_once_and_drops_unsent),
      cmocka_unit_test(test_peer_reset_mid_transfer_closes_with_error),
      cmocka_unit_test(
          test_long_lived_connection_sees_fin_or_reset_that_comes_with_data),
      cmocka_unit_test(
          test_handler_error_from_receive_closes_only_that_connection),
      cmocka_unit_test(test_agent_connect_refused_closes_with_econnrefused),
      cmocka_unit_test(test_agent_connect_timeout_closes_with_etimedout),
      cmocka_unit_test(test_sends_of_the_received_bytes_keep_content_and_order),
      cmocka_unit_test(test_agent_with_fifty_connections_to_one_server),
      cmocka_unit_test(test_events_of_one_connection_never_overlap),
      cmocka_unit_test(test_sends_from_many_threads_never_interleave),
      cmocka_unit_test(test_send_events_carry_the_sent_bytes),
      cmocka_unit_test(
          test_events_mask_suppresses_receive_but_never_close_or_shutdown),
      cmocka_unit_test(test_edge_read_stopped_by_its_budget_is_reported_again),
  };
  int failed;
  if (filter) cmocka_set_test_filter(filter);
  failed = cmocka_run_group_tests_name("echo", tests, NULL, NULL);
  return failed + run_fixture_groups();
}
