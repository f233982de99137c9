// Causal attention of a prefill chunk over the KV cache in bf16, on Intel's AMX matrix tiles: a
// flash-attention loop (no score matrix larger than a block is ever held) written for the tiles.
//
// Why our own: torch's CPU flash attention reaches 0.3-0.7 TFLOP/s here in bf16 (less for short
// chunks) against 2.2-2.4 for bf16 matrix products, and attention grows with the square of the
// document: at 32K tokens it is most of a prefill. Here both products run on the tiles and the
// softmax between them on AVX-512. A work item is 32 positions of every query head that shares
// one key/value head (64 rows for Granite's 16/8 heads: each block of keys is read once for all
// of them), against blocks of 128 keys:
//   S = Q K^T (tiles), the row maxima and exponentials (AVX-512, online softmax), P in bf16,
//   O = O * correction + P V (tiles),
// the next block's S and each 16 rows' P V issued between the rows of this block's softmax, so the
// tiles and the vector units work at the same time.
// The past (the cached document) and the chunk itself are one pass: the mask is the position
// arithmetic of a single unpadded sequence, so nothing is merged afterwards.
//
// Layouts: a B tile holds pairs along its reduction (VNNI). For S the reduction runs over the head
// dimension, so each 16-key block of K is transposed as 32-bit pairs of dimensions; for P V it runs
// over keys, so pairs of V's rows are interleaved. Both are rearranged once per call into
// scratch (one layer's keys and values, a few MB at 32K tokens), shared by the query heads of a
// key/value head. That costs about 0.3 ms per 1K cached tokens per layer whatever the chunk, so a
// short question (model/native.py: MIN_ATTENTION_ROWS) stays with torch's kernel.

#include "cpu_amx.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <omp.h>
#include <vector>

namespace {

#if defined(GRANITE_AMX)

constexpr int64_t kPositions = 32;  // query positions per work item, of every head sharing keys
constexpr int64_t kKeys = 128;    // keys per softmax block
constexpr int64_t kTile = 16;     // rows of a tile, fp32 columns of a sum tile
constexpr int64_t kPair = 32;     // bf16 values of a tile row
constexpr float kLog2e = 1.44269504088896341f;

using bf16 = at::BFloat16;

// 2^t, 0 in the lanes `keep` leaves out (masked keys contribute exactly nothing): a degree-3
// polynomial fitted to 2^f on [-0.5, 0.5], 8e-5 relative, a fiftieth of bf16's rounding of P.
// (vscalefps gives 0 for the very negative t of keys far below the maximum.)
inline __m512 exp2_kept(__m512 t, __mmask16 keep) {
  const __m512 n = _mm512_roundscale_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m512 f = _mm512_sub_ps(t, n);
  __m512 p = _mm512_set1_ps(0.055088767f);
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(0.242604656f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(0.693276283f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(0.999928905f));
  return _mm512_maskz_scalef_ps(keep, p, n);
}

// The lanes of a 16-key vector that are among the first `visible` keys of its block.
inline __mmask16 lanes_below(int64_t visible, int64_t first) {
  const int64_t count = visible - first;
  return count >= kTile ? static_cast<__mmask16>(0xFFFF) : count <= 0 ? 0 : static_cast<__mmask16>((1u << count) - 1);
}

// Keys and values of one key/value head, rearranged for the tiles; `length` keys padded with
// zeros to a multiple of 32.
struct PackedHead {
  const bf16* keys;    // per 16 keys, per 32 dimensions: a B tile of S = Q K^T
  const bf16* values;  // per 32 keys, per 16 dimensions: a B tile of O = P V
};

// K's 16-key blocks transposed as 32-bit pairs of dimensions (a gather per tile row: the 16 keys'
// pair r), and V's rows interleaved in pairs (the two rows' values widened to 32 bits and merged).
void pack_head(const bf16* k, const bf16* v, int64_t key_stride, int64_t length, int64_t padded, int64_t dim,
               bf16* packed_keys, bf16* packed_values) {
  const int64_t key_tiles = dim / kPair, value_tiles = dim / kTile;
  const int32_t* k32 = reinterpret_cast<const int32_t*>(k);
  int32_t* kp = reinterpret_cast<int32_t*>(packed_keys);
  const __m512i key_offsets = _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                                                 _mm512_set1_epi32(static_cast<int32_t>(key_stride / 2)));
  for (int64_t block = 0; block < padded / kTile; ++block) {
    const __mmask16 present = lanes_below(length, block * kTile);
    const int32_t* rows = k32 + block * kTile * (key_stride / 2);
    for (int64_t pair = 0; pair < dim / 2; ++pair)  // pair = t * 16 + r: tile t of the block, its row r
      _mm512_storeu_si512(kp + (block * key_tiles * kTile + pair) * kTile,
                          _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), present, key_offsets, rows + pair, 4));
  }
  const __m256i zero = _mm256_setzero_si256();
  for (int64_t block = 0; block < padded / kPair; ++block)
    for (int64_t r = 0; r < kTile; ++r) {
      const int64_t even = block * kPair + 2 * r;
      const bf16* first = v + even * key_stride;
      const bf16* second = first + key_stride;
      for (int64_t t = 0; t < value_tiles; ++t) {
        const __m256i a = even < length ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(first + t * kTile)) : zero;
        const __m256i b =
            even + 1 < length ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(second + t * kTile)) : zero;
        const __m512i pairs = _mm512_or_si512(_mm512_cvtepu16_epi32(a), _mm512_slli_epi32(_mm512_cvtepu16_epi32(b), 16));
        _mm512_storeu_si512(packed_values + ((block * value_tiles + t) * kTile + r) * kPair, pairs);
      }
    }
}

// Per-thread scratch of one work item: `rows` query rows (every query head of one key/value head,
// kPositions positions each) against blocks of kKeys keys.
struct Scratch {
  int64_t rows;
  std::vector<bf16> queries, probabilities;
  std::vector<float> scores[2], out, block_out, maxima, totals;  // scores: this block's and the next's
  Scratch(int64_t rows, int64_t dim)
      : rows(rows), queries(rows * dim), probabilities(rows * kKeys), scores{std::vector<float>(rows * kKeys),
        std::vector<float>(rows * kKeys)}, out(rows * dim), block_out(kTile * 64), maxima(rows), totals(rows) {}
};

// One unit of S = Q K^T: 32 rows (from `row`) by 32 keys (from `key` of the block starting at
// `first_key`), four sum tiles, stored into `scores` (rows x kKeys).
void score_unit(const Scratch& s, const bf16* packed_keys, int64_t first_key, int64_t row, int64_t key, int64_t dim,
                float* scores) {
  const int64_t key_tiles = dim / kPair, tile_elements = kTile * kPair;
  const bf16* b0 = packed_keys + (first_key + key) / kTile * key_tiles * tile_elements;
  const bf16* b1 = b0 + key_tiles * tile_elements;
  const bf16* a = s.queries.data() + row * dim;
  _tile_zero(0);
  _tile_zero(1);
  _tile_zero(2);
  _tile_zero(3);
  for (int64_t t = 0; t < key_tiles; ++t) {
    _tile_loadd(4, a + t * kPair, dim * 2);
    _tile_loadd(5, a + kTile * dim + t * kPair, dim * 2);
    _tile_loadd(6, b0 + t * tile_elements, 64);
    _tile_loadd(7, b1 + t * tile_elements, 64);
    _tile_dpbf16ps(0, 4, 6);
    _tile_dpbf16ps(1, 4, 7);
    _tile_dpbf16ps(2, 5, 6);
    _tile_dpbf16ps(3, 5, 7);
  }
  float* c = scores + row * kKeys + key;
  _tile_stored(0, c, kKeys * 4);
  _tile_stored(1, c + kTile, kKeys * 4);
  _tile_stored(2, c + kTile * kKeys, kKeys * 4);
  _tile_stored(3, c + kTile * kKeys + kTile, kKeys * 4);
}

// The units of a block's scores, in the order they are issued: keys within rows.
struct ScoreUnits {
  int64_t first_key, keys, rows;
  int64_t count() const { return rows / (2 * kTile) * (keys / (2 * kTile)); }
  void issue(const Scratch& s, const bf16* packed_keys, int64_t unit, int64_t dim, float* scores) const {
    const int64_t per_row = keys / (2 * kTile);
    score_unit(s, packed_keys, first_key, unit / per_row * 2 * kTile, unit % per_row * 2 * kTile, dim, scores);
  }
};

inline float exp2_scalar(float t) { return _mm512_cvtss_f32(exp2_kept(_mm512_set1_ps(t), 0xFFFF)); }

// P for a block whose keys are all visible, against the row's running maximum as it is, where
// no score exceeds it by more than 2^kSlack (probabilities up to 256 are as exact in bf16 and fp32
// as those up to 1): no pass for the block's maximum, no rescaling of the output. False (and P
// to be computed again) where one does.
constexpr float kSlack = 8.0f;
bool softmax_row_against(const float* scores, int64_t keys, float scale_log2, float maximum, float& total,
                         bf16* probabilities) {
  const __m512 scale = _mm512_set1_ps(scale_log2), shift = _mm512_set1_ps(maximum);
  __m512 sum = _mm512_setzero_ps(), top = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  for (int64_t i = 0; i < keys; i += 2 * kTile) {
    const __m512 t0 = _mm512_fmsub_ps(_mm512_loadu_ps(scores + i), scale, shift);
    const __m512 t1 = _mm512_fmsub_ps(_mm512_loadu_ps(scores + i + kTile), scale, shift);
    top = _mm512_max_ps(top, _mm512_max_ps(t0, t1));
    const __m512 p0 = exp2_kept(t0, 0xFFFF), p1 = exp2_kept(t1, 0xFFFF);
    sum = _mm512_add_ps(sum, _mm512_add_ps(p0, p1));
    _mm512_storeu_si512(probabilities + i, (__m512i)_mm512_cvtne2ps_pbh(p1, p0));
  }
  if (_mm512_reduce_max_ps(top) > kSlack) return false;
  total += _mm512_reduce_add_ps(sum);
  return true;
}

// Online softmax of one row of scores over its `visible` keys (of `keys`, a multiple of 32):
// the row's probabilities in bf16, its running maximum and total updated, its output rescaled.
// kAll: every key of the block is visible (most blocks), so no lane is masked.
template <bool kAll>
void softmax_row(const float* scores, int64_t visible, int64_t keys, float scale_log2, float& maximum, float& total,
                 bf16* probabilities, float* out, int64_t dim) {
  constexpr __mmask16 kEvery = 0xFFFF;
  if (!kAll && visible <= 0) {  // every key of the block is after this query
    std::memset(probabilities, 0, keys * sizeof(bf16));
    return;
  }
  if (kAll && !std::isinf(maximum) && softmax_row_against(scores, keys, scale_log2, maximum, total, probabilities))
    return;
  __m512 top = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  for (int64_t i = 0; i < keys; i += kTile)
    top = _mm512_mask_max_ps(top, (kAll ? kEvery : lanes_below(visible, i)), top, _mm512_loadu_ps(scores + i));
  const float new_maximum = std::max(maximum, _mm512_reduce_max_ps(top) * scale_log2);
  const float correction = std::isinf(maximum) ? 0.0f : exp2_scalar(maximum - new_maximum);
  const __m512 scale = _mm512_set1_ps(scale_log2), shift = _mm512_set1_ps(new_maximum);
  __m512 sum = _mm512_setzero_ps();
  for (int64_t i = 0; i < keys; i += 2 * kTile) {
    const __m512 p0 = exp2_kept(_mm512_fmsub_ps(_mm512_loadu_ps(scores + i), scale, shift), (kAll ? kEvery : lanes_below(visible, i)));
    const __m512 p1 = exp2_kept(_mm512_fmsub_ps(_mm512_loadu_ps(scores + i + kTile), scale, shift),
                                (kAll ? kEvery : lanes_below(visible, i + kTile)));
    sum = _mm512_add_ps(sum, _mm512_add_ps(p0, p1));
    _mm512_storeu_si512(probabilities + i, (__m512i)_mm512_cvtne2ps_pbh(p1, p0));
  }
  total = total * correction + _mm512_reduce_add_ps(sum);
  maximum = new_maximum;
  if (correction != 1.0f) {
    const __m512 c = _mm512_set1_ps(correction);
    for (int64_t d = 0; d < dim; d += kTile) _mm512_storeu_ps(out + d, _mm512_mul_ps(c, _mm512_loadu_ps(out + d)));
  }
}

// O (16 rows from `row`, x dim) += P V over this block's keys: per 64 dimensions, four sum tiles.
void values_unit(Scratch& s, const bf16* packed_values, int64_t first_key, int64_t keys, int64_t dim, int64_t row) {
  const int64_t value_tiles = dim / kTile, tile_elements = kTile * kPair;
  float* o = s.block_out.data();
  for (int64_t dg = 0; dg < dim / 64; ++dg) {
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    for (int64_t ks = 0; ks < keys; ks += kPair) {
      const bf16* b = packed_values + ((first_key + ks) / kPair * value_tiles + dg * 4) * tile_elements;
      _tile_loadd(4, s.probabilities.data() + row * kKeys + ks, kKeys * 2);
      _tile_loadd(5, b, 64);
      _tile_loadd(6, b + tile_elements, 64);
      _tile_loadd(7, b + 2 * tile_elements, 64);
      _tile_dpbf16ps(0, 4, 5);
      _tile_dpbf16ps(1, 4, 6);
      _tile_dpbf16ps(2, 4, 7);
      _tile_loadd(5, b + 3 * tile_elements, 64);
      _tile_dpbf16ps(3, 4, 5);
    }
    _tile_stored(0, o, 64 * 4);
    _tile_stored(1, o + kTile, 64 * 4);
    _tile_stored(2, o + 2 * kTile, 64 * 4);
    _tile_stored(3, o + 3 * kTile, 64 * 4);
    for (int64_t r = 0; r < kTile; ++r) {
      float* target = s.out.data() + (row + r) * dim + dg * 64;
      for (int64_t d = 0; d < 64; d += kTile)
        _mm512_storeu_ps(target + d, _mm512_add_ps(_mm512_loadu_ps(target + d), _mm512_loadu_ps(o + r * 64 + d)));
    }
  }
}

// Where a work item's queries are: (heads, n, dim) with these strides; the output (n, heads, dim).
struct Queries {
  const bf16* data;
  int64_t head_stride, position_stride, n, heads, groups;
};

// One work item: positions first..first+count-1 (count <= kPositions) of every query head of
// key/value head g. Row r of the scratch is head g * groups + r / kPositions, position
// first + r % kPositions (rows past `count` are zero padding, computed and never written out).
void attend_block(Scratch& s, const Queries& q, int64_t g, int64_t first, int64_t count, int64_t past,
                  const PackedHead& head, int64_t dim, float scale_log2, bf16* out) {
  for (int64_t r = 0; r < s.rows; ++r) {
    bf16* target = s.queries.data() + r * dim;
    const int64_t h = g * q.groups + r / kPositions, i = r % kPositions;
    if (i < count)
      std::memcpy(target, q.data + h * q.head_stride + (first + i) * q.position_stride, dim * sizeof(bf16));
    else
      std::memset(target, 0, dim * sizeof(bf16));
  }
  std::fill(s.out.begin(), s.out.end(), 0.0f);
  std::fill(s.maxima.begin(), s.maxima.end(), -std::numeric_limits<float>::infinity());
  std::fill(s.totals.begin(), s.totals.end(), 0.0f);
  const int64_t limit = past + first + count;  // keys the item's last position sees
  auto block_keys = [&](int64_t first_key) { return (std::min(kKeys, limit - first_key) + kPair - 1) / kPair * kPair; };
  // The next block's scores are computed on the tiles while this block's softmax runs on the
  // vector units: its units are issued between rows, so both kinds of work are in flight at once.
  ScoreUnits current{0, block_keys(0), s.rows};
  for (int64_t unit = 0; unit < current.count(); ++unit) current.issue(s, head.keys, unit, dim, s.scores[0].data());
  for (int64_t first_key = 0, parity = 0; first_key < limit; first_key += kKeys, parity ^= 1) {
    const int64_t keys = current.keys, next_key = first_key + kKeys;
    const ScoreUnits next{next_key, next_key < limit ? block_keys(next_key) : 0, s.rows};
    const float* scores = s.scores[parity].data();
    float* next_scores = s.scores[parity ^ 1].data();
    int64_t issued = 0;
    for (int64_t r = 0; r < s.rows; ++r) {
      const int64_t visible = std::min(past + first + r % kPositions + 1, limit) - first_key;
      auto softmax = visible >= keys ? softmax_row<true> : softmax_row<false>;
      softmax(scores + r * kKeys, visible, keys, scale_log2, s.maxima[r], s.totals[r],
              s.probabilities.data() + r * kKeys, s.out.data() + r * dim, dim);
      for (; issued < (r + 1) * next.count() / s.rows; ++issued) next.issue(s, head.keys, issued, dim, next_scores);
      if ((r + 1) % kTile == 0)  // these 16 rows' P is complete: their P V runs while the next rows' softmax does
        values_unit(s, head.values, first_key, keys, dim, r + 1 - kTile);
    }
    current = next;
  }
  for (int64_t r = 0; r < s.rows; ++r) {
    const int64_t h = g * q.groups + r / kPositions, i = r % kPositions;
    if (i >= count) continue;
    const __m512 inverse = _mm512_set1_ps(1.0f / s.totals[r]);
    bf16* target = out + ((first + i) * q.heads + h) * dim;
    for (int64_t d = 0; d < dim; d += kTile)
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(target + d),
                          (__m256i)_mm512_cvtneps_pbh(_mm512_mul_ps(inverse, _mm512_loadu_ps(s.out.data() + r * dim + d))));
  }
}

#endif

void check_attention_input(const torch::Tensor& t, const char* what) {
  TORCH_CHECK(t.device().is_cpu() && t.scalar_type() == torch::kBFloat16 && t.dim() == 3 && t.stride(2) == 1,
              what, " must be a bf16 CPU tensor (heads, positions, dim) with contiguous rows");
}

}  // namespace

// query (heads, n, dim), keys and values (kv_heads, past + n, dim), the chunk's positions last,
// all bf16 with contiguous rows (any head and position strides: views of the projections and of
// the cache). Query i (position past + i) sees keys 0..past + i; query head h reads key/value head
// h / (heads / kv_heads). Returns (n, heads, dim) bf16, computed with fp32 sums and softmax.
torch::Tensor attention_bf16(const torch::Tensor& query, const torch::Tensor& keys, const torch::Tensor& values,
                             double scaling) {
  TORCH_CHECK(amx_available(), "bf16 attention on tiles needs a CPU with AMX");
  check_attention_input(query, "query");
  check_attention_input(keys, "keys");
  check_attention_input(values, "values");
  const int64_t heads = query.size(0), n = query.size(1), dim = query.size(2);
  const int64_t kv_heads = keys.size(0), length = keys.size(1);
  TORCH_CHECK(values.sizes() == keys.sizes() && keys.stride(1) == values.stride(1) && keys.size(2) == dim,
              "keys and values must have the same shape and layout");
  TORCH_CHECK(kv_heads > 0 && heads % kv_heads == 0 && length >= n && n > 0, "bad head or position counts");
  TORCH_CHECK(dim % 64 == 0 && keys.stride(1) % 2 == 0, "the head dimension must be a multiple of 64");
  auto out = torch::empty({n, heads, dim}, query.options().memory_format(at::MemoryFormat::Contiguous));
#if defined(GRANITE_AMX)
  const int64_t padded = (length + kPair - 1) / kPair * kPair, per_head = padded * dim, past = length - n;
  // scratch, not kept (a std::vector would write zeros into it first)
  auto packed = torch::empty({2, kv_heads, per_head}, keys.options().memory_format(at::MemoryFormat::Contiguous));
  bf16* packed_keys = reinterpret_cast<bf16*>(packed.data_ptr());
  bf16* packed_values = packed_keys + kv_heads * per_head;
  const bf16* k = reinterpret_cast<const bf16*>(keys.data_ptr());
  const bf16* v = reinterpret_cast<const bf16*>(values.data_ptr());
  at::parallel_for(0, kv_heads, 1, [&](int64_t begin, int64_t end) {
    for (int64_t g = begin; g < end; ++g)
      pack_head(k + g * keys.stride(0), v + g * values.stride(0), keys.stride(1), length, padded, dim,
                packed_keys + g * per_head, packed_values + g * per_head);
  });
  // Work items: (query block, key/value head), the blocks that see the most keys first.
  const int64_t blocks = (n + kPositions - 1) / kPositions, groups = heads / kv_heads, items = blocks * kv_heads;
  const Queries q{reinterpret_cast<const bf16*>(query.data_ptr()), query.stride(0), query.stride(1), n, heads, groups};
  bf16* o = reinterpret_cast<bf16*>(out.data_ptr());
  const float scale_log2 = static_cast<float>(scaling) * kLog2e;
  const int threads = std::max<int>(1, std::min<int64_t>(at::get_num_threads(), items));
#pragma omp parallel num_threads(threads)
  {
    Scratch scratch(groups * kPositions, dim);
    granite_amx::configure_tiles();
#pragma omp for schedule(dynamic, 1)
    for (int64_t item = 0; item < items; ++item) {
      const int64_t block = blocks - 1 - item / kv_heads, g = item % kv_heads, first = block * kPositions;
      const PackedHead head{packed_keys + g * per_head, packed_values + g * per_head};
      attend_block(scratch, q, g, first, std::min(kPositions, n - first), past, head, dim, scale_log2, o);
    }
    _tile_release();
  }
#endif
  return out;
}
