// Listing of an image folder and per-file decoding (JPEG or PNG, by extension).
#include "data/image_folder.h"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>

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

// An image file larger than this is refused before it is read (an 8192 x 8192 RGB image, the
// largest any decoder accepts, takes 192 MiB uncompressed).
constexpr uintmax_t kMaxImageFileBytes = uintmax_t{1} << 30;

std::vector<uint8_t> read_file(const std::string& path) {
  std::error_code ec;
  const uintmax_t size = fs::file_size(path, ec);
  if (ec) throw DataError("cannot read image file '" + path + "': " + ec.message());
  if (size > kMaxImageFileBytes) {
    throw DataError("image file '" + path + "' holds " + std::to_string(size) +
                    " bytes, more than the " + std::to_string(kMaxImageFileBytes) +
                    " this reader accepts");
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) throw DataError("cannot open image file '" + path + "'");
  std::vector<uint8_t> bytes(static_cast<size_t>(size));
  in.read(reinterpret_cast<char*>(bytes.data()), static_cast<std::streamsize>(size));
  if (in.gcount() != static_cast<std::streamsize>(size)) {
    throw DataError("error reading image file '" + path + "': expected " + std::to_string(size) +
                    " bytes, read " + std::to_string(in.gcount()));
  }
  return bytes;
}

// The class subfolders of `root`, sorted.
std::vector<fs::path> class_dirs_of(const std::string& root) {
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
  return class_dirs;
}

}  // namespace

std::vector<std::string> image_folder_classes(const std::string& root) {
  std::vector<std::string> names;
  for (const fs::path& dir : class_dirs_of(root))
    names.push_back(dir.filename().string());
  return names;
}

void check_same_classes(const std::string& first, const std::string& second) {
  const std::vector<std::string> a = image_folder_classes(first);
  const std::vector<std::string> b = image_folder_classes(second);
  if (a == b) return;
  size_t k = 0;
  while (k < a.size() && k < b.size() && a[k] == b[k])
    ++k;
  const auto name = [&](const std::vector<std::string>& names) {
    return k < names.size() ? "'" + names[k] + "'" : std::string("missing");
  };
  throw DataError("image folders '" + first + "' and '" + second +
                  "' have different classes (labels are positions in the sorted class list): " +
                  (a.size() != b.size() ? std::to_string(a.size()) + " classes and " +
                                              std::to_string(b.size()) + " classes; "
                                        : std::string()) +
                  "class " + std::to_string(k) + " is " + name(a) + " in the first and " + name(b) +
                  " in the second");
}

ImageFolderSource::ImageFolderSource(const std::string& root, int64_t channels)
    : root_(root), channels_(channels) {
  if (channels != 1 && channels != 3) {
    throw DataError("image folder '" + root + "': channels must be 1 or 3, got " +
                    std::to_string(channels));
  }
  std::error_code ec;
  for (const fs::path& dir : class_dirs_of(root)) {
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
