/* tls.c - TLS for TCP connections with OpenSSL 3 and memory BIOs (see
 * tls.h for the shape and the thread rules).
 *
 * Per endpoint: string options, the server's per-name certificates, one
 * SSL_CTX per run (plus one per SNI certificate) and the client's session
 * cache (last session per server name and port). Per connection: an SSL
 * with a read and a write memory BIO, the handshake state, and info texts
 * (version, cipher, names, error reason) other threads read under the
 * loop's lock.
 *
 * Error mapping for a failed connection (the reason text says more):
 *   our verification of the peer's certificate failed -> HPS_ETLSVERIFY
 *   the peer sent a fatal alert                        -> HPS_ETLSALERT
 *   the bytes are not TLS records (plaintext peer)     -> HPS_ETLSNOTTLS
 *   the stream ended without close_notify              -> HPS_ETLSEOF
 *   any other protocol failure                         -> HPS_ETLS
 */
#include <arpa/inet.h>
#include <openssl/buffer.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core.h"

#define STR_FIRST HPS_OPT_TLS_CERT_FILE
#define STR_LAST HPS_OPT_TLS_KEY_PASSWORD
#define NSTR (STR_LAST - STR_FIRST + 1)
#define MAX_SESSIONS 256
#define INFO_CAP 256
/* A memory BIO left empty with a buffer larger than this gets a fresh one:
 * a buffer keeps its largest size, and one big message would otherwise
 * cost every connection that size for its whole life. The read BIO gets
 * up to a loop read (64 KiB) at a time and is rarely empty while data
 * streams in; the write BIO holds at most one WRITE_CHUNK's ciphertext
 * (about 87 KiB with BUF_MEM's growth), kept so that large sends reuse it
 * (a fresh one per large send costs far more CPU on large echoes). */
#define RBIO_KEEP_MAX (32 * 1024)
#define WBIO_KEEP_MAX (96 * 1024)
/* Plaintext encrypted per step of a send (four full records): bounds the
 * write BIO; smaller steps cost a socket write each. */
#define WRITE_CHUNK (64 * 1024)
/* Renegotiation requests refused before the connection is closed: a peer
 * that keeps asking only makes us write alerts. */
#define MAX_RENEG_REFUSED 4

typedef struct tls_sni {
  struct tls_sni *next;
  char *name, *cert, *key;
  SSL_CTX *ctx; /* built at start */
} tls_sni;

typedef struct tls_sess {
  struct tls_sess *next;
  char *key; /* "name|port" */
  SSL_SESSION *sess;
} tls_sess;

struct hps__tls_ep {
  char *str[NSTR]; /* under ep->mutex */
  tls_sni *sni;
  SSL_CTX *ctx;                /* this run's; NULL when TLS is off */
  char config_error[INFO_CAP]; /* under ep->mutex */
  int pw_asked;                /* a key being loaded asked for its password */
  uv_mutex_t sess_lock;
  tls_sess *sessions; /* most recent first */
  int nsessions;
};

struct hps__tls_conn {
  SSL *ssl;
  BIO *rbio, *wbio; /* owned by ssl */
  uint8_t done;     /* handshake completed */
  uint8_t in_read;  /* delivering plaintext: a resume needs no drain */
  uint8_t drain_posted;
  uint8_t close_after; /* hps_disconnect(force = 0) during the handshake */
  int reneg_refused;   /* no_renegotiation alerts we sent */
  int op; /* HPS_OP_ACCEPT / HPS_OP_CONNECT: the op of a failed handshake */
  char *sess_key; /* client: key into the endpoint's session cache */
  /* info texts, written on the loop thread under the loop's lock */
  char error[INFO_CAP];
  char version[16];
  char cipher[64];
  char name[INFO_CAP];
  char subject[INFO_CAP];
  int resumed;
};

static int ex_conn = -1; /* SSL ex_data index of the hps__conn */
static uv_once_t ex_once = UV_ONCE_INIT;

static void ex_init(void) {
  ex_conn = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
}

int hps__tls_done(const hps__conn *c) {
  return c->tls->done;
}

int hps__tls_send_op(const hps__conn *c) {
  return c->tls != NULL && !c->tls->done ? c->tls->op : HPS_OP_SEND;
}

int hps__tls_active(const hps_endpoint *ep) {
  return ep->tls != NULL && ep->tls->ctx != NULL;
}

/* ---- endpoint: options ---- */

static struct hps__tls_ep *ep_tls(hps_endpoint *ep) {
  struct hps__tls_ep *t = ep->tls;
  if (t != NULL)
    return t;
  t = calloc(1, sizeof(*t));
  if (t == NULL)
    return NULL;
  if (uv_mutex_init(&t->sess_lock) != 0) {
    free(t);
    return NULL;
  }
  ep->tls = t;
  return t;
}

static int ep_settable(hps_endpoint *ep) {
  int s = ep->state;
  return !(s == HPS_STATE_STARTED || s == HPS_STATE_STOPPING || ep->starting);
}

/* Under ep->mutex: the endpoint's TLS settings in *t, if they may change now
 * (not while it starts or runs). */
static int settable_tls(hps_endpoint *ep, struct hps__tls_ep **t) {
  if (!ep_settable(ep))
    return HPS_ESTATE;
  if ((*t = ep_tls(ep)) == NULL)
    return HPS_ENOMEM;
  return 0;
}

void (*hps__tls_wipe_probe)(const char *p, size_t n);

/* Every option string is wiped before its memory goes back: some hold a
 * private key or its password, and wiping them all keeps one rule. */
static void str_free(char *s) {
  size_t n;
  if (s == NULL)
    return;
  n = strlen(s);
  OPENSSL_cleanse(s, n);
  if (hps__tls_wipe_probe != NULL)
    hps__tls_wipe_probe(s, n);
  free(s);
}

/* Never read back: they would leave the endpoint in the caller's memory. */
static int is_secret(int opt) {
  return opt == HPS_OPT_TLS_KEY_PEM || opt == HPS_OPT_TLS_KEY_PASSWORD;
}

/* NULL and a partly filled one (a failed strdup) are fine. */
static void sni_free(tls_sni *s) {
  if (s == NULL)
    return;
  str_free(s->name);
  str_free(s->cert);
  str_free(s->key); /* may be PEM text */
  free(s);
}

int hps__tls_setopt_str(hps_endpoint *ep, int opt, const char *value) {
  struct hps__tls_ep *t;
  char *copy = NULL;
  int r = 0;
  if (opt < STR_FIRST || opt > STR_LAST)
    return HPS_EINVAL;
  if (value != NULL && value[0] != '\0' && (copy = strdup(value)) == NULL)
    return HPS_ENOMEM;
  uv_mutex_lock(&ep->mutex);
  r = settable_tls(ep, &t);
  if (r == 0) {
    str_free(t->str[opt - STR_FIRST]);
    t->str[opt - STR_FIRST] = copy;
    copy = NULL;
  }
  uv_mutex_unlock(&ep->mutex);
  str_free(copy);
  return r;
}

static int copy_out(const char *s, char *buf, size_t cap, size_t *len) {
  size_t n = strlen(s);
  if (len)
    *len = n;
  if (buf == NULL && cap > 0)
    return HPS_EINVAL;
  if (cap <= n)
    return HPS_EINVAL;
  memcpy(buf, s, n + 1);
  return 0;
}

int hps__tls_getopt_str(hps_endpoint *ep, int opt, char *buf, size_t cap,
                        size_t *len) {
  int r;
  if (opt < STR_FIRST || opt > STR_LAST)
    return HPS_EINVAL;
  if (is_secret(opt)) {
    if (len)
      *len = 0; /* not even the length */
    return HPS_EINVAL;
  }
  uv_mutex_lock(&ep->mutex);
  r = copy_out(ep->tls && ep->tls->str[opt - STR_FIRST]
                   ? ep->tls->str[opt - STR_FIRST]
                   : "",
               buf, cap, len);
  uv_mutex_unlock(&ep->mutex);
  return r;
}

int hps__tls_add_cert(hps_endpoint *ep, const char *name, const char *cert,
                      const char *key) {
  struct hps__tls_ep *t;
  tls_sni *s = calloc(1, sizeof(*s)), **tail;
  int r = 0;
  if (s == NULL || (s->name = strdup(name)) == NULL ||
      (s->cert = strdup(cert)) == NULL || (s->key = strdup(key)) == NULL) {
    sni_free(s);
    return HPS_ENOMEM;
  }
  uv_mutex_lock(&ep->mutex);
  r = settable_tls(ep, &t);
  if (r == 0) {
    for (tail = &t->sni; *tail != NULL; tail = &(*tail)->next) {
    }
    *tail = s;
    s = NULL;
  }
  uv_mutex_unlock(&ep->mutex);
  sni_free(s);
  return r;
}

/* ---- endpoint: building the SSL_CTX ---- */

static const char *str_opt(struct hps__tls_ep *t, int opt) {
  return t->str[opt - STR_FIRST];
}

/* The reason of the last OpenSSL error, for a config message. */
static void config_fail(struct hps__tls_ep *t, const char *what,
                        const char *arg) {
  unsigned long e = ERR_peek_last_error();
  const char *why = e ? ERR_reason_error_string(e) : NULL;
  snprintf(t->config_error, sizeof(t->config_error), "%s%s%s%s%s", what,
           arg ? " " : "", arg ? arg : "", why ? ": " : "", why ? why : "");
  ERR_clear_error();
}

static int is_pem(const char *s) {
  return strncmp(s, "-----BEGIN", 10) == 0;
}

/* pw_asked: the password did not fit OpenSSL's buffer. */
#define PW_TOO_LONG 2

/* Every PEM read here (and every SSL_CTX's file reads) goes through this
 * callback: OpenSSL's default for an encrypted block is a prompt on the
 * terminal, which would block hps_start. u is the endpoint's TLS settings
 * (under ep->mutex) while a private key loads, else NULL: no password, so
 * the read fails. */
static int on_password(char *buf, int size, int rwflag, void *u) {
  struct hps__tls_ep *t = u;
  const char *pw;
  size_t n;
  (void)rwflag;
  if (t == NULL)
    return -1;
  t->pw_asked = 1;
  pw = str_opt(t, HPS_OPT_TLS_KEY_PASSWORD);
  if (pw == NULL)
    return -1;
  n = strlen(pw);
  if (size <= 0 || n >= (size_t)size) {
    t->pw_asked = PW_TOO_LONG;
    return -1;
  }
  memcpy(buf, pw, n);
  return (int)n;
}

static int use_cert_pem(SSL_CTX *ctx, const char *pem) {
  BIO *b = BIO_new_mem_buf(pem, -1);
  X509 *x;
  int ok = 0;
  if (b == NULL)
    return 0;
  x = PEM_read_bio_X509_AUX(b, NULL, on_password, NULL);
  if (x != NULL && SSL_CTX_use_certificate(ctx, x) == 1) {
    X509 *ca;
    ok = 1;
    SSL_CTX_clear_chain_certs(ctx);
    while ((ca = PEM_read_bio_X509(b, NULL, on_password, NULL)) != NULL) {
      if (SSL_CTX_add0_chain_cert(ctx, ca) != 1) {
        X509_free(ca);
        ok = 0;
        break;
      }
    }
    if (ok)
      ERR_clear_error(); /* the end of the PEM text */
  }
  X509_free(x);
  BIO_free(b);
  return ok;
}

static int use_key_pem(struct hps__tls_ep *t, SSL_CTX *ctx, const char *pem) {
  BIO *b = BIO_new_mem_buf(pem, -1);
  EVP_PKEY *k;
  int ok = 0;
  if (b == NULL)
    return 0;
  k = PEM_read_bio_PrivateKey(b, NULL, on_password, t);
  if (k != NULL)
    ok = SSL_CTX_use_PrivateKey(ctx, k) == 1;
  EVP_PKEY_free(k);
  BIO_free(b);
  return ok;
}

/* Why a private key did not load; the password's part first, as the
 * path may be long. */
static void key_fail(struct hps__tls_ep *t, const char *arg) {
  const char *why;
  if (!t->pw_asked) {
    config_fail(t, "cannot load the private key", arg);
    return;
  }
  if (t->pw_asked == PW_TOO_LONG)
    why = "HPS_OPT_TLS_KEY_PASSWORD too long";
  else if (str_opt(t, HPS_OPT_TLS_KEY_PASSWORD) == NULL)
    why = "HPS_OPT_TLS_KEY_PASSWORD not set";
  else
    why = "wrong HPS_OPT_TLS_KEY_PASSWORD";
  snprintf(t->config_error, sizeof(t->config_error),
           "cannot decrypt the private key (%s): %s", why, arg);
  ERR_clear_error();
}

/* Certificate and key, each a file or PEM text. 0 or -1 (reason set). */
static int load_pair(struct hps__tls_ep *t, SSL_CTX *ctx, const char *cert,
                     int cert_pem, const char *key, int key_pem) {
  int ok;
  if (cert == NULL && key == NULL)
    return 0;
  if (cert == NULL || key == NULL) {
    config_fail(
        t, cert ? "a certificate without a key" : "a key without a certificate",
        NULL);
    return -1;
  }
  if (cert_pem ? !use_cert_pem(ctx, cert)
               : SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
    config_fail(t, "cannot load the certificate", cert_pem ? "(PEM)" : cert);
    return -1;
  }
  t->pw_asked = 0;
  /* The password reaches the SSL_CTX's callback only while its key loads:
   * the context keeps no pointer to it. */
  SSL_CTX_set_default_passwd_cb_userdata(ctx, t);
  ok = key_pem ? use_key_pem(t, ctx, key)
               : SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) == 1;
  SSL_CTX_set_default_passwd_cb_userdata(ctx, NULL);
  if (!ok) {
    key_fail(t, key_pem ? "(PEM)" : key);
    return -1;
  }
  if (SSL_CTX_check_private_key(ctx) != 1) {
    config_fail(t, "the private key does not match the certificate", NULL);
    return -1;
  }
  return 0;
}

static int load_ca_pem(SSL_CTX *ctx, const char *pem) {
  BIO *b = BIO_new_mem_buf(pem, -1);
  X509_STORE *st = SSL_CTX_get_cert_store(ctx);
  X509 *x;
  int n = 0;
  if (b == NULL)
    return 0;
  while ((x = PEM_read_bio_X509(b, NULL, on_password, NULL)) != NULL) {
    if (X509_STORE_add_cert(st, x) == 1)
      n++;
    X509_free(x);
  }
  BIO_free(b);
  if (n > 0)
    ERR_clear_error();
  return n > 0;
}

static void remember_session(hps_endpoint *ep, const char *key,
                             SSL_SESSION *sess) {
  struct hps__tls_ep *t = ep->tls;
  tls_sess *s, **pp;
  uv_mutex_lock(&t->sess_lock);
  for (pp = &t->sessions; (s = *pp) != NULL; pp = &s->next) {
    if (strcmp(s->key, key) == 0) {
      *pp = s->next; /* moved to the front below */
      SSL_SESSION_free(s->sess);
      t->nsessions--;
      break;
    }
  }
  if (s == NULL) {
    s = calloc(1, sizeof(*s));
    if (s != NULL && (s->key = strdup(key)) == NULL) {
      free(s);
      s = NULL;
    }
  }
  if (s != NULL) {
    s->sess = sess;
    s->next = t->sessions;
    t->sessions = s;
    t->nsessions++;
    if (t->nsessions > MAX_SESSIONS) { /* drop the oldest */
      for (pp = &t->sessions; (*pp)->next != NULL; pp = &(*pp)->next) {
      }
      SSL_SESSION_free((*pp)->sess);
      free((*pp)->key);
      free(*pp);
      *pp = NULL;
      t->nsessions--;
    }
  } else {
    SSL_SESSION_free(sess);
  }
  uv_mutex_unlock(&t->sess_lock);
}

static SSL_SESSION *find_session(hps_endpoint *ep, const char *key) {
  struct hps__tls_ep *t = ep->tls;
  SSL_SESSION *found = NULL;
  tls_sess *s;
  uv_mutex_lock(&t->sess_lock);
  for (s = t->sessions; s != NULL; s = s->next) {
    if (strcmp(s->key, key) == 0) {
      if (SSL_SESSION_is_resumable(s->sess) && SSL_SESSION_up_ref(s->sess))
        found = s->sess;
      break;
    }
  }
  uv_mutex_unlock(&t->sess_lock);
  return found;
}

static void clear_sessions(struct hps__tls_ep *t) {
  tls_sess *s;
  while ((s = t->sessions) != NULL) {
    t->sessions = s->next;
    SSL_SESSION_free(s->sess);
    free(s->key);
    free(s);
  }
  t->nsessions = 0;
}

/* Client: a new session (TLS 1.2 handshake, or a TLS 1.3 ticket). */
static int on_new_session(SSL *ssl, SSL_SESSION *sess) {
  hps__conn *c = SSL_get_ex_data(ssl, ex_conn);
  if (c == NULL || c->tls == NULL || c->tls->sess_key == NULL)
    return 0;
  remember_session(c->loop->ep, c->tls->sess_key, sess);
  return 1; /* the reference is ours */
}

/* Server: pick the certificate for the name the client asked for. */
static int name_matches(const char *pattern, const char *name) {
  if (pattern[0] == '*' && pattern[1] == '.') {
    const char *dot = strchr(name, '.');
    return dot != NULL && dot != name && strcasecmp(dot + 1, pattern + 2) == 0;
  }
  return strcasecmp(pattern, name) == 0;
}

static int on_servername(SSL *ssl, int *alert, void *arg) {
  struct hps__tls_ep *t = arg;
  const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
  tls_sni *s;
  (void)alert;
  if (name == NULL)
    return SSL_TLSEXT_ERR_NOACK;
  for (s = t->sni; s != NULL; s = s->next) {
    if (s->ctx != NULL && name_matches(s->name, name)) {
      SSL_set_SSL_CTX(ssl, s->ctx);
      break;
    }
  }
  return SSL_TLSEXT_ERR_OK;
}

/* The CA names a server sends when it asks for a client certificate. Not
 * SSL_load_client_CA_file: it reads with OpenSSL's prompting default. */
static void set_client_ca_list(SSL_CTX *ctx, const char *file) {
  BIO *b = BIO_new_file(file, "r");
  X509 *x;
  if (b != NULL) {
    while ((x = PEM_read_bio_X509(b, NULL, on_password, NULL)) != NULL) {
      SSL_CTX_add_client_CA(ctx, x); /* copies the name */
      X509_free(x);
    }
    BIO_free(b);
  }
  ERR_clear_error();
}

static SSL_CTX *new_ctx(hps_endpoint *ep) {
  struct hps__tls_ep *t = ep->tls;
  int server = ep->role == HPS_TCP_SERVER;
  int verify = (int)ep->opt[HPS_OPT_TLS_VERIFY];
  const char *ca_file = str_opt(t, HPS_OPT_TLS_CA_FILE);
  const char *ca_path = str_opt(t, HPS_OPT_TLS_CA_PATH);
  const char *ca_pem = str_opt(t, HPS_OPT_TLS_CA_PEM);
  const char *s;
  int mode = SSL_VERIFY_NONE;
  SSL_CTX *ctx =
      SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
  if (ctx == NULL) {
    config_fail(t, "cannot create the TLS context", NULL);
    return NULL;
  }
  /* No prompt for encrypted PEM in any file this context reads. */
  SSL_CTX_set_default_passwd_cb(ctx, on_password);
  SSL_CTX_set_default_passwd_cb_userdata(ctx, NULL);
  SSL_CTX_set_min_proto_version(ctx, (int)ep->opt[HPS_OPT_TLS_MIN_VERSION]);
  /* Renegotiation is refused (TLS 1.3 KeyUpdate is handled). */
  SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION);
  /* An idle connection keeps no record buffers. */
  SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
  if ((s = str_opt(t, HPS_OPT_TLS_CIPHERS)) != NULL &&
      SSL_CTX_set_cipher_list(ctx, s) != 1) {
    config_fail(t, "bad cipher list", s);
    goto fail;
  }
  if ((s = str_opt(t, HPS_OPT_TLS_CIPHERSUITES)) != NULL &&
      SSL_CTX_set_ciphersuites(ctx, s) != 1) {
    config_fail(t, "bad TLS 1.3 ciphersuites", s);
    goto fail;
  }
  if (ca_file || ca_path) {
    if (SSL_CTX_load_verify_locations(ctx, ca_file, ca_path) != 1) {
      config_fail(t, "cannot load the CAs", ca_file ? ca_file : ca_path);
      goto fail;
    }
    if (server && ca_file)
      set_client_ca_list(ctx, ca_file);
  }
  if (ca_pem && !load_ca_pem(ctx, ca_pem)) {
    config_fail(t, "no certificate in the CA PEM text", NULL);
    goto fail;
  }
  /* A client without CA options trusts the system's store, as a browser
   * does; a server verifying clients needs a CA option (hps__tls_ep_start). */
  if (!server && !ca_file && !ca_path && !ca_pem) {
    SSL_CTX_set_default_verify_paths(ctx);
    ERR_clear_error();
  }
  if (verify >= HPS_TLS_VERIFY_PEER)
    mode = SSL_VERIFY_PEER;
  if (server && verify == HPS_TLS_VERIFY_REQUIRE)
    mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
  SSL_CTX_set_verify(ctx, mode, NULL);
  if (server) {
    /* Needed for resumption when client certificates are verified. */
    SSL_CTX_set_session_id_context(ctx, (const unsigned char *)"hpsock", 6);
    if (ep->opt[HPS_OPT_TLS_SESSION_CACHE]) {
      SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
    } else {
      SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
      SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
      SSL_CTX_set_num_tickets(ctx, 0);
    }
  } else if (ep->opt[HPS_OPT_TLS_SESSION_CACHE]) {
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT |
                                            SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(ctx, on_new_session);
  } else {
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  }
  return ctx;
fail:
  SSL_CTX_free(ctx);
  return NULL;
}

static void free_ctxs(struct hps__tls_ep *t) {
  tls_sni *s;
  SSL_CTX_free(t->ctx);
  t->ctx = NULL;
  for (s = t->sni; s != NULL; s = s->next) {
    SSL_CTX_free(s->ctx);
    s->ctx = NULL;
  }
}

int hps__tls_ep_start(hps_endpoint *ep) {
  struct hps__tls_ep *t;
  const char *cert, *key;
  int cert_pem = 0, key_pem = 0;
  tls_sni *s;
  uv_mutex_lock(&ep->mutex);
  t = ep->tls;
  if (t != NULL) {
    free_ctxs(t);
    clear_sessions(t);
    t->config_error[0] = '\0';
  }
  uv_mutex_unlock(&ep->mutex);
  if (!ep->opt[HPS_OPT_TLS])
    return 0;
  uv_once(&ex_once, ex_init);
  uv_mutex_lock(&ep->mutex);
  t = ep_tls(ep);
  uv_mutex_unlock(&ep->mutex);
  if (t == NULL || ex_conn < 0)
    return HPS_ENOMEM;
  ERR_clear_error();
  cert = str_opt(t, HPS_OPT_TLS_CERT_PEM);
  if (cert != NULL)
    cert_pem = 1;
  else
    cert = str_opt(t, HPS_OPT_TLS_CERT_FILE);
  key = str_opt(t, HPS_OPT_TLS_KEY_PEM);
  if (key != NULL)
    key_pem = 1;
  else
    key = str_opt(t, HPS_OPT_TLS_KEY_FILE);
  uv_mutex_lock(&ep->mutex); /* config_error is read under it */
  if (HPS__IS_UDP(ep)) {
    snprintf(t->config_error, sizeof(t->config_error),
             "TLS is for the TCP roles only (UDP has no DTLS here)");
    goto fail;
  }
  if (ep->role == HPS_TCP_SERVER && cert == NULL && key == NULL) {
    snprintf(t->config_error, sizeof(t->config_error),
             "a TLS server needs a certificate and a private key");
    goto fail;
  }
  /* The system's store would let anyone with a publicly issued
   * certificate in as a verified client. */
  if (ep->role == HPS_TCP_SERVER &&
      ep->opt[HPS_OPT_TLS_VERIFY] != HPS_TLS_VERIFY_NONE &&
      str_opt(t, HPS_OPT_TLS_CA_FILE) == NULL &&
      str_opt(t, HPS_OPT_TLS_CA_PATH) == NULL &&
      str_opt(t, HPS_OPT_TLS_CA_PEM) == NULL) {
    snprintf(t->config_error, sizeof(t->config_error),
             "a server verifying client certificates (HPS_OPT_TLS_VERIFY "
             "PEER or REQUIRE) needs a CA option (HPS_OPT_TLS_CA_FILE, "
             "_CA_PATH or _CA_PEM); it never trusts the system's store");
    goto fail;
  }
  if ((t->ctx = new_ctx(ep)) == NULL ||
      load_pair(t, t->ctx, cert, cert_pem, key, key_pem) != 0)
    goto fail;
  if (ep->role == HPS_TCP_SERVER && t->sni != NULL) {
    for (s = t->sni; s != NULL; s = s->next) {
      if ((s->ctx = new_ctx(ep)) == NULL ||
          load_pair(t, s->ctx, s->cert, is_pem(s->cert), s->key,
                    is_pem(s->key)) != 0)
        goto fail;
    }
    SSL_CTX_set_tlsext_servername_callback(t->ctx, on_servername);
    SSL_CTX_set_tlsext_servername_arg(t->ctx, t);
  }
  uv_mutex_unlock(&ep->mutex);
  return 0;
fail:
  free_ctxs(t);
  uv_mutex_unlock(&ep->mutex);
  ERR_clear_error();
  return HPS_ETLSCONFIG;
}

void hps__tls_ep_free(hps_endpoint *ep) {
  struct hps__tls_ep *t = ep->tls;
  tls_sni *s;
  int i;
  if (t == NULL)
    return;
  free_ctxs(t);
  clear_sessions(t);
  while ((s = t->sni) != NULL) {
    t->sni = s->next;
    sni_free(s);
  }
  for (i = 0; i < NSTR; i++)
    str_free(t->str[i]);
  uv_mutex_destroy(&t->sess_lock);
  free(t);
  ep->tls = NULL;
}

/* ---- connection ---- */

static int is_ip(const char *host) {
  unsigned char b[sizeof(struct in6_addr)];
  return inet_pton(AF_INET, host, b) == 1 || inet_pton(AF_INET6, host, b) == 1;
}

/* Counts the renegotiations we refused (OpenSSL answers each with a
 * no_renegotiation warning and reads on); pump() closes after a few. */
static void on_info(const SSL *ssl, int where, int ret) {
  hps__conn *c;
  if (!(where & SSL_CB_WRITE_ALERT) || (ret & 0xff) != SSL_AD_NO_RENEGOTIATION)
    return;
  c = SSL_get_ex_data(ssl, ex_conn);
  if (c != NULL && c->tls != NULL)
    c->tls->reneg_refused++;
}

/* Published last and under the loop's lock: hps_tls_info reads c->tls and
 * its texts under it from other threads. */
static void publish(hps__conn *c, struct hps__tls_conn *t) {
  uv_mutex_lock(&c->loop->lock);
  c->tls = t;
  uv_mutex_unlock(&c->loop->lock);
}

/* A new empty memory BIO set up like the connection's first ones. */
static BIO *new_mem_bio(void) {
  BIO *b = BIO_new(BIO_s_mem());
  /* An empty read BIO means "wait for more", not end of stream. */
  if (b != NULL)
    BIO_set_mem_eof_return(b, -1);
  return b;
}

/* Does the BIO's buffer hold more than keep bytes of memory? */
static int bio_is_large(BIO *b, size_t keep) {
  BUF_MEM *bm = NULL;
  BIO_get_mem_ptr(b, &bm);
  return bm != NULL && bm->max > keep;
}

/* Give an empty BIO's large buffer back. A failed allocation keeps the
 * old one (still correct, only bigger). */
static void shrink_wbio(struct hps__tls_conn *t) {
  BIO *b = new_mem_bio();
  if (b == NULL)
    return;
  SSL_set0_wbio(t->ssl, b); /* frees the old one */
  t->wbio = b;
}

static void shrink_rbio(struct hps__tls_conn *t) {
  BIO *b;
  if (BIO_ctrl_pending(t->rbio) != 0 || !bio_is_large(t->rbio, RBIO_KEEP_MAX))
    return;
  if ((b = new_mem_bio()) == NULL)
    return;
  SSL_set0_rbio(t->ssl, b); /* frees the old one */
  t->rbio = b;
}

/* The write BIO's bytes are all out: empty it. A large buffer is given
 * back; a small one is reset for reuse. */
static void wbio_done(struct hps__tls_conn *t) {
  if (bio_is_large(t->wbio, WBIO_KEEP_MAX))
    shrink_wbio(t);
  else
    (void)BIO_reset(t->wbio);
}

/* The name sent and verified: the SNI option, else the host given unless
 * it is a numeric address (then the address is verified). Any failure
 * here (a name OpenSSL refuses, such as one over 255 bytes; no memory)
 * fails the connection before it is made: no handshake ever checks less
 * than it was asked to. 0, or an error with t->error set. */
static int client_names(hps_endpoint *ep, struct hps__tls_conn *t,
                        const char *host, const hps__addr *addr) {
  struct hps__tls_ep *et = ep->tls;
  X509_VERIFY_PARAM *param = SSL_get0_param(t->ssl);
  uint16_t port = ntohs(addr->sa.sa_family == AF_INET6 ? addr->in6.sin6_port
                                                       : addr->in4.sin_port);
  const char *sni = NULL, *name, *failed = NULL;
  char *opt = NULL, key[INFO_CAP + 8];
  uv_mutex_lock(&ep->mutex);
  if (et->str[HPS_OPT_TLS_SNI - STR_FIRST] != NULL &&
      (opt = strdup(et->str[HPS_OPT_TLS_SNI - STR_FIRST])) == NULL)
    failed = "out of memory for the server name";
  uv_mutex_unlock(&ep->mutex);
  if (failed != NULL) {
    snprintf(t->error, sizeof(t->error), "%s", failed);
    return HPS_ENOMEM;
  }
  sni = opt != NULL ? opt : is_ip(host) ? NULL : host;
  name = sni != NULL ? sni : host;
  if (sni != NULL)
    snprintf(t->name, sizeof(t->name), "%s", sni); /* info */
  if (sni != NULL && SSL_set_tlsext_host_name(t->ssl, sni) != 1)
    failed = "cannot send the server name (SNI)";
  if (failed == NULL && ep->opt[HPS_OPT_TLS_VERIFY] != HPS_TLS_VERIFY_NONE) {
    X509_VERIFY_PARAM_set_hostflags(param,
                                    X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    if (sni != NULL ? X509_VERIFY_PARAM_set1_host(param, sni, 0) != 1
                    : X509_VERIFY_PARAM_set1_ip_asc(param, host) != 1)
      failed = "cannot set up the check of the server name";
  }
  if (failed == NULL && ep->opt[HPS_OPT_TLS_SESSION_CACHE]) {
    /* Sessions are found by the whole name: a cut one could offer a
     * session of another server. */
    int n = snprintf(key, sizeof(key), "%s|%u", name, (unsigned)port);
    if (n < 0 || (size_t)n >= sizeof(key)) {
      failed = "server name too long for the session cache";
    } else {
      SSL_SESSION *sess;
      t->sess_key = strdup(key); /* none: no resumption */
      if (t->sess_key != NULL && (sess = find_session(ep, key)) != NULL) {
        SSL_set_session(t->ssl, sess);
        SSL_SESSION_free(sess);
      }
    }
  }
  if (failed != NULL) {
    unsigned long e = ERR_peek_last_error();
    const char *why = e ? ERR_reason_error_string(e) : NULL;
    snprintf(t->error, sizeof(t->error), "%s \"%.64s%s\"%s%s", failed, name,
             strlen(name) > 64 ? "..." : "", why ? ": " : "", why ? why : "");
  }
  free(opt);
  return failed != NULL ? HPS_ETLSCONFIG : 0;
}

int hps__tls_conn_new(hps__conn *c, const char *host, const hps__addr *addr) {
  hps_endpoint *ep = c->loop->ep;
  struct hps__tls_ep *et = ep->tls;
  struct hps__tls_conn *t = calloc(1, sizeof(*t));
  int r;
  if (t == NULL)
    return HPS_ENOMEM;
  t->ssl = SSL_new(et->ctx);
  t->rbio = new_mem_bio();
  t->wbio = new_mem_bio();
  if (t->ssl == NULL || t->rbio == NULL || t->wbio == NULL) {
    BIO_free(t->rbio);
    BIO_free(t->wbio);
    SSL_free(t->ssl);
    free(t);
    ERR_clear_error();
    return HPS_ENOMEM;
  }
  SSL_set_bio(t->ssl, t->rbio, t->wbio);
  SSL_set_ex_data(t->ssl, ex_conn, c);
  SSL_set_info_callback(t->ssl, on_info);
  t->op = host == NULL ? HPS_OP_ACCEPT : HPS_OP_CONNECT;
  if (host == NULL) {
    SSL_set_accept_state(t->ssl);
    publish(c, t);
    return 0;
  }
  SSL_set_connect_state(t->ssl);
  r = client_names(ep, t, host, addr);
  ERR_clear_error();
  publish(c, t); /* also on failure: the CLOSE's reason is in t->error */
  return r;
}

void hps__tls_conn_free(hps__conn *c) {
  struct hps__tls_conn *t = c->tls;
  if (t == NULL)
    return;
  c->tls = NULL;    /* the caller holds the loop's lock */
  SSL_free(t->ssl); /* frees the BIOs */
  free(t->sess_key);
  free(t);
}

static void set_error_text(hps__conn *c, const char *text) {
  uv_mutex_lock(&c->loop->lock);
  snprintf(c->tls->error, sizeof(c->tls->error), "%s", text);
  uv_mutex_unlock(&c->loop->lock);
}

static void fail(hps__conn *c, int err, const char *text) {
  struct hps__tls_conn *t = c->tls;
  int op = t->done ? HPS_OP_RECEIVE : t->op;
  if (c->handle_closing)
    return;
  set_error_text(c, text);
  ERR_clear_error();
  hps__conn_close(c, op, err);
}

/* After the handshake the transport still carries bytes: what was
 * accepted for sending (ciphertext already, and OpenSSL's alert, if it
 * wrote one) goes out before FIN, within HPS_OPT_CLOSE_TIMEOUT; reading
 * stops now. Before it, nothing accepted can go out: closed at once. */
static void fail_soft(hps__conn *c, int err, const char *text) {
  if (!c->tls->done) {
    fail(c, err, text);
    return;
  }
  if (c->handle_closing)
    return;
  set_error_text(c, text);
  ERR_clear_error();
  hps__conn_graceful(c, HPS_OP_RECEIVE, err);
}

/* Map the failure of an SSL call (e = SSL_get_error) to an error code and
 * a reason text, then close the connection. */
static void fail_ssl(hps__conn *c, int e) {
  unsigned long code = ERR_peek_last_error();
  int reason = ERR_GET_REASON(code);
  int err = HPS_ETLS;
  char text[INFO_CAP];
  const char *why = code ? ERR_reason_error_string(code) : NULL;
  if (e == SSL_ERROR_SSL && ERR_GET_LIB(code) == ERR_LIB_SSL) {
    if (reason == SSL_R_CERTIFICATE_VERIFY_FAILED)
      err = HPS_ETLSVERIFY;
    else if (reason >= SSL_AD_REASON_OFFSET &&
             reason < SSL_AD_REASON_OFFSET + 256)
      err = HPS_ETLSALERT;
    else if (reason == SSL_R_WRONG_VERSION_NUMBER ||
             reason == SSL_R_HTTP_REQUEST ||
             reason == SSL_R_HTTPS_PROXY_REQUEST ||
             reason == SSL_R_UNKNOWN_PROTOCOL ||
             reason == SSL_R_PACKET_LENGTH_TOO_LONG)
      err = HPS_ETLSNOTTLS;
    else if (reason == SSL_R_UNEXPECTED_EOF_WHILE_READING)
      err = HPS_ETLSEOF;
  }
  if (err == HPS_ETLSVERIFY) {
    long v = SSL_get_verify_result(c->tls->ssl);
    snprintf(text, sizeof(text), "certificate verify failed: %s",
             X509_verify_cert_error_string(v));
  } else if (why != NULL) {
    snprintf(text, sizeof(text), "%s", why);
  } else {
    snprintf(text, sizeof(text), "TLS failure (SSL error %d)", e);
  }
  fail_soft(c, err, text);
}

/* Send what OpenSSL wrote into the write BIO. plain: the plaintext request
 * it carries, or NULL. 0, or an error (the connection is then closing;
 * plain is not taken). */
static int flush_out(hps__conn *c, hps__wreq *plain) {
  size_t n = BIO_ctrl_pending(c->tls->wbio);
  hps__wreq *cw;
  if (n == 0) {
    /* SSL_write always makes a record: no ciphertext for plaintext would
     * be a broken stream. plain (maybe the file being sent) is not taken. */
    if (plain != NULL) {
      fail(c, HPS_ETLS, "no ciphertext for the plaintext written");
      return HPS_ETLS;
    }
    return 0;
  }
  if (plain == NULL && !c->handle_closing && c->tcp.write_queue_size == 0) {
    /* The common case (an echo, a handshake flight): write straight from
     * the BIO's memory and copy only what the socket did not take. */
    BUF_MEM *bm = NULL;
    ssize_t r;
    BIO_get_mem_ptr(c->tls->wbio, &bm);
    r = hps__try_write(c, bm->data, bm->length);
    if (r == (ssize_t)bm->length) {
      wbio_done(c->tls);
      return 0;
    }
    if (r < 0 && r != UV_EAGAIN) {
      wbio_done(c->tls);
      hps__conn_close(c, hps__tls_send_op(c), (int)r);
      return (int)r;
    }
    if (r < 0)
      r = 0;
    n = bm->length - (size_t)r;
    cw = hps__wreq_new(n);
    if (cw != NULL)
      memcpy(cw->data, bm->data + r, n);
    wbio_done(c->tls);
  } else {
    cw = hps__wreq_new(n);
    if (cw != NULL)
      BIO_read(c->tls->wbio, cw->data, (int)n);
    if (BIO_ctrl_pending(c->tls->wbio) == 0 &&
        bio_is_large(c->tls->wbio, WBIO_KEEP_MAX))
      shrink_wbio(c->tls);
  }
  if (cw == NULL) {
    hps__conn_close(c, hps__tls_send_op(c), HPS_ENOMEM);
    return HPS_ENOMEM;
  }
  cw->kind = HPS__CMD_TLSRAW;
  cw->id = c->id;
  cw->plain = plain;
  return hps__write_cipher(c, cw);
}

static void copy_info(hps__conn *c) {
  struct hps__tls_conn *t = c->tls;
  X509 *peer = SSL_get1_peer_certificate(t->ssl);
  const char *name = SSL_get_servername(t->ssl, TLSEXT_NAMETYPE_host_name);
  char subject[INFO_CAP] = "";
  if (peer != NULL) {
    X509_NAME_oneline(X509_get_subject_name(peer), subject, sizeof(subject));
    X509_free(peer);
  }
  uv_mutex_lock(&c->loop->lock);
  snprintf(t->version, sizeof(t->version), "%s", SSL_get_version(t->ssl));
  snprintf(t->cipher, sizeof(t->cipher), "%s",
           SSL_CIPHER_get_name(SSL_get_current_cipher(t->ssl)));
  if (name != NULL)
    snprintf(t->name, sizeof(t->name), "%s", name);
  snprintf(t->subject, sizeof(t->subject), "%s", subject);
  t->resumed = SSL_session_reused(t->ssl);
  uv_mutex_unlock(&c->loop->lock);
}

static void on_timer_closed(uv_handle_t *h) {
  free(h);
}

static void on_handshake_timeout(uv_timer_t *tm) {
  fail(tm->data, HPS_ETIMEDOUT, "TLS handshake timed out");
}

/* Advance the handshake. 1: done (HANDSHAKE delivered, the connection may
 * have been closed by its handler), 0: waiting for bytes, -1: failed. */
static int handshake(hps__conn *c) {
  struct hps__tls_conn *t = c->tls;
  int r, e;
  ERR_clear_error();
  r = SSL_do_handshake(t->ssl);
  e = r == 1 ? SSL_ERROR_NONE : SSL_get_error(t->ssl, r);
  /* Flight, tickets or an alert: out before anything else happens. */
  if (BIO_ctrl_pending(t->wbio) > 0 && flush_out(c, NULL) != 0)
    return -1;
  if (r != 1) {
    if (e == SSL_ERROR_WANT_READ)
      return 0;
    fail_ssl(c, e);
    return -1;
  }
  t->done = 1;
  if (c->connect_timer) {
    uv_close((uv_handle_t *)c->connect_timer, on_timer_closed);
    c->connect_timer = NULL;
  }
  copy_info(c);
  /* Reading went on for the handshake while paused: stop it now, before
   * the handler (which may resume). */
  if (c->paused)
    hps__read_stop(c);
  /* Sends accepted during the handshake go first. */
  hps__drain_deferred(c);
  if (c->state != HPS__C_OPEN)
    return 1;
  if (t->close_after) { /* disconnected gracefully meanwhile: no HANDSHAKE */
    t->close_after = 0;
    hps__conn_disconnect(c, 0, c->close_err);
    return 1;
  }
  if (hps__emit(c, HPS_EV_HANDSHAKE, NULL, 0) == HPS_HR_ERROR)
    hps__conn_close(c, t->op, HPS_EHANDLER);
  return 1;
}

int hps__tls_disconnect_later(hps__conn *c, int err) {
  struct hps__tls_conn *t = c->tls;
  if (t->done || c->state != HPS__C_OPEN || c->handle_closing)
    return 0;
  t->close_after = 1;
  c->close_op = HPS_OP_CLOSE;
  c->close_err = err;
  /* Later sends fail as on a closing connection. */
  uv_mutex_lock(&c->loop->lock);
  HPS__STORE(&c->doomed, 1);
  uv_mutex_unlock(&c->loop->lock);
  return 1;
}

int hps__tls_start(hps__conn *c, int op) {
  hps_endpoint *ep = c->loop->ep;
  uv_timer_t *tm = malloc(sizeof(*tm));
  c->tls->op = op;
  if (tm == NULL) {
    fail(c, HPS_ENOMEM, "out of memory");
    return HPS_ENOMEM;
  }
  uv_timer_init(&c->loop->uv, tm);
  tm->data = c;
  c->connect_timer = tm;
  uv_timer_start(tm, on_handshake_timeout,
                 (uint64_t)ep->opt[HPS_OPT_TLS_HANDSHAKE_TIMEOUT], 0);
  /* A client speaks first; a server's call only sets the state. */
  if (op == HPS_OP_CONNECT && handshake(c) < 0)
    return HPS_ETLS;
  return 0;
}

/* Deliver plaintext while the connection is open and not paused. */
static void pump(hps__conn *c) {
  struct hps__tls_conn *t = c->tls;
  char *buf = c->loop->readbuf; /* the ciphertext in it is in the BIO now */
  size_t cap = sizeof(c->loop->readbuf);
  t->in_read = 1;
  while (c->state == HPS__C_OPEN && !c->paused) {
    size_t got = 0;
    int r = 1, e = SSL_ERROR_NONE;
    ERR_clear_error();
    while (cap - got >= 16384 &&
           (r = SSL_read(t->ssl, buf + got, (int)(cap - got))) > 0)
      got += (size_t)r;
    if (r <= 0)
      e = SSL_get_error(t->ssl, r);
    if (e == SSL_ERROR_SSL) {
      /* Fail before delivering: the error text would be gone after the
       * handlers ran. What was decrypted before the bad record is lost. */
      fail_ssl(c, e);
      break;
    }
    if (got > 0)
      hps__deliver_plain(c, buf, got);
    if (r > 0)
      continue; /* the buffer filled: more may wait */
    if (c->state != HPS__C_OPEN)
      break;
    if (e == SSL_ERROR_WANT_READ)
      break;
    if (e == SSL_ERROR_ZERO_RETURN) {
      /* close_notify: answer it after what is queued, then FIN; a normal
       * close by the peer (op RECEIVE, error 0). */
      hps__conn_graceful(c, HPS_OP_RECEIVE, 0);
      break;
    }
    fail_ssl(c, e);
    break;
  }
  t->in_read = 0;
  if (!c->handle_closing && t->reneg_refused > MAX_RENEG_REFUSED) {
    fail(c, HPS_ETLS, "the peer keeps asking to renegotiate (refused)");
    return;
  }
  /* KeyUpdate answers, refused renegotiations and the like: the peer
   * makes OpenSSL write them. One that never reads would grow the queue
   * without end; its limit holds for them as for sends. */
  if (!c->handle_closing && BIO_ctrl_pending(t->wbio) > 0 &&
      flush_out(c, NULL) == 0 && !c->handle_closing &&
      HPS__LOAD(&c->queued) >
          (size_t)c->loop->ep->opt[HPS_OPT_MAX_SEND_QUEUE]) {
    fail(c, HPS_ESENDQ,
         "the peer does not read the TLS records it makes us send "
         "(HPS_OPT_MAX_SEND_QUEUE)");
    return;
  }
  if (!c->handle_closing)
    shrink_rbio(t);
}

void hps__tls_on_read(hps__conn *c, const char *data, size_t n) {
  struct hps__tls_conn *t = c->tls;
  if (BIO_write(t->rbio, data, (int)n) != (int)n) {
    fail(c, HPS_ENOMEM, "out of memory");
    return;
  }
  if (!t->done && handshake(c) != 1)
    return;
  if (c->state != HPS__C_OPEN)
    return;
  pump(c);
}

void hps__tls_close_text(hps__conn *c, int err) {
  struct hps__tls_conn *t = c->tls;
  char text[INFO_CAP];
  if (t->error[0] != '\0')
    return; /* the first reason stays */
  snprintf(text, sizeof(text), "%s%s", hps_strerror(err),
           t->done ? "" : " during the handshake");
  set_error_text(c, text);
}

void hps__tls_on_eof(hps__conn *c, int nread) {
  struct hps__tls_conn *t = c->tls;
  char text[INFO_CAP];
  if (nread == UV_EOF) {
    /* After the handshake a bare FIN may still be a half-close: what is
     * queued for the peer goes out first (fail_soft). */
    fail_soft(c, HPS_ETLSEOF,
              t->done ? "the peer closed the stream without close_notify"
                      : "the peer closed the connection during the "
                        "handshake");
    return;
  }
  snprintf(text, sizeof(text), "%s%s", hps_strerror(nread),
           t->done ? "" : " during the handshake");
  fail(c, nread, text);
}

/* Encrypt n bytes WRITE_CHUNK at a time, each chunk's ciphertext sent
 * before the next is made: the write BIO never holds more than a chunk,
 * so a large send neither grows its buffer (copying it at each step) nor
 * leaves a large one behind. The last chunk carries plain (see
 * flush_out). 0, or an error (the connection is closing; plain not
 * taken). */
static int encrypt_out(hps__conn *c, const char *data, size_t n,
                       hps__wreq *plain) {
  SSL *ssl = c->tls->ssl;
  do {
    size_t k = n < WRITE_CHUNK ? n : WRITE_CHUNK;
    int r, e;
    ERR_clear_error();
    r = SSL_write(ssl, data, (int)k); /* all of it: a memory BIO never blocks */
    if (r <= 0) {
      fail_ssl(c, SSL_get_error(ssl, r));
      return HPS_ETLS;
    }
    data += k;
    n -= k;
    e = flush_out(c, n == 0 ? plain : NULL);
    if (e != 0)
      return e;
  } while (n > 0);
  return 0;
}

int hps__tls_write(hps__conn *c, hps__wreq *w) {
  int keep, r;
  if (c->handle_closing)
    return UV_EBADF;
  keep = w->kind == HPS__CMD_FILE ||
         (HPS__LOAD(&c->loop->ep->events) & HPS_EVBIT(HPS_EV_SEND));
  r = encrypt_out(c, w->data + w->off, w->len - w->off, keep ? w : NULL);
  if (r == 0 && !keep)
    free(w); /* the ciphertext holds the bytes now */
  return r;
}

void hps__tls_write_bytes(hps__conn *c, const char *data, size_t n) {
  if (c->handle_closing)
    return;
  encrypt_out(c, data, n, NULL); /* a failure closes the connection */
}

void hps__tls_shutdown(hps__conn *c) {
  struct hps__tls_conn *t = c->tls;
  if (!t->done || c->handle_closing)
    return;
  ERR_clear_error();
  SSL_shutdown(t->ssl); /* queues close_notify; the answer is not awaited */
  ERR_clear_error();
  if (BIO_ctrl_pending(t->wbio) == 0)
    return;
  if ((SSL_get_shutdown(t->ssl) & SSL_RECEIVED_SHUTDOWN) &&
      c->tcp.write_queue_size == 0) {
    /* Our answer to the peer's close_notify. The peer need not wait for
     * it and may have closed its socket already: failing to send it is
     * no error of this normal close. */
    BUF_MEM *bm = NULL;
    ssize_t r;
    char skip[64];
    BIO_get_mem_ptr(t->wbio, &bm);
    r = hps__try_write(c, bm->data, bm->length);
    if (r == (ssize_t)bm->length || (r < 0 && r != UV_EAGAIN)) {
      wbio_done(t);
      return;
    }
    while (r > 0) { /* a part went: the rest is queued below */
      int n = BIO_read(t->wbio, skip,
                       r < (ssize_t)sizeof(skip) ? (int)r : (int)sizeof(skip));
      if (n <= 0)
        break;
      r -= n;
    }
  }
  flush_out(c, NULL);
}

void hps__tls_resume(hps__conn *c) {
  struct hps__tls_conn *t = c->tls;
  hps__loop *lp = c->loop;
  hps__wreq *w;
  if (t->in_read || t->drain_posted || !t->done)
    return;
  if (SSL_pending(t->ssl) == 0 && BIO_ctrl_pending(t->rbio) == 0)
    return;
  /* Not now: the caller may be a handler of another connection. */
  w = hps__wreq_new(0);
  if (w == NULL)
    return;
  w->kind = HPS__CMD_TLSDRAIN;
  w->id = c->id;
  uv_mutex_lock(&lp->lock);
  if (hps__loop_post_locked(lp, w) != 0)
    free(w);
  else
    t->drain_posted = 1;
  uv_mutex_unlock(&lp->lock);
}

void hps__tls_drain(hps__conn *c) {
  c->tls->drain_posted = 0;
  /* Plaintext a pause held back (c->held) came out of the TLS stream
   * before what SSL still has: its DRAIN delivers it and then calls this. */
  if (c->state == HPS__C_OPEN && !c->paused && c->held == NULL)
    pump(c);
}

/* ---- info ---- */

int hps__tls_info(hps_endpoint *ep, hps_conn_id id, int kind, char *buf,
                  size_t cap, size_t *len) {
  hps__loop *lp;
  hps__conn *c;
  char tmp[INFO_CAP];
  int r, st;
  if (kind < HPS_TLS_INFO_ERROR || kind > HPS_TLS_INFO_CONFIG_ERROR ||
      (buf == NULL && cap > 0))
    return HPS_EINVAL;
  if (kind == HPS_TLS_INFO_CONFIG_ERROR) {
    uv_mutex_lock(&ep->mutex);
    r = copy_out(ep->tls ? ep->tls->config_error : "", buf, cap, len);
    uv_mutex_unlock(&ep->mutex);
    return r;
  }
  if (id == 0 && HPS__SINGLE(ep))
    id = HPS__LOAD(&ep->client_id);
  st = HPS__LOAD(&ep->state);
  if ((st != HPS_STATE_STARTED && st != HPS_STATE_STOPPING) ||
      HPS__ID_LOOP(id) >= (uint32_t)hps__nloops(ep))
    return HPS_ENOTFOUND;
  lp = hps__loop_at(ep, (int)HPS__ID_LOOP(id));
  uv_mutex_lock(&lp->lock);
  c = hps__lookup_locked(ep, id, NULL);
  if (c == NULL || c->tls == NULL) {
    uv_mutex_unlock(&lp->lock);
    return c == NULL ? HPS_ENOTFOUND : HPS_ENOTLS;
  }
  switch (kind) {
  case HPS_TLS_INFO_ERROR:
    snprintf(tmp, sizeof(tmp), "%s", c->tls->error);
    break;
  case HPS_TLS_INFO_VERSION:
    snprintf(tmp, sizeof(tmp), "%s", c->tls->version);
    break;
  case HPS_TLS_INFO_CIPHER:
    snprintf(tmp, sizeof(tmp), "%s", c->tls->cipher);
    break;
  case HPS_TLS_INFO_SERVER_NAME:
    snprintf(tmp, sizeof(tmp), "%s", c->tls->name);
    break;
  case HPS_TLS_INFO_PEER_SUBJECT:
    snprintf(tmp, sizeof(tmp), "%s", c->tls->subject);
    break;
  default:
    snprintf(tmp, sizeof(tmp), "%d", c->tls->resumed);
    break;
  }
  uv_mutex_unlock(&lp->lock);
  return copy_out(tmp, buf, cap, len);
}
