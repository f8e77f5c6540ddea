/* udp_cast_chat - a multicast chat: every line typed goes to the group,
 * every line anyone in the group sends is printed with its sender.
 *
 *   hps_udp_cast_chat [--group G] [--port P] [--iface ADDR] [--name N]
 *                     [--broadcast] [--ttl T]
 *
 * Defaults: group 239.255.42.42, port 42042, the system's interface. Run it
 * in two terminals; on one machine without a multicast route, add
 * --iface 127.0.0.1. --broadcast sends to --group as a broadcast address
 * instead (e.g. 127.255.255.255). Several chats on one machine share the
 * port (HPS_OPT_REUSE_ADDR). Ends at end of input (Ctrl-D). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hpsock.h"

static int on_event(void *user, const hps_event *ev) {
  (void)user;
  if (ev->type == HPS_EV_RECEIVE && ev->error == HPS_EDGRAMSIZE)
    printf("(a datagram from %s:%d was too big)\n", ev->addr, ev->port);
  else if (ev->type == HPS_EV_RECEIVE)
    printf("[%s:%d] %.*s\n", ev->addr, ev->port, (int)ev->len,
           (const char *)ev->data);
  else if (ev->type == HPS_EV_CLOSE && ev->error != 0)
    printf("(closed: %s)\n", hps_strerror(ev->error));
  fflush(stdout);
  return HPS_HR_OK;
}

static void check(const char *what, int r) {
  if (r != 0) {
    fprintf(stderr, "hps_udp_cast_chat: %s: %s (%s)\n", what,
            hps_strerror(r), hps_err_name(r));
    exit(1);
  }
}

int main(int argc, char **argv) {
  const char *group = "239.255.42.42", *iface = NULL, *name = "anon";
  int port = 42042, ttl = 1, broadcast = 0, i;
  hps_endpoint *ep;
  char line[1024], msg[1200];

  for (i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--broadcast")) {
      broadcast = 1;
      continue;
    }
    if (v == NULL) goto usage;
    if (!strcmp(a, "--group")) group = v;
    else if (!strcmp(a, "--port")) port = atoi(v);
    else if (!strcmp(a, "--iface")) iface = v;
    else if (!strcmp(a, "--name")) name = v;
    else if (!strcmp(a, "--ttl")) ttl = atoi(v);
    else goto usage;
    i++;
  }
  if (port <= 0 || port > 65535) goto usage;

  check("create", hps_create(HPS_UDP_CAST, on_event, NULL, &ep));
  check("workers", hps_setopt(ep, HPS_OPT_WORKERS, 1));
  check("--ttl", hps_setopt(ep, HPS_OPT_UDP_MULTICAST_TTL, ttl));
  if (broadcast)
    check("--broadcast",
          hps_setopt(ep, HPS_OPT_UDP_CAST_MODE, HPS_CAST_BROADCAST));
  if (iface) check("--iface", hps_cast_interface(ep, iface));
  check("start", hps_start(ep, group, (uint16_t)port));
  printf("chatting on %s:%d as %s (Ctrl-D ends)\n", group, port, name);
  fflush(stdout);
  while (fgets(line, sizeof(line), stdin) != NULL) {
    int n;
    line[strcspn(line, "\n")] = '\0';
    if (line[0] == '\0') continue;
    n = snprintf(msg, sizeof(msg), "%s: %s", name, line);
    if (n >= (int)sizeof(msg)) n = (int)sizeof(msg) - 1; /* < max datagram */
    check("send", hps_send(ep, 0, msg, (size_t)n));
  }
  hps_free(ep);
  return 0;
usage:
  fprintf(stderr, "usage: hps_udp_cast_chat [--group G] [--port P] "
                  "[--iface ADDR] [--name N] [--broadcast] [--ttl T]\n");
  return 64;
}
