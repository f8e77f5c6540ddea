/* test_tls_edges.c - the edges of TLS configuration (issue 19, point 5):
 * encrypted private keys (file, legacy PEM encryption, PEM text, SNI
 * certificates) start with HPS_OPT_TLS_KEY_PASSWORD and handshake; without
 * it or with a wrong one hps_start fails with HPS_ETLSCONFIG and a reason,
 * promptly, in a child process that has no terminal and a stdin nobody
 * writes to (a prompt would block it); the key text and the password are
 * write-only and wiped whenever the endpoint lets go of them; a server
 * verifying clients needs a CA option; a server name that cannot be set up
 * for SNI and the host check closes the connection before it is made.
 * Certificates: tests/fixtures/tls (server_enc.key and
 * server_enc_legacy.key are server.key encrypted, see the README there). */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/buffer.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
/* cmocka.h needs the three above first */
#include <cmocka.h>

#include "core.h"
#include "hps_test.h"

#define HOST "127.0.0.1"
#define FIX HPS_FIXTURES_DIR "/tls/"
#define PASSWORD "hpsock-test-password" /* of the *_enc*.key fixtures */
#define CHILD_DEADLINE_MS 10000

/* ------------------------------------------------------------------ */
/* helpers                                                             */
/* ------------------------------------------------------------------ */

/* The first failed CLOSE's HPS_TLS_INFO_ERROR text and the last
 * HANDSHAKE's server name, per recorder (under r->mu). */
typedef struct obs {
  char close_text[256];
  char name[256];
} obs;

static int handler(void *user, const hps_event *ev) {
  t_rec *r = user;
  obs *o = r->user;
  char buf[256];
  if (ev->type == HPS_EV_CLOSE && ev->error != 0 &&
      hps_tls_info(ev->endpoint, ev->conn, HPS_TLS_INFO_ERROR, buf, sizeof(buf),
                   NULL) == 0) {
    pthread_mutex_lock(&r->mu);
    if (o->close_text[0] == '\0')
      snprintf(o->close_text, sizeof(o->close_text), "%s", buf);
    pthread_mutex_unlock(&r->mu);
  } else if (ev->type == HPS_EV_HANDSHAKE &&
             hps_tls_info(ev->endpoint, ev->conn, HPS_TLS_INFO_SERVER_NAME, buf,
                          sizeof(buf), NULL) == 0) {
    pthread_mutex_lock(&r->mu);
    snprintf(o->name, sizeof(o->name), "%s", buf);
    pthread_mutex_unlock(&r->mu);
  }
  return t_rec_handler(user, ev);
}

static void rec_init(t_rec *r, obs *o) {
  t_rec_init(r);
  memset(o, 0, sizeof(*o));
  r->user = o;
}

static void obs_get(t_rec *r, obs *out) {
  pthread_mutex_lock(&r->mu);
  *out = *(obs *)r->user;
  pthread_mutex_unlock(&r->mu);
}

static void set_str(hps_endpoint *ep, int opt, const char *v) {
  assert_int_equal(hps_setopt_str(ep, opt, v), 0);
}

static hps_endpoint *tls_ep(int role, t_rec *r) {
  hps_endpoint *ep = NULL;
  assert_int_equal(hps_create(role, handler, r, &ep), 0);
  assert_int_equal(hps_setopt(ep, HPS_OPT_WORKERS, 1), 0);
  assert_int_equal(hps_setopt(ep, HPS_OPT_TLS, 1), 0);
  return ep;
}

static void start_server(hps_endpoint *ep, uint16_t *port) {
  char why[256] = "";
  int rc = hps_start(ep, HOST, 0);
  if (rc != 0) {
    hps_tls_info(ep, 0, HPS_TLS_INFO_CONFIG_ERROR, why, sizeof(why), NULL);
    fail_msg("hps_start: %s (%s)", hps_err_name(rc), why);
  }
  assert_int_equal(hps_listen_address(ep, NULL, 0, port), 0);
}

/* An agent trusting the test CA, started; sni NULL: no SNI option. */
static hps_endpoint *agent(t_rec *r, const char *sni, int verify) {
  hps_endpoint *ep = tls_ep(HPS_TCP_AGENT, r);
  set_str(ep, HPS_OPT_TLS_CA_FILE, FIX "ca.pem");
  if (sni != NULL)
    set_str(ep, HPS_OPT_TLS_SNI, sni);
  assert_int_equal(hps_setopt(ep, HPS_OPT_TLS_VERIFY, verify), 0);
  assert_int_equal(hps_start(ep, NULL, 0), 0);
  return ep;
}

/* Stops and frees the endpoints, then their recorders. */
static void free_pair(hps_endpoint *a, t_rec *ar, hps_endpoint *b, t_rec *br) {
  t_stop_free(a);
  t_stop_free(b);
  t_rec_free(ar);
  t_rec_free(br);
}

#define EXPECT_TEXT(text, needle)                                              \
  do {                                                                         \
    if (strstr((text), (needle)) == NULL)                                      \
      fail_msg("reason \"%s\" does not mention \"%s\"", (text), (needle));     \
  } while (0)

/* An agent connects to the echo server at port, completes the handshake
 * and gets 1000 bytes echoed back. */
static void handshake_and_echo(uint16_t port) {
  t_rec ar;
  obs ao;
  hps_endpoint *ag;
  hps_conn_id id;
  unsigned char msg[1000], *got;
  size_t n;
  rec_init(&ar, &ao);
  ag = agent(&ar, NULL, HPS_TLS_VERIFY_PEER);
  assert_int_equal(hps_connect(ag, HOST, port, &id), 0);
  t_conn_event(&ar, id, HPS_EV_HANDSHAKE);
  t_pat_fill(msg, sizeof(msg), 3, 0);
  assert_int_equal(hps_send(ag, id, msg, sizeof(msg)), 0);
  if (t_rec_wait_bytes(&ar, sizeof(msg), T_WAIT_MS) != 0)
    fail_msg("echo: %zu of %zu bytes came back", ar.ndata, sizeof(msg));
  got = t_rec_data_copy(&ar, &n);
  assert_int_equal(n, sizeof(msg));
  assert_int_equal(t_pat_check(got, n, 3, 0), -1);
  free(got);
  t_stop_free(ag);
  t_rec_free(&ar);
}

/* fixtures/tls/<base>.key as PEM text encrypted with PASSWORD (PKCS#8,
 * AES-256), made with OpenSSL's API; malloc'd. */
static char *encrypt_key_pem(const char *base) {
  char path[512], *out;
  BIO *in, *mem;
  EVP_PKEY *k;
  BUF_MEM *bm;
  snprintf(path, sizeof(path), FIX "%s.key", base);
  in = BIO_new_file(path, "r");
  assert_non_null(in);
  k = PEM_read_bio_PrivateKey(in, NULL, NULL, NULL); /* not encrypted */
  assert_non_null(k);
  mem = BIO_new(BIO_s_mem());
  assert_non_null(mem);
  assert_int_equal(PEM_write_bio_PKCS8PrivateKey(mem, k, EVP_aes_256_cbc(),
                                                 NULL, 0, NULL,
                                                 (void *)PASSWORD),
                   1);
  BIO_get_mem_ptr(mem, &bm);
  out = malloc(bm->length + 1);
  assert_non_null(out);
  memcpy(out, bm->data, bm->length);
  out[bm->length] = '\0';
  BIO_free(mem);
  EVP_PKEY_free(k);
  BIO_free(in);
  return out;
}

/* A TLS echo server whose key is `kind`: "file" (PKCS#8 encrypted file),
 * "legacy" (traditional PEM encryption), "pem" (the PKCS#8 one as PEM
 * text) or "sni" (an unencrypted default key and an encrypted SNI one);
 * password NULL: none set. Not started. */
static hps_endpoint *enc_server(t_rec *r, const char *kind,
                                const char *password) {
  hps_endpoint *ep = tls_ep(HPS_TCP_SERVER, r);
  set_str(ep, HPS_OPT_TLS_CERT_FILE, FIX "server.pem");
  if (strcmp(kind, "file") == 0) {
    set_str(ep, HPS_OPT_TLS_KEY_FILE, FIX "server_enc.key");
  } else if (strcmp(kind, "legacy") == 0) {
    set_str(ep, HPS_OPT_TLS_KEY_FILE, FIX "server_enc_legacy.key");
  } else if (strcmp(kind, "pem") == 0) {
    char *pem = t_fixture("tls/server_enc.key", NULL);
    set_str(ep, HPS_OPT_TLS_KEY_PEM, pem);
    free(pem);
  } else {
    char *pem = encrypt_key_pem("other");
    assert_string_equal(kind, "sni");
    set_str(ep, HPS_OPT_TLS_KEY_FILE, FIX "server.key");
    assert_int_equal(hps_tls_add_cert(ep, "other.test", FIX "other.pem", pem),
                     0);
    free(pem);
  }
  if (password != NULL)
    set_str(ep, HPS_OPT_TLS_KEY_PASSWORD, password);
  r->echo = 1;
  return ep;
}

/* ------------------------------------------------------------------ */
/* encrypted keys                                                      */
/* ------------------------------------------------------------------ */

static void encrypted_key_with_password(const char *kind) {
  t_rec sr;
  obs so;
  uint16_t port;
  hps_endpoint *srv;
  rec_init(&sr, &so);
  srv = enc_server(&sr, kind, PASSWORD);
  start_server(srv, &port);
  handshake_and_echo(port);
  t_stop_free(srv);
  t_rec_free(&sr);
}

static void encrypted_key_file_with_password_handshakes(void **state) {
  (void)state;
  encrypted_key_with_password("file");
  encrypted_key_with_password("legacy");
}

static void encrypted_key_pem_with_password_handshakes(void **state) {
  (void)state;
  encrypted_key_with_password("pem");
}

static void encrypted_sni_key_uses_the_password(void **state) {
  t_rec sr, ar;
  obs so, ao, o;
  uint16_t port;
  hps_endpoint *srv, *ag;
  hps_conn_id id;
  (void)state;
  rec_init(&sr, &so);
  rec_init(&ar, &ao);
  srv = enc_server(&sr, "sni", PASSWORD);
  start_server(srv, &port);
  ag = agent(&ar, "other.test", HPS_TLS_VERIFY_PEER);
  assert_int_equal(hps_connect(ag, HOST, port, &id), 0);
  t_conn_event(&ar, id, HPS_EV_HANDSHAKE); /* verified as other.test */
  t_conn_event(&sr, t_nth_conn(&sr, HPS_EV_ACCEPT, 0), HPS_EV_HANDSHAKE);
  obs_get(&sr, &o);
  assert_string_equal(o.name, "other.test");
  free_pair(ag, &ar, srv, &sr);
}

/* The child: hps_start of enc_server(kind, password) with no terminal and
 * a stdin nobody writes to; prints "<rc> <config error>" and exits. */
static int start_child(const char *kind, const char *password) {
  t_rec r;
  obs o;
  hps_endpoint *ep;
  char why[256] = "";
  int rc;
  rec_init(&r, &o);
  ep = enc_server(&r, kind, strcmp(password, "-") == 0 ? NULL : password);
  rc = hps_start(ep, HOST, 0);
  hps_tls_info(ep, 0, HPS_TLS_INFO_CONFIG_ERROR, why, sizeof(why), NULL);
  printf("%d %s\n", rc, why);
  fflush(stdout);
  if (rc == 0)
    hps_stop(ep);
  hps_free(ep);
  t_rec_free(&r);
  return 0;
}

/* Runs start_child(kind, password) in a new session (no controlling
 * terminal: OpenSSL's prompt would read stdin) with stdin a pipe whose
 * writer stays open and silent. Fails the test if it does not answer
 * within CHILD_DEADLINE_MS; else *rc and reason get its answer. */
static void start_without_terminal(const char *kind, const char *password,
                                   int *rc, char *reason, size_t cap) {
  int in[2], out[2], status;
  char buf[512];
  size_t got = 0;
  uint64_t deadline = t_now_ms() + CHILD_DEADLINE_MS;
  pid_t pid;
  assert_int_equal(pipe(in), 0);
  assert_int_equal(pipe(out), 0);
  fflush(NULL);
  pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) { /* only async-signal-safe calls until exec */
    setsid();
    dup2(in[0], 0);
    dup2(out[1], 1);
    close(in[0]);
    close(in[1]);
    close(out[0]);
    close(out[1]);
    execl("/proc/self/exe", "test_tls_edges", "--start-child", kind, password,
          (char *)NULL);
    _exit(127);
  }
  close(in[0]);
  close(out[1]);
  for (;;) {
    struct pollfd p = {out[0], POLLIN, 0};
    uint64_t now = t_now_ms();
    ssize_t n;
    if (now >= deadline)
      break;
    if (poll(&p, 1, (int)(deadline - now)) <= 0)
      continue;
    n = read(out[0], buf + got, sizeof(buf) - 1 - got);
    if (n <= 0)
      break; /* EOF: the child is done */
    got += (size_t)n;
    if (got == sizeof(buf) - 1)
      break;
  }
  if (t_now_ms() >= deadline) {
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    close(in[1]);
    close(out[0]);
    fail_msg("hps_start (%s key, password %s) did not return within %d ms "
             "without a terminal: it waits for input (a prompt?)",
             kind, password, CHILD_DEADLINE_MS);
  }
  assert_int_equal(waitpid(pid, &status, 0), pid);
  close(in[1]);
  close(out[0]);
  buf[got] = '\0';
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    fail_msg("the child (%s key, password %s) failed: status %#x, said \"%s\"",
             kind, password, status, buf);
  if (sscanf(buf, "%d", rc) != 1)
    fail_msg("the child said \"%s\"", buf);
  buf[strcspn(buf, "\n")] = '\0';
  snprintf(reason, cap, "%s", strchr(buf, ' ') ? strchr(buf, ' ') + 1 : "");
}

static void expect_start_refused(const char *kind, const char *password,
                                 const char *needle) {
  int rc = 0;
  char reason[256];
  start_without_terminal(kind, password, &rc, reason, sizeof(reason));
  if (rc != HPS_ETLSCONFIG)
    fail_msg("%s key, password %s: hps_start gave %s (%s), not "
             "HPS_ETLSCONFIG",
             kind, password, hps_err_name(rc), reason);
  EXPECT_TEXT(reason, needle);
}

static void
missing_or_wrong_password_fails_start_without_prompting(void **state) {
  static const char *const kinds[] = {"file", "legacy", "pem", "sni"};
  size_t i;
  int rc = -1;
  char reason[256];
  (void)state;
  for (i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
    expect_start_refused(kinds[i], "-", "HPS_OPT_TLS_KEY_PASSWORD not set");
    expect_start_refused(kinds[i], "not-the-password",
                         "wrong HPS_OPT_TLS_KEY_PASSWORD");
  }
  /* the reason names the key */
  expect_start_refused("file", "-", "server_enc.key");
  expect_start_refused("pem", "-", "(PEM)");
  /* a password longer than OpenSSL takes is refused too, not cut */
  {
    char long_pw[4097];
    memset(long_pw, 'p', sizeof(long_pw) - 1);
    long_pw[sizeof(long_pw) - 1] = '\0';
    expect_start_refused("file", long_pw, "too long");
  }
  /* the same child with the right password starts: the harness works */
  start_without_terminal("file", PASSWORD, &rc, reason, sizeof(reason));
  if (rc != 0)
    fail_msg("right password: %s (%s)", hps_err_name(rc), reason);
}

/* ------------------------------------------------------------------ */
/* secrets: write-only, wiped                                          */
/* ------------------------------------------------------------------ */

static void key_pem_and_password_are_write_only(void **state) {
  t_rec r;
  obs o;
  hps_endpoint *ep;
  char buf[4096], *pem = t_fixture("tls/server_enc.key", NULL);
  size_t len;
  static const int secret[] = {HPS_OPT_TLS_KEY_PEM, HPS_OPT_TLS_KEY_PASSWORD};
  size_t i;
  uint16_t port;
  (void)state;
  rec_init(&r, &o);
  r.echo = 1;
  ep = tls_ep(HPS_TCP_SERVER, &r);
  for (i = 0; i < 2; i++) { /* unset: still no answer */
    len = 7;
    assert_int_equal(hps_getopt_str(ep, secret[i], buf, sizeof(buf), &len),
                     HPS_EINVAL);
    assert_int_equal(len, 0);
  }
  set_str(ep, HPS_OPT_TLS_CERT_FILE, FIX "server.pem");
  set_str(ep, HPS_OPT_TLS_KEY_PEM, pem);
  set_str(ep, HPS_OPT_TLS_KEY_PASSWORD, PASSWORD);
  set_str(ep, HPS_OPT_TLS_SNI, "readable.test");
  for (i = 0; i < 2; i++) {
    memset(buf, 'x', sizeof(buf));
    len = 7;
    assert_int_equal(hps_getopt_str(ep, secret[i], buf, sizeof(buf), &len),
                     HPS_EINVAL);
    if (len != 0)
      fail_msg("option %d: its length %zu was told", secret[i], len);
    if (buf[0] != 'x' || memchr(buf, '-', sizeof(buf)) != NULL ||
        memchr(buf, 'h', sizeof(buf)) != NULL)
      fail_msg("option %d: text was copied out", secret[i]);
    assert_int_equal(hps_getopt_str(ep, secret[i], NULL, 0, &len), HPS_EINVAL);
    assert_int_equal(len, 0);
  }
  /* the other string options stay readable */
  assert_int_equal(hps_getopt_str(ep, HPS_OPT_TLS_SNI, buf, sizeof(buf), &len),
                   0);
  assert_string_equal(buf, "readable.test");
  /* and they were kept: the server starts with them */
  start_server(ep, &port);
  assert_int_equal(
      hps_getopt_str(ep, HPS_OPT_TLS_KEY_PEM, buf, sizeof(buf), NULL),
      HPS_EINVAL);
  handshake_and_echo(port);
  t_stop_free(ep);
  t_rec_free(&r);
  free(pem);
}

/* What the wipe probe saw (the test's thread calls every setopt/free). */
#define MAX_WIPED 64
static struct {
  size_t n;
  int zero; /* every byte was 0 at the probe */
} g_wiped[MAX_WIPED];
static int g_nwiped;

static void wipe_probe(const char *p, size_t n) {
  size_t i;
  int zero = 1;
  for (i = 0; i < n; i++)
    zero &= p[i] == 0;
  if (g_nwiped < MAX_WIPED) {
    g_wiped[g_nwiped].n = n;
    g_wiped[g_nwiped].zero = zero;
  }
  g_nwiped++;
}

/* Fails unless a freed string of n bytes was seen, all zero, since
 * probe entry `from`. */
static void expect_wiped(int from, size_t n, const char *what) {
  int i, seen = 0;
  for (i = from; i < g_nwiped && i < MAX_WIPED; i++) {
    if (!g_wiped[i].zero)
      fail_msg("a freed option string of %zu bytes was not wiped",
               g_wiped[i].n);
    if (g_wiped[i].n == n)
      seen = 1;
  }
  if (!seen)
    fail_msg("%s (%zu bytes) was not wiped when let go", what, n);
}

static void replaced_and_freed_secrets_are_wiped(void **state) {
  t_rec r;
  obs o;
  hps_endpoint *ep;
  char *plain = t_fixture("tls/server.key", NULL);
  char *enc = t_fixture("tls/server_enc.key", NULL);
  char *sni_key = encrypt_key_pem("other");
  const char *old_pw = "an-old-password-of-31-bytes-xyz";
  uint16_t port;
  int mark;
  (void)state;
  assert_true(strlen(plain) != strlen(enc));
  g_nwiped = 0;
  hps__tls_wipe_probe = wipe_probe;
  rec_init(&r, &o);
  ep = tls_ep(HPS_TCP_SERVER, &r);
  set_str(ep, HPS_OPT_TLS_CERT_FILE, FIX "server.pem");
  /* replaced */
  set_str(ep, HPS_OPT_TLS_KEY_PEM, plain);
  mark = g_nwiped;
  set_str(ep, HPS_OPT_TLS_KEY_PEM, enc);
  expect_wiped(mark, strlen(plain), "the replaced key text");
  /* cleared */
  set_str(ep, HPS_OPT_TLS_KEY_PASSWORD, old_pw);
  mark = g_nwiped;
  set_str(ep, HPS_OPT_TLS_KEY_PASSWORD, NULL);
  expect_wiped(mark, strlen(old_pw), "the cleared password");
  set_str(ep, HPS_OPT_TLS_KEY_PASSWORD, PASSWORD);
  assert_int_equal(hps_tls_add_cert(ep, "other.test", FIX "other.pem", sni_key),
                   0);
  /* refused while running: the copy made for it is wiped too */
  start_server(ep, &port);
  mark = g_nwiped;
  assert_int_equal(hps_setopt_str(ep, HPS_OPT_TLS_KEY_PEM, plain), HPS_ESTATE);
  expect_wiped(mark, strlen(plain), "the refused key text");
  assert_int_equal(hps_stop(ep), 0);
  /* freed: the key text, the password and the SNI key text */
  mark = g_nwiped;
  assert_int_equal(hps_free(ep), 0);
  expect_wiped(mark, strlen(enc), "the key text at hps_free");
  expect_wiped(mark, strlen(PASSWORD), "the password at hps_free");
  expect_wiped(mark, strlen(sni_key), "the SNI key text at hps_free");
  hps__tls_wipe_probe = NULL;
  t_rec_free(&r);
  free(plain);
  free(enc);
  free(sni_key);
}

/* ------------------------------------------------------------------ */
/* mutual TLS needs a CA                                               */
/* ------------------------------------------------------------------ */

static void mtls_server_without_ca_is_refused(void **state) {
  t_rec sr, ar;
  obs so, ao, o;
  hps_endpoint *srv, *ag;
  hps_conn_id id;
  char why[256];
  char *ca = t_fixture("tls/ca.pem", NULL);
  uint16_t port;
  static const int modes[] = {HPS_TLS_VERIFY_PEER, HPS_TLS_VERIFY_REQUIRE};
  size_t i;
  (void)state;
  rec_init(&sr, &so);
  for (i = 0; i < 2; i++) {
    srv = tls_ep(HPS_TCP_SERVER, &sr);
    set_str(srv, HPS_OPT_TLS_CERT_FILE, FIX "server.pem");
    set_str(srv, HPS_OPT_TLS_KEY_FILE, FIX "server.key");
    assert_int_equal(hps_setopt(srv, HPS_OPT_TLS_VERIFY, modes[i]), 0);
    assert_int_equal(hps_start(srv, HOST, 0), HPS_ETLSCONFIG);
    assert_int_equal(hps_state(srv), HPS_STATE_CREATED);
    assert_int_equal(
        hps_tls_info(srv, 0, HPS_TLS_INFO_CONFIG_ERROR, why, sizeof(why), NULL),
        0);
    EXPECT_TEXT(why, "needs a CA option");
    /* any CA option lets it start */
    set_str(srv, HPS_OPT_TLS_CA_PEM, ca);
    start_server(srv, &port);
    t_stop_free(srv);
  }
  /* a server that verifies nothing needs none */
  srv = tls_ep(HPS_TCP_SERVER, &sr);
  set_str(srv, HPS_OPT_TLS_CERT_FILE, FIX "server.pem");
  set_str(srv, HPS_OPT_TLS_KEY_FILE, FIX "server.key");
  start_server(srv, &port);
  /* an agent without a CA option starts and trusts the system's store,
   * which does not hold the test CA: the handshake fails verification */
  rec_init(&ar, &ao);
  ag = tls_ep(HPS_TCP_AGENT, &ar);
  assert_int_equal(hps_start(ag, NULL, 0), 0);
  assert_int_equal(hps_connect(ag, HOST, port, &id), 0);
  t_expect_close(t_conn_event(&ar, id, HPS_EV_CLOSE), HPS_OP_CONNECT,
                 HPS_ETLSVERIFY);
  assert_int_equal(t_rec_conn_count(&ar, id, HPS_EV_HANDSHAKE), 0);
  obs_get(&ar, &o);
  EXPECT_TEXT(o.close_text, "certificate verify failed");
  free_pair(ag, &ar, srv, &sr);
  free(ca);
}

/* ------------------------------------------------------------------ */
/* server names fail closed                                            */
/* ------------------------------------------------------------------ */

/* A host name of exactly len bytes (labels of at most 63). */
static void make_name(char *out, size_t len) {
  size_t i;
  for (i = 0; i < len; i++)
    out[i] = (i % 64 == 63) ? '.' : 'a' + (i % 26);
  if (len > 0 && out[len - 1] == '.')
    out[len - 1] = 'z';
  out[len] = '\0';
}

/* A connection of agent ag (SNI too long for OpenSSL) never reaches the
 * server: CLOSE op CONNECT, HPS_ETLSCONFIG, the reason, nothing before. */
static void expect_refused_name(hps_endpoint *ag, t_rec *ar, uint16_t port) {
  hps_conn_id id;
  obs o;
  int types[4];
  assert_int_equal(hps_connect(ag, HOST, port, &id), 0);
  t_expect_close(t_conn_event(ar, id, HPS_EV_CLOSE), HPS_OP_CONNECT,
                 HPS_ETLSCONFIG);
  assert_int_equal(t_rec_conn_count(ar, id, HPS_EV_CONNECT), 0);
  assert_int_equal(t_rec_conn_count(ar, id, HPS_EV_HANDSHAKE), 0);
  assert_int_equal(t_rec_conn_types(ar, id, types, 4), 1); /* CLOSE only */
  obs_get(ar, &o);
  EXPECT_TEXT(o.close_text, "server name");
}

static void server_name_setup_failure_closes_before_connecting(void **state) {
  t_rec sr, ar, br, cr;
  obs so, ao, bo, co, o;
  hps_endpoint *srv, *ag, *bad, *cl;
  hps_conn_id id;
  uint16_t port;
  char n255[256], n256[257];
  static const int verify[] = {HPS_TLS_VERIFY_PEER, HPS_TLS_VERIFY_NONE};
  size_t i;
  (void)state;
  make_name(n255, 255);
  make_name(n256, 256);
  rec_init(&sr, &so);
  srv = tls_ep(HPS_TCP_SERVER, &sr);
  set_str(srv, HPS_OPT_TLS_CERT_FILE, FIX "server.pem");
  set_str(srv, HPS_OPT_TLS_KEY_FILE, FIX "server.key");
  start_server(srv, &port);
  /* over 255 bytes: refused before any byte, whether verifying or not */
  for (i = 0; i < 2; i++) {
    rec_init(&br, &bo);
    bad = agent(&br, n256, verify[i]);
    expect_refused_name(bad, &br, port);
    t_stop_free(bad);
    t_rec_free(&br);
  }
  /* a client too: its start succeeds, its one connection closes */
  rec_init(&cr, &co);
  cl = tls_ep(HPS_TCP_CLIENT, &cr);
  set_str(cl, HPS_OPT_TLS_CA_FILE, FIX "ca.pem");
  set_str(cl, HPS_OPT_TLS_SNI, n256);
  assert_int_equal(hps_start(cl, HOST, port), 0);
  assert_int_equal(t_rec_wait(&cr, HPS_EV_CLOSE, 1, T_WAIT_MS), 0);
  {
    t_ev e;
    assert_int_equal(t_rec_get(&cr, HPS_EV_CLOSE, 0, &e), 0);
    t_expect_close(e, HPS_OP_CONNECT, HPS_ETLSCONFIG);
  }
  assert_int_equal(t_rec_count(&cr, HPS_EV_CONNECT), 0);
  obs_get(&cr, &o);
  EXPECT_TEXT(o.close_text, "server name");
  t_stop_free(cl);
  t_rec_free(&cr);
  /* 255 bytes is the limit, not cut: sent whole (verification off, as the
   * certificate has no such name) */
  rec_init(&ar, &ao);
  ag = agent(&ar, n255, HPS_TLS_VERIFY_NONE);
  assert_int_equal(hps_connect(ag, HOST, port, &id), 0);
  t_conn_event(&ar, id, HPS_EV_HANDSHAKE);
  t_conn_event(&sr, t_nth_conn(&sr, HPS_EV_ACCEPT, 0), HPS_EV_HANDSHAKE);
  obs_get(&sr, &o);
  assert_string_equal(o.name, n255);
  /* the refused ones never reached the server: one accept, this one */
  assert_int_equal(hps_disconnect(ag, id, 0), 0);
  t_conn_event(&sr, t_nth_conn(&sr, HPS_EV_ACCEPT, 0), HPS_EV_CLOSE);
  assert_int_equal(t_rec_count(&sr, HPS_EV_ACCEPT), 1);
  free_pair(ag, &ar, srv, &sr);
}

int main(int argc, char **argv) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(encrypted_key_file_with_password_handshakes),
      cmocka_unit_test(encrypted_key_pem_with_password_handshakes),
      cmocka_unit_test(encrypted_sni_key_uses_the_password),
      cmocka_unit_test(missing_or_wrong_password_fails_start_without_prompting),
      cmocka_unit_test(key_pem_and_password_are_write_only),
      cmocka_unit_test(replaced_and_freed_secrets_are_wiped),
      cmocka_unit_test(mtls_server_without_ca_is_refused),
      cmocka_unit_test(server_name_setup_failure_closes_before_connecting),
  };
  if (argc == 4 && strcmp(argv[1], "--start-child") == 0)
    return start_child(argv[2], argv[3]);
  if (getenv("HPS_TEST_FILTER"))
    cmocka_set_test_filter(getenv("HPS_TEST_FILTER"));
  return cmocka_run_group_tests(tests, NULL, NULL);
}
