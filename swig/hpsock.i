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
%ignore hps_connect;
%ignore hps_send_to;
%ignore HPS_ERRNO_MAP;
%ignore HPS_EVBIT;

%include "hpsock.h"
