// Tests of the checks of what an HDF5 file declares (hdf5/hdf5_checks.h): a dataset is checked
// for type, shape and the bytes the file stores before anything is allocated, an attribute for
// kind and a single value before it is read; also through the HDF5 shard reader (data/).
#include <catch2/catch.hpp>
#include <fstream>
#include <string>
#include <vector>

#include "data/data_error.h"
#include "data/hdf5_shards.h"
#include "hdf5/hdf5_file.h"
#include "test/hdf5/hostile_files.h"
#include "test/temp_dir.h"

using namespace vmoe;
using Catch::Matchers::Contains;
using vmoe::testing::TempDir;

namespace {

// A valid shard: 2 images 2x2x1, labels 0 and 1, num_classes 2.
void write_small_shard(const std::string& path) {
  Hdf5File f(path, Hdf5File::Mode::Create);
  const std::vector<uint8_t> images(8, 7);
  const std::vector<int32_t> labels = {0, 1};
  f.write("images", H5Type::u8, {2, 2, 2, 1}, images.data());
  f.write("labels", H5Type::i32, {2}, labels.data());
  f.set_attr("num_classes", int64_t(2));
  f.close();
}

}  // namespace

TEST_CASE("hdf5 checks: a dataset declaring more than the file stores is refused before reading") {
  TempDir dir;
  const std::string path = dir.file("huge.h5");
  // [1e9, 28, 28, 1] u8: 784 GB declared (below the limit), nothing stored.
  testing::declare_dataset(path, "images", H5T_STD_U8LE, {1000000000ull, 28, 28, 1});
  Hdf5File f(path, Hdf5File::Mode::Read);
  for (const bool info_only : {false, true}) {
    std::string msg;
    try {
      if (info_only) {
        f.info("images");
      } else {
        f.read("images");
      }
    } catch (const Hdf5Error& e) {
      msg = e.what();
    }
    INFO(msg);
    CHECK_THAT(msg, Contains("huge.h5") && Contains("'images'") &&
                        Contains("[1000000000, 28, 28, 1]") && Contains("stores 0 bytes"));
    CHECK(msg.find('\n') == std::string::npos);
  }
}

TEST_CASE("hdf5 checks: a shape beyond the documented limit or 2^63 elements is refused") {
  TempDir dir;
  const std::string path = dir.file("limit.h5");
  // 8 TiB of f32; 2^93 elements.
  testing::declare_dataset(path, "big", H5T_IEEE_F32LE, {uint64_t(1) << 31, uint64_t(1) << 10});
  testing::declare_dataset(path, "overflow", H5T_IEEE_F64LE,
                           {uint64_t(1) << 31, uint64_t(1) << 31, uint64_t(1) << 31});
  Hdf5File f(path, Hdf5File::Mode::Read);
  CHECK_THROWS_WITH(f.read("big"), Contains("'big'") && Contains("(the limit)"));
  CHECK_THROWS_WITH(f.read("overflow"), Contains("'overflow'") && Contains("2^63"));
}

TEST_CASE("hdf5 checks: the caller's expected type and shape are checked, with what was expected") {
  TempDir dir;
  const std::string path = dir.file("e.h5");
  {
    Hdf5File f(path, Hdf5File::Mode::Create);
    const std::vector<float> v(24, 1.0f);
    f.write("x", H5Type::f32, {2, 3, 4}, v.data());
  }
  Hdf5File f(path, Hdf5File::Mode::Read);
  CHECK_THROWS_WITH(f.read("x", {{H5Type::u8}, {}, {}}),
                    Contains("e.h5") && Contains("'x'") && Contains("holds f32, expected u8"));
  CHECK_THROWS_WITH(f.read("x", {{}, std::vector<int64_t>{-1, -1, -1, -1}, "[N, H, W, C]"}),
                    Contains("has shape [2, 3, 4], expected [N, H, W, C]"));
  CHECK_THROWS_WITH(f.info("x", {{}, std::vector<int64_t>{2, 3, 5}, {}}),
                    Contains("expected [2, 3, 5]"));
  const H5Array a = f.read("x", {{H5Type::f32, H5Type::f64}, std::vector<int64_t>{2, -1, 4}, {}});
  CHECK(a.shape == std::vector<int64_t>{2, 3, 4});
}

TEST_CASE("hdf5 checks: data kept in an external file is refused") {
  TempDir dir;
  const std::string raw = dir.file("secret.bin");
  std::ofstream(raw) << "0123456789abcdef";
  const std::string path = dir.file("ext.h5");
  testing::declare_external_dataset(path, "labels", raw, 4);
  Hdf5File f(path, Hdf5File::Mode::Read);
  CHECK_THROWS_WITH(f.read("labels"), Contains("'labels'") && Contains("external files"));
}

TEST_CASE("hdf5 checks: attributes must be one value of the expected kind") {
  TempDir dir;
  const std::string path = dir.file("a.h5");
  {
    Hdf5File f(path, Hdf5File::Mode::Create);
    f.set_attr("step", std::string("12"));
    f.set_attr("ok", int64_t(3));
  }
  testing::set_int_array_attribute(path, ".", "many", {1, 2, 3});
  testing::set_int_array_attribute(path, ".", "one", {5});
  Hdf5File f(path, Hdf5File::Mode::Read);
  CHECK_THROWS_WITH(f.get_attr_int("step"),
                    Contains("a.h5") && Contains("'step'") && Contains("expected an integer"));
  CHECK_THROWS_WITH(f.get_attr_int("many"),
                    Contains("'many'") && Contains("array of shape [3], expected a single value"));
  CHECK_THROWS_WITH(f.get_attr_double("many"), Contains("expected a single value"));
  CHECK_THROWS_WITH(f.get_attr_string("ok"), Contains("'ok'") && Contains("expected a string"));
  CHECK(f.get_attr_int("one") == 5);
  CHECK(f.get_attr_int("ok") == 3);
}

TEST_CASE("hdf5 shards: an array-valued num_classes attribute is refused, not read past") {
  TempDir dir;
  const std::string path = dir.file("shard.h5");
  write_small_shard(path);
  CHECK(data::load_hdf5_shard(path).num_classes == 2);
  testing::set_int_array_attribute(path, ".", "num_classes", {2, 3, 4, 5});
  CHECK_THROWS_AS(data::load_hdf5_shard(path), data::DataError);
  CHECK_THROWS_WITH(data::load_hdf5_shard(path), Contains("shard.h5") &&
                                                     Contains("'num_classes'") &&
                                                     Contains("expected a single value"));
}

TEST_CASE("hdf5 shards: a shard declaring [1e12, 28, 28, 1] images is refused before allocating") {
  TempDir dir;
  const std::string path = dir.file("huge_shard.h5");
  testing::declare_dataset(path, "images", H5T_STD_U8LE, {1000000000000ull, 28, 28, 1});
  testing::declare_dataset(path, "labels", H5T_STD_I32LE, {1000000000000ull});
  {
    Hdf5File f(path, Hdf5File::Mode::Append);
    f.set_attr("num_classes", int64_t(10));
  }
  CHECK_THROWS_AS(data::load_hdf5_shard(path), data::DataError);
  CHECK_THROWS_WITH(data::load_hdf5_shard(path),
                    Contains("huge_shard.h5") && Contains("'images'") &&
                        Contains("[1000000000000, 28, 28, 1] declares"));
}

TEST_CASE("hdf5 shards: images of another type and labels of another count name the dataset") {
  TempDir dir;
  const std::string path = dir.file("s.h5");
  write_small_shard(path);
  {
    Hdf5File f(path, Hdf5File::Mode::Append);
    const std::vector<float> images(8, 0.5f);
    f.write("images", H5Type::f32, {2, 2, 2, 1}, images.data());
  }
  CHECK_THROWS_WITH(data::load_hdf5_shard(path),
                    Contains("s.h5") && Contains("'images'") && Contains("expected u8"));
  write_small_shard(path);
  {
    Hdf5File f(path, Hdf5File::Mode::Append);
    const std::vector<int32_t> labels = {0, 1, 1};
    f.write("labels", H5Type::i32, {3}, labels.data());
  }
  CHECK_THROWS_WITH(data::load_hdf5_shard(path),
                    Contains("'labels'") && Contains("[3]") && Contains("expected [2]"));
}
