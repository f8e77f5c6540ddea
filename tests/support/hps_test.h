/* hps_test.h - shared helpers for the C tests: an event recorder that
 * waits with deadlines (no fixed sleeps), plain blocking sockets for the
 * peer side, and fixture paths. */
#ifndef HPS_TEST_H
#define HPS_TEST_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "hpsock.h"

#ifndef HPS_FIXTURES_DIR
#define HPS_FIXTURES_DIR "tests/fixtures"
#endif

/* Default deadline for any wait in a test. */
#define T_WAIT_MS 5000

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

/* Milliseconds on a monotonic clock. */
uint64_t t_now_ms(void);
/* Read a whole fixture file (path relative to tests/fixtures); malloc'd,
 * NUL-terminated; *len may be NULL. */
char *t_fixture(const char *rel, size_t *len);

#endif
