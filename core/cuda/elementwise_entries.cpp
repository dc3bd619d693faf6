// STUB (being written): every entry throws until its kernels land.
#include <stdexcept>

#include "core/cuda/entries.h"

namespace vmoe::cuda {

void copy(const Tensor&, const Tensor&) {
  throw std::logic_error("cuda::copy is not implemented yet");
}
void fill(const Tensor&, double) {
  throw std::logic_error("cuda::fill is not implemented yet");
}
void binary(BinaryOp, const Tensor&, const Tensor&, const Tensor&) {
  throw std::logic_error("cuda::binary is not implemented yet");
}
void unary(UnaryOp, const Tensor&, const Tensor&) {
  throw std::logic_error("cuda::unary is not implemented yet");
}
void unary_backward(UnaryOp, const Tensor&, const Tensor&, const Tensor&, const Tensor&) {
  throw std::logic_error("cuda::unary_backward is not implemented yet");
}
void add_scaled(const Tensor&, const Tensor&, double) {
  throw std::logic_error("cuda::add_scaled is not implemented yet");
}
void scale(const Tensor&, double) {
  throw std::logic_error("cuda::scale is not implemented yet");
}
void sum_squares(const Tensor&, const Tensor&) {
  throw std::logic_error("cuda::sum_squares is not implemented yet");
}
void reduce_sum(const Tensor&, const Tensor&) {
  throw std::logic_error("cuda::reduce_sum is not implemented yet");
}
void max_last(const Tensor&, const Tensor&, const Tensor&) {
  throw std::logic_error("cuda::max_last is not implemented yet");
}
void cumsum(const Tensor&, int64_t, int64_t, int64_t, ScanDirection, const Tensor&) {
  throw std::logic_error("cuda::cumsum is not implemented yet");
}
void softmax(const Tensor&, const Tensor&, SoftmaxKind) {
  throw std::logic_error("cuda::softmax is not implemented yet");
}
void softmax_backward(const Tensor&, const Tensor&, const Tensor&, SoftmaxKind) {
  throw std::logic_error("cuda::softmax_backward is not implemented yet");
}
void layer_norm(const Tensor&, const Tensor&, const Tensor&, double, const Tensor&, const Tensor&,
                const Tensor&) {
  throw std::logic_error("cuda::layer_norm is not implemented yet");
}
void layer_norm_backward(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                         const Tensor&, const Tensor&, const Tensor&) {
  throw std::logic_error("cuda::layer_norm_backward is not implemented yet");
}
void softmax_xent(const Tensor&, const Tensor&, const Tensor&, const Tensor&) {
  throw std::logic_error("cuda::softmax_xent is not implemented yet");
}
void sigmoid_xent(const Tensor&, const Tensor&, const Tensor&, const Tensor&) {
  throw std::logic_error("cuda::sigmoid_xent is not implemented yet");
}

}  // namespace vmoe::cuda
