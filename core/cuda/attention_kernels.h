// Launchers of the CUDA fused attention kernels (attention_kernels.cu) on device pointers of one
// dtype (f32, f64, bf16) and a stream; their math is attention_bodies.h. q, k, v, out and the
// gradients are [B, H, N, Dh] views laid out as `shape` says, lse [BH, N] contiguous in f64 for
// f64 and f32 otherwise.
// Every launcher checks the launch with VMOE_CUDA_CHECK.
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>

#include "core/cuda/attention_bodies.h"
#include "core/dtype.h"

namespace vmoe::cuda {

// out = softmax(q k^T * scale) v per head; lse gets each row's log-sum-exp of the scaled scores.
void launch_attention_forward(DType dtype, const void* q, const void* k, const void* v, void* out,
                              void* lse, const AttentionShape& shape, double scale,
                              cudaStream_t stream);
// gq, gk, gv from the forward's out and lse and gout: two kernels (dQ over query tiles, dK and
// dV over key tiles), each gradient element summed by one thread (deterministic).
void launch_attention_backward(DType dtype, const void* q, const void* k, const void* v,
                               const void* out, const void* lse, const void* gout, void* gq,
                               void* gk, void* gv, const AttentionShape& shape, double scale,
                               cudaStream_t stream);

}  // namespace vmoe::cuda
