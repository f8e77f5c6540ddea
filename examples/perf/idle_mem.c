/* idle_mem.c - memory per idle connection (hps_idle_mem).
 *
 * Starts an hpsock server (push model) in this process, measures its RSS
 * (resident pages from /proc/self/statm), has a child process open N idle
 * connections to it with plain sockets, waits until the server holds all
 * of them, and measures again:
 *
 *   idle_conns=10000 rss_per_conn_bytes=N
 *
 * The clients live in a forked child, so neither their descriptors nor
 * their memory count here (socket buffers are kernel memory and are never
 * in RSS anyway). Before the baseline one connection is opened, used and
 * closed, so what every server keeps regardless of its connection count
 * (per-loop read buffers, the first slot-table pages, libuv's loop
 * structures) is already resident and not charged to the connections.
 *
 *   hps_idle_mem [-n CONNS] [-w WORKERS] [-t CERT_BASE]
 *
 * -t: the server speaks TLS with CERT_BASE.pem / CERT_BASE.key (e.g.
 * tests/fixtures/tls/server); the child completes a TLS handshake on every
 * connection (OpenSSL, no verification) and the server is measured once it
 * has delivered HANDSHAKE for all of them.
 *
 * The descriptor limit is raised to its hard limit; when that is too low
 * for CONNS, fewer connections are opened and idle_conns says how many.
 */
#define _DEFAULT_SOURCE /* usleep, getopt, clock_gettime under -std=c11 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/ssl.h>

#include "hpsock.h"

static int g_handshakes; /* atomic: HANDSHAKE events */
static int g_tls;

static int on_event(void *user, const hps_event *ev) {
  (void)user;
  if (ev->type == HPS_EV_HANDSHAKE)
    __atomic_add_fetch(&g_handshakes, 1, __ATOMIC_RELAXED);
  return HPS_HR_OK;
}

/* Connections the server holds ready: open ones, or (TLS) handshaken. */
static int ready(hps_endpoint *ep) {
  return g_tls ? __atomic_load_n(&g_handshakes, __ATOMIC_RELAXED)
               : hps_conn_count(ep);
}

/* TLS client side: a handshake on fd (blocking), the SSL kept. */
static SSL *tls_client(int fd) {
  static SSL_CTX *ctx;
  SSL *ssl;
  if (ctx == NULL && (ctx = SSL_CTX_new(TLS_client_method())) == NULL)
    return NULL;
  ssl = SSL_new(ctx);
  if (ssl == NULL) return NULL;
  SSL_set_fd(ssl, fd);
  if (SSL_connect(ssl) != 1) {
    SSL_free(ssl);
    return NULL;
  }
  return ssl;
}

static long rss_bytes(void) {
  long pages = 0, resident = 0;
  FILE *f = fopen("/proc/self/statm", "r");
  if (f == NULL) return -1;
  if (fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = -1;
  fclose(f);
  return resident < 0 ? -1 : resident * sysconf(_SC_PAGESIZE);
}

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static int connect_to(uint16_t port) {
  struct sockaddr_in a;
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  memset(&a, 0, sizeof(a));
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

/* Child: open n connections, report how many, hold them until told. */
static void child(int in, int out, uint16_t port, int n) {
  struct rlimit rl;
  int i, opened = 0;
  char c;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  for (i = 0; i < n; i++) {
    int fd = connect_to(port);
    if (fd < 0) break;
    if (g_tls && tls_client(fd) == NULL) break;
    opened++;
  }
  if (write(out, &opened, sizeof(opened)) != sizeof(opened)) _exit(1);
  if (read(in, &c, 1) < 0) _exit(1); /* EOF or a byte: done */
  _exit(0);
}

int main(int argc, char **argv) {
  int want = 10000, workers = 0, opt, to_child[2], from_child[2], got = 0;
  int status = 0, fd;
  hps_endpoint *ep = NULL;
  uint16_t port = 0;
  struct rlimit rl;
  long before, after;
  const char *cert = NULL;
  char certfile[1024], keyfile[1024];
  pid_t pid;
  uint64_t end;
  while ((opt = getopt(argc, argv, "n:w:t:h")) != -1) {
    switch (opt) {
    case 'n': want = atoi(optarg); break;
    case 'w': workers = atoi(optarg); break;
    case 't': cert = optarg; break;
    default:
      fprintf(stderr, "usage: %s [-n CONNS] [-w WORKERS] [-t CERT_BASE]\n",
              argv[0]);
      return 2;
    }
  }
  if (want < 1) want = 1;
  /* The server needs one descriptor per connection. */
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    getrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur != RLIM_INFINITY && (rlim_t)want + 64 > rl.rlim_cur) {
      fprintf(stderr, "hps_idle_mem: descriptor limit %llu: %d connections "
                      "instead of %d\n", (unsigned long long)rl.rlim_cur,
              (int)rl.rlim_cur - 64, want);
      want = (int)rl.rlim_cur - 64;
    }
  }
  g_tls = cert != NULL;
  snprintf(certfile, sizeof(certfile), "%s.pem", cert ? cert : "");
  snprintf(keyfile, sizeof(keyfile), "%s.key", cert ? cert : "");
  if (hps_create(HPS_TCP_SERVER, on_event, NULL, &ep) != 0 ||
      (workers > 0 && hps_setopt(ep, HPS_OPT_WORKERS, workers) != 0) ||
      hps_setopt(ep, HPS_OPT_BACKLOG, 4096) != 0 ||
      /* sized by the descriptor limit above, not the default limit */
      hps_setopt(ep, HPS_OPT_MAX_CONNECTIONS, want + 1) != 0 ||
      (g_tls && (hps_setopt(ep, HPS_OPT_TLS, 1) != 0 ||
                 hps_setopt_str(ep, HPS_OPT_TLS_CERT_FILE, certfile) != 0 ||
                 hps_setopt_str(ep, HPS_OPT_TLS_KEY_FILE, keyfile) != 0)) ||
      hps_start(ep, "127.0.0.1", 0) != 0 ||
      hps_listen_address(ep, NULL, 0, &port) != 0) {
    fprintf(stderr, "hps_idle_mem: cannot start the server\n");
    return 1;
  }
  /* Warm up: one connection through every part of the path. */
  fd = connect_to(port);
  if (g_tls) {
    SSL *ssl = fd < 0 ? NULL : tls_client(fd);
    if (ssl == NULL || SSL_write(ssl, "x", 1) != 1) {
      fprintf(stderr, "hps_idle_mem: warm-up TLS connect failed\n");
      return 1;
    }
    SSL_free(ssl);
  } else if (fd < 0 || write(fd, "x", 1) != 1) {
    fprintf(stderr, "hps_idle_mem: warm-up connect failed\n");
    return 1;
  }
  end = now_ms() + 5000;
  while (ready(ep) < 1 && now_ms() < end) usleep(1000);
  close(fd);
  while (hps_conn_count(ep) > 0 && now_ms() < end) usleep(1000);

  if (pipe(to_child) != 0 || pipe(from_child) != 0) return 1;
  before = rss_bytes();
  pid = fork();
  if (pid < 0) return 1;
  if (pid == 0) {
    close(to_child[1]);
    close(from_child[0]);
    child(to_child[0], from_child[1], port, want);
  }
  close(to_child[0]);
  close(from_child[1]);
  if (read(from_child[0], &got, sizeof(got)) != sizeof(got)) got = 0;
  if (g_tls) got += 1; /* the warm-up's HANDSHAKE counts too */
  end = now_ms() + 30000;
  while (ready(ep) < got && now_ms() < end) usleep(1000);
  if (g_tls) got -= 1;
  if (hps_conn_count(ep) != got || got == 0) {
    fprintf(stderr, "hps_idle_mem: server holds %d of %d connections\n",
            hps_conn_count(ep), got);
    return 1;
  }
  usleep(100000); /* let the loops settle (nothing more arrives) */
  after = rss_bytes();
  printf("idle_conns=%d%s rss_per_conn_bytes=%ld\n", got,
         g_tls ? " tls=1" : "", (after - before) / got);
  fprintf(stderr, "rss_before=%ld rss_after=%ld\n", before, after);
  close(to_child[1]); /* the child ends; its connections close */
  waitpid(pid, &status, 0);
  hps_free(ep);
  return 0;
}
