/*
 * hps_epoll_echo - raw-epoll reference echo server (no hpsock, no libuv).
 *
 * The yardstick for what the kernel allows on this machine: N worker threads,
 * each with its own epoll instance and (for N > 1) its own SO_REUSEPORT
 * listening socket, so there is no shared state and no locking at all.
 *
 * Default: edge-triggered, registered once (EPOLLIN|EPOLLOUT|EPOLLRDHUP|EPOLLET):
 * no epoll_ctl on the data path.  --lt: level-triggered, one recv per event,
 * EPOLLOUT added with epoll_ctl only while a queue exists (the classic
 * pattern, kept to compare).  Reads go into one per-thread buffer and are
 * written straight back; only bytes the socket would not take are copied into
 * a per-connection queue (and new input is then appended behind them, so the
 * order is kept).  If a peer stops reading, the queue is capped: reading stops
 * until it drains (back-pressure instead of unbounded memory).
 *
 * --udp: a UDP echo instead.  One UDP socket per worker (SO_REUSEPORT when
 * N > 1, the kernel spreads peers over them by address hash), SO_RCVBUF and
 * SO_SNDBUF asked for 4 MiB (as hps_udp_echo_server does).  Each datagram is
 * read with recvfrom into the per-thread buffer and sent straight back with
 * sendto, one syscall each (hpsock receives with recvmmsg, up to 16 a call,
 * and sends one by one; --mmsg does the same here: recvmmsg of up to 16
 * datagrams into 16 x 64 KiB of per-thread buffer, then one sendto each).
 * Edge-triggered (registered once, EPOLLIN|EPOLLOUT|EPOLLET): recvfrom until
 * EAGAIN (--mmsg: until a batch comes back short).  --lt: EPOLLIN, one recvfrom per event, EPOLLOUT only while a queue
 * exists.  A datagram the socket would not take (EAGAIN) is copied, with its
 * address, into a per-worker FIFO sent on EPOLLOUT, and later ones go behind
 * it (as uv_udp_send does); above 4 MiB queued, reading stops until it
 * drains, so the kernel drops instead.  Any other sendto error drops that
 * one datagram: it is UDP.
 *
 * Prints "listening on HOST:PORT" once every listener is bound and listening,
 * runs until SIGINT/SIGTERM, exits 0.  --cpu-report prints
 * "cpu_user=U cpu_sys=S" (seconds, getrusage) to stderr on exit.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define RBUF_SIZE (64 * 1024)
#define QUEUE_MAX (4 * 1024 * 1024) /* stop reading above this many queued bytes */
#define MAX_EVENTS 512
#define MMSG_WIDTH 16 /* --mmsg: datagrams per recvmmsg, as hpsock */

struct conn {
    struct conn *prev, *next; /* the worker's list, to free everything at exit */
    int fd;
    int paused;    /* stopped reading because the queue is full */
    uint32_t events; /* --lt: the interest set currently registered */
    uint8_t *q;    /* bytes not yet written back: q[qoff .. qlen) */
    size_t qoff, qlen, qcap;
};

/* --udp: a datagram waiting for the socket to take it */
struct dgram {
    struct dgram *next;
    struct sockaddr_storage to;
    socklen_t tolen;
    size_t len;
    uint8_t data[];
};

struct worker {
    pthread_t th;
    int ep;
    int lfd;       /* the listener, or with --udp the UDP socket */
    int efd;       /* eventfd: wakes the loop for shutdown */
    uint8_t *buf;
    struct conn conns; /* list head */
    int warned_fds;
    /* --udp */
    struct dgram *qhead, **qtail; /* datagrams not yet sent back, in order */
    size_t qbytes;
    int upaused;       /* stopped reading because the queue is full */
    uint32_t uevents;  /* --lt: the interest set currently registered */
};

/* epoll data.ptr tags for the non-connection fds */
static char tag_listen, tag_wake, tag_udp;
static _Atomic int g_stop;
static int g_lt;  /* level-triggered mode */
static int g_udp; /* UDP echo instead of TCP */
static int g_mmsg; /* --udp: receive with recvmmsg */

static void die(const char *what)
{
    fprintf(stderr, "hps_epoll_echo: %s: %s\n", what, strerror(errno));
    exit(1);
}

static void conn_free(struct conn *c)
{
    c->prev->next = c->next;
    c->next->prev = c->prev;
    close(c->fd);
    free(c->q);
    free(c);
}

/* Append bytes to the connection's queue; returns -1 on allocation failure. */
static int q_append(struct conn *c, const uint8_t *p, size_t n)
{
    if (c->qoff > 0 && c->qlen + n > c->qcap) {
        memmove(c->q, c->q + c->qoff, c->qlen - c->qoff);
        c->qlen -= c->qoff;
        c->qoff = 0;
    }
    if (c->qlen + n > c->qcap) {
        size_t cap = c->qcap ? c->qcap : 4096;
        while (cap < c->qlen + n)
            cap *= 2;
        uint8_t *nq = realloc(c->q, cap);
        if (!nq)
            return -1;
        c->q = nq;
        c->qcap = cap;
    }
    memcpy(c->q + c->qlen, p, n);
    c->qlen += n;
    return 0;
}

/* Write queued bytes; returns -1 if the connection must be closed. */
static int q_flush(struct conn *c)
{
    while (c->qoff < c->qlen) {
        ssize_t w = send(c->fd, c->q + c->qoff, c->qlen - c->qoff, MSG_NOSIGNAL);
        if (w > 0) {
            c->qoff += (size_t)w;
        } else if (w < 0 && errno == EINTR) {
            continue;
        } else if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            return 0;
        } else {
            return -1;
        }
    }
    c->qoff = c->qlen = 0;
    if (c->qcap > 64 * 1024) { /* do not keep a burst's worth of memory around */
        free(c->q);
        c->q = NULL;
        c->qcap = 0;
    }
    return 0;
}

/* --lt: register EPOLLOUT only while bytes are queued, and drop EPOLLIN
 * while the queue is over its cap.  Returns -1 on failure. */
static int lt_update(struct worker *w, struct conn *c)
{
    size_t queued = c->qlen - c->qoff;
    uint32_t want = (queued < QUEUE_MAX ? EPOLLIN : 0u) | (queued ? EPOLLOUT : 0u);
    if (want == c->events)
        return 0;
    struct epoll_event ev;
    memset(&ev, 0, sizeof ev);
    ev.events = want;
    ev.data.ptr = c;
    c->events = want;
    return epoll_ctl(w->ep, EPOLL_CTL_MOD, c->fd, &ev);
}

/* Read until the socket is drained (edge-triggered); echo everything.
 * (--lt: one recv per event; the level trigger reports what is left.)
 * A short read means the receive queue was empty at that moment, so a new
 * edge will report anything that arrives later -- unless the peer's FIN is
 * already pending (hup), in which case we read on until recv returns 0.
 * Returns -1 if the connection must be closed. */
static int on_readable(struct worker *w, struct conn *c, int hup)
{
    for (;;) {
        if (c->qlen - c->qoff >= QUEUE_MAX) {
            c->paused = 1; /* resumed from on_writable once the queue drains */
            return 0;
        }
        ssize_t n = recv(c->fd, w->buf, RBUF_SIZE, 0);
        if (n > 0) {
            size_t done = 0;
            if (c->qoff == c->qlen) {
                ssize_t s = send(c->fd, w->buf, (size_t)n, MSG_NOSIGNAL);
                if (s > 0)
                    done = (size_t)s;
                else if (s < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
                    return -1;
            }
            if (done < (size_t)n && q_append(c, w->buf + done, (size_t)n - done) != 0)
                return -1;
            if (g_lt)
                return lt_update(w, c);
            if (n < RBUF_SIZE && !hup)
                return 0; /* short read: the socket is drained, a new edge will come */
            continue;
        }
        if (n == 0)
            return -1;
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return 0;
        return -1;
    }
}

static int on_writable(struct worker *w, struct conn *c)
{
    if (c->qoff < c->qlen && q_flush(c) != 0)
        return -1;
    if (g_lt) {
        c->paused = 0;
        return lt_update(w, c);
    }
    if (c->paused && c->qlen - c->qoff < QUEUE_MAX) {
        c->paused = 0;
        return on_readable(w, c, 1);
    }
    return 0;
}

static void on_accept(struct worker *w)
{
    for (;;) {
        int fd = accept4(w->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if ((errno == EMFILE || errno == ENFILE) && !w->warned_fds) {
                w->warned_fds = 1;
                fprintf(stderr, "hps_epoll_echo: accept: %s (raise ulimit -n)\n", strerror(errno));
            }
            return; /* EAGAIN, or out of descriptors: try again on the next event */
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        struct conn *c = calloc(1, sizeof *c);
        if (!c) {
            close(fd);
            continue;
        }
        c->fd = fd;
        c->next = w->conns.next;
        c->prev = &w->conns;
        c->next->prev = c;
        w->conns.next = c;
        struct epoll_event ev;
        memset(&ev, 0, sizeof ev);
        ev.events = g_lt ? EPOLLIN : EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
        c->events = ev.events;
        ev.data.ptr = c;
        if (epoll_ctl(w->ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
            conn_free(c);
            continue;
        }
        /* data may already be waiting; it is reported right after ADD */
    }
}

/* ---- --udp ---- */

static int udp_queue(struct worker *w, const uint8_t *p, size_t n,
                     const struct sockaddr_storage *to, socklen_t tolen)
{
    struct dgram *d = malloc(sizeof *d + n);
    if (!d)
        return -1; /* dropped: it is UDP */
    d->next = NULL;
    memcpy(&d->to, to, tolen);
    d->tolen = tolen;
    d->len = n;
    memcpy(d->data, p, n);
    *w->qtail = d;
    w->qtail = &d->next;
    w->qbytes += n;
    return 0;
}

static void udp_pop(struct worker *w)
{
    struct dgram *d = w->qhead;
    w->qhead = d->next;
    if (!w->qhead)
        w->qtail = &w->qhead;
    w->qbytes -= d->len;
    free(d);
}

/* Send queued datagrams until the socket pushes back. */
static void udp_flush(struct worker *w)
{
    while (w->qhead) {
        struct dgram *d = w->qhead;
        ssize_t s = sendto(w->lfd, d->data, d->len, 0, (struct sockaddr *)&d->to, d->tolen);
        if (s < 0 && errno == EINTR)
            continue;
        if (s < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        udp_pop(w); /* sent, or failed for good: dropped */
    }
}

/* --lt: EPOLLOUT only while datagrams are queued, EPOLLIN only below the cap. */
static void udp_lt_update(struct worker *w)
{
    uint32_t want = (w->qbytes < QUEUE_MAX ? EPOLLIN : 0u) | (w->qhead ? EPOLLOUT : 0u);
    if (want == w->uevents)
        return;
    struct epoll_event ev;
    memset(&ev, 0, sizeof ev);
    ev.events = want;
    ev.data.ptr = &tag_udp;
    w->uevents = want;
    if (epoll_ctl(w->ep, EPOLL_CTL_MOD, w->lfd, &ev) != 0)
        die("epoll_ctl");
}

/* Send one datagram back, or queue it behind those already queued. */
static void udp_echo(struct worker *w, const uint8_t *p, size_t n,
                     const struct sockaddr_storage *from, socklen_t fl)
{
    int queue = w->qhead != NULL; /* keep the order behind queued ones */
    while (!queue) {
        ssize_t s = sendto(w->lfd, p, n, 0, (const struct sockaddr *)from, fl);
        if (s < 0 && errno == EINTR)
            continue;
        queue = s < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
        break; /* sent, or failed for good: dropped */
    }
    if (queue)
        udp_queue(w, p, n, from, fl);
}

/* --mmsg: up to MMSG_WIDTH datagrams per recvmmsg, each echoed with one
 * sendto; until a batch comes back short (edge-triggered: a datagram that
 * arrives later is a new edge) or one batch (--lt). */
static void udp_readable_mmsg(struct worker *w)
{
    struct mmsghdr m[MMSG_WIDTH];
    struct iovec iov[MMSG_WIDTH];
    struct sockaddr_storage from[MMSG_WIDTH];
    for (;;) {
        if (w->qbytes >= QUEUE_MAX) {
            w->upaused = 1; /* resumed from udp_writable once the queue drains */
            return;
        }
        memset(m, 0, sizeof m);
        for (int k = 0; k < MMSG_WIDTH; k++) {
            iov[k].iov_base = w->buf + (size_t)k * RBUF_SIZE;
            iov[k].iov_len = RBUF_SIZE;
            m[k].msg_hdr.msg_iov = &iov[k];
            m[k].msg_hdr.msg_iovlen = 1;
            m[k].msg_hdr.msg_name = &from[k];
            m[k].msg_hdr.msg_namelen = sizeof from[k];
        }
        int n = recvmmsg(w->lfd, m, MMSG_WIDTH, 0, NULL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return; /* EAGAIN: drained (or an error: nothing to do for UDP) */
        }
        for (int k = 0; k < n; k++)
            udp_echo(w, iov[k].iov_base, m[k].msg_len, &from[k], m[k].msg_hdr.msg_namelen);
        if (g_lt) {
            udp_lt_update(w);
            return;
        }
        if (n < MMSG_WIDTH)
            return;
    }
}

/* Echo datagrams: until EAGAIN (edge-triggered) or one (--lt). */
static void udp_readable(struct worker *w)
{
    if (g_mmsg) {
        udp_readable_mmsg(w);
        return;
    }
    for (;;) {
        if (w->qbytes >= QUEUE_MAX) {
            w->upaused = 1; /* resumed from udp_writable once the queue drains */
            return;
        }
        struct sockaddr_storage from;
        socklen_t fl = sizeof from;
        ssize_t n = recvfrom(w->lfd, w->buf, RBUF_SIZE, 0, (struct sockaddr *)&from, &fl);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return; /* EAGAIN: drained (or an error: nothing to do for UDP) */
        }
        udp_echo(w, w->buf, (size_t)n, &from, fl);
        if (g_lt) {
            udp_lt_update(w);
            return;
        }
    }
}

static void udp_writable(struct worker *w)
{
    udp_flush(w);
    if (g_lt) {
        w->upaused = 0;
        udp_lt_update(w);
        return;
    }
    if (w->upaused && w->qbytes < QUEUE_MAX) {
        w->upaused = 0;
        udp_readable(w);
    }
}

static void on_udp(struct worker *w, uint32_t e)
{
    if (e & EPOLLERR) { /* collect it so it is not reported again */
        int err = 0;
        socklen_t el = sizeof err;
        getsockopt(w->lfd, SOL_SOCKET, SO_ERROR, &err, &el);
    }
    if (e & EPOLLIN)
        udp_readable(w);
    if (e & EPOLLOUT)
        udp_writable(w);
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct epoll_event evs[MAX_EVENTS];

    while (!atomic_load_explicit(&g_stop, memory_order_relaxed)) {
        int n = epoll_wait(w->ep, evs, MAX_EVENTS, -1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            die("epoll_wait");
        }
        for (int i = 0; i < n; i++) {
            void *p = evs[i].data.ptr;
            uint32_t e = evs[i].events;
            if (p == &tag_listen) {
                on_accept(w);
                continue;
            }
            if (p == &tag_wake)
                continue; /* g_stop is set; the loop condition ends us */
            if (p == &tag_udp) {
                on_udp(w, e);
                continue;
            }
            struct conn *c = p;
            int bad = 0;
            if (e & EPOLLERR)
                bad = 1;
            if (!bad && (e & (EPOLLIN | EPOLLRDHUP | EPOLLHUP)))
                bad = on_readable(w, c, (e & (EPOLLRDHUP | EPOLLHUP)) != 0) != 0;
            if (!bad && (e & EPOLLOUT))
                bad = on_writable(w, c) != 0;
            if (bad)
                conn_free(c); /* close() removes it from the epoll set */
        }
    }
    return NULL;
}

static int make_listener(const struct addrinfo *ai, int port, int reuseport)
{
    int type = g_udp ? SOCK_DGRAM : SOCK_STREAM;
    int fd = socket(ai->ai_family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        die("socket");
    int one = 1, bufsz = 4 << 20;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0)
        die("setsockopt(SO_REUSEPORT)");
    if (g_udp) { /* as hps_udp_echo_server asks (the kernel caps it at r/wmem_max) */
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &bufsz, sizeof bufsz);
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &bufsz, sizeof bufsz);
    }
    struct sockaddr_storage ss;
    memcpy(&ss, ai->ai_addr, ai->ai_addrlen);
    if (ss.ss_family == AF_INET)
        ((struct sockaddr_in *)&ss)->sin_port = htons((uint16_t)port);
    else
        ((struct sockaddr_in6 *)&ss)->sin6_port = htons((uint16_t)port);
    if (bind(fd, (struct sockaddr *)&ss, ai->ai_addrlen) != 0)
        die("bind");
    if (!g_udp && listen(fd, 4096) != 0)
        die("listen");
    return fd;
}

static int bound_port(int fd)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) != 0)
        die("getsockname");
    if (ss.ss_family == AF_INET)
        return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
}

static void usage(FILE *f)
{
    fprintf(f, "usage: hps_epoll_echo [--host H] [--port P] [--workers N] [--lt] [--udp]\n"
               "                      [--mmsg] [--cpu-report]\n"
               "  --host H      address to bind (default 127.0.0.1)\n"
               "  --port P      port, 0 picks a free one (default 0)\n"
               "  --workers N   threads, each with its own epoll and SO_REUSEPORT listener\n"
               "  --lt          level-triggered epoll (default: edge-triggered)\n"
               "  --udp         echo UDP datagrams (one SO_REUSEPORT socket per worker)\n"
               "  --mmsg        with --udp: receive with recvmmsg, up to 16 a call\n"
               "  --cpu-report  on exit print cpu_user=.. cpu_sys=.. (seconds) to stderr\n");
}

/* Up to the hard limit: 10,000 connections need more than the usual 1024. */
static void raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
    }
}

int main(int argc, char **argv)
{
    const char *host = "127.0.0.1";
    int port = 0, nworkers = 1, cpu_report = 0;
    static const struct option opts[] = {
        { "host", required_argument, NULL, 'h' },
        { "port", required_argument, NULL, 'p' },
        { "workers", required_argument, NULL, 'w' },
        { "cpu-report", no_argument, NULL, 'c' },
        { "lt", no_argument, NULL, 'l' },
        { "udp", no_argument, NULL, 'u' },
        { "mmsg", no_argument, NULL, 'm' },
        { "help", no_argument, NULL, 'H' },
        { NULL, 0, NULL, 0 },
    };
    int o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        char *end;
        switch (o) {
        case 'h': host = optarg; break;
        case 'p':
            port = (int)strtol(optarg, &end, 10);
            if (*optarg == '\0' || *end != '\0' || port < 0 || port > 65535) {
                fprintf(stderr, "hps_epoll_echo: bad --port\n");
                return 64;
            }
            break;
        case 'w':
            nworkers = (int)strtol(optarg, &end, 10);
            if (*optarg == '\0' || *end != '\0' || nworkers < 1 || nworkers > 1024) {
                fprintf(stderr, "hps_epoll_echo: bad --workers\n");
                return 64;
            }
            break;
        case 'c': cpu_report = 1; break;
        case 'l': g_lt = 1; break;
        case 'u': g_udp = 1; break;
        case 'm': g_mmsg = 1; break;
        case 'H': usage(stdout); return 0;
        default: usage(stderr); return 64;
        }
    }
    if (optind < argc || (g_mmsg && !g_udp)) {
        usage(stderr);
        return 64;
    }

    struct addrinfo hints, *ai = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = g_udp ? SOCK_DGRAM : SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    int r = getaddrinfo(host, "0", &hints, &ai);
    if (r != 0 || !ai) {
        fprintf(stderr, "hps_epoll_echo: cannot resolve %s: %s\n", host, gai_strerror(r));
        return 1;
    }

    /* Signals are taken synchronously by the main thread (sigwait). */
    sigset_t set;
    raise_nofile();
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    struct worker *ws = calloc((size_t)nworkers, sizeof *ws);
    if (!ws)
        die("calloc");
    int reuseport = nworkers > 1;
    for (int i = 0; i < nworkers; i++) {
        struct worker *w = &ws[i];
        w->conns.next = w->conns.prev = &w->conns;
        w->qtail = &w->qhead;
        w->lfd = make_listener(ai, port, reuseport);
        if (port == 0)
            port = bound_port(w->lfd); /* the other workers join this port */
        w->ep = epoll_create1(EPOLL_CLOEXEC);
        w->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        w->buf = malloc(g_mmsg ? (size_t)MMSG_WIDTH * RBUF_SIZE : RBUF_SIZE);
        if (w->ep < 0 || w->efd < 0 || !w->buf)
            die("setup");
        struct epoll_event ev;
        memset(&ev, 0, sizeof ev);
        if (g_udp) { /* edge-triggered: registered once; --lt: EPOLLOUT on demand */
            ev.events = g_lt ? EPOLLIN : EPOLLIN | EPOLLOUT | EPOLLET;
            ev.data.ptr = &tag_udp;
            w->uevents = ev.events;
        } else {
            ev.events = EPOLLIN; /* level-triggered listener: accept in a loop anyway */
            ev.data.ptr = &tag_listen;
        }
        if (epoll_ctl(w->ep, EPOLL_CTL_ADD, w->lfd, &ev) != 0)
            die("epoll_ctl");
        ev.events = EPOLLIN;
        ev.data.ptr = &tag_wake;
        if (epoll_ctl(w->ep, EPOLL_CTL_ADD, w->efd, &ev) != 0)
            die("epoll_ctl");
    }
    freeaddrinfo(ai);

    for (int i = 0; i < nworkers; i++)
        if (pthread_create(&ws[i].th, NULL, worker_main, &ws[i]) != 0) {
            fprintf(stderr, "hps_epoll_echo: pthread_create failed\n");
            return 1;
        }

    printf("listening on %s:%d\n", host, port);
    fflush(stdout);

    int sig = 0;
    while (sigwait(&set, &sig) != 0) {
    }
    atomic_store(&g_stop, 1);
    for (int i = 0; i < nworkers; i++) {
        uint64_t one = 1;
        ssize_t wr = write(ws[i].efd, &one, sizeof one);
        (void)wr;
    }
    for (int i = 0; i < nworkers; i++)
        pthread_join(ws[i].th, NULL);
    for (int i = 0; i < nworkers; i++) {
        while (ws[i].conns.next != &ws[i].conns)
            conn_free(ws[i].conns.next);
        while (ws[i].qhead)
            udp_pop(&ws[i]);
        close(ws[i].lfd);
        close(ws[i].efd);
        close(ws[i].ep);
        free(ws[i].buf);
    }
    free(ws);

    if (cpu_report) {
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        fprintf(stderr, "cpu_user=%.3f cpu_sys=%.3f\n",
                (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6,
                (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6);
    }
    return 0;
}
