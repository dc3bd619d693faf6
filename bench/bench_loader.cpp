// Benchmark of the training input pipeline: writes a folder of synthetic JPEGs (libjpeg), then
// measures images/s of ImageFolderSource decode alone and of ThreadedLoader (decode + inception
// crop to --size + flip + normalise) with each thread count of --threads.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

// jpeglib.h needs size_t and FILE declared before it.
#include <jpeglib.h>

#include "data/image_folder.h"
#include "data/threaded_loader.h"

namespace {

namespace fs = std::filesystem;
using namespace vmoe;

// An RGB image with smooth gradients and some texture, so it compresses like a photograph.
void write_jpeg(const std::string& path, int height, int width, int seed) {
  std::vector<uint8_t> rgb(size_t(height * width * 3));
  for (int y = 0; y < height; ++y)
    for (int x = 0; x < width; ++x)
      for (int c = 0; c < 3; ++c) {
        const double v = 128 + 60 * std::sin(0.03 * (x + 7 * seed) + c) +
                         40 * std::cos(0.05 * (y - 3 * seed) * (c + 1)) +
                         20 * std::sin(0.7 * x * y / (width + 1.0) + seed);
        rgb[size_t((y * width + x) * 3 + c)] = uint8_t(std::clamp(v, 0.0, 255.0));
      }
  FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) throw std::runtime_error("cannot write " + path);
  jpeg_compress_struct cinfo;
  jpeg_error_mgr jerr;
  cinfo.err = jpeg_std_error(&jerr);
  jpeg_create_compress(&cinfo);
  jpeg_stdio_dest(&cinfo, f);
  cinfo.image_width = JDIMENSION(width);
  cinfo.image_height = JDIMENSION(height);
  cinfo.input_components = 3;
  cinfo.in_color_space = JCS_RGB;
  jpeg_set_defaults(&cinfo);
  jpeg_set_quality(&cinfo, 90, TRUE);
  jpeg_start_compress(&cinfo, TRUE);
  while (cinfo.next_scanline < cinfo.image_height) {
    JSAMPROW row = rgb.data() + size_t(cinfo.next_scanline) * size_t(width) * 3;
    jpeg_write_scanlines(&cinfo, &row, 1);
  }
  jpeg_finish_compress(&cinfo);
  jpeg_destroy_compress(&cinfo);
  std::fclose(f);
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"ThreadedLoader throughput on synthetic JPEGs"};
  int images = 256, height = 256, width = 320, size = 224, batch = 32, epochs = 2;
  std::string threads = "1,2";
  std::string dir = (fs::temp_directory_path() / "vmoe_bench_loader").string();
  app.add_option("--images", images, "JPEG files to write (2 classes)");
  app.add_option("--height", height, "JPEG height");
  app.add_option("--width", width, "JPEG width");
  app.add_option("--size", size, "inception crop output size");
  app.add_option("--batch", batch, "batch size");
  app.add_option("--epochs", epochs, "timed epochs per thread count");
  app.add_option("--threads", threads, "comma-separated worker thread counts");
  app.add_option("--dir", dir, "folder for the JPEGs (rewritten)");
  CLI11_PARSE(app, argc, argv);

  fs::remove_all(dir);
  for (const char* cls : {"a", "b"})
    fs::create_directories(fs::path(dir) / cls);
  for (int i = 0; i < images; ++i) {
    write_jpeg(
        (fs::path(dir) / (i % 2 ? "b" : "a") / ("img_" + std::to_string(i) + ".jpg")).string(),
        height, width, i);
  }
  const data::ImageFolderSource source(dir, 3);
  std::printf("%d JPEGs of %dx%d (%.1f KB each on average) in %s\n", images, height, width,
              double(fs::file_size(fs::path(dir) / "a" / "img_0.jpg")) / 1024.0, dir.c_str());

  data::Image image;
  auto t0 = std::chrono::steady_clock::now();
  for (int64_t i = 0; i < source.size(); ++i)
    source.read(i, image);
  std::printf("decode only, 1 thread: %.1f images/s\n", double(source.size()) / seconds_since(t0));

  std::stringstream list(threads);
  std::string item;
  while (std::getline(list, item, ',')) {
    data::ThreadedLoaderOptions o;
    o.batch_size = batch;
    o.seed = 1;
    o.num_threads = std::stoi(item);
    o.prefetch_batches = 4;
    o.preprocess.height = o.preprocess.width = size;
    o.preprocess.inception_crop = true;
    o.preprocess.random_flip = true;
    data::ThreadedLoader loader(source, o);
    data::Batch b;
    loader.next(b);  // start-up, not timed
    const int64_t steps = epochs * loader.steps_per_epoch();
    t0 = std::chrono::steady_clock::now();
    for (int64_t s = 0; s < steps; ++s)
      loader.next(b);
    const double sec = seconds_since(t0);
    std::printf("decode + inception crop to %d + flip, %d thread(s): %.1f images/s\n", size,
                o.num_threads, double(steps * batch) / sec);
  }
  fs::remove_all(dir);
  return 0;
}
