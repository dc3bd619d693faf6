// Initialisation rules (parallel/init_rules.h, init_transforms.h, init_from.h): every
// transformation on small tensors with exact values, the bilinear position-embedding zoom
// against hand-computed cases, expert-sharded targets, and every error a one-line message
// naming the tensors.
#include <catch2/catch.hpp>
#include <cmath>
#include <string>
#include <vector>

#include "hdf5/hdf5_file.h"
#include "parallel/init_from.h"
#include "parallel/init_rules.h"
#include "parallel/init_transforms.h"
#include "parallel/weights_file.h"
#include "test/temp_dir.h"

using namespace vmoe;
using Catch::Matchers::Contains;

namespace {

std::vector<double> iota(int64_t n, double start = 0) {
  std::vector<double> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i)
    v[size_t(i)] = start + double(i);
  return v;
}

// Writes a weights file of the given tensors (f32) and returns its path.
std::string weights_file(const testing::TempDir& dir,
                         const std::vector<std::pair<std::string, Tensor>>& tensors) {
  std::vector<NamedTensor> named;
  for (const auto& [name, value] : tensors)
    named.push_back({name, value});
  const std::string path = dir.file("source.h5");
  save_weights(path, named, "name: \"source\"", 0);
  return path;
}

Tensor f32(const std::vector<double>& v, const Shape& shape) {
  std::vector<float> f(v.begin(), v.end());
  return Tensor::from_vector(f, shape, kCpu);
}

std::vector<double> values(const ParameterStore& s, const std::string& name) {
  const std::vector<float> f = s.value(name).to_vector<float>();
  return std::vector<double>(f.begin(), f.end());
}

// The error message of `f` (a std::exception), "" if it does not throw.
template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("init transforms: tile and stack along a new leading axis") {
  CHECK(tile_leading({1, 2, 3}, 3) == std::vector<double>{1, 2, 3, 1, 2, 3, 1, 2, 3});
  CHECK(stack_leading({{1, 2}, {3, 4}, {5, 6}}) == std::vector<double>{1, 2, 3, 4, 5, 6});
  CHECK_THROWS(stack_leading({{1, 2}, {3}}));
}

TEST_CASE("init transforms: bilinear zoom of a 7x7 grid to 14x14, hand-computed") {
  // Half-pixel centres, align_corners=False, as jax.image.resize(method="bilinear"): output i
  // samples input (i + 0.5) / 2 - 0.5 = i / 2 - 0.25, so along each axis
  //   out[0] = x[0], out[2k+1] = 0.75 x[k] + 0.25 x[k+1], out[2k+2] = 0.25 x[k] + 0.75 x[k+1],
  //   out[13] = x[6] (the samples -0.25 and 6.25 are clamped to the edge pixels).
  std::vector<double> grid(49);
  for (int r = 0; r < 7; ++r)
    for (int c = 0; c < 7; ++c)
      grid[size_t(r * 7 + c)] = std::pow(2.0, r) + 3.0 * c * c;   // not linear: weights matter
  auto axis = [](int i) -> std::vector<std::pair<int, double>> {  // (input index, weight)
    if (i == 0) return {{0, 1.0}};
    if (i == 13) return {{6, 1.0}};
    const int k = (i - 1) / 2;
    return i % 2 == 1 ? std::vector<std::pair<int, double>>{{k, 0.75}, {k + 1, 0.25}}
                      : std::vector<std::pair<int, double>>{{k, 0.25}, {k + 1, 0.75}};
  };
  const std::vector<double> out = resize_bilinear(grid, 7, 7, 1, 14, 14);
  REQUIRE(out.size() == 196);
  for (int i = 0; i < 14; ++i)
    for (int j = 0; j < 14; ++j) {
      double want = 0;
      for (auto [r, wr] : axis(i))
        for (auto [c, wc] : axis(j))
          want += wr * wc * grid[size_t(r * 7 + c)];
      CAPTURE(i, j);
      CHECK(out[size_t(i * 14 + j)] == Approx(want).epsilon(1e-14));
    }
  // Two values by hand: out(1, 2) samples (0.25, 0.75):
  //   0.75*0.25*g(0,0) + 0.75*0.75*g(0,1) + 0.25*0.25*g(1,0) + 0.25*0.75*g(1,1)
  //   = 0.1875*1 + 0.5625*4 + 0.0625*2 + 0.1875*5 = 3.5
  CHECK(out[1 * 14 + 2] == Approx(3.5).epsilon(1e-14));
  CHECK(out[13 * 14 + 13] == grid[48]);  // the corner: clamped
  // Several channels are resized independently.
  std::vector<double> two(98);
  for (int p = 0; p < 49; ++p) {
    two[size_t(2 * p)] = grid[size_t(p)];
    two[size_t(2 * p + 1)] = -grid[size_t(p)];
  }
  const std::vector<double> out2 = resize_bilinear(two, 7, 7, 2, 14, 14);
  for (int p = 0; p < 196; ++p) {
    CHECK(out2[size_t(2 * p)] == Approx(out[size_t(p)]).epsilon(1e-14));
    CHECK(out2[size_t(2 * p + 1)] == Approx(-out[size_t(p)]).epsilon(1e-14));
  }
}

TEST_CASE("init transforms: shrinking antialiases as jax.image.resize does, same size is exact") {
  // 4 -> 2: samples at 0.5 and 2.5, triangle kernel widened to radius 2: weights of output 0 on
  // inputs 0..3 are 0.75, 0.75, 0.25, 0 (sum 1.75).
  const std::vector<double> out = resize_bilinear({0, 1, 2, 3}, 1, 4, 1, 1, 2);
  CHECK(out[0] == Approx(1.25 / 1.75).epsilon(1e-14));
  CHECK(out[1] == Approx(3 - 1.25 / 1.75).epsilon(1e-14));
  const std::vector<double> x = iota(25, 0.5);
  CHECK(resize_bilinear(x, 5, 5, 1, 5, 5) == x);
}

TEST_CASE("init transforms: position embedding zoom keeps the class token, handles GAP") {
  CHECK(posemb_layout(50).class_token);
  CHECK(posemb_layout(50).grid == 7);
  CHECK_FALSE(posemb_layout(49).class_token);
  CHECK(posemb_layout(49).grid == 7);
  CHECK_THROWS_WITH(posemb_layout(51), Contains("51 tokens"));
  const int64_t d = 2;
  // Class token + 2x2 grid -> class token + 4x4 grid.
  std::vector<double> src = {100, -100};                          // class token
  const std::vector<double> grid = {0, 10, 1, 11, 2, 12, 3, 13};  // [2, 2, D]
  src.insert(src.end(), grid.begin(), grid.end());
  const std::vector<double> initial(17 * d, 7.0);
  const std::vector<double> out = zoom_posemb(src, 5, initial, 17, d);
  REQUIRE(out.size() == 34);
  CHECK(out[0] == 100);
  CHECK(out[1] == -100);
  const std::vector<double> zoomed = resize_bilinear(grid, 2, 2, d, 4, 4);
  CHECK(std::vector<double>(out.begin() + 2, out.end()) == zoomed);
  // Hand value: grid(1, 1) of the 4x4 samples (0.25, 0.25) of channel 0:
  // 0.5625*0 + 0.1875*1 + 0.1875*2 + 0.0625*3 = 0.75.
  CHECK(zoomed[size_t((1 * 4 + 1) * d)] == Approx(0.75).epsilon(1e-14));
  // GAP -> GAP: only the grid.
  CHECK(zoom_posemb(grid, 4, std::vector<double>(16 * d), 16, d) == zoomed);
  // TOKEN -> GAP drops the class row; GAP -> TOKEN keeps the target's own class row.
  CHECK(zoom_posemb(src, 5, std::vector<double>(16 * d), 16, d) == zoomed);
  const std::vector<double> to_token = zoom_posemb(grid, 4, initial, 17, d);
  CHECK(to_token[0] == 7.0);
  CHECK(to_token[1] == 7.0);
  CHECK(std::vector<double>(to_token.begin() + 2, to_token.end()) == zoomed);
}

TEST_CASE("init rules: every transformation applied from a weights file, exact values") {
  testing::TempDir dir;
  const std::string path = weights_file(dir, {{"a", f32(iota(6), {2, 3})},
                                              {"b", f32(iota(6, 10), {2, 3})},
                                              {"mlp/kernel", f32(iota(6, 20), {2, 3})},
                                              {"pos", f32(iota(5 * 2, 30), {1, 5, 2})},
                                              {"same", f32(iota(4, 40), {4})},
                                              {"unused", f32({1}, {1})}});
  ParameterStore store;
  store.declare("copied", {2, 3}, InitSpec::constant(-1));
  store.declare("reshaped", {3, 2}, InitSpec::constant(-1));
  store.declare("stacked", {2, 2, 3}, InitSpec::constant(-1));
  store.declare("experts/kernel", {4, 2, 3}, InitSpec::constant(-1));
  store.declare("pos", {1, 17, 2}, InitSpec::constant(-1));
  store.declare("fresh", {2}, InitSpec::constant(-5));
  store.declare("same", {4}, InitSpec::constant(-1));
  store.declare("orphan", {3}, InitSpec::constant(-7));
  store.allocate(0, DType::f32, kCpu);
  const std::vector<InitRule> rules = {
      {"copied", "a", InitTransform::copy, true},
      {"reshaped", "b", InitTransform::reshape, false},
      {"stacked", "a,b", InitTransform::stack, false},
      {"experts/(kernel)", "mlp/$1", InitTransform::tile, true},
      {"pos", "", InitTransform::zoom_posemb, false},
      {"fr.*", "", InitTransform::keep_fresh, false},
      {"never/.*", "x", InitTransform::copy, false},
  };
  const InitPlan plan = init_from_file(path, rules, store);
  CHECK(values(store, "copied") == iota(6));
  CHECK(values(store, "reshaped") == iota(6, 10));
  std::vector<double> ab = iota(6);
  const std::vector<double> b = iota(6, 10);
  ab.insert(ab.end(), b.begin(), b.end());
  CHECK(values(store, "stacked") == ab);
  CHECK(values(store, "experts/kernel") == tile_leading(iota(6, 20), 4));
  std::vector<double> pos = zoom_posemb(iota(10, 30), 5, std::vector<double>(34, -1), 17, 2);
  for (double& v : pos)
    v = double(float(v));
  CHECK(values(store, "pos") == pos);
  CHECK(values(store, "pos")[0] == 30);  // the class token row
  CHECK(values(store, "fresh") == std::vector<double>{-5, -5});
  CHECK(values(store, "same") == iota(4, 40));  // the default: same name and shape
  CHECK(values(store, "orphan") == std::vector<double>{-7, -7, -7});
  CHECK(plan.kept_by_rule == std::vector<std::string>{"fresh"});
  CHECK(plan.no_source == std::vector<std::string>{"orphan"});
  CHECK(plan.unused_sources == std::vector<std::string>{"unused"});
  CHECK(plan.rule_targets == std::vector<int64_t>{1, 1, 1, 1, 1, 1, 0});
  const std::string report = init_report(path, rules, plan);
  CHECK_THAT(report, Contains("kept fresh by rule: fresh"));
  CHECK_THAT(report, Contains("kept fresh, no source: orphan"));
  CHECK_THAT(report, Contains("sources unused: unused"));
}

TEST_CASE("init rules: an expert-sharded target takes only this process's experts") {
  testing::TempDir dir;
  const std::string path = weights_file(
      dir, {{"experts/kernel", f32(iota(4 * 3), {4, 3})}, {"mlp/bias", f32({1, 2, 3}, {3})}});
  ParameterStore store;
  store.declare("experts/kernel", {4, 3}, InitSpec::zeros(), WeightDecay::no, Sharding::expert);
  store.declare("experts/bias", {4, 3}, InitSpec::zeros(), WeightDecay::no, Sharding::expert);
  store.set_expert_shard({4, 2, 2});
  store.allocate(0, DType::f32, kCpu);
  init_from_file(path, {{"experts/bias", "mlp/bias", InitTransform::tile, false}}, store);
  CHECK(values(store, "experts/kernel") == iota(6, 6));  // rows 2 and 3
  CHECK(values(store, "experts/bias") == std::vector<double>{1, 2, 3, 1, 2, 3});
}

TEST_CASE("init rules: upcycling tiles the dense MLP into every expert, the router stays") {
  const std::vector<InitRule> rules = upcycle_rules();
  const std::vector<NamedShape> targets = {
      {"encoder/block_01/moe/experts/fc1/kernel", {8, 4, 6}},
      {"encoder/block_01/moe/experts/fc2/bias", {8, 4}},
      {"encoder/block_01/moe/router/kernel", {4, 8}},
      {"encoder/block_00/mlp/fc1/kernel", {4, 6}},
  };
  const std::vector<NamedShape> sources = {
      {"encoder/block_00/mlp/fc1/kernel", {4, 6}},
      {"encoder/block_01/mlp/fc1/kernel", {4, 6}},
      {"encoder/block_01/mlp/fc2/bias", {4}},
  };
  const InitPlan plan = plan_init(rules, targets, sources, "dense.h5");
  REQUIRE(plan.steps.size() == 3);
  CHECK(plan.steps[0].transform == InitTransform::tile);
  CHECK(plan.steps[0].sources == std::vector<std::string>{"encoder/block_01/mlp/fc1/kernel"});
  CHECK(plan.steps[1].sources == std::vector<std::string>{"encoder/block_01/mlp/fc2/bias"});
  CHECK(plan.steps[2].transform == InitTransform::copy);
  CHECK(plan.kept_by_rule == std::vector<std::string>{"encoder/block_01/moe/router/kernel"});
  CHECK(plan.unused_sources.empty());
}

TEST_CASE("init rules: errors name the file, the rule and both tensors in one line") {
  const std::vector<NamedShape> targets = {{"head/kernel", {4, 5}}, {"w", {2, 3}}};
  const std::vector<NamedShape> sources = {{"head/kernel", {4, 10}}, {"w", {3, 3}}};
  auto plan = [&](const std::vector<InitRule>& rules) {
    return error_of([&] { plan_init(rules, targets, sources, "src.h5"); });
  };
  // The default: same name, other shape.
  CHECK(plan({{"w", "", InitTransform::keep_fresh, false}}) ==
        "init from 'src.h5': target 'head/kernel' [4, 5] and source 'head/kernel' [4, 10] differ "
        "in shape and no init rule maps them (add one: KEEP_FRESH, RESHAPE, ZOOM_POSEMB, ...)");
  // A rule's shapes.
  const std::vector<InitRule> keep_head = {{"head/.*", "", InitTransform::keep_fresh, false}};
  std::vector<InitRule> rules = keep_head;
  rules.push_back({"w", "", InitTransform::copy, false});
  CHECK(plan(rules) ==
        "init from 'src.h5': rule 1 (COPY target 'w'): cannot map source 'w' [3, 3] to target "
        "'w' [2, 3]: the shapes differ");
  rules.back() = {"w", "", InitTransform::reshape, false};
  CHECK_THAT(plan(rules), Contains("the element counts differ"));
  rules.back() = {"w", "", InitTransform::tile, false};
  CHECK_THAT(plan(rules), Contains("the target is not [E] + the source's shape"));
  rules.back() = {"w", "w,head/kernel", InitTransform::stack, false};
  CHECK_THAT(plan(rules), Contains("the sources' shapes differ"));
  rules.back() = {"w", "", InitTransform::zoom_posemb, false};
  CHECK_THAT(plan(rules), Contains("[1, T, D] to [1, T', D]"));
  // A source the file lacks.
  rules.back() = {"(w)", "$1_missing", InitTransform::copy, false};
  CHECK(plan(rules) ==
        "init from 'src.h5': rule 1 (COPY target '(w)'): source 'w_missing' for target 'w' is "
        "not in the file");
  // A required rule that matches nothing.
  rules.back() = {"w", "", InitTransform::keep_fresh, false};
  rules.push_back({"encoder/.*", "", InitTransform::copy, true});
  CHECK(plan(rules) ==
        "init from 'src.h5': rule 2 (COPY target 'encoder/.*') is required but matches no "
        "parameter of the model");
  // A regular expression that does not compile.
  CHECK_THAT(plan({{"head/(", "", InitTransform::copy, false}}),
             Contains("init from 'src.h5': rule 0: target 'head/(' is not a valid regular "
                      "expression"));
  CHECK_THAT(plan({{std::string(1001, '('), "", InitTransform::copy, false}}),
             Contains("rule 0: target is longer than 1000 characters"));
  // Files: missing, and one without parameters.
  ParameterStore store;
  store.declare("w", {2}, InitSpec::zeros());
  store.allocate(0, DType::f32, kCpu);
  testing::TempDir dir;
  const std::string missing = dir.file("missing.h5");
  const std::string msg = error_of([&] { init_from_file(missing, {}, store); });
  CHECK_THAT(msg, Contains("init from '" + missing + "': cannot open it"));
  CHECK(msg.find('\n') == std::string::npos);
  const std::string other = dir.file("other.h5");
  {
    Hdf5File f(other, Hdf5File::Mode::Create);
    const float one = 1;
    f.write("images", H5Type::f32, {1}, &one);
  }
  CHECK(error_of([&] { init_from_file(other, {}, store); }) ==
        "init from '" + other +
            "': it holds no params/ tensors (not a weights file or checkpoint)");
}
