// Writes the seed corpus of every fuzz target with the project's own writers (and libjpeg for
// JPEG): make_seeds SOURCE_DIR OUT_DIR writes OUT_DIR/<target>/<seed>. The output is committed
// under test/fuzz/corpus/; rerun this only when a format changes. Each seed is small (< 8 KB).
// jpeglib.h needs size_t and FILE declared first.
#include <cstddef>
#include <cstdio>
#include <cstdlib>

#include <jpeglib.h>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "core/optim/adamw.h"
#include "core/tensor.h"
#include "data/hdf5_shards.h"
#include "data/image_source.h"
#include "data/png_codec.h"
#include "parallel/checkpoint.h"
#include "parallel/local_communicator.h"
#include "parallel/process_groups.h"
#include "parallel/weights_file.h"
#include "test/fuzz/fuzz_checkpoint_store.h"

namespace fs = std::filesystem;
using namespace vmoe;

namespace {

void write(const fs::path& path, const std::vector<uint8_t>& bytes) {
  fs::create_directories(path.parent_path());
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
}

std::vector<uint8_t> read(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::vector<uint8_t> idx(uint32_t magic, const std::vector<uint32_t>& dims, size_t payload) {
  std::vector<uint8_t> out;
  const auto put = [&](uint32_t v) {
    for (int s = 24; s >= 0; s -= 8)
      out.push_back(uint8_t(v >> s));
  };
  put(magic);
  for (uint32_t d : dims)
    put(d);
  for (size_t i = 0; i < payload; ++i)
    out.push_back(uint8_t(i * 7));
  return out;
}

std::vector<uint8_t> jpeg(int w, int h, int channels, bool progressive) {
  jpeg_compress_struct c{};
  jpeg_error_mgr err{};
  c.err = jpeg_std_error(&err);
  jpeg_create_compress(&c);
  unsigned char* buf = nullptr;
  unsigned long size = 0;
  jpeg_mem_dest(&c, &buf, &size);
  c.image_width = JDIMENSION(w);
  c.image_height = JDIMENSION(h);
  c.input_components = channels;
  c.in_color_space = channels == 3 ? JCS_RGB : JCS_GRAYSCALE;
  jpeg_set_defaults(&c);
  jpeg_set_quality(&c, 75, TRUE);
  if (progressive) jpeg_simple_progression(&c);
  jpeg_start_compress(&c, TRUE);
  std::vector<uint8_t> row(size_t(w * channels));
  while (c.next_scanline < c.image_height) {
    for (size_t i = 0; i < row.size(); ++i)
      row[i] = uint8_t(i * 9 + c.next_scanline * 17);
    JSAMPROW r = row.data();
    jpeg_write_scanlines(&c, &r, 1);
  }
  jpeg_finish_compress(&c);
  jpeg_destroy_compress(&c);
  std::vector<uint8_t> out(buf, buf + size);
  std::free(buf);
  return out;
}

data::Image image(int64_t h, int64_t w, int64_t c) {
  data::Image img{h, w, c, {}};
  for (int64_t i = 0; i < h * w * c; ++i)
    img.pixels.push_back(uint8_t(i * 13));
  return img;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: make_seeds SOURCE_DIR OUT_DIR\n");
    return 2;
  }
  const fs::path src = argv[1];
  const fs::path out = argv[2];

  // config: two small presets and an override line.
  for (const char* name : {"fashion_vit_ti.textproto", "fashion_vmoe_ti.textproto"}) {
    write(out / "config" / name, read(src / "configs" / "experiments" / name));
  }
  const std::string set = "model { num_classes: 10 }\nmodel.moe.capacity_factor=1.5";
  write(out / "config" / "override", std::vector<uint8_t>(set.begin(), set.end()));

  // idx: mode byte (bit 0 gzip) + images [2, 3, 4] / labels [5].
  for (uint8_t mode : {0, 1}) {
    std::vector<uint8_t> images = idx(0x803, {2, 3, 4}, 24);
    images.insert(images.begin(), mode);
    write(out / "idx" / ("images_" + std::to_string(mode)), images);
    std::vector<uint8_t> labels = idx(0x801, {5}, 5);
    labels.insert(labels.begin(), mode);
    write(out / "idx" / ("labels_" + std::to_string(mode)), labels);
  }

  // cifar: one CIFAR-10 record (3073 bytes) and one CIFAR-100 record (3074 bytes).
  for (size_t record : {3073, 3074}) {
    std::vector<uint8_t> r(record);
    for (size_t i = 0; i < record; ++i)
      r[i] = uint8_t(i % 5);
    write(out / "cifar" / ("record_" + std::to_string(record)), r);
  }

  write(out / "jpeg" / "rgb_baseline.jpg", jpeg(16, 8, 3, false));
  write(out / "jpeg" / "grey_baseline.jpg", jpeg(9, 7, 1, false));
  write(out / "jpeg" / "rgb_progressive.jpg", jpeg(16, 16, 3, true));

  fs::create_directories(out / "png");
  data::write_png((out / "png" / "rgb.png").string(), image(3, 4, 3));
  data::write_png((out / "png" / "grey.png").string(), image(5, 2, 1));

  // HDF5 templates (h5_files/): the files the structure-aware targets edit, and the seeds of the
  // *_bytes targets.
  const fs::path h5 = out / "h5_files";
  fs::create_directories(h5);
  data::ImageDataset ds;
  ds.n = 2;
  ds.height = 2;
  ds.width = 3;
  ds.channels = 1;
  ds.num_classes = 2;
  ds.images = image(2, 2 * 3, 1).pixels;
  ds.labels = {0, 1};
  const data::InMemorySource source(ds, "seed");
  data::write_hdf5_shard((h5 / "shard.h5").string(), source, 0, 0);

  const std::vector<NamedTensor> weights = {
      {"head/kernel", Tensor::from_vector<float>({1, 2, 3, 4, 5, 6}, {3, 2})},
      {"head/bias", Tensor::from_vector<float>({0.5f, -0.5f}, {2})}};
  save_weights((h5 / "weights.h5").string(), weights, "model { num_classes: 2 }", 3);

  ParameterStore store;
  fuzz::declare_checkpoint_seed_params(store);
  AdamW optimizer(store, AdamWOptions{});
  const ProcessGroups groups = make_process_groups(std::make_shared<LocalCommunicator>("world"), 2);
  CheckpointInfo info;
  info.position = {4, 1, 8};
  info.optimizer_steps = 4;
  info.config_text = "model { num_classes: 2 }";
  info.optimizer = "adamw";
  const std::string ckpt =
      save_checkpoint(out / "tmp_ckpt", store, optimizer, "adamw", groups, info, 0);
  fs::rename(ckpt, h5 / "checkpoint.h5");
  fs::remove_all(out / "tmp_ckpt");

  // The structure-aware HDF5 targets: a few edit lists (fixed pseudo-random bytes; the empty
  // input, no edit at all, is always tried).
  uint32_t state = 12345;
  for (const char* target : {"hdf5_shard", "weights", "checkpoint"}) {
    for (size_t length : {8, 32, 128}) {
      std::vector<uint8_t> edits(length);
      for (uint8_t& b : edits) {
        state = state * 1664525u + 1013904223u;
        b = uint8_t(state >> 24);
      }
      write(out / target / ("edits_" + std::to_string(length)), edits);
    }
  }
  return 0;
}
