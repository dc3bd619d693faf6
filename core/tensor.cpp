// Tensor handle: construction, accessors, autograd state.
#include "core/tensor.h"

#include <sstream>

#include "core/autograd.h"
#include "core/backend.h"
#include "core/ops.h"

namespace vmoe {

int64_t shape_numel(const Shape& shape) {
  int64_t n = 1;
  for (int64_t s : shape)
    n *= s;
  return n;
}

std::string shape_str(const Shape& shape) {
  std::ostringstream os;
  os << "[";
  for (size_t i = 0; i < shape.size(); ++i)
    os << (i ? ", " : "") << shape[i];
  os << "]";
  return os.str();
}

Shape contiguous_strides(const Shape& shape) {
  Shape strides(shape.size());
  int64_t s = 1;
  for (size_t i = shape.size(); i-- > 0;) {
    strides[i] = s;
    s *= shape[i];
  }
  return strides;
}

Tensor Tensor::empty(const Shape& shape, DType dtype, Device device) {
  for (int64_t s : shape) {
    if (s < 0) throw std::invalid_argument("negative size in shape " + shape_str(shape));
  }
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = std::make_shared<Storage>(size_t(shape_numel(shape)) * dtype_size(dtype), device);
  impl->shape = shape;
  impl->strides = contiguous_strides(shape);
  impl->dtype = dtype;
  return Tensor(std::move(impl));
}

Tensor Tensor::zeros(const Shape& shape, DType dtype, Device device) {
  return full(shape, 0.0, dtype, device);
}

Tensor Tensor::full(const Shape& shape, double value, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  backend_for(device).fill(t, value);
  return t;
}

Tensor Tensor::view_of(std::shared_ptr<Storage> storage, const Shape& shape, const Shape& strides,
                       int64_t offset, DType dtype) {
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = std::move(storage);
  impl->shape = shape;
  impl->strides = strides;
  impl->offset = offset;
  impl->dtype = dtype;
  return Tensor(std::move(impl));
}

static const TensorImpl& checked(const std::shared_ptr<TensorImpl>& impl) {
  if (!impl) throw std::logic_error("use of an undefined tensor");
  return *impl;
}

const Shape& Tensor::shape() const {
  return checked(impl_).shape;
}
const Shape& Tensor::strides() const {
  return checked(impl_).strides;
}
int64_t Tensor::offset() const {
  return checked(impl_).offset;
}
int64_t Tensor::numel() const {
  return shape_numel(shape());
}
DType Tensor::dtype() const {
  return checked(impl_).dtype;
}
Device Tensor::device() const {
  return checked(impl_).storage->device();
}
const std::shared_ptr<Storage>& Tensor::storage() const {
  return checked(impl_).storage;
}

int64_t Tensor::size(int64_t d) const {
  return shape()[size_t(normalize_axis(d, dim(), "size"))];
}

bool Tensor::is_contiguous() const {
  const auto& sh = shape();
  const auto& st = strides();
  int64_t expected = 1;
  for (size_t i = sh.size(); i-- > 0;) {
    if (sh[i] != 1 && st[i] != expected) return false;
    expected *= sh[i];
  }
  return true;
}

std::string Tensor::desc() const {
  if (!impl_) return "<undefined>";
  return shape_str(shape()) + " " + dtype_name(dtype());
}

void Tensor::check_element_type(DType as) const {
  if (dtype() != as) {
    throw std::invalid_argument(std::string("tensor ") + desc() + " accessed as " + dtype_name(as));
  }
}

void* Tensor::device_raw() const {
  const TensorImpl& t = checked(impl_);
  return static_cast<char*>(t.storage->data()) + t.offset * int64_t(dtype_size(t.dtype));
}

// Host access to memory the host cannot read is a bug in the caller: say which call and how
// to fix it.
static void require_host_readable(const Tensor& t, const char* call) {
  if (!t.device().host_readable()) {
    throw std::logic_error(std::string("Tensor::") + call + " on " + t.device().str() +
                           " memory (" + t.desc() +
                           "): the host cannot read it; copy it with .to(kCpu) or .cpu() first");
  }
}

void* Tensor::raw_data() const {
  require_host_readable(*this, "data()");
  return device_raw();
}

Tensor Tensor::to(Device target) const {
  const Device source = device();
  if (source == target) return *this;
  const Tensor src = detach().contiguous();
  Tensor out = empty(shape(), dtype(), target);
  const size_t bytes = size_t(numel()) * dtype_size(dtype());
  if (bytes == 0) return out;
  if (source.host_readable()) {
    backend_for(target).copy_from_host(src.device_raw(), out.device_raw(), bytes);
  } else if (target.host_readable()) {
    backend_for(source).copy_to_host(src.device_raw(), out.device_raw(), bytes);
  } else {
    // Between two devices: staged through the host (peer copies belong to the device backend
    // once there is more than one non-host device in a process).
    Tensor staged = src.to(kCpu);
    backend_for(target).copy_from_host(staged.device_raw(), out.device_raw(), bytes);
  }
  return out;
}

template <class T>
std::vector<T> Tensor::to_vector() const {
  require_host_readable(*this, "to_vector()");
  Tensor c = contiguous();
  const T* p = c.data<T>();
  return std::vector<T>(p, p + c.numel());
}
template std::vector<float> Tensor::to_vector<float>() const;
template std::vector<double> Tensor::to_vector<double>() const;
template std::vector<int32_t> Tensor::to_vector<int32_t>() const;
template std::vector<int64_t> Tensor::to_vector<int64_t>() const;
template std::vector<uint8_t> Tensor::to_vector<uint8_t>() const;
template std::vector<BFloat16> Tensor::to_vector<BFloat16>() const;

double Tensor::item() const {
  require_host_readable(*this, "item()");
  if (numel() != 1) throw std::invalid_argument("item() needs one element, got " + desc());
  Tensor d = to_dtype(*this, DType::f64).contiguous();
  return *d.data<double>();
}

bool Tensor::requires_grad() const {
  return checked(impl_).requires_grad;
}

Tensor& Tensor::set_requires_grad(bool on) {
  if (on && !is_floating(dtype())) {
    throw std::invalid_argument("only floating tensors can require grad, got " + desc());
  }
  impl_->requires_grad = on;
  return *this;
}

Tensor Tensor::grad() const {
  return checked(impl_).grad;
}
void Tensor::set_grad(const Tensor& g) const {
  impl_->grad = g;
}
const std::shared_ptr<Node>& Tensor::grad_fn() const {
  return checked(impl_).grad_fn;
}
void Tensor::set_grad_fn(std::shared_ptr<Node> node) const {
  impl_->grad_fn = std::move(node);
}

void Tensor::backward(const Tensor& seed) const {
  run_backward(*this, seed);
}

Tensor Tensor::detach() const {
  const TensorImpl& t = checked(impl_);
  return view_of(t.storage, t.shape, t.strides, t.offset, t.dtype);
}

Tensor Tensor::reshape(const Shape& s) const {
  return vmoe::reshape(*this, s);
}
Tensor Tensor::permute(const std::vector<int64_t>& o) const {
  return vmoe::permute(*this, o);
}
Tensor Tensor::transpose(int64_t a, int64_t b) const {
  return vmoe::transpose(*this, a, b);
}
Tensor Tensor::slice(int64_t d, int64_t s, int64_t e) const {
  return vmoe::slice(*this, d, s, e);
}
Tensor Tensor::contiguous() const {
  return vmoe::contiguous(*this);
}
Tensor Tensor::to(DType t) const {
  return to_dtype(*this, t);
}
Tensor Tensor::clone() const {
  Tensor out = empty(shape(), dtype(), device());
  copy_(out, *this);
  return out;
}

}  // namespace vmoe
