/* SPDX-License-Identifier: MIT */
/* base64: standard alphabet, as phoenix.js (btoa) and the socket protocol
 * use it. No allocation. */
#ifndef PHXD_BASE64_H
#define PHXD_BASE64_H

#include <stdbool.h>
#include <stddef.h>

/* Room for the encoding of n bytes, NUL included. */
#define BASE64_ENCODED_SIZE(n) (4 * (((n) + 2) / 3) + 1)

/* Writes the encoding and a NUL; returns its length. */
size_t base64_encode(const void *in, size_t n, bool pad, char *out);

/* Room for the decoding of n characters. */
#define BASE64_DECODED_SIZE(n) (3 * ((n) / 4) + 3)

/* Decodes standard base64, padded or not, into out (BASE64_DECODED_SIZE
 * bytes); false on a character outside the alphabet or an impossible
 * length. */
bool base64_decode(const char *in, size_t n, void *out, size_t *outlen);

#endif
