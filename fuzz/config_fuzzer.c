/* config_fuzzer.c — libFuzzer target for the config string parser.
 *
 * Feeds arbitrary text to statsprof__config_parse (internal; the fuzzer
 * links the library's objects directly, so hidden symbols are reachable)
 * and to statsprof__parse_duration, and checks what the parser promises:
 *   - it returns 0 or STATSPROF_ECONFIG (ENOMEM only with a message);
 *   - a failure leaves a message "config: ... (at offset N)" with N inside
 *     the text, and no sinks behind;
 *   - a success holds only values the keys allow.
 * Inputs without "sink" also go through statsprof_create with ";sink=none"
 * appended (no file is ever written; without a sink key the default sink
 * would create statsprof.jsonl), and its message must match the parser's.
 * Any broken promise abort()s, which libFuzzer reports as a crash.
 * Build and run: dev/fuzz. */
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/internal.h"

#define CHECK(cond)                                                             \
  do {                                                                          \
    if (!(cond)) {                                                              \
      fprintf(stderr, "config_fuzzer: %s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
      abort();                                                                  \
    }                                                                           \
  } while (0)

static void check_success(const statsprof__config *c) {
  CHECK(c->interval_ns >= 0);
  CHECK(c->clock == STATSPROF__CLOCK_WALL || c->clock == STATSPROF__CLOCK_CPU);
  CHECK(c->builtins == 0 || c->builtins == 1);
  CHECK(c->compensate == 0 || c->compensate == 1);
  CHECK(c->per_thread == 0 || c->per_thread == 1);
  CHECK(c->writer_sync == 0 || c->writer_sync == 1);
  CHECK(c->on_full_block == 0 || c->on_full_block == 1);
  CHECK(c->trigger_timer == 0 || c->trigger_timer == 1);
  CHECK(c->max_functions >= 1 && c->max_functions <= 100000000);
  CHECK(c->queue >= 1 && c->queue <= 65536);
  CHECK(c->budget_ns >= 0);
  CHECK(c->max_spikes_per_min <= 100000);
  CHECK(c->stop_timeout_ns >= 0 && c->stop_timeout_ns <= 86400 * 1000000000ll);
  CHECK(c->duty >= 0 && c->duty <= 1 && c->max_overhead >= 0 && c->max_overhead <= 1);
  CHECK(c->nsinks <= STATSPROF__MAX_SINKS);
  for (size_t i = 0; i < c->nsinks; i++) {
    const char *n = c->sinks[i].name;
    CHECK(n && *n);
    for (; *n; n++) CHECK(isalnum((unsigned char)*n) || *n == '_' || *n == '-');
    CHECK(!c->sinks[i].arg || *c->sinks[i].arg);
    CHECK(c->nsinks == 1 || strcmp(c->sinks[i].name, "none") != 0);
  }
}

static void check_failure(const char *text, const char *err, size_t errlen, const statsprof__config *c) {
  CHECK(memchr(err, 0, errlen) != NULL);
  CHECK(strncmp(err, "config: ", 8) == 0);
  CHECK(c->nsinks == 0);
  /* "out of memory" has no offset; everything else ends with one inside
   * the text (the quoted text itself may contain "(at offset ": the last
   * one is the parser's). */
  if (!strcmp(err, "config: out of memory")) return;
  const char *at = NULL;
  for (const char *s = err; (s = strstr(s, "(at offset ")); s++) at = s;
  CHECK(at != NULL);
  char *end;
  long off = strtol(at + 11, &end, 10);
  CHECK(!strcmp(end, ")"));
  CHECK(off >= 0 && (size_t)off <= strlen(text));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *text = malloc(size + 1);
  if (!text) return 0;
  memcpy(text, data, size);
  text[size] = 0; /* an embedded NUL ends the config, as it would in C */

  statsprof__config c;
  char err[STATSPROF__ERRLEN];
  memset(err, 'x', sizeof err); /* a missing terminator would show */
  int rc = statsprof__config_parse(text, &c, err, sizeof err);
  CHECK(rc == 0 || rc == STATSPROF_ECONFIG || rc == STATSPROF_ENOMEM);
  if (rc == 0) check_success(&c);
  else check_failure(text, err, sizeof err, &c);
  statsprof__config_free(&c);

  /* Durations: -1 or a non-negative count of ns, never anything else. */
  int64_t ns = statsprof__parse_duration(text);
  CHECK(ns >= -1);

  if (!strstr(text, "sink")) {
    size_t n = strlen(text);
    char *cfg = malloc(n + 16);
    if (cfg) {
      memcpy(cfg, text, n);
      memcpy(cfg + n, ";sink=none", 11);
      statsprof *p = NULL;
      int crc = statsprof_create(cfg, &p);
      statsprof__config c2;
      char err2[STATSPROF__ERRLEN];
      int prc = statsprof__config_parse(cfg, &c2, err2, sizeof err2);
      statsprof__config_free(&c2);
      CHECK((crc == 0) == (p != NULL));
      if (crc == 0) {
        CHECK(prc == 0);
        statsprof_destroy(p);
      } else if (prc != 0) {
        /* create reports the parser's message as it is. */
        CHECK(crc == prc);
        CHECK(strcmp(statsprof_errmsg(NULL), err2) == 0);
      }
      free(cfg);
    }
  }
  free(text);
  return 0;
}
