/* relay - a TCP relay (HP-Socket's "transit server"): a server accepts
 * clients and, for each, an agent connects to the upstream; bytes are
 * forwarded both ways.
 *
 *   hps_relay --upstream HOST:PORT [--host H] [--port P] [--workers N]
 *             [--high B] [--low B]
 *
 * Prints "listening on HOST:PORT" once ready (port 0 picks a free port) and
 * runs until SIGINT or SIGTERM.
 *
 * Flow control: what one side receives is queued for the other side. When
 * that side cannot take it (its unsent bytes pass HPS_OPT_SEND_HIGH_WATER:
 * HPS_EV_HIGH_WATER), the relay stops reading from the sending side, so
 * TCP slows the sender down; at HPS_EV_LOW_WATER it reads again. Memory
 * per pair stays near the high water mark of each side, however fast one
 * side writes and however slowly the other reads, and no byte is dropped.
 * (HPS_OPT_AUTO_PAUSE is not what a relay wants: it pauses a connection's
 * own reading on its own unsent bytes; here the other connection is
 * paused.)
 *
 * Closing: hpsock closes a connection when its peer's stream ends. The
 * relay then closes the other side gracefully: what was forwarded to it
 * goes out first, then FIN. */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hpsock.h"

static hps_endpoint *server, *agent;
static char up_host[256];
static uint16_t up_port;
/* Held while an upstream connection is made and its client's ID attached
 * to it, so the agent's first events (which may come before hps_connect
 * returns) find the ID. */
static pthread_mutex_t pair_mu = PTHREAD_MUTEX_INITIALIZER;

/* The other side of an agent connection: its extra data. */
static hps_conn_id client_of(const hps_event *ev) {
  uintptr_t id = ev->extra;
  if (id == 0) { /* maybe not attached yet: wait for the ACCEPT handler */
    pthread_mutex_lock(&pair_mu);
    pthread_mutex_unlock(&pair_mu);
    if (hps_get_extra(agent, ev->conn, &id) != 0) id = 0;
  }
  return (hps_conn_id)id;
}

/* Clients. A client's extra data is its upstream connection's ID. */
static int on_server(void *user, const hps_event *ev) {
  hps_conn_id up = (hps_conn_id)ev->extra;
  int r;
  (void)user;
  switch (ev->type) {
  case HPS_EV_ACCEPT:
    /* Nothing to forward to until the upstream is connected. */
    hps_pause_receive(server, ev->conn, 1);
    pthread_mutex_lock(&pair_mu);
    r = hps_connect(agent, up_host, up_port, &up);
    if (r == 0) {
      hps_set_extra(agent, up, (uintptr_t)ev->conn);
      hps_set_extra(server, ev->conn, (uintptr_t)up);
    }
    pthread_mutex_unlock(&pair_mu);
    if (r != 0) {
      fprintf(stderr, "hps_relay: connect upstream: %s\n", hps_strerror(r));
      return HPS_HR_ERROR; /* refuses the client */
    }
    break;
  case HPS_EV_RECEIVE:
    if (hps_send(agent, up, ev->data, ev->len) != 0) return HPS_HR_ERROR;
    break;
  case HPS_EV_HIGH_WATER: /* the client reads slower than upstream sends */
    hps_pause_receive(agent, up, 1);
    break;
  case HPS_EV_LOW_WATER:
    hps_pause_receive(agent, up, 0);
    break;
  case HPS_EV_CLOSE:
    if (up != 0) hps_disconnect(agent, up, 0); /* after what it was sent */
    break;
  }
  return HPS_HR_OK;
}

/* Upstream connections. */
static int on_agent(void *user, const hps_event *ev) {
  hps_conn_id client = client_of(ev);
  (void)user;
  switch (ev->type) {
  case HPS_EV_CONNECT: /* the client may speak now */
    if (hps_pause_receive(server, client, 0) != 0) return HPS_HR_ERROR;
    break;
  case HPS_EV_RECEIVE:
    if (hps_send(server, client, ev->data, ev->len) != 0) return HPS_HR_ERROR;
    break;
  case HPS_EV_HIGH_WATER: /* upstream reads slower than the client sends */
    hps_pause_receive(server, client, 1);
    break;
  case HPS_EV_LOW_WATER:
    hps_pause_receive(server, client, 0);
    break;
  case HPS_EV_CLOSE:
    if (ev->op == HPS_OP_CONNECT)
      fprintf(stderr, "hps_relay: upstream %s:%u: %s\n", up_host,
              (unsigned)up_port, hps_strerror(ev->error));
    if (client != 0) hps_disconnect(server, client, 0);
    break;
  }
  return HPS_HR_OK;
}

static void usage(void) {
  fprintf(stderr, "usage: hps_relay --upstream HOST:PORT [--host H]"
                  " [--port P] [--workers N] [--high B] [--low B]\n");
  exit(64);
}

static void check(const char *what, int r) {
  if (r != 0) {
    fprintf(stderr, "hps_relay: %s: %s (%s)\n", what, hps_strerror(r),
            hps_err_name(r));
    exit(1);
  }
}

static void setup(hps_endpoint *ep, int workers, int64_t high, int64_t low,
                  uint32_t events) {
  if (workers > 0) check("--workers", hps_setopt(ep, HPS_OPT_WORKERS, workers));
  if (high > 0) check("--high", hps_setopt(ep, HPS_OPT_SEND_HIGH_WATER, high));
  if (low >= 0) check("--low", hps_setopt(ep, HPS_OPT_SEND_LOW_WATER, low));
  /* no SEND events: sends keep the try-write fast path */
  check("events", hps_setopt(ep, HPS_OPT_EVENTS, events));
}

int main(int argc, char **argv) {
  const char *host = "127.0.0.1", *upstream = NULL, *colon;
  int port = 0, workers = 0, i, sig;
  int64_t high = 0, low = -1;
  char addr[64];
  uint16_t bound;
  sigset_t set;
  uint32_t water = HPS_EVBIT(HPS_EV_HIGH_WATER) | HPS_EVBIT(HPS_EV_LOW_WATER);

  for (i = 1; i + 1 < argc; i += 2) {
    const char *a = argv[i], *v = argv[i + 1];
    if (!strcmp(a, "--upstream")) upstream = v;
    else if (!strcmp(a, "--host")) host = v;
    else if (!strcmp(a, "--port")) port = atoi(v);
    else if (!strcmp(a, "--workers")) workers = atoi(v);
    else if (!strcmp(a, "--high")) high = atoll(v);
    else if (!strcmp(a, "--low")) low = atoll(v);
    else usage();
  }
  if (i != argc || upstream == NULL || port < 0 || port > 65535 ||
      (colon = strrchr(upstream, ':')) == NULL ||
      (size_t)(colon - upstream) >= sizeof(up_host) ||
      atoi(colon + 1) <= 0 || atoi(colon + 1) > 65535)
    usage();
  memcpy(up_host, upstream, (size_t)(colon - upstream));
  up_host[colon - upstream] = '\0';
  up_port = (uint16_t)atoi(colon + 1);

  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, NULL);

  check("create agent", hps_create(HPS_TCP_AGENT, on_agent, NULL, &agent));
  setup(agent, workers, high, low,
        HPS_EVBIT(HPS_EV_CONNECT) | HPS_EVBIT(HPS_EV_RECEIVE) | water);
  check("start agent", hps_start(agent, NULL, 0));
  check("create server", hps_create(HPS_TCP_SERVER, on_server, NULL, &server));
  setup(server, workers, high, low,
        HPS_EVBIT(HPS_EV_ACCEPT) | HPS_EVBIT(HPS_EV_RECEIVE) | water);
  check("start server", hps_start(server, host, (uint16_t)port));
  check("address", hps_listen_address(server, addr, sizeof(addr), &bound));
  printf("listening on %s:%u\n", addr, (unsigned)bound);
  fflush(stdout);

  sigwait(&set, &sig);
  /* The server first: its CLOSE handlers still reach the agent. */
  hps_stop(server);
  hps_stop(agent);
  hps_free(server);
  hps_free(agent);
  return 0;
}
