/* test_support.c - the test helpers' own safety net: a test that fails
 * with endpoints running, or that forgets to free one, must not take the
 * tests after it down with it (see t_teardown in support/hps_test.h).
 *
 * Two inner groups are run on purpose to fail, one test each; the outer
 * group checks what they left behind. Their "[  FAILED  ]" lines in the
 * output are expected. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <setjmp.h>
#include <cmocka.h>

#include "hps_test.h"

typedef struct probe {
  uint16_t port;
  int fd;         /* the peer's socket, still connected when the test died */
  int inner_fail; /* failures reported by the inner group */
} probe;

static probe g_dies, g_forgets;

/* A handler whose user data lives on the test's stack, as the recorders
 * of most tests do: after the test has died, a call would write into
 * whatever the stack holds then. */
typedef struct stack_user {
  int events; /* atomic: the loop thread counts, the test waits */
  char pad[256];
} stack_user;

static int stack_handler(void *user, const hps_event *ev) {
  stack_user *u = user;
  (void)ev;
  __atomic_add_fetch(&u->events, 1, __ATOMIC_RELEASE);
  memset(u->pad, 0x5a, sizeof(u->pad));
  return HPS_HR_OK;
}

static hps_endpoint *start_server(void *user, uint16_t *port) {
  hps_endpoint *ep = NULL;
  assert_int_equal(hps_create(HPS_TCP_SERVER, stack_handler, user, &ep), 0);
  assert_int_equal(hps_setopt(ep, HPS_OPT_WORKERS, 1), 0);
  assert_int_equal(hps_start(ep, "127.0.0.1", 0), 0);
  assert_int_equal(hps_listen_address(ep, NULL, 0, port), 0);
  return ep;
}

/* A running server with u (on the caller's stack) as its handler's data,
 * and a peer connected to it whose ACCEPT reached the handler. */
static void serve_one_peer(stack_user *u, probe *p) {
  memset(u, 0, sizeof(*u));
  start_server(u, &p->port);
  p->fd = t_connect("127.0.0.1", p->port);
  while (__atomic_load_n(&u->events, __ATOMIC_ACQUIRE) == 0) usleep(1000);
}

/* Inner test: dies on an assertion while its server runs and its peer is
 * connected. */
static void dies_with_a_running_server(void **state) {
  stack_user u;
  (void)state;
  serve_one_peer(&u, &g_dies);
  fail_msg("deliberate failure (test_support checks what it leaves)");
}

/* Inner test: passes, but never frees its server. */
static void forgets_to_free(void **state) {
  stack_user u;
  (void)state;
  serve_one_peer(&u, &g_forgets);
}

static int run_inner(const char *name, void (*fn)(void **)) {
  const struct CMUnitTest t[] = {{name, fn, NULL, t_teardown, NULL}};
  fprintf(stderr, "test_support: the group \"%s\" is meant to fail\n", name);
  return _cmocka_run_group_tests(name, t, 1, NULL, NULL);
}

/* The peer sees the server go: EOF or a reset, within the wait. */
static int peer_sees_close(int fd) {
  char c;
  return t_wait_eof(fd, T_WAIT_MS) && recv(fd, &c, 1, MSG_DONTWAIT) <= 0;
}

/* Nobody listens on port any more. */
static int port_refused(uint16_t port) {
  struct sockaddr_in a;
  int fd = socket(AF_INET, SOCK_STREAM, 0), r;
  memset(&a, 0, sizeof(a));
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  r = connect(fd, (struct sockaddr *)&a, sizeof(a));
  close(fd);
  return r != 0 && errno == ECONNREFUSED;
}

static void a_failed_test_leaves_nothing_running(void **state) {
  (void)state;
  assert_int_equal(g_dies.inner_fail, 1);
  assert_int_equal(t_live_endpoints(), 0);
  assert_true(peer_sees_close(g_dies.fd));
  assert_true(port_refused(g_dies.port));
}

static void a_forgotten_endpoint_fails_its_test_and_is_freed(void **state) {
  (void)state;
  assert_int_equal(g_forgets.inner_fail, 1); /* the teardown failed it */
  assert_int_equal(t_live_endpoints(), 0);
  assert_true(peer_sees_close(g_forgets.fd));
  assert_true(port_refused(g_forgets.port));
}

/* The registry follows hps_create/hps_free, refusals included. */
static void registry_follows_create_and_free(void **state) {
  hps_endpoint *a = NULL, *b = NULL;
  stack_user u;
  (void)state;
  memset(&u, 0, sizeof(u));
  assert_int_equal(hps_create(HPS_TCP_SERVER, NULL, &u, &a), HPS_EINVAL);
  assert_int_equal(t_live_endpoints(), 0);
  assert_int_equal(hps_create(HPS_TCP_AGENT, stack_handler, &u, &a), 0);
  assert_int_equal(hps_create(HPS_TCP_CLIENT, stack_handler, &u, &b), 0);
  assert_int_equal(t_live_endpoints(), 2);
  assert_int_equal(hps_free(a), 0);
  assert_int_equal(t_live_endpoints(), 1);
  assert_int_equal(hps_free(NULL), HPS_EHANDLE); /* refused: no change */
  assert_int_equal(t_live_endpoints(), 1);
  assert_int_equal(hps_free(b), 0);
  assert_int_equal(t_live_endpoints(), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(a_failed_test_leaves_nothing_running),
      cmocka_unit_test(a_forgotten_endpoint_fails_its_test_and_is_freed),
      cmocka_unit_test(registry_follows_create_and_free),
  };
  int r;
  g_dies.fd = g_forgets.fd = -1;
  g_dies.inner_fail = run_inner("dies_on_purpose", dies_with_a_running_server);
  g_forgets.inner_fail = run_inner("forgets_on_purpose", forgets_to_free);
  r = cmocka_run_group_tests_name("support", tests, NULL, NULL);
  if (g_dies.fd >= 0) close(g_dies.fd);
  if (g_forgets.fd >= 0) close(g_forgets.fd);
  return r;
}
