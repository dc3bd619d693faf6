// Sharded checkpoints and weights files of a store on any device (single process): HDF5 reads
// and writes host memory, so device buffers are staged through host copies. A file saved from
// the strict device (core/device.h) loads on the CPU and the other way round, bit for bit.
#include <catch2/catch.hpp>
#include <memory>
#include <string>
#include <vector>

#include "core/ops.h"
#include "core/optim/adamw.h"
#include "parallel/checkpoint.h"
#include "parallel/local_communicator.h"
#include "parallel/process_groups.h"
#include "parallel/weights_file.h"
#include "test/temp_dir.h"

using namespace vmoe;

namespace {

constexpr int64_t kExperts = 2;

// A store with a replicated and an expert parameter on `device`, values from `seed`.
std::unique_ptr<ParameterStore> make_store(Device device, uint64_t seed) {
  auto store = std::make_unique<ParameterStore>();
  store->declare("dense/kernel", {3, 2}, InitSpec::normal(1.0), WeightDecay::yes);
  store->declare("dense/bias", {2}, InitSpec::normal(1.0));
  store->declare("experts/kernel", {kExperts, 2, 3}, InitSpec::normal(1.0), WeightDecay::yes,
                 Sharding::expert);
  store->allocate(seed, DType::f32, device);
  return store;
}

// Every flat buffer of the store and the optimizer, read back to the host.
std::vector<float> contents(const ParameterStore& store, const Optimizer& optimizer) {
  std::vector<float> out;
  const auto append = [&](const Tensor& t) {
    for (float v : t.cpu().to_vector<float>())
      out.push_back(v);
  };
  for (int s = 0; s < kNumShardings; ++s)
    append(store.flat_values(Sharding(s)));
  for (const OptimizerSlot& slot : optimizer.slots())
    append(slot.flat);
  return out;
}

// Gives every gradient a value and applies one AdamW step, so that the slots are not zero.
void train_one_step(ParameterStore& store, AdamW& optimizer) {
  for (int s = 0; s < kNumShardings; ++s) {
    Tensor g = store.flat_grads(Sharding(s));
    if (g.numel() == 0) continue;
    copy_(g, arange(g.numel(), DType::f32, g.device()) * 0.5 - 1.0);
  }
  optimizer.step(store, 0.1);
}

}  // namespace

TEST_CASE("checkpoint: a store on cpu or cpu_strict saves and loads on either device",
          "[checkpoint]") {
  const ProcessGroups groups =
      make_process_groups(std::make_shared<LocalCommunicator>("world"), kExperts);
  for (Device from : {kCpu, kCpuStrict}) {
    for (Device to : {kCpu, kCpuStrict}) {
      CAPTURE(from.str(), to.str());
      testing::TempDir dir;
      std::unique_ptr<ParameterStore> saved = make_store(from, 1);
      AdamW saved_opt(*saved, AdamWOptions{});
      train_one_step(*saved, saved_opt);
      CheckpointInfo info;
      info.position.step = 7;
      info.optimizer_steps = saved_opt.steps();
      info.seed = 1;
      info.config_text = "config";
      const std::string path =
          save_checkpoint(dir.file("ckpt"), *saved, saved_opt, "adamw", groups, info, 0);

      std::unique_ptr<ParameterStore> loaded = make_store(to, 2);
      AdamW loaded_opt(*loaded, AdamWOptions{});
      CHECK(contents(*loaded, loaded_opt) != contents(*saved, saved_opt));
      const CheckpointInfo got = load_checkpoint(path, *loaded, loaded_opt);
      CHECK(got.position.step == 7);
      CHECK(loaded_opt.steps() == 1);
      CHECK(contents(*loaded, loaded_opt) == contents(*saved, saved_opt));
    }
  }
}

TEST_CASE("weights file: a store on cpu or cpu_strict saves and loads on either device",
          "[checkpoint]") {
  for (Device from : {kCpu, kCpuStrict}) {
    for (Device to : {kCpu, kCpuStrict}) {
      CAPTURE(from.str(), to.str());
      testing::TempDir dir;
      std::unique_ptr<ParameterStore> saved = make_store(from, 3);
      save_weights(dir.file("w.h5"), *saved, "config text", 5);
      std::unique_ptr<ParameterStore> loaded = make_store(to, 4);
      load_weights(dir.file("w.h5"), *loaded);
      for (int s = 0; s < kNumShardings; ++s) {
        CHECK(loaded->flat_values(Sharding(s)).cpu().to_vector<float>() ==
              saved->flat_values(Sharding(s)).cpu().to_vector<float>());
      }
      CHECK(read_weights_config(dir.file("w.h5")) == "config text");
    }
  }
}

TEST_CASE("gather_experts: the global expert tensor on the local tensor's device", "[checkpoint]") {
  const ProcessGroups groups =
      make_process_groups(std::make_shared<LocalCommunicator>("world"), kExperts);
  for (Device device : {kCpu, kCpuStrict}) {
    Tensor local = Tensor::from_vector<float>({1, 2, 3, 4}, {kExperts, 2}, device);
    Tensor global = gather_experts(groups, local);
    CHECK(global.device() == device);
    CHECK(global.shape() == Shape{kExperts, 2});
    CHECK(global.cpu().to_vector<float>() == std::vector<float>{1, 2, 3, 4});
  }
}
