/* tls.h - TLS over a connection's byte stream (OpenSSL 3, memory BIOs).
 *
 * The engine stays libuv-native: libuv reads ciphertext into the loop's read
 * buffer, tls.c feeds it to OpenSSL through a memory BIO and hands the
 * plaintext to the receive models unchanged; plaintext sends are encrypted
 * into the other memory BIO, whose ciphertext goes out through tcp.c's
 * write path (try-write, then libuv's queue). A plain connection has
 * c->tls == NULL and pays one pointer test on each path.
 *
 * Threads: everything here runs on the connection's loop thread, except
 * the endpoint functions (hps__tls_ep_*, setopt/getopt), which run on the
 * caller's thread under the rules of hps_setopt/hps_start, and the info
 * texts of a connection, which other threads read under its loop's lock.
 */
#ifndef HPS_CORE_TLS_H
#define HPS_CORE_TLS_H

#include <stddef.h>
#include <stdint.h>

struct hps__tls_ep;
struct hps__tls_conn;

/* Is the connection's TLS handshake done? (c->tls must be non-NULL) */
int hps__tls_done(const hps__conn *c);
/* The op of a CLOSE for a failed write: the handshake's op (ACCEPT or
 * CONNECT) until it is done, then HPS_OP_SEND. */
int hps__tls_send_op(const hps__conn *c);
/* Does the endpoint's current run speak TLS? */
int hps__tls_active(const hps_endpoint *ep);

/* ---- endpoint (caller's thread) ---- */
/* String options (keys, passwords, ...) are wiped before they are freed:
 * replaced, cleared, or at hps_free. Tests only: when set, called with
 * each one's memory after the wipe, before the free. */
extern void (*hps__tls_wipe_probe)(const char *p, size_t n);
/* Keys 80..90. HPS_OPT_TLS_KEY_PEM and _KEY_PASSWORD are write-only:
 * getopt_str answers HPS_EINVAL (and *len 0). */
int hps__tls_setopt_str(hps_endpoint *ep, int opt, const char *value);
int hps__tls_getopt_str(hps_endpoint *ep, int opt, char *buf, size_t cap,
                        size_t *len);
int hps__tls_add_cert(hps_endpoint *ep, const char *name, const char *cert,
                      const char *key);
/* hps_start: build the SSL_CTX when HPS_OPT_TLS is on (else drop the old
 * one). 0, HPS_ETLSCONFIG (reason kept for hps_tls_info) or HPS_ENOMEM. */
int hps__tls_ep_start(hps_endpoint *ep);
void hps__tls_ep_free(hps_endpoint *ep);
int hps__tls_info(hps_endpoint *ep, hps_conn_id id, int kind, char *buf,
                  size_t cap, size_t *len);

/* ---- connection (loop thread) ---- */
/* A server connection just accepted (host NULL), or an agent/client one
 * about to connect to host (the name given to hps_connect) at addr.
 * HPS_ETLSCONFIG: the server name cannot be sent or checked; c->tls is
 * set anyway, with the reason, for the CLOSE the caller gives. */
int hps__tls_conn_new(hps__conn *c, const char *host, const hps__addr *addr);
/* Under the loop's lock (the connection is being released). */
void hps__tls_conn_free(hps__conn *c);
/* ACCEPT/CONNECT was delivered: start the handshake (and its timer). 0, or
 * an error after which the connection is closing. */
int hps__tls_start(hps__conn *c, int op);
/* Ciphertext arrived. */
void hps__tls_on_read(hps__conn *c, const char *data, size_t n);
/* The stream ended or failed (nread < 0): close with the right op/error. */
void hps__tls_on_eof(hps__conn *c, int nread);
/* Encrypt the unwritten part of w and write it. On 0, w is owned (kept as
 * the ciphertext's plain request when its completion matters: a file
 * chunk, or SEND events on; else freed). On error w is not taken. */
int hps__tls_write(hps__conn *c, hps__wreq *w);
/* Encrypt and write bytes that need no completion (the cork). */
void hps__tls_write_bytes(hps__conn *c, const char *data, size_t n);
/* hps_disconnect(force = 0) before the handshake is done: 1 if the close
 * waits for the handshake (then the deferred sends, close_notify and FIN
 * go out; later sends are refused), 0 if it cannot (close at once). */
int hps__tls_disconnect_later(hps__conn *c, int err);
/* The connection closed with err (non-zero), its CLOSE is next: give it a
 * reason text if none was set (socket errors, refused sends, handler
 * errors). Not under the loop's lock. */
void hps__tls_close_text(hps__conn *c, int err);
/* Graceful close: queue close_notify (before FIN). */
void hps__tls_shutdown(hps__conn *c);
/* Reading resumed: plaintext buffered in OpenSSL is delivered soon. */
void hps__tls_resume(hps__conn *c);
/* CMD_TLSDRAIN: deliver buffered plaintext now. */
void hps__tls_drain(hps__conn *c);

#endif
