/* test_toolkit.c - the send and connection-management toolkit end to end:
 * hps_sendv (one contiguous message, never interleaved; one frame in the
 * pack model), hps_send_file (ranges, errors, order with later sends),
 * pause/resume of receiving, hps_disconnect_silent / hps_disconnect_long,
 * the silence timeout, statistics, and the send-queue limit (memory stays
 * bounded with a peer that never reads; sends work again once it does). */
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
#define KIB 1024
#define MIB (1024 * 1024)
/* XOR into an ID: a generation no connection ever had */
#define STALE_BIT 0x8000000000000000ull

/* A server with options and one plain peer whose handshake is done. */
typedef struct env {
  t_rec r;
  hps_endpoint *ep;
  uint16_t port;
  int fd;
  hps_conn_id conn;
} env;

static void env_start(env *e, int workers, int model, const int64_t *opts,
                      t_hook hook, void *user) {
  t_rec_init(&e->r);
  e->r.hook = hook;
  e->r.user = user;
  e->fd = -1; /* a test with several peers keeps their fds itself */
  e->conn = 0;
  e->ep = t_server_opts(&e->r, workers, model, opts, &e->port);
}

static hps_conn_id env_peer(env *e, int i, int *fd) {
  hps_conn_id c;
  *fd = t_connect(HOST, e->port);
  c = t_nth_conn(&e->r, HPS_EV_ACCEPT, i);
  t_conn_event(&e->r, c, HPS_EV_HANDSHAKE);
  return c;
}

static void env_open(env *e, int model, const int64_t *opts, t_hook hook,
                     void *user) {
  env_start(e, 1, model, opts, hook, user);
  e->conn = env_peer(e, 0, &e->fd);
}

static void env_close(env *e) {
  if (e->fd >= 0) close(e->fd);
  t_stop_free(e->ep);
  t_rec_free(&e->r);
}

typedef struct stat_q {
  hps_endpoint *ep;
  hps_conn_id conn;
  uint64_t value;
} stat_q;

static hps_stats stats_of(hps_endpoint *ep, hps_conn_id conn) {
  hps_stats s;
  assert_int_equal(hps_get_stats(ep, conn, &s), 0);
  return s;
}

static int silence_reached(void *arg) {
  stat_q *q = arg;
  hps_stats s;
  return hps_get_stats(q->ep, q->conn, &s) == 0 && s.silence_ms >= q->value;
}

static int age_reached(void *arg) {
  stat_q *q = arg;
  hps_stats s;
  return hps_get_stats(q->ep, q->conn, &s) == 0 && s.age_ms >= q->value;
}

/* ------------------------------------------------------------------ */
/* hps_sendv                                                           */
/* ------------------------------------------------------------------ */

/* On RECEIVE of "v": the same gathered send from the loop's own thread. */
static int hook_sendv_on_v(t_rec *r, const hps_event *ev) {
  const hps_buf *bufs = r->user;
  if (ev->type == HPS_EV_RECEIVE && ev->len == 1 &&
      ((const char *)ev->data)[0] == 'v')
    return hps_sendv(ev->endpoint, ev->conn, bufs, 4) == 0 ? HPS_HR_OK
                                                          : HPS_HR_ERROR;
  return HPS_HR_OK;
}

static void test_sendv_buffers_arrive_as_one_contiguous_message(void **state) {
  enum { N = 100 + 70000 + 1 };
  env e;
  unsigned char *all = malloc(N), *in = malloc(N);
  hps_buf bufs[4];
  (void)state;
  t_pat_fill(all, N, 50, 0);
  bufs[0].base = all;
  bufs[0].len = 100;
  bufs[1].base = NULL; /* empty buffers are skipped */
  bufs[1].len = 0;
  bufs[2].base = all + 100;
  bufs[2].len = 70000;
  bufs[3].base = all + 70100;
  bufs[3].len = 1;
  env_open(&e, HPS_MODEL_PUSH, NULL, hook_sendv_on_v, bufs);
  /* from another thread */
  assert_int_equal(hps_sendv(e.ep, e.conn, bufs, 4), 0);
  assert_int_equal(t_recv_exact(e.fd, in, N, T_WAIT_MS), N);
  assert_memory_equal(in, all, N);
  /* from the handler, on the loop's thread */
  t_send_all(e.fd, "v", 1);
  memset(in, 0, N);
  assert_int_equal(t_recv_exact(e.fd, in, N, T_WAIT_MS), N);
  assert_memory_equal(in, all, N);
  /* argument checks */
  assert_int_equal(hps_sendv(e.ep, e.conn, NULL, 1), HPS_EINVAL);
  assert_int_equal(hps_sendv(e.ep, e.conn, bufs, 0), HPS_EINVAL);
  bufs[1].len = 5; /* NULL base with a length */
  assert_int_equal(hps_sendv(e.ep, e.conn, bufs, 4), HPS_EINVAL);
  assert_int_equal(stats_of(e.ep, e.conn).msgs_sent, 2);
  env_close(&e);
  free(all);
  free(in);
}

#define REC 997 /* odd: no record boundary on a power of two */

typedef struct rec_job {
  hps_endpoint *ep;
  hps_conn_id conn;
  int src, n, gathered, failures;
} rec_job;

/* Sends records either whole (hps_send) or in 4 pieces (hps_sendv). */
static void *record_sender(void *arg) {
  rec_job *j = arg;
  unsigned char rec[REC];
  int i;
  for (i = 0; i < j->n; i++) {
    int r;
    t_record_fill(rec, REC, j->src, (uint32_t)i);
    if (j->gathered) {
      hps_buf b[4] = {{rec, 1}, {rec + 1, 4}, {rec + 5, 500}, {rec + 505,
                                                              REC - 505}};
      r = hps_sendv(j->ep, j->conn, b, 4);
    } else {
      r = hps_send(j->ep, j->conn, rec, REC);
    }
    if (r != 0) j->failures++;
  }
  return NULL;
}

static void test_sendv_never_interleaves_with_concurrent_sends(void **state) {
  enum { T = 6, PER = 300 };
  env e;
  pthread_t th[T];
  rec_job jobs[T];
  size_t total = (size_t)T * PER * REC;
  unsigned char *b = malloc(total);
  int i;
  (void)state;
  env_start(&e, 2, HPS_MODEL_PUSH, NULL, NULL, NULL);
  e.conn = env_peer(&e, 0, &e.fd);
  for (i = 0; i < T; i++) {
    jobs[i].ep = e.ep;
    jobs[i].conn = e.conn;
    jobs[i].src = i;
    jobs[i].n = PER;
    jobs[i].gathered = i % 2 == 0; /* half sendv, half send */
    jobs[i].failures = 0;
    assert_int_equal(pthread_create(&th[i], NULL, record_sender, &jobs[i]),
                     0);
  }
  assert_int_equal(t_recv_exact(e.fd, b, total, 30000), total);
  for (i = 0; i < T; i++) {
    pthread_join(th[i], NULL);
    assert_int_equal(jobs[i].failures, 0);
  }
  t_records_check(b, total, REC, T, PER);
  env_close(&e);
  free(b);
}

static void test_sendv_in_pack_model_sends_one_frame(void **state) {
  env e;
  unsigned char in[4 + 30], body[30];
  hps_buf bufs[3] = {{body, 10}, {NULL, 0}, {body + 10, 20}};
  (void)state;
  t_pat_fill(body, 30, 51, 0);
  env_open(&e, HPS_MODEL_PACK, NULL, NULL, NULL);
  assert_int_equal(hps_sendv(e.ep, e.conn, bufs, 3), 0);
  assert_int_equal(t_recv_exact(e.fd, in, sizeof(in), T_WAIT_MS), sizeof(in));
  assert_memory_equal(in, "\x1e\x00\x00\x00", 4); /* one header: 30 bytes */
  assert_memory_equal(in + 4, body, 30);
  env_close(&e);
}

/* ------------------------------------------------------------------ */
/* hps_send_file                                                       */
/* ------------------------------------------------------------------ */

#define FILE_LEN (1 * MIB)
#define FILE_SEED 60u

/* A temp file of FILE_LEN pattern bytes; path in path[64]. */
static void make_file(char *path) {
  const char *dir = getenv("TMPDIR");
  unsigned char *b = malloc(FILE_LEN);
  int fd;
  snprintf(path, 64, "%.40s/hps_file_XXXXXX", dir && *dir ? dir : "/tmp");
  fd = mkstemp(path);
  assert_true(fd >= 0);
  t_pat_fill(b, FILE_LEN, FILE_SEED, 0);
  assert_int_equal(write(fd, b, FILE_LEN), FILE_LEN);
  close(fd);
  free(b);
}

static void test_send_file_whole_part_and_to_the_end(void **state) {
  env e;
  char path[64];
  size_t total = FILE_LEN + 100000 + (FILE_LEN - 1000000);
  unsigned char *in = malloc(total);
  (void)state;
  make_file(path);
  env_open(&e, HPS_MODEL_PUSH, NULL, NULL, NULL);
  assert_int_equal(hps_send_file(e.ep, e.conn, path, 0, -1), 0);
  assert_int_equal(hps_send_file(e.ep, e.conn, path, 12345, 100000), 0);
  assert_int_equal(hps_send_file(e.ep, e.conn, path, 1000000, -1), 0);
  assert_int_equal(t_recv_exact(e.fd, in, total, 20000), total);
  assert_int_equal(t_pat_check(in, FILE_LEN, FILE_SEED, 0), -1);
  assert_int_equal(t_pat_check(in + FILE_LEN, 100000, FILE_SEED, 12345), -1);
  assert_int_equal(t_pat_check(in + FILE_LEN + 100000, FILE_LEN - 1000000,
                               FILE_SEED, 1000000),
                   -1);
  /* the file itself is not changed by sending */
  env_close(&e);
  unlink(path);
  free(in);
}

static void test_send_file_bad_path_or_range_is_efile(void **state) {
  env e;
  char path[64], missing[80], in[8];
  (void)state;
  make_file(path);
  snprintf(missing, sizeof(missing), "%s.missing", path);
  env_open(&e, HPS_MODEL_PUSH, NULL, NULL, NULL);
  assert_int_equal(hps_send_file(e.ep, e.conn, missing, 0, -1), HPS_EFILE);
  assert_int_equal(hps_send_file(e.ep, e.conn, "/", 0, -1), HPS_EFILE);
  assert_int_equal(hps_send_file(e.ep, e.conn, path, FILE_LEN + 1, -1),
                   HPS_EFILE);
  assert_int_equal(hps_send_file(e.ep, e.conn, path, FILE_LEN + 1, 1),
                   HPS_EFILE);
  assert_int_equal(hps_send_file(e.ep, e.conn, path, 0, FILE_LEN + 1),
                   HPS_EFILE);
  assert_int_equal(hps_send_file(e.ep, e.conn, path, FILE_LEN - 10, 11),
                   HPS_EFILE);
  assert_int_equal(hps_send_file(e.ep, e.conn, path, -1, 10), HPS_EINVAL);
  assert_int_equal(hps_send_file(e.ep, e.conn, NULL, 0, 10), HPS_EINVAL);
  assert_int_equal(hps_send_file(e.ep, e.conn ^ STALE_BIT, path, 0, 10),
                   HPS_ENOTFOUND);
  /* none of those sent anything; the connection works and the last bytes
   * of the file can be sent */
  assert_int_equal(hps_send_file(e.ep, e.conn, path, FILE_LEN - 8, 8), 0);
  assert_int_equal(t_recv_exact(e.fd, in, 8, T_WAIT_MS), 8);
  assert_int_equal(t_pat_check(in, 8, FILE_SEED, FILE_LEN - 8), -1);
  env_close(&e);
  /* pack model: no file sends */
  env_open(&e, HPS_MODEL_PACK, NULL, NULL, NULL);
  assert_int_equal(hps_send_file(e.ep, e.conn, path, 0, -1), HPS_EMODEL);
  env_close(&e);
  unlink(path);
}

/* On RECEIVE of "f": a file send then a send, from the loop's thread. */
static int hook_file_then_send(t_rec *r, const hps_event *ev) {
  const char *path = r->user;
  if (ev->type == HPS_EV_RECEIVE && ev->len == 1 &&
      ((const char *)ev->data)[0] == 'f') {
    if (hps_send_file(ev->endpoint, ev->conn, path, 0, -1) != 0 ||
        hps_send(ev->endpoint, ev->conn, "TRAILER", 7) != 0)
      return HPS_HR_ERROR;
  }
  return HPS_HR_OK;
}

static void test_sends_after_a_file_send_arrive_after_its_bytes(
    void **state) {
  env e;
  char path[64];
  size_t total = FILE_LEN + 7 + 5 + 10 + 3;
  unsigned char *in = malloc(total);
  hps_buf v[2] = {{"ab", 2}, {"cde", 3}};
  (void)state;
  make_file(path);
  env_open(&e, HPS_MODEL_PUSH, NULL, hook_file_then_send, path);
  /* from another thread: file, send, sendv, file, send */
  assert_int_equal(hps_send_file(e.ep, e.conn, path, 0, -1), 0);
  assert_int_equal(hps_send(e.ep, e.conn, "TRAILER", 7), 0);
  assert_int_equal(hps_sendv(e.ep, e.conn, v, 2), 0);
  assert_int_equal(hps_send_file(e.ep, e.conn, path, 5, 10), 0);
  assert_int_equal(hps_send(e.ep, e.conn, "END", 3), 0);
  assert_int_equal(t_recv_exact(e.fd, in, total, 20000), total);
  assert_int_equal(t_pat_check(in, FILE_LEN, FILE_SEED, 0), -1);
  assert_memory_equal(in + FILE_LEN, "TRAILERabcde", 12);
  assert_int_equal(t_pat_check(in + FILE_LEN + 12, 10, FILE_SEED, 5), -1);
  assert_memory_equal(in + FILE_LEN + 22, "END", 3);
  /* from the handler: the send right after the file goes behind it */
  t_send_all(e.fd, "f", 1);
  memset(in, 0, total);
  assert_int_equal(t_recv_exact(e.fd, in, FILE_LEN + 7, 20000),
                   FILE_LEN + 7);
  assert_int_equal(t_pat_check(in, FILE_LEN, FILE_SEED, 0), -1);
  assert_memory_equal(in + FILE_LEN, "TRAILER", 7);
  env_close(&e);
  unlink(path);
  free(in);
}

/* ------------------------------------------------------------------ */
/* pause / resume                                                      */
/* ------------------------------------------------------------------ */

/* Echo every connection but the one in r->user (the paused one). */
static int hook_echo_others(t_rec *r, const hps_event *ev) {
  hps_conn_id paused = __atomic_load_n((hps_conn_id *)r->user,
                                       __ATOMIC_ACQUIRE);
  if (ev->type == HPS_EV_RECEIVE && ev->conn != paused)
    hps_send(ev->endpoint, ev->conn, ev->data, ev->len);
  return HPS_HR_OK;
}

/* One round trip on the other connection: the loop ran at least once
 * after the moment it began. */
static void round_trip(int fd) {
  char c = 'k';
  t_send_all(fd, &c, 1);
  assert_int_equal(t_recv_exact(fd, &c, 1, T_WAIT_MS), 1);
}

static void test_pause_stops_receive_until_resume(void **state) {
  env e;
  hps_conn_id a, b, paused = 0;
  int fa, fb, one = 65536;
  size_t sent = 0;
  unsigned char *out = malloc(8 * MIB), *got;
  size_t ngot;
  const int64_t opts[] = {HPS_OPT_RCVBUF, 65536, 0};
  (void)state;
  /* one loop, so a round trip on b shows the loop has turned */
  env_start(&e, 1, HPS_MODEL_PUSH, opts, hook_echo_others, &paused);
  a = env_peer(&e, 0, &fa);
  b = env_peer(&e, 1, &fb);
  __atomic_store_n(&paused, a, __ATOMIC_RELEASE);
  assert_int_equal(hps_pause_receive(e.ep, a, 1), 0);
  round_trip(fb); /* the pause command has run by the end of the next */
  round_trip(fb);
  /* a's peer sends until TCP stops it: the paused side reads nothing */
  setsockopt(fa, SOL_SOCKET, SO_SNDBUF, &one, sizeof(one));
  t_pat_fill(out, 8 * MIB, 70, 0);
  for (;;) {
    ssize_t n = send(fa, out + sent, 4096, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    assert_true(n > 0);
    sent += (size_t)n;
    assert_true(sent + 4096 <= 8 * MIB); /* flow control must stop it */
  }
  round_trip(fb); /* had a been readable and not paused, it would show */
  round_trip(fb);
  assert_int_equal(t_rec_conn_count(&e.r, a, HPS_EV_RECEIVE), 0);
  assert_int_equal(stats_of(e.ep, a).bytes_received, 0);
  assert_int_equal(stats_of(e.ep, b).bytes_received, 4);
  /* resume: every byte arrives, in order */
  assert_int_equal(hps_pause_receive(e.ep, a, 0), 0);
  assert_int_equal(t_rec_wait_bytes(&e.r, sent + 4, T_WAIT_MS), 0);
  got = t_rec_data_copy(&e.r, &ngot);
  /* b's four round trips all came first, then every byte of a's */
  assert_int_equal(ngot, sent + 4);
  assert_memory_equal(got, "kkkk", 4);
  assert_int_equal(t_pat_check(got + 4, sent, 70, 0), -1);
  assert_int_equal(hps_pause_receive(e.ep, a ^ STALE_BIT, 1), HPS_ENOTFOUND);
  free(got);
  close(fa);
  close(fb);
  env_close(&e);
  free(out);
}

/* Pack model: a pause from a RECEIVE handler takes effect at once. The
 * peer writes many small frames in one write, so one read holds them all;
 * frame i's body is "frame <i>" padded to 6 + i % 7 bytes of the pattern. */
#define PF_FRAMES 200

typedef struct pause_q {
  int mode;            /* PQ_* */
  int npause;          /* frames whose handler paused (atomic) */
  int pause_ret, resume_ret; /* atomic: written on the loop thread */
} pause_q;

enum {
  PQ_PAUSE_FIRST = 1,  /* pause in the first frame's handler only */
  PQ_PAUSE_RESUME = 2, /* pause and resume in every frame's handler */
  PQ_PAUSE_EVERY = 3   /* pause in every frame's handler */
};

static int hook_pack_pause(t_rec *r, const hps_event *ev) {
  pause_q *q = r->user;
  int first;
  if (ev->type != HPS_EV_RECEIVE) return HPS_HR_OK;
  first = t_rec_count(r, HPS_EV_RECEIVE) == 1;
  if (q->mode == PQ_PAUSE_FIRST && !first) return HPS_HR_OK;
  __atomic_add_fetch(&q->npause, 1, __ATOMIC_RELEASE);
  __atomic_store_n(&q->pause_ret, hps_pause_receive(ev->endpoint, ev->conn, 1),
                   __ATOMIC_RELEASE);
  if (q->mode == PQ_PAUSE_RESUME)
    __atomic_store_n(&q->resume_ret,
                     hps_pause_receive(ev->endpoint, ev->conn, 0),
                     __ATOMIC_RELEASE);
  return HPS_HR_OK;
}

static size_t pf_len(int i) { return 10 + (size_t)(i % 7); }

/* Frames [from, to) as a pack stream into out; returns its length. */
static size_t pf_build(unsigned char *out, int from, int to) {
  size_t n = 0;
  int i;
  for (i = from; i < to; i++) {
    uint32_t len = (uint32_t)pf_len(i);
    out[n] = (unsigned char)len;
    out[n + 1] = (unsigned char)(len >> 8);
    out[n + 2] = out[n + 3] = 0;
    t_pat_fill(out + n + 4, len, 90, (uint64_t)i * 16);
    memcpy(out + n + 4, "frame", 5); /* then three digits: 10 bytes min */
    out[n + 9] = (unsigned char)('0' + i / 100 % 10);
    out[n + 10] = (unsigned char)('0' + i / 10 % 10);
    out[n + 11] = (unsigned char)('0' + i % 10);
    n += 4 + len;
  }
  return n;
}

/* The bodies of frames [from, to) back to back, as the recorder keeps
 * them. */
static size_t pf_bodies(unsigned char *out, int from, int to) {
  unsigned char *tmp = malloc(PF_FRAMES * 32);
  size_t n = pf_build(tmp, from, to), o = 0, k = 0;
  while (k < n) {
    size_t len = tmp[k] | (size_t)tmp[k + 1] << 8;
    memcpy(out + o, tmp + k + 4, len);
    o += len;
    k += 4 + len;
  }
  free(tmp);
  return o;
}

/* Exactly the frames [0, n) arrived, in order, as n RECEIVEs. */
static void pf_expect(t_rec *r, hps_conn_id conn, int n) {
  unsigned char *want = malloc(PF_FRAMES * 32), *got;
  size_t wn = pf_bodies(want, 0, n), gn;
  int i;
  t_ev ev;
  assert_int_equal(t_rec_conn_count(r, conn, HPS_EV_RECEIVE), n);
  for (i = 0; i < n; i++) {
    assert_int_equal(t_rec_get(r, HPS_EV_RECEIVE, i, &ev), 0);
    if (ev.len != pf_len(i))
      fail_msg("RECEIVE %d has %zu bytes, frame %d has %zu", i, ev.len, i,
               pf_len(i));
  }
  got = t_rec_data_copy(r, &gn);
  assert_int_equal(gn, wn);
  assert_memory_equal(got, want, wn);
  free(got);
  free(want);
}

/* While held: exactly one RECEIVE, and it stays so. */
/* A pack server whose handler pauses as mode says, and one write of the
 * n bytes at out to it. */
static void pf_open(env *e, pause_q *q, int mode, const unsigned char *out,
                    size_t n) {
  memset(q, 0, sizeof(*q));
  q->mode = mode;
  env_open(e, HPS_MODEL_PACK, NULL, hook_pack_pause, q);
  t_send_all(e->fd, out, n);
}

static void pf_expect_held(env *e, pause_q *q) {
  assert_int_equal(t_rec_wait(&e->r, HPS_EV_RECEIVE, 1, T_WAIT_MS), 0);
  assert_int_equal(t_rec_quiet(&e->r, 150), 0);
  assert_int_equal(t_rec_count(&e->r, HPS_EV_RECEIVE), 1);
  assert_int_equal(__atomic_load_n(&q->npause, __ATOMIC_ACQUIRE), 1);
  assert_int_equal(__atomic_load_n(&q->pause_ret, __ATOMIC_ACQUIRE), 0);
  assert_int_equal(stats_of(e->ep, e->conn).msgs_received, 1);
}

/* pf_open with PF_FRAMES frames in one write, then pf_expect_held; the
 * bytes written. */
static size_t pf_open_held(env *e, pause_q *q, int mode) {
  unsigned char *out = malloc(PF_FRAMES * 32);
  size_t n = pf_build(out, 0, PF_FRAMES);
  pf_open(e, q, mode, out, n); /* one write: one read on the server */
  pf_expect_held(e, q);
  free(out);
  return n;
}

static void test_pack_pause_in_handler_holds_the_rest_of_the_read(
    void **state) {
  env e;
  pause_q q;
  unsigned char *out = malloc(PF_FRAMES * 32);
  size_t n;
  (void)state;
  n = pf_open_held(&e, &q, PQ_PAUSE_FIRST);
  /* the bytes were read (counted as received), the frames wait */
  assert_int_equal(stats_of(e.ep, e.conn).bytes_received, n);
  /* resumed from this thread: the rest arrives, in order, then more */
  assert_int_equal(hps_pause_receive(e.ep, e.conn, 0), 0);
  assert_int_equal(t_rec_wait(&e.r, HPS_EV_RECEIVE, PF_FRAMES, T_WAIT_MS), 0);
  pf_expect(&e.r, e.conn, PF_FRAMES);
  assert_int_equal(stats_of(e.ep, e.conn).msgs_received, PF_FRAMES);
  n = pf_build(out, PF_FRAMES, PF_FRAMES + 1);
  t_send_all(e.fd, out, n);
  assert_int_equal(
      t_rec_wait(&e.r, HPS_EV_RECEIVE, PF_FRAMES + 1, T_WAIT_MS), 0);
  env_close(&e);
  free(out);
}

/* Every handler pauses: each resume (from this thread) lets exactly one
 * more frame through. */
static void test_pack_pause_in_every_handler_releases_one_frame_per_resume(
    void **state) {
  env e;
  pause_q q;
  unsigned char *out = malloc(PF_FRAMES * 32);
  size_t n = pf_build(out, 0, 20);
  int i;
  (void)state;
  pf_open(&e, &q, PQ_PAUSE_EVERY, out, n);
  pf_expect_held(&e, &q);
  for (i = 2; i <= 20; i++) {
    assert_int_equal(hps_pause_receive(e.ep, e.conn, 0), 0);
    assert_int_equal(t_rec_wait(&e.r, HPS_EV_RECEIVE, i, T_WAIT_MS), 0);
    assert_int_equal(t_rec_quiet(&e.r, 20), 0);
    assert_int_equal(t_rec_count(&e.r, HPS_EV_RECEIVE), i);
  }
  pf_expect(&e.r, e.conn, 20);
  env_close(&e);
  free(out);
}

/* A pause and a resume within the same handler: delivery just goes on. */
static void test_pack_pause_and_resume_in_one_handler_goes_on(void **state) {
  env e;
  pause_q q;
  unsigned char *out = malloc(PF_FRAMES * 32);
  size_t n = pf_build(out, 0, PF_FRAMES);
  (void)state;
  pf_open(&e, &q, PQ_PAUSE_RESUME, out, n);
  assert_int_equal(t_rec_wait(&e.r, HPS_EV_RECEIVE, PF_FRAMES, T_WAIT_MS), 0);
  pf_expect(&e.r, e.conn, PF_FRAMES);
  assert_int_equal(__atomic_load_n(&q.pause_ret, __ATOMIC_ACQUIRE), 0);
  assert_int_equal(__atomic_load_n(&q.resume_ret, __ATOMIC_ACQUIRE), 0);
  env_close(&e);
  free(out);
}

/* The read ends inside a frame (header and part of the body): the partial
 * tail is held with the whole frames, and its end, sent after the resume,
 * completes it. */
static void test_pack_pause_holds_a_partial_frame_across_the_resume(
    void **state) {
  env e;
  pause_q q;
  unsigned char *out = malloc(PF_FRAMES * 32);
  size_t n = pf_build(out, 0, 50), cut = n - 3;
  (void)state;
  pf_open(&e, &q, PQ_PAUSE_FIRST, out, cut);
  pf_expect_held(&e, &q);
  assert_int_equal(hps_pause_receive(e.ep, e.conn, 0), 0);
  assert_int_equal(t_rec_wait(&e.r, HPS_EV_RECEIVE, 49, T_WAIT_MS), 0);
  assert_int_equal(t_rec_quiet(&e.r, 50), 0);
  assert_int_equal(t_rec_count(&e.r, HPS_EV_RECEIVE), 49);
  t_send_all(e.fd, out + cut, 3);
  assert_int_equal(t_rec_wait(&e.r, HPS_EV_RECEIVE, 50, T_WAIT_MS), 0);
  pf_expect(&e.r, e.conn, 50);
  env_close(&e);
  free(out);
}

/* A resume from a handler of another connection on the same loop: the
 * held frames come after that handler returned, from the loop, never
 * nested inside it. */
typedef struct other_q {
  hps_conn_id a;       /* atomic: the connection paused in its handler */
  int nested;          /* atomic: a's RECEIVE ran inside another handler */
  int during;          /* atomic: a's RECEIVEs during the resume call */
  int resume_ret;      /* atomic */
} other_q;

static int hook_resume_from_other(t_rec *r, const hps_event *ev) {
  other_q *q = r->user;
  hps_conn_id a = __atomic_load_n(&q->a, __ATOMIC_ACQUIRE);
  if (ev->type != HPS_EV_RECEIVE) return HPS_HR_OK;
  if (ev->conn == a) {
    if (__atomic_load_n(&r->in_handler, __ATOMIC_SEQ_CST) > 1)
      __atomic_store_n(&q->nested, 1, __ATOMIC_RELEASE);
    if (t_rec_conn_count(r, a, HPS_EV_RECEIVE) == 1)
      hps_pause_receive(ev->endpoint, a, 1);
  } else {
    int before = t_rec_conn_count(r, a, HPS_EV_RECEIVE);
    __atomic_store_n(&q->resume_ret, hps_pause_receive(ev->endpoint, a, 0),
                     __ATOMIC_RELEASE);
    __atomic_store_n(&q->during,
                     t_rec_conn_count(r, a, HPS_EV_RECEIVE) - before,
                     __ATOMIC_RELEASE);
  }
  return HPS_HR_OK;
}

static void test_pack_resume_from_another_handler_is_not_nested(
    void **state) {
  env e;
  other_q q;
  hps_conn_id a, b;
  int fa, fb;
  unsigned char *out = malloc(PF_FRAMES * 32), *want = malloc(PF_FRAMES * 32),
                *got;
  static const unsigned char resume[] = {7, 0, 0, 0, 'r', 'e', 's', 'u',
                                         'm', 'e', '!'};
  size_t n = pf_build(out, 0, PF_FRAMES), wn, gn;
  (void)state;
  memset(&q, 0, sizeof(q));
  env_start(&e, 1, HPS_MODEL_PACK, NULL, hook_resume_from_other, &q);
  a = env_peer(&e, 0, &fa);
  b = env_peer(&e, 1, &fb);
  __atomic_store_n(&q.a, a, __ATOMIC_RELEASE);
  t_send_all(fa, out, n);
  assert_int_equal(t_rec_wait(&e.r, HPS_EV_RECEIVE, 1, T_WAIT_MS), 0);
  assert_int_equal(t_rec_quiet(&e.r, 100), 0);
  assert_int_equal(t_rec_conn_count(&e.r, a, HPS_EV_RECEIVE), 1);
  t_send_all(fb, resume, sizeof(resume));
  assert_int_equal(t_rec_wait(&e.r, HPS_EV_RECEIVE, PF_FRAMES + 1, T_WAIT_MS),
                   0);
  assert_int_equal(__atomic_load_n(&q.resume_ret, __ATOMIC_ACQUIRE), 0);
  assert_int_equal(__atomic_load_n(&q.during, __ATOMIC_ACQUIRE), 0);
  assert_int_equal(__atomic_load_n(&q.nested, __ATOMIC_ACQUIRE), 0);
  assert_int_equal(t_rec_conn_count(&e.r, a, HPS_EV_RECEIVE), PF_FRAMES);
  assert_int_equal(t_rec_conn_count(&e.r, b, HPS_EV_RECEIVE), 1);
  /* a's first frame, b's, then the rest of a's in order */
  wn = pf_bodies(want, 0, 1);
  memcpy(want + wn, "resume!", 7);
  wn += 7;
  wn += pf_bodies(want + wn, 1, PF_FRAMES);
  got = t_rec_data_copy(&e.r, &gn);
  assert_int_equal(gn, wn);
  assert_memory_equal(got, want, wn);
  free(got);
  close(fa);
  close(fb);
  env_close(&e);
  free(out);
  free(want);
}

/* Closed or stopped while frames are held: they go with the connection
 * (no RECEIVE after, no leak under ASan). */
static void test_pack_disconnect_while_held_drops_them(void **state) {
  env e;
  pause_q q;
  (void)state;
  pf_open_held(&e, &q, PQ_PAUSE_FIRST);
  assert_int_equal(hps_disconnect(e.ep, e.conn, 0), 0);
  assert_int_equal(t_rec_wait_conn(&e.r, e.conn, HPS_EV_CLOSE, NULL,
                                   T_WAIT_MS),
                   0);
  assert_int_equal(t_rec_count(&e.r, HPS_EV_RECEIVE), 1);
  assert_int_equal(hps_pause_receive(e.ep, e.conn, 0), HPS_ENOTFOUND);
  env_close(&e);
}

static void test_pack_resume_then_disconnect_while_held(void **state) {
  env e;
  pause_q q;
  (void)state;
  pf_open_held(&e, &q, PQ_PAUSE_EVERY);
  /* the drain is queued behind the resume; the force disconnect right
   * after closes first or between frames: never a frame out of order */
  assert_int_equal(hps_pause_receive(e.ep, e.conn, 0), 0);
  assert_int_equal(hps_disconnect(e.ep, e.conn, 1), 0);
  assert_int_equal(t_rec_wait_conn(&e.r, e.conn, HPS_EV_CLOSE, NULL,
                                   T_WAIT_MS),
                   0);
  assert_true(t_rec_count(&e.r, HPS_EV_RECEIVE) <= 2);
  pf_expect(&e.r, e.conn, t_rec_count(&e.r, HPS_EV_RECEIVE));
  env_close(&e);
}

static void test_pack_stop_while_held_is_clean(void **state) {
  env e;
  pause_q q;
  (void)state;
  pf_open_held(&e, &q, PQ_PAUSE_FIRST);
  assert_int_equal(hps_stop(e.ep), 0);
  assert_int_equal(t_rec_conn_count(&e.r, e.conn, HPS_EV_CLOSE), 1);
  assert_int_equal(t_rec_count(&e.r, HPS_EV_RECEIVE), 1);
  env_close(&e); /* stops again (no-op) and frees */
}

/* Pause and resume inside ACCEPT and HANDSHAKE, then echo: the resume
 * starts reading before the engine would, and that must not close the
 * connection (libuv answers UV_EALREADY to a second read start). */
static int hook_pause_resume_early(t_rec *r, const hps_event *ev) {
  (void)r;
  if (ev->type == HPS_EV_ACCEPT || ev->type == HPS_EV_HANDSHAKE) {
    assert_int_equal(hps_pause_receive(ev->endpoint, ev->conn, 1), 0);
    assert_int_equal(hps_pause_receive(ev->endpoint, ev->conn, 0), 0);
  }
  if (ev->type == HPS_EV_RECEIVE)
    hps_send(ev->endpoint, ev->conn, ev->data, ev->len);
  return HPS_HR_OK;
}

/* ---- pack echoes straight from the read buffer ---- */

/* A pack header for len with flag, as the wire has it. */
static void pe_header(unsigned char *h, uint32_t flag, uint32_t len) {
  uint32_t v = (flag << 22) | len;
  h[0] = (unsigned char)v;
  h[1] = (unsigned char)(v >> 8);
  h[2] = (unsigned char)(v >> 16);
  h[3] = (unsigned char)(v >> 24);
}

/* The frame number pf_build wrote into a body ("frameNNN"). */
static int pe_index(const unsigned char *body) {
  return (body[5] - '0') * 100 + (body[6] - '0') * 10 + (body[7] - '0');
}

/* Frame i is answered by pattern i % 7: an echo; its body but the last
 * byte (where it starts, the read buffer holds the frame's own header,
 * which does not say this length); an echo twice; nothing; another frame,
 * then the echo; the body's tail from byte 4; an echo gathered from two
 * buffers. */
static int hook_pack_echo_patterns(t_rec *r, const hps_event *ev) {
  const unsigned char *b = ev->data;
  hps_endpoint *ep = ev->endpoint;
  hps_buf v[2];
  int i, fail = 0;
  (void)r;
  if (ev->type != HPS_EV_RECEIVE) return HPS_HR_OK;
  i = pe_index(b);
  switch (i % 7) {
  case 0:
    fail |= hps_send(ep, ev->conn, b, ev->len);
    break;
  case 1:
    fail |= hps_send(ep, ev->conn, b, ev->len - 1);
    break;
  case 2:
    fail |= hps_send(ep, ev->conn, b, ev->len);
    fail |= hps_send(ep, ev->conn, b, ev->len);
    break;
  case 3:
    break;
  case 4:
    fail |= hps_send(ep, ev->conn, "other", 5);
    fail |= hps_send(ep, ev->conn, b, ev->len);
    break;
  case 5:
    fail |= hps_send(ep, ev->conn, b + 4, ev->len - 4);
    break;
  default:
    v[0].base = b;
    v[0].len = 3;
    v[1].base = b + 3;
    v[1].len = ev->len - 3;
    fail |= hps_sendv(ep, ev->conn, v, 2);
  }
  return fail ? HPS_HR_ERROR : HPS_HR_OK;
}

/* What hook_pack_echo_patterns answers to frames [0, n) with flag. */
static size_t pe_expect(unsigned char *out, int n, uint32_t flag) {
  unsigned char *tmp = malloc((size_t)n * 32);
  size_t k = 0, o = 0, len = pf_build(tmp, 0, n);
  while (k < len) {
    size_t blen = tmp[k] | (size_t)tmp[k + 1] << 8;
    const unsigned char *b = tmp + k + 4;
    int i = pe_index(b), times = i % 7 == 2 ? 2 : i % 7 == 3 ? 0 : 1;
    size_t from = i % 7 == 5 ? 4 : 0, cut = i % 7 == 1 ? 1 : 0;
    if (i % 7 == 4) {
      pe_header(out + o, flag, 5);
      memcpy(out + o + 4, "other", 5);
      o += 9;
    }
    while (times-- > 0) {
      pe_header(out + o, flag, (uint32_t)(blen - from - cut));
      memcpy(out + o + 4, b + from, blen - from - cut);
      o += 4 + blen - from - cut;
    }
    k += 4 + blen;
  }
  free(tmp);
  return o;
}

/* Frames echoed from a handler go out from the read buffer itself when
 * they can (an echo of the whole frame, following the one echoed before
 * it); every other answer -- shorter, twice, skipped, after another send,
 * a part of the body, gathered -- is copied. The peer must get exactly what each
 * handler sent, in order, whatever the mix, with flag 0 and with a flag. */
static void test_pack_echo_from_the_read_buffer_keeps_every_answer(
    void **state) {
  static const uint32_t flags[] = {0, 0x2a5};
  int f;
  (void)state;
  for (f = 0; f < 2; f++) {
    /* no SEND events: with them every send is a write of its own */
    int64_t opts[] = {HPS_OPT_PACK_FLAG, flags[f], HPS_OPT_EVENTS,
                      HPS_EVENTS_ALL & ~HPS_EVBIT(HPS_EV_SEND), 0};
    env e;
    int n = 180;
    unsigned char *out = malloc((size_t)n * 32), *want, *got;
    size_t len = pf_build(out, 0, n), wlen, k;
    want = malloc((size_t)n * 80);
    got = malloc((size_t)n * 80);
    for (k = 0; k < len;) { /* the flag into every header */
      size_t blen = out[k] | (size_t)out[k + 1] << 8;
      pe_header(out + k, flags[f], (uint32_t)blen);
      k += 4 + blen;
    }
    wlen = pe_expect(want, n, flags[f]);
    env_open(&e, HPS_MODEL_PACK, opts, hook_pack_echo_patterns, NULL);
    t_send_all(e.fd, out, len); /* one write: mostly one read */
    assert_int_equal(t_recv_exact(e.fd, got, wlen, T_WAIT_MS), wlen);
    assert_memory_equal(got, want, wlen);
    /* and nothing more */
    t_send_all(e.fd, out, 4 + pf_len(0)); /* frame 0 again: one echo */
    assert_int_equal(t_recv_exact(e.fd, got, 4 + pf_len(0), T_WAIT_MS),
                     4 + pf_len(0));
    assert_memory_equal(got, out, 4 + pf_len(0));
    assert_int_equal(t_rec_count(&e.r, HPS_EV_RECEIVE), n + 1);
    assert_int_equal(t_rec_count(&e.r, HPS_EV_CLOSE), 0);
    env_close(&e);
    free(out);
    free(want);
    free(got);
  }
}

/* ---- pack echoes: the header written is this side's ---- */

/* Frame i carries flag 1 unless i % 3 == 0; the server's flag is 0 (not
 * checked, so every frame is accepted). */
static uint32_t pw_flag(int i) { return i % 3 != 0; }

static int pw_ret; /* atomic: the oversized send's answer, or 1 when none */

/* Echo every frame. First a send of the frame's body with 2^22 more bytes
 * than it has: over the max, refused, though 2^22 + len in a header's 32
 * bits is the peer's flag-1 header for this frame, byte for byte. */
static int hook_pack_echo_own_flag(t_rec *r, const hps_event *ev) {
  int x;
  (void)r;
  if (ev->type != HPS_EV_RECEIVE) return HPS_HR_OK;
  x = hps_send(ev->endpoint, ev->conn, ev->data, ev->len + (1u << 22));
  if (x != HPS_EPACKSIZE) __atomic_store_n(&pw_ret, x == 0 ? 1 : x,
                                           __ATOMIC_RELEASE);
  return hps_send(ev->endpoint, ev->conn, ev->data, ev->len) ? HPS_HR_ERROR
                                                            : HPS_HR_OK;
}

/* The server's flag is 0, so frames with any flag are accepted; its echo
 * of one is a frame with its own flag, 0, not the peer's header that sits
 * before the body in the read buffer. And a send longer than the max is
 * refused even where the header in front would say that length. */
static void test_pack_echo_writes_its_own_flag_not_the_peers(void **state) {
  int64_t opts[] = {HPS_OPT_PACK_FLAG, 0, HPS_OPT_PACK_MAX, 1000,
                    HPS_OPT_EVENTS, HPS_EVENTS_ALL & ~HPS_EVBIT(HPS_EV_SEND),
                    0};
  env e;
  int n = 120, i;
  unsigned char *out = malloc((size_t)n * 32), *want, *got;
  size_t len = pf_build(out, 0, n), k;
  (void)state;
  want = malloc(len);
  got = malloc(len);
  memcpy(want, out, len); /* pf_build's headers have flag 0 */
  for (k = 0, i = 0; k < len; i++) {
    size_t blen = out[k] | (size_t)out[k + 1] << 8;
    pe_header(out + k, pw_flag(i), (uint32_t)blen);
    k += 4 + blen;
  }
  __atomic_store_n(&pw_ret, 0, __ATOMIC_RELEASE);
  env_open(&e, HPS_MODEL_PACK, opts, hook_pack_echo_own_flag, NULL);
  t_send_all(e.fd, out, len); /* one write: mostly one read */
  assert_int_equal(t_recv_exact(e.fd, got, len, T_WAIT_MS), len);
  assert_memory_equal(got, want, len);
  assert_int_equal(__atomic_load_n(&pw_ret, __ATOMIC_ACQUIRE), 0);
  assert_int_equal(t_rec_count(&e.r, HPS_EV_RECEIVE), n);
  assert_int_equal(t_rec_count(&e.r, HPS_EV_CLOSE), 0);
  env_close(&e);
  free(out);
  free(want);
  free(got);
}

/* ---- pack echoes of frames a pause held back ---- */

static int ph_npause;   /* atomic: pauses made by the handler */
static int ph_bad_extra; /* atomic: frames whose event had the wrong extra */
static int ph_bad_stats; /* atomic: frames that saw wrong statistics */

/* Frame i's handler sees i + 1 messages received and i sent, on the
 * connection and on the endpoint (ID 0), before its echo; i + 1 sent
 * after it. */
static int ph_stats_ok(const hps_event *ev, int i, int sent) {
  hps_stats s, t;
  return hps_get_stats(ev->endpoint, ev->conn, &s) == 0 &&
         hps_get_stats(ev->endpoint, 0, &t) == 0 &&
         s.msgs_received == (uint64_t)i + 1 && s.msgs_sent == (uint64_t)sent &&
         t.msgs_received == (uint64_t)i + 1 && t.msgs_sent == (uint64_t)sent;
}

/* Echo every frame; pause after frames 0 and 90 (the second from inside
 * the delivery of what the first pause held). Each frame's handler sets
 * the connection's extra to its index + 1: the next frame's event, of the
 * same read or not, must carry it. */
static int hook_pack_echo_pause(t_rec *r, const hps_event *ev) {
  int i;
  (void)r;
  if (ev->type != HPS_EV_RECEIVE) return HPS_HR_OK;
  i = pe_index(ev->data);
  if (ev->extra != (uintptr_t)i)
    __atomic_add_fetch(&ph_bad_extra, 1, __ATOMIC_RELEASE);
  hps_set_extra(ev->endpoint, ev->conn, (uintptr_t)i + 1);
  if (!ph_stats_ok(ev, i, i))
    __atomic_add_fetch(&ph_bad_stats, 1, __ATOMIC_RELEASE);
  if (hps_send(ev->endpoint, ev->conn, ev->data, ev->len) != 0)
    return HPS_HR_ERROR;
  if (!ph_stats_ok(ev, i, i + 1))
    __atomic_add_fetch(&ph_bad_stats, 1, __ATOMIC_RELEASE);
  if (i == 0 || i == 90) {
    hps_pause_receive(ev->endpoint, ev->conn, 1);
    __atomic_add_fetch(&ph_npause, 1, __ATOMIC_RELEASE);
  }
  return HPS_HR_OK;
}

static int ph_paused(void *arg) {
  return __atomic_load_n(&ph_npause, __ATOMIC_ACQUIRE) == *(int *)arg;
}

/* The frames a pause held back are echoed, when the resume delivers them,
 * as they would have been: every answer, in order, and nothing after the
 * pause goes out before the resume. Every handler sees exact statistics,
 * and the event's extra as the one before set it. */
static void test_pack_echo_of_frames_a_pause_held_back(void **state) {
  int64_t opts[] = {HPS_OPT_EVENTS, HPS_EVENTS_ALL & ~HPS_EVBIT(HPS_EV_SEND),
                    0};
  env e;
  int n = 180, k;
  unsigned char *out = malloc((size_t)n * 32), *got;
  size_t len = pf_build(out, 0, n), first = 4 + pf_len(0);
  (void)state;
  got = malloc(len);
  __atomic_store_n(&ph_npause, 0, __ATOMIC_RELEASE);
  __atomic_store_n(&ph_bad_extra, 0, __ATOMIC_RELEASE);
  __atomic_store_n(&ph_bad_stats, 0, __ATOMIC_RELEASE);
  env_open(&e, HPS_MODEL_PACK, opts, hook_pack_echo_pause, NULL);
  t_send_all(e.fd, out, len); /* one write: mostly one read */
  k = 1;
  assert_int_equal(t_poll(ph_paused, &k, T_WAIT_MS), 0);
  /* paused after frame 0: its echo, and only it */
  assert_int_equal(t_recv_exact(e.fd, got, first, T_WAIT_MS), first);
  assert_int_equal(t_recv_exact(e.fd, got + first, 1, 150), 0);
  assert_int_equal(hps_pause_receive(e.ep, e.conn, 0), 0);
  k = 2;
  assert_int_equal(t_poll(ph_paused, &k, T_WAIT_MS), 0);
  assert_int_equal(hps_pause_receive(e.ep, e.conn, 0), 0);
  assert_int_equal(t_recv_exact(e.fd, got + first, len - first, T_WAIT_MS),
                   len - first);
  assert_memory_equal(got, out, len);
  assert_int_equal(t_rec_count(&e.r, HPS_EV_RECEIVE), n);
  assert_int_equal(__atomic_load_n(&ph_bad_extra, __ATOMIC_ACQUIRE), 0);
  assert_int_equal(__atomic_load_n(&ph_bad_stats, __ATOMIC_ACQUIRE), 0);
  env_close(&e);
  free(out);
  free(got);
}

static void test_pause_resume_before_reading_starts(void **state) {
  t_rec r;
  hps_endpoint *ep;
  uint16_t port;
  char buf[5];
  int fd;
  (void)state;
  t_rec_init(&r);
  r.hook = hook_pause_resume_early;
  ep = t_server(&r, 1, HPS_MODEL_PUSH, &port);
  fd = t_connect("127.0.0.1", port);
  t_send_all(fd, "hello", 5);
  assert_int_equal(t_recv_exact(fd, buf, 5, T_WAIT_MS), 5);
  assert_memory_equal(buf, "hello", 5);
  assert_int_equal(t_rec_count(&r, HPS_EV_CLOSE), 0);
  close(fd);
  assert_int_equal(t_rec_wait(&r, HPS_EV_CLOSE, 1, T_WAIT_MS), 0);
  t_expect_close(t_conn_event(&r, t_nth_conn(&r, HPS_EV_ACCEPT, 0),
                              HPS_EV_CLOSE),
                 HPS_OP_RECEIVE, 0);
  t_stop_free(ep);
  t_rec_free(&r);
}

/* ------------------------------------------------------------------ */
/* silent and long connections                                         */
/* ------------------------------------------------------------------ */

static void test_disconnect_silent_closes_only_the_silent_connection(
    void **state) {
  env e;
  hps_conn_id quiet, busy;
  int fq, fb;
  stat_q q;
  (void)state;
  env_start(&e, 2, HPS_MODEL_PUSH, NULL, NULL, NULL);
  e.r.echo = 1;
  quiet = env_peer(&e, 0, &fq);
  busy = env_peer(&e, 1, &fb);
  q.ep = e.ep;
  q.conn = quiet;
  q.value = 200;
  assert_int_equal(t_poll(silence_reached, &q, T_WAIT_MS), 0);
  round_trip(fb); /* busy just received something */
  assert_int_equal(hps_disconnect_silent(e.ep, 200), 1);
  t_expect_close(t_conn_event(&e.r, quiet, HPS_EV_CLOSE), HPS_OP_CLOSE,
                 HPS_ESILENCE);
  assert_int_equal(t_wait_eof(fq, T_WAIT_MS), 1);
  round_trip(fb); /* busy goes on */
  assert_int_equal(t_rec_conn_count(&e.r, busy, HPS_EV_CLOSE), 0);
  assert_int_equal(hps_conn_count(e.ep), 1);
  assert_int_equal(hps_disconnect_silent(e.ep, 0), HPS_EINVAL);
  assert_int_equal(hps_disconnect_silent(e.ep, -5), HPS_EINVAL);
  close(fq);
  close(fb);
  env_close(&e);
}

static void test_disconnect_long_closes_only_the_old_connection(
    void **state) {
  env e;
  hps_conn_id old, young;
  int fo, fy;
  stat_q q;
  (void)state;
  env_start(&e, 2, HPS_MODEL_PUSH, NULL, NULL, NULL);
  e.r.echo = 1;
  old = env_peer(&e, 0, &fo);
  round_trip(fo); /* activity does not make a connection younger */
  q.ep = e.ep;
  q.conn = old;
  q.value = 200;
  assert_int_equal(t_poll(age_reached, &q, T_WAIT_MS), 0);
  young = env_peer(&e, 1, &fy);
  assert_int_equal(hps_disconnect_long(e.ep, 200), 1);
  t_expect_close(t_conn_event(&e.r, old, HPS_EV_CLOSE), HPS_OP_CLOSE, 0);
  assert_int_equal(t_wait_eof(fo, T_WAIT_MS), 1);
  round_trip(fy);
  assert_int_equal(t_rec_conn_count(&e.r, young, HPS_EV_CLOSE), 0);
  assert_int_equal(hps_disconnect_long(e.ep, 0), HPS_EINVAL);
  close(fo);
  close(fy);
  env_close(&e);
}

static void test_silence_timeout_closes_a_silent_connection(void **state) {
  env e;
  hps_conn_id quiet, busy;
  int fq, fb;
  uint64_t t0;
  t_ev ev;
  const int64_t opts[] = {HPS_OPT_SILENCE_TIMEOUT, 300, 0};
  (void)state;
  env_start(&e, 2, HPS_MODEL_PUSH, opts, NULL, NULL);
  e.r.echo = 1;
  t0 = t_now_ms();
  quiet = env_peer(&e, 0, &fq);
  busy = env_peer(&e, 1, &fb);
  /* busy talks every 30 ms until quiet is closed */
  while (t_rec_wait_conn(&e.r, quiet, HPS_EV_CLOSE, &ev, 30) != 0) {
    assert_true(t_now_ms() - t0 < T_WAIT_MS);
    round_trip(fb);
  }
  t_expect_close(ev, HPS_OP_RECEIVE, HPS_ESILENCE);
  assert_true(t_now_ms() - t0 >= 250); /* not before the timeout */
  assert_int_equal(t_wait_eof(fq, T_WAIT_MS), 1);
  assert_int_equal(t_rec_conn_count(&e.r, busy, HPS_EV_CLOSE), 0);
  round_trip(fb);
  close(fq);
  close(fb);
  env_close(&e);
}

/* ------------------------------------------------------------------ */
/* statistics                                                          */
/* ------------------------------------------------------------------ */

static void test_stats_count_bytes_and_messages(void **state) {
  env e;
  hps_conn_id a, b;
  int fa, fb;
  char buf[300], path[64];
  hps_stats s, t;
  stat_q q;
  hps_buf v[2] = {{"12345", 5}, {"678", 3}};
  (void)state;
  memset(buf, 's', sizeof(buf));
  env_start(&e, 2, HPS_MODEL_PUSH, NULL, NULL, NULL);
  a = env_peer(&e, 0, &fa);
  b = env_peer(&e, 1, &fb);
  s = stats_of(e.ep, a);
  assert_true(s.bytes_sent == 0 && s.bytes_received == 0);
  assert_true(s.msgs_sent == 0 && s.msgs_received == 0);
  /* received: two separate reads on a, one on b */
  t_send_all(fa, buf, 100);
  t_rec_wait(&e.r, HPS_EV_RECEIVE, 1, T_WAIT_MS);
  t_send_all(fa, buf, 200);
  assert_int_equal(t_rec_wait_bytes(&e.r, 300, T_WAIT_MS), 0);
  t_send_all(fb, buf, 10);
  assert_int_equal(t_rec_wait_bytes(&e.r, 310, T_WAIT_MS), 0);
  s = stats_of(e.ep, a);
  assert_int_equal(s.bytes_received, 300);
  assert_int_equal(s.msgs_received, t_rec_conn_count(&e.r, a, HPS_EV_RECEIVE));
  assert_int_equal(s.msgs_received, 2);
  /* sent: send, sendv and a file send are one message each */
  make_file(path);
  assert_int_equal(hps_send(e.ep, a, buf, 50), 0);
  assert_int_equal(hps_sendv(e.ep, a, v, 2), 0);
  assert_int_equal(hps_send_file(e.ep, a, path, 0, 1000), 0);
  assert_int_equal(t_recv_exact(fa, buf, 58, T_WAIT_MS), 58);
  {
    unsigned char *f = malloc(1000);
    assert_int_equal(t_recv_exact(fa, f, 1000, T_WAIT_MS), 1000);
    free(f);
  }
  s = stats_of(e.ep, a);
  assert_int_equal(s.bytes_sent, 1058);
  assert_int_equal(s.msgs_sent, 3);
  /* the endpoint (ID 0): totals of all its connections */
  t = stats_of(e.ep, 0);
  assert_int_equal(t.bytes_received, 310);
  assert_int_equal(t.msgs_received, 3);
  assert_int_equal(t.bytes_sent, 1058);
  assert_int_equal(t.msgs_sent, 3);
  /* closed connections stay in the totals */
  close(fa);
  t_conn_event(&e.r, a, HPS_EV_CLOSE);
  assert_int_equal(t_wait_conn_gone(e.ep, a, T_WAIT_MS), 0);
  assert_int_equal(hps_get_stats(e.ep, a, &s), HPS_ENOTFOUND);
  t = stats_of(e.ep, 0);
  assert_int_equal(t.bytes_received, 310);
  assert_int_equal(t.bytes_sent, 1058);
  assert_int_equal(hps_get_stats(e.ep, b, NULL), HPS_EINVAL);
  /* ages grow; a receive resets the silence */
  q.ep = e.ep;
  q.conn = b;
  q.value = 60;
  assert_int_equal(t_poll(silence_reached, &q, T_WAIT_MS), 0);
  assert_int_equal(t_poll(age_reached, &q, T_WAIT_MS), 0);
  s = stats_of(e.ep, b);
  assert_true(s.age_ms >= s.silence_ms);
  t_send_all(fb, "x", 1);
  assert_int_equal(t_rec_wait_bytes(&e.r, 311, T_WAIT_MS), 0);
  t = stats_of(e.ep, b);
  assert_true(t.silence_ms < s.silence_ms);
  assert_true(t.age_ms >= s.age_ms);
  /* and once the endpoint has stopped, every connection's counts */
  close(fb);
  assert_int_equal(hps_stop(e.ep), 0);
  t = stats_of(e.ep, 0);
  assert_int_equal(t.bytes_received, 311);
  assert_int_equal(t.msgs_received, 4);
  assert_int_equal(t.bytes_sent, 1058);
  assert_int_equal(t.msgs_sent, 3);
  env_close(&e);
  unlink(path);
}

static void test_stats_of_a_client_by_id_zero(void **state) {
  t_rec rs, rc;
  hps_endpoint *srv, *cl;
  uint16_t port;
  hps_conn_id id;
  hps_stats s;
  (void)state;
  t_rec_init(&rs);
  t_rec_init(&rc);
  rs.echo = 1;
  srv = t_server(&rs, 1, HPS_MODEL_PUSH, &port);
  cl = t_client(&rc, HPS_MODEL_PUSH, port);
  id = t_nth_conn(&rc, HPS_EV_HANDSHAKE, 0);
  assert_int_equal(hps_send(cl, 0, "hello", 5), 0);
  assert_int_equal(t_rec_wait_bytes(&rc, 5, T_WAIT_MS), 0);
  assert_int_equal(hps_get_stats(cl, 0, &s), 0);
  assert_int_equal(s.bytes_sent, 5);
  assert_int_equal(s.bytes_received, 5);
  assert_int_equal(s.msgs_sent, 1);
  assert_int_equal(hps_get_stats(cl, id, &s), 0);
  assert_int_equal(s.bytes_sent, 5);
  t_stop_free(cl);
  t_stop_free(srv);
  t_rec_free(&rs);
  t_rec_free(&rc);
}

/* ------------------------------------------------------------------ */
/* the send-queue limit                                                */
/* ------------------------------------------------------------------ */

#define BLOCK (64 * KIB)
#define QUEUE_MAX (256 * KIB)
#define QUEUE_SEED 80u

static const int64_t QUEUE_OPTS[] = {HPS_OPT_MAX_SEND_QUEUE, QUEUE_MAX,
                                     HPS_OPT_SNDBUF, 64 * KIB, 0};

/* Send pattern blocks at stream offset *off until one is refused with
 * HPS_ESENDQ (or max blocks went); returns the last result. */
static int send_until_full(hps_endpoint *ep, hps_conn_id c, uint64_t *off,
                           int max) {
  unsigned char *b = malloc(BLOCK);
  int i, r = 0;
  for (i = 0; i < max; i++) {
    t_pat_fill(b, BLOCK, QUEUE_SEED, *off);
    r = hps_send(ep, c, b, BLOCK);
    if (r != 0) break;
    *off += BLOCK;
  }
  free(b);
  if (r != 0 && r != HPS_ESENDQ)
    fprintf(stderr, "hps_send failed with %s\n", hps_err_name(r));
  return r;
}

typedef struct retry_q {
  hps_endpoint *ep;
  hps_conn_id conn;
  uint64_t *off;
} retry_q;

static int one_block_accepted(void *arg) {
  retry_q *q = arg;
  return send_until_full(q->ep, q->conn, q->off, 1) == 0;
}

/* The peer reads `len` bytes: pattern from stream offset `from`. */
static void read_blocks(int fd, uint64_t from, uint64_t len) {
  unsigned char *in = malloc(len);
  assert_int_equal(t_recv_exact(fd, in, len, 30000), len);
  assert_int_equal(t_pat_check(in, len, QUEUE_SEED, from), -1);
  free(in);
}

static void test_send_queue_limit_bounds_memory_and_recovers(void **state) {
  env e;
  uint64_t off = 0;
  retry_q rq;
  (void)state;
  env_start(&e, 1, HPS_MODEL_PUSH, QUEUE_OPTS, NULL, NULL);
  e.fd = t_connect_rcvbuf(e.port, 64 * KIB); /* and never reads, for now */
  e.conn = t_nth_conn(&e.r, HPS_EV_ACCEPT, 0);
  t_conn_event(&e.r, e.conn, HPS_EV_HANDSHAKE);
  /* from this (foreign) thread: the limit must be hit, long before the
   * 1024 blocks (64 MiB) allowed here */
  assert_int_equal(send_until_full(e.ep, e.conn, &off, 1024), HPS_ESENDQ);
  assert_true(off < 16 * MIB); /* only kernel buffers + the queue */
  assert_true(off >= QUEUE_MAX);
  /* the peer reads exactly what was accepted: nothing of a refused send */
  read_blocks(e.fd, 0, off);
  /* drained: sends work again */
  rq.ep = e.ep;
  rq.conn = e.conn;
  rq.off = &off;
  assert_int_equal(t_poll(one_block_accepted, &rq, T_WAIT_MS), 0);
  read_blocks(e.fd, off - BLOCK, BLOCK);
  /* and the connection is healthy */
  assert_int_equal(t_rec_conn_count(&e.r, e.conn, HPS_EV_CLOSE), 0);
  env_close(&e);
}

typedef struct full_note {
  uint64_t off;
  int result, done; /* done: atomic */
} full_note;

/* On RECEIVE of "go": send blocks from the loop's own thread until the
 * limit refuses one. */
static int hook_fill_queue(t_rec *r, const hps_event *ev) {
  full_note *n = r->user;
  if (ev->type == HPS_EV_RECEIVE && ev->len == 2 &&
      memcmp(ev->data, "go", 2) == 0) {
    n->result = send_until_full(ev->endpoint, ev->conn, &n->off, 1024);
    __atomic_store_n(&n->done, 1, __ATOMIC_RELEASE);
  }
  return HPS_HR_OK;
}

static int note_done(void *arg) {
  full_note *n = arg;
  return __atomic_load_n(&n->done, __ATOMIC_ACQUIRE);
}

static void test_send_queue_limit_from_the_loop_thread(void **state) {
  env e;
  full_note note;
  retry_q rq;
  (void)state;
  memset(&note, 0, sizeof(note));
  env_start(&e, 1, HPS_MODEL_PUSH, QUEUE_OPTS, hook_fill_queue, &note);
  e.fd = t_connect_rcvbuf(e.port, 64 * KIB);
  e.conn = t_nth_conn(&e.r, HPS_EV_ACCEPT, 0);
  t_conn_event(&e.r, e.conn, HPS_EV_HANDSHAKE);
  t_send_all(e.fd, "go", 2);
  assert_int_equal(t_poll(note_done, &note, T_WAIT_MS), 0);
  assert_int_equal(note.result, HPS_ESENDQ);
  assert_true(note.off < 16 * MIB);
  assert_true(note.off >= QUEUE_MAX);
  read_blocks(e.fd, 0, note.off);
  rq.ep = e.ep;
  rq.conn = e.conn;
  rq.off = &note.off;
  assert_int_equal(t_poll(one_block_accepted, &rq, T_WAIT_MS), 0);
  read_blocks(e.fd, note.off - BLOCK, BLOCK);
  env_close(&e);
}

int main(void) {
  const char *filter = getenv("HPS_TEST_FILTER");
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_sendv_buffers_arrive_as_one_contiguous_message),
      cmocka_unit_test(test_sendv_never_interleaves_with_concurrent_sends),
      cmocka_unit_test(test_sendv_in_pack_model_sends_one_frame),
      cmocka_unit_test(test_send_file_whole_part_and_to_the_end),
      cmocka_unit_test(test_send_file_bad_path_or_range_is_efile),
      cmocka_unit_test(test_sends_after_a_file_send_arrive_after_its_bytes),
      cmocka_unit_test(test_pause_stops_receive_until_resume),
      cmocka_unit_test(test_pause_resume_before_reading_starts),
      cmocka_unit_test(test_pack_pause_in_handler_holds_the_rest_of_the_read),
      cmocka_unit_test(
          test_pack_pause_in_every_handler_releases_one_frame_per_resume),
      cmocka_unit_test(test_pack_pause_and_resume_in_one_handler_goes_on),
      cmocka_unit_test(test_pack_pause_holds_a_partial_frame_across_the_resume),
      cmocka_unit_test(test_pack_resume_from_another_handler_is_not_nested),
      cmocka_unit_test(test_pack_disconnect_while_held_drops_them),
      cmocka_unit_test(test_pack_resume_then_disconnect_while_held),
      cmocka_unit_test(test_pack_stop_while_held_is_clean),
      cmocka_unit_test(test_pack_echo_from_the_read_buffer_keeps_every_answer),
      cmocka_unit_test(test_pack_echo_writes_its_own_flag_not_the_peers),
      cmocka_unit_test(test_pack_echo_of_frames_a_pause_held_back),
      cmocka_unit_test(
          test_disconnect_silent_closes_only_the_silent_connection),
      cmocka_unit_test(test_disconnect_long_closes_only_the_old_connection),
      cmocka_unit_test(test_silence_timeout_closes_a_silent_connection),
      cmocka_unit_test(test_stats_count_bytes_and_messages),
      cmocka_unit_test(test_stats_of_a_client_by_id_zero),
      cmocka_unit_test(test_send_queue_limit_bounds_memory_and_recovers),
      cmocka_unit_test(test_send_queue_limit_from_the_loop_thread),
  };
  if (filter) cmocka_set_test_filter(filter);
  return cmocka_run_group_tests_name("toolkit", tests, NULL, NULL);
}
