/* pull_demo - the pull receive model parsing a length-prefixed protocol.
 *
 * Each request is a 2-byte big-endian length and that many bytes of text.
 * The server is told only how many bytes wait; it peeks at the header,
 * fetches a request once it is whole, and answers with the text upper-cased
 * (same framing). A client in the same process sends requests whose bytes
 * are split awkwardly across sends, to show the server does not care.
 *
 *   hps_pull_demo [--count N]
 */
#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hpsock.h"

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int answers;

static int server_event(void *user, const hps_event *ev) {
  unsigned char hdr[2], body[65535 + 2];
  size_t waiting = ev->len, n;
  (void)user;
  if (ev->type != HPS_EV_RECEIVE) return HPS_HR_OK;
  while (waiting >= 2) {
    if (hps_peek(ev->endpoint, ev->conn, hdr, 2) != 0) return HPS_HR_ERROR;
    n = (size_t)hdr[0] << 8 | hdr[1];
    if (waiting < 2 + n) break; /* the rest comes in a later event */
    if (hps_fetch(ev->endpoint, ev->conn, body, 2 + n) != 0)
      return HPS_HR_ERROR;
    waiting -= 2 + n;
    for (size_t i = 2; i < 2 + n; i++) body[i] = (unsigned char)toupper(body[i]);
    if (hps_send(ev->endpoint, ev->conn, body, 2 + n) != 0) return HPS_HR_ERROR;
  }
  return HPS_HR_OK;
}

static int client_event(void *user, const hps_event *ev) {
  (void)user;
  if (ev->type == HPS_EV_RECEIVE) {
    /* Replies may coalesce; print them as they come. */
    size_t off = 0;
    const unsigned char *p = ev->data;
    while (off + 2 <= ev->len) {
      size_t n = (size_t)p[off] << 8 | p[off + 1];
      if (off + 2 + n > ev->len) break; /* demo: replies are small */
      printf("reply: %.*s\n", (int)n, (const char *)p + off + 2);
      off += 2 + n;
      pthread_mutex_lock(&mu);
      answers++;
      pthread_cond_broadcast(&cv);
      pthread_mutex_unlock(&mu);
    }
  }
  return HPS_HR_OK;
}

static void check(const char *what, int r) {
  if (r != 0) {
    fprintf(stderr, "hps_pull_demo: %s: %s\n", what, hps_strerror(r));
    exit(1);
  }
}

int main(int argc, char **argv) {
  hps_endpoint *server, *client;
  uint16_t port;
  int count = 5, i;
  unsigned char wire[4096];
  size_t len = 0, off;
  if (argc == 3 && !strcmp(argv[1], "--count")) count = atoi(argv[2]);
  if (count < 1 || count > 100) count = 5;

  check("server", hps_create(HPS_TCP_SERVER, server_event, NULL, &server));
  check("model", hps_setopt(server, HPS_OPT_RECV_MODEL, HPS_MODEL_PULL));
  /* A client that sends requests and does not read the answers is not
   * read from either while its answers wait (past the high water mark),
   * instead of being dropped when they reach the send queue limit. */
  check("auto pause", hps_setopt(server, HPS_OPT_AUTO_PAUSE, 1));
  check("start", hps_start(server, "127.0.0.1", 0));
  check("address", hps_listen_address(server, NULL, 0, &port));
  check("client", hps_create(HPS_TCP_CLIENT, client_event, NULL, &client));
  check("connect", hps_start(client, "127.0.0.1", port));

  for (i = 0; i < count; i++) {
    char text[64];
    int n = snprintf(text, sizeof(text), "request number %d", i + 1);
    wire[len++] = (unsigned char)(n >> 8);
    wire[len++] = (unsigned char)n;
    memcpy(wire + len, text, (size_t)n);
    len += (size_t)n;
  }
  /* Send in 7-byte pieces: headers and bodies split at odd places. Sends
   * before the connection is up are refused with HPS_ESTATE: retry. */
  for (off = 0; off < len;) {
    size_t piece = len - off < 7 ? len - off : 7;
    int r = hps_send(client, 0, wire + off, piece);
    if (r == HPS_ESTATE) continue;
    check("send", r);
    off += piece;
  }
  pthread_mutex_lock(&mu);
  while (answers < count) pthread_cond_wait(&cv, &mu);
  pthread_mutex_unlock(&mu);
  hps_free(client);
  hps_free(server);
  return 0;
}
