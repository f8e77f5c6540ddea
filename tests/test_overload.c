/* test_overload.c - a server past its descriptor limit: accepting pauses
 * and the excess is shed instead of the loops spinning on accept; once the
 * load has gone it serves again, and it stops cleanly, however many
 * overloads came.
 *
 * The server runs in a forked child with a low RLIMIT_NOFILE: the clients
 * (here, in the parent) do not share its descriptor table, the child's CPU
 * time and descriptors can be read from /proc, and a child that wedges is
 * killed, not the test program. The child reports over a pipe; it uses no
 * cmocka assertion (a failing one would run the remaining tests in it). */
#define _GNU_SOURCE /* pipe2 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
/* after the three it needs */
#include <cmocka.h>

#include "hps_test.h"

/* The child's descriptor limit, and how many clients make an overload of
 * it. */
#define NOFILE 128
#define NCLIENTS 300
#define ROUNDS 3
/* The overloaded server's CPU over the window, % of one core, at most. */
#define CPU_MAX_PCT 20.0
#define CPU_WINDOW_MS 1000
#define FLOOD_MS 1000
#define FLOOD_MAX 3000

/* What the child says once started, and once stopped. */
typedef struct hello {
  int err; /* 0, or the failing call's result */
  uint16_t port;
  int64_t max_conns;
} hello;

typedef struct report {
  int err; /* 0 = every step worked, else what[] says */
  char what[200];
  uint64_t accept_errors, accept_shed;
  int64_t stop_ms; /* hps_stop + hps_free */
} report;

static struct {
  pid_t pid;
  int rfd;
} child = {-1, -1};

/* The clients of an overload (-1: none), closed by the teardown too. */
static int clients[NCLIENTS];

/* Kill a child a failed test left behind, then the usual teardown. */
static int teardown_child(void **state) {
  int i;
  if (child.pid > 0) {
    kill(child.pid, SIGKILL);
    waitpid(child.pid, NULL, 0);
  }
  if (child.rfd >= 0)
    close(child.rfd);
  for (i = 0; i < NCLIENTS; i++) {
    if (clients[i] >= 0)
      close(clients[i]);
    clients[i] = -1;
  }
  child.pid = -1;
  child.rfd = -1;
  return t_teardown(state);
}

static int write_all(int fd, const void *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0)
      return -1;
    p = (const char *)p + w;
    n -= (size_t)w;
  }
  return 0;
}

/* Read exactly n bytes from fd within timeout_ms: 0, or -1. */
static int read_exact(int fd, void *p, size_t n, int timeout_ms) {
  uint64_t deadline = t_now_ms() + (uint64_t)timeout_ms;
  while (n > 0) {
    struct pollfd pf = {fd, POLLIN, 0};
    uint64_t now = t_now_ms();
    ssize_t r;
    if (now >= deadline)
      return -1;
    if (poll(&pf, 1, (int)(deadline - now)) <= 0)
      continue;
    r = read(fd, p, n);
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0)
      return -1;
    p = (char *)p + r;
    n -= (size_t)r;
  }
  return 0;
}

/* ---- the child ---- */

static int echo_fn(void *user, const hps_event *ev) {
  (void)user;
  if (ev->type == HPS_EV_RECEIVE &&
      hps_send(ev->endpoint, ev->conn, ev->data, ev->len) != 0)
    return HPS_HR_ERROR;
  return HPS_HR_OK;
}

/* The child's own limit, and of the parent's descriptors only the
 * report pipe (*wfd, moved to 3): a failed test's clients must not count
 * against the child's limit. */
static void child_setup(int nofile, int *wfd) {
  struct rlimit rl;
  prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive the test */
  if (*wfd != 3) {
    dup2(*wfd, 3);
    *wfd = 3;
  }
  close_range(4, ~0u, 0);
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
    rl.rlim_cur = (rlim_t)nofile;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

/* A 2-worker echo server (max_conns 0: the default) until SIGTERM. The
 * real hps_create/hps_free, not the test registry's wrappers. */
static void child_server(int wfd, int64_t max_conns) {
  hps_endpoint *ep = NULL;
  hello h;
  report rep;
  sigset_t set;
  struct timespec wait = {60, 0};
  uint64_t t0;
  int r;
  memset(&h, 0, sizeof(h));
  memset(&rep, 0, sizeof(rep));
  child_setup(NOFILE, &wfd);
  /* blocked in every thread; sigtimedwait takes it below */
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, NULL);
  r = (hps_create)(HPS_TCP_SERVER, echo_fn, NULL, &ep);
  if (r == 0)
    r = hps_setopt(ep, HPS_OPT_WORKERS, 2);
  if (r == 0 && max_conns > 0)
    r = hps_setopt(ep, HPS_OPT_MAX_CONNECTIONS, max_conns);
  if (r == 0)
    r = hps_setopt(ep, HPS_OPT_EVENTS, HPS_EVBIT(HPS_EV_RECEIVE));
  if (r == 0)
    r = hps_start(ep, "127.0.0.1", 0);
  if (r == 0)
    r = hps_listen_address(ep, NULL, 0, &h.port);
  if (r == 0)
    r = hps_getopt(ep, HPS_OPT_MAX_CONNECTIONS, &h.max_conns);
  h.err = r;
  write_all(wfd, &h, sizeof(h));
  if (r != 0)
    _exit(2);
  if (sigtimedwait(&set, NULL, &wait) != SIGTERM) {
    rep.err = 1;
    snprintf(rep.what, sizeof(rep.what), "no SIGTERM came within 60 s");
  }
  t0 = t_now_ms();
  r = hps_stop(ep);
  if (r != 0 && rep.err == 0) {
    rep.err = r;
    snprintf(rep.what, sizeof(rep.what), "hps_stop: %s", hps_err_name(r));
  }
  hps_get_counter(ep, HPS_CNT_ACCEPT_ERRORS, &rep.accept_errors);
  hps_get_counter(ep, HPS_CNT_ACCEPT_SHED, &rep.accept_shed);
  r = (hps_free)(ep);
  if (r != 0 && rep.err == 0) {
    rep.err = r;
    snprintf(rep.what, sizeof(rep.what), "hps_free: %s", hps_err_name(r));
  }
  rep.stop_ms = (int64_t)(t_now_ms() - t0);
  write_all(wfd, &rep, sizeof(rep));
  _exit(0);
}

/* ---- the parent's view of the child ---- */

/* CPU ticks (user + system) the process has used so far, or -1. */
static long long cpu_ticks(pid_t pid) {
  char path[64], buf[1024], *p;
  unsigned long long ut = 0, st = 0;
  ssize_t n;
  int fd;
  snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
  fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return -1;
  n = read(fd, buf, sizeof(buf) - 1);
  close(fd);
  if (n <= 0)
    return -1;
  buf[n] = '\0';
  p = strrchr(buf, ')'); /* the name may hold spaces */
  /* then: state ppid pgrp session tty tpgid flags minflt cminflt majflt
   * cmajflt utime stime */
  if (p == NULL ||
      sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu",
             &ut, &st) != 2)
    return -1;
  return (long long)(ut + st);
}

/* The process's CPU use over the next ms milliseconds, % of one core.
 * The wait is the measurement's window, not a wait for an event. */
static double cpu_pct(pid_t pid, int ms) {
  long hz = sysconf(_SC_CLK_TCK);
  long long c0, c1;
  uint64_t t0, t1;
  struct timespec d;
  d.tv_sec = ms / 1000;
  d.tv_nsec = (long)(ms % 1000) * 1000000L;
  t0 = t_now_ms();
  c0 = cpu_ticks(pid);
  nanosleep(&d, NULL);
  c1 = cpu_ticks(pid);
  t1 = t_now_ms();
  if (c0 < 0 || c1 < 0 || hz <= 0 || t1 <= t0)
    return -1.0;
  return 100.0 * ((double)(c1 - c0) / (double)hz) /
         ((double)(t1 - t0) / 1000.0);
}

/* Open descriptors of the process, or -1. */
static int fd_count(pid_t pid) {
  char path[64];
  DIR *d;
  struct dirent *e;
  int n = 0;
  snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
  d = opendir(path);
  if (d == NULL)
    return -1;
  while ((e = readdir(d)) != NULL)
    if (e->d_name[0] != '.')
      n++;
  closedir(d);
  return n;
}

/* Wait until the child's descriptors are >= at_least (at_most < 0) or
 * <= at_most; the last count seen, the test decides. */
static int wait_fds(pid_t pid, int at_least, int at_most, int timeout_ms) {
  uint64_t deadline = t_now_ms() + (uint64_t)timeout_ms;
  struct timespec tick = {0, 2000000L};
  int n;
  for (;;) {
    n = fd_count(pid);
    if (at_most < 0 ? n >= at_least : (n >= 0 && n <= at_most))
      return n;
    if (t_now_ms() >= deadline)
      return n;
    nanosleep(&tick, NULL);
  }
}

/* Connections waiting in the accept queues of the 127.0.0.1 listeners on
 * port (for a listening socket /proc/net/tcp's rx_queue is its accept
 * queue), or -1. */
static int queued(uint16_t port) {
  char line[512];
  unsigned addr, lport, st, txq, rxq;
  int n = 0;
  FILE *f = fopen("/proc/net/tcp", "re");
  if (f == NULL)
    return -1;
  while (fgets(line, sizeof(line), f) != NULL) {
    if (sscanf(line, " %*u: %8X:%4X %*8X:%*4X %2X %8X:%8X", &addr, &lport, &st,
               &txq, &rxq) == 5 &&
        lport == port && st == 0x0A)
      n += (int)rxq;
  }
  fclose(f);
  return n;
}

/* Wait until nothing waits in port's accept queues; the last count. */
static int wait_queued(uint16_t port, int timeout_ms) {
  uint64_t deadline = t_now_ms() + (uint64_t)timeout_ms;
  struct timespec tick = {0, 10000000L}; /* a read lists every socket */
  int n;
  while ((n = queued(port)) != 0 && t_now_ms() < deadline)
    nanosleep(&tick, NULL);
  return n;
}

/* Fork the child with a pipe back to the parent: in the child, returns
 * the pipe's write end; in the parent, -1, with child.pid and child.rfd
 * set. */
static int fork_child(void) {
  int p[2];
  assert_int_equal(pipe2(p, O_CLOEXEC), 0);
  fflush(NULL);
  child.pid = fork();
  assert_true(child.pid >= 0);
  if (child.pid == 0) {
    close(p[0]);
    return p[1];
  }
  close(p[1]);
  child.rfd = p[0];
  return -1;
}

/* Fork child_server into the child; its hello into *h. */
static void spawn_server(int64_t max_conns, hello *h) {
  int wfd = fork_child();
  if (wfd >= 0) {
    child_server(wfd, max_conns);
    _exit(3);
  }
  if (read_exact(child.rfd, h, sizeof(*h), T_WAIT_MS) != 0)
    fail_msg("the server child did not report its start within %d ms",
             T_WAIT_MS);
  if (h->err != 0)
    fail_msg("the server child could not start: %s", hps_err_name(h->err));
}

/* SIGTERM: the child stops its server and exits 0 within the deadline. */
static void stop_child(report *rep) {
  int status = 0;
  uint64_t deadline;
  pid_t r;
  struct timespec tick = {0, 2000000L};
  assert_int_equal(kill(child.pid, SIGTERM), 0);
  if (read_exact(child.rfd, rep, sizeof(*rep), T_WAIT_MS) != 0)
    fail_msg("the server did not stop within %d ms of SIGTERM (CPU now "
             "%.0f%% of a core)",
             T_WAIT_MS, cpu_pct(child.pid, 200));
  deadline = t_now_ms() + T_WAIT_MS;
  while ((r = waitpid(child.pid, &status, WNOHANG)) == 0 &&
         t_now_ms() < deadline)
    nanosleep(&tick, NULL);
  if (r != child.pid)
    fail_msg("the server child did not exit after its stop");
  child.pid = -1;
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    fail_msg("the server child ended with status 0x%x", status);
  if (rep->err != 0)
    fail_msg("the server child: %s", rep->what);
}

/* A normal echo on a new connection. */
static void expect_echo(uint16_t port, int round) {
  char msg[32], buf[32];
  int fd, n = snprintf(msg, sizeof(msg), "after overload %d", round);
  fd = t_connect("127.0.0.1", port);
  t_send_all(fd, msg, (size_t)n);
  if (t_recv_exact(fd, buf, (size_t)n, T_WAIT_MS) != (size_t)n ||
      memcmp(buf, msg, (size_t)n) != 0)
    fail_msg("round %d: no echo on a new connection after the overload", round);
  close(fd);
}

static void close_all(int *fds, int n) {
  int i;
  for (i = 0; i < n; i++) {
    if (fds[i] >= 0)
      close(fds[i]);
    fds[i] = -1;
  }
}

/* Clients the server refused so far (reset or EOF seen); gone[] keeps
 * those already seen. */
static int count_refused(const int *fds, char *gone, int n) {
  int i, k = 0;
  char b;
  for (i = 0; i < n; i++) {
    if (!gone[i]) {
      ssize_t r = recv(fds[i], &b, 1, MSG_DONTWAIT);
      if (r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK &&
                     errno != EINTR && errno != ENOTCONN))
        gone[i] = 1;
    }
    k += gone[i];
  }
  return k;
}

/* More clients come and go, for FLOOD_MS or FLOOD_MAX connects: a loop
 * out of descriptors keeps being woken for new connections (and on each
 * both loops race for any descriptor one of them frees). They leave with
 * a reset, so no TIME_WAIT is left behind. */
static void flood(uint16_t port) {
  uint64_t end = t_now_ms() + FLOOD_MS;
  int k = 0;
  while (k < FLOOD_MAX && t_now_ms() < end) {
    t_close_reset(t_connect_nb(port));
    k++;
  }
}

/* One overload of the server process pid (limit NOFILE, base descriptors
 * when idle) on port: it must stay quiet while out of descriptors, close
 * what it holds once the clients have gone, and echo again. */
static void overload_round(pid_t pid, uint16_t port, int base, int round) {
  int *fds = clients, i, n, q;
  double cpu;
  for (i = 0; i < NCLIENTS; i++)
    fds[i] = t_connect_nb(port);
  /* overloaded: the server holds (nearly) every descriptor it may */
  n = wait_fds(pid, NOFILE - 2, -1, T_WAIT_MS);
  if (n < NOFILE - 2)
    fail_msg("round %d: the server holds %d descriptors (limit %d) %d ms "
             "into an overload of %d clients",
             round, n, NOFILE, T_WAIT_MS, NCLIENTS);
  flood(port);
  cpu = cpu_pct(pid, CPU_WINDOW_MS);
  if (cpu < 0 || cpu > CPU_MAX_PCT)
    fail_msg("round %d: the server, out of descriptors, used %.0f%% of a "
             "core over %d ms (at most %.0f%%): it spins on accept",
             round, cpu, CPU_WINDOW_MS, CPU_MAX_PCT);
  q = queued(port);
  if (q <= 0)
    fail_msg("round %d: no client waits in the accept queues of the "
             "overloaded server (%d)",
             round, q);
  print_message("round %d: %d descriptors held, %d clients waiting, CPU "
                "%.1f%% of a core over %d ms\n",
                round, n, q, cpu, CPU_WINDOW_MS);
  close_all(fds, NCLIENTS);
  /* it accepts again, what waited (gone by now) too ... */
  n = wait_queued(port, 2 * T_WAIT_MS);
  if (n != 0)
    fail_msg("round %d: %d ms after its clients left, %d connections still "
             "wait in the server's accept queues",
             round, 2 * T_WAIT_MS, n);
  /* ... and closes what it holds (its loops still serve) ... */
  n = wait_fds(pid, 0, base + 4, 2 * T_WAIT_MS);
  if (n < 0 || n > base + 4)
    fail_msg("round %d: %d ms after its clients left, the server still "
             "holds %d descriptors (%d before the overload)",
             round, 2 * T_WAIT_MS, n, base);
  /* ... so a new client is served, not shed */
  expect_echo(port, round);
}

/* A server whose connection limit is far above its descriptor limit:
 * both loops run out of descriptors with clients still waiting and more
 * coming. Each time the server stays quiet (it pauses accepting, it does
 * not spin on accept), serves again once the clients have gone, and at
 * the end stops on SIGTERM. */
static void overload_past_the_descriptor_limit_never_wedges(void **state) {
  hello h;
  report rep;
  int round, base;
  (void)state;
  spawn_server(100000, &h);
  base = fd_count(child.pid);
  assert_true(base > 0);
  for (round = 1; round <= ROUNDS; round++)
    overload_round(child.pid, h.port, base, round);
  stop_child(&rep);
  print_message("accept errors %llu, shed %llu, stop %lld ms\n",
                (unsigned long long)rep.accept_errors,
                (unsigned long long)rep.accept_shed, (long long)rep.stop_ms);
  if (rep.stop_ms > T_WAIT_MS)
    fail_msg("hps_stop + hps_free took %lld ms", (long long)rep.stop_ms);
  if (rep.accept_errors < ROUNDS)
    fail_msg("HPS_CNT_ACCEPT_ERRORS is %llu after %d overloads",
             (unsigned long long)rep.accept_errors, ROUNDS);
  if (rep.accept_shed < 1)
    fail_msg("HPS_CNT_ACCEPT_SHED is 0: no waiting client was refused when "
             "descriptors ran out");
}

/* The documented default limit for a soft RLIMIT_NOFILE of NOFILE. */
#define NOFILE_DEFAULT_MAX (NOFILE / 2) /* NOFILE - max(64, NOFILE/8) */

/* With the default HPS_OPT_MAX_CONNECTIONS the same overload never gets
 * the server to its descriptor limit: the excess is refused at once
 * (reset) and counted as shed, and no accept ever fails. */
static void default_max_connections_fits_the_descriptor_limit(void **state) {
  hello h;
  report rep;
  int *fds = clients, round, i, base, n, refused, total = 0;
  char gone[NCLIENTS];
  uint64_t deadline;
  struct timespec tick = {0, 2000000L};
  double cpu;
  (void)state;
  spawn_server(0, &h);
  if (h.max_conns != NOFILE_DEFAULT_MAX)
    fail_msg("default HPS_OPT_MAX_CONNECTIONS under a descriptor limit of %d "
             "is %lld, documented %d",
             NOFILE, (long long)h.max_conns, NOFILE_DEFAULT_MAX);
  base = fd_count(child.pid);
  assert_true(base > 0);
  for (round = 1; round <= ROUNDS; round++) {
    memset(gone, 0, sizeof(gone));
    for (i = 0; i < NCLIENTS; i++)
      fds[i] = t_connect_nb(h.port);
    deadline = t_now_ms() + T_WAIT_MS;
    while ((refused = count_refused(fds, gone, NCLIENTS)) <
               NCLIENTS - NOFILE_DEFAULT_MAX &&
           t_now_ms() < deadline)
      nanosleep(&tick, NULL);
    /* the last round's echo connection may not be released yet: it can
     * hold one of the places */
    if (refused < NCLIENTS - NOFILE_DEFAULT_MAX ||
        refused > NCLIENTS - NOFILE_DEFAULT_MAX + 1)
      fail_msg("round %d: %d of %d clients refused, expected %d (limit %d)",
               round, refused, NCLIENTS, NCLIENTS - NOFILE_DEFAULT_MAX,
               NOFILE_DEFAULT_MAX);
    total += refused;
    n = fd_count(child.pid);
    if (n >= NOFILE - 8)
      fail_msg("round %d: the server holds %d descriptors, near its limit "
               "%d, with only %d connections",
               round, n, NOFILE, NOFILE_DEFAULT_MAX);
    cpu = cpu_pct(child.pid, CPU_WINDOW_MS / 2);
    if (cpu < 0 || cpu > CPU_MAX_PCT)
      fail_msg("round %d: the server at its connection limit used %.0f%% of "
               "a core over %d ms (at most %.0f%%)",
               round, cpu, CPU_WINDOW_MS / 2, CPU_MAX_PCT);
    print_message("round %d: %d refused, CPU %.1f%% of a core\n", round,
                  refused, cpu);
    close_all(fds, NCLIENTS);
    n = wait_fds(child.pid, 0, base + 4, 2 * T_WAIT_MS);
    if (n < 0 || n > base + 4)
      fail_msg("round %d: %d ms after its clients left, the server still "
               "holds %d descriptors (%d before)",
               round, 2 * T_WAIT_MS, n, base);
    expect_echo(h.port, round);
  }
  stop_child(&rep);
  print_message("accept errors %llu, shed %llu\n",
                (unsigned long long)rep.accept_errors,
                (unsigned long long)rep.accept_shed);
  if (rep.accept_errors != 0)
    fail_msg("HPS_CNT_ACCEPT_ERRORS is %llu: the default limit let the "
             "server run out of descriptors",
             (unsigned long long)rep.accept_errors);
  if (rep.accept_shed < (uint64_t)total)
    fail_msg("HPS_CNT_ACCEPT_SHED is %llu, but %d clients were refused",
             (unsigned long long)rep.accept_shed, total);
}

/* ---- the example server ---- */

/* examples/hps_echo_server beside this program's build directory, or
 * NULL when the examples were not built. */
static const char *example_path(char *buf, size_t cap) {
  char self[4096], *slash;
  ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
  if (n <= 0)
    return NULL;
  self[n] = '\0';
  slash = strrchr(self, '/');
  if (slash == NULL)
    return NULL;
  *slash = '\0';
  snprintf(buf, cap, "%s/../examples/hps_echo_server", self);
  return access(buf, X_OK) == 0 ? buf : NULL;
}

/* hps_echo_server with 2 workers, both descriptor limits at NOFILE (it
 * raises the soft one to the hard one) and a connection limit far above
 * them, through two overloads: it serves again after each and exits 0 at
 * once on SIGTERM. */
static void
echo_server_example_stops_on_sigterm_after_an_overload(void **state) {
  char path[4200], line[128];
  size_t got = 0;
  int p[2], base, status = 0;
  unsigned port = 0;
  uint64_t deadline;
  pid_t r;
  struct timespec tick = {0, 2000000L};
  (void)state;
  if (example_path(path, sizeof(path)) == NULL) {
    print_message("examples not built: nothing to run\n");
    skip();
  }
  assert_int_equal(pipe2(p, O_CLOEXEC), 0);
  fflush(NULL);
  child.pid = fork();
  assert_true(child.pid >= 0);
  if (child.pid == 0) {
    struct rlimit rl = {NOFILE, NOFILE};
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    dup2(p[1], 1); /* clears close-on-exec on 1 */
    close_range(3, ~0u, 0);
    setrlimit(RLIMIT_NOFILE, &rl);
    execl(path, path, "--workers", "2", "--port", "0", "--max-conns", "100000",
          (char *)NULL);
    _exit(127);
  }
  close(p[1]);
  child.rfd = p[0];
  /* "listening on 127.0.0.1:PORT" */
  deadline = t_now_ms() + T_WAIT_MS;
  while (memchr(line, '\n', got) == NULL && got < sizeof(line) - 1 &&
         t_now_ms() < deadline) {
    struct pollfd pf = {child.rfd, POLLIN, 0};
    ssize_t n;
    if (poll(&pf, 1, 100) <= 0)
      continue;
    n = read(child.rfd, line + got, sizeof(line) - 1 - got);
    if (n <= 0)
      break;
    got += (size_t)n;
  }
  line[got] = '\0';
  if (sscanf(line, "listening on 127.0.0.1:%u", &port) != 1 || port == 0)
    fail_msg("hps_echo_server said \"%s\", not where it listens", line);
  base = fd_count(child.pid);
  assert_true(base > 0);
  overload_round(child.pid, (uint16_t)port, base, 1);
  overload_round(child.pid, (uint16_t)port, base, 2);
  assert_int_equal(kill(child.pid, SIGTERM), 0);
  deadline = t_now_ms() + T_WAIT_MS;
  while ((r = waitpid(child.pid, &status, WNOHANG)) == 0 &&
         t_now_ms() < deadline)
    nanosleep(&tick, NULL);
  if (r != child.pid)
    fail_msg("hps_echo_server did not exit within %d ms of SIGTERM after an "
             "overload",
             T_WAIT_MS);
  child.pid = -1;
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    fail_msg("hps_echo_server ended with status 0x%x after SIGTERM", status);
}

/* ---- an agent out of descriptors ---- */

typedef struct agent_state {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int closes, connects, close_op, close_err;
} agent_state;

static int agent_fn(void *user, const hps_event *ev) {
  agent_state *s = user;
  pthread_mutex_lock(&s->mu);
  if (ev->type == HPS_EV_CLOSE) {
    s->closes++;
    s->close_op = ev->op;
    s->close_err = ev->error;
  } else if (ev->type == HPS_EV_CONNECT) {
    s->connects++;
  }
  pthread_cond_broadcast(&s->cv);
  pthread_mutex_unlock(&s->mu);
  return HPS_HR_OK;
}

/* Wait until *field >= n: 0, or -1 after timeout_ms. */
static int agent_wait(agent_state *s, const int *field, int n, int timeout_ms) {
  struct timespec ts;
  int r = 0;
  t_deadline(&ts, timeout_ms);
  pthread_mutex_lock(&s->mu);
  while (*field < n && r == 0)
    r = pthread_cond_timedwait(&s->cv, &s->mu, &ts);
  r = *field >= n ? 0 : -1;
  pthread_mutex_unlock(&s->mu);
  return r;
}

static void child_agent(int wfd) {
  static agent_state s = {
      PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, 0, 0};
  report rep;
  struct sockaddr_in a;
  socklen_t alen = sizeof(a);
  hps_endpoint *ep = NULL;
  int lfd, fill[NOFILE], nfill = 0, r, i;
  hps_conn_id id;
  memset(&rep, 0, sizeof(rep));
  child_setup(NOFILE / 2, &wfd);
  lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  memset(&a, 0, sizeof(a));
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  r = lfd < 0 || bind(lfd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
      listen(lfd, 16) != 0 ||
      getsockname(lfd, (struct sockaddr *)&a, &alen) != 0;
  if (r) {
    snprintf(rep.what, sizeof(rep.what), "listener: %s", strerror(errno));
    goto out;
  }
  r = (hps_create)(HPS_TCP_AGENT, agent_fn, &s, &ep);
  if (r == 0)
    r = hps_setopt(ep, HPS_OPT_WORKERS, 1);
  if (r == 0)
    r = hps_start(ep, NULL, 0);
  if (r != 0) {
    snprintf(rep.what, sizeof(rep.what), "agent start: %s", hps_err_name(r));
    goto out;
  }
  /* every descriptor taken: the connect's socket() must fail */
  while (nfill < NOFILE && (fill[nfill] = open("/dev/null", O_RDONLY)) >= 0)
    nfill++;
  r = hps_connect(ep, "127.0.0.1", ntohs(a.sin_port), &id);
  if (r != 0) {
    snprintf(rep.what, sizeof(rep.what), "hps_connect: %s", hps_err_name(r));
    goto out;
  }
  if (agent_wait(&s, &s.closes, 1, T_WAIT_MS) != 0) {
    snprintf(rep.what, sizeof(rep.what),
             "no CLOSE within %d ms for a connect without descriptors",
             T_WAIT_MS);
    goto out;
  }
  if (s.close_op != HPS_OP_CONNECT || s.close_err != -EMFILE) {
    snprintf(rep.what, sizeof(rep.what),
             "CLOSE op %d error %s, expected op CONNECT error EMFILE",
             s.close_op, hps_err_name(s.close_err));
    goto out;
  }
  for (i = 0; i < nfill; i++)
    close(fill[i]);
  nfill = 0;
  r = hps_connect(ep, "127.0.0.1", ntohs(a.sin_port), &id);
  if (r != 0 || agent_wait(&s, &s.connects, 1, T_WAIT_MS) != 0) {
    snprintf(rep.what, sizeof(rep.what),
             "no CONNECT once descriptors were free (%s)", hps_err_name(r));
    goto out;
  }
  r = (hps_free)(ep);
  ep = NULL;
  if (r != 0) {
    snprintf(rep.what, sizeof(rep.what), "hps_free: %s", hps_err_name(r));
    goto out;
  }
  rep.err = 0;
  write_all(wfd, &rep, sizeof(rep));
  _exit(0);
out:
  for (i = 0; i < nfill; i++)
    close(fill[i]);
  rep.err = 1;
  write_all(wfd, &rep, sizeof(rep));
  _exit(1);
}

/* An agent's connect whose socket cannot be made (no descriptor left)
 * ends in a CLOSE with op CONNECT and the error; the next one, with
 * descriptors again, connects. */
static void agent_connect_without_descriptors_closes_with_emfile(void **state) {
  report rep;
  int wfd, status = 0;
  (void)state;
  wfd = fork_child();
  if (wfd >= 0) {
    child_agent(wfd);
    _exit(3);
  }
  if (read_exact(child.rfd, &rep, sizeof(rep), 3 * T_WAIT_MS) != 0)
    fail_msg("the agent child reported nothing within %d ms", 3 * T_WAIT_MS);
  assert_int_equal(waitpid(child.pid, &status, 0), child.pid);
  child.pid = -1;
  if (rep.err != 0)
    fail_msg("agent child: %s", rep.what);
  assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

int main(void) {
  int i;
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_teardown(overload_past_the_descriptor_limit_never_wedges,
                                teardown_child),
      cmocka_unit_test_teardown(
          default_max_connections_fits_the_descriptor_limit, teardown_child),
      cmocka_unit_test_teardown(
          echo_server_example_stops_on_sigterm_after_an_overload,
          teardown_child),
      cmocka_unit_test_teardown(
          agent_connect_without_descriptors_closes_with_emfile, teardown_child),
  };
  for (i = 0; i < NCLIENTS; i++)
    clients[i] = -1;
  return cmocka_run_group_tests(tests, NULL, NULL);
}
