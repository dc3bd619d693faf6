// The fused auxiliary losses over routing groups (core/ops.h fused_importance_loss and
// fused_load_loss) against the composed ops (models/moe_losses.cpp): the same value and the same
// gradients bit for bit, in f32 and f64, on router-like inputs; finite differences; bad input.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cstring>
#include <iomanip>
#include <sstream>
#include <string>
#include <vector>

#include "core/autograd.h"
#include "core/backend.h"
#include "core/kernel_errors.h"
#include "core/ops.h"
#include "models/moe_losses.h"
#include "test/core/gradcheck.h"

using namespace vmoe;

namespace {

struct Shape3 {
  int64_t n, e, group_size, k;
};

// Router-like inputs: logits, the noisy logits and each row's k-th choice under the noise.
struct RouterInputs {
  Tensor logits, noisy, kth;
  double sigma;
};

RouterInputs router_inputs(const Shape3& s, DType dtype, uint64_t seed) {
  RouterInputs r;
  r.sigma = 1.0 / double(s.e);
  r.logits = randn({s.n, s.e}, RngKey{seed, 1}, 0, dtype) * 0.7;
  r.noisy = r.logits + randn({s.n, s.e}, RngKey{seed, 2}, 0, dtype) * r.sigma;
  r.kth = topk(r.noisy, s.k).indices.slice(1, s.k - 1, s.k).reshape({s.n});
  return r;
}

// How many elements of a and b (same shape, f32 or f64) differ in their bits; the first one's
// index and values go to `where`.
int64_t differing(const Tensor& a, const Tensor& b, std::string& where) {
  REQUIRE(a.shape() == b.shape());
  const Tensor ca = contiguous(a).cpu(), cb = contiguous(b).cpu();
  const size_t width = dtype_size(ca.dtype());
  const auto* pa = static_cast<const unsigned char*>(ca.device_raw());
  const auto* pb = static_cast<const unsigned char*>(cb.device_raw());
  const std::vector<double> va = to_dtype(ca, DType::f64).to_vector<double>();
  const std::vector<double> vb = to_dtype(cb, DType::f64).to_vector<double>();
  int64_t count = 0;
  for (int64_t i = 0; i < ca.numel(); ++i) {
    const double x = va[size_t(i)], y = vb[size_t(i)];
    if (std::memcmp(pa + size_t(i) * width, pb + size_t(i) * width, width) == 0) continue;
    if (count++ == 0) {
      std::ostringstream s;
      s << std::setprecision(17) << "element " << i << ": " << x << " vs " << y;
      where = s.str();
    }
  }
  return count;
}

struct Run {
  Tensor value, g_logits, g_noisy;
};

// The loss on fresh leaves, its backward from an upstream gradient like the weighted aux loss's.
template <class Loss>
Run run(const RouterInputs& in, Loss loss) {
  Tensor logits = in.logits.detach().set_requires_grad(true);
  Tensor noisy = in.noisy.detach().set_requires_grad(true);
  Tensor l = loss(logits, noisy);
  (l * 0.0125).backward();
  return {l.detach(), logits.grad(), noisy.grad()};
}

void check_same(const Run& fused, const Run& composed, bool load) {
  INFO((load ? "load" : "importance") << " loss");
  std::string where;
  CHECK(differing(fused.value, composed.value, where) == 0);
  REQUIRE(fused.g_logits.defined());
  const int64_t logits_differ = differing(fused.g_logits, composed.g_logits, where);
  INFO(where);
  CHECK(logits_differ == 0);
  if (load) {
    REQUIRE(fused.g_noisy.defined());
    const int64_t noisy_differ = differing(fused.g_noisy, composed.g_noisy, where);
    INFO(where);
    CHECK(noisy_differ == 0);
  }
}

}  // namespace

TEST_CASE("moe aux losses: the fused ops give the composed ops' value and gradients bit for bit") {
  const Device device = Tensor::zeros({1}, DType::f32).device();  // the suite's
  REQUIRE(aux_losses_are_fused(device, DType::f32));
  REQUIRE(aux_losses_are_fused(device, DType::f64));
  // fashion_vmoe_ti's layer (16 groups of 400 tokens, two chunks of reduce_sum's rows per
  // group), a last partial group, a single partial group, one-row groups, one expert.
  const std::vector<Shape3> shapes = {{6400, 8, 400, 2}, {1000, 8, 400, 2}, {150, 4, 400, 1},
                                      {37, 3, 5, 2},     {12, 5, 1, 2},     {40, 1, 7, 1},
                                      {700, 32, 600, 2}};
  for (DType dtype : {DType::f32, DType::f64}) {
    for (const Shape3& s : shapes) {
      INFO(dtype_name(dtype) << " N " << s.n << ", E " << s.e << ", group " << s.group_size);
      const RouterInputs in = router_inputs(s, dtype, uint64_t(s.n * 31 + s.e));
      auto importance = [&](bool fused) {
        return [&, fused](const Tensor& logits, const Tensor&) {
          const Tensor p = softmax(logits);
          return fused ? fused_importance_loss(p, s.group_size)
                       : grouped_importance_loss_composed(p, s.group_size);
        };
      };
      if (s.e > 1) {
        const Run fused = run(in, importance(true));
        CHECK(fused.value.cpu().item() > 0);
        check_same(fused, run(in, importance(false)), false);
      }
      auto load = [&](bool fused) {
        return [&, fused](const Tensor& logits, const Tensor& noisy) {
          return fused ? fused_load_loss(logits, noisy, in.kth, in.sigma, s.group_size)
                       : grouped_load_loss_composed(logits, noisy, in.kth.reshape({s.n, 1}),
                                                    in.sigma, s.group_size);
        };
      };
      check_same(run(in, load(true)), run(in, load(false)), true);
    }
  }
}

TEST_CASE("moe aux losses: the layer's entry points take the fused ops on the CPU") {
  const Shape3 s{800, 8, 400, 2};
  const RouterInputs in = router_inputs(s, DType::f32, 5);
  const Tensor kth = in.kth.reshape({s.n, 1});
  std::string where;
  CHECK(differing(grouped_importance_loss(softmax(in.logits), s.group_size),
                  fused_importance_loss(softmax(in.logits), s.group_size), where) == 0);
  CHECK(differing(grouped_load_loss(in.logits, in.noisy, kth, in.sigma, s.group_size),
                  fused_load_loss(in.logits, in.noisy, in.kth, in.sigma, s.group_size),
                  where) == 0);
}

TEST_CASE("moe aux losses: the fused ops' gradients match finite differences (f64)") {
  for (const Shape3& s : std::vector<Shape3>{{30, 4, 8, 2}, {9, 3, 9, 1}}) {
    INFO("N " << s.n << ", E " << s.e << ", group " << s.group_size);
    const RouterInputs in = router_inputs(s, DType::f64, 11);
    const Tensor logits = in.logits.detach().set_requires_grad(true);
    const Tensor noisy = in.noisy.detach().set_requires_grad(true);
    VMOE_CHECK_GRADCHECK(
        [&](const std::vector<Tensor>& x) {
          return fused_importance_loss(softmax(x[0]), s.group_size);
        },
        {logits});
    // The k-th choice is held fixed: the loss is smooth in both logits given it.
    VMOE_CHECK_GRADCHECK(
        [&](const std::vector<Tensor>& x) {
          return fused_load_loss(x[0], x[1], in.kth, in.sigma, s.group_size);
        },
        {logits, noisy});
  }
}

TEST_CASE("moe aux losses: bad arguments are one-line errors naming the argument") {
  const Tensor p = Tensor::zeros({8, 4}, DType::f32);
  const Tensor kth = Tensor::zeros({8}, DType::i64);
  CHECK_THROWS_WITH(fused_importance_loss(p, 0), Catch::Contains("group_size must be > 0, got 0"));
  CHECK_THROWS_WITH(fused_importance_loss(Tensor::zeros({8}, DType::f32), 4), Catch::Contains("x"));
  CHECK_THROWS_WITH(fused_load_loss(p, Tensor::zeros({8, 3}, DType::f32), kth, 0.1, 4),
                    Catch::Contains("noisy_logits"));
  CHECK_THROWS_WITH(fused_load_loss(p, p, Tensor::zeros({7}, DType::i64), 0.1, 4),
                    Catch::Contains("kth"));
  CHECK_THROWS_WITH(fused_load_loss(p, p, kth, 0.0, 4), Catch::Contains("sigma must be > 0"));
  // A k-th choice out of range is found by the kernel: at once where the host reads the device,
  // else at the next check of the device's error flag (core/kernel_errors.h).
  Tensor out_of_range = Tensor::full({8}, 4.0, DType::i64);
  CHECK_THROWS_WITH(
      [&] {
        Tensor logits = p.detach().set_requires_grad(true);
        fused_load_loss(logits, p, out_of_range, 0.1, 4).backward();
        check_kernel_errors(p.device());
      }(),
      Catch::Contains("load_loss: k-th choice"));
}
