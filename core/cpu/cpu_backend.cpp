// The CPU backend table and device dispatch.
#include <stdexcept>

#include "core/cpu/kernels.h"

namespace vmoe {

const Backend& cpu_backend() {
  static const Backend table{
      cpu::copy,
      cpu::fill,
      cpu::binary,
      cpu::unary,
      cpu::unary_backward,
      cpu::add_scaled,
      cpu::scale,
      cpu::sum_squares,
      cpu::reduce_sum,
      cpu::max_last,
      cpu::gemm,
      cpu::softmax,
      cpu::softmax_backward,
      cpu::layer_norm,
      cpu::layer_norm_backward,
      cpu::softmax_xent,
      cpu::sigmoid_xent,
      cpu::dropout_mask,
      cpu::random_fill,
      cpu::patches,
      cpu::index_select,
      cpu::index_add,
      cpu::gather,
      cpu::gather_backward,
      cpu::topk,
      cpu::argsort,
      cpu::cumsum,
      cpu::one_hot,
  };
  return table;
}

const Backend& backend_for(Device device) {
  if (device.type == DeviceType::cpu) return cpu_backend();
  throw std::runtime_error("no backend for device " + device.str() +
                           " in this build (configure with -DVMOE_CUDA=ON)");
}

}  // namespace vmoe
