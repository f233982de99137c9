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
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstring>
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
inline vf load(const int8_t* p) {
  vi8 v;
  std::memcpy(&v, p, sizeof(vi8));
  return __builtin_convertvector(v, vf);
}

inline vf load(const at::BFloat16* p) {
  vu16 v;
  std::memcpy(&v, p, sizeof(vu16));
  const vu32 wide = __builtin_convertvector(v, vu32) << 16;
  vf out;
  std::memcpy(&out, &wide, sizeof(vf));
  return out;
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
  for (int64_t i = 0; i < n; i += kLanes) {
    vf weights[R];
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      weights[r] = load(w + r * ldw + i);
      // With several rows of x the loop computes long enough that the hardware prefetcher falls
      // behind; fetching the next weight rows ahead keeps the memory busy.
      if (T > 2) __builtin_prefetch(w + (R + r) * ldw + i, 0, 0);
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

// y[:, begin:end] = x @ w[begin:end]^T (times the rows' scales, if any), for w (rows, n) row-major,
// x interleaved (m rows), y with row stride ldy.
template <typename W>
void product_rows(const W* w, const float* scale, int64_t n, const float* x, int64_t m, float* y, int64_t ldy,
                  int64_t begin, int64_t end) {
  int64_t r = begin;
  const float* s = scale ? scale + r : nullptr;
  // Few sums per row: four (int8: eight, as each row is a quarter of the bytes) weight rows at a
  // time keep more loads in flight.
  constexpr int kWide = sizeof(W) == 1 ? 8 : 4;
  if (m <= 2) {
    for (; r + kWide <= end; r += kWide, s = s ? s + kWide : s)
      rows_by_all_of_x<kWide>(w + r * n, n, s, x, m, n, y + r, ldy);
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
  TORCH_CHECK(gate_up.scalar_type() == down.scalar_type(), "gate_up and down must have one type");
  check_fp32_matrix(x, "x");
  const int64_t hidden = gate_up.size(2), inner2 = gate_up.size(1), inner = inner2 / 2;
  TORCH_CHECK(x.numel() == hidden && down.size(1) == hidden && down.size(2) == inner, "shapes do not match");
  TORCH_CHECK(hidden % kLanes == 0 && inner % kLanes == 0, "sizes must be multiples of 16");
  auto chosen = experts.to(torch::kInt64).contiguous();
  auto scale = weights.to(torch::kFloat32).contiguous();
  const int64_t k = chosen.numel();
  const int64_t* ep = chosen.data_ptr<int64_t>();
  for (int64_t s = 0; s < k; ++s) TORCH_CHECK(ep[s] >= 0 && ep[s] < gate_up.size(0), "expert index out of range");

  auto mid = torch::empty({k, inner2}, x.options());
  auto act = torch::empty({k, inner}, x.options());
  auto out = torch::empty({1, hidden}, x.options());
  const float* xp = x.data_ptr<float>();
  const float* gus = scales_of(gate_up_scale);
  const float* dns = scales_of(down_scale);
  const float* sp = scale.data_ptr<float>();
  float* midp = mid.data_ptr<float>();
  float* actp = act.data_ptr<float>();
  float* op = out.data_ptr<float>();

  by_weight_type(gate_up, [&](auto kind) {
    using W = decltype(kind);
    const W* gu = weights_of<W>(gate_up);
    const W* dn = weights_of<W>(down);
    // All k experts' gate/up rows form one parallel loop, so both threads stay busy throughout.
    at::parallel_for(0, k * inner2, kGrain, [&](int64_t b, int64_t e) {
      while (b < e) {
        const int64_t s = b / inner2, r0 = b % inner2, r1 = std::min(inner2, r0 + (e - b));
        const float* rs = gus ? gus + ep[s] * inner2 : nullptr;
        product_rows(gu + ep[s] * inner2 * hidden, rs, hidden, xp, 1, midp + s * inner2, inner2, r0, r1);
        b += r1 - r0;
      }
    });
    for (int64_t s = 0; s < k; ++s) {
      for (int64_t i = 0; i < inner; ++i) {
        const float g = midp[s * inner2 + i];
        actp[s * inner + i] = g / (1.0f + std::exp(-g)) * midp[s * inner2 + inner + i];
      }
    }
    at::parallel_for(0, hidden, kGrain, [&](int64_t b, int64_t e) {
      std::vector<float> part(e - b);
      std::fill(op + b, op + e, 0.0f);
      for (int64_t s = 0; s < k; ++s) {
        const float* rs = dns ? dns + ep[s] * hidden + b : nullptr;
        product_rows(dn + (ep[s] * hidden + b) * inner, rs, inner, actp + s * inner, 1, part.data(), 0, 0, e - b);
        for (int64_t h = b; h < e; ++h) op[h] += sp[s] * part[h - b];
      }
    });
  });
  return out;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("small_linear", &small_linear, "x @ w.T for a handful of fp32 rows of x (w fp32, bf16 or int8; CPU)");
  m.def("moe_one_token", &moe_one_token, "one token through its chosen GraniteMoE experts (CPU)");
}
