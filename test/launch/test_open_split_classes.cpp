// data.classes (configs/vmoe.proto): open_split / load_split keep only the listed classes,
// relabelled by their position in the list, for every dataset kind and both splits, with example
// limits counting kept examples; the config's and the dataset's errors. Images of another size
// than the model's are accepted where the pipeline resizes them (fine-tuning at a new
// resolution).

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "command_runner.h"
#include "configs/config.h"
#include "data/class_subset.h"
#include "data/hdf5_shards.h"
#include "data/png_codec.h"
#include "launch/experiment.h"

namespace fs = std::filesystem;
using Catch::Matchers::Contains;
using vmoe::data::Split;

namespace {

vmoe::config::Config config_for(const std::vector<std::string>& overrides) {
  return vmoe::config::parse_config_text("", "test", overrides);
}

std::string config_error(const std::vector<std::string>& overrides) {
  try {
    config_for(overrides);
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

// Six 4x4 grey examples of 4 classes; example i is filled with the value 10 * i.
vmoe::data::ImageDataset six_examples() {
  vmoe::data::ImageDataset ds;
  ds.n = 6;
  ds.height = ds.width = 4;
  ds.channels = 1;
  ds.num_classes = 4;
  ds.labels = {3, 1, 2, 0, 3, 1};
  for (int i = 0; i < 6; ++i)
    ds.images.insert(ds.images.end(), 16, uint8_t(10 * i));
  return ds;
}

// The labels and first pixels (= 10 * original index) of a source.
std::pair<std::vector<int32_t>, std::vector<int>> contents(const vmoe::data::ImageSource& s) {
  std::pair<std::vector<int32_t>, std::vector<int>> out;
  vmoe::data::Image img;
  for (int64_t i = 0; i < s.size(); ++i) {
    out.first.push_back(s.label(i));
    s.read(i, img);
    out.second.push_back(img.pixels[0]);
  }
  return out;
}

void write_be32(std::ofstream& f, uint32_t v) {
  const char b[4] = {char(v >> 24), char(v >> 16), char(v >> 8), char(v)};
  f.write(b, 4);
}

// Raw (not gzipped) IDX files of a dataset of 1-channel images.
void write_idx(const vmoe::data::ImageDataset& ds, const fs::path& images, const fs::path& labels) {
  std::ofstream fi(images, std::ios::binary);
  write_be32(fi, 0x00000803);
  write_be32(fi, uint32_t(ds.n));
  write_be32(fi, uint32_t(ds.height));
  write_be32(fi, uint32_t(ds.width));
  fi.write(reinterpret_cast<const char*>(ds.images.data()), std::streamsize(ds.images.size()));
  std::ofstream fl(labels, std::ios::binary);
  write_be32(fl, 0x00000801);
  write_be32(fl, uint32_t(ds.n));
  for (int32_t l : ds.labels)
    fl.put(char(l));
}

}  // namespace

TEST_CASE("data.classes keeps and relabels the listed classes of HDF5 shards and IDX files") {
  const fs::path dir = vmoe::testing::scratch_dir("open_split_classes");
  const vmoe::data::ImageDataset ds = six_examples();
  vmoe::data::write_hdf5_shard((dir / "a.h5").string(), vmoe::data::InMemorySource(ds, "fixture"),
                               0, 0);
  write_idx(ds, dir / "img.idx", dir / "lab.idx");
  const std::vector<std::string> model = {"model.image_size=4", "model.patch_size=2",
                                          "model.channels=1", "model.num_classes=2",
                                          "data.classes=3,1"};
  std::vector<std::string> shard = model, idx = model;
  const std::vector<std::string> shard_files = {"data.dataset=HDF5_SHARDS",
                                                "data.dir=" + dir.string(), "data.train_shard=a.h5",
                                                "data.test_shard=a.h5"};
  const std::vector<std::string> idx_files = {
      "data.dataset=IDX",          "data.dir=" + dir.string(), "data.train_images=img.idx",
      "data.train_labels=lab.idx", "data.test_images=img.idx", "data.test_labels=lab.idx"};
  shard.insert(shard.end(), shard_files.begin(), shard_files.end());
  idx.insert(idx.end(), idx_files.begin(), idx_files.end());
  // Class 3 -> 0 and class 1 -> 1; examples 2 and 3 (classes 2 and 0) are dropped.
  const std::vector<int32_t> labels = {0, 1, 0, 1};
  const std::vector<int> pixels = {0, 10, 40, 50};
  for (const auto& overrides : {shard, idx}) {
    const auto cfg = config_for(overrides);
    for (Split split : {Split::train, Split::test}) {
      const auto source = vmoe::open_split(cfg, split);
      CHECK(source->num_classes() == 2);
      CHECK(contents(*source) == std::make_pair(labels, pixels));
      const vmoe::data::ImageDataset loaded = vmoe::load_split(cfg, split);
      CHECK(loaded.labels == labels);
      CHECK(loaded.num_classes == 2);
    }
    // Limits count kept examples (IDX files are read whole first).
    auto limited = overrides;
    limited.push_back("data.num_train_examples=3");
    limited.push_back("eval.num_examples=1");
    CHECK(vmoe::load_split(config_for(limited), Split::train).labels ==
          std::vector<int32_t>{0, 1, 0});
    CHECK(vmoe::load_split(config_for(limited), Split::test).labels == std::vector<int32_t>{0});
    // An id the dataset does not have: the error names the dataset and the field.
    auto beyond = overrides;
    beyond.push_back("data.classes=3,1,4");
    beyond.push_back("model.num_classes=3");
    CHECK_THROWS_WITH(vmoe::open_split(config_for(beyond), Split::train),
                      Contains("data.classes names class 4") && Contains("classes 0..3") &&
                          Contains(overrides == shard ? "a.h5" : "img.idx"));
  }
  // Without data.classes the 4-class shard does not fit a 2-class model.
  std::vector<std::string> all = shard;
  all.erase(all.begin() + 4);  // data.classes
  CHECK_THROWS_WITH(vmoe::open_split(config_for(all), Split::train),
                    Contains("has 4 classes") && Contains("model.num_classes"));
}

TEST_CASE("data.classes keeps and relabels the listed classes of image folders") {
  const fs::path dir = vmoe::testing::scratch_dir("open_split_classes_folder");
  for (const char* split : {"train", "test"})
    for (const char* cls : {"a", "b", "c"})
      for (int i = 0; i < 2; ++i) {
        const fs::path p = dir / split / cls / (std::to_string(i) + ".png");
        fs::create_directories(p.parent_path());
        vmoe::data::write_png(p.string(), {3, 3, 1, std::vector<uint8_t>(9, uint8_t(cls[0] + i))});
      }
  const std::vector<std::string> base = {"data.dataset=IMAGE_FOLDER", "data.dir=" + dir.string(),
                                         "model.channels=1", "model.num_classes=2",
                                         "data.classes=2,0"};
  for (Split split : {Split::train, Split::test}) {
    const auto source = vmoe::open_split(config_for(base), split);
    CHECK(source->num_classes() == 2);
    CHECK(contents(*source) == std::make_pair(std::vector<int32_t>{1, 1, 0, 0},
                                              std::vector<int>{'a', 'a' + 1, 'c', 'c' + 1}));
  }
  auto limited = base;
  limited.push_back("data.num_train_examples=2");  // spread over the kept examples
  const auto two = vmoe::open_split(config_for(limited), Split::train);
  CHECK(contents(*two).first == std::vector<int32_t>{1, 0});
  CHECK(two->describe(1) == (dir / "train" / "c" / "0.png").string());
  auto beyond = base;
  beyond.push_back("data.classes=2,0,3");
  beyond.push_back("model.num_classes=3");
  CHECK_THROWS_WITH(vmoe::open_split(config_for(beyond), Split::train),
                    Contains("data.classes names class 3") && Contains("image folder"));
}

TEST_CASE("data.classes errors of the config name the field") {
  CHECK_THAT(config_error({"model.num_classes=3", "data.classes=1,2"}),
             Contains("data.classes keeps 2 classes but model.num_classes is 3"));
  CHECK_THAT(config_error({"model.num_classes=2", "data.classes=1,1"}),
             Contains("data.classes names class 1 twice"));
  CHECK_THAT(config_error({"model.num_classes=2", "data.classes=1,-1"}),
             Contains("data.classes: class id -1 is negative"));
  CHECK(config_error({"model.num_classes=2", "data.classes=9,0"}).empty());
  // The data library's own checks (used when a dataset is opened).
  const auto label = [](int64_t i) { return int32_t(i % 3); };
  CHECK_THROWS_WITH(vmoe::data::select_classes(6, label, 3, {0, 0}, "x"), Contains("twice"));
  CHECK_THROWS_WITH(vmoe::data::select_classes(6, label, 3, {-1}, "x"), Contains("class -1"));
  const vmoe::data::ClassSelection s = vmoe::data::select_classes(6, label, 3, {2, 1}, "x");
  CHECK(s.indices == std::vector<int64_t>{1, 2, 4, 5});
  CHECK(s.labels == std::vector<int32_t>{1, 0, 1, 0});
  CHECK_THROWS_WITH(vmoe::data::select_classes(2, label, 4, {3}, "x"),
                    Contains("x has no example of the classes in data.classes"));
}

TEST_CASE("open_split accepts other image sizes where the pipeline resizes them") {
  const fs::path dir = vmoe::testing::scratch_dir("open_split_resize");
  vmoe::data::write_hdf5_shard((dir / "a.h5").string(),
                               vmoe::data::InMemorySource(six_examples(), "fixture"), 0, 0);
  const std::vector<std::string> base = {"data.dataset=HDF5_SHARDS", "data.dir=" + dir.string(),
                                         "data.train_shard=a.h5",    "data.test_shard=a.h5",
                                         "model.image_size=8",       "model.patch_size=4",
                                         "model.channels=1",         "model.num_classes=4"};
  // 4x4 images for an 8x8 model: evaluation resizes; training only with the inception crop.
  CHECK(vmoe::open_split(config_for(base), Split::test)->size() == 6);
  CHECK_THROWS_WITH(vmoe::open_split(config_for(base), Split::train),
                    Contains("4x4x1") && Contains("data.inception_crop"));
  auto crop = base;
  crop.push_back("data.inception_crop=true");
  CHECK(vmoe::open_split(config_for(crop), Split::train)->size() == 6);
  // Channels are never converted; load_split (used as is by predict) keeps the strict check.
  auto rgb = crop;
  rgb.push_back("model.channels=3");
  CHECK_THROWS_WITH(vmoe::open_split(config_for(rgb), Split::test), Contains("model.channels"));
  CHECK_THROWS_WITH(vmoe::load_split(config_for(crop), Split::test), Contains("model.image_size"));
}
