// Matrix products for a handful of fp32 rows on the CPU, built at run time by model/native.py.
// The weights may be fp32, bf16, or int8 with one fp32 scale per row: they are widened to fp32 in
// registers as they stream in, so the activations stay fp32 on every CPU (a CPU without native
// bf16 computes bf16 slowly, and int8 weights need no int8 arithmetic this way), and int8 weights
// stream a quarter of the fp32 bytes.
//
// Decode multiplies one row by each weight matrix; a question on a cached document multiplies
// about ten rows by each expert. Both are bound by how fast the weights stream from memory.
// MKL streams them at about 18 GB/s on this project's machines and oneDNN at 20-27 GB/s (less as
// rows grow, because it rearranges the weight for every call); these loops read every weight
// row once, in place, and keep all the partial sums in registers, which streams at 27-29 GB/s
// for one row and stays ahead of oneDNN up to 16 rows. The inner loop is written with GCC's
// vector extensions, so the compiler emits the widest instructions of the machine that builds it.

#include <torch/extension.h>

#include "cpu_amx.h"
#include <ATen/Parallel.h>

#if defined(__AVX2__) || defined(__AVX512F__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <cmath>
#include <cstring>
#include <omp.h>
#include <type_traits>
#include <vector>

namespace {

typedef float vf __attribute__((vector_size(64)));
typedef float vf8 __attribute__((vector_size(32)));
typedef float vf4 __attribute__((vector_size(16)));
typedef int8_t vi8 __attribute__((vector_size(16)));      // 16 int8 weights
typedef int32_t vi32 __attribute__((vector_size(64)));    // 16 int32
typedef uint16_t vu16 __attribute__((vector_size(32)));   // 16 bf16 weights, as their bits
typedef uint32_t vu32 __attribute__((vector_size(64)));
constexpr int64_t kLanes = 16;     // floats per vector
constexpr int64_t kMaxTile = 12;   // rows of x per pass over a weight row: 2 x 12 sums fit the registers
constexpr int64_t kGrain = 64;     // weight rows per parallel task

inline vf load(const float* p) {
  vf v;
  std::memcpy(&v, p, sizeof(vf));
  return v;
}

// 16 weights widened to fp32: int8 by conversion (the row's scale is applied to the finished sum),
// bf16 by moving its bits to the top half of an fp32.
// (GCC's generic conversion of an int8 vector is element by element: 15x slower than these.)
inline vf load(const int8_t* p) {
#if defined(__AVX512F__)
  const __m512 wide = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))));
  vf out;
  std::memcpy(&out, &wide, sizeof(vf));
  return out;
#elif defined(__AVX2__)
  const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  const __m256 low = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(bytes));
  const __m256 high = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(bytes, 8)));
  vf out;
  std::memcpy(&out, &low, sizeof(low));
  std::memcpy(reinterpret_cast<char*>(&out) + sizeof(low), &high, sizeof(high));
  return out;
#else
  vi8 v;
  std::memcpy(&v, p, sizeof(vi8));
  return __builtin_convertvector(v, vf);
#endif
}

inline vf load(const at::BFloat16* p) {
#if defined(__AVX512F__)
  const __m512i bits = _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))), 16);
  vf out;
  std::memcpy(&out, &bits, sizeof(vf));
  return out;
#elif defined(__AVX2__)
  const __m256i halves = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  const __m256i low = _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm256_castsi256_si128(halves)), 16);
  const __m256i high = _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm256_extracti128_si256(halves, 1)), 16);
  vf out;
  std::memcpy(&out, &low, sizeof(low));
  std::memcpy(reinterpret_cast<char*>(&out) + sizeof(low), &high, sizeof(high));
  return out;
#else
  vu16 v;
  std::memcpy(&v, p, sizeof(vu16));
  const vu32 wide = __builtin_convertvector(v, vu32) << 16;
  vf out;
  std::memcpy(&out, &wide, sizeof(vf));
  return out;
#endif
}

// A tree of halvings: a few independent steps instead of 15 dependent scalar additions.
inline float horizontal_sum(vf v) {
#if defined(__clang__) || __GNUC__ >= 12
  const vf8 a = __builtin_shufflevector(v, v, 0, 1, 2, 3, 4, 5, 6, 7) +
                __builtin_shufflevector(v, v, 8, 9, 10, 11, 12, 13, 14, 15);
  const vf4 b = __builtin_shufflevector(a, a, 0, 1, 2, 3) + __builtin_shufflevector(a, a, 4, 5, 6, 7);
  return (b[0] + b[2]) + (b[1] + b[3]);
#else
  float sum = 0.0f;
  for (int64_t j = 0; j < kLanes; ++j) sum += v[j];
  return sum;
#endif
}

// y[t * ldy + r] = dot(w row r, x row t) * scale[r] for R weight rows (ldw weights apart) and T rows
// of x; no scale (nullptr) is a scale of one. x is interleaved: 16-float chunk c of row t is at
// x + c * ldx + t * 16.
template <int R, int T, typename W>
inline void tile(const W* w, int64_t ldw, const float* scale, const float* x, int64_t ldx, int64_t n, float* y,
                 int64_t ldy) {
  vf sums[R][T];
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 16
    for (int t = 0; t < T; ++t) sums[r][t] = vf{};
  // Narrow weights (int8, bf16): a pass over R rows of a short row (1 KB of int8) is R streams of
  // a few cache lines each, too short for the hardware prefetcher, which then leaves the memory
  // idle. The R rows after them are the next R * ldw weights in memory: fetching them line by
  // line during this pass keeps one long stream going.
  constexpr int64_t kAheadBytes = R * kLanes * static_cast<int64_t>(sizeof(W));  // of the next pass, per step
  const char* next_pass = reinterpret_cast<const char*>(w + R * ldw);
  for (int64_t i = 0; i < n; i += kLanes) {
    if (sizeof(W) < 4 && T <= 4) {
#pragma GCC unroll 4
      for (int64_t b = 0; b < kAheadBytes; b += 64) __builtin_prefetch(next_pass + (i / kLanes) * kAheadBytes + b, 0, 3);
    }
    vf weights[R];
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      weights[r] = load(w + r * ldw + i);
      // bf16/int8 with several rows of x: fetching the next weight rows ahead keeps the memory
      // busy (for fp32 rows the hardware prefetcher does better alone: a question's experts 1.8x).
      if (sizeof(W) < 4 && T > 4) __builtin_prefetch(w + (R + r) * ldw + i, 0, 0);
    }
#pragma GCC unroll 16
    for (int t = 0; t < T; ++t) {
      const vf xv = load(x + (i / kLanes) * ldx + t * kLanes);
#pragma GCC unroll 16
      for (int r = 0; r < R; ++r) sums[r][t] += weights[r] * xv;
    }
  }
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 16
    for (int t = 0; t < T; ++t) y[t * ldy + r] = horizontal_sum(sums[r][t]) * (scale ? scale[r] : 1.0f);
}

template <int R, typename W>
void rows_by_all_of_x(const W* w, int64_t ldw, const float* scale, const float* x, int64_t m, int64_t n, float* y,
                      int64_t ldy) {
  const int64_t ldx = m * kLanes;
  for (int64_t t0 = 0; t0 < m; t0 += kMaxTile) {
    const float* xs = x + t0 * kLanes;
    float* ys = y + t0 * ldy;
    switch (std::min(kMaxTile, m - t0)) {
      case 1: tile<R, 1>(w, ldw, scale, xs, ldx, n, ys, ldy); break;
      case 2: tile<R, 2>(w, ldw, scale, xs, ldx, n, ys, ldy); break;
      case 3: tile<R, 3>(w, ldw, scale, xs, ldx, n, ys, ldy); break;
      case 4: tile<R, 4>(w, ldw, scale, xs, ldx, n, ys, ldy); break;
      case 5: tile<R, 5>(w, ldw, scale, xs, ldx, n, ys, ldy); break;
      case 6: tile<R, 6>(w, ldw, scale, xs, ldx, n, ys, ldy); break;
      case 7: tile<R, 7>(w, ldw, scale, xs, ldx, n, ys, ldy); break;
      case 8: tile<R, 8>(w, ldw, scale, xs, ldx, n, ys, ldy); break;
      case 9: tile<R, 9>(w, ldw, scale, xs, ldx, n, ys, ldy); break;
      case 10: tile<R, 10>(w, ldw, scale, xs, ldx, n, ys, ldy); break;
      case 11: tile<R, 11>(w, ldw, scale, xs, ldx, n, ys, ldy); break;
      default: tile<R, 12>(w, ldw, scale, xs, ldx, n, ys, ldy); break;
    }
  }
}

#if defined(__AVX512BF16__)
// bf16 weights on a CPU with AVX512-BF16: x is rounded to bf16 once per call and each instruction
// (vdpbf16ps) multiplies 32 weights by 32 values of x, adding pairs into 16 fp32 sums, where
// widening the weights to fp32 takes three instructions per 16. Sums stay fp32; x rounded to bf16
// is what a bf16 model computes with anyway. A question's experts: 6.8 -> 3.9 ms a layer.
constexpr int64_t kPair = 32;  // bf16 values per vector

// x (interleaved by 16-float chunk, m rows) as bf16, interleaved by 32-value chunk: chunk c of
// row t at out + (c * m + t) * 32.
void to_bf16_chunks(const float* x, int64_t m, int64_t n, at::BFloat16* out) {
  const int64_t ldx = m * kLanes;
  for (int64_t c = 0; c < n / kPair; ++c) {
    for (int64_t t = 0; t < m; ++t) {
      const __m512 low = _mm512_loadu_ps(x + 2 * c * ldx + t * kLanes);
      const __m512 high = _mm512_loadu_ps(x + (2 * c + 1) * ldx + t * kLanes);
      _mm512_storeu_si512(out + (c * m + t) * kPair, (__m512i)_mm512_cvtne2ps_pbh(high, low));
    }
  }
}

// As `tile`, for bf16 weights and x from to_bf16_chunks (`t0`: this tile's first row of x's m).
template <int R, int T>
inline void tile_bf16(const at::BFloat16* w, int64_t ldw, const at::BFloat16* xb, int64_t m, int64_t t0, int64_t n,
                      float* y, int64_t ldy) {
  __m512 sums[R][T];
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 16
    for (int t = 0; t < T; ++t) sums[r][t] = _mm512_setzero_ps();
  const char* next_pass = reinterpret_cast<const char*>(w + R * ldw);  // see `tile`
  for (int64_t i = 0; i < n; i += kPair) {
    if (T <= 4) {
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) __builtin_prefetch(next_pass + (i / kPair) * R * 64 + r * 64, 0, 3);
    }
    __m512bh weights[R];
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      weights[r] = (__m512bh)_mm512_loadu_si512(w + r * ldw + i);
      if (T > 4) __builtin_prefetch(w + (R + r) * ldw + i, 0, 0);
    }
#pragma GCC unroll 16
    for (int t = 0; t < T; ++t) {
      const __m512bh xv = (__m512bh)_mm512_loadu_si512(xb + ((i / kPair) * m + t0 + t) * kPair);
#pragma GCC unroll 16
      for (int r = 0; r < R; ++r) sums[r][t] = _mm512_dpbf16_ps(sums[r][t], weights[r], xv);
    }
  }
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 16
    for (int t = 0; t < T; ++t) y[t * ldy + r] = _mm512_reduce_add_ps(sums[r][t]);
}

template <int R>
void rows_by_all_of_x_bf16(const at::BFloat16* w, int64_t ldw, const at::BFloat16* xb, int64_t m, int64_t n,
                           float* y, int64_t ldy) {
  constexpr int64_t kMaxRows = R > 4 ? 2 : 6;  // R x T sums and R weight vectors fit 32 registers
  for (int64_t t0 = 0; t0 < m; t0 += kMaxRows) {
    float* ys = y + t0 * ldy;
    switch (std::min(kMaxRows, m - t0)) {
      case 1: tile_bf16<R, 1>(w, ldw, xb, m, t0, n, ys, ldy); break;
      case 2: tile_bf16<R, 2>(w, ldw, xb, m, t0, n, ys, ldy); break;
      case 3: tile_bf16<R, 3>(w, ldw, xb, m, t0, n, ys, ldy); break;
      case 4: tile_bf16<R, 4>(w, ldw, xb, m, t0, n, ys, ldy); break;
      case 5: tile_bf16<R, 5>(w, ldw, xb, m, t0, n, ys, ldy); break;
      default: tile_bf16<R, 6>(w, ldw, xb, m, t0, n, ys, ldy); break;
    }
  }
}

void product_rows_bf16(const at::BFloat16* w, int64_t n, const float* x, int64_t m, float* y, int64_t ldy,
                       int64_t begin, int64_t end) {
  std::vector<at::BFloat16> xb(m * n);
  to_bf16_chunks(x, m, n, xb.data());
  int64_t r = begin;
  if (m <= 2) {
    for (; r + 8 <= end; r += 8) rows_by_all_of_x_bf16<8>(w + r * n, n, xb.data(), m, n, y + r, ldy);
  }
  for (; r + 4 <= end; r += 4) rows_by_all_of_x_bf16<4>(w + r * n, n, xb.data(), m, n, y + r, ldy);
  for (; r < end; ++r) rows_by_all_of_x_bf16<1>(w + r * n, n, xb.data(), m, n, y + r, ldy);
}
#endif

#if defined(__AVX2__) && !defined(__AVX512F__)
// One row of x on an AVX2-only CPU: 16 vector registers, not AVX-512's 32, so the 16-float tiles
// above hold too few weight rows at once (4 rows: 22 GB/s against MKL's 30). Here each of 8 rows
// keeps one 8-float sum and every weight vector is used as soon as it is loaded: 8 streams in
// flight in 10 registers.
inline __m256 load8(const float* p) { return _mm256_loadu_ps(p); }
inline __m256 load8(const at::BFloat16* p) {
  const __m128i bits = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(bits), 16));
}
inline __m256 load8(const int8_t* p) {
  return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
}

inline float sum8(__m256 v) {
  const __m128 half = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 pairs = _mm_add_ps(half, _mm_movehl_ps(half, half));
  return _mm_cvtss_f32(_mm_add_ss(pairs, _mm_shuffle_ps(pairs, pairs, 1)));
}

template <int R, typename W>
inline void rows_by_one_x(const W* w, const float* scale, int64_t n, const float* x, float* y) {
  __m256 sums[R];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) sums[r] = _mm256_setzero_ps();
  // Narrow weights: the next R rows (the next pass, right after these in memory) are fetched
  // line by line meanwhile, as in `tile` (int8 rows of 1 KB are too short for the hardware
  // prefetcher: 12.7 -> 19 GB/s).
  constexpr int64_t kAheadBytes = R * 8 * static_cast<int64_t>(sizeof(W));
  const char* next_pass = reinterpret_cast<const char*>(w + R * n);
  for (int64_t i = 0; i < n; i += 8) {
    if (sizeof(W) < 4) {
#pragma GCC unroll 2
      for (int64_t b = 0; b < kAheadBytes; b += 64) __builtin_prefetch(next_pass + (i / 8) * kAheadBytes + b, 0, 3);
    }
    const __m256 xv = _mm256_loadu_ps(x + i);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) sums[r] = _mm256_fmadd_ps(load8(w + r * n + i), xv, sums[r]);
  }
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) y[r] = sum8(sums[r]) * (scale ? scale[r] : 1.0f);
}

template <typename W>
void product_one_x_avx2(const W* w, const float* scale, int64_t n, const float* x, float* y, int64_t begin,
                        int64_t end) {
  int64_t r = begin;
  for (; r + 8 <= end; r += 8) rows_by_one_x<8>(w + r * n, scale ? scale + r : nullptr, n, x, y + r);
  for (; r < end; ++r) rows_by_one_x<1>(w + r * n, scale ? scale + r : nullptr, n, x, y + r);
}

// Several rows of x (interleaved as `tile` reads them) on AVX2: R weight rows by T rows of x in
// 8-float sums, R * T + R + T registers of the 16.
template <int R, int T, typename W>
inline void tile_avx2(const W* w, int64_t ldw, const float* scale, const float* x, int64_t ldx, int64_t n, float* y,
                      int64_t ldy) {
  __m256 sums[R][T];
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int t = 0; t < T; ++t) sums[r][t] = _mm256_setzero_ps();
  for (int64_t i = 0; i < n; i += 8) {
    const float* chunk = x + (i / kLanes) * ldx + i % kLanes;
    __m256 xs[T];
#pragma GCC unroll 4
    for (int t = 0; t < T; ++t) xs[t] = _mm256_loadu_ps(chunk + t * kLanes);
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      const __m256 weights = load8(w + r * ldw + i);
#pragma GCC unroll 4
      for (int t = 0; t < T; ++t) sums[r][t] = _mm256_fmadd_ps(weights, xs[t], sums[r][t]);
    }
  }
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int t = 0; t < T; ++t) y[t * ldy + r] = sum8(sums[r][t]) * (scale ? scale[r] : 1.0f);
}

template <int R, typename W>
void rows_by_x_avx2(const W* w, const float* scale, int64_t n, const float* x, int64_t m, float* y, int64_t ldy) {
  const int64_t ldx = m * kLanes;
  int64_t t0 = 0;
  for (; t0 + 2 <= m; t0 += 2) tile_avx2<R, 2>(w, n, scale, x + t0 * kLanes, ldx, n, y + t0 * ldy, ldy);
  if (t0 < m) tile_avx2<R, 1>(w, n, scale, x + t0 * kLanes, ldx, n, y + t0 * ldy, ldy);
}

template <typename W>
void product_rows_avx2(const W* w, const float* scale, int64_t n, const float* x, int64_t m, float* y, int64_t ldy,
                       int64_t begin, int64_t end) {
  int64_t r = begin;
  for (; r + 4 <= end; r += 4) rows_by_x_avx2<4>(w + r * n, scale ? scale + r : nullptr, n, x, m, y + r, ldy);
  for (; r < end; ++r) rows_by_x_avx2<1>(w + r * n, scale ? scale + r : nullptr, n, x, m, y + r, ldy);
}
#endif

// y[:, begin:end] = x @ w[begin:end]^T (times the rows' scales, if any), for w (rows, n) row-major,
// x interleaved (m rows), y with row stride ldy.
template <typename W>
void product_rows(const W* w, const float* scale, int64_t n, const float* x, int64_t m, float* y, int64_t ldy,
                  int64_t begin, int64_t end) {
#if defined(__AVX512BF16__)
  if constexpr (std::is_same_v<W, at::BFloat16>) {
    if (n % kPair == 0) return product_rows_bf16(w, n, x, m, y, ldy, begin, end);
  }
#endif
#if defined(__AVX2__) && !defined(__AVX512F__)
  if (m == 1) return product_one_x_avx2(w, scale, n, x, y, begin, end);
  return product_rows_avx2(w, scale, n, x, m, y, ldy, begin, end);
#endif
  int64_t r = begin;
  const float* s = scale ? scale + r : nullptr;
  // Few sums per row: four weight rows at a time keep more loads in flight; eight for int8 and
  // bf16, whose rows are a quarter and half the bytes (bf16 decode: 54 -> 43 ms a token).
  constexpr int kWide = sizeof(W) < 4 ? 8 : 4;
  if (m <= 2) {
    for (; r + kWide <= end; r += kWide, s = s ? s + kWide : s)
      rows_by_all_of_x<kWide>(w + r * n, n, s, x, m, n, y + r, ldy);
  } else if (m <= 4) {  // an expert's share of a question's tokens: 4 x 4 sums still fit the registers
    for (; r + 4 <= end; r += 4, s = s ? s + 4 : s) rows_by_all_of_x<4>(w + r * n, n, s, x, m, n, y + r, ldy);
  } else {
    for (; r + 2 <= end; r += 2, s = s ? s + 2 : s) rows_by_all_of_x<2>(w + r * n, n, s, x, m, n, y + r, ldy);
  }
  for (; r < end; ++r, s = s ? s + 1 : s) rows_by_all_of_x<1>(w + r * n, n, s, x, m, n, y + r, ldy);
}

// Rows 4 KB apart would all fall into the same few L1 cache sets; interleaving them by 16-float
// chunk lets the kernel read x sequentially.
torch::Tensor interleave(const torch::Tensor& x2) {
  const int64_t m = x2.size(0), n = x2.size(1);
  if (m == 1) return x2.contiguous();
  return x2.reshape({m, n / kLanes, kLanes}).transpose(0, 1).contiguous();
}

void check_fp32_matrix(const torch::Tensor& t, const char* name) {
  TORCH_CHECK(t.device().is_cpu() && t.scalar_type() == torch::kFloat32, name, " must be an fp32 CPU tensor");
  TORCH_CHECK(t.is_contiguous(), name, " must be contiguous");
}


template <typename W>
const W* weights_of(const torch::Tensor& w) {
  return reinterpret_cast<const W*>(w.data_ptr());
}

// Calls f with the weights' element type: fp32, bf16 or int8.
template <typename F>
void by_weight_type(const torch::Tensor& w, F f) {
  switch (w.scalar_type()) {
    case torch::kFloat32: f(float{}); break;
    case torch::kBFloat16: f(at::BFloat16{}); break;
    case torch::kInt8: f(int8_t{}); break;
    default: TORCH_CHECK(false, "weights must be fp32, bf16 or int8");
  }
}

void check_weights(const torch::Tensor& w, const torch::Tensor& scale, const char* name) {
  TORCH_CHECK(w.device().is_cpu() && w.is_contiguous(), name, " must be a contiguous CPU tensor");
  if (w.scalar_type() == torch::kInt8) {
    TORCH_CHECK(scale.numel() * w.size(-1) == w.numel() && scale.scalar_type() == torch::kFloat32 &&
                    scale.is_contiguous(),
                "int8 ", name, " need one fp32 scale per row");
  } else {
    TORCH_CHECK(scale.numel() == 0, name, " in fp32 or bf16 take no scales");
  }
}

const float* scales_of(const torch::Tensor& scale) {
  return scale.numel() ? scale.data_ptr<float>() : nullptr;
}

}  // namespace

namespace {

// 16 floats rounded to bf16 (to nearest, ties to even, as torch rounds), stored at `out`.
inline void store_bf16_lanes(at::BFloat16* out, vf v) {
  vu32 bits;
  std::memcpy(&bits, &v, sizeof(bits));
  const vu32 rounded = (bits + 0x7FFFu + ((bits >> 16) & 1u)) >> 16;
  const vu32 result = v != v ? vu32{} + 0x7FC0u : rounded;  // NaN stays NaN
  typedef uint16_t vu16_out __attribute__((vector_size(32)));
  const vu16_out narrow = __builtin_convertvector(result, vu16_out);
  std::memcpy(out, &narrow, sizeof(narrow));
}

inline void store_lanes(float* out, vf v) { std::memcpy(out, &v, sizeof(v)); }
inline void store_lanes(at::BFloat16* out, vf v) { store_bf16_lanes(out, v); }

// One row as transformers' RMSNorm computes it: in fp32, x * rsqrt(mean(x^2) + eps), rounded to
// the row's dtype, times the weight (a product in that dtype).
template <typename T>
void rms_norm_row(const T* x, const T* weight, int64_t n, float eps, T* out, std::vector<float>& normed) {
  vf squares = vf{};
  for (int64_t i = 0; i < n; i += kLanes) {
    const vf v = load(x + i);
    squares += v * v;
  }
  const float inv = 1.0f / std::sqrt(horizontal_sum(squares) / static_cast<float>(n) + eps);
  for (int64_t i = 0; i < n; i += kLanes) store_lanes(normed.data() + i, load(x + i) * inv);
  if constexpr (std::is_same_v<T, at::BFloat16>) {  // the rounding to bf16 before the weight
    for (int64_t i = 0; i < n; i += kLanes) store_bf16_lanes(out + i, load(normed.data() + i));
    for (int64_t i = 0; i < n; i += kLanes) store_lanes(out + i, load(weight + i) * load(out + i));
  } else {
    for (int64_t i = 0; i < n; i += kLanes) store_lanes(out + i, load(weight + i) * load(normed.data() + i));
  }
}

}  // namespace

namespace {

inline vf rounded_like(vf v, float) { return v; }
inline vf rounded_like(vf v, at::BFloat16) {  // v rounded to bf16 and back, as a bf16 product is
  at::BFloat16 lanes[kLanes];
  store_bf16_lanes(lanes, v);
  return load(lanes);
}

// Rotary positions, rotate-half layout, on the first `count` heads of one position's row (dim
// values each), as transformers computes them in the row's dtype: x * cos + rotate_half(x) * sin,
// each product rounded to the dtype, then their sum.
template <typename T>
void rotate_row(T* row, int64_t count, int64_t dim, const T* cos, const T* sin) {
  const int64_t half = dim / 2;
  std::vector<T> original(dim);
  for (int64_t h = 0; h < count; ++h) {
    T* v = row + h * dim;
    std::memcpy(original.data(), v, dim * sizeof(T));
    for (int64_t i = 0; i < dim; i += kLanes) {
      const vf x = load(original.data() + i);
      const vf partner = i < half ? vf{} - load(original.data() + half + i) : load(original.data() + i - half);
      const vf a = rounded_like(x * load(cos + i), T{}), b = rounded_like(partner * load(sin + i), T{});
      store_lanes(v + i, a + b);
    }
  }
}

}  // namespace

// Rotary positions in place on the first `count` heads of states (n, heads, dim), fp32 or bf16,
// with cos and sin (n, dim) of the same dtype; dim a multiple of 32. One pass instead of torch's
// five operators per tensor.
void rotate_heads(torch::Tensor states, const torch::Tensor& cos, const torch::Tensor& sin, int64_t count) {
  TORCH_CHECK(states.device().is_cpu() && states.is_contiguous() && states.dim() == 3, "states (n, heads, dim)");
  const int64_t n = states.size(0), heads = states.size(1), dim = states.size(2);
  TORCH_CHECK(count >= 0 && count <= heads && dim % (2 * kLanes) == 0, "bad head count or dim");
  TORCH_CHECK(cos.is_contiguous() && sin.is_contiguous() && cos.numel() == n * dim && sin.numel() == n * dim,
              "cos and sin must be (n, dim)");
  TORCH_CHECK(cos.scalar_type() == states.scalar_type() && sin.scalar_type() == states.scalar_type(), "dtypes");
  auto run = [&](auto kind) {
    using T = decltype(kind);
    T* sp = reinterpret_cast<T*>(states.data_ptr());
    const T* cp = reinterpret_cast<const T*>(cos.data_ptr());
    const T* np = reinterpret_cast<const T*>(sin.data_ptr());
    at::parallel_for(0, n, 16, [&](int64_t b, int64_t e) {
      for (int64_t r = b; r < e; ++r) rotate_row(sp + r * heads * dim, count, dim, cp + r * dim, np + r * dim);
    });
  };
  if (states.scalar_type() == torch::kFloat32) {
    run(float{});
  } else {
    TORCH_CHECK(states.scalar_type() == torch::kBFloat16, "states must be fp32 or bf16");
    run(at::BFloat16{});
  }
}

// RMSNorm of each row of x (..., n), fp32 or bf16, by `weight` (n,) of the same dtype; n a
// multiple of 16. One pass per row instead of torch's six operators (a 1K-token prefill's norms:
// 165 -> ? ms).
torch::Tensor rms_norm_rows(const torch::Tensor& x, const torch::Tensor& weight, double eps) {
  TORCH_CHECK(x.device().is_cpu() && x.is_contiguous() && weight.is_contiguous(), "contiguous CPU tensors");
  TORCH_CHECK(x.scalar_type() == weight.scalar_type(), "x and weight must share a dtype");
  const int64_t n = x.size(-1), rows = x.numel() / std::max<int64_t>(n, 1);
  TORCH_CHECK(weight.numel() == n && n % kLanes == 0, "the row size must match the weight, a multiple of 16");
  auto out = torch::empty_like(x);
  auto run = [&](auto kind) {
    using T = decltype(kind);
    const T* xp = reinterpret_cast<const T*>(x.data_ptr());
    const T* wp = reinterpret_cast<const T*>(weight.data_ptr());
    T* op = reinterpret_cast<T*>(out.data_ptr());
    at::parallel_for(0, rows, 16, [&](int64_t b, int64_t e) {
      std::vector<float> normed(n);
      for (int64_t r = b; r < e; ++r) rms_norm_row(xp + r * n, wp, n, static_cast<float>(eps), op + r * n, normed);
    });
  };
  if (x.scalar_type() == torch::kFloat32) {
    run(float{});
  } else {
    TORCH_CHECK(x.scalar_type() == torch::kBFloat16, "x must be fp32 or bf16");
    run(at::BFloat16{});
  }
  return out;
}

// x (..., n) fp32 @ w (rows, n)^T -> (..., rows) fp32; w fp32, bf16, or int8 with `scale` (rows,)
// fp32 (empty otherwise). n must be a multiple of 16.
torch::Tensor small_linear(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& scale) {
  check_weights(w, scale, "weights");
  TORCH_CHECK(w.dim() == 2 && x.size(-1) == w.size(1), "shapes do not match");
  TORCH_CHECK(x.scalar_type() == torch::kFloat32, "states must be fp32");
  const int64_t n = w.size(1), rows = w.size(0);
  TORCH_CHECK(n % kLanes == 0, "the inner size must be a multiple of 16");
  auto x2 = x.reshape({-1, n});
  const int64_t m = x2.size(0);
  auto xs = interleave(x2);
  auto y = torch::empty({m, rows}, x.options());
  const float* xp = xs.data_ptr<float>();
  const float* sp = scales_of(scale);
  float* yp = y.data_ptr<float>();
  by_weight_type(w, [&](auto kind) {
    using W = decltype(kind);
    const W* wp = weights_of<W>(w);
    at::parallel_for(0, rows, kGrain, [&](int64_t b, int64_t e) { product_rows(wp, sp, n, xp, m, yp, rows, b, e); });
  });
  auto sizes = x.sizes().vec();
  sizes.back() = rows;
  return y.view(sizes);
}

namespace {

// y (rows,) = w (rows, n) @ x (n,), times the rows' scales if any; both threads share the rows.
template <typename W>
void product_one_row(const W* w, const float* scale, int64_t rows, int64_t n, const float* x, float* y) {
  at::parallel_for(0, rows, kGrain, [&](int64_t b, int64_t e) { product_rows(w, scale, n, x, 1, y, rows, b, e); });
}

// out (hidden,) = sum_s weights[s] * down[e_s] @ (silu(g) * u), [g, u] = gate_up[e_s] @ x, for the
// k chosen experts e_s. mid (k, 2 * inner) and act (k, inner) are scratch.
template <typename W>
void experts_one_token(const W* gu, const float* gus, const W* dn, const float* dns, const int64_t* ep,
                       const float* sp, int64_t k, int64_t hidden, int64_t inner, const float* x, float* mid,
                       float* act, float* out) {
  const int64_t inner2 = 2 * inner;
  // All k experts' gate/up rows form one parallel loop, so both threads stay busy throughout.
  at::parallel_for(0, k * inner2, kGrain, [&](int64_t b, int64_t e) {
    while (b < e) {
      const int64_t s = b / inner2, r0 = b % inner2, r1 = std::min(inner2, r0 + (e - b));
      const float* rs = gus ? gus + ep[s] * inner2 : nullptr;
      product_rows(gu + ep[s] * inner2 * hidden, rs, hidden, x, 1, mid + s * inner2, inner2, r0, r1);
      b += r1 - r0;
    }
  });
  for (int64_t s = 0; s < k; ++s) {
    for (int64_t i = 0; i < inner; ++i) {
      const float g = mid[s * inner2 + i];
      act[s * inner + i] = g / (1.0f + std::exp(-g)) * mid[s * inner2 + inner + i];
    }
  }
  at::parallel_for(0, hidden, kGrain, [&](int64_t b, int64_t e) {
    std::vector<float> part(e - b);
    std::fill(out + b, out + e, 0.0f);
    for (int64_t s = 0; s < k; ++s) {
      const float* rs = dns ? dns + ep[s] * hidden + b : nullptr;
      product_rows(dn + (ep[s] * hidden + b) * inner, rs, inner, act + s * inner, 1, part.data(), 0, 0, e - b);
      for (int64_t h = b; h < e; ++h) out[h] += sp[s] * part[h - b];
    }
  });
}

// As transformers computes it in fp32: x * rsqrt(mean(x^2) + eps) * weight.
void rms_norm(const float* x, const float* weight, int64_t n, double eps, float* out) {
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) sum += static_cast<double>(x[i]) * x[i];
  const float inv = 1.0f / std::sqrt(static_cast<float>(sum / n) + static_cast<float>(eps));
  for (int64_t i = 0; i < n; ++i) out[i] = weight[i] * (x[i] * inv);
}

// Rotary positions, rotate-half layout, on `count` heads of `dim` values in place.
void rotate(float* heads, int64_t count, int64_t dim, const float* cos, const float* sin) {
  const int64_t half = dim / 2;
  std::vector<float> rotated(dim);
  for (int64_t h = 0; h < count; ++h) {
    float* v = heads + h * dim;
    for (int64_t i = 0; i < half; ++i) {
      rotated[i] = -v[half + i];
      rotated[half + i] = v[i];
    }
    for (int64_t i = 0; i < dim; ++i) v[i] = v[i] * cos[i] + rotated[i] * sin[i];
  }
}

// exp(x) for x <= 0 (softmax after subtracting the maximum), 16 lanes at a time: 2^n * exp(r)
// with r = x - n ln 2 in [-ln 2 / 2, ln 2 / 2] and a degree-6 polynomial (relative error ~2e-7).
// std::exp one value at a time would cost a decode step milliseconds at long contexts.
inline vf exp_nonpositive(vf x) {
  const vf floor_value = vf{} - 87.0f;
  x = x < floor_value ? floor_value : x;  // below: the result underflows to 0 anyway
  const vf magic = vf{} + 12582912.0f;   // 1.5 * 2^23: adding it rounds to the nearest integer
  const vf n = (x * 1.44269504088896341f + magic) - magic;
  const vf r = (x - n * 0.693359375f) - n * -2.12194440e-4f;  // ln 2 in two parts, for accuracy
  vf p = vf{} + 1.0f / 720;
  p = p * r + 1.0f / 120;
  p = p * r + 1.0f / 24;
  p = p * r + 1.0f / 6;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const vi32 bits = (__builtin_convertvector(n, vi32) + 127) << 23;
  vf scale;
  std::memcpy(&scale, &bits, sizeof(vf));
  return p * scale;
}

inline void store(float* p, vf v) { std::memcpy(p, &v, sizeof(vf)); }

// Vectors of the machine's own width for loops that keep several alive: on an AVX2-only CPU,
// GCC keeps 16-float vectors in memory rather than in pairs of registers (decode attention over
// 1K cached tokens: 0.8 ms a layer against 0.33 on AVX-512).
#if defined(__AVX2__) && !defined(__AVX512F__)
typedef vf8 vnative;
constexpr int64_t kNative = 8;
template <typename T>
inline vnative load_native(const T* p) {
  const __m256 wide = load8(p);
  vnative out;
  std::memcpy(&out, &wide, sizeof(out));
  return out;
}
inline float sum_native(vnative v) {
  __m256 wide;
  std::memcpy(&wide, &v, sizeof(wide));
  return sum8(wide);
}
#else
typedef vf vnative;
constexpr int64_t kNative = kLanes;
template <typename T>
inline vnative load_native(const T* p) {
  return load(p);
}
inline float sum_native(vnative v) { return horizontal_sum(v); }
#endif
inline void store_native(float* p, vnative v) { std::memcpy(p, &v, sizeof(v)); }

// One decode token's attention: query heads (heads, dim) over keys/values (kv_heads, capacity, dim)
// positions 0..length-1, the cache fp32 or bf16; the query heads that share a key/value head read
// its keys once. dim is a multiple of 16.
template <typename K>
void attend_one_token(const float* q, const K* keys, const K* values, int64_t heads, int64_t kv_heads,
                      int64_t capacity, int64_t length, int64_t dim, float scaling, float* out) {
  const int64_t groups = heads / kv_heads, padded = (length + kLanes - 1) / kLanes * kLanes;
  at::parallel_for(0, kv_heads, 1, [&](int64_t b, int64_t e) {
    std::vector<float> scores(groups * padded);
    for (int64_t j = b; j < e; ++j) {
      const K* k = keys + j * capacity * dim;
      const K* v = values + j * capacity * dim;
      for (int64_t t = 0; t < length; ++t) {
        for (int64_t g = 0; g < groups; ++g) {
          const float* qh = q + (j * groups + g) * dim;
          vnative sum{};
          for (int64_t i = 0; i < dim; i += kNative) sum += load_native(qh + i) * load_native(k + t * dim + i);
          scores[g * padded + t] = sum_native(sum) * scaling;
        }
      }
      for (int64_t g = 0; g < groups; ++g) {
        float* sc = scores.data() + g * padded;
        const float top = *std::max_element(sc, sc + length);
        std::fill(sc + length, sc + padded, -1e30f);  // padding lanes: exp gives 0
        vf total{};
        for (int64_t t = 0; t < padded; t += kLanes) {
          const vf p = exp_nonpositive(load(sc + t) - top);
          store(sc + t, p);
          total += p;
        }
        const float inv = 1.0f / horizontal_sum(total);
        float* o = out + (j * groups + g) * dim;
        std::fill(o, o + dim, 0.0f);
        for (int64_t t = 0; t < length; ++t) {
          const float p = sc[t] * inv;
          for (int64_t i = 0; i < dim; i += kNative)
            store_native(o + i, load_native(o + i) + p * load_native(v + t * dim + i));
        }
      }
    }
  });
}

// The k largest router logits (ties: the lower index, as torch.topk on the CPU) and their softmax.
void route(const float* logits, int64_t experts, int64_t k, int64_t* chosen, float* weights) {
  std::vector<int64_t> order(experts);
  for (int64_t e = 0; e < experts; ++e) order[e] = e;
  std::partial_sort(order.begin(), order.begin() + k, order.end(), [&](int64_t a, int64_t b) {
    return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
  });
  const float top = logits[order[0]];
  float total = 0.0f;
  for (int64_t s = 0; s < k; ++s) {
    chosen[s] = order[s];
    total += (weights[s] = std::exp(logits[order[s]] - top));
  }
  for (int64_t s = 0; s < k; ++s) weights[s] /= total;
}

void check_same_weight_type(const torch::Tensor& a, const torch::Tensor& b) {
  TORCH_CHECK(a.scalar_type() == b.scalar_type(), "the matrices of one layer must have one weight type");
}

}  // namespace

// One token through its k GraniteMoE experts, in one call:
//   out = sum_s weights[s] * down[e_s] @ (silu(g) * u),  [g, u] = gate_up[e_s] @ x.
// gate_up (experts, 2 * inner, hidden), down (experts, hidden, inner), both fp32, both bf16, or
// both int8 with their scales (experts, 2 * inner) and (experts, hidden) (empty otherwise);
// x (1, hidden) fp32, experts (k,) int64, weights (k,).
torch::Tensor moe_one_token(const torch::Tensor& x, const torch::Tensor& gate_up, const torch::Tensor& gate_up_scale,
                            const torch::Tensor& down, const torch::Tensor& down_scale, const torch::Tensor& experts,
                            const torch::Tensor& weights) {
  check_weights(gate_up, gate_up_scale, "gate_up");
  check_weights(down, down_scale, "down");
  check_same_weight_type(gate_up, down);
  check_fp32_matrix(x, "x");
  const int64_t hidden = gate_up.size(2), inner = gate_up.size(1) / 2;
  TORCH_CHECK(x.numel() == hidden && down.size(1) == hidden && down.size(2) == inner, "shapes do not match");
  TORCH_CHECK(hidden % kLanes == 0 && inner % kLanes == 0, "sizes must be multiples of 16");
  auto chosen = experts.to(torch::kInt64).contiguous();
  auto scale = weights.to(torch::kFloat32).contiguous();
  const int64_t k = chosen.numel();
  const int64_t* ep = chosen.data_ptr<int64_t>();
  for (int64_t s = 0; s < k; ++s) TORCH_CHECK(ep[s] >= 0 && ep[s] < gate_up.size(0), "expert index out of range");
  auto mid = torch::empty({k, 2 * inner}, x.options());
  auto act = torch::empty({k, inner}, x.options());
  auto out = torch::empty({1, hidden}, x.options());
  by_weight_type(gate_up, [&](auto kind) {
    using W = decltype(kind);
    experts_one_token(weights_of<W>(gate_up), scales_of(gate_up_scale), weights_of<W>(down), scales_of(down_scale), ep,
                      scale.data_ptr<float>(), k, hidden, inner, x.data_ptr<float>(), mid.data_ptr<float>(),
                      act.data_ptr<float>(), out.data_ptr<float>());
  });
  return out;
}

// A handful of tokens (a question on a cached document) through their experts, in one call:
// out[t] = sum_s weights[t, s] * expert_{index[t, s]}(x[t]). Each expert used gathers its tokens
// and multiplies them in one pass over its weights (the weights are read once, whatever the
// number of tokens), so the cost is the weight streaming of the experts used, without the
// per-expert Python and operator overhead of the batched path. x (n, hidden) fp32; index,
// weights (n, k); weights as in moe_one_token.
torch::Tensor moe_few_tokens(const torch::Tensor& x, const torch::Tensor& gate_up, const torch::Tensor& gate_up_scale,
                             const torch::Tensor& down, const torch::Tensor& down_scale, const torch::Tensor& index,
                             const torch::Tensor& weights) {
  check_weights(gate_up, gate_up_scale, "gate_up");
  check_weights(down, down_scale, "down");
  check_same_weight_type(gate_up, down);
  check_fp32_matrix(x, "x");
  const int64_t n = x.size(0), hidden = gate_up.size(2), inner = gate_up.size(1) / 2, experts = gate_up.size(0);
  TORCH_CHECK(x.dim() == 2 && x.size(1) == hidden && down.size(1) == hidden && down.size(2) == inner, "shapes");
  TORCH_CHECK(hidden % kLanes == 0 && inner % kLanes == 0, "sizes must be multiples of 16");
  auto chosen = index.to(torch::kInt64).contiguous();
  auto scale = weights.to(torch::kFloat32).contiguous();
  TORCH_CHECK(chosen.dim() == 2 && chosen.size(0) == n && scale.sizes() == chosen.sizes(), "index and weights");
  const int64_t k = chosen.size(1);
  const int64_t* ep = chosen.data_ptr<int64_t>();
  const float* sp = scale.data_ptr<float>();
  for (int64_t i = 0; i < n * k; ++i) TORCH_CHECK(ep[i] >= 0 && ep[i] < experts, "expert index out of range");
  std::vector<std::vector<int64_t>> slots(experts);  // per expert: the (token * k + slot) that chose it
  for (int64_t i = 0; i < n * k; ++i) slots[ep[i]].push_back(i);
  // The threads take whole experts (one parallel region per layer, and each thread streams its
  // experts' weights front to back) and add into outputs of their own, summed at the end.
  const int64_t threads = at::get_num_threads();
  std::vector<float> partial(threads * n * hidden, 0.0f);
  const float* xp = x.data_ptr<float>();
  by_weight_type(gate_up, [&](auto kind) {
    using W = decltype(kind);
    const W* gu = weights_of<W>(gate_up);
    const W* dn = weights_of<W>(down);
    const float* gus = scales_of(gate_up_scale);
    const float* dns = scales_of(down_scale);
    at::parallel_for(0, experts, 1, [&](int64_t b, int64_t f) {
      float* acc = partial.data() + at::get_thread_num() * n * hidden;
      std::vector<float> rows, mid, act, part;
      for (int64_t e = b; e < f; ++e) {
        const int64_t m = static_cast<int64_t>(slots[e].size());
        if (m == 0) continue;
        rows.assign(m * hidden, 0.0f);  // interleaved by 16-float chunk, as product_rows reads them
        for (int64_t r = 0; r < m; ++r) {
          const float* source = xp + (slots[e][r] / k) * hidden;
          for (int64_t c = 0; c < hidden / kLanes; ++c)
            std::memcpy(rows.data() + (c * m + r) * kLanes, source + c * kLanes, kLanes * sizeof(float));
        }
        mid.resize(m * 2 * inner);
        product_rows(gu + e * 2 * inner * hidden, gus ? gus + e * 2 * inner : nullptr, hidden, rows.data(), m,
                     mid.data(), 2 * inner, 0, 2 * inner);
        act.resize(m * inner);
        for (int64_t r = 0; r < m; ++r) {
          for (int64_t i = 0; i < inner; ++i) {
            const float g = mid[r * 2 * inner + i];
            const float value = g / (1.0f + std::exp(-g)) * mid[r * 2 * inner + inner + i];
            act[((i / kLanes) * m + r) * kLanes + i % kLanes] = value;  // interleaved for the next product
          }
        }
        part.resize(m * hidden);
        product_rows(dn + e * hidden * inner, dns ? dns + e * hidden : nullptr, inner, act.data(), m, part.data(),
                     hidden, 0, hidden);
        for (int64_t r = 0; r < m; ++r) {
          float* target = acc + (slots[e][r] / k) * hidden;
          const float w = sp[slots[e][r]];
          for (int64_t h = 0; h < hidden; ++h) target[h] += w * part[r * hidden + h];
        }
      }
    });
  });
  auto out = torch::zeros({n, hidden}, x.options());
  float* op = out.data_ptr<float>();
  for (int64_t t = 0; t < threads; ++t)
    for (int64_t i = 0; i < n * hidden; ++i) op[i] += partial[t * n * hidden + i];
  return out;
}

namespace {

#if defined(__AVX512BF16__)
#define GRANITE_PACKED_EXPERTS 1
// Experts in bf16 on a CPU with AVX512-BF16 (vdpbf16ps), AMX tiles where it has them too (Intel's
// matrix tiles, Sapphire Rapids onwards). oneDNN runs such products fast, but each call rearranges
// the weight first and the elementwise steps between an expert's two products are separate torch
// operators: a 1K-token prefill spent half its time outside the products. Here every expert's
// weights are rearranged once, at load, into the layout both the AMX tiles and the vdpbf16ps
// loops read (`pack_experts` in model/native.py), and a layer's experts run in one call for any
// number of tokens. The layout also streams at the memory's speed where row-major weights do not:
// a block is read front to back, one stream, where a few rows at a time are several streams
// (one row by bf16 weights on a 2-core AMD EPYC: 28-42 GB/s packed, as fast as a plain sum over
// the same bytes, against 19-26 GB/s for eight row-major rows at a time).
//
// Packed layout of a (rows, n) weight: blocks of 16 rows; in a block, for each pair of columns p,
// the 32 values w[row][2p], w[row][2p + 1] for its 16 rows: (rows / 16, n / 2, 32). 16 pairs of a
// block are one AMX B tile (16 x 64 bytes, VNNI order); one pair of a block is one vdpbf16ps
// operand, its 16 sums being 16 outputs.

constexpr int64_t kBlock = 16;     // weight rows per block, outputs per AMX tile column
constexpr int64_t kTileK = 32;     // bf16 values of a row per AMX tile
constexpr int64_t kDotRows = 4;    // up to this many rows of x: vdpbf16ps; more: AMX tiles, or 4 rows at a time

#if defined(GRANITE_AMX)
// c (rows of a, n_out) fp32 = a (rows, k) bf16 @ w^T, w packed (n_out / 16 blocks), a in the
// tiles' blocked layout (`blocked`); rows a multiple of 16, n_out of 32. Two weight blocks (32
// outputs) by two blocks of rows at a time: four sum tiles, each tile loaded serving two products
// (tiles 0-3 the sums, 4-5 rows of a, 6-7 weights).
// (Splitting k into chunks, so a weight block's tiles stay in the L1 cache across the rows, was
// slower here: the sums must then be stored and loaded back between chunks.)
template <bool kTwoRowBlocks>
inline void amx_step(const at::BFloat16* a0, int64_t a_block, const at::BFloat16* w0, const at::BFloat16* w1,
                     int64_t steps, float* c0, int64_t ldc, const at::BFloat16* ahead, int64_t block) {
  const int64_t c_stride = ldc * 4;
  _tile_zero(0);
  _tile_zero(1);
  if (kTwoRowBlocks) {
    _tile_zero(2);
    _tile_zero(3);
  }
  const at::BFloat16* a1 = a0 + a_block;  // the next block of rows
  for (int64_t kb = 0; kb < steps; ++kb) {
    if (ahead) {  // this step's tiles of the next two weight blocks, from memory into L2
      const char* next0 = reinterpret_cast<const char*>(ahead + kb * kBlock * 32);
      const char* next1 = reinterpret_cast<const char*>(ahead + block + kb * kBlock * 32);
      for (int64_t line = 0; line < kBlock * 64; line += 64) {
        _mm_prefetch(next0 + line, _MM_HINT_T1);
        _mm_prefetch(next1 + line, _MM_HINT_T1);
      }
    }
    _tile_loadd(4, a0 + kb * kBlock * kTileK, 64);
    _tile_loadd(6, w0 + kb * kBlock * 32, 64);
    _tile_loadd(7, w1 + kb * kBlock * 32, 64);
    _tile_dpbf16ps(0, 4, 6);
    _tile_dpbf16ps(1, 4, 7);
    if (kTwoRowBlocks) {
      _tile_loadd(5, a1 + kb * kBlock * kTileK, 64);
      _tile_dpbf16ps(2, 5, 6);
      _tile_dpbf16ps(3, 5, 7);
    }
  }
  _tile_stored(0, c0, c_stride);
  _tile_stored(1, c0 + kBlock, c_stride);
  if (kTwoRowBlocks) {
    _tile_stored(2, c0 + kBlock * ldc, c_stride);
    _tile_stored(3, c0 + kBlock * ldc + kBlock, c_stride);
  }
}

void amx_product(const at::BFloat16* a, int64_t rows, int64_t k, const at::BFloat16* w, int64_t n_out, float* c,
                 int64_t ldc) {
  const int64_t a_block = kBlock * k, block = k / 2 * 32, row_blocks = rows / kBlock, steps = k / kTileK;
  for (int64_t nb = 0; nb < n_out / kBlock; nb += 2) {
    const at::BFloat16* w0 = w + nb * block;
    const at::BFloat16* w1 = w0 + block;
    // The first pass over a weight block reads it from memory: meanwhile the next pair's are
    // fetched (about 6% faster), so later passes find them in cache.
    const at::BFloat16* ahead = nb + 2 < n_out / kBlock ? w1 + block : nullptr;
    int64_t mb = 0;
    for (; mb + 2 <= row_blocks; mb += 2)
      amx_step<true>(a + mb * a_block, a_block, w0, w1, steps, c + mb * kBlock * ldc + nb * kBlock, ldc,
                     mb == 0 ? ahead : nullptr, block);
    if (mb < row_blocks)  // an odd last block of rows
      amx_step<false>(a + mb * a_block, a_block, w0, w1, steps, c + mb * kBlock * ldc + nb * kBlock, ldc,
                      mb == 0 ? ahead : nullptr, block);
  }
}

#endif

constexpr int64_t kDotAhead = 32;  // weight lines fetched ahead in each of the four streams

// Rows t of a (t < T, in a's blocked layout from `x`) times four weight blocks from `wb` (blocks
// `block` values apart): each weight pair vector times each row's pair (broadcast), four streams,
// independent sums; the 4 x 16 sums of row t stored at c + t * ldc.
template <int T>
inline void dot_group(const uint32_t* x, int64_t pairs, const at::BFloat16* wb, int64_t block, float* c,
                      int64_t ldc) {
  __m512 sums[4][T];
#pragma GCC unroll 4
  for (int b = 0; b < 4; ++b)
#pragma GCC unroll 4
    for (int t = 0; t < T; ++t) sums[b][t] = _mm512_setzero_ps();
  for (int64_t p = 0; p < pairs; ++p) {
    __m512bh weights[4];
#pragma GCC unroll 4
    for (int b = 0; b < 4; ++b) {
      weights[b] = (__m512bh)_mm512_loadu_si512(wb + b * block + p * 32);
      _mm_prefetch(reinterpret_cast<const char*>(wb + b * block + (p + kDotAhead) * 32), _MM_HINT_T0);
    }
#pragma GCC unroll 4
    for (int t = 0; t < T; ++t) {
      const __m512bh xv = (__m512bh)_mm512_set1_epi32(static_cast<int>(x[((p / 16) * kBlock + t) * 16 + p % 16]));
#pragma GCC unroll 4
      for (int b = 0; b < 4; ++b) sums[b][t] = _mm512_dpbf16_ps(sums[b][t], weights[b], xv);
    }
  }
#pragma GCC unroll 4
  for (int b = 0; b < 4; ++b)
#pragma GCC unroll 4
    for (int t = 0; t < T; ++t) _mm512_storeu_ps(c + t * ldc + b * kBlock, sums[b][t]);
}

// c (m, n_out) = a (m rows, blocked) @ w^T with vdpbf16ps, for any m: up to kDotRows rows (decode,
// a question) stream every weight once; more, where there are no AMX tiles, go four rows at a time
// against four weight blocks (16 sums), all the rows against one group of blocks before the next
// group, so a group (4 x 32 KB for 1,024 columns) is read from memory once and from the L2 cache
// by the other rows.
void dot_rows_product(const at::BFloat16* a, int64_t m, int64_t k, const at::BFloat16* w, int64_t n_out, float* c,
                      int64_t ldc) {
  const int64_t pairs = k / 2, block = pairs * 32, a_block = kBlock * k;
  for (int64_t nb = 0; nb < n_out / kBlock; nb += 4) {
    for (int64_t r = 0; r < m; r += kDotRows) {
      // rows r.. of block r / 16 start at row r % 16 of its pairs (see `blocked`)
      const uint32_t* x = reinterpret_cast<const uint32_t*>(a + (r / kBlock) * a_block + (r % kBlock) * kTileK);
      float* cr = c + r * ldc + nb * kBlock;
      const at::BFloat16* wb = w + nb * block;
      switch (std::min<int64_t>(kDotRows, m - r)) {
        case 1: dot_group<1>(x, pairs, wb, block, cr, ldc); break;
        case 2: dot_group<2>(x, pairs, wb, block, cr, ldc); break;
        case 3: dot_group<3>(x, pairs, wb, block, cr, ldc); break;
        default: dot_group<4>(x, pairs, wb, block, cr, ldc); break;
      }
    }
  }
}

// c (m, n_out) = a (m rows used of a buffer padded to 16-row blocks) @ w^T, the fastest way for m.
void packed_product(const at::BFloat16* a, int64_t m, int64_t k, const at::BFloat16* w, int64_t n_out, float* c,
                    int64_t ldc) {
#if defined(GRANITE_AMX)
  if (m > kDotRows && granite_amx::permitted())
    return amx_product(a, (m + kBlock - 1) / kBlock * kBlock, k, w, n_out, c, ldc);
#endif
  dot_rows_product(a, m, k, w, n_out, c, ldc);
}

// Where value i of row r of a (rows, k) bf16 matrix is kept: in blocks of 16 rows x 32 values,
// one AMX tile each, 1 KB contiguous (a tile of a plain row-major matrix reads 16 rows 2 KB
// apart, which fall into two sets of the L1 cache and evict each other).
inline int64_t blocked(int64_t r, int64_t i, int64_t k) {
  return ((r / kBlock * (k / kTileK) + i / kTileK) * kBlock + r % kBlock) * kTileK + i % kTileK;
}

// 16 fp32 values rounded to bf16 into `out`.
inline void store_bf16(at::BFloat16* out, __m512 values) {
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(out), (__m256i)_mm512_cvtneps_pbh(values));
}

// out (n, hidden) fp32 = sum over each token's k experts of weight * down (silu(gate) * up), for
// packed bf16 experts; x rounded to bf16 as a bf16 model computes. Threads take whole experts,
// largest first, each adding into an output of its own.
template <typename TX, typename TO>
void moe_packed_into(const TX* x, int64_t n, int64_t hidden, int64_t inner, int64_t experts,
                     const at::BFloat16* gate_up, const at::BFloat16* down, const int64_t* chosen,
                     const float* weights, int64_t k, TO* out) {
  std::vector<std::vector<int64_t>> slots(experts);  // per expert: the (token * k + slot) that chose it
  for (int64_t i = 0; i < n * k; ++i) slots[chosen[i]].push_back(i);
  std::vector<int64_t> order;
  for (int64_t e = 0; e < experts; ++e)
    if (!slots[e].empty()) order.push_back(e);
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return slots[a].size() > slots[b].size(); });
  const int threads = std::max<int>(1, std::min<int64_t>(at::get_num_threads(), order.size()));
  std::vector<float> partial(static_cast<size_t>(threads) * n * hidden, 0.0f);  // fp32 sums per thread
  const int64_t inner2 = 2 * inner, most = slots[order.empty() ? 0 : order[0]].size();
  const int64_t padded_most = (most + kBlock - 1) / kBlock * kBlock;
  const bool tiles = most > kDotRows && amx_available();  // else vdpbf16ps for every row count
#pragma omp parallel num_threads(threads)
  {
    const int thread = omp_get_thread_num();
    float* acc = partial.data() + thread * n * hidden;
    std::vector<at::BFloat16> rows(padded_most * hidden), act(padded_most * inner);
    // Rows of the sums one cache line longer than their values: rows 4 KB apart share the L1
    // cache's sets, and the tiles' 16 rows would evict each other as they are stored.
    const int64_t mid_stride = inner2 + kLanes, part_stride = hidden + kLanes;
    std::vector<float> mid(padded_most * mid_stride), part(padded_most * part_stride);
#if defined(GRANITE_AMX)
    if (tiles) granite_amx::configure_tiles();
#endif
#pragma omp for schedule(dynamic, 1)
    for (size_t o = 0; o < order.size(); ++o) {
      const int64_t e = order[o], m = slots[e].size(), padded = (m + kBlock - 1) / kBlock * kBlock;
      for (int64_t r = 0; r < padded; ++r) {
        const TX* source = x + (slots[e][std::min(r, m - 1)] / k) * hidden;  // padding: any row
        for (int64_t i = 0; i < hidden; i += kLanes) {
          at::BFloat16* target = rows.data() + blocked(r, i, hidden);
          if (r >= m) {
            std::memset(target, 0, kLanes * sizeof(at::BFloat16));
          } else if constexpr (std::is_same_v<TX, float>) {
            store_bf16(target, _mm512_loadu_ps(source + i));
          } else {
            std::memcpy(target, source + i, kLanes * sizeof(at::BFloat16));
          }
        }
      }
      packed_product(rows.data(), m, hidden, gate_up + e * inner2 * hidden, inner2, mid.data(), mid_stride);
      for (int64_t r = 0; r < padded; ++r) {
        for (int64_t i = 0; i < inner; i += kLanes) {
          vf value = vf{};
          if (r < m) {
            const vf g = load(mid.data() + r * mid_stride + i), u = load(mid.data() + r * mid_stride + inner + i);
            const vf negative_abs = g < vf{} ? g : -g;
            const vf e_ = exp_nonpositive(negative_abs);
            value = g * ((g < vf{} ? e_ : vf{} + 1.0f) / (e_ + 1.0f)) * u;  // silu(g) * u
          }
          __m512 v;
          std::memcpy(&v, &value, sizeof(v));
          store_bf16(act.data() + blocked(r, i, inner), v);
        }
      }
      packed_product(act.data(), m, inner, down + e * hidden * inner, hidden, part.data(), part_stride);
      for (int64_t r = 0; r < m; ++r) {
        float* target = acc + (slots[e][r] / k) * hidden;
        const float w = weights[slots[e][r]];
        const float* source = part.data() + r * part_stride;
        for (int64_t h = 0; h < hidden; h += kLanes) store_lanes(target + h, load(target + h) + w * load(source + h));
      }
    }
#if defined(GRANITE_AMX)
    if (tiles) _tile_release();
#endif
    // the threads' outputs summed by all threads (after the loop's barrier)
#pragma omp for schedule(static)
    for (int64_t i = 0; i < n * hidden; i += kLanes) {
      vf sum = load(partial.data() + i);
      for (int t = 1; t < threads; ++t) sum += load(partial.data() + t * n * hidden + i);
      store_lanes(out + i, sum);
    }
  }
}
#endif

}  // namespace


// Whether this build runs packed bf16 experts (moe_packed): AVX512-BF16 dot products, AMX tiles
// where the CPU has them too.
bool packs_experts() {
#if defined(GRANITE_PACKED_EXPERTS)
  return true;
#else
  return false;
#endif
}

// Whether products by bf16 weights round x to bf16 (AVX512-BF16 dot products) rather than
// widening the weights to fp32.
bool rounds_bf16_states() {
#if defined(__AVX512BF16__)
  return true;
#else
  return false;
#endif
}

// x (n, hidden), fp32 or bf16, through each token's chosen experts, packed bf16 (see
// moe_packed_into); the result in x's dtype (a bf16 model needs no conversions around the call):
// gate_up (experts, 2 * inner / 16, hidden / 2, 32), down (experts, hidden / 16, inner / 2, 32).
torch::Tensor moe_packed(const torch::Tensor& x, const torch::Tensor& gate_up, const torch::Tensor& down,
                         const torch::Tensor& index, const torch::Tensor& weights) {
  TORCH_CHECK(packs_experts(), "packed experts need a CPU with AVX512-BF16");
  TORCH_CHECK(x.device().is_cpu() && x.is_contiguous(), "x must be a contiguous CPU tensor");
  TORCH_CHECK(x.scalar_type() == torch::kFloat32 || x.scalar_type() == torch::kBFloat16, "x must be fp32 or bf16");
  TORCH_CHECK(gate_up.dim() == 4 && down.dim() == 4 && gate_up.size(3) == 32 && down.size(3) == 32, "not packed");
  TORCH_CHECK(gate_up.scalar_type() == torch::kBFloat16 && down.scalar_type() == torch::kBFloat16, "bf16 only");
  TORCH_CHECK(gate_up.is_contiguous() && down.is_contiguous(), "packed experts must be contiguous");
  const int64_t n = x.size(0), hidden = gate_up.size(2) * 2, inner = down.size(2) * 2, experts = gate_up.size(0);
  TORCH_CHECK(x.dim() == 2 && x.size(1) == hidden && down.size(0) == experts, "shapes");
  TORCH_CHECK(gate_up.size(1) * 16 == 2 * inner && down.size(1) * 16 == hidden, "shapes");
  TORCH_CHECK(hidden % 64 == 0 && inner % 64 == 0, "sizes must be multiples of 64");
  auto chosen = index.to(torch::kInt64).contiguous();
  auto scale = weights.to(torch::kFloat32).contiguous();
  TORCH_CHECK(chosen.dim() == 2 && chosen.size(0) == n && scale.sizes() == chosen.sizes(), "index and weights");
  const int64_t k = chosen.size(1);
  const int64_t* ep = chosen.data_ptr<int64_t>();
  for (int64_t i = 0; i < n * k; ++i) TORCH_CHECK(ep[i] >= 0 && ep[i] < experts, "expert index out of range");
  auto out = torch::empty({n, hidden}, x.options());
#if defined(GRANITE_PACKED_EXPERTS)
  const at::BFloat16* gu = weights_of<at::BFloat16>(gate_up);
  const at::BFloat16* dn = weights_of<at::BFloat16>(down);
  if (x.scalar_type() == torch::kFloat32) {
    moe_packed_into(x.data_ptr<float>(), n, hidden, inner, experts, gu, dn, ep, scale.data_ptr<float>(), k,
                    out.data_ptr<float>());
  } else {
    moe_packed_into(weights_of<at::BFloat16>(x), n, hidden, inner, experts, gu, dn, ep, scale.data_ptr<float>(), k,
                    reinterpret_cast<at::BFloat16*>(out.data_ptr()));
  }
#endif
  return out;
}

// One whole GraniteMoE decoder layer for one token, in place, with fp32 activations and an fp32
// or bf16 KV cache: everything a decode step does per layer (norms, projections, rotary positions, the
// cache write, attention over the cache, router, experts, residuals) in one call, so a step costs
// the weight streaming and little else. h (hidden,) is updated; this token's key and value are
// written at `position` of kv (2, kv_heads, capacity, head_dim), and attention reads positions
// 0..position. Matrices: fp32, bf16, or int8 with scales (empty otherwise), like small_linear's.
void decode_layer(torch::Tensor h, const torch::Tensor& input_norm, const torch::Tensor& post_norm,
                  const torch::Tensor& qkv, const torch::Tensor& qkv_scale, const torch::Tensor& o,
                  const torch::Tensor& o_scale, const torch::Tensor& router, const torch::Tensor& gate_up,
                  const torch::Tensor& gate_up_scale, const torch::Tensor& down, const torch::Tensor& down_scale,
                  torch::Tensor kv, int64_t position, const torch::Tensor& cos, const torch::Tensor& sin,
                  int64_t heads, int64_t top_k, double eps, double scaling, double residual) {
  check_fp32_matrix(h, "h");
  TORCH_CHECK(kv.is_contiguous() && (kv.scalar_type() == torch::kFloat32 || kv.scalar_type() == torch::kBFloat16),
              "the KV cache must be a contiguous fp32 or bf16 tensor");
  for (const auto* t : {&input_norm, &post_norm, &router, &cos, &sin}) check_fp32_matrix(*t, "norms, router, cos, sin");
  check_weights(qkv, qkv_scale, "qkv");
  check_weights(o, o_scale, "o");
  check_weights(gate_up, gate_up_scale, "gate_up");
  check_weights(down, down_scale, "down");
  check_same_weight_type(gate_up, down);
  const int64_t hidden = h.numel(), kv_heads = kv.size(1), capacity = kv.size(2), dim = kv.size(3);
  const int64_t experts = router.size(0);
  const bool packed = gate_up.dim() == 4;  // packed bf16 experts (moe_packed)
  TORCH_CHECK(!packed || packs_experts(), "packed experts need a CPU with AVX512-BF16");
  const int64_t inner = packed ? down.size(2) * 2 : down.size(2);
  TORCH_CHECK(kv.dim() == 4 && kv.size(0) == 2 && position >= 0 && position < capacity, "bad KV cache or position");
  TORCH_CHECK(qkv.size(0) == (heads + 2 * kv_heads) * dim && qkv.size(1) == hidden, "qkv has the wrong shape");
  TORCH_CHECK(o.size(0) == hidden && o.size(1) == heads * dim && router.size(1) == hidden, "o or router wrong");
  TORCH_CHECK(gate_up.size(0) == experts && (packed ? gate_up.size(2) * 2 : gate_up.size(2)) == hidden &&
                  (packed ? down.size(1) * kLanes : down.size(1)) == hidden,
              "experts wrong");
  TORCH_CHECK(top_k >= 1 && top_k <= experts && heads % kv_heads == 0 && cos.numel() == dim, "bad sizes");
  TORCH_CHECK(hidden % kLanes == 0 && dim % kLanes == 0 && inner % kLanes == 0, "sizes must be multiples of 16");

  float* hp = h.data_ptr<float>();
  std::vector<float> x(hidden), projected((heads + 2 * kv_heads) * dim), attended(heads * dim), branch(hidden);
  std::vector<float> logits(experts), mid(top_k * 2 * inner), act(top_k * inner), weights(top_k);
  std::vector<int64_t> chosen(top_k);

  rms_norm(hp, input_norm.data_ptr<float>(), hidden, eps, x.data());
  by_weight_type(qkv, [&](auto kind) {
    using W = decltype(kind);
    product_one_row(weights_of<W>(qkv), scales_of(qkv_scale), qkv.size(0), hidden, x.data(), projected.data());
  });
  float* q = projected.data();
  float* k = q + heads * dim;
  const float* v = k + kv_heads * dim;
  rotate(q, heads, dim, cos.data_ptr<float>(), sin.data_ptr<float>());
  rotate(k, kv_heads, dim, cos.data_ptr<float>(), sin.data_ptr<float>());
  auto attend = [&](auto kind) {
    using K = decltype(kind);
    K* keys = reinterpret_cast<K*>(kv.data_ptr());
    K* values = keys + kv_heads * capacity * dim;
    for (int64_t j = 0; j < kv_heads; ++j) {
      for (int64_t i = 0; i < dim; ++i) {
        keys[(j * capacity + position) * dim + i] = static_cast<K>(k[j * dim + i]);
        values[(j * capacity + position) * dim + i] = static_cast<K>(v[j * dim + i]);
      }
    }
    attend_one_token(q, keys, values, heads, kv_heads, capacity, position + 1, dim, static_cast<float>(scaling),
                     attended.data());
  };
  if (kv.scalar_type() == torch::kFloat32) {
    attend(float{});
  } else {
    attend(at::BFloat16{});
  }
  by_weight_type(o, [&](auto kind) {
    using W = decltype(kind);
    product_one_row(weights_of<W>(o), scales_of(o_scale), hidden, heads * dim, attended.data(), branch.data());
  });
  for (int64_t i = 0; i < hidden; ++i) hp[i] += branch[i] * static_cast<float>(residual);

  rms_norm(hp, post_norm.data_ptr<float>(), hidden, eps, x.data());
  product_one_row(router.data_ptr<float>(), nullptr, experts, hidden, x.data(), logits.data());
  route(logits.data(), experts, top_k, chosen.data(), weights.data());
  if (gate_up.dim() == 4) {
#if defined(GRANITE_PACKED_EXPERTS)
    moe_packed_into(x.data(), 1, hidden, inner, experts, weights_of<at::BFloat16>(gate_up),
                    weights_of<at::BFloat16>(down), chosen.data(), weights.data(), top_k, branch.data());
#endif
  } else {
    by_weight_type(gate_up, [&](auto kind) {
      using W = decltype(kind);
      experts_one_token(weights_of<W>(gate_up), scales_of(gate_up_scale), weights_of<W>(down), scales_of(down_scale),
                        chosen.data(), weights.data(), top_k, hidden, inner, x.data(), mid.data(), act.data(),
                        branch.data());
    });
  }
  for (int64_t i = 0; i < hidden; ++i) hp[i] += branch[i] * static_cast<float>(residual);
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("small_linear", &small_linear, "x @ w.T for a handful of fp32 rows of x (w fp32, bf16 or int8; CPU)");
  m.def("moe_one_token", &moe_one_token, "one token through its chosen GraniteMoE experts (CPU)");
  m.def("moe_few_tokens", &moe_few_tokens, "a handful of tokens through their GraniteMoE experts (CPU)");
  m.def("rms_norm_rows", &rms_norm_rows, "RMSNorm of each row, fp32 or bf16, as transformers computes it (CPU)");
  m.def("rotate_heads", &rotate_heads, "rotary positions in place on the first heads of (n, heads, dim) (CPU)");
  m.def("moe_packed", &moe_packed, "tokens through their packed bf16 GraniteMoE experts (AVX512-BF16, AMX)");
  m.def("packs_experts", &packs_experts, "whether moe_packed runs here (a build with AVX512-BF16)");
  m.def("rounds_bf16_states", &rounds_bf16_states, "whether bf16 products round x to bf16 (AVX512-BF16)");
  m.def("attention_bf16", &attention_bf16, "causal attention of bf16 queries over bf16 keys and values (AMX)");
  m.def("amx_available", &amx_available, "whether the AMX kernels run here (moe_packed, attention_bf16)");
  m.def("decode_layer", &decode_layer, "one GraniteMoE decoder layer for one decode token, in place (CPU)");
}
