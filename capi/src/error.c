/* error.c - hps_strerror / hps_err_name for library and system errors. */
#include <uv.h>

#include "hpsock.h"

/* libuv's own lookups allocate (and leak) a string for codes it does not
 * know, so only hand it the codes it lists. */
static int uv_knows(int err) {
  switch (err) {
#define HPS__UV_CASE(name, msg) case UV_##name:
    UV_ERRNO_MAP(HPS__UV_CASE)
#undef HPS__UV_CASE
    return 1;
  default:
    return 0;
  }
}

const char *hps_strerror(int err) {
  switch (err) {
#define HPS__ERR_MSG(name, value, msg)                                         \
  case HPS_##name:                                                             \
    return msg;
    HPS_ERRNO_MAP(HPS__ERR_MSG)
#undef HPS__ERR_MSG
  case 0:
    return "success";
  default:
    /* System errors are -errno, which is what libuv uses on Unix. */
    return uv_knows(err) ? uv_strerror(err) : "unknown error";
  }
}

const char *hps_err_name(int err) {
  switch (err) {
#define HPS__ERR_NAME(name, value, msg)                                        \
  case HPS_##name:                                                             \
    return "HPS_" #name;
    HPS_ERRNO_MAP(HPS__ERR_NAME)
#undef HPS__ERR_NAME
  case 0:
    return "OK";
  default:
    return uv_knows(err) ? uv_err_name(err) : "UNKNOWN";
  }
}
