// open_split / load_split (launch/experiment.h) on every dataset kind the config can name:
// IMAGE_FOLDER streamed through ImageFolderSource, CIFAR and HDF5 shards in memory, the class
// count and image shape checked against the model.

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "command_runner.h"
#include "configs/config.h"
#include "data/hdf5_shards.h"
#include "data/image_folder.h"
#include "data/png_codec.h"
#include "data/subset_source.h"
#include "launch/experiment.h"

namespace fs = std::filesystem;
using Catch::Matchers::Contains;

namespace {

// A w x h grey PNG of one value (folders for the CLI are made with the project's PNG writer).
void write_grey_png(const fs::path& path, int w, int h, uint8_t value) {
  fs::create_directories(path.parent_path());
  vmoe::data::write_png(path.string(), {h, w, 1, std::vector<uint8_t>(size_t(w * h), value)});
}

vmoe::config::Config config_for(const std::vector<std::string>& overrides) {
  return vmoe::config::parse_config_text("", "test", overrides);
}

}  // namespace

TEST_CASE("open_split streams IMAGE_FOLDER splits and load_split refuses them") {
  const fs::path dir = vmoe::testing::scratch_dir("open_split_folder");
  write_grey_png(dir / "tr" / "b" / "1.png", 6, 5, 9);
  write_grey_png(dir / "tr" / "a" / "1.png", 7, 4, 8);
  write_grey_png(dir / "te" / "a" / "1.png", 7, 4, 8);
  const auto cfg =
      config_for({"data.dataset=IMAGE_FOLDER", "data.dir=" + dir.string(), "data.train_folder=tr",
                  "data.test_folder=te", "model.num_classes=2", "model.channels=3"});
  const auto train = vmoe::open_split(cfg, vmoe::data::Split::train);
  const auto* folder = dynamic_cast<const vmoe::data::ImageFolderSource*>(train.get());
  REQUIRE(folder != nullptr);
  CHECK(folder->class_names() == std::vector<std::string>{"a", "b"});
  vmoe::data::Image img;
  train->read(1, img);
  CHECK(img.channels == 3);  // model.channels
  CHECK(img.height == 5);    // sizes are the augmentation's business, not checked here
  CHECK(train->label(1) == 1);

  // The test folder lacks class b: its labels would not mean the training classes.
  CHECK_THROWS_WITH(vmoe::open_split(cfg, vmoe::data::Split::test),
                    Contains("te") && Contains("have different classes") &&
                        Contains("class 1 is 'b' in the first and missing in the second"));
  CHECK_THROWS_WITH(vmoe::load_split(cfg, vmoe::data::Split::train), Contains("IMAGE_FOLDER"));
  CHECK_THROWS_WITH(config_for({"data.dataset=IMAGE_FOLDER", "data.train_folder="}),
                    Contains("data.train_folder"));
}

TEST_CASE("open_split and load_split read HDF5 shards into memory, checked against the model") {
  const fs::path dir = vmoe::testing::scratch_dir("open_split_shard");
  vmoe::data::ImageDataset ds;
  ds.n = 3;
  ds.height = ds.width = 8;
  ds.channels = 1;
  ds.num_classes = 4;
  ds.images.assign(3 * 64, 0);
  for (size_t i = 0; i < ds.images.size(); ++i)
    ds.images[i] = uint8_t(i);
  ds.labels = {3, 1, 2};
  fs::create_directories(dir / "s");
  vmoe::data::write_hdf5_shard((dir / "s" / "a.h5").string(),
                               vmoe::data::InMemorySource(ds, "fixture"), 0, 0);
  const std::vector<std::string> base = {
      "data.dataset=HDF5_SHARDS",
      "data.dir=" + (dir / "s").string(),
      "data.train_shard=a.h5",
      "data.test_shard=" + (dir / "s" / "a.h5").string(),  // absolute
      "model.image_size=8",
      "model.patch_size=4",
      "model.channels=1",
      "model.num_classes=4"};
  const auto cfg = config_for(base);
  const auto source = vmoe::open_split(cfg, vmoe::data::Split::train);
  CHECK(source->size() == 3);
  CHECK(source->label(0) == 3);
  vmoe::data::Image img;
  source->read(2, img);
  CHECK(img.pixels[0] == uint8_t(128));
  CHECK(vmoe::load_split(cfg, vmoe::data::Split::test).labels == ds.labels);

  auto limited = base;
  limited.push_back("data.num_train_examples=2");
  CHECK(vmoe::load_split(config_for(limited), vmoe::data::Split::train).n == 2);

  auto wrong_classes = base;
  wrong_classes.push_back("model.num_classes=10");
  CHECK_THROWS_WITH(vmoe::load_split(config_for(wrong_classes), vmoe::data::Split::train),
                    Contains("a.h5") && Contains("model.num_classes"));
  auto wrong_size = base;
  wrong_size.push_back("model.image_size=16");
  CHECK_THROWS_WITH(vmoe::open_split(config_for(wrong_size), vmoe::data::Split::train),
                    Contains("8x8x1") && Contains("model.image_size"));
}

TEST_CASE("open_split applies example limits to image folders, spread over the classes") {
  const fs::path dir = vmoe::testing::scratch_dir("open_split_limit");
  for (const char* cls : {"a", "b", "c"})
    for (int i = 0; i < 4; ++i)
      write_grey_png(dir / "train" / cls / (std::to_string(i) + ".png"), 4, 4, uint8_t(10 * i));
  const auto limited = vmoe::open_split(
      config_for({"data.dataset=IMAGE_FOLDER", "data.dir=" + dir.string(), "model.num_classes=3",
                  "model.channels=1", "data.num_train_examples=6"}),
      vmoe::data::Split::train);
  REQUIRE(limited->size() == 6);
  std::vector<int32_t> labels;
  for (int64_t i = 0; i < limited->size(); ++i)
    labels.push_back(limited->label(i));
  CHECK(labels == std::vector<int32_t>{0, 0, 1, 1, 2, 2});  // every 2nd of 12, class-ordered
  CHECK(limited->describe(1) == (dir / "train" / "a" / "2.png").string());
  CHECK(vmoe::data::evenly_spaced(10, 0).size() == 10);
  CHECK(vmoe::data::evenly_spaced(10, 3) == std::vector<int64_t>{0, 3, 6});
}
