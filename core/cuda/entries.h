// The CUDA backend's entries (core/backend.h has their contracts): host functions that take the
// op layer's checked tensors, pick the dtype and launch kernels on the current device's compute
// stream (core/cuda/streams.h). The backend table (cuda_backend.cpp) is filled with them.
// Grouped by the file that defines them.
#pragma once
#include "core/backend.h"

namespace vmoe::cuda {

// ---- elementwise_entries.cpp: elementwise, reductions, row kernels ----
void copy(const Tensor& src, const Tensor& dst);
void fill(const Tensor& dst, double value);
void binary(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out);
void unary(UnaryOp op, const Tensor& x, const Tensor& out);
void unary_backward(UnaryOp op, const Tensor& x, const Tensor& y, const Tensor& gy,
                    const Tensor& gx);
void bias_gelu(const Tensor& x, const Tensor& bias, const Tensor& y);
void bias_gelu_backward(const Tensor& x, const Tensor& bias, const Tensor& gy, const Tensor& gx);
void add_scaled(const Tensor& dst, const Tensor& src, double alpha);
void scale(const Tensor& dst, double s);
void sum_squares(const Tensor& x, const Tensor& out);
void reduce_sum(const Tensor& x, const Tensor& out);
void max_last(const Tensor& x, const Tensor& values, const Tensor& arg);
void cumsum(const Tensor& x, int64_t outer, int64_t n, int64_t inner, ScanDirection dir,
            const Tensor& out);
void softmax(const Tensor& x, const Tensor& y, SoftmaxKind kind);
void softmax_backward(const Tensor& y, const Tensor& gy, const Tensor& gx, SoftmaxKind kind);
void layer_norm(const Tensor& x, const Tensor& scale, const Tensor& bias, double eps,
                const Tensor& y, const Tensor& mean, const Tensor& rstd);
void layer_norm_backward(const Tensor& x, const Tensor& scale, const Tensor& mean,
                         const Tensor& rstd, const Tensor& gy, const Tensor& gx,
                         const Tensor& gscale, const Tensor& gbias);
void softmax_xent(const Tensor& logits, const Tensor& labels, const Tensor& loss,
                  const Tensor& dlogits);
void sigmoid_xent(const Tensor& logits, const Tensor& labels, const Tensor& loss,
                  const Tensor& dlogits);

// ---- index_entries.cpp: random numbers, patches, indexing, routing, optimizer updates ----
void dropout_mask(const Tensor& mask, double rate, RngKey key, uint64_t offset);
void random_fill(const Tensor& out, RngKey key, uint64_t offset, Distribution dist, double lo,
                 double hi);
void patches(const Tensor& images, int64_t p, const Tensor& patches, PatchDirection dir);
void index_select(const Tensor& x, const Tensor& idx, const Tensor& out);
void index_add(const Tensor& src, const Tensor& idx, const Tensor& out);
void gather(const Tensor& x, const Tensor& idx, const Tensor& out);
void gather_backward(const Tensor& gy, const Tensor& idx, const Tensor& gx);
void topk(const Tensor& x, int64_t k, const Tensor& values, const Tensor& indices);
void argsort(const Tensor& x, SortOrder order, const Tensor& out);
void one_hot(const Tensor& idx, const Tensor& out);
void assign_slots(const Tensor& experts, const Tensor& order, const SlotLayout& layout,
                  const Tensor& combine_rows, const Tensor& dispatch_rows,
                  const Tensor& expert_load);
void adamw_update(const UpdateArgs& args, const AdamWOptions& options);
void sgd_update(const UpdateArgs& args, const SgdOptions& options);

// ---- gemm.cpp: cuBLASLt ----
void gemm(const GemmArgs& args);

// ---- attention_entries.cpp: fused attention (f32, f64, bf16; head dimension <= 128) ----
void attention_forward(const Tensor& q, const Tensor& k, const Tensor& v, double scale,
                       const Tensor& out, const Tensor& lse);
void attention_backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out,
                        const Tensor& lse, const Tensor& gout, double scale, const Tensor& gq,
                        const Tensor& gk, const Tensor& gv);

// ---- index_entries.cpp: the fused MoE combine (f32, f64; rows i64) ----
void combine(const Tensor& y, const Tensor& weights, const Tensor& rows, const Tensor& out);
void combine_backward(const Tensor& y, const Tensor& weights, const Tensor& rows,
                      const Tensor& gout, const Tensor& gy, const Tensor& gweights);

// ---- supports.cpp: which dtypes each entry handles ----
bool supports_dtype(Entry entry, DType dtype);

}  // namespace vmoe::cuda
