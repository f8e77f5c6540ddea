/* The consumer: includes the installed header, creates and frees an
 * endpoint, prints the loaded library's version. Exit 0 on success. */
#include <stdio.h>

#include <hpsock.h>

static int on_event(void *user, const hps_event *ev) {
  (void)user;
  (void)ev;
  return HPS_HR_OK;
}

int main(void) {
  hps_endpoint *ep = NULL;
  int rc = hps_create(HPS_TCP_SERVER, on_event, NULL, &ep);
  if (rc != 0) {
    fprintf(stderr, "hps_create: %s\n", hps_err_name(rc));
    return 1;
  }
  if (hps_state(ep) != HPS_STATE_CREATED) {
    fprintf(stderr, "unexpected state %d\n", hps_state(ep));
    return 1;
  }
  rc = hps_free(ep);
  if (rc != 0) {
    fprintf(stderr, "hps_free: %s\n", hps_err_name(rc));
    return 1;
  }
  if (hps_version_hex() != HPS_VERSION_HEX) {
    fprintf(stderr, "header %#x, library %#x\n", (unsigned)HPS_VERSION_HEX,
            hps_version_hex());
    return 1;
  }
  printf("hpsock %s\n", hps_version());
  return 0;
}
