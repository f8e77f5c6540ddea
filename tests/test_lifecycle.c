/* test_lifecycle.c - create/start/stop/free, states, option defaults,
 * restart, stop with live connections, stop/free/wait from inside handlers,
 * create/free cycles without leaks, IPv6 and dual stack, worker counts,
 * PREPARE and ACCEPT results, the connection limit. */
#define _GNU_SOURCE
#include <errno.h>
#include <malloc.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "hps_test.h"

/* ------------------------------------------------------------------ */
/* Helpers                                                             */
/* ------------------------------------------------------------------ */

/* A server on host with options; *port gets the bound port. */
static hps_endpoint *server_on(t_rec *r, const char *host, int workers,
                               int v6only, uint16_t *port) {
  hps_endpoint *ep = NULL;
  assert_int_equal(hps_create(HPS_TCP_SERVER, t_rec_handler, r, &ep), 0);
  assert_int_equal(hps_setopt(ep, HPS_OPT_WORKERS, workers), 0);
  if (v6only >= 0)
    assert_int_equal(hps_setopt(ep, HPS_OPT_IPV6_ONLY, v6only), 0);
  assert_int_equal(hps_start(ep, host, 0), 0);
  assert_int_equal(hps_listen_address(ep, NULL, 0, port), 0);
  assert_true(*port != 0);
  return ep;
}

/* Each of n fresh clients sends `rounds` messages and reads each back. */
static void echo_clients(const char *host, uint16_t port, int n, int rounds) {
  int fds[16], i, k;
  char msg[64], got[64];
  assert_true(n <= 16);
  for (i = 0; i < n; i++) fds[i] = t_connect(host, port);
  for (k = 0; k < rounds; k++)
    for (i = 0; i < n; i++) {
      size_t len = (size_t)snprintf(msg, sizeof(msg), "client %d round %d",
                                    i, k);
      t_send_all(fds[i], msg, len);
      if (t_recv_exact(fds[i], got, len, T_WAIT_MS) != len)
        fail_msg("client %d round %d: echo did not come back", i, k);
      assert_memory_equal(got, msg, len);
    }
  for (i = 0; i < n; i++) close(fds[i]);
}

/* Wait (deadline) until *flag != 0; the flag is set under r->mu by hooks,
 * which then broadcast r->cv. */
static int wait_flag(t_rec *r, int *flag, int timeout_ms) {
  struct timespec ts;
  int ok;
  t_deadline(&ts, timeout_ms);
  pthread_mutex_lock(&r->mu);
  while (!(ok = *flag))
    if (pthread_cond_timedwait(&r->cv, &r->mu, &ts) == ETIMEDOUT) {
      ok = *flag;
      break;
    }
  pthread_mutex_unlock(&r->mu);
  return ok ? 0 : -1;
}

static void set_flag(t_rec *r, int *flag) {
  pthread_mutex_lock(&r->mu);
  *flag = 1;
  pthread_cond_broadcast(&r->cv);
  pthread_mutex_unlock(&r->mu);
}

static int ipv6_loopback_available(void) {
  struct sockaddr_in6 a;
  int fd = socket(AF_INET6, SOCK_STREAM, 0), ok;
  if (fd < 0) return 0;
  memset(&a, 0, sizeof(a));
  a.sin6_family = AF_INET6;
  a.sin6_addr = in6addr_loopback;
  ok = bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
  close(fd);
  return ok;
}

/* After a stop: the last event is SHUTDOWN, it came once, and nothing at
 * all follows within 200 ms. */
static void expect_shutdown_last_and_quiet(t_rec *r) {
  t_ev last;
  assert_int_equal(t_rec_count(r, HPS_EV_SHUTDOWN), 1);
  assert_int_equal(t_rec_last(r, &last), 0);
  assert_int_equal(last.type, HPS_EV_SHUTDOWN);
  assert_int_equal(last.conn, 0);
  if (t_rec_quiet(r, 200) != 0) fail_msg("an event arrived after SHUTDOWN");
  assert_int_equal(t_rec_count(r, HPS_EV_SHUTDOWN), 1);
}

/* ------------------------------------------------------------------ */
/* Create, states, defaults                                            */
/* ------------------------------------------------------------------ */

static void create_gives_created_state_and_the_role(void **state) {
  static const int roles[] = {HPS_TCP_SERVER, HPS_TCP_AGENT, HPS_TCP_CLIENT};
  t_rec r;
  hps_endpoint *ep;
  size_t i;
  (void)state;
  t_rec_init(&r);
  for (i = 0; i < 3; i++) {
    ep = NULL;
    assert_int_equal(hps_create(roles[i], t_rec_handler, &r, &ep), 0);
    assert_non_null(ep);
    assert_int_equal(hps_state(ep), HPS_STATE_CREATED);
    assert_int_equal(hps_role(ep), roles[i]);
    assert_int_equal(hps_conn_count(ep), 0);
    assert_int_equal(hps_free(ep), 0);
  }
  assert_int_equal(t_rec_total(&r), 0);
  t_rec_free(&r);
}

/* HPS_OPT_MAX_CONNECTIONS's documented default for TCP roles, from the
 * soft descriptor limit L: L - max(64, L/8), at least L/2, at most 100000. */
static int64_t max_conns_documented(void) {
  struct rlimit rl;
  int64_t lim, room, n;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY ||
      rl.rlim_cur > 1000000)
    return 100000;
  lim = (int64_t)rl.rlim_cur;
  room = lim / 8 > 64 ? lim / 8 : 64;
  n = lim - room;
  if (n < lim / 2)
    n = lim / 2;
  if (n < 1)
    n = 1;
  return n > 100000 ? 100000 : n;
}

static void every_option_has_its_documented_default(void **state) {
  static const int roles[] = {HPS_TCP_SERVER, HPS_TCP_AGENT, HPS_TCP_CLIENT};
  long cores = sysconf(_SC_NPROCESSORS_ONLN);
  const struct {
    int opt;
    const char *name;
    int64_t def;
  } defs[] = {
      {HPS_OPT_WORKERS, "WORKERS",
       cores < 1    ? 1
       : cores > 64 ? 64
                    : cores},
      {HPS_OPT_RECV_MODEL, "RECV_MODEL", HPS_MODEL_PUSH},
      {HPS_OPT_SNDBUF, "SNDBUF", 0},
      {HPS_OPT_RCVBUF, "RCVBUF", 0},
      {HPS_OPT_MAX_CONNECTIONS, "MAX_CONNECTIONS", max_conns_documented()},
      {HPS_OPT_KEEPALIVE_TIME, "KEEPALIVE_TIME", 0},
      {HPS_OPT_KEEPALIVE_INTERVAL, "KEEPALIVE_INTERVAL", 20000},
      {HPS_OPT_NODELAY, "NODELAY", 1},
      {HPS_OPT_REUSE_ADDR, "REUSE_ADDR", 1},
      {HPS_OPT_IPV6_ONLY, "IPV6_ONLY", 0},
      {HPS_OPT_MAX_SEND_QUEUE, "MAX_SEND_QUEUE", 16 << 20},
      {HPS_OPT_FREE_POOL, "FREE_POOL", 1024},
      {HPS_OPT_CONNECT_TIMEOUT, "CONNECT_TIMEOUT", 10000},
      {HPS_OPT_EVENTS, "EVENTS", HPS_EVENTS_ALL},
      {HPS_OPT_BACKLOG, "BACKLOG", 1024},
      {HPS_OPT_PACK_FLAG, "PACK_FLAG", 0},
      {HPS_OPT_PACK_MAX, "PACK_MAX", 262144},
      {HPS_OPT_PULL_MAX, "PULL_MAX", 4 << 20},
      {HPS_OPT_SILENCE_TIMEOUT, "SILENCE_TIMEOUT", 0},
  };
  t_rec r;
  hps_endpoint *ep;
  size_t i, k;
  int64_t v;
  (void)state;
  t_rec_init(&r);
  for (k = 0; k < 3; k++) {
    assert_int_equal(hps_create(roles[k], t_rec_handler, &r, &ep), 0);
    for (i = 0; i < sizeof(defs) / sizeof(defs[0]); i++) {
      v = -12345;
      assert_int_equal(hps_getopt(ep, defs[i].opt, &v), 0);
      if (v != defs[i].def)
        fail_msg("role %d: HPS_OPT_%s default is %lld, documented %lld",
                 roles[k], defs[i].name, (long long)v,
                 (long long)defs[i].def);
    }
    assert_int_equal(hps_free(ep), 0);
  }
  t_rec_free(&r);
}

static void start_stop_moves_through_the_states(void **state) {
  t_rec r;
  hps_endpoint *ep;
  uint16_t port;
  (void)state;
  t_rec_init(&r);
  assert_int_equal(hps_create(HPS_TCP_SERVER, t_rec_handler, &r, &ep), 0);
  assert_int_equal(hps_state(ep), HPS_STATE_CREATED);
  assert_int_equal(hps_setopt(ep, HPS_OPT_WORKERS, 2), 0);
  assert_int_equal(hps_start(ep, "127.0.0.1", 0), 0);
  assert_int_equal(hps_state(ep), HPS_STATE_STARTED);
  assert_int_equal(hps_listen_address(ep, NULL, 0, &port), 0);
  assert_int_equal(t_rec_count(&r, HPS_EV_SHUTDOWN), 0);
  assert_int_equal(hps_stop(ep), 0);
  /* hps_stop from outside returns after SHUTDOWN was delivered */
  assert_int_equal(hps_state(ep), HPS_STATE_STOPPED);
  expect_shutdown_last_and_quiet(&r);
  /* stopping a stopped endpoint: 0, and no second SHUTDOWN */
  assert_int_equal(hps_stop(ep), 0);
  assert_int_equal(hps_state(ep), HPS_STATE_STOPPED);
  assert_int_equal(t_rec_count(&r, HPS_EV_SHUTDOWN), 1);
  assert_true(t_try_connect("127.0.0.1", port) < 0);
  assert_int_equal(hps_free(ep), 0);
  t_rec_free(&r);
}

static void stop_of_a_never_started_endpoint_is_estate(void **state) {
  static const int roles[] = {HPS_TCP_SERVER, HPS_TCP_AGENT, HPS_TCP_CLIENT};
  t_rec r;
  hps_endpoint *ep;
  size_t i;
  (void)state;
  t_rec_init(&r);
  for (i = 0; i < 3; i++) {
    assert_int_equal(hps_create(roles[i], t_rec_handler, &r, &ep), 0);
    assert_int_equal(hps_stop(ep), HPS_ESTATE);
    assert_int_equal(hps_state(ep), HPS_STATE_CREATED);
    assert_int_equal(hps_free(ep), 0);
  }
  assert_int_equal(t_rec_total(&r), 0); /* no SHUTDOWN for a never-run */
  t_rec_free(&r);
}

static void server_without_host_listens_on_all_ipv4(void **state) {
  t_rec r;
  hps_endpoint *ep;
  char host[64];
  uint16_t port;
  const char *hosts[] = {NULL, ""};
  int i;
  (void)state;
  for (i = 0; i < 2; i++) {
    t_rec_init(&r);
    r.echo = 1;
    assert_int_equal(hps_create(HPS_TCP_SERVER, t_rec_handler, &r, &ep), 0);
    assert_int_equal(hps_setopt(ep, HPS_OPT_WORKERS, 1), 0);
    assert_int_equal(hps_start(ep, hosts[i], 0), 0);
    assert_int_equal(hps_listen_address(ep, host, sizeof(host), &port), 0);
    assert_string_equal(host, "0.0.0.0");
    echo_clients("127.0.0.1", port, 1, 1);
    assert_int_equal(hps_free(ep), 0);
    t_rec_free(&r);
  }
}

/* A connection accepted on a wildcard listener has the address it came in
 * on as its local address, not the wildcard. */
static void wildcard_listener_reports_the_real_local_address(void **state) {
  t_rec r;
  hps_endpoint *ep;
  char host[64];
  uint16_t port, lport = 0;
  t_ev a;
  int fd;
  (void)state;
  t_rec_init(&r);
  assert_int_equal(hps_create(HPS_TCP_SERVER, t_rec_handler, &r, &ep), 0);
  assert_int_equal(hps_setopt(ep, HPS_OPT_WORKERS, 1), 0);
  assert_int_equal(hps_start(ep, "0.0.0.0", 0), 0);
  assert_int_equal(hps_listen_address(ep, NULL, 0, &port), 0);
  fd = t_connect("127.0.0.1", port);
  assert_int_equal(t_rec_wait(&r, HPS_EV_HANDSHAKE, 1, T_WAIT_MS), 0);
  assert_int_equal(t_rec_get(&r, HPS_EV_ACCEPT, 0, &a), 0);
  assert_int_equal(hps_local_address(ep, a.conn, host, sizeof(host), &lport), 0);
  assert_string_equal(host, "127.0.0.1");
  assert_int_equal(lport, port);
  close(fd);
  assert_int_equal(hps_free(ep), 0);
  t_rec_free(&r);
}

/* ------------------------------------------------------------------ */
/* Restart                                                             */
/* ------------------------------------------------------------------ */

static void restart_after_stop_serves_on_a_new_port(void **state) {
  t_rec r;
  hps_endpoint *ep;
  uint16_t p1, p2;
  int64_t v;
  (void)state;
  t_rec_init(&r);
  r.echo = 1;
  ep = server_on(&r, "127.0.0.1", 1, -1, &p1);
  echo_clients("127.0.0.1", p1, 2, 2);
  assert_int_equal(hps_stop(ep), 0);
  assert_int_equal(hps_state(ep), HPS_STATE_STOPPED);
  assert_int_equal(t_rec_count(&r, HPS_EV_SHUTDOWN), 1);
  /* options may change between runs */
  assert_int_equal(hps_setopt(ep, HPS_OPT_WORKERS, 3), 0);
  assert_int_equal(hps_getopt(ep, HPS_OPT_WORKERS, &v), 0);
  assert_int_equal(v, 3);
  assert_int_equal(hps_start(ep, "127.0.0.1", 0), 0);
  assert_int_equal(hps_state(ep), HPS_STATE_STARTED);
  assert_int_equal(hps_listen_address(ep, NULL, 0, &p2), 0);
  assert_true(p2 != 0);
  echo_clients("127.0.0.1", p2, 4, 2);
  if (p2 != p1) assert_true(t_try_connect("127.0.0.1", p1) < 0);
  assert_int_equal(hps_stop(ep), 0);
  assert_int_equal(t_rec_count(&r, HPS_EV_SHUTDOWN), 2);
  assert_int_equal(t_rec_count(&r, HPS_EV_ACCEPT), 6);
  assert_int_equal(t_rec_count(&r, HPS_EV_CLOSE), 6);
  assert_int_equal(hps_free(ep), 0);
  t_rec_free(&r);
}

static void agent_restart_connects_again(void **state) {
  t_rec sr, ar;
  hps_endpoint *srv, *agent;
  uint16_t port;
  hps_conn_id id1 = 0, id2 = 0;
  int run;
  (void)state;
  t_rec_init(&sr);
  t_rec_init(&ar);
  srv = t_server(&sr, 1, HPS_MODEL_PUSH, &port);
  assert_int_equal(hps_create(HPS_TCP_AGENT, t_rec_handler, &ar, &agent), 0);
  assert_int_equal(hps_setopt(agent, HPS_OPT_WORKERS, 2), 0);
  for (run = 1; run <= 2; run++) {
    assert_int_equal(hps_start(agent, NULL, 0), 0);
    assert_int_equal(hps_connect(agent, "127.0.0.1", port,
                                 run == 1 ? &id1 : &id2),
                     0);
    assert_int_equal(t_rec_wait(&ar, HPS_EV_CONNECT, run, T_WAIT_MS), 0);
    assert_int_equal(hps_stop(agent), 0);
    assert_int_equal(t_rec_count(&ar, HPS_EV_CLOSE), run);
    assert_int_equal(t_rec_count(&ar, HPS_EV_SHUTDOWN), run);
  }
  assert_int_equal(hps_free(agent), 0);
  assert_int_equal(hps_free(srv), 0);
  t_rec_free(&ar);
  t_rec_free(&sr);
}

/* The header: IDs are never reused within an endpoint's lifetime, so a
 * stale ID never reaches another connection; a restart is within the
 * lifetime. */
static void id_from_before_a_restart_never_reaches_a_new_connection(
    void **state) {
  t_rec r;
  hps_endpoint *ep;
  uint16_t port;
  t_ev a, b;
  int fd;
  char buf[4];
  (void)state;
  t_rec_init(&r);
  ep = server_on(&r, "127.0.0.1", 1, -1, &port);
  fd = t_connect("127.0.0.1", port);
  assert_int_equal(t_rec_wait(&r, HPS_EV_HANDSHAKE, 1, T_WAIT_MS), 0);
  assert_int_equal(t_rec_get(&r, HPS_EV_ACCEPT, 0, &a), 0);
  assert_int_equal(hps_stop(ep), 0);
  close(fd);
  assert_int_equal(hps_start(ep, "127.0.0.1", 0), 0);
  assert_int_equal(hps_listen_address(ep, NULL, 0, &port), 0);
  fd = t_connect("127.0.0.1", port);
  assert_int_equal(t_rec_wait(&r, HPS_EV_HANDSHAKE, 2, T_WAIT_MS), 0);
  assert_int_equal(t_rec_get(&r, HPS_EV_ACCEPT, 1, &b), 0);
  if (a.conn == b.conn)
    fail_msg("the first connection after a restart got the ID %#llx of a "
             "connection of the previous run",
             (unsigned long long)a.conn);
  assert_int_equal(hps_send(ep, a.conn, "BAD", 3), HPS_ENOTFOUND);
  assert_int_equal(hps_send(ep, b.conn, "OK", 2), 0);
  assert_int_equal(t_recv_exact(fd, buf, 2, T_WAIT_MS), 2);
  assert_memory_equal(buf, "OK", 2);
  close(fd);
  assert_int_equal(hps_free(ep), 0);
  t_rec_free(&r);
}

/* ------------------------------------------------------------------ */
/* Stop with live connections                                          */
/* ------------------------------------------------------------------ */

/* Every accepted ID got exactly one CLOSE, with op CLOSE and error 0. */
static void expect_one_local_close_each(t_rec *r, int opened_type, int n) {
  int i, j;
  t_ev o, c;
  assert_int_equal(t_rec_count(r, HPS_EV_CLOSE), n);
  for (i = 0; i < n; i++) {
    int seen = 0;
    assert_int_equal(t_rec_get(r, opened_type, i, &o), 0);
    for (j = 0; j < n; j++) {
      assert_int_equal(t_rec_get(r, HPS_EV_CLOSE, j, &c), 0);
      if (c.conn != o.conn) continue;
      seen++;
      if (c.op != HPS_OP_CLOSE || c.error != 0)
        fail_msg("CLOSE of %#llx: op %d error %d (%s), want op CLOSE, 0",
                 (unsigned long long)c.conn, c.op, c.error,
                 hps_err_name(c.error));
    }
    if (seen != 1)
      fail_msg("connection %#llx got %d CLOSE events",
               (unsigned long long)o.conn, seen);
  }
}

static void stop_closes_every_connection_once_then_shutdown(void **state) {
  t_rec r;
  hps_endpoint *ep;
  uint16_t port;
  int fds[6], i;
  (void)state;
  t_rec_init(&r);
  ep = server_on(&r, "127.0.0.1", 2, -1, &port);
  for (i = 0; i < 6; i++) fds[i] = t_connect("127.0.0.1", port);
  assert_int_equal(t_rec_wait(&r, HPS_EV_HANDSHAKE, 6, T_WAIT_MS), 0);
  assert_int_equal(hps_conn_count(ep), 6);
  assert_int_equal(hps_stop(ep), 0);
  expect_one_local_close_each(&r, HPS_EV_ACCEPT, 6);
  expect_shutdown_last_and_quiet(&r);
  assert_int_equal(hps_conn_count(ep), 0);
  for (i = 0; i < 6; i++) {
    if (!t_wait_eof(fds[i], T_WAIT_MS))
      fail_msg("client %d saw no EOF after the server stopped", i);
    close(fds[i]);
  }
  assert_int_equal(hps_free(ep), 0);
  assert_int_equal(t_rec_count(&r, HPS_EV_SHUTDOWN), 1);
  t_rec_free(&r);
}

static void agent_stop_closes_every_connection_once_then_shutdown(
    void **state) {
  t_rec sr, ar;
  hps_endpoint *srv, *agent;
  uint16_t port;
  hps_conn_id ids[4];
  int i;
  t_ev c;
  (void)state;
  t_rec_init(&sr);
  t_rec_init(&ar);
  srv = t_server(&sr, 1, HPS_MODEL_PUSH, &port);
  assert_int_equal(hps_create(HPS_TCP_AGENT, t_rec_handler, &ar, &agent), 0);
  assert_int_equal(hps_setopt(agent, HPS_OPT_WORKERS, 2), 0);
  assert_int_equal(hps_start(agent, NULL, 0), 0);
  for (i = 0; i < 4; i++)
    assert_int_equal(hps_connect(agent, "127.0.0.1", port, &ids[i]), 0);
  assert_int_equal(t_rec_wait(&ar, HPS_EV_HANDSHAKE, 4, T_WAIT_MS), 0);
  assert_int_equal(t_rec_wait(&sr, HPS_EV_HANDSHAKE, 4, T_WAIT_MS), 0);
  assert_int_equal(hps_stop(agent), 0);
  expect_one_local_close_each(&ar, HPS_EV_CONNECT, 4);
  expect_shutdown_last_and_quiet(&ar);
  /* the server saw each peer close normally */
  assert_int_equal(t_rec_wait(&sr, HPS_EV_CLOSE, 4, T_WAIT_MS), 0);
  for (i = 0; i < 4; i++) {
    assert_int_equal(t_rec_get(&sr, HPS_EV_CLOSE, i, &c), 0);
    assert_int_equal(c.op, HPS_OP_RECEIVE);
    assert_int_equal(c.error, 0);
  }
  assert_int_equal(hps_free(agent), 0);
  assert_int_equal(hps_free(srv), 0);
  t_rec_free(&ar);
  t_rec_free(&sr);
}

static void free_of_a_running_endpoint_stops_it(void **state) {
  t_rec r;
  hps_endpoint *ep;
  uint16_t port;
  int fd;
  t_ev c;
  (void)state;
  t_rec_init(&r);
  ep = server_on(&r, "127.0.0.1", 2, -1, &port);
  fd = t_connect("127.0.0.1", port);
  assert_int_equal(t_rec_wait(&r, HPS_EV_HANDSHAKE, 1, T_WAIT_MS), 0);
  assert_int_equal(hps_free(ep), 0);
  /* everything was delivered before hps_free returned */
  assert_int_equal(t_rec_count(&r, HPS_EV_CLOSE), 1);
  assert_int_equal(t_rec_get(&r, HPS_EV_CLOSE, 0, &c), 0);
  assert_int_equal(c.op, HPS_OP_CLOSE);
  assert_int_equal(c.error, 0);
  expect_shutdown_last_and_quiet(&r);
  assert_true(t_wait_eof(fd, T_WAIT_MS));
  close(fd);
  assert_true(t_try_connect("127.0.0.1", port) < 0);
  t_rec_free(&r);
}

/* ------------------------------------------------------------------ */
/* Calls from inside handlers                                          */
/* ------------------------------------------------------------------ */

typedef struct in_handler {
  int at_type;    /* the event type whose handler probes */
  int done;       /* set under r->mu when the probe ran */
  int stop_rc, state_after_stop;
  int free_rc, wait_rc, wait0_rc, start_rc;
  int do_stop;    /* call hps_stop in the handler */
} in_handler;

static int probe_hook(t_rec *r, const hps_event *ev) {
  in_handler *h = r->user;
  if (ev->type != h->at_type || h->done) return HPS_HR_OK;
  /* hps_wait(0) first: it never blocks, and if it is not refused the
   * blocking calls below would hang instead of failing */
  h->wait0_rc = hps_wait(ev->endpoint, 0);
  if (h->wait0_rc == HPS_EINLOOP) {
    h->wait_rc = hps_wait(ev->endpoint, -1);
    h->free_rc = hps_free(ev->endpoint);
  }
  h->start_rc = hps_start(ev->endpoint, "127.0.0.1", 0);
  if (h->do_stop) {
    h->stop_rc = hps_stop(ev->endpoint);
    h->state_after_stop = hps_state(ev->endpoint);
  }
  set_flag(r, &h->done);
  return HPS_HR_OK;
}

static void stop_inside_receive_handler_returns_at_once(void **state) {
  t_rec r;
  hps_endpoint *ep;
  uint16_t port;
  in_handler h;
  int fd;
  t_ev c;
  (void)state;
  memset(&h, 0, sizeof(h));
  h.at_type = HPS_EV_RECEIVE;
  h.do_stop = 1;
  h.stop_rc = 12345;
  t_rec_init(&r);
  r.hook = probe_hook;
  r.user = &h;
  ep = server_on(&r, "127.0.0.1", 2, -1, &port);
  fd = t_connect("127.0.0.1", port);
  t_send_all(fd, "stop", 4);
  assert_int_equal(hps_wait(ep, T_WAIT_MS), 0);
  assert_int_equal(wait_flag(&r, &h.done, T_WAIT_MS), 0);
  assert_int_equal(h.stop_rc, 0);
  assert_int_equal(h.state_after_stop, HPS_STATE_STOPPING);
  assert_int_equal(hps_state(ep), HPS_STATE_STOPPED);
  /* RECEIVE, then the connection's CLOSE, then SHUTDOWN */
  assert_int_equal(t_rec_count(&r, HPS_EV_CLOSE), 1);
  assert_int_equal(t_rec_get(&r, HPS_EV_CLOSE, 0, &c), 0);
  assert_int_equal(c.op, HPS_OP_CLOSE);
  assert_int_equal(c.error, 0);
  assert_true(t_rec_index(&r, HPS_EV_RECEIVE, 0) <
              t_rec_index(&r, HPS_EV_CLOSE, 0));
  expect_shutdown_last_and_quiet(&r);
  assert_true(t_wait_eof(fd, T_WAIT_MS));
  close(fd);
  assert_int_equal(hps_free(ep), 0);
  t_rec_free(&r);
}

/* From a handler of type `at`, hps_free and hps_wait are refused with
 * HPS_EINLOOP (and hps_start with HPS_ESTATE); the endpoint is unharmed. */
static void free_and_wait_refused_in_handler(int at) {
  t_rec r;
  hps_endpoint *ep;
  uint16_t port;
  in_handler h;
  int fd;
  memset(&h, 0, sizeof(h));
  h.at_type = at;
  h.free_rc = h.wait_rc = 12345;
  t_rec_init(&r);
  r.hook = probe_hook;
  r.user = &h;
  ep = server_on(&r, "127.0.0.1", 1, -1, &port);
  fd = t_connect("127.0.0.1", port);
  t_send_all(fd, "x", 1);
  if (at == HPS_EV_CLOSE) close(fd);
  if (at == HPS_EV_SHUTDOWN) {
    assert_int_equal(t_rec_wait(&r, HPS_EV_RECEIVE, 1, T_WAIT_MS), 0);
    assert_int_equal(hps_stop(ep), 0);
  }
  assert_int_equal(wait_flag(&r, &h.done, T_WAIT_MS), 0);
  if (h.wait0_rc != HPS_EINLOOP)
    fail_msg("hps_wait(0) in the %d handler gave %s, not HPS_EINLOOP", at,
             hps_err_name(h.wait0_rc));
  assert_int_equal(h.wait_rc, HPS_EINLOOP);
  assert_int_equal(h.free_rc, HPS_EINLOOP);
  assert_int_equal(h.start_rc, HPS_ESTATE);
  if (at != HPS_EV_SHUTDOWN) {
    assert_int_equal(hps_state(ep), HPS_STATE_STARTED);
    assert_int_equal(hps_stop(ep), 0);
  }
  expect_shutdown_last_and_quiet(&r);
  if (at != HPS_EV_CLOSE) close(fd);
  assert_int_equal(hps_free(ep), 0);
  t_rec_free(&r);
}

static void free_and_wait_inside_receive_handler_are_einloop(void **state) {
  (void)state;
  free_and_wait_refused_in_handler(HPS_EV_RECEIVE);
}

static void free_and_wait_inside_close_handler_are_einloop(void **state) {
  (void)state;
  free_and_wait_refused_in_handler(HPS_EV_CLOSE);
}

static void free_and_wait_inside_shutdown_handler_are_einloop(void **state) {
  (void)state;
  free_and_wait_refused_in_handler(HPS_EV_SHUTDOWN);
}

/* SHUTDOWN runs on a loop thread too: hps_stop there returns 0 at once
 * (the stop is under way) instead of waiting for itself. */
static int stop_in_shutdown_hook(t_rec *r, const hps_event *ev) {
  in_handler *h = r->user;
  if (ev->type != HPS_EV_SHUTDOWN) return HPS_HR_OK;
  h->wait0_rc = hps_wait(ev->endpoint, 0);
  if (h->wait0_rc == HPS_EINLOOP) h->stop_rc = hps_stop(ev->endpoint);
  set_flag(r, &h->done);
  return HPS_HR_OK;
}

static void stop_inside_shutdown_handler_does_not_deadlock(void **state) {
  t_rec r;
  hps_endpoint *ep;
  uint16_t port;
  in_handler h;
  (void)state;
  memset(&h, 0, sizeof(h));
  h.stop_rc = 12345;
  t_rec_init(&r);
  r.hook = stop_in_shutdown_hook;
  r.user = &h;
  ep = server_on(&r, "127.0.0.1", 2, -1, &port);
  assert_int_equal(hps_stop(ep), 0);
  assert_int_equal(wait_flag(&r, &h.done, T_WAIT_MS), 0);
  assert_int_equal(h.wait0_rc, HPS_EINLOOP);
  assert_int_equal(h.stop_rc, 0);
  expect_shutdown_last_and_quiet(&r);
  assert_int_equal(hps_free(ep), 0);
  t_rec_free(&r);
}

/* Two endpoints whose handlers stop each other at the same moment: each
 * hps_stop runs on a loop thread of the other endpoint, so it only begins
 * the stop (waiting there would wait for a loop that waits in turn). */
typedef struct cross_stop {
  hps_endpoint *other;
  t_rec *other_rec;
  struct cross_stop *peer;
  int entered, done, stop_rc, other_state;
} cross_stop;

static int cross_stop_hook(t_rec *r, const hps_event *ev) {
  cross_stop *x = r->user;
  if (ev->type != HPS_EV_ACCEPT) return HPS_HR_OK;
  set_flag(r, &x->entered);
  /* both handlers run before either stops: the deadlock's set-up */
  (void)wait_flag(x->other_rec, &x->peer->entered, T_WAIT_MS);
  x->stop_rc = hps_stop(x->other);
  x->other_state = hps_state(x->other);
  set_flag(r, &x->done);
  return HPS_HR_OK;
}

static void handlers_stopping_each_other_do_not_deadlock(void **state) {
  t_rec ra, rb;
  cross_stop xa, xb;
  hps_endpoint *a, *b;
  uint16_t pa, pb;
  int fa, fb;
  (void)state;
  memset(&xa, 0, sizeof(xa));
  memset(&xb, 0, sizeof(xb));
  xa.stop_rc = xb.stop_rc = 12345;
  t_rec_init(&ra);
  t_rec_init(&rb);
  ra.hook = rb.hook = cross_stop_hook;
  ra.user = &xa;
  rb.user = &xb;
  a = server_on(&ra, "127.0.0.1", 1, -1, &pa);
  b = server_on(&rb, "127.0.0.1", 1, -1, &pb);
  xa.other = b;
  xa.other_rec = &rb;
  xa.peer = &xb;
  xb.other = a;
  xb.other_rec = &ra;
  xb.peer = &xa;
  fa = t_connect("127.0.0.1", pa);
  fb = t_connect("127.0.0.1", pb);
  if (wait_flag(&ra, &xa.done, 3 * T_WAIT_MS) != 0 ||
      wait_flag(&rb, &xb.done, 3 * T_WAIT_MS) != 0)
    fail_msg("the two handlers' hps_stop calls deadlocked");
  assert_int_equal(xa.stop_rc, 0);
  assert_int_equal(xb.stop_rc, 0);
  /* begun, not necessarily done (the other handler may have returned) */
  assert_true(xa.other_state == HPS_STATE_STOPPING ||
              xa.other_state == HPS_STATE_STOPPED);
  assert_true(xb.other_state == HPS_STATE_STOPPING ||
              xb.other_state == HPS_STATE_STOPPED);
  assert_int_equal(hps_wait(a, T_WAIT_MS), 0);
  assert_int_equal(hps_wait(b, T_WAIT_MS), 0);
  assert_int_equal(hps_state(a), HPS_STATE_STOPPED);
  assert_int_equal(hps_state(b), HPS_STATE_STOPPED);
  expect_shutdown_last_and_quiet(&ra);
  expect_shutdown_last_and_quiet(&rb);
  assert_true(t_wait_eof(fa, T_WAIT_MS));
  assert_true(t_wait_eof(fb, T_WAIT_MS));
  close(fa);
  close(fb);
  assert_int_equal(hps_free(a), 0);
  assert_int_equal(hps_free(b), 0);
  t_rec_free(&ra);
  t_rec_free(&rb);
}

/* ------------------------------------------------------------------ */
/* Cycles and leaks                                                    */
/* ------------------------------------------------------------------ */

/* What each open descriptor is, for a failure message. */
static void dump_fds(void) {
  char path[64], target[256];
  int fd;
  for (fd = 0; fd < 1024; fd++) {
    ssize_t n;
    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    n = readlink(path, target, sizeof(target) - 1);
    if (n < 0) continue;
    target[n] = '\0';
    print_message("fd %d -> %s\n", fd, target);
  }
}

/* The cycles' peer counts its ACCEPT and CLOSE events (recording them
 * would grow its memory): [0] ACCEPTs, [1] CLOSEs; [2] is how many
 * connections the cycles made to it. Static: outlives a failed test. */
static int peer_ev[3];

/* The cycles' peer handler. */
static int counting_handler(void *user, const hps_event *ev) {
  int *n = user;
  if (ev->type == HPS_EV_ACCEPT) __atomic_add_fetch(&n[0], 1, __ATOMIC_SEQ_CST);
  if (ev->type == HPS_EV_CLOSE) __atomic_add_fetch(&n[1], 1, __ATOMIC_SEQ_CST);
  return HPS_HR_OK;
}

/* Every connection made to the peer was accepted and has had its CLOSE
 * (its socket is closed before that). */
static int peer_all_closed(void *arg) {
  int *n = arg;
  return __atomic_load_n(&n[1], __ATOMIC_SEQ_CST) == n[2] &&
         __atomic_load_n(&n[0], __ATOMIC_SEQ_CST) == n[2];
}

/* The peer has accepted every connection made to it (a connect completes
 * in the kernel before the peer's loop accepts it). */
static int peer_all_accepted(void *arg) {
  int *n = arg;
  return __atomic_load_n(&n[0], __ATOMIC_SEQ_CST) == n[2];
}

/* One create/start/stop/free cycle; every third one opens a connection
 * first (server: a plain client; agent and client: to `port`). */
static void one_cycle(int i, uint16_t port) {
  static const int roles[] = {HPS_TCP_SERVER, HPS_TCP_AGENT, HPS_TCP_CLIENT};
  int role = roles[i % 3];
  int with_conn = (i / 3) % 3 == 0;
  t_rec r;
  hps_endpoint *ep;
  uint16_t lport;
  int fd = -1;
  t_ev a;
  t_rec_init(&r);
  assert_int_equal(hps_create(role, t_rec_handler, &r, &ep), 0);
  assert_int_equal(hps_setopt(ep, HPS_OPT_WORKERS, 2), 0);
  if (role == HPS_TCP_CLIENT) {
    assert_int_equal(hps_start(ep, "127.0.0.1", port), 0);
    assert_int_equal(t_rec_wait(&r, HPS_EV_CONNECT, 1, T_WAIT_MS), 0);
    peer_ev[2]++;
    assert_int_equal(t_poll(peer_all_accepted, peer_ev, T_WAIT_MS), 0);
  } else if (role == HPS_TCP_SERVER) {
    assert_int_equal(hps_start(ep, "127.0.0.1", 0), 0);
    if (with_conn) {
      assert_int_equal(hps_listen_address(ep, NULL, 0, &lport), 0);
      fd = t_connect("127.0.0.1", lport);
      assert_int_equal(t_rec_wait(&r, HPS_EV_HANDSHAKE, 1, T_WAIT_MS), 0);
      assert_int_equal(t_rec_get(&r, HPS_EV_ACCEPT, 0, &a), 0);
      assert_int_equal(hps_send(ep, a.conn, "hi", 2), 0);
    }
  } else {
    assert_int_equal(hps_start(ep, NULL, 0), 0);
    if (with_conn) {
      assert_int_equal(hps_connect(ep, "127.0.0.1", port, NULL), 0);
      assert_int_equal(t_rec_wait(&r, HPS_EV_CONNECT, 1, T_WAIT_MS), 0);
      peer_ev[2]++;
      assert_int_equal(t_poll(peer_all_accepted, peer_ev, T_WAIT_MS), 0);
    }
  }
  assert_int_equal(hps_stop(ep), 0);
  assert_int_equal(hps_free(ep), 0);
  assert_int_equal(t_rec_count(&r, HPS_EV_SHUTDOWN), 1);
  if (fd >= 0) close(fd);
  t_rec_free(&r);
}

static void create_start_stop_free_200_cycles_leak_nothing(void **state) {
  hps_endpoint *peer;
  int i, fds0, fds1;
  uint16_t port;
  size_t mem0, mem1;
  (void)state;
  memset(peer_ev, 0, sizeof(peer_ev));
  /* a peer for agents and clients, counting (not recording) events so
   * its memory does not grow */
  assert_int_equal(hps_create(HPS_TCP_SERVER, counting_handler, peer_ev,
                              &peer),
                   0);
  assert_int_equal(hps_setopt(peer, HPS_OPT_WORKERS, 1), 0);
  assert_int_equal(hps_start(peer, "127.0.0.1", 0), 0);
  assert_int_equal(hps_listen_address(peer, NULL, 0, &port), 0);
  for (i = 0; i < 9; i++) one_cycle(i, port); /* warm-up: caches settle */
  /* the peer closes its side of the last connection asynchronously */
  assert_int_equal(t_poll(peer_all_closed, peer_ev, T_WAIT_MS), 0);
  fds0 = t_count_fds();
  mem0 = mallinfo2().uordblks;
  for (i = 0; i < 200; i++) one_cycle(i, port);
  assert_int_equal(t_poll(peer_all_closed, peer_ev, T_WAIT_MS), 0);
  mem1 = mallinfo2().uordblks;
  fds1 = t_count_fds();
  if (fds1 != fds0) {
    dump_fds();
    fail_msg("open descriptors: %d before 200 cycles, %d after", fds0, fds1);
  }
  /* glibc's heap in use (0 under ASan, which checks leaks itself); a leak
   * of even ~100 bytes per cycle would show */
  if (mem1 > mem0 + 16384)
    fail_msg("heap in use grew from %zu to %zu over 200 cycles", mem0, mem1);
  assert_int_equal(hps_free(peer), 0);
}

/* ------------------------------------------------------------------ */
/* Addresses, workers                                                  */
/* ------------------------------------------------------------------ */

static void ipv6_loopback_server_echoes(void **state) {
  t_rec r;
  hps_endpoint *ep;
  uint16_t port, rport;
  char host[64];
  t_ev a;
  (void)state;
  if (!ipv6_loopback_available()) skip();
  t_rec_init(&r);
  r.echo = 1;
  ep = server_on(&r, "::1", 2, -1, &port);
  assert_int_equal(hps_listen_address(ep, host, sizeof(host), NULL), 0);
  assert_string_equal(host, "::1");
  echo_clients("::1", port, 3, 2);
  assert_int_equal(t_rec_get(&r, HPS_EV_ACCEPT, 0, &a), 0);
  assert_int_equal(t_rec_wait(&r, HPS_EV_CLOSE, 3, T_WAIT_MS), 0);
  assert_int_equal(hps_free(ep), 0);
  t_rec_free(&r);

  /* the accepted connection's addresses are IPv6 */
  t_rec_init(&r);
  ep = server_on(&r, "::1", 1, -1, &port);
  {
    int fd = t_connect("::1", port);
    assert_int_equal(t_rec_wait(&r, HPS_EV_HANDSHAKE, 1, T_WAIT_MS), 0);
    assert_int_equal(t_rec_get(&r, HPS_EV_ACCEPT, 0, &a), 0);
    assert_int_equal(hps_remote_address(ep, a.conn, host, 46, &rport), 0);
    assert_string_equal(host, "::1");
    assert_int_equal(hps_local_address(ep, a.conn, host, 46, &rport), 0);
    assert_string_equal(host, "::1");
    assert_int_equal(rport, port);
    close(fd);
  }
  assert_int_equal(hps_free(ep), 0);
  t_rec_free(&r);
}

static void dual_stack_server_accepts_an_ipv4_client(void **state) {
  t_rec r;
  hps_endpoint *ep;
  uint16_t port;
  char host[64];
  t_ev a;
  (void)state;
  if (!ipv6_loopback_available()) skip();
  t_rec_init(&r);
  r.echo = 1;
  ep = server_on(&r, "::", 2, 0, &port);
  assert_int_equal(hps_listen_address(ep, host, sizeof(host), NULL), 0);
  assert_string_equal(host, "::");
  echo_clients("127.0.0.1", port, 2, 2);
  echo_clients("::1", port, 2, 2);
  assert_int_equal(t_rec_get(&r, HPS_EV_ACCEPT, 0, &a), 0);
  assert_int_equal(t_rec_wait(&r, HPS_EV_CLOSE, 4, T_WAIT_MS), 0);
  assert_int_equal(hps_free(ep), 0);
  t_rec_free(&r);
}

static void ipv6_only_server_refuses_an_ipv4_client(void **state) {
  t_rec r;
  hps_endpoint *ep;
  uint16_t port;
  int fd;
  (void)state;
  if (!ipv6_loopback_available()) skip();
  t_rec_init(&r);
  r.echo = 1;
  ep = server_on(&r, "::", 2, 1, &port);
  fd = t_try_connect("127.0.0.1", port);
  if (fd >= 0) {
    close(fd);
    fail_msg("an IPv4 client reached an IPV6_ONLY server");
  }
  assert_int_equal(fd, -ECONNREFUSED);
  echo_clients("::1", port, 1, 1); /* IPv6 still works */
  assert_int_equal(t_rec_count(&r, HPS_EV_ACCEPT), 1);
  assert_int_equal(hps_free(ep), 0);
  t_rec_free(&r);
}

static void workers(int n) {
  t_rec r;
  hps_endpoint *ep;
  uint16_t port;
  t_rec_init(&r);
  r.echo = 1;
  ep = server_on(&r, "127.0.0.1", n, -1, &port);
  echo_clients("127.0.0.1", port, 12, 3);
  assert_int_equal(t_rec_wait(&r, HPS_EV_CLOSE, 12, T_WAIT_MS), 0);
  assert_int_equal(t_rec_count(&r, HPS_EV_ACCEPT), 12);
  assert_int_equal(r.overlap, 0);
  assert_int_equal(hps_free(ep), 0);
  t_rec_free(&r);
}

static void one_worker_echoes(void **state) {
  (void)state;
  workers(1);
}

static void four_workers_echo(void **state) {
  (void)state;
  workers(4);
}

/* ------------------------------------------------------------------ */
/* PREPARE, ACCEPT results, connection limit                           */
/* ------------------------------------------------------------------ */

typedef struct prep_info {
  int calls, is_socket, conn_zero, same_thread, result;
  uint16_t port;
  pthread_t starter;
  int free_rc, wait_rc;
  int probe_free; /* call hps_free / hps_wait from the handler */
} prep_info;

static int prepare_hook(t_rec *r, const hps_event *ev) {
  prep_info *p = r->user;
  struct stat st;
  struct sockaddr_storage ss;
  socklen_t len = sizeof(ss);
  if (ev->type != HPS_EV_PREPARE) return HPS_HR_OK;
  p->calls++;
  p->is_socket = ev->fd >= 0 && fstat((int)ev->fd, &st) == 0 &&
                 S_ISSOCK(st.st_mode);
  p->conn_zero = ev->conn == 0;
  p->same_thread = pthread_equal(pthread_self(), p->starter);
  if (getsockname((int)ev->fd, (struct sockaddr *)&ss, &len) == 0)
    p->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
  if (p->probe_free) {
    p->wait_rc = hps_wait(ev->endpoint, 0);
    p->free_rc = p->wait_rc == HPS_EINLOOP ? hps_free(ev->endpoint) : 0;
  }
  return p->result;
}

static void server_prepare_fires_once_with_the_listening_socket(
    void **state) {
  t_rec r;
  hps_endpoint *ep;
  uint16_t port;
  prep_info p;
  t_ev ev;
  (void)state;
  memset(&p, 0, sizeof(p));
  p.starter = pthread_self();
  p.result = HPS_HR_OK;
  t_rec_init(&r);
  r.hook = prepare_hook;
  r.user = &p;
  r.echo = 1;
  ep = server_on(&r, "127.0.0.1", 4, -1, &port);
  assert_int_equal(p.calls, 1);
  assert_true(p.is_socket);
  assert_true(p.conn_zero);
  assert_true(p.same_thread);
  assert_int_equal(p.port, port);
  assert_int_equal(t_rec_get(&r, HPS_EV_PREPARE, 0, &ev), 0);
  echo_clients("127.0.0.1", port, 4, 1);
  assert_int_equal(t_rec_count(&r, HPS_EV_PREPARE), 1); /* not per conn */
  assert_int_equal(hps_free(ep), 0);
  assert_int_equal(t_rec_count(&r, HPS_EV_PREPARE), 1);
  t_rec_free(&r);
}

static void server_prepare_error_fails_start_with_ehandler(void **state) {
  t_rec r;
  hps_endpoint *ep;
  uint16_t port;
  prep_info p;
  int workers_n;
  (void)state;
  for (workers_n = 1; workers_n <= 4; workers_n += 3) {
    memset(&p, 0, sizeof(p));
    p.starter = pthread_self();
    p.result = HPS_HR_ERROR;
    t_rec_init(&r);
    r.hook = prepare_hook;
    r.user = &p;
    assert_int_equal(hps_create(HPS_TCP_SERVER, t_rec_handler, &r, &ep), 0);
    assert_int_equal(hps_setopt(ep, HPS_OPT_WORKERS, workers_n), 0);
    assert_int_equal(hps_start(ep, "127.0.0.1", 0), HPS_EHANDLER);
    assert_int_equal(p.calls, 1);
    assert_int_equal(hps_state(ep), HPS_STATE_CREATED);
    assert_int_equal(hps_listen_address(ep, NULL, 0, &port), HPS_ESTATE);
    /* nothing listens on the port PREPARE saw, nothing else was told */
    assert_true(t_try_connect("127.0.0.1", p.port) < 0);
    assert_int_equal(t_rec_total(&r), 1);
    assert_int_equal(t_rec_quiet(&r, 100), 0);
    /* and the endpoint can still be started */
    p.result = HPS_HR_OK;
    assert_int_equal(hps_start(ep, "127.0.0.1", 0), 0);
    assert_int_equal(hps_state(ep), HPS_STATE_STARTED);
    assert_int_equal(hps_free(ep), 0);
    assert_int_equal(t_rec_count(&r, HPS_EV_SHUTDOWN), 1);
    t_rec_free(&r);
  }
}

/* A server's PREPARE runs on the thread calling hps_start: it is a handler
 * all the same, so hps_free is refused there (not a use after free). */
static void free_and_wait_inside_server_prepare_are_einloop(void **state) {
  t_rec r;
  hps_endpoint *ep;
  uint16_t port;
  prep_info p;
  (void)state;
  memset(&p, 0, sizeof(p));
  p.starter = pthread_self();
  p.probe_free = 1;
  p.free_rc = p.wait_rc = 12345;
  t_rec_init(&r);
  r.hook = prepare_hook;
  r.user = &p;
  ep = server_on(&r, "127.0.0.1", 1, -1, &port);
  assert_int_equal(p.calls, 1);
  if (p.wait_rc != HPS_EINLOOP)
    fail_msg("hps_wait in a server's PREPARE gave %s, not HPS_EINLOOP",
             hps_err_name(p.wait_rc));
  assert_int_equal(p.free_rc, HPS_EINLOOP);
  assert_int_equal(hps_state(ep), HPS_STATE_STARTED);
  assert_int_equal(hps_free(ep), 0);
  t_rec_free(&r);
}

static int refuse_accept_hook(t_rec *r, const hps_event *ev) {
  (void)r;
  return ev->type == HPS_EV_ACCEPT ? HPS_HR_ERROR : HPS_HR_OK;
}

static void accept_error_refuses_the_connection_without_close(void **state) {
  t_rec r;
  hps_endpoint *ep;
  uint16_t port;
  int fd;
  (void)state;
  t_rec_init(&r);
  r.hook = refuse_accept_hook;
  ep = server_on(&r, "127.0.0.1", 1, -1, &port);
  fd = t_connect("127.0.0.1", port);
  t_send_all(fd, "hello", 5);
  assert_int_equal(t_rec_wait(&r, HPS_EV_ACCEPT, 1, T_WAIT_MS), 0);
  assert_true(t_wait_eof(fd, T_WAIT_MS));
  close(fd);
  assert_int_equal(t_rec_quiet(&r, 200), 0);
  assert_int_equal(t_rec_count(&r, HPS_EV_HANDSHAKE), 0);
  assert_int_equal(t_rec_count(&r, HPS_EV_RECEIVE), 0);
  assert_int_equal(t_rec_count(&r, HPS_EV_CLOSE), 0);
  assert_int_equal(hps_conn_count(ep), 0);
  assert_int_equal(hps_stop(ep), 0);
  assert_int_equal(t_rec_count(&r, HPS_EV_CLOSE), 0);
  expect_shutdown_last_and_quiet(&r);
  assert_int_equal(hps_free(ep), 0);
  t_rec_free(&r);
}

static void max_connections_refuses_the_extra_client(void **state) {
  t_rec r;
  hps_endpoint *ep;
  uint16_t port;
  int c1, c2, c3, c4;
  char buf[8];
  (void)state;
  t_rec_init(&r);
  r.echo = 1;
  assert_int_equal(hps_create(HPS_TCP_SERVER, t_rec_handler, &r, &ep), 0);
  assert_int_equal(hps_setopt(ep, HPS_OPT_WORKERS, 1), 0);
  assert_int_equal(hps_setopt(ep, HPS_OPT_MAX_CONNECTIONS, 2), 0);
  assert_int_equal(hps_start(ep, "127.0.0.1", 0), 0);
  assert_int_equal(hps_listen_address(ep, NULL, 0, &port), 0);
  c1 = t_connect("127.0.0.1", port);
  c2 = t_connect("127.0.0.1", port);
  assert_int_equal(t_rec_wait(&r, HPS_EV_ACCEPT, 2, T_WAIT_MS), 0);
  c3 = t_connect("127.0.0.1", port);
  if (!t_wait_eof(c3, T_WAIT_MS))
    fail_msg("the third client was not closed by the server");
  close(c3);
  assert_int_equal(t_rec_count(&r, HPS_EV_ACCEPT), 2);
  assert_int_equal(t_rec_count(&r, HPS_EV_CLOSE), 0);
  assert_int_equal(hps_conn_count(ep), 2); /* the refused one never counts */
  /* the two admitted ones work */
  t_send_all(c1, "one", 3);
  assert_int_equal(t_recv_exact(c1, buf, 3, T_WAIT_MS), 3);
  t_send_all(c2, "two", 3);
  assert_int_equal(t_recv_exact(c2, buf, 3, T_WAIT_MS), 3);
  /* a closed one frees its place */
  close(c1);
  assert_int_equal(t_rec_wait(&r, HPS_EV_CLOSE, 1, T_WAIT_MS), 0);
  c4 = t_connect("127.0.0.1", port);
  assert_int_equal(t_rec_wait(&r, HPS_EV_ACCEPT, 3, T_WAIT_MS), 0);
  t_send_all(c4, "four", 4);
  assert_int_equal(t_recv_exact(c4, buf, 4, T_WAIT_MS), 4);
  assert_memory_equal(buf, "four", 4);
  assert_int_equal(hps_free(ep), 0);
  assert_int_equal(t_rec_count(&r, HPS_EV_ACCEPT), 3);
  assert_int_equal(t_rec_count(&r, HPS_EV_CLOSE), 3);
  close(c2);
  close(c4);
  t_rec_free(&r);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(create_gives_created_state_and_the_role),
      cmocka_unit_test(every_option_has_its_documented_default),
      cmocka_unit_test(start_stop_moves_through_the_states),
      cmocka_unit_test(stop_of_a_never_started_endpoint_is_estate),
      cmocka_unit_test(server_without_host_listens_on_all_ipv4),
      cmocka_unit_test(wildcard_listener_reports_the_real_local_address),
      cmocka_unit_test(restart_after_stop_serves_on_a_new_port),
      cmocka_unit_test(agent_restart_connects_again),
      cmocka_unit_test(id_from_before_a_restart_never_reaches_a_new_connection),
      cmocka_unit_test(stop_closes_every_connection_once_then_shutdown),
      cmocka_unit_test(agent_stop_closes_every_connection_once_then_shutdown),
      cmocka_unit_test(free_of_a_running_endpoint_stops_it),
      cmocka_unit_test(stop_inside_receive_handler_returns_at_once),
      cmocka_unit_test(free_and_wait_inside_receive_handler_are_einloop),
      cmocka_unit_test(free_and_wait_inside_close_handler_are_einloop),
      cmocka_unit_test(free_and_wait_inside_shutdown_handler_are_einloop),
      cmocka_unit_test(stop_inside_shutdown_handler_does_not_deadlock),
      cmocka_unit_test(handlers_stopping_each_other_do_not_deadlock),
      cmocka_unit_test(create_start_stop_free_200_cycles_leak_nothing),
      cmocka_unit_test(ipv6_loopback_server_echoes),
      cmocka_unit_test(dual_stack_server_accepts_an_ipv4_client),
      cmocka_unit_test(ipv6_only_server_refuses_an_ipv4_client),
      cmocka_unit_test(one_worker_echoes),
      cmocka_unit_test(four_workers_echo),
      cmocka_unit_test(server_prepare_fires_once_with_the_listening_socket),
      cmocka_unit_test(server_prepare_error_fails_start_with_ehandler),
      cmocka_unit_test(free_and_wait_inside_server_prepare_are_einloop),
      cmocka_unit_test(accept_error_refuses_the_connection_without_close),
      cmocka_unit_test(max_connections_refuses_the_extra_client),
  };
  return cmocka_run_group_tests_name("lifecycle", tests, NULL, NULL);
}
