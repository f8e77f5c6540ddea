/* test_api.c - bad input for every public function: NULL and foreign
 * handles, NULL out-pointers and buffers, zero lengths, unknown and
 * out-of-range options, options set while running, unknown and stale
 * connection IDs, wrong role, wrong receive model, bad addresses, a port in
 * use, and the error-code descriptions. */
#define _GNU_SOURCE /* strcasestr */
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "hps_test.h"

/* ------------------------------------------------------------------ */
/* Fixtures                                                            */
/* ------------------------------------------------------------------ */

/* A started server with one accepted connection and its plain peer. */
typedef struct live {
  t_rec rec;
  hps_endpoint *ep;
  uint16_t port;
  int fd;
  hps_conn_id id;
} live;

static void live_open(live *l, int model) {
  t_ev ev;
  t_rec_init(&l->rec);
  l->ep = t_server(&l->rec, 1, model, &l->port);
  l->fd = t_connect("127.0.0.1", l->port);
  assert_int_equal(t_rec_wait(&l->rec, HPS_EV_HANDSHAKE, 1, T_WAIT_MS), 0);
  assert_int_equal(t_rec_get(&l->rec, HPS_EV_ACCEPT, 0, &ev), 0);
  l->id = ev.conn;
  assert_true(l->id != 0);
}

/* Workers 1: once a new connection's HANDSHAKE was recorded, the loop has
 * finished everything before it, including the release of a connection
 * whose CLOSE was recorded earlier (release follows its CLOSE handler). */
static void loop_barrier(live *l) {
  int n = t_rec_count(&l->rec, HPS_EV_HANDSHAKE);
  int fd = t_connect("127.0.0.1", l->port);
  assert_int_equal(t_rec_wait(&l->rec, HPS_EV_HANDSHAKE, n + 1, T_WAIT_MS),
                   0);
  close(fd);
}

static void live_close(live *l) {
  if (l->fd >= 0) close(l->fd);
  assert_int_equal(hps_free(l->ep), 0);
  t_rec_free(&l->rec);
}

/* A regular file with some bytes, for hps_send_file. */
static void temp_file(char *path, size_t cap, size_t size) {
  FILE *f;
  size_t i;
  snprintf(path, cap, "/tmp/hps_test_api_%d_%zu.bin", (int)getpid(), size);
  f = fopen(path, "wb");
  assert_non_null(f);
  for (i = 0; i < size; i++) fputc((int)('a' + i % 26), f);
  fclose(f);
}

/* ------------------------------------------------------------------ */
/* Handles                                                             */
/* ------------------------------------------------------------------ */

static void null_handle_is_ehandle_for_every_function(void **state) {
  int64_t v = 0;
  uintptr_t x = 0;
  hps_stats st;
  char host[64];
  uint16_t port = 0;
  hps_buf b = {"x", 1};
  hps_conn_id id = 0;
  size_t count = 0;
  char buf[4];
  (void)state;
  assert_int_equal(hps_setopt(NULL, HPS_OPT_WORKERS, 1), HPS_EHANDLE);
  assert_int_equal(hps_getopt(NULL, HPS_OPT_WORKERS, &v), HPS_EHANDLE);
  assert_int_equal(hps_start(NULL, "127.0.0.1", 0), HPS_EHANDLE);
  assert_int_equal(hps_stop(NULL), HPS_EHANDLE);
  assert_int_equal(hps_wait(NULL, 0), HPS_EHANDLE);
  assert_int_equal(hps_wait(NULL, -1), HPS_EHANDLE);
  assert_int_equal(hps_free(NULL), HPS_EHANDLE);
  assert_int_equal(hps_state(NULL), HPS_EHANDLE);
  assert_int_equal(hps_role(NULL), HPS_EHANDLE);
  assert_int_equal(hps_listen_address(NULL, host, sizeof(host), &port),
                   HPS_EHANDLE);
  assert_int_equal(hps_connect(NULL, "127.0.0.1", 1, &id), HPS_EHANDLE);
  assert_int_equal(hps_send(NULL, 1, "x", 1), HPS_EHANDLE);
  assert_int_equal(hps_sendv(NULL, 1, &b, 1), HPS_EHANDLE);
  assert_int_equal(hps_send_file(NULL, 1, "/etc/hostname", 0, -1),
                   HPS_EHANDLE);
  assert_int_equal(hps_disconnect(NULL, 1, 0), HPS_EHANDLE);
  assert_int_equal(hps_pause_receive(NULL, 1, 1), HPS_EHANDLE);
  assert_int_equal(hps_fetch(NULL, 1, buf, sizeof(buf)), HPS_EHANDLE);
  assert_int_equal(hps_peek(NULL, 1, buf, sizeof(buf)), HPS_EHANDLE);
  assert_int_equal(hps_conn_count(NULL), HPS_EHANDLE);
  assert_int_equal(hps_conn_list(NULL, &id, 1, &count), HPS_EHANDLE);
  assert_int_equal(hps_local_address(NULL, 1, host, sizeof(host), &port),
                   HPS_EHANDLE);
  assert_int_equal(hps_remote_address(NULL, 1, host, sizeof(host), &port),
                   HPS_EHANDLE);
  assert_int_equal(hps_set_extra(NULL, 1, 7), HPS_EHANDLE);
  assert_int_equal(hps_get_extra(NULL, 1, &x), HPS_EHANDLE);
  assert_int_equal(hps_get_stats(NULL, 1, &st), HPS_EHANDLE);
  assert_int_equal(hps_get_stats(NULL, 0, &st), HPS_EHANDLE);
  assert_int_equal(hps_disconnect_silent(NULL, 1000), HPS_EHANDLE);
  assert_int_equal(hps_disconnect_long(NULL, 1000), HPS_EHANDLE);
  assert_int_equal(hps_setopt_str(NULL, HPS_OPT_TLS_SNI, "x"), HPS_EHANDLE);
  assert_int_equal(hps_getopt_str(NULL, HPS_OPT_TLS_SNI, host, sizeof(host),
                                  &count),
                   HPS_EHANDLE);
  assert_int_equal(hps_tls_add_cert(NULL, "a", "b", "c"), HPS_EHANDLE);
  assert_int_equal(
      hps_tls_info(NULL, 1, HPS_TLS_INFO_ERROR, host, sizeof(host), &count),
      HPS_EHANDLE);
}

/* Memory that is not an endpoint (no magic) is refused, not used. */
static void foreign_pointer_is_ehandle(void **state) {
  static uint64_t junk[8192]; /* zeroed, far larger than any endpoint */
  hps_endpoint *ep = (hps_endpoint *)junk;
  int64_t v;
  (void)state;
  assert_int_equal(hps_state(ep), HPS_EHANDLE);
  assert_int_equal(hps_role(ep), HPS_EHANDLE);
  assert_int_equal(hps_getopt(ep, HPS_OPT_WORKERS, &v), HPS_EHANDLE);
  assert_int_equal(hps_setopt(ep, HPS_OPT_WORKERS, 1), HPS_EHANDLE);
  assert_int_equal(hps_start(ep, "127.0.0.1", 0), HPS_EHANDLE);
  assert_int_equal(hps_stop(ep), HPS_EHANDLE);
  assert_int_equal(hps_send(ep, 1, "x", 1), HPS_EHANDLE);
  assert_int_equal(hps_conn_count(ep), HPS_EHANDLE);
  assert_int_equal(hps_free(ep), HPS_EHANDLE);
}

static void create_rejects_null_out_null_fn_and_unknown_role(void **state) {
  t_rec r;
  hps_endpoint *ep = (hps_endpoint *)&r; /* must be overwritten */
  (void)state;
  t_rec_init(&r);
  assert_int_equal(hps_create(HPS_TCP_SERVER, t_rec_handler, &r, NULL),
                   HPS_EINVAL);
  assert_int_equal(hps_create(HPS_TCP_SERVER, NULL, &r, &ep), HPS_EINVAL);
  assert_null(ep);
  ep = (hps_endpoint *)&r;
  assert_int_equal(hps_create(0, t_rec_handler, &r, &ep), HPS_EINVAL);
  assert_null(ep);
  assert_int_equal(hps_create(8, t_rec_handler, &r, &ep), HPS_EINVAL);
  assert_int_equal(hps_create(-1, t_rec_handler, &r, &ep), HPS_EINVAL);
  assert_int_equal(hps_create(INT_MAX, t_rec_handler, &r, &ep), HPS_EINVAL);
  assert_null(ep);
  /* user may be NULL */
  assert_int_equal(hps_create(HPS_TCP_AGENT, t_rec_handler, NULL, &ep), 0);
  assert_non_null(ep);
  assert_int_equal(hps_role(ep), HPS_TCP_AGENT);
  assert_int_equal(hps_free(ep), 0);
  t_rec_free(&r);
}

/* ------------------------------------------------------------------ */
/* NULL out-pointers, buffers, zero lengths                            */
/* ------------------------------------------------------------------ */

static void null_out_pointers_are_einval(void **state) {
  live l;
  char host[64];
  uint16_t port;
  (void)state;
  live_open(&l, HPS_MODEL_PULL);
  assert_int_equal(hps_getopt(l.ep, HPS_OPT_WORKERS, NULL), HPS_EINVAL);
  assert_int_equal(hps_get_extra(l.ep, l.id, NULL), HPS_EINVAL);
  assert_int_equal(hps_get_stats(l.ep, l.id, NULL), HPS_EINVAL);
  assert_int_equal(hps_get_stats(l.ep, 0, NULL), HPS_EINVAL);
  assert_int_equal(hps_conn_list(l.ep, NULL, 1, NULL), HPS_EINVAL);
  /* documented as optional: NULL is fine where the header says "may be
   * NULL" */
  assert_int_equal(hps_listen_address(l.ep, NULL, 0, NULL), 0);
  assert_int_equal(hps_local_address(l.ep, l.id, NULL, 0, NULL), 0);
  assert_int_equal(hps_remote_address(l.ep, l.id, NULL, 0, NULL), 0);
  assert_int_equal(hps_conn_list(l.ep, NULL, 0, NULL), 0);
  assert_int_equal(hps_connect(l.ep, "127.0.0.1", l.port, NULL), HPS_EROLE);
  /* host buffers too small */
  assert_int_equal(hps_listen_address(l.ep, host, 0, &port), HPS_EINVAL);
  assert_int_equal(hps_listen_address(l.ep, host, 5, &port), HPS_EINVAL);
  assert_int_equal(hps_local_address(l.ep, l.id, host, 0, &port), HPS_EINVAL);
  assert_int_equal(hps_local_address(l.ep, l.id, host, 5, &port), HPS_EINVAL);
  assert_int_equal(hps_remote_address(l.ep, l.id, host, 0, &port),
                   HPS_EINVAL);
  assert_int_equal(hps_remote_address(l.ep, l.id, host, 5, &port),
                   HPS_EINVAL);
  /* 46 always suffices, and exactly strlen + 1 is enough */
  assert_int_equal(hps_listen_address(l.ep, host, 46, &port), 0);
  assert_string_equal(host, "127.0.0.1");
  assert_int_equal(port, l.port);
  assert_int_equal(hps_listen_address(l.ep, host, 10, NULL), 0);
  assert_string_equal(host, "127.0.0.1");
  assert_int_equal(hps_remote_address(l.ep, l.id, host, 46, &port), 0);
  assert_string_equal(host, "127.0.0.1");
  live_close(&l);
}

static void null_buffers_and_zero_lengths_are_einval(void **state) {
  live l;
  char buf[8];
  char path[256];
  hps_buf zero[2] = {{"a", 0}, {"b", 0}};
  hps_buf nullbase[2] = {{"a", 1}, {NULL, 1}};
  (void)state;
  live_open(&l, HPS_MODEL_PULL);
  assert_int_equal(hps_send(l.ep, l.id, NULL, 1), HPS_EINVAL);
  assert_int_equal(hps_send(l.ep, l.id, "x", 0), HPS_EINVAL);
  assert_int_equal(hps_sendv(l.ep, l.id, NULL, 1), HPS_EINVAL);
  assert_int_equal(hps_sendv(l.ep, l.id, zero, 0), HPS_EINVAL);
  assert_int_equal(hps_sendv(l.ep, l.id, zero, -1), HPS_EINVAL);
  assert_int_equal(hps_sendv(l.ep, l.id, zero, 2), HPS_EINVAL);
  assert_int_equal(hps_sendv(l.ep, l.id, nullbase, 2), HPS_EINVAL);
  assert_int_equal(hps_send_file(l.ep, l.id, NULL, 0, -1), HPS_EINVAL);
  assert_int_equal(hps_send_file(l.ep, l.id, "", 0, -1), HPS_EINVAL);
  assert_int_equal(hps_send_file(l.ep, l.id, "/etc/hostname", -1, -1),
                   HPS_EINVAL);
  assert_int_equal(hps_fetch(l.ep, l.id, NULL, 1), HPS_EINVAL);
  assert_int_equal(hps_fetch(l.ep, l.id, buf, 0), HPS_EINVAL);
  assert_int_equal(hps_peek(l.ep, l.id, NULL, 1), HPS_EINVAL);
  assert_int_equal(hps_peek(l.ep, l.id, buf, 0), HPS_EINVAL);
  assert_int_equal(hps_disconnect_silent(l.ep, 0), HPS_EINVAL);
  assert_int_equal(hps_disconnect_silent(l.ep, -1), HPS_EINVAL);
  assert_int_equal(hps_disconnect_long(l.ep, 0), HPS_EINVAL);
  assert_int_equal(hps_disconnect_long(l.ep, INT64_MIN), HPS_EINVAL);
  /* files: missing, a directory, offset or length past the end */
  assert_int_equal(hps_send_file(l.ep, l.id, "/nonexistent/hps", 0, -1),
                   HPS_EFILE);
  assert_int_equal(hps_send_file(l.ep, l.id, "/tmp", 0, -1), HPS_EFILE);
  temp_file(path, sizeof(path), 10);
  assert_int_equal(hps_send_file(l.ep, l.id, path, 11, -1), HPS_EFILE);
  assert_int_equal(hps_send_file(l.ep, l.id, path, 5, 6), HPS_EFILE);
  unlink(path);
  /* nothing of this reached the peer, and the connection is still open */
  assert_int_equal(hps_conn_count(l.ep), 1);
  assert_int_equal(t_rec_count(&l.rec, HPS_EV_CLOSE), 0);
  assert_int_equal(hps_send(l.ep, l.id, "ok", 2), 0);
  assert_int_equal(t_recv_exact(l.fd, buf, 2, T_WAIT_MS), 2);
  assert_memory_equal(buf, "ok", 2);
  live_close(&l);
}

/* ------------------------------------------------------------------ */
/* Options                                                             */
/* ------------------------------------------------------------------ */

/* Every option with its range, from core/endpoint.c opt_range (and the
 * header), and a valid value different from the default. */
static const struct {
  int opt;
  const char *name;
  int64_t min, max, other;
} opts[] = {
    {HPS_OPT_WORKERS, "WORKERS", 1, 64, 3},
    {HPS_OPT_RECV_MODEL, "RECV_MODEL", 0, 2, 1},
    {HPS_OPT_SNDBUF, "SNDBUF", 0, 1 << 30, 65536},
    {HPS_OPT_RCVBUF, "RCVBUF", 0, 1 << 30, 65536},
    {HPS_OPT_MAX_CONNECTIONS, "MAX_CONNECTIONS", 1, 1 << 24, 10},
    {HPS_OPT_KEEPALIVE_TIME, "KEEPALIVE_TIME", 0, 32767000, 30000},
    {HPS_OPT_KEEPALIVE_INTERVAL, "KEEPALIVE_INTERVAL", 1000, 32767000, 5000},
    {HPS_OPT_NODELAY, "NODELAY", 0, 1, 0},
    {HPS_OPT_REUSE_ADDR, "REUSE_ADDR", 0, 1, 0},
    {HPS_OPT_IPV6_ONLY, "IPV6_ONLY", 0, 1, 1},
    {HPS_OPT_MAX_SEND_QUEUE, "MAX_SEND_QUEUE", 1, 1 << 30, 4096},
    {HPS_OPT_FREE_POOL, "FREE_POOL", 0, 1 << 20, 7},
    {HPS_OPT_CONNECT_TIMEOUT, "CONNECT_TIMEOUT", 1, 600000, 2500},
    {HPS_OPT_EVENTS, "EVENTS", 0, HPS_EVENTS_ALL, HPS_EVBIT(HPS_EV_CLOSE)},
    {HPS_OPT_BACKLOG, "BACKLOG", 1, 65535, 16},
    {HPS_OPT_PACK_FLAG, "PACK_FLAG", 0, 1023, 0x155},
    {HPS_OPT_PACK_MAX, "PACK_MAX", 1, 4194303, 1000},
    {HPS_OPT_PULL_MAX, "PULL_MAX", 1, 1 << 30, 12345},
    {HPS_OPT_SILENCE_TIMEOUT, "SILENCE_TIMEOUT", 0, 86400000, 60000},
    {HPS_OPT_SEND_HIGH_WATER, "SEND_HIGH_WATER", 1, 1 << 30, 65536},
    {HPS_OPT_SEND_LOW_WATER, "SEND_LOW_WATER", 0, 1 << 30, 1024},
    {HPS_OPT_AUTO_PAUSE, "AUTO_PAUSE", 0, 1, 1},
    {HPS_OPT_CLOSE_TIMEOUT, "CLOSE_TIMEOUT", 1, 86400000, 750},
    {HPS_OPT_TLS, "TLS", 0, 1, 1},
    {HPS_OPT_TLS_VERIFY, "TLS_VERIFY", 0, 2, 2},
    {HPS_OPT_TLS_MIN_VERSION, "TLS_MIN_VERSION", 0x0303, 0x0304, 0x0304},
    {HPS_OPT_TLS_SESSION_CACHE, "TLS_SESSION_CACHE", 0, 1, 0},
    {HPS_OPT_TLS_HANDSHAKE_TIMEOUT, "TLS_HANDSHAKE_TIMEOUT", 1, 600000, 500},
};
#define NOPTS (sizeof(opts) / sizeof(opts[0]))

static void unknown_option_keys_are_einval(void **state) {
  /* 80..89 are string keys: not for hps_setopt/hps_getopt */
  static const int bad[] = {0,  -1, 24, 25, 31, 38, 63, 69, 79, 80,
                            89, 90, 91, 95, 96, 1000, INT_MAX, INT_MIN};
  /* 80..90 are string keys: not for hps_setopt/hps_getopt */
  t_rec r;
  hps_endpoint *ep;
  int64_t v;
  size_t i;
  (void)state;
  t_rec_init(&r);
  assert_int_equal(hps_create(HPS_TCP_SERVER, t_rec_handler, &r, &ep), 0);
  for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    v = 12345;
    if (hps_setopt(ep, bad[i], 1) != HPS_EINVAL)
      fail_msg("hps_setopt(key %d) did not give HPS_EINVAL", bad[i]);
    if (hps_getopt(ep, bad[i], &v) != HPS_EINVAL)
      fail_msg("hps_getopt(key %d) did not give HPS_EINVAL", bad[i]);
    assert_int_equal(v, 12345); /* untouched */
  }
  assert_int_equal(hps_free(ep), 0);
  t_rec_free(&r);
}

static void option_ranges_are_enforced_for_every_option(void **state) {
  t_rec r;
  hps_endpoint *ep;
  int64_t before, v;
  size_t i;
  (void)state;
  t_rec_init(&r);
  assert_int_equal(hps_create(HPS_TCP_SERVER, t_rec_handler, &r, &ep), 0);
  for (i = 0; i < NOPTS; i++) {
    const char *n = opts[i].name;
    assert_int_equal(hps_getopt(ep, opts[i].opt, &before), 0);
    /* just outside the range, and the extremes of int64 */
    if (hps_setopt(ep, opts[i].opt, opts[i].min - 1) != HPS_EINVAL)
      fail_msg("%s: min-1 (%lld) accepted", n, (long long)opts[i].min - 1);
    if (hps_setopt(ep, opts[i].opt, opts[i].max + 1) != HPS_EINVAL)
      fail_msg("%s: max+1 (%lld) accepted", n, (long long)opts[i].max + 1);
    if (hps_setopt(ep, opts[i].opt, INT64_MIN) != HPS_EINVAL)
      fail_msg("%s: INT64_MIN accepted", n);
    if (hps_setopt(ep, opts[i].opt, INT64_MAX) != HPS_EINVAL)
      fail_msg("%s: INT64_MAX accepted", n);
    assert_int_equal(hps_getopt(ep, opts[i].opt, &v), 0);
    if (v != before) fail_msg("%s: a refused value changed the option", n);
    /* the bounds themselves are accepted and read back */
    if (hps_setopt(ep, opts[i].opt, opts[i].min) != 0)
      fail_msg("%s: min (%lld) refused", n, (long long)opts[i].min);
    assert_int_equal(hps_getopt(ep, opts[i].opt, &v), 0);
    if (v != opts[i].min) fail_msg("%s: min not read back", n);
    if (hps_setopt(ep, opts[i].opt, opts[i].max) != 0)
      fail_msg("%s: max (%lld) refused", n, (long long)opts[i].max);
    assert_int_equal(hps_getopt(ep, opts[i].opt, &v), 0);
    if (v != opts[i].max) fail_msg("%s: max not read back", n);
    assert_int_equal(hps_setopt(ep, opts[i].opt, before), 0);
  }
  assert_int_equal(hps_free(ep), 0);
  t_rec_free(&r);
}

/* While running, every option but the live one (EVENTS) is refused with
 * HPS_ESTATE and keeps its value; after a stop all can be set again. */
static void options_while_running_are_estate_except_events(void **state) {
  t_rec r;
  hps_endpoint *ep;
  uint16_t port;
  int64_t before, v;
  size_t i;
  (void)state;
  t_rec_init(&r);
  ep = t_server(&r, 1, HPS_MODEL_PUSH, &port);
  for (i = 0; i < NOPTS; i++) {
    int is_live = opts[i].opt == HPS_OPT_EVENTS ||
               opts[i].opt == HPS_OPT_SEND_HIGH_WATER ||
               opts[i].opt == HPS_OPT_SEND_LOW_WATER;
    int want = is_live ? 0 : HPS_ESTATE;
    assert_int_equal(hps_getopt(ep, opts[i].opt, &before), 0);
    if (hps_setopt(ep, opts[i].opt, opts[i].other) != want)
      fail_msg("%s: set while running did not give %s", opts[i].name,
               hps_err_name(want));
    assert_int_equal(hps_getopt(ep, opts[i].opt, &v), 0);
    if (v != (want == 0 ? opts[i].other : before))
      fail_msg("%s: value after a set while running is wrong",
               opts[i].name);
    /* out of range is still EINVAL while running */
    assert_int_equal(hps_setopt(ep, opts[i].opt, opts[i].max + 1),
                     HPS_EINVAL);
  }
  assert_int_equal(hps_setopt(ep, HPS_OPT_EVENTS, HPS_EVENTS_ALL), 0);
  assert_int_equal(hps_stop(ep), 0);
  for (i = 0; i < NOPTS; i++) {
    if (hps_setopt(ep, opts[i].opt, opts[i].other) != 0)
      fail_msg("%s: set after stop refused", opts[i].name);
    assert_int_equal(hps_getopt(ep, opts[i].opt, &v), 0);
    assert_int_equal(v, opts[i].other);
  }
  assert_int_equal(hps_free(ep), 0);
  t_rec_free(&r);
}

/* The live option acts at once: with EVENTS 0, a connection's ACCEPT and
 * HANDSHAKE are not delivered, but its CLOSE and the SHUTDOWN are. */
static void events_option_is_live_and_close_shutdown_always_arrive(
    void **state) {
  t_rec r;
  hps_endpoint *ep;
  uint16_t port;
  int fd;
  size_t before;
  (void)state;
  t_rec_init(&r);
  ep = t_server(&r, 1, HPS_MODEL_PUSH, &port);
  assert_int_equal(hps_setopt(ep, HPS_OPT_EVENTS, 0), 0);
  before = t_rec_total(&r); /* PREPARE, from before the change */
  fd = t_connect("127.0.0.1", port);
  t_send_all(fd, "abc", 3);
  close(fd);
  assert_int_equal(t_rec_wait(&r, HPS_EV_CLOSE, 1, T_WAIT_MS), 0);
  assert_int_equal(hps_stop(ep), 0);
  assert_int_equal(t_rec_count(&r, HPS_EV_SHUTDOWN), 1);
  assert_int_equal(t_rec_count(&r, HPS_EV_ACCEPT), 0);
  assert_int_equal(t_rec_count(&r, HPS_EV_HANDSHAKE), 0);
  assert_int_equal(t_rec_count(&r, HPS_EV_RECEIVE), 0);
  assert_int_equal(t_rec_total(&r), before + 2);
  assert_int_equal(hps_free(ep), 0);
  t_rec_free(&r);
}

/* ------------------------------------------------------------------ */
/* State                                                               */
/* ------------------------------------------------------------------ */

static void start_twice_is_estate(void **state) {
  t_rec r;
  hps_endpoint *ep;
  uint16_t port, port2;
  (void)state;
  t_rec_init(&r);
  ep = t_server(&r, 1, HPS_MODEL_PUSH, &port);
  assert_int_equal(hps_start(ep, "127.0.0.1", 0), HPS_ESTATE);
  assert_int_equal(hps_state(ep), HPS_STATE_STARTED);
  assert_int_equal(hps_listen_address(ep, NULL, 0, &port2), 0);
  assert_int_equal(port2, port);
  assert_int_equal(hps_free(ep), 0);
  t_rec_free(&r);
}

static void listen_address_before_start_and_after_stop_is_estate(
    void **state) {
  t_rec r;
  hps_endpoint *ep;
  uint16_t port;
  char host[64];
  (void)state;
  t_rec_init(&r);
  assert_int_equal(hps_create(HPS_TCP_SERVER, t_rec_handler, &r, &ep), 0);
  assert_int_equal(hps_listen_address(ep, host, sizeof(host), &port),
                   HPS_ESTATE);
  assert_int_equal(hps_start(ep, "127.0.0.1", 0), 0);
  assert_int_equal(hps_listen_address(ep, host, sizeof(host), &port), 0);
  assert_int_equal(hps_stop(ep), 0);
  assert_int_equal(hps_listen_address(ep, host, sizeof(host), &port),
                   HPS_ESTATE);
  assert_int_equal(hps_free(ep), 0);
  t_rec_free(&r);
}

static void connect_before_start_is_estate(void **state) {
  t_rec r;
  hps_endpoint *ep;
  hps_conn_id id = 99;
  (void)state;
  t_rec_init(&r);
  assert_int_equal(hps_create(HPS_TCP_AGENT, t_rec_handler, &r, &ep), 0);
  assert_int_equal(hps_connect(ep, "127.0.0.1", 9, &id), HPS_ESTATE);
  assert_int_equal(hps_free(ep), 0);
  assert_int_equal(t_rec_total(&r), 0);
  t_rec_free(&r);
}

static void wait_on_running_endpoint_times_out(void **state) {
  t_rec r;
  hps_endpoint *ep;
  uint16_t port;
  (void)state;
  t_rec_init(&r);
  ep = t_server(&r, 1, HPS_MODEL_PUSH, &port);
  assert_int_equal(hps_wait(ep, 0), HPS_ETIMEDOUT);
  assert_int_equal(hps_wait(ep, 50), HPS_ETIMEDOUT);
  assert_int_equal(hps_state(ep), HPS_STATE_STARTED);
  assert_int_equal(hps_stop(ep), 0);
  assert_int_equal(hps_wait(ep, 0), 0);
  assert_int_equal(hps_wait(ep, -1), 0);
  assert_int_equal(hps_free(ep), 0);
  t_rec_free(&r);
}

/* An agent's PREPARE runs before its connect: sending then is ESTATE. */
typedef struct prep_probe {
  int send_rc, sendv_rc, file_rc;
  char path[256];
} prep_probe;

static int send_in_prepare_hook(t_rec *r, const hps_event *ev) {
  prep_probe *p = r->user;
  hps_buf b = {"x", 1};
  if (ev->type == HPS_EV_PREPARE && ev->conn != 0) {
    p->send_rc = hps_send(ev->endpoint, ev->conn, "x", 1);
    p->sendv_rc = hps_sendv(ev->endpoint, ev->conn, &b, 1);
    p->file_rc = hps_send_file(ev->endpoint, ev->conn, p->path, 0, -1);
  }
  return HPS_HR_OK;
}

static void send_before_connect_is_estate(void **state) {
  t_rec sr, ar;
  hps_endpoint *srv, *agent;
  uint16_t port;
  hps_conn_id id = 0;
  prep_probe p = {1, 1, 1, ""};
  (void)state;
  temp_file(p.path, sizeof(p.path), 8);
  t_rec_init(&sr);
  t_rec_init(&ar);
  srv = t_server(&sr, 1, HPS_MODEL_PUSH, &port);
  assert_int_equal(hps_create(HPS_TCP_AGENT, t_rec_handler, &ar, &agent), 0);
  ar.hook = send_in_prepare_hook;
  ar.user = &p;
  assert_int_equal(hps_setopt(agent, HPS_OPT_WORKERS, 1), 0);
  assert_int_equal(hps_start(agent, NULL, 0), 0);
  assert_int_equal(hps_connect(agent, "127.0.0.1", port, &id), 0);
  assert_true(id != 0);
  assert_int_equal(t_rec_wait(&ar, HPS_EV_CONNECT, 1, T_WAIT_MS), 0);
  assert_int_equal(p.send_rc, HPS_ESTATE);
  assert_int_equal(p.sendv_rc, HPS_ESTATE);
  assert_int_equal(p.file_rc, HPS_ESTATE);
  unlink(p.path);
  assert_int_equal(hps_free(agent), 0);
  assert_int_equal(hps_free(srv), 0);
  t_rec_free(&ar);
  t_rec_free(&sr);
}

/* ------------------------------------------------------------------ */
/* Connection IDs                                                      */
/* ------------------------------------------------------------------ */

/* Every per-connection function gives HPS_ENOTFOUND for id. */
static void expect_notfound_everywhere(hps_endpoint *ep, hps_conn_id id,
                                       const char *file) {
  char host[64], buf[4];
  uint16_t port;
  uintptr_t x;
  hps_stats st;
  hps_buf b = {"x", 1};
  int64_t model;
  uint64_t unsent;
  assert_int_equal(hps_getopt(ep, HPS_OPT_RECV_MODEL, &model), 0);
#define EXPECT_NF(call)                                                       \
  do {                                                                        \
    int rc_ = (call);                                                         \
    if (rc_ != HPS_ENOTFOUND)                                                 \
      fail_msg("%s for id %#llx gave %s, not HPS_ENOTFOUND", #call,           \
               (unsigned long long)id, hps_err_name(rc_));                    \
  } while (0)
  EXPECT_NF(hps_send(ep, id, "x", 1));
  EXPECT_NF(hps_sendv(ep, id, &b, 1));
  EXPECT_NF(hps_send_file(ep, id, file, 0, -1));
  EXPECT_NF(hps_disconnect(ep, id, 0));
  EXPECT_NF(hps_disconnect(ep, id, 1));
  EXPECT_NF(hps_pause_receive(ep, id, 1));
  EXPECT_NF(hps_pause_receive(ep, id, 0));
  if (model == HPS_MODEL_PULL) {
    EXPECT_NF(hps_fetch(ep, id, buf, 1));
    EXPECT_NF(hps_peek(ep, id, buf, 1));
  }
  EXPECT_NF(hps_set_extra(ep, id, 42));
  EXPECT_NF(hps_get_extra(ep, id, &x));
  EXPECT_NF(hps_local_address(ep, id, host, sizeof(host), &port));
  EXPECT_NF(hps_remote_address(ep, id, host, sizeof(host), &port));
  EXPECT_NF(hps_get_stats(ep, id, &st));
  EXPECT_NF(hps_get_unsent(ep, id, &unsent));
#undef EXPECT_NF
}

static void unknown_ids_are_enotfound(void **state) {
  static const hps_conn_id ids[] = {
      1,
      0xdeadbeefull,
      (2ull << 32) | 0,                 /* loop 0, slot 0, a later gen */
      (1ull << 32) | (200ull << 24),    /* a loop that does not exist */
      (7ull << 32) | 0xfffffful,        /* a slot that does not exist */
      UINT64_MAX,
  };
  live l;
  char path[256];
  size_t i;
  (void)state;
  temp_file(path, sizeof(path), 16);
  live_open(&l, HPS_MODEL_PULL);
  for (i = 0; i < sizeof(ids) / sizeof(ids[0]); i++)
    if (ids[i] != l.id) expect_notfound_everywhere(l.ep, ids[i], path);
  /* 0 is "the client's connection" only for a client */
  expect_notfound_everywhere(l.ep, 1ull << 63, path);
  assert_int_equal(hps_send(l.ep, 0, "x", 1), HPS_ENOTFOUND);
  assert_int_equal(hps_disconnect(l.ep, 0, 0), HPS_ENOTFOUND);
  /* the real connection is untouched */
  assert_int_equal(hps_conn_count(l.ep), 1);
  assert_int_equal(t_rec_count(&l.rec, HPS_EV_CLOSE), 0);
  live_close(&l);
  unlink(path);
}

static void ids_on_a_stopped_or_never_started_endpoint_are_enotfound(
    void **state) {
  live l;
  t_rec r;
  hps_endpoint *ep;
  char path[256];
  (void)state;
  temp_file(path, sizeof(path), 16);
  t_rec_init(&r);
  assert_int_equal(hps_create(HPS_TCP_SERVER, t_rec_handler, &r, &ep), 0);
  assert_int_equal(hps_setopt(ep, HPS_OPT_RECV_MODEL, HPS_MODEL_PULL), 0);
  expect_notfound_everywhere(ep, 1, path);
  expect_notfound_everywhere(ep, (1ull << 32), path);
  assert_int_equal(hps_free(ep), 0);
  t_rec_free(&r);

  live_open(&l, HPS_MODEL_PULL);
  assert_int_equal(hps_stop(l.ep), 0);
  expect_notfound_everywhere(l.ep, l.id, path);
  live_close(&l);
  unlink(path);
}

/* A closed connection's ID is HPS_ENOTFOUND for every operation. */
static void stale_id_is_enotfound_for_every_operation(void **state) {
  live l;
  char path[256];
  (void)state;
  temp_file(path, sizeof(path), 16);
  live_open(&l, HPS_MODEL_PULL);
  close(l.fd);
  l.fd = -1;
  assert_int_equal(t_rec_wait(&l.rec, HPS_EV_CLOSE, 1, T_WAIT_MS), 0);
  loop_barrier(&l);
  expect_notfound_everywhere(l.ep, l.id, path);
  live_close(&l);

  /* same in the push model (no fetch there), after a local disconnect */
  live_open(&l, HPS_MODEL_PUSH);
  assert_int_equal(hps_disconnect(l.ep, l.id, 1), 0);
  assert_int_equal(t_rec_wait(&l.rec, HPS_EV_CLOSE, 1, T_WAIT_MS), 0);
  loop_barrier(&l);
  expect_notfound_everywhere(l.ep, l.id, path);
  live_close(&l);
  unlink(path);
}

/* A stale ID never reaches the connection that took over its slot. */
static void stale_id_never_reaches_a_new_connection(void **state) {
  live l;
  t_ev ev;
  hps_conn_id old;
  int fd2;
  char buf[8];
  uintptr_t x = 0;
  (void)state;
  live_open(&l, HPS_MODEL_PUSH);
  old = l.id;
  assert_int_equal(hps_set_extra(l.ep, old, 111), 0);
  close(l.fd);
  l.fd = -1;
  assert_int_equal(t_rec_wait(&l.rec, HPS_EV_CLOSE, 1, T_WAIT_MS), 0);
  fd2 = t_connect("127.0.0.1", l.port);
  assert_int_equal(t_rec_wait(&l.rec, HPS_EV_HANDSHAKE, 2, T_WAIT_MS), 0);
  assert_int_equal(t_rec_get(&l.rec, HPS_EV_ACCEPT, 1, &ev), 0);
  assert_true(ev.conn != old);
  assert_int_equal(hps_send(l.ep, old, "BAD", 3), HPS_ENOTFOUND);
  assert_int_equal(hps_set_extra(l.ep, old, 222), HPS_ENOTFOUND);
  assert_int_equal(hps_disconnect(l.ep, old, 1), HPS_ENOTFOUND);
  assert_int_equal(hps_get_extra(l.ep, ev.conn, &x), 0);
  assert_int_equal(x, 0); /* the new connection starts clean */
  assert_int_equal(hps_send(l.ep, ev.conn, "OK", 2), 0);
  assert_int_equal(t_recv_exact(fd2, buf, 2, T_WAIT_MS), 2);
  assert_memory_equal(buf, "OK", 2);
  assert_int_equal(hps_conn_count(l.ep), 1);
  close(fd2);
  live_close(&l);
}

/* ------------------------------------------------------------------ */
/* Role and model                                                      */
/* ------------------------------------------------------------------ */

static void connect_on_server_or_client_is_erole(void **state) {
  t_rec r, cr;
  hps_endpoint *srv, *cli;
  uint16_t port;
  hps_conn_id id = 5;
  (void)state;
  t_rec_init(&r);
  t_rec_init(&cr);
  srv = t_server(&r, 1, HPS_MODEL_PUSH, &port);
  assert_int_equal(hps_connect(srv, "127.0.0.1", port, &id), HPS_EROLE);
  assert_int_equal(id, 5);
  assert_int_equal(hps_create(HPS_TCP_CLIENT, t_rec_handler, &cr, &cli), 0);
  assert_int_equal(hps_connect(cli, "127.0.0.1", port, &id), HPS_EROLE);
  assert_int_equal(hps_start(cli, "127.0.0.1", port), 0);
  assert_int_equal(t_rec_wait(&cr, HPS_EV_CONNECT, 1, T_WAIT_MS), 0);
  assert_int_equal(hps_connect(cli, "127.0.0.1", port, &id), HPS_EROLE);
  assert_int_equal(hps_conn_count(cli), 1);
  assert_int_equal(hps_free(cli), 0);
  assert_int_equal(hps_free(srv), 0);
  t_rec_free(&cr);
  t_rec_free(&r);
}

static void listen_address_on_agent_or_client_is_erole(void **state) {
  t_rec r;
  hps_endpoint *ep;
  char host[64];
  uint16_t port;
  (void)state;
  t_rec_init(&r);
  assert_int_equal(hps_create(HPS_TCP_AGENT, t_rec_handler, &r, &ep), 0);
  assert_int_equal(hps_listen_address(ep, host, sizeof(host), &port),
                   HPS_EROLE);
  assert_int_equal(hps_setopt(ep, HPS_OPT_WORKERS, 1), 0);
  assert_int_equal(hps_start(ep, NULL, 0), 0);
  assert_int_equal(hps_listen_address(ep, host, sizeof(host), &port),
                   HPS_EROLE);
  assert_int_equal(hps_free(ep), 0);
  assert_int_equal(hps_create(HPS_TCP_CLIENT, t_rec_handler, &r, &ep), 0);
  assert_int_equal(hps_listen_address(ep, NULL, 0, &port), HPS_EROLE);
  assert_int_equal(hps_free(ep), 0);
  t_rec_free(&r);
}

/* "agent: host/port are ignored" by hps_start. */
static void agent_start_ignores_host_and_port(void **state) {
  t_rec r;
  hps_endpoint *ep;
  (void)state;
  t_rec_init(&r);
  assert_int_equal(hps_create(HPS_TCP_AGENT, t_rec_handler, &r, &ep), 0);
  assert_int_equal(hps_setopt(ep, HPS_OPT_WORKERS, 1), 0);
  assert_int_equal(hps_start(ep, "not an address", 1), 0);
  assert_int_equal(hps_state(ep), HPS_STATE_STARTED);
  assert_int_equal(hps_free(ep), 0);
  t_rec_free(&r);
}

static void fetch_and_peek_outside_pull_are_emodel(void **state) {
  live l;
  char buf[4];
  int model;
  (void)state;
  for (model = HPS_MODEL_PUSH; model <= HPS_MODEL_PACK; model += 2) {
    live_open(&l, model);
    assert_int_equal(hps_fetch(l.ep, l.id, buf, 1), HPS_EMODEL);
    assert_int_equal(hps_peek(l.ep, l.id, buf, 1), HPS_EMODEL);
    assert_int_equal(hps_conn_count(l.ep), 1);
    live_close(&l);
  }
}

static void send_file_in_pack_is_emodel(void **state) {
  live l;
  char path[256];
  (void)state;
  temp_file(path, sizeof(path), 16);
  live_open(&l, HPS_MODEL_PACK);
  assert_int_equal(hps_send_file(l.ep, l.id, path, 0, -1), HPS_EMODEL);
  assert_int_equal(hps_send_file(l.ep, l.id, path, 0, 4), HPS_EMODEL);
  assert_int_equal(hps_conn_count(l.ep), 1);
  live_close(&l);
  unlink(path);
}

/* ------------------------------------------------------------------ */
/* Addresses                                                           */
/* ------------------------------------------------------------------ */

static void server_start_with_bad_address_is_eaddr(void **state) {
  static const char *bad[] = {"not an address", "no-such-host.invalid",
                              "256.1.1.1", "::1::2"};
  t_rec r;
  hps_endpoint *ep;
  size_t i;
  (void)state;
  t_rec_init(&r);
  assert_int_equal(hps_create(HPS_TCP_SERVER, t_rec_handler, &r, &ep), 0);
  assert_int_equal(hps_setopt(ep, HPS_OPT_WORKERS, 2), 0);
  for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    int rc = hps_start(ep, bad[i], 0);
    if (rc != HPS_EADDR)
      fail_msg("hps_start(\"%s\") gave %s, not HPS_EADDR", bad[i],
               hps_err_name(rc));
    assert_int_equal(hps_state(ep), HPS_STATE_CREATED);
  }
  assert_int_equal(hps_stop(ep), HPS_ESTATE);
  assert_int_equal(hps_free(ep), 0);
  assert_int_equal(t_rec_total(&r), 0); /* not even PREPARE */
  t_rec_free(&r);
}

/* hps_start says: "On error the endpoint is back in the CREATED/STOPPED
 * state and no event other than PREPARE was delivered." */
static void client_start_with_bad_address_is_eaddr_without_events(
    void **state) {
  static const struct {
    const char *host;
    uint16_t port;
  } bad[] = {{"not an address", 80},
             {"no-such-host.invalid", 80},
             {NULL, 80},
             {"", 80},
             {"127.0.0.1", 0}};
  t_rec r;
  hps_endpoint *ep;
  size_t i;
  (void)state;
  t_rec_init(&r);
  assert_int_equal(hps_create(HPS_TCP_CLIENT, t_rec_handler, &r, &ep), 0);
  for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    int rc = hps_start(ep, bad[i].host, bad[i].port);
    int st = hps_state(ep);
    if (rc != HPS_EADDR)
      fail_msg("client hps_start(\"%s\", %u) gave %s, not HPS_EADDR",
               bad[i].host ? bad[i].host : "(null)", bad[i].port,
               hps_err_name(rc));
    if (st != HPS_STATE_CREATED && st != HPS_STATE_STOPPED)
      fail_msg("state %d after a failed start", st);
    if (t_rec_total(&r) != 0)
      fail_msg("client hps_start(\"%s\") failed but delivered %zu events",
               bad[i].host ? bad[i].host : "(null)", t_rec_total(&r));
  }
  assert_int_equal(hps_free(ep), 0);
  t_rec_free(&r);
}

static void agent_connect_with_bad_address_is_eaddr(void **state) {
  static const struct {
    const char *host;
    uint16_t port;
  } bad[] = {{"not an address", 80},
             {"no-such-host.invalid", 80},
             {NULL, 80},
             {"", 80},
             {"127.0.0.1", 0}};
  t_rec r;
  hps_endpoint *ep;
  hps_conn_id id;
  size_t i;
  (void)state;
  t_rec_init(&r);
  assert_int_equal(hps_create(HPS_TCP_AGENT, t_rec_handler, &r, &ep), 0);
  assert_int_equal(hps_setopt(ep, HPS_OPT_WORKERS, 1), 0);
  assert_int_equal(hps_start(ep, NULL, 0), 0);
  for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    int rc;
    id = 77;
    rc = hps_connect(ep, bad[i].host, bad[i].port, &id);
    if (rc != HPS_EADDR)
      fail_msg("hps_connect(\"%s\", %u) gave %s, not HPS_EADDR",
               bad[i].host ? bad[i].host : "(null)", bad[i].port,
               hps_err_name(rc));
    assert_int_equal(id, 77); /* no ID handed out */
  }
  assert_int_equal(hps_conn_count(ep), 0);
  assert_int_equal(hps_stop(ep), 0);
  /* no connection was ever made: only SHUTDOWN */
  assert_int_equal(t_rec_total(&r), 1);
  assert_int_equal(t_rec_count(&r, HPS_EV_SHUTDOWN), 1);
  assert_int_equal(hps_free(ep), 0);
  t_rec_free(&r);
}

/* A port held by a plain socket without SO_REUSEPORT: hps_start fails with
 * the system error, for one and for several listeners. */
static void start_on_a_port_in_use_is_eaddrinuse(void **state) {
  struct sockaddr_in a;
  socklen_t alen = sizeof(a);
  t_rec r;
  hps_endpoint *ep;
  int fd, workers;
  (void)state;
  fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  assert_true(fd >= 0);
  memset(&a, 0, sizeof(a));
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
  assert_int_equal(listen(fd, 4), 0);
  assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &alen), 0);
  t_rec_init(&r);
  for (workers = 1; workers <= 4; workers += 3) {
    int rc;
    assert_int_equal(hps_create(HPS_TCP_SERVER, t_rec_handler, &r, &ep), 0);
    assert_int_equal(hps_setopt(ep, HPS_OPT_WORKERS, workers), 0);
    rc = hps_start(ep, "127.0.0.1", ntohs(a.sin_port));
    if (rc != -EADDRINUSE)
      fail_msg("workers %d: hps_start on a used port gave %d (%s)", workers,
               rc, hps_err_name(rc));
    assert_int_equal(rc, -98);
    assert_string_equal(hps_err_name(rc), "EADDRINUSE");
    assert_int_equal(hps_state(ep), HPS_STATE_CREATED);
    assert_int_equal(hps_free(ep), 0);
  }
  assert_int_equal(t_rec_count(&r, HPS_EV_SHUTDOWN), 0);
  assert_int_equal(t_rec_count(&r, HPS_EV_ACCEPT), 0);
  close(fd);
  t_rec_free(&r);
}

/* Several loops listen through SO_REUSEPORT sockets; that must not let a
 * second server (also several loops) join the port the first one holds. */
static void second_multi_loop_server_on_same_port_is_eaddrinuse(void **state) {
  t_rec r;
  hps_endpoint *a, *b;
  uint16_t port;
  int rc;
  (void)state;
  t_rec_init(&r);
  a = t_server(&r, 2, HPS_MODEL_PUSH, &port);
  assert_int_equal(hps_create(HPS_TCP_SERVER, t_rec_handler, &r, &b), 0);
  assert_int_equal(hps_setopt(b, HPS_OPT_WORKERS, 2), 0);
  rc = hps_start(b, "127.0.0.1", port);
  if (rc != -EADDRINUSE)
    fail_msg("second 2-loop server on port %u gave %d (%s)", port, rc,
             hps_err_name(rc));
  assert_int_equal(hps_state(b), HPS_STATE_CREATED);
  assert_int_equal(hps_free(b), 0);
  assert_int_equal(hps_free(a), 0);
  t_rec_free(&r);
}

/* ------------------------------------------------------------------ */
/* Error descriptions                                                  */
/* ------------------------------------------------------------------ */

static void unsent_and_counters_check_their_arguments(void **state) {
  live l;
  uint64_t v = 7;
  int k;
  (void)state;
  assert_int_equal(hps_get_unsent(NULL, 1, &v), HPS_EHANDLE);
  assert_int_equal(hps_get_counter(NULL, HPS_CNT_ACCEPT_ERRORS, &v),
                   HPS_EHANDLE);
  live_open(&l, HPS_MODEL_PUSH);
  assert_int_equal(hps_get_unsent(l.ep, l.id, NULL), HPS_EINVAL);
  assert_int_equal(hps_get_unsent(l.ep, l.id, &v), 0);
  assert_int_equal(v, 0); /* an idle connection has nothing unsent */
  for (k = HPS_CNT_ACCEPT_ERRORS; k <= HPS_CNT_UDP_PEERS_EVICTED; k++) {
    v = 7;
    assert_int_equal(hps_get_counter(l.ep, k, &v), 0);
    assert_int_equal(v, 0); /* nothing went wrong here */
  }
  assert_int_equal(hps_get_counter(l.ep, 0, &v), HPS_EINVAL);
  assert_int_equal(hps_get_counter(l.ep, HPS_CNT_UDP_PEERS_EVICTED + 1, &v),
                   HPS_EINVAL);
  assert_int_equal(hps_get_counter(l.ep, 8, &v), HPS_EINVAL);
  assert_int_equal(hps_get_counter(l.ep, -1, &v), HPS_EINVAL);
  assert_int_equal(hps_get_counter(l.ep, INT_MAX, &v), HPS_EINVAL);
  assert_int_equal(hps_get_counter(l.ep, HPS_CNT_ACCEPT_ERRORS, NULL),
                   HPS_EINVAL);
  live_close(&l);
}

static void every_library_code_has_its_message_and_name(void **state) {
  int n = 0;
  (void)state;
#define CHECK_CODE(name, value, msg)                                          \
  do {                                                                        \
    assert_int_equal(HPS_##name, value);                                      \
    assert_true((value) < 0);                                                 \
    assert_non_null(hps_strerror(value));                                     \
    assert_string_equal(hps_strerror(value), msg);                            \
    assert_non_null(hps_err_name(value));                                     \
    assert_string_equal(hps_err_name(value), "HPS_" #name);                   \
    n++;                                                                      \
  } while (0);
  HPS_ERRNO_MAP(CHECK_CODE)
#undef CHECK_CODE
  assert_int_equal(n, 31);
}

static void library_codes_are_distinct(void **state) {
  static const int codes[] = {
#define CODE(name, value, msg) value,
      HPS_ERRNO_MAP(CODE)
#undef CODE
  };
  size_t i, j, n = sizeof(codes) / sizeof(codes[0]);
  (void)state;
  for (i = 0; i < n; i++)
    for (j = i + 1; j < n; j++) assert_int_not_equal(codes[i], codes[j]);
}

static void zero_has_a_message_and_a_name(void **state) {
  (void)state;
  assert_non_null(hps_strerror(0));
  assert_true(strlen(hps_strerror(0)) > 0);
  assert_string_not_equal(hps_strerror(0), "unknown error");
  assert_non_null(hps_err_name(0));
  assert_true(strlen(hps_err_name(0)) > 0);
}

static void system_errors_are_described_libuv_style(void **state) {
  (void)state;
  assert_string_equal(hps_err_name(-104), "ECONNRESET");
  assert_string_equal(hps_err_name(-ECONNRESET), "ECONNRESET");
  assert_non_null(strcasestr(hps_strerror(-104), "connection reset"));
  assert_string_equal(hps_err_name(-EADDRINUSE), "EADDRINUSE");
  assert_string_equal(hps_err_name(-ECONNREFUSED), "ECONNREFUSED");
  assert_string_equal(hps_err_name(-ETIMEDOUT), "ETIMEDOUT");
  assert_string_not_equal(hps_strerror(-ECONNREFUSED), "unknown error");
}

static void unknown_codes_are_never_null(void **state) {
  static const int codes[] = {1,      104,        12345,   -9999,   -29999,
                              -30000, -30023,     -31000,  INT_MAX, INT_MIN,
                              -4096,  INT_MIN + 1};
  size_t i;
  (void)state;
  for (i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
    const char *m = hps_strerror(codes[i]), *nm = hps_err_name(codes[i]);
    if (m == NULL || nm == NULL) fail_msg("NULL for code %d", codes[i]);
    assert_string_equal(m, "unknown error");
    assert_true(strlen(nm) > 0);
    assert_true(strncmp(nm, "HPS_", 4) != 0);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(null_handle_is_ehandle_for_every_function),
      cmocka_unit_test(foreign_pointer_is_ehandle),
      cmocka_unit_test(create_rejects_null_out_null_fn_and_unknown_role),
      cmocka_unit_test(null_out_pointers_are_einval),
      cmocka_unit_test(null_buffers_and_zero_lengths_are_einval),
      cmocka_unit_test(unknown_option_keys_are_einval),
      cmocka_unit_test(option_ranges_are_enforced_for_every_option),
      cmocka_unit_test(options_while_running_are_estate_except_events),
      cmocka_unit_test(events_option_is_live_and_close_shutdown_always_arrive),
      cmocka_unit_test(start_twice_is_estate),
      cmocka_unit_test(listen_address_before_start_and_after_stop_is_estate),
      cmocka_unit_test(connect_before_start_is_estate),
      cmocka_unit_test(wait_on_running_endpoint_times_out),
      cmocka_unit_test(send_before_connect_is_estate),
      cmocka_unit_test(unknown_ids_are_enotfound),
      cmocka_unit_test(
          ids_on_a_stopped_or_never_started_endpoint_are_enotfound),
      cmocka_unit_test(stale_id_is_enotfound_for_every_operation),
      cmocka_unit_test(stale_id_never_reaches_a_new_connection),
      cmocka_unit_test(connect_on_server_or_client_is_erole),
      cmocka_unit_test(listen_address_on_agent_or_client_is_erole),
      cmocka_unit_test(agent_start_ignores_host_and_port),
      cmocka_unit_test(fetch_and_peek_outside_pull_are_emodel),
      cmocka_unit_test(send_file_in_pack_is_emodel),
      cmocka_unit_test(server_start_with_bad_address_is_eaddr),
      cmocka_unit_test(client_start_with_bad_address_is_eaddr_without_events),
      cmocka_unit_test(agent_connect_with_bad_address_is_eaddr),
      cmocka_unit_test(start_on_a_port_in_use_is_eaddrinuse),
      cmocka_unit_test(second_multi_loop_server_on_same_port_is_eaddrinuse),
      cmocka_unit_test(unsent_and_counters_check_their_arguments),
      cmocka_unit_test(every_library_code_has_its_message_and_name),
      cmocka_unit_test(library_codes_are_distinct),
      cmocka_unit_test(zero_has_a_message_and_a_name),
      cmocka_unit_test(system_errors_are_described_libuv_style),
      cmocka_unit_test(unknown_codes_are_never_null),
  };
  return cmocka_run_group_tests_name("api", tests, NULL, NULL);
}
