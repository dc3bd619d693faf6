// STUB (being written): every entry throws until its kernels land.
#include <stdexcept>

#include "core/cuda/entries.h"

namespace vmoe::cuda {

void dropout_mask(const Tensor&, double, RngKey, uint64_t) {
  throw std::logic_error("cuda::dropout_mask is not implemented yet");
}
void random_fill(const Tensor&, RngKey, uint64_t, Distribution, double, double) {
  throw std::logic_error("cuda::random_fill is not implemented yet");
}
void patches(const Tensor&, int64_t, const Tensor&, PatchDirection) {
  throw std::logic_error("cuda::patches is not implemented yet");
}
void index_select(const Tensor&, const Tensor&, const Tensor&) {
  throw std::logic_error("cuda::index_select is not implemented yet");
}
void index_add(const Tensor&, const Tensor&, const Tensor&) {
  throw std::logic_error("cuda::index_add is not implemented yet");
}
void gather(const Tensor&, const Tensor&, const Tensor&) {
  throw std::logic_error("cuda::gather is not implemented yet");
}
void gather_backward(const Tensor&, const Tensor&, const Tensor&) {
  throw std::logic_error("cuda::gather_backward is not implemented yet");
}
void topk(const Tensor&, int64_t, const Tensor&, const Tensor&) {
  throw std::logic_error("cuda::topk is not implemented yet");
}
void argsort(const Tensor&, SortOrder, const Tensor&) {
  throw std::logic_error("cuda::argsort is not implemented yet");
}
void one_hot(const Tensor&, const Tensor&) {
  throw std::logic_error("cuda::one_hot is not implemented yet");
}
void assign_slots(const Tensor&, const Tensor&, const SlotLayout&, const Tensor&, const Tensor&,
                  const Tensor&) {
  throw std::logic_error("cuda::assign_slots is not implemented yet");
}
void adamw_update(const UpdateArgs&, const AdamWOptions&) {
  throw std::logic_error("cuda::adamw_update is not implemented yet");
}
void sgd_update(const UpdateArgs&, const SgdOptions&) {
  throw std::logic_error("cuda::sgd_update is not implemented yet");
}

}  // namespace vmoe::cuda
