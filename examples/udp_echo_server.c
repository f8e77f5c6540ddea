/* udp_echo_server - the hpsock UDP echo server: every datagram received is
 * sent back to its sender, as one datagram.
 *
 *   hps_udp_echo_server [--host H] [--port P] [--workers N]
 *                       [--max-datagram B] [--detect MS]
 *
 * Same command line and ready line as hps_echo_server: prints "listening on
 * HOST:PORT" once ready (port 0 picks a free port) and runs until SIGINT or
 * SIGTERM. Each peer address is a connection (ACCEPT on its first
 * datagram); --detect sets the idle detection interval (0 = off, the
 * default here), after which 3 silent intervals close a peer. */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hpsock.h"

static int on_event(void *user, const hps_event *ev) {
  (void)user;
  /* A full socket buffer drops a datagram (that is UDP); it does not
   * close the peer's connection. */
  if (ev->type == HPS_EV_RECEIVE)
    hps_send(ev->endpoint, ev->conn, ev->data, ev->len);
  return HPS_HR_OK;
}

static void usage(void) {
  fprintf(stderr, "usage: hps_udp_echo_server [--host H] [--port P] "
                  "[--workers N] [--max-datagram B] [--detect MS]\n");
  exit(64);
}

static void check(const char *what, int r) {
  if (r != 0) {
    fprintf(stderr, "hps_udp_echo_server: %s: %s (%s)\n", what,
            hps_strerror(r), hps_err_name(r));
    exit(1);
  }
}

int main(int argc, char **argv) {
  const char *host = "127.0.0.1";
  int port = 0, workers = 0, i, sig;
  int64_t maxdg = 65507, detect = 0;
  hps_endpoint *ep;
  char addr[64];
  uint16_t bound;
  sigset_t set;

  for (i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (v == NULL) usage();
    if (!strcmp(a, "--host")) host = v;
    else if (!strcmp(a, "--port")) port = atoi(v);
    else if (!strcmp(a, "--workers")) workers = atoi(v);
    else if (!strcmp(a, "--max-datagram")) maxdg = atoll(v);
    else if (!strcmp(a, "--detect")) detect = atoll(v);
    else usage();
    i++;
  }
  if (port < 0 || port > 65535) usage();

  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, NULL);

  check("create", hps_create(HPS_UDP_SERVER, on_event, NULL, &ep));
  if (workers > 0) check("--workers", hps_setopt(ep, HPS_OPT_WORKERS, workers));
  check("--max-datagram", hps_setopt(ep, HPS_OPT_UDP_MAX_DATAGRAM, maxdg));
  check("--detect", hps_setopt(ep, HPS_OPT_UDP_DETECT_INTERVAL, detect));
  check("rcvbuf", hps_setopt(ep, HPS_OPT_RCVBUF, 4 << 20));
  check("sndbuf", hps_setopt(ep, HPS_OPT_SNDBUF, 4 << 20));
  /* Only RECEIVE (and CLOSE) matter: no SEND events keeps the try-send
   * fast path. */
  check("events", hps_setopt(ep, HPS_OPT_EVENTS, HPS_EVBIT(HPS_EV_RECEIVE)));
  check("start", hps_start(ep, host, (uint16_t)port));
  check("address", hps_listen_address(ep, addr, sizeof(addr), &bound));
  printf("listening on %s:%u\n", addr, (unsigned)bound);
  fflush(stdout);

  sigwait(&set, &sig);
  hps_stop(ep);
  hps_free(ep);
  return 0;
}
