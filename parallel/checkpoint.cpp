// Sharded checkpoint writer (collective, parallel HDF5) and reader (hyperslabs of the own experts).
#include "parallel/checkpoint.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <regex>
#include <stdexcept>

#include "core/ops.h"
#include "hdf5/hdf5_checks.h"
#include "hdf5/hdf5_file.h"
#include "hdf5/hdf5_handle.h"
#include "hdf5/hdf5_types.h"
#include "parallel/mpi_communicator.h"

namespace vmoe {

namespace {

const char* kFormat = "vmoe-checkpoint-1";

std::string checkpoint_file_name(int64_t step) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "ckpt_%08lld.h5", static_cast<long long>(step));
  return buf;
}

hid_t native_type(DType t) {
  if (t != DType::f32 && t != DType::f64) {
    throw std::invalid_argument(std::string("checkpoints hold f32 or f64 tensors, not ") +
                                dtype_name(t));
  }
  return h5_memory_type(h5_type_of(t));
}

std::vector<hsize_t> to_hsize(const Shape& s) {
  return std::vector<hsize_t>(s.begin(), s.end());
}

// One chunk per expert for expert tensors (each owner writes whole chunks), the whole tensor
// for replicated ones, halved along the leading axes down to at most 64 MiB.
std::vector<hsize_t> chunk_dims(const Shape& shape, bool expert, size_t element_bytes) {
  std::vector<hsize_t> c = to_hsize(shape);
  if (expert) c[0] = 1;
  auto bytes = [&] {
    size_t b = element_bytes;
    for (hsize_t d : c)
      b *= size_t(d);
    return b;
  };
  for (size_t i = 0; i < c.size(); ++i)
    while (c[i] > 1 && bytes() > (size_t(64) << 20))
      c[i] = (c[i] + 1) / 2;
  return c;
}

std::string sharding_name(Sharding s) {
  return s == Sharding::expert ? "expert" : "replicated";
}

// Creates dataset `name` of `info`'s global shape and writes this rank's part of it: the
// whole tensor on rank 0 (replicated), the own experts' rows on the first rank of each replica
// group (expert), nothing elsewhere. Collective over the file's communicator.
void write_tensor(hid_t file, hid_t dxpl, const std::string& name, const ParamInfo& info,
                  const void* local, DType dtype, const ProcessGroups& groups) {
  const bool expert = info.sharding == Sharding::expert;
  const std::vector<hsize_t> dims = to_hsize(info.shape);
  H5SpaceId space{VMOE_H5_CHECK(H5Screate_simple(int(dims.size()), dims.data(), nullptr))};
  H5PlistId lcpl{VMOE_H5_CHECK(H5Pcreate(H5P_LINK_CREATE))};
  VMOE_H5_CHECK(H5Pset_create_intermediate_group(lcpl.get(), 1));
  H5PlistId dcpl{VMOE_H5_CHECK(H5Pcreate(H5P_DATASET_CREATE))};
  if (!dims.empty() && shape_numel(info.shape) > 0) {
    const std::vector<hsize_t> chunk = chunk_dims(info.shape, expert, dtype_size(dtype));
    VMOE_H5_CHECK(H5Pset_chunk(dcpl.get(), int(chunk.size()), chunk.data()));
    VMOE_H5_CHECK(H5Pset_fletcher32(dcpl.get()));
  }
  const hid_t type = native_type(dtype);
  H5DatasetId ds{VMOE_H5_CHECK(
      H5Dcreate2(file, name.c_str(), type, space.get(), lcpl.get(), dcpl.get(), H5P_DEFAULT))};
  const bool writes = expert ? groups.replica->rank() == 0 : groups.is_root();
  H5SpaceId file_space{VMOE_H5_CHECK(H5Dget_space(ds.get()))};
  H5SpaceId mem_space;
  if (writes) {
    const std::vector<hsize_t> mine = to_hsize(info.local_shape);
    mem_space = H5SpaceId{VMOE_H5_CHECK(H5Screate_simple(int(mine.size()), mine.data(), nullptr))};
    if (expert && info.local_shape != info.shape) {
      std::vector<hsize_t> start(dims.size(), 0);
      start[0] = hsize_t(groups.expert_shard().first);
      VMOE_H5_CHECK(H5Sselect_hyperslab(file_space.get(), H5S_SELECT_SET, start.data(), nullptr,
                                        mine.data(), nullptr));
    }
  } else {
    const hsize_t one = 1;
    mem_space = H5SpaceId{VMOE_H5_CHECK(H5Screate_simple(1, &one, nullptr))};
    VMOE_H5_CHECK(H5Sselect_none(mem_space.get()));
    VMOE_H5_CHECK(H5Sselect_none(file_space.get()));
  }
  VMOE_H5_CHECK(H5Dwrite(ds.get(), type, mem_space.get(), file_space.get(), dxpl, local));
  ds.close();
}

// Reads this process's part of dataset `name` (global shape `info.shape`) into `local`. The
// dataset's type, shape and stored bytes are checked first: a tensor the file cannot hold is
// damage (Hdf5Error), one of another shape or element type than the model's does not belong to
// this model (std::runtime_error naming the tensor).
void read_tensor(hid_t file, const std::string& path, const std::string& name,
                 const ParamInfo& info, void* local, DType dtype, int64_t first_expert) {
  if (H5Lexists(file, name.c_str(), H5P_DEFAULT) <= 0) {
    H5Eclear2(H5E_DEFAULT);
    throw std::runtime_error("checkpoint '" + path + "' has no tensor '" + name +
                             "' (does it belong to this model config?)");
  }
  H5DatasetId ds;
  H5DatasetInfo stored;
  try {
    ds = H5DatasetId{VMOE_H5_CHECK(H5Dopen2(file, name.c_str(), H5P_DEFAULT))};
    stored = checked_dataset_info(ds.get());
  } catch (const Hdf5Error& e) {
    throw Hdf5Error("checkpoint '" + path + "': tensor '" + name + "': " + e.what());
  }
  if (stored.shape != info.shape) {
    throw std::runtime_error("checkpoint '" + path + "': tensor '" + name + "' has shape " +
                             shape_str(stored.shape) + ", the model expects " +
                             shape_str(info.shape));
  }
  if (stored.type != h5_type_of(dtype)) {
    throw std::runtime_error("checkpoint '" + path + "': tensor '" + name + "' holds " +
                             h5_type_name(stored.type) + ", the model's parameters are " +
                             dtype_name(dtype) + " (model.dtype)");
  }
  const std::vector<hsize_t> dims = to_hsize(info.shape);
  H5SpaceId file_space{VMOE_H5_CHECK(H5Dget_space(ds.get()))};
  const std::vector<hsize_t> local_dims = to_hsize(info.local_shape);
  H5SpaceId mem_space{
      VMOE_H5_CHECK(H5Screate_simple(int(local_dims.size()), local_dims.data(), nullptr))};
  if (info.local_shape != info.shape) {
    std::vector<hsize_t> start(dims.size(), 0);
    start[0] = hsize_t(first_expert);
    VMOE_H5_CHECK(H5Sselect_hyperslab(file_space.get(), H5S_SELECT_SET, start.data(), nullptr,
                                      local_dims.data(), nullptr));
  }
  VMOE_H5_CHECK(
      H5Dread(ds.get(), native_type(dtype), mem_space.get(), file_space.get(), H5P_DEFAULT, local));
}

// Every tensor of a checkpoint: (dataset name, parameter, flat buffer holding it at
// info->offset) in a fixed order.
struct TensorRef {
  std::string name;
  const ParamInfo* info;
  size_t buffer;  // index into CheckpointTensors::buffers
};

// The flat buffers (parameter values of each sharding class, optimizer slots) on the store's
// device, and the tensors they hold. HDF5 reads and writes host memory: the buffers are staged
// through host copies (host_buffers) unless the host can read them.
struct CheckpointTensors {
  std::vector<Tensor> buffers;
  std::vector<TensorRef> refs;

  // Host memory holding each buffer's values (the buffer itself when the host can read it).
  std::vector<Tensor> host_buffers() const {
    std::vector<Tensor> out;
    for (const Tensor& b : buffers)
      out.push_back(b.cpu());
    return out;
  }
  // Copies host buffers back to the device buffers they were staged from.
  void store(const std::vector<Tensor>& host) const {
    for (size_t i = 0; i < buffers.size(); ++i) {
      if (host[i].storage() == buffers[i].storage()) continue;  // not staged
      Tensor dst = buffers[i];
      copy_(dst, host[i].to(dst.device()));
    }
  }
  // Host address of `ref`'s local data inside `host` (from host_buffers()).
  void* data(const std::vector<Tensor>& host, const TensorRef& ref) const {
    const Tensor& b = host[ref.buffer];
    return static_cast<uint8_t*>(b.raw_data()) + size_t(ref.info->offset) * dtype_size(b.dtype());
  }
};

CheckpointTensors checkpoint_tensors(const ParameterStore& params, const Optimizer& optimizer) {
  CheckpointTensors out;
  size_t values[kNumShardings];
  for (int s = 0; s < kNumShardings; ++s) {
    values[s] = out.buffers.size();
    out.buffers.push_back(params.flat_values(Sharding(s)));
  }
  for (const ParamInfo& p : params.infos())
    out.refs.push_back({"params/" + p.name, &p, values[size_t(p.sharding)]});
  for (const OptimizerSlot& slot : optimizer.slots()) {
    if (slot.flat.numel() == 0) continue;
    const size_t buffer = out.buffers.size();
    out.buffers.push_back(slot.flat);
    for (const ParamInfo& p : params.infos()) {
      if (p.sharding != slot.sharding) continue;
      out.refs.push_back({"optimizer/" + slot.name + "/" + p.name, &p, buffer});
    }
  }
  return out;
}

std::string utc_now() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

// Makes a file's (or directory's) data durable.
void fsync_path(const std::string& path, bool directory) {
  const int fd = ::open(path.c_str(), directory ? O_RDONLY | O_DIRECTORY : O_RDONLY);
  if (fd < 0) throw std::runtime_error("cannot open '" + path + "' to sync it");
  const int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0) throw std::runtime_error("cannot sync '" + path + "' to the disk");
}

void write_metadata(const std::string& path, const std::vector<TensorRef>& tensors,
                    const ProcessGroups& groups, const CheckpointInfo& info,
                    const std::string& optimizer_name, DType dtype) {
  Hdf5File f(path, Hdf5File::Mode::Append);
  for (const TensorRef& t : tensors)
    f.set_attr(t.name + "/sharding", sharding_name(t.info->sharding));
  f.set_attr("step", info.position.step);
  f.set_attr("epoch", info.position.epoch);
  f.set_attr("index_in_epoch", info.position.index_in_epoch);
  f.set_attr("optimizer_steps", info.optimizer_steps);
  f.set_attr("seed", static_cast<int64_t>(info.seed));
  f.set_attr("config", info.config_text);
  f.set_attr("world_size", groups.world_size());
  f.set_attr("expert_group_size", groups.expert->size());
  f.set_attr("num_experts", groups.num_experts);
  f.set_attr("created", utc_now());
  f.set_attr("dtype", std::string(dtype_name(dtype)));
  f.set_attr("optimizer", optimizer_name);
  // Last: a reader that finds the format attribute finds everything before it.
  f.set_attr("format", std::string(kFormat));
  f.close();
}

// A failed save (e.g. the disk is full): the temporary file goes, the previous checkpoints
// stay, and the message says so with the cause (errno text included by HDF5).
[[noreturn]] void throw_save_failure(const std::string& final_path, const std::string& tmp,
                                     const std::string& cause) {
  std::error_code ec;
  std::filesystem::remove(tmp, ec);
  std::string why = cause;
  const size_t errno_text = why.find("error message = '");
  if (errno_text != std::string::npos) {
    const size_t begin = errno_text + 17, end = why.find('\'', begin);
    why = why.substr(begin, end - begin);
  }
  throw std::runtime_error("cannot save checkpoint '" + final_path + "': " + why +
                           "; earlier checkpoints are untouched");
}

}  // namespace

void check_position(const std::string& path, const CheckpointInfo& info) {
  const std::pair<const char*, int64_t> fields[] = {
      {"step", info.position.step},
      {"epoch", info.position.epoch},
      {"index_in_epoch", info.position.index_in_epoch},
      {"optimizer_steps", info.optimizer_steps},
  };
  for (const auto& [field, value] : fields) {
    if (value < 0) {
      throw std::runtime_error("checkpoint '" + path + "': attribute '" + field + "' is " +
                               std::to_string(value) + ", expected >= 0");
    }
  }
}

std::vector<std::string> list_checkpoints(const std::filesystem::path& dir) {
  std::vector<std::pair<int64_t, std::string>> found;
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) return {};
  static const std::regex pattern(R"(ckpt_(\d+)\.h5)");
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    std::smatch m;
    const std::string name = entry.path().filename().string();
    if (std::regex_match(name, m, pattern))
      found.push_back({std::stoll(m[1].str()), entry.path().string()});
  }
  std::sort(found.begin(), found.end(), std::greater<>());
  std::vector<std::string> out;
  for (auto& f : found)
    out.push_back(std::move(f.second));
  return out;
}

std::string save_checkpoint(const std::filesystem::path& dir, const ParameterStore& params,
                            const Optimizer& optimizer, const std::string& optimizer_name,
                            const ProcessGroups& groups, const CheckpointInfo& info, int keep) {
  const bool root = groups.is_root();
  const std::string final_path = (dir / checkpoint_file_name(info.position.step)).string();
  const std::string tmp = final_path + ".tmp";
  if (root) {
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (ec) throw std::runtime_error("cannot create '" + dir.string() + "': " + ec.message());
    // Leftovers of saves that were killed.
    for (const auto& entry : std::filesystem::directory_iterator(dir, ec))
      if (entry.path().extension() == ".tmp") std::filesystem::remove(entry.path(), ec);
  }
  groups.world->barrier();
  const CheckpointTensors tensors = checkpoint_tensors(params, optimizer);
  const std::vector<Tensor> host = tensors.host_buffers();
  try {
    hdf5_init();
    Hdf5Lock lock;
    H5PlistId fapl{VMOE_H5_CHECK(H5Pcreate(H5P_FILE_ACCESS))};
    H5PlistId dxpl{VMOE_H5_CHECK(H5Pcreate(H5P_DATASET_XFER))};
    if (auto* mpi = dynamic_cast<const MpiCommunicator*>(groups.world.get())) {
      VMOE_H5_CHECK(H5Pset_fapl_mpio(fapl.get(), mpi->handle(), MPI_INFO_NULL));
      // Filtered (checksummed) datasets can only be written collectively.
      VMOE_H5_CHECK(H5Pset_dxpl_mpio(dxpl.get(), H5FD_MPIO_COLLECTIVE));
    }
    H5FileId file{VMOE_H5_CHECK(H5Fcreate(tmp.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, fapl.get()))};
    for (const TensorRef& t : tensors.refs) {
      write_tensor(file.get(), dxpl.get(), t.name, *t.info, tensors.data(host, t), params.dtype(),
                   groups);
    }
    file.close();
  } catch (const Hdf5Error& e) {
    throw_save_failure(final_path, tmp, e.what());
  }
  groups.world->barrier();  // every rank's part is in the file
  if (root) {
    try {
      write_metadata(tmp, tensors.refs, groups, info, optimizer_name, params.dtype());
      fsync_path(tmp, false);
    } catch (const std::runtime_error& e) {
      throw_save_failure(final_path, tmp, e.what());
    }
    std::error_code ec;
    std::filesystem::rename(tmp, final_path, ec);
    if (ec) {
      throw std::runtime_error("cannot rename '" + tmp + "' to '" + final_path +
                               "': " + ec.message());
    }
    fsync_path(dir.string(), true);
    if (keep > 0) {
      const std::vector<std::string> all = list_checkpoints(dir);
      for (size_t i = size_t(keep); i < all.size(); ++i)
        std::filesystem::remove(all[i], ec);
    }
  }
  groups.world->barrier();  // nobody goes on before the checkpoint is committed
  return final_path;
}

CheckpointInfo load_checkpoint(const std::string& path, ParameterStore& params,
                               Optimizer& optimizer) {
  CheckpointInfo info;
  std::string optimizer_name;
  {
    Hdf5File f(path, Hdf5File::Mode::Read);
    if (!f.has_attr("format") || f.get_attr_string("format") != kFormat) {
      throw std::runtime_error("'" + path + "' is not a complete vmoe checkpoint (format " +
                               kFormat + ")");
    }
    info.position.step = f.get_attr_int("step");
    info.position.epoch = f.get_attr_int("epoch");
    info.position.index_in_epoch = f.get_attr_int("index_in_epoch");
    info.optimizer_steps = f.get_attr_int("optimizer_steps");
    info.seed = static_cast<uint64_t>(f.get_attr_int("seed"));
    info.config_text = f.get_attr_string("config");
    info.optimizer = f.get_attr_string("optimizer");
    if (f.has_attr("dtype")) {
      const std::string dtype = f.get_attr_string("dtype");
      if (dtype != dtype_name(params.dtype())) {
        throw std::runtime_error("checkpoint '" + path + "': attribute 'dtype' is '" + dtype +
                                 "', the model's parameters are " + dtype_name(params.dtype()) +
                                 " (model.dtype)");
      }
    }
  }
  check_position(path, info);
  const CheckpointTensors tensors = checkpoint_tensors(params, optimizer);
  // Staged buffers start from the current values, so that the copy back leaves any element no
  // dataset covers as it was.
  const std::vector<Tensor> host = tensors.host_buffers();
  {
    hdf5_init();
    Hdf5Lock lock;
    H5FileId file{VMOE_H5_CHECK(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT))};
    const int64_t first = params.expert_shard().num_experts > 0 ? params.expert_shard().first : 0;
    for (const TensorRef& t : tensors.refs) {
      read_tensor(file.get(), path, t.name, *t.info, tensors.data(host, t), params.dtype(), first);
    }
  }
  tensors.store(host);
  optimizer.set_steps(info.optimizer_steps);
  return info;
}

}  // namespace vmoe
