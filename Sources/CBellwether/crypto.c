// SHA-256 (FIPS 180-4), HMAC-SHA-256 (RFC 2104), PBKDF2-HMAC-SHA-256
// (RFC 8018) and MD5 (RFC 1321), written from the specifications. Both
// hashes share one Merkle-Damgard front end (64-byte blocks, 0x80 padding,
// a 64-bit bit count); they differ in their compression function and in byte
// order, big-endian for SHA-256 and little-endian for MD5. Words are loaded
// and stored a byte at a time, so nothing depends on the host's byte order
// or on alignment.
#include "CBellwetherCrypto.h"

#include <errno.h>
#include <string.h>

typedef void (*compress_fn)(uint32_t *state, const unsigned char *block);

typedef struct {
    uint32_t state[8];       // SHA-256 uses all 8 words, MD5 the first 4
    uint64_t length;         // bytes absorbed so far
    size_t used;             // bytes waiting in block
    unsigned char block[64];
    compress_fn compress;
    int big_endian;
} hash_state;

static uint32_t rotr(uint32_t x, unsigned n) { return (x >> n) | (x << (32 - n)); }
static uint32_t rotl(uint32_t x, unsigned n) { return (x << n) | (x >> (32 - n)); }

static uint32_t load_be32(const unsigned char *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static uint32_t load_le32(const unsigned char *p) {
    return (uint32_t)p[3] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[1] << 8 | (uint32_t)p[0];
}

static void store32(unsigned char *p, uint32_t x, int big_endian) {
    for (int i = 0; i < 4; i++) p[big_endian ? 3 - i : i] = (unsigned char)(x >> (8 * i));
}

// FIPS 180-4 4.2.2: the first 32 bits of the fractional parts of the cube
// roots of the first 64 primes.
static const uint32_t sha256_k[64] = {
    0x428a2f98u, 0x71374491u, 0xb5c0fbcfu, 0xe9b5dba5u, 0x3956c25bu, 0x59f111f1u, 0x923f82a4u, 0xab1c5ed5u,
    0xd807aa98u, 0x12835b01u, 0x243185beu, 0x550c7dc3u, 0x72be5d74u, 0x80deb1feu, 0x9bdc06a7u, 0xc19bf174u,
    0xe49b69c1u, 0xefbe4786u, 0x0fc19dc6u, 0x240ca1ccu, 0x2de92c6fu, 0x4a7484aau, 0x5cb0a9dcu, 0x76f988dau,
    0x983e5152u, 0xa831c66du, 0xb00327c8u, 0xbf597fc7u, 0xc6e00bf3u, 0xd5a79147u, 0x06ca6351u, 0x14292967u,
    0x27b70a85u, 0x2e1b2138u, 0x4d2c6dfcu, 0x53380d13u, 0x650a7354u, 0x766a0abbu, 0x81c2c92eu, 0x92722c85u,
    0xa2bfe8a1u, 0xa81a664bu, 0xc24b8b70u, 0xc76c51a3u, 0xd192e819u, 0xd6990624u, 0xf40e3585u, 0x106aa070u,
    0x19a4c116u, 0x1e376c08u, 0x2748774cu, 0x34b0bcb5u, 0x391c0cb3u, 0x4ed8aa4au, 0x5b9cca4fu, 0x682e6ff3u,
    0x748f82eeu, 0x78a5636fu, 0x84c87814u, 0x8cc70208u, 0x90befffau, 0xa4506cebu, 0xbef9a3f7u, 0xc67178f2u,
};

// FIPS 180-4 6.2.2: one 512-bit block into the eight working variables.
static void sha256_compress(uint32_t *h, const unsigned char *block) {
    uint32_t w[64];
    for (int t = 0; t < 16; t++) w[t] = load_be32(block + 4 * t);
    for (int t = 16; t < 64; t++) {
        uint32_t s0 = rotr(w[t - 15], 7) ^ rotr(w[t - 15], 18) ^ (w[t - 15] >> 3);
        uint32_t s1 = rotr(w[t - 2], 17) ^ rotr(w[t - 2], 19) ^ (w[t - 2] >> 10);
        w[t] = w[t - 16] + s0 + w[t - 7] + s1;
    }
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], k = h[7];
    for (int t = 0; t < 64; t++) {
        uint32_t choose = (e & f) ^ (~e & g);
        uint32_t majority = (a & b) ^ (a & c) ^ (b & c);
        uint32_t t1 = k + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + choose + sha256_k[t] + w[t];
        uint32_t t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + majority;
        k = g; g = f; f = e; e = d + t1;
        d = c; c = b; b = a; a = t1 + t2;
    }
    h[0] += a; h[1] += b; h[2] += c; h[3] += d;
    h[4] += e; h[5] += f; h[6] += g; h[7] += k;
}

// RFC 1321 3.4: T[i] = floor(2^32 * |sin(i + 1)|).
static const uint32_t md5_t[64] = {
    0xd76aa478u, 0xe8c7b756u, 0x242070dbu, 0xc1bdceeeu, 0xf57c0fafu, 0x4787c62au, 0xa8304613u, 0xfd469501u,
    0x698098d8u, 0x8b44f7afu, 0xffff5bb1u, 0x895cd7beu, 0x6b901122u, 0xfd987193u, 0xa679438eu, 0x49b40821u,
    0xf61e2562u, 0xc040b340u, 0x265e5a51u, 0xe9b6c7aau, 0xd62f105du, 0x02441453u, 0xd8a1e681u, 0xe7d3fbc8u,
    0x21e1cde6u, 0xc33707d6u, 0xf4d50d87u, 0x455a14edu, 0xa9e3e905u, 0xfcefa3f8u, 0x676f02d9u, 0x8d2a4c8au,
    0xfffa3942u, 0x8771f681u, 0x6d9d6122u, 0xfde5380cu, 0xa4beea44u, 0x4bdecfa9u, 0xf6bb4b60u, 0xbebfbc70u,
    0x289b7ec6u, 0xeaa127fau, 0xd4ef3085u, 0x04881d05u, 0xd9d4d039u, 0xe6db99e5u, 0x1fa27cf8u, 0xc4ac5665u,
    0xf4292244u, 0x432aff97u, 0xab9423a7u, 0xfc93a039u, 0x655b59c3u, 0x8f0ccc92u, 0xffeff47du, 0x85845dd1u,
    0x6fa87e4fu, 0xfe2ce6e0u, 0xa3014314u, 0x4e0811a1u, 0xf7537e82u, 0xbd3af235u, 0x2ad7d2bbu, 0xeb86d391u,
};

// RFC 1321 3.4: four rounds of sixteen steps, each round with its own
// function, its own order of message words and its own four shift amounts.
static void md5_compress(uint32_t *h, const unsigned char *block) {
    static const unsigned shifts[4][4] = { {7, 12, 17, 22}, {5, 9, 14, 20}, {4, 11, 16, 23}, {6, 10, 15, 21} };
    uint32_t x[16];
    for (int i = 0; i < 16; i++) x[i] = load_le32(block + 4 * i);
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3];
    for (int i = 0; i < 64; i++) {
        int round = i / 16;
        uint32_t f;
        int word;
        switch (round) {
        case 0: f = (b & c) | (~b & d); word = i; break;
        case 1: f = (b & d) | (c & ~d); word = (5 * i + 1) % 16; break;
        case 2: f = b ^ c ^ d; word = (3 * i + 5) % 16; break;
        default: f = c ^ (b | ~d); word = (7 * i) % 16; break;
        }
        uint32_t next = b + rotl(a + f + md5_t[i] + x[word], shifts[round][i % 4]);
        a = d; d = c; c = b; b = next;
    }
    h[0] += a; h[1] += b; h[2] += c; h[3] += d;
}

static void sha256_begin(hash_state *s) {
    static const uint32_t initial[8] = {
        0x6a09e667u, 0xbb67ae85u, 0x3c6ef372u, 0xa54ff53au, 0x510e527fu, 0x9b05688cu, 0x1f83d9abu, 0x5be0cd19u,
    };
    memcpy(s->state, initial, sizeof initial);
    s->length = 0;
    s->used = 0;
    s->compress = sha256_compress;
    s->big_endian = 1;
}

static void md5_begin(hash_state *s) {
    static const uint32_t initial[4] = { 0x67452301u, 0xefcdab89u, 0x98badcfeu, 0x10325476u };
    memset(s->state, 0, sizeof s->state);
    memcpy(s->state, initial, sizeof initial);
    s->length = 0;
    s->used = 0;
    s->compress = md5_compress;
    s->big_endian = 0;
}

static void absorb(hash_state *s, const void *data, size_t len) {
    const unsigned char *p = data;
    if (len == 0) return;
    s->length += len;
    if (s->used > 0) {
        size_t take = 64 - s->used < len ? 64 - s->used : len;
        memcpy(s->block + s->used, p, take);
        s->used += take;
        p += take;
        len -= take;
        if (s->used < 64) return;
        s->compress(s->state, s->block);
        s->used = 0;
    }
    for (; len >= 64; p += 64, len -= 64) s->compress(s->state, p);
    memcpy(s->block, p, len);
    s->used = len;
}

// Pads with 0x80, zeros, and the message length in bits, so that the total
// is a whole number of blocks; then writes `words` state words.
static void finish(hash_state *s, unsigned char *out, int words) {
    uint64_t bits = s->length * 8;
    s->block[s->used++] = 0x80;
    if (s->used > 56) {
        memset(s->block + s->used, 0, 64 - s->used);
        s->compress(s->state, s->block);
        s->used = 0;
    }
    memset(s->block + s->used, 0, 56 - s->used);
    for (int i = 0; i < 8; i++) {
        s->block[s->big_endian ? 63 - i : 56 + i] = (unsigned char)(bits >> (8 * i));
    }
    s->compress(s->state, s->block);
    for (int i = 0; i < words; i++) store32(out + 4 * i, s->state[i], s->big_endian);
}

void bw_sha256(const void *data, size_t len, unsigned char out[32]) {
    hash_state s;
    sha256_begin(&s);
    absorb(&s, data, len);
    finish(&s, out, 8);
}

void bw_md5(const void *data, size_t len, unsigned char out[16]) {
    hash_state s;
    md5_begin(&s);
    absorb(&s, data, len);
    finish(&s, out, 4);
}

// HMAC with the key's two padded blocks already absorbed: PBKDF2 computes
// thousands of MACs under one key, and this halves the compressions each costs.
typedef struct {
    hash_state inner;
    hash_state outer;
} hmac_key;

static void hmac_prepare(hmac_key *k, const void *key, size_t keylen) {
    unsigned char padded[64] = { 0 };
    unsigned char pad[64];
    if (keylen > 64) {
        bw_sha256(key, keylen, padded);
    } else if (keylen > 0) {
        memcpy(padded, key, keylen);
    }
    sha256_begin(&k->inner);
    for (int i = 0; i < 64; i++) pad[i] = padded[i] ^ 0x36;
    absorb(&k->inner, pad, 64);
    sha256_begin(&k->outer);
    for (int i = 0; i < 64; i++) pad[i] = padded[i] ^ 0x5c;
    absorb(&k->outer, pad, 64);
}

// Completes a MAC whose message went into `inner`, a copy of k->inner.
static void hmac_finish(const hmac_key *k, hash_state *inner, unsigned char out[32]) {
    unsigned char digest[32];
    finish(inner, digest, 8);
    hash_state outer = k->outer;
    absorb(&outer, digest, 32);
    finish(&outer, out, 8);
}

void bw_hmac_sha256(const void *key, size_t keylen, const void *msg, size_t msglen,
                    unsigned char out[32]) {
    hmac_key k;
    hmac_prepare(&k, key, keylen);
    hash_state inner = k.inner;
    absorb(&inner, msg, msglen);
    hmac_finish(&k, &inner, out);
}

// RFC 8018 5.2: block i is U_1 ^ U_2 ^ ... ^ U_c, where U_1 is the MAC of
// the salt followed by i (32 bits, big-endian) and U_j the MAC of U_(j-1).
int bw_pbkdf2_sha256(const void *pass, size_t passlen, const void *salt, size_t saltlen,
                     uint32_t iterations, unsigned char *out, size_t outlen) {
    if (iterations == 0 || outlen == 0 || (outlen - 1) / 32 >= 0xffffffffu) return -EINVAL;
    hmac_key k;
    hmac_prepare(&k, pass, passlen);
    uint64_t blocks = (outlen - 1) / 32 + 1;
    for (uint64_t index = 1; index <= blocks; index++) {
        unsigned char counter[4], u[32], t[32];
        store32(counter, (uint32_t)index, 1);
        hash_state inner = k.inner;
        absorb(&inner, salt, saltlen);
        absorb(&inner, counter, 4);
        hmac_finish(&k, &inner, u);
        memcpy(t, u, 32);
        for (uint32_t round = 1; round < iterations; round++) {
            inner = k.inner;
            absorb(&inner, u, 32);
            hmac_finish(&k, &inner, u);
            for (int i = 0; i < 32; i++) t[i] ^= u[i];
        }
        size_t offset = (size_t)(index - 1) * 32;
        size_t take = outlen - offset < 32 ? outlen - offset : 32;
        memcpy(out + offset, t, take);
    }
    return 0;
}
