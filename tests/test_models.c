/* test_models.c - the pull and pack receive models end to end.
 *
 * Pull: RECEIVE says how many bytes wait in total; hps_fetch takes exactly
 * N, hps_peek leaves them; asking for more than waits is HPS_EAGAIN and
 * takes nothing; later reads append; past HPS_OPT_PULL_MAX the connection
 * closes with HPS_EPULLFULL.
 *
 * Pack: frames arrive whole however the stream is split; hpsock server and
 * agent/client talk in frames; the bytes on the wire are HP-Socket's
 * (4-byte little-endian header, flag in the high 10 bits); bad headers from
 * a plain peer close with the pack errors; hps_send checks bodies. Every
 * vector of tests/fixtures/pack/vectors.txt runs as a test of its own over
 * a real connection. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
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

#define HOST "127.0.0.1"

static const int SERVER_HEAD[] = {HPS_EV_ACCEPT, HPS_EV_HANDSHAKE};

/* A server of a model with options and one plain peer whose connection
 * completed its handshake. */
typedef struct env {
  t_rec r;
  hps_endpoint *ep;
  uint16_t port;
  int fd;
  hps_conn_id conn;
} env;

static void env_open(env *e, int model, const int64_t *opts) {
  t_rec_init(&e->r);
  e->ep = t_server_opts(&e->r, 1, model, opts, &e->port);
  e->fd = t_connect(HOST, e->port);
  e->conn = t_nth_conn(&e->r, HPS_EV_ACCEPT, 0);
  t_conn_event(&e->r, e->conn, HPS_EV_HANDSHAKE);
}

static void env_close(env *e) {
  if (e->fd >= 0) close(e->fd);
  t_stop_free(e->ep);
  t_rec_free(&e->r);
}

/* The i-th RECEIVE event (waiting for it). */
static t_ev nth_receive(t_rec *r, int i) {
  t_ev e;
  if (t_rec_wait(r, HPS_EV_RECEIVE, i + 1, T_WAIT_MS) != 0)
    fail_msg("RECEIVE number %d did not come", i);
  assert_int_equal(t_rec_get(r, HPS_EV_RECEIVE, i, &e), 0);
  return e;
}

static void put_le32(unsigned char *p, uint32_t v) {
  p[0] = (unsigned char)v;
  p[1] = (unsigned char)(v >> 8);
  p[2] = (unsigned char)(v >> 16);
  p[3] = (unsigned char)(v >> 24);
}

/* ------------------------------------------------------------------ */
/* pull                                                                */
/* ------------------------------------------------------------------ */

static void test_pull_receive_len_is_total_waiting_and_later_reads_append(
    void **state) {
  env e;
  char buf[32];
  (void)state;
  env_open(&e, HPS_MODEL_PULL, NULL);
  t_send_all(e.fd, "0123456789", 10);
  assert_int_equal(nth_receive(&e.r, 0).len, 10);
  t_send_all(e.fd, "abcde", 5); /* a separate read: nothing was fetched */
  assert_int_equal(nth_receive(&e.r, 1).len, 15);
  assert_int_equal(hps_peek(e.ep, e.conn, buf, 15), 0);
  assert_memory_equal(buf, "0123456789abcde", 15);
  assert_int_equal(hps_fetch(e.ep, e.conn, buf, 4), 0);
  assert_memory_equal(buf, "0123", 4);
  t_send_all(e.fd, "XYZ", 3); /* appended behind the 11 still waiting */
  assert_int_equal(nth_receive(&e.r, 2).len, 14);
  memset(buf, 0, sizeof(buf));
  assert_int_equal(hps_fetch(e.ep, e.conn, buf, 14), 0);
  assert_memory_equal(buf, "456789abcdeXYZ", 14);
  assert_int_equal(hps_fetch(e.ep, e.conn, buf, 1), HPS_EAGAIN);
  close(e.fd);
  e.fd = -1;
  t_expect_close(t_conn_event(&e.r, e.conn, HPS_EV_CLOSE), HPS_OP_RECEIVE,
                 0);
  env_close(&e);
}

/* A RECEIVE said at least (size_t)arg bytes wait (runs under r->mu). */
static int waiting_at_least(t_rec *r, void *arg) {
  size_t k;
  for (k = 0; k < r->nevs; k++)
    if (r->evs[k].type == HPS_EV_RECEIVE && r->evs[k].len >= (size_t)arg)
      return 1;
  return 0;
}

static void test_pull_fetch_takes_exactly_n_and_peek_leaves_bytes(
    void **state) {
  env e;
  unsigned char out[100], buf[100];
  (void)state;
  env_open(&e, HPS_MODEL_PULL, NULL);
  t_pat_fill(out, 100, 30, 0);
  t_send_all(e.fd, out, 100);
  assert_int_equal(t_rec_wait_for(&e.r, waiting_at_least, (void *)100,
                                  T_WAIT_MS),
                   0);
  assert_int_equal(hps_fetch(e.ep, e.conn, buf, 10), 0);
  assert_memory_equal(buf, out, 10);
  assert_int_equal(hps_peek(e.ep, e.conn, buf, 20), 0);
  assert_memory_equal(buf, out + 10, 20);
  memset(buf, 0, sizeof(buf));
  assert_int_equal(hps_peek(e.ep, e.conn, buf, 20), 0); /* still there */
  assert_memory_equal(buf, out + 10, 20);
  assert_int_equal(hps_fetch(e.ep, e.conn, buf, 20), 0);
  assert_memory_equal(buf, out + 10, 20);
  assert_int_equal(hps_fetch(e.ep, e.conn, buf, 70), 0);
  assert_memory_equal(buf, out + 30, 70);
  assert_int_equal(hps_fetch(e.ep, e.conn, buf, 1), HPS_EAGAIN);
  assert_int_equal(hps_peek(e.ep, e.conn, buf, 1), HPS_EAGAIN);
  env_close(&e);
}

static void test_pull_asking_for_more_than_waits_is_eagain_and_takes_nothing(
    void **state) {
  env e;
  unsigned char out[50], buf[64];
  (void)state;
  env_open(&e, HPS_MODEL_PULL, NULL);
  t_pat_fill(out, 50, 31, 0);
  t_send_all(e.fd, out, 50);
  assert_int_equal(nth_receive(&e.r, 0).len, 50);
  assert_int_equal(hps_fetch(e.ep, e.conn, buf, 51), HPS_EAGAIN);
  assert_int_equal(hps_peek(e.ep, e.conn, buf, 51), HPS_EAGAIN);
  assert_int_equal(hps_fetch(e.ep, e.conn, buf, 64), HPS_EAGAIN);
  assert_int_equal(hps_fetch(e.ep, e.conn, buf, 50), 0); /* all still there */
  assert_memory_equal(buf, out, 50);
  assert_int_equal(hps_fetch(e.ep, e.conn, NULL, 1), HPS_EINVAL);
  assert_int_equal(hps_fetch(e.ep, e.conn, buf, 0), HPS_EINVAL);
  assert_int_equal(hps_peek(e.ep, e.conn, NULL, 1), HPS_EINVAL);
  env_close(&e);
}

static void test_pull_max_exceeded_closes_with_epullfull(void **state) {
  env e;
  const int64_t opts[] = {HPS_OPT_PULL_MAX, 1000, 0};
  unsigned char buf[600];
  (void)state;
  env_open(&e, HPS_MODEL_PULL, opts);
  memset(buf, 'a', sizeof(buf));
  /* within the limit as long as the application fetches */
  t_send_all(e.fd, buf, 600);
  assert_int_equal(nth_receive(&e.r, 0).len, 600);
  assert_int_equal(hps_fetch(e.ep, e.conn, buf, 600), 0);
  t_send_all(e.fd, buf, 600);
  assert_int_equal(nth_receive(&e.r, 1).len, 600);
  /* 600 waiting + 600 more > 1000 */
  t_send_all(e.fd, buf, 600);
  t_expect_close(t_conn_event(&e.r, e.conn, HPS_EV_CLOSE), HPS_OP_RECEIVE,
                 HPS_EPULLFULL);
  assert_int_equal(t_rec_count(&e.r, HPS_EV_RECEIVE), 2);
  assert_int_equal(t_wait_eof(e.fd, T_WAIT_MS), 1);
  /* the waiting bytes go with the connection once its CLOSE is over */
  assert_int_equal(t_wait_conn_gone(e.ep, e.conn, T_WAIT_MS), 0);
  assert_int_equal(hps_fetch(e.ep, e.conn, buf, 1), HPS_ENOTFOUND);
  env_close(&e);
}

static void test_fetch_and_peek_need_the_pull_model(void **state) {
  env e;
  char buf[4];
  (void)state;
  env_open(&e, HPS_MODEL_PUSH, NULL);
  assert_int_equal(hps_fetch(e.ep, e.conn, buf, 1), HPS_EMODEL);
  assert_int_equal(hps_peek(e.ep, e.conn, buf, 1), HPS_EMODEL);
  env_close(&e);
  env_open(&e, HPS_MODEL_PACK, NULL);
  assert_int_equal(hps_fetch(e.ep, e.conn, buf, 1), HPS_EMODEL);
  assert_int_equal(hps_peek(e.ep, e.conn, buf, 1), HPS_EMODEL);
  env_close(&e);
}

/* ------------------------------------------------------------------ */
/* pack                                                                */
/* ------------------------------------------------------------------ */

/* A small fixed-seed generator, so a failure replays exactly. */
static uint32_t lcg(uint32_t *s) {
  *s = *s * 1103515245u + 12345u;
  return (*s >> 8) & 0xffffff;
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

/* The RECEIVE events of conn are exactly the frames with these lengths,
 * frame i being the pattern of seed base+i. */
static void expect_frames(t_rec *r, hps_conn_id conn, const size_t *lens,
                          int n, uint32_t base) {
  size_t got, off = 0;
  unsigned char *data = t_rec_data_copy(r, &got);
  int i;
  for (i = 0; i < n; i++) {
    t_ev e;
    assert_int_equal(t_rec_get(r, HPS_EV_RECEIVE, i, &e), 0);
    assert_true(e.conn == conn);
    if (e.len != lens[i])
      fail_msg("frame %d: %zu bytes, expected %zu", i, e.len, lens[i]);
    assert_true(off + lens[i] <= got);
    if (t_pat_check(data + off, lens[i], base + (uint32_t)i, 0) != -1)
      fail_msg("frame %d: body differs", i);
    off += lens[i];
  }
  assert_int_equal(t_rec_count(r, HPS_EV_RECEIVE), n);
  assert_int_equal(off, got);
  free(data);
}

static void test_pack_frames_arrive_whole_however_the_stream_is_split(
    void **state) {
  enum { FRAMES = 300, SYNCED = 40, FLAG = 7, MAX = 4096 };
  env e;
  const int64_t opts[] = {HPS_OPT_PACK_FLAG, FLAG, HPS_OPT_PACK_MAX, MAX, 0};
  size_t lens[FRAMES], total = 0, off, sent = 0;
  unsigned char *stream, *p;
  uint32_t seed = 20240601u;
  stat_q q;
  int i;
  (void)state;
  for (i = 0; i < FRAMES; i++) {
    /* small frames first (splits inside headers), then up to the max */
    lens[i] = 1 + lcg(&seed) % (i < SYNCED ? 40u : (unsigned)MAX);
    if (i == 5) lens[i] = MAX;
    total += 4 + lens[i];
  }
  stream = p = malloc(total);
  for (i = 0; i < FRAMES; i++) {
    put_le32(p, ((uint32_t)FLAG << 22) | (uint32_t)lens[i]);
    t_pat_fill(p + 4, lens[i], 500u + (uint32_t)i, 0);
    p += 4 + lens[i];
  }
  env_open(&e, HPS_MODEL_PACK, opts);
  q.ep = e.ep;
  q.conn = e.conn;
  /* first part: each chunk is its own read on the server (the next one is
   * sent only once it has counted the bytes); then free-running */
  for (off = 0, i = 0; off < total; i++) {
    size_t n = 1 + lcg(&seed) % (sent < 1500 ? 9u : 1999u);
    if (n > total - off) n = total - off;
    t_send_all(e.fd, stream + off, n);
    off += n;
    if (sent < 1500) {
      q.bytes = off;
      assert_int_equal(t_poll(received_bytes, &q, T_WAIT_MS), 0);
    }
    sent = off;
  }
  assert_int_equal(t_rec_wait(&e.r, HPS_EV_RECEIVE, FRAMES, 20000), 0);
  close(e.fd);
  e.fd = -1;
  t_expect_close(t_conn_event(&e.r, e.conn, HPS_EV_CLOSE), HPS_OP_RECEIVE,
                 0);
  expect_frames(&e.r, e.conn, lens, FRAMES, 500u);
  env_close(&e);
  free(stream);
}

/* Frames of these sizes go from an hpsock peer to an echoing pack server
 * and come back whole. */
static const size_t PACK_SIZES[] = {1, 2, 3, 4, 5, 1000, 65535, 65536,
                                    65537, 100000, 150000};
#define NPACK (sizeof(PACK_SIZES) / sizeof(PACK_SIZES[0]))

static void send_pack_sizes(hps_endpoint *ep, hps_conn_id id) {
  size_t i;
  for (i = 0; i < NPACK; i++) {
    unsigned char *b = malloc(PACK_SIZES[i]);
    t_pat_fill(b, PACK_SIZES[i], 600u + (uint32_t)i, 0);
    assert_int_equal(hps_send(ep, id, b, PACK_SIZES[i]), 0);
    free(b);
  }
}

static void test_pack_echo_between_hpsock_server_and_agent(void **state) {
  t_rec rs, ra;
  hps_endpoint *srv, *agent;
  uint16_t port;
  hps_conn_id id = 0, sconn;
  const int64_t opts[] = {HPS_OPT_PACK_FLAG, 5, HPS_OPT_PACK_MAX, 150000, 0};
  (void)state;
  t_rec_init(&rs);
  t_rec_init(&ra);
  rs.echo = 1;
  srv = t_server_opts(&rs, 2, HPS_MODEL_PACK, opts, &port);
  agent = t_agent_opts(&ra, 2, HPS_MODEL_PACK, opts);
  assert_int_equal(hps_connect(agent, HOST, port, &id), 0);
  t_conn_event(&ra, id, HPS_EV_HANDSHAKE);
  send_pack_sizes(agent, id);
  assert_int_equal(t_rec_wait(&ra, HPS_EV_RECEIVE, NPACK, T_WAIT_MS), 0);
  sconn = t_nth_conn(&rs, HPS_EV_ACCEPT, 0);
  expect_frames(&rs, sconn, PACK_SIZES, NPACK, 600u);
  expect_frames(&ra, id, PACK_SIZES, NPACK, 600u);
  assert_int_equal(hps_disconnect(agent, id, 0), 0);
  t_expect_close(t_conn_event(&ra, id, HPS_EV_CLOSE), HPS_OP_CLOSE, 0);
  t_expect_close(t_conn_event(&rs, sconn, HPS_EV_CLOSE), HPS_OP_RECEIVE, 0);
  t_stop_free(agent);
  t_stop_free(srv);
  t_rec_free(&rs);
  t_rec_free(&ra);
}

static void test_pack_echo_between_hpsock_server_and_client(void **state) {
  t_rec rs, rc;
  hps_endpoint *srv, *cl = NULL;
  uint16_t port;
  hps_conn_id id;
  const int64_t opts[] = {HPS_OPT_PACK_MAX, 150000, 0};
  (void)state;
  t_rec_init(&rs);
  t_rec_init(&rc);
  rs.echo = 1;
  srv = t_server_opts(&rs, 1, HPS_MODEL_PACK, opts, &port);
  assert_int_equal(hps_create(HPS_TCP_CLIENT, t_rec_handler, &rc, &cl), 0);
  assert_int_equal(hps_setopt(cl, HPS_OPT_RECV_MODEL, HPS_MODEL_PACK), 0);
  assert_int_equal(hps_setopt(cl, HPS_OPT_PACK_MAX, 150000), 0);
  assert_int_equal(hps_start(cl, HOST, port), 0);
  id = t_nth_conn(&rc, HPS_EV_HANDSHAKE, 0);
  send_pack_sizes(cl, 0);
  assert_int_equal(t_rec_wait(&rc, HPS_EV_RECEIVE, NPACK, T_WAIT_MS), 0);
  expect_frames(&rc, id, PACK_SIZES, NPACK, 600u);
  t_stop_free(cl);
  t_stop_free(srv);
  t_rec_free(&rs);
  t_rec_free(&rc);
}

/* Different header flags on the two sides: the server rejects the first
 * frame; the client sees its peer close. */
static void test_pack_flag_mismatch_between_hpsock_peers_closes(
    void **state) {
  t_rec rs, ra;
  hps_endpoint *srv, *agent;
  uint16_t port;
  hps_conn_id id = 0, sconn;
  const int64_t sopts[] = {HPS_OPT_PACK_FLAG, 5, 0};
  const int64_t aopts[] = {HPS_OPT_PACK_FLAG, 6, 0};
  (void)state;
  t_rec_init(&rs);
  t_rec_init(&ra);
  srv = t_server_opts(&rs, 1, HPS_MODEL_PACK, sopts, &port);
  agent = t_agent_opts(&ra, 1, HPS_MODEL_PACK, aopts);
  assert_int_equal(hps_connect(agent, HOST, port, &id), 0);
  t_conn_event(&ra, id, HPS_EV_HANDSHAKE);
  assert_int_equal(hps_send(agent, id, "hello", 5), 0);
  sconn = t_nth_conn(&rs, HPS_EV_ACCEPT, 0);
  t_expect_close(t_conn_event(&rs, sconn, HPS_EV_CLOSE), HPS_OP_RECEIVE,
                 HPS_EPACKFLAG);
  assert_int_equal(t_rec_count(&rs, HPS_EV_RECEIVE), 0);
  t_expect_close(t_conn_event(&ra, id, HPS_EV_CLOSE), HPS_OP_RECEIVE, 0);
  t_stop_free(agent);
  t_stop_free(srv);
  t_rec_free(&rs);
  t_rec_free(&ra);
}

/* What hps_send puts on the wire in the pack model, read by a plain peer:
 * header = (flag << 22) | length, little-endian, then the body. */
static void expect_wire(uint32_t flag, size_t len) {
  env e;
  const int64_t opts[] = {HPS_OPT_PACK_FLAG, flag, 0};
  unsigned char *body = malloc(len), *in = malloc(len + 4), hdr[4];
  uint32_t h = (flag << 22) | (uint32_t)len;
  env_open(&e, HPS_MODEL_PACK, opts);
  t_pat_fill(body, len, 700u + flag, 0);
  assert_int_equal(hps_send(e.ep, e.conn, body, len), 0);
  assert_int_equal(t_recv_exact(e.fd, in, len + 4, T_WAIT_MS), len + 4);
  hdr[0] = (unsigned char)(h & 0xff);
  hdr[1] = (unsigned char)((h >> 8) & 0xff);
  hdr[2] = (unsigned char)((h >> 16) & 0xff);
  hdr[3] = (unsigned char)(h >> 24);
  if (memcmp(in, hdr, 4) != 0)
    fail_msg("flag %u length %zu: header %02x %02x %02x %02x, expected %02x "
             "%02x %02x %02x",
             flag, len, in[0], in[1], in[2], in[3], hdr[0], hdr[1], hdr[2],
             hdr[3]);
  assert_memory_equal(in + 4, body, len);
  env_close(&e);
  free(body);
  free(in);
}

static void test_pack_wire_format_is_hpsocket_header_then_body(void **state) {
  unsigned char h[4];
  (void)state;
  /* the layout itself, spelled out once: flag 341, length 5 */
  put_le32(h, (341u << 22) | 5u);
  assert_memory_equal(h, "\x05\x00\x40\x55", 4);
  expect_wire(341, 5);
  expect_wire(0, 1);
  expect_wire(1, 300);
  expect_wire(512, 70000); /* top flag bit */
  expect_wire(1023, 262144); /* every flag bit, the default max length */
}

/* A plain peer sends good frames, then a bad header: the good frames are
 * delivered, then CLOSE with the pack error; nothing after it. */
static void expect_bad_header_close(const int64_t *opts, uint32_t bad,
                                    int error) {
  env e;
  unsigned char b[64];
  size_t lens[2] = {1, 3};
  uint32_t flag = 0;
  const int64_t *o;
  for (o = opts; o && o[0]; o += 2)
    if (o[0] == HPS_OPT_PACK_FLAG) flag = (uint32_t)o[1] << 22;
  env_open(&e, HPS_MODEL_PACK, opts);
  put_le32(b, flag | 1);
  t_pat_fill(b + 4, 1, 800u, 0);
  put_le32(b + 5, flag | 3);
  t_pat_fill(b + 9, 3, 801u, 0);
  put_le32(b + 12, bad);
  put_le32(b + 16, flag | 1); /* valid, after the bad header: never seen */
  b[20] = 'z';
  t_send_all(e.fd, b, 21);
  t_expect_close(t_conn_event(&e.r, e.conn, HPS_EV_CLOSE), HPS_OP_RECEIVE,
                 error);
  expect_frames(&e.r, e.conn, lens, 2, 800u);
  assert_int_equal(t_wait_eof(e.fd, T_WAIT_MS), 1);
  t_stop_free(e.ep);
  t_check_conn_events(&e.r, e.conn, SERVER_HEAD, 2);
  close(e.fd);
  t_rec_free(&e.r);
}

static void test_pack_bad_flag_from_plain_peer_closes_with_epackflag(
    void **state) {
  const int64_t flag9[] = {HPS_OPT_PACK_FLAG, 9, 0};
  env e;
  unsigned char b[5];
  (void)state;
  /* configured flag 9: frames with flag 9 pass, flag 10 does not */
  env_open(&e, HPS_MODEL_PACK, flag9);
  put_le32(b, (9u << 22) | 1u);
  b[4] = 'a';
  t_send_all(e.fd, b, 5);
  assert_int_equal(nth_receive(&e.r, 0).len, 1);
  put_le32(b, (10u << 22) | 1u);
  t_send_all(e.fd, b, 5);
  t_expect_close(t_conn_event(&e.r, e.conn, HPS_EV_CLOSE), HPS_OP_RECEIVE,
                 HPS_EPACKFLAG);
  env_close(&e);
}

static void test_pack_oversize_from_plain_peer_closes_with_epacksize(
    void **state) {
  const int64_t opts[] = {HPS_OPT_PACK_MAX, 1024, 0};
  (void)state;
  expect_bad_header_close(opts, 1025, HPS_EPACKSIZE);
  /* the largest length a header can carry, with the default max */
  expect_bad_header_close(NULL, 0x3fffff, HPS_EPACKSIZE);
}

static void test_pack_zero_length_from_plain_peer_closes_with_epackempty(
    void **state) {
  (void)state;
  expect_bad_header_close(NULL, 0, HPS_EPACKEMPTY);
}

static void test_pack_flag_checked_only_when_configured(void **state) {
  const int64_t flag3[] = {HPS_OPT_PACK_FLAG, 3, 0};
  (void)state;
  /* flag 3 configured: a header with flag 0 is rejected */
  expect_bad_header_close(flag3, 1, HPS_EPACKFLAG);
}

static void test_pack_send_checks_the_body(void **state) {
  env e;
  const int64_t opts[] = {HPS_OPT_PACK_MAX, 1024, 0};
  unsigned char body[1025], in[1028];
  hps_buf none[2] = {{body, 0}, {NULL, 0}};
  hps_buf over[2] = {{body, 1000}, {body, 25}};
  (void)state;
  memset(body, 'b', sizeof(body));
  env_open(&e, HPS_MODEL_PACK, opts);
  assert_int_equal(hps_send(e.ep, e.conn, body, 0), HPS_EPACKEMPTY);
  assert_int_equal(hps_sendv(e.ep, e.conn, none, 2), HPS_EPACKEMPTY);
  assert_int_equal(hps_send(e.ep, e.conn, body, 1025), HPS_EPACKSIZE);
  assert_int_equal(hps_sendv(e.ep, e.conn, over, 2), HPS_EPACKSIZE);
  assert_int_equal(hps_send(e.ep, e.conn, NULL, 5), HPS_EINVAL);
  /* nothing of those went out: the first bytes are this frame at the max */
  assert_int_equal(hps_send(e.ep, e.conn, body, 1024), 0);
  assert_int_equal(t_recv_exact(e.fd, in, 1028, T_WAIT_MS), 1028);
  assert_memory_equal(in, "\x00\x04\x00\x00", 4);
  assert_memory_equal(in + 4, body, 1024);
  env_close(&e);
  /* push model: NULL or empty is HPS_EINVAL */
  env_open(&e, HPS_MODEL_PUSH, NULL);
  assert_int_equal(hps_send(e.ep, e.conn, NULL, 5), HPS_EINVAL);
  assert_int_equal(hps_send(e.ep, e.conn, body, 0), HPS_EINVAL);
  assert_int_equal(hps_send(e.ep, e.conn, NULL, 0), HPS_EINVAL);
  assert_int_equal(hps_sendv(e.ep, e.conn, none, 2), HPS_EINVAL);
  env_close(&e);
}

/* In the pack model a SEND event carries the body, without the header. */
static int hook_sink_send(t_rec *r, const hps_event *ev) {
  if (ev->type == HPS_EV_SEND) t_conns_add(r->user, ev->conn, ev->data, ev->len);
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

static void test_pack_send_events_carry_the_body_without_header(
    void **state) {
  env e;
  t_conns *sent = t_conns_new();
  unsigned char in[64], got[64];
  sink_len sl;
  (void)state;
  t_rec_init(&e.r);
  e.r.hook = hook_sink_send;
  e.r.user = sent;
  e.ep = t_server_opts(&e.r, 1, HPS_MODEL_PACK, NULL, &e.port);
  e.fd = t_connect(HOST, e.port);
  e.conn = t_nth_conn(&e.r, HPS_EV_ACCEPT, 0);
  t_conn_event(&e.r, e.conn, HPS_EV_HANDSHAKE);
  assert_int_equal(hps_send(e.ep, e.conn, "body-one", 8), 0);
  assert_int_equal(hps_send(e.ep, e.conn, "two", 3), 0);
  assert_int_equal(t_recv_exact(e.fd, in, 19, T_WAIT_MS), 19);
  sl.t = sent;
  sl.conn = e.conn;
  sl.len = 11;
  assert_int_equal(t_poll(sink_has, &sl, T_WAIT_MS), 0);
  assert_int_equal(t_conns_get(sent, e.conn, got, sizeof(got)), 11);
  assert_memory_equal(got, "body-onetwo", 11);
  assert_int_equal(t_rec_count(&e.r, HPS_EV_SEND), 2);
  env_close(&e);
  t_conns_free(sent);
}

/* ------------------------------------------------------------------ */
/* tests/fixtures/pack/vectors.txt over a real connection              */
/* ------------------------------------------------------------------ */

typedef struct vec {
  char name[96];
  uint32_t flag, max;
  unsigned char *input;
  size_t ninput;
  unsigned char **frames;
  size_t *flens;
  int nframes;
  int error; /* 0 or HPS_EPACK* */
} vec;

typedef struct vec_list {
  vec *v;
  size_t n;
  char bad[1400];
} vec_list;

static char *trim(char *s) {
  char *e;
  while (*s == ' ' || *s == '\t') s++;
  e = s + strlen(s);
  while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r')) *--e = 0;
  return s;
}

/* Hex (spaces ignored, "-" = empty) into a malloc'd buffer; -1 if bad. */
static long unhex(const char *s, unsigned char **out) {
  size_t n = 0, cap = strlen(s) / 2 + 1;
  unsigned char *b = malloc(cap);
  int hi = -1;
  *out = b;
  if (strcmp(s, "-") == 0) return 0;
  for (; *s; s++) {
    int d;
    if (*s == ' ' || *s == '\t') continue;
    if (*s >= '0' && *s <= '9') d = *s - '0';
    else if (*s >= 'a' && *s <= 'f') d = *s - 'a' + 10;
    else if (*s >= 'A' && *s <= 'F') d = *s - 'A' + 10;
    else return -1;
    if (hi < 0) hi = d;
    else {
      b[n++] = (unsigned char)(hi << 4 | d);
      hi = -1;
    }
  }
  return hi < 0 ? (long)n : -1;
}

static void parse_vector(char *line, vec_list *l) {
  char *f[6], *save = NULL, *p;
  vec v;
  int i;
  long n;
  memset(&v, 0, sizeof(v));
  for (i = 0, p = strtok_r(line, "|", &save); p && i < 6;
       p = strtok_r(NULL, "|", &save))
    f[i++] = trim(p);
  if (i != 6 || p != NULL) goto bad;
  snprintf(v.name, sizeof(v.name), "%s", f[0]);
  if (sscanf(f[1], "flag=%u max=%u", &v.flag, &v.max) != 2) goto bad;
  if ((n = unhex(f[2], &v.input)) < 0) goto bad;
  v.ninput = (size_t)n;
  if (strncmp(f[3], "frames=", 7) != 0) goto bad;
  if (strcmp(f[3] + 7, "-") != 0) {
    char *save2 = NULL, *fr;
    for (fr = strtok_r(f[3] + 7, ",", &save2); fr;
         fr = strtok_r(NULL, ",", &save2)) {
      v.frames = realloc(v.frames, (size_t)(v.nframes + 1) * sizeof(*v.frames));
      v.flens = realloc(v.flens, (size_t)(v.nframes + 1) * sizeof(*v.flens));
      if ((n = unhex(trim(fr), &v.frames[v.nframes])) <= 0) goto bad;
      v.flens[v.nframes++] = (size_t)n;
    }
  }
  if (strcmp(f[4], "error=NONE") == 0) v.error = 0;
  else if (strcmp(f[4], "error=EPACKFLAG") == 0) v.error = HPS_EPACKFLAG;
  else if (strcmp(f[4], "error=EPACKSIZE") == 0) v.error = HPS_EPACKSIZE;
  else if (strcmp(f[4], "error=EPACKEMPTY") == 0) v.error = HPS_EPACKEMPTY;
  else goto bad;
  if (strncmp(f[5], "pending=", 8) != 0) goto bad;
  l->v = realloc(l->v, (l->n + 1) * sizeof(*l->v));
  l->v[l->n++] = v;
  return;
bad:
  if (l->bad[0] == 0)
    snprintf(l->bad, sizeof(l->bad), "bad vector line: %.200s", line);
}

static void run_pack_vector(void **state) {
  const vec *v = *state;
  env e;
  int64_t opts[] = {HPS_OPT_PACK_FLAG, v->flag, HPS_OPT_PACK_MAX, v->max, 0};
  size_t got, off = 0;
  unsigned char *data;
  t_ev c;
  int i;
  env_open(&e, HPS_MODEL_PACK, opts);
  if (v->ninput) t_send_all(e.fd, v->input, v->ninput);
  shutdown(e.fd, SHUT_WR); /* the end of the stream follows the input */
  c = t_conn_event(&e.r, e.conn, HPS_EV_CLOSE);
  /* a clean end after the input (NONE), else the codec's error */
  if (c.op != HPS_OP_RECEIVE || c.error != v->error)
    fail_msg("%s: CLOSE op %d error %s, expected op %d error %s", v->name,
             c.op, hps_err_name(c.error), HPS_OP_RECEIVE,
             hps_err_name(v->error));
  data = t_rec_data_copy(&e.r, &got);
  if (t_rec_count(&e.r, HPS_EV_RECEIVE) != v->nframes)
    fail_msg("%s: %d frames, expected %d", v->name,
             t_rec_count(&e.r, HPS_EV_RECEIVE), v->nframes);
  for (i = 0; i < v->nframes; i++) {
    t_ev r;
    assert_int_equal(t_rec_get(&e.r, HPS_EV_RECEIVE, i, &r), 0);
    if (r.len != v->flens[i] || off + r.len > got ||
        memcmp(data + off, v->frames[i], r.len) != 0)
      fail_msg("%s: frame %d differs (%zu bytes, expected %zu)", v->name, i,
               r.len, v->flens[i]);
    off += r.len;
  }
  free(data);
  env_close(&e);
}

static void fixture_missing(void **state) {
  fail_msg("%s", (const char *)*state);
}

static int run_vector_group(void) {
  vec_list l;
  char *text, *save = NULL, *line;
  char path[1024];
  struct CMUnitTest *tests;
  FILE *f;
  size_t i;
  int j, failed;
  memset(&l, 0, sizeof(l));
  snprintf(path, sizeof(path), "%s/pack/vectors.txt", HPS_FIXTURES_DIR);
  if ((f = fopen(path, "rb")) == NULL) {
    snprintf(l.bad, sizeof(l.bad), "%.1024s: %.300s", path, strerror(errno));
  } else {
    fclose(f);
    text = t_fixture("pack/vectors.txt", NULL);
    for (line = strtok_r(text, "\n", &save); line;
         line = strtok_r(NULL, "\n", &save)) {
      char *t = trim(line);
      if (*t == 0 || *t == '#') continue;
      parse_vector(t, &l);
    }
    free(text);
    if (l.n == 0 && l.bad[0] == 0)
      snprintf(l.bad, sizeof(l.bad), "%.1024s: no vectors", path);
  }
  if (l.bad[0]) {
    struct CMUnitTest t = {"pack_vectors_fixture", fixture_missing, NULL, NULL,
                           l.bad};
    return _cmocka_run_group_tests("pack_vectors", &t, 1, NULL, NULL);
  }
  tests = calloc(l.n, sizeof(*tests));
  for (i = 0; i < l.n; i++) {
    tests[i].name = l.v[i].name;
    tests[i].test_func = run_pack_vector;
    tests[i].initial_state = &l.v[i];
  }
  failed = _cmocka_run_group_tests("pack_vectors", tests, l.n, NULL, NULL);
  for (i = 0; i < l.n; i++) {
    free(l.v[i].input);
    for (j = 0; j < l.v[i].nframes; j++) free(l.v[i].frames[j]);
    free(l.v[i].frames);
    free(l.v[i].flens);
  }
  free(l.v);
  free(tests);
  return failed;
}

int main(void) {
  const char *filter = getenv("HPS_TEST_FILTER");
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(
          test_pull_receive_len_is_total_waiting_and_later_reads_append),
      cmocka_unit_test(test_pull_fetch_takes_exactly_n_and_peek_leaves_bytes),
      cmocka_unit_test(
          test_pull_asking_for_more_than_waits_is_eagain_and_takes_nothing),
      cmocka_unit_test(test_pull_max_exceeded_closes_with_epullfull),
      cmocka_unit_test(test_fetch_and_peek_need_the_pull_model),
      cmocka_unit_test(
          test_pack_frames_arrive_whole_however_the_stream_is_split),
      cmocka_unit_test(test_pack_echo_between_hpsock_server_and_agent),
      cmocka_unit_test(test_pack_echo_between_hpsock_server_and_client),
      cmocka_unit_test(test_pack_flag_mismatch_between_hpsock_peers_closes),
      cmocka_unit_test(test_pack_wire_format_is_hpsocket_header_then_body),
      cmocka_unit_test(
          test_pack_bad_flag_from_plain_peer_closes_with_epackflag),
      cmocka_unit_test(
          test_pack_oversize_from_plain_peer_closes_with_epacksize),
      cmocka_unit_test(
          test_pack_zero_length_from_plain_peer_closes_with_epackempty),
      cmocka_unit_test(test_pack_flag_checked_only_when_configured),
      cmocka_unit_test(test_pack_send_checks_the_body),
      cmocka_unit_test(test_pack_send_events_carry_the_body_without_header),
  };
  int failed;
  if (filter) cmocka_set_test_filter(filter);
  failed = cmocka_run_group_tests_name("models", tests, NULL, NULL);
  return failed + run_vector_group();
}
