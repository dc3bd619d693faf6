// Tests of the dataset readers: CIFAR-10/100 binaries, JPEG and PNG decoding, image folders and
// HDF5 shards, on small files written here (with libjpeg, libpng and HDF5 directly).
#include <hdf5.h>
#include <jpeglib.h>
#include <png.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "data/cifar_reader.h"
#include "data/data_error.h"
#include "data/hdf5_shards.h"
#include "data/image_folder.h"
#include "data/image_source.h"
#include "data/jpeg_decode.h"
#include "data/png_codec.h"
#include "test/temp_dir.h"

namespace fs = std::filesystem;
using namespace vmoe::data;
using Catch::Matchers::Contains;

namespace {

using vmoe::testing::TempDir;

void write_bytes(const std::string& path, const std::vector<uint8_t>& bytes) {
  fs::create_directories(fs::path(path).parent_path());
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
  REQUIRE(out.good());
}

std::vector<uint8_t> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// The CHW byte of record `r` at channel c, pixel p (p = y * 32 + x) in the CIFAR fixtures.
uint8_t cifar_pixel(int r, int c, int p) {
  return uint8_t((r * 31 + c * 101 + p * 7) % 256);
}

// CIFAR records r0 .. r0+count-1: label bytes then CHW pixels.
std::vector<uint8_t> cifar_records(int r0, int count, const std::vector<uint8_t>& label_prefix,
                                   const std::vector<int>& labels) {
  std::vector<uint8_t> out;
  for (int k = 0; k < count; ++k) {
    out.insert(out.end(), label_prefix.begin(), label_prefix.end());
    out.push_back(uint8_t(labels[size_t(k)]));
    for (int c = 0; c < 3; ++c) {
      for (int p = 0; p < 1024; ++p)
        out.push_back(cifar_pixel(r0 + k, c, p));
    }
  }
  return out;
}

// Checks that example i of `ds` is record r of the fixtures, in HWC order.
void check_cifar_image(const ImageDataset& ds, int64_t i, int r) {
  const uint8_t* img = ds.images.data() + i * 3072;
  for (int p = 0; p < 1024; ++p) {
    for (int c = 0; c < 3; ++c) {
      if (img[p * 3 + c] != cifar_pixel(r, c, p)) {
        FAIL("example " << i << " pixel " << p << " channel " << c << ": " << int(img[p * 3 + c])
                        << " != " << int(cifar_pixel(r, c, p)));
      }
    }
  }
}

// Writes an 8-bit PNG with libpng's simplified API in `format` (PNG_FORMAT_RGB, _GRAY, _GA, ...).
void write_test_png(const std::string& path, int width, int height, uint32_t format,
                    const std::vector<uint8_t>& pixels, const std::vector<uint8_t>& colormap = {}) {
  fs::create_directories(fs::path(path).parent_path());
  png_image image{};
  image.version = PNG_IMAGE_VERSION;
  image.width = png_uint_32(width);
  image.height = png_uint_32(height);
  image.format = format;
  if (!colormap.empty()) image.colormap_entries = png_uint_32(colormap.size() / 3);
  const int ok = png_image_write_to_file(&image, path.c_str(), 0, pixels.data(), 0,
                                         colormap.empty() ? nullptr : colormap.data());
  INFO(image.message);
  REQUIRE(ok);
}

// Writes a JPEG with libjpeg (quality 100, no chroma subsampling): 1 (grey) or 3 (RGB) channels.
void write_test_jpeg(const std::string& path, int width, int height, int channels,
                     const std::vector<uint8_t>& pixels) {
  fs::create_directories(fs::path(path).parent_path());
  jpeg_compress_struct cinfo{};
  jpeg_error_mgr jerr{};
  cinfo.err = jpeg_std_error(&jerr);
  jpeg_create_compress(&cinfo);
  unsigned char* buffer = nullptr;
  unsigned long size = 0;
  jpeg_mem_dest(&cinfo, &buffer, &size);
  cinfo.image_width = JDIMENSION(width);
  cinfo.image_height = JDIMENSION(height);
  cinfo.input_components = channels;
  cinfo.in_color_space = channels == 3 ? JCS_RGB : JCS_GRAYSCALE;
  jpeg_set_defaults(&cinfo);
  jpeg_set_quality(&cinfo, 100, TRUE);
  for (int c = 0; c < cinfo.num_components; ++c) {
    cinfo.comp_info[c].h_samp_factor = 1;
    cinfo.comp_info[c].v_samp_factor = 1;
  }
  jpeg_start_compress(&cinfo, TRUE);
  while (cinfo.next_scanline < cinfo.image_height) {
    JSAMPROW row = const_cast<uint8_t*>(pixels.data()) +
                   size_t(cinfo.next_scanline) * size_t(width * channels);
    jpeg_write_scanlines(&cinfo, &row, 1);
  }
  jpeg_finish_compress(&cinfo);
  jpeg_destroy_compress(&cinfo);
  write_bytes(path, std::vector<uint8_t>(buffer, buffer + size));
  std::free(buffer);
}

// A smooth RGB test pattern [h, w, 3] (JPEG keeps smooth images close).
std::vector<uint8_t> smooth_rgb(int w, int h) {
  std::vector<uint8_t> px;
  for (int y = 0; y < h; ++y) {
    for (int x = 0; x < w; ++x) {
      px.push_back(uint8_t(40 + 8 * x));
      px.push_back(uint8_t(200 - 6 * y));
      px.push_back(uint8_t(100 + 3 * (x + y)));
    }
  }
  return px;
}

uint8_t luma(uint8_t r, uint8_t g, uint8_t b) {
  return uint8_t((299 * r + 587 * g + 114 * b + 500) / 1000);
}

int max_abs_diff(const std::vector<uint8_t>& a, const std::vector<uint8_t>& b) {
  REQUIRE(a.size() == b.size());
  int m = 0;
  for (size_t i = 0; i < a.size(); ++i)
    m = std::max(m, std::abs(int(a[i]) - int(b[i])));
  return m;
}

Image decode_file(const std::string& path, int64_t channels) {
  const std::vector<uint8_t> bytes = read_bytes(path);
  Image img;
  if (path.ends_with(".png")) {
    decode_png(bytes.data(), bytes.size(), channels, path, img);
  } else {
    decode_jpeg(bytes.data(), bytes.size(), channels, path, img);
  }
  return img;
}

// A source with arbitrary (possibly invalid) labels, for writing bad shards.
class FakeSource final : public ImageSource {
 public:
  FakeSource(int64_t n, int32_t num_classes, int32_t bad_label)
      : n_(n), num_classes_(num_classes), bad_label_(bad_label) {}
  int64_t size() const override { return n_; }
  int32_t num_classes() const override { return num_classes_; }
  int32_t label(int64_t i) const override { return i == n_ - 1 ? bad_label_ : 0; }
  void read(int64_t i, Image& out) const override {
    out.height = 2;
    out.width = 2;
    out.channels = 1;
    out.pixels.assign(4, uint8_t(i));
  }
  std::string describe(int64_t i) const override { return "fake#" + std::to_string(i); }

 private:
  int64_t n_;
  int32_t num_classes_, bad_label_;
};

}  // namespace

TEST_CASE("load_cifar10 reads the five train batches and the test batch in HWC order") {
  TempDir dir;
  for (int b = 0; b < 5; ++b) {
    write_bytes(dir.file("data_batch_" + std::to_string(b + 1) + ".bin"),
                cifar_records(2 * b, 2, {}, {b, 9 - b}));
  }
  write_bytes(dir.file("test_batch.bin"), cifar_records(100, 3, {}, {3, 1, 4}));

  const ImageDataset train = load_cifar10(dir.path().string(), Split::train);
  CHECK(train.n == 10);
  CHECK(train.height == 32);
  CHECK(train.width == 32);
  CHECK(train.channels == 3);
  CHECK(train.num_classes == 10);
  CHECK(train.labels == std::vector<int32_t>{0, 9, 1, 8, 2, 7, 3, 6, 4, 5});
  for (int i = 0; i < 10; ++i)
    check_cifar_image(train, i, i);

  const ImageDataset test = load_cifar10(dir.path().string(), Split::test);
  CHECK(test.n == 3);
  CHECK(test.labels == std::vector<int32_t>{3, 1, 4});
  check_cifar_image(test, 2, 102);
}

TEST_CASE("load_cifar100 uses the fine label and 100 classes") {
  TempDir dir;
  write_bytes(dir.file("train.bin"), cifar_records(0, 2, {19}, {99, 42}));  // coarse 19
  write_bytes(dir.file("test.bin"), cifar_records(7, 1, {3}, {0}));
  const ImageDataset train = load_cifar100(dir.path().string(), Split::train);
  CHECK(train.n == 2);
  CHECK(train.num_classes == 100);
  CHECK(train.labels == std::vector<int32_t>{99, 42});
  check_cifar_image(train, 1, 1);
  const ImageDataset test = load_cifar100(dir.path().string(), Split::test);
  CHECK(test.labels == std::vector<int32_t>{0});
  check_cifar_image(test, 0, 7);
}

TEST_CASE("CIFAR files of a wrong size, missing files and bad labels are errors naming them") {
  TempDir dir;
  for (int b = 1; b <= 5; ++b) {
    write_bytes(dir.file("data_batch_" + std::to_string(b) + ".bin"), cifar_records(0, 1, {}, {1}));
  }
  std::vector<uint8_t> bad = cifar_records(0, 2, {}, {1, 2});
  bad.resize(bad.size() - 5);
  write_bytes(dir.file("data_batch_4.bin"), bad);
  CHECK_THROWS_WITH(load_cifar10(dir.path().string(), Split::train),
                    Contains("data_batch_4.bin") && Contains("6141 bytes") && Contains("3073"));

  // CIFAR-100 records are 3074 bytes: a CIFAR-10 file is rejected.
  write_bytes(dir.file("train.bin"), cifar_records(0, 2, {}, {1, 2}));
  CHECK_THROWS_WITH(load_cifar100(dir.path().string(), Split::train),
                    Contains("train.bin") && Contains("3074"));

  CHECK_THROWS_WITH(load_cifar10(dir.path().string(), Split::test), Contains("test_batch.bin"));
  fs::remove(dir.file("data_batch_4.bin"));
  CHECK_THROWS_AS(load_cifar10(dir.path().string(), Split::train), DataError);

  write_bytes(dir.file("test_batch.bin"), cifar_records(0, 2, {}, {3, 10}));
  CHECK_THROWS_WITH(load_cifar10(dir.path().string(), Split::test),
                    Contains("label 10") && Contains("[0, 10)"));
}

TEST_CASE("decode_png gives exact pixels for RGB, grey, palette and grey+alpha files") {
  TempDir dir;
  const int w = 5, h = 4;
  std::vector<uint8_t> rgb;
  for (int i = 0; i < w * h; ++i) {
    rgb.push_back(uint8_t(i * 13));
    rgb.push_back(uint8_t(255 - i * 7));
    rgb.push_back(uint8_t(i * i % 256));
  }
  write_test_png(dir.file("rgb.png"), w, h, PNG_FORMAT_RGB, rgb);
  const Image colour = decode_file(dir.file("rgb.png"), 3);
  CHECK(colour.height == h);
  CHECK(colour.width == w);
  CHECK(colour.channels == 3);
  CHECK(colour.pixels == rgb);

  // RGB -> grey: Y = (299 R + 587 G + 114 B) / 1000, rounded.
  const Image grey = decode_file(dir.file("rgb.png"), 1);
  REQUIRE(grey.channels == 1);
  REQUIRE(grey.pixels.size() == size_t(w * h));
  for (int i = 0; i < w * h; ++i) {
    CHECK(int(grey.pixels[size_t(i)]) == int(luma(rgb[3 * i], rgb[3 * i + 1], rgb[3 * i + 2])));
  }

  // grey -> RGB replicates.
  std::vector<uint8_t> g(size_t(w * h));
  for (int i = 0; i < w * h; ++i)
    g[size_t(i)] = uint8_t(i * 11 + 3);
  write_test_png(dir.file("grey.png"), w, h, PNG_FORMAT_GRAY, g);
  const Image g3 = decode_file(dir.file("grey.png"), 3);
  REQUIRE(g3.channels == 3);
  for (int i = 0; i < w * h; ++i) {
    CHECK(g3.pixels[size_t(3 * i)] == g[size_t(i)]);
    CHECK(g3.pixels[size_t(3 * i + 1)] == g[size_t(i)]);
    CHECK(g3.pixels[size_t(3 * i + 2)] == g[size_t(i)]);
  }
  CHECK(decode_file(dir.file("grey.png"), 1).pixels == g);

  // Palette: indices into a 3-entry RGB colour map.
  const std::vector<uint8_t> colormap = {255, 0, 0, 0, 128, 0, 10, 20, 30};
  std::vector<uint8_t> idx(size_t(w * h));
  for (int i = 0; i < w * h; ++i)
    idx[size_t(i)] = uint8_t(i % 3);
  write_test_png(dir.file("palette.png"), w, h, PNG_FORMAT_RGB_COLORMAP, idx, colormap);
  const Image pal = decode_file(dir.file("palette.png"), 3);
  for (int i = 0; i < w * h; ++i) {
    for (int c = 0; c < 3; ++c) {
      CHECK(pal.pixels[size_t(3 * i + c)] == colormap[size_t(3 * (i % 3) + c)]);
    }
  }

  // Grey + alpha: opaque pixels keep their value, transparent ones become black.
  std::vector<uint8_t> ga;
  for (int i = 0; i < w * h; ++i) {
    ga.push_back(uint8_t(100 + i));
    ga.push_back(i == 0 ? 0 : 255);
  }
  write_test_png(dir.file("ga.png"), w, h, PNG_FORMAT_GA, ga);
  const Image gai = decode_file(dir.file("ga.png"), 1);
  CHECK(gai.pixels[0] == 0);
  for (int i = 1; i < w * h; ++i)
    CHECK(int(gai.pixels[size_t(i)]) == 100 + i);
}

TEST_CASE("decode_jpeg reads colour and grey JPEGs close to the encoded pixels") {
  TempDir dir;
  const int w = 16, h = 12;
  const std::vector<uint8_t> rgb = smooth_rgb(w, h);
  write_test_jpeg(dir.file("c.jpg"), w, h, 3, rgb);
  const Image colour = decode_file(dir.file("c.jpg"), 3);
  CHECK(colour.height == h);
  CHECK(colour.width == w);
  CHECK(colour.channels == 3);
  CHECK(max_abs_diff(colour.pixels, rgb) <= 4);

  // RGB -> grey: libjpeg's Y = 0.299 R + 0.587 G + 0.114 B.
  std::vector<uint8_t> expected_grey;
  for (size_t p = 0; p < rgb.size() / 3; ++p) {
    expected_grey.push_back(luma(rgb[3 * p], rgb[3 * p + 1], rgb[3 * p + 2]));
  }
  const Image grey = decode_file(dir.file("c.jpg"), 1);
  CHECK(grey.channels == 1);
  CHECK(max_abs_diff(grey.pixels, expected_grey) <= 4);

  // A grey JPEG -> RGB: three equal channels close to the original.
  write_test_jpeg(dir.file("g.jpg"), w, h, 1, expected_grey);
  const Image g3 = decode_file(dir.file("g.jpg"), 3);
  REQUIRE(g3.pixels.size() == size_t(w * h * 3));
  std::vector<uint8_t> red;
  for (size_t p = 0; p < size_t(w * h); ++p) {
    CHECK(g3.pixels[3 * p] == g3.pixels[3 * p + 1]);
    CHECK(g3.pixels[3 * p] == g3.pixels[3 * p + 2]);
    red.push_back(g3.pixels[3 * p]);
  }
  CHECK(max_abs_diff(red, expected_grey) <= 2);
  CHECK(max_abs_diff(decode_file(dir.file("g.jpg"), 1).pixels, expected_grey) <= 2);
}

TEST_CASE("ImageFolderSource lists sorted classes and files and decodes JPEG and PNG") {
  TempDir dir;
  const fs::path root = dir.path() / "train";
  std::vector<uint8_t> grey(4 * 3, 77);
  // Classes listed out of order; extensions in mixed case; a text file is ignored.
  write_test_png((root / "cat" / "b.PNG").string(), 4, 3, PNG_FORMAT_GRAY, grey);
  write_test_jpeg((root / "cat" / "a.jpeg").string(), 16, 12, 3, smooth_rgb(16, 12));
  write_test_jpeg((root / "ant" / "z.JPG").string(), 16, 12, 3, smooth_rgb(16, 12));
  write_test_png((root / "bee" / "x.png").string(), 5, 4, PNG_FORMAT_RGB,
                 std::vector<uint8_t>(5 * 4 * 3, 200));
  write_test_png((root / "bee" / "w.png").string(), 4, 3, PNG_FORMAT_GRAY, grey);
  write_bytes((root / "bee" / "notes.txt").string(), {'h', 'i'});

  const ImageFolderSource source(root.string(), 3);
  CHECK(source.class_names() == std::vector<std::string>{"ant", "bee", "cat"});
  CHECK(source.num_classes() == 3);
  REQUIRE(source.size() == 5);
  const std::vector<int32_t> labels = {0, 1, 1, 2, 2};
  const std::vector<std::string> names = {"ant/z.JPG", "bee/w.png", "bee/x.png", "cat/a.jpeg",
                                          "cat/b.PNG"};
  for (int64_t i = 0; i < 5; ++i) {
    CHECK(source.label(i) == labels[size_t(i)]);
    CHECK(source.describe(i) == (root / names[size_t(i)]).string());
  }
  Image img;
  source.read(2, img);
  CHECK(img.height == 4);
  CHECK(img.width == 5);
  CHECK(img.pixels == std::vector<uint8_t>(5 * 4 * 3, 200));
  source.read(4, img);  // grey PNG -> RGB, reusing the buffer
  CHECK(img.channels == 3);
  CHECK(img.pixels == std::vector<uint8_t>(4 * 3 * 3, 77));
  source.read(0, img);
  CHECK(img.height == 12);
  CHECK(img.width == 16);
  CHECK(max_abs_diff(img.pixels, smooth_rgb(16, 12)) <= 4);

  const ImageFolderSource grey_source(root.string(), 1);
  grey_source.read(2, img);
  CHECK(img.channels == 1);
  CHECK(img.pixels == std::vector<uint8_t>(5 * 4, 200));

  // Concurrent reads give the same pixels as sequential ones.
  std::vector<Image> seq(5), par(5);
  for (int64_t i = 0; i < 5; ++i)
    source.read(i, seq[size_t(i)]);
  std::vector<std::thread> threads;
  for (int t = 0; t < 2; ++t) {
    threads.emplace_back([&, t] {
      for (int rep = 0; rep < 20; ++rep) {
        for (int64_t i = t; i < 5; i += 2)
          source.read(i, par[size_t(i)]);
      }
    });
  }
  for (std::thread& th : threads)
    th.join();
  for (size_t i = 0; i < 5; ++i)
    CHECK(par[i].pixels == seq[i].pixels);
}

TEST_CASE("ImageFolderSource: corrupt files throw naming the path, bad folders fail at start") {
  TempDir dir;
  const fs::path root = dir.path() / "data";
  write_test_png((root / "a" / "ok.png").string(), 2, 2, PNG_FORMAT_GRAY, {1, 2, 3, 4});
  write_test_jpeg((root / "b" / "ok.jpg").string(), 16, 12, 3, smooth_rgb(16, 12));
  // A JPEG cut in half, garbage named .jpg, garbage named .png.
  std::vector<uint8_t> cut = read_bytes((root / "b" / "ok.jpg").string());
  cut.resize(cut.size() / 3);
  write_bytes((root / "b" / "p_cut.jpg").string(), cut);
  write_bytes((root / "b" / "q_garbage.jpg").string(), {1, 2, 3, 4, 5, 6, 7, 8});
  write_bytes((root / "b" / "r_garbage.png").string(), {0x89, 'P', 'N', 'G', 9, 9, 9});

  const ImageFolderSource source(root.string(), 3);
  REQUIRE(source.size() == 5);
  Image img;
  source.read(0, img);
  source.read(1, img);
  CHECK_THROWS_AS(source.read(3, img), DataError);
  CHECK_THROWS_WITH(source.read(3, img), Contains((root / "b" / "q_garbage.jpg").string()));
  CHECK_THROWS_WITH(source.read(4, img), Contains((root / "b" / "r_garbage.png").string()));
  // A truncated JPEG is an error too (libjpeg alone would fill the rest with grey).
  CHECK_THROWS_WITH(source.read(2, img),
                    Contains((root / "b" / "p_cut.jpg").string()) && Contains("Premature end"));
  CHECK_THROWS_WITH(source.read(5, img), Contains("outside [0, 5)"));

  CHECK_THROWS_WITH(ImageFolderSource((dir.path() / "missing").string(), 3),
                    Contains("missing") && Contains("does not exist"));
  fs::create_directories(dir.path() / "flat");
  write_test_png((dir.path() / "flat" / "x.png").string(), 2, 2, PNG_FORMAT_GRAY, {1, 2, 3, 4});
  CHECK_THROWS_WITH(ImageFolderSource((dir.path() / "flat").string(), 3),
                    Contains("no class subfolders"));
  fs::create_directories(root / "c_empty");
  write_bytes((root / "c_empty" / "readme.txt").string(), {'x'});
  CHECK_THROWS_WITH(ImageFolderSource(root.string(), 3),
                    Contains((root / "c_empty").string()) && Contains("holds no images"));
  CHECK_THROWS_WITH(ImageFolderSource(root.string(), 2), Contains("channels must be 1 or 3"));
}

TEST_CASE("write_hdf5_shard then load_hdf5_shard round-trips images, labels and num_classes") {
  TempDir dir;
  ImageDataset ds;
  ds.n = 5;
  ds.height = 4;
  ds.width = 3;
  ds.channels = 2;
  ds.num_classes = 7;
  for (int i = 0; i < 5 * 4 * 3 * 2; ++i)
    ds.images.push_back(uint8_t(i * 5 % 256));
  ds.labels = {6, 0, 3, 3, 1};
  const InMemorySource source(ds, "fixture");
  std::vector<int64_t> progress;
  write_hdf5_shard(dir.file("s.h5"), source, 0, 0, [&](int64_t done, int64_t total) {
    CHECK(total == 5);
    progress.push_back(done);
  });
  REQUIRE(!progress.empty());
  CHECK(progress.back() == 5);
  CHECK(!fs::exists(dir.file("s.h5.tmp")));

  const ImageDataset back = load_hdf5_shard(dir.file("s.h5"));
  CHECK(back.n == 5);
  CHECK(back.height == 4);
  CHECK(back.width == 3);
  CHECK(back.channels == 2);
  CHECK(back.num_classes == 7);
  CHECK(back.labels == ds.labels);
  CHECK(back.images == ds.images);

  // A required size that the images do not have is an error naming the first image.
  CHECK_THROWS_WITH(write_hdf5_shard(dir.file("t.h5"), source, 8, 8),
                    Contains("fixture#0") && Contains("4x3x2"));
  CHECK(!fs::exists(dir.file("t.h5")));
  CHECK(!fs::exists(dir.file("t.h5.tmp")));
}

TEST_CASE("write_hdf5_shard names the first image of another size") {
  TempDir dir;
  const fs::path root = dir.path() / "f";
  write_test_png((root / "a" / "1.png").string(), 2, 2, PNG_FORMAT_GRAY, {1, 2, 3, 4});
  write_test_png((root / "a" / "2.png").string(), 3, 2, PNG_FORMAT_GRAY, {1, 2, 3, 4, 5, 6});
  const ImageFolderSource source(root.string(), 1);
  CHECK_THROWS_WITH(
      write_hdf5_shard(dir.file("s.h5"), source, 0, 0),
      Contains((root / "a" / "2.png").string()) && Contains("2x3x1") && Contains("2x2x1"));
  CHECK(!fs::exists(dir.file("s.h5")));
}

TEST_CASE("load_hdf5_shard rejects labels out of range, bad shapes and missing files") {
  TempDir dir;
  write_hdf5_shard(dir.file("bad_label.h5"), FakeSource(4, 3, 7), 0, 0);
  CHECK_THROWS_WITH(load_hdf5_shard(dir.file("bad_label.h5")),
                    Contains("bad_label.h5") && Contains("label 7") && Contains("[0, 3)"));
  write_hdf5_shard(dir.file("neg_label.h5"), FakeSource(2, 3, -1), 0, 0);
  CHECK_THROWS_WITH(load_hdf5_shard(dir.file("neg_label.h5")), Contains("label -1"));

  CHECK_THROWS_WITH(load_hdf5_shard(dir.file("none.h5")),
                    Contains("none.h5") && Contains("does not exist"));
  write_bytes(dir.file("text.h5"), {'n', 'o', 't', ' ', 'h', 'd', 'f'});
  CHECK_THROWS_WITH(load_hdf5_shard(dir.file("text.h5")), Contains("not an HDF5 file"));

  // images of rank 3, written with the HDF5 C API.
  {
    const hid_t file =
        H5Fcreate(dir.file("rank3.h5").c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    REQUIRE(file >= 0);
    const hsize_t dims[3] = {2, 3, 4};
    const hid_t space = H5Screate_simple(3, dims, nullptr);
    const hid_t ds =
        H5Dcreate2(file, "images", H5T_STD_U8LE, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    std::vector<uint8_t> zeros(24, 0);
    REQUIRE(H5Dwrite(ds, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, zeros.data()) >= 0);
    H5Dclose(ds);
    H5Sclose(space);
    H5Fclose(file);
  }
  CHECK_THROWS_WITH(load_hdf5_shard(dir.file("rank3.h5")),
                    Contains("rank3.h5") && Contains("[2, 3, 4]") && Contains("[N, H, W, C]"));
}

TEST_CASE("write_png writes a file that decode_png reads back exactly") {
  TempDir dir;
  Image img;
  img.height = 3;
  img.width = 2;
  img.channels = 3;
  for (int i = 0; i < 18; ++i)
    img.pixels.push_back(uint8_t(i * 14));
  write_png(dir.file("o.png"), img);
  const Image back = decode_file(dir.file("o.png"), 3);
  CHECK(back.height == 3);
  CHECK(back.width == 2);
  CHECK(back.pixels == img.pixels);
  CHECK_THROWS_WITH(write_png(dir.file("no/such/dir/o.png"), img), Contains("no/such/dir/o.png"));
}

namespace {

// Rewrites the frame size in the SOF0 marker of a baseline JPEG.
std::vector<uint8_t> with_jpeg_size(std::vector<uint8_t> jpeg, uint16_t width, uint16_t height) {
  for (size_t i = 0; i + 8 < jpeg.size(); ++i) {
    if (jpeg[i] == 0xff && jpeg[i + 1] == 0xc0) {  // SOF0: FF C0, length(2), precision(1), H, W
      jpeg[i + 5] = uint8_t(height >> 8);
      jpeg[i + 6] = uint8_t(height);
      jpeg[i + 7] = uint8_t(width >> 8);
      jpeg[i + 8] = uint8_t(width);
      return jpeg;
    }
  }
  FAIL("no SOF0 marker");
  return jpeg;
}

// Rewrites the IHDR width and height of a PNG and fixes the chunk's CRC.
std::vector<uint8_t> with_png_size(std::vector<uint8_t> png, uint32_t width, uint32_t height) {
  // Signature (8), IHDR length (4), "IHDR" (4), width (4), height (4), ... (5), CRC (4).
  REQUIRE(png.size() > 33);
  REQUIRE(std::string(png.begin() + 12, png.begin() + 16) == "IHDR");
  for (int b = 0; b < 4; ++b) {
    png[size_t(16 + b)] = uint8_t(width >> (24 - 8 * b));
    png[size_t(20 + b)] = uint8_t(height >> (24 - 8 * b));
  }
  uint32_t crc = 0xffffffffu;  // CRC-32 of the chunk type and data (bytes 12..28)
  for (size_t i = 12; i < 29; ++i) {
    crc ^= png[i];
    for (int k = 0; k < 8; ++k)
      crc = (crc >> 1) ^ (0xedb88320u & (0u - (crc & 1u)));
  }
  crc ^= 0xffffffffu;
  for (int b = 0; b < 4; ++b)
    png[size_t(29 + b)] = uint8_t(crc >> (24 - 8 * b));
  return png;
}

}  // namespace

TEST_CASE("JPEG and PNG headers declaring huge images are refused before allocating (issue 11)") {
  TempDir dir;
  write_test_jpeg(dir.file("small.jpg"), 16, 12, 3, smooth_rgb(16, 12));
  const std::vector<uint8_t> jpeg = read_bytes(dir.file("small.jpg"));
  // 65500 x 65500 x 3 = 12.9 GB from a file of a few hundred bytes.
  const std::vector<uint8_t> huge_jpeg = with_jpeg_size(jpeg, 65500, 65500);
  Image img;
  CHECK_THROWS_WITH(
      decode_jpeg(huge_jpeg.data(), huge_jpeg.size(), 3, "huge.jpg", img),
      Contains("'huge.jpg'") && Contains("65500x65500") && Contains("67108864 pixels"));
  // Inside the limit the damaged file is still an error (its data ends early), not a crash.
  const std::vector<uint8_t> big_jpeg = with_jpeg_size(jpeg, 4000, 4000);
  CHECK_THROWS_AS(decode_jpeg(big_jpeg.data(), big_jpeg.size(), 1, "big.jpg", img), DataError);

  write_test_png(dir.file("small.png"), 2, 2, PNG_FORMAT_GRAY, {1, 2, 3, 4});
  const std::vector<uint8_t> png = read_bytes(dir.file("small.png"));
  const std::vector<uint8_t> huge_png = with_png_size(png, 100000, 100000);
  CHECK_THROWS_WITH(
      decode_png(huge_png.data(), huge_png.size(), 3, "huge.png", img),
      Contains("'huge.png'") && Contains("100000x100000") && Contains("67108864 pixels"));
  // 4000 x 4000 is within the pixel limit, but no deflate stream of a few dozen bytes holds it.
  const std::vector<uint8_t> big_png = with_png_size(png, 4000, 4000);
  CHECK_THROWS_WITH(decode_png(big_png.data(), big_png.size(), 1, "big.png", img),
                    Contains("'big.png'") && Contains("4000x4000") &&
                        Contains(std::to_string(big_png.size()) + "-byte file"));
  // The real file still decodes.
  decode_png(png.data(), png.size(), 1, "small.png", img);
  CHECK(img.pixels == std::vector<uint8_t>{1, 2, 3, 4});
}

TEST_CASE("CIFAR files larger than the record limit are refused before reading (issue 11)") {
  TempDir dir;
  // A sparse file of 131073 CIFAR-100 records (403 MB on paper, nothing on disk): every
  // record has a valid label (0), so only the size limit can refuse it.
  const std::string train = dir.file("train.bin");
  { std::ofstream(train, std::ios::binary).put(0); }
  fs::resize_file(train, uintmax_t{131073} * 3074);
  CHECK_THROWS_WITH(load_cifar100(dir.path().string(), Split::train),
                    Contains(train) && Contains("131073 records") && Contains("131072"));
}

TEST_CASE("image folders: train and test class names must be equal (issue 11)") {
  TempDir dir;
  const fs::path train = dir.path() / "train";
  const fs::path test = dir.path() / "test";
  for (const char* c : {"cat", "dog", "eel"})
    write_test_png((train / c / "a.png").string(), 2, 2, PNG_FORMAT_GRAY, {1, 2, 3, 4});
  for (const char* c : {"cat", "dig", "eel"})
    write_test_png((test / c / "a.png").string(), 2, 2, PNG_FORMAT_GRAY, {1, 2, 3, 4});
  CHECK(image_folder_classes(train.string()) == std::vector<std::string>{"cat", "dog", "eel"});
  CHECK_THROWS_WITH(check_same_classes(train.string(), test.string()),
                    Contains("image folders '" + train.string() + "' and '" + test.string() +
                             "' have different classes") &&
                        Contains("class 1 is 'dog' in the first and 'dig' in the second"));
  // A class missing at the end.
  fs::remove_all(test / "dig");
  write_test_png((test / "dog" / "a.png").string(), 2, 2, PNG_FORMAT_GRAY, {1, 2, 3, 4});
  fs::remove_all(test / "eel");
  CHECK_THROWS_WITH(check_same_classes(train.string(), test.string()),
                    Contains("3 classes and 2 classes") && Contains("class 2 is 'eel' in the first "
                                                                    "and missing in the second"));
  write_test_png((test / "eel" / "a.png").string(), 2, 2, PNG_FORMAT_GRAY, {1, 2, 3, 4});
  CHECK_NOTHROW(check_same_classes(train.string(), test.string()));
}
