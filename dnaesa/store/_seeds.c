/* The seed table's sampling (`seeds.py`: `sampled_kmers`) in C, called through ctypes (no Python
 * API). `pip install` builds it as an optional extension; without a compiler seeds.py's numpy path
 * gives the same keys and positions.
 *
 * For each window of k bases of `codes` (0-3: A C G T; anything larger breaks the windows over it):
 * fwd = the window's 2-bit codes, the first base most significant; rev = its reverse complement's
 * (the complement of base j at bits 2j); h = splitmix64's finaliser of min(fwd, rev). The window
 * is kept when h & mask == 0, as key = (h >> 32) with its lowest bit set to (rev < fwd), and its
 * first base's index.
 */
#include <stdint.h>

int dnaesa_seeds_abi(void) { return 1; }

static uint64_t mix(uint64_t x) {
    x ^= x >> 30;
    x *= 0xBF58476D1CE4E5B9ULL;
    x ^= x >> 27;
    x *= 0x94D049BB133111EBULL;
    x ^= x >> 31;
    return x;
}

/* Sampled windows of codes[0:n] into keys/positions (room for n each); returns how many. */
int64_t dnaesa_seeds_sample(const uint8_t *codes, int64_t n, int64_t k, uint64_t mask, uint32_t *keys,
                            int64_t *positions) {
    const uint64_t full = k >= 32 ? ~0ULL : (1ULL << (2 * k)) - 1;
    const int shift = (int)(2 * (k - 1));
    uint64_t fwd = 0, rev = 0;
    int64_t run = 0, got = 0;
    for (int64_t i = 0; i < n; i++) {
        const uint8_t c = codes[i];
        if (c > 3) {
            run = 0;
            fwd = rev = 0;
            continue;
        }
        fwd = ((fwd << 2) | c) & full;
        rev = (rev >> 2) | ((uint64_t)(3 - c) << shift);
        if (++run < k)
            continue;
        const uint64_t h = mix(fwd < rev ? fwd : rev);
        if (h & mask)
            continue;
        keys[got] = ((uint32_t)(h >> 32) & 0xFFFFFFFEu) | (rev < fwd ? 1u : 0u);
        positions[got++] = i - k + 1;
    }
    return got;
}
