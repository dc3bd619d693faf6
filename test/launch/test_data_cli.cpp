// `vmoe data pack` and `vmoe data inspect` through the binary, on CIFAR-10 binaries and image
// folders written here; and `vmoe train` on CIFAR-10 and packed-shard configs.
#include <png.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "data/hdf5_shards.h"
#include "data/image_dataset.h"
#include "data/png_codec.h"
#include "test/launch/command_runner.h"

namespace fs = std::filesystem;
using RunResult = vmoe::testing::CommandResult;

namespace {

using vmoe::testing::run_vmoe;

// The CHW pixel byte of CIFAR fixture record r, channel c, pixel p.
uint8_t pixel(int r, int c, int p) {
  return uint8_t((r * 17 + c * 80 + p) % 256);
}

// A CIFAR-10 batch file of `labels.size()` records.
void write_cifar(const fs::path& path, const std::vector<int>& labels) {
  std::ofstream out(path, std::ios::binary);
  for (size_t r = 0; r < labels.size(); ++r) {
    out.put(char(labels[r]));
    for (int c = 0; c < 3; ++c) {
      for (int p = 0; p < 1024; ++p)
        out.put(char(pixel(int(r), c, p)));
    }
  }
}

// A w x h grey PNG of one value (folders for the CLI are made with the project's PNG writer).
void write_grey_png(const fs::path& path, int w, int h, uint8_t value) {
  fs::create_directories(path.parent_path());
  vmoe::data::write_png(path.string(), {h, w, 1, std::vector<uint8_t>(size_t(w * h), value)});
}

struct Png {
  int width = 0, height = 0;
  std::vector<uint8_t> rgb;
};

// Reads a PNG as RGB; fails the test if it is not a valid PNG.
Png read_png(const fs::path& path) {
  png_image image{};
  image.version = PNG_IMAGE_VERSION;
  REQUIRE(png_image_begin_read_from_file(&image, path.c_str()));
  image.format = PNG_FORMAT_RGB;
  Png png{int(image.width), int(image.height), {}};
  png.rgb.resize(PNG_IMAGE_SIZE(image));
  REQUIRE(png_image_finish_read(&image, nullptr, png.rgb.data(), 0, nullptr));
  return png;
}

}  // namespace

TEST_CASE("data cli: pack cifar10 into a shard, inspect it and draw a grid") {
  const fs::path dir = vmoe::testing::scratch_dir("data_cli_cifar");
  fs::create_directories(dir / "cifar");
  write_cifar(dir / "cifar" / "test_batch.bin", {0, 1, 1, 2, 2, 2});

  const std::string shard = (dir / "test.h5").string();
  RunResult r = run_vmoe(
      "data pack cifar10 " + (dir / "cifar").string() + " " + shard + " --split test", dir);
  INFO("stdout: " << r.out << "\nstderr: " << r.err);
  REQUIRE(r.exit_code == 0);
  CHECK(r.out.find("packing 6 examples of 10 classes") != std::string::npos);
  const vmoe::data::ImageDataset ds = vmoe::data::load_hdf5_shard(shard);
  CHECK(ds.n == 6);
  CHECK(ds.height == 32);
  CHECK(ds.channels == 3);
  CHECK(ds.num_classes == 10);
  CHECK(ds.labels == std::vector<int32_t>{0, 1, 1, 2, 2, 2});
  CHECK(int(ds.images[3 * 3072 + 5 * 3 + 2]) == int(pixel(3, 2, 5)));  // HWC

  r = run_vmoe(
      "data inspect " + shard + " --grid " + (dir / "grid.png").string() + " --grid-side 2", dir);
  INFO("stdout: " << r.out << "\nstderr: " << r.err);
  REQUIRE(r.exit_code == 0);
  CHECK(r.out.find("h5, 6 examples, 10 classes") != std::string::npos);
  CHECK(r.out.find("height 32..32, width 32..32, 3 channel(s)") != std::string::npos);
  CHECK(r.out.find("    0      1  \n") != std::string::npos);
  CHECK(r.out.find("    1      2  \n") != std::string::npos);
  CHECK(r.out.find("    2      3  \n") != std::string::npos);
  CHECK(r.out.find("    3      0  \n") != std::string::npos);
  // 2 x 2 cells of 32 px: examples 0, 1, 3, 4 (evenly spaced), unscaled.
  const Png grid = read_png(dir / "grid.png");
  CHECK(grid.width == 64);
  CHECK(grid.height == 64);
  const auto at = [&](int y, int x, int c) { return int(grid.rgb[size_t((y * 64 + x) * 3 + c)]); };
  CHECK(at(0, 0, 0) == int(pixel(0, 0, 0)));
  CHECK(at(5, 7, 1) == int(pixel(0, 1, 5 * 32 + 7)));
  CHECK(at(0, 32 + 3, 2) == int(pixel(1, 2, 3)));
  CHECK(at(32 + 1, 2, 0) == int(pixel(3, 0, 32 + 2)));
  CHECK(at(63, 63, 1) == int(pixel(4, 1, 1023)));

  // The CIFAR directory itself is detected and inspected too.
  r = run_vmoe("data inspect " + (dir / "cifar").string() + " --split test", dir);
  CHECK(r.exit_code == 0);
  CHECK(r.out.find("cifar10, 6 examples") != std::string::npos);
}

TEST_CASE("data cli: image folders are inspected, packed when sizes agree, refused otherwise") {
  const fs::path dir = vmoe::testing::scratch_dir("data_cli_folder");
  const fs::path root = dir / "imgs";
  write_grey_png(root / "dog" / "1.png", 4, 3, 10);
  write_grey_png(root / "dog" / "2.png", 4, 3, 20);
  write_grey_png(root / "cat" / "1.png", 4, 3, 30);

  RunResult r =
      run_vmoe("data inspect " + root.string() + " --grid " + (dir / "g.png").string(), dir);
  INFO("stdout: " << r.out << "\nstderr: " << r.err);
  REQUIRE(r.exit_code == 0);
  CHECK(r.out.find("folder, 3 examples, 2 classes") != std::string::npos);
  CHECK(r.out.find("    0      1  cat\n") != std::string::npos);
  CHECK(r.out.find("    1      2  dog\n") != std::string::npos);
  const Png grid = read_png(dir / "g.png");
  CHECK(grid.width == 12);
  CHECK(grid.height == 3);
  CHECK(int(grid.rgb[0]) == 30);              // cat/1.png first
  CHECK(int(grid.rgb[size_t(4 * 3)]) == 10);  // then dog/1.png

  r = run_vmoe(
      "data pack folder " + root.string() + " " + (dir / "f.h5").string() + " --channels 1", dir);
  REQUIRE(r.exit_code == 0);
  const vmoe::data::ImageDataset ds = vmoe::data::load_hdf5_shard((dir / "f.h5").string());
  CHECK(ds.channels == 1);
  CHECK(ds.labels == std::vector<int32_t>{0, 1, 1});
  CHECK(ds.images == std::vector<uint8_t>{30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30,
                                          10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10,
                                          20, 20, 20, 20, 20, 20, 20, 20, 20, 20, 20, 20});

  // Another size: pack names the file; inspect reports the range.
  write_grey_png(root / "dog" / "3.png", 5, 3, 40);
  r = run_vmoe("data pack folder " + root.string() + " " + (dir / "g.h5").string(), dir);
  CHECK(r.exit_code == 1);
  CHECK(r.err.rfind("vmoe: error: ", 0) == 0);
  CHECK(r.err.find((root / "dog" / "3.png").string()) != std::string::npos);
  CHECK(!fs::exists(dir / "g.h5"));
  r = run_vmoe("data inspect " + root.string(), dir);
  CHECK(r.exit_code == 0);
  CHECK(r.out.find("height 3..3, width 4..5") != std::string::npos);

  // A corrupt file: inspect lists it and exits 1.
  { std::ofstream(root / "cat" / "bad.png") << "not a png"; }
  r = run_vmoe("data inspect " + root.string(), dir);
  CHECK(r.exit_code == 1);
  CHECK(r.out.find("1 unreadable example(s)") != std::string::npos);
  CHECK(r.out.find((root / "cat" / "bad.png").string()) != std::string::npos);

  // Missing root and unknown kind: one-line errors.
  r = run_vmoe("data inspect " + (dir / "nope").string(), dir);
  CHECK(r.exit_code == 1);
  CHECK(r.err.find("nope") != std::string::npos);
  r = run_vmoe("data pack tiff " + root.string() + " " + (dir / "x.h5").string(), dir);
  CHECK(r.exit_code == 1);
  CHECK(r.err.find("unknown dataset kind 'tiff'") != std::string::npos);
}

TEST_CASE("data cli: vmoe train reads CIFAR-10 and packed HDF5 shards from the config") {
  const fs::path dir = vmoe::testing::scratch_dir("data_cli_train");
  fs::create_directories(dir / "cifar");
  std::vector<int> train_labels, test_labels;
  for (int i = 0; i < 64; ++i)
    train_labels.push_back(i % 10);
  for (int i = 0; i < 20; ++i)
    test_labels.push_back(i % 10);
  for (int b = 1; b <= 5; ++b) {
    write_cifar(dir / "cifar" / ("data_batch_" + std::to_string(b) + ".bin"), train_labels);
  }
  write_cifar(dir / "cifar" / "test_batch.bin", test_labels);
  const std::string config =
      std::string(VMOE_SOURCE_DIR) + "/configs/experiments/fashion_vit_ti.textproto";
  const std::string tiny =
      " --set train.num_steps=2 --set model.num_layers=1 --set data.batch_size=32"
      " --set output.progress=NONE --set model.image_size=32 --set model.channels=3"
      " --set model.patch_size=8 --set model.num_classes=10";

  RunResult r =
      run_vmoe("train --config " + config + " --workdir " + (dir / "w1").string() + tiny +
                   " --set data.dataset=CIFAR10 --set data.dir=" + (dir / "cifar").string(),
               dir);
  INFO("stderr: " << r.err);
  REQUIRE(r.exit_code == 0);
  CHECK(r.out.find("test accuracy: ") != std::string::npos);

  for (const char* split : {"train", "test"}) {
    r = run_vmoe("data pack cifar10 " + (dir / "cifar").string() + " " +
                     (dir / "shards" / (std::string(split) + ".h5")).string() + " --split " + split,
                 dir);
    INFO("stderr: " << r.err);
    REQUIRE(r.exit_code == 0);
  }
  r = run_vmoe("train --config " + config + " --workdir " + (dir / "w2").string() + tiny +
                   " --set data.dataset=HDF5_SHARDS --set data.dir=" + (dir / "shards").string(),
               dir);
  INFO("stderr: " << r.err);
  REQUIRE(r.exit_code == 0);
  CHECK(r.out.find("test accuracy: ") != std::string::npos);

  // A class count other than the model's is an error naming both.
  r = run_vmoe("train --config " + config + " --workdir " + (dir / "w3").string() + tiny +
                   " --set model.num_classes=5 --set data.dataset=HDF5_SHARDS --set data.dir=" +
                   (dir / "shards").string(),
               dir);
  CHECK(r.exit_code == 1);
  CHECK(r.err.find("has 10 classes but the model has 5 (model.num_classes)") != std::string::npos);
}

TEST_CASE("data cli: vmoe train streams an image folder of mixed sizes, on 1 and 2 ranks") {
  const fs::path dir = vmoe::testing::scratch_dir("data_cli_train_folder");
  // 3 classes told apart by brightness, images of three sizes (resized + centre-cropped to 16).
  const int sizes[][2] = {{16, 16}, {20, 24}, {30, 18}};
  for (const char* split : {"train", "test"}) {
    const int count = std::string(split) == "train" ? 32 : 8;
    for (int c = 0; c < 3; ++c)
      for (int i = 0; i < count; ++i) {
        const int* s = sizes[i % 3];
        write_grey_png(
            dir / "imgs" / split / ("class" + std::to_string(c)) / (std::to_string(i) + ".png"),
            s[0], s[1], uint8_t(40 + 80 * c + i % 5));
      }
  }
  const std::string config =
      std::string(VMOE_SOURCE_DIR) + "/configs/experiments/fashion_vit_ti.textproto";
  const std::string args =
      " --config " + config +
      " --set train.num_steps=30 --set model.num_layers=1 --set data.batch_size=16"
      " --set output.progress=NONE --set model.image_size=16 --set model.channels=1"
      " --set model.patch_size=8 --set model.num_classes=3 --set data.dataset=IMAGE_FOLDER"
      " --set schedule.warmup_steps=5 --set data.loader_threads=2 --set data.dir=" +
      (dir / "imgs").string();
  for (int ranks : {0, 2}) {
    CAPTURE(ranks);
    std::string launcher;
    if (ranks > 0)
      launcher = std::string(VMOE_MPIEXEC) + " -n 2 --oversubscribe --allow-run-as-root ";
    const fs::path work = dir / (ranks > 0 ? "w2" : "w1");
    RunResult r = vmoe::testing::run_command(
        launcher + VMOE_BINARY + " train --workdir " + work.string() + args, dir);
    INFO("stderr: " << r.err);
    REQUIRE(r.exit_code == 0);
    // Brightness separates the classes: the 24 test images are learned.
    CHECK(r.out.find("test accuracy: 100.00% (24 images)") != std::string::npos);
  }
  // Evaluation and few-shot evaluation read the folders too.
  RunResult eval = run_vmoe("eval --workdir " + (dir / "w1").string(), dir);
  INFO("stderr: " << eval.err);
  CHECK(eval.exit_code == 0);
  CHECK(eval.out.find("test accuracy: 100.00% (24 images)") != std::string::npos);
  RunResult fewshot = run_vmoe("eval --workdir " + (dir / "w1").string() + " --fewshot 1,5", dir);
  INFO("stderr: " << fewshot.err);
  CHECK(fewshot.exit_code == 0);
  CHECK(fewshot.out.find("    5   100.00%") != std::string::npos);
  CHECK(fs::exists(dir / "w1" / "fewshot.csv"));
}
