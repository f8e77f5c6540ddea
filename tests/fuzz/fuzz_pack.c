/* fuzz_pack.c - libFuzzer target for the pack decoder (core/pack.c).
 *
 * Input layout:
 *   byte 0   header flag: < 0x80: flag = byte & 3 (0 = unchecked, 1..3);
 *            else flag = ((byte & 0x7f) << 3) | 7 (7, 15, ..., 1023)
 *   byte 1   max body length: 255 -> HPS__PACK_MAX_LIMIT, else byte + 1
 *   byte 2   stop: 0 = never; n = the callback returns non-zero on every
 *            n-th frame, and the harness feeds the unconsumed rest again
 *   byte 3   k = byte % 16, the number of chunk-size bytes that follow
 *   k bytes  chunk sizes (0..255, 0 = an empty feed), used cyclically
 *   rest     the stream
 *
 * The stream is fed to hps__pack_feed in those chunks, each copied into a
 * heap block of exactly its size (ASan then catches any read past it).
 * A whole-buffer reference decoder written here from the wire format gives
 * the expected frames, error and pending count; the harness checks every
 * frame's bytes, that a body lying whole inside a chunk is delivered in
 * place, the error, that errors are sticky, that a callback stop consumes
 * exactly up to the end of that frame, and that the decoder never holds a
 * buffer over max nor allocates on a rejected header.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hpsock.h"
#include "pack.h"

#define CHECK(cond)                                                           \
  do {                                                                        \
    if (!(cond)) {                                                            \
      fprintf(stderr, "fuzz_pack: check failed at line %d: %s\n", __LINE__,   \
              #cond);                                                         \
      abort();                                                                \
    }                                                                         \
  } while (0)

/* ---- reference: decode the whole stream in one pass ---------------- */

typedef struct ref_frame {
  size_t off; /* body offset in the stream */
  size_t len;
} ref_frame;

typedef struct ref_result {
  ref_frame *frames;
  size_t n;
  int error;
  size_t pending; /* when error == 0: bytes after the last frame */
} ref_result;

static void ref_decode(const uint8_t *s, size_t n, uint32_t flag, uint32_t max,
                       ref_result *out) {
  size_t i = 0;
  out->frames = malloc((n / 5 + 1) * sizeof(*out->frames));
  CHECK(out->frames != NULL);
  out->n = 0;
  out->error = 0;
  while (n - i >= 4) {
    uint32_t h = (uint32_t)s[i] | (uint32_t)s[i + 1] << 8 |
                 (uint32_t)s[i + 2] << 16 | (uint32_t)s[i + 3] << 24;
    uint32_t len = h & 0x3fffffu, f = h >> 22;
    if (flag != 0 && f != flag) {
      out->error = HPS_EPACKFLAG;
      break;
    }
    if (len == 0) {
      out->error = HPS_EPACKEMPTY;
      break;
    }
    if (len > max) {
      out->error = HPS_EPACKSIZE;
      break;
    }
    if (n - i - 4 < len)
      break;
    out->frames[out->n].off = i + 4;
    out->frames[out->n].len = len;
    out->n++;
    i += 4 + (size_t)len;
  }
  out->pending = n - i;
}

/* ---- harness --------------------------------------------------------- */

typedef struct harness {
  const uint8_t *stream;
  const ref_result *ref;
  size_t got;               /* frames delivered so far */
  const uint8_t *chunk;     /* the block being fed */
  size_t chunk_off;         /* its offset in the stream */
  size_t chunk_len;
  unsigned stop_every;
} harness;

static int on_frame(void *ctx, const uint8_t *body, size_t len) {
  harness *h = ctx;
  const ref_frame *rf;
  CHECK(h->got < h->ref->n);
  rf = &h->ref->frames[h->got];
  CHECK(len == rf->len);
  CHECK(memcmp(body, h->stream + rf->off, len) == 0);
  /* The frame ends inside the chunk being fed. */
  CHECK(rf->off + len > h->chunk_off);
  CHECK(rf->off + len <= h->chunk_off + h->chunk_len);
  /* A body whole inside the fed block is delivered in place. */
  if (rf->off >= h->chunk_off)
    CHECK(body == h->chunk + (rf->off - h->chunk_off));
  h->got++;
  if (h->stop_every != 0 && h->got % h->stop_every == 0)
    return 1;
  return 0;
}

/* Feed stream[off, off+len) as its own heap block; handles a stop by
 * feeding the rest again. Returns the decoder's final result. */
static int feed_chunk(hps__pack_dec *d, harness *h, size_t off, size_t len,
                      uint32_t max) {
  for (;;) {
    uint8_t *blk = malloc(len ? len : 1);
    uint32_t cap_before = d->body_cap;
    size_t got_before = h->got;
    int r;
    CHECK(blk != NULL);
    memcpy(blk, h->stream + off, len);
    h->chunk = blk;
    h->chunk_off = off;
    h->chunk_len = len;
    r = hps__pack_feed(d, blk, len, on_frame, h);
    free(blk);
    CHECK(d->body_cap <= max);
    CHECK(hps__pack_pending(d) <= 4 + (size_t)max);
    if (r == 1) {
      /* Stopped right after frame h->got - 1: resume after its body. */
      size_t end;
      CHECK(h->stop_every != 0 && h->got > got_before);
      CHECK(h->got % h->stop_every == 0);
      CHECK(hps__pack_pending(d) == 0);
      end = h->ref->frames[h->got - 1].off + h->ref->frames[h->got - 1].len;
      CHECK(end > off && end <= off + len);
      len = off + len - end;
      off = end;
      if (len == 0)
        return 0;
      continue;
    }
    if (r != 0) {
      CHECK(r == HPS_EPACKFLAG || r == HPS_EPACKSIZE ||
            r == HPS_EPACKEMPTY);
      CHECK(hps__pack_pending(d) <= 4);
      /* A rejected header allocates nothing. */
      CHECK(d->body_cap == cap_before);
    }
    return r;
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  uint32_t flag, max;
  unsigned stop_every, k;
  const uint8_t *sizes, *stream;
  size_t n, off = 0, ci = 0, cycle_bytes = 0;
  ref_result ref;
  hps__pack_dec d;
  harness h;
  int r = 0;

  if (size < 4)
    return 0;
  flag = data[0] < 0x80 ? (uint32_t)(data[0] & 3)
                        : ((uint32_t)(data[0] & 0x7f) << 3) | 7u;
  max = data[1] == 255 ? HPS__PACK_MAX_LIMIT : (uint32_t)data[1] + 1;
  stop_every = data[2];
  k = data[3] % 16u;
  if (size < 4 + (size_t)k)
    return 0;
  sizes = data + 4;
  stream = data + 4 + k;
  n = size - 4 - k;

  ref_decode(stream, n, flag, max, &ref);
  memset(&h, 0, sizeof(h));
  h.stream = stream;
  h.ref = &ref;
  h.stop_every = stop_every;
  hps__pack_init(&d, flag, max);

  while (r == 0 && off < n) {
    size_t len = n - off;
    if (k != 0) {
      size_t want = sizes[ci];
      cycle_bytes += want;
      if (++ci == k) {
        ci = 0;
        if (cycle_bytes == 0) /* all sizes 0: feed the rest at once */
          k = 0;
        cycle_bytes = 0;
      }
      if (want < len)
        len = want;
    }
    r = feed_chunk(&d, &h, off, len, max);
    off += len;
  }
  if (n == 0)
    r = feed_chunk(&d, &h, 0, 0, max);

  CHECK(r == ref.error);
  CHECK(h.got == ref.n);
  if (r == 0) {
    CHECK(hps__pack_pending(&d) == ref.pending);
  } else {
    /* The error sticks until reset. */
    CHECK(hps__pack_feed(&d, stream, n, on_frame, &h) == r);
    CHECK(h.got == ref.n);
  }
  hps__pack_reset(&d);
  CHECK(d.body == NULL && hps__pack_pending(&d) == 0);
  free(ref.frames);
  return 0;
}
