// The CUDA backend's table. Memory: the caching allocator over cudaMalloc; host copies staged
// through pinned buffers on the compute stream and counted (core/transfer_counts.h), as the
// strict test device counts them, so the tests that prove a step reads nothing back also hold on
// the GPU.
#include "core/cuda/cuda_backend.h"

#include "core/cuda/cuda_allocator.h"
#include "core/cuda/cuda_check.h"
#include "core/cuda/entries.h"
#include "core/cuda/pinned_staging.h"
#include "core/cuda/streams.h"
#include "core/transfer_counts.h"

namespace vmoe::cuda {

namespace {

void to_host(const void* device_src, void* host_dst, size_t bytes) {
  count_to_host(DeviceType::cuda, int64_t(bytes));
  staged_copy_to_host(device_src, host_dst, bytes, compute_stream());
}

void from_host(const void* host_src, void* device_dst, size_t bytes) {
  count_from_host(DeviceType::cuda, int64_t(bytes));
  staged_copy_from_host(host_src, device_dst, bytes, compute_stream());
}

void synchronize() {
  count_synchronization(DeviceType::cuda);
  VMOE_CUDA_CHECK(cudaStreamSynchronize(compute_stream()));
}

}  // namespace

const Backend& cuda_backend() {
  static const Backend table{
      .name = "cuda",
      .allocator = &device_allocator(),
      .copy_to_host = to_host,
      .copy_from_host = from_host,
      .synchronize = synchronize,
      .copy = copy,
      .fill = fill,
      .binary = binary,
      .unary = unary,
      .unary_backward = unary_backward,
      .add_scaled = add_scaled,
      .scale = scale,
      .sum_squares = sum_squares,
      .reduce_sum = reduce_sum,
      .max_last = max_last,
      .cumsum = cumsum,
      .gemm = gemm,
      .softmax = softmax,
      .softmax_backward = softmax_backward,
      .layer_norm = layer_norm,
      .layer_norm_backward = layer_norm_backward,
      .softmax_xent = softmax_xent,
      .sigmoid_xent = sigmoid_xent,
      .dropout_mask = dropout_mask,
      .random_fill = random_fill,
      .patches = patches,
      .index_select = index_select,
      .index_add = index_add,
      .gather = gather,
      .gather_backward = gather_backward,
      .topk = topk,
      .argsort = argsort,
      .one_hot = one_hot,
      .assign_slots = assign_slots,
      .adamw_update = adamw_update,
      .sgd_update = sgd_update,
      .attention_forward = attention_forward,
      .attention_backward = attention_backward,
      .bias_gelu = bias_gelu,
      .bias_gelu_backward = bias_gelu_backward,
      .combine = combine,
      .combine_backward = combine_backward,
      .supports_dtype = supports_dtype,
  };
  return table;
}

}  // namespace vmoe::cuda
