/* test_udp.c - the UDP roles: server (a connection per peer address),
 * client, cast (multicast and broadcast) and node; their options (max
 * datagram, detection, cast mode, TTL, loop, interface, reuse, buffers,
 * workers, max connections) and bad input (oversize datagrams both ways,
 * unresolvable addresses, port unreachable). Everything runs on loopback;
 * multicast uses the loopback interface explicitly and, where the host
 * namespace does not allow it, a network namespace the test makes. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

/* cmocka needs these first; keep the order */
// clang-format off
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
// clang-format on

#include "hps_test.h"
#include "hpsock.h"

/* ---- a recorder that keeps every event's datagram and address ---- */

typedef struct u_ev {
  int type, op, error;
  hps_conn_id conn;
  size_t len;
  int has_data;
  unsigned char *data;
  char addr[64];
  int port;
  pthread_t thread;
} u_ev;

typedef struct u_rec u_rec;
typedef int (*u_hook)(u_rec *r, const hps_event *ev);

struct u_rec {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  u_ev *evs;
  size_t n, cap;
  int echo; /* send each datagram back (server/client: hps_send;
               node: hps_send_to the sender) */
  u_hook hook;
  int accept_refusals; /* ACCEPT returns ERROR this many times */
  int64_t prepare_fd;
};

static void u_init(u_rec *r) {
  memset(r, 0, sizeof(*r));
  pthread_mutex_init(&r->mu, NULL);
  pthread_cond_init(&r->cv, NULL);
  r->prepare_fd = -1;
}

static void u_free(u_rec *r) {
  size_t i;
  for (i = 0; i < r->n; i++)
    free(r->evs[i].data);
  free(r->evs);
  pthread_mutex_destroy(&r->mu);
  pthread_cond_destroy(&r->cv);
}

static int u_handler(void *user, const hps_event *ev) {
  u_rec *r = user;
  u_ev e;
  int rc = HPS_HR_OK, refuse = 0;
  memset(&e, 0, sizeof(e));
  e.type = ev->type;
  e.op = ev->op;
  e.error = ev->error;
  e.conn = ev->conn;
  e.len = ev->len;
  e.thread = pthread_self();
  if (ev->data != NULL) {
    e.has_data = 1;
    e.data = malloc(ev->len + 1);
    memcpy(e.data, ev->data, ev->len);
  }
  if (ev->addr)
    snprintf(e.addr, sizeof(e.addr), "%s", ev->addr);
  e.port = ev->port;
  pthread_mutex_lock(&r->mu);
  if (ev->type == HPS_EV_PREPARE)
    r->prepare_fd = ev->fd;
  if (ev->type == HPS_EV_ACCEPT && r->accept_refusals > 0) {
    r->accept_refusals--;
    refuse = 1;
  }
  if (r->n == r->cap) {
    r->cap = r->cap ? r->cap * 2 : 64;
    r->evs = realloc(r->evs, r->cap * sizeof(*r->evs));
  }
  r->evs[r->n++] = e;
  pthread_cond_broadcast(&r->cv);
  pthread_mutex_unlock(&r->mu);
  if (refuse)
    return HPS_HR_ERROR;
  if (ev->type == HPS_EV_RECEIVE && r->echo && ev->data != NULL) {
    int role = hps_role(ev->endpoint);
    if (role == HPS_UDP_NODE)
      hps_send_to(ev->endpoint, ev->addr, (uint16_t)ev->port, ev->data,
                  ev->len);
    else
      hps_send(ev->endpoint, ev->conn, ev->data, ev->len);
  }
  if (r->hook)
    rc = r->hook(r, ev);
  return rc;
}

static int u_count(u_rec *r, int type) {
  size_t i;
  int n = 0;
  pthread_mutex_lock(&r->mu);
  for (i = 0; i < r->n; i++)
    n += r->evs[i].type == type;
  pthread_mutex_unlock(&r->mu);
  return n;
}

static int u_count_conn(u_rec *r, hps_conn_id c, int type) {
  size_t i;
  int n = 0;
  pthread_mutex_lock(&r->mu);
  for (i = 0; i < r->n; i++)
    n += r->evs[i].type == type && r->evs[i].conn == c;
  pthread_mutex_unlock(&r->mu);
  return n;
}

/* Wait for at least n events of type; 0 or -1. */
static int u_wait(u_rec *r, int type, int n, int ms) {
  uint64_t end = t_now_ms() + (uint64_t)ms;
  for (;;) {
    if (u_count(r, type) >= n)
      return 0;
    if (t_now_ms() >= end)
      return -1;
    usleep(1000);
  }
}

/* Copy of the i-th event of type (0-based); data not copied. */
static u_ev u_get(u_rec *r, int type, int i) {
  size_t k;
  u_ev out;
  memset(&out, 0, sizeof(out));
  out.type = -1;
  pthread_mutex_lock(&r->mu);
  for (k = 0; k < r->n; k++)
    if (r->evs[k].type == type && i-- == 0) {
      out = r->evs[k];
      out.data = NULL;
      break;
    }
  pthread_mutex_unlock(&r->mu);
  return out;
}

/* The i-th RECEIVE's datagram equals (buf, len)? */
static int u_recv_is(u_rec *r, int i, const void *buf, size_t len) {
  size_t k;
  int ok = 0;
  pthread_mutex_lock(&r->mu);
  for (k = 0; k < r->n; k++)
    if (r->evs[k].type == HPS_EV_RECEIVE && r->evs[k].has_data && i-- == 0) {
      ok = r->evs[k].len == len && memcmp(r->evs[k].data, buf, len) == 0;
      break;
    }
  pthread_mutex_unlock(&r->mu);
  return ok;
}

static hps_endpoint *u_make(u_rec *r, int role, const int64_t *opts) {
  hps_endpoint *ep = NULL;
  assert_int_equal(hps_create(role, u_handler, r, &ep), 0);
  for (; opts && opts[0] != 0; opts += 2)
    assert_int_equal(hps_setopt(ep, (int)opts[0], opts[1]), 0);
  return ep;
}

/* u_make, then started on host:port (port 0: a free one, see bound_port). */
static hps_endpoint *u_started(u_rec *r, int role, const int64_t *opts,
                               const char *host, uint16_t port) {
  hps_endpoint *ep = u_make(r, role, opts);
  assert_int_equal(hps_start(ep, host, port), 0);
  return ep;
}

static uint16_t bound_port(hps_endpoint *ep) {
  uint16_t port = 0;
  assert_int_equal(hps_listen_address(ep, NULL, 0, &port), 0);
  assert_true(port != 0);
  return port;
}

/* rs: an echoing UDP server (one worker) started on host, port 0; rc: a
 * UDP client started to it. */
static void echo_pair(u_rec *rs, hps_endpoint **srv, u_rec *rc,
                      hps_endpoint **cli, const char *host) {
  static const int64_t sopts[] = {HPS_OPT_WORKERS, 1, 0};
  u_init(rs);
  u_init(rc);
  rs->echo = 1;
  *srv = u_started(rs, HPS_UDP_SERVER, sopts, host, 0);
  *cli = u_started(rc, HPS_UDP_CLIENT, NULL, host, bound_port(*srv));
}

/* ---- plain UDP sockets for the other side ---- */

/* ss = numeric host (IPv6 if it has a ':') and port; returns its size. */
static socklen_t ss_fill(struct sockaddr_storage *ss, const char *host,
                         uint16_t port) {
  memset(ss, 0, sizeof(*ss));
  if (strchr(host, ':')) {
    struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
    a->sin6_family = AF_INET6;
    a->sin6_port = htons(port);
    assert_int_equal(inet_pton(AF_INET6, host, &a->sin6_addr), 1);
    return sizeof(*a);
  } else {
    struct sockaddr_in *a = (struct sockaddr_in *)ss;
    a->sin_family = AF_INET;
    a->sin_port = htons(port);
    assert_int_equal(inet_pton(AF_INET, host, &a->sin_addr), 1);
    return sizeof(*a);
  }
}

static uint16_t ss_port(const struct sockaddr_storage *ss) {
  return ntohs(ss->ss_family == AF_INET6
                   ? ((const struct sockaddr_in6 *)ss)->sin6_port
                   : ((const struct sockaddr_in *)ss)->sin_port);
}

static int raw_udp(const char *host, uint16_t *port) {
  struct sockaddr_storage ss;
  socklen_t len = ss_fill(&ss, host, 0);
  int fd;
  fd = socket(ss.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  assert_true(fd >= 0);
  assert_int_equal(bind(fd, (struct sockaddr *)&ss, len), 0);
  len = sizeof(ss);
  assert_int_equal(getsockname(fd, (struct sockaddr *)&ss, &len), 0);
  if (port)
    *port = ss_port(&ss);
  return fd;
}

static void raw_sendto(int fd, const char *host, uint16_t port, const void *buf,
                       size_t len) {
  struct sockaddr_storage ss;
  socklen_t sl = ss_fill(&ss, host, port);
  assert_int_equal(sendto(fd, buf, len, 0, (struct sockaddr *)&ss, sl),
                   (ssize_t)len);
}

/* Receive one datagram within ms; with skip_empty, empty ones (hpsock
 * heartbeats) are skipped. Returns its length or -1 on timeout; *from_port
 * (may be NULL) gets the sender's port. */
static ssize_t raw_recv(int fd, void *buf, size_t cap, int ms, int skip_empty,
                        uint16_t *from_port) {
  uint64_t end = t_now_ms() + (uint64_t)ms;
  for (;;) {
    struct pollfd p = {fd, POLLIN, 0};
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    uint64_t now = t_now_ms();
    ssize_t n;
    if (now >= end)
      return -1;
    if (poll(&p, 1, (int)(end - now)) <= 0)
      continue;
    n = recvfrom(fd, buf, cap, MSG_DONTWAIT, (struct sockaddr *)&ss, &sl);
    if (n < 0)
      continue;
    if (n == 0 && skip_empty)
      continue;
    if (from_port)
      *from_port = ss_port(&ss);
    return n;
  }
}

/* A port nobody listens on (bound, read, closed). */
static uint16_t dead_port(void) {
  uint16_t port;
  int fd = raw_udp("127.0.0.1", &port);
  close(fd);
  return port;
}

/* ---- server ---- */

static void test_server_echo_per_peer_connections(void **state) {
  static const int64_t opts[] = {HPS_OPT_WORKERS, 2, 0};
  u_rec r;
  hps_endpoint *ep;
  uint16_t port, pport[3];
  int fd[3], i;
  char buf[2048], host[64];
  hps_conn_id ids[3];
  (void)state;
  u_init(&r);
  r.echo = 1;
  ep = u_started(&r, HPS_UDP_SERVER, opts, "127.0.0.1", 0);
  port = bound_port(ep);
  assert_true(r.prepare_fd >= 0);
  for (i = 0; i < 3; i++)
    fd[i] = raw_udp("127.0.0.1", &pport[i]);
  /* Boundaries survive: three datagrams of different sizes per peer. */
  for (i = 0; i < 3; i++) {
    size_t sizes[3] = {1, 700, 1432}, k;
    for (k = 0; k < 3; k++) {
      memset(buf, 'a' + i, sizes[k]);
      raw_sendto(fd[i], "127.0.0.1", port, buf, sizes[k]);
      assert_int_equal(raw_recv(fd[i], buf, sizeof(buf), T_WAIT_MS, 1, NULL),
                       (ssize_t)sizes[k]);
      assert_int_equal(buf[0], 'a' + i);
    }
  }
  assert_int_equal(u_wait(&r, HPS_EV_ACCEPT, 3, T_WAIT_MS), 0);
  assert_int_equal(u_count(&r, HPS_EV_ACCEPT), 3);
  assert_int_equal(u_count(&r, HPS_EV_HANDSHAKE), 3);
  assert_int_equal(hps_conn_count(ep), 3);
  for (i = 0; i < 3; i++) {
    u_ev a = u_get(&r, HPS_EV_ACCEPT, i);
    int j;
    uint16_t rp = 0;
    ids[i] = a.conn;
    assert_string_equal(a.addr, "127.0.0.1");
    for (j = 0; j < 3 && pport[j] != a.port; j++) {
    }
    assert_true(j < 3); /* the event names a real peer */
    assert_int_equal(u_count_conn(&r, a.conn, HPS_EV_RECEIVE), 3);
    assert_int_equal(hps_remote_address(ep, a.conn, host, sizeof(host), &rp),
                     0);
    assert_string_equal(host, "127.0.0.1");
    assert_int_equal(rp, a.port);
    assert_int_equal(hps_local_address(ep, a.conn, host, sizeof(host), &rp), 0);
    assert_int_equal(rp, port);
  }
  assert_true(ids[0] != ids[1] && ids[1] != ids[2] && ids[0] != ids[2]);
  {
    u_ev e = u_get(&r, HPS_EV_RECEIVE, 0);
    assert_string_equal(e.addr, "127.0.0.1");
    assert_true(e.port != 0);
  }
  assert_int_equal(hps_stop(ep), 0);
  assert_int_equal(u_count(&r, HPS_EV_CLOSE), 3);
  for (i = 0; i < 3; i++) {
    u_ev c = u_get(&r, HPS_EV_CLOSE, i);
    assert_int_equal(c.op, HPS_OP_CLOSE);
    assert_int_equal(c.error, 0);
  }
  assert_int_equal(u_count(&r, HPS_EV_SHUTDOWN), 1);
  assert_int_equal(hps_free(ep), 0);
  for (i = 0; i < 3; i++)
    close(fd[i]);
  u_free(&r);
}

static void
test_server_peer_stays_on_one_connection_across_workers(void **state) {
  static const int64_t opts[] = {HPS_OPT_WORKERS, 4, 0};
  enum { PEERS = 12, EACH = 5 };
  u_rec r;
  hps_endpoint *ep;
  uint16_t port;
  int fd[PEERS], i, k;
  char buf[64];
  size_t e;
  (void)state;
  u_init(&r);
  r.echo = 1;
  ep = u_started(&r, HPS_UDP_SERVER, opts, "127.0.0.1", 0);
  port = bound_port(ep);
  for (i = 0; i < PEERS; i++)
    fd[i] = raw_udp("127.0.0.1", NULL);
  for (k = 0; k < EACH; k++)
    for (i = 0; i < PEERS; i++) {
      snprintf(buf, sizeof(buf), "p%d-%d", i, k);
      raw_sendto(fd[i], "127.0.0.1", port, buf, strlen(buf));
      assert_true(raw_recv(fd[i], buf, sizeof(buf), T_WAIT_MS, 1, NULL) > 0);
    }
  assert_int_equal(u_count(&r, HPS_EV_ACCEPT), PEERS);
  assert_int_equal(u_count(&r, HPS_EV_RECEIVE), PEERS * EACH);
  /* Every connection got all its peer's datagrams, on one thread. */
  pthread_mutex_lock(&r.mu);
  for (e = 0; e < r.n; e++) {
    size_t f;
    if (r.evs[e].type != HPS_EV_ACCEPT)
      continue;
    int n = 0;
    for (f = 0; f < r.n; f++)
      if (r.evs[f].conn == r.evs[e].conn && r.evs[f].type == HPS_EV_RECEIVE) {
        n++;
        assert_true(pthread_equal(r.evs[f].thread, r.evs[e].thread));
        assert_int_equal(r.evs[f].port, r.evs[e].port);
      }
    assert_int_equal(n, EACH);
  }
  pthread_mutex_unlock(&r.mu);
  t_stop_free(ep);
  for (i = 0; i < PEERS; i++)
    close(fd[i]);
  u_free(&r);
}

static void test_server_disconnect_then_peer_gets_a_new_id(void **state) {
  static const int64_t opts[] = {HPS_OPT_WORKERS, 1, 0};
  u_rec r;
  hps_endpoint *ep;
  uint16_t port;
  int fd;
  char buf[16];
  u_ev a, c, b;
  (void)state;
  u_init(&r);
  ep = u_started(&r, HPS_UDP_SERVER, opts, "127.0.0.1", 0);
  port = bound_port(ep);
  fd = raw_udp("127.0.0.1", NULL);
  raw_sendto(fd, "127.0.0.1", port, "one", 3);
  assert_int_equal(u_wait(&r, HPS_EV_RECEIVE, 1, T_WAIT_MS), 0);
  a = u_get(&r, HPS_EV_ACCEPT, 0);
  assert_int_equal(hps_send(ep, a.conn, "hey", 3), 0);
  assert_int_equal(raw_recv(fd, buf, sizeof(buf), T_WAIT_MS, 1, NULL), 3);
  assert_int_equal(hps_disconnect(ep, a.conn, 0), 0);
  assert_int_equal(hps_send(ep, a.conn, "x", 1), HPS_ENOTFOUND);
  assert_int_equal(u_wait(&r, HPS_EV_CLOSE, 1, T_WAIT_MS), 0);
  c = u_get(&r, HPS_EV_CLOSE, 0);
  assert_true(c.conn == a.conn);
  assert_int_equal(c.op, HPS_OP_CLOSE);
  assert_int_equal(c.error, 0);
  assert_string_equal(c.addr, "127.0.0.1");
  assert_int_equal(hps_disconnect(ep, a.conn, 1), HPS_ENOTFOUND);
  raw_sendto(fd, "127.0.0.1", port, "two", 3);
  assert_int_equal(u_wait(&r, HPS_EV_ACCEPT, 2, T_WAIT_MS), 0);
  b = u_get(&r, HPS_EV_ACCEPT, 1);
  assert_true(b.conn != a.conn);
  assert_int_equal(b.port, a.port);
  assert_int_equal(u_wait(&r, HPS_EV_RECEIVE, 2, T_WAIT_MS), 0);
  assert_true(u_recv_is(&r, 1, "two", 3));
  t_stop_free(ep);
  close(fd);
  u_free(&r);
}

static void test_server_accept_error_refuses_then_asks_again(void **state) {
  static const int64_t opts[] = {HPS_OPT_WORKERS, 1, 0};
  u_rec r;
  hps_endpoint *ep;
  uint16_t port;
  int fd;
  (void)state;
  u_init(&r);
  r.accept_refusals = 1;
  ep = u_started(&r, HPS_UDP_SERVER, opts, "127.0.0.1", 0);
  port = bound_port(ep);
  fd = raw_udp("127.0.0.1", NULL);
  raw_sendto(fd, "127.0.0.1", port, "refused", 7);
  assert_int_equal(u_wait(&r, HPS_EV_ACCEPT, 1, T_WAIT_MS), 0);
  raw_sendto(fd, "127.0.0.1", port, "taken", 5);
  assert_int_equal(u_wait(&r, HPS_EV_RECEIVE, 1, T_WAIT_MS), 0);
  assert_true(u_recv_is(&r, 0, "taken", 5)); /* the refused one dropped */
  assert_int_equal(u_count(&r, HPS_EV_ACCEPT), 2);
  assert_int_equal(hps_conn_count(ep), 1);
  assert_int_equal(hps_stop(ep), 0);
  /* Only the accepted connection has a CLOSE. */
  assert_int_equal(u_count(&r, HPS_EV_CLOSE), 1);
  assert_true(u_get(&r, HPS_EV_CLOSE, 0).conn ==
              u_get(&r, HPS_EV_ACCEPT, 1).conn);
  assert_int_equal(hps_free(ep), 0);
  close(fd);
  u_free(&r);
}

static void test_server_max_connections_drops_new_peers(void **state) {
  static const int64_t opts[] = {HPS_OPT_WORKERS, 1, HPS_OPT_MAX_CONNECTIONS, 2,
                                 0};
  u_rec r;
  hps_endpoint *ep;
  uint16_t port;
  int fd[3], i;
  char buf[16];
  (void)state;
  u_init(&r);
  r.echo = 1;
  ep = u_started(&r, HPS_UDP_SERVER, opts, "127.0.0.1", 0);
  port = bound_port(ep);
  uint64_t refused = 0;
  for (i = 0; i < 3; i++) {
    fd[i] = raw_udp("127.0.0.1", NULL);
    raw_sendto(fd[i], "127.0.0.1", port, "hi", 2);
    if (i < 2) { /* two datagrams each: confirmed, never evicted */
      assert_int_equal(raw_recv(fd[i], buf, sizeof(buf), T_WAIT_MS, 1, NULL),
                       2);
      raw_sendto(fd[i], "127.0.0.1", port, "hi", 2);
      assert_int_equal(raw_recv(fd[i], buf, sizeof(buf), T_WAIT_MS, 1, NULL),
                       2);
    }
  }
  /* The third peer is over the limit: no ACCEPT, no echo. */
  assert_int_equal(raw_recv(fd[2], buf, sizeof(buf), 300, 1, NULL), -1);
  assert_int_equal(u_count(&r, HPS_EV_ACCEPT), 2);
  assert_int_equal(hps_conn_count(ep), 2);
  assert_int_equal(hps_get_counter(ep, HPS_CNT_UDP_PEERS_REFUSED, &refused), 0);
  assert_int_equal(refused, 1);
  /* A slot frees up: the peer gets in. */
  assert_int_equal(hps_disconnect(ep, u_get(&r, HPS_EV_ACCEPT, 0).conn, 1), 0);
  assert_int_equal(u_wait(&r, HPS_EV_CLOSE, 1, T_WAIT_MS), 0);
  assert_int_equal(t_wait_conn_count(ep, 1, T_WAIT_MS), 0);
  raw_sendto(fd[2], "127.0.0.1", port, "in", 2);
  assert_int_equal(raw_recv(fd[2], buf, sizeof(buf), T_WAIT_MS, 1, NULL), 2);
  t_stop_free(ep);
  for (i = 0; i < 3; i++)
    close(fd[i]);
  u_free(&r);
}

static void test_server_two_on_one_port_is_eaddrinuse(void **state) {
  static const int64_t opts[] = {HPS_OPT_WORKERS, 2, 0};
  u_rec r, r2;
  hps_endpoint *ep, *ep2;
  uint16_t port;
  (void)state;
  u_init(&r);
  u_init(&r2);
  ep = u_make(&r, HPS_UDP_SERVER, opts);
  ep2 = u_make(&r2, HPS_UDP_SERVER, opts);
  assert_int_equal(hps_start(ep, "127.0.0.1", 0), 0);
  port = bound_port(ep);
  assert_int_equal(hps_start(ep2, "127.0.0.1", port), -EADDRINUSE);
  assert_int_equal(hps_state(ep2), HPS_STATE_CREATED);
  assert_int_equal(u_count(&r2, HPS_EV_SHUTDOWN), 0);
  t_stop_free(ep);
  assert_int_equal(hps_free(ep2), 0);
  u_free(&r);
  u_free(&r2);
}

/* ---- oversize ---- */

static void test_oversize_datagram_closes_server_connection(void **state) {
  static const int64_t opts[] = {HPS_OPT_WORKERS, 1, HPS_OPT_UDP_MAX_DATAGRAM,
                                 100, 0};
  u_rec r;
  hps_endpoint *ep;
  uint16_t port;
  int fd;
  char buf[4096];
  u_ev c;
  hps_conn_id id;
  (void)state;
  u_init(&r);
  ep = u_started(&r, HPS_UDP_SERVER, opts, "127.0.0.1", 0);
  port = bound_port(ep);
  fd = raw_udp("127.0.0.1", NULL);
  memset(buf, 'x', sizeof(buf));
  raw_sendto(fd, "127.0.0.1", port, buf, 100); /* exactly the max: fine */
  assert_int_equal(u_wait(&r, HPS_EV_RECEIVE, 1, T_WAIT_MS), 0);
  assert_int_equal(u_get(&r, HPS_EV_RECEIVE, 0).len, 100);
  id = u_get(&r, HPS_EV_ACCEPT, 0).conn;
  /* Sends over the max are refused, nothing goes out. */
  assert_int_equal(hps_send(ep, id, buf, 101), HPS_EDGRAMSIZE);
  assert_int_equal(hps_send(ep, id, buf, 100), 0);
  assert_int_equal(raw_recv(fd, buf, sizeof(buf), T_WAIT_MS, 1, NULL), 100);
  raw_sendto(fd, "127.0.0.1", port, buf, 101);
  assert_int_equal(u_wait(&r, HPS_EV_CLOSE, 1, T_WAIT_MS), 0);
  c = u_get(&r, HPS_EV_CLOSE, 0);
  assert_true(c.conn == id);
  assert_int_equal(c.op, HPS_OP_RECEIVE);
  assert_int_equal(c.error, HPS_EDGRAMSIZE);
  assert_int_equal(u_count(&r, HPS_EV_RECEIVE), 1); /* never delivered cut */
  /* A big one from a new peer: accepted, then closed the same way. */
  raw_sendto(fd, "127.0.0.1", port, buf, 4000);
  assert_int_equal(u_wait(&r, HPS_EV_CLOSE, 2, T_WAIT_MS), 0);
  assert_int_equal(u_get(&r, HPS_EV_CLOSE, 1).error, HPS_EDGRAMSIZE);
  assert_int_equal(u_count(&r, HPS_EV_RECEIVE), 1);
  t_stop_free(ep);
  close(fd);
  u_free(&r);
}

static void test_oversize_datagram_closes_client(void **state) {
  static const int64_t opts[] = {HPS_OPT_UDP_MAX_DATAGRAM, 64, 0};
  u_rec r;
  hps_endpoint *ep;
  uint16_t sport, cport = 0; /* set by raw_recv; gcc -O3 cannot tell */
  int fd;
  char buf[512];
  u_ev c;
  (void)state;
  u_init(&r);
  fd = raw_udp("127.0.0.1", &sport);
  ep = u_started(&r, HPS_UDP_CLIENT, opts, "127.0.0.1", sport);
  assert_int_equal(u_wait(&r, HPS_EV_HANDSHAKE, 1, T_WAIT_MS), 0);
  assert_int_equal(hps_send(ep, 0, buf, 65), HPS_EDGRAMSIZE);
  assert_int_equal(hps_send(ep, 0, "hello", 5), 0);
  assert_int_equal(raw_recv(fd, buf, sizeof(buf), T_WAIT_MS, 1, &cport), 5);
  memset(buf, 'z', sizeof(buf));
  raw_sendto(fd, "127.0.0.1", cport, buf, 64);
  assert_int_equal(u_wait(&r, HPS_EV_RECEIVE, 1, T_WAIT_MS), 0);
  raw_sendto(fd, "127.0.0.1", cport, buf, 512);
  assert_int_equal(u_wait(&r, HPS_EV_CLOSE, 1, T_WAIT_MS), 0);
  c = u_get(&r, HPS_EV_CLOSE, 0);
  assert_int_equal(c.op, HPS_OP_RECEIVE);
  assert_int_equal(c.error, HPS_EDGRAMSIZE);
  assert_int_equal(u_count(&r, HPS_EV_RECEIVE), 1);
  assert_int_equal(hps_send(ep, 0, "x", 1), HPS_ENOTFOUND);
  t_stop_free(ep);
  close(fd);
  u_free(&r);
}

static void test_oversize_datagram_is_reported_to_node(void **state) {
  static const int64_t opts[] = {HPS_OPT_UDP_MAX_DATAGRAM, 32, 0};
  u_rec r;
  hps_endpoint *ep;
  uint16_t port, pport;
  int fd;
  char buf[256];
  u_ev e;
  (void)state;
  u_init(&r);
  ep = u_started(&r, HPS_UDP_NODE, opts, "127.0.0.1", 0);
  port = bound_port(ep);
  fd = raw_udp("127.0.0.1", &pport);
  memset(buf, 'q', sizeof(buf));
  raw_sendto(fd, "127.0.0.1", port, buf, 33);
  raw_sendto(fd, "127.0.0.1", port, buf, 32);
  assert_int_equal(u_wait(&r, HPS_EV_RECEIVE, 2, T_WAIT_MS), 0);
  e = u_get(&r, HPS_EV_RECEIVE, 0);
  assert_int_equal(e.error, HPS_EDGRAMSIZE);
  assert_int_equal(e.op, HPS_OP_RECEIVE);
  assert_false(e.has_data);
  assert_int_equal(e.len, 0);
  assert_string_equal(e.addr, "127.0.0.1");
  assert_int_equal(e.port, pport);
  e = u_get(&r, HPS_EV_RECEIVE, 1); /* the node goes on */
  assert_int_equal(e.error, 0);
  assert_int_equal(e.len, 32);
  assert_int_equal(u_count(&r, HPS_EV_CLOSE), 0);
  assert_int_equal(hps_send_to(ep, "127.0.0.1", pport, buf, 33),
                   HPS_EDGRAMSIZE);
  t_stop_free(ep);
  close(fd);
  u_free(&r);
}

/* ---- client ---- */

static void test_client_server_echo(void **state) {
  static const int64_t sopts[] = {HPS_OPT_WORKERS, 2, 0};
  u_rec rs, rc;
  hps_endpoint *srv, *cli;
  uint16_t port, lport = 0;
  hps_buf v[3] = {{"ab", 2}, {NULL, 0}, {"cde", 3}};
  char host[64];
  u_ev e;
  int i;
  (void)state;
  u_init(&rs);
  u_init(&rc);
  rs.echo = 1;
  srv = u_started(&rs, HPS_UDP_SERVER, sopts, "127.0.0.1", 0);
  port = bound_port(srv);
  cli = u_started(&rc, HPS_UDP_CLIENT, NULL, "127.0.0.1", port);
  assert_true(rc.prepare_fd >= 0);
  /* It may send at once: the socket is connected before start returns. */
  assert_int_equal(hps_send(cli, 0, "ping", 4), 0);
  assert_int_equal(u_wait(&rc, HPS_EV_RECEIVE, 1, T_WAIT_MS), 0);
  assert_true(u_recv_is(&rc, 0, "ping", 4));
  assert_int_equal(u_count(&rc, HPS_EV_CONNECT), 1);
  assert_int_equal(u_count(&rc, HPS_EV_HANDSHAKE), 1);
  /* CONNECT came first, then HANDSHAKE, then the RECEIVE. */
  assert_int_equal(rc.evs[0].type, HPS_EV_PREPARE);
  assert_int_equal(rc.evs[1].type, HPS_EV_CONNECT);
  assert_int_equal(rc.evs[2].type, HPS_EV_HANDSHAKE);
  e = u_get(&rc, HPS_EV_RECEIVE, 0);
  assert_string_equal(e.addr, "127.0.0.1");
  assert_int_equal(e.port, port);
  assert_true(e.conn == u_get(&rc, HPS_EV_CONNECT, 0).conn);
  /* A gathered send is one datagram. */
  assert_int_equal(hps_sendv(cli, 0, v, 3), 0);
  assert_int_equal(u_wait(&rc, HPS_EV_RECEIVE, 2, T_WAIT_MS), 0);
  assert_true(u_recv_is(&rc, 1, "abcde", 5));
  for (i = 0; i < 20; i++) {
    char m[16];
    snprintf(m, sizeof(m), "m%02d", i);
    assert_int_equal(hps_send(cli, e.conn, m, strlen(m)), 0);
  }
  assert_int_equal(u_wait(&rc, HPS_EV_RECEIVE, 22, T_WAIT_MS), 0);
  assert_int_equal(hps_remote_address(cli, 0, host, sizeof(host), &lport), 0);
  assert_string_equal(host, "127.0.0.1");
  assert_int_equal(lport, port);
  assert_int_equal(hps_local_address(cli, 0, host, sizeof(host), &lport), 0);
  assert_int_equal(u_get(&rs, HPS_EV_ACCEPT, 0).port, lport);
  assert_int_equal(hps_listen_address(cli, NULL, 0, NULL), HPS_EROLE);
  {
    hps_stats st;
    assert_int_equal(hps_get_stats(cli, 0, &st), 0);
    assert_int_equal(st.msgs_sent, 22);
    assert_int_equal(st.msgs_received, 22);
    assert_int_equal(st.bytes_sent, 4 + 5 + 20 * 3);
    assert_int_equal(hps_get_stats(srv, u_get(&rs, HPS_EV_ACCEPT, 0).conn, &st),
                     0);
    assert_int_equal(st.msgs_received, 22);
    assert_int_equal(hps_get_stats(srv, 0, &st), 0);
    assert_int_equal(st.msgs_sent, 22);
  }
  assert_int_equal(hps_disconnect(cli, 0, 0), 0);
  assert_int_equal(u_wait(&rc, HPS_EV_CLOSE, 1, T_WAIT_MS), 0);
  assert_int_equal(u_get(&rc, HPS_EV_CLOSE, 0).op, HPS_OP_CLOSE);
  assert_int_equal(hps_send(cli, 0, "x", 1), HPS_ENOTFOUND);
  t_stop_free(cli);
  t_stop_free(srv);
  assert_int_equal(u_count(&rc, HPS_EV_CLOSE), 1);
  u_free(&rs);
  u_free(&rc);
}

static void test_client_ipv6_echo(void **state) {
  u_rec rs, rc;
  hps_endpoint *srv, *cli;
  (void)state;
  echo_pair(&rs, &srv, &rc, &cli, "::1");
  assert_int_equal(hps_send(cli, 0, "six", 3), 0);
  assert_int_equal(u_wait(&rc, HPS_EV_RECEIVE, 1, T_WAIT_MS), 0);
  assert_string_equal(u_get(&rc, HPS_EV_RECEIVE, 0).addr, "::1");
  assert_string_equal(u_get(&rs, HPS_EV_ACCEPT, 0).addr, "::1");
  t_stop_free(cli);
  t_stop_free(srv);
  u_free(&rs);
  u_free(&rc);
}

static void
test_client_port_unreachable_closes_with_econnrefused(void **state) {
  u_rec r;
  hps_endpoint *ep;
  u_ev c;
  int i;
  (void)state;
  u_init(&r);
  ep = u_started(&r, HPS_UDP_CLIENT, NULL, "127.0.0.1", dead_port());
  /* The ICMP answer to the first datagram fails a later read or send. */
  for (i = 0; i < 50 && u_count(&r, HPS_EV_CLOSE) == 0; i++) {
    int rc = hps_send(ep, 0, "anyone?", 7);
    assert_true(rc == 0 || rc == -ECONNREFUSED || rc == HPS_ENOTFOUND);
    usleep(20000);
  }
  assert_int_equal(u_wait(&r, HPS_EV_CLOSE, 1, T_WAIT_MS), 0);
  c = u_get(&r, HPS_EV_CLOSE, 0);
  assert_int_equal(c.error, -ECONNREFUSED);
  assert_true(c.op == HPS_OP_RECEIVE || c.op == HPS_OP_SEND);
  assert_string_equal(hps_err_name(c.error), "ECONNREFUSED");
  assert_int_equal(hps_send(ep, 0, "x", 1), HPS_ENOTFOUND);
  t_stop_free(ep);
  assert_int_equal(u_count(&r, HPS_EV_CLOSE), 1);
  u_free(&r);
}

static void test_client_bad_addresses_fail_start(void **state) {
  u_rec r;
  hps_endpoint *ep;
  (void)state;
  u_init(&r);
  ep = u_make(&r, HPS_UDP_CLIENT, NULL);
  assert_int_equal(hps_start(ep, NULL, 9), HPS_EADDR);
  assert_int_equal(hps_start(ep, "", 9), HPS_EADDR);
  assert_int_equal(hps_start(ep, "127.0.0.1", 0), HPS_EADDR);
  assert_int_equal(hps_start(ep, "no-such-host.invalid", 9), HPS_EADDR);
  assert_int_equal(hps_state(ep), HPS_STATE_CREATED);
  assert_int_equal(r.n, 0); /* no event at all */
  assert_int_equal(hps_free(ep), 0);
  u_free(&r);
}

/* ---- detection ---- */

static void test_detect_closes_a_silent_server_peer(void **state) {
  static const int64_t opts[] = {HPS_OPT_WORKERS,
                                 1,
                                 HPS_OPT_UDP_DETECT_INTERVAL,
                                 100,
                                 HPS_OPT_UDP_DETECT_ATTEMPTS,
                                 2,
                                 0};
  u_rec r;
  hps_endpoint *ep;
  uint16_t port;
  int fd;
  uint64_t t0, dt;
  u_ev c;
  (void)state;
  u_init(&r);
  ep = u_started(&r, HPS_UDP_SERVER, opts, "127.0.0.1", 0);
  port = bound_port(ep);
  fd = raw_udp("127.0.0.1", NULL);
  t0 = t_now_ms();
  raw_sendto(fd, "127.0.0.1", port, "once", 4);
  assert_int_equal(u_wait(&r, HPS_EV_CLOSE, 1, T_WAIT_MS), 0);
  dt = t_now_ms() - t0;
  c = u_get(&r, HPS_EV_CLOSE, 0);
  assert_int_equal(c.op, HPS_OP_RECEIVE);
  assert_int_equal(c.error, HPS_EUDPIDLE);
  assert_true(dt >= 190); /* interval x attempts = 200 ms, not earlier */
  assert_true(dt < 3000);
  assert_string_equal(hps_err_name(HPS_EUDPIDLE), "HPS_EUDPIDLE");
  t_stop_free(ep);
  close(fd);
  u_free(&r);
}

static void test_detect_heartbeats_keep_client_and_server_alive(void **state) {
  /* 400 ms of silence would close; heartbeats every 100 ms keep both ends
   * alive with room for a slow (sanitized, loaded) machine. */
  static const int64_t opts[] = {HPS_OPT_WORKERS,
                                 1,
                                 HPS_OPT_UDP_DETECT_INTERVAL,
                                 100,
                                 HPS_OPT_UDP_DETECT_ATTEMPTS,
                                 4,
                                 0};
  u_rec rs, rc;
  hps_endpoint *srv, *cli;
  uint16_t port;
  u_ev c;
  (void)state;
  u_init(&rs);
  u_init(&rc);
  srv = u_started(&rs, HPS_UDP_SERVER, opts, "127.0.0.1", 0);
  port = bound_port(srv);
  cli = u_started(&rc, HPS_UDP_CLIENT, opts, "127.0.0.1", port);
  assert_int_equal(hps_send(cli, 0, "hi", 2), 0);
  assert_int_equal(u_wait(&rs, HPS_EV_RECEIVE, 1, T_WAIT_MS), 0);
  /* Several times the silence limit with no traffic but heartbeats. */
  assert_int_equal(u_wait(&rs, HPS_EV_CLOSE, 1, 1500), -1);
  assert_int_equal(u_count(&rc, HPS_EV_CLOSE), 0);
  assert_int_equal(u_count(&rs, HPS_EV_RECEIVE), 1); /* not delivered */
  assert_int_equal(u_count(&rc, HPS_EV_RECEIVE), 0);
  /* The client goes away: the server's side times out. */
  t_stop_free(cli);
  assert_int_equal(u_wait(&rs, HPS_EV_CLOSE, 1, T_WAIT_MS), 0);
  c = u_get(&rs, HPS_EV_CLOSE, 0);
  assert_int_equal(c.error, HPS_EUDPIDLE);
  t_stop_free(srv);
  u_free(&rs);
  u_free(&rc);
}

/* A paused client does not read its socket, so the server's heartbeat
 * answers go unseen: that silence must not close it, and its own
 * heartbeats keep the server's side alive too. */
static void test_detect_spares_a_paused_client(void **state) {
  static const int64_t opts[] = {HPS_OPT_WORKERS,
                                 1,
                                 HPS_OPT_UDP_DETECT_INTERVAL,
                                 100,
                                 HPS_OPT_UDP_DETECT_ATTEMPTS,
                                 4,
                                 0};
  u_rec rs, rc;
  hps_endpoint *srv, *cli;
  uint16_t port;
  (void)state;
  u_init(&rs);
  u_init(&rc);
  rs.echo = 1;
  srv = u_started(&rs, HPS_UDP_SERVER, opts, "127.0.0.1", 0);
  port = bound_port(srv);
  cli = u_started(&rc, HPS_UDP_CLIENT, opts, "127.0.0.1", port);
  assert_int_equal(hps_send(cli, 0, "hi", 2), 0);
  assert_int_equal(u_wait(&rc, HPS_EV_RECEIVE, 1, T_WAIT_MS), 0);
  assert_int_equal(hps_pause_receive(cli, 0, 1), 0);
  /* several times the 400 ms silence limit */
  assert_int_equal(u_wait(&rc, HPS_EV_CLOSE, 1, 1500), -1);
  assert_int_equal(u_count(&rs, HPS_EV_CLOSE), 0);
  /* resumed: traffic flows again, nothing was closed */
  assert_int_equal(hps_pause_receive(cli, 0, 0), 0);
  assert_int_equal(hps_send(cli, 0, "again", 5), 0);
  assert_int_equal(u_wait(&rc, HPS_EV_RECEIVE, 2, T_WAIT_MS), 0);
  assert_int_equal(u_count(&rc, HPS_EV_CLOSE), 0);
  assert_int_equal(u_count(&rs, HPS_EV_CLOSE), 0);
  t_stop_free(cli);
  t_stop_free(srv);
  u_free(&rs);
  u_free(&rc);
}

static void test_detect_closes_client_whose_peer_is_silent(void **state) {
  static const int64_t opts[] = {HPS_OPT_UDP_DETECT_INTERVAL, 60,
                                 HPS_OPT_UDP_DETECT_ATTEMPTS, 2, 0};
  u_rec r;
  hps_endpoint *ep;
  uint16_t sport;
  int fd;
  char buf[16];
  (void)state;
  u_init(&r);
  fd = raw_udp("127.0.0.1", &sport);
  ep = u_started(&r, HPS_UDP_CLIENT, opts, "127.0.0.1", sport);
  /* The silent peer sees heartbeats: empty datagrams. */
  assert_int_equal(raw_recv(fd, buf, sizeof(buf), T_WAIT_MS, 0, NULL), 0);
  assert_int_equal(u_wait(&r, HPS_EV_CLOSE, 1, T_WAIT_MS), 0);
  assert_int_equal(u_get(&r, HPS_EV_CLOSE, 0).error, HPS_EUDPIDLE);
  assert_int_equal(u_get(&r, HPS_EV_CLOSE, 0).op, HPS_OP_RECEIVE);
  t_stop_free(ep);
  close(fd);
  u_free(&r);
}

static void test_detect_off_keeps_silent_peers(void **state) {
  static const int64_t opts[] = {HPS_OPT_WORKERS, 1,
                                 HPS_OPT_UDP_DETECT_INTERVAL, 0, 0};
  u_rec r;
  hps_endpoint *ep;
  uint16_t port;
  int fd;
  int64_t v;
  (void)state;
  u_init(&r);
  ep = u_make(&r, HPS_UDP_SERVER, NULL);
  assert_int_equal(hps_getopt(ep, HPS_OPT_UDP_DETECT_INTERVAL, &v), 0);
  assert_int_equal(v, 60000);
  assert_int_equal(hps_getopt(ep, HPS_OPT_UDP_DETECT_ATTEMPTS, &v), 0);
  assert_int_equal(v, 3);
  assert_int_equal(hps_free(ep), 0);
  ep = u_started(&r, HPS_UDP_SERVER, opts, "127.0.0.1", 0);
  port = bound_port(ep);
  fd = raw_udp("127.0.0.1", NULL);
  raw_sendto(fd, "127.0.0.1", port, "x", 1);
  assert_int_equal(u_wait(&r, HPS_EV_RECEIVE, 1, T_WAIT_MS), 0);
  assert_int_equal(u_wait(&r, HPS_EV_CLOSE, 1, 400), -1);
  /* hps_disconnect_silent works on UDP connections too. */
  assert_int_equal(hps_disconnect_silent(ep, 1), 1);
  assert_int_equal(u_wait(&r, HPS_EV_CLOSE, 1, T_WAIT_MS), 0);
  assert_int_equal(u_get(&r, HPS_EV_CLOSE, 0).error, HPS_ESILENCE);
  t_stop_free(ep);
  close(fd);
  u_free(&r);
}

/* ---- node ---- */

static void test_node_send_to_and_sender_address(void **state) {
  static const int64_t opts[] = {HPS_OPT_RCVBUF, 1 << 18, HPS_OPT_SNDBUF,
                                 1 << 18, 0};
  u_rec ra, rb;
  hps_endpoint *a, *b;
  uint16_t pa, pb;
  u_ev e;
  int v = 0;
  socklen_t vl = sizeof(v);
  (void)state;
  u_init(&ra);
  u_init(&rb);
  rb.echo = 1; /* b answers each sender with hps_send_to from its loop */
  a = u_make(&ra, HPS_UDP_NODE, opts);
  b = u_make(&rb, HPS_UDP_NODE, NULL);
  assert_int_equal(hps_start(a, "127.0.0.1", 0), 0);
  assert_int_equal(hps_start(b, NULL, 0), 0); /* all IPv4 addresses */
  pa = bound_port(a);
  pb = bound_port(b);
  assert_int_equal(
      getsockopt((int)ra.prepare_fd, SOL_SOCKET, SO_RCVBUF, &v, &vl), 0);
  assert_true(v >= 1 << 18);
  assert_int_equal(
      getsockopt((int)ra.prepare_fd, SOL_SOCKET, SO_SNDBUF, &v, &vl), 0);
  assert_true(v >= 1 << 18);
  assert_int_equal(u_wait(&ra, HPS_EV_HANDSHAKE, 1, T_WAIT_MS), 0);
  assert_int_equal(hps_send_to(a, "127.0.0.1", pb, "to b", 4), 0);
  assert_int_equal(hps_send_to(a, "localhost", pb, "by name", 7), 0);
  assert_int_equal(u_wait(&ra, HPS_EV_RECEIVE, 2, T_WAIT_MS), 0);
  e = u_get(&rb, HPS_EV_RECEIVE, 0);
  assert_string_equal(e.addr, "127.0.0.1");
  assert_int_equal(e.port, pa);
  e = u_get(&ra, HPS_EV_RECEIVE, 0);
  assert_int_equal(e.port, pb);
  assert_true(u_recv_is(&ra, 0, "to b", 4));
  assert_true(u_recv_is(&ra, 1, "by name", 7));
  /* What a node refuses. */
  assert_int_equal(hps_send(a, 0, "x", 1), HPS_EROLE);
  assert_int_equal(hps_send_to(a, "no-such-host.invalid", pb, "x", 1),
                   HPS_EADDR);
  assert_int_equal(hps_send_to(a, "127.0.0.1", 0, "x", 1), HPS_EADDR);
  assert_int_equal(hps_send_to(a, NULL, pb, "x", 1), HPS_EADDR);
  assert_int_equal(hps_send_to(a, "::1", pb, "x", 1), HPS_EADDR);
  assert_int_equal(hps_send_to(a, "127.0.0.1", pb, NULL, 1), HPS_EINVAL);
  assert_int_equal(hps_send_to(a, "127.0.0.1", pb, "x", 0), HPS_EINVAL);
  /* The payload's errors come first, whatever the address (as hps_send
   * checks the size before the connection). */
  {
    static char big[1433]; /* one over the default max datagram */
    assert_int_equal(hps_send_to(a, "127.0.0.1", pb, big, sizeof(big)),
                     HPS_EDGRAMSIZE);
    assert_int_equal(hps_send_to(a, NULL, 0, big, sizeof(big)), HPS_EDGRAMSIZE);
    assert_int_equal(
        hps_send_to(a, "no-such-host.invalid", pb, big, sizeof(big)),
        HPS_EDGRAMSIZE);
    assert_int_equal(hps_send_to(a, "::1", pb, big, sizeof(big)),
                     HPS_EDGRAMSIZE);
    assert_int_equal(hps_send_to(a, NULL, 0, "x", 0), HPS_EINVAL);
    assert_int_equal(hps_send_to(a, "no-such-host.invalid", 0, NULL, 1),
                     HPS_EINVAL);
  }
  assert_int_equal(hps_send_file(a, 0, "/etc/hostname", 0, -1), HPS_EROLE);
  /* A closed port: an unconnected socket hears no ICMP; nothing breaks. */
  assert_int_equal(hps_send_to(a, "127.0.0.1", dead_port(), "void", 4), 0);
  assert_int_equal(hps_send_to(a, "127.0.0.1", pb, "after", 5), 0);
  assert_int_equal(u_wait(&ra, HPS_EV_RECEIVE, 3, T_WAIT_MS), 0);
  assert_int_equal(u_count(&ra, HPS_EV_CLOSE), 0);
  t_stop_free(a);
  t_stop_free(b);
  assert_int_equal(u_count(&ra, HPS_EV_CLOSE), 1);
  assert_int_equal(u_get(&ra, HPS_EV_CLOSE, 0).op, HPS_OP_CLOSE);
  u_free(&ra);
  u_free(&rb);
}

static void test_node_dual_stack_and_send_events(void **state) {
  u_rec ra, rb;
  hps_endpoint *a, *b;
  uint16_t pb;
  u_ev e;
  int fd;
  char buf[16];
  uint16_t pf;
  (void)state;
  u_init(&ra);
  u_init(&rb);
  a = u_make(&ra, HPS_UDP_NODE, NULL);
  b = u_make(&rb, HPS_UDP_NODE, NULL);
  assert_int_equal(hps_start(a, "::", 0), 0);
  assert_int_equal(hps_start(b, "::1", 0), 0);
  pb = bound_port(b);
  assert_int_equal(hps_send_to(a, "::1", pb, "v6", 2), 0);
  assert_int_equal(u_wait(&rb, HPS_EV_RECEIVE, 1, T_WAIT_MS), 0);
  assert_string_equal(u_get(&rb, HPS_EV_RECEIVE, 0).addr, "::1");
  /* SEND events name the destination. */
  assert_int_equal(u_wait(&ra, HPS_EV_SEND, 1, T_WAIT_MS), 0);
  e = u_get(&ra, HPS_EV_SEND, 0);
  assert_string_equal(e.addr, "::1");
  assert_int_equal(e.port, pb);
  assert_int_equal(e.len, 2);
  assert_int_equal(e.error, 0);
  /* An IPv4 destination from a dual-stack socket. */
  fd = raw_udp("127.0.0.1", &pf);
  assert_int_equal(hps_send_to(a, "127.0.0.1", pf, "v4", 2), 0);
  assert_int_equal(raw_recv(fd, buf, sizeof(buf), T_WAIT_MS, 1, NULL), 2);
  assert_int_equal(u_wait(&ra, HPS_EV_SEND, 2, T_WAIT_MS), 0);
  assert_string_equal(u_get(&ra, HPS_EV_SEND, 1).addr, "::ffff:127.0.0.1");
  t_stop_free(a);
  t_stop_free(b);
  close(fd);
  u_free(&ra);
  u_free(&rb);
}

/* A send that fails on the loop comes back as a SEND with an error: here a
 * broadcast without HPS_CAST_BROADCAST (EACCES). */
static void test_node_failed_datagram_is_a_send_event_with_error(void **state) {
  u_rec r;
  hps_endpoint *ep;
  u_ev e;
  (void)state;
  u_init(&r);
  ep = u_started(&r, HPS_UDP_NODE, NULL, "127.0.0.1", 0);
  assert_int_equal(hps_send_to(ep, "127.255.255.255", 9, "b", 1), 0);
  assert_int_equal(u_wait(&r, HPS_EV_SEND, 1, T_WAIT_MS), 0);
  e = u_get(&r, HPS_EV_SEND, 0);
  assert_int_equal(e.error, -EACCES);
  assert_int_equal(e.op, HPS_OP_SEND);
  assert_string_equal(e.addr, "127.255.255.255");
  assert_int_equal(e.port, 9);
  assert_int_equal(u_count(&r, HPS_EV_CLOSE), 0);
  t_stop_free(ep);
  u_free(&r);
}

/* ---- cast ---- */

/* Multicast needs the loopback interface to carry it. It does on a stock
 * kernel when the interface is named explicitly; where it does not, the
 * test moves this thread into a network namespace of its own (we may be
 * root) and tries there. */
static int g_netns_orig = -1;

static int enter_netns(void) {
  g_netns_orig = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
  if (g_netns_orig < 0)
    return -1;
  if (unshare(CLONE_NEWNET) != 0) {
    close(g_netns_orig);
    g_netns_orig = -1;
    return -1;
  }
  if (system("ip link set lo up && ip link set lo multicast on") != 0) {
    setns(g_netns_orig, CLONE_NEWNET);
    close(g_netns_orig);
    g_netns_orig = -1;
    return -1;
  }
  return 0;
}

static void leave_netns(void) {
  if (g_netns_orig < 0)
    return;
  assert_int_equal(setns(g_netns_orig, CLONE_NEWNET), 0);
  close(g_netns_orig);
  g_netns_orig = -1;
}

#define GROUP "239.255.77.1"

/* Two casts on one group port; 0 when a's datagram reached b. */
static int multicast_pair(u_rec *ra, u_rec *rb, hps_endpoint **pa,
                          hps_endpoint **pb) {
  hps_endpoint *a = u_make(ra, HPS_UDP_CAST, NULL);
  hps_endpoint *b = u_make(rb, HPS_UDP_CAST, NULL);
  uint16_t port;
  assert_int_equal(hps_cast_interface(a, "127.0.0.1"), 0);
  assert_int_equal(hps_cast_interface(b, "127.0.0.1"), 0);
  *pa = a;
  *pb = b;
  if (hps_start(a, GROUP, 0) != 0)
    return -1;
  port = bound_port(a);
  if (hps_start(b, GROUP, port) != 0)
    return -1; /* reuse: shares it */
  if (hps_send(a, 0, "probe", 5) != 0)
    return -1;
  return u_wait(rb, HPS_EV_RECEIVE, 1, 1000);
}

static void test_cast_multicast_group(void **state) {
  u_rec ra, rb;
  hps_endpoint *a, *b;
  uint16_t port, pa;
  u_ev e;
  int in_ns = 0, ttl = 0;
  socklen_t tl = sizeof(ttl);
  (void)state;
  u_init(&ra);
  u_init(&rb);
  /* HPS_TEST_UDP_NETNS=1 goes straight to the namespace (to test it). */
  if (getenv("HPS_TEST_UDP_NETNS") != NULL ||
      multicast_pair(&ra, &rb, &a, &b) != 0) {
    if (getenv("HPS_TEST_UDP_NETNS") == NULL) {
      hps_free(a);
      hps_free(b);
      u_free(&ra);
      u_free(&rb);
      u_init(&ra);
      u_init(&rb);
    }
    if (enter_netns() != 0) {
      print_message("[  SKIP    ] multicast: loopback refuses it and no "
                    "network namespace can be made here (needs "
                    "CAP_SYS_ADMIN)\n");
      skip();
    }
    in_ns = 1;
    assert_int_equal(multicast_pair(&ra, &rb, &a, &b), 0);
  }
  port = bound_port(a);
  pa = port;
  e = u_get(&rb, HPS_EV_RECEIVE, 0);
  assert_string_equal(e.addr, "127.0.0.1");
  assert_int_equal(e.port, pa); /* a's socket is bound to the group port */
  assert_true(u_recv_is(&rb, 0, "probe", 5));
  /* Loop is on by default: a hears itself too. */
  assert_int_equal(u_wait(&ra, HPS_EV_RECEIVE, 1, T_WAIT_MS), 0);
  assert_int_equal(
      getsockopt((int)ra.prepare_fd, IPPROTO_IP, IP_MULTICAST_TTL, &ttl, &tl),
      0);
  assert_int_equal(ttl, 1);
  /* Connection-like: CONNECT and HANDSHAKE, ID 0 works, addresses. */
  assert_int_equal(u_count(&ra, HPS_EV_CONNECT), 1);
  {
    char host[64];
    uint16_t p;
    assert_int_equal(hps_remote_address(a, 0, host, sizeof(host), &p), 0);
    assert_string_equal(host, GROUP);
    assert_int_equal(p, port);
  }
  /* b leaves: it hears nothing more; joins again: it does. */
  assert_int_equal(hps_leave_group(b, GROUP, "127.0.0.1"), 0);
  assert_int_equal(hps_leave_group(b, GROUP, "127.0.0.1"), -EADDRNOTAVAIL);
  assert_int_equal(hps_send(a, 0, "gone", 4), 0);
  assert_int_equal(u_wait(&ra, HPS_EV_RECEIVE, 2, T_WAIT_MS), 0);
  assert_int_equal(u_wait(&rb, HPS_EV_RECEIVE, 2, 300), -1);
  assert_int_equal(hps_join_group(b, GROUP, "127.0.0.1"), 0);
  assert_int_equal(hps_join_group(b, GROUP, "127.0.0.1"), -EADDRINUSE);
  assert_int_equal(hps_send_to(a, GROUP, port, "back", 4), 0);
  assert_int_equal(u_wait(&rb, HPS_EV_RECEIVE, 2, T_WAIT_MS), 0);
  assert_true(u_recv_is(&rb, 1, "back", 4));
  /* Bad groups and interfaces. */
  assert_int_equal(hps_join_group(b, "127.0.0.1", NULL), HPS_EADDR);
  assert_int_equal(hps_join_group(b, "nonsense", NULL), HPS_EADDR);
  assert_int_equal(hps_join_group(b, "239.1.1.1", "eth-name"), HPS_EADDR);
  assert_int_equal(hps_join_group(b, NULL, NULL), HPS_EINVAL);
  assert_int_equal(hps_cast_interface(b, "127.0.0.1"), HPS_ESTATE);
  t_stop_free(a);
  t_stop_free(b);
  /* TTL and loop reach the socket. (On the loopback interface every
   * datagram comes back whatever IP_MULTICAST_LOOP says, so the option is
   * read back rather than observed.) */
  {
    static const int64_t noloop[] = {HPS_OPT_UDP_MULTICAST_LOOP, 0,
                                     HPS_OPT_UDP_MULTICAST_TTL, 3, 0};
    u_rec rc, rd;
    hps_endpoint *c, *d;
    int loop = -1;
    socklen_t ll = sizeof(loop);
    u_init(&rc);
    u_init(&rd);
    c = u_make(&rc, HPS_UDP_CAST, noloop);
    d = u_make(&rd, HPS_UDP_CAST, NULL);
    assert_int_equal(hps_cast_interface(c, "127.0.0.1"), 0);
    assert_int_equal(hps_cast_interface(d, "127.0.0.1"), 0);
    assert_int_equal(hps_start(d, GROUP, 0), 0);
    assert_int_equal(hps_start(c, GROUP, bound_port(d)), 0);
    assert_int_equal(
        getsockopt((int)rc.prepare_fd, IPPROTO_IP, IP_MULTICAST_TTL, &ttl, &tl),
        0);
    assert_int_equal(ttl, 3);
    assert_int_equal(getsockopt((int)rc.prepare_fd, IPPROTO_IP,
                                IP_MULTICAST_LOOP, &loop, &ll),
                     0);
    assert_int_equal(loop, 0);
    assert_int_equal(getsockopt((int)rd.prepare_fd, IPPROTO_IP,
                                IP_MULTICAST_LOOP, &loop, &ll),
                     0);
    assert_int_equal(loop, 1);
    assert_int_equal(hps_send(c, 0, "to d", 4), 0);
    assert_int_equal(u_wait(&rd, HPS_EV_RECEIVE, 1, T_WAIT_MS), 0);
    assert_true(u_recv_is(&rd, 0, "to d", 4));
    t_stop_free(c);
    t_stop_free(d);
    u_free(&rc);
    u_free(&rd);
  }
  if (in_ns) {
    leave_netns();
    print_message("[  INFO    ] multicast ran in a network namespace of "
                  "its own\n");
  }
  u_free(&ra);
  u_free(&rb);
}

static void test_cast_broadcast(void **state) {
  static const int64_t opts[] = {HPS_OPT_UDP_CAST_MODE, HPS_CAST_BROADCAST, 0};
  u_rec ra, rb;
  hps_endpoint *a, *b;
  uint16_t port;
  (void)state;
  u_init(&ra);
  u_init(&rb);
  a = u_make(&ra, HPS_UDP_CAST, opts);
  b = u_make(&rb, HPS_UDP_CAST, opts);
  assert_int_equal(hps_start(a, "127.255.255.255", 0), 0);
  port = bound_port(a);
  assert_int_equal(hps_start(b, "127.255.255.255", port), 0);
  assert_int_equal(hps_send(a, 0, "all", 3), 0);
  assert_int_equal(u_wait(&rb, HPS_EV_RECEIVE, 1, T_WAIT_MS), 0);
  assert_int_equal(u_wait(&ra, HPS_EV_RECEIVE, 1, T_WAIT_MS), 0);
  assert_true(u_recv_is(&rb, 0, "all", 3));
  assert_int_equal(u_get(&rb, HPS_EV_RECEIVE, 0).port, port);
  t_stop_free(a);
  t_stop_free(b);
  u_free(&ra);
  u_free(&rb);
}

static void test_cast_reuse_off_refuses_a_shared_port(void **state) {
  static const int64_t noreuse[] = {HPS_OPT_REUSE_ADDR, 0, 0};
  u_rec ra, rb;
  hps_endpoint *a, *b;
  (void)state;
  u_init(&ra);
  u_init(&rb);
  a = u_make(&ra, HPS_UDP_CAST, noreuse);
  b = u_make(&rb, HPS_UDP_CAST, noreuse);
  assert_int_equal(hps_start(a, GROUP, 0), 0);
  assert_int_equal(hps_start(b, GROUP, bound_port(a)), -EADDRINUSE);
  /* In multicast mode the host must be a group. */
  assert_int_equal(hps_start(b, "127.0.0.1", 0), HPS_EADDR);
  assert_int_equal(hps_start(b, NULL, 0), HPS_EADDR);
  t_stop_free(a);
  assert_int_equal(hps_free(b), 0);
  u_free(&ra);
  u_free(&rb);
}

/* ---- API surface ---- */

static int refuse_prepare(u_rec *r, const hps_event *ev) {
  (void)r;
  return ev->type == HPS_EV_PREPARE ? HPS_HR_ERROR : HPS_HR_OK;
}

static int refuse_connect(u_rec *r, const hps_event *ev) {
  (void)r;
  return ev->type == HPS_EV_CONNECT ? HPS_HR_ERROR : HPS_HR_OK;
}

static void test_udp_options_and_refusals(void **state) {
  static const int roles[] = {HPS_UDP_SERVER, HPS_UDP_CLIENT, HPS_UDP_CAST,
                              HPS_UDP_NODE};
  u_rec r;
  hps_endpoint *ep;
  int64_t v;
  size_t i;
  (void)state;
  u_init(&r);
  for (i = 0; i < 4; i++) {
    ep = u_make(&r, roles[i], NULL);
    assert_int_equal(hps_role(ep), roles[i]);
    assert_int_equal(hps_setopt(ep, HPS_OPT_RECV_MODEL, HPS_MODEL_PULL),
                     HPS_EMODEL);
    assert_int_equal(hps_setopt(ep, HPS_OPT_RECV_MODEL, HPS_MODEL_PACK),
                     HPS_EMODEL);
    assert_int_equal(hps_setopt(ep, HPS_OPT_RECV_MODEL, HPS_MODEL_PUSH), 0);
    assert_int_equal(hps_send_file(ep, 0, "/etc/hostname", 0, -1), HPS_EROLE);
    assert_int_equal(hps_connect(ep, "127.0.0.1", 9, NULL), HPS_EROLE);
    assert_int_equal(hps_send(ep, 0, "x", 1),
                     roles[i] == HPS_UDP_NODE ? HPS_EROLE : HPS_ENOTFOUND);
    if (roles[i] == HPS_UDP_CAST || roles[i] == HPS_UDP_NODE) {
      assert_int_equal(hps_send_to(ep, "127.0.0.1", 9, "x", 1), HPS_ENOTFOUND);
      assert_int_equal(hps_join_group(ep, GROUP, NULL), HPS_ESTATE);
      assert_int_equal(hps_cast_interface(ep, "not an address"), HPS_EADDR);
      assert_int_equal(hps_cast_interface(ep, "::%lo"), 0);
      assert_int_equal(hps_cast_interface(ep, NULL), 0);
    } else {
      assert_int_equal(hps_send_to(ep, "127.0.0.1", 9, "x", 1), HPS_EROLE);
      assert_int_equal(hps_join_group(ep, GROUP, NULL), HPS_EROLE);
      assert_int_equal(hps_leave_group(ep, GROUP, NULL), HPS_EROLE);
      assert_int_equal(hps_cast_interface(ep, NULL), HPS_EROLE);
    }
    assert_int_equal(hps_free(ep), 0);
  }
  assert_int_equal(hps_send_to(NULL, "127.0.0.1", 9, "x", 1), HPS_EHANDLE);
  assert_int_equal(hps_join_group(NULL, GROUP, NULL), HPS_EHANDLE);
  assert_int_equal(hps_leave_group(NULL, GROUP, NULL), HPS_EHANDLE);
  assert_int_equal(hps_cast_interface(NULL, NULL), HPS_EHANDLE);
  ep = u_make(&r, HPS_UDP_SERVER, NULL);
  /* Ranges and defaults. */
  assert_int_equal(hps_getopt(ep, HPS_OPT_UDP_MAX_DATAGRAM, &v), 0);
  assert_int_equal(v, 1432);
  assert_int_equal(hps_setopt(ep, HPS_OPT_UDP_MAX_DATAGRAM, 0), HPS_EINVAL);
  assert_int_equal(hps_setopt(ep, HPS_OPT_UDP_MAX_DATAGRAM, 65528), HPS_EINVAL);
  assert_int_equal(hps_setopt(ep, HPS_OPT_UDP_MAX_DATAGRAM, 65527), 0);
  assert_int_equal(hps_setopt(ep, HPS_OPT_UDP_DETECT_INTERVAL, -1), HPS_EINVAL);
  assert_int_equal(hps_setopt(ep, HPS_OPT_UDP_DETECT_ATTEMPTS, 0), HPS_EINVAL);
  assert_int_equal(hps_setopt(ep, HPS_OPT_UDP_DETECT_ATTEMPTS, 1001),
                   HPS_EINVAL);
  assert_int_equal(hps_setopt(ep, HPS_OPT_UDP_CAST_MODE, 2), HPS_EINVAL);
  assert_int_equal(hps_getopt(ep, HPS_OPT_UDP_CAST_MODE, &v), 0);
  assert_int_equal(v, HPS_CAST_MULTICAST);
  assert_int_equal(hps_setopt(ep, HPS_OPT_UDP_MULTICAST_TTL, 256), HPS_EINVAL);
  assert_int_equal(hps_getopt(ep, HPS_OPT_UDP_MULTICAST_TTL, &v), 0);
  assert_int_equal(v, 1);
  assert_int_equal(hps_setopt(ep, HPS_OPT_UDP_MULTICAST_LOOP, 2), HPS_EINVAL);
  assert_int_equal(hps_getopt(ep, HPS_OPT_UDP_MULTICAST_LOOP, &v), 0);
  assert_int_equal(v, 1);
  assert_int_equal(hps_setopt(ep, 38, 1), HPS_EINVAL);
  assert_int_equal(hps_setopt(ep, HPS_OPT_WORKERS, 1), 0);
  assert_int_equal(hps_start(ep, "127.0.0.1", 0), 0);
  assert_int_equal(hps_setopt(ep, HPS_OPT_UDP_MAX_DATAGRAM, 10), HPS_ESTATE);
  assert_int_equal(hps_send(ep, 12345, "x", 1), HPS_ENOTFOUND);
  assert_int_equal(hps_send(ep, 0, "x", 1), HPS_ENOTFOUND);
  assert_int_equal(hps_pause_receive(ep, 12345, 1), HPS_ENOTFOUND);
  t_stop_free(ep);
  /* PREPARE's ERROR fails the start of every role. */
  assert_int_equal(u_count(&r, HPS_EV_PREPARE), 1);
  r.hook = refuse_prepare;
  for (i = 0; i < 4; i++) {
    ep = u_make(&r, roles[i], NULL);
    assert_int_equal(hps_start(ep,
                               roles[i] == HPS_UDP_CAST ? GROUP : "127.0.0.1",
                               roles[i] == HPS_UDP_CLIENT ? 9 : 0),
                     HPS_EHANDLER);
    assert_int_equal(hps_state(ep), HPS_STATE_CREATED);
    assert_int_equal(hps_free(ep), 0);
  }
  assert_int_equal(u_count(&r, HPS_EV_PREPARE), 1 + 4);
  assert_int_equal(u_count(&r, HPS_EV_SHUTDOWN), 1); /* the server's only */
  /* CONNECT's ERROR closes the connection with op CONNECT. */
  r.hook = refuse_connect;
  ep = u_started(&r, HPS_UDP_NODE, NULL, "127.0.0.1", 0);
  assert_int_equal(u_wait(&r, HPS_EV_CLOSE, 1, T_WAIT_MS), 0);
  assert_int_equal(u_get(&r, HPS_EV_CLOSE, 0).op, HPS_OP_CONNECT);
  assert_int_equal(u_get(&r, HPS_EV_CLOSE, 0).error, HPS_EHANDLER);
  assert_int_equal(u_count(&r, HPS_EV_HANDSHAKE), 0);
  t_stop_free(ep);
  assert_string_equal(hps_err_name(HPS_EDGRAMSIZE), "HPS_EDGRAMSIZE");
  assert_string_not_equal(hps_strerror(HPS_EDGRAMSIZE), "unknown error");
  assert_string_not_equal(hps_strerror(HPS_EUDPIDLE), "unknown error");
  u_free(&r);
}

static int error_on_datagrams(u_rec *r, const hps_event *ev) {
  (void)r;
  return ev->type == HPS_EV_RECEIVE || ev->type == HPS_EV_SEND
             ? HPS_HR_ERROR
             : HPS_HR_OK;
}

/* A node's or cast's RECEIVE or SEND handler that returns ERROR (what a
 * binding makes of an exception) closes nothing: the endpoint goes on
 * receiving and sending, and its one CLOSE comes only with the stop. */
static void test_error_from_a_node_or_cast_handler_keeps_it_listening(
    void **state) {
  static const int64_t bcast[] = {HPS_OPT_UDP_CAST_MODE, HPS_CAST_BROADCAST,
                                  0};
  u_rec r, rs;
  hps_endpoint *ep, *peer;
  uint16_t port;
  int i, k;
  (void)state;
  for (i = 0; i < 2; i++) { /* 0: nodes, 1: broadcast casts */
    int node = i == 0;
    u_init(&r);
    u_init(&rs);
    r.hook = error_on_datagrams;
    ep = node ? u_started(&r, HPS_UDP_NODE, NULL, "127.0.0.1", 0)
              : u_started(&r, HPS_UDP_CAST, bcast, "127.255.255.255", 0);
    port = bound_port(ep);
    peer = node ? u_started(&rs, HPS_UDP_NODE, NULL, "127.0.0.1", 0)
                : u_started(&rs, HPS_UDP_CAST, bcast, "127.255.255.255", port);
    assert_int_equal(u_wait(&r, HPS_EV_HANDSHAKE, 1, T_WAIT_MS), 0);
    assert_int_equal(u_wait(&rs, HPS_EV_HANDSHAKE, 1, T_WAIT_MS), 0);
    for (k = 0; k < 3; k++) {
      int rc = node ? hps_send_to(peer, "127.0.0.1", port, "dg", 2)
                    : hps_send(peer, 0, "dg", 2);
      assert_int_equal(rc, 0);
      if (u_wait(&r, HPS_EV_RECEIVE, k + 1, T_WAIT_MS) != 0)
        fail_msg("%s: datagram %d not received after an ERROR",
                 node ? "node" : "cast", k);
    }
    /* and it still sends, though its SEND handler answers ERROR */
    for (k = 0; k < 2; k++) {
      int rc = node ? hps_send_to(ep, "127.0.0.1", bound_port(peer), "a", 1)
                    : hps_send(ep, 0, "a", 1);
      assert_int_equal(rc, 0);
    }
    if (u_wait(&rs, HPS_EV_RECEIVE, node ? 2 : 3 + 2, T_WAIT_MS) != 0)
      fail_msg("%s: sends after a SEND handler's ERROR did not arrive",
               node ? "node" : "cast");
    assert_int_equal(u_count(&r, HPS_EV_CLOSE), 0);
    t_stop_free(ep);
    t_stop_free(peer);
    assert_int_equal(u_count(&r, HPS_EV_CLOSE), 1);
    assert_int_equal(u_get(&r, HPS_EV_CLOSE, 0).op, HPS_OP_CLOSE);
    u_free(&r);
    u_free(&rs);
  }
}

static void test_pause_client_and_server_connection(void **state) {
  u_rec rs, rc;
  hps_endpoint *srv, *cli;
  hps_conn_id sid;
  (void)state;
  echo_pair(&rs, &srv, &rc, &cli, "127.0.0.1");
  assert_int_equal(hps_send(cli, 0, "a", 1), 0);
  assert_int_equal(u_wait(&rc, HPS_EV_RECEIVE, 1, T_WAIT_MS), 0);
  /* A paused client stops reading; the kernel keeps what arrives. */
  assert_int_equal(hps_pause_receive(cli, 0, 1), 0);
  assert_int_equal(hps_send(cli, 0, "b", 1), 0);
  assert_int_equal(u_wait(&rs, HPS_EV_RECEIVE, 2, T_WAIT_MS), 0);
  assert_int_equal(u_wait(&rc, HPS_EV_RECEIVE, 2, 200), -1);
  assert_int_equal(hps_pause_receive(cli, 0, 0), 0);
  assert_int_equal(u_wait(&rc, HPS_EV_RECEIVE, 2, T_WAIT_MS), 0);
  /* A paused server connection drops its peer's datagrams. */
  sid = u_get(&rs, HPS_EV_ACCEPT, 0).conn;
  assert_int_equal(hps_pause_receive(srv, sid, 1), 0);
  assert_int_equal(hps_send(cli, 0, "c", 1), 0);
  assert_int_equal(u_wait(&rs, HPS_EV_RECEIVE, 3, 300), -1);
  assert_int_equal(hps_pause_receive(srv, sid, 0), 0);
  assert_int_equal(hps_send(cli, 0, "d", 1), 0);
  assert_int_equal(u_wait(&rs, HPS_EV_RECEIVE, 3, T_WAIT_MS), 0);
  assert_true(u_recv_is(&rs, 2, "d", 1));
  t_stop_free(cli);
  t_stop_free(srv);
  u_free(&rs);
  u_free(&rc);
}

static void test_restart_every_role(void **state) {
  static const int roles[] = {HPS_UDP_SERVER, HPS_UDP_CLIENT, HPS_UDP_CAST,
                              HPS_UDP_NODE};
  u_rec r;
  uint16_t sport;
  int fd = raw_udp("127.0.0.1", &sport), i, k;
  char buf[16];
  (void)state;
  for (i = 0; i < 4; i++) {
    hps_endpoint *ep;
    u_init(&r);
    ep = u_make(&r, roles[i], NULL);
    for (k = 0; k < 2; k++) {
      const char *host = roles[i] == HPS_UDP_CAST ? GROUP : "127.0.0.1";
      uint16_t port = roles[i] == HPS_UDP_CLIENT ? sport : 0;
      assert_int_equal(hps_start(ep, host, port), 0);
      assert_int_equal(hps_state(ep), HPS_STATE_STARTED);
      if (roles[i] == HPS_UDP_SERVER) {
        raw_sendto(fd, "127.0.0.1", bound_port(ep), "r", 1);
        assert_int_equal(u_wait(&r, HPS_EV_RECEIVE, k + 1, T_WAIT_MS), 0);
      } else if (roles[i] == HPS_UDP_CLIENT) {
        assert_int_equal(hps_send(ep, 0, "r", 1), 0);
        assert_int_equal(raw_recv(fd, buf, sizeof(buf), T_WAIT_MS, 1, NULL), 1);
      } else {
        assert_int_equal(hps_send_to(ep, "127.0.0.1", sport, "r", 1), 0);
        assert_int_equal(raw_recv(fd, buf, sizeof(buf), T_WAIT_MS, 1, NULL), 1);
      }
      assert_int_equal(hps_stop(ep), 0);
      assert_int_equal(u_count(&r, HPS_EV_SHUTDOWN), k + 1);
      /* server: the peer's connection; others: their one connection */
      assert_int_equal(u_count(&r, HPS_EV_CLOSE), k + 1);
    }
    assert_int_equal(hps_free(ep), 0);
    u_free(&r);
  }
  close(fd);
}

/* A stop begun inside a handler finishes on the loop thread while the
 * application frees the endpoint: hps_free waits for it (found by
 * fuzz_api under TSan: hps_free read the state the ending loop wrote). */
static int stop_on_connect(u_rec *r, const hps_event *ev) {
  (void)r;
  if (ev->type == HPS_EV_CONNECT)
    assert_int_equal(hps_stop(ev->endpoint), 0);
  return HPS_HR_OK;
}

static void test_free_while_a_handler_stop_finishes(void **state) {
  int i;
  (void)state;
  for (i = 0; i < 50; i++) {
    u_rec r;
    hps_endpoint *ep;
    u_init(&r);
    r.hook = stop_on_connect;
    ep = u_make(&r, HPS_UDP_NODE, NULL);
    assert_int_equal(hps_start(ep, "127.0.0.1", 0), 0);
    if (i % 2)
      usleep(100 * (useconds_t)(i % 5)); /* meet the loop at other points */
    assert_int_equal(hps_free(ep), 0);
    assert_int_equal(u_count(&r, HPS_EV_CONNECT), 1);
    assert_int_equal(u_count(&r, HPS_EV_CLOSE), 1);
    assert_int_equal(u_count(&r, HPS_EV_SHUTDOWN), 1);
    u_free(&r);
  }
}

/* ---- bursts: datagrams queued before the loop reads them ----
 *
 * The loop reads up to 16 datagrams with one recvmmsg and delivers them one
 * by one; these tests queue a burst in the socket first (behind a handler
 * that holds the loop, or while a single role is paused), so each read
 * returns many, and check that every datagram is delivered once, whole and
 * in order per peer, and that what a handler does in the middle of a batch
 * (pause, resume, disconnect, stop, an oversize datagram) acts as it would
 * on a datagram read alone. A datagram is [peer][seq: 2 bytes LE][pattern
 * of (peer, seq)]. */

enum { ACT_NONE, ACT_PAUSE, ACT_PAUSE_RESUME, ACT_DISCONNECT, ACT_STOP };

typedef struct b_act {
  int peer, seq, act;
} b_act;

static struct {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int gate;    /* the next RECEIVE holds its loop until `open` */
  int waiting; /* a RECEIVE is being held */
  int open;
  const b_act *acts; /* ended by act ACT_NONE; NULL: none */
} g_b = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, 0, NULL};

static void b_reset(const b_act *acts, int gate) {
  pthread_mutex_lock(&g_b.mu);
  g_b.gate = gate;
  g_b.waiting = 0;
  g_b.open = 0;
  g_b.acts = acts;
  pthread_mutex_unlock(&g_b.mu);
}

/* Wait until the gate holds a loop in its handler. */
static void b_wait_held(void) {
  uint64_t end = t_now_ms() + T_WAIT_MS;
  pthread_mutex_lock(&g_b.mu);
  while (!g_b.waiting && t_now_ms() < end) {
    pthread_mutex_unlock(&g_b.mu);
    usleep(1000);
    pthread_mutex_lock(&g_b.mu);
  }
  assert_true(g_b.waiting);
  pthread_mutex_unlock(&g_b.mu);
}

static void b_open(void) {
  pthread_mutex_lock(&g_b.mu);
  g_b.open = 1;
  pthread_cond_broadcast(&g_b.cv);
  pthread_mutex_unlock(&g_b.mu);
}

/* A datagram's length: seq 1000 and up are 1000 bytes. */
static size_t b_len(int peer, int seq) {
  if (seq >= 1000)
    return 1000;
  return 3 + (size_t)((seq * 37 + peer * 11) % 300);
}

static void b_fill(unsigned char *buf, size_t len, int peer, int seq) {
  buf[0] = (unsigned char)peer;
  buf[1] = (unsigned char)(seq & 0xff);
  buf[2] = (unsigned char)(seq >> 8);
  t_pat_fill(buf + 3, len - 3, (uint32_t)(peer * 1000 + seq), 0);
}

/* Send peer's datagram seq (len 0: its usual length) from fd. */
static void b_send(int fd, uint16_t port, int peer, int seq, size_t len) {
  static unsigned char buf[65000];
  if (len == 0)
    len = b_len(peer, seq);
  b_fill(buf, len, peer, seq);
  raw_sendto(fd, "127.0.0.1", port, buf, len);
}

static int b_hook(u_rec *r, const hps_event *ev) {
  const unsigned char *d = ev->data;
  const b_act *a;
  int peer, seq;
  (void)r;
  if (ev->type != HPS_EV_RECEIVE || d == NULL || ev->len < 3)
    return HPS_HR_OK;
  pthread_mutex_lock(&g_b.mu);
  if (g_b.gate) {
    struct timespec ts;
    g_b.gate = 0;
    g_b.waiting = 1;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += T_WAIT_MS / 1000;
    while (!g_b.open &&
           pthread_cond_timedwait(&g_b.cv, &g_b.mu, &ts) != ETIMEDOUT) {
    }
  }
  a = g_b.acts;
  pthread_mutex_unlock(&g_b.mu);
  peer = d[0];
  seq = d[1] | d[2] << 8;
  for (; a != NULL && a->act != ACT_NONE; a++) {
    if (a->peer != peer || a->seq != seq)
      continue;
    if (a->act == ACT_PAUSE || a->act == ACT_PAUSE_RESUME)
      assert_int_equal(hps_pause_receive(ev->endpoint, ev->conn, 1), 0);
    if (a->act == ACT_PAUSE_RESUME)
      assert_int_equal(hps_pause_receive(ev->endpoint, ev->conn, 0), 0);
    if (a->act == ACT_DISCONNECT)
      assert_int_equal(hps_disconnect(ev->endpoint, ev->conn, 0), 0);
    if (a->act == ACT_STOP)
      assert_int_equal(hps_stop(ev->endpoint), 0);
  }
  return HPS_HR_OK;
}

/* The RECEIVEs of peer in order: their seqs into seqs[cap] (an oversize
 * report, no data, is -1) and the connection of each into conns (may be
 * NULL). Every datagram's bytes are checked. Returns how many. */
static int b_seqs(u_rec *r, int peer, uint16_t peer_port, int *seqs,
                  hps_conn_id *conns, int cap) {
  size_t k;
  int n = 0;
  pthread_mutex_lock(&r->mu);
  for (k = 0; k < r->n; k++) {
    u_ev *e = &r->evs[k];
    int seq;
    if (e->type != HPS_EV_RECEIVE)
      continue;
    if (!e->has_data) {
      if (e->port != peer_port)
        continue;
      seq = -1;
    } else {
      assert_true(e->len >= 3);
      if (e->data[0] != peer)
        continue;
      seq = e->data[1] | e->data[2] << 8;
      assert_int_equal(e->len, b_len(peer, seq));
      assert_int_equal(t_pat_check(e->data + 3, e->len - 3,
                                   (uint32_t)(peer * 1000 + seq), 0),
                       -1);
    }
    assert_true(n < cap);
    seqs[n] = seq;
    if (conns)
      conns[n] = e->conn;
    n++;
  }
  pthread_mutex_unlock(&r->mu);
  return n;
}

/* Events of conn after its CLOSE: must be none. */
static void b_nothing_after_close(u_rec *r) {
  size_t k, j;
  pthread_mutex_lock(&r->mu);
  for (k = 0; k < r->n; k++)
    if (r->evs[k].type == HPS_EV_CLOSE)
      for (j = k + 1; j < r->n; j++)
        assert_false(r->evs[j].conn == r->evs[k].conn &&
                     r->evs[j].type != HPS_EV_SHUTDOWN);
  pthread_mutex_unlock(&r->mu);
}

enum { GATE_PEER = 200 };

/* A server with one worker whose loop is held in the handler of a first
 * datagram (from *gate_fd) until b_open. */
static hps_endpoint *b_held_server(u_rec *r, const int64_t *opts,
                                   const b_act *acts, uint16_t *port,
                                   int *gate_fd) {
  hps_endpoint *ep;
  u_init(r);
  r->hook = b_hook;
  b_reset(acts, 1);
  ep = u_started(r, HPS_UDP_SERVER, opts, "127.0.0.1", 0);
  *port = bound_port(ep);
  *gate_fd = raw_udp("127.0.0.1", NULL);
  b_send(*gate_fd, *port, GATE_PEER, 0, 0);
  b_wait_held();
  return ep;
}

static void test_burst_from_several_peers_arrives_whole_in_order(void **state) {
  static const int64_t opts[] = {HPS_OPT_WORKERS, 1, HPS_OPT_RCVBUF, 1 << 20,
                                 0};
  enum { PEERS = 4, EACH = 40, BEAT = 17 };
  u_rec r;
  hps_endpoint *ep;
  uint16_t port, pport[PEERS];
  int fd[PEERS], gate, i, k, seqs[EACH + 1];
  hps_conn_id conns[EACH + 1];
  char buf[64];
  (void)state;
  ep = b_held_server(&r, opts, NULL, &port, &gate);
  for (i = 0; i < PEERS; i++)
    fd[i] = raw_udp("127.0.0.1", &pport[i]);
  for (k = 0; k < EACH; k++)
    for (i = 0; i < PEERS; i++) {
      b_send(fd[i], port, i, k, 0);
      if (i == 1 && k == BEAT)
        raw_sendto(fd[i], "127.0.0.1", port, "", 0); /* a heartbeat */
    }
  b_open();
  assert_int_equal(u_wait(&r, HPS_EV_RECEIVE, 1 + PEERS * EACH, T_WAIT_MS), 0);
  /* Each peer: all its datagrams once, in order, whole, on one
   * connection; the heartbeat answered, not delivered. */
  for (i = 0; i < PEERS; i++) {
    assert_int_equal(b_seqs(&r, i, pport[i], seqs, conns, EACH + 1), EACH);
    for (k = 0; k < EACH; k++) {
      assert_int_equal(seqs[k], k);
      assert_true(conns[k] == conns[0]);
    }
  }
  assert_int_equal(raw_recv(fd[1], buf, sizeof(buf), T_WAIT_MS, 0, NULL), 0);
  assert_int_equal(u_count(&r, HPS_EV_ACCEPT), 1 + PEERS);
  assert_int_equal(u_wait(&r, HPS_EV_RECEIVE, 2 + PEERS * EACH, 200), -1);
  t_stop_free(ep);
  assert_int_equal(u_count(&r, HPS_EV_CLOSE), 1 + PEERS);
  for (i = 0; i < PEERS; i++)
    close(fd[i]);
  close(gate);
  u_free(&r);
}

static void test_burst_over_max_connections(void **state) {
  /* the gate's peer takes one place */
  static const int64_t opts[] = {HPS_OPT_WORKERS, 1, HPS_OPT_MAX_CONNECTIONS, 3,
                                 0};
  enum { PEERS = 4, EACH = 6 };
  u_rec r;
  hps_endpoint *ep;
  uint16_t port, pport[PEERS];
  int fd[PEERS], gate, i, k, seqs[EACH + 1];
  (void)state;
  uint64_t refused = 0;
  ep = b_held_server(&r, opts, NULL, &port, &gate);
  for (i = 0; i < PEERS; i++)
    fd[i] = raw_udp("127.0.0.1", &pport[i]);
  /* Peer by peer, and the gate's second datagram first: every peer in has
   * sent twice (confirmed) before a new one finds the table full, so new
   * ones are dropped, not given an unconfirmed peer's place. */
  b_send(gate, port, GATE_PEER, 1, 0);
  for (i = 0; i < PEERS; i++)
    for (k = 0; k < EACH; k++)
      b_send(fd[i], port, i, k, 0);
  b_open();
  /* Peers 0 and 1 came first: in, everything delivered; 2 and 3 dropped. */
  assert_int_equal(u_wait(&r, HPS_EV_RECEIVE, 2 + 2 * EACH, T_WAIT_MS), 0);
  assert_int_equal(u_wait(&r, HPS_EV_RECEIVE, 3 + 2 * EACH, 200), -1);
  assert_int_equal(hps_get_counter(ep, HPS_CNT_UDP_PEERS_REFUSED, &refused), 0);
  assert_int_equal(refused, 2 * EACH);
  for (i = 0; i < PEERS; i++) {
    int n = b_seqs(&r, i, pport[i], seqs, NULL, EACH + 1);
    assert_int_equal(n, i < 2 ? EACH : 0);
    for (k = 0; k < n; k++)
      assert_int_equal(seqs[k], k);
  }
  assert_int_equal(u_count(&r, HPS_EV_ACCEPT), 3);
  assert_int_equal(hps_conn_count(ep), 3);
  t_stop_free(ep);
  for (i = 0; i < PEERS; i++)
    close(fd[i]);
  close(gate);
  u_free(&r);
}

static void
test_burst_oversize_in_the_middle_closes_only_its_peer(void **state) {
  static const int64_t opts[] = {
      HPS_OPT_WORKERS, 1, HPS_OPT_UDP_MAX_DATAGRAM, 1000, HPS_OPT_RCVBUF,
      1 << 20,         0};
  enum { EACH = 10, BIG = 5 };
  u_rec r;
  hps_endpoint *ep;
  uint16_t port, pa, pb;
  int a, b, gate, k, seqs[EACH + 1], n;
  hps_conn_id conns[EACH + 1];
  u_ev c;
  (void)state;
  ep = b_held_server(&r, opts, NULL, &port, &gate);
  a = raw_udp("127.0.0.1", &pa);
  b = raw_udp("127.0.0.1", &pb);
  for (k = 0; k < EACH; k++) {
    /* a's datagram BIG is 60000 bytes (over the max, under a chunk); b's
     * datagram 3 is exactly the max */
    b_send(a, port, 0, k, k == BIG ? 60000 : 0);
    b_send(b, port, 1, k, 0);
    if (k == 3)
      b_send(b, port, 1, 1000 + k, 0);
  }
  b_open();
  assert_int_equal(u_wait(&r, HPS_EV_RECEIVE, 1 + 2 * EACH, T_WAIT_MS), 0);
  assert_int_equal(u_wait(&r, HPS_EV_CLOSE, 1, T_WAIT_MS), 0);
  /* a: 0..4 on its first connection, closed for the oversize one; then
   * 6..9 on a new one. Nothing was delivered cut. */
  n = b_seqs(&r, 0, pa, seqs, conns, EACH + 1);
  assert_int_equal(n, EACH - 1);
  for (k = 0; k < n; k++) {
    assert_int_equal(seqs[k], k < BIG ? k : k + 1);
    assert_true((conns[k] == conns[0]) == (k < BIG));
  }
  c = u_get(&r, HPS_EV_CLOSE, 0);
  assert_true(c.conn == conns[0]);
  assert_int_equal(c.op, HPS_OP_RECEIVE);
  assert_int_equal(c.error, HPS_EDGRAMSIZE);
  /* b: everything, the one of exactly the max size included */
  n = b_seqs(&r, 1, pb, seqs, conns, EACH + 2);
  assert_int_equal(n, EACH + 1);
  for (k = 0; k < n; k++)
    assert_int_equal(seqs[k], k < 4 ? k : k == 4 ? 1003 : k - 1);
  assert_int_equal(u_count(&r, HPS_EV_ACCEPT), 4); /* gate, a, b, a again */
  t_stop_free(ep);
  close(a);
  close(b);
  close(gate);
  u_free(&r);
}

/* A single role, paused from this thread, gets a burst queued, then is
 * resumed: the burst is read in batches. role: node or client (of a plain
 * socket, *peer_fd). */
static hps_endpoint *b_paused_single(u_rec *r, int role, const int64_t *opts,
                                     const b_act *acts, int *peer_fd,
                                     uint16_t *port) {
  hps_endpoint *ep;
  uint16_t pport;
  u_init(r);
  r->hook = b_hook;
  b_reset(acts, 0);
  *peer_fd = raw_udp("127.0.0.1", &pport);
  if (role == HPS_UDP_CLIENT) {
    ep = u_started(r, role, opts, "127.0.0.1", pport);
    assert_int_equal(hps_local_address(ep, 0, NULL, 0, port), 0);
  } else {
    ep = u_started(r, role, opts, "127.0.0.1", 0);
    *port = bound_port(ep);
  }
  assert_int_equal(u_wait(r, HPS_EV_HANDSHAKE, 1, T_WAIT_MS), 0);
  assert_int_equal(hps_pause_receive(ep, 0, 1), 0);
  return ep;
}

/* Exactly n RECEIVEs come, and no more for a while. */
static void b_expect_count(u_rec *r, int n) {
  assert_int_equal(u_wait(r, HPS_EV_RECEIVE, n, T_WAIT_MS), 0);
  assert_int_equal(u_wait(r, HPS_EV_RECEIVE, n + 1, 150), -1);
}

/* opts: the node's are the defaults (16 datagrams a read); the client's
 * the largest max datagram (a read of 4 big chunks, so the pauses fall in
 * other places of their batches). */
static void pause_mid_burst(int role) {
  static const int64_t nopts[] = {HPS_OPT_RCVBUF, 1 << 20, 0};
  static const int64_t copts[] = {HPS_OPT_RCVBUF, 1 << 20,
                                  HPS_OPT_UDP_MAX_DATAGRAM, 65527, 0};
  const int64_t *opts = role == HPS_UDP_CLIENT ? copts : nopts;
  /* 4: a pause in a batch (the rest of it held); 9: a pause while the
   * held ones are delivered; 12 and 20: pause and resume in one handler
   * (while held ones are delivered, and in a batch); 25: a pause in a
   * later batch. The test resumes after each plain pause. */
  static const b_act acts[] = {
      {0, 4, ACT_PAUSE},         {0, 9, ACT_PAUSE},  {0, 12, ACT_PAUSE_RESUME},
      {0, 20, ACT_PAUSE_RESUME}, {0, 25, ACT_PAUSE}, {0, 0, ACT_NONE}};
  enum { N = 40 };
  u_rec r;
  hps_endpoint *ep;
  uint16_t port;
  int fd, k, seqs[N + 1];
  (void)fd;
  ep = b_paused_single(&r, role, opts, acts, &fd, &port);
  for (k = 0; k < N; k++)
    b_send(fd, port, 0, k, 0);
  assert_int_equal(hps_pause_receive(ep, 0, 0), 0);
  b_expect_count(&r, 5);
  assert_int_equal(hps_pause_receive(ep, 0, 0), 0);
  b_expect_count(&r, 10);
  assert_int_equal(hps_pause_receive(ep, 0, 0), 0);
  b_expect_count(&r, 26);
  /* Paused: the kernel keeps what comes meanwhile, behind the held ones. */
  b_send(fd, port, 0, N, 0);
  assert_int_equal(hps_pause_receive(ep, 0, 0), 0);
  b_expect_count(&r, N + 1);
  assert_int_equal(b_seqs(&r, 0, 0, seqs, NULL, N + 1), N + 1);
  for (k = 0; k <= N; k++)
    assert_int_equal(seqs[k], k);
  assert_int_equal(u_count(&r, HPS_EV_CLOSE), 0);
  t_stop_free(ep);
  close(fd);
  u_free(&r);
}

static void test_burst_node_pause_in_handlers_loses_nothing(void **state) {
  (void)state;
  pause_mid_burst(HPS_UDP_NODE);
}

static void test_burst_client_pause_in_handlers_loses_nothing(void **state) {
  (void)state;
  pause_mid_burst(HPS_UDP_CLIENT);
}

/* The oversize report of a node comes in its place in the burst, also for
 * one held by a pause. */
static void test_burst_node_oversize_in_the_middle(void **state) {
  static const int64_t opts[] = {HPS_OPT_UDP_MAX_DATAGRAM, 1000, HPS_OPT_RCVBUF,
                                 1 << 20, 0};
  static const b_act acts[] = {{0, 2, ACT_PAUSE}, {0, 0, ACT_NONE}};
  enum { N = 12, BIG = 5 };
  u_rec r;
  hps_endpoint *ep;
  uint16_t port, pport = 0;
  int fd, k, seqs[N + 1];
  u_ev e;
  ep = b_paused_single(&r, HPS_UDP_NODE, opts, acts, &fd, &port);
  (void)state;
  {
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&ss, &sl), 0);
    pport = ss_port(&ss);
  }
  for (k = 0; k < N; k++)
    b_send(fd, port, 0, k, k == BIG ? 60000 : 0);
  assert_int_equal(hps_pause_receive(ep, 0, 0), 0);
  b_expect_count(&r, 3);
  assert_int_equal(hps_pause_receive(ep, 0, 0), 0);
  b_expect_count(&r, N);
  assert_int_equal(b_seqs(&r, 0, pport, seqs, NULL, N + 1), N);
  for (k = 0; k < N; k++)
    assert_int_equal(seqs[k], k == BIG ? -1 : k);
  e = u_get(&r, HPS_EV_RECEIVE, BIG);
  assert_int_equal(e.error, HPS_EDGRAMSIZE);
  assert_int_equal(e.op, HPS_OP_RECEIVE);
  assert_int_equal(e.len, 0);
  assert_string_equal(e.addr, "127.0.0.1");
  assert_int_equal(e.port, pport);
  assert_int_equal(u_count(&r, HPS_EV_CLOSE), 0);
  t_stop_free(ep);
  close(fd);
  u_free(&r);
}

static void test_burst_server_disconnect_in_a_handler(void **state) {
  static const int64_t opts[] = {HPS_OPT_WORKERS, 1, 0};
  static const b_act acts[] = {{0, 2, ACT_DISCONNECT}, {0, 0, ACT_NONE}};
  enum { N = 10 };
  u_rec r;
  hps_endpoint *ep;
  uint16_t port, pa;
  int a, gate, k, n, seqs[N + 1];
  hps_conn_id conns[N + 1];
  u_ev c;
  (void)state;
  ep = b_held_server(&r, opts, acts, &port, &gate);
  a = raw_udp("127.0.0.1", &pa);
  for (k = 0; k < N; k++)
    b_send(a, port, 0, k, 0);
  b_open();
  assert_int_equal(u_wait(&r, HPS_EV_RECEIVE, 1 + N, T_WAIT_MS), 0);
  assert_int_equal(u_wait(&r, HPS_EV_CLOSE, 1, T_WAIT_MS), 0);
  /* 0..2 on the first connection, which closes; 3.. make a new one */
  n = b_seqs(&r, 0, pa, seqs, conns, N + 1);
  assert_int_equal(n, N);
  for (k = 0; k < N; k++) {
    assert_int_equal(seqs[k], k);
    assert_true((conns[k] == conns[0]) == (k <= 2));
  }
  c = u_get(&r, HPS_EV_CLOSE, 0);
  assert_true(c.conn == conns[0]);
  assert_int_equal(c.op, HPS_OP_CLOSE);
  assert_int_equal(c.error, 0);
  assert_int_equal(u_count(&r, HPS_EV_ACCEPT), 3);
  t_stop_free(ep);
  b_nothing_after_close(&r);
  close(a);
  close(gate);
  u_free(&r);
}

static void test_burst_node_disconnect_or_stop_in_a_handler(void **state) {
  static const b_act disc[] = {{0, 3, ACT_DISCONNECT}, {0, 0, ACT_NONE}};
  static const b_act stop[] = {{0, 3, ACT_STOP}, {0, 0, ACT_NONE}};
  enum { N = 20 };
  int i;
  (void)state;
  for (i = 0; i < 2; i++) {
    u_rec r;
    hps_endpoint *ep;
    uint16_t port;
    int fd, k, n, seqs[N + 1];
    ep = b_paused_single(&r, HPS_UDP_NODE, NULL, i == 0 ? disc : stop, &fd,
                         &port);
    for (k = 0; k < N; k++)
      b_send(fd, port, 0, k, 0);
    assert_int_equal(hps_pause_receive(ep, 0, 0), 0);
    assert_int_equal(u_wait(&r, HPS_EV_CLOSE, 1, T_WAIT_MS), 0);
    if (i == 0) {
      /* closed at once: nothing after the datagram that disconnected */
      assert_int_equal(u_get(&r, HPS_EV_CLOSE, 0).op, HPS_OP_CLOSE);
      assert_int_equal(hps_send_to(ep, "127.0.0.1", port, "x", 1),
                       HPS_ENOTFOUND);
      b_expect_count(&r, 4);
    } else {
      /* the stop completes after the handler: a few more may come (as
       * from any read before the loop sees the stop), in order */
      assert_int_equal(u_wait(&r, HPS_EV_SHUTDOWN, 1, T_WAIT_MS), 0);
      assert_int_equal(u_get(&r, HPS_EV_CLOSE, 0).op, HPS_OP_CLOSE);
    }
    n = b_seqs(&r, 0, 0, seqs, NULL, N + 1);
    assert_true(n >= 4);
    for (k = 0; k < n; k++)
      assert_int_equal(seqs[k], k);
    t_stop_free(ep);
    assert_int_equal(u_count(&r, HPS_EV_CLOSE), 1);
    assert_int_equal(u_count(&r, HPS_EV_SHUTDOWN), 1);
    b_nothing_after_close(&r);
    close(fd);
    u_free(&r);
  }
}

/* ---- the send queue limit (HPS_OPT_MAX_SEND_QUEUE) ---- */

/* Datagrams of Q_LEN bytes; the limit is exactly Q_K of them. */
#define Q_LEN 1000
#define Q_K 4
/* Per round: Q_K accepted, then one more full one and one byte refused. */
#define Q_TRIES (Q_K + 2)

/* The sender's handler holds its loop at two gates, in CONNECT and in the
 * SEND of the Q_K-th datagram, until the test opens them: what the test
 * posts meanwhile cannot be sent. With loop_sends the handler sends the
 * round itself at each gate instead (from the loop thread) and keeps what
 * each send returned. */
static struct {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int role;
  uint16_t port; /* node: the destination */
  int loop_sends;
  int held;   /* the gate (1, 2) a handler waits at */
  int opened; /* gates up to this one are open */
  int sends;  /* SEND events seen */
  int rc[2][Q_TRIES];
  int bad_rc; /* a SEND with an error, or a wrong length */
} g_q = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

static unsigned char g_q_buf[Q_LEN];

/* Datagram seq of the test: first byte seq, then a pattern. */
static int q_send(hps_endpoint *ep, int seq, size_t len) {
  g_q_buf[0] = (unsigned char)seq;
  t_pat_fill(g_q_buf + 1, Q_LEN - 1, (uint32_t)seq, 0);
  if (g_q.role == HPS_UDP_NODE)
    return hps_send_to(ep, "127.0.0.1", g_q.port, g_q_buf, len);
  if (len < 2)
    return hps_send(ep, 0, g_q_buf, len);
  {
    hps_buf b[2] = {{g_q_buf, len / 2}, {g_q_buf + len / 2, len - len / 2}};
    return hps_sendv(ep, 0, b, 2);
  }
}

/* One round: Q_K datagrams (seq first, first + 1, ...), then one more of
 * Q_LEN and one of a byte, both of which must be refused. */
static void q_round(hps_endpoint *ep, int first, int *rc) {
  int i;
  for (i = 0; i < Q_K; i++)
    rc[i] = q_send(ep, first + i, Q_LEN);
  rc[Q_K] = q_send(ep, 0xee, Q_LEN);
  rc[Q_K + 1] = q_send(ep, 0xef, 1);
}

/* Hold the loop at gate g until the test opens it (or a deadline, so a
 * failed test cannot hang its loop). */
static void q_gate(int g) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  ts.tv_sec += T_WAIT_MS / 1000;
  pthread_mutex_lock(&g_q.mu);
  g_q.held = g;
  pthread_cond_broadcast(&g_q.cv);
  while (g_q.opened < g &&
         pthread_cond_timedwait(&g_q.cv, &g_q.mu, &ts) != ETIMEDOUT) {
  }
  pthread_mutex_unlock(&g_q.mu);
}

static int q_hook(u_rec *r, const hps_event *ev) {
  int n = 0;
  (void)r;
  if (ev->type == HPS_EV_SEND) {
    pthread_mutex_lock(&g_q.mu);
    n = ++g_q.sends;
    if (ev->error != 0 || ev->len != Q_LEN)
      g_q.bad_rc = 1;
    pthread_mutex_unlock(&g_q.mu);
  }
  if (ev->type == HPS_EV_CONNECT || (ev->type == HPS_EV_SEND && n == Q_K)) {
    int g = ev->type == HPS_EV_CONNECT ? 1 : 2;
    /* At the Q_K-th SEND every datagram of the first round has been sent
     * and counted off: the queue is empty again. */
    if (g_q.loop_sends)
      q_round(ev->endpoint, g == 1 ? 0 : Q_K, g_q.rc[g - 1]);
    else
      q_gate(g);
  }
  return HPS_HR_OK;
}

static void q_wait_held(int g) {
  uint64_t end = t_now_ms() + T_WAIT_MS;
  pthread_mutex_lock(&g_q.mu);
  while (g_q.held < g && t_now_ms() < end) {
    pthread_mutex_unlock(&g_q.mu);
    usleep(1000);
    pthread_mutex_lock(&g_q.mu);
  }
  assert_int_equal(g_q.held, g);
  pthread_mutex_unlock(&g_q.mu);
}

static void q_open(int g) {
  pthread_mutex_lock(&g_q.mu);
  g_q.opened = g;
  pthread_cond_broadcast(&g_q.cv);
  pthread_mutex_unlock(&g_q.mu);
}

static void q_expect_round(const int *rc, const char *what) {
  int i;
  for (i = 0; i < Q_K; i++)
    if (rc[i] != 0)
      fail_msg("%s: datagram %d of %d under the limit returned %s", what, i + 1,
               Q_K, hps_err_name(rc[i]));
  if (rc[Q_K] != HPS_ESENDQ || rc[Q_K + 1] != HPS_ESENDQ)
    fail_msg("%s: past the limit returned %s and %s, not HPS_ESENDQ", what,
             hps_err_name(rc[Q_K]), hps_err_name(rc[Q_K + 1]));
}

/* A sender of role (node: hps_send_to; client: hps_sendv, then hps_send
 * for the byte) with a limit of exactly Q_K datagrams, sending two rounds
 * to a plain socket, from another thread or from its loop. The second
 * round proves the queue counted back to 0 after the first. */
static void q_limit(int role, int loop_sends) {
  const int64_t opts[] = {HPS_OPT_MAX_SEND_QUEUE, Q_K * Q_LEN,
                          HPS_OPT_UDP_DETECT_INTERVAL, 0, 0};
  u_rec r;
  hps_endpoint *ep;
  uint16_t port;
  int fd, i, rc[Q_TRIES];
  unsigned char buf[Q_LEN + 1];
  pthread_mutex_lock(&g_q.mu);
  g_q.role = role;
  g_q.loop_sends = loop_sends;
  g_q.held = g_q.opened = g_q.sends = g_q.bad_rc = 0;
  memset(g_q.rc, 0x7f, sizeof(g_q.rc));
  pthread_mutex_unlock(&g_q.mu);
  fd = raw_udp("127.0.0.1", &port);
  g_q.port = port;
  u_init(&r);
  r.hook = q_hook;
  ep = u_make(&r, role, opts);
  assert_int_equal(hps_start(ep, "127.0.0.1", role == HPS_UDP_NODE ? 0 : port),
                   0);
  if (!loop_sends) {
    q_wait_held(1);
    q_round(ep, 0, rc);
    q_expect_round(rc, "first round, loop held");
    q_open(1);
    q_wait_held(2);
    q_round(ep, Q_K, rc);
    q_expect_round(rc, "second round, loop held");
    q_open(2);
  }
  assert_int_equal(u_wait(&r, HPS_EV_SEND, 2 * Q_K, T_WAIT_MS), 0);
  if (loop_sends) {
    q_expect_round(g_q.rc[0], "first round, from the loop");
    q_expect_round(g_q.rc[1], "second round, from the loop");
  }
  for (i = 0; i < 2 * Q_K; i++) {
    assert_int_equal(raw_recv(fd, buf, sizeof(buf), T_WAIT_MS, 1, NULL), Q_LEN);
    assert_int_equal(buf[0], i);
    assert_int_equal(t_pat_check(buf + 1, Q_LEN - 1, (uint32_t)i, 0), -1);
  }
  t_stop_free(ep);
  pthread_mutex_lock(&g_q.mu);
  assert_int_equal(g_q.sends, 2 * Q_K);
  assert_int_equal(g_q.bad_rc, 0);
  pthread_mutex_unlock(&g_q.mu);
  close(fd);
  u_free(&r);
}

static void
test_send_queue_limit_counts_payload_from_other_thread_node(void **state) {
  (void)state;
  q_limit(HPS_UDP_NODE, 0);
}

static void
test_send_queue_limit_counts_payload_from_other_thread_client(void **state) {
  (void)state;
  q_limit(HPS_UDP_CLIENT, 0);
}

static void
test_send_queue_limit_counts_payload_from_loop_thread(void **state) {
  (void)state;
  q_limit(HPS_UDP_NODE, 1);
  q_limit(HPS_UDP_CLIENT, 1);
}

/* ---- heap after a burst of big datagrams ---- */

/* glibc's arenas are what is measured: not under the sanitizers'
 * allocators, nor without mallinfo2 (glibc 2.33). */
#if defined(HPS_ASAN) || defined(HPS_TSAN)
#define M_SKIP 1
#endif
#if !defined(__GLIBC__) || __GLIBC__ < 2 ||                                    \
    (__GLIBC__ == 2 && __GLIBC_MINOR__ < 33)
#define M_SKIP 1
#endif

#ifndef M_SKIP
enum { M_N = 16, M_LEN = 60000 };

/* The sender's handler, allocating nothing itself: at CONNECT it sends
 * M_N big datagrams from the loop thread (SEND events on: each is queued
 * and reported), then counts SENDs. */
static struct {
  uint16_t port;
  int sends;  /* atomic */
  int failed; /* atomic: a send from the handler failed */
} g_m;

static int m_handler(void *user, const hps_event *ev) {
  static unsigned char buf[M_LEN];
  int i;
  (void)user;
  if (ev->type == HPS_EV_CONNECT)
    for (i = 0; i < M_N; i++)
      if (hps_send_to(ev->endpoint, "127.0.0.1", g_m.port, buf, M_LEN) != 0)
        __atomic_store_n(&g_m.failed, 1, __ATOMIC_RELAXED);
  if (ev->type == HPS_EV_SEND)
    __atomic_add_fetch(&g_m.sends, 1, __ATOMIC_RELAXED);
  return HPS_HR_OK;
}

static int m_sends_reach(void *arg) {
  return __atomic_load_n(&g_m.sends, __ATOMIC_RELAXED) >= *(int *)arg;
}

/* In a fresh process (this program run again with HPS_TEST_HEAP_CHILD set:
 * the loop thread's malloc arena is new, not one a thread of an earlier
 * test left, whose history would decide where things go): the heap bytes
 * (all arenas) the burst left behind once every datagram was sent and
 * freed, or -1. */
static long m_child(void) {
  struct mallinfo2 m0, m1;
  struct sockaddr_in a;
  socklen_t al = sizeof(a);
  hps_endpoint *ep = NULL;
  void *volatile warm;
  int fd, n;
  /* The destination: bound, never read (sends succeed all the same). No
   * cmocka asserts in the child: it reports -1 instead. */
  memset(&a, 0, sizeof(a));
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
      getsockname(fd, (struct sockaddr *)&a, &al) != 0)
    return -1;
  g_m.port = ntohs(a.sin_port);
  warm = malloc(64); /* the main arena exists: only what follows counts */
  free(warm);
  m0 = mallinfo2();
  if (hps_create(HPS_UDP_NODE, m_handler, NULL, &ep) != 0 ||
      hps_setopt(ep, HPS_OPT_UDP_MAX_DATAGRAM, M_LEN) != 0 ||
      hps_start(ep, "127.0.0.1", 0) != 0)
    return -1;
  n = M_N;
  if (t_poll(m_sends_reach, &n, T_WAIT_MS) != 0)
    return -1;
  /* One more, posted from here: once its SEND came, the loop has long
   * freed the burst's datagrams. */
  if (hps_send_to(ep, "127.0.0.1", g_m.port, "x", 1) != 0)
    return -1;
  n = M_N + 1;
  if (t_poll(m_sends_reach, &n, T_WAIT_MS) != 0 ||
      __atomic_load_n(&g_m.failed, __ATOMIC_RELAXED))
    return -1;
  m1 = mallinfo2();
  hps_stop(ep);
  hps_free(ep);
  close(fd);
  return (long)(m1.arena - m0.arena);
}

/* Read fd until EOF, cap bytes or ms; returns the bytes read. */
static ssize_t m_read(int fd, char *buf, size_t cap, int ms) {
  uint64_t end = t_now_ms() + (uint64_t)ms;
  size_t got = 0;
  while (got < cap) {
    struct pollfd pf = {fd, POLLIN, 0};
    uint64_t now = t_now_ms();
    ssize_t r;
    if (now >= end || poll(&pf, 1, (int)(end - now)) <= 0)
      break;
    r = read(fd, buf + got, cap - got);
    if (r <= 0)
      break;
    got += (size_t)r;
  }
  return (ssize_t)got;
}
#endif

/* A burst of big datagrams sent from a handler leaves no heap behind:
 * each datagram is one allocation, so nothing small stays pinned between
 * the freed ones (a separately malloc'd libuv request did, in the loop
 * thread's tcache, and ~360 KiB of them stayed, per loop). What a new
 * arena keeps is its top pad (128 KiB) and a few small blocks. */
static void test_burst_of_big_sends_leaves_no_heap_behind(void **state) {
#ifdef M_SKIP
  (void)state;
  skip();
#else
  static char *const argv[] = {"test_udp", NULL};
  static char *const envp[] = {"HPS_TEST_HEAP_CHILD=1", NULL};
  char out[64];
  ssize_t n;
  int p[2], status = 0;
  long grown = -1;
  pid_t pid;
  (void)state;
  assert_int_equal(pipe(p), 0);
  pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    dup2(p[1], STDOUT_FILENO);
    execve("/proc/self/exe", argv, envp);
    _exit(127);
  }
  close(p[1]);
  n = m_read(p[0], out, sizeof(out) - 1, 3 * T_WAIT_MS);
  close(p[0]);
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  out[n > 0 ? n : 0] = '\0';
  if (sscanf(out, "%ld", &grown) != 1)
    grown = -1;
  if (grown < 0)
    fail_msg("the burst did not complete in the child");
  if (grown > 320 * 1024)
    fail_msg("heap grew by %ld KiB after %d datagrams of %d bytes were sent "
             "and freed (at most 320 KiB expected)",
             grown / 1024, M_N, M_LEN);
#endif
}

int main(void) {
  const char *filter = getenv("HPS_TEST_FILTER");
#ifndef M_SKIP
  if (getenv("HPS_TEST_HEAP_CHILD")) { /* test_burst_of_big_sends_... */
    long grown = m_child();
    printf("%ld\n", grown);
    return grown < 0;
  }
#endif
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_server_echo_per_peer_connections),
      cmocka_unit_test(test_server_peer_stays_on_one_connection_across_workers),
      cmocka_unit_test(test_server_disconnect_then_peer_gets_a_new_id),
      cmocka_unit_test(test_server_accept_error_refuses_then_asks_again),
      cmocka_unit_test(test_server_max_connections_drops_new_peers),
      cmocka_unit_test(test_server_two_on_one_port_is_eaddrinuse),
      cmocka_unit_test(test_oversize_datagram_closes_server_connection),
      cmocka_unit_test(test_oversize_datagram_closes_client),
      cmocka_unit_test(test_oversize_datagram_is_reported_to_node),
      cmocka_unit_test(test_client_server_echo),
      cmocka_unit_test(test_client_ipv6_echo),
      cmocka_unit_test(test_client_port_unreachable_closes_with_econnrefused),
      cmocka_unit_test(test_client_bad_addresses_fail_start),
      cmocka_unit_test(test_detect_closes_a_silent_server_peer),
      cmocka_unit_test(test_detect_heartbeats_keep_client_and_server_alive),
      cmocka_unit_test(test_detect_spares_a_paused_client),
      cmocka_unit_test(test_detect_closes_client_whose_peer_is_silent),
      cmocka_unit_test(test_detect_off_keeps_silent_peers),
      cmocka_unit_test(test_node_send_to_and_sender_address),
      cmocka_unit_test(test_node_dual_stack_and_send_events),
      cmocka_unit_test(test_node_failed_datagram_is_a_send_event_with_error),
      cmocka_unit_test(test_cast_multicast_group),
      cmocka_unit_test(test_cast_broadcast),
      cmocka_unit_test(test_cast_reuse_off_refuses_a_shared_port),
      cmocka_unit_test(test_udp_options_and_refusals),
      cmocka_unit_test(
          test_error_from_a_node_or_cast_handler_keeps_it_listening),
      cmocka_unit_test(test_pause_client_and_server_connection),
      cmocka_unit_test(test_restart_every_role),
      cmocka_unit_test(test_free_while_a_handler_stop_finishes),
      cmocka_unit_test(test_burst_from_several_peers_arrives_whole_in_order),
      cmocka_unit_test(test_burst_over_max_connections),
      cmocka_unit_test(test_burst_oversize_in_the_middle_closes_only_its_peer),
      cmocka_unit_test(test_burst_node_pause_in_handlers_loses_nothing),
      cmocka_unit_test(test_burst_client_pause_in_handlers_loses_nothing),
      cmocka_unit_test(test_burst_node_oversize_in_the_middle),
      cmocka_unit_test(test_burst_server_disconnect_in_a_handler),
      cmocka_unit_test(test_burst_node_disconnect_or_stop_in_a_handler),
      cmocka_unit_test(
          test_send_queue_limit_counts_payload_from_other_thread_node),
      cmocka_unit_test(
          test_send_queue_limit_counts_payload_from_other_thread_client),
      cmocka_unit_test(test_send_queue_limit_counts_payload_from_loop_thread),
      cmocka_unit_test(test_burst_of_big_sends_leaves_no_heap_behind),
  };
  if (filter)
    cmocka_set_test_filter(filter);
  return cmocka_run_group_tests_name("udp", tests, NULL, NULL);
}
