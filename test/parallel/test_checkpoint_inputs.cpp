// Hostile and inconsistent checkpoint and weights files (single process): every tensor's element
// type, shape and stored bytes and every position attribute are checked before anything is
// read, and the error names the file and the first field that does not fit.
#include <catch2/catch.hpp>
#include <memory>
#include <string>

#include "core/optim/adamw.h"
#include "hdf5/hdf5_file.h"
#include "parallel/checkpoint.h"
#include "parallel/local_communicator.h"
#include "parallel/process_groups.h"
#include "parallel/weights_file.h"
#include "test/hdf5/hostile_files.h"
#include "test/temp_dir.h"

using namespace vmoe;
using Catch::Matchers::Contains;

namespace {

constexpr int64_t kExperts = 2;

std::unique_ptr<ParameterStore> make_store(DType dtype) {
  auto store = std::make_unique<ParameterStore>();
  store->declare("dense/kernel", {3, 2}, InitSpec::normal(1.0), WeightDecay::yes);
  store->declare("dense/bias", {2}, InitSpec::normal(1.0));
  store->declare("experts/kernel", {kExperts, 2, 3}, InitSpec::normal(1.0), WeightDecay::yes,
                 Sharding::expert);
  store->allocate(1, dtype, kCpu);
  return store;
}

// A checkpoint of a store of `dtype` at step 4 in `dir`; returns its path.
std::string saved_checkpoint(const testing::TempDir& dir, DType dtype) {
  const ProcessGroups groups =
      make_process_groups(std::make_shared<LocalCommunicator>("world"), kExperts);
  std::unique_ptr<ParameterStore> store = make_store(dtype);
  AdamW optimizer(*store, AdamWOptions{});
  CheckpointInfo info;
  info.position = {4, 1, 8};
  info.optimizer_steps = 4;
  info.config_text = "config";
  info.optimizer = "adamw";
  return save_checkpoint(dir.file("ckpt"), *store, optimizer, "adamw", groups, info, 0);
}

// The message of what load_checkpoint throws for `path` into an f32 store, "" if nothing.
std::string load_error(const std::string& path) {
  std::unique_ptr<ParameterStore> store = make_store(DType::f32);
  AdamW optimizer(*store, AdamWOptions{});
  try {
    load_checkpoint(path, *store, optimizer);
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("checkpoint inputs: f64 tensors are refused by an f32 model, naming the field") {
  testing::TempDir dir;
  const std::string path = saved_checkpoint(dir, DType::f64);
  CHECK_THAT(load_error(path), Contains(path) && Contains("attribute 'dtype' is 'f64'") &&
                                   Contains("f32 (model.dtype)"));
  // With the attribute edited to match, the tensors themselves are checked.
  Hdf5File(path, Hdf5File::Mode::Append).set_attr("dtype", std::string("f32"));
  CHECK_THAT(load_error(path), Contains(path) &&
                                   Contains("tensor 'params/dense/kernel' holds f64") &&
                                   Contains("f32 (model.dtype)"));
}

TEST_CASE("checkpoint inputs: a negative position or a mistyped attribute is refused") {
  testing::TempDir dir;
  const std::string path = saved_checkpoint(dir, DType::f32);
  CHECK(load_error(path).empty());
  for (const char* field : {"step", "epoch", "index_in_epoch", "optimizer_steps"}) {
    CAPTURE(field);
    const std::string edited = dir.file(std::string(field) + ".h5");
    std::filesystem::copy_file(path, edited);
    Hdf5File(edited, Hdf5File::Mode::Append).set_attr(field, int64_t(-5));
    CHECK_THAT(load_error(edited), Contains(edited) &&
                                       Contains("attribute '" + std::string(field) + "' is -5") &&
                                       Contains("expected >= 0"));
  }
  Hdf5File(path, Hdf5File::Mode::Append).set_attr("step", std::string("4"));
  CHECK_THAT(load_error(path),
             Contains(path) && Contains("'step'") && Contains("expected an integer"));
  testing::set_int_array_attribute(path, ".", "step", {4, 5});
  CHECK_THAT(load_error(path), Contains("'step'") && Contains("expected a single value"));
}

TEST_CASE("checkpoint inputs: a tensor whose data the file does not store is damage") {
  testing::TempDir dir;
  const std::string path = saved_checkpoint(dir, DType::f32);
  // The right name, type and shape, but no data: HDF5 would read fill values (zeros).
  testing::declare_dataset(path, "params/dense/bias", H5T_IEEE_F32LE, {2});
  std::unique_ptr<ParameterStore> store = make_store(DType::f32);
  AdamW optimizer(*store, AdamWOptions{});
  CHECK_THROWS_AS(load_checkpoint(path, *store, optimizer), Hdf5Error);
  CHECK_THAT(load_error(path), Contains(path) && Contains("'params/dense/bias'") &&
                                   Contains("declares 8 bytes but the file stores 0"));
}

TEST_CASE("weights inputs: a dataset of the wrong rank declaring terabytes is refused unread") {
  testing::TempDir dir;
  const std::string path = dir.file("w.h5");
  save_weights(path, *make_store(DType::f32), "config", 3);
  testing::declare_dataset(path, "params/dense/kernel", H5T_IEEE_F32LE,
                           {uint64_t(1) << 20, uint64_t(1) << 20, 4});
  std::unique_ptr<ParameterStore> store = make_store(DType::f32);
  CHECK_THROWS_WITH(load_weights(path, *store),
                    Contains(path) && Contains("'params/dense/kernel'") &&
                        Contains("has shape [1048576, 1048576, 4], expected [3, 2]"));
  // A parameter of an integer type names the types it may have.
  {
    Hdf5File f(path, Hdf5File::Mode::Append);
    const std::vector<int32_t> v(6, 1);
    f.write("params/dense/kernel", H5Type::i32, {3, 2}, v.data());
  }
  CHECK_THROWS_WITH(load_weights(path, *store), Contains("'params/dense/kernel'") &&
                                                    Contains("holds i32, expected f32 or f64"));
}
