/* fuzz_tls.c - libFuzzer target for the TLS receive path of a real server
 * (core/tls.c: the handshake on hostile bytes, the record layer after a
 * real handshake, the error mapping and its reason text).
 *
 * One TLS server (push model, echo) on 127.0.0.1 port 0 is started once,
 * its key an encrypted one (HPS_OPT_TLS_KEY_PASSWORD).
 * Each input goes to it over a plain blocking socket:
 *   byte 0 bit 0 clear: the rest of the input is the whole stream, sent
 *            split at fuzzer-chosen points, then FIN (bit 1: a reset);
 *   byte 0 bit 0 set:   a real TLS handshake first (OpenSSL client in the
 *            harness) and one echoed record "ping", then the rest of the
 *            input raw on the socket (bad records, alerts, truncation),
 *            then FIN or a reset.
 *   byte 1   chunk size for the raw bytes (0 means all at once)
 * The harness waits, with a deadline, for the server's CLOSE and checks:
 *   - exactly one ACCEPT and one CLOSE, for the same ID, no stray events;
 *   - raw mode: no HANDSHAKE and no RECEIVE (nothing but a real handshake
 *     reaches them), the CLOSE has op ACCEPT;
 *   - after-handshake mode: HANDSHAKE once, RECEIVE bytes "ping" first
 *     (random records never decrypt), the CLOSE has op RECEIVE;
 *   - the CLOSE error is a TLS error, a reset, HPS_ETIMEDOUT or (after the
 *     handshake) 0 for a valid close_notify the input happened to be; a TLS
 *     error comes with a reason text from hps_tls_info.
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

#include <openssl/ssl.h>

#include "hpsock.h"

#define CHECK(cond)                                                           \
  do {                                                                        \
    if (!(cond)) {                                                            \
      fprintf(stderr, "fuzz_tls: check failed at line %d: %s\n", __LINE__,    \
              #cond);                                                         \
      abort();                                                                \
    }                                                                         \
  } while (0)

#ifndef HPS_FIXTURES_DIR
#define HPS_FIXTURES_DIR "tests/fixtures"
#endif
#define DEADLINE_MS 5000

static hps_endpoint *g_ep;
static uint16_t g_port;
static SSL_CTX *g_cli;

typedef struct session {
  int active;
  hps_conn_id conn;
  int accepts, handshakes, closes, stray, reason_ok;
  int close_op, close_err;
  unsigned char got[64];
  size_t ngot;
} session;

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_cv = PTHREAD_COND_INITIALIZER;
static session g_s;

static int is_tls_error(int e) {
  return e == HPS_ETLS || e == HPS_ETLSVERIFY || e == HPS_ETLSEOF ||
         e == HPS_ETLSNOTTLS || e == HPS_ETLSALERT;
}

static int handler(void *user, const hps_event *ev) {
  char why[512];
  int reason = 0;
  (void)user;
  if (ev->type == HPS_EV_PREPARE || ev->type == HPS_EV_SHUTDOWN) return 0;
  if (ev->type == HPS_EV_CLOSE && is_tls_error(ev->error))
    reason = hps_tls_info(ev->endpoint, ev->conn, HPS_TLS_INFO_ERROR, why,
                          sizeof(why), NULL) == 0 &&
             why[0] != '\0';
  pthread_mutex_lock(&g_mu);
  if (!g_s.active || (g_s.accepts > 0 && ev->conn != g_s.conn)) {
    g_s.stray++;
  } else {
    switch (ev->type) {
    case HPS_EV_ACCEPT:
      g_s.accepts++;
      g_s.conn = ev->conn;
      break;
    case HPS_EV_HANDSHAKE:
      g_s.handshakes++;
      break;
    case HPS_EV_RECEIVE:
      if (g_s.ngot + ev->len <= sizeof(g_s.got)) {
        memcpy(g_s.got + g_s.ngot, ev->data, ev->len);
        g_s.ngot += ev->len;
      } else {
        g_s.ngot = sizeof(g_s.got) + 1; /* more than "ping": wrong */
      }
      hps_send(ev->endpoint, ev->conn, ev->data, ev->len);
      break;
    case HPS_EV_CLOSE:
      g_s.closes++;
      g_s.close_op = ev->op;
      g_s.close_err = ev->error;
      g_s.reason_ok = reason || !is_tls_error(ev->error);
      break;
    default:
      break;
    }
  }
  pthread_cond_broadcast(&g_cv);
  pthread_mutex_unlock(&g_mu);
  return 0;
}

static void setup(void) {
  signal(SIGPIPE, SIG_IGN);
  CHECK(hps_create(HPS_TCP_SERVER, handler, NULL, &g_ep) == 0);
  CHECK(hps_setopt(g_ep, HPS_OPT_WORKERS, 1) == 0);
  CHECK(hps_setopt(g_ep, HPS_OPT_TLS, 1) == 0);
  CHECK(hps_setopt(g_ep, HPS_OPT_TLS_HANDSHAKE_TIMEOUT, 2000) == 0);
  CHECK(hps_setopt_str(g_ep, HPS_OPT_TLS_CERT_FILE,
                       HPS_FIXTURES_DIR "/tls/server.pem") == 0);
  /* the encrypted copy of server.key: the password path runs too */
  CHECK(hps_setopt_str(g_ep, HPS_OPT_TLS_KEY_FILE,
                       HPS_FIXTURES_DIR "/tls/server_enc.key") == 0);
  CHECK(hps_setopt_str(g_ep, HPS_OPT_TLS_KEY_PASSWORD,
                       "hpsock-test-password") == 0);
  CHECK(hps_getopt_str(g_ep, HPS_OPT_TLS_KEY_PASSWORD, NULL, 0, NULL) ==
        HPS_EINVAL);
  CHECK(hps_start(g_ep, "127.0.0.1", 0) == 0);
  CHECK(hps_listen_address(g_ep, NULL, 0, &g_port) == 0);
  g_cli = SSL_CTX_new(TLS_client_method());
  CHECK(g_cli != NULL);
  SSL_CTX_set_verify(g_cli, SSL_VERIFY_NONE, NULL);
}

static int connect_plain(void) {
  struct sockaddr_in a;
  struct timeval tv = {DEADLINE_MS / 1000, 0};
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
  CHECK(fd >= 0);
  memset(&a, 0, sizeof(a));
  a.sin_family = AF_INET;
  a.sin_port = htons(g_port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  CHECK(connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0);
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  return fd;
}

static int wait_closed(void) {
  struct timespec ts;
  int ok;
  clock_gettime(CLOCK_REALTIME, &ts);
  ts.tv_sec += DEADLINE_MS / 1000;
  pthread_mutex_lock(&g_mu);
  while (g_s.closes == 0)
    if (pthread_cond_timedwait(&g_cv, &g_mu, &ts) == ETIMEDOUT) break;
  ok = g_s.closes > 0;
  pthread_mutex_unlock(&g_mu);
  return ok;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static int ready;
  int fd, after, reset, err;
  size_t chunk, off;
  SSL *ssl = NULL;
  if (!ready) {
    setup();
    ready = 1;
  }
  if (size < 2) return 0;
  after = data[0] & 1;
  reset = (data[0] >> 1) & 1;
  chunk = data[1] ? data[1] : size;
  data += 2;
  size -= 2;

  pthread_mutex_lock(&g_mu);
  memset(&g_s, 0, sizeof(g_s));
  g_s.active = 1;
  pthread_mutex_unlock(&g_mu);

  fd = connect_plain();
  if (after) {
    char back[4];
    ssl = SSL_new(g_cli);
    CHECK(ssl != NULL);
    SSL_set_fd(ssl, fd);
    CHECK(SSL_connect(ssl) == 1);
    CHECK(SSL_write(ssl, "ping", 4) == 4);
    CHECK(SSL_read(ssl, back, 4) == 4 && memcmp(back, "ping", 4) == 0);
  }
  for (off = 0; off < size; off += chunk) {
    size_t n = size - off < chunk ? size - off : chunk;
    if (send(fd, data + off, n, MSG_NOSIGNAL) < 0) break; /* closed on us */
  }
  if (reset) { /* close now with SO_LINGER 0: the server gets a reset */
    struct linger lg = {1, 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    close(fd);
    fd = -1;
  } else {
    shutdown(fd, SHUT_WR);
  }
  CHECK(wait_closed());
  SSL_free(ssl); /* never writes: no SSL_shutdown */
  if (fd >= 0) close(fd);

  pthread_mutex_lock(&g_mu);
  err = g_s.close_err;
  CHECK(g_s.stray == 0);
  CHECK(g_s.accepts == 1 && g_s.closes == 1);
  CHECK(g_s.reason_ok);
  CHECK(is_tls_error(err) || err == -ECONNRESET || err == -EPIPE ||
        err == HPS_ETIMEDOUT || (after && err == 0));
  if (after) {
    CHECK(g_s.handshakes == 1);
    CHECK(g_s.ngot == 4 && memcmp(g_s.got, "ping", 4) == 0);
    CHECK(g_s.close_op == HPS_OP_RECEIVE || g_s.close_op == HPS_OP_SEND);
  } else {
    CHECK(g_s.handshakes == 0 && g_s.ngot == 0);
    CHECK(g_s.close_op == HPS_OP_ACCEPT);
  }
  g_s.active = 0;
  pthread_mutex_unlock(&g_mu);
  return 0;
}
