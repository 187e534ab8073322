/* The integer scan of a flat store (`integer_scan.py`): exact top-k inner products of sparse
 * integer queries with int8 vectors held in blocks of 64, dimension-major.
 *
 * Plain C called through ctypes (no Python API). `pip install` builds it as an optional extension;
 * without a compiler the numpy path of `integer_scan.py` gives the same results, slower.
 *
 * blocks: n_blocks x dim x 64 int8 (block b holds vectors 64b .. 64b+63; coordinate d of them at
 *         blocks[b][d][0..63]), zero-padded past n.
 * A query is CSR: coordinates ind[indptr[q] .. indptr[q+1]), values val (integers as float32).
 * Dot products are sums of integer products, exact in float32 while under 2^24 (the caller checks
 * sum(|val|) times the largest stored magnitude < 2^24), so any order of summation gives the same
 * number. A vector's score is dot * inv_norm[id] in double; the top k are kept best first, ties to
 * the lower id.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#include <immintrin.h>
#define DNAESA_AVX2 1
#endif

#define LANES 64
#define PREFETCH 32

int dnaesa_scan_simd(void);

/* heap of the k best so far, its root the worst: lower score, or the same score and a higher id */
static int worse(double sa, int64_t ia, double sb, int64_t ib) {
    return sa < sb || (sa == sb && ia > ib);
}

static void sift_down(double *hs, int64_t *hi, int64_t size, int64_t pos) {
    for (;;) {
        int64_t l = 2 * pos + 1, r = l + 1, w = pos;
        if (l < size && worse(hs[l], hi[l], hs[w], hi[w])) w = l;
        if (r < size && worse(hs[r], hi[r], hs[w], hi[w])) w = r;
        if (w == pos) return;
        double ts = hs[w]; hs[w] = hs[pos]; hs[pos] = ts;
        int64_t ti = hi[w]; hi[w] = hi[pos]; hi[pos] = ti;
        pos = w;
    }
}

static void sift_up(double *hs, int64_t *hi, int64_t pos) {
    while (pos > 0) {
        int64_t p = (pos - 1) / 2;
        if (!worse(hs[pos], hi[pos], hs[p], hi[p])) return;
        double ts = hs[p]; hs[p] = hs[pos]; hs[pos] = ts;
        int64_t ti = hi[p]; hi[p] = hi[pos]; hi[pos] = ti;
        pos = p;
    }
}

/* a heap of `count` emptied into out_s, out_i best first (the worst popped to the back) */
static void pop_best_first(double *hs, int64_t *hi, int64_t count, double *out_s, int64_t *out_i) {
    for (int64_t size = count; size > 0; size--) {
        out_s[size - 1] = hs[0];
        out_i[size - 1] = hi[0];
        hs[0] = hs[size - 1]; hi[0] = hi[size - 1];
        sift_down(hs, hi, size - 1, 0);
    }
}

/* the 64 lanes' scores of one block offered to one query's heap of `count` (returned, updated);
 * ids rise, so a tie with the k-th best never enters */
static int64_t offer(const float *dots, int64_t base, int64_t n, const double *inv_norm, int64_t k,
                     double *hs, int64_t *hi, int64_t count) {
    int64_t lanes = n - base < LANES ? n - base : LANES;
    double floor = count < k ? -HUGE_VAL : hs[0];
    for (int64_t j = 0; j < lanes; j++) {
        double s = (double)dots[j] * inv_norm[base + j];
        if (s > floor || count < k) {
            if (count < k) {
                hs[count] = s; hi[count] = base + j;
                sift_up(hs, hi, count++);
            } else {
                hs[0] = s; hi[0] = base + j;
                sift_down(hs, hi, k, 0);
            }
            floor = count < k ? -HUGE_VAL : hs[0];
        }
    }
    return count;
}

static void dots_generic(const int8_t *blk, const int32_t *ind, const float *val, int64_t lo, int64_t hi_, float *out) {
    float acc[LANES] = {0};
    for (int64_t t = lo; t < hi_; t++) {
        const int8_t *row = blk + (int64_t)ind[t] * LANES;
        float v = val[t];
        for (int j = 0; j < LANES; j++) acc[j] += v * (float)row[j];
    }
    for (int j = 0; j < LANES; j++) out[j] = acc[j];
}

#ifdef DNAESA_AVX2
__attribute__((target("avx2,fma")))
static void dots_avx2(const int8_t *blk, const int32_t *ind, const float *val, int64_t lo, int64_t hi_, float *out) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
    for (int64_t t = lo; t < hi_; t++) {
        const int8_t *r = blk + (int64_t)ind[t] * LANES;
        __m256 v = _mm256_set1_ps(val[t]);
        if (t + PREFETCH < hi_)  /* rows are scattered cache lines: one query alone waits on memory */
            _mm_prefetch((const char *)(blk + (int64_t)ind[t + PREFETCH] * LANES), _MM_HINT_T0);
#define LANE8(q) _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(r + 8 * (q)))))
        a0 = _mm256_fmadd_ps(v, LANE8(0), a0);
        a1 = _mm256_fmadd_ps(v, LANE8(1), a1);
        a2 = _mm256_fmadd_ps(v, LANE8(2), a2);
        a3 = _mm256_fmadd_ps(v, LANE8(3), a3);
        a4 = _mm256_fmadd_ps(v, LANE8(4), a4);
        a5 = _mm256_fmadd_ps(v, LANE8(5), a5);
        a6 = _mm256_fmadd_ps(v, LANE8(6), a6);
        a7 = _mm256_fmadd_ps(v, LANE8(7), a7);
#undef LANE8
    }
    _mm256_storeu_ps(out, a0);
    _mm256_storeu_ps(out + 8, a1);
    _mm256_storeu_ps(out + 16, a2);
    _mm256_storeu_ps(out + 24, a3);
    _mm256_storeu_ps(out + 32, a4);
    _mm256_storeu_ps(out + 40, a5);
    _mm256_storeu_ps(out + 48, a6);
    _mm256_storeu_ps(out + 56, a7);
}
#endif

/* One query against the vectors held dimension-major whole (columns: dim x n int8, coordinate d of
 * every vector at columns[d * n ..]): each of the query's rows is read in one sequential sweep, where
 * the blocks' 64-byte rows are scattered cache lines that one query alone waits on one by one.
 * acc: n floats of scratch. The same exact sums, so the same top k as `dnaesa_scan_topk`. */
static void columns_generic(const int8_t *columns, int64_t n, const int32_t *ind, const float *val, int64_t nnz,
                            float *acc) {
    for (int64_t t = 0; t < nnz; t++) {
        const int8_t *row = columns + (int64_t)ind[t] * n;
        float v = val[t];
        for (int64_t j = 0; j < n; j++) acc[j] += v * (float)row[j];
    }
}

#ifdef DNAESA_AVX2
__attribute__((target("avx2,fma")))
static void columns_avx2(const int8_t *columns, int64_t n, const int32_t *ind, const float *val, int64_t nnz,
                         float *acc) {
    for (int64_t t = 0; t < nnz; t++) {
        const int8_t *row = columns + (int64_t)ind[t] * n;
        const int8_t *next = columns + (int64_t)ind[t + 1 < nnz ? t + 1 : t] * n;
        __m256 v = _mm256_set1_ps(val[t]);
        int64_t j = 0;
        for (; j + 64 <= n; j += 64) {  /* the next row's line at this offset on its way meanwhile */
            _mm_prefetch((const char *)(next + j), _MM_HINT_T0);
            for (int q = 0; q < 64; q += 8) {
                __m256 x = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(row + j + q))));
                _mm256_storeu_ps(acc + j + q, _mm256_fmadd_ps(v, x, _mm256_loadu_ps(acc + j + q)));
            }
        }
        for (; j + 8 <= n; j += 8) {
            __m256 x = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(row + j))));
            _mm256_storeu_ps(acc + j, _mm256_fmadd_ps(v, x, _mm256_loadu_ps(acc + j)));
        }
        for (; j < n; j++) acc[j] += val[t] * (float)row[j];
    }
}
#endif

void dnaesa_scan_columns(const int8_t *columns, int64_t n, const double *inv_norm, const int32_t *ind,
                         const float *val, int64_t nnz, int64_t k, float *acc, double *heap_s, int64_t *heap_i,
                         double *out_s, int64_t *out_i, int allow_simd) {
    int64_t count = 0;
    for (int64_t j = 0; j < n; j++) acc[j] = 0;
#ifdef DNAESA_AVX2
    if (allow_simd && dnaesa_scan_simd())
        columns_avx2(columns, n, ind, val, nnz, acc);
    else
#endif
        columns_generic(columns, n, ind, val, nnz, acc);
    for (int64_t base = 0; base < n; base += LANES)
        count = offer(acc + base, base, n, inv_norm, k, heap_s, heap_i, count);
    pop_best_first(heap_s, heap_i, count, out_s, out_i);
}

/* x rounded to the nearest integer, ties to even (as rintf and numpy's rint), for |x| <= 2^22:
 * adding and taking away 1.5 * 2^23 leaves no fraction bits (no FMA contraction, no fast-math:
 * setup.py); no libm call, and the loops around it vectorise */
static inline float round_even(float x) {
    return (x + 12582912.0f) - 12582912.0f;
}

/* Each row of x (n x dim float32) as its smallest integer multiple within int8, found as the
 * numpy path of `integer_scan.py` finds it (the same float32 operations): the row scaled so that
 * its smallest non-zero magnitude is 1, 2, .. max_multiple, the first scale that leaves every
 * coordinate within `tolerance` of an integer of at most 127. ints (n x dim) gets it, inv_norm
 * 1 / its norm (0 for a zero row), ok 1; or ok 0 and a zero row when there is none or the row is
 * not finite. Branch-free loops over the row, so that they vectorise. */
void dnaesa_integer_rows(const float *x, int64_t n, int64_t dim, int64_t max_multiple, float tolerance,
                         int8_t *ints, double *inv_norm, uint8_t *ok) {
    for (int64_t r = 0; r < n; r++) {
        const float *row = x + r * dim;
        const uint32_t *bits = (const uint32_t *)row;
        int8_t *out = ints + r * dim;
        uint32_t smallest = 0xFFFFFFFFu, special = 0;
        for (int64_t d = 0; d < dim; d++) {  /* magnitudes order as their bits: integer min */
            uint32_t m = bits[d] & 0x7FFFFFFFu;
            special |= m >= 0x7F800000u;  /* NaN or infinite */
            uint32_t key = m ? m : 0xFFFFFFFFu;
            smallest = key < smallest ? key : smallest;
        }
        for (int64_t d = 0; d < dim; d++) out[d] = 0;
        inv_norm[r] = 0.0;
        ok[r] = !special && smallest == 0xFFFFFFFFu;  /* all zero: its own integer vector */
        if (special || ok[r]) continue;
        float least;
        memcpy(&least, &smallest, sizeof least);
        for (int64_t multiple = 1; multiple <= max_multiple; multiple++) {
            float factor = (float)multiple / least;
            int bad = 0;
            for (int64_t d = 0; d < dim; d++) {
                float scaled = row[d] * factor;
                float rounded = round_even(scaled);
                bad |= !(fabsf(scaled) <= 128.0f) | !(fabsf(scaled - rounded) <= tolerance) | (fabsf(rounded) > 127.0f);
            }
            if (bad) continue;
            int64_t squares = 0;
            for (int64_t d = 0; d < dim; d++) {
                int32_t v = (int32_t)round_even(row[d] * factor);
                out[d] = (int8_t)v;
                squares += v * v;
            }
            inv_norm[r] = squares > 0 ? 1.0 / sqrt((double)squares) : 0.0;
            ok[r] = 1;
            break;
        }
    }
}

/* the calling convention's version: `integer_scan.py` refuses a build of another (a stale
 * in-place build after a change of this file would be called with the wrong arguments) */
int dnaesa_scan_abi(void) {
    return 3;
}

/* 1 when the AVX2 kernel runs on this CPU, 0 for the generic one */
int dnaesa_scan_simd(void) {
#ifdef DNAESA_AVX2
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    return 0;
#endif
}

/* heap_s, heap_i: n_queries x k scratch; out_s, out_i: n_queries x k, best first (k <= n);
 * allow_simd 0: the generic kernel even where AVX2 runs (tests compare the two) */
void dnaesa_scan_topk(const int8_t *blocks, int64_t n_blocks, int64_t dim, int64_t n, const double *inv_norm,
                      const int64_t *indptr, const int32_t *ind, const float *val, int64_t n_queries, int64_t k,
                      double *heap_s, int64_t *heap_i, int64_t *count, double *out_s, int64_t *out_i,
                      int allow_simd) {
    float dots[LANES];
    int simd = allow_simd && dnaesa_scan_simd();
    (void)simd;
    for (int64_t q = 0; q < n_queries; q++) count[q] = 0;
    for (int64_t b = 0; b < n_blocks; b++) {
        const int8_t *blk = blocks + b * dim * LANES;
        for (int64_t q = 0; q < n_queries; q++) {
#ifdef DNAESA_AVX2
            if (simd)
                dots_avx2(blk, ind, val, indptr[q], indptr[q + 1], dots);
            else
#endif
                dots_generic(blk, ind, val, indptr[q], indptr[q + 1], dots);
            count[q] = offer(dots, b * LANES, n, inv_norm, k, heap_s + q * k, heap_i + q * k, count[q]);
        }
    }
    for (int64_t q = 0; q < n_queries; q++)
        pop_best_first(heap_s + q * k, heap_i + q * k, count[q], out_s + q * k, out_i + q * k);
}

/* The scores of chosen vectors (a seed table's candidates, `IntegerScan.rerank`), from the vectors
 * held row-major (rows: n x dim int8, vector id at rows[id * dim ..]): pair p is query pair_q[p]
 * (CSR, as above) with vector pair_id[p]; out[p] = dot * inv_norm[id], the score the scan gives that
 * vector (the same exact sum, in any order). A pair reads one vector's bytes in ascending order (a
 * query's coordinates ascend), which the hardware prefetcher streams. */
void dnaesa_scan_pairs(const int8_t *rows, int64_t dim, const double *inv_norm, const int64_t *indptr,
                       const int32_t *ind, const float *val, int64_t n_pairs, const int64_t *pair_q,
                       const int64_t *pair_id, double *out) {
    for (int64_t p = 0; p < n_pairs; p++) {
        int64_t q = pair_q[p], id = pair_id[p];
        const int8_t *row = rows + id * dim;
        float a0 = 0.0f, a1 = 0.0f, a2 = 0.0f, a3 = 0.0f;
        int64_t t = indptr[q], hi = indptr[q + 1];
        for (; t + 4 <= hi; t += 4) {
            a0 += val[t] * (float)row[ind[t]];
            a1 += val[t + 1] * (float)row[ind[t + 1]];
            a2 += val[t + 2] * (float)row[ind[t + 2]];
            a3 += val[t + 3] * (float)row[ind[t + 3]];
        }
        for (; t < hi; t++) a0 += val[t] * (float)row[ind[t]];
        out[p] = (double)((a0 + a1) + (a2 + a3)) * inv_norm[id];
    }
}
