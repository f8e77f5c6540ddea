/* echo_client - an hpsock TCP client: sends --count messages of --size
 * bytes to an echo server, one at a time, and verifies every echoed byte.
 *
 *   hps_echo_client --port P [--host H] [--count N] [--size B]
 *
 * Exit 0 when every message came back intact. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hpsock.h"

typedef struct state {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  unsigned char *expect; /* the message in flight */
  size_t size, got;
  long sent, done, count;
  int closed, error, mismatch;
} state;

static void fill(unsigned char *p, size_t n, long seq) {
  size_t i;
  for (i = 0; i < n; i++) p[i] = (unsigned char)(seq * 131 + (long)i * 7);
}

static int on_event(void *user, const hps_event *ev) {
  state *s = user;
  int r = HPS_HR_OK;
  pthread_mutex_lock(&s->mu);
  switch (ev->type) {
  case HPS_EV_HANDSHAKE: /* connected: send the first message */
    fill(s->expect, s->size, s->sent);
    if (hps_send(ev->endpoint, ev->conn, s->expect, s->size) == 0) s->sent++;
    break;
  case HPS_EV_RECEIVE:
    if (s->got + ev->len > s->size ||
        memcmp(s->expect + s->got, ev->data, ev->len) != 0) {
      s->mismatch = 1;
      r = HPS_HR_ERROR;
      break;
    }
    s->got += ev->len;
    if (s->got == s->size) {
      s->got = 0;
      s->done++;
      if (s->done < s->count) {
        fill(s->expect, s->size, s->sent);
        if (hps_send(ev->endpoint, ev->conn, s->expect, s->size) == 0)
          s->sent++;
      }
    }
    break;
  case HPS_EV_CLOSE:
    s->closed = 1;
    s->error = ev->error;
    break;
  }
  pthread_cond_broadcast(&s->cv);
  pthread_mutex_unlock(&s->mu);
  return r;
}

int main(int argc, char **argv) {
  const char *host = "127.0.0.1";
  int port = 0, i, r;
  state s;
  hps_endpoint *ep;
  memset(&s, 0, sizeof(s));
  s.count = 1000;
  s.size = 64;
  for (i = 1; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "--host")) host = argv[i + 1];
    else if (!strcmp(argv[i], "--port")) port = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--count")) s.count = atol(argv[i + 1]);
    else if (!strcmp(argv[i], "--size")) s.size = (size_t)atol(argv[i + 1]);
    else break;
  }
  if (i < argc || port <= 0 || port > 65535 || s.count <= 0 || s.size == 0) {
    fprintf(stderr, "usage: hps_echo_client --port P [--host H] [--count N] [--size B]\n");
    return 64;
  }
  pthread_mutex_init(&s.mu, NULL);
  pthread_cond_init(&s.cv, NULL);
  s.expect = malloc(s.size);
  if ((r = hps_create(HPS_TCP_CLIENT, on_event, &s, &ep)) != 0 ||
      (r = hps_start(ep, host, (uint16_t)port)) != 0) {
    fprintf(stderr, "hps_echo_client: %s\n", hps_strerror(r));
    return 1;
  }
  pthread_mutex_lock(&s.mu);
  while (s.done < s.count && !s.closed) pthread_cond_wait(&s.cv, &s.mu);
  pthread_mutex_unlock(&s.mu);
  hps_stop(ep);
  hps_free(ep);
  if (s.done < s.count) {
    fprintf(stderr, "hps_echo_client: %s after %ld of %ld messages: %s\n",
            s.mismatch ? "echo mismatch" : "connection closed", s.done,
            s.count, s.error ? hps_strerror(s.error) : "peer closed");
    return 1;
  }
  printf("%ld messages of %zu bytes echoed intact\n", s.done, s.size);
  free(s.expect);
  return 0;
}
