/* pack.h - HP-Socket compatible pack framing: a pure codec, no I/O.
 *
 * Wire format: a 4-byte little-endian header; its low 22 bits are the body
 * length, its high 10 bits a header flag; the body follows. A decoder
 * rejects a body length of 0, a length over the configured max, and (only
 * when the configured flag is non-zero) a flag that differs. It never
 * allocates more than the body it is completing, and never more than max.
 */
#ifndef HPS_CORE_PACK_H
#define HPS_CORE_PACK_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define HPS__PACK_HEADER 4u
#define HPS__PACK_LEN_MASK 0x3fffffu  /* 22 bits */
#define HPS__PACK_FLAG_MAX 0x3ffu     /* 10 bits */
#define HPS__PACK_MAX_LIMIT 0x3fffffu /* 4 MiB - 1 */

/* Write the header for a body of len bytes with flag into out[4]. */
static inline void hps__pack_header(uint8_t out[4], uint32_t flag,
                                    uint32_t len) {
  uint32_t h = ((flag & HPS__PACK_FLAG_MAX) << 22) | (len & HPS__PACK_LEN_MASK);
  out[0] = (uint8_t)h;
  out[1] = (uint8_t)(h >> 8);
  out[2] = (uint8_t)(h >> 16);
  out[3] = (uint8_t)(h >> 24);
}

/* Read a header: one load on little-endian targets (gcc does not always
 * merge the byte-wise form into one). */
static inline uint32_t hps__pack_load_le32(const uint8_t *p) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  uint32_t v;
  memcpy(&v, p, sizeof(v));
  return v;
#else
  return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
         ((uint32_t)p[3] << 24);
#endif
}

/* Called once per whole frame; body is valid only during the call (it may
 * point into the fed data or into the decoder's buffer). Return 0 to go on,
 * anything else to stop feeding (hps__pack_feed returns that value). */
typedef int (*hps__pack_frame_fn)(void *ctx, const uint8_t *body, size_t len);

typedef struct hps__pack_dec {
  uint32_t flag;         /* expected flag; 0 = not checked */
  uint32_t max;          /* max body length, 1..HPS__PACK_MAX_LIMIT */
  uint32_t fmask, fwant; /* the flag check as (header & fmask) == fwant */
  uint8_t hdr[4];        /* header bytes gathered so far */
  uint32_t hdr_got;      /* 0..4 */
  uint32_t body_len;
  uint32_t body_got;
  uint8_t *body; /* partial body buffer (malloc), NULL when none */
  uint32_t body_cap;
  const uint8_t *stop; /* set when fn stopped a feed: the end of its frame */
} hps__pack_dec;

void hps__pack_init(hps__pack_dec *d, uint32_t flag, uint32_t max);
/* Release the decoder's buffer; the decoder can be reused after init. */
void hps__pack_reset(hps__pack_dec *d);

/* Feed len bytes. Calls fn for every whole frame, in order. Returns 0 when
 * all bytes were consumed, HPS_EPACKFLAG / HPS_EPACKSIZE / HPS_EPACKEMPTY
 * on a bad header (the stream is then unusable), HPS_ENOMEM, or the first
 * non-zero value fn returned (the bytes after that frame are not consumed:
 * they start at d->stop, and the decoder is at a frame boundary, so feeding
 * them later resumes the stream). A frame that lies whole
 * inside data is delivered without copying. */
int hps__pack_feed(hps__pack_dec *d, const uint8_t *data, size_t len,
                   hps__pack_frame_fn fn, void *ctx);

/* hps__pack_feed, but a frame whose 4 header bytes lie in data right
 * before its body (header and body both inside data) goes to fn_in
 * instead of fn: its bytes as they came, header included, are body - 4 ..
 * body + len. Every other frame (one completed from earlier feeds) goes to
 * fn. */
int hps__pack_feed_in(hps__pack_dec *d, const uint8_t *data, size_t len,
                      hps__pack_frame_fn fn, hps__pack_frame_fn fn_in,
                      void *ctx);

/* Bytes currently buffered (partial header + partial body). */
size_t hps__pack_pending(const hps__pack_dec *d);

#endif
