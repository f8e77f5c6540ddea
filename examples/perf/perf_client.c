/*
 * hps_perf - load client for echo servers (raw epoll, independent of hpsock).
 *
 * The same load drives every server (hpsock, the raw-epoll reference, the
 * bare-libuv reference), so the numbers are comparable.
 *
 * Echo load: every connection keeps --depth messages in flight.  Each message
 * carries a per-connection sequence number and a deterministic byte pattern
 * derived from (connection, sequence); every echoed byte is checked, so a
 * lost, reordered, duplicated or corrupted byte is detected (exit 2).
 * Latency = time the message was queued for sending -> time its last byte
 * came back (CLOCK_MONOTONIC), kept in a log-linear histogram.
 *
 * --mode pack frames each message with HP-Socket's pack header: 4 bytes
 * little-endian, low 22 bits body length, high 10 bits --flag.  The server is
 * expected to echo the whole frame (header + body).
 *
 * --setup-rate: connect, send one message, verify the echo, close; repeat,
 * with --conns cycles running concurrently; reports connections/s.
 *
 * --udp: the same echo load over UDP (one connected socket per --conns, each
 * datagram one message of --size bytes, --depth in flight per socket).
 * Reports datagrams/s; a datagram not echoed within --loss-ms is counted
 * lost (and its slot reused), one echoed after that is counted late. Loss
 * is reported, not an error; a corrupted datagram still is (exit 2).
 *
 * --idle N: N more connections are opened before the run and held without
 * sending; at the end each must still be open (a server that dropped one
 * counts an error).  With --conns 100 --idle 9900 the server holds 10,000
 * connections of which 100 are busy.
 *
 * --count N: every connection sends exactly N messages and the run ends when
 * all of them are echoed (no warm-up; --duration is then only a time limit).
 * A fixed amount of work, for instruction counting (callgrind).
 *
 * --targets H:P,...: sliced mode (run_sliced): every server connected at
 * once, then they take turns in --slice-ms slices, order rotated every round,
 * with the messages, active ns and server CPU ns (--pids) of each
 * (round, server) reported for pairing by a driver (compare.py --sliced).
 * With --setup-rate a slice runs --conns connect+echo+close cycles at once
 * against its target only and counts the completed cycles; with --udp it
 * sends datagrams to its target only.
 *
 * Exit status: 0 ok, 1 connect failure, 2 verification error, 3 stall or
 * timeout (nothing echoed, or the hard alarm fired), 4 connection errors
 * during an echo run (a connection was closed or reset by the server).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

/* ------------------------------------------------------------------ config */

enum { MODE_ECHO = 0, MODE_PACK = 1 };

struct config {
    const char *host;
    const char *port;
    int conns;
    size_t size;
    int depth;
    double duration;
    double warmup;
    int threads;
    int mode;
    unsigned flag;
    int json;
    int setup_rate;
    int marks;
    int udp;
    int loss_ms;
    int tls;            /* --tls: every connection speaks TLS (OpenSSL) */
    const char *ca;     /* --ca FILE: verify the server; else no verification */
    const char *sni;    /* --sni NAME: server name sent and verified */
    int idle;          /* extra connections held open without traffic */
    long count;        /* messages per connection, then stop (0 = timed run) */
    const char *targets; /* --targets H:P,...: sliced mode (see run_sliced) */
    const char *pids;    /* --pids PID[+PID],...: server processes, same order */
    int slice_ms;        /* --slice-ms: one target's active slice */
    int rounds;          /* --rounds: measured rounds */
    int warmup_rounds;   /* --warmup-rounds: unmeasured rounds first */
    int port_set, timed_set; /* --port given; --duration/--warmup given */

    /* derived */
    size_t hdr;      /* 0 or 4 */
    size_t msglen;   /* hdr + size */
    uint32_t pack_header;
    struct sockaddr_storage addr;
    socklen_t addrlen;
};

static struct config cfg;
static SSL_CTX *g_tls; /* --tls */

/* PH_SLICE_DRAIN (sliced mode only): a measured slice is over; echoes still
 * count, nothing new is sent. */
enum { PH_CONNECT = 0, PH_WARMUP, PH_MEASURE, PH_DRAIN, PH_SLICE_DRAIN };
static _Atomic int g_phase = PH_CONNECT;
static _Atomic int g_abort = 0;

#define DRAIN_NS 1000000000ULL     /* max wait for in-flight echoes at the end */
/* connecting: 5 s plus 1 ms per connection (10,000 idle ones take time) */
#define CONNECT_WINDOW_NS (5000000000ULL + 1000000ULL * (uint64_t)(cfg.conns + cfg.idle))
#define RBUF_SIZE (256 * 1024)
#define MAX_LOGGED_ERRORS 5

/* ------------------------------------------------------------------- time */

static inline uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static void sleep_until(uint64_t t)
{
    struct timespec ts;
    ts.tv_sec = (time_t)(t / 1000000000ULL);
    ts.tv_nsec = (long)(t % 1000000000ULL);
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
    }
}

static void sleep_ns(uint64_t ns) { sleep_until(now_ns() + ns); }

/* -------------------------------------------------------------- histogram */

/* Log-linear histogram of nanoseconds: exact below 128, then 64 linear
 * sub-buckets per power of two (relative error < 1.6%). */
#define H_SUB 6
#define H_SUBN (1u << H_SUB)
#define H_BUCKETS (2u * H_SUBN + (63u - H_SUB) * H_SUBN)

struct hist {
    uint64_t b[H_BUCKETS];
    uint64_t count;
    uint64_t sum;
    uint64_t max;
};

static inline unsigned h_index(uint64_t v)
{
    if (v < 2u * H_SUBN)
        return (unsigned)v;
    unsigned msb = 63u - (unsigned)__builtin_clzll(v);
    unsigned shift = msb - H_SUB;
    return 2u * H_SUBN + (shift - 1u) * H_SUBN + (unsigned)((v >> shift) - H_SUBN);
}

static inline void hist_add(struct hist *h, uint64_t v)
{
    h->b[h_index(v)]++;
    h->count++;
    h->sum += v;
    if (v > h->max)
        h->max = v;
}

static void hist_merge(struct hist *dst, const struct hist *src)
{
    for (unsigned i = 0; i < H_BUCKETS; i++)
        dst->b[i] += src->b[i];
    dst->count += src->count;
    dst->sum += src->sum;
    if (src->max > dst->max)
        dst->max = src->max;
}

/* Representative value (bucket midpoint) of bucket i, in ns. */
static double h_value(unsigned i)
{
    if (i < 2u * H_SUBN)
        return (double)i;
    unsigned j = i - 2u * H_SUBN;
    unsigned shift = j / H_SUBN + 1u;
    uint64_t m = (uint64_t)(j % H_SUBN) + H_SUBN;
    double width = (double)(1ULL << shift);
    double lo = (double)m * width;
    return lo + (width - 1.0) / 2.0;
}

static double hist_pct(const struct hist *h, double p)
{
    if (h->count == 0)
        return 0.0;
    double want = p * (double)h->count;
    uint64_t rank = (uint64_t)want;
    if ((double)rank < want)
        rank++;
    if (rank < 1)
        rank = 1;
    uint64_t acc = 0;
    for (unsigned i = 0; i < H_BUCKETS; i++) {
        acc += h->b[i];
        if (acc >= rank) {
            double v = h_value(i);
            return v > (double)h->max ? (double)h->max : v;
        }
    }
    return (double)h->max;
}

/* ---------------------------------------------------------------- pattern */

static inline uint64_t mix64(uint64_t z)
{
    z += 0x9E3779B97F4A7C15ULL;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static inline uint64_t pat_word(uint64_t x, size_t k)
{
    uint64_t w = x + (uint64_t)k * 0xD6E8FEB86659FD93ULL;
    return w ^ (w >> 29);
}

static inline uint8_t pat_byte(uint64_t x, size_t b)
{
    return (uint8_t)(pat_word(x, b >> 3) >> ((b & 7u) * 8u));
}

/* Message layout (offsets within the message as it travels):
 *   [0, hdr)        pack header (pack mode only)
 *   body[0..4)      sequence number, little-endian
 *   body[4..8)      connection id, little-endian
 *   body[8..)       pattern words derived from mix64(id << 32 | seq)
 * (shorter bodies are simply truncated). */
static inline uint8_t prefix_byte(uint32_t id, uint32_t seq, size_t i)
{
    if (i < cfg.hdr)
        return (uint8_t)(cfg.pack_header >> (8u * i));
    size_t b = i - cfg.hdr;
    if (b < 4)
        return (uint8_t)(seq >> (8u * b));
    return (uint8_t)(id >> (8u * (b - 4)));
}

/* Expected bytes [off, off+len) of message (id, seq) into out. */
static void gen_range(uint8_t *out, uint32_t id, uint32_t seq, size_t off, size_t len)
{
    const size_t hdr = cfg.hdr;
    size_t i = off, end = off + len;
    uint64_t x = mix64(((uint64_t)id << 32) | seq);

    while (i < end && i < hdr + 8) {
        *out++ = prefix_byte(id, seq, i);
        i++;
    }
    while (i < end && ((i - hdr) & 7u)) {
        *out++ = pat_byte(x, i - hdr);
        i++;
    }
    while (end - i >= 8) {
        uint64_t w = pat_word(x, (i - hdr) >> 3);
        for (unsigned s = 0; s < 8; s++)
            out[s] = (uint8_t)(w >> (8u * s));
        out += 8;
        i += 8;
    }
    while (i < end) {
        *out++ = pat_byte(x, i - hdr);
        i++;
    }
}

/* ------------------------------------------------------------- connection */

enum { ST_CLOSED = 0, ST_IDLE, ST_CONNECTING, ST_OPEN };

struct conn {
    int fd;
    SSL *ssl;          /* --tls */
    int state;
    uint32_t id;
    uint32_t tx_seq;   /* next sequence number to send */
    uint32_t rx_seq;   /* sequence number being received */
    size_t rx_off;     /* bytes of rx_seq received so far */
    uint8_t *wq;       /* write queue, capacity depth * msglen */
    size_t wq_head, wq_tail, wq_cap;
    uint64_t *ts;      /* send times, ring of depth entries */
    int want_out;      /* EPOLLOUT currently registered */
    uint64_t t0;       /* setup-rate: cycle start */
    uint64_t retry_at; /* setup-rate: when an idle slot retries */
};

struct worker {
    pthread_t th;
    int idx;
    int ep;
    struct conn *conns;
    int nconns;
    int *idle_fds;      /* --idle: held open, never used */
    int nidle;
    uint64_t idle_lost; /* idle connections found closed at the end */
    int active;
    int idle;
    uint8_t *rbuf;
    uint8_t *scratch;
    struct hist hist;
    uint64_t msgs;      /* measured completions (messages or setup cycles) */
    uint64_t errors;
    int logged;
    int connect_failed;
    int connect_errno;
    const char *label;  /* sliced mode: the target's H:P, named in errors */
    const struct sockaddr *addr; /* sliced --setup-rate: the target (else cfg.addr) */
    socklen_t addrlen;
};

static pthread_barrier_t g_barrier;

static void log_error(struct worker *w, const char *what, int err)
{
    if (w->logged >= MAX_LOGGED_ERRORS)
        return;
    w->logged++;
    if (w->label)
        fprintf(stderr, "hps_perf: target %s: %s: %s\n", w->label, what,
                err ? strerror(err) : "unexpected");
    else
        fprintf(stderr, "hps_perf: thread %d: %s: %s\n", w->idx, what,
                err ? strerror(err) : "unexpected");
}

static void set_nodelay(int fd)
{
    int one = 1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

static void ep_set(struct worker *w, struct conn *c, int op, uint32_t events)
{
    struct epoll_event ev;
    memset(&ev, 0, sizeof ev);
    ev.events = events;
    ev.data.ptr = c;
    if (epoll_ctl(w->ep, op, c->fd, &ev) != 0) {
        fprintf(stderr, "hps_perf: epoll_ctl: %s\n", strerror(errno));
        _exit(3);
    }
}

static void conn_close(struct worker *w, struct conn *c)
{
    if (c->ssl) {
        SSL_free(c->ssl);
        c->ssl = NULL;
    }
    if (c->fd >= 0) {
        close(c->fd);
        c->fd = -1;
    }
    if (c->state != ST_CLOSED) {
        c->state = ST_CLOSED;
        w->active--;
    }
}

static void conn_fail(struct worker *w, struct conn *c, const char *what, int err)
{
    w->errors++;
    log_error(w, what, err);
    conn_close(w, c);
}

static void enqueue_msg(struct conn *c, uint64_t now)
{
    if (c->wq_tail + cfg.msglen > c->wq_cap) {
        size_t n = c->wq_tail - c->wq_head;
        memmove(c->wq, c->wq + c->wq_head, n);
        c->wq_head = 0;
        c->wq_tail = n;
    }
    gen_range(c->wq + c->wq_tail, c->id, c->tx_seq, 0, cfg.msglen);
    c->wq_tail += cfg.msglen;
    c->ts[c->tx_seq % (uint32_t)cfg.depth] = now;
    c->tx_seq++;
}

static void want_out(struct worker *w, struct conn *c)
{
    if (!c->want_out) {
        c->want_out = 1;
        ep_set(w, c, EPOLL_CTL_MOD, EPOLLIN | EPOLLOUT);
    }
}

/* TLS: SSL_write what is queued (partial writes on). */
static int conn_flush_tls(struct worker *w, struct conn *c)
{
    while (c->wq_head < c->wq_tail) {
        int n = SSL_write(c->ssl, c->wq + c->wq_head, (int)(c->wq_tail - c->wq_head));
        if (n > 0) {
            c->wq_head += (size_t)n;
            continue;
        }
        int e = SSL_get_error(c->ssl, n);
        if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) {
            want_out(w, c);
            return 0;
        }
        ERR_clear_error();
        conn_fail(w, c, "SSL_write", e == SSL_ERROR_SYSCALL ? errno : 0);
        return -1;
    }
    c->wq_head = c->wq_tail = 0;
    if (c->want_out) {
        c->want_out = 0;
        ep_set(w, c, EPOLL_CTL_MOD, EPOLLIN);
    }
    return 0;
}

/* Returns 0 if the connection is still usable. */
static int conn_flush(struct worker *w, struct conn *c)
{
    if (c->ssl)
        return conn_flush_tls(w, c);
    while (c->wq_head < c->wq_tail) {
        ssize_t n = send(c->fd, c->wq + c->wq_head, c->wq_tail - c->wq_head, MSG_NOSIGNAL);
        if (n > 0) {
            c->wq_head += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (!c->want_out) {
                c->want_out = 1;
                ep_set(w, c, EPOLL_CTL_MOD, EPOLLIN | EPOLLOUT);
            }
            return 0;
        }
        conn_fail(w, c, "send", n < 0 ? errno : 0);
        return -1;
    }
    c->wq_head = c->wq_tail = 0;
    if (c->want_out) {
        c->want_out = 0;
        ep_set(w, c, EPOLL_CTL_MOD, EPOLLIN);
    }
    return 0;
}

static void verify_fail(const struct conn *c, const uint8_t *got, const uint8_t *exp, size_t n)
{
    size_t i = 0;
    while (i < n && got[i] == exp[i])
        i++;
    size_t moff = c->rx_off + i;
    fprintf(stderr,
            "hps_perf: VERIFY ERROR: conn %u message seq %u (msglen %zu) offset %zu: "
            "expected 0x%02x got 0x%02x\n",
            c->id, c->rx_seq, cfg.msglen, moff, exp[i], got[i]);
    fprintf(stderr, "hps_perf:   got     :");
    for (size_t k = i; k < n && k < i + 16; k++)
        fprintf(stderr, " %02x", got[k]);
    fprintf(stderr, "\nhps_perf:   expected:");
    for (size_t k = i; k < n && k < i + 16; k++)
        fprintf(stderr, " %02x", exp[k]);
    fprintf(stderr, "\n");
    _exit(2);
}

/* Verify n received bytes, account completed messages, queue the next ones. */
static void conn_received(struct worker *w, struct conn *c, const uint8_t *p, size_t n,
                          uint64_t now, int phase)
{
    while (n > 0) {
        if (c->rx_seq == c->tx_seq) {
            fprintf(stderr,
                    "hps_perf: VERIFY ERROR: conn %u received %zu unexpected byte(s) "
                    "with nothing outstanding (first 0x%02x)\n",
                    c->id, n, p[0]);
            _exit(2);
        }
        size_t k = cfg.msglen - c->rx_off;
        if (k > n)
            k = n;
        gen_range(w->scratch, c->id, c->rx_seq, c->rx_off, k);
        if (memcmp(p, w->scratch, k) != 0)
            verify_fail(c, p, w->scratch, k);
        p += k;
        n -= k;
        c->rx_off += k;
        if (c->rx_off == cfg.msglen) {
            uint64_t sent = cfg.setup_rate ? c->t0 : c->ts[c->rx_seq % (uint32_t)cfg.depth];
            if (phase == PH_MEASURE || phase == PH_SLICE_DRAIN) {
                hist_add(&w->hist, now - sent);
                w->msgs++;
            }
            c->rx_seq++;
            c->rx_off = 0;
            if (!cfg.setup_rate && phase < PH_DRAIN &&
                (cfg.count == 0 || c->tx_seq < (uint64_t)cfg.count))
                enqueue_msg(c, now);
        }
    }
}

/* -------------------------------------------------------------- connecting */

static int connect_blocking(const struct sockaddr_storage *addr, socklen_t addrlen,
                            uint64_t deadline, int *err_out)
{
    uint64_t backoff = 1000000ULL; /* 1 ms */
    for (;;) {
        int e;
        int fd = socket(addr->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            *err_out = errno;
            return -1;
        }
        set_nodelay(fd);
        if (connect(fd, (const struct sockaddr *)addr, addrlen) == 0)
            return fd;
        e = errno;
        if (e == EINPROGRESS) {
            uint64_t now = now_ns();
            int ms = now >= deadline ? 0 : (int)((deadline - now) / 1000000ULL) + 1;
            struct pollfd pfd = { .fd = fd, .events = POLLOUT, .revents = 0 };
            int r;
            do {
                r = poll(&pfd, 1, ms);
            } while (r < 0 && errno == EINTR);
            if (r == 0) {
                e = ETIMEDOUT;
            } else {
                socklen_t sl = sizeof e;
                if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &sl) != 0)
                    e = errno;
                if (e == 0)
                    return fd;
            }
        }
        close(fd);
        if ((e == ECONNREFUSED || e == EAGAIN || e == ETIMEDOUT || e == EADDRNOTAVAIL ||
             e == ECONNRESET || e == EINTR) &&
            now_ns() + backoff < deadline) {
            sleep_ns(backoff);
            backoff *= 2;
            if (backoff > 100000000ULL)
                backoff = 100000000ULL;
            continue;
        }
        *err_out = e;
        return -1;
    }
}

/* TLS: the handshake on a connected non-blocking socket, waiting with
 * poll until deadline. The SSL or NULL (*err_out set). */
static SSL *tls_connect(int fd, uint64_t deadline, int *err_out)
{
    SSL *ssl = SSL_new(g_tls);
    if (!ssl) {
        *err_out = ENOMEM;
        return NULL;
    }
    SSL_set_fd(ssl, fd);
    if (cfg.sni) {
        SSL_set_tlsext_host_name(ssl, cfg.sni);
        if (cfg.ca)
            SSL_set1_host(ssl, cfg.sni);
    }
    for (;;) {
        int r = SSL_connect(ssl);
        if (r == 1)
            return ssl;
        int e = SSL_get_error(ssl, r);
        uint64_t now = now_ns();
        if ((e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) || now >= deadline) {
            unsigned long code = ERR_peek_last_error();
            fprintf(stderr, "hps_perf: TLS handshake failed: %s\n",
                    code ? ERR_reason_error_string(code) : "timeout or closed");
            ERR_clear_error();
            SSL_free(ssl);
            *err_out = EPROTO;
            return NULL;
        }
        struct pollfd pfd = { .fd = fd, .events = e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT };
        (void)poll(&pfd, 1, (int)((deadline - now) / 1000000ULL) + 1);
    }
}

/* ----------------------------------------------------------------- echo run */

/* TLS: read until OpenSSL wants more from the socket (epoll does not see
 * what OpenSSL already buffered). */
static void handle_readable_tls(struct worker *w, struct conn *c, int phase)
{
    for (;;) {
        int n = SSL_read(c->ssl, w->rbuf, RBUF_SIZE);
        if (n > 0) {
            conn_received(w, c, w->rbuf, (size_t)n, now_ns(), phase);
            continue;
        }
        int e = SSL_get_error(c->ssl, n);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
            return;
        ERR_clear_error();
        if (e == SSL_ERROR_ZERO_RETURN)
            conn_fail(w, c, "server closed the connection (close_notify)", 0);
        else
            conn_fail(w, c, "SSL_read", e == SSL_ERROR_SYSCALL ? errno : 0);
        return;
    }
}

static void handle_readable(struct worker *w, struct conn *c, int phase)
{
    ssize_t n;
    if (c->ssl) {
        handle_readable_tls(w, c, phase);
        return;
    }
    do {
        n = recv(c->fd, w->rbuf, RBUF_SIZE, 0);
    } while (n < 0 && errno == EINTR);
    if (n > 0) {
        uint64_t now = now_ns();
        conn_received(w, c, w->rbuf, (size_t)n, now, phase);
        return;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return;
    if (n == 0)
        conn_fail(w, c, "server closed the connection", 0);
    else
        conn_fail(w, c, "recv", errno);
}

/* epoll_wait for up to 256 events of the worker: how many (0 when a
 * signal interrupted it); any other failure ends the run (exit 3). */
static int wait_events(struct worker *w, struct epoll_event evs[256], int timeout_ms)
{
    int n = epoll_wait(w->ep, evs, 256, timeout_ms);
    if (n < 0) {
        if (errno == EINTR)
            return 0;
        fprintf(stderr, "hps_perf: epoll_wait: %s\n", strerror(errno));
        _exit(3);
    }
    return n;
}

/* Wait up to timeout_ms for events on the worker's connections and handle
 * them (receive and verify, flush what is queued). */
static void poll_once(struct worker *w, int phase, int timeout_ms)
{
    struct epoll_event evs[256];
    int n = wait_events(w, evs, timeout_ms);
    for (int i = 0; i < n; i++) {
        struct conn *c = evs[i].data.ptr;
        if (c->state != ST_OPEN)
            continue;
        if (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
            handle_readable(w, c, phase);
            if (c->state != ST_OPEN)
                continue;
        }
        if (c->wq_head < c->wq_tail)
            conn_flush(w, c);
    }
}

static void run_echo(struct worker *w)
{
    uint64_t drain_deadline = 0;
    uint64_t now = now_ns();

    for (int i = 0; i < w->nconns; i++) {
        struct conn *c = &w->conns[i];
        ep_set(w, c, EPOLL_CTL_ADD, EPOLLIN);
        for (int d = 0; d < cfg.depth && (cfg.count == 0 || d < cfg.count); d++)
            enqueue_msg(c, now);
        conn_flush(w, c);
    }

    for (;;) {
        int phase = atomic_load_explicit(&g_phase, memory_order_relaxed);
        if (cfg.count > 0) {
            /* fixed work: a connection is done once its N echoes are back */
            for (int i = 0; i < w->nconns; i++) {
                struct conn *c = &w->conns[i];
                if (c->state == ST_OPEN && c->rx_seq == (uint32_t)cfg.count)
                    conn_close(w, c);
            }
            if (w->active == 0)
                break;
        }
        if (phase >= PH_DRAIN) {
            now = now_ns();
            if (!drain_deadline) {
                drain_deadline = now + DRAIN_NS;
            }
            for (int i = 0; i < w->nconns; i++) {
                struct conn *c = &w->conns[i];
                if (c->state == ST_OPEN && c->rx_seq == c->tx_seq)
                    conn_close(w, c);
            }
            if (w->active == 0 || now >= drain_deadline)
                break;
        }
        poll_once(w, phase, 20);
    }
    for (int i = 0; i < w->nconns; i++)
        conn_close(w, &w->conns[i]);
}

/* ---------------------------------------------------------- setup-rate run */

static void setup_start(struct worker *w, struct conn *c, uint64_t now)
{
    const struct sockaddr *addr = w->addr ? w->addr : (const struct sockaddr *)&cfg.addr;
    socklen_t addrlen = w->addr ? w->addrlen : cfg.addrlen;
    c->t0 = now;
    c->rx_seq = c->tx_seq;
    c->rx_off = 0;
    c->wq_head = c->wq_tail = 0;
    int fd = socket(addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        w->errors++;
        log_error(w, "socket", errno);
        goto idle;
    }
    set_nodelay(fd);
    if (connect(fd, addr, addrlen) != 0 && errno != EINPROGRESS) {
        w->errors++;
        log_error(w, "connect", errno);
        close(fd);
        goto idle;
    }
    c->fd = fd;
    c->state = ST_CONNECTING;
    c->want_out = 1;
    ep_set(w, c, EPOLL_CTL_ADD, EPOLLOUT);
    return;
idle:
    c->state = ST_IDLE;
    c->retry_at = now + 1000000ULL;
    w->idle++;
}

static void setup_fail(struct worker *w, struct conn *c, const char *what, int err, uint64_t now)
{
    w->errors++;
    log_error(w, what, err);
    close(c->fd);
    c->fd = -1;
    c->state = ST_IDLE;
    c->retry_at = now + 1000000ULL;
    w->idle++;
}

/* Slots waiting to retry after a failed cycle: start again once due while
 * cycles may start (now < stop_at), else close them. */
static void setup_retry(struct worker *w, uint64_t now, uint64_t stop_at)
{
    if (w->idle == 0)
        return;
    for (int i = 0; i < w->nconns; i++) {
        struct conn *c = &w->conns[i];
        if (c->state != ST_IDLE)
            continue;
        if (now >= stop_at) {
            w->idle--;
            c->state = ST_CLOSED;
            w->active--;
        } else if (now >= c->retry_at) {
            w->idle--;
            setup_start(w, c, now);
        }
    }
}

/* Wait up to timeout_ms for events of a setup-rate worker and handle them:
 * connected -> send the message; echoed and verified -> close, and start
 * the slot's next cycle if now < stop_at, else leave the slot closed
 * (w->active counts the slots not closed). */
static void setup_events(struct worker *w, int phase, uint64_t stop_at, int timeout_ms)
{
    struct epoll_event evs[256];
    int n = wait_events(w, evs, timeout_ms);
    for (int i = 0; i < n; i++) {
        struct conn *c = evs[i].data.ptr;
        uint32_t e = evs[i].events;
        uint64_t now = now_ns();
        if (c->state == ST_CONNECTING) {
            int err = 0;
            socklen_t sl = sizeof err;
            if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &sl) != 0)
                err = errno;
            if (err != 0 || (e & (EPOLLERR | EPOLLHUP))) {
                setup_fail(w, c, "connect", err, now);
                continue;
            }
            if (!(e & EPOLLOUT))
                continue;
            c->state = ST_OPEN;
            enqueue_msg(c, now);
            if (conn_flush(w, c) != 0) {
                /* conn_flush closed it and counted the error; recycle */
                c->state = ST_IDLE;
                w->active++;
                c->retry_at = now + 1000000ULL;
                w->idle++;
            }
            continue;
        }
        if (c->state != ST_OPEN)
            continue;
        if (e & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
            ssize_t r;
            do {
                r = recv(c->fd, w->rbuf, RBUF_SIZE, 0);
            } while (r < 0 && errno == EINTR);
            if (r > 0) {
                now = now_ns();
                conn_received(w, c, w->rbuf, (size_t)r, now, phase);
                if (c->rx_seq == c->tx_seq) {
                    /* one full cycle: connected, echoed, verified; close */
                    close(c->fd);
                    c->fd = -1;
                    if (now < stop_at) {
                        setup_start(w, c, now);
                    } else {
                        c->state = ST_CLOSED;
                        w->active--;
                    }
                }
                continue;
            }
            if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
                continue;
            setup_fail(w, c, r == 0 ? "server closed the connection" : "recv",
                       r == 0 ? 0 : errno, now);
            continue;
        }
        if (c->wq_head < c->wq_tail && conn_flush(w, c) != 0) {
            c->state = ST_IDLE;
            w->active++;
            c->retry_at = now + 1000000ULL;
            w->idle++;
        }
    }
}

static void run_setup(struct worker *w)
{
    uint64_t drain_deadline = 0;
    uint64_t now = now_ns();

    for (int i = 0; i < w->nconns; i++)
        setup_start(w, &w->conns[i], now);

    for (;;) {
        int phase = atomic_load_explicit(&g_phase, memory_order_relaxed);
        uint64_t stop_at = phase < PH_DRAIN ? UINT64_MAX : 0;
        now = now_ns();
        setup_retry(w, now, stop_at);
        if (phase >= PH_DRAIN) {
            if (!drain_deadline)
                drain_deadline = now + DRAIN_NS;
            if (w->active == 0 || now >= drain_deadline)
                break;
        }
        setup_events(w, phase, stop_at, w->idle > 0 ? 1 : 20);
    }
    for (int i = 0; i < w->nconns; i++) {
        struct conn *c = &w->conns[i];
        if (c->fd >= 0) {
            close(c->fd);
            c->fd = -1;
        }
    }
}

/* ------------------------------------------------------------------ thread */

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    w->active = w->nconns;

    if (!cfg.setup_rate) {
        uint64_t deadline = now_ns() + CONNECT_WINDOW_NS;
        for (int i = 0; i < w->nconns; i++) {
            int err = 0;
            int fd = connect_blocking(&cfg.addr, cfg.addrlen, deadline, &err);
            if (fd < 0) {
                w->connect_failed = 1;
                w->connect_errno = err;
                break;
            }
            if (g_tls && (w->conns[i].ssl = tls_connect(fd, deadline, &err)) == NULL) {
                close(fd);
                w->connect_failed = 1;
                w->connect_errno = err;
                break;
            }
            w->conns[i].fd = fd;
            w->conns[i].state = ST_OPEN;
        }
        for (int i = 0; i < w->nidle && !w->connect_failed; i++) {
            int err = 0;
            int fd = connect_blocking(&cfg.addr, cfg.addrlen, deadline, &err);
            if (fd < 0) {
                w->connect_failed = 1;
                w->connect_errno = err;
                break;
            }
            w->idle_fds[i] = fd;
        }
    }
    pthread_barrier_wait(&g_barrier);
    if (atomic_load(&g_abort) || w->connect_failed)
        return NULL;
    if (cfg.setup_rate)
        run_setup(w);
    else
        run_echo(w);
    /* every idle connection must still be open: nothing to read, no EOF */
    for (int i = 0; i < w->nidle; i++) {
        char b;
        ssize_t r = recv(w->idle_fds[i], &b, 1, MSG_DONTWAIT | MSG_PEEK);
        if (!(r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))) {
            if (w->idle_lost++ == 0)
                log_error(w, r == 0 ? "idle connection closed by the server"
                                    : r > 0 ? "idle connection received bytes" : "idle connection",
                          r < 0 ? errno : 0);
        }
        close(w->idle_fds[i]);
    }
    return NULL;
}

/* -------------------------------------------------------------------- main */

/* Up to the hard limit: 10,000 connections need more than the usual 1024. */
static void raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
    }
}

static void on_alarm(int sig)
{
    (void)sig;
    static const char msg[] =
        "hps_perf: ERROR: hard time limit reached (server stalled?), aborting\n";
    ssize_t r = write(2, msg, sizeof msg - 1);
    (void)r;
    _exit(3);
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: hps_perf --port P [options]\n"
            "       hps_perf --targets H:P,H:P,... [--pids PID,PID,...] [options]\n"
            "  --host H         server address (default 127.0.0.1)\n"
            "  --port P         server port (required)\n"
            "  --conns N        connections (default 64)\n"
            "  --size B         message (body) bytes (default 64)\n"
            "  --depth D        messages in flight per connection (default 1)\n"
            "  --duration S     measured seconds (default 5)\n"
            "  --warmup S       warm-up seconds (default 1)\n"
            "  --threads T      client threads (default 1)\n"
            "  --mode echo|pack raw echo, or HP-Socket pack frames (default echo)\n"
            "  --flag F         pack header flag, 0..1023 (default 0)\n"
            "  --setup-rate     measure connect+echo+close cycles per second\n"
            "  --udp            UDP datagrams instead of TCP (echo mode; loss reported)\n"
            "  --loss-ms MS     UDP: a datagram not echoed within MS is lost (default 200)\n"
            "  --idle N         also hold N connections open without traffic\n"
            "  --count N        each connection sends exactly N messages, then the run\n"
            "                   ends (no warm-up; --duration is only a time limit)\n"
            "  --json           print one JSON object line\n"
            "  --marks          print 'hps_perf: mark measure-start|measure-end' lines\n"
            "                   to stderr at the measured window's edges (for compare.py)\n"
            "  --tls            speak TLS (OpenSSL); echo runs only\n"
            "  --ca FILE        with --tls: verify the server against FILE (else no check)\n"
            "  --sni NAME       with --tls: server name to send (and verify with --ca)\n"
            "sliced mode (servers take turns; echo/pack, --setup-rate or --udp; one thread):\n"
            "  --targets L      H:P,H:P,...: connect --conns (+ --idle) to every server,\n"
            "                   then each round gives each one slice, order rotated\n"
            "  --pids L         PID,PID,... (PID+PID for several): server processes whose\n"
            "                   CPU (ns, /proc/PID/task/*/schedstat) is read per slice\n"
            "  --slice-ms MS    one server's turn (default 200), then its echoes drain\n"
            "  --rounds N       measured rounds (default 20)\n"
            "  --warmup-rounds K unmeasured rounds first (default 1)\n"
            "exit: 0 ok, 1 connect failure, 2 verification error, 3 stall/timeout,\n"
            "      4 connection errors during an echo run\n");
}

static long parse_long(const char *opt, const char *s, long lo, long hi)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *s == '\0' || *end != '\0' || v < lo || v > hi) {
        fprintf(stderr, "hps_perf: bad value for --%s: '%s' (range %ld..%ld)\n", opt, s, lo, hi);
        exit(64);
    }
    return v;
}

static double parse_double(const char *opt, const char *s, double lo, double hi)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || *s == '\0' || *end != '\0' || !(v >= lo) || !(v <= hi)) {
        fprintf(stderr, "hps_perf: bad value for --%s: '%s'\n", opt, s);
        exit(64);
    }
    return v;
}

static void parse_args(int argc, char **argv)
{
    enum { O_HOST = 1, O_PORT, O_CONNS, O_SIZE, O_DEPTH, O_DURATION, O_WARMUP, O_THREADS,
           O_MODE, O_FLAG, O_JSON, O_SETUP, O_MARKS, O_UDP, O_LOSS, O_TLS, O_CA,
           O_SNI, O_IDLE, O_COUNT, O_TARGETS, O_PIDS, O_SLICE, O_ROUNDS, O_WROUNDS,
           O_HELP };
    static const struct option opts[] = {
        { "host", required_argument, NULL, O_HOST },
        { "port", required_argument, NULL, O_PORT },
        { "conns", required_argument, NULL, O_CONNS },
        { "size", required_argument, NULL, O_SIZE },
        { "depth", required_argument, NULL, O_DEPTH },
        { "duration", required_argument, NULL, O_DURATION },
        { "warmup", required_argument, NULL, O_WARMUP },
        { "threads", required_argument, NULL, O_THREADS },
        { "mode", required_argument, NULL, O_MODE },
        { "flag", required_argument, NULL, O_FLAG },
        { "json", no_argument, NULL, O_JSON },
        { "setup-rate", no_argument, NULL, O_SETUP },
        { "marks", no_argument, NULL, O_MARKS },
        { "udp", no_argument, NULL, O_UDP },
        { "loss-ms", required_argument, NULL, O_LOSS },
        { "tls", no_argument, NULL, O_TLS },
        { "ca", required_argument, NULL, O_CA },
        { "sni", required_argument, NULL, O_SNI },
        { "idle", required_argument, NULL, O_IDLE },
        { "count", required_argument, NULL, O_COUNT },
        { "targets", required_argument, NULL, O_TARGETS },
        { "pids", required_argument, NULL, O_PIDS },
        { "slice-ms", required_argument, NULL, O_SLICE },
        { "rounds", required_argument, NULL, O_ROUNDS },
        { "warmup-rounds", required_argument, NULL, O_WROUNDS },
        { "help", no_argument, NULL, O_HELP },
        { NULL, 0, NULL, 0 },
    };
    cfg.host = "127.0.0.1";
    cfg.port = NULL;
    cfg.conns = 64;
    cfg.size = 64;
    cfg.depth = 1;
    cfg.duration = 5.0;
    cfg.warmup = 1.0;
    cfg.threads = 1;
    cfg.mode = MODE_ECHO;
    cfg.flag = 0;
    cfg.loss_ms = 200;
    cfg.slice_ms = 200;
    cfg.rounds = 20;
    cfg.warmup_rounds = 1;

    int o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case O_HOST: cfg.host = optarg; break;
        case O_PORT:
            parse_long("port", optarg, 1, 65535);
            cfg.port = optarg;
            cfg.port_set = 1;
            break;
        case O_CONNS: cfg.conns = (int)parse_long("conns", optarg, 1, 1000000); break;
        case O_SIZE: cfg.size = (size_t)parse_long("size", optarg, 1, 64L * 1024 * 1024); break;
        case O_DEPTH: cfg.depth = (int)parse_long("depth", optarg, 1, 1000000); break;
        case O_DURATION:
            cfg.duration = parse_double("duration", optarg, 0.01, 86400);
            cfg.timed_set = 1;
            break;
        case O_WARMUP:
            cfg.warmup = parse_double("warmup", optarg, 0, 86400);
            cfg.timed_set = 1;
            break;
        case O_THREADS: cfg.threads = (int)parse_long("threads", optarg, 1, 1024); break;
        case O_MODE:
            if (strcmp(optarg, "echo") == 0) {
                cfg.mode = MODE_ECHO;
            } else if (strcmp(optarg, "pack") == 0) {
                cfg.mode = MODE_PACK;
            } else {
                fprintf(stderr, "hps_perf: --mode must be echo or pack\n");
                exit(64);
            }
            break;
        case O_FLAG: cfg.flag = (unsigned)parse_long("flag", optarg, 0, 1023); break;
        case O_JSON: cfg.json = 1; break;
        case O_SETUP: cfg.setup_rate = 1; break;
        case O_MARKS: cfg.marks = 1; break;
        case O_UDP: cfg.udp = 1; break;
        case O_LOSS: cfg.loss_ms = (int)parse_long("loss-ms", optarg, 1, 60000); break;
        case O_TLS: cfg.tls = 1; break;
        case O_CA: cfg.ca = optarg; break;
        case O_SNI: cfg.sni = optarg; break;
        case O_IDLE: cfg.idle = (int)parse_long("idle", optarg, 0, 1000000); break;
        case O_COUNT: cfg.count = parse_long("count", optarg, 1, 1L << 31); break;
        case O_TARGETS: cfg.targets = optarg; break;
        case O_PIDS: cfg.pids = optarg; break;
        case O_SLICE: cfg.slice_ms = (int)parse_long("slice-ms", optarg, 1, 60000); break;
        case O_ROUNDS: cfg.rounds = (int)parse_long("rounds", optarg, 1, 100000); break;
        case O_WROUNDS:
            cfg.warmup_rounds = (int)parse_long("warmup-rounds", optarg, 0, 100000);
            break;
        case O_HELP: usage(stdout); exit(0);
        default: usage(stderr); exit(64);
        }
    }
    if (optind < argc) {
        fprintf(stderr, "hps_perf: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        exit(64);
    }
    if (cfg.targets) {
        const char *bad = cfg.port_set ? "--port (give every server in --targets)"
                          : cfg.threads > 1 ? "--threads > 1 (sliced mode runs one thread)"
                          : cfg.tls ? "--tls"
                          : cfg.count ? "--count"
                          : cfg.marks ? "--marks"
                          : cfg.timed_set ? "--duration/--warmup (use --rounds, --slice-ms, "
                                            "--warmup-rounds)"
                          : NULL;
        if (bad) {
            fprintf(stderr, "hps_perf: --targets (sliced mode) does not take %s\n", bad);
            exit(64);
        }
        cfg.port = "0"; /* unused: every target has its own address */
    } else if (cfg.pids) {
        fprintf(stderr, "hps_perf: --pids goes with --targets\n");
        exit(64);
    }
    if (!cfg.port) {
        fprintf(stderr, "hps_perf: --port is required\n");
        usage(stderr);
        exit(64);
    }
    if (cfg.mode == MODE_PACK) {
        if (cfg.size > 0x3FFFFFu) {
            fprintf(stderr, "hps_perf: --size must be <= 4194303 in pack mode\n");
            exit(64);
        }
        cfg.hdr = 4;
        cfg.pack_header = ((uint32_t)cfg.flag << 22) | (uint32_t)cfg.size;
    }
    if (cfg.udp && (cfg.mode != MODE_ECHO || cfg.setup_rate || cfg.size < 8 ||
                    cfg.size > 65507)) {
        fprintf(stderr, "hps_perf: --udp needs echo mode and 8 <= --size <= 65507\n");
        exit(64);
    }
    cfg.msglen = cfg.hdr + cfg.size;
    if (cfg.tls && cfg.udp) {
        fprintf(stderr, "hps_perf: --tls is for TCP, not --udp\n");
        exit(64);
    }
    if ((cfg.idle || cfg.count) && (cfg.tls || cfg.udp)) {
        fprintf(stderr, "hps_perf: --idle and --count are for plain TCP echo runs\n");
        exit(64);
    }
    if (cfg.tls && cfg.setup_rate) {
        fprintf(stderr, "hps_perf: --tls measures echo runs only, not --setup-rate\n");
        exit(64);
    }
    if (cfg.tls) {
        g_tls = SSL_CTX_new(TLS_client_method());
        if (!g_tls) {
            fprintf(stderr, "hps_perf: SSL_CTX_new failed\n");
            exit(3);
        }
        SSL_CTX_set_mode(g_tls, SSL_MODE_ENABLE_PARTIAL_WRITE |
                                    SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
        if (cfg.ca) {
            if (SSL_CTX_load_verify_locations(g_tls, cfg.ca, NULL) != 1) {
                fprintf(stderr, "hps_perf: cannot load --ca %s\n", cfg.ca);
                exit(64);
            }
            SSL_CTX_set_verify(g_tls, SSL_VERIFY_PEER, NULL);
        }
    }
    if (cfg.setup_rate)
        cfg.depth = 1;
    if (cfg.count > 0 && cfg.setup_rate) {
        fprintf(stderr, "hps_perf: --count and --setup-rate do not go together\n");
        exit(64);
    }
    if (cfg.idle > 0 && cfg.setup_rate) {
        fprintf(stderr, "hps_perf: --idle and --setup-rate do not go together\n");
        exit(64);
    }
    if (cfg.threads > cfg.conns)
        cfg.threads = cfg.conns;
}

static void resolve(void)
{
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    int r = getaddrinfo(cfg.host, cfg.port, &hints, &res);
    if (r != 0 || !res) {
        fprintf(stderr, "hps_perf: cannot resolve %s:%s: %s\n", cfg.host, cfg.port, gai_strerror(r));
        exit(1);
    }
    memcpy(&cfg.addr, res->ai_addr, res->ai_addrlen);
    cfg.addrlen = res->ai_addrlen;
    freeaddrinfo(res);
}

/* -------------------------------------------------------------------- udp */

struct usock {
    int fd;
    uint32_t id;
    uint32_t tx_seq;
    int inflight;
    uint32_t *seq_at;  /* slot (seq % depth) -> seq outstanding there */
    uint64_t *sent_ns; /* its send time; 0 = slot free */
};

struct uworker {
    pthread_t th;
    int ep;
    struct usock *s;
    int n;
    uint8_t *buf, *want;
    struct hist hist;
    uint64_t msgs, sent, echoed, lost, late, errors;
    uint64_t last_echo_ns; /* when the latest echo came back */
    int logged;
};

static void udp_err(struct uworker *w, const char *fmt, uint32_t id, uint32_t seq)
{
    w->errors++;
    if (w->logged++ < MAX_LOGGED_ERRORS)
        fprintf(stderr, fmt, (unsigned)id, (unsigned)seq);
}

static void udp_fill(struct uworker *w, struct usock *u)
{
    while (u->inflight < cfg.depth && atomic_load(&g_phase) < PH_DRAIN) {
        uint32_t seq = u->tx_seq;
        size_t slot = seq % (uint32_t)cfg.depth;
        if (u->sent_ns[slot] != 0)
            break; /* its datagram is still out */
        gen_range(w->buf, u->id, seq, 0, cfg.size);
        if (send(u->fd, w->buf, cfg.size, MSG_DONTWAIT) != (ssize_t)cfg.size) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != ENOBUFS)
                udp_err(w, "hps_perf: udp socket %u: send failed (seq %u)\n", u->id, seq);
            break;
        }
        u->seq_at[slot] = seq;
        u->sent_ns[slot] = now_ns();
        u->tx_seq++;
        u->inflight++;
        w->sent++;
    }
}

static void udp_read(struct uworker *w, struct usock *u)
{
    for (;;) {
        ssize_t n = recv(u->fd, w->buf, cfg.size + 1, MSG_DONTWAIT);
        if (n < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                udp_err(w, "hps_perf: udp socket %u: receive failed (after seq %u)\n", u->id,
                        u->tx_seq);
            return;
        }
        uint32_t seq = (uint32_t)w->buf[0] | (uint32_t)w->buf[1] << 8 |
                       (uint32_t)w->buf[2] << 16 | (uint32_t)w->buf[3] << 24;
        if ((size_t)n != cfg.size) {
            udp_err(w, "hps_perf: udp socket %u: datagram of the wrong size (seq %u)\n", u->id,
                    seq);
            continue;
        }
        gen_range(w->want, u->id, seq, 0, cfg.size);
        if (memcmp(w->want, w->buf, cfg.size) != 0) {
            udp_err(w, "hps_perf: udp socket %u: corrupted datagram (seq %u)\n", u->id, seq);
            continue;
        }
        size_t slot = seq % (uint32_t)cfg.depth;
        if (u->sent_ns[slot] == 0 || u->seq_at[slot] != seq) {
            w->late++; /* declared lost already, or a duplicate */
            continue;
        }
        uint64_t t = now_ns();
        int phase = atomic_load(&g_phase);
        if (phase == PH_MEASURE || phase == PH_SLICE_DRAIN) {
            w->msgs++;
            hist_add(&w->hist, t - u->sent_ns[slot]);
        }
        w->last_echo_ns = t;
        w->echoed++;
        u->sent_ns[slot] = 0;
        u->inflight--;
    }
}

/* Datagrams out longer than --loss-ms are lost; their slots free up. */
static void udp_sweep(struct uworker *w, uint64_t now, int all)
{
    uint64_t limit = (uint64_t)cfg.loss_ms * 1000000ULL;
    for (int i = 0; i < w->n; i++) {
        struct usock *u = &w->s[i];
        for (int k = 0; k < cfg.depth; k++)
            if (u->sent_ns[k] != 0 && (all || now - u->sent_ns[k] > limit)) {
                u->sent_ns[k] = 0;
                u->inflight--;
                w->lost++;
            }
    }
}

static void *udp_worker(void *arg)
{
    struct uworker *w = arg;
    struct epoll_event evs[64];
    uint64_t next_sweep = now_ns(), drain_end = 0;
    pthread_barrier_wait(&g_barrier);
    for (;;) {
        int phase = atomic_load(&g_phase), busy = 0;
        if (phase == PH_DRAIN) {
            if (drain_end == 0)
                drain_end = now_ns() + (uint64_t)cfg.loss_ms * 1000000ULL;
            for (int i = 0; i < w->n; i++)
                busy |= w->s[i].inflight > 0;
            if (!busy || now_ns() >= drain_end)
                break;
        }
        for (int i = 0; i < w->n; i++)
            udp_fill(w, &w->s[i]);
        int k = epoll_wait(w->ep, evs, 64, 5);
        for (int i = 0; i < k; i++)
            udp_read(w, &w->s[evs[i].data.u32]);
        uint64_t now = now_ns();
        if (now >= next_sweep) {
            udp_sweep(w, now, 0);
            next_sweep = now + 10000000ULL;
        }
    }
    udp_sweep(w, 0, 1); /* what never came back is lost */
    return NULL;
}

/* n connected UDP sockets to addr (ids t, t + T, ...) with their own epoll
 * instance: 0, or the exit status (1 connect failed, 3 out of resources). */
static int udp_worker_init(struct uworker *w, int n, int t, int T, const struct sockaddr *addr,
                           socklen_t addrlen)
{
    w->n = n;
    w->s = calloc((size_t)w->n, sizeof *w->s);
    w->buf = malloc(cfg.size + 1);
    w->want = malloc(cfg.size);
    w->ep = epoll_create1(EPOLL_CLOEXEC);
    if (!w->s || !w->buf || !w->want || w->ep < 0) {
        perror("hps_perf: setup");
        return 3;
    }
    for (int i = 0; i < w->n; i++) {
        struct usock *u = &w->s[i];
        struct epoll_event ev;
        int rcv = 1 << 20;
        u->id = (uint32_t)(t + i * T);
        u->seq_at = calloc((size_t)cfg.depth, sizeof *u->seq_at);
        u->sent_ns = calloc((size_t)cfg.depth, sizeof *u->sent_ns);
        u->fd = socket(addr->sa_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (!u->seq_at || !u->sent_ns || u->fd < 0) {
            perror("hps_perf: udp socket");
            return 3;
        }
        setsockopt(u->fd, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof rcv);
        if (connect(u->fd, addr, addrlen) != 0) {
            char host[64] = "?", port[16] = "?";
            (void)getnameinfo(addr, addrlen, host, sizeof host, port, sizeof port,
                              NI_NUMERICHOST | NI_NUMERICSERV);
            fprintf(stderr, "hps_perf: udp connect to %s:%s failed: %s\n", host, port,
                    strerror(errno));
            return 1;
        }
        memset(&ev, 0, sizeof ev);
        ev.events = EPOLLIN;
        ev.data.u32 = (uint32_t)i;
        epoll_ctl(w->ep, EPOLL_CTL_ADD, u->fd, &ev);
    }
    return 0;
}

static int run_udp(void)
{
    int T = cfg.threads;
    struct uworker *ws = calloc((size_t)T, sizeof *ws);
    if (!ws) {
        perror("hps_perf: calloc");
        return 3;
    }
    for (int t = 0; t < T; t++) {
        int rc = udp_worker_init(&ws[t], cfg.conns / T + (t < cfg.conns % T ? 1 : 0), t, T,
                                 (const struct sockaddr *)&cfg.addr, cfg.addrlen);
        if (rc != 0)
            return rc;
    }
    pthread_barrier_init(&g_barrier, NULL, (unsigned)T + 1u);
    for (int t = 0; t < T; t++)
        if (pthread_create(&ws[t].th, NULL, udp_worker, &ws[t]) != 0) {
            fprintf(stderr, "hps_perf: pthread_create failed\n");
            return 3;
        }
    pthread_barrier_wait(&g_barrier);
    uint64_t t_start = now_ns();
    atomic_store(&g_phase, PH_WARMUP);
    sleep_until(t_start + (uint64_t)(cfg.warmup * 1e9));
    uint64_t t_m0 = now_ns();
    atomic_store(&g_phase, PH_MEASURE);
    if (cfg.marks)
        fprintf(stderr, "hps_perf: mark measure-start\n");
    sleep_until(t_m0 + (uint64_t)(cfg.duration * 1e9));
    atomic_store(&g_phase, PH_DRAIN);
    uint64_t t_m1 = now_ns();
    if (cfg.marks)
        fprintf(stderr, "hps_perf: mark measure-end\n");
    for (int t = 0; t < T; t++)
        pthread_join(ws[t].th, NULL);
    alarm(0);

    static struct hist h;
    uint64_t msgs = 0, sent = 0, echoed = 0, lost = 0, late = 0, errors = 0;
    for (int t = 0; t < T; t++) {
        hist_merge(&h, &ws[t].hist);
        msgs += ws[t].msgs;
        sent += ws[t].sent;
        echoed += ws[t].echoed;
        lost += ws[t].lost;
        late += ws[t].late;
        errors += ws[t].errors;
    }
    double secs = (double)(t_m1 - t_m0) / 1e9;
    double rate = (double)msgs / secs;
    double loss_pct = sent ? 100.0 * (double)lost / (double)sent : 0.0;
    double p50 = hist_pct(&h, 0.50) / 1e3, p99 = hist_pct(&h, 0.99) / 1e3;
    double p999 = hist_pct(&h, 0.999) / 1e3;
    double mean = h.count ? (double)h.sum / (double)h.count / 1e3 : 0.0;
    if (cfg.json) {
        printf("{\"test\":\"udp_echo\",\"mode\":\"udp\",\"host\":\"%s\",\"port\":%s,"
               "\"conns\":%d,\"size\":%zu,\"depth\":%d,\"threads\":%d,\"duration_s\":%.3f,"
               "\"msgs\":%llu,\"msgs_per_s\":%.1f,\"mb_per_s\":%.3f,\"sent\":%llu,"
               "\"echoed\":%llu,\"lost\":%llu,\"late\":%llu,\"loss_pct\":%.4f,"
               "\"p50_us\":%.1f,\"p99_us\":%.1f,\"p999_us\":%.1f,\"mean_us\":%.1f,"
               "\"errors\":%llu,\"verified\":%s}\n",
               cfg.host, cfg.port, cfg.conns, cfg.size, cfg.depth, T, secs,
               (unsigned long long)msgs, rate, rate * (double)cfg.size / 1e6,
               (unsigned long long)sent, (unsigned long long)echoed,
               (unsigned long long)lost, (unsigned long long)late, loss_pct, p50, p99, p999,
               mean, (unsigned long long)errors, msgs > 0 ? "true" : "false");
    } else {
        printf("mode=udp conns=%d size=%zu depth=%d threads=%d duration=%.2fs msgs=%llu "
               "datagrams/s=%.0f MB/s=%.2f sent=%llu echoed=%llu lost=%llu (%.3f%%) late=%llu "
               "p50=%.0fus p99=%.0fus p99.9=%.0fus errors=%llu verified=%s\n",
               cfg.conns, cfg.size, cfg.depth, T, secs, (unsigned long long)msgs, rate,
               rate * (double)cfg.size / 1e6, (unsigned long long)sent,
               (unsigned long long)echoed, (unsigned long long)lost, loss_pct,
               (unsigned long long)late, p50, p99, p999, (unsigned long long)errors,
               msgs > 0 ? "yes" : "no");
    }
    fflush(stdout);
    if (msgs == 0) {
        fprintf(stderr, "hps_perf: ERROR: no datagram came back during the measured run\n");
        return 3;
    }
    return errors > 0 ? 2 : 0;
}

/* ----------------------------------------------------------- sliced mode */

/* --targets H:P,H:P,...: every server gets its connections up front, then
 * the servers take turns. A round gives each target one slice, in an order
 * that rotates every round (round r starts at target r % n): its
 * connections get --depth messages in flight each, run for --slice-ms,
 * stop sending, and wait until every echo is back. Only one target carries
 * traffic at any moment. For each (round, target): messages echoed, the
 * nanoseconds from activation to drained, and the server's CPU nanoseconds
 * over the same window (sum of the first field of
 * /proc/PID/task/ * /schedstat, i.e. ns on CPU, of the --pids processes).
 * The idle connections (--idle) of each target are held by a child process
 * per target, so each process stays within its own RLIMIT_NOFILE.
 * --setup-rate: nothing is connected up front (one probe connection per
 * target checks it accepts); a slice runs --conns connect+echo+close cycles
 * at once against its target (setup_slice), and its "messages" are the
 * cycles completed, the ones still in flight at the slice's end included.
 * --udp: every target gets --conns connected UDP sockets (t->uw) up front;
 * see udp_slice. */

#define MAX_PIDS 8

struct target {
    struct worker w;            /* its connections, own epoll instance, histogram */
    struct uworker uw;          /* --udp: its sockets, own epoll instance, histogram */
    char *spec;                 /* "H:P" as given */
    struct sockaddr_storage addr;
    socklen_t addrlen;
    pid_t pids[MAX_PIDS];
    int npids;
    uint64_t *r_msgs, *r_ns, *r_cpu;
    int *r_pos;                 /* its position in the round's order */
    int settle_waits;           /* slices whose server was still running when drained */
    pid_t holder;               /* --idle: the child holding its idle connections */
    int hold_cmd, hold_res;     /* pipes to/from the holder */
};

static struct target *g_tg;
static int g_ntg;

static void resolve_target(struct target *t)
{
    char *s = strdup(t->spec);
    char *colon = s ? strrchr(s, ':') : NULL;
    if (!colon || colon == s || colon[1] == '\0') {
        fprintf(stderr, "hps_perf: --targets: '%s' is not HOST:PORT\n", t->spec);
        exit(64);
    }
    *colon = '\0';
    char *host = s, *port = colon + 1;
    size_t hl = strlen(host);
    if (hl >= 2 && host[0] == '[' && host[hl - 1] == ']') { /* [::1]:P */
        host[hl - 1] = '\0';
        host++;
    }
    parse_long("targets", port, 1, 65535);
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    int r = getaddrinfo(host, port, &hints, &res);
    if (r != 0 || !res) {
        fprintf(stderr, "hps_perf: cannot resolve %s: %s\n", t->spec, gai_strerror(r));
        exit(1);
    }
    memcpy(&t->addr, res->ai_addr, res->ai_addrlen);
    t->addrlen = res->ai_addrlen;
    freeaddrinfo(res);
    free(s);
}

/* "H:P,H:P" and "PID,PID+PID" into g_tg. */
static void parse_targets(void)
{
    char *list = strdup(cfg.targets);
    int n = 1;
    for (const char *p = cfg.targets; *p; p++)
        n += *p == ',';
    g_tg = calloc((size_t)n, sizeof *g_tg);
    if (!list || !g_tg) {
        perror("hps_perf: calloc");
        exit(3);
    }
    char *save = NULL;
    for (char *tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save))
        g_tg[g_ntg++].spec = tok;
    if (g_ntg != n || g_ntg < 1) {
        fprintf(stderr, "hps_perf: --targets: empty item in '%s'\n", cfg.targets);
        exit(64);
    }
    for (int i = 0; i < g_ntg; i++)
        resolve_target(&g_tg[i]);
    if (!cfg.pids)
        return;
    char *pl = strdup(cfg.pids);
    int k = 0;
    char *s1 = NULL;
    for (char *tok = strtok_r(pl, ",", &s1); tok; tok = strtok_r(NULL, ",", &s1), k++) {
        if (k >= g_ntg)
            break;
        char *s2 = NULL;
        for (char *p = strtok_r(tok, "+", &s2); p; p = strtok_r(NULL, "+", &s2)) {
            if (g_tg[k].npids == MAX_PIDS) {
                fprintf(stderr, "hps_perf: --pids: at most %d processes per target\n", MAX_PIDS);
                exit(64);
            }
            g_tg[k].pids[g_tg[k].npids++] = (pid_t)parse_long("pids", p, 1, 1L << 30);
        }
    }
    int commas = 0;
    for (const char *p = cfg.pids; *p; p++)
        commas += *p == ',';
    if (commas + 1 != g_ntg) {
        fprintf(stderr, "hps_perf: --pids needs one item per target (%d), got '%s'\n", g_ntg,
                cfg.pids);
        exit(64);
    }
    free(pl);
}

/* Nanoseconds on CPU of every thread of the target's server processes. */
static uint64_t target_cpu_ns(const struct target *t)
{
    uint64_t sum = 0;
    char path[64];
    for (int i = 0; i < t->npids; i++) {
        snprintf(path, sizeof path, "/proc/%d/task", (int)t->pids[i]);
        DIR *d = opendir(path);
        if (!d) {
            fprintf(stderr, "hps_perf: server process %d of %s is gone: %s\n",
                    (int)t->pids[i], t->spec, strerror(errno));
            _exit(3);
        }
        struct dirent *de;
        while ((de = readdir(d)) != NULL) {
            if (de->d_name[0] < '0' || de->d_name[0] > '9')
                continue;
            char fp[96];
            snprintf(fp, sizeof fp, "/proc/%d/task/%.20s/schedstat", (int)t->pids[i], de->d_name);
            FILE *f = fopen(fp, "r");
            if (!f)
                continue; /* the thread just exited */
            unsigned long long ns = 0;
            if (fscanf(f, "%llu", &ns) == 1)
                sum += ns;
            fclose(f);
        }
        closedir(d);
    }
    return sum;
}

/* 1 if a thread of the target's server processes is on a CPU or runnable
 * (state R in /proc/PID/task/TID/stat). A running thread's schedstat lags by
 * up to a scheduler tick (4 ms at HZ=250); once it sleeps it is exact. */
static int target_running(const struct target *t)
{
    char path[64];
    for (int i = 0; i < t->npids; i++) {
        snprintf(path, sizeof path, "/proc/%d/task", (int)t->pids[i]);
        DIR *d = opendir(path);
        if (!d)
            return 0; /* target_cpu_ns reports it */
        struct dirent *de;
        int running = 0;
        while (!running && (de = readdir(d)) != NULL) {
            if (de->d_name[0] < '0' || de->d_name[0] > '9')
                continue;
            char fp[96], buf[256];
            snprintf(fp, sizeof fp, "/proc/%d/task/%.20s/stat", (int)t->pids[i], de->d_name);
            FILE *f = fopen(fp, "r");
            if (!f)
                continue;
            size_t n = fread(buf, 1, sizeof buf - 1, f);
            fclose(f);
            buf[n] = '\0';
            char *rp = strrchr(buf, ')');
            running = rp && rp[1] == ' ' && rp[2] == 'R';
        }
        closedir(d);
        if (running)
            return 1;
    }
    return 0;
}

/* --idle: a child process per target connects and holds its idle
 * connections, says "ready" (or why not) on hold_res, waits for a byte (or
 * EOF: the parent died) on hold_cmd, checks that each is still open and
 * writes how many were not. */
static void holder_main(struct target *t, int cmd_r, int res_w)
{
    int32_t msg[2] = { 0, 0 };
    signal(SIGPIPE, SIG_IGN);
    raise_nofile();
    int *fds = calloc((size_t)cfg.idle, sizeof *fds);
    uint64_t deadline = now_ns() + CONNECT_WINDOW_NS;
    for (int i = 0; i < cfg.idle; i++) {
        int err = ENOMEM;
        fds[i] = fds ? connect_blocking(&t->addr, t->addrlen, deadline, &err) : -1;
        if (fds[i] < 0) {
            msg[0] = -1;
            msg[1] = err;
            (void)!write(res_w, msg, sizeof msg);
            _exit(1);
        }
    }
    (void)!write(res_w, msg, sizeof msg); /* ready */
    char b;
    while (read(cmd_r, &b, 1) < 0 && errno == EINTR) {
    }
    int32_t lost = 0;
    for (int i = 0; i < cfg.idle; i++) {
        ssize_t r = recv(fds[i], &b, 1, MSG_DONTWAIT | MSG_PEEK);
        if (!(r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)))
            lost++;
    }
    msg[0] = 1;
    msg[1] = lost;
    (void)!write(res_w, msg, sizeof msg);
    _exit(0);
}

static void holder_start(struct target *t)
{
    int cmd[2], res[2];
    if (pipe2(cmd, O_CLOEXEC) != 0 || pipe2(res, O_CLOEXEC) != 0) {
        perror("hps_perf: pipe");
        exit(3);
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        perror("hps_perf: fork");
        exit(3);
    }
    if (pid == 0) {
        close(cmd[1]);
        close(res[0]);
        /* not the earlier holders' pipes: each must see EOF when the parent dies */
        for (int j = 0; j < g_ntg; j++)
            if (g_tg[j].holder > 0) {
                close(g_tg[j].hold_cmd);
                close(g_tg[j].hold_res);
            }
        holder_main(t, cmd[0], res[1]);
    }
    close(cmd[0]);
    close(res[1]);
    t->holder = pid;
    t->hold_cmd = cmd[1];
    t->hold_res = res[0];
}

/* Read the holder's 8-byte answer; -1 on EOF or error. */
static int holder_read(struct target *t, int32_t msg[2])
{
    size_t got = 0;
    while (got < 2 * sizeof(int32_t)) {
        ssize_t r = read(t->hold_res, (char *)msg + got, 2 * sizeof(int32_t) - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        got += (size_t)r;
    }
    return 0;
}

static int slice_drained(const struct worker *w)
{
    for (int i = 0; i < w->nconns; i++) {
        const struct conn *c = &w->conns[i];
        if (c->state == ST_OPEN && c->rx_seq != c->tx_seq)
            return 0;
    }
    return 1;
}

static void slice_stalled(const struct target *t, const char *what)
{
    fprintf(stderr,
            "hps_perf: ERROR: %s: %s still missing %.1f s after its slice ended "
            "(server stalled?), aborting\n",
            t->spec, what, (double)DRAIN_NS / 1e9);
    _exit(3);
}

/* Echo slice: --depth messages in flight on every connection until end,
 * then nothing new is sent and every echo is awaited. */
static void echo_slice(struct target *t, uint64_t t0, uint64_t end, int measured)
{
    struct worker *w = &t->w;
    for (int i = 0; i < w->nconns; i++) {
        struct conn *c = &w->conns[i];
        if (c->state != ST_OPEN)
            continue;
        for (int d = 0; d < cfg.depth; d++)
            enqueue_msg(c, t0);
        conn_flush(w, c);
    }
    uint64_t now;
    int phase = measured ? PH_MEASURE : PH_WARMUP;
    while ((now = now_ns()) < end)
        poll_once(w, phase, (int)((end - now + 999999ULL) / 1000000ULL));
    uint64_t deadline = now + DRAIN_NS;
    phase = measured ? PH_SLICE_DRAIN : PH_DRAIN;
    while (!slice_drained(w)) {
        if (now_ns() >= deadline)
            slice_stalled(t, "echoes");
        poll_once(w, phase, 5);
    }
}

/* Setup-rate slice: --conns connect+echo+close cycles against this target
 * only, each slot starting its next cycle when one completes, until end;
 * then no cycle starts and the ones in flight complete (counted: they are
 * this slice's work, like an echo slice's drain), so when it returns every
 * socket to this target is closed and none is left for the next slice. A
 * slot whose cycle failed is closed at end instead of retried. */
static void setup_slice(struct target *t, uint64_t t0, uint64_t end, int measured)
{
    struct worker *w = &t->w;
    w->active = w->nconns;
    w->idle = 0;
    for (int i = 0; i < w->nconns; i++)
        setup_start(w, &w->conns[i], t0);
    uint64_t now;
    int phase = measured ? PH_MEASURE : PH_WARMUP;
    while ((now = now_ns()) < end) {
        setup_retry(w, now, end);
        int ms = (int)((end - now + 999999ULL) / 1000000ULL);
        setup_events(w, phase, end, w->idle > 0 ? 1 : ms);
    }
    uint64_t deadline = now + DRAIN_NS;
    phase = measured ? PH_SLICE_DRAIN : PH_DRAIN;
    for (;;) {
        now = now_ns();
        setup_retry(w, now, 0);
        if (w->active == 0)
            break;
        if (now >= deadline)
            slice_stalled(t, "connect+echo+close cycles");
        setup_events(w, phase, 0, 5);
    }
}

/* UDP slice: --depth datagrams in flight on every socket of the target
 * until end, then nothing new is sent and the ones out are awaited for up
 * to --loss-ms (what is still out then is lost; if it comes back in a
 * later slice of this target it counts as late). Returns when the active
 * time ends: the last echo, or end if that was later (a lost datagram's
 * wait is not the server's work). */
static uint64_t udp_slice(struct target *t, uint64_t end, int measured)
{
    struct uworker *w = &t->uw;
    struct epoll_event evs[64];
    uint64_t now = now_ns(), next_sweep = now + 10000000ULL;
    w->last_echo_ns = 0;
    atomic_store(&g_phase, measured ? PH_MEASURE : PH_WARMUP);
    while ((now = now_ns()) < end) {
        for (int i = 0; i < w->n; i++)
            udp_fill(w, &w->s[i]);
        int ms = (int)((end - now + 999999ULL) / 1000000ULL);
        int k = epoll_wait(w->ep, evs, 64, ms < 5 ? ms : 5);
        for (int i = 0; i < k; i++)
            udp_read(w, &w->s[evs[i].data.u32]);
        now = now_ns();
        if (now >= next_sweep) {
            udp_sweep(w, now, 0);
            next_sweep = now + 10000000ULL;
        }
    }
    atomic_store(&g_phase, measured ? PH_SLICE_DRAIN : PH_DRAIN);
    uint64_t drain_end = now + (uint64_t)cfg.loss_ms * 1000000ULL;
    for (;;) {
        int busy = 0;
        for (int i = 0; i < w->n; i++)
            busy |= w->s[i].inflight > 0;
        if (!busy || now_ns() >= drain_end)
            break;
        int k = epoll_wait(w->ep, evs, 64, 5);
        for (int i = 0; i < k; i++)
            udp_read(w, &w->s[evs[i].data.u32]);
    }
    udp_sweep(w, 0, 1); /* what is still out is lost */
    return w->last_echo_ns > end ? w->last_echo_ns : end;
}

/* One slice of target t: activate, run, drain. Records (round, position)
 * when round >= 0 (a measured round). */
static void run_slice(struct target *t, int round, int pos)
{
    struct worker *w = &t->w;
    int measured = round >= 0;
    uint64_t *done = cfg.udp ? &t->uw.msgs : &w->msgs;
    uint64_t msgs0 = *done;
    uint64_t cpu0 = t->npids ? target_cpu_ns(t) : 0;
    uint64_t t0 = now_ns();
    uint64_t end = t0 + (uint64_t)cfg.slice_ms * 1000000ULL;
    uint64_t t1;
    if (cfg.udp) {
        t1 = udp_slice(t, end, measured);
    } else {
        if (cfg.setup_rate)
            setup_slice(t, t0, end, measured);
        else
            echo_slice(t, t0, end, measured);
        t1 = now_ns();
    }
    /* the server has just sent its last echo (setup: the last client close
     * has reached it, so it is runnable until it has closed its end): let
     * it reach epoll_wait (at most 20 ms) so its CPU time is exact, then
     * read it */
    for (int k = 0; k < 100 && t->npids && target_running(t); k++) {
        t->settle_waits += k == 0;
        sleep_ns(200000ULL);
    }
    uint64_t cpu1 = t->npids ? target_cpu_ns(t) : 0;
    if (measured) {
        t->r_msgs[round] = *done - msgs0;
        t->r_ns[round] = t1 - t0;
        t->r_cpu[round] = cpu1 - cpu0;
        t->r_pos[round] = pos;
    }
}

static void print_u64_array(const char *name, const uint64_t *a, int n)
{
    printf(",\"%s\":[", name);
    for (int i = 0; i < n; i++)
        printf(i ? ",%llu" : "%llu", (unsigned long long)a[i]);
    printf("]");
}

static int run_sliced(void)
{
    int n = g_ntg;
    size_t scratch_len = cfg.msglen > RBUF_SIZE ? cfg.msglen : RBUF_SIZE;
    uint8_t *rbuf = malloc(RBUF_SIZE), *scratch = malloc(scratch_len);
    if (!rbuf || !scratch) {
        perror("hps_perf: malloc");
        return 3;
    }
    /* idle holders first: they connect while this process does */
    if (cfg.idle > 0)
        for (int k = 0; k < n; k++)
            holder_start(&g_tg[k]);
    uint64_t deadline = now_ns() + CONNECT_WINDOW_NS;
    for (int k = 0; k < n; k++) {
        struct target *t = &g_tg[k];
        struct worker *w = &t->w;
        w->idx = k;
        w->label = t->spec;
        w->nconns = cfg.conns;
        w->active = cfg.conns;
        w->conns = calloc((size_t)cfg.conns, sizeof *w->conns);
        w->rbuf = rbuf;
        w->scratch = scratch;
        w->ep = epoll_create1(EPOLL_CLOEXEC);
        t->r_msgs = calloc((size_t)cfg.rounds, sizeof *t->r_msgs);
        t->r_ns = calloc((size_t)cfg.rounds, sizeof *t->r_ns);
        t->r_cpu = calloc((size_t)cfg.rounds, sizeof *t->r_cpu);
        t->r_pos = calloc((size_t)cfg.rounds, sizeof *t->r_pos);
        if (!w->conns || w->ep < 0 || !t->r_msgs || !t->r_ns || !t->r_cpu || !t->r_pos) {
            perror("hps_perf: setup");
            return 3;
        }
        if (t->npids)
            (void)target_cpu_ns(t); /* the server processes exist */
        w->addr = (const struct sockaddr *)&t->addr;
        w->addrlen = t->addrlen;
        if (cfg.udp) {
            int rc = udp_worker_init(&t->uw, cfg.conns, 0, 1, w->addr, w->addrlen);
            if (rc != 0)
                return rc;
        } else if (cfg.setup_rate) {
            /* every slice connects its own; a target that accepts nothing
             * is a connect failure now, as in the other modes */
            int err = 0;
            int fd = connect_blocking(&t->addr, t->addrlen, deadline, &err);
            if (fd < 0) {
                fprintf(stderr, "hps_perf: connect to %s failed: %s\n", t->spec, strerror(err));
                return 1;
            }
            close(fd);
        }
        for (int i = 0; i < cfg.conns; i++) {
            struct conn *c = &w->conns[i];
            int err = 0;
            c->id = (uint32_t)i;
            c->wq_cap = (size_t)cfg.depth * cfg.msglen;
            c->wq = malloc(c->wq_cap);
            c->ts = calloc((size_t)cfg.depth, sizeof *c->ts);
            if (!c->wq || !c->ts) {
                perror("hps_perf: malloc");
                return 3;
            }
            if (cfg.setup_rate || cfg.udp) {
                c->fd = -1;
                c->state = ST_CLOSED;
                w->active--;
                continue;
            }
            c->fd = connect_blocking(&t->addr, t->addrlen, deadline, &err);
            if (c->fd < 0) {
                fprintf(stderr, "hps_perf: connect to %s failed: %s\n", t->spec, strerror(err));
                return 1;
            }
            c->state = ST_OPEN;
            ep_set(w, c, EPOLL_CTL_ADD, EPOLLIN);
        }
    }
    for (int k = 0; k < n && cfg.idle > 0; k++) {
        int32_t msg[2];
        if (holder_read(&g_tg[k], msg) != 0 || msg[0] != 0) {
            fprintf(stderr, "hps_perf: idle connections to %s failed: %s\n", g_tg[k].spec,
                    msg[0] == -1 ? strerror(msg[1]) : "holder process died");
            return 1;
        }
    }

    int total = cfg.warmup_rounds + cfg.rounds;
    for (int r = 0; r < total; r++) {
        int m = r - cfg.warmup_rounds; /* measured round index, < 0 in warm-up */
        int start = (m >= 0 ? m : r) % n;
        for (int j = 0; j < n; j++)
            run_slice(&g_tg[(start + j) % n], m, j);
    }
    alarm(0);

    /* idle connections: each must still be open */
    uint64_t all_msgs = 0, all_errors = 0;
    for (int k = 0; k < n; k++) {
        struct target *t = &g_tg[k];
        if (cfg.idle > 0) {
            int32_t msg[2];
            (void)!write(t->hold_cmd, "x", 1);
            if (holder_read(t, msg) != 0 || msg[0] != 1) {
                fprintf(stderr, "hps_perf: %s: idle-connection holder died\n", t->spec);
                t->w.idle_lost = (uint64_t)cfg.idle;
            } else {
                t->w.idle_lost = (uint64_t)msg[1];
                if (msg[1] > 0)
                    fprintf(stderr, "hps_perf: %s: %d idle connection(s) closed by the server "
                            "or received bytes\n", t->spec, (int)msg[1]);
            }
            close(t->hold_cmd);
            close(t->hold_res);
            waitpid(t->holder, NULL, 0);
        }
        for (int i = 0; i < t->w.nconns; i++)
            conn_close(&t->w, &t->w.conns[i]);
        if (cfg.udp) {
            t->w.msgs = t->uw.msgs;
            t->w.hist = t->uw.hist;
            t->w.errors = t->uw.errors;
            for (int i = 0; i < t->uw.n; i++)
                close(t->uw.s[i].fd);
        }
        all_msgs += t->w.msgs;
        all_errors += t->w.errors + t->w.idle_lost;
    }

    const char *mode = cfg.udp ? "udp" : cfg.mode == MODE_PACK ? "pack" : "echo";
    if (cfg.json)
        printf("{\"test\":\"sliced\",\"mode\":\"%s\",\"setup_rate\":%s,\"conns\":%d,"
               "\"idle\":%d,\"size\":%zu,\"depth\":%d,\"flag\":%u,\"slice_ms\":%d,"
               "\"rounds\":%d,\"warmup_rounds\":%d,\"targets\":[",
               mode, cfg.setup_rate ? "true" : "false", cfg.conns, cfg.idle, cfg.size,
               cfg.depth, cfg.flag, cfg.slice_ms, cfg.rounds, cfg.warmup_rounds);
    else
        printf("sliced mode=%s%s targets=%d conns=%d idle=%d size=%zu depth=%d slice=%dms "
               "rounds=%d warmup_rounds=%d\n",
               mode, cfg.setup_rate ? " setup-rate" : "", n, cfg.conns, cfg.idle, cfg.size,
               cfg.depth, cfg.slice_ms, cfg.rounds, cfg.warmup_rounds);
    for (int k = 0; k < n; k++) {
        struct target *t = &g_tg[k];
        const struct hist *h = &t->w.hist;
        uint64_t ns = 0, cpu = 0;
        for (int r = 0; r < cfg.rounds; r++) {
            ns += t->r_ns[r];
            cpu += t->r_cpu[r];
        }
        double secs = (double)ns / 1e9, cpus = (double)cpu / 1e9;
        double rate = secs > 0 ? (double)t->w.msgs / secs : 0.0;
        double mbps = rate * (double)cfg.size / 1e6;
        double per_cpu = cpus > 0 ? (double)t->w.msgs / cpus : 0.0;
        double p50 = hist_pct(h, 0.50) / 1e3, p99 = hist_pct(h, 0.99) / 1e3;
        double p999 = hist_pct(h, 0.999) / 1e3;
        double mean = h->count ? (double)h->sum / (double)h->count / 1e3 : 0.0;
        uint64_t errors = t->w.errors + t->w.idle_lost;
        if (cfg.json) {
            printf("%s{\"target\":\"%s\",\"pids\":[", k ? "," : "", t->spec);
            for (int i = 0; i < t->npids; i++)
                printf(i ? ",%d" : "%d", (int)t->pids[i]);
            printf("],\"msgs\":%llu,\"active_s\":%.6f,\"msgs_per_s\":%.1f,\"mb_per_s\":%.3f,"
                   "\"cpu_s\":%.6f,\"msgs_per_cpu_s\":%.1f,\"p50_us\":%.1f,\"p99_us\":%.1f,"
                   "\"p999_us\":%.1f,\"mean_us\":%.1f,\"max_us\":%.1f,\"errors\":%llu,"
                   "\"idle_lost\":%llu,\"cpu_settle_waits\":%d",
                   (unsigned long long)t->w.msgs, secs, rate, mbps, cpus, per_cpu, p50, p99,
                   p999, mean, (double)h->max / 1e3, (unsigned long long)errors,
                   (unsigned long long)t->w.idle_lost, t->settle_waits);
            if (cfg.udp)
                printf(",\"sent\":%llu,\"echoed\":%llu,\"lost\":%llu,\"late\":%llu",
                       (unsigned long long)t->uw.sent, (unsigned long long)t->uw.echoed,
                       (unsigned long long)t->uw.lost, (unsigned long long)t->uw.late);
            print_u64_array("round_msgs", t->r_msgs, cfg.rounds);
            print_u64_array("round_ns", t->r_ns, cfg.rounds);
            print_u64_array("round_cpu_ns", t->r_cpu, cfg.rounds);
            printf(",\"round_pos\":[");
            for (int r = 0; r < cfg.rounds; r++)
                printf(r ? ",%d" : "%d", t->r_pos[r]);
            printf("]}");
        } else {
            if (cfg.setup_rate)
                printf("target=%s connects=%llu active=%.2fs conns/s=%.0f", t->spec,
                       (unsigned long long)t->w.msgs, secs, rate);
            else
                printf("target=%s msgs=%llu active=%.2fs msgs/s=%.0f MB/s=%.2f", t->spec,
                       (unsigned long long)t->w.msgs, secs, rate, mbps);
            if (t->npids)
                printf(" server_cpu=%.3fs %s/cpu-s=%.0f", cpus,
                       cfg.setup_rate ? "conns" : "msgs", per_cpu);
            if (cfg.udp)
                printf(" sent=%llu lost=%llu late=%llu", (unsigned long long)t->uw.sent,
                       (unsigned long long)t->uw.lost, (unsigned long long)t->uw.late);
            printf(" p50=%.0fus p99=%.0fus p99.9=%.0fus errors=%llu verified=%s\n", p50, p99,
                   p999, (unsigned long long)errors, t->w.msgs > 0 ? "yes" : "no");
        }
    }
    if (cfg.json)
        printf("],\"msgs\":%llu,\"errors\":%llu,\"verified\":%s}\n",
               (unsigned long long)all_msgs, (unsigned long long)all_errors,
               all_msgs > 0 ? "true" : "false");
    fflush(stdout);
    for (int k = 0; k < n; k++)
        if (g_tg[k].w.msgs == 0) {
            fprintf(stderr, "hps_perf: ERROR: %s: no %s completed in its slices\n",
                    g_tg[k].spec, cfg.setup_rate ? "connect+echo+close cycle" : "message");
            return 3;
        }
    /* UDP: a corrupted, wrong-sized or unsendable datagram, as in whole runs */
    return all_errors > 0 ? (cfg.udp ? 2 : 4) : 0;
}

int main(int argc, char **argv)
{
    parse_args(argc, argv);
    if (cfg.targets)
        parse_targets();
    else
        resolve();

    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm;
    sigaction(SIGALRM, &sa, NULL);
    raise_nofile();
    if (cfg.targets) {
        /* hard bound: connecting + every slice drained at its deadline + 10 s */
        alarm((unsigned)((double)CONNECT_WINDOW_NS / 1e9 * g_ntg +
                         (double)(cfg.rounds + cfg.warmup_rounds) * g_ntg *
                             ((double)cfg.slice_ms / 1e3 + (double)DRAIN_NS / 1e9 +
                              (cfg.udp ? (double)cfg.loss_ms / 1e3 : 0.0)) +
                         10.0));
        return run_sliced();
    }
    /* hard bound: connect window + warmup + duration + 5 s (drain 1 s fits in) */
    alarm((unsigned)((double)CONNECT_WINDOW_NS / 1e9 + cfg.duration + cfg.warmup + 5.0));
    if (cfg.udp)
        return run_udp();

    int T = cfg.threads;
    struct worker *ws = calloc((size_t)T, sizeof *ws);
    if (!ws) {
        perror("hps_perf: calloc");
        return 3;
    }
    size_t scratch_len = cfg.msglen > RBUF_SIZE ? cfg.msglen : RBUF_SIZE;
    for (int t = 0; t < T; t++) {
        struct worker *w = &ws[t];
        w->idx = t;
        w->nconns = cfg.conns / T + (t < cfg.conns % T ? 1 : 0);
        w->conns = calloc((size_t)w->nconns, sizeof *w->conns);
        w->nidle = cfg.idle / T + (t < cfg.idle % T ? 1 : 0);
        w->idle_fds = calloc((size_t)w->nidle + 1, sizeof *w->idle_fds);
        if (!w->idle_fds) {
            perror("hps_perf: calloc");
            return 3;
        }
        w->rbuf = malloc(RBUF_SIZE);
        w->scratch = malloc(scratch_len);
        w->ep = epoll_create1(EPOLL_CLOEXEC);
        if (!w->conns || !w->rbuf || !w->scratch || w->ep < 0) {
            perror("hps_perf: setup");
            return 3;
        }
        for (int i = 0; i < w->nconns; i++) {
            struct conn *c = &w->conns[i];
            c->fd = -1;
            c->state = ST_CLOSED;
            c->id = (uint32_t)(t + i * T);
            c->wq_cap = (size_t)cfg.depth * cfg.msglen;
            c->wq = malloc(c->wq_cap);
            c->ts = calloc((size_t)cfg.depth, sizeof *c->ts);
            if (!c->wq || !c->ts) {
                perror("hps_perf: malloc");
                return 3;
            }
        }
    }

    pthread_barrier_init(&g_barrier, NULL, (unsigned)T + 1u);
    if (cfg.count > 0) /* every echo counts, from the very first */
        atomic_store(&g_phase, PH_MEASURE);
    for (int t = 0; t < T; t++) {
        if (pthread_create(&ws[t].th, NULL, worker_main, &ws[t]) != 0) {
            fprintf(stderr, "hps_perf: pthread_create failed\n");
            return 3;
        }
    }
    pthread_barrier_wait(&g_barrier); /* all connected (or failed) */
    for (int t = 0; t < T; t++) {
        if (ws[t].connect_failed) {
            fprintf(stderr, "hps_perf: connect to %s:%s failed: %s\n", cfg.host, cfg.port,
                    strerror(ws[t].connect_errno));
            atomic_store(&g_abort, 1);
            return 1;
        }
    }

    uint64_t t_m0, t_m1;
    if (cfg.count > 0) {
        /* fixed work: measure from the first send to the last echo */
        t_m0 = now_ns();
        atomic_store(&g_phase, PH_MEASURE);
        if (cfg.marks)
            fprintf(stderr, "hps_perf: mark measure-start\n");
        for (int t = 0; t < T; t++)
            pthread_join(ws[t].th, NULL);
        t_m1 = now_ns();
        if (cfg.marks)
            fprintf(stderr, "hps_perf: mark measure-end\n");
    } else {
        uint64_t t_start = now_ns();
        atomic_store(&g_phase, PH_WARMUP);
        sleep_until(t_start + (uint64_t)(cfg.warmup * 1e9));
        t_m0 = now_ns();
        atomic_store(&g_phase, PH_MEASURE);
        if (cfg.marks)
            fprintf(stderr, "hps_perf: mark measure-start\n");
        sleep_until(t_m0 + (uint64_t)(cfg.duration * 1e9));
        atomic_store(&g_phase, PH_DRAIN);
        t_m1 = now_ns();
        if (cfg.marks)
            fprintf(stderr, "hps_perf: mark measure-end\n");
        for (int t = 0; t < T; t++)
            pthread_join(ws[t].th, NULL);
    }
    alarm(0);

    static struct hist h;
    uint64_t msgs = 0, errors = 0, idle_lost = 0;
    for (int t = 0; t < T; t++) {
        hist_merge(&h, &ws[t].hist);
        msgs += ws[t].msgs;
        errors += ws[t].errors + ws[t].idle_lost;
        idle_lost += ws[t].idle_lost;
    }
    double secs = (double)(t_m1 - t_m0) / 1e9;
    double rate = (double)msgs / secs;
    double mbps = (double)msgs * (double)cfg.size / secs / 1e6;
    double p50 = hist_pct(&h, 0.50) / 1e3;
    double p99 = hist_pct(&h, 0.99) / 1e3;
    double p999 = hist_pct(&h, 0.999) / 1e3;
    double mean = h.count ? (double)h.sum / (double)h.count / 1e3 : 0.0;
    double maxl = (double)h.max / 1e3;
    int verified = msgs > 0;
    const char *mode = cfg.mode == MODE_PACK ? "pack" : "echo";

    if (cfg.json) {
        printf("{\"test\":\"%s\",\"mode\":\"%s\",\"host\":\"%s\",\"port\":%s,\"conns\":%d,"
               "\"size\":%zu,\"depth\":%d,\"threads\":%d,\"flag\":%u,\"duration_s\":%.3f,"
               "\"idle\":%d,\"idle_lost\":%llu,\"count\":%ld,",
               cfg.setup_rate ? "setup_rate" : "echo", mode, cfg.host, cfg.port, cfg.conns,
               cfg.size, cfg.depth, T, cfg.flag, secs, cfg.idle,
               (unsigned long long)idle_lost, cfg.count);
        if (cfg.setup_rate)
            printf("\"connects\":%llu,\"conns_per_s\":%.1f,", (unsigned long long)msgs, rate);
        else
            printf("\"msgs\":%llu,\"msgs_per_s\":%.1f,\"mb_per_s\":%.3f,",
                   (unsigned long long)msgs, rate, mbps);
        printf("\"p50_us\":%.1f,\"p99_us\":%.1f,\"p999_us\":%.1f,\"mean_us\":%.1f,"
               "\"max_us\":%.1f,\"errors\":%llu,\"verified\":%s}\n",
               p50, p99, p999, mean, maxl, (unsigned long long)errors,
               verified ? "true" : "false");
    } else if (cfg.setup_rate) {
        printf("setup-rate mode=%s conns=%d size=%zu threads=%d duration=%.2fs connects=%llu "
               "conns/s=%.0f p50=%.0fus p99=%.0fus p99.9=%.0fus errors=%llu verified=%s\n",
               mode, cfg.conns, cfg.size, T, secs, (unsigned long long)msgs, rate, p50, p99,
               p999, (unsigned long long)errors, verified ? "yes" : "no");
    } else {
        printf("mode=%s conns=%d idle=%d size=%zu depth=%d threads=%d duration=%.2fs msgs=%llu "
               "msgs/s=%.0f MB/s=%.2f p50=%.0fus p99=%.0fus p99.9=%.0fus errors=%llu "
               "verified=%s\n",
               mode, cfg.conns, cfg.idle, cfg.size, cfg.depth, T, secs,
               (unsigned long long)msgs, rate, mbps, p50, p99, p999,
               (unsigned long long)errors, verified ? "yes" : "no");
    }
    fflush(stdout);
    if (msgs == 0) {
        fprintf(stderr, "hps_perf: ERROR: no message completed during the measured run\n");
        return 3;
    }
    if (cfg.count > 0 && msgs != (uint64_t)cfg.count * (uint64_t)cfg.conns) {
        fprintf(stderr, "hps_perf: ERROR: %llu of %llu messages echoed\n",
                (unsigned long long)msgs, (unsigned long long)cfg.count * (unsigned long long)cfg.conns);
        return 4;
    }
    if ((errors > 0 && !cfg.setup_rate) || idle_lost > 0)
        return 4;
    return 0;
}
