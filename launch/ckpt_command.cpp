// `vmoe ckpt`: tools for training checkpoint files (docs/checkpoints.md): `ls` (metadata and a
// tree of tensors), `verify` (checksums and metadata), `diff` (per-tensor differences of two
// checkpoints), `stats` (per-tensor norms, per-expert norms) and `export` (a single-process
// weights file for `vmoe eval --weights`, optionally filtered, with or without optimizer state).
#include <algorithm>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <regex>
#include <stdexcept>

#include "core/tensor.h"
#include "hdf5/hdf5_file.h"
#include "launch/commands.h"
#include "parallel/checkpoint_reader.h"
#include "parallel/weights_file.h"

namespace vmoe {

namespace {

using Kind = CheckpointTensor::Kind;

std::string in_quotes(const std::string& s) {
  return "'" + s + "'";
}

// "512 B", "12.3 KiB", "4.56 MiB", "1.23 GiB".
std::string human_bytes(int64_t bytes) {
  char buf[32];
  if (bytes < 1024) {
    std::snprintf(buf, sizeof buf, "%" PRId64 " B", bytes);
    return buf;
  }
  const char* units[] = {"KiB", "MiB", "GiB", "TiB"};
  double v = double(bytes);
  int u = -1;
  while (v >= 1024 && u < 3) {
    v /= 1024;
    ++u;
  }
  std::snprintf(buf, sizeof buf, "%.*f %s", v < 10 ? 2 : 1, v, units[u]);
  return buf;
}

// A number as printed by every subcommand: 6 significant digits.
std::string num(double x) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.6g", x);
  return buf;
}

// "1 rank", "2 ranks".
std::string count(int64_t n, const char* noun) {
  return std::to_string(n) + " " + noun + (n == 1 ? "" : "s");
}

std::vector<std::string> split_path(const std::string& path) {
  std::vector<std::string> parts;
  size_t start = 0;
  while (true) {
    const size_t slash = path.find('/', start);
    parts.push_back(path.substr(start, slash - start));
    if (slash == std::string::npos) return parts;
    start = slash + 1;
  }
}

// ---- ls

int ckpt_ls(const CkptArgs& args) {
  CheckpointReader reader(args.file);
  const CheckpointMeta m = reader.meta();
  const int64_t config_lines = std::count(m.config.begin(), m.config.end(), '\n') +
                               (!m.config.empty() && m.config.back() != '\n' ? 1 : 0);
  std::printf("%s: %s\n", m.format.c_str(), args.file.c_str());
  std::printf("step %" PRId64 " (epoch %" PRId64 ", %" PRId64 " examples into it), %" PRId64
              " optimizer steps, seed %" PRId64 "\n",
              m.step, m.epoch, m.index_in_epoch, m.optimizer_steps, m.seed);
  std::printf("written by %s, expert groups of %s, %s\n", count(m.world_size, "rank").c_str(),
              count(m.expert_group_size, "rank").c_str(), count(m.num_experts, "expert").c_str());
  std::printf("created %s, dtype %s, optimizer %s, config %" PRId64 " lines\n\n", m.created.c_str(),
              m.dtype.c_str(), m.optimizer.c_str(), config_lines);

  // The tree: a line per group ("name/") and per dataset, two spaces per level.
  const std::vector<CheckpointTensor>& tensors = reader.tensors();
  size_t name_width = 0, shape_width = 0;
  for (const CheckpointTensor& t : tensors) {
    const std::vector<std::string> parts = split_path(t.path);
    name_width = std::max(name_width, 2 * (parts.size() - 1) + parts.back().size());
    shape_width = std::max(shape_width, shape_str(t.shape).size());
  }
  std::vector<std::string> open;  // groups of the previous line
  int64_t params = 0, param_values = 0, optimizer = 0, total_bytes = 0;
  for (const CheckpointTensor& t : tensors) {
    const std::vector<std::string> parts = split_path(t.path);
    size_t common = 0;
    while (common < open.size() && common + 1 < parts.size() && open[common] == parts[common])
      ++common;
    open.resize(common);
    for (size_t d = common; d + 1 < parts.size(); ++d) {
      std::printf("%*s%s/\n", int(2 * d), "", parts[d].c_str());
      open.push_back(parts[d]);
    }
    const int indent = int(2 * (parts.size() - 1));
    std::printf("%*s%-*s  ", indent, "", int(name_width) - indent, parts.back().c_str());
    if (!t.problem.empty()) {
      std::printf("unreadable: %s\n", t.problem.c_str());
      continue;
    }
    std::printf("%-*s  %-4s  %10s  %s\n", int(shape_width), shape_str(t.shape).c_str(),
                h5_type_name(t.type), human_bytes(t.bytes()).c_str(),
                t.sharding.empty() ? "(no sharding)" : t.sharding.c_str());
    total_bytes += t.bytes();
    if (t.kind == Kind::param) {
      ++params;
      param_values += t.numel();
    } else if (t.kind == Kind::optimizer) {
      ++optimizer;
    }
  }
  std::printf("\ntotal: %zu tensors (%" PRId64 " parameters with %" PRId64 " values, %" PRId64
              " optimizer), %" PRId64 " bytes (%s)\n",
              tensors.size(), params, param_values, optimizer, total_bytes,
              human_bytes(total_bytes).c_str());
  return 0;
}

// ---- verify

int ckpt_verify(const CkptArgs& args) {
  const CheckpointVerification v = verify_checkpoint(args.file);
  if (v.ok()) {
    std::printf("ok: %" PRId64 " tensors, %" PRId64 " bytes verified (%s)\n", v.tensors,
                v.bytes_verified, args.file.c_str());
    return 0;
  }
  for (const std::string& f : v.faults)
    std::printf("fault: %s\n", f.c_str());
  std::printf("FAILED: %s: %s (%" PRId64 " tensors, %" PRId64 " bytes verified)\n",
              args.file.c_str(), count(int64_t(v.faults.size()), "fault").c_str(), v.tensors,
              v.bytes_verified);
  return 1;
}

// ---- diff

int ckpt_diff(const CkptArgs& args) {
  CheckpointReader a(args.file), b(args.other);
  std::printf("A: %s (step %" PRId64 ")\nB: %s (step %" PRId64 ")\n", args.file.c_str(),
              a.file().get_attr_int("step"), args.other.c_str(), b.file().get_attr_int("step"));
  // Root attributes that differ (the config only as "differs").
  for (const char* key : {"epoch", "index_in_epoch", "optimizer_steps", "seed", "world_size",
                          "expert_group_size", "num_experts"}) {
    if (!a.file().has_attr(key) || !b.file().has_attr(key)) continue;
    const int64_t va = a.file().get_attr_int(key), vb = b.file().get_attr_int(key);
    if (va != vb) std::printf("attribute %s: %" PRId64 " vs %" PRId64 "\n", key, va, vb);
  }
  for (const char* key : {"dtype", "optimizer", "config"}) {
    if (!a.file().has_attr(key) || !b.file().has_attr(key)) continue;
    const std::string va = a.file().get_attr_string(key), vb = b.file().get_attr_string(key);
    if (va == vb) continue;
    if (std::string(key) == "config") {
      std::printf("attribute config: differs\n");
    } else {
      std::printf("attribute %s: %s vs %s\n", key, va.c_str(), vb.c_str());
    }
  }
  size_t width = 0;
  for (const CheckpointTensor& t : a.tensors())
    width = std::max(width, t.path.size());
  int64_t compared = 0, differ = 0, only_a = 0, only_b = 0, mismatched = 0;
  for (const CheckpointTensor& ta : a.tensors()) {
    const CheckpointTensor* tb = b.find(ta.path);
    if (!tb) {
      std::printf("only in A: %s %s\n", ta.path.c_str(), shape_str(ta.shape).c_str());
      ++only_a;
      continue;
    }
    if (ta.shape != tb->shape) {
      std::printf("shape differs: %s %s in A, %s in B\n", ta.path.c_str(),
                  shape_str(ta.shape).c_str(), shape_str(tb->shape).c_str());
      ++mismatched;
      continue;
    }
    const std::vector<double> va = a.read_values(ta), vb = b.read_values(*tb);
    double max_abs = 0, max_b = 0;
    for (size_t i = 0; i < va.size(); ++i) {
      max_abs = std::max(max_abs, std::fabs(va[i] - vb[i]));
      max_b = std::max(max_b, std::fabs(vb[i]));
    }
    const double max_rel = max_abs == 0 ? 0 : max_b == 0 ? INFINITY : max_abs / max_b;
    std::printf("%-*s  max abs %-12s  max rel %s\n", int(width), ta.path.c_str(),
                num(max_abs).c_str(), num(max_rel).c_str());
    ++compared;
    differ += max_abs != 0 ? 1 : 0;
  }
  for (const CheckpointTensor& tb : b.tensors()) {
    if (!a.find(tb.path)) {
      std::printf("only in B: %s %s\n", tb.path.c_str(), shape_str(tb.shape).c_str());
      ++only_b;
    }
  }
  std::printf("summary: %" PRId64 " tensors compared, %" PRId64 " differ, %" PRId64
              " only in A, %" PRId64 " only in B, %" PRId64 " shape mismatches\n",
              compared, differ, only_a, only_b, mismatched);
  return 0;
}

// ---- stats

struct Moments {
  double norm = 0, mean = 0, std = 0, max_abs = 0;
};

Moments moments(const double* x, size_t n) {
  Moments m;
  double sum = 0, sum_sq = 0;
  for (size_t i = 0; i < n; ++i) {
    sum += x[i];
    sum_sq += x[i] * x[i];
    m.max_abs = std::max(m.max_abs, std::fabs(x[i]));
  }
  m.norm = std::sqrt(sum_sq);
  if (n == 0) return m;
  m.mean = sum / double(n);
  double var = 0;
  for (size_t i = 0; i < n; ++i)
    var += (x[i] - m.mean) * (x[i] - m.mean);
  m.std = std::sqrt(var / double(n));
  return m;
}

int ckpt_stats(const CkptArgs& args) {
  CheckpointReader reader(args.file);
  size_t width = 0;
  for (const CheckpointTensor& t : reader.tensors())
    width = std::max(width, t.path.size());
  for (const CheckpointTensor& t : reader.tensors()) {
    const std::vector<double> x = reader.read_values(t);
    const Moments m = moments(x.data(), x.size());
    std::printf("%-*s  %-14s  norm %-11s  mean %-12s  std %-11s  max|x| %s\n", int(width),
                t.path.c_str(), shape_str(t.shape).c_str(), num(m.norm).c_str(),
                num(m.mean).c_str(), num(m.std).c_str(), num(m.max_abs).c_str());
    if (t.sharding == "expert" && !t.shape.empty() && t.shape[0] > 0) {
      const size_t per_expert = x.size() / size_t(t.shape[0]);
      std::printf("  expert norms:");
      for (int64_t e = 0; e < t.shape[0]; ++e)
        std::printf(" %s",
                    num(moments(x.data() + size_t(e) * per_expert, per_expert).norm).c_str());
      std::printf("\n");
    }
  }
  return 0;
}

// ---- export

Tensor to_tensor(const H5Array& a, const std::string& path) {
  DType dtype = DType::f32;
  if (a.type == H5Type::f64) {
    dtype = DType::f64;
  } else if (a.type != H5Type::f32) {
    throw std::runtime_error("cannot export dataset " + in_quotes(path) + " of type " +
                             h5_type_name(a.type) + ": weights files hold f32 or f64");
  }
  Tensor t = Tensor::empty(a.shape, dtype, kCpu);
  std::copy(a.bytes.begin(), a.bytes.end(), static_cast<uint8_t*>(t.raw_data()));
  return t;
}

// Removes a file at scope exit unless released (the temporary of an export that failed).
class RemoveOnFailure {
 public:
  explicit RemoveOnFailure(std::string path) : path_(std::move(path)) {}
  ~RemoveOnFailure() {
    if (path_.empty()) return;
    std::error_code ec;
    std::filesystem::remove(path_, ec);
  }
  RemoveOnFailure(const RemoveOnFailure&) = delete;
  RemoveOnFailure& operator=(const RemoveOnFailure&) = delete;
  void release() { path_.clear(); }

 private:
  std::string path_;
};

int ckpt_export(const CkptArgs& args) {
  CheckpointReader reader(args.file);
  std::regex include;
  try {
    include =
        std::regex(args.include.empty() ? std::string("") : args.include, std::regex::ECMAScript);
  } catch (const std::regex_error& e) {
    throw std::runtime_error("--include " + in_quotes(args.include) +
                             " is not a valid regular expression: " + e.what());
  }
  auto selected = [&](const CheckpointTensor& t) {
    return args.include.empty() || std::regex_search(t.name, include);
  };
  std::vector<NamedTensor> params;
  int64_t bytes = 0;
  for (const CheckpointTensor& t : reader.tensors()) {
    if (t.kind != Kind::param || !selected(t)) continue;
    params.push_back({t.name, to_tensor(reader.read(t), t.path)});
    bytes += t.bytes();
  }
  if (params.empty()) {
    throw std::runtime_error("--include " + in_quotes(args.include) + " selects no parameter of " +
                             in_quotes(args.file));
  }
  const std::string config = reader.file().get_attr_string("config");
  const int64_t step = reader.file().get_attr_int("step");

  // The parameters through save_weights (its own temporary + rename) into OUT.tmp, then the
  // optimizer state into the same file, then OUT.tmp -> OUT.
  const std::string tmp = args.other + ".tmp";
  RemoveOnFailure cleanup(tmp);
  save_weights(tmp, params, config, step);
  int64_t optimizer = 0;
  {
    Hdf5File out(tmp, Hdf5File::Mode::Append);
    if (!args.no_optimizer) {
      for (const CheckpointTensor& t : reader.tensors()) {
        if (t.kind != Kind::optimizer || !selected(t)) continue;
        const H5Array a = reader.read(t);
        out.write(t.path, a.type, a.shape, a.bytes.data());
        bytes += int64_t(a.bytes.size());
        ++optimizer;
      }
    }
    out.set_attr("source_checkpoint", args.file);
    out.close();
  }
  std::error_code ec;
  std::filesystem::rename(tmp, args.other, ec);
  if (ec) {
    throw std::runtime_error("cannot rename " + in_quotes(tmp) + " to " + in_quotes(args.other) +
                             ": " + ec.message());
  }
  cleanup.release();
  std::printf("exported %s and %s (%s) of step %" PRId64 " to %s\n",
              count(int64_t(params.size()), "parameter").c_str(),
              count(optimizer, "optimizer tensor").c_str(), human_bytes(bytes).c_str(), step,
              args.other.c_str());
  return 0;
}

}  // namespace

int run_ckpt(const CkptArgs& args) {
  if (args.command == "ls") return ckpt_ls(args);
  if (args.command == "verify") return ckpt_verify(args);
  if (args.command == "diff") return ckpt_diff(args);
  if (args.command == "stats") return ckpt_stats(args);
  if (args.command == "export") return ckpt_export(args);
  throw std::invalid_argument("unknown `vmoe ckpt` command " + in_quotes(args.command) +
                              ", expected ls, verify, diff, stats or export");
}

}  // namespace vmoe
