// Weights file save/load on top of the Hdf5File wrapper.
#include "parallel/weights_file.h"

#include <cstdio>
#include <filesystem>
#include <stdexcept>

#include "core/ops.h"
#include "hdf5/hdf5_file.h"
#include "hdf5/hdf5_types.h"

namespace vmoe {

namespace {

const char* kPrefix = "params/";

H5Type h5_type(DType t) {
  if (t != DType::f32 && t != DType::f64) {
    throw std::invalid_argument(std::string("weights of dtype ") + dtype_name(t) +
                                " cannot be saved");
  }
  return h5_type_of(t);
}

}  // namespace

void save_weights(const std::string& path, const ParameterStore& params,
                  const std::string& config_text, int64_t step) {
  std::vector<NamedTensor> named;
  for (const ParamInfo& info : params.infos()) {
    if (info.local_shape != info.shape) {
      throw std::logic_error("save_weights: parameter '" + info.name +
                             "' is sharded; gather it first");
    }
    named.push_back({info.name, params.value(info.name)});
  }
  save_weights(path, named, config_text, step);
}

void save_weights(const std::string& path, const std::vector<NamedTensor>& params,
                  const std::string& config_text, int64_t step) {
  const std::string tmp = path + ".tmp";
  {
    Hdf5File file(tmp, Hdf5File::Mode::Create);
    for (const NamedTensor& p : params) {
      // HDF5 writes host memory: a device tensor is copied to the host first.
      const Tensor v = p.value.detach().cpu().contiguous();
      file.write(kPrefix + p.name, h5_type(v.dtype()), v.shape(), v.raw_data());
    }
    file.set_attr("config", config_text);
    file.set_attr("step", step);
    file.set_attr("format", std::string("vmoe-weights-1"));
    file.flush();
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec)
    throw std::runtime_error("cannot rename '" + tmp + "' to '" + path + "': " + ec.message());
}

void load_weights(const std::string& path, ParameterStore& params) {
  Hdf5File file(path, Hdf5File::Mode::Read);
  for (const ParamInfo& info : params.infos()) {
    const std::string name = kPrefix + info.name;
    if (!file.has(name)) {
      throw std::runtime_error("weights file '" + path + "' has no parameter '" + info.name +
                               "' (does it belong to this model config?)");
    }
    // Type, shape and stored size are checked before anything is allocated.
    const H5Array a = file.read(name, {{H5Type::f32, H5Type::f64}, info.shape, {}});
    Tensor src = Tensor::empty(a.shape, dtype_of(a.type), kCpu);  // then copied to the device
    std::copy(a.bytes.begin(), a.bytes.end(), static_cast<uint8_t*>(src.raw_data()));
    if (info.local_shape != info.shape) {  // this process's experts only
      const ExpertShard& shard = params.expert_shard();
      src = src.slice(0, shard.first, shard.first + shard.count);
    }
    Tensor dst = params.value(info.name).detach();
    copy_(dst, to_dtype(src, dst.dtype()).to(dst.device()));
  }
}

std::string read_weights_config(const std::string& path) {
  Hdf5File file(path, Hdf5File::Mode::Read);
  if (!file.has_attr("config")) {
    throw std::runtime_error("weights file '" + path + "' has no 'config' attribute");
  }
  return file.get_attr_string("config");
}

}  // namespace vmoe
