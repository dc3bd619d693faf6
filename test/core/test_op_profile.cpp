// The op profile (core/op_profile.h): kernels are charged to the phase and region they ran in,
// backward to the region of the forward op, region times are exclusive of nested regions, and
// profiling changes no result.
#include <catch2/catch.hpp>
#include <chrono>
#include <map>
#include <string>
#include <tuple>

#include "core/autograd.h"
#include "core/backend.h"
#include "core/op_profile.h"
#include "core/ops.h"

using namespace vmoe;

namespace {

// (phase, region, kernel) -> calls; kernel "" is the region's wall-time row.
std::map<std::tuple<ProfilePhase, std::string, std::string>, int64_t> calls_of(
    const std::vector<ProfileRow>& rows) {
  std::map<std::tuple<ProfilePhase, std::string, std::string>, int64_t> out;
  for (const ProfileRow& r : rows)
    out[{r.phase, r.region, r.kernel}] += r.calls;
  return out;
}

// softmax(x w) summed, in the regions "product" and "normalise"; returns the loss and x's
// gradient.
std::pair<Tensor, Tensor> small_graph() {
  Tensor x = randn({6, 5}, RngKey{7, 1});
  x.set_requires_grad(true);
  const Tensor w = randn({5, 4}, RngKey{7, 2});
  Tensor y;
  {
    ProfileRegion region("product");
    y = matmul(x, w);
  }
  Tensor loss;
  {
    ProfileRegion region("normalise");
    loss = sum(softmax(y) * y, {0, 1});
  }
  loss.backward();
  return {loss, x.grad()};
}

}  // namespace

TEST_CASE("op profile: kernels are charged to their phase and region, backward to the forward's") {
  CHECK(&backend_for(kCpu) == &cpu_backend());  // no profile: the plain table
  std::vector<ProfileRow> rows;
  {
    OpProfile profile;
    CHECK(&backend_for(kCpu) != &cpu_backend());
    CHECK_THROWS_WITH(OpProfile(), Catch::Contains("one profile at a time"));
    small_graph();
    Tensor a = Tensor::zeros({3}, DType::f32, kCpu);
    {
      ProfilePhaseScope phase(ProfilePhase::optimizer);
      ProfileRegion region("update");
      fill_(a, 2.0);
    }
    rows = profile.rows();
  }
  CHECK(&backend_for(kCpu) == &cpu_backend());
  const auto calls = calls_of(rows);
  auto count = [&](ProfilePhase p, const char* region, const char* kernel) {
    const auto it = calls.find({p, region, kernel});
    return it == calls.end() ? int64_t(0) : it->second;
  };
  // Forward: one product in "product"; softmax in "normalise".
  CHECK(count(ProfilePhase::forward, "product", "gemm") == 1);
  CHECK(count(ProfilePhase::forward, "normalise", "softmax") == 1);
  CHECK(count(ProfilePhase::forward, "normalise", "gemm") == 0);
  // Backward: the product's gradient (x only: w needs none) is charged to "product".
  CHECK(count(ProfilePhase::backward, "product", "gemm") == 1);
  CHECK(count(ProfilePhase::backward, "normalise", "softmax_backward") == 1);
  CHECK(count(ProfilePhase::backward, "normalise", "gemm") == 0);
  CHECK(count(ProfilePhase::optimizer, "update", "fill") == 1);
  CHECK(count(ProfilePhase::forward, "update", "fill") == 0);
  // Every region with a kernel has a wall-time row at least as long as its kernels.
  std::map<std::tuple<ProfilePhase, std::string>, double> wall, kernels;
  for (const ProfileRow& r : rows)
    (r.kernel.empty() ? wall : kernels)[{r.phase, r.region}] += r.seconds;
  for (const auto& [key, seconds] : kernels) {
    CAPTURE(std::get<1>(key));
    REQUIRE(wall.count(key) == 1);
    CHECK(wall[key] >= seconds);
  }
}

TEST_CASE("op profile: a nested region's time is not its parent's too") {
  std::vector<ProfileRow> rows;
  const auto t0 = std::chrono::steady_clock::now();
  {
    OpProfile profile;
    {
      ProfileRegion outer("outer");
      CHECK(std::string(current_profile_region()) == "outer");
      {
        ProfileRegion inner("inner");
        CHECK(std::string(current_profile_region()) == "inner");
        const auto start = std::chrono::steady_clock::now();
        while (std::chrono::steady_clock::now() - start < std::chrono::milliseconds(30)) {
        }
      }
      CHECK(std::string(current_profile_region()) == "outer");
    }
    rows = profile.rows();
  }
  const double elapsed =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  double inner = 0, outer = 0, total = 0;
  for (const ProfileRow& r : rows) {
    if (!r.kernel.empty()) continue;
    total += r.seconds;
    if (r.region == "inner") inner += r.seconds;
    if (r.region == "outer") outer += r.seconds;
  }
  CHECK(inner >= 0.030);
  CHECK(outer < inner);     // the 30 ms spent inside "inner" is not counted again
  CHECK(total <= elapsed);  // exclusive segments never overlap
}

TEST_CASE("op profile: profiling changes no value or gradient") {
  const auto [loss, grad] = small_graph();
  std::pair<Tensor, Tensor> profiled;
  {
    OpProfile profile;
    profiled = small_graph();
  }
  CHECK(loss.cpu().to_vector<float>() == profiled.first.cpu().to_vector<float>());
  CHECK(grad.cpu().to_vector<float>() == profiled.second.cpu().to_vector<float>());
}
