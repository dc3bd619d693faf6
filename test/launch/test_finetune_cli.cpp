// The fine-tuning recipe end to end (docs/transfer.md, "Fine-tuning recipe"): the study's
// configs fashion_vit_ti_pretrain5 -> fashion_vit_ti_finetune5, shrunk with --set, on tiny
// Fashion-MNIST-shaped IDX files the test writes (10 classes, 28 px): the pre-training sees
// classes 0-4, the fine-tuning the other five at 40 px, its position embedding the zoom of the
// pre-trained one and its head fresh, its epochs as long as its five classes.
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "command_runner.h"
#include "hdf5/hdf5_file.h"
#include "parallel/init_transforms.h"

namespace fs = std::filesystem;
using vmoe::testing::CommandResult;

namespace {

const std::string kExperiments = std::string(VMOE_SOURCE_DIR) + "/configs/experiments/";
// 2 blocks, no time-based checkpoints, no progress bar.
const std::string kSmall =
    " --set model.num_layers=2 --set data.batch_size=16 --set output.progress=NONE"
    " --set checkpoint.every_minutes=0";
// One step that changes nothing (as in test_init_cli.cpp): the parameters stay the initialised
// ones, written to weights.h5.
const std::string kFrozenStep =
    " --set train.num_steps=1 --set optimizer.learning_rate=1e-45"
    " --set schedule.kind=WARMUP_LINEAR_DECAY --set schedule.warmup_steps=1000"
    " --set schedule.end_learning_rate=0";

void put_be32(std::ofstream& f, uint32_t v) {
  const char b[4] = {char(v >> 24), char(v >> 16), char(v >> 8), char(v)};
  f.write(b, 4);
}

// Uncompressed IDX files under the standard Fashion-MNIST names: `per_class` images of each of
// the 10 classes, 28x28, class c a bright band at rows 2c..2c+4 over a noisy background.
void write_split(const fs::path& dir, const std::string& prefix, int per_class) {
  const uint32_t n = uint32_t(10 * per_class);
  std::ofstream images(dir / (prefix + "-images-idx3-ubyte"), std::ios::binary);
  std::ofstream labels(dir / (prefix + "-labels-idx1-ubyte"), std::ios::binary);
  put_be32(images, 0x00000803);
  put_be32(images, n);
  put_be32(images, 28);
  put_be32(images, 28);
  put_be32(labels, 0x00000801);
  put_be32(labels, n);
  uint32_t state = 12345;
  for (uint32_t i = 0; i < n; ++i) {
    const int c = int(i % 10);
    for (int y = 0; y < 28; ++y)
      for (int x = 0; x < 28; ++x) {
        state = state * 1664525u + 1013904223u;
        const bool band = y >= 2 * c && y < 2 * c + 5;
        images.put(char(band ? 200 + (state >> 28) : (state >> 26)));
      }
    labels.put(char(c));
  }
}

CommandResult train(const std::string& config, const fs::path& work, const fs::path& data,
                    const std::string& extra) {
  return vmoe::testing::run_vmoe("train --config " + kExperiments + config + " --workdir " +
                                     work.string() + " --set data.dir=" + data.string() + kSmall +
                                     extra,
                                 work.parent_path());
}

std::vector<float> floats(const vmoe::H5Array& a) {
  const auto* p = reinterpret_cast<const float*>(a.bytes.data());
  return std::vector<float>(p, p + a.bytes.size() / sizeof(float));
}

// The last metrics line that has `key`.
nlohmann::json last_with(const fs::path& work, const std::string& key) {
  nlohmann::json out;
  std::ifstream in(work / "metrics.jsonl");
  for (std::string line; std::getline(in, line);) {
    nlohmann::json j = nlohmann::json::parse(line);
    if (j.contains(key)) out = j;
  }
  return out;
}

}  // namespace

TEST_CASE(
    "finetune: pretrain5 -> finetune5 with --init-from: zoomed position embedding, "
    "fresh head, epochs of the kept classes") {
  const fs::path dir = vmoe::testing::scratch_dir("finetune_chain");
  const fs::path data = dir / "data";
  fs::create_directories(data);
  write_split(data, "train", 10);  // 100 images, 50 of each half
  write_split(data, "t10k", 5);    // 50 images, 25 of each half

  // Pre-training on classes 0-4 at 28 px.
  const fs::path pre = dir / "pre";
  CommandResult r = train("fashion_vit_ti_pretrain5.textproto", pre, data,
                          " --set train.num_steps=3 --set schedule.warmup_steps=0");
  INFO("stderr: " << r.err);
  REQUIRE(r.exit_code == 0);
  CHECK(last_with(pre, "eval/examples").at("eval/examples") == 25);  // test images of 0-4
  const fs::path weights = pre / "weights.h5";
  vmoe::Hdf5File source(weights.string(), vmoe::Hdf5File::Mode::Read);
  CHECK(source.read("params/head/kernel").shape == std::vector<int64_t>{64, 5});

  // The fine-tuning's initialisation, kept by a step that changes nothing.
  const fs::path init = dir / "init";
  r = train("fashion_vit_ti_finetune5.textproto", init, data,
            kFrozenStep + " --init-from " + weights.string());
  INFO("stderr: " << r.err);
  REQUIRE(r.exit_code == 0);
  CHECK(r.out.find("init from " + weights.string() + ":") != std::string::npos);
  CHECK(r.out.find("1 ZOOM_POSEMB") != std::string::npos);
  CHECK(r.out.find("kept fresh by rule: head/kernel, head/bias") != std::string::npos);
  CHECK(r.out.find("sources unused: head/bias, head/kernel\n") != std::string::npos);
  vmoe::Hdf5File target((init / "weights.h5").string(), vmoe::Hdf5File::Mode::Read);
  const vmoe::H5Array src = source.read("params/encoder/posembed_input/pos_embedding");
  const vmoe::H5Array dst = target.read("params/encoder/posembed_input/pos_embedding");
  REQUIRE(src.shape == std::vector<int64_t>{1, 50, 64});   // 7x7 + class token
  REQUIRE(dst.shape == std::vector<int64_t>{1, 101, 64});  // 10x10 + class token
  const std::vector<float> s = floats(src), d = floats(dst);
  const std::vector<double> zoomed = vmoe::zoom_posemb(std::vector<double>(s.begin(), s.end()), 50,
                                                       std::vector<double>(101 * 64), 101, 64);
  size_t differ = 0;
  for (size_t i = 0; i < zoomed.size(); ++i)
    differ += d[i] != float(zoomed[i]);
  CHECK(differ == 0);
  // The new head keeps its initialisation (zero kernel, bias -log(classes): a uniform first
  // prediction); the rest is the pre-trained model's.
  for (float v : floats(target.read("params/head/kernel")))
    CHECK(v == 0.0f);
  for (float v : floats(target.read("params/head/bias")))
    CHECK(v == float(-std::log(5.0)));
  for (const char* p : {"params/embedding/kernel", "params/encoder/block_01/mlp/fc2/kernel",
                        "params/encoder/encoder_norm/scale"})
    CHECK(target.read(p).bytes == source.read(p).bytes);

  // The recipe trains: an epoch is the 50 training images of classes 5-9 (3 steps of 16),
  // evaluated on their 25 test images resized to 40 px.
  const fs::path tuned = dir / "tuned";
  r = train("fashion_vit_ti_finetune5.textproto", tuned, data,
            " --set train.num_steps=0 --set train.num_epochs=1 --set schedule.warmup_steps=1"
            " --init-from " +
                weights.string());
  INFO("stderr: " << r.err);
  REQUIRE(r.exit_code == 0);
  const nlohmann::json final_eval = last_with(tuned, "eval/accuracy");
  CHECK(final_eval.at("step") == 3);
  CHECK(final_eval.at("eval/examples") == 25);
  CHECK(std::isfinite(final_eval.at("eval/loss").get<double>()));
  vmoe::Hdf5File trained((tuned / "weights.h5").string(), vmoe::Hdf5File::Mode::Read);
  size_t moved = 0;
  for (float v : floats(trained.read("params/head/kernel")))
    moved += v != 0.0f;
  CHECK(moved > 0);
}
