/* The seed table's sampling (`seeds.py`: `sampled_kmers`) and its lookup of reads
 * (`SeedTable.candidates`) in C, called through ctypes (no Python API). `pip install` builds it as
 * an optional extension; without a compiler seeds.py's numpy path gives the same results.
 *
 * For each window of k bases of `codes` (0-3: A C G T; anything larger breaks the windows over it):
 * fwd = the window's 2-bit codes, the first base most significant; rev = its reverse complement's
 * (the complement of base j at bits 2j); h = splitmix64's finaliser of min(fwd, rev). The window
 * is kept when h & mask == 0, as key = (h >> 32) with its lowest bit set to (rev < fwd), and its
 * first base's index.
 */
#include <stdint.h>
#include <stdlib.h>

int dnaesa_seeds_abi(void) { return 4; }

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

/* first index in sorted a[0:n] whose value is > x (numpy's searchsorted side="right") */
static int64_t upper_i64(const int64_t *a, int64_t n, int64_t x) {
    int64_t lo = 0, hi = n;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        if (a[mid] <= x) lo = mid + 1; else hi = mid;
    }
    return lo;
}

/* first index in sorted a[0:n] whose value is >= x (side="left"), or > x with `after` */
static int64_t bound_u32(const uint32_t *a, int64_t n, uint32_t x, int after) {
    int64_t lo = 0, hi = n;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        if (a[mid] < x || (after && a[mid] == x)) lo = mid + 1; else hi = mid;
    }
    return lo;
}

/* the last fragment starting at or before x (-1: none), from directory[x >> DIRECTORY_SHIFT]: the
 * last one starting at or before that bucket's first base (fragments start at most a few buckets apart) */
#define DIRECTORY_SHIFT 10
static int64_t fragment_of(const int64_t *frag_starts, int64_t n_frags, const int64_t *directory, int64_t x) {
    int64_t f = directory[x >> DIRECTORY_SHIFT];
    while (f + 1 < n_frags && frag_starts[f + 1] <= x) f++;
    return f;
}

typedef struct { int64_t frag; int64_t votes; } vote_t;
typedef struct { uint32_t key; int64_t s; } seed_t;

static int by_key(const void *a, const void *b) {  /* a read's seeds by k-mer (strand bit cleared), then place */
    const seed_t *x = a, *y = b;
    const uint32_t kx = x->key & 0xFFFFFFFEu, ky = y->key & 0xFFFFFFFEu;
    if (kx != ky) return (kx > ky) - (kx < ky);
    return (x->s > y->s) - (x->s < y->s);
}

static int by_votes(const void *a, const void *b) {  /* most votes first, then the lower fragment */
    const vote_t *x = a, *y = b;
    if (x->votes != y->votes) return (x->votes < y->votes) - (x->votes > y->votes);
    return (x->frag > y->frag) - (x->frag < y->frag);
}

/* `SeedTable.candidates` for n reads: read r is codes[starts[r] : starts[r] + lens[r]] (0-3, other
 * values break the k-mers over them). Its sampled k-mers (with `half`, those whose key has bit 1
 * clear) are looked up in the table (keys sorted, positions beside them); a k-mer found more than
 * max_occ times casts no vote, and makes the read unusable when more than frequent_share of those
 * looked up are such (0: any one); every other hit votes for the fragments
 * of its contig from the one holding (read start - slack) to the one holding (read end + slack),
 * one vote each, two for a fragment that holds the read as placed (a read longer than `longest`
 * votes as its first `longest` bases); a k-mer of the read votes once for a fragment, however
 * often it occurs in the read and there (its largest vote: a tandem repeat does not outvote the
 * read's own locus). out (n x limit, -1 pads): the fragments by votes, then id; out_votes (NULL,
 * or like out, 0 pads): their votes;
 * usable[r]: some fragment got a vote, not too many k-mers were too frequent, and the fragment after the first
 * `limit` (if any) has under half the best one's votes. directory: `fragment_of`'s, one entry for
 * every 1,024 bases of the contigs laid end to end. Returns 0, or -1 when memory ran out. */
int dnaesa_seeds_candidates(const uint8_t *codes, const int64_t *starts, const int64_t *lens, int64_t n,
                            int64_t k, uint64_t mask, int half, const uint32_t *keys, const uint32_t *positions,
                            int64_t n_entries, const int64_t *contig_starts, int64_t n_contigs,
                            const int64_t *frag_starts, const int64_t *frag_ends, int64_t n_frags,
                            const int64_t *directory, int64_t longest,
                            int64_t max_occ, double frequent_share, int64_t slack, int64_t limit, int64_t *out,
                            int64_t *out_votes, uint8_t *usable) {
    int64_t widest = 0;
    for (int64_t r = 0; r < n; r++) widest = lens[r] > widest ? lens[r] : widest;
    uint32_t *rkeys = malloc((size_t)(widest + 1) * sizeof *rkeys);
    int64_t *rpos = malloc((size_t)(widest + 1) * sizeof *rpos);
    seed_t *order = malloc((size_t)(widest + 1) * sizeof *order);
    int64_t *tally = calloc((size_t)n_frags + 1, sizeof *tally);  /* a read's votes by fragment, zeroed after it */
    int64_t *stamp = calloc((size_t)n_frags + 1, sizeof *stamp);  /* the k-mer that last voted for a fragment */
    uint8_t *given = malloc((size_t)n_frags + 1);                /* and the vote it gave */
    int64_t room = 1024, group = 0;
    vote_t *votes = malloc((size_t)room * sizeof *votes);  /* the fragments it voted for, first vote first */
    int status = 0;
    if (!rkeys || !rpos || !order || !tally || !stamp || !given || !votes) { status = -1; goto done; }
    for (int64_t r = 0; r < n; r++) {
        const int64_t len = lens[r], length = len < longest ? len : longest;
        const int64_t got = dnaesa_seeds_sample(codes + starts[r], len, k, mask, rkeys, rpos);
        int64_t u = 0, seen = 0, frequent = 0;
        for (int64_t s = 0; s < got; s++) order[s] = (seed_t){rkeys[s], s};
        qsort(order, (size_t)got, sizeof *order, by_key);  /* each k-mer's occurrences together */
        for (int64_t o = 0; o < got; o++) {
            const int64_t s = order[o].s;
            const uint32_t key = rkeys[s];
            if (o == 0 || (key & 0xFFFFFFFEu) != (rkeys[order[o - 1].s] & 0xFFFFFFFEu)) group++;
            if (half && (key & 2u)) continue;
            const int64_t lo = bound_u32(keys, n_entries, key & 0xFFFFFFFEu, 0);
            const int64_t hi = bound_u32(keys, n_entries, key | 1u, 1);
            seen++;
            if (hi - lo > max_occ) { frequent++; continue; }
            for (int64_t e = lo; e < hi; e++) {
                const int64_t g = positions[e], q = rpos[s];
                const int64_t start = (keys[e] & 1u) == (key & 1u) ? g - q : g - (len - k - q);
                const int64_t c = upper_i64(contig_starts, n_contigs + 1, g) - 1;
                const int64_t first = contig_starts[c], last = contig_starts[c + 1] - 1;
                int64_t x = start - slack, y = start + length - 1 + slack;
                x = x < first ? first : (x > last ? last : x);
                y = y < first ? first : (y > last ? last : y);
                const int64_t a = fragment_of(frag_starts, n_frags, directory, x);
                const int64_t b = fragment_of(frag_starts, n_frags, directory, y);
                for (int64_t f = a < 0 ? 0 : a; f <= b; f++) {  /* -1: before the first fragment */
                    const int64_t slot = f + 1;  /* fragment -1 (before the first) has slot 0 */
                    const uint8_t vote = 1 + (frag_starts[f] <= start && start + length <= frag_ends[f]);
                    if (stamp[slot] == group) {  /* this k-mer voted for it already: its largest vote counts */
                        if (vote > given[slot]) { tally[slot] += vote - given[slot]; given[slot] = vote; }
                        continue;
                    }
                    if (!tally[slot]) {
                        if (u == room) {
                            vote_t *more = realloc(votes, (size_t)(2 * room) * sizeof *votes);
                            if (!more) { status = -1; goto done; }
                            votes = more;
                            room *= 2;
                        }
                        votes[u++].frag = f;
                    }
                    stamp[slot] = group;
                    given[slot] = vote;
                    tally[slot] += vote;
                }
            }
        }
        for (int64_t i = 0; i < u; i++) {
            votes[i].votes = tally[votes[i].frag + 1];
            tally[votes[i].frag + 1] = 0;
        }
        qsort(votes, (size_t)u, sizeof *votes, by_votes);
        int64_t *row = out + r * limit;
        for (int64_t i = 0; i < limit; i++) row[i] = i < u ? votes[i].frag : -1;
        if (out_votes)
            for (int64_t i = 0; i < limit; i++) out_votes[r * limit + i] = i < u ? votes[i].votes : 0;
        usable[r] = u > 0 && !((double)frequent > frequent_share * (double)seen) &&
                    !(u > limit && 2 * votes[limit].votes >= votes[0].votes);
    }
done:
    free(rkeys);
    free(rpos);
    free(order);
    free(tally);
    free(stamp);
    free(given);
    free(votes);
    return status;
}
