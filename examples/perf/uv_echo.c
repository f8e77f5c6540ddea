/*
 * hps_uv_echo - bare libuv echo server: the idiomatic libuv way, no hpsock.
 *
 * The reference for "what does libuv itself cost": one uv_loop per worker
 * thread, each with its own SO_REUSEPORT listening socket (libuv 1.44 has no
 * UV_TCP_REUSEPORT, so the socket is made, bound and given to libuv with
 * uv_tcp_open; uv_listen then calls listen()).  uv_read_start with an alloc
 * callback that hands out one per-loop buffer (reads are consumed before the
 * next alloc), uv_try_write first, and only the unwritten tail is copied into
 * a malloc'd block and queued with uv_write.  If a peer stops reading and the
 * write queue grows past a cap, reading stops until it drains.
 *
 * --udp: a UDP echo instead, the idiomatic libuv way too.  One uv_udp_t per
 * worker loop; libuv 1.44 has no UV_UDP_REUSEPORT either, so with N > 1 the
 * socket is made, given SO_REUSEPORT and bound by hand, then handed over
 * with uv_udp_open.  SO_RCVBUF/SO_SNDBUF ask for 4 MiB (as
 * hps_udp_echo_server does).  uv_udp_recv_start with the same alloc callback
 * (no UV_UDP_RECVMMSG: the plain way; hpsock sets it), each datagram sent
 * back with uv_udp_try_send, and on UV_EAGAIN (the socket is full, or sends are
 * already queued) a malloc'd copy goes out with uv_udp_send.  Above 4 MiB
 * queued, receiving stops until the queue is half drained (the kernel drops
 * meanwhile).  A send that fails otherwise drops the datagram: it is UDP.
 *
 * Prints "listening on HOST:PORT" once every listener is listening, runs until
 * SIGINT/SIGTERM, exits 0.  --cpu-report prints "cpu_user=U cpu_sys=S"
 * (seconds, getrusage) to stderr on exit.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#define RBUF_SIZE (64 * 1024)
#define QUEUE_MAX (4 * 1024 * 1024)

struct worker {
    pthread_t th;
    uv_loop_t loop;
    uv_tcp_t server;
    uv_udp_t udp;   /* --udp: instead of server */
    int upaused;    /* --udp: receiving stopped, the send queue is full */
    uv_async_t stop;
    char *buf;      /* the loop's read buffer */
    int buf_busy;   /* handed out by alloc_cb and not yet consumed */
};

struct conn {
    uv_tcp_t tcp;
    int reading;
};

struct write_req {
    uv_write_t req;
    uv_buf_t buf;
};

struct udp_req {
    uv_udp_send_t req;
    uv_buf_t buf;
};

static int g_udp; /* UDP echo instead of TCP */

static void die_uv(const char *what, int err)
{
    fprintf(stderr, "hps_uv_echo: %s: %s\n", what, uv_strerror(err));
    exit(1);
}

static void die(const char *what)
{
    fprintf(stderr, "hps_uv_echo: %s: %s\n", what, strerror(errno));
    exit(1);
}

static void on_close(uv_handle_t *h) { free(h); }

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    struct worker *w = h->loop->data;
    if (w->buf_busy) { /* never happens with the current libuv, but stay correct */
        buf->base = malloc(RBUF_SIZE);
        buf->len = buf->base ? RBUF_SIZE : 0;
        return;
    }
    w->buf_busy = 1;
    buf->base = w->buf;
    buf->len = RBUF_SIZE;
}

static void release_buf(struct worker *w, const uv_buf_t *buf)
{
    if (buf->base == w->buf)
        w->buf_busy = 0;
    else
        free(buf->base);
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

static void write_cb(uv_write_t *req, int status)
{
    struct write_req *wr = (struct write_req *)req;
    uv_stream_t *s = req->handle;
    free(wr->buf.base);
    free(wr);
    if (status < 0)
        return; /* the read side sees the error (or the handle is closing) */
    struct conn *c = (struct conn *)s;
    if (!c->reading && s->write_queue_size < QUEUE_MAX / 2 && !uv_is_closing((uv_handle_t *)s)) {
        c->reading = 1;
        uv_read_start(s, alloc_cb, read_cb);
    }
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct worker *w = s->loop->data;
    struct conn *c = (struct conn *)s;
    if (nread > 0) {
        size_t done = 0;
        uv_buf_t b = uv_buf_init(buf->base, (unsigned)nread);
        if (s->write_queue_size == 0) {
            int r = uv_try_write(s, &b, 1);
            if (r > 0)
                done = (size_t)r;
            else if (r < 0 && r != UV_EAGAIN) {
                release_buf(w, buf);
                uv_close((uv_handle_t *)s, on_close);
                return;
            }
        }
        if (done < (size_t)nread) {
            struct write_req *wr = malloc(sizeof *wr);
            size_t left = (size_t)nread - done;
            char *copy = malloc(left);
            if (!wr || !copy) {
                free(wr);
                free(copy);
                release_buf(w, buf);
                uv_close((uv_handle_t *)s, on_close);
                return;
            }
            memcpy(copy, buf->base + done, left);
            wr->buf = uv_buf_init(copy, (unsigned)left);
            if (uv_write(&wr->req, s, &wr->buf, 1, write_cb) != 0) {
                free(copy);
                free(wr);
                release_buf(w, buf);
                uv_close((uv_handle_t *)s, on_close);
                return;
            }
            if (s->write_queue_size >= QUEUE_MAX) {
                c->reading = 0;
                uv_read_stop(s);
            }
        }
        release_buf(w, buf);
        return;
    }
    release_buf(w, buf);
    if (nread < 0) /* UV_EOF or an error */
        uv_close((uv_handle_t *)s, on_close);
    /* nread == 0: EAGAIN, nothing to do */
}

static void on_connection(uv_stream_t *server, int status)
{
    if (status < 0) {
        fprintf(stderr, "hps_uv_echo: listen: %s\n", uv_strerror(status));
        return;
    }
    struct conn *c = calloc(1, sizeof *c);
    if (!c)
        return;
    uv_tcp_init(server->loop, &c->tcp);
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
        uv_close((uv_handle_t *)&c->tcp, on_close);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    c->reading = 1;
    uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb);
}

/* ---- --udp ---- */

static void udp_recv_cb(uv_udp_t *u, ssize_t nread, const uv_buf_t *buf,
                        const struct sockaddr *addr, unsigned flags);

static void udp_send_cb(uv_udp_send_t *req, int status)
{
    struct udp_req *ur = (struct udp_req *)req;
    uv_udp_t *u = req->handle;
    struct worker *w = u->loop->data;
    (void)status; /* UV_ECANCELED when closing; any other failure drops it */
    free(ur->buf.base);
    free(ur);
    if (w->upaused && u->send_queue_size < QUEUE_MAX / 2 && !uv_is_closing((uv_handle_t *)u)) {
        w->upaused = 0;
        uv_udp_recv_start(u, alloc_cb, udp_recv_cb);
    }
}

static void udp_recv_cb(uv_udp_t *u, ssize_t nread, const uv_buf_t *buf,
                        const struct sockaddr *addr, unsigned flags)
{
    struct worker *w = u->loop->data;
    /* nread == 0 with no address: nothing more to read; with one: an empty
     * datagram, echoed as one.  Errors and cut datagrams are dropped. */
    if (nread < 0 || addr == NULL || (flags & UV_UDP_PARTIAL)) {
        release_buf(w, buf);
        return;
    }
    uv_buf_t b = uv_buf_init(buf->base, (unsigned)nread);
    int r = uv_udp_try_send(u, &b, 1, addr);
    if (r == UV_EAGAIN) {
        struct udp_req *ur = malloc(sizeof *ur);
        char *copy = malloc(nread > 0 ? (size_t)nread : 1);
        if (ur && copy) {
            memcpy(copy, buf->base, (size_t)nread);
            ur->buf = uv_buf_init(copy, (unsigned)nread);
            if (uv_udp_send(&ur->req, u, &ur->buf, 1, addr, udp_send_cb) == 0) {
                ur = NULL;
                copy = NULL;
            }
        }
        free(ur);
        free(copy);
        if (u->send_queue_size >= QUEUE_MAX) {
            w->upaused = 1;
            uv_udp_recv_stop(u);
        }
    }
    release_buf(w, buf);
}

static void close_walk(uv_handle_t *h, void *arg)
{
    struct worker *w = arg;
    if (uv_is_closing(h))
        return;
    if (h == (uv_handle_t *)&w->server || h == (uv_handle_t *)&w->udp ||
        h == (uv_handle_t *)&w->stop)
        uv_close(h, NULL);
    else
        uv_close(h, on_close);
}

static void on_stop(uv_async_t *a)
{
    struct worker *w = a->loop->data;
    uv_walk(a->loop, close_walk, w);
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    uv_run(&w->loop, UV_RUN_DEFAULT);
    uv_loop_close(&w->loop);
    return NULL;
}

static int make_socket(const struct addrinfo *ai, int port, int reuseport)
{
    int fd = socket(ai->ai_family, (g_udp ? SOCK_DGRAM : SOCK_STREAM) | SOCK_CLOEXEC, 0);
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
    fprintf(f, "usage: hps_uv_echo [--host H] [--port P] [--workers N] [--udp] [--cpu-report]\n"
               "  --host H      address to bind (default 127.0.0.1)\n"
               "  --port P      port, 0 picks a free one (default 0)\n"
               "  --workers N   threads, each with its own uv loop and SO_REUSEPORT listener\n"
               "  --udp         echo UDP datagrams (one SO_REUSEPORT uv_udp_t per worker)\n"
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
        { "udp", no_argument, NULL, 'u' },
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
                fprintf(stderr, "hps_uv_echo: bad --port\n");
                return 64;
            }
            break;
        case 'w':
            nworkers = (int)strtol(optarg, &end, 10);
            if (*optarg == '\0' || *end != '\0' || nworkers < 1 || nworkers > 1024) {
                fprintf(stderr, "hps_uv_echo: bad --workers\n");
                return 64;
            }
            break;
        case 'c': cpu_report = 1; break;
        case 'u': g_udp = 1; break;
        case 'H': usage(stdout); return 0;
        default: usage(stderr); return 64;
        }
    }
    if (optind < argc) {
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
        fprintf(stderr, "hps_uv_echo: cannot resolve %s: %s\n", host, gai_strerror(r));
        return 1;
    }

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
    /* Everything is set up here, before any loop runs; each loop is then
     * touched only by its own thread (pthread_create orders the accesses). */
    for (int i = 0; i < nworkers; i++) {
        struct worker *w = &ws[i];
        int fd = make_socket(ai, port, reuseport);
        if (port == 0)
            port = bound_port(fd);
        w->buf = malloc(RBUF_SIZE);
        if (!w->buf)
            die("malloc");
        if ((r = uv_loop_init(&w->loop)) != 0)
            die_uv("uv_loop_init", r);
        w->loop.data = w;
        if (g_udp) {
            if ((r = uv_udp_init(&w->loop, &w->udp)) != 0)
                die_uv("uv_udp_init", r);
            if ((r = uv_udp_open(&w->udp, fd)) != 0)
                die_uv("uv_udp_open", r);
            if ((r = uv_udp_recv_start(&w->udp, alloc_cb, udp_recv_cb)) != 0)
                die_uv("uv_udp_recv_start", r);
        } else {
            if ((r = uv_tcp_init(&w->loop, &w->server)) != 0)
                die_uv("uv_tcp_init", r);
            if ((r = uv_tcp_open(&w->server, fd)) != 0)
                die_uv("uv_tcp_open", r);
            if ((r = uv_listen((uv_stream_t *)&w->server, 4096, on_connection)) != 0)
                die_uv("uv_listen", r);
        }
        if ((r = uv_async_init(&w->loop, &w->stop, on_stop)) != 0)
            die_uv("uv_async_init", r);
    }
    freeaddrinfo(ai);

    for (int i = 0; i < nworkers; i++)
        if (pthread_create(&ws[i].th, NULL, worker_main, &ws[i]) != 0) {
            fprintf(stderr, "hps_uv_echo: pthread_create failed\n");
            return 1;
        }

    printf("listening on %s:%d\n", host, port);
    fflush(stdout);

    int sig = 0;
    while (sigwait(&set, &sig) != 0) {
    }
    for (int i = 0; i < nworkers; i++)
        uv_async_send(&ws[i].stop);
    for (int i = 0; i < nworkers; i++)
        pthread_join(ws[i].th, NULL);
    for (int i = 0; i < nworkers; i++)
        free(ws[i].buf);
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
