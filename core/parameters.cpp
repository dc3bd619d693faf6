// ParameterStore: declaration, flat allocation, initialisation.
#include "core/parameters.h"

#include <cmath>
#include <stdexcept>

#include "core/ops.h"

namespace vmoe {

ParamId ParameterStore::declare(const std::string& name, const Shape& shape, InitSpec init,
                                WeightDecay decay, Sharding sharding) {
  if (allocated_) throw std::logic_error("parameter '" + name + "' declared after allocate()");
  if (by_name_.count(name)) throw std::invalid_argument("duplicate parameter name '" + name + "'");
  ParamId id = infos_.size();
  infos_.push_back({name, shape, shape, init, sharding, decay, 0});
  by_name_[name] = id;
  return id;
}

void initialize(Tensor& t, const InitSpec& spec, RngKey key) {
  if (spec.same_for_leading && t.dim() >= 1) {
    InitSpec one = spec;
    one.same_for_leading = false;
    Tensor first =
        Tensor::empty(Shape(t.shape().begin() + 1, t.shape().end()), t.dtype(), t.device());
    initialize(first, one, key);
    for (int64_t i = 0; i < t.size(0); ++i) {
      Tensor row = t.slice(0, i, i + 1).reshape(first.shape());
      copy_(row, first);
    }
    return;
  }
  const Shape& shape = t.shape();
  Tensor v;
  switch (spec.kind) {
    case InitSpec::Kind::zeros:
      fill_(t, 0.0);
      return;
    case InitSpec::Kind::constant:
      fill_(t, spec.value);
      return;
    case InitSpec::Kind::normal:
      v = randn(shape, key, 0, DType::f64, t.device()) * spec.value;
      break;
    case InitSpec::Kind::uniform:
      v = rand_uniform(shape, key, -spec.value, spec.value, 0, DType::f64, t.device());
      break;
    case InitSpec::Kind::xavier_uniform: {
      const double limit = std::sqrt(6.0 / (spec.fan_in + spec.fan_out));
      v = rand_uniform(shape, key, -limit, limit, 0, DType::f64, t.device());
      break;
    }
    case InitSpec::Kind::lecun_normal: {
      // Truncated normal (|z| < 2) with the variance of N(0, 1 / fan_in), as in JAX/Flax;
      // 0.87962566 is the std of a standard normal truncated to (-2, 2).
      const double std = std::sqrt(1.0 / spec.fan_in) / 0.87962566103423978;
      std::vector<double> values(size_t(t.numel()));
      uint64_t counter = 0;
      for (double& x : values) {
        double z;
        do
          z = normal01(key, counter++);
        while (std::abs(z) >= 2.0);
        x = z * std;
      }
      v = Tensor::from_vector(values, shape, t.device());  // drawn on the host: init only
      break;
    }
  }
  copy_(t, v);
}

void ParameterStore::set_expert_shard(ExpertShard shard) {
  if (allocated_) throw std::logic_error("set_expert_shard() after allocate()");
  if (shard.num_experts > 0 &&
      (shard.first < 0 || shard.count < 1 || shard.first + shard.count > shard.num_experts)) {
    throw std::invalid_argument("expert shard [" + std::to_string(shard.first) + ", " +
                                std::to_string(shard.first + shard.count) + ") is not within " +
                                std::to_string(shard.num_experts) + " experts");
  }
  shard_ = shard;
}

namespace {

// Expert parameters are drawn expert by expert, each from its own key, so that a process
// holding experts [first, first + count) gets exactly those experts' values.
void initialize_experts(Tensor& local, const InitSpec& spec, RngKey key, int64_t first) {
  if (spec.same_for_leading) {
    initialize(local, spec, key);
    return;
  }
  const Shape one(local.shape().begin() + 1, local.shape().end());
  for (int64_t i = 0; i < local.size(0); ++i) {
    Tensor row = local.slice(0, i, i + 1).reshape(one);
    initialize(row, spec, derive(key, "expert", uint64_t(first + i)));
  }
}

}  // namespace

void ParameterStore::allocate(uint64_t seed, DType dtype, Device device, ParamInit init) {
  if (allocated_) throw std::logic_error("ParameterStore::allocate() called twice");
  dtype_ = dtype;
  device_ = device;
  int64_t sizes[kNumShardings] = {0, 0};
  for (ParamInfo& p : infos_) {
    p.local_shape = p.shape;
    if (p.sharding == Sharding::expert && shard_.num_experts > 0) {
      if (p.shape.empty() || p.shape[0] != shard_.num_experts) {
        throw std::invalid_argument("expert parameter '" + p.name + "' has shape " +
                                    shape_str(p.shape) + ", expected a leading axis of " +
                                    std::to_string(shard_.num_experts) + " experts");
      }
      p.local_shape[0] = shard_.count;
    }
    p.offset = sizes[size_t(p.sharding)];
    sizes[size_t(p.sharding)] += shape_numel(p.local_shape);
  }
  for (int s = 0; s < kNumShardings; ++s) {
    flat_values_[s] = Tensor::zeros({sizes[s]}, dtype, device);
    flat_grads_[s] = Tensor::zeros({sizes[s]}, dtype, device);
    flat_decay_[s] = Tensor::zeros({sizes[s]}, DType::u8, device);  // 1 byte, not a value's
  }
  const RngKey root{seed, 0};
  for (const ParamInfo& p : infos_) {
    const size_t s = size_t(p.sharding);
    const Shape strides = contiguous_strides(p.local_shape);
    Tensor value =
        Tensor::view_of(flat_values_[s].storage(), p.local_shape, strides, p.offset, dtype);
    Tensor grad =
        Tensor::view_of(flat_grads_[s].storage(), p.local_shape, strides, p.offset, dtype);
    const RngKey key = derive(root, "init/" + p.name);
    if (init == ParamInit::zeros) {
      // Already zero (Tensor::zeros above).
    } else if (p.sharding == Sharding::expert) {
      initialize_experts(value, p.init, key, shard_.num_experts > 0 ? shard_.first : 0);
    } else {
      initialize(value, p.init, key);
    }
    if (p.decay == WeightDecay::yes) {
      Tensor mask = flat_decay_[s].slice(0, p.offset, p.offset + shape_numel(p.local_shape));
      fill_(mask, 1.0);
    }
    value.set_requires_grad(true);
    value.set_grad(grad);
    values_.push_back(value);
    grads_.push_back(grad);
  }
  allocated_ = true;
}

ParamId ParameterStore::id(const std::string& name) const {
  auto it = by_name_.find(name);
  if (it == by_name_.end()) throw std::out_of_range("no parameter named '" + name + "'");
  return it->second;
}

const Tensor& ParameterStore::value(const std::string& name) const {
  return values_.at(id(name));
}
const Tensor& ParameterStore::grad(const std::string& name) const {
  return grads_.at(id(name));
}

int64_t ParameterStore::num_elements() const {
  int64_t n = 0;
  for (const ParamInfo& p : infos_)
    n += shape_numel(p.shape);
  return n;
}

void ParameterStore::zero_grads() {
  for (Tensor& g : flat_grads_)
    if (g.defined()) fill_(g, 0.0);
}

}  // namespace vmoe
