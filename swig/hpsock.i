/* swig/hpsock.i - the part of the SWIG interface all languages share.
 *
 * Each language has swig/<lang>/hpsock_<lang>.i, which declares %module,
 * its typemaps and its hand-written callback bridge, then %includes this
 * file. Keep this file language-neutral: anything that differs per
 * language (the event callback, out-parameters, 64-bit unsigned IDs,
 * buffers) is ignored here and bridged in the language's own file. */

%{
#include "hpsock.h"
%}

%include <stdint.i>

/* Bridged per language: the callback, out-parameters and raw buffers. */
%ignore hps_create;
%ignore hps_event;
%ignore hps_event_fn;
%ignore hps_buf;
%ignore hps_sendv;
%ignore hps_send;
%ignore hps_fetch;
%ignore hps_peek;
%ignore hps_getopt;
%ignore hps_conn_list;
%ignore hps_listen_address;
%ignore hps_local_address;
%ignore hps_remote_address;
%ignore hps_get_extra;
%ignore hps_get_stats;
%ignore hps_get_unsent;
%ignore hps_get_counter;
%ignore hps_connect;
%ignore hps_send_to;
%ignore HPS_ERRNO_MAP;
%ignore HPS_EVBIT;
/* Strings out: through hpsw_getopt_str / hpsw_tls_info below. */
%ignore hps_getopt_str;
%ignore hps_tls_info;

%include "hpsock.h"

/* String results for every language: a new string (freed by the wrapper),
 * or NULL with the error code kept per thread for hpsw_error(). Plain
 * string and integer types only, so each language's own char * and
 * hps_conn_id mappings apply. */
%{
#include <stdlib.h>
static _Thread_local int hpsw_err;

static char *hpsw_str(int r, char *s) {
  hpsw_err = r;
  if (r != 0) {
    free(s);
    return NULL;
  }
  return s;
}
%}
%newobject hpsw_getopt_str;
%newobject hpsw_tls_info;
%inline %{
/* The value of a string option (HPS_OPT_TLS_CERT_FILE ...), "" if unset. */
char *hpsw_getopt_str(hps_endpoint *ep, int opt) {
  size_t len = 0;
  char one[1], *s;
  int r = hps_getopt_str(ep, opt, one, 1, &len);
  if (r == 0) return hpsw_str(0, calloc(1, 1)); /* "" */
  if (r != HPS_EINVAL || len == 0) return hpsw_str(r, NULL); /* bad key */
  s = malloc(len + 1);
  if (s == NULL) return hpsw_str(HPS_ENOMEM, NULL);
  return hpsw_str(hps_getopt_str(ep, opt, s, len + 1, NULL), s);
}
/* hps_tls_info as a string (enum hps_tls_info_kind). */
char *hpsw_tls_info(hps_endpoint *ep, hps_conn_id id, int kind) {
  char *s = malloc(512);
  if (s == NULL) return hpsw_str(HPS_ENOMEM, NULL);
  return hpsw_str(hps_tls_info(ep, id, kind, s, 512, NULL), s);
}
/* The error of this thread's last hpsw_* call that returned NULL. */
long hpsw_error(void) { return hpsw_err; }
%}
