// The CUDA backend's fused attention entries (core/backend.h has their contracts): check what
// the kernels assume beyond the op layer's checks, then launch attention_kernels.cu on the
// compute stream.
#include <stdexcept>
#include <string>

#include "core/cuda/attention_kernels.h"
#include "core/cuda/entries.h"
#include "core/cuda/streams.h"

namespace vmoe::cuda {

namespace {

// q [B, H, N, Dh] (k, v, gq, gk, gv alike) and out [B, H, N, Dh] (gout alike) -> the kernels'
// shape, or an error naming what they cannot take.
AttentionShape checked_shape(const char* entry, const Tensor& q, const Tensor& out) {
  for (const Tensor* t : {&q, &out})
    if (t->dim() != 4 || t->strides()[3] != 1)
      throw std::invalid_argument(std::string(entry) + ": q and out must be [B, H, N, Dh] views " +
                                  "with a contiguous last axis, got " + t->desc());
  auto layout = [](const Tensor& x) {
    return AttentionLayout{x.size(1), x.strides()[0], x.strides()[1], x.strides()[2]};
  };
  const AttentionShape s{q.size(0) * q.size(1), q.size(2), q.size(3), layout(q), layout(out)};
  if (s.dh > kAttentionMaxHeadDim)
    throw std::invalid_argument(std::string(entry) + ": head dimension " + std::to_string(s.dh) +
                                " exceeds the CUDA kernel's maximum " +
                                std::to_string(kAttentionMaxHeadDim) + " (q " + q.desc() + ")");
  const int64_t blocks = s.bh * attention_blocks_per_head(s.n);
  if (blocks > int64_t(0x7fffffff))
    throw std::invalid_argument(std::string(entry) + ": q " + q.desc() + " needs " +
                                std::to_string(blocks) + " blocks, more than a grid holds");
  return s;
}

}  // namespace

void attention_forward(const Tensor& q, const Tensor& k, const Tensor& v, double scale,
                       const Tensor& out, const Tensor& lse) {
  const AttentionShape s = checked_shape("cuda attention_forward", q, out);
  launch_attention_forward(q.dtype(), q.device_raw(), k.device_raw(), v.device_raw(),
                           out.device_raw(), lse.device_raw(), s, scale, compute_stream());
}

void attention_backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out,
                        const Tensor& lse, const Tensor& gout, double scale, const Tensor& gq,
                        const Tensor& gk, const Tensor& gv) {
  const AttentionShape s = checked_shape("cuda attention_backward", q, out);
  launch_attention_backward(q.dtype(), q.device_raw(), k.device_raw(), v.device_raw(),
                            out.device_raw(), lse.device_raw(), gout.device_raw(), gq.device_raw(),
                            gk.device_raw(), gv.device_raw(), s, scale, compute_stream());
}

}  // namespace vmoe::cuda
