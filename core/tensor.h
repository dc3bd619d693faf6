// Tensor: a cheap handle to (storage, shape, strides, offset, dtype, device) plus autograd
// state. Copies of a Tensor share everything; views share the storage only.
#pragma once
#include <algorithm>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/storage.h"

namespace vmoe {

using Shape = std::vector<int64_t>;

int64_t shape_numel(const Shape& shape);
std::string shape_str(const Shape& shape);
Shape contiguous_strides(const Shape& shape);

class Node;
struct TensorImpl;

template <class T>
constexpr DType dtype_of();
template <>
constexpr DType dtype_of<float>() {
  return DType::f32;
}
template <>
constexpr DType dtype_of<double>() {
  return DType::f64;
}
template <>
constexpr DType dtype_of<int32_t>() {
  return DType::i32;
}
template <>
constexpr DType dtype_of<int64_t>() {
  return DType::i64;
}
template <>
constexpr DType dtype_of<uint8_t>() {
  return DType::u8;
}
template <>
constexpr DType dtype_of<BFloat16>() {
  return DType::bf16;
}

class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  // Uninitialised, contiguous. The device defaults to default_device() (kCpu unless a test
  // main changed it).
  static Tensor empty(const Shape& shape, DType dtype = DType::f32,
                      Device device = default_device());
  static Tensor zeros(const Shape& shape, DType dtype = DType::f32,
                      Device device = default_device());
  static Tensor full(const Shape& shape, double value, DType dtype = DType::f32,
                     Device device = default_device());
  // Host values copied to `device`.
  template <class T>
  static Tensor from_vector(const std::vector<T>& values, const Shape& shape,
                            Device device = default_device());
  // A view over existing storage.
  static Tensor view_of(std::shared_ptr<Storage> storage, const Shape& shape, const Shape& strides,
                        int64_t offset, DType dtype);

  bool defined() const { return impl_ != nullptr; }
  const Shape& shape() const;
  const Shape& strides() const;
  int64_t offset() const;
  int64_t dim() const { return int64_t(shape().size()); }
  // Size of axis d; negative d counts from the end.
  int64_t size(int64_t d) const;
  int64_t numel() const;
  DType dtype() const;
  Device device() const;
  const std::shared_ptr<Storage>& storage() const;
  bool is_contiguous() const;
  // "[2, 3] f32" — for error messages.
  std::string desc() const;

  // Host pointer to element [0, ..., 0]; T must match dtype(). Only for memory the host can
  // read (device().host_readable()); anything else is an error naming the call: copy with
  // to(kCpu) / cpu() first.
  template <class T>
  T* data() const;
  void* raw_data() const;
  template <class T>
  std::vector<T> to_vector() const;  // contiguous copy in row-major order (host memory only)
  double item() const;               // value of a one-element tensor as double (host only)

  // Pointer to element [0, ..., 0] in the device's own address space, unchecked: for backend
  // kernels and copies, and for transports that take device pointers (GEMM arguments, NCCL).
  // Host code never dereferences it.
  template <class T>
  T* device_data() const;
  void* device_raw() const;

  // The one way data moves between devices: a contiguous copy on `device` (this tensor itself
  // when it is already there). Not recorded by autograd.
  Tensor to(Device device) const;
  Tensor cpu() const { return to(kCpu); }

  // Autograd.
  bool requires_grad() const;
  Tensor& set_requires_grad(bool on);
  Tensor grad() const;
  void set_grad(const Tensor& g) const;
  const std::shared_ptr<Node>& grad_fn() const;
  void set_grad_fn(std::shared_ptr<Node> node) const;
  // Back-propagates from this tensor (a scalar unless `seed` is given).
  void backward(const Tensor& seed = {}) const;
  // Same data, no autograd history.
  Tensor detach() const;

  // Shorthands for the ops of the same name in core/ops.h.
  Tensor reshape(const Shape& shape) const;
  Tensor permute(const std::vector<int64_t>& order) const;
  Tensor transpose(int64_t a, int64_t b) const;
  Tensor slice(int64_t dim, int64_t start, int64_t end) const;
  Tensor contiguous() const;
  Tensor to(DType dtype) const;
  Tensor clone() const;

  const std::shared_ptr<TensorImpl>& impl() const { return impl_; }

 private:
  // Throws std::invalid_argument unless the elements are of type `as`.
  void check_element_type(DType as) const;

  std::shared_ptr<TensorImpl> impl_;
};

struct TensorImpl {
  std::shared_ptr<Storage> storage;
  Shape shape;
  Shape strides;       // in elements
  int64_t offset = 0;  // in elements
  DType dtype = DType::f32;
  bool requires_grad = false;
  Tensor grad;                    // accumulated gradient of a leaf
  std::shared_ptr<Node> grad_fn;  // the node that produced this tensor, if recorded
};

template <class T>
T* Tensor::data() const {
  check_element_type(dtype_of<T>());
  return static_cast<T*>(raw_data());
}

template <class T>
T* Tensor::device_data() const {
  check_element_type(dtype_of<T>());
  return static_cast<T*>(device_raw());
}

template <class T>
Tensor Tensor::from_vector(const std::vector<T>& values, const Shape& shape, Device device) {
  if (int64_t(values.size()) != shape_numel(shape)) {
    throw std::invalid_argument("from_vector: " + std::to_string(values.size()) +
                                " values do not fill shape " + shape_str(shape));
  }
  Tensor t = empty(shape, dtype_of<T>(), kCpu);
  std::copy(values.begin(), values.end(), t.data<T>());
  return t.to(device);
}

}  // namespace vmoe
