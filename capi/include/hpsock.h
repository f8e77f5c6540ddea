/*
 * hpsock.h - the one public header of hpsock, a high-performance TCP and
 * UDP communication library on libuv.
 *
 * ABI rules
 * ---------
 * - Public names are hps_* (functions, types) and HPS_* (macros, constants).
 * - Handles are opaque (hps_endpoint *), created by hps_create() and released
 *   by hps_free(). The only struct the caller reads is hps_event; fields are
 *   only ever appended to it, never reordered or removed.
 * - Errors are negative int codes. Library errors come from HPS_ERRNO_MAP;
 *   any other negative code is a system error (-errno, libuv style).
 *   hps_strerror() and hps_err_name() describe both kinds.
 * - Options are set and read by key, so new options never break the ABI.
 *
 * Threads
 * -------
 * Every function may be called from any thread, including from inside an
 * event handler, unless its comment says otherwise. Events of one connection
 * run on that connection's loop thread, one at a time and in order.
 *
 * Connections
 * -----------
 * A connection is known only by its 64-bit ID (hps_conn_id). IDs are never
 * reused within an endpoint's lifetime, restarts included (slot + 32-bit
 * generation; a slot whose generation would wrap is retired), so a stale ID
 * is reported as HPS_ENOTFOUND and never reaches another connection -- from
 * any thread, also while the endpoint stops or starts again (what such a
 * call looks at lives until hps_free). For a client endpoint, ID 0 means
 * "the client's current connection".
 */
#ifndef HPSOCK_H
#define HPSOCK_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(HPS_BUILDING) && defined(__GNUC__)
#define HPS_EXTERN __attribute__((visibility("default")))
#else
#define HPS_EXTERN /* nothing */
#endif

/* ------------------------------------------------------------------ */
/* Version                                                             */
/* ------------------------------------------------------------------ */

#define HPS_VERSION_MAJOR 0
#define HPS_VERSION_MINOR 1
#define HPS_VERSION_PATCH 0
#define HPS_VERSION_HEX                                                        \
  ((HPS_VERSION_MAJOR << 16) | (HPS_VERSION_MINOR << 8) | HPS_VERSION_PATCH)

/* "MAJOR.MINOR.PATCH" of the library actually loaded. Never NULL. */
HPS_EXTERN const char *hps_version(void);
/* HPS_VERSION_HEX of the library actually loaded. */
HPS_EXTERN unsigned hps_version_hex(void);

/* ------------------------------------------------------------------ */
/* Errors                                                              */
/* ------------------------------------------------------------------ */

/* XX(name, value, message). Values are stable ABI. */
#define HPS_ERRNO_MAP(XX)                                                      \
  XX(EINVAL, -30001, "invalid argument")                                       \
  XX(EHANDLE, -30002, "invalid endpoint handle")                               \
  XX(ENOTFOUND, -30003, "connection not found")                                \
  XX(ESTATE, -30004, "operation not allowed in the endpoint's current state")  \
  XX(EROLE, -30005, "operation not supported by this endpoint's role")         \
  XX(EMODEL, -30006, "operation not supported by this receive model")          \
  XX(ENOMEM, -30007, "out of memory")                                          \
  XX(ESENDQ, -30008, "send queue limit exceeded")                              \
  XX(ELIMIT, -30009, "connection limit reached")                               \
  XX(EINLOOP, -30010, "not allowed from the endpoint's own loop thread")       \
  XX(EHANDLER, -30011, "event handler returned ERROR")                         \
  XX(EADDR, -30012, "invalid or unresolvable address")                         \
  XX(ESTOPPING, -30013, "endpoint is stopping")                                \
  XX(ETIMEDOUT, -30014, "operation timed out")                                 \
  XX(EAGAIN, -30015, "not enough data waiting")                                \
  XX(EPACKFLAG, -30016, "pack header flag mismatch")                           \
  XX(EPACKSIZE, -30017, "pack length exceeds the max pack size")               \
  XX(EPACKEMPTY, -30018, "pack body is empty")                                 \
  XX(EPULLFULL, -30019, "pull buffer limit exceeded")                          \
  XX(ESILENCE, -30020, "connection silent past the silence timeout")           \
  XX(EFILE, -30021, "file cannot be read for sending")                         \
  XX(ECLOSETIMEOUT, -30022, "graceful close deadline passed, bytes unsent")    \
  XX(EDGRAMSIZE, -30040, "datagram larger than the max datagram size")         \
  XX(EUDPIDLE, -30041, "UDP peer silent past detect interval x attempts")      \
  XX(ETLS, -30060, "TLS protocol error")                                       \
  XX(ETLSVERIFY, -30061, "TLS peer certificate verification failed")           \
  XX(ETLSCONFIG, -30062, "TLS configuration invalid")                          \
  XX(ETLSEOF, -30063, "TLS stream cut without close_notify")                   \
  XX(ETLSNOTTLS, -30064, "peer did not speak TLS")                             \
  XX(ETLSALERT, -30065, "peer sent a fatal TLS alert")                         \
  XX(ENOTLS, -30066, "TLS is not enabled on this endpoint or build")

enum hps_errno {
#define HPS__ERR_ENUM(name, value, msg) HPS_##name = (value),
  HPS_ERRNO_MAP(HPS__ERR_ENUM)
#undef HPS__ERR_ENUM
};

/* A human-readable message for any error code (library or system). Never
 * NULL; unknown codes get "unknown error". Static storage. */
HPS_EXTERN const char *hps_strerror(int err);
/* The symbolic name, e.g. "HPS_ENOTFOUND" or "ECONNRESET". Never NULL. */
HPS_EXTERN const char *hps_err_name(int err);

/* ------------------------------------------------------------------ */
/* Roles, models, events                                               */
/* ------------------------------------------------------------------ */

typedef struct hps_endpoint hps_endpoint;
typedef uint64_t hps_conn_id;

enum hps_role {
  HPS_TCP_SERVER = 1, /* listens and accepts many connections */
  HPS_TCP_AGENT = 2,  /* makes many outbound connections (hps_connect) */
  HPS_TCP_CLIENT = 3, /* owns one outbound connection (hps_start) */
  /* UDP roles: see "UDP" below. */
  HPS_UDP_SERVER = 4, /* one port; a connection per peer address */
  HPS_UDP_CLIENT = 5, /* one connected peer (hps_start) */
  HPS_UDP_CAST = 6,   /* a multicast group or broadcast address */
  HPS_UDP_NODE = 7    /* connectionless: hps_send_to any host:port */
};

/* Receive model, option HPS_OPT_RECV_MODEL. A protocol error (a bad pack
 * header, flag or size; HPS_EPULLFULL) and a RECEIVE handler's ERROR stop
 * reading there, but what the handlers were told was sent (hps_send
 * returned 0) still goes out, then FIN: the close is graceful (see
 * HPS_OPT_CLOSE_TIMEOUT) and its CLOSE has op HPS_OP_RECEIVE and that
 * error, whether SEND events are on or off. */
enum hps_model {
  HPS_MODEL_PUSH = 0, /* every read is delivered in a RECEIVE event */
  HPS_MODEL_PULL = 1, /* RECEIVE says how many bytes wait; hps_fetch/peek */
  HPS_MODEL_PACK = 2  /* RECEIVE carries one whole length-prefixed frame */
};

enum hps_event_type {
  HPS_EV_PREPARE = 1,    /* socket made, before listen/connect; fd is set.
                            A server's PREPARE runs on the thread calling
                            hps_start (conn 0, the first listening socket);
                            a connection's runs on its loop (conn set) */
  HPS_EV_ACCEPT = 2,     /* server accepted a connection */
  HPS_EV_CONNECT = 3,    /* agent/client connection established */
  HPS_EV_HANDSHAKE = 4,  /* connection ready for traffic (after ACCEPT or
                            CONNECT; with TLS, once the TLS handshake is
                            done) */
  HPS_EV_RECEIVE = 5,    /* data arrived (see the receive models) */
  HPS_EV_SEND = 6,       /* bytes handed to the kernel; data/len are them
                            (in the pack model: the body, without header) */
  HPS_EV_CLOSE = 7,      /* connection closed; op and error say why */
  HPS_EV_SHUTDOWN = 8,   /* endpoint stopped; no event follows */
  HPS_EV_HIGH_WATER = 9, /* the connection's unsent bytes rose above
                            HPS_OPT_SEND_HIGH_WATER; len = unsent bytes.
                            Comes once per crossing, then LOW_WATER */
  HPS_EV_LOW_WATER = 10  /* after a HIGH_WATER: unsent bytes fell to
                            HPS_OPT_SEND_LOW_WATER or below; len = unsent
                            bytes. The connection is writable again */
};
/* Water marks (TCP roles; UDP roles have neither event nor automatic
 * pause: their datagrams are bounded by HPS_OPT_MAX_SEND_QUEUE alone).
 * - Both events come on the connection's loop thread, in order with its
 *   other events and never during another of its handlers: a rise caused
 *   by a send inside a handler (or from another thread, which is noticed
 *   when the loop takes that send) is reported after it returns, so len
 *   may differ from the value at the crossing. They never come after
 *   CLOSE, nor while a graceful close is flushing.
 * - A handler may call anything from them (send, pause, disconnect);
 *   ERROR closes the connection (op HPS_OP_SEND, HPS_EHANDLER).
 * - HIGH_WATER and LOW_WATER alternate, HIGH_WATER first; a crossing and
 *   its return that happen before the loop reports the first still give
 *   both, in order.
 * - Only bytes the socket did not take at once count (see
 *   hps_get_unsent): a connection whose peer keeps up never crosses. A
 *   file send's bytes still on disk do not count (a bounded number of
 *   file sends may wait, see hps_send_file).
 * - TLS: the unsent bytes are the ciphertext waiting for the socket (a
 *   send is encrypted when accepted; records add a few dozen bytes per
 *   16 KiB) and the plaintext waiting behind the handshake or a file. */

/* Bit for an event type in HPS_OPT_EVENTS. */
#define HPS_EVBIT(type) (1u << (type))
#define HPS_EVENTS_ALL 0x7feu

/* The operation during which a connection closed (hps_event.op). */
enum hps_op {
  HPS_OP_UNKNOWN = 0,
  HPS_OP_ACCEPT = 1,  /* also a failed TLS handshake of a server's
                         connection */
  HPS_OP_CONNECT = 2, /* also a failed TLS handshake of an agent's or
                         client's connection */
  HPS_OP_SEND = 3,
  HPS_OP_RECEIVE = 4, /* includes a normal close by the peer (error 0) */
  HPS_OP_CLOSE = 5    /* closed locally: disconnect or stop (error 0) */
};

/* What an event handler returns. */
enum hps_result {
  HPS_HR_OK = 0,     /* go on */
  HPS_HR_IGNORE = 1, /* go on; the event needs nothing more from hpsock */
  HPS_HR_ERROR = 2   /* PREPARE: abort the listen/connect; ACCEPT: refuse the
                        connection (no CLOSE follows, it was never accepted);
                        CONNECT, HANDSHAKE, RECEIVE, SEND: close the
                        connection with op = that event's op and error
                        HPS_EHANDLER (after RECEIVE gracefully: what
                        was sent before still goes out, see enum
                        hps_model), except RECEIVE and SEND of a UDP
                        cast or node: their one connection is the socket,
                        not a peer, so ERROR there closes nothing and the
                        endpoint keeps receiving. HIGH_WATER, LOW_WATER:
                        close the connection (op HPS_OP_SEND, error
                        HPS_EHANDLER). Ignored for CLOSE and SHUTDOWN. */
};

/* The event passed to the handler. Pointers are valid only during the
 * handler call. New fields are only ever appended. */
typedef struct hps_event {
  int type;               /* enum hps_event_type */
  int op;                 /* CLOSE: enum hps_op */
  int error;              /* CLOSE: 0 for a normal close, else an error */
  int reserved;           /* 0 */
  hps_endpoint *endpoint; /* the endpoint */
  hps_conn_id conn;       /* the connection; 0 for SHUTDOWN and a server's
                             PREPARE */
  const void *data;       /* RECEIVE (push, pack): the bytes; SEND: the
                             bytes sent; else NULL */
  size_t len;             /* RECEIVE push/pack: bytes in data; RECEIVE pull:
                             bytes waiting in total; SEND: bytes sent */
  uintptr_t extra;        /* the connection's extra data (hps_set_extra) */
  int64_t fd;             /* PREPARE: the socket; else -1 */
  /* Appended for UDP (NULL / 0 for TCP): */
  const char *addr; /* the peer's numeric host: for a UDP server or client
                       connection, its peer in every event; cast and node:
                       RECEIVE: the sender, SEND: the destination */
  int port;         /* the port that goes with addr */
} hps_event;

/* The one callback per endpoint. Runs on a loop thread. May call any hpsock
 * function; hps_stop() from here is asynchronous, hps_free() is refused. */
typedef int (*hps_event_fn)(void *user, const hps_event *ev);

/* ------------------------------------------------------------------ */
/* Options                                                             */
/* ------------------------------------------------------------------ */

/* Keys for hps_setopt()/hps_getopt(). All values are int64_t. Unless
 * marked (live), an option can be set only before hps_start() (or after a
 * stop); otherwise HPS_ESTATE. A value out of range gives HPS_EINVAL.
 * The TCP socket options (SNDBUF, RCVBUF, KEEPALIVE_*, NODELAY) are set on
 * each agent/client socket before its PREPARE, and on a server's listening
 * sockets before the PREPARE and the listen: the sockets it accepts inherit
 * them (Linux copies them at accept), with no system call of their own. */
enum hps_option {
  HPS_OPT_WORKERS = 1,            /* loop threads, 1..64; default: cores */
  HPS_OPT_RECV_MODEL = 2,         /* enum hps_model; default PUSH */
  HPS_OPT_SNDBUF = 3,             /* SO_SNDBUF bytes, 0..1 GiB, 0 = system
                                     default; the kernel doubles it and caps
                                     it at net.core.wmem_max */
  HPS_OPT_RCVBUF = 4,             /* SO_RCVBUF bytes, 0..1 GiB, 0 = system
                                     default; capped at net.core.rmem_max */
  HPS_OPT_MAX_CONNECTIONS = 5,    /* 1..16M. Default, TCP roles: what the
                                     soft RLIMIT_NOFILE L holds when
                                     hps_create runs, less room for the
                                     loops' and the application's own
                                     descriptors: L - max(64, L/8), at
                                     least L/2, at most 100000 (L = 1024:
                                     896); UDP roles: 100000. A server
                                     past it, or past the descriptor
                                     limit, refuses (sheds) new
                                     connections and pauses accepting;
                                     see HPS_CNT_ACCEPT_ERRORS */
  HPS_OPT_KEEPALIVE_TIME = 6,     /* ms idle before probes, 0 = off,
                                     else 1..32767000 (rounded up to whole
                                     seconds: the kernel takes 1..32767 s);
                                     default 0 */
  HPS_OPT_KEEPALIVE_INTERVAL = 7, /* ms between probes, 1000..32767000
                                     (whole seconds, rounded up);
                                     default 20000 */
  HPS_OPT_NODELAY = 8,            /* TCP_NODELAY 0/1; default 1 */
  HPS_OPT_REUSE_ADDR = 9,         /* SO_REUSEADDR 0/1; default 1 */
  HPS_OPT_IPV6_ONLY = 10,         /* 1: v6 socket accepts only v6;
                                     0: dual stack; default 0 */
  HPS_OPT_MAX_SEND_QUEUE = 11,    /* bytes queued unsent per connection
                                     before send fails with HPS_ESENDQ;
                                     1..1 GiB; default 16 MiB. Pack: with
                                     their 4-byte headers; UDP: datagram
                                     payloads only, alike from the loop
                                     thread and from any other */
  HPS_OPT_FREE_POOL = 12,         /* free connection objects cached per
                                     loop, 0..1M; default 1024 */
  HPS_OPT_CONNECT_TIMEOUT = 13,   /* ms, 1..600000; default 10000 */
  HPS_OPT_EVENTS = 14,            /* (live) mask of HPS_EVBIT(type) to
                                     deliver; CLOSE and SHUTDOWN are always
                                     delivered; default HPS_EVENTS_ALL */
  HPS_OPT_BACKLOG = 15,           /* listen backlog 1..65535, capped by
                                     the kernel at net.core.somaxconn;
                                     default 1024 */
  HPS_OPT_PACK_FLAG = 16,         /* pack header flag 0..1023; 0 = incoming
                                     flags not checked; default 0 */
  HPS_OPT_PACK_MAX = 17,          /* max pack body 1..4194303; default
                                     262144 */
  HPS_OPT_PULL_MAX = 18,          /* max unread bytes per connection in the
                                     pull model before it is closed with
                                     HPS_EPULLFULL; 1..1 GiB; default 4 MiB */
  HPS_OPT_SILENCE_TIMEOUT = 19,   /* ms; a connection that receives nothing
                                     for this long is closed (op
                                     HPS_OP_RECEIVE, error HPS_ESILENCE),
                                     one closing gracefully too;
                                     0 = off; default 0 */
  HPS_OPT_SEND_HIGH_WATER = 20,   /* (live) bytes; a connection's unsent
                                     bytes rising above it give
                                     HPS_EV_HIGH_WATER (and, with
                                     HPS_OPT_AUTO_PAUSE, pause its reading);
                                     1..1 GiB; default 1 MiB */
  HPS_OPT_SEND_LOW_WATER = 21,    /* (live) bytes; after a HIGH_WATER,
                                     unsent bytes falling to it or below
                                     give HPS_EV_LOW_WATER (and resume an
                                     automatic pause); 0..1 GiB; a value
                                     not below the high water mark is kept
                                     as set but acts as high water - 1;
                                     default 256 KiB */
  HPS_OPT_AUTO_PAUSE = 22,        /* 0/1: the engine pauses reading on a
                                     connection while its unsent bytes are
                                     above high water, and resumes it at low
                                     water, so a peer that does not read
                                     cannot make an echo or request/response
                                     server queue without bound (about high
                                     water plus one read, 256 KiB, per
                                     connection); default 0. Separate from
                                     hps_pause_receive: the automatic
                                     resume never ends the application's
                                     pause, and the application's resume
                                     does not end an automatic pause still
                                     needed. Each pause counts in
                                     HPS_CNT_AUTO_PAUSES. While paused so,
                                     each write the peer takes counts as a
                                     sign of life for the silence timeout:
                                     it closes a peer that takes none of
                                     its bytes, not one we stopped reading.
                                     TCP roles only */
  HPS_OPT_CLOSE_TIMEOUT = 23,     /* ms a graceful close (hps_disconnect
                                     with force 0, a close after a protocol
                                     error, a peer's half-close) may go
                                     without progress while it flushes
                                     unsent bytes (each write the peer
                                     takes starts it anew, so a slow but
                                     steady reader gets everything); past
                                     it the connection is closed by force
                                     with
                                     error HPS_ECLOSETIMEOUT (replacing a
                                     protocol error) and the op of the
                                     close: HPS_OP_CLOSE for hps_disconnect,
                                     HPS_OP_RECEIVE for a half-close or a
                                     protocol error, and counted in
                                     HPS_CNT_CLOSE_TIMEOUTS. Until then the
                                     connection holds its place under
                                     HPS_OPT_MAX_CONNECTIONS and is in
                                     hps_conn_count/list; the silence
                                     timeout, hps_disconnect(id, 1) and
                                     hps_disconnect_silent/long end it
                                     sooner (and bound its whole length).
                                     1..86400000; default 30000 */
  /* UDP options (keys 32..63); TCP roles ignore them. */
  HPS_OPT_UDP_MAX_DATAGRAM = 32,    /* bytes per datagram, 1..65527; default
                                       1432. Larger sends fail with
                                       HPS_EDGRAMSIZE; a larger incoming
                                       datagram is reported, never delivered
                                       cut (see UDP) */
  HPS_OPT_UDP_DETECT_INTERVAL = 33, /* ms, 0 = off; default 60000. UDP server
                                     and client: a peer silent for interval
                                     x attempts is closed (op
                                     HPS_OP_RECEIVE, error HPS_EUDPIDLE);
                                     a client idle for an interval sends a
                                     heartbeat (an empty datagram), which a
                                     server answers */
  HPS_OPT_UDP_DETECT_ATTEMPTS = 34, /* 1..1000; default 3 */
  HPS_OPT_UDP_CAST_MODE = 35,       /* enum hps_cast_mode; default MULTICAST */
  HPS_OPT_UDP_MULTICAST_TTL = 36,   /* 0..255; default 1 (cast, node) */
  HPS_OPT_UDP_MULTICAST_LOOP = 37,  /* 0/1: own multicast datagrams come back
                                      to this host; default 1 (cast, node) */
  /* TLS (keys 64..95; see "TLS" below). Integer-valued: */
  HPS_OPT_TLS = 64,                   /* 0/1: every connection speaks TLS;
                                         default 0 */
  HPS_OPT_TLS_VERIFY = 65,            /* enum hps_tls_verify; default
                                         HPS_TLS_VERIFY_PEER for agents and
                                         clients, HPS_TLS_VERIFY_NONE for
                                         servers */
  HPS_OPT_TLS_MIN_VERSION = 66,       /* lowest protocol accepted:
                                         HPS_TLS_V1_2 (default) or
                                         HPS_TLS_V1_3 */
  HPS_OPT_TLS_SESSION_CACHE = 67,     /* 0/1, default 1: a server keeps a
                                         session cache and issues tickets; an
                                         agent or client offers the last
                                         session of the same server name and
                                         port again (resumption) */
  HPS_OPT_TLS_HANDSHAKE_TIMEOUT = 68, /* ms from ACCEPT/CONNECT to the end of
                                     the handshake, 1..600000; default
                                     10000; past it: CLOSE with
                                     HPS_ETIMEDOUT */
  /* String-valued (hps_setopt_str / hps_getopt_str only): */
  /* A _PEM option wins over the matching _FILE one when both are set. */
  HPS_OPT_TLS_CERT_FILE = 80,    /* certificate (chain) PEM file */
  HPS_OPT_TLS_KEY_FILE = 81,     /* private key PEM file (if encrypted:
                                    HPS_OPT_TLS_KEY_PASSWORD) */
  HPS_OPT_TLS_CERT_PEM = 82,     /* certificate (chain) as PEM text */
  HPS_OPT_TLS_KEY_PEM = 83,      /* private key as PEM text (if
                                    encrypted: HPS_OPT_TLS_KEY_PASSWORD).
                                    Write-only: hps_getopt_str answers
                                    HPS_EINVAL; wiped when replaced,
                                    cleared or freed */
  HPS_OPT_TLS_CA_FILE = 84,      /* trusted CAs, PEM file */
  HPS_OPT_TLS_CA_PATH = 85,      /* trusted CAs, c_rehash'ed directory */
  HPS_OPT_TLS_CA_PEM = 86,       /* trusted CAs as PEM text */
  HPS_OPT_TLS_CIPHERS = 87,      /* TLS 1.2 cipher list (OpenSSL syntax) */
  HPS_OPT_TLS_CIPHERSUITES = 88, /* TLS 1.3 ciphersuites (OpenSSL syntax) */
  HPS_OPT_TLS_SNI = 89,          /* agent/client: the server name sent
                                    (SNI) and verified against the
                                    certificate for every connection;
                                    "" (default): the host given to
                                    hps_connect/hps_start when it is a
                                    name, none for a numeric address
                                    (then the address is verified) */
  HPS_OPT_TLS_KEY_PASSWORD = 90  /* passphrase of an encrypted private
                                    key (write-only: hps_getopt_str
                                    answers HPS_EINVAL; wiped when
                                    replaced, cleared or freed). One for
                                    every key of the endpoint (the
                                    _KEY_ options, hps_tls_add_cert's);
                                    "" clears it, so an empty passphrase
                                    cannot be given. An encrypted key
                                    without it, or with a wrong one,
                                    fails hps_start with HPS_ETLSCONFIG
                                    and a reason, never a prompt */
};

/* HPS_OPT_UDP_CAST_MODE. */
enum hps_cast_mode {
  HPS_CAST_MULTICAST = 0, /* hps_start's host is a multicast group */
  HPS_CAST_BROADCAST = 1  /* host is a broadcast address (SO_BROADCAST;
                             on a node: broadcast sends allowed) */
};

/* HPS_OPT_TLS_VERIFY values. */
enum hps_tls_verify {
  HPS_TLS_VERIFY_NONE = 0,   /* no check (a server asks for no client
                                certificate) */
  HPS_TLS_VERIFY_PEER = 1,   /* client: the server's certificate must chain
                                to a trusted CA and match the name; server:
                                a client certificate is asked for and
                                checked when given (a CA option is
                                needed: see TLS) */
  HPS_TLS_VERIFY_REQUIRE = 2 /* as PEER; a server also fails a client that
                                sends no certificate */
};

/* HPS_OPT_TLS_MIN_VERSION values (the protocol's version numbers). */
#define HPS_TLS_V1_2 0x0303
#define HPS_TLS_V1_3 0x0304

/* Set an option. Returns 0, HPS_EHANDLE, HPS_EINVAL (unknown key or value
 * out of range) or HPS_ESTATE (endpoint running and option not live). */
HPS_EXTERN int hps_setopt(hps_endpoint *ep, int opt, int64_t value);
/* Read an option into *value. Returns 0, HPS_EHANDLE or HPS_EINVAL. */
HPS_EXTERN int hps_getopt(hps_endpoint *ep, int opt, int64_t *value);

/* ------------------------------------------------------------------ */
/* Endpoint life cycle                                                 */
/* ------------------------------------------------------------------ */

enum hps_state {
  HPS_STATE_CREATED = 0,
  HPS_STATE_STARTED = 1,
  HPS_STATE_STOPPING = 2,
  HPS_STATE_STOPPED = 3
};

/* Create an endpoint of a role. fn is called for every event with user as
 * its first argument. *out receives the handle, owned by the caller until
 * hps_free(). Returns 0, HPS_EINVAL (NULL out or fn, unknown role) or
 * HPS_ENOMEM. */
HPS_EXTERN int hps_create(int role, hps_event_fn fn, void *user,
                          hps_endpoint **out);

/* Start the endpoint's loops.
 * - server: bind and listen on host:port (host NULL or "" = all IPv4
 *   addresses "0.0.0.0"; "::" = all IPv6 (dual stack unless IPV6_ONLY));
 *   port 0 picks a free port, read it back with hps_listen_address().
 * - client: connect to host:port (as hps_connect: CONNECT or a CLOSE with
 *   op CONNECT follows; the connection's ID is also reachable as 0).
 * - agent: host/port are ignored; connect with hps_connect().
 * - UDP roles: see "UDP" at the end of this header.
 * Host names are resolved synchronously (numeric addresses never block).
 * Returns 0, HPS_EHANDLE, HPS_ESTATE (already started), HPS_EADDR,
 * HPS_EHANDLER (PREPARE returned ERROR) or a system error such as
 * EADDRINUSE. On error the endpoint is back in the CREATED/STOPPED state and
 * no event other than PREPARE was delivered. A STOPPED endpoint may be
 * started again. */
HPS_EXTERN int hps_start(hps_endpoint *ep, const char *host, uint16_t port);

/* Stop: stop listening, close every connection (each gets its CLOSE with
 * op HPS_OP_CLOSE), then deliver SHUTDOWN. From a thread that is not a loop
 * thread it returns after SHUTDOWN was delivered. From inside a handler --
 * of this endpoint or of another one -- it only begins the stop and returns
 * 0 at once; SHUTDOWN follows (for this endpoint, after the handler
 * returns), so two endpoints whose handlers stop each other cannot
 * deadlock. Returns 0, HPS_EHANDLE or HPS_ESTATE (never started). Stopping
 * a stopped endpoint returns 0. */
HPS_EXTERN int hps_stop(hps_endpoint *ep);

/* Wait until the endpoint is stopped (SHUTDOWN delivered), at most
 * timeout_ms (< 0: no limit); an endpoint never started counts as stopped.
 * Returns 0, HPS_ETIMEDOUT, HPS_EHANDLE or
 * HPS_EINLOOP (called from one of its loops, where it would wait forever). */
HPS_EXTERN int hps_wait(hps_endpoint *ep, int timeout_ms);

/* Stop (as hps_stop) and release the endpoint. The handle is invalid after
 * it returns 0. It always waits for SHUTDOWN first, also inside another
 * endpoint's handler (two endpoints freeing each other from their handlers
 * would wait for each other: stop there, free from a plain thread).
 * Returns 0, HPS_EHANDLE or HPS_EINLOOP (called from one of the endpoint's
 * own loop threads: call hps_stop() there and free the endpoint from
 * another thread). */
HPS_EXTERN int hps_free(hps_endpoint *ep);

/* enum hps_state, or HPS_EHANDLE. */
HPS_EXTERN int hps_state(hps_endpoint *ep);
/* enum hps_role, or HPS_EHANDLE. */
HPS_EXTERN int hps_role(hps_endpoint *ep);

/* The address a started server (TCP or UDP), cast or node listens on. host
 * gets a numeric address (hostlen >= 46 always suffices), port the bound
 * port; either may be NULL. Returns 0, HPS_EHANDLE, HPS_EROLE (an agent or
 * a client: see hps_local_address), HPS_ESTATE (not
 * listening) or HPS_EINVAL (hostlen too small). */
HPS_EXTERN int hps_listen_address(hps_endpoint *ep, char *host, size_t hostlen,
                                  uint16_t *port);

/* Agent only: open a new connection to host:port. *id (may be NULL)
 * receives its ID at once; CONNECT or a CLOSE with op HPS_OP_CONNECT
 * follows, on the connection's loop, after its PREPARE (ERROR from PREPARE
 * closes it with op HPS_OP_CONNECT and HPS_EHANDLER; a connect that does not
 * finish within HPS_OPT_CONNECT_TIMEOUT closes with HPS_ETIMEDOUT). Every
 * ID returned gets exactly one CLOSE. Sending before CONNECT gives
 * HPS_ESTATE. Returns 0, HPS_EHANDLE, HPS_EROLE, HPS_ESTATE (not started, or
 * stopping), HPS_EADDR or HPS_ELIMIT. May be called from inside a handler.
 * With TLS, a host name (not a numeric address) is also the server name
 * sent and verified, unless HPS_OPT_TLS_SNI is set. */
HPS_EXTERN int hps_connect(hps_endpoint *ep, const char *host, uint16_t port,
                           hps_conn_id *id);

/* ------------------------------------------------------------------ */
/* Connection operations                                               */
/* ------------------------------------------------------------------ */

/* One buffer of a gathered send. */
typedef struct hps_buf {
  const void *base;
  size_t len;
} hps_buf;

/* Send len bytes (copied before return, or written at once). In the pack
 * model the bytes are one frame body (the header is added). On the owning
 * loop's thread the bytes are written directly; from any other thread they
 * are queued to that loop. Returns 0, HPS_EHANDLE, HPS_EINVAL (NULL data,
 * or len 0 outside the pack model), HPS_ENOTFOUND (no such connection, or it
 * is closing),
 * HPS_ESENDQ (the connection's unsent bytes would exceed
 * HPS_OPT_MAX_SEND_QUEUE; nothing was queued), HPS_EPACKSIZE /
 * HPS_EPACKEMPTY (pack model: body over the max or empty), or a system
 * error (e.g. ECONNRESET, EPIPE) when the socket failed as the bytes were
 * written on the loop thread: the connection is then closing and its CLOSE
 * has op HPS_OP_SEND. A len over 1 GiB (more than any limit allows) is
 * refused before anything is read or allocated, from any thread, with the
 * error of the limit that applies: HPS_EDGRAMSIZE (UDP), HPS_EPACKSIZE
 * (pack) or HPS_ESENDQ; hps_sendv's total likewise (a total that
 * overflows size_t: HPS_EINVAL). */
HPS_EXTERN int hps_send(hps_endpoint *ep, hps_conn_id id, const void *data,
                        size_t len);

/* Send n buffers as one send: their bytes go out contiguously, never
 * interleaved with other sends on that connection. In the pack model they
 * form one frame body. Buffers with len 0 are skipped; the total must be
 * > 0. Same returns as hps_send, plus HPS_EINVAL for NULL bufs or n <= 0. */
HPS_EXTERN int hps_sendv(hps_endpoint *ep, hps_conn_id id, const hps_buf *bufs,
                         int n);

/* Send length bytes of the file at path starting at offset (length -1:
 * to the end of the file). Read in bounded chunks; memory stays bounded
 * whatever the file size. Push and pull models only (HPS_EMODEL in pack).
 * The file is opened and checked at the call; a file send waiting behind
 * another holds no descriptor, only its path and the file's identity: at
 * its turn the path is opened again, and if it is no longer the same file
 * (device and inode) or is now too short, the connection closes with op
 * HPS_OP_SEND and HPS_EFILE. So a connection holds at most one open file
 * whatever a peer makes it queue. Its bytes not yet read count in
 * hps_get_unsent but not against HPS_OPT_MAX_SEND_QUEUE (they are on
 * disk, not in memory; the chunk being written counts); instead at most
 * 64 file sends may wait per connection, the next gives HPS_ESENDQ.
 * Returns 0, HPS_EHANDLE, HPS_EINVAL (NULL or empty path, offset < 0, or
 * nothing to send), HPS_ENOTFOUND, HPS_ESTATE (not connected yet),
 * HPS_EMODEL, HPS_EFILE (cannot open, not a regular file, length < -1,
 * or offset + length past the file's end, overflowing included) or
 * HPS_ESENDQ. */
HPS_EXTERN int hps_send_file(hps_endpoint *ep, hps_conn_id id, const char *path,
                             int64_t offset, int64_t length);

/* Close a connection. force = 0: bytes of sends accepted before are sent
 * first, then the connection is shut down and closed, within
 * HPS_OPT_CLOSE_TIMEOUT (past it: closed by force, error
 * HPS_ECLOSETIMEOUT); force != 0: closed at once, unsent bytes dropped.
 * From the moment it returns 0, sends, pause and a graceful disconnect on
 * the ID fail with HPS_ENOTFOUND; the queries (hps_get_stats,
 * hps_get_unsent, the address calls, hps_get/set_extra) and, in the pull
 * model, hps_fetch/peek of bytes still waiting answer until its CLOSE
 * handler has returned. A forced disconnect still ends a graceful close
 * under way (this call's, a peer's half-close, a close for a protocol
 * error): it returns 0 and the CLOSE, which comes once, keeps the op and
 * error of the close it cut short (error 0 stays 0). The CLOSE event of a
 * disconnect has op HPS_OP_CLOSE and error 0. Returns 0, HPS_EHANDLE or
 * HPS_ENOTFOUND (no such connection; closing, for force = 0; closing by
 * force already, for force != 0). */
HPS_EXTERN int hps_disconnect(hps_endpoint *ep, hps_conn_id id, int force);

/* Stop (pause != 0) or resume (pause = 0) reading from a connection. While
 * paused no RECEIVE arrives for it and the peer is flow-controlled by TCP.
 * From a handler on the connection's loop thread (its own RECEIVE, or any
 * handler of a connection on the same loop) it takes effect at once: in
 * the pack model the frames read with the current one (and a partial frame
 * after them, at most one read buffer) are kept, and after the resume they
 * are delivered first, in order, from the loop (never inside the resume
 * call), before anything read later. A pause and a resume within one
 * handler change nothing; a close drops what is kept. From another thread
 * it is a command the loop runs between reads: RECEIVEs of what was read
 * before the loop got to it still arrive. The automatic pause
 * (HPS_OPT_AUTO_PAUSE) is kept apart: this resume does not end it, nor
 * does it end this pause.
 * Returns 0, HPS_EHANDLE or HPS_ENOTFOUND. */
HPS_EXTERN int hps_pause_receive(hps_endpoint *ep, hps_conn_id id, int pause);

/* Pull model: take exactly len bytes of the waiting data into buf.
 * Returns 0, HPS_EHANDLE, HPS_EINVAL (NULL buf, len 0 or len over 1 GiB,
 * more than HPS_OPT_PULL_MAX allows to wait), HPS_ENOTFOUND,
 * HPS_EMODEL (not the pull model) or HPS_EAGAIN (fewer than len bytes
 * wait; nothing is taken). */
HPS_EXTERN int hps_fetch(hps_endpoint *ep, hps_conn_id id, void *buf,
                         size_t len);
/* Pull model: as hps_fetch, but the bytes stay waiting. */
HPS_EXTERN int hps_peek(hps_endpoint *ep, hps_conn_id id, void *buf,
                        size_t len);

/* Number of connections: open ones and those closing gracefully (each
 * holds its place under HPS_OPT_MAX_CONNECTIONS), not those closed by
 * force whose CLOSE is on its way. Or HPS_EHANDLE. */
HPS_EXTERN int hps_conn_count(hps_endpoint *ep);

/* Copy up to cap connection IDs into ids (may be NULL when cap is 0) and
 * set *count (may be NULL) to the number of connections, as
 * hps_conn_count counts them. Returns the number of IDs copied,
 * HPS_EHANDLE or HPS_EINVAL. */
HPS_EXTERN int hps_conn_list(hps_endpoint *ep, hps_conn_id *ids, size_t cap,
                             size_t *count);

/* The local / remote address of a connection as a numeric host (hostlen >=
 * 46 always suffices) and a port; host or port may be NULL. Returns 0,
 * HPS_EHANDLE, HPS_ENOTFOUND, HPS_ESTATE (an agent or client connection
 * not connected yet) or HPS_EINVAL (hostlen too small). */
HPS_EXTERN int hps_local_address(hps_endpoint *ep, hps_conn_id id, char *host,
                                 size_t hostlen, uint16_t *port);
HPS_EXTERN int hps_remote_address(hps_endpoint *ep, hps_conn_id id, char *host,
                                  size_t hostlen, uint16_t *port);

/* Per-connection extra data: a pointer-sized value owned by the
 * application, 0 initially, handed back in every event as ev->extra.
 * Returns 0, HPS_EHANDLE, HPS_ENOTFOUND (or HPS_EINVAL for a NULL out). */
HPS_EXTERN int hps_set_extra(hps_endpoint *ep, hps_conn_id id, uintptr_t extra);
HPS_EXTERN int hps_get_extra(hps_endpoint *ep, hps_conn_id id,
                             uintptr_t *extra);

/* Counters of a connection, or of the whole endpoint (id = 0 on a server or
 * agent: totals over its life since the last start, closed connections
 * included). Ages are in milliseconds. Counters are updated on the loop
 * thread as bytes move, so a peer may see bytes a moment before they are
 * counted here. */
typedef struct hps_stats {
  uint64_t bytes_sent;
  uint64_t bytes_received;
  uint64_t msgs_sent;     /* hps_send/sendv/send_file calls accepted */
  uint64_t msgs_received; /* RECEIVE events delivered */
  uint64_t age_ms;        /* connection: time since accept/connect */
  uint64_t silence_ms;    /* connection: time since the last receive */
} hps_stats;

/* Fill *stats. Returns 0, HPS_EHANDLE, HPS_EINVAL (NULL stats) or
 * HPS_ENOTFOUND. The endpoint's totals (id = 0) add up its live
 * connections' counters, each loop's under that loop's lock: the call
 * costs time in proportion to the connections open, and messages pay for
 * one set of counters, not two. */
HPS_EXTERN int hps_get_stats(hps_endpoint *ep, hps_conn_id id,
                             hps_stats *stats);

/* Disconnect (force) every connection that has received nothing for at
 * least silence_ms / that has been open for at least age_ms, closing
 * gracefully ones included. The CLOSE events have op HPS_OP_CLOSE and
 * error HPS_ESILENCE / 0 (a graceful close cut short keeps a non-zero
 * error, and for disconnect_long its op). Returns the number of
 * connections selected, HPS_EHANDLE or HPS_EINVAL (ms <= 0). */
HPS_EXTERN int hps_disconnect_silent(hps_endpoint *ep, int64_t silence_ms);
HPS_EXTERN int hps_disconnect_long(hps_endpoint *ep, int64_t age_ms);

/* ------------------------------------------------------------------ */
/* Flow control and overload                                           */
/* ------------------------------------------------------------------ */

/* The bytes a connection has accepted for sending (hps_send/sendv, pack
 * headers included, and hps_send_file's bytes not yet read) that are not
 * yet handed to the kernel, into *unsent. Compare them with
 * HPS_OPT_SEND_HIGH_WATER / _LOW_WATER, or wait for HPS_EV_LOW_WATER.
 * Sends from other threads count from the moment they are accepted. TLS:
 * ciphertext (see "Water marks" above). UDP: the datagram bytes waiting,
 * destinations not counted.
 * Returns 0, HPS_EHANDLE, HPS_EINVAL (NULL unsent) or HPS_ENOTFOUND. */
HPS_EXTERN int hps_get_unsent(hps_endpoint *ep, hps_conn_id id,
                              uint64_t *unsent);

/* Endpoint-wide counters of what overload and hostile peers cost, since
 * hps_create (they survive restarts). Read with hps_get_counter. */
enum hps_counter {
  HPS_CNT_ACCEPT_ERRORS = 1,     /* accept failures (EMFILE, ENFILE, ENOBUFS,
                                    ENOMEM, ...); each pauses accepting on that
                                    loop for a back-off (10 ms, doubling to 1 s) */
  HPS_CNT_ACCEPT_SHED = 2,       /* connections accepted and closed at once
                                    because no descriptor or memory was left
                                    for them, or HPS_OPT_MAX_CONNECTIONS was
                                    reached (never reported: no ACCEPT) */
  HPS_CNT_CLOSE_TIMEOUTS = 3,    /* graceful closes forced at
                                    HPS_OPT_CLOSE_TIMEOUT (HPS_ECLOSETIMEOUT) */
  HPS_CNT_AUTO_PAUSES = 4,       /* automatic pauses (HPS_OPT_AUTO_PAUSE) */
  HPS_CNT_UDP_PEERS_REFUSED = 5, /* UDP server: datagrams from new peer
                                    addresses dropped because the peer
                                    table was full of confirmed peers
                                    (see UDP) */
  HPS_CNT_UDP_PEERS_EVICTED = 6  /* UDP server: unconfirmed peers evicted
                                    for a new address; their CLOSE has
                                    HPS_ELIMIT (see UDP) */
};

/* Read counter (enum hps_counter) into *value. Safe from any thread.
 * Returns 0, HPS_EHANDLE or HPS_EINVAL (unknown counter, NULL value). */
HPS_EXTERN int hps_get_counter(hps_endpoint *ep, int counter, uint64_t *value);

/* ------------------------------------------------------------------ */
/* UDP                                                                 */
/* ------------------------------------------------------------------ */

/* The UDP roles use the same calls and events as TCP. Only the push model
 * (HPS_OPT_RECV_MODEL, else HPS_EMODEL); hps_send_file gives HPS_EROLE.
 * Every hps_send / hps_sendv is one datagram (at most
 * HPS_OPT_UDP_MAX_DATAGRAM bytes, else HPS_EDGRAMSIZE; never empty: len 0
 * is HPS_EINVAL), every RECEIVE one whole datagram. A PREPARE runs on the
 * thread calling hps_start with conn 0 and the socket (a server with
 * several workers: the first of its sockets); ERROR makes hps_start fail
 * with HPS_EHANDLER. Events carry the peer's address in addr/port.
 *
 * - Server: hps_start(ep, host, port) binds (as a TCP server; port 0 picks
 *   a free one, hps_listen_address reads it; HPS_OPT_WORKERS loops, while a
 *   client, cast or node runs one). The first datagram from a new
 *   address makes a connection: ACCEPT (ERROR refuses it: the datagram is
 *   dropped, the next one asks again), HANDSHAKE, then a RECEIVE per
 *   datagram. With several workers each loop has its own SO_REUSEPORT
 *   socket; the kernel hashes a peer's datagrams to one of them, so a
 *   peer's connection lives on one loop. The peer table is a hash keyed
 *   at random per start (SipHash), so no choice of source addresses makes
 *   lookups slow. A peer is confirmed once it has sent a second datagram
 *   (a heartbeat counts; the application's sends do not: a reply to a
 *   forged address proves nothing). At HPS_OPT_MAX_CONNECTIONS, a datagram
 *   from a new address evicts the loop's oldest unconfirmed peer (CLOSE
 *   with op HPS_OP_CLOSE and error HPS_ELIMIT; counter
 *   HPS_CNT_UDP_PEERS_EVICTED) and takes its place; when every peer of
 *   that loop is confirmed, the datagram is dropped (counter
 *   HPS_CNT_UDP_PEERS_REFUSED). So a flood of new, perhaps forged, source
 *   addresses never displaces a peer that has sent twice; it can keep new
 *   peers out until idle detection frees places. An empty datagram is a
 *   heartbeat: it keeps the connection alive, is answered with an empty
 *   datagram and is not delivered. The server's socket is not connected,
 *   so the kernel reports no ICMP errors to it: a peer gone away is found
 *   by idle detection (HPS_OPT_UDP_DETECT_INTERVAL).
 * - Client: hps_start(ep, host, port) opens a connected socket; CONNECT and
 *   HANDSHAKE follow on its loop; it may send at once. An ICMP error (port
 *   unreachable) closes it with the system error (ECONNREFUSED), op
 *   HPS_OP_RECEIVE or HPS_OP_SEND. Heartbeats as above.
 * - Cast: hps_start(ep, group, port) binds port on all addresses (port 0:
 *   a free one; HPS_OPT_REUSE_ADDR lets several casts share it), joins the
 *   multicast group (or, in HPS_CAST_BROADCAST mode, allows broadcast) and
 *   makes group:port the destination of hps_send. One connection (ID 0
 *   works) with CONNECT and HANDSHAKE; RECEIVE carries each sender's
 *   address. HPS_OPT_UDP_MULTICAST_TTL / _LOOP and hps_cast_interface()
 *   apply; hps_join_group / hps_leave_group add groups.
 * - Node: hps_start(ep, host, port) binds (host NULL = all IPv4). One
 *   connection (the socket; ID 0 works) with CONNECT and HANDSHAKE;
 *   hps_send_to sends anywhere (hps_send gives HPS_EROLE); RECEIVE carries
 *   the sender's address.
 *
 * A server or client connection that receives a datagram larger than the
 * max datagram size is closed (op HPS_OP_RECEIVE, error HPS_EDGRAMSIZE). A
 * cast or node gets a RECEIVE with error HPS_EDGRAMSIZE, op
 * HPS_OP_RECEIVE, data NULL and len 0 (the sender in addr/port): the
 * datagram was dropped. A cast or node datagram that fails after hps_send
 * returned comes back as a SEND with error set (op HPS_OP_SEND, the
 * destination in addr/port); a server or client connection closes with op
 * HPS_OP_SEND. hps_disconnect closes a UDP connection at once (force or
 * not); datagrams accepted before it still go out. A paused server
 * connection's datagrams are dropped; a paused client, cast or node stops
 * reading its socket. */

/* Cast or node: send one datagram to host:port (a numeric address, or a
 * name resolved synchronously). Same rules as hps_send otherwise. Returns
 * 0, HPS_EHANDLE, HPS_EROLE (not a cast or node), HPS_EINVAL (NULL data,
 * len 0), HPS_EADDR (unresolvable, port 0, or IPv6 to an IPv4 socket),
 * HPS_EDGRAMSIZE, HPS_ENOTFOUND (not started, or its connection closed),
 * HPS_ESENDQ, or a system error when the datagram failed at once on the
 * loop thread. The payload is checked before the address: NULL or empty
 * data gives HPS_EINVAL and an oversize one HPS_EDGRAMSIZE whatever host
 * and port are. */
HPS_EXTERN int hps_send_to(hps_endpoint *ep, const char *host, uint16_t port,
                           const void *data, size_t len);

/* Cast or node: join / leave a multicast group (numeric address) on an
 * interface: an IPv4 address, an IPv6 scope such as "::%lo", or NULL/""
 * for the system's choice. Returns 0, HPS_EHANDLE, HPS_EROLE, HPS_EINVAL
 * (NULL group), HPS_EADDR (group not a multicast address, or iface not
 * numeric), HPS_ESTATE (not started) or a system error (EADDRINUSE: joined
 * already; EADDRNOTAVAIL: not joined, or no such interface). */
HPS_EXTERN int hps_join_group(hps_endpoint *ep, const char *group,
                              const char *iface);
HPS_EXTERN int hps_leave_group(hps_endpoint *ep, const char *group,
                               const char *iface);

/* Cast or node, before hps_start: the interface (as in hps_join_group)
 * hps_start joins the cast's group on and multicast datagrams leave from;
 * NULL or "" = the system's choice (the default). Returns 0, HPS_EHANDLE,
 * HPS_EROLE, HPS_EADDR or HPS_ESTATE (started). */
HPS_EXTERN int hps_cast_interface(hps_endpoint *ep, const char *iface);

/* ------------------------------------------------------------------ */
/* TLS                                                                 */
/* ------------------------------------------------------------------ */
/*
 * With HPS_OPT_TLS = 1 every connection of the endpoint speaks TLS
 * (OpenSSL 3, TLS 1.2 or 1.3), in every receive model: RECEIVE carries
 * plaintext, sends take plaintext, the pack model frames the plaintext.
 * ACCEPT/CONNECT still come when the TCP connection is made; HANDSHAKE
 * comes when the TLS handshake has completed. Sends before HANDSHAKE wait
 * and go out after it (bytes are counted against HPS_OPT_MAX_SEND_QUEUE).
 * hps_pause_receive before HANDSHAKE stops only RECEIVE: the handshake
 * goes on, and its bytes are read while paused.
 * A handshake that fails closes the connection: CLOSE with op
 * HPS_OP_ACCEPT (server) or HPS_OP_CONNECT (agent, client) and a TLS error
 * (HPS_ETLS, HPS_ETLSVERIFY, HPS_ETLSNOTTLS, HPS_ETLSALERT, HPS_ETLSEOF,
 * HPS_ETIMEDOUT) or a system error (e.g. a reset by the peer). Later TLS
 * errors close with op HPS_OP_RECEIVE. Records OpenSSL sends by itself
 * (answers to a KeyUpdate, refusals of a renegotiation) count against
 * HPS_OPT_MAX_SEND_QUEUE too: a peer that causes them without reading is
 * closed with op HPS_OP_RECEIVE and HPS_ESENDQ. For every close with an
 * error (TLS, system, HPS_EHANDLER, ...) a reason text is available from
 * hps_tls_info(..., HPS_TLS_INFO_ERROR) until the CLOSE handler returns.
 * hps_disconnect(force = 0) sends close_notify before FIN; before
 * HANDSHAKE it waits for the handshake: the sends accepted before it go
 * out, then close_notify and FIN (no HANDSHAKE event; CLOSE op
 * HPS_OP_CLOSE, error 0, or the handshake's failure), and later sends
 * fail with HPS_ENOTFOUND. A peer's close_notify is a normal close (op
 * RECEIVE, error 0); a stream that ends without close_notify after the
 * handshake closes with HPS_ETLSEOF, after what was queued for the peer
 * has gone out (it may have half-closed). A TLS error after the
 * handshake (a bad record, a fatal alert) stops reading; what was sent
 * before it (already encrypted) still goes out, then FIN, within
 * HPS_OPT_CLOSE_TIMEOUT; the CLOSE keeps the TLS error. Where the bytes
 * cannot go out (a reset) the CLOSE's error is never 0.
 * A server needs a certificate and key (file or PEM options); hps_start
 * checks the whole configuration and returns HPS_ETLSCONFIG when it is
 * unusable (the reason: hps_tls_info(ep, 0, HPS_TLS_INFO_CONFIG_ERROR)).
 * An encrypted private key needs HPS_OPT_TLS_KEY_PASSWORD: without it, or
 * with a wrong one, the start fails so (OpenSSL never prompts).
 * Trust: an agent or client without CA options trusts the system's
 * default CA store, deliberately (as a browser does). A server that
 * verifies clients (HPS_OPT_TLS_VERIFY PEER or REQUIRE) needs
 * HPS_OPT_TLS_CA_FILE, _CA_PATH or _CA_PEM, and its start fails with
 * HPS_ETLSCONFIG without one: the system store would accept anyone with
 * a publicly issued certificate as a verified client.
 * Server names fail closed: an agent's or client's connection whose name
 * cannot be sent (SNI) or set up for the check (OpenSSL refuses it, e.g.
 * longer than 255 bytes) is closed before its TCP connect is made: CLOSE
 * with op HPS_OP_CONNECT and HPS_ETLSCONFIG (the reason in
 * HPS_TLS_INFO_ERROR); nothing is sent to the peer.
 */

/* Set a string-valued option (HPS_OPT_TLS_CERT_FILE ...). The value is
 * copied (the endpoint's copy is wiped when replaced, cleared or freed;
 * the caller's stays the caller's to wipe); NULL or "" clears it. Same
 * state rules as hps_setopt. Returns 0, HPS_EHANDLE, HPS_EINVAL (not a
 * string key), HPS_ESTATE or HPS_ENOMEM. */
HPS_EXTERN int hps_setopt_str(hps_endpoint *ep, int opt, const char *value);

/* Read a string-valued option: copies it NUL-terminated into buf (cap
 * bytes; buf may be NULL when cap is 0) and sets *len (may be NULL) to its
 * length without the NUL. Returns 0, HPS_EHANDLE, HPS_EINVAL (not a string
 * key, NULL buf with cap > 0, or cap <= length: *len still tells the size
 * needed). An unset option reads as "". HPS_OPT_TLS_KEY_PEM and
 * HPS_OPT_TLS_KEY_PASSWORD are write-only: always HPS_EINVAL, *len 0, buf
 * untouched. */
HPS_EXTERN int hps_getopt_str(hps_endpoint *ep, int opt, char *buf, size_t cap,
                              size_t *len);

/* Server: a certificate for clients that ask for server name `name` (SNI);
 * clients asking for another name (or none) get the HPS_OPT_TLS_CERT_*
 * one. name is a host name, or "*.domain" for one label under domain;
 * case is ignored. cert and key are PEM text when they begin with
 * "-----BEGIN", else file paths; both are read at hps_start (an encrypted
 * key with HPS_OPT_TLS_KEY_PASSWORD; PEM text is wiped when the endpoint
 * is freed). Before the start only (HPS_ESTATE otherwise). Returns 0,
 * HPS_EHANDLE, HPS_EROLE (not a server), HPS_EINVAL (NULL or empty
 * argument), HPS_ESTATE or HPS_ENOMEM. */
HPS_EXTERN int hps_tls_add_cert(hps_endpoint *ep, const char *name,
                                const char *cert, const char *key);

/* What hps_tls_info reads. */
enum hps_tls_info_kind {
  HPS_TLS_INFO_ERROR = 1,        /* why the connection failed ("" if not) */
  HPS_TLS_INFO_VERSION = 2,      /* "TLSv1.3", after HANDSHAKE */
  HPS_TLS_INFO_CIPHER = 3,       /* cipher name, after HANDSHAKE */
  HPS_TLS_INFO_SERVER_NAME = 4,  /* SNI sent (client) or received (server) */
  HPS_TLS_INFO_PEER_SUBJECT = 5, /* the peer certificate's subject, or "" */
  HPS_TLS_INFO_RESUMED = 6,      /* "1" if the session was resumed, else "0" */
  HPS_TLS_INFO_CONFIG_ERROR = 7  /* endpoint (id ignored): why the last
                                    hps_start failed with HPS_ETLSCONFIG */
};

/* Read TLS facts of a connection as NUL-terminated text into buf (cap
 * bytes) and set *len (may be NULL) to the text's length. Readable from
 * ACCEPT/CONNECT until the CLOSE handler returns (the ERROR text is set
 * just before CLOSE). Returns 0, HPS_EHANDLE, HPS_EINVAL (unknown kind,
 * NULL buf, or cap <= length: *len still tells the size needed),
 * HPS_ENOTFOUND or HPS_ENOTLS (the connection or endpoint does not use
 * TLS). */
HPS_EXTERN int hps_tls_info(hps_endpoint *ep, hps_conn_id id, int kind,
                            char *buf, size_t cap, size_t *len);

#ifdef __cplusplus
}
#endif

#endif /* HPSOCK_H */
