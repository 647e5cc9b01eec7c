/* common/utf8.h: UTF-8 validity. */
#ifndef GPTQ_COMMON_UTF8_H
#define GPTQ_COMMON_UTF8_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Length of the valid UTF-8 sequence at s (n >= 1 bytes left), 0 if it is
 * not one. */
size_t gptq_utf8_valid_len(const unsigned char *s, size_t n);

/* Bytes of the maximal invalid subpart at s (>= 1): what one U+FFFD replaces
 * in Rust's from_utf8_lossy and Python's errors="replace". */
size_t gptq_utf8_invalid_len(const unsigned char *s, size_t n);

/* Byte offset of the first invalid sequence in s[n], or n if it is valid. */
size_t gptq_utf8_check(const char *s, size_t n);

/* Make s[n] valid UTF-8 in place, each invalid byte replaced by '?' (same
 * length: for text that must survive a strict decoder, such as a file name
 * in a message). */
void gptq_utf8_sanitize(char *s, size_t n);

#ifdef __cplusplus
}
#endif
#endif
