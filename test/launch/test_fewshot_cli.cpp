// End-to-end tests of `vmoe eval --fewshot`: the table and fewshot.csv of a tiny trained model,
// determinism from the seed, one-line errors for impossible shot counts, and, on a V-MoE at a
// small test-time capacity (routing competition matters), features computed in the batches of a
// normal evaluation pass: equal to `vmoe predict`'s and independent of the other shot counts.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cstring>
#include <filesystem>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "command_runner.h"
#include "hdf5/hdf5_file.h"

namespace fs = std::filesystem;

namespace {

using vmoe::testing::slurp;
using RunResult = vmoe::testing::CommandResult;

using vmoe::testing::run_vmoe;

const std::string kConfig =
    std::string(VMOE_SOURCE_DIR) + "/configs/experiments/fashion_vit_ti.textproto";
const std::string kMoeConfig =
    std::string(VMOE_SOURCE_DIR) + "/configs/experiments/fashion_vmoe_ti.textproto";
const std::string kData = "/usr/share/datasets/fashion-mnist";
using vmoe::testing::kTinyRun;

using vmoe::testing::check_one_line_error;

std::vector<std::string> csv_rows(const fs::path& path) {
  std::stringstream lines(slurp(path));
  std::vector<std::string> rows;
  for (std::string line; std::getline(lines, line);)
    rows.push_back(line);
  return rows;
}

// pre_logits [n, dim] f32, labels [n] and indices [n] of a --fewshot-features or predict file.
struct Features {
  std::vector<float> pre_logits;
  std::vector<int32_t> labels;
  std::vector<int64_t> indices;
  int64_t n = 0, dim = 0;
  std::vector<float> row(int64_t i) const {
    return {pre_logits.begin() + i * dim, pre_logits.begin() + (i + 1) * dim};
  }
};

Features read_features(const fs::path& path) {
  const vmoe::Hdf5File f(path.string(), vmoe::Hdf5File::Mode::Read);
  const vmoe::H5Array p = f.read("pre_logits"), l = f.read("labels"), x = f.read("indices");
  REQUIRE(p.type == vmoe::H5Type::f32);
  REQUIRE(p.shape.size() == 2);
  REQUIRE(l.type == vmoe::H5Type::i32);
  REQUIRE(x.type == vmoe::H5Type::i64);
  Features r;
  r.n = p.shape[0];
  r.dim = p.shape[1];
  REQUIRE(l.numel() == r.n);
  REQUIRE(x.numel() == r.n);
  r.pre_logits.resize(size_t(r.n * r.dim));
  r.labels.resize(size_t(r.n));
  r.indices.resize(size_t(r.n));
  std::memcpy(r.pre_logits.data(), p.bytes.data(), p.bytes.size());
  std::memcpy(r.labels.data(), l.bytes.data(), l.bytes.size());
  std::memcpy(r.indices.data(), x.bytes.data(), x.bytes.size());
  return r;
}

}  // namespace

TEST_CASE("cli: eval --fewshot prints a table, writes fewshot.csv and is deterministic") {
  if (!fs::exists(kData)) {
    WARN("Fashion-MNIST not installed; skipped");
    return;
  }
  const fs::path dir = vmoe::testing::scratch_dir("cli_fewshot");
  const fs::path work = dir / "work";
  REQUIRE(run_vmoe("train --config " + kConfig + " --workdir " + work.string() + kTinyRun, dir)
              .exit_code == 0);
  RunResult r = run_vmoe("eval --workdir " + work.string() + " --fewshot 1,5", dir);
  INFO("stdout: " << r.out << "\nstderr: " << r.err);
  REQUIRE(r.exit_code == 0);
  CHECK(r.out.find("pre-logits of dim 64, 50 train examples drawn (seed 0), 200 test") !=
        std::string::npos);
  const std::string csv = slurp(work / "fewshot.csv");
  const std::vector<std::string> rows = csv_rows(work / "fewshot.csv");
  REQUIRE(rows.size() == 3);
  CHECK(rows[0] ==
        "shots,accuracy_best_lambda_on_test,best_lambda_on_test,accuracy_loo_lambda,loo_lambda,"
        "loo_train_accuracy");
  CHECK(r.out.find("best on the test split, the figure the reference reports") !=
        std::string::npos);
  for (size_t i = 1; i < 3; ++i) {
    std::stringstream fields(rows[i]);
    std::vector<std::string> f;
    for (std::string v; std::getline(fields, v, ',');)
      f.push_back(v);
    REQUIRE(f.size() == 6);
    CHECK(f[0] == (i == 1 ? "1" : "5"));
    const double best = std::stod(f[1]), loo = std::stod(f[3]);
    CHECK(loo > 0.1);    // better than chance on 10 classes, even after 3 steps
    CHECK(best >= loo);  // the headline is the best over the grid, the LOO lambda is in it
    CHECK(best <= 1.0);
    for (const std::string& l2 : {f[2], f[4]}) {
      const double lambda = std::stod(l2);
      CHECK(lambda >= 1.0 / 1024);
      CHECK(lambda <= 524288.0);
    }
    CHECK(std::stod(f[5]) >= 0.0);
    CHECK(std::stod(f[5]) <= 1.0);
  }
  // Same seed: the same file; another seed draws other examples.
  REQUIRE(run_vmoe("eval --workdir " + work.string() + " --fewshot 1,5", dir).exit_code == 0);
  CHECK(slurp(work / "fewshot.csv") == csv);
  REQUIRE(run_vmoe("eval --workdir " + work.string() + " --fewshot 1,5 --fewshot-seed 3", dir)
              .exit_code == 0);
  CHECK(slurp(work / "fewshot.csv") != csv);

  check_one_line_error(run_vmoe("eval --workdir " + work.string() + " --fewshot 1,200", dir),
                       "examples in the train split, fewer than the 200 shots asked");
  check_one_line_error(run_vmoe("eval --workdir " + work.string() + " --fewshot 0", dir),
                       "--fewshot values must be >= 1, got 0");
  check_one_line_error(
      run_vmoe("eval --workdir " + work.string() + " --fewshot 1 --capacity-sweep 1", dir),
      "--fewshot and --capacity-sweep cannot be combined");
}

TEST_CASE("cli: eval --fewshot features of a V-MoE come from the batches of a normal eval pass") {
  if (!fs::exists(kData)) {
    WARN("Fashion-MNIST not installed; skipped");
    return;
  }
  const fs::path dir = vmoe::testing::scratch_dir("cli_fewshot_moe");
  const fs::path work = dir / "work";
  // Routing groups of 2 images; at test time batches of 64 of the 256 train images and a
  // capacity of 0.25, so that which images share a group changes their features.
  REQUIRE(run_vmoe("train --config " + kMoeConfig + " --workdir " + work.string() + kTinyRun +
                       " --set model.moe.images_per_group=2",
                   dir)
              .exit_code == 0);
  const std::string routing = " --set data.eval_batch_size=64 --capacity-factor 0.25";
  auto fewshot = [&](const std::string& shots, const std::string& name) {
    const fs::path features = dir / (name + ".h5");
    RunResult r = run_vmoe("eval --workdir " + work.string() + " --fewshot " + shots +
                               " --fewshot-features " + features.string() + routing,
                           dir);
    INFO("stdout: " << r.out << "\nstderr: " << r.err);
    REQUIRE(r.exit_code == 0);
    fs::copy_file(work / "fewshot.csv", dir / (name + ".csv"));
    return read_features(features);
  };
  const Features two = fewshot("2", "two");
  const Features many = fewshot("1,2,5", "many");
  REQUIRE(two.n == 20);
  REQUIRE(many.n == 50);

  // A shot count's figure does not depend on the other shot counts asked.
  const std::vector<std::string> a = csv_rows(dir / "two.csv"), b = csv_rows(dir / "many.csv");
  REQUIRE(a.size() == 2);
  REQUIRE(b.size() == 4);
  CHECK(a[1].rfind("2,", 0) == 0);
  CHECK(a[1] == b[2]);
  // Nor do the 2-shot examples' features: rows c * 2 + j of one are rows c * 5 + j of the other.
  for (int64_t c = 0; c < 10; ++c) {
    for (int64_t j = 0; j < 2; ++j) {
      CHECK(two.indices[size_t(c * 2 + j)] == many.indices[size_t(c * 5 + j)]);
      CHECK(two.row(c * 2 + j) == many.row(c * 5 + j));
    }
  }

  // The features equal those of `vmoe predict` over the train split's images, batched alike.
  const fs::path train_h5 = dir / "train.h5";
  REQUIRE(run_vmoe("data pack idx " + kData + " " + train_h5.string() + " --split train", dir)
              .exit_code == 0);
  auto predict = [&](const std::string& flags, const std::string& name) {
    const fs::path out = dir / (name + ".h5");
    RunResult r = run_vmoe("predict --workdir " + work.string() + " --input " + train_h5.string() +
                               " --count 256 --output " + out.string() + flags,
                           dir);
    INFO("stderr: " << r.err);
    REQUIRE(r.exit_code == 0);
    return read_features(out);
  };
  const Features predicted = predict(routing, "predicted");
  REQUIRE(predicted.n == 256);
  REQUIRE(predicted.dim == many.dim);
  std::set<int64_t> batches;
  for (int64_t i = 0; i < many.n; ++i) {
    const int64_t example = many.indices[size_t(i)];
    REQUIRE(example >= 0);
    REQUIRE(example < 256);
    batches.insert(example / 64);
    CHECK(predicted.indices[size_t(example)] == example);
    CHECK(predicted.labels[size_t(example)] == many.labels[size_t(i)]);
    CHECK(predicted.row(example) == many.row(i));
  }
  CHECK(batches.size() > 1);  // the drawn examples span several evaluation batches
  // The test-time capacity matters on this model: at the config's capacity the features differ.
  const Features at_config = predict(" --set data.eval_batch_size=64", "at_config");
  CHECK(at_config.pre_logits != predicted.pre_logits);

  check_one_line_error(
      run_vmoe("eval --workdir " + work.string() + " --fewshot-features " + (dir / "x.h5").string(),
               dir),
      "--fewshot-features");
}
