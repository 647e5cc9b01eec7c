/* common/utf8.c: UTF-8 validity (Unicode's table 3-7 ranges: no overlongs,
 * no surrogates, nothing above U+10FFFF), shared by the tokenizer, the
 * daemon's checks of wire strings and its replies. */
#include "common/utf8.h"

/* Length of the valid UTF-8 sequence at s (n bytes left), 0 if invalid. The
 * ranges are Unicode's table 3-7 (no overlongs, no surrogates, <= U+10FFFF). */
size_t gptq_utf8_valid_len(const unsigned char *s, size_t n)
{
    unsigned char b = s[0];
    if (b < 0x80) return 1;
    size_t need;
    unsigned char lo = 0x80, hi = 0xBF;
    if (b >= 0xC2 && b <= 0xDF) need = 2;
    else if (b == 0xE0) { need = 3; lo = 0xA0; }
    else if (b >= 0xE1 && b <= 0xEC) need = 3;
    else if (b == 0xED) { need = 3; hi = 0x9F; }
    else if (b >= 0xEE && b <= 0xEF) need = 3;
    else if (b == 0xF0) { need = 4; lo = 0x90; }
    else if (b >= 0xF1 && b <= 0xF3) need = 4;
    else if (b == 0xF4) { need = 4; hi = 0x8F; }
    else return 0;
    if (n < 2 || s[1] < lo || s[1] > hi) return 0;
    for (size_t i = 2; i < need; i++)
        if (n <= i || s[i] < 0x80 || s[i] > 0xBF) return 0;
    return need;
}

/* Bytes of the maximal invalid subpart at s (>= 1): what one U+FFFD replaces
 * in Rust's from_utf8_lossy and Python's errors="replace". */
size_t gptq_utf8_invalid_len(const unsigned char *s, size_t n)
{
    unsigned char b = s[0];
    size_t need;
    unsigned char lo = 0x80, hi = 0xBF;
    if (b >= 0xC2 && b <= 0xDF) need = 2;
    else if (b == 0xE0) { need = 3; lo = 0xA0; }
    else if ((b >= 0xE1 && b <= 0xEC) || b == 0xEE || b == 0xEF) need = 3;
    else if (b == 0xED) { need = 3; hi = 0x9F; }
    else if (b == 0xF0) { need = 4; lo = 0x90; }
    else if (b >= 0xF1 && b <= 0xF3) need = 4;
    else if (b == 0xF4) { need = 4; hi = 0x8F; }
    else return 1;
    if (n < 2 || s[1] < lo || s[1] > hi) return 1;
    size_t i = 2;
    while (i < need && i < n && s[i] >= 0x80 && s[i] <= 0xBF) i++;
    return i;
}

/* Byte offset of the first invalid sequence, or n if s is valid UTF-8. */
size_t gptq_utf8_check(const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        if (u[i] < 0x80) { i++; continue; }
        size_t k = gptq_utf8_valid_len(u + i, n - i);
        if (!k) return i;
        i += k;
    }
    return n;
}

void gptq_utf8_sanitize(char *s, size_t n)
{
    unsigned char *u = (unsigned char *)s;
    for (size_t i = 0; i < n;) {
        size_t k = u[i] < 0x80 ? 1 : gptq_utf8_valid_len(u + i, n - i);
        if (k) {
            i += k;
            continue;
        }
        for (size_t bad = gptq_utf8_invalid_len(u + i, n - i); bad--; i++)
            u[i] = '?';
    }
}
