// What a layer costs in one training forward pass, declared by the layer itself beside its
// forward code, from shapes alone (a model built on an unallocated ParameterStore can say it):
// the GEMM FLOPs core/flop_counter.h counts, and the bytes of the tensors the autograd tape
// keeps for backward. `vmoe plan` (launch/plan.h) adds them up; test/launch/test_plan.cpp checks
// them against a real forward, so a change to a forward that is not mirrored here fails there.
#pragma once
#include <algorithm>
#include <cstdint>

#include "core/dtype.h"

namespace vmoe {

// Whether a layer's input needs a gradient (not so for the patches entering the embedding).
enum class InputGrad : bool { no = false, yes = true };

// How MoE tokens reach their experts: all in this process (LocalExchange), or the
// expert-parallel all-to-all (parallel/expert_parallel_exchange.h, used when Pe > 1).
enum class ExchangeKind : bool { local = false, expert_parallel = true };

// The forward pass being costed: one rank's (micro-)batch.
struct CostShape {
  int64_t batch = 1;              // images
  DType activation = DType::f32;  // between layers (bf16 under mixed precision)
  DType param = DType::f32;       // parameters and the f32 islands (router, final norm, head)
  bool training = true;           // dropout and router noise on, the training capacity
  bool fused_attention = true;    // the backend's fused attention (else the composed ops)
  bool fused_combine = true;      // the backend's fused MoE combine (else the composed ops)
  bool fused_aux_losses = true;   // the backend's fused importance and load losses (f32, f64)
  ExchangeKind exchange = ExchangeKind::local;
  int64_t expert_ranks = 1;  // Pe: ranks that split every MoE layer's experts
};

struct LayerCost {
  int64_t forward_flops = 0;          // 2 m n k per GEMM, as FlopCount counts them
  int64_t backward_flops = 0;         // the GEMMs of backward
  int64_t active_flops = 0;           // forward with every token at exactly k experts (no capacity)
  int64_t kept_bytes = 0;             // new tensors the tape keeps until backward (casts included)
  int64_t small_tensors = 0;          // ... and scalars / [E]-sized ones, counted (each takes the
                                      // allocator's smallest block rather than its bytes)
  int64_t cast_bytes = 0;             // of which: weights cast to the activation dtype (bf16)
  int64_t alltoall_bytes = 0;         // forward bytes this rank sends to other ranks
  int64_t exchange_buffer_bytes = 0;  // transient send + receive buffers of one exchange
                                      // (summing layers keeps the largest: one at a time)

  LayerCost& operator+=(const LayerCost& o) {
    forward_flops += o.forward_flops;
    backward_flops += o.backward_flops;
    active_flops += o.active_flops;
    kept_bytes += o.kept_bytes;
    small_tensors += o.small_tensors;
    cast_bytes += o.cast_bytes;
    alltoall_bytes += o.alltoall_bytes;
    exchange_buffer_bytes = std::max(exchange_buffer_bytes, o.exchange_buffer_bytes);
    return *this;
  }
  // A GEMM of `flops` (2 m n k); backward computes the weight's gradient and, unless
  // `input` is InputGrad::no, the input's.
  void gemm(int64_t flops, InputGrad input = InputGrad::yes) {
    forward_flops += flops;
    active_flops += flops;
    backward_flops += input == InputGrad::yes ? 2 * flops : flops;
  }
  // A kept tensor of `elements` of `dtype`.
  void keep(int64_t elements, DType dtype) { kept_bytes += elements * int64_t(dtype_size(dtype)); }
  // A weight of `elements` cast to `to` (kept by the op it feeds); nothing when no cast happens.
  void cast(int64_t elements, DType from, DType to) {
    if (from == to) return;
    keep(elements, to);
    cast_bytes += elements * int64_t(dtype_size(to));
  }
};

// Dtype of LayerNorm's row statistics (core/ops_nn.cpp): f32 for bf16 rows, else the rows'.
inline DType norm_stats_dtype(DType x) {
  return x == DType::bf16 ? DType::f32 : x;
}

}  // namespace vmoe
