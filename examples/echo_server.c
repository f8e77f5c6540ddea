/* echo_server - the hpsock echo server: every byte received is sent back.
 *
 *   hps_echo_server [--host H] [--port P] [--workers N] [--mode push|pack]
 *                   [--flag F] [--max-pack B] [--max-conns N]
 *                   [--tls --cert F --key F]
 *                   [--auto-pause 0|1] [--max-send-queue B]
 *
 * --tls: every connection speaks TLS with the certificate and key (PEM
 * files), e.g. tests/fixtures/tls/server.pem and server.key.
 * Prints "listening on HOST:PORT" once ready (port 0 picks a free port) and
 * runs until SIGINT or SIGTERM. In pack mode every frame is echoed as one
 * frame. --max-conns: HPS_OPT_MAX_CONNECTIONS (default: what the descriptor
 * limit holds); past it, or past the descriptor limit, new connections are
 * refused, and the counts are printed on stderr at exit.
 *
 * Flow control: with HPS_OPT_AUTO_PAUSE (on unless --auto-pause 0) the
 * server stops reading from a client whose echo it cannot hand to the
 * kernel (more than HPS_OPT_SEND_HIGH_WATER unsent) and reads again once
 * that client has taken most of it (HPS_OPT_SEND_LOW_WATER). A client that
 * reads slowly is slowed down, never dropped for HPS_ESENDQ, and the
 * server's memory per client stays near the high water mark. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sys/resource.h>
#include <unistd.h>

#include "hpsock.h"

static int on_event(void *user, const hps_event *ev) {
  (void)user;
  if (ev->type == HPS_EV_RECEIVE &&
      hps_send(ev->endpoint, ev->conn, ev->data, ev->len) != 0)
    return HPS_HR_ERROR;
  return HPS_HR_OK;
}

static void usage(void) {
  fprintf(stderr, "usage: hps_echo_server [--host H] [--port P] [--workers N]"
                  " [--mode push|pack] [--flag F] [--max-pack B]"
                  " [--max-conns N] [--tls --cert F --key F]"
                  " [--auto-pause 0|1] [--max-send-queue B]\n");
  exit(64);
}

static int check(const char *what, int r) {
  if (r != 0) {
    fprintf(stderr, "hps_echo_server: %s: %s (%s)\n", what, hps_strerror(r),
            hps_err_name(r));
    exit(1);
  }
  return r;
}

/* Up to the hard limit: 10,000 connections need more than the usual 1024. */
static void raise_nofile(void) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    (void)setrlimit(RLIMIT_NOFILE, &rl);
  }
}

int main(int argc, char **argv) {
  const char *host = "127.0.0.1";
  int port = 0, workers = 0, i, sig, tls = 0, r, auto_pause = 1;
  const char *cert = NULL, *key = NULL;
  int64_t model = HPS_MODEL_PUSH, flag = 0, maxpack = 0, maxsendq = 0;
  int64_t maxconns = 0;
  uint64_t errors = 0, shed = 0;
  hps_endpoint *ep;
  char addr[64];
  uint16_t bound;
  sigset_t set;

  for (i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--tls")) {
      tls = 1;
      continue;
    }
    if (v == NULL) usage();
    if (!strcmp(a, "--host")) host = v;
    else if (!strcmp(a, "--port")) port = atoi(v);
    else if (!strcmp(a, "--workers")) workers = atoi(v);
    else if (!strcmp(a, "--mode"))
      model = !strcmp(v, "pack") ? HPS_MODEL_PACK
              : !strcmp(v, "push") ? HPS_MODEL_PUSH
                                   : (usage(), 0);
    else if (!strcmp(a, "--flag")) flag = atoll(v);
    else if (!strcmp(a, "--max-pack")) maxpack = atoll(v);
    else if (!strcmp(a, "--max-conns"))
      maxconns = atoll(v);
    else if (!strcmp(a, "--cert")) cert = v;
    else if (!strcmp(a, "--key")) key = v;
    else if (!strcmp(a, "--auto-pause")) auto_pause = atoi(v) != 0;
    else if (!strcmp(a, "--max-send-queue")) maxsendq = atoll(v);
    else usage();
    i++;
  }
  if (port < 0 || port > 65535 || (tls && (cert == NULL || key == NULL)))
    usage();

  /* Block the stop signals in every thread; main waits for them below. */
  raise_nofile();
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, NULL);

  check("create", hps_create(HPS_TCP_SERVER, on_event, NULL, &ep));
  if (workers > 0) check("--workers", hps_setopt(ep, HPS_OPT_WORKERS, workers));
  check("--mode", hps_setopt(ep, HPS_OPT_RECV_MODEL, model));
  if (maxconns > 0)
    check("--max-conns", hps_setopt(ep, HPS_OPT_MAX_CONNECTIONS, maxconns));
  if (model == HPS_MODEL_PACK) {
    check("--flag", hps_setopt(ep, HPS_OPT_PACK_FLAG, flag));
    if (maxpack > 0) check("--max-pack", hps_setopt(ep, HPS_OPT_PACK_MAX, maxpack));
  }
  /* Only RECEIVE and CLOSE matter here: no SEND events keeps the
   * try-write fast path. */
  check("events", hps_setopt(ep, HPS_OPT_EVENTS, HPS_EVBIT(HPS_EV_RECEIVE)));
  check("--auto-pause", hps_setopt(ep, HPS_OPT_AUTO_PAUSE, auto_pause));
  if (maxsendq > 0)
    check("--max-send-queue",
          hps_setopt(ep, HPS_OPT_MAX_SEND_QUEUE, maxsendq));
  if (tls) {
    check("--tls", hps_setopt(ep, HPS_OPT_TLS, 1));
    check("--cert", hps_setopt_str(ep, HPS_OPT_TLS_CERT_FILE, cert));
    check("--key", hps_setopt_str(ep, HPS_OPT_TLS_KEY_FILE, key));
  }
  r = hps_start(ep, host, (uint16_t)port);
  if (r == HPS_ETLSCONFIG) { /* say which file or setting is wrong */
    char why[256] = "";
    hps_tls_info(ep, 0, HPS_TLS_INFO_CONFIG_ERROR, why, sizeof(why), NULL);
    fprintf(stderr, "hps_echo_server: TLS: %s\n", why);
    exit(1);
  }
  check("start", r);
  check("address", hps_listen_address(ep, addr, sizeof(addr), &bound));
  printf("listening on %s:%u\n", addr, (unsigned)bound);
  fflush(stdout);

  sigwait(&set, &sig);
  hps_stop(ep);
  hps_get_counter(ep, HPS_CNT_ACCEPT_ERRORS, &errors);
  hps_get_counter(ep, HPS_CNT_ACCEPT_SHED, &shed);
  if (errors > 0 || shed > 0)
    fprintf(stderr,
            "hps_echo_server: %llu accept errors, %llu connections refused\n",
            (unsigned long long)errors, (unsigned long long)shed);
  hps_free(ep);
  return 0;
}
