// CheckpointReader and verify_checkpoint: checkpoint files read through Hdf5File.
#include "parallel/checkpoint_reader.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <optional>
#include <regex>
#include <stdexcept>

#include "core/tensor.h"
#include "hdf5/hdf5_handle.h"

namespace vmoe {

namespace {

std::string in_quotes(const std::string& s) {
  return "'" + s + "'";
}

// The part of an Hdf5File error message after "... HDF5 file '<path>': ", i.e. what went wrong
// without the file name the caller already reports.
std::string reason(const std::exception& e, const std::string& path) {
  const std::string msg = e.what();
  const std::string marker = "HDF5 file " + in_quotes(path) + ": ";
  const size_t at = msg.find(marker);
  return at == std::string::npos ? msg : msg.substr(at + marker.size());
}

// Splits a dataset path into kind, slot and parameter name.
void classify(CheckpointTensor& t) {
  t.kind = CheckpointTensor::Kind::other;
  t.name = t.path;
  const std::string params = "params/", optimizer = "optimizer/";
  if (t.path.rfind(params, 0) == 0 && t.path.size() > params.size()) {
    t.kind = CheckpointTensor::Kind::param;
    t.name = t.path.substr(params.size());
  } else if (t.path.rfind(optimizer, 0) == 0) {
    const size_t slash = t.path.find('/', optimizer.size());
    if (slash != std::string::npos && slash > optimizer.size() && slash + 1 < t.path.size()) {
      t.kind = CheckpointTensor::Kind::optimizer;
      t.slot = t.path.substr(optimizer.size(), slash - optimizer.size());
      t.name = t.path.substr(slash + 1);
    }
  }
}

bool is_floating(H5Type t) {
  return t == H5Type::f32 || t == H5Type::f64 || t == H5Type::bf16;
}

}  // namespace

int64_t CheckpointTensor::numel() const {
  int64_t n = 1;
  for (int64_t d : shape)
    n *= d;
  return n;
}

int64_t CheckpointTensor::bytes() const {
  return numel() * int64_t(h5_type_size(type));
}

CheckpointReader::CheckpointReader(const std::string& path, FormatCheck check)
    : file_(path, Hdf5File::Mode::Read) {
  if (check == FormatCheck::require) {
    if (!file_.has_attr("format")) {
      throw std::runtime_error(in_quotes(path) +
                               " is not a vmoe checkpoint: it has no 'format' attribute");
    }
    const std::string format = file_.get_attr_string("format");
    if (format != kFormat) {
      std::string msg = in_quotes(path) + " is not a vmoe checkpoint: its format is " +
                        in_quotes(format) + ", expected " + in_quotes(kFormat);
      if (format == "vmoe-weights-1") msg += " (a weights file: use it with `vmoe eval --weights`)";
      throw std::runtime_error(msg);
    }
  }
  for (const std::string& p : file_.list()) {
    CheckpointTensor t;
    t.path = p;
    classify(t);
    try {
      const H5DatasetInfo info = file_.info(p);
      t.type = info.type;
      t.shape = info.shape;
      if (file_.has_attr(p + "/sharding")) t.sharding = file_.get_attr_string(p + "/sharding");
    } catch (const Hdf5Error& e) {
      t.problem = reason(e, path);
    }
    tensors_.push_back(std::move(t));
  }
}

CheckpointMeta CheckpointReader::meta() const {
  CheckpointMeta m;
  m.format = file_.get_attr_string("format");
  m.step = file_.get_attr_int("step");
  m.epoch = file_.get_attr_int("epoch");
  m.index_in_epoch = file_.get_attr_int("index_in_epoch");
  m.optimizer_steps = file_.get_attr_int("optimizer_steps");
  m.seed = file_.get_attr_int("seed");
  m.config = file_.get_attr_string("config");
  m.world_size = file_.get_attr_int("world_size");
  m.expert_group_size = file_.get_attr_int("expert_group_size");
  m.num_experts = file_.get_attr_int("num_experts");
  m.created = file_.get_attr_string("created");
  m.dtype = file_.get_attr_string("dtype");
  m.optimizer = file_.get_attr_string("optimizer");
  return m;
}

const CheckpointTensor* CheckpointReader::find(const std::string& path) const {
  auto it =
      std::lower_bound(tensors_.begin(), tensors_.end(), path,
                       [](const CheckpointTensor& t, const std::string& p) { return t.path < p; });
  return it != tensors_.end() && it->path == path ? &*it : nullptr;
}

H5Array CheckpointReader::read(const CheckpointTensor& t) const {
  if (!t.problem.empty()) {
    throw Hdf5Error("cannot read dataset " + in_quotes(t.path) + " from HDF5 file " +
                    in_quotes(path()) + ": " + t.problem);
  }
  return file_.read(t.path);
}

std::vector<double> CheckpointReader::read_values(const CheckpointTensor& t) const {
  return h5_values(read(t));
}

std::vector<double> h5_values(const H5Array& a) {
  const size_t n = size_t(a.numel());
  std::vector<double> out(n);
  const uint8_t* p = a.bytes.data();
  auto load = [&]<typename T>(T) {
    for (size_t i = 0; i < n; ++i) {
      T v;
      std::memcpy(&v, p + i * sizeof(T), sizeof(T));
      out[i] = double(v);
    }
  };
  switch (a.type) {
    case H5Type::f32:
      load(float{});
      break;
    case H5Type::f64:
      load(double{});
      break;
    case H5Type::i32:
      load(int32_t{});
      break;
    case H5Type::i64:
      load(int64_t{});
      break;
    case H5Type::u8:
      load(uint8_t{});
      break;
    case H5Type::bf16:
      for (size_t i = 0; i < n; ++i) {
        uint16_t bits;
        std::memcpy(&bits, p + 2 * i, 2);
        const uint32_t wide = uint32_t(bits) << 16;
        float v;
        std::memcpy(&v, &wide, 4);
        out[i] = double(v);
      }
      break;
  }
  return out;
}

CheckpointVerification verify_checkpoint(const std::string& path) {
  CheckpointReader reader(path, CheckpointReader::FormatCheck::skip);
  const Hdf5File& file = reader.file();
  CheckpointVerification v;
  auto fault = [&](const std::string& where, const std::string& what) {
    v.faults.push_back(where + ": " + what);
  };
  // Runs `fn`, turning any exception into a fault of `where`.
  auto attempt = [&](const std::string& where, const std::function<void()>& fn) {
    try {
      fn();
    } catch (const std::exception& e) {
      fault(where, reason(e, path));
    }
  };

  // Root attributes: present, of their kind, plausible.
  std::optional<int64_t> num_experts;
  std::string dtype;
  auto check_int = [&](const char* key, int64_t min) {
    const std::string where = "attribute " + in_quotes(key);
    attempt(where, [&] {
      if (!file.has_attr(key)) return fault(where, "missing");
      const int64_t value = file.get_attr_int(key);
      if (value < min) {
        fault(where, "is " + std::to_string(value) + ", expected >= " + std::to_string(min));
      } else if (std::string(key) == "num_experts") {
        num_experts = value;
      }
    });
  };
  auto check_string = [&](const char* key,
                          const std::function<std::string(const std::string&)>& problem_of) {
    const std::string where = "attribute " + in_quotes(key);
    attempt(where, [&] {
      if (!file.has_attr(key)) return fault(where, "missing");
      const std::string value = file.get_attr_string(key);
      const std::string problem = problem_of(value);
      if (!problem.empty()) fault(where, problem);
    });
  };
  auto one_of = [](std::vector<std::string> allowed) {
    return [allowed](const std::string& value) -> std::string {
      if (std::find(allowed.begin(), allowed.end(), value) != allowed.end()) return "";
      std::string list;
      for (const std::string& a : allowed)
        list += (list.empty() ? "" : " or ") + in_quotes(a);
      return "is " + in_quotes(value) + ", expected " + list;
    };
  };
  check_string("format", one_of({CheckpointReader::kFormat}));
  check_int("step", 0);
  check_int("epoch", 0);
  check_int("index_in_epoch", 0);
  check_int("optimizer_steps", 0);
  check_int("seed", std::numeric_limits<int64_t>::min());
  check_string("config", [](const std::string& value) -> std::string {
    return value.find_first_not_of(" \t\r\n") == std::string::npos ? "is empty" : "";
  });
  check_int("world_size", 1);
  check_int("expert_group_size", 1);
  check_int("num_experts", 0);
  check_string("created", [](const std::string& value) -> std::string {
    static const std::regex iso(
        R"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:?\d{2}))");
    return std::regex_match(value, iso) ? "" : "is " + in_quotes(value) + ", not an ISO-8601 time";
  });
  check_string("dtype", [&](const std::string& value) {
    const std::string problem = one_of({"f32", "f64", "bf16"})(value);
    if (problem.empty()) dtype = value;
    return problem;
  });
  check_string("optimizer", one_of({"adamw", "sgd"}));

  // Every dataset.
  int64_t params = 0;
  for (const CheckpointTensor& t : reader.tensors()) {
    const std::string where = "dataset " + in_quotes(t.path);
    ++v.tensors;
    if (t.kind == CheckpointTensor::Kind::param) ++params;
    if (!t.problem.empty()) {
      fault(where, t.problem);
      continue;
    }
    if (t.kind == CheckpointTensor::Kind::other) {
      fault(where, "not part of the checkpoint layout (params/<name> or optimizer/<slot>/<name>)");
    } else {
      if (!is_floating(t.type)) {
        fault(where, std::string("holds ") + h5_type_name(t.type) + ", expected floating point");
      } else if (!dtype.empty() && dtype != h5_type_name(t.type)) {
        fault(where, std::string("holds ") + h5_type_name(t.type) +
                         ", the checkpoint's dtype attribute says " + dtype);
      }
      if (t.sharding.empty()) {
        fault(where, "has no 'sharding' attribute");
      } else if (t.sharding != "replicated" && t.sharding != "expert") {
        fault(where,
              "sharding is " + in_quotes(t.sharding) + ", expected 'replicated' or 'expert'");
      } else if (t.sharding == "expert") {
        if (t.shape.empty()) {
          fault(where, "is expert-sharded but a scalar (expected [num_experts, ...])");
        } else if (num_experts && t.shape[0] != *num_experts) {
          fault(where, "is expert-sharded with leading axis " + std::to_string(t.shape[0]) +
                           ", expected num_experts = " + std::to_string(*num_experts));
        }
      }
      if (t.kind == CheckpointTensor::Kind::optimizer) {
        const CheckpointTensor* p = reader.find("params/" + t.name);
        if (!p) {
          fault(where, "optimizer slot " + in_quotes(t.slot) + " of a parameter the file lacks ('" +
                           "params/" + t.name + "')");
        } else if (p->problem.empty() && p->shape != t.shape) {
          fault(where, "has shape " + shape_str(t.shape) + ", its parameter 'params/" + t.name +
                           "' has " + shape_str(p->shape));
        } else if (p->problem.empty() && !t.sharding.empty() && !p->sharding.empty() &&
                   p->sharding != t.sharding) {
          fault(where, "sharding " + in_quotes(t.sharding) + " differs from its parameter's (" +
                           in_quotes(p->sharding) + ")");
        }
      }
    }
    // The data: every chunk's checksum, and finite values.
    try {
      const H5Array a = reader.read(t);
      v.bytes_verified += int64_t(a.bytes.size());
      if (is_floating(a.type)) {
        int64_t bad = 0;
        for (double x : h5_values(a))
          bad += std::isfinite(x) ? 0 : 1;
        if (bad > 0) {
          fault(where, std::to_string(bad) + " of " + std::to_string(a.numel()) +
                           " values are not finite (NaN or Inf)");
        }
      }
    } catch (const std::exception& e) {
      const std::string why = reason(e, path);
      if (why.find("Fletcher32") != std::string::npos) {
        fault(where, "checksum mismatch: its stored data is damaged (Fletcher32 check failed)");
      } else {
        fault(where, "unreadable: " + why);
      }
    }
  }
  if (params == 0) fault("file " + in_quotes(path), "has no params/ datasets");
  return v;
}

}  // namespace vmoe
