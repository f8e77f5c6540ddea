/* agent_fanout - one hpsock agent opens many connections to a server,
 * sends a greeting on each, and waits until every connection got its echo
 * back: the fan-out pattern of a gateway or a test driver.
 *
 *   hps_agent_fanout --port P [--host H] [--conns N] [--workers W]
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hpsock.h"

typedef struct state {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int connected, echoed, closed, failed, conns;
} state;

/* Each connection's extra data counts the bytes it still expects. */
static int on_event(void *user, const hps_event *ev) {
  state *s = user;
  char msg[64];
  uintptr_t left;
  int n;
  switch (ev->type) {
  case HPS_EV_HANDSHAKE:
    n = snprintf(msg, sizeof(msg), "hello from connection %llu\n",
                 (unsigned long long)ev->conn);
    hps_set_extra(ev->endpoint, ev->conn, (uintptr_t)n);
    if (hps_send(ev->endpoint, ev->conn, msg, (size_t)n) != 0)
      return HPS_HR_ERROR;
    pthread_mutex_lock(&s->mu);
    s->connected++;
    pthread_mutex_unlock(&s->mu);
    break;
  case HPS_EV_RECEIVE:
    left = ev->extra > ev->len ? ev->extra - ev->len : 0;
    hps_set_extra(ev->endpoint, ev->conn, left);
    if (left == 0) {
      pthread_mutex_lock(&s->mu);
      s->echoed++;
      pthread_cond_broadcast(&s->cv);
      pthread_mutex_unlock(&s->mu);
      hps_disconnect(ev->endpoint, ev->conn, 0);
    }
    break;
  case HPS_EV_CLOSE:
    pthread_mutex_lock(&s->mu);
    s->closed++;
    if (ev->error != 0) {
      s->failed++;
      fprintf(stderr, "connection %llu: %s (%s)\n",
              (unsigned long long)ev->conn, hps_strerror(ev->error),
              hps_err_name(ev->error));
    }
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    break;
  }
  return HPS_HR_OK;
}

int main(int argc, char **argv) {
  const char *host = "127.0.0.1";
  int port = 0, workers = 2, i, r;
  state s;
  hps_endpoint *ep;
  memset(&s, 0, sizeof(s));
  s.conns = 100;
  for (i = 1; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "--host")) host = argv[i + 1];
    else if (!strcmp(argv[i], "--port")) port = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--conns")) s.conns = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--workers")) workers = atoi(argv[i + 1]);
    else break;
  }
  if (i < argc || port <= 0 || port > 65535 || s.conns <= 0) {
    fprintf(stderr, "usage: hps_agent_fanout --port P [--host H] [--conns N] [--workers W]\n");
    return 64;
  }
  pthread_mutex_init(&s.mu, NULL);
  pthread_cond_init(&s.cv, NULL);
  if ((r = hps_create(HPS_TCP_AGENT, on_event, &s, &ep)) != 0 ||
      (r = hps_setopt(ep, HPS_OPT_WORKERS, workers)) != 0 ||
      (r = hps_start(ep, NULL, 0)) != 0) {
    fprintf(stderr, "hps_agent_fanout: %s\n", hps_strerror(r));
    return 1;
  }
  for (i = 0; i < s.conns; i++) {
    if ((r = hps_connect(ep, host, (uint16_t)port, NULL)) != 0) {
      fprintf(stderr, "connect: %s\n", hps_strerror(r));
      s.conns = i;
      break;
    }
  }
  pthread_mutex_lock(&s.mu);
  while (s.closed < s.conns) pthread_cond_wait(&s.cv, &s.mu);
  pthread_mutex_unlock(&s.mu);
  hps_stop(ep);
  hps_free(ep);
  printf("%d connections, %d echoed, %d failed\n", s.conns, s.echoed, s.failed);
  return s.echoed == s.conns && s.failed == 0 ? 0 : 1;
}
