// Declarations of the CPU kernels that make up cpu_backend() (see core/backend.h for contracts).
#pragma once
#include "core/backend.h"

namespace vmoe::cpu {

void copy(const Tensor& src, const Tensor& dst);
void fill(const Tensor& dst, double value);
void binary(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out);
void unary(UnaryOp op, const Tensor& x, const Tensor& out);
void unary_backward(UnaryOp op, const Tensor& x, const Tensor& y, const Tensor& gy,
                    const Tensor& gx);
void add_scaled(const Tensor& dst, const Tensor& src, double alpha);
void scale(const Tensor& dst, double s);
void sum_squares(const Tensor& x, const Tensor& out);
void reduce_sum(const Tensor& x, const Tensor& out);
void max_last(const Tensor& x, const Tensor& values, const Tensor& arg);
void gemm(const GemmArgs& args);
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
void dropout_mask(const Tensor& mask, double rate, RngKey key, uint64_t offset);
void random_fill(const Tensor& out, RngKey key, uint64_t offset, Distribution dist, double lo,
                 double hi);
void patches(const Tensor& images, int64_t p, const Tensor& out, PatchDirection dir);
void index_select(const Tensor& x, const Tensor& idx, const Tensor& out);
void index_add(const Tensor& src, const Tensor& idx, const Tensor& out);
void gather(const Tensor& x, const Tensor& idx, const Tensor& out);
void gather_backward(const Tensor& gy, const Tensor& idx, const Tensor& gx);
void topk(const Tensor& x, int64_t k, const Tensor& values, const Tensor& indices);
void argsort(const Tensor& x, SortOrder order, const Tensor& out);
void cumsum(const Tensor& x, int64_t outer, int64_t n, int64_t inner, ScanDirection dir,
            const Tensor& out);
void one_hot(const Tensor& idx, const Tensor& out);
void assign_slots(const Tensor& experts, const Tensor& order, const SlotLayout& layout,
                  const Tensor& combine_rows, const Tensor& dispatch_rows,
                  const Tensor& expert_load);
void adamw_update(const UpdateArgs& args, const AdamWOptions& options);
void sgd_update(const UpdateArgs& args, const SgdOptions& options);
// attention.cpp
void attention_forward(const Tensor& q, const Tensor& k, const Tensor& v, double scale,
                       const Tensor& out, const Tensor& lse);
void attention_backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out,
                        const Tensor& lse, const Tensor& gout, double scale, const Tensor& gq,
                        const Tensor& gk, const Tensor& gv);
// elementwise.cpp: fused bias + GELU
void bias_gelu(const Tensor& x, const Tensor& bias, const Tensor& y);
void bias_gelu_backward(const Tensor& x, const Tensor& bias, const Tensor& gy, const Tensor& gx);
// combine.cpp: the MoE combine (f32, f64)
void combine(const Tensor& y, const Tensor& weights, const Tensor& rows, const Tensor& out);
void combine_backward(const Tensor& y, const Tensor& weights, const Tensor& rows,
                      const Tensor& gout, const Tensor& gy, const Tensor& gweights);
// expert_mlp.cpp: the experts' fused MLP on occupied rows (f32, f64)
void expert_mlp(const Tensor& x, const Tensor& occupied, const Tensor& w1, const Tensor& b1,
                const Tensor& w2, const Tensor& b2, const Tensor& pre, const Tensor& h,
                const Tensor& out);
void expert_mlp_backward(const Tensor& gy, const Tensor& occupied, const Tensor& w1,
                         const Tensor& b1, const Tensor& w2, const Tensor& pre, const Tensor& gpre,
                         const Tensor& gx, const Tensor& gb1, const Tensor& gb2);
// aux_losses.cpp: the MoE auxiliary losses over routing groups (f32, f64)
void importance_loss(const Tensor& p, int64_t group_size, const Tensor& loss, const Tensor& sums);
void importance_loss_backward(const Tensor& sums, int64_t group_size, const Tensor& g,
                              const Tensor& gp);
void load_loss(const Tensor& logits, const Tensor& noisy, const Tensor& kth, double sigma,
               int64_t group_size, const Tensor& loss, const Tensor& means);
void load_loss_backward(const Tensor& logits, const Tensor& noisy, const Tensor& kth, double sigma,
                        int64_t group_size, const Tensor& means, const Tensor& g,
                        const Tensor& glogits, const Tensor& gnoisy);
bool supports_dtype(Entry entry, DType dtype);

// The same entries taking bf16 storage as well (core/cpu/bf16_storage.cpp): bf16 operands
// are widened to f32, the kernel above runs, outputs are rounded to bf16 once. The backend
// table holds these.
namespace via_f32 {
void binary(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out);
void unary(UnaryOp op, const Tensor& x, const Tensor& out);
void unary_backward(UnaryOp op, const Tensor& x, const Tensor& y, const Tensor& gy,
                    const Tensor& gx);
void add_scaled(const Tensor& dst, const Tensor& src, double alpha);
void scale(const Tensor& dst, double s);
void sum_squares(const Tensor& x, const Tensor& out);
void reduce_sum(const Tensor& x, const Tensor& out);
void gemm(const GemmArgs& args);
void softmax(const Tensor& x, const Tensor& y, SoftmaxKind kind);
void softmax_backward(const Tensor& y, const Tensor& gy, const Tensor& gx, SoftmaxKind kind);
void layer_norm(const Tensor& x, const Tensor& scale, const Tensor& bias, double eps,
                const Tensor& y, const Tensor& mean, const Tensor& rstd);
void layer_norm_backward(const Tensor& x, const Tensor& scale, const Tensor& mean,
                         const Tensor& rstd, const Tensor& gy, const Tensor& gx,
                         const Tensor& gscale, const Tensor& gbias);
void dropout_mask(const Tensor& mask, double rate, RngKey key, uint64_t offset);
void random_fill(const Tensor& out, RngKey key, uint64_t offset, Distribution dist, double lo,
                 double hi);
void patches(const Tensor& images, int64_t p, const Tensor& out, PatchDirection dir);
void index_add(const Tensor& src, const Tensor& idx, const Tensor& out);
void gather(const Tensor& x, const Tensor& idx, const Tensor& out);
void gather_backward(const Tensor& gy, const Tensor& idx, const Tensor& gx);
void bias_gelu(const Tensor& x, const Tensor& bias, const Tensor& y);
void bias_gelu_backward(const Tensor& x, const Tensor& bias, const Tensor& gy, const Tensor& gx);
}  // namespace via_f32

}  // namespace vmoe::cpu
