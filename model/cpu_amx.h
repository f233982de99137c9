// What model/cpu_kernels.cpp and model/cpu_attention.cpp share about Intel's AMX matrix tiles
// (Sapphire Rapids onwards): whether the operating system grants them, and the one tile shape
// both use. Built by model/native.py with the machine's own -march, so GRANITE_AMX is set only
// where the compiler targets a CPU with AMX-BF16.
#pragma once

#include <torch/extension.h>

#if defined(__AMX_TILE__) && defined(__AMX_BF16__) && defined(__AVX512BF16__)
#define GRANITE_AMX 1
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace granite_amx {

// Linux hands the AMX state to a process only when asked (ARCH_REQ_XCOMP_PERM, XTILEDATA).
inline bool permitted() {
  static const bool granted = syscall(SYS_arch_prctl, 0x1023, 18) == 0;
  return granted;
}

struct TileConfig {
  uint8_t palette = 1;
  uint8_t start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t bytes_per_row[16] = {};
  uint8_t rows[16] = {};
};

// All eight tiles 16 rows x 64 bytes: sums 16 x 16 fp32, bf16 operands 16 x 32 (VNNI pairs for B).
inline void configure_tiles() {
  TileConfig config;
  for (int i = 0; i < 8; ++i) {
    config.bytes_per_row[i] = 64;
    config.rows[i] = 16;
  }
  _tile_loadconfig(&config);
}

}  // namespace granite_amx
#endif

// Whether this build and the operating system run the AMX kernels (packed experts, bf16 attention).
inline bool amx_available() {
#if defined(GRANITE_AMX)
  return granite_amx::permitted();
#else
  return false;
#endif
}

// model/cpu_attention.cpp
torch::Tensor attention_bf16(const torch::Tensor& query, const torch::Tensor& keys, const torch::Tensor& values,
                             double scaling);
