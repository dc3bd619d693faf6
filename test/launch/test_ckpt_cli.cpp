// End-to-end tests of `vmoe ckpt` (ls, verify, diff, stats, export) on a small checkpoint in the
// "vmoe-checkpoint-1" layout built here with Hdf5File: its listing, its verification (sound, with
// a flipped data byte, truncated, with missing or wrong metadata), differences, statistics and
// exports; and an export of a really trained V-MoE evaluating exactly like its weights file.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "command_runner.h"
#include "hdf5/hdf5_file.h"
#include "test/hdf5/hostile_files.h"

namespace fs = std::filesystem;
using vmoe::H5Type;
using vmoe::Hdf5File;
using RunResult = vmoe::testing::CommandResult;

namespace {

fs::path scratch(const std::string& name) {
  return vmoe::testing::scratch_dir("ckpt_" + name);
}

using vmoe::testing::run_vmoe;

bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);)
    lines.push_back(line);
  return lines;
}

using vmoe::testing::check_one_line_error;

std::string shape_str(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i)
    s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

int64_t numel(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape)
    n *= d;
  return n;
}

// A value stored once, in params/head/bias: its bytes locate that dataset's data in the file.
constexpr float kMarker = 1234.5678f;
constexpr int64_t kNumExperts = 4;

struct TestTensor {
  std::string name;
  std::vector<int64_t> shape;
  const char* sharding;
};
const std::vector<TestTensor> kTensors = {
    {"embedding/kernel", {2, 3}, "replicated"},
    {"embedding/bias", {3}, "replicated"},
    {"encoder/block_01/moe/experts/fc1/kernel", {kNumExperts, 3, 2}, "expert"},
    {"encoder/block_01/moe/router/kernel", {3, kNumExperts}, "replicated"},
    {"head/bias", {5}, "replicated"},
};
const std::vector<std::string> kSlots = {"adam_m", "adam_v"};
const char* kConfigText = "name: \"tiny\"\nmodel { hidden_size: 3 }\n";

// Every dataset path of the test checkpoint with its shape and sharding.
struct Dataset {
  std::string path;
  std::vector<int64_t> shape;
  std::string sharding;
};
std::vector<Dataset> datasets() {
  std::vector<Dataset> out;
  for (const TestTensor& t : kTensors) {
    out.push_back({"params/" + t.name, t.shape, t.sharding});
    for (const std::string& slot : kSlots)
      out.push_back({"optimizer/" + slot + "/" + t.name, t.shape, t.sharding});
  }
  std::sort(out.begin(), out.end(), [](auto& a, auto& b) { return a.path < b.path; });
  return out;
}

// Deterministic values, different for every dataset.
std::vector<float> values_of(const std::string& path, int64_t n) {
  double seed = 0;
  for (char c : path)
    seed = std::fmod(seed * 31 + double(c), 1000.0);
  std::vector<float> v(size_t(n), 0.0f);
  for (int64_t i = 0; i < n; ++i)
    v[size_t(i)] = float(0.5 * std::sin(seed + 0.7 * double(i + 1)));
  if (path == "params/head/bias") v[2] = kMarker;
  return v;
}

// What to break in a written checkpoint.
struct Damage {
  std::string omit_attribute;           // a root attribute left out
  std::function<void(Hdf5File&)> edit;  // applied to the finished file
};

// Writes the test checkpoint; returns the values of every dataset.
std::map<std::string, std::vector<float>> write_checkpoint(const fs::path& path,
                                                           const Damage& damage = {}) {
  std::map<std::string, std::vector<float>> values;
  Hdf5File f(path.string(), Hdf5File::Mode::Create);
  for (const Dataset& d : datasets()) {
    std::vector<float> v = values_of(d.path, numel(d.shape));
    f.write(d.path, H5Type::f32, d.shape, v.data());
    f.set_attr(d.path + "/sharding", d.sharding);
    values[d.path] = std::move(v);
  }
  auto set = [&](const std::string& key, auto value) {
    if (key != damage.omit_attribute) f.set_attr(key, value);
  };
  set("step", int64_t(1200));
  set("epoch", int64_t(3));
  set("index_in_epoch", int64_t(512));
  set("optimizer_steps", int64_t(1200));
  set("seed", int64_t(7));
  set("config", std::string(kConfigText));
  set("world_size", int64_t(4));
  set("expert_group_size", int64_t(2));
  set("num_experts", kNumExperts);
  set("created", std::string("2024-05-01T12:00:00Z"));
  set("dtype", std::string("f32"));
  set("optimizer", std::string("adamw"));
  set("format", std::string("vmoe-checkpoint-1"));
  if (damage.edit) damage.edit(f);
  f.close();
  return values;
}

std::vector<char> file_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<char>(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void write_bytes(const fs::path& path, const char* data, size_t size) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(data, std::streamsize(size));
}

// ls output: the tree rebuilt into full dataset paths -> the rest of their line.
std::map<std::string, std::string> parse_tree(const std::string& out) {
  std::map<std::string, std::string> entries;
  std::vector<std::string> groups;
  bool in_tree = false;
  for (const std::string& line : lines_of(out)) {
    if (line.empty()) {
      in_tree = !in_tree && entries.empty() && groups.empty();
      continue;
    }
    if (!in_tree || line.rfind("total:", 0) == 0) continue;
    const size_t indent = line.find_first_not_of(' ');
    const size_t depth = indent / 2;
    const size_t end = line.find(' ', indent);
    const std::string token = line.substr(indent, end - indent);
    groups.resize(std::min(groups.size(), depth));
    if (token.back() == '/') {
      groups.push_back(token.substr(0, token.size() - 1));
      continue;
    }
    std::string path;
    for (const std::string& g : groups)
      path += g + "/";
    entries[path + token] = end == std::string::npos ? "" : line.substr(end);
  }
  return entries;
}

// The numbers after `label` in `line` ("norm 1.5  mean ..." -> 1.5).
double number_after(const std::string& line, const std::string& label) {
  const size_t at = line.find(label + " ");
  if (at == std::string::npos) throw std::runtime_error("no '" + label + "' in: " + line);
  return std::stod(line.substr(at + label.size() + 1));
}

std::string fmt(double x) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.6g", x);
  return buf;
}

}  // namespace

TEST_CASE("ckpt ls: metadata and a tree of every tensor with shape, dtype, bytes, sharding") {
  const fs::path dir = scratch("ls");
  const fs::path ck = dir / "ckpt.h5";
  write_checkpoint(ck);
  RunResult r = run_vmoe("ckpt ls " + ck.string(), dir);
  INFO("stdout:\n" << r.out << "stderr: " << r.err);
  REQUIRE(r.exit_code == 0);
  const std::vector<std::string> lines = lines_of(r.out);
  REQUIRE(lines.size() > 5);
  CHECK(lines[0] == "vmoe-checkpoint-1: " + ck.string());
  CHECK(lines[1] == "step 1200 (epoch 3, 512 examples into it), 1200 optimizer steps, seed 7");
  CHECK(lines[2] == "written by 4 ranks, expert groups of 2 ranks, 4 experts");
  CHECK(lines[3] == "created 2024-05-01T12:00:00Z, dtype f32, optimizer adamw, config 2 lines");

  const std::map<std::string, std::string> tree = parse_tree(r.out);
  const std::vector<Dataset> expected = datasets();
  CHECK(tree.size() == expected.size());
  int64_t bytes = 0, param_values = 0;
  for (const Dataset& d : expected) {
    INFO(d.path);
    REQUIRE(tree.count(d.path) == 1);
    const std::string& rest = tree.at(d.path);
    CHECK(contains(rest, " " + shape_str(d.shape) + " "));
    CHECK(contains(rest, " f32 "));
    CHECK(contains(rest, " " + std::to_string(4 * numel(d.shape)) + " B "));
    CHECK(rest.substr(rest.size() - d.sharding.size()) == d.sharding);
    bytes += 4 * numel(d.shape);
    if (d.path.rfind("params/", 0) == 0) param_values += numel(d.shape);
  }
  CHECK(lines.back() == "total: 15 tensors (5 parameters with " + std::to_string(param_values) +
                            " values, 10 optimizer), " + std::to_string(bytes) + " bytes (" +
                            std::to_string(bytes) + " B)");
}

TEST_CASE("ckpt verify: a sound checkpoint is ok (exit 0)") {
  const fs::path dir = scratch("verify_ok");
  const fs::path ck = dir / "ckpt.h5";
  write_checkpoint(ck);
  RunResult r = run_vmoe("ckpt verify " + ck.string(), dir);
  INFO("stdout:\n" << r.out << "stderr: " << r.err);
  CHECK(r.exit_code == 0);
  CHECK(r.out == "ok: 15 tensors, 600 bytes verified (" + ck.string() + ")\n");
  CHECK(r.err.empty());
}

TEST_CASE("ckpt verify: a flipped byte in a dataset's data is a fault naming the dataset") {
  const fs::path dir = scratch("verify_flip");
  const fs::path good = dir / "good.h5", bad = dir / "bad.h5";
  write_checkpoint(good);
  std::vector<char> bytes = file_bytes(good);
  char marker[4];
  std::memcpy(marker, &kMarker, 4);
  std::vector<size_t> found;
  for (auto it = bytes.begin();
       (it = std::search(it, bytes.end(), marker, marker + 4)) != bytes.end(); ++it)
    found.push_back(size_t(it - bytes.begin()));
  REQUIRE(found.size() == 1);  // the data of params/head/bias, stored once
  bytes[found[0] + 1] ^= 0x04;
  write_bytes(bad, bytes.data(), bytes.size());

  RunResult r = run_vmoe("ckpt verify " + bad.string(), dir);
  INFO("stdout:\n" << r.out << "stderr: " << r.err);
  CHECK(r.exit_code == 1);
  const std::vector<std::string> lines = lines_of(r.out);
  REQUIRE(lines.size() == 2);  // one fault, the summary
  CHECK(contains(lines[0], "fault: dataset 'params/head/bias': checksum mismatch"));
  CHECK(lines[1] == "FAILED: " + bad.string() + ": 1 fault (15 tensors, 580 bytes verified)");

  // The metadata is intact: ls works; reading the damaged tensor is a one-line error.
  CHECK(run_vmoe("ckpt ls " + bad.string(), dir).exit_code == 0);
  RunResult s = run_vmoe("ckpt stats " + bad.string(), dir);
  check_one_line_error(s, "'params/head/bias'");
  CHECK(contains(s.err, bad.string()));
  check_one_line_error(run_vmoe("ckpt export " + bad.string() + " " + (dir / "w.h5").string(), dir),
                       "'params/head/bias'");
  CHECK_FALSE(fs::exists(dir / "w.h5"));
  CHECK_FALSE(fs::exists(dir / "w.h5.tmp"));
}

TEST_CASE("ckpt: a truncated file is exit 1 naming the file, for every command") {
  const fs::path dir = scratch("truncated");
  const fs::path good = dir / "good.h5", bad = dir / "half.h5";
  write_checkpoint(good);
  const std::vector<char> bytes = file_bytes(good);
  write_bytes(bad, bytes.data(), bytes.size() / 2);
  for (const std::string cmd : {"verify", "ls", "stats"}) {
    INFO(cmd);
    check_one_line_error(run_vmoe("ckpt " + cmd + " " + bad.string(), dir),
                         "'" + bad.string() + "'");
  }
  check_one_line_error(run_vmoe("ckpt diff " + good.string() + " " + bad.string(), dir),
                       "'" + bad.string() + "'");
  check_one_line_error(run_vmoe("ckpt export " + bad.string() + " " + (dir / "w.h5").string(), dir),
                       "'" + bad.string() + "'");
}

TEST_CASE("ckpt verify: metadata faults are named, one line each (exit 1)") {
  const fs::path dir = scratch("verify_meta");
  const fs::path ck = dir / "ckpt.h5";
  Damage damage;
  std::string expected;
  SECTION("a missing attribute") {
    damage.omit_attribute = "num_experts";
    expected = "fault: attribute 'num_experts': missing";
  }
  SECTION("an attribute of the wrong kind") {
    damage.edit = [](Hdf5File& f) { f.set_attr("step", "twelve hundred"); };
    expected = "fault: attribute 'step': it is a string, expected an integer";
  }
  SECTION("a wrong format string") {
    damage.edit = [](Hdf5File& f) { f.set_attr("format", "vmoe-checkpoint-0"); };
    expected = "fault: attribute 'format': is 'vmoe-checkpoint-0', expected 'vmoe-checkpoint-1'";
  }
  SECTION("an empty config") {
    damage.edit = [](Hdf5File& f) { f.set_attr("config", " \n"); };
    expected = "fault: attribute 'config': is empty";
  }
  SECTION("an optimizer tensor without its parameter") {
    damage.edit = [](Hdf5File& f) {
      const float v[2] = {1, 2};
      f.write("optimizer/adam_m/ghost/bias", H5Type::f32, {2}, v);
      f.set_attr("optimizer/adam_m/ghost/bias/sharding", "replicated");
    };
    expected =
        "fault: dataset 'optimizer/adam_m/ghost/bias': optimizer slot 'adam_m' of a "
        "parameter the file lacks ('params/ghost/bias')";
  }
  SECTION("an optimizer tensor of another shape than its parameter") {
    damage.edit = [](Hdf5File& f) {
      const float v[4] = {1, 2, 3, 4};
      f.write("optimizer/adam_v/head/bias", H5Type::f32, {4}, v);
      f.set_attr("optimizer/adam_v/head/bias/sharding", "replicated");
    };
    expected =
        "fault: dataset 'optimizer/adam_v/head/bias': has shape [4], its parameter "
        "'params/head/bias' has [5]";
  }
  SECTION("an expert tensor whose leading axis is not num_experts") {
    damage.edit = [](Hdf5File& f) {
      const std::vector<float> v(2 * 3 * 2, 0.5f);
      f.write("params/encoder/block_01/moe/experts/fc1/kernel", H5Type::f32, {2, 3, 2}, v.data());
      f.set_attr("params/encoder/block_01/moe/experts/fc1/kernel/sharding", "expert");
      f.write("optimizer/adam_m/encoder/block_01/moe/experts/fc1/kernel", H5Type::f32, {2, 3, 2},
              v.data());
      f.set_attr("optimizer/adam_m/encoder/block_01/moe/experts/fc1/kernel/sharding", "expert");
      f.write("optimizer/adam_v/encoder/block_01/moe/experts/fc1/kernel", H5Type::f32, {2, 3, 2},
              v.data());
      f.set_attr("optimizer/adam_v/encoder/block_01/moe/experts/fc1/kernel/sharding", "expert");
    };
    expected =
        "fault: dataset 'params/encoder/block_01/moe/experts/fc1/kernel': is "
        "expert-sharded with leading axis 2, expected num_experts = 4";
  }
  SECTION("a dataset without a sharding attribute") {
    damage.edit = [](Hdf5File& f) {
      const float v[3] = {1, 2, 3};
      f.write("params/extra", H5Type::f32, {3}, v);
    };
    expected = "fault: dataset 'params/extra': has no 'sharding' attribute";
  }
  SECTION("non-finite values") {
    damage.edit = [](Hdf5File& f) {
      const float v[3] = {1, NAN, INFINITY};
      f.write("params/embedding/bias", H5Type::f32, {3}, v);
    };
    expected = "fault: dataset 'params/embedding/bias': 2 of 3 values are not finite (NaN or Inf)";
  }
  write_checkpoint(ck, damage);
  RunResult r = run_vmoe("ckpt verify " + ck.string(), dir);
  INFO("stdout:\n" << r.out << "stderr: " << r.err);
  CHECK(r.exit_code == 1);
  const std::vector<std::string> lines = lines_of(r.out);
  CHECK(std::count(lines.begin(), lines.end(), expected) == 1);
  REQUIRE(!lines.empty());
  CHECK(lines.back().rfind("FAILED: " + ck.string() + ": ", 0) == 0);
}

TEST_CASE("ckpt diff: per-tensor max abs and relative differences, one-sided and shape changes") {
  const fs::path dir = scratch("diff");
  const fs::path a = dir / "a.h5", b = dir / "b.h5";
  const auto values = write_checkpoint(a);
  std::vector<float> changed = values.at("params/embedding/kernel");
  const float before = changed[4];
  changed[4] = before + 0.375f;
  changed[1] = changed[1] - 0.125f;
  write_checkpoint(b, {"", [&](Hdf5File& f) {
                         f.write("params/embedding/kernel", H5Type::f32, {2, 3}, changed.data());
                         const float v[4] = {0, 0, 0, 0};
                         f.write("params/embedding/bias", H5Type::f32, {4}, v);  // [3] in A
                         f.write("params/extra", H5Type::f32, {4}, v);           // only in B
                       }});
  const std::vector<float>& orig = values.at("params/embedding/kernel");
  double max_abs = 0, max_b = 0;
  for (size_t i = 0; i < orig.size(); ++i) {
    max_abs = std::max(max_abs, std::fabs(double(changed[i]) - double(orig[i])));
    max_b = std::max(max_b, std::fabs(double(changed[i])));
  }
  CHECK(max_abs == double(changed[4]) - double(before));  // the larger of the two changes

  RunResult r = run_vmoe("ckpt diff " + a.string() + " " + b.string(), dir);
  INFO("stdout:\n" << r.out << "stderr: " << r.err);
  REQUIRE(r.exit_code == 0);
  std::map<std::string, std::string> rows;
  for (const std::string& line : lines_of(r.out))
    rows[line.substr(0, line.find(' '))] = line;
  REQUIRE(rows.count("params/embedding/kernel") == 1);
  const std::string& row = rows.at("params/embedding/kernel");
  CHECK(contains(row, "max abs " + fmt(max_abs) + " "));
  CHECK(number_after(row, "max abs") == Approx(max_abs).epsilon(1e-6));
  CHECK(number_after(row, "max rel") == Approx(max_abs / max_b).epsilon(1e-5));
  // Unchanged tensors differ by exactly 0.
  for (const Dataset& d : datasets()) {
    if (d.path == "params/embedding/kernel" || d.path == "params/embedding/bias") continue;
    INFO(d.path);
    REQUIRE(rows.count(d.path) == 1);
    CHECK(contains(rows.at(d.path), "max abs 0 "));
    CHECK(number_after(rows.at(d.path), "max rel") == 0);
  }
  CHECK(contains(r.out, "shape differs: params/embedding/bias [3] in A, [4] in B\n"));
  CHECK(contains(r.out, "only in B: params/extra [4]\n"));
  CHECK(lines_of(r.out).back() ==
        "summary: 14 tensors compared, 1 differ, 0 only in A, 1 only in B, 1 shape mismatches");
}

TEST_CASE("ckpt stats: norm, mean, std, max |x| per tensor and the norm of each expert") {
  const fs::path dir = scratch("stats");
  const fs::path ck = dir / "ckpt.h5";
  const auto values = write_checkpoint(ck);
  RunResult r = run_vmoe("ckpt stats " + ck.string(), dir);
  INFO("stdout:\n" << r.out << "stderr: " << r.err);
  REQUIRE(r.exit_code == 0);
  const std::vector<std::string> lines = lines_of(r.out);
  for (const Dataset& d : datasets()) {
    INFO(d.path);
    auto it = std::find_if(lines.begin(), lines.end(),
                           [&](const std::string& l) { return l.rfind(d.path + " ", 0) == 0; });
    REQUIRE(it != lines.end());
    const std::vector<float>& x = values.at(d.path);
    double sum = 0, sum_sq = 0, max_abs = 0;
    for (float v : x) {
      sum += v;
      sum_sq += double(v) * v;
      max_abs = std::max(max_abs, std::fabs(double(v)));
    }
    const double mean = sum / double(x.size());
    double var = 0;
    for (float v : x)
      var += (v - mean) * (v - mean);
    CHECK(number_after(*it, "norm") == Approx(std::sqrt(sum_sq)).epsilon(1e-5));
    CHECK(number_after(*it, "mean") == Approx(mean).epsilon(1e-5));
    CHECK(number_after(*it, "std") == Approx(std::sqrt(var / double(x.size()))).epsilon(1e-5));
    CHECK(number_after(*it, "max|x|") == Approx(max_abs).epsilon(1e-5));
    const bool has_norms = it + 1 != lines.end() && (it + 1)->rfind("  expert norms:", 0) == 0;
    CHECK(has_norms == (d.sharding == "expert"));
    if (!has_norms) continue;
    std::istringstream norms(it[1].substr(std::string("  expert norms:").size()));
    const size_t per_expert = x.size() / size_t(kNumExperts);
    for (int64_t e = 0; e < kNumExperts; ++e) {
      double expected = 0, got = -1;
      for (size_t i = 0; i < per_expert; ++i)
        expected += double(x[size_t(e) * per_expert + i]) * x[size_t(e) * per_expert + i];
      REQUIRE(norms >> got);
      CHECK(got == Approx(std::sqrt(expected)).epsilon(1e-5));
    }
    double extra;
    CHECK_FALSE(norms >> extra);  // exactly one norm per expert
  }
}

TEST_CASE("ckpt export: --include and --no-optimizer select what the weights file holds") {
  const fs::path dir = scratch("export");
  const fs::path ck = dir / "ckpt.h5";
  const auto values = write_checkpoint(ck);
  auto check_file = [&](const fs::path& out, const std::vector<std::string>& expected) {
    INFO(out);
    Hdf5File f(out.string(), Hdf5File::Mode::Read);
    CHECK(f.list() == expected);
    for (const std::string& name : f.list()) {
      const vmoe::H5Array a = f.read(name);
      const std::vector<float>& v = values.at(name);
      REQUIRE(a.bytes.size() == v.size() * 4);
      CHECK(std::memcmp(a.bytes.data(), v.data(), a.bytes.size()) == 0);
    }
    CHECK(f.get_attr_string("format") == "vmoe-weights-1");
    CHECK(f.get_attr_int("step") == 1200);
    CHECK(f.get_attr_string("config") == kConfigText);
    CHECK_FALSE(fs::exists(out.string() + ".tmp"));
  };

  const fs::path moe = dir / "moe.h5";
  RunResult r = run_vmoe(
      "ckpt export " + ck.string() + " " + moe.string() + " --include moe/ --no-optimizer", dir);
  INFO("stdout:\n" << r.out << "stderr: " << r.err);
  REQUIRE(r.exit_code == 0);
  CHECK(contains(r.out, "exported 2 parameters and 0 optimizer tensors"));
  check_file(moe, {"params/encoder/block_01/moe/experts/fc1/kernel",
                   "params/encoder/block_01/moe/router/kernel"});

  const fs::path head = dir / "head.h5";
  r = run_vmoe("ckpt export " + ck.string() + " " + head.string() + " --include '^head/'", dir);
  REQUIRE(r.exit_code == 0);
  check_file(head,
             {"optimizer/adam_m/head/bias", "optimizer/adam_v/head/bias", "params/head/bias"});

  const fs::path all = dir / "all.h5";
  REQUIRE(run_vmoe("ckpt export " + ck.string() + " " + all.string(), dir).exit_code == 0);
  std::vector<std::string> every;
  for (const Dataset& d : datasets())
    every.push_back(d.path);
  check_file(all, every);
}

TEST_CASE("ckpt: bad input is a one-line error naming the file or the option") {
  const fs::path dir = scratch("errors");
  const fs::path ck = dir / "ckpt.h5", out = dir / "out.h5";
  write_checkpoint(ck);
  const std::string export_ck = "ckpt export " + ck.string() + " " + out.string();
  check_one_line_error(run_vmoe(export_ck + " --include '('", dir),
                       "--include '(' is not a valid regular expression");
  check_one_line_error(run_vmoe(export_ck + " --include nothing_like_this", dir),
                       "--include 'nothing_like_this' selects no parameter of '" + ck.string());
  CHECK_FALSE(fs::exists(out));
  CHECK_FALSE(fs::exists(out.string() + ".tmp"));

  const std::string missing = (dir / "missing.h5").string();
  for (const std::string cmd : {"ls", "verify", "stats"})
    check_one_line_error(run_vmoe("ckpt " + cmd + " " + missing, dir), "'" + missing + "'");
  std::ofstream(dir / "text.h5") << "not an HDF5 file\n";
  check_one_line_error(run_vmoe("ckpt verify " + (dir / "text.h5").string(), dir),
                       "'" + (dir / "text.h5").string() + "'");
  // A weights file is not a checkpoint.
  REQUIRE(run_vmoe(export_ck, dir).exit_code == 0);
  check_one_line_error(run_vmoe("ckpt ls " + out.string(), dir),
                       "its format is 'vmoe-weights-1', expected 'vmoe-checkpoint-1'");
}

TEST_CASE("ckpt: a tensor declaring more than the file stores, an array-valued attribute") {
  const fs::path dir = scratch("hostile");
  const fs::path ck = dir / "ckpt.h5";
  write_checkpoint(ck);
  // params/head/bias declares [2^27, 1024] f32 (512 GiB) and stores nothing.
  vmoe::testing::declare_dataset(ck.string(), "params/head/bias", H5T_IEEE_F32LE,
                                 {uint64_t(1) << 27, 1024});
  RunResult v = run_vmoe("ckpt verify " + ck.string(), dir);
  INFO("stdout:\n" << v.out << "stderr: " << v.err);
  CHECK(v.exit_code == 1);
  CHECK(contains(v.out,
                 "fault: dataset 'params/head/bias': its shape [134217728, 1024] declares "
                 "549755813888 bytes but the file stores 0 bytes of it"));
  CHECK_FALSE(contains(v.out + v.err, "bad_alloc"));
  RunResult ls = run_vmoe("ckpt ls " + ck.string(), dir);
  CHECK(ls.exit_code == 0);
  CHECK(contains(ls.out, "unreadable: its shape [134217728, 1024] declares"));
  for (const std::string cmd : {"stats", "export"}) {
    INFO(cmd);
    check_one_line_error(run_vmoe("ckpt " + cmd + " " + ck.string() +
                                      (cmd == "export" ? " " + (dir / "w.h5").string() : ""),
                                  dir),
                         "'params/head/bias'");
  }

  // step as an array: refused before reading, naming the attribute.
  write_checkpoint(ck);
  vmoe::testing::set_int_array_attribute(ck.string(), ".", "step", {1200, 1300});
  check_one_line_error(run_vmoe("ckpt ls " + ck.string(), dir),
                       "attribute 'step' of HDF5 file '" + ck.string() +
                           "': it is an array of shape [2], expected a single value");
  RunResult mv = run_vmoe("ckpt verify " + ck.string(), dir);
  CHECK(mv.exit_code == 1);
  CHECK(contains(mv.out, "fault: attribute 'step': it is an array of shape [2]"));
}

TEST_CASE("ckpt: h5ls -r lists every dataset of the checkpoint with its shape") {
  if (std::system("command -v h5ls >/dev/null 2>&1") != 0) {
    WARN("h5ls (hdf5-tools) not installed; skipped");
    return;
  }
  const fs::path dir = scratch("h5ls");
  const fs::path ck = dir / "ckpt.h5";
  write_checkpoint(ck);
  RunResult r = vmoe::testing::run_command("h5ls -r " + ck.string(), dir);
  INFO("stdout:\n" << r.out << "stderr: " << r.err);
  REQUIRE(r.exit_code == 0);
  std::map<std::string, std::string> listed;  // "/params/head/bias" -> "Dataset {5}"
  for (const std::string& line : lines_of(r.out)) {
    const size_t space = line.find(' ');
    const size_t kind = line.find_first_not_of(' ', space);
    if (space != std::string::npos && kind != std::string::npos)
      listed[line.substr(0, space)] = line.substr(kind);
  }
  for (const Dataset& d : datasets()) {
    std::string dims = shape_str(d.shape);
    dims = "{" + dims.substr(1, dims.size() - 2) + "}";
    CHECK(listed["/" + d.path] == "Dataset " + dims);
  }
}

TEST_CASE("ckpt export: a checkpoint of a trained V-MoE evaluates like its weights file") {
  const std::string data = "/usr/share/datasets/fashion-mnist";
  if (!fs::exists(data)) {
    WARN("Fashion-MNIST not installed; skipped");
    return;
  }
  const fs::path dir = scratch("real");
  const fs::path work = dir / "work";
  const std::string config =
      std::string(VMOE_SOURCE_DIR) + "/configs/experiments/fashion_vmoe_ti.textproto";
  RunResult t = run_vmoe("train --config " + config + " --workdir " + work.string() +
                             " --set train.num_steps=3 --set data.num_train_examples=256"
                             " --set eval.num_examples=200 --set model.num_layers=2"
                             " --set data.batch_size=32 --set output.progress=NONE",
                         dir);
  INFO("train stderr: " << t.err);
  REQUIRE(t.exit_code == 0);
  const fs::path weights = work / "weights.h5";

  // The checkpoint layout around the trained parameters: expert tensors [8, ...] marked as
  // such, AdamW slots, every root attribute.
  const fs::path ck = dir / "ckpt.h5";
  int64_t experts = 0;
  {
    Hdf5File in(weights.string(), Hdf5File::Mode::Read);
    Hdf5File out(ck.string(), Hdf5File::Mode::Create);
    for (const std::string& path : in.list()) {
      const vmoe::H5Array a = in.read(path);
      const std::string name = path.substr(std::string("params/").size());
      const bool expert = contains(name, "/moe/experts/");
      if (expert) experts = a.shape[0];
      const std::vector<uint8_t> zeros(a.bytes.size(), 0);
      out.write(path, a.type, a.shape, a.bytes.data());
      out.set_attr(path + "/sharding", expert ? "expert" : "replicated");
      for (const std::string& slot : kSlots) {
        const std::string p = "optimizer/" + slot + "/" + name;
        out.write(p, a.type, a.shape, zeros.data());
        out.set_attr(p + "/sharding", expert ? "expert" : "replicated");
      }
    }
    out.set_attr("step", in.get_attr_int("step"));
    out.set_attr("epoch", int64_t(0));
    out.set_attr("index_in_epoch", int64_t(96));
    out.set_attr("optimizer_steps", in.get_attr_int("step"));
    out.set_attr("seed", int64_t(0));
    out.set_attr("config", in.get_attr_string("config"));
    out.set_attr("world_size", int64_t(1));
    out.set_attr("expert_group_size", int64_t(1));
    out.set_attr("num_experts", experts);
    out.set_attr("created", "2024-05-01T12:00:00Z");
    out.set_attr("dtype", "f32");
    out.set_attr("optimizer", "adamw");
    out.set_attr("format", "vmoe-checkpoint-1");
  }
  REQUIRE(experts == 8);
  RunResult v = run_vmoe("ckpt verify " + ck.string(), dir);
  INFO("verify: " << v.out << v.err);
  CHECK(v.exit_code == 0);

  const fs::path exported = dir / "exported.h5";
  RunResult x = run_vmoe("ckpt export " + ck.string() + " " + exported.string(), dir);
  INFO("export: " << x.out << x.err);
  REQUIRE(x.exit_code == 0);
  {
    Hdf5File w(weights.string(), Hdf5File::Mode::Read), e(exported.string(), Hdf5File::Mode::Read);
    for (const std::string& path : w.list()) {
      INFO(path);
      CHECK(e.read(path).bytes == w.read(path).bytes);
    }
  }
  RunResult e1 = run_vmoe("eval --weights " + weights.string(), dir);
  RunResult e2 = run_vmoe("eval --weights " + exported.string(), dir);
  INFO("eval weights: " << e1.out << e1.err << "eval export: " << e2.out << e2.err);
  REQUIRE(e1.exit_code == 0);
  REQUIRE(e2.exit_code == 0);
  CHECK(contains(e1.out, "test accuracy: "));
  CHECK(e2.out == e1.out);
}
