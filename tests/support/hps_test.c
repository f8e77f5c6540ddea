/* hps_test.c - see hps_test.h. */
#include "hps_test.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <setjmp.h>
#include <cmocka.h>

uint64_t t_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void t_rec_init(t_rec *r) {
  memset(r, 0, sizeof(*r));
  pthread_mutex_init(&r->mu, NULL);
  pthread_cond_init(&r->cv, NULL);
}

void t_rec_free(t_rec *r) {
  free(r->evs);
  free(r->data);
  pthread_mutex_destroy(&r->mu);
  pthread_cond_destroy(&r->cv);
}

static void add_data(t_rec *r, const void *p, size_t n) {
  if (r->ndata + n > r->datacap) {
    size_t cap = r->datacap ? r->datacap : 4096;
    while (cap < r->ndata + n) cap *= 2;
    r->data = realloc(r->data, cap);
    assert_non_null(r->data);
    r->datacap = cap;
  }
  memcpy(r->data + r->ndata, p, n);
  r->ndata += n;
}

int t_rec_handler(void *user, const hps_event *ev) {
  t_rec *r = user;
  t_ev e;
  int result = HPS_HR_OK;
  int64_t model = HPS_MODEL_PUSH;
  unsigned char *tmp = NULL;
  size_t tmplen = 0;

  __atomic_add_fetch(&r->in_handler, 1, __ATOMIC_SEQ_CST);
  hps_getopt(ev->endpoint, HPS_OPT_RECV_MODEL, &model);
  if (ev->type == HPS_EV_RECEIVE && model == HPS_MODEL_PULL && r->autofetch &&
      ev->len > 0) {
    tmp = malloc(ev->len);
    if (hps_fetch(ev->endpoint, ev->conn, tmp, ev->len) == 0) tmplen = ev->len;
  }
  e.type = ev->type;
  e.op = ev->op;
  e.error = ev->error;
  e.conn = ev->conn;
  e.len = ev->len;
  e.extra = ev->extra;
  pthread_mutex_lock(&r->mu);
  if (r->nevs == r->cap) {
    r->cap = r->cap ? r->cap * 2 : 64;
    r->evs = realloc(r->evs, r->cap * sizeof(*r->evs));
  }
  r->evs[r->nevs++] = e;
  if (ev->type > 0 && ev->type < 16) r->counts[ev->type]++;
  if (ev->type == HPS_EV_RECEIVE) {
    if (ev->data) add_data(r, ev->data, ev->len);
    else if (tmplen) add_data(r, tmp, tmplen);
  }
  pthread_cond_broadcast(&r->cv);
  pthread_mutex_unlock(&r->mu);
  if (ev->type == HPS_EV_RECEIVE && r->echo) {
    if (ev->data) hps_send(ev->endpoint, ev->conn, ev->data, ev->len);
    else if (tmplen) hps_send(ev->endpoint, ev->conn, tmp, tmplen);
  }
  free(tmp);
  if (r->hook) result = r->hook(r, ev);
  __atomic_sub_fetch(&r->in_handler, 1, __ATOMIC_SEQ_CST);
  return result;
}

static int wait_until(t_rec *r, int (*pred)(t_rec *, long, long), long a,
                      long b, int timeout_ms) {
  struct timespec ts;
  int ok;
  clock_gettime(CLOCK_REALTIME, &ts);
  ts.tv_sec += timeout_ms / 1000;
  ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
  if (ts.tv_nsec >= 1000000000L) {
    ts.tv_sec++;
    ts.tv_nsec -= 1000000000L;
  }
  pthread_mutex_lock(&r->mu);
  while (!(ok = pred(r, a, b)))
    if (pthread_cond_timedwait(&r->cv, &r->mu, &ts) == ETIMEDOUT) {
      ok = pred(r, a, b);
      break;
    }
  pthread_mutex_unlock(&r->mu);
  return ok ? 0 : -1;
}

static int pred_count(t_rec *r, long type, long n) {
  return r->counts[type] >= n;
}
static int pred_bytes(t_rec *r, long n, long unused) {
  (void)unused;
  return (long)r->ndata >= n;
}

int t_rec_wait(t_rec *r, int type, int n, int timeout_ms) {
  return wait_until(r, pred_count, type, n, timeout_ms);
}

int t_rec_wait_bytes(t_rec *r, size_t n, int timeout_ms) {
  return wait_until(r, pred_bytes, (long)n, 0, timeout_ms);
}

int t_rec_count(t_rec *r, int type) {
  int n;
  pthread_mutex_lock(&r->mu);
  n = r->counts[type];
  pthread_mutex_unlock(&r->mu);
  return n;
}

int t_rec_get(t_rec *r, int type, int i, t_ev *out) {
  size_t k;
  int rc = -1;
  pthread_mutex_lock(&r->mu);
  for (k = 0; k < r->nevs; k++)
    if (r->evs[k].type == type && i-- == 0) {
      *out = r->evs[k];
      rc = 0;
      break;
    }
  pthread_mutex_unlock(&r->mu);
  return rc;
}

hps_endpoint *t_server(t_rec *r, int workers, int model, uint16_t *port) {
  hps_endpoint *ep = NULL;
  assert_int_equal(hps_create(HPS_TCP_SERVER, t_rec_handler, r, &ep), 0);
  assert_int_equal(hps_setopt(ep, HPS_OPT_WORKERS, workers), 0);
  assert_int_equal(hps_setopt(ep, HPS_OPT_RECV_MODEL, model), 0);
  assert_int_equal(hps_start(ep, "127.0.0.1", 0), 0);
  assert_int_equal(hps_listen_address(ep, NULL, 0, port), 0);
  assert_true(*port != 0);
  return ep;
}

int t_connect(const char *host, uint16_t port) {
  struct sockaddr_in6 a6;
  struct sockaddr_in a4;
  int fd, one = 1;
  if (strchr(host, ':')) {
    memset(&a6, 0, sizeof(a6));
    a6.sin6_family = AF_INET6;
    a6.sin6_port = htons(port);
    assert_int_equal(inet_pton(AF_INET6, host, &a6.sin6_addr), 1);
    fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    assert_int_equal(connect(fd, (struct sockaddr *)&a6, sizeof(a6)), 0);
  } else {
    memset(&a4, 0, sizeof(a4));
    a4.sin_family = AF_INET;
    a4.sin_port = htons(port);
    assert_int_equal(inet_pton(AF_INET, host, &a4.sin_addr), 1);
    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    assert_int_equal(connect(fd, (struct sockaddr *)&a4, sizeof(a4)), 0);
  }
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  return fd;
}

void t_send_all(int fd, const void *buf, size_t len) {
  const char *p = buf;
  while (len > 0) {
    ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    assert_true(n > 0);
    p += n;
    len -= (size_t)n;
  }
}

size_t t_recv_exact(int fd, void *buf, size_t len, int timeout_ms) {
  size_t got = 0;
  uint64_t deadline = t_now_ms() + (uint64_t)timeout_ms;
  while (got < len) {
    struct pollfd p = {fd, POLLIN, 0};
    uint64_t now = t_now_ms();
    ssize_t n;
    if (now >= deadline) break;
    if (poll(&p, 1, (int)(deadline - now)) <= 0) continue;
    n = recv(fd, (char *)buf + got, len - got, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got += (size_t)n;
  }
  return got;
}

int t_wait_eof(int fd, int timeout_ms) {
  char buf[4096];
  uint64_t deadline = t_now_ms() + (uint64_t)timeout_ms;
  for (;;) {
    struct pollfd p = {fd, POLLIN, 0};
    uint64_t now = t_now_ms();
    ssize_t n;
    if (now >= deadline) return 0;
    if (poll(&p, 1, (int)(deadline - now)) <= 0) continue;
    n = recv(fd, buf, sizeof(buf), 0);
    if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN)) return 1;
  }
}

char *t_fixture(const char *rel, size_t *len) {
  char path[1024];
  FILE *f;
  long n;
  char *buf;
  snprintf(path, sizeof(path), "%s/%s", HPS_FIXTURES_DIR, rel);
  f = fopen(path, "rb");
  if (f == NULL) fail_msg("fixture %s: %s", path, strerror(errno));
  fseek(f, 0, SEEK_END);
  n = ftell(f);
  fseek(f, 0, SEEK_SET);
  buf = malloc((size_t)n + 1);
  assert_non_null(buf);
  assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
  buf[n] = '\0';
  fclose(f);
  if (len) *len = (size_t)n;
  return buf;
}
