/* hps_test.c - see hps_test.h. */
#include "hps_test.h"

#include <arpa/inet.h>
#include <dirent.h>
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

void t_deadline(struct timespec *ts, int timeout_ms) {
  clock_gettime(CLOCK_REALTIME, ts);
  ts->tv_sec += timeout_ms / 1000;
  ts->tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
  if (ts->tv_nsec >= 1000000000L) {
    ts->tv_sec++;
    ts->tv_nsec -= 1000000000L;
  }
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
  t_deadline(&ts, timeout_ms);
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

void t_send_tls_junk(int fd) {
  unsigned char junk[5 + 64];
  junk[0] = 0x17; /* application data */
  junk[1] = 0x03; /* TLS 1.2 on the record layer */
  junk[2] = 0x03;
  junk[3] = 0;
  junk[4] = 64;
  t_pat_fill(junk + 5, 64, 1, 0);
  t_send_all(fd, junk, sizeof(junk));
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

/* ---- appended helpers (lifecycle/api suites) ---- */

size_t t_rec_total(t_rec *r) {
  size_t n;
  pthread_mutex_lock(&r->mu);
  n = r->nevs;
  pthread_mutex_unlock(&r->mu);
  return n;
}

static int pred_total(t_rec *r, long n, long unused) {
  (void)unused;
  return (long)r->nevs >= n;
}

int t_rec_quiet(t_rec *r, int ms) {
  long before = (long)t_rec_total(r);
  return wait_until(r, pred_total, before + 1, 0, ms) == 0 ? -1 : 0;
}

int t_rec_index(t_rec *r, int type, int i) {
  size_t k;
  int idx = -1;
  pthread_mutex_lock(&r->mu);
  for (k = 0; k < r->nevs; k++)
    if (r->evs[k].type == type && i-- == 0) {
      idx = (int)k;
      break;
    }
  pthread_mutex_unlock(&r->mu);
  return idx;
}

int t_rec_last(t_rec *r, t_ev *out) {
  int rc = -1;
  pthread_mutex_lock(&r->mu);
  if (r->nevs > 0) {
    *out = r->evs[r->nevs - 1];
    rc = 0;
  }
  pthread_mutex_unlock(&r->mu);
  return rc;
}

int t_try_connect(const char *host, uint16_t port) {
  struct sockaddr_in6 a6;
  struct sockaddr_in a4;
  struct sockaddr *sa;
  socklen_t salen;
  int fd, one = 1, err;
  if (strchr(host, ':')) {
    memset(&a6, 0, sizeof(a6));
    a6.sin6_family = AF_INET6;
    a6.sin6_port = htons(port);
    if (inet_pton(AF_INET6, host, &a6.sin6_addr) != 1) return -EINVAL;
    sa = (struct sockaddr *)&a6;
    salen = sizeof(a6);
  } else {
    memset(&a4, 0, sizeof(a4));
    a4.sin_family = AF_INET;
    a4.sin_port = htons(port);
    if (inet_pton(AF_INET, host, &a4.sin_addr) != 1) return -EINVAL;
    sa = (struct sockaddr *)&a4;
    salen = sizeof(a4);
  }
  fd = socket(sa->sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno;
  if (connect(fd, sa, salen) != 0) {
    err = errno;
    close(fd);
    return -err;
  }
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  return fd;
}

size_t t_rss_bytes(void) {
  long pages = 0, resident = 0;
  FILE *f = fopen("/proc/self/statm", "r");
  if (f == NULL)
    return 0;
  if (fscanf(f, "%ld %ld", &pages, &resident) != 2)
    resident = 0;
  fclose(f);
  return (size_t)resident * (size_t)sysconf(_SC_PAGESIZE);
}

int t_count_fds(void) {
  DIR *d = opendir("/proc/self/fd");
  struct dirent *e;
  int n = 0;
  if (d == NULL) return -1;
  while ((e = readdir(d)) != NULL)
    if (e->d_name[0] != '.') n++;
  closedir(d);
  return n - 1; /* the directory stream's own descriptor */
}

/* ---- helpers for the data-path suites (echo, models, toolkit) ---- */

hps_endpoint *t_agent(t_rec *r, int workers, int model) {
  return t_agent_opts(r, workers, model, NULL);
}

hps_endpoint *t_client(t_rec *r, int model, uint16_t port) {
  hps_endpoint *ep = NULL;
  assert_int_equal(hps_create(HPS_TCP_CLIENT, t_rec_handler, r, &ep), 0);
  assert_int_equal(hps_setopt(ep, HPS_OPT_RECV_MODEL, model), 0);
  assert_int_equal(hps_start(ep, "127.0.0.1", port), 0);
  return ep;
}

int t_rec_wait_for(t_rec *r, int (*pred)(t_rec *r, void *arg), void *arg,
                   int timeout_ms) {
  struct timespec ts;
  int ok;
  t_deadline(&ts, timeout_ms);
  pthread_mutex_lock(&r->mu);
  while (!(ok = pred(r, arg)))
    if (pthread_cond_timedwait(&r->cv, &r->mu, &ts) == ETIMEDOUT) {
      ok = pred(r, arg);
      break;
    }
  pthread_mutex_unlock(&r->mu);
  return ok ? 0 : -1;
}

typedef struct conn_type_q {
  hps_conn_id conn;
  int type;
  t_ev *out;
} conn_type_q;

static int pred_conn_type(t_rec *r, void *arg) {
  conn_type_q *q = arg;
  size_t k;
  for (k = 0; k < r->nevs; k++)
    if (r->evs[k].conn == q->conn && r->evs[k].type == q->type) {
      if (q->out) *q->out = r->evs[k];
      return 1;
    }
  return 0;
}

int t_rec_wait_conn(t_rec *r, hps_conn_id conn, int type, t_ev *out,
                    int timeout_ms) {
  conn_type_q q = {conn, type, out};
  return t_rec_wait_for(r, pred_conn_type, &q, timeout_ms);
}

size_t t_rec_conn_types(t_rec *r, hps_conn_id conn, int *types, size_t cap) {
  size_t k, n = 0;
  pthread_mutex_lock(&r->mu);
  for (k = 0; k < r->nevs; k++)
    if (r->evs[k].conn == conn) {
      if (n < cap) types[n] = r->evs[k].type;
      n++;
    }
  pthread_mutex_unlock(&r->mu);
  return n;
}

int t_rec_conn_count(t_rec *r, hps_conn_id conn, int type) {
  size_t k;
  int n = 0;
  pthread_mutex_lock(&r->mu);
  for (k = 0; k < r->nevs; k++)
    if (r->evs[k].conn == conn && r->evs[k].type == type) n++;
  pthread_mutex_unlock(&r->mu);
  return n;
}

unsigned char *t_rec_data_copy(t_rec *r, size_t *len) {
  unsigned char *p;
  pthread_mutex_lock(&r->mu);
  p = malloc(r->ndata + 1);
  assert_non_null(p);
  if (r->ndata) memcpy(p, r->data, r->ndata);
  *len = r->ndata;
  pthread_mutex_unlock(&r->mu);
  return p;
}

int t_poll(int (*fn)(void *arg), void *arg, int timeout_ms) {
  uint64_t deadline = t_now_ms() + (uint64_t)timeout_ms;
  struct timespec ms = {0, 1000000L};
  for (;;) {
    if (fn(arg)) return 0;
    if (t_now_ms() >= deadline) return fn(arg) ? 0 : -1;
    nanosleep(&ms, NULL);
  }
}

int t_listen(int backlog, uint16_t *port) {
  struct sockaddr_in a;
  socklen_t len = sizeof(a);
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  assert_true(fd >= 0);
  memset(&a, 0, sizeof(a));
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
  assert_int_equal(listen(fd, backlog), 0);
  assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
  *port = ntohs(a.sin_port);
  return fd;
}

int t_connect_nb(uint16_t port) {
  struct sockaddr_in a;
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int r;
  assert_true(fd >= 0);
  memset(&a, 0, sizeof(a));
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  r = connect(fd, (struct sockaddr *)&a, sizeof(a));
  assert_true(r == 0 || errno == EINPROGRESS);
  return fd;
}

void t_close_reset(int fd) {
  struct linger l = {1, 0};
  assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l)), 0);
  close(fd);
}

size_t t_recv_until_eof(int fd, void *buf, size_t cap, size_t *total,
                        int *eof, int timeout_ms) {
  char tmp[65536];
  size_t got = 0, all = 0;
  uint64_t deadline = t_now_ms() + (uint64_t)timeout_ms;
  *eof = 0;
  for (;;) {
    struct pollfd p = {fd, POLLIN, 0};
    uint64_t now = t_now_ms();
    ssize_t n;
    if (now >= deadline) break;
    if (poll(&p, 1, (int)(deadline - now)) <= 0) continue;
    n = recv(fd, tmp, sizeof(tmp), 0);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n <= 0) {
      *eof = 1;
      break;
    }
    if (got < cap) {
      size_t k = cap - got < (size_t)n ? cap - got : (size_t)n;
      memcpy((char *)buf + got, tmp, k);
      got += k;
    }
    all += (size_t)n;
  }
  if (total) *total = all;
  return got;
}

unsigned char t_pat(uint32_t seed, uint64_t pos) {
  uint32_t x = (uint32_t)pos * 2654435761u + seed * 40503u + (uint32_t)(pos >> 32);
  return (unsigned char)((x >> 24) ^ (x >> 13));
}

void t_pat_fill(void *buf, size_t len, uint32_t seed, uint64_t pos) {
  unsigned char *p = buf;
  size_t i;
  for (i = 0; i < len; i++) p[i] = t_pat(seed, pos + i);
}

long t_pat_check(const void *buf, size_t len, uint32_t seed, uint64_t pos) {
  const unsigned char *p = buf;
  size_t i;
  for (i = 0; i < len; i++)
    if (p[i] != t_pat(seed, pos + i)) return (long)i;
  return -1;
}

typedef struct t_sink {
  hps_conn_id conn;
  unsigned char *data;
  size_t len, cap;
  int inside;
  pthread_t thread;
  int has_thread;
} t_sink;

struct t_conns {
  pthread_mutex_t mu;
  t_sink *s;
  size_t n, cap;
  int overlaps, switches;
};

t_conns *t_conns_new(void) {
  t_conns *t = calloc(1, sizeof(*t));
  assert_non_null(t);
  pthread_mutex_init(&t->mu, NULL);
  return t;
}

void t_conns_free(t_conns *t) {
  size_t i;
  if (t == NULL) return;
  for (i = 0; i < t->n; i++) free(t->s[i].data);
  free(t->s);
  pthread_mutex_destroy(&t->mu);
  free(t);
}

/* Under t->mu. */
static t_sink *sink_of(t_conns *t, hps_conn_id conn) {
  size_t i;
  for (i = 0; i < t->n; i++)
    if (t->s[i].conn == conn) return &t->s[i];
  if (t->n == t->cap) {
    t->cap = t->cap ? t->cap * 2 : 16;
    t->s = realloc(t->s, t->cap * sizeof(*t->s));
    assert_non_null(t->s);
  }
  memset(&t->s[t->n], 0, sizeof(t->s[0]));
  t->s[t->n].conn = conn;
  return &t->s[t->n++];
}

void t_conns_add(t_conns *t, hps_conn_id conn, const void *data, size_t len) {
  t_sink *s;
  pthread_mutex_lock(&t->mu);
  s = sink_of(t, conn);
  if (s->len + len > s->cap) {
    size_t cap = s->cap ? s->cap : 4096;
    while (cap < s->len + len) cap *= 2;
    s->data = realloc(s->data, cap);
    assert_non_null(s->data);
    s->cap = cap;
  }
  if (len) memcpy(s->data + s->len, data, len);
  s->len += len;
  pthread_mutex_unlock(&t->mu);
}

size_t t_conns_get(t_conns *t, hps_conn_id conn, void *buf, size_t cap) {
  size_t i, n = 0;
  pthread_mutex_lock(&t->mu);
  for (i = 0; i < t->n; i++)
    if (t->s[i].conn == conn) {
      n = t->s[i].len;
      if (buf && n) memcpy(buf, t->s[i].data, n < cap ? n : cap);
      break;
    }
  pthread_mutex_unlock(&t->mu);
  return n;
}

int t_conns_enter(t_conns *t, hps_conn_id conn) {
  t_sink *s;
  int overlap;
  pthread_mutex_lock(&t->mu);
  s = sink_of(t, conn);
  overlap = s->inside++ > 0;
  if (overlap) t->overlaps++;
  if (s->has_thread && !pthread_equal(s->thread, pthread_self()))
    t->switches++;
  s->thread = pthread_self();
  s->has_thread = 1;
  pthread_mutex_unlock(&t->mu);
  return overlap;
}

void t_conns_leave(t_conns *t, hps_conn_id conn) {
  pthread_mutex_lock(&t->mu);
  sink_of(t, conn)->inside--;
  pthread_mutex_unlock(&t->mu);
}

int t_conns_overlaps(t_conns *t) {
  int n;
  pthread_mutex_lock(&t->mu);
  n = t->overlaps;
  pthread_mutex_unlock(&t->mu);
  return n;
}

int t_conns_thread_switches(t_conns *t) {
  int n;
  pthread_mutex_lock(&t->mu);
  n = t->switches;
  pthread_mutex_unlock(&t->mu);
  return n;
}

int t_conns_size(t_conns *t) {
  int n;
  pthread_mutex_lock(&t->mu);
  n = (int)t->n;
  pthread_mutex_unlock(&t->mu);
  return n;
}

int t_wait_conn_count(hps_endpoint *ep, int n, int timeout_ms) {
  uint64_t deadline = t_now_ms() + (uint64_t)timeout_ms;
  for (;;) {
    struct timespec ts = {0, 1000000L};
    if (hps_conn_count(ep) == n) return 0;
    if (t_now_ms() >= deadline) return -1;
    nanosleep(&ts, NULL);
  }
}

static hps_endpoint *make_ep(int role, t_rec *r, int workers, int model,
                             const int64_t *opts) {
  hps_endpoint *ep = NULL;
  assert_int_equal(hps_create(role, t_rec_handler, r, &ep), 0);
  if (workers > 0)
    assert_int_equal(hps_setopt(ep, HPS_OPT_WORKERS, workers), 0);
  assert_int_equal(hps_setopt(ep, HPS_OPT_RECV_MODEL, model), 0);
  for (; opts && opts[0] != 0; opts += 2)
    assert_int_equal(hps_setopt(ep, (int)opts[0], opts[1]), 0);
  return ep;
}

hps_endpoint *t_server_opts(t_rec *r, int workers, int model,
                            const int64_t *opts, uint16_t *port) {
  hps_endpoint *ep = make_ep(HPS_TCP_SERVER, r, workers, model, opts);
  assert_int_equal(hps_start(ep, "127.0.0.1", 0), 0);
  assert_int_equal(hps_listen_address(ep, NULL, 0, port), 0);
  assert_true(*port != 0);
  return ep;
}

hps_endpoint *t_agent_opts(t_rec *r, int workers, int model,
                           const int64_t *opts) {
  hps_endpoint *ep = make_ep(HPS_TCP_AGENT, r, workers, model, opts);
  assert_int_equal(hps_start(ep, NULL, 0), 0);
  return ep;
}

void t_stop_free(hps_endpoint *ep) {
  assert_int_equal(hps_stop(ep), 0);
  assert_int_equal(hps_free(ep), 0);
}

hps_conn_id t_nth_conn(t_rec *r, int type, int i) {
  t_ev e;
  if (t_rec_wait(r, type, i + 1, T_WAIT_MS) != 0)
    fail_msg("no event of type %d number %d within %d ms", type, i,
             T_WAIT_MS);
  assert_int_equal(t_rec_get(r, type, i, &e), 0);
  return e.conn;
}

t_ev t_conn_event(t_rec *r, hps_conn_id conn, int type) {
  t_ev e;
  if (t_rec_wait_conn(r, conn, type, &e, T_WAIT_MS) != 0)
    fail_msg("connection %llx: no event of type %d within %d ms",
             (unsigned long long)conn, type, T_WAIT_MS);
  return e;
}

void t_expect_close(t_ev e, int op, int error) {
  if (e.type != HPS_EV_CLOSE || e.op != op || e.error != error)
    fail_msg("event type %d op %d error %d (%s), expected CLOSE op %d error "
             "%d (%s)",
             e.type, e.op, e.error, hps_err_name(e.error), op, error,
             hps_err_name(error));
}

void t_check_conn_events(t_rec *r, hps_conn_id conn, const int *head,
                         size_t nhead) {
  size_t n = t_rec_conn_types(r, conn, NULL, 0), i;
  int *t = malloc((n + 1) * sizeof(*t));
  assert_non_null(t);
  t_rec_conn_types(r, conn, t, n);
  if (n < nhead + 1)
    fail_msg("connection %llx: %zu events, expected at least %zu",
             (unsigned long long)conn, n, nhead + 1);
  for (i = 0; i < nhead; i++)
    if (t[i] != head[i])
      fail_msg("connection %llx: event %zu is type %d, expected %d",
               (unsigned long long)conn, i, t[i], head[i]);
  for (; i + 1 < n; i++)
    if (t[i] != HPS_EV_RECEIVE && t[i] != HPS_EV_SEND &&
        t[i] != HPS_EV_HIGH_WATER && t[i] != HPS_EV_LOW_WATER)
      fail_msg("connection %llx: event %zu is type %d, between the "
               "handshake and CLOSE only RECEIVE, SEND and the water "
               "marks may come",
               (unsigned long long)conn, i, t[i]);
  if (t[n - 1] != HPS_EV_CLOSE)
    fail_msg("connection %llx: last event is type %d, not CLOSE",
             (unsigned long long)conn, t[n - 1]);
  free(t);
}

int t_connect_rcvbuf(uint16_t port, int bytes) {
  struct sockaddr_in a;
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
  assert_true(fd >= 0);
  assert_int_equal(
      setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &bytes, sizeof(bytes)), 0);
  memset(&a, 0, sizeof(a));
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  return fd;
}

#define T_REC_SEED(src, seq) ((uint32_t)(src)*100000u + (uint32_t)(seq))

void t_record_fill(unsigned char *rec, size_t len, int src, uint32_t seq) {
  rec[0] = (unsigned char)src;
  rec[1] = (unsigned char)seq;
  rec[2] = (unsigned char)(seq >> 8);
  rec[3] = (unsigned char)(seq >> 16);
  rec[4] = (unsigned char)(seq >> 24);
  t_pat_fill(rec + 5, len - 5, T_REC_SEED(src, seq), 0);
}

void t_records_check(const unsigned char *b, size_t len, size_t reclen,
                     int nsrc, uint32_t per_src) {
  uint32_t next[256] = {0};
  size_t off;
  int i;
  assert_true(nsrc > 0 && nsrc <= 256);
  if (len % reclen != 0)
    fail_msg("%zu bytes are not whole records of %zu", len, reclen);
  for (off = 0; off < len; off += reclen) {
    const unsigned char *rec = b + off;
    int src = rec[0];
    uint32_t seq = (uint32_t)rec[1] | (uint32_t)rec[2] << 8 |
                   (uint32_t)rec[3] << 16 | (uint32_t)rec[4] << 24;
    if (src >= nsrc) fail_msg("record at %zu: bad source %d", off, src);
    if (seq != next[src])
      fail_msg("record at %zu: source %d seq %u, expected %u", off, src, seq,
               next[src]);
    if (t_pat_check(rec + 5, reclen - 5, T_REC_SEED(src, seq), 0) != -1)
      fail_msg("record at %zu (source %d seq %u) is not whole: bytes of "
               "another send inside",
               off, src, seq);
    next[src]++;
  }
  for (i = 0; i < nsrc; i++)
    if (next[i] != per_src)
      fail_msg("source %d: %u records, expected %u", i, next[i], per_src);
}

typedef struct gone_q {
  hps_endpoint *ep;
  hps_conn_id id;
} gone_q;

static int conn_gone(void *arg) {
  gone_q *q = arg;
  uintptr_t x;
  return hps_get_extra(q->ep, q->id, &x) == HPS_ENOTFOUND;
}

int t_wait_conn_gone(hps_endpoint *ep, hps_conn_id id, int timeout_ms) {
  gone_q q = {ep, id};
  return t_poll(conn_gone, &q, timeout_ms);
}

/* ---- endpoints a failed test leaves running (see hps_test.h) ---- */

typedef struct t_live {
  hps_endpoint *ep;
  hps_event_fn fn;
  void *user;
  int cut; /* handler cut off: its test is gone */
  struct t_live *next;
} t_live;

static pthread_mutex_t g_live_mu = PTHREAD_MUTEX_INITIALIZER;
static t_live *g_live;

static int t_trampoline(void *user, const hps_event *ev) {
  t_live *l = user;
  if (__atomic_load_n(&l->cut, __ATOMIC_ACQUIRE)) return HPS_HR_OK;
  return l->fn(l->user, ev);
}

/* The names in parentheses are the library's functions, not the macros. */
int t_hps_create(int role, hps_event_fn fn, void *user, hps_endpoint **out) {
  t_live *l;
  int r;
  if (fn == NULL || out == NULL) /* argument checks: the library's answer */
    return (hps_create)(role, fn, user, out);
  if ((l = calloc(1, sizeof(*l))) == NULL) return HPS_ENOMEM;
  l->fn = fn;
  l->user = user;
  r = (hps_create)(role, t_trampoline, l, out);
  if (r != 0) {
    free(l);
    return r;
  }
  l->ep = *out;
  pthread_mutex_lock(&g_live_mu);
  l->next = g_live;
  g_live = l;
  pthread_mutex_unlock(&g_live_mu);
  return 0;
}

static t_live *live_take(hps_endpoint *ep) {
  t_live **pp, *l = NULL;
  pthread_mutex_lock(&g_live_mu);
  for (pp = &g_live; *pp != NULL; pp = &(*pp)->next)
    if ((*pp)->ep == ep) {
      l = *pp;
      *pp = l->next;
      break;
    }
  pthread_mutex_unlock(&g_live_mu);
  return l;
}

int t_hps_free(hps_endpoint *ep) {
  int r = (hps_free)(ep);
  /* Freed: no event comes any more, the trampoline's entry can go. A
   * refused free (NULL, or a call from the endpoint's own loop) leaves the
   * registration as it was. */
  if (r == 0) free(live_take(ep));
  return r;
}

int t_live_endpoints(void) {
  int n = 0;
  t_live *l;
  pthread_mutex_lock(&g_live_mu);
  for (l = g_live; l != NULL; l = l->next) n++;
  pthread_mutex_unlock(&g_live_mu);
  return n;
}

int t_teardown(void **state) {
  t_live *l, *next;
  int left = 0;
  (void)state;
  pthread_mutex_lock(&g_live_mu);
  l = g_live;
  g_live = NULL;
  pthread_mutex_unlock(&g_live_mu);
  for (; l != NULL; l = next) {
    next = l->next;
    __atomic_store_n(&l->cut, 1, __ATOMIC_RELEASE);
    fprintf(stderr, "hps_test: the test left endpoint %p (role %d) running; "
            "freeing it\n", (void *)l->ep, hps_role(l->ep));
    (hps_free)(l->ep);
    free(l);
    left++;
  }
  return left == 0 ? 0 : -1;
}
