/* pack.c - HP-Socket compatible pack framing (see pack.h).
 *
 * Decoder states, all kept in hps__pack_dec:
 *
 *   hdr_got 0            at a frame boundary, nothing buffered
 *   hdr_got 1..3         part of a header buffered in hdr[]
 *   hdr_got 4, body_len  header complete and valid; body_got bytes of the
 *                        body are buffered in body[] (body_got may be 0:
 *                        nothing of the body has arrived yet)
 *   hdr_got 4, body_len 0
 *                        failed: hdr[] holds the rejected header, or the
 *                        header of the frame whose buffer could not be
 *                        allocated; every later feed returns the same error
 *                        (HPS_ENOMEM when hdr[] is a valid header) until
 *                        reset. A live frame never has body_len 0.
 *
 * Header checks, in this order, as soon as the 4 header bytes are known and
 * before anything is allocated: a flag other than the configured one (only
 * when the configured flag is non-zero) gives HPS_EPACKFLAG, a body length
 * of 0 HPS_EPACKEMPTY, a body length over max HPS_EPACKSIZE. A header that
 * fails several checks reports the first.
 *
 * Buffering: a frame whose body lies whole inside the fed data is delivered
 * from the fed data, even when its header came in an earlier feed. Only a
 * body split across feeds is copied, into a buffer of exactly body_len bytes
 * allocated when its first byte arrives (never for a rejected header, never
 * over max). The buffer is reused for later split frames that fit. One over
 * HPS__PACK_KEEP_CAP is freed once its frame is delivered, so a connection
 * that once got a large split frame does not hold that much memory for life.
 * hps__pack_reset() frees it.
 *
 * Stopping: when fn returns non-zero, stop records how far into the fed data
 * the feed got (the end of that frame); the decoder is then at a frame
 * boundary, so feeding the rest later goes on exactly where it stopped.
 * Only a stop writes it: the fast path pays nothing for it.
 *
 * The decoder is not reentrant: fn must not feed or reset the decoder that
 * is calling it.
 */
#include "pack.h"

#include <stdlib.h>
#include <string.h>

#include "hpsock.h"

/* A buffer up to this size is kept for reuse between split frames. */
#define HPS__PACK_KEEP_CAP 65536u

#if defined(__GNUC__) || defined(__clang__)
#define HPS__LIKELY(x) __builtin_expect(!!(x), 1)
#define HPS__UNLIKELY(x) __builtin_expect(!!(x), 0)
#else
#define HPS__LIKELY(x) (x)
#define HPS__UNLIKELY(x) (x)
#endif

void hps__pack_init(hps__pack_dec *d, uint32_t flag, uint32_t max) {
  /* No clamping needed: a flag over 10 bits never matches (every frame is
   * rejected), and a max over HPS__PACK_MAX_LIMIT allows no more than the
   * limit since a length has 22 bits. max 0 rejects every frame. */
  memset(d, 0, sizeof(*d));
  d->flag = flag;
  d->max = max;
  /* a frame's flag bits under fmask must be fwant: no bits when the flag
   * is 0 (not checked), never when it is over 10 bits */
  d->fmask = flag != 0 ? ~(uint32_t)HPS__PACK_LEN_MASK : 0u;
  d->fwant = flag > HPS__PACK_FLAG_MAX ? 1u : flag << 22;
}

void hps__pack_reset(hps__pack_dec *d) {
  free(d->body);
  d->body = NULL;
  d->body_cap = 0;
  d->hdr_got = 0;
  d->body_len = 0;
  d->body_got = 0;
}

size_t hps__pack_pending(const hps__pack_dec *d) {
  return (size_t)d->hdr_got + d->body_got;
}

/* The error for a header known to be bad (the caller checked). */
static int hps__pack_header_error(const hps__pack_dec *d, uint32_t h) {
  uint32_t len = h & HPS__PACK_LEN_MASK;
  if (d->flag != 0 && (h >> 22) != d->flag)
    return HPS_EPACKFLAG;
  if (len == 0)
    return HPS_EPACKEMPTY;
  return HPS_EPACKSIZE;
}

/* Non-zero when the header must be rejected. len - 1 >= max catches both
 * len == 0 (wraps) and len > max in one compare. */
static inline int hps__pack_header_bad(const hps__pack_dec *d, uint32_t h) {
  uint32_t len = h & HPS__PACK_LEN_MASK;
  return (len - 1u >= d->max) | (d->flag != 0 && (h >> 22) != d->flag);
}

/* Enter the failed state for header h and return its error. */
static int hps__pack_fail(hps__pack_dec *d, uint32_t h) {
  d->hdr[0] = (uint8_t)h;
  d->hdr[1] = (uint8_t)(h >> 8);
  d->hdr[2] = (uint8_t)(h >> 16);
  d->hdr[3] = (uint8_t)(h >> 24);
  d->hdr_got = 4;
  d->body_len = 0;
  d->body_got = 0;
  return hps__pack_header_error(d, h);
}

/* The error a failed decoder keeps returning. */
static int hps__pack_failed_error(const hps__pack_dec *d) {
  uint32_t h = hps__pack_load_le32(d->hdr);
  return hps__pack_header_bad(d, h) ? hps__pack_header_error(d, h) : HPS_ENOMEM;
}

/* Make room for the whole body of the current frame (body_len bytes), whose
 * header is in hdr[]. On failure the decoder is left failed. */
static int hps__pack_reserve(hps__pack_dec *d) {
  if (d->body_cap >= d->body_len)
    return 0;
  free(d->body); /* nothing in it to keep: body_got is 0 here */
  d->body = malloc(d->body_len);
  if (HPS__UNLIKELY(d->body == NULL)) {
    d->body_cap = 0;
    d->body_len = 0; /* failed state; hdr[] holds a valid header */
    d->body_got = 0;
    return HPS_ENOMEM;
  }
  d->body_cap = d->body_len;
  return 0;
}

/* Back to a frame boundary after a buffered frame was delivered. */
static void hps__pack_done_buffered(hps__pack_dec *d) {
  if (d->body_cap > HPS__PACK_KEEP_CAP) {
    free(d->body);
    d->body = NULL;
    d->body_cap = 0;
  }
}

/* The decoder. fn_in gets the frames of the fast loop, whose header lies
 * right before the body in data; fn the others. Always inlined into the
 * two entry points below, so a caller (with LTO) gets its callbacks
 * inlined into the loop. */
static inline __attribute__((always_inline)) int
hps__pack_feed_any(hps__pack_dec *d, const uint8_t *data, size_t len,
                   hps__pack_frame_fn fn, hps__pack_frame_fn fn_in, void *ctx) {
  const uint8_t *p, *end;
  uint32_t h, blen;
  int r;

  if (HPS__UNLIKELY(d->hdr_got != 0)) {
    /* Slow path: finish the frame left over from earlier feeds. */
    if (d->hdr_got == 4 && d->body_len == 0) /* failed earlier */
      return hps__pack_failed_error(d);
    if (len == 0)
      return 0;
    p = data;
    end = data + len;
    if (d->hdr_got < 4) {
      size_t want = 4u - d->hdr_got;
      if (len < want) {
        memcpy(d->hdr + d->hdr_got, p, len);
        d->hdr_got += (uint32_t)len;
        return 0;
      }
      memcpy(d->hdr + d->hdr_got, p, want);
      p += want;
      h = hps__pack_load_le32(d->hdr);
      if (HPS__UNLIKELY(hps__pack_header_bad(d, h)))
        return hps__pack_fail(d, h);
      d->hdr_got = 4;
      d->body_len = h & HPS__PACK_LEN_MASK;
      d->body_got = 0;
    }
    /* Header complete; body_len - body_got body bytes still to come. */
    {
      size_t need = (size_t)(d->body_len - d->body_got);
      size_t avail = (size_t)(end - p);
      if (d->body_got == 0 && avail >= need) {
        /* The whole body is in this feed: no copy. */
        blen = d->body_len;
        d->hdr_got = 0;
        d->body_len = 0;
        r = fn(ctx, p, blen);
        p += blen;
        if (r != 0) {
          d->stop = p;
          return r;
        }
      } else if (avail < need) {
        if (avail == 0)
          return 0;
        if (d->body_got == 0 && (r = hps__pack_reserve(d)) != 0)
          return r;
        memcpy(d->body + d->body_got, p, avail);
        d->body_got += (uint32_t)avail;
        return 0;
      } else {
        /* body_got > 0 and the rest is here: complete the buffered body. */
        memcpy(d->body + d->body_got, p, need);
        p += need;
        blen = d->body_len;
        d->hdr_got = 0;
        d->body_len = 0;
        d->body_got = 0;
        r = fn(ctx, d->body, blen);
        hps__pack_done_buffered(d);
        if (r != 0) {
          d->stop = p;
          return r;
        }
      }
    }
  } else {
    if (HPS__UNLIKELY(len == 0))
      return 0;
    p = data;
    end = data + len;
  }

  /* Fast path: at a frame boundary; deliver every whole frame in place.
   * The checks of hps__pack_header_bad, the flag's as one compare (fmask,
   * fwant). */
  for (;;) {
    size_t left = (size_t)(end - p);
    if (left < 4) {
      if (left != 0) {
        memcpy(d->hdr, p, left);
        d->hdr_got = (uint32_t)left;
      }
      return 0;
    }
    h = hps__pack_load_le32(p);
    blen = h & HPS__PACK_LEN_MASK;
    if (HPS__UNLIKELY(blen - 1u >= d->max || (h & d->fmask) != d->fwant))
      return hps__pack_fail(d, h);
    if (HPS__UNLIKELY(left - 4 < blen))
      break;
    r = fn_in(ctx, p + 4, blen);
    p += 4 + (size_t)blen;
    if (HPS__UNLIKELY(r != 0)) {
      d->stop = p;
      return r;
    }
  }

  /* A valid header whose body is cut off at the end of the feed. */
  memcpy(d->hdr, p, 4);
  d->hdr_got = 4;
  d->body_len = blen;
  d->body_got = 0;
  p += 4;
  {
    size_t avail = (size_t)(end - p);
    if (avail != 0) {
      if ((r = hps__pack_reserve(d)) != 0)
        return r;
      memcpy(d->body, p, avail);
      d->body_got = (uint32_t)avail;
    }
  }
  return 0;
}

int hps__pack_feed(hps__pack_dec *d, const uint8_t *data, size_t len,
                   hps__pack_frame_fn fn, void *ctx) {
  return hps__pack_feed_any(d, data, len, fn, fn, ctx);
}

int hps__pack_feed_in(hps__pack_dec *d, const uint8_t *data, size_t len,
                      hps__pack_frame_fn fn, hps__pack_frame_fn fn_in,
                      void *ctx) {
  return hps__pack_feed_any(d, data, len, fn, fn_in, ctx);
}
