// Listing of an image folder and per-file decoding (JPEG or PNG, by extension).
#include "data/image_folder.h"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "data/data_error.h"
#include "data/jpeg_decode.h"
#include "data/png_codec.h"

namespace vmoe::data {
namespace {

namespace fs = std::filesystem;

enum class Format : uint8_t { none, jpeg, png };

Format format_of(const fs::path& path) {
  std::string ext = path.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(),
                 [](unsigned char c) { return char(std::tolower(c)); });
  if (ext == ".jpg" || ext == ".jpeg") return Format::jpeg;
  if (ext == ".png") return Format::png;
  return Format::none;
}

std::vector<uint8_t> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw DataError("cannot open image file '" + path + "'");
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)),
                             std::istreambuf_iterator<char>());
  if (in.bad()) throw DataError("error reading image file '" + path + "'");
  return bytes;
}

}  // namespace

ImageFolderSource::ImageFolderSource(const std::string& root, int64_t channels)
    : root_(root), channels_(channels) {
  if (channels != 1 && channels != 3) {
    throw DataError("image folder '" + root + "': channels must be 1 or 3, got " +
                    std::to_string(channels));
  }
  std::error_code ec;
  if (!fs::is_directory(root, ec)) {
    throw DataError("image folder '" + root + "' does not exist or is not a directory");
  }
  std::vector<fs::path> class_dirs;
  for (const fs::directory_entry& e : fs::directory_iterator(root, ec)) {
    if (e.is_directory()) class_dirs.push_back(e.path());
  }
  if (ec) throw DataError("cannot list image folder '" + root + "': " + ec.message());
  if (class_dirs.empty()) {
    throw DataError("image folder '" + root +
                    "' holds no class subfolders (expected root/<class>/<image>)");
  }
  std::sort(class_dirs.begin(), class_dirs.end());
  for (const fs::path& dir : class_dirs) {
    std::vector<std::string> images;
    for (const fs::directory_entry& e : fs::directory_iterator(dir, ec)) {
      if (e.is_regular_file() && format_of(e.path()) != Format::none) {
        images.push_back(e.path().string());
      }
    }
    if (ec) throw DataError("cannot list class folder '" + dir.string() + "': " + ec.message());
    if (images.empty()) {
      throw DataError("class folder '" + dir.string() +
                      "' holds no images (expected *.jpg, *.jpeg or *.png files)");
    }
    std::sort(images.begin(), images.end());
    const auto label = int32_t(class_names_.size());
    class_names_.push_back(dir.filename().string());
    for (std::string& f : images) {
      files_.push_back(std::move(f));
      labels_.push_back(label);
    }
  }
}

void ImageFolderSource::check_index(int64_t i) const {
  if (i < 0 || i >= size()) {
    throw DataError("image folder '" + root_ + "': example " + std::to_string(i) +
                    " is outside [0, " + std::to_string(size()) + ")");
  }
}

int32_t ImageFolderSource::label(int64_t i) const {
  check_index(i);
  return labels_[size_t(i)];
}

void ImageFolderSource::read(int64_t i, Image& out) const {
  check_index(i);
  const std::string& path = files_[size_t(i)];
  const std::vector<uint8_t> bytes = read_file(path);
  if (format_of(path) == Format::png) {
    decode_png(bytes.data(), bytes.size(), channels_, path, out);
  } else {
    decode_jpeg(bytes.data(), bytes.size(), channels_, path, out);
  }
}

std::string ImageFolderSource::describe(int64_t i) const {
  check_index(i);
  return files_[size_t(i)];
}

}  // namespace vmoe::data
