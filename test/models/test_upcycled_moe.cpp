// What an upcycled MoE layer computes at step 0 (docs/transfer.md): with every expert a copy of
// the dense MLP, a token's output is (the sum of the combine weights of the experts that took
// it) * MLP(x), the combine weights being the router's raw softmax probabilities; a token that
// no expert took gets 0 from the layer (the encoder block's residual passes it on).
#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <string>
#include <vector>

#include "core/ops.h"
#include "models/mlp_block.h"
#include "models/moe_layer.h"
#include "parallel/init_transforms.h"

using namespace vmoe;

namespace {

constexpr int64_t kDim = 4, kMlp = 6, kExperts = 4, kTokens = 5, kImages = 4;

struct Upcycled {
  ParameterStore dense_store, moe_store;
  std::unique_ptr<MlpBlock> dense;
  std::unique_ptr<MoeLayer> moe;
  explicit Upcycled(double capacity_factor) {
    MoeConfig c;
    c.num_experts = kExperts;
    c.k = 2;
    c.capacity_factor = c.eval_capacity_factor = capacity_factor;
    c.images_per_group = kImages;
    c.moe_blocks = {0};
    dense = std::make_unique<MlpBlock>(dense_store, "mlp", kDim, kMlp, 0.0);
    dense_store.allocate(1, DType::f64);
    moe = std::make_unique<MoeLayer>(moe_store, "moe", kDim, kMlp, kTokens, c);
    moe_store.allocate(2, DType::f64);
    Tensor router = moe_store.value("moe/router/kernel").detach();
    initialize(router, InitSpec::normal(1.0), RngKey{5, 5});  // a router that prefers
    for (const char* n : {"fc1/kernel", "fc1/bias", "fc2/kernel", "fc2/bias"}) {
      Tensor mlp = dense_store.value(std::string("mlp/") + n).detach();
      initialize(mlp, InitSpec::normal(0.5), RngKey{6, uint64_t(n[2])});
      Tensor experts = moe_store.value(std::string("moe/experts/") + n).detach();
      const std::vector<double> tiled = tile_leading(mlp.cpu().to_vector<double>(), kExperts);
      copy_(experts, Tensor::from_vector(tiled, experts.shape(), kCpu).to(experts.device()));
    }
  }
};

// Per token: the router's softmax probabilities of its two largest logits.
std::vector<std::pair<double, double>> top2(const Tensor& x, const Tensor& router) {
  const std::vector<double> xs = x.cpu().to_vector<double>(), w = router.cpu().to_vector<double>();
  std::vector<std::pair<double, double>> out;
  for (int64_t t = 0; t < kImages * kTokens; ++t) {
    std::vector<double> p(kExperts, 0.0);
    double total = 0;
    for (int64_t e = 0; e < kExperts; ++e) {
      double logit = 0;
      for (int64_t d = 0; d < kDim; ++d)
        logit += xs[size_t(t * kDim + d)] * w[size_t(d * kExperts + e)];
      p[size_t(e)] = std::exp(logit);
      total += p[size_t(e)];
    }
    for (double& v : p)
      v /= total;
    std::sort(p.rbegin(), p.rend());
    out.push_back({p[0], p[1]});
  }
  return out;
}

}  // namespace

TEST_CASE("upcycled moe at step 0: output = sum of the token's combine weights * MLP(x)") {
  const Tensor x = randn({kImages, kTokens, kDim}, RngKey{3, 3}, 0, DType::f64);
  const ForwardContext ctx{Mode::eval, RngKey{1, 1}, 0};
  for (double capacity : {4.0, 0.3}) {  // every token kept; most second choices dropped
    CAPTURE(capacity);
    Upcycled m(capacity);
    const std::vector<double> moe = (*m.moe)(x, ctx, 0).out.cpu().to_vector<double>();
    const std::vector<double> mlp = (*m.dense)(x, ctx, 0).out.cpu().to_vector<double>();
    const auto p = top2(x, m.moe_store.value("moe/router/kernel"));
    int64_t scaled_by_both = 0, dropped = 0;
    for (int64_t t = 0; t < kImages * kTokens; ++t) {
      CAPTURE(t);
      // The factor of this token, from its first feature; every feature must share it.
      const double factor = moe[size_t(t * kDim)] / mlp[size_t(t * kDim)];
      for (int64_t d = 0; d < kDim; ++d)
        CHECK(moe[size_t(t * kDim + d)] ==
              Approx(factor * mlp[size_t(t * kDim + d)]).margin(1e-12));
      const auto [p1, p2] = p[size_t(t)];
      const bool both = std::abs(factor - (p1 + p2)) < 1e-9;
      CHECK((both || std::abs(factor - p1) < 1e-9 || std::abs(factor - p2) < 1e-9 ||
             std::abs(factor) < 1e-12));
      scaled_by_both += both;
      dropped += std::abs(factor) < 1e-12;
      CHECK(factor < 1.0);  // never the dense function: the weights sum to less than 1
    }
    if (capacity > 1) {
      CHECK(scaled_by_both == kImages * kTokens);  // ample capacity: (p1 + p2) * MLP(x) for all
    } else {
      CHECK(scaled_by_both < kImages * kTokens);
    }
    (void)dropped;
  }
}
