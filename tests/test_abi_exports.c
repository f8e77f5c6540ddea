/* test_abi_exports.c - linked against the SHARED library: the loaded
 * library's version is the header's, every public function is exported
 * (in the HPSOCK_0.1 version node), the export list is exactly the ABI
 * baseline capi/abi/symbols.txt, and internal hps__* symbols stay hidden. */
#define _GNU_SOURCE /* dlvsym, RTLD_DEFAULT */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "hps_test.h"

#define STR2(x) #x
#define STR(x) STR2(x)

#ifndef HPS_ABI_BASELINE
#define HPS_ABI_BASELINE HPS_FIXTURES_DIR "/../../capi/abi/symbols.txt"
#endif

/* Every function declared in hpsock.h. Taking each address also makes the
 * link fail if one is missing. */
static const struct {
  const char *name;
  void (*addr)(void);
} public_fns[] = {
#define F(n) {#n, (void (*)(void))n}
    F(hps_version),        F(hps_version_hex),      F(hps_strerror),
    F(hps_err_name),       F(hps_setopt),           F(hps_getopt),
    F(hps_create),         F(hps_start),            F(hps_stop),
    F(hps_wait),           F(hps_free),             F(hps_state),
    F(hps_role),           F(hps_listen_address),   F(hps_connect),
    F(hps_send),           F(hps_sendv),            F(hps_send_file),
    F(hps_disconnect),     F(hps_pause_receive),    F(hps_fetch),
    F(hps_peek),           F(hps_conn_count),       F(hps_conn_list),
    F(hps_local_address),  F(hps_remote_address),   F(hps_set_extra),
    F(hps_get_extra),      F(hps_get_stats),        F(hps_disconnect_silent),
    F(hps_disconnect_long), F(hps_send_to),          F(hps_join_group),
    F(hps_leave_group),     F(hps_cast_interface),   F(hps_setopt_str),
    F(hps_getopt_str),      F(hps_tls_add_cert),     F(hps_tls_info),
    F(hps_get_unsent),      F(hps_get_counter),
#undef F
};
#define NPUBLIC (sizeof(public_fns) / sizeof(public_fns[0]))

static void version_matches_the_header(void **state) {
  const char *want = STR(HPS_VERSION_MAJOR) "." STR(
      HPS_VERSION_MINOR) "." STR(HPS_VERSION_PATCH);
  (void)state;
  assert_non_null(hps_version());
  assert_string_equal(hps_version(), want);
  assert_int_equal(hps_version_hex(), HPS_VERSION_HEX);
  assert_int_equal(HPS_VERSION_HEX, (HPS_VERSION_MAJOR << 16) |
                                        (HPS_VERSION_MINOR << 8) |
                                        HPS_VERSION_PATCH);
}

static void every_public_function_is_exported(void **state) {
  size_t i;
  (void)state;
  for (i = 0; i < NPUBLIC; i++) {
    void *p = dlsym(RTLD_DEFAULT, public_fns[i].name);
    if (p == NULL) fail_msg("%s is not exported", public_fns[i].name);
    /* the exported symbol is the function the program links to */
    if (p != (void *)public_fns[i].addr)
      fail_msg("%s: dlsym gives another address than the link",
               public_fns[i].name);
  }
}

static void public_functions_carry_the_version_node(void **state) {
  size_t i;
  (void)state;
  /* 0.1's functions stay in 0.1; later ones go into their own node. */
  static const char *const in_0_2[] = {"hps_get_unsent", "hps_get_counter"};
  for (i = 0; i < NPUBLIC; i++) {
    const char *node = "HPSOCK_0.1";
    size_t k;
    for (k = 0; k < sizeof(in_0_2) / sizeof(in_0_2[0]); k++)
      if (strcmp(public_fns[i].name, in_0_2[k]) == 0) node = "HPSOCK_0.2";
    if (dlvsym(RTLD_DEFAULT, public_fns[i].name, node) == NULL)
      fail_msg("%s is not in version node %s", public_fns[i].name, node);
  }
}

static void calls_through_dlsym_reach_the_library(void **state) {
  const char *(*ver)(void);
  const char *(*name)(int);
  (void)state;
  *(void **)&ver = dlsym(RTLD_DEFAULT, "hps_version");
  *(void **)&name = dlsym(RTLD_DEFAULT, "hps_err_name");
  assert_non_null(ver);
  assert_non_null(name);
  assert_string_equal(ver(), hps_version());
  assert_string_equal(name(HPS_ENOTFOUND), "HPS_ENOTFOUND");
}

static void internal_symbols_are_hidden(void **state) {
  static const char *internal[] = {
      "hps__send",         "hps__pack_feed",   "hps__pack_init",
      "hps__pack_header",  "hps__ep_start",    "hps__ep_stop",
      "hps__resolve",      "hps__conn_close",  "hps__emit",
      "hps__loop_init",    "hps__lookup_locked", "hps__tls_loop",
      "hps__opt_check",    "hps__on_connection", "hps__wreq_new",
  };
  size_t i;
  (void)state;
  for (i = 0; i < sizeof(internal) / sizeof(internal[0]); i++)
    if (dlsym(RTLD_DEFAULT, internal[i]) != NULL)
      fail_msg("internal symbol %s is exported", internal[i]);
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The header's functions and the ABI baseline list the same names: a
 * function added to one but not the other fails here. */
static void baseline_lists_exactly_the_public_functions(void **state) {
  char *text = NULL, *line, *save = NULL;
  const char *names[256], *want[NPUBLIC];
  size_t n = 0, i;
  FILE *f;
  long len;
  (void)state;
  f = fopen(HPS_ABI_BASELINE, "rb");
  if (f == NULL) fail_msg("cannot open %s", HPS_ABI_BASELINE);
  fseek(f, 0, SEEK_END);
  len = ftell(f);
  fseek(f, 0, SEEK_SET);
  text = malloc((size_t)len + 1);
  assert_non_null(text);
  assert_int_equal(fread(text, 1, (size_t)len, f), (size_t)len);
  text[len] = '\0';
  fclose(f);
  for (line = strtok_r(text, "\n", &save); line != NULL;
       line = strtok_r(NULL, "\n", &save)) {
    if (line[0] == '\0') continue;
    assert_true(n < 256);
    names[n++] = line;
  }
  for (i = 0; i < NPUBLIC; i++) want[i] = public_fns[i].name;
  qsort(names, n, sizeof(names[0]), cmp_str);
  qsort(want, NPUBLIC, sizeof(want[0]), cmp_str);
  for (i = 0; i < n && i < NPUBLIC; i++)
    if (strcmp(names[i], want[i]) != 0)
      fail_msg("baseline has %s where the header has %s", names[i], want[i]);
  if (n != NPUBLIC)
    fail_msg("baseline lists %zu symbols, the header declares %zu", n,
             (size_t)NPUBLIC);
  for (i = 0; i < n; i++)
    if (dlsym(RTLD_DEFAULT, names[i]) == NULL)
      fail_msg("baseline symbol %s does not resolve", names[i]);
  free(text);
}

/* A smoke test through the shared library: an endpoint works end to end. */
static void endpoint_works_through_the_shared_library(void **state) {
  t_rec r;
  hps_endpoint *ep;
  uint16_t port;
  int fd;
  char buf[5];
  (void)state;
  t_rec_init(&r);
  r.echo = 1;
  ep = t_server(&r, 1, HPS_MODEL_PUSH, &port);
  fd = t_connect("127.0.0.1", port);
  t_send_all(fd, "hello", 5);
  assert_int_equal(t_recv_exact(fd, buf, 5, T_WAIT_MS), 5);
  assert_memory_equal(buf, "hello", 5);
  assert_int_equal(hps_free(ep), 0);
  assert_int_equal(t_rec_count(&r, HPS_EV_SHUTDOWN), 1);
  t_rec_free(&r);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(version_matches_the_header),
      cmocka_unit_test(every_public_function_is_exported),
      cmocka_unit_test(public_functions_carry_the_version_node),
      cmocka_unit_test(calls_through_dlsym_reach_the_library),
      cmocka_unit_test(internal_symbols_are_hidden),
      cmocka_unit_test(baseline_lists_exactly_the_public_functions),
      cmocka_unit_test(endpoint_works_through_the_shared_library),
  };
  return cmocka_run_group_tests_name("abi_exports", tests, NULL, NULL);
}
