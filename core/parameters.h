// ParameterStore: every trainable tensor of a model, named hierarchically
// ("encoder/block_03/mlp/fc1/kernel") and stored in one flat value buffer and one flat
// gradient buffer per sharding class, so that optimizers and gradient reduction work on a
// few large contiguous arrays while layers see ordinary tensors (views into them).
#pragma once
#include <map>
#include <string>
#include <vector>

#include "core/rng.h"
#include "core/tensor.h"

namespace vmoe {

// Replicated parameters are identical on every rank; expert parameters are split by their
// leading [E] axis across expert-parallel ranks.
enum class Sharding : uint8_t { replicated, expert };
inline constexpr int kNumShardings = 2;

enum class WeightDecay : bool { no = false, yes = true };

// Whether allocate() initialises parameters as declared or leaves them zero.
enum class ParamInit : bool { declared = false, zeros = true };

struct InitSpec {
  enum class Kind : uint8_t { zeros, constant, normal, uniform, xavier_uniform, lecun_normal };
  Kind kind = Kind::zeros;
  double value = 0;   // constant value; normal std; uniform half-width
  double fan_in = 0;  // xavier / lecun (explicit, since kernels may be reshaped views)
  double fan_out = 0;
  // Draw once for shape[1:] and copy along the leading axis (identical experts).
  bool same_for_leading = false;

  static InitSpec zeros() { return {}; }
  static InitSpec constant(double v) { return {Kind::constant, v}; }
  static InitSpec normal(double std) { return {Kind::normal, std}; }
  static InitSpec xavier_uniform(double in, double out) {
    return {Kind::xavier_uniform, 0, in, out};
  }
  static InitSpec lecun_normal(double in) { return {Kind::lecun_normal, 0, in, 0}; }
};

struct ParamInfo {
  std::string name;
  Shape shape;        // global shape
  Shape local_shape;  // what this process holds: [E_local, ...] for expert parameters
  InitSpec init;
  Sharding sharding = Sharding::replicated;
  WeightDecay decay = WeightDecay::no;
  int64_t offset = 0;  // in elements, within the flat buffer of its sharding class
};

using ParamId = size_t;

// The experts a process holds: [first, first + count) of num_experts. Every expert parameter
// has leading axis num_experts and is allocated as its [count, ...] slice.
struct ExpertShard {
  int64_t num_experts = 0;  // 0: not sharded, every expert is local
  int64_t first = 0;
  int64_t count = 0;
};

class ParameterStore {
 public:
  // Declares a parameter; names must be unique. Returns its id for fast access.
  ParamId declare(const std::string& name, const Shape& shape, InitSpec init,
                  WeightDecay decay = WeightDecay::no, Sharding sharding = Sharding::replicated);
  // Holds only `shard`'s experts (call before allocate()).
  void set_expert_shard(ExpertShard shard);
  const ExpertShard& expert_shard() const { return shard_; }
  // Allocates the flat buffers and initialises every parameter from `seed`; the values of a
  // parameter depend only on (seed, its name), not on declaration order, and an expert's
  // values only on (seed, name, expert index), not on which process holds it. Values,
  // gradients (and the optimizers' state) live on `device`.
  // ParamInit::zeros leaves every value 0 (the buffers are still written in full): a quick
  // allocation for memory planning (`vmoe plan --allocate-rank`), not for training.
  void allocate(uint64_t seed, DType dtype = DType::f32, Device device = default_device(),
                ParamInit init = ParamInit::declared);
  bool allocated() const { return allocated_; }

  // The local value (expert parameters: this process's experts).
  const Tensor& operator[](ParamId id) const { return values_.at(id); }
  const Tensor& value(const std::string& name) const;
  const Tensor& grad(const std::string& name) const;
  ParamId id(const std::string& name) const;
  bool contains(const std::string& name) const { return by_name_.count(name) > 0; }
  const std::vector<ParamInfo>& infos() const { return infos_; }
  size_t size() const { return infos_.size(); }
  int64_t num_elements() const;  // global count, over all experts
  DType dtype() const { return dtype_; }
  Device device() const { return device_; }

  // [n] flat value / gradient buffer of one sharding class (may be empty).
  const Tensor& flat_values(Sharding s) const { return flat_values_[size_t(s)]; }
  const Tensor& flat_grads(Sharding s) const { return flat_grads_[size_t(s)]; }
  // [n] u8: 1 where weight decay applies, else 0 (a byte per value, not a value's width).
  const Tensor& flat_decay_mask(Sharding s) const { return flat_decay_[size_t(s)]; }

  void zero_grads();

 private:
  std::vector<ParamInfo> infos_;
  std::map<std::string, ParamId> by_name_;
  std::vector<Tensor> values_, grads_;
  Tensor flat_values_[kNumShardings], flat_grads_[kNumShardings], flat_decay_[kNumShardings];
  DType dtype_ = DType::f32;
  Device device_ = kCpu;
  ExpertShard shard_;
  bool allocated_ = false;
};

// Fills t (any float dtype) according to spec with numbers keyed by `key`.
void initialize(Tensor& t, const InitSpec& spec, RngKey key);

}  // namespace vmoe
