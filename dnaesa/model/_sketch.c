/* The count-sketch encoders' embedding (`kmer.py`: `KmerSketchEncoder`, `SketchModelEncoder`) in C,
 * called through ctypes (no Python API). `pip install` builds it as an optional extension; without
 * a compiler kmer.py's numpy path gives the same vectors.
 *
 * A sequence's embedding: for each channel (the contiguous k-mer, then each spaced seed), each
 * distinct canonical code of its N-free windows adds sign * weight at its count-sketch coordinate;
 * then the row is divided by its norm. Codes, canonical form, hash, coordinate and sign are
 * kmer.py's (`canonical_kmer_occurrences`, `canonical_spaced_kmers`, `sketch_coordinates`): the
 * care bases 2-bit coded (A C G T), the first most significant; the reverse complement's code
 * takes the complement of care base j at bits 2j; the smaller of the two; h = (code ^ salt) *
 * 0x9E3779B97F4A7C15; coordinate h >> (64 - log2 dim); sign +1 when bit 20 of h is set.
 *
 * The caller uses it only when every weight is a multiple of 0.5: then every sum is exact in
 * float32 (whatever the order numpy adds in), the sum of squares too (checked: below 2^22, else
 * the row is flagged and numpy does it), and the norm and the division are correctly rounded, so
 * the vectors are numpy's to the bit.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define GOLDEN 0x9E3779B97F4A7C15ULL
#define MAX_CARE 32

static int8_t base_code(uint8_t c) {
    switch (c) {
    case 'A': case 'a': return 0;
    case 'C': case 'c': return 1;
    case 'G': case 'g': return 2;
    case 'T': case 't': return 3;
    default: return -1;
    }
}

/* open-addressing set of codes (stored + 1; 0 empty): 1 when `code` was not in it yet */
static int insert(uint64_t *table, uint64_t mask, uint64_t code) {
    uint64_t key = code + 1, slot = (code * GOLDEN) >> 20 & mask;
    while (table[slot]) {
        if (table[slot] == key) return 0;
        slot = (slot + 1) & mask;
    }
    table[slot] = key;
    return 1;
}

/* the calling convention's version (kmer.py refuses a build of another) */
int dnaesa_sketch_abi(void) {
    return 1;
}

/* text: the sequences' bytes; seq s is text[starts[s] .. starts[s] + lengths[s]).
 * Channel c: n_care[c] care offsets care[c * MAX_CARE ..] within a window of spans[c] bases,
 * hashed with salts[c], adding weights[c]. out: n_seqs x dim float32 (written whole).
 * flagged[s] = 1 where the sum of squares is too large to be sure of numpy's float32 sum.
 * Returns 0, or -1 when a scratch allocation fails (then nothing is trustworthy). */
int dnaesa_sketch(const uint8_t *text, const int64_t *starts, const int64_t *lengths, int64_t n_seqs, int64_t dim,
                  int64_t n_channels, const int64_t *care, const int64_t *n_care, const int64_t *spans,
                  const uint64_t *salts, const float *weights, float *out, uint8_t *flagged) {
    int shift = 64;
    for (int64_t d = dim; d > 1; d >>= 1) shift--;
    int64_t longest = 0;
    for (int64_t s = 0; s < n_seqs; s++) longest = lengths[s] > longest ? lengths[s] : longest;
    uint64_t size = 16;
    while (size < 2 * (uint64_t)longest + 2) size <<= 1;
    uint64_t *table = malloc(size * sizeof(uint64_t));
    int8_t *codes = malloc((size_t)(longest > 0 ? longest : 1));
    /* the coordinates a sequence touched (stamped with its number + 1), so that only those are
     * summed and divided: a read's sketch has a few hundred of 4,096 */
    int64_t *touched = malloc((size_t)dim * sizeof(int64_t));
    int64_t *stamp = calloc((size_t)dim, sizeof(int64_t));
    if (!table || !codes || !touched || !stamp) {
        free(table);
        free(codes);
        free(touched);
        free(stamp);
        return -1;
    }
    for (int64_t s = 0; s < n_seqs; s++) {
        const uint8_t *seq = text + starts[s];
        int64_t len = lengths[s];
        float *row = out + s * dim;
        memset(row, 0, (size_t)dim * sizeof(float));
        for (int64_t i = 0; i < len; i++) codes[i] = base_code(seq[i]);
        int64_t n_touched = 0;
        uint64_t mask = 16 - 1;
        while (mask + 1 < 2 * (uint64_t)len + 2) mask = (mask << 1) | 1;
        for (int64_t c = 0; c < n_channels; c++) {
            const int64_t *off = care + c * MAX_CARE;
            int64_t k = n_care[c], span = spans[c];
            memset(table, 0, (size_t)(mask + 1) * sizeof(uint64_t));
            int64_t bad = 0;  /* invalid bases in the current window */
            for (int64_t i = 0; i < span - 1 && i < len; i++) bad += codes[i] < 0;
            for (int64_t i = 0; i + span <= len; i++) {
                bad += codes[i + span - 1] < 0;
                if (i > 0) bad -= codes[i - 1] < 0;
                if (bad) continue;
                uint64_t fwd = 0, rev = 0;
                for (int64_t j = 0; j < k; j++) {
                    uint64_t b = (uint64_t)codes[i + off[j]];
                    fwd = (fwd << 2) | b;
                    rev |= (3 - b) << (2 * j);
                }
                uint64_t code = fwd < rev ? fwd : rev;
                if (!insert(table, mask, code)) continue;
                uint64_t h = (code ^ salts[c]) * GOLDEN;
                int64_t coord = (int64_t)(h >> shift);
                if (stamp[coord] != s + 1) {
                    stamp[coord] = s + 1;
                    touched[n_touched++] = coord;
                }
                row[coord] += ((h >> 20) & 1) ? weights[c] : -weights[c];
            }
        }
        double squares = 0;  /* exact: multiples of 0.25 */
        for (int64_t t = 0; t < n_touched; t++) squares += (double)row[touched[t]] * row[touched[t]];
        flagged[s] = squares >= 4194304.0;  /* 2^22 */
        float norm = sqrtf((float)squares);
        if (norm < 1e-12f) norm = 1e-12f;
        for (int64_t t = 0; t < n_touched; t++) row[touched[t]] = row[touched[t]] / norm;  /* 0 / norm is 0 */
    }
    free(table);
    free(codes);
    free(touched);
    free(stamp);
    return 0;
}
