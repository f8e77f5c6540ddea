/* hps_test.h - shared helpers for the C tests: an event recorder that
 * waits with deadlines (no fixed sleeps), plain blocking sockets for the
 * peer side, and fixture paths. */
#ifndef HPS_TEST_H
#define HPS_TEST_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "hpsock.h"

#ifndef HPS_FIXTURES_DIR
#define HPS_FIXTURES_DIR "tests/fixtures"
#endif

/* Default deadline for any wait in a test. */
#define T_WAIT_MS 5000

/* Sanitizer builds, from gcc's __SANITIZE_*__ or clang's __has_feature:
 * tests scale their volume down under TSan, and skip the checks that
 * measure glibc's allocator, which the sanitizer runtimes replace. */
#if defined(__SANITIZE_THREAD__)
#define HPS_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define HPS_TSAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define HPS_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define HPS_ASAN 1
#endif
#endif
#if defined(__has_feature) /* gcc has no MemorySanitizer */
#if __has_feature(memory_sanitizer)
#define HPS_MSAN 1
#endif
#endif

typedef struct t_ev {
  int type, op, error;
  hps_conn_id conn;
  size_t len;
  uintptr_t extra;
} t_ev;

typedef struct t_rec t_rec;
/* Optional hook run inside the handler after recording; its return value is
 * the handler's result (default HPS_HR_OK). */
typedef int (*t_hook)(t_rec *r, const hps_event *ev);

struct t_rec {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  t_ev *evs;
  size_t nevs, cap;
  int counts[16];
  /* received bytes (push/pack: copied; pull: fetched if autofetch) */
  unsigned char *data;
  size_t ndata, datacap;
  int autofetch;  /* pull model: fetch everything in RECEIVE */
  int echo;       /* send every received chunk back */
  t_hook hook;
  void *user;     /* free for the test */
  int in_handler; /* concurrency check: >1 means overlapping events */
  int overlap;    /* set when two events of the endpoint overlapped */
};

void t_rec_init(t_rec *r);
void t_rec_free(t_rec *r);
/* The hps_event_fn to pass to hps_create with the recorder as user. */
int t_rec_handler(void *user, const hps_event *ev);
/* Wait until at least n events of type were recorded; 0 or -1 on timeout. */
int t_rec_wait(t_rec *r, int type, int n, int timeout_ms);
/* Wait until at least n bytes were received in total. */
int t_rec_wait_bytes(t_rec *r, size_t n, int timeout_ms);
int t_rec_count(t_rec *r, int type);
/* Copy of the i-th event of a type (0-based); returns 0 or -1. */
int t_rec_get(t_rec *r, int type, int i, t_ev *out);

/* A started server on 127.0.0.1 port 0 with `workers` loops and model;
 * *port receives the bound port. Asserts on failure. */
hps_endpoint *t_server(t_rec *r, int workers, int model, uint16_t *port);

/* Plain blocking sockets for the other side. */
int t_connect(const char *host, uint16_t port); /* fd, asserts */
void t_send_all(int fd, const void *buf, size_t len);
/* Read exactly len bytes within timeout_ms; returns bytes read. */
size_t t_recv_exact(int fd, void *buf, size_t len, int timeout_ms);
/* 1 if the peer closed (EOF or reset) within timeout_ms. */
int t_wait_eof(int fd, int timeout_ms);
/* Send on fd, past an established TLS session, a well-formed TLS 1.2
 * application-data record of 64 noise bytes: one that cannot decrypt. */
void t_send_tls_junk(int fd);

/* Milliseconds on a monotonic clock. */
uint64_t t_now_ms(void);
/* *ts = now + timeout_ms on CLOCK_REALTIME, the clock
 * pthread_cond_timedwait measures its absolute deadline on. */
void t_deadline(struct timespec *ts, int timeout_ms);
/* Read a whole fixture file (path relative to tests/fixtures); malloc'd,
 * NUL-terminated; *len may be NULL. */
char *t_fixture(const char *rel, size_t *len);

/* ---- helpers for the data-path suites (echo, models, toolkit) ---- */

/* A started agent with `workers` loops and model. Asserts on failure. */
hps_endpoint *t_agent(t_rec *r, int workers, int model);
/* A started client with model, connecting to 127.0.0.1:port (CONNECT or a
 * CLOSE with op CONNECT follows). Asserts on failure. */
hps_endpoint *t_client(t_rec *r, int model, uint16_t port);
/* Wait until pred(r, arg) holds; pred runs with r->mu held. 0 or -1. */
int t_rec_wait_for(t_rec *r, int (*pred)(t_rec *r, void *arg), void *arg,
                   int timeout_ms);
/* Wait until conn has an event of type; copies the first one to *out (may
 * be NULL). 0 or -1 on timeout. */
int t_rec_wait_conn(t_rec *r, hps_conn_id conn, int type, t_ev *out,
                    int timeout_ms);
/* The types of conn's events in order into types[cap]; returns how many
 * there are (may exceed cap). */
size_t t_rec_conn_types(t_rec *r, hps_conn_id conn, int *types, size_t cap);
/* Events of a type for conn. */
int t_rec_conn_count(t_rec *r, hps_conn_id conn, int type);
/* A malloc'd copy of the bytes received so far; *len gets their count. */
unsigned char *t_rec_data_copy(t_rec *r, size_t *len);

/* Poll fn(arg) until it returns non-zero (about every millisecond), for
 * state the recorder does not see (stats, counts). 0 or -1 on timeout. */
int t_poll(int (*fn)(void *arg), void *arg, int timeout_ms);

/* A plain listening socket on 127.0.0.1, port 0, the given backlog. */
int t_listen(int backlog, uint16_t *port);
/* A non-blocking socket whose connect to 127.0.0.1:port was begun. */
int t_connect_nb(uint16_t port);
/* Close with SO_LINGER 0, so the peer gets a reset. */
void t_close_reset(int fd);
/* Read until EOF/reset or timeout; returns bytes read into buf (at most
 * cap; later bytes are counted in *total if not NULL) and sets *eof. */
size_t t_recv_until_eof(int fd, void *buf, size_t cap, size_t *total,
                        int *eof, int timeout_ms);

/* A deterministic byte pattern: byte at stream position pos of stream
 * seed, not periodic at 256 so shifted or repeated bytes show. */
unsigned char t_pat(uint32_t seed, uint64_t pos);
void t_pat_fill(void *buf, size_t len, uint32_t seed, uint64_t pos);
/* Offset of the first byte that differs from the pattern, or -1. */
long t_pat_check(const void *buf, size_t len, uint32_t seed, uint64_t pos);

/* Per-connection byte sinks and checks for tests with many connections;
 * every function is thread-safe. */
typedef struct t_conns t_conns;
t_conns *t_conns_new(void);
void t_conns_free(t_conns *t);
/* Append bytes to conn's sink (creating it). */
void t_conns_add(t_conns *t, hps_conn_id conn, const void *data, size_t len);
/* Bytes in conn's sink; copies up to cap into buf (may be NULL). */
size_t t_conns_get(t_conns *t, hps_conn_id conn, void *buf, size_t cap);
/* Concurrency probe: call enter at the start of a handler and leave at its
 * end; returns 1 (and remembers it) if another event of conn was running.
 * Also remembers whether conn's events ran on more than one thread. */
int t_conns_enter(t_conns *t, hps_conn_id conn);
void t_conns_leave(t_conns *t, hps_conn_id conn);
int t_conns_overlaps(t_conns *t);
int t_conns_thread_switches(t_conns *t);
/* Number of connections seen. */
int t_conns_size(t_conns *t);

/* Endpoints with options set before the start: opts holds key, value pairs
 * ending with a key of 0 (NULL: none). Assert on failure. */
hps_endpoint *t_server_opts(t_rec *r, int workers, int model,
                            const int64_t *opts, uint16_t *port);
hps_endpoint *t_agent_opts(t_rec *r, int workers, int model,
                           const int64_t *opts);
/* hps_stop then hps_free; both must return 0. */
void t_stop_free(hps_endpoint *ep);
/* The connection of the i-th (0-based) event of a type; fails the test if
 * it does not come within T_WAIT_MS. */
hps_conn_id t_nth_conn(t_rec *r, int type, int i);
/* conn's first event of a type; fails the test after T_WAIT_MS. */
t_ev t_conn_event(t_rec *r, hps_conn_id conn, int type);
/* Fails the test unless the CLOSE event e has op and error. */
void t_expect_close(t_ev e, int op, int error);
/* conn's events are the `head` types, then only RECEIVE, SEND, HIGH_WATER
 * and LOW_WATER, then exactly one CLOSE, last. Call when no event can follow (after a stop). */
void t_check_conn_events(t_rec *r, hps_conn_id conn, const int *head,
                         size_t nhead);
/* As t_connect to 127.0.0.1:port, with SO_RCVBUF set before the connect
 * (so the window is small from the start). */
int t_connect_rcvbuf(uint16_t port, int bytes);
/* Wait until id is not found any more (its CLOSE handler has returned:
 * while it runs, the connection's stats and extra data stay readable).
 * 0, or -1 on timeout. */
int t_wait_conn_gone(hps_endpoint *ep, hps_conn_id id, int timeout_ms);
/* Tagged records for "sends never interleave" checks: a record of len
 * (>= 6) bytes is [src][seq: 4 bytes LE][pattern of (src, seq)]. */
void t_record_fill(unsigned char *rec, size_t len, int src, uint32_t seq);
/* Fails the test unless b holds whole records of reclen bytes, each from
 * a src < nsrc, each src's seq counting 0, 1, ... up to per_src - 1. */
void t_records_check(const unsigned char *b, size_t len, size_t reclen,
                     int nsrc, uint32_t per_src);

/* ---- appended helpers (lifecycle/api suites) ---- */

/* Events recorded so far, all types together. */
size_t t_rec_total(t_rec *r);
/* Deadline-based "nothing more happens": 0 if no event at all was recorded
 * during the next ms milliseconds, -1 as soon as one is (no fixed sleep
 * for correctness: a quiet endpoint simply runs the deadline out). */
int t_rec_quiet(t_rec *r, int ms);
/* Index in the recording order of the i-th event of a type (0-based), or
 * -1 when there is none. */
int t_rec_index(t_rec *r, int type, int i);
/* Copy of the last event recorded (any type); 0, or -1 when none. */
int t_rec_last(t_rec *r, t_ev *out);

/* As t_connect, but a failed connect is returned, not asserted: an fd, or
 * -errno. */
int t_try_connect(const char *host, uint16_t port);
/* Open file descriptors of this process (from /proc/self/fd). */
int t_count_fds(void);
/* Resident set of this process in bytes (from /proc/self/statm), 0 when
 * it cannot be read. */
size_t t_rss_bytes(void);
/* Wait (deadline, short polls) until hps_conn_count(ep) == n (open
 * connections: a closing one no longer counts, though its CLOSE may still
 * be on its way). 0, or -1 on timeout. */
int t_wait_conn_count(hps_endpoint *ep, int n, int timeout_ms);

/* ---- endpoints a failed test leaves running ----
 * A cmocka assertion leaves its test by longjmp, past the test's hps_free
 * calls: its endpoints kept running, their handlers writing into the dead
 * test's stack, and the next tests failed or crashed in a cascade. So every
 * endpoint made through hps_create in a test is registered here (the
 * handler goes through a trampoline), hps_free unregisters it, and each
 * test has t_teardown: it frees what its test left, with the handlers cut
 * off first, and fails the test if anything was left. */
int t_hps_create(int role, hps_event_fn fn, void *user, hps_endpoint **out);
int t_hps_free(hps_endpoint *ep);
/* Endpoints made through t_hps_create and not freed yet. */
int t_live_endpoints(void);
/* cmocka teardown: frees what the test left running; -1 if there was any. */
int t_teardown(void **state);
#define hps_create(role, fn, user, out) t_hps_create(role, fn, user, out)
#define hps_free(ep) t_hps_free(ep)
#ifdef cmocka_unit_test /* cmocka.h came first: give every test the teardown */
#undef cmocka_unit_test
#define cmocka_unit_test(f) cmocka_unit_test_teardown(f, t_teardown)
#endif

#endif
