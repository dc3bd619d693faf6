// End-to-end tests of the pictures: `vmoe plot` (training curves), the capacity-sweep PNG of
// `vmoe eval --capacity-sweep`, and `vmoe routing-map` (checked against `vmoe predict`'s routing),
// all drawn through gnuplot; and their one-line errors.
#include <catch2/catch.hpp>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "command_runner.h"
#include "hdf5/hdf5_file.h"

namespace fs = std::filesystem;

namespace {

using vmoe::testing::CommandResult;

using vmoe::testing::run_vmoe;

const std::string kData = "/usr/share/datasets/fashion-mnist";
const std::string kMoeConfig =
    std::string(VMOE_SOURCE_DIR) + "/configs/experiments/fashion_vmoe_ti.textproto";
// test_cli's tiny run as a V-MoE (one MoE layer, block 1). Routing groups of 4 images and
// evaluation batches of 6 make groups that a batch boundary cuts short ([4, 6), [10, 12), ...),
// so the routing map must find each image's group as evaluation forms it.
const std::string kTinyMoe =
    " --set train.num_steps=3 --set data.num_train_examples=256 --set eval.num_examples=200"
    " --set model.num_layers=2 --set data.batch_size=32 --set output.progress=NONE"
    " --set model.moe.images_per_group=4 --set data.eval_batch_size=6";
// A test-time capacity low enough that many first choices are dropped.
const std::string kLowCapacity = " --set model.moe.eval_capacity_factor=0.25";

struct PngSize {
  bool valid = false;
  uint32_t width = 0, height = 0;
};

// The 8-byte PNG signature, then the IHDR chunk first: its width and height (big-endian).
PngSize read_png_size(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  unsigned char b[24] = {};
  if (!in.read(reinterpret_cast<char*>(b), sizeof b)) return {};
  const unsigned char signature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  if (std::memcmp(b, signature, 8) != 0 || std::memcmp(b + 12, "IHDR", 4) != 0) return {};
  auto be32 = [&](int at) {
    return uint32_t(b[at]) << 24 | uint32_t(b[at + 1]) << 16 | uint32_t(b[at + 2]) << 8 |
           uint32_t(b[at + 3]);
  };
  return {true, be32(16), be32(20)};
}

void check_png(const fs::path& path, uint32_t width, uint32_t height) {
  INFO(path.string());
  const PngSize s = read_png_size(path);
  CHECK(s.valid);
  CHECK(s.width == width);
  CHECK(s.height == height);
}

using vmoe::testing::check_one_line_error;

// A word for the shell: single-quoted, so that every byte but NUL passes as it is.
std::string shell_word(const std::string& text) {
  std::string q = "'";
  for (char c : text)
    q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

// gnuplot commands that create $VMOE_SENTINEL if a script ever runs them: each breaks out of a
// quoted string in its own way (newline, quote, backtick substitution, `;`).
const std::vector<std::string> kHostileNames = {"nl\nsystem(\"touch $VMOE_SENTINEL\")\n#",
                                                "quote'\nsystem('touch $VMOE_SENTINEL')\n#'",
                                                "dquote\"\nsystem(\"touch $VMOE_SENTINEL\")\n#\"",
                                                "tick`touch $VMOE_SENTINEL`",
                                                "semi'; system('touch $VMOE_SENTINEL'); '",
                                                "cr\rsystem(\"touch $VMOE_SENTINEL\")\r",
                                                "bytes\xff\xfe\x80\x01\x7f",
                                                "at@x @VMOE_SENTINEL $(touch $VMOE_SENTINEL)"};

}  // namespace

TEST_CASE("plot: curves of the metrics present only, each a PNG of 800x500") {
  const fs::path dir = vmoe::testing::scratch_dir("plot_curves");
  // A dense run's metrics: no MoE keys, so no MoE plots; the eval line has no train keys.
  std::ofstream(dir / "metrics.jsonl")
      << R"({"step":10,"train/loss":2.0,"train/accuracy":0.3,"train/lr":0.001})"
      << "\n"
      << R"({"step":20,"train/loss":1.5,"train/accuracy":0.5,"train/lr":0.002})"
      << "\n"
      << R"({"step":20,"eval/loss":1.4,"eval/accuracy":0.55})"
      << "\n";
  CommandResult r = run_vmoe("plot " + dir.string(), dir);
  INFO("stderr: " << r.err);
  REQUIRE(r.exit_code == 0);
  for (const char* name : {"loss.png", "accuracy.png", "learning_rate.png"}) {
    CHECK(r.out.find((dir / "plots" / name).string()) != std::string::npos);
    check_png(dir / "plots" / name, 800, 500);
  }
  CHECK(std::count(r.out.begin(), r.out.end(), '\n') == 3);
  CHECK_FALSE(fs::exists(dir / "plots" / "moe_dropped_fraction.png"));
  CHECK_FALSE(fs::exists(dir / "plots" / "capacity_sweep.png"));
}

TEST_CASE("plot: hostile workdir names draw in place and run no command") {
  const fs::path dir = vmoe::testing::scratch_dir("plot_hostile");
  const fs::path sentinel = dir / "SENTINEL";
  for (const std::string& name : kHostileNames) {
    INFO("workdir name: " << name);
    const fs::path work = dir / name;
    fs::create_directories(work);
    std::ofstream(work / "metrics.jsonl")
        << R"({"step":1,"train/loss":2.0,"moe/x\nsystem(\"touch $VMOE_SENTINEL\")\n#)"
        << R"(/dropped_fraction":0.1})"
        << "\n";
    std::ofstream(work / "capacity_sweep.csv") << "capacity_factor,routing,accuracy\n"
                                               << "0.5,vanilla`touch $VMOE_SENTINEL`,0.3\n"
                                               << "1.0,bpr,0.5\n";
    // A hostile TMPDIR as well: gnuplot's private folder is made under it.
    const CommandResult r = vmoe::testing::run_command(
        "VMOE_SENTINEL=" + shell_word(sentinel.string()) + " TMPDIR=" + shell_word(work.string()) +
            " " + VMOE_BINARY + " plot " + shell_word(work.string()),
        dir);
    INFO("stderr: " << r.err);
    CHECK(r.exit_code == 0);
    check_png(work / "plots" / "loss.png", 800, 500);
    check_png(work / "plots" / "moe_dropped_fraction.png", 800, 500);
    check_png(work / "plots" / "capacity_sweep.png", 800, 520);
    CHECK_FALSE(fs::exists(sentinel));
    fs::remove(sentinel);
  }
}

TEST_CASE("plot: a missing metrics file is a one-line error") {
  const fs::path dir = vmoe::testing::scratch_dir("plot_missing");
  check_one_line_error(run_vmoe("plot " + (dir / "nowhere").string(), dir), "metrics.jsonl");
}

TEST_CASE("plot: without gnuplot on PATH the error names the package") {
  const fs::path dir = vmoe::testing::scratch_dir("plot_no_gnuplot");
  std::ofstream(dir / "metrics.jsonl") << R"({"step":1,"train/loss":2.0})"
                                       << "\n";
  CommandResult r = vmoe::testing::run_command(
      "PATH= " + std::string(VMOE_BINARY) + " plot " + dir.string(), dir);
  check_one_line_error(r, "gnuplot-nox");
  CHECK_FALSE(fs::exists(dir / "plots" / "loss.png"));
}

TEST_CASE("plot: a tiny V-MoE's curves, capacity sweep and routing map (matches predict)") {
  if (!fs::exists(kData)) {
    WARN("Fashion-MNIST not installed; skipped");
    return;
  }
  const fs::path dir = vmoe::testing::scratch_dir("plot_moe");
  const fs::path work = dir / "work";
  CommandResult t =
      run_vmoe("train --config " + kMoeConfig + " --workdir " + work.string() + kTinyMoe, dir);
  INFO("train stderr: " << t.err);
  REQUIRE(t.exit_code == 0);

  // Training curves, with the MoE ones.
  CommandResult p = run_vmoe("plot " + work.string(), dir);
  INFO("plot stderr: " << p.err);
  REQUIRE(p.exit_code == 0);
  for (const char* name : {"loss.png", "accuracy.png", "learning_rate.png",
                           "moe_dropped_fraction.png", "moe_load_balance.png", "aux_loss.png"}) {
    CHECK(p.out.find((work / "plots" / name).string()) != std::string::npos);
    check_png(work / "plots" / name, 800, 500);
  }

  // The capacity sweep writes its PNG beside the CSV; `vmoe plot` then draws it too.
  CommandResult s = run_vmoe("eval --workdir " + work.string() + " --capacity-sweep 0.5,1.0", dir);
  INFO("sweep stderr: " << s.err);
  REQUIRE(s.exit_code == 0);
  CHECK(s.out.find((work / "capacity_sweep.png").string()) != std::string::npos);
  check_png(work / "capacity_sweep.png", 800, 520);
  CommandResult p2 = run_vmoe("plot " + work.string(), dir);
  REQUIRE(p2.exit_code == 0);
  check_png(work / "plots" / "capacity_sweep.png", 800, 520);

  // Routing map of images 5 (in the short group [4, 6)), 0 and 9, at a low capacity.
  const fs::path png = dir / "map.png", csv = dir / "map.csv";
  CommandResult m =
      run_vmoe("routing-map --workdir " + work.string() + " --images 5,0,9" + " --output " +
                   png.string() + " --data " + csv.string() + kLowCapacity,
               dir);
  INFO("routing-map stderr: " << m.err);
  REQUIRE(m.exit_code == 0);
  CHECK(m.out.find(png.string()) != std::string::npos);
  // 2 columns (image + 1 MoE layer) of 170 px + 20; 3 rows of 200 px + 40 + 70.
  check_png(png, 2 * 170 + 20, 40 + 3 * 200 + 70);

  CommandResult pr =
      run_vmoe("predict --workdir " + work.string() + " --start 0 --count 12 --output " +
                   (dir / "p.h5").string() + kLowCapacity,
               dir);
  INFO("predict stderr: " << pr.err);
  REQUIRE(pr.exit_code == 0);
  vmoe::Hdf5File h5((dir / "p.h5").string(), vmoe::Hdf5File::Mode::Read);
  const vmoe::H5Array experts = h5.read("moe/block_01/experts");  // i32 [12, 50, 2]
  const vmoe::H5Array kept = h5.read("moe/block_01/kept");        // u8 [12, 50, 2]
  REQUIRE(experts.shape == std::vector<int64_t>{12, 50, 2});
  const auto* e = reinterpret_cast<const int32_t*>(experts.bytes.data());
  std::ifstream in(csv);
  std::string line;
  std::getline(in, line);
  CHECK(line == "image,block,patch,row,col,expert,kept");
  int rows = 0, dropped = 0, mismatches = 0;
  std::vector<int> images;
  while (std::getline(in, line)) {
    std::istringstream f(line);
    char c;
    int image, block, patch, row, col, expert, keep;
    f >> image >> c >> block >> c >> patch >> c >> row >> c >> col >> c >> expert >> c >> keep;
    REQUIRE(f);
    CHECK(block == 1);
    CHECK(row * 7 + col == patch);
    // Token 0 is the class token: patch p is token p + 1; the first choice is index 0 of k.
    const size_t at = (size_t(image) * 50 + size_t(patch) + 1) * 2;
    if (expert != e[at] || keep != int(kept.bytes[at])) ++mismatches;
    dropped += keep == 0;
    if (images.empty() || images.back() != image) images.push_back(image);
    ++rows;
  }
  CHECK(rows == 3 * 49);
  CHECK(images == std::vector<int>{5, 0, 9});
  CHECK(mismatches == 0);
  CHECK(dropped > 0);  // capacity 0.25 cannot hold every first choice

  check_one_line_error(run_vmoe("routing-map --workdir " + work.string() + " --images 0,200", dir),
                       "200");

  // Hostile output names: the picture lands there and no gnuplot command in the name runs.
  const fs::path sentinel = dir / "SENTINEL";
  for (const std::string& name : kHostileNames) {
    INFO("output name: " << name);
    const fs::path out = dir / (name + ".png");
    const CommandResult h =
        vmoe::testing::run_command("VMOE_SENTINEL=" + shell_word(sentinel.string()) + " " +
                                       VMOE_BINARY + " routing-map --workdir " + work.string() +
                                       " --images 0 --output " + shell_word(out.string()),
                                   dir);
    INFO("stderr: " << h.err);
    CHECK(h.exit_code == 0);
    check_png(out, 2 * 170 + 20, 40 + 200 + 70);
    CHECK_FALSE(fs::exists(sentinel));
    fs::remove(sentinel);
  }
}
