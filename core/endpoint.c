/* endpoint.c - endpoint life cycle: options, start, stop, wait, destroy. */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "core.h"

_Thread_local hps__loop *hps__tls_loop
    __attribute__((tls_model("initial-exec")));
/* The endpoint whose server PREPARE this thread is delivering in hps_start:
 * hps_free / hps_wait from that handler are refused as from a loop. */
static _Thread_local hps_endpoint *tls_starting;

static int stop(hps_endpoint *ep, int wait);

int hps__on_own_loop(hps_endpoint *ep) {
  return (hps__tls_loop != NULL && hps__tls_loop->ep == ep) ||
         tls_starting == ep;
}

/* Option table: key, min, max, live. Defaults are set in opt_defaults. */
static const struct {
  int64_t min, max;
  int live;
} opt_range[] = {
    [HPS_OPT_WORKERS] = {1, HPS__MAX_WORKERS, 0},
    [HPS_OPT_RECV_MODEL] = {HPS_MODEL_PUSH, HPS_MODEL_PACK, 0},
    /* SO_SNDBUF/SO_RCVBUF: Linux doubles the value and clamps it to
     * net.core.wmem_max/rmem_max without an error; up to 1 GiB the
     * doubled value still fits its int. BACKLOG: clamped to
     * net.core.somaxconn, never refused. */
    [HPS_OPT_SNDBUF] = {0, 1 << 30, 0},
    [HPS_OPT_RCVBUF] = {0, 1 << 30, 0},
    [HPS_OPT_MAX_CONNECTIONS] = {1, 1 << 24, 0},
    /* Linux takes TCP_KEEPIDLE and TCP_KEEPINTVL in whole seconds,
     * 1..32767 (MAX_TCP_KEEPIDLE, MAX_TCP_KEEPINTVL), and refuses more
     * with EINVAL -- after the socket exists, where nobody would see it:
     * so the ms values (rounded up to seconds) are held to that here. */
    [HPS_OPT_KEEPALIVE_TIME] = {0, 32767000, 0},
    [HPS_OPT_KEEPALIVE_INTERVAL] = {1000, 32767000, 0},
    [HPS_OPT_NODELAY] = {0, 1, 0},
    [HPS_OPT_REUSE_ADDR] = {0, 1, 0},
    [HPS_OPT_IPV6_ONLY] = {0, 1, 0},
    [HPS_OPT_MAX_SEND_QUEUE] = {1, 1 << 30, 0},
    [HPS_OPT_FREE_POOL] = {0, 1 << 20, 0},
    [HPS_OPT_CONNECT_TIMEOUT] = {1, 600000, 0},
    [HPS_OPT_EVENTS] = {0, HPS_EVENTS_ALL, 1},
    [HPS_OPT_BACKLOG] = {1, 65535, 0},
    [HPS_OPT_PACK_FLAG] = {0, HPS__PACK_FLAG_MAX, 0},
    [HPS_OPT_PACK_MAX] = {1, HPS__PACK_MAX_LIMIT, 0},
    [HPS_OPT_PULL_MAX] = {1, 1 << 30, 0},
    [HPS_OPT_SILENCE_TIMEOUT] = {0, 86400000, 0},
    [HPS_OPT_SEND_HIGH_WATER] = {1, 1 << 30, 1},
    [HPS_OPT_SEND_LOW_WATER] = {0, 1 << 30, 1},
    [HPS_OPT_AUTO_PAUSE] = {0, 1, 0},
    [HPS_OPT_CLOSE_TIMEOUT] = {1, 86400000, 0},
    [HPS_OPT_UDP_MAX_DATAGRAM] = {1, 65527, 0},
    [HPS_OPT_UDP_DETECT_INTERVAL] = {0, 86400000, 0},
    [HPS_OPT_UDP_DETECT_ATTEMPTS] = {1, 1000, 0},
    [HPS_OPT_UDP_CAST_MODE] = {HPS_CAST_MULTICAST, HPS_CAST_BROADCAST, 0},
    [HPS_OPT_UDP_MULTICAST_TTL] = {0, 255, 0},
    [HPS_OPT_UDP_MULTICAST_LOOP] = {0, 1, 0},
    [HPS_OPT_TLS] = {0, 1, 0},
    [HPS_OPT_TLS_VERIFY] = {HPS_TLS_VERIFY_NONE, HPS_TLS_VERIFY_REQUIRE, 0},
    [HPS_OPT_TLS_MIN_VERSION] = {HPS_TLS_V1_2, HPS_TLS_V1_3, 0},
    [HPS_OPT_TLS_SESSION_CACHE] = {0, 1, 0},
    [HPS_OPT_TLS_HANDSHAKE_TIMEOUT] = {1, 600000, 0},
};
_Static_assert(sizeof(opt_range) / sizeof(opt_range[0]) <= HPS__OPT_SLOTS,
               "ep->opt has a slot for every option key");
#define OPT_COUNT ((int)(sizeof(opt_range) / sizeof(opt_range[0])))

int hps__opt_check(int opt, int64_t value) {
  if (opt <= 0 || opt >= OPT_COUNT || opt_range[opt].max == 0)
    return HPS_EINVAL;
  if (value < opt_range[opt].min || value > opt_range[opt].max)
    return HPS_EINVAL;
  return 0;
}

int hps__opt_live(int opt) {
  return opt_range[opt].live;
}

int hps__opt_known(int opt) {
  return opt > 0 && opt < OPT_COUNT && opt_range[opt].max != 0;
}

/* TCP roles' default HPS_OPT_MAX_CONNECTIONS: as many connections as the
 * soft descriptor limit holds, less room for the loops' own descriptors
 * and the application's (an eighth, at least 64, at most half), and at
 * most 100000. Past the limit accepting pauses and sheds, so this only
 * keeps a default server from getting there. */
static int64_t max_conns_default(void) {
  struct rlimit rl;
  uint64_t lim, room, n;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY)
    return 100000;
  lim = (uint64_t)rl.rlim_cur;
  room = lim / 8 > 64 ? lim / 8 : 64;
  n = lim > room ? lim - room : 0;
  if (n < lim / 2)
    n = lim / 2;
  if (n < 1)
    n = 1;
  return n > 100000 ? 100000 : (int64_t)n;
}

void hps__opt_defaults(hps_endpoint *ep) {
  unsigned cpus = 0;
  uv_cpu_info_t *info;
  int n;
  if (uv_cpu_info(&info, &n) == 0) {
    cpus = (unsigned)n;
    uv_free_cpu_info(info, n);
  }
  if (cpus < 1)
    cpus = 1;
  if (cpus > HPS__MAX_WORKERS)
    cpus = HPS__MAX_WORKERS;
  ep->opt[HPS_OPT_WORKERS] = cpus;
  ep->opt[HPS_OPT_RECV_MODEL] = HPS_MODEL_PUSH;
  /* UDP peers hold no descriptor of their own */
  ep->opt[HPS_OPT_MAX_CONNECTIONS] =
      HPS__IS_UDP(ep) ? 100000 : max_conns_default();
  ep->opt[HPS_OPT_KEEPALIVE_INTERVAL] = 20000;
  ep->opt[HPS_OPT_NODELAY] = 1;
  ep->opt[HPS_OPT_REUSE_ADDR] = 1;
  ep->opt[HPS_OPT_MAX_SEND_QUEUE] = 16 << 20;
  ep->opt[HPS_OPT_FREE_POOL] = 1024;
  ep->opt[HPS_OPT_CONNECT_TIMEOUT] = 10000;
  ep->opt[HPS_OPT_BACKLOG] = 1024;
  ep->opt[HPS_OPT_PACK_MAX] = 262144;
  ep->opt[HPS_OPT_PULL_MAX] = 4 << 20;
  ep->opt[HPS_OPT_SEND_HIGH_WATER] = 1 << 20;
  ep->opt[HPS_OPT_SEND_LOW_WATER] = 256 << 10;
  ep->opt[HPS_OPT_CLOSE_TIMEOUT] = 30000;
  ep->opt[HPS_OPT_TLS_VERIFY] =
      ep->role == HPS_TCP_SERVER ? HPS_TLS_VERIFY_NONE : HPS_TLS_VERIFY_PEER;
  ep->opt[HPS_OPT_TLS_MIN_VERSION] = HPS_TLS_V1_2;
  ep->opt[HPS_OPT_TLS_SESSION_CACHE] = 1;
  ep->opt[HPS_OPT_TLS_HANDSHAKE_TIMEOUT] = 10000;
  ep->events = HPS_EVENTS_ALL;
  ep->opt[HPS_OPT_UDP_MAX_DATAGRAM] = 1432;
  ep->opt[HPS_OPT_UDP_DETECT_INTERVAL] = 60000;
  ep->opt[HPS_OPT_UDP_DETECT_ATTEMPTS] = 3;
  ep->opt[HPS_OPT_UDP_MULTICAST_TTL] = 1;
  ep->opt[HPS_OPT_UDP_MULTICAST_LOOP] = 1;
}

int hps__resolve(const char *host, uint16_t port, hps__addr *a) {
  struct addrinfo hints, *res = NULL;
  char portstr[8];
  memset(a, 0, sizeof(*a));
  if (host == NULL || host[0] == '\0')
    host = "0.0.0.0";
  if (uv_ip4_addr(host, port, &a->in4) == 0)
    return 0;
  if (uv_ip6_addr(host, port, &a->in6) == 0)
    return 0;
  memset(&hints, 0, sizeof(hints));
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  snprintf(portstr, sizeof(portstr), "%u", (unsigned)port);
  if (getaddrinfo(host, portstr, &hints, &res) != 0 || res == NULL)
    return HPS_EADDR;
  if (res->ai_addrlen > sizeof(*a)) {
    freeaddrinfo(res);
    return HPS_EADDR;
  }
  memcpy(a, res->ai_addr, res->ai_addrlen);
  freeaddrinfo(res);
  return 0;
}

int hps__addr_str(const hps__addr *a, char *host, size_t hostlen,
                  uint16_t *port) {
  char buf[INET6_ADDRSTRLEN];
  int r;
  if (a->sa.sa_family == AF_INET6) {
    r = uv_ip6_name(&a->in6, buf, sizeof(buf));
    if (port)
      *port = ntohs(a->in6.sin6_port);
  } else if (a->sa.sa_family == AF_INET) {
    r = uv_ip4_name(&a->in4, buf, sizeof(buf));
    if (port)
      *port = ntohs(a->in4.sin_port);
  } else {
    return HPS_ENOTFOUND;
  }
  if (r != 0)
    return r;
  if (host) {
    if (hostlen <= strlen(buf))
      return HPS_EINVAL;
    memcpy(host, buf, strlen(buf) + 1);
  }
  return 0;
}

static socklen_t addr_len(const hps__addr *a) {
  return a->sa.sa_family == AF_INET6 ? sizeof(a->in6) : sizeof(a->in4);
}

/* Make one listening socket: reuse options, bind, listen. fd or error. */
static int make_listener(hps_endpoint *ep, const hps__addr *a, int reuseport) {
  int one = 1, fd, r;
  fd = socket(a->sa.sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return -errno;
  if (ep->opt[HPS_OPT_REUSE_ADDR])
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (reuseport &&
      setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0) {
    r = -errno;
    close(fd);
    return r;
  }
  if (a->sa.sa_family == AF_INET6) {
    int v6only = ep->opt[HPS_OPT_IPV6_ONLY] ? 1 : 0;
    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof(v6only));
  }
  /* Before listen: the accepted sockets inherit them (and a receive
   * buffer set before the handshake sizes the window scale). */
  hps__setup_fd(ep, fd);
  if (bind(fd, &a->sa, addr_len(a)) != 0 ||
      listen(fd, (int)ep->opt[HPS_OPT_BACKLOG]) != 0) {
    r = -errno;
    close(fd);
    return r;
  }
  return fd;
}

/* End the runs of the loops of the last start; the loop objects stay. */
static void end_loops(hps_endpoint *ep) {
  int i;
  for (i = 0; i < ep->nloops; i++)
    hps__loop_end(ep->loops[i]);
}

static void join_loops(hps_endpoint *ep) {
  int i;
  for (i = 0; i < ep->nloops; i++) {
    if (ep->loops[i]->thread_started) {
      uv_thread_join(&ep->loops[i]->thread);
      ep->loops[i]->thread_started = 0;
    }
  }
}

/* Join the threads of a stopped run. The loop objects stay until
 * hps_free, so a call racing with the stop, or with the next start, still
 * finds valid loops (empty, or closed to commands, or running again).
 * Caller holds ep->mutex and is not a loop thread. */
static void reap_locked(hps_endpoint *ep) {
  if (!ep->need_join)
    return;
  join_loops(ep);
  ep->need_join = 0;
}

/* Several loops listen through SO_REUSEPORT sockets, which would also let
 * this server join a port another server (with SO_REUSEPORT) already holds.
 * Bind a plain socket first: it fails with EADDRINUSE when the port is
 * taken, and for port 0 it picks the port the group then shares. */
static int probe_port(hps_endpoint *ep, hps__addr *a) {
  socklen_t len = sizeof(*a);
  hps__addr got;
  int fd = make_listener(ep, a, 0);
  if (fd < 0)
    return fd;
  if (getsockname(fd, &got.sa, &len) == 0) {
    if (a->sa.sa_family == AF_INET6)
      a->in6.sin6_port = got.in6.sin6_port;
    else
      a->in4.sin_port = got.in4.sin_port;
  }
  close(fd);
  return 0;
}

static int open_listeners(hps_endpoint *ep, const char *host, uint16_t port) {
  hps__addr a;
  hps_event ev;
  int i, fd, r, reuseport = ep->nloops > 1;
  r = hps__resolve(host, port, &a);
  if (r != 0)
    return r;
  if (reuseport && (r = probe_port(ep, &a)) != 0)
    return r;
  for (i = 0; i < ep->nloops; i++) {
    hps__loop *lp = ep->loops[i];
    fd = make_listener(ep, &a, reuseport);
    if (fd < 0)
      return fd;
    if (i == 0) {
      socklen_t len = sizeof(ep->listen_addr);
      getsockname(fd, &ep->listen_addr.sa, &len);
      /* Port 0: every other listener shares the port the kernel picked. */
      if (a.sa.sa_family == AF_INET6)
        a.in6.sin6_port = ep->listen_addr.in6.sin6_port;
      else
        a.in4.sin_port = ep->listen_addr.in4.sin_port;
      if (ep->events & HPS_EVBIT(HPS_EV_PREPARE)) {
        memset(&ev, 0, sizeof(ev));
        ev.type = HPS_EV_PREPARE;
        ev.endpoint = ep;
        ev.fd = fd;
        if (ep->fn(ep->user, &ev) == HPS_HR_ERROR) {
          close(fd);
          return HPS_EHANDLER;
        }
      }
    }
    r = hps__listen_start(lp, fd);
    if (r != 0)
      return r;
  }
  return 0;
}

int hps__ep_start(hps_endpoint *ep, const char *host, uint16_t port) {
  int i, r = 0, n;
  hps_conn_id cid = 0;
  uv_mutex_lock(&ep->mutex);
  if (ep->starting || ep->state == HPS_STATE_STARTED ||
      ep->state == HPS_STATE_STOPPING) {
    uv_mutex_unlock(&ep->mutex);
    return HPS_ESTATE;
  }
  reap_locked(ep);
  end_loops(ep);
  ep->starting = 1;
  uv_mutex_unlock(&ep->mutex);

  /* Unlocked from here: the server's PREPARE handler runs on this thread and
   * may call back into the library. */
  n = HPS__SINGLE(ep) ? 1 : (int)ep->opt[HPS_OPT_WORKERS];
  if (ep->role == HPS_TCP_CLIENT) {
    /* A bad address must fail the start before a loop runs: else the
     * failed start would deliver SHUTDOWN. */
    hps__addr ca;
    if (host == NULL || host[0] == '\0' || port == 0)
      r = HPS_EADDR;
    else
      r = hps__resolve(host, port, &ca);
  }
  /* TLS: the whole configuration is checked (and built) before a loop
   * runs, so a bad certificate fails the start. */
  if (r == 0)
    r = hps__tls_ep_start(ep);
  /* Loop objects are made once and published before nloops counts them:
   * another thread reading nloops finds every loop below it. */
  for (i = 0; i < n && r == 0; i++) {
    hps__loop *lp = ep->loops[i];
    if (lp != NULL)
      continue; /* published at an earlier start */
    if ((lp = hps__loop_new(ep, i)) == NULL)
      r = HPS_ENOMEM;
    else
      __atomic_store_n(&ep->loops[i], lp, __ATOMIC_RELEASE);
  }
  /* unchanged in the usual restart: no write for racing readers to see */
  if (r == 0 && ep->nloops != n)
    __atomic_store_n(&ep->nloops, n, __ATOMIC_RELEASE);
  HPS__STORE(&ep->nconns, 0);
  HPS__STORE(&ep->client_id, 0);
  memset(&ep->listen_addr, 0, sizeof(ep->listen_addr));
  for (i = 0; i < n && r == 0; i++)
    r = hps__loop_init(ep->loops[i]);
  if (r == 0 && (ep->role == HPS_TCP_SERVER || HPS__IS_UDP(ep))) {
    hps_endpoint *outer = tls_starting; /* a start from inside a PREPARE */
    tls_starting = ep;
    if (HPS__IS_UDP(ep))
      r = hps__udp_open(ep, host, port);
    else
      r = open_listeners(ep, host, port);
    tls_starting = outer;
  }

  uv_mutex_lock(&ep->mutex);
  ep->starting = 0;
  if (r != 0) {
    end_loops(ep);
    uv_mutex_unlock(&ep->mutex);
    return r;
  }
  HPS__STORE(&ep->state, HPS_STATE_STARTED);
  HPS__STORE(&ep->running, n);
  ep->need_join = 1;
  for (i = 0; i < n && r == 0; i++)
    r = hps__loop_start(ep->loops[i]);
  if (r != 0 &&
      __atomic_sub_fetch(&ep->running, n - i + 1, __ATOMIC_ACQ_REL) == 0)
    HPS__STORE(&ep->state,
               HPS_STATE_STOPPED); /* no loop runs: nothing to wait for */
  uv_mutex_unlock(&ep->mutex);
  if (r == 0 && ep->role == HPS_TCP_CLIENT)
    r = hps__connect(ep, host, port, &cid); /* the agent path, one loop */
  if (r != 0) {
    stop(ep, 1); /* back to STOPPED before the failure is returned */
    return r;
  }
  return 0;
}

/* Begin the stop; wait for SHUTDOWN unless `wait` is 0. */
static int stop(hps_endpoint *ep, int wait) {
  int i;
  uv_mutex_lock(&ep->mutex);
  if (ep->state == HPS_STATE_CREATED) {
    uv_mutex_unlock(&ep->mutex);
    return HPS_ESTATE;
  }
  if (ep->state == HPS_STATE_STARTED) {
    HPS__STORE(&ep->state, HPS_STATE_STOPPING);
    for (i = 0; i < ep->nloops; i++)
      hps__loop_request_stop(ep->loops[i]);
  }
  if (!wait) { /* the stop completes after the calling handler returns */
    uv_mutex_unlock(&ep->mutex);
    return 0;
  }
  while (ep->state != HPS_STATE_STOPPED)
    uv_cond_wait(&ep->cond, &ep->mutex);
  reap_locked(ep);
  uv_mutex_unlock(&ep->mutex);
  return 0;
}

/* From inside a handler -- of this endpoint or of any other, i.e. on any
 * loop thread -- the stop is only begun. Waiting on a loop thread for
 * another endpoint would deadlock when that endpoint's handler, at the
 * same moment, stops this thread's endpoint and waits in turn. */
int hps__ep_stop(hps_endpoint *ep) {
  return stop(ep, !(hps__on_own_loop(ep) || hps__tls_loop != NULL));
}

int hps__ep_wait(hps_endpoint *ep, int timeout_ms) {
  int r = 0;
  uint64_t deadline =
      uv_hrtime() + (uint64_t)(timeout_ms < 0 ? 0 : timeout_ms) * 1000000u;
  if (hps__on_own_loop(ep))
    return HPS_EINLOOP;
  uv_mutex_lock(&ep->mutex);
  while (ep->state == HPS_STATE_STARTED || ep->state == HPS_STATE_STOPPING) {
    if (timeout_ms < 0) {
      uv_cond_wait(&ep->cond, &ep->mutex);
    } else {
      uint64_t now = uv_hrtime();
      if (now >= deadline ||
          uv_cond_timedwait(&ep->cond, &ep->mutex, deadline - now) != 0) {
        if (ep->state != HPS_STATE_STOPPED && ep->state != HPS_STATE_CREATED)
          r = HPS_ETIMEDOUT;
        break;
      }
    }
  }
  uv_mutex_unlock(&ep->mutex);
  return r;
}

/* Called by each loop thread as it ends. The last one delivers SHUTDOWN,
 * after every other loop has delivered its last event. */
void hps__ep_loop_done(hps_endpoint *ep) {
  hps_event ev;
  if (__atomic_sub_fetch(&ep->running, 1, __ATOMIC_ACQ_REL) != 0)
    return;
  memset(&ev, 0, sizeof(ev));
  ev.type = HPS_EV_SHUTDOWN;
  ev.endpoint = ep;
  ev.fd = -1;
  ep->fn(ep->user, &ev);
  uv_mutex_lock(&ep->mutex);
  HPS__STORE(&ep->state, HPS_STATE_STOPPED);
  uv_cond_broadcast(&ep->cond);
  uv_mutex_unlock(&ep->mutex);
}

void hps__ep_destroy(hps_endpoint *ep) {
  int i;
  /* The last loop may be storing STOPPED right now (a stop begun in a
   * handler): read the state as it is written, atomically. */
  int st = HPS__LOAD(&ep->state);
  /* hps_free refused its own loops: here it may wait (on another
   * endpoint's loop too, see hps_free) */
  if (st == HPS_STATE_STARTED || st == HPS_STATE_STOPPING)
    stop(ep, 1);
  uv_mutex_lock(&ep->mutex);
  reap_locked(ep);
  for (i = 0; i < HPS__MAX_WORKERS; i++)
    if (ep->loops[i] != NULL)
      hps__loop_free(ep->loops[i]);
  free(ep->loops);
  ep->loops = NULL;
  ep->nloops = 0;
  uv_mutex_unlock(&ep->mutex);
  hps__tls_ep_free(ep);
  uv_mutex_destroy(&ep->mutex);
  uv_cond_destroy(&ep->cond);
  ep->magic = 0;
  free(ep);
}
