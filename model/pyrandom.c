/* model/pyrandom.c: MT19937 as CPython's _randommodule.c uses it. */
#include "model/pyrandom.h"

static void init_genrand(gptq_pyrandom *r, uint32_t s)
{
    r->mt[0] = s;
    for (int i = 1; i < 624; i++)
        r->mt[i] = 1812433253u * (r->mt[i - 1] ^ (r->mt[i - 1] >> 30)) + (uint32_t)i;
    r->index = 624;
}

void gptq_pyrandom_seed(gptq_pyrandom *r, uint64_t seed)
{
    /* CPython: the key is the seed's 32-bit words, least significant first,
     * at least one word (so seed 0 is the key [0]). */
    uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
    int key_len = key[1] ? 2 : 1;
    init_genrand(r, 19650218u);
    int i = 1, j = 0;
    for (int k = 624 > key_len ? 624 : key_len; k; k--) {
        r->mt[i] = (r->mt[i] ^ ((r->mt[i - 1] ^ (r->mt[i - 1] >> 30)) * 1664525u)) + key[j] +
                   (uint32_t)j;
        i++;
        j++;
        if (i >= 624) {
            r->mt[0] = r->mt[623];
            i = 1;
        }
        if (j >= key_len)
            j = 0;
    }
    for (int k = 623; k; k--) {
        r->mt[i] = (r->mt[i] ^ ((r->mt[i - 1] ^ (r->mt[i - 1] >> 30)) * 1566083941u)) - (uint32_t)i;
        i++;
        if (i >= 624) {
            r->mt[0] = r->mt[623];
            i = 1;
        }
    }
    r->mt[0] = 0x80000000u;
    r->index = 624;
}

static uint32_t genrand_uint32(gptq_pyrandom *r)
{
    if (r->index >= 624) {
        for (int k = 0; k < 624; k++) {
            uint32_t y = (r->mt[k] & 0x80000000u) | (r->mt[(k + 1) % 624] & 0x7fffffffu);
            r->mt[k] = r->mt[(k + 397) % 624] ^ (y >> 1) ^ ((y & 1u) ? 0x9908b0dfu : 0u);
        }
        r->index = 0;
    }
    uint32_t y = r->mt[r->index++];
    y ^= y >> 11;
    y ^= (y << 7) & 0x9d2c5680u;
    y ^= (y << 15) & 0xefc60000u;
    y ^= y >> 18;
    return y;
}

int64_t gptq_pyrandom_randint(gptq_pyrandom *r, int64_t a, int64_t b)
{
    uint64_t n = (uint64_t)(b - a) + 1; /* _randbelow(n) */
    int k = 0;
    while (k < 64 && (n >> k))
        k++; /* n.bit_length() */
    uint64_t v;
    do {
        if (k <= 32) {
            v = genrand_uint32(r) >> (32 - k);
        } else { /* getrandbits for 33..64 bits: low word first */
            uint64_t lo = genrand_uint32(r), hi = genrand_uint32(r) >> (64 - k);
            v = lo | (hi << 32);
        }
    } while (v >= n);
    return a + (int64_t)v;
}
