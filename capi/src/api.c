/* api.c - the ABI layer: argument checks, handle validation, dispatch into
 * the core. No I/O happens here. */
#include <stdlib.h>
#include <string.h>

#include "core.h"
#include "hpsock.h"

#define HPS__STR2(x) #x
#define HPS__STR(x) HPS__STR2(x)

/* A handle is valid when non-NULL and carrying the magic; hps_free clears
 * the magic, so most uses after free are caught too. */
#define CHECK_EP(ep)                                                           \
  do {                                                                         \
    if ((ep) == NULL || (ep)->magic != HPS__MAGIC)                             \
      return HPS_EHANDLE;                                                      \
  } while (0)

const char *hps_version(void) {
  return HPS__STR(HPS_VERSION_MAJOR) "." HPS__STR(
      HPS_VERSION_MINOR) "." HPS__STR(HPS_VERSION_PATCH);
}

unsigned hps_version_hex(void) {
  return HPS_VERSION_HEX;
}

int hps_create(int role, hps_event_fn fn, void *user, hps_endpoint **out) {
  hps_endpoint *ep;
  if (out == NULL)
    return HPS_EINVAL;
  *out = NULL;
  if (fn == NULL || role < HPS_TCP_SERVER || role > HPS_UDP_NODE)
    return HPS_EINVAL;
  ep = calloc(1, sizeof(*ep));
  if (ep == NULL)
    return HPS_ENOMEM;
  /* for life: a call racing with a restart must find valid loops */
  ep->loops = calloc(HPS__MAX_WORKERS, sizeof(*ep->loops));
  if (ep->loops == NULL || uv_mutex_init(&ep->mutex) != 0) {
    free(ep->loops);
    free(ep);
    return HPS_ENOMEM;
  }
  if (uv_cond_init(&ep->cond) != 0) {
    uv_mutex_destroy(&ep->mutex);
    free(ep->loops);
    free(ep);
    return HPS_ENOMEM;
  }
  ep->magic = HPS__MAGIC;
  ep->role = role;
  ep->fn = fn;
  ep->user = user;
  HPS__STORE(&ep->state, HPS_STATE_CREATED);
  hps__opt_defaults(ep);
  *out = ep;
  return 0;
}

int hps_setopt(hps_endpoint *ep, int opt, int64_t value) {
  int r, s;
  CHECK_EP(ep);
  r = hps__opt_check(opt, value);
  if (r != 0)
    return r;
  if (opt == HPS_OPT_RECV_MODEL && value != HPS_MODEL_PUSH && HPS__IS_UDP(ep))
    return HPS_EMODEL; /* datagrams: push only */
  uv_mutex_lock(&ep->mutex);
  s = ep->state;
  if ((s == HPS_STATE_STARTED || s == HPS_STATE_STOPPING || ep->starting) &&
      !hps__opt_live(opt)) {
    uv_mutex_unlock(&ep->mutex);
    return HPS_ESTATE;
  }
  if (opt == HPS_OPT_EVENTS) /* live: read by the loops with atomics */
    HPS__STORE(&ep->events, (uint32_t)value);
  else /* atomic: live ones (water marks) are read by the loops */
    HPS__STORE(&ep->opt[opt], value);
  uv_mutex_unlock(&ep->mutex);
  return 0;
}

int hps_getopt(hps_endpoint *ep, int opt, int64_t *value) {
  CHECK_EP(ep);
  if (value == NULL || !hps__opt_known(opt))
    return HPS_EINVAL;
  *value =
      opt == HPS_OPT_EVENTS ? (int64_t)HPS__LOAD(&ep->events) : ep->opt[opt];
  return 0;
}

int hps_start(hps_endpoint *ep, const char *host, uint16_t port) {
  CHECK_EP(ep);
  if (hps__on_own_loop(ep))
    return HPS_ESTATE; /* it is running */
  return hps__ep_start(ep, host, port);
}

int hps_stop(hps_endpoint *ep) {
  CHECK_EP(ep);
  return hps__ep_stop(ep);
}

int hps_wait(hps_endpoint *ep, int timeout_ms) {
  CHECK_EP(ep);
  return hps__ep_wait(ep, timeout_ms);
}

int hps_free(hps_endpoint *ep) {
  CHECK_EP(ep);
  if (hps__on_own_loop(ep))
    return HPS_EINLOOP;
  hps__ep_destroy(ep);
  return 0;
}

int hps_state(hps_endpoint *ep) {
  CHECK_EP(ep);
  return HPS__LOAD(&ep->state);
}

int hps_role(hps_endpoint *ep) {
  CHECK_EP(ep);
  return ep->role;
}

int hps_listen_address(hps_endpoint *ep, char *host, size_t hostlen,
                       uint16_t *port) {
  hps__addr a;
  CHECK_EP(ep);
  if (ep->role != HPS_TCP_SERVER && ep->role != HPS_UDP_SERVER &&
      ep->role != HPS_UDP_CAST && ep->role != HPS_UDP_NODE)
    return HPS_EROLE;
  if (host != NULL && hostlen == 0)
    return HPS_EINVAL;
  uv_mutex_lock(&ep->mutex);
  if (ep->state != HPS_STATE_STARTED) {
    uv_mutex_unlock(&ep->mutex);
    return HPS_ESTATE;
  }
  a = ep->listen_addr;
  uv_mutex_unlock(&ep->mutex);
  return hps__addr_str(&a, host, hostlen, port);
}

int hps_connect(hps_endpoint *ep, const char *host, uint16_t port,
                hps_conn_id *id) {
  CHECK_EP(ep);
  if (ep->role != HPS_TCP_AGENT)
    return HPS_EROLE;
  return hps__connect(ep, host, port, id);
}

int hps_send(hps_endpoint *ep, hps_conn_id id, const void *data, size_t len) {
  CHECK_EP(ep);
  /* len 0 goes on: the core answers HPS_EPACKEMPTY in the pack model and
   * HPS_EINVAL in the others */
  if (data == NULL)
    return HPS_EINVAL;
  /* Before the core adds a header or the unsent count to it: a length
   * near SIZE_MAX would wrap those sums (and an allocation size). */
  if (len > HPS__LEN_MAX)
    return hps__len_error(ep);
  return hps__send1(ep, id, data, len);
}

int hps_sendv(hps_endpoint *ep, hps_conn_id id, const hps_buf *bufs, int n) {
  int i;
  size_t total = 0;
  CHECK_EP(ep);
  if (bufs == NULL || n <= 0)
    return HPS_EINVAL;
  for (i = 0; i < n; i++) {
    if (bufs[i].len > 0 && bufs[i].base == NULL)
      return HPS_EINVAL;
    if (total + bufs[i].len < total)
      return HPS_EINVAL; /* overflow */
    total += bufs[i].len;
  }
  if (total > HPS__LEN_MAX)
    return hps__len_error(ep);
  return hps__send(ep, id, bufs, n); /* total 0: as hps_send with len 0 */
}

int hps_send_file(hps_endpoint *ep, hps_conn_id id, const char *path,
                  int64_t offset, int64_t length) {
  CHECK_EP(ep);
  if (HPS__IS_UDP(ep))
    return HPS_EROLE;
  if (path == NULL || path[0] == '\0' || offset < 0)
    return HPS_EINVAL;
  if (length < -1)
    return HPS_EFILE;
  return hps__send_file(ep, id, path, offset, length);
}

int hps_disconnect(hps_endpoint *ep, hps_conn_id id, int force) {
  CHECK_EP(ep);
  return hps__disconnect(ep, id, force);
}

int hps_pause_receive(hps_endpoint *ep, hps_conn_id id, int pause) {
  CHECK_EP(ep);
  return hps__pause(ep, id, pause);
}

int hps_fetch(hps_endpoint *ep, hps_conn_id id, void *buf, size_t len) {
  CHECK_EP(ep);
  /* more than can ever wait (HPS_OPT_PULL_MAX is at most HPS__LEN_MAX) */
  if (buf == NULL || len == 0 || len > HPS__LEN_MAX)
    return HPS_EINVAL;
  return hps__fetch(ep, id, buf, len, 1);
}

int hps_peek(hps_endpoint *ep, hps_conn_id id, void *buf, size_t len) {
  CHECK_EP(ep);
  if (buf == NULL || len == 0 || len > HPS__LEN_MAX)
    return HPS_EINVAL;
  return hps__fetch(ep, id, buf, len, 0);
}

int hps_conn_count(hps_endpoint *ep) {
  CHECK_EP(ep);
  return hps__conn_count(ep);
}

int hps_conn_list(hps_endpoint *ep, hps_conn_id *ids, size_t cap,
                  size_t *count) {
  CHECK_EP(ep);
  if (ids == NULL && cap > 0)
    return HPS_EINVAL;
  return hps__conn_list(ep, ids, cap, count);
}

int hps_local_address(hps_endpoint *ep, hps_conn_id id, char *host,
                      size_t hostlen, uint16_t *port) {
  CHECK_EP(ep);
  if (host != NULL && hostlen == 0)
    return HPS_EINVAL;
  return hps__address(ep, id, 0, host, hostlen, port);
}

int hps_remote_address(hps_endpoint *ep, hps_conn_id id, char *host,
                       size_t hostlen, uint16_t *port) {
  CHECK_EP(ep);
  if (host != NULL && hostlen == 0)
    return HPS_EINVAL;
  return hps__address(ep, id, 1, host, hostlen, port);
}

int hps_set_extra(hps_endpoint *ep, hps_conn_id id, uintptr_t extra) {
  CHECK_EP(ep);
  return hps__extra(ep, id, NULL, extra);
}

int hps_get_extra(hps_endpoint *ep, hps_conn_id id, uintptr_t *extra) {
  CHECK_EP(ep);
  if (extra == NULL)
    return HPS_EINVAL;
  return hps__extra(ep, id, extra, 0);
}

int hps_get_stats(hps_endpoint *ep, hps_conn_id id, hps_stats *stats) {
  CHECK_EP(ep);
  if (stats == NULL)
    return HPS_EINVAL;
  return hps__stats(ep, id, stats);
}

int hps_disconnect_silent(hps_endpoint *ep, int64_t silence_ms) {
  CHECK_EP(ep);
  if (silence_ms <= 0)
    return HPS_EINVAL;
  return hps__disconnect_where(ep, silence_ms, 1);
}

int hps_disconnect_long(hps_endpoint *ep, int64_t age_ms) {
  CHECK_EP(ep);
  if (age_ms <= 0)
    return HPS_EINVAL;
  return hps__disconnect_where(ep, age_ms, 0);
}

int hps_get_unsent(hps_endpoint *ep, hps_conn_id id, uint64_t *unsent) {
  CHECK_EP(ep);
  if (unsent == NULL)
    return HPS_EINVAL;
  *unsent = 0;
  return hps__unsent(ep, id, unsent);
}

int hps_get_counter(hps_endpoint *ep, int counter, uint64_t *value) {
  CHECK_EP(ep);
  if (value == NULL || counter < HPS_CNT_ACCEPT_ERRORS ||
      counter > HPS_CNT_UDP_PEERS_EVICTED)
    return HPS_EINVAL;
  *value = HPS__LOAD(&ep->counters[counter]);
  return 0;
}

/* ---- UDP ---- */

static int cast_or_node(hps_endpoint *ep) {
  return ep->role == HPS_UDP_CAST || ep->role == HPS_UDP_NODE;
}

int hps_send_to(hps_endpoint *ep, const char *host, uint16_t port,
                const void *data, size_t len) {
  hps_buf b;
  CHECK_EP(ep);
  if (!cast_or_node(ep))
    return HPS_EROLE;
  /* The payload's errors before the address's, as in hps_send (where the
   * size is checked before the connection is looked up). */
  if (data == NULL || len == 0)
    return HPS_EINVAL;
  if (len > (size_t)ep->opt[HPS_OPT_UDP_MAX_DATAGRAM])
    return HPS_EDGRAMSIZE;
  b.base = data;
  b.len = len;
  return hps__udp_send_to(ep, host, port, &b, 1);
}

int hps_join_group(hps_endpoint *ep, const char *group, const char *iface) {
  CHECK_EP(ep);
  if (!cast_or_node(ep))
    return HPS_EROLE;
  if (group == NULL)
    return HPS_EINVAL;
  return hps__udp_membership(ep, group, iface, 1);
}

int hps_leave_group(hps_endpoint *ep, const char *group, const char *iface) {
  CHECK_EP(ep);
  if (!cast_or_node(ep))
    return HPS_EROLE;
  if (group == NULL)
    return HPS_EINVAL;
  return hps__udp_membership(ep, group, iface, 0);
}

int hps_cast_interface(hps_endpoint *ep, const char *iface) {
  CHECK_EP(ep);
  if (!cast_or_node(ep))
    return HPS_EROLE;
  return hps__udp_set_iface(ep, iface);
}

/* ---- TLS ---- */

int hps_setopt_str(hps_endpoint *ep, int opt, const char *value) {
  CHECK_EP(ep);
  return hps__tls_setopt_str(ep, opt, value);
}

int hps_getopt_str(hps_endpoint *ep, int opt, char *buf, size_t cap,
                   size_t *len) {
  CHECK_EP(ep);
  if (buf == NULL && cap > 0)
    return HPS_EINVAL;
  return hps__tls_getopt_str(ep, opt, buf, cap, len);
}

int hps_tls_add_cert(hps_endpoint *ep, const char *name, const char *cert,
                     const char *key) {
  CHECK_EP(ep);
  if (ep->role != HPS_TCP_SERVER)
    return HPS_EROLE;
  if (name == NULL || name[0] == '\0' || cert == NULL || cert[0] == '\0' ||
      key == NULL || key[0] == '\0')
    return HPS_EINVAL;
  return hps__tls_add_cert(ep, name, cert, key);
}

int hps_tls_info(hps_endpoint *ep, hps_conn_id id, int kind, char *buf,
                 size_t cap, size_t *len) {
  CHECK_EP(ep);
  if (buf == NULL)
    return HPS_EINVAL;
  return hps__tls_info(ep, id, kind, buf, cap, len);
}
