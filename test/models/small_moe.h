// A small MoE layer with a non-trivial random router and experts, the scalar loss that the
// layer tests differentiate, and the central-difference check of every parameter and input
// gradient in f64: shared by the tests of each router (test_moe*.cpp).
#pragma once
#include <algorithm>
#include <cmath>
#include <memory>
#include <vector>

#include "core/allocator.h"
#include "core/autograd.h"
#include "core/backend.h"
#include "core/flop_counter.h"
#include "core/ops.h"
#include "core/parameters.h"
#include "models/moe_layer.h"

namespace vmoe::testing {

struct SmallMoe {
  ParameterStore store;
  std::unique_ptr<MoeLayer> layer;
  SmallMoe(MoeConfig c, int64_t tokens_per_image, DType dtype, int64_t dim = 6, int64_t mlp = 5,
           uint64_t seed = 3) {
    c.moe_blocks = {0};
    layer = std::make_unique<MoeLayer>(store, "moe", dim, mlp, tokens_per_image, c);
    store.allocate(seed, dtype);
    // Non-identical experts and a non-trivial router, so every gradient path matters.
    for (const ParamInfo& info : store.infos()) {
      Tensor v = store.value(info.name).detach();
      initialize(v, InitSpec::normal(0.5), derive(RngKey{seed, 9}, info.name));
    }
  }
};

// Sets element i of a contiguous tensor on its device.
inline void set_element(const Tensor& t, int64_t i, double value) {
  Tensor at = t.reshape({-1}).slice(0, i, i + 1);
  fill_(at, value);
}

// max |a - b| over max |a|: how far a bf16 run `b` is from the f32 run `a`.
inline double worst_relative_to_largest(const std::vector<float>& a, const std::vector<float>& b) {
  double worst = 0, largest = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    worst = std::max(worst, double(std::abs(a[i] - b.at(i))));
    largest = std::max(largest, double(std::abs(a[i])));
  }
  return largest > 0 ? worst / largest : worst;
}

// What one training forward of the layer keeps and computes, as the plan counts it: the bytes
// still allocated after the forward (tape on; the report sink attached, as the ViT attaches
// it), the forward's FLOPs and those of the backward of sum(out) + aux.
struct MeasuredForward {
  int64_t kept_bytes = 0, forward_flops = 0, backward_flops = 0;
  double report_flops = 0;
  DType out_dtype = DType::f32;
};

inline MeasuredForward measure_training_forward(const SmallMoe& m, const Tensor& x,
                                                ForwardContext ctx) {
  auto in_use = [] {
    return int64_t(backend_for(default_device()).allocator->stats().in_use_bytes);
  };
  std::vector<MoeReport> reports;
  ctx.moe_reports = &reports;
  MeasuredForward r;
  const int64_t before = in_use();
  FeedForwardOutput y;
  {
    FlopCount flops;
    y = (*m.layer)(x, ctx, 0);
    r.forward_flops = flops.flops();
  }
  r.kept_bytes = in_use() - before;
  r.out_dtype = y.out.dtype();
  r.report_flops = reports.at(0).flops;
  FlopCount flops;
  Tensor loss = sum_all(to_dtype(y.out, DType::f32));
  if (y.aux_loss.defined()) loss = loss + y.aux_loss;
  loss.backward();
  r.backward_flops = flops.flops();
  return r;
}

// A cost's kept bytes with its small tensors at the allocator's smallest block.
inline int64_t planned_kept_bytes(const LayerCost& cost) {
  return cost.kept_bytes + cost.small_tensors * int64_t(CachingAllocator::block_size(1));
}

// loss = sum(out * R) + aux, a scalar that depends on every output element; the auxiliary
// loss as the layer returns it (no report sink attached).
inline double moe_loss(const SmallMoe& m, const Tensor& x, const Tensor& r,
                       const ForwardContext& ctx, bool backward) {
  const FeedForwardOutput y = (*m.layer)(x, ctx, 0);
  Tensor loss = sum_all(y.out * r);
  if (y.aux_loss.defined()) loss = loss + y.aux_loss;
  if (backward) loss.backward();
  return loss.cpu().item();
}

// The largest gradient error of the layer's f64 loss over every parameter element and every
// element of x, against central differences, in units of the tolerance |g - numeric| <=
// 1e-7 + 1e-5 |numeric| (so <= 1 passes). Backward runs here.
inline double worst_gradient_error(SmallMoe& m, const Tensor& x_in, const Tensor& r,
                                   const ForwardContext& ctx) {
  Tensor x = x_in.detach().clone().set_requires_grad(true);
  m.store.zero_grads();
  moe_loss(m, x, r, ctx, true);
  const double eps = 1e-6;
  double worst = 0;
  auto check = [&](const Tensor& values, const std::vector<double>& grad, const Tensor& input) {
    const std::vector<double> w = values.cpu().to_vector<double>();
    for (int64_t i = 0; i < values.numel(); ++i) {
      const double keep = w[size_t(i)];
      set_element(values, i, keep + eps);
      const double up = moe_loss(m, input, r, ctx, false);
      set_element(values, i, keep - eps);
      const double down = moe_loss(m, input, r, ctx, false);
      set_element(values, i, keep);
      const double numeric = (up - down) / (2 * eps);
      worst =
          std::max(worst, std::abs(numeric - grad[size_t(i)]) / (1e-7 + 1e-5 * std::abs(numeric)));
    }
  };
  NoGrad no_grad;
  const Tensor xv = x.detach().clone();
  for (int s = 0; s < kNumShardings; ++s) {
    check(m.store.flat_values(Sharding(s)),
          m.store.flat_grads(Sharding(s)).cpu().to_vector<double>(), xv);
  }
  check(xv, x.grad().cpu().to_vector<double>(), xv);
  return worst;
}

}  // namespace vmoe::testing
