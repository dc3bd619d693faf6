// IDX reading through zlib's gz* API, which reads gzip and raw files alike.
#include "data/idx_reader.h"

#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "data/checked_size.h"
#include "data/data_error.h"

namespace vmoe::data {
namespace {

constexpr uint32_t kImagesMagic = 0x00000803;  // u8, 3-D
constexpr uint32_t kLabelsMagic = 0x00000801;  // u8, 1-D
constexpr int64_t kChunkBytes = int64_t{1} << 22;
// Refuse headers that promise more than this, before allocating anything.
constexpr int64_t kMaxPayloadBytes = int64_t{1} << 40;

std::string hex32(uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08x", v);
  return buf;
}

// "(u8, 3-D)" for a well-formed IDX magic, "" otherwise: makes a wrong-file error readable.
std::string describe_magic(uint32_t magic) {
  struct TypeName {
    uint32_t code;
    const char* name;
  };
  static constexpr TypeName kTypes[] = {{0x08, "u8"},  {0x09, "i8"},  {0x0b, "i16"},
                                        {0x0c, "i32"}, {0x0d, "f32"}, {0x0e, "f64"}};
  if ((magic >> 16) != 0) return "";
  for (const TypeName& t : kTypes) {
    if (t.code == ((magic >> 8) & 0xff)) {
      return std::string(" (") + t.name + ", " + std::to_string(magic & 0xff) + "-D)";
    }
  }
  return "";
}

// Owns one gzFile; reads gzip or raw bytes.
class GzFile {
 public:
  explicit GzFile(const std::string& path) : path_(path) {
    errno = 0;
    file_ = gzopen(path.c_str(), "rb");
    if (file_ == nullptr) {
      const int err = errno;
      throw DataError("cannot open IDX file '" + path +
                      "': " + (err != 0 ? std::strerror(err) : "out of memory"));
    }
    gzbuffer(file_, 1 << 18);
  }
  ~GzFile() { gzclose_r(file_); }
  GzFile(const GzFile&) = delete;
  GzFile& operator=(const GzFile&) = delete;

  // Reads up to `size` bytes; fewer only when the data ends.
  int64_t read(uint8_t* dst, int64_t size) {
    int64_t done = 0;
    while (done < size) {
      const auto want = static_cast<unsigned>(std::min(size - done, kChunkBytes));
      const int got = gzread(file_, dst + done, want);
      if (got < 0) {
        int errnum = Z_OK;
        const char* msg = gzerror(file_, &errnum);
        throw DataError("'" + path_ +
                        "': read error: " + (errnum == Z_ERRNO ? std::strerror(errno) : msg));
      }
      if (got == 0) break;
      done += got;
    }
    return done;
  }

  // Reads and discards the rest of the data; returns how many bytes it held.
  int64_t skip_rest() {
    constexpr int64_t kScratchBytes = int64_t{1} << 16;
    std::vector<uint8_t> scratch(static_cast<size_t>(kScratchBytes));
    int64_t total = 0;
    for (;;) {
      const int64_t got = read(scratch.data(), kScratchBytes);
      total += got;
      if (got < kScratchBytes) return total;
    }
  }

  // zlib's message when a gzip stream ended early or is corrupt; empty when all is well.
  std::string stream_problem() {
    int errnum = Z_OK;
    const char* msg = gzerror(file_, &errnum);
    if (errnum == Z_OK) return "";
    // zlib prefixes the path; our messages already start with it.
    std::string text = msg;
    const std::string prefix = path_ + ": ";
    if (text.rfind(prefix, 0) == 0) text.erase(0, prefix.size());
    return text;
  }

 private:
  std::string path_;
  gzFile file_ = nullptr;
};

struct Header {
  std::vector<int64_t> dims;
};

Header read_header(GzFile& file, const std::string& path, uint32_t expected_magic,
                   const char* what) {
  uint8_t magic_bytes[4];
  const int64_t got = file.read(magic_bytes, 4);
  if (got < 4) {
    throw DataError("'" + path + "': truncated: file ends inside the 4-byte IDX magic (got " +
                    std::to_string(got) + " bytes)");
  }
  const uint32_t magic = (uint32_t{magic_bytes[0]} << 24) | (uint32_t{magic_bytes[1]} << 16) |
                         (uint32_t{magic_bytes[2]} << 8) | uint32_t{magic_bytes[3]};
  if (magic != expected_magic) {
    throw DataError("'" + path + "': bad magic " + hex32(magic) + describe_magic(magic) +
                    ", expected " + hex32(expected_magic) + " (" + what + ")");
  }
  const int ndims = static_cast<int>(magic & 0xff);
  std::vector<uint8_t> raw(static_cast<size_t>(4 * ndims));
  const int64_t got_dims = file.read(raw.data(), 4 * ndims);
  if (got_dims < 4 * ndims) {
    throw DataError("'" + path + "': truncated: header promises " + std::to_string(ndims) +
                    " dims (" + std::to_string(4 * ndims) + " bytes), got " +
                    std::to_string(got_dims));
  }
  Header header;
  for (int d = 0; d < ndims; ++d) {
    const uint8_t* b = raw.data() + 4 * d;
    header.dims.push_back((int64_t{b[0]} << 24) | (int64_t{b[1]} << 16) | (int64_t{b[2]} << 8) |
                          int64_t{b[3]});
  }
  return header;
}

// Reads the payload: keeps the first `keep_items` items, checks the file holds exactly
// `n` items of `item_bytes` each and that a gzip stream is intact.
std::vector<uint8_t> read_payload(GzFile& file, const std::string& path, int64_t n,
                                  int64_t item_bytes, int64_t keep_items, const char* noun) {
  int64_t promised = 0;
  if (__builtin_mul_overflow(n, item_bytes, &promised) || promised > kMaxPayloadBytes) {
    throw DataError("'" + path + "': header promises " + std::to_string(n) + " " + noun + "s of " +
                    std::to_string(item_bytes) +
                    " bytes each, more than the 1 TiB this reader accepts");
  }
  const int64_t keep_bytes = keep_items * item_bytes;  // <= promised
  std::vector<uint8_t> out;
  // Reserve little: a header may promise what the file lacks (the vector grows as data arrives).
  out.reserve(static_cast<size_t>(std::min(keep_bytes, int64_t{1} << 26)));
  int64_t got = 0;
  // Grow as data arrives, so a lying header cannot make us allocate what the file lacks.
  while (got < keep_bytes) {
    const int64_t want = std::min(keep_bytes - got, kChunkBytes);
    out.resize(static_cast<size_t>(got + want));
    const int64_t chunk = file.read(out.data() + got, want);
    got += chunk;
    if (chunk < want) break;
  }
  if (got == keep_bytes) got += file.skip_rest();
  const std::string problem = file.stream_problem();
  if (got < promised) {
    throw DataError("'" + path + "': truncated: header promises " + std::to_string(promised) + " " +
                    noun + " bytes, got " + std::to_string(got) +
                    (problem.empty() ? "" : " (gzip: " + problem + ")"));
  }
  if (got > promised) {
    throw DataError("'" + path + "': " + std::to_string(got - promised) +
                    " unexpected bytes after the " + std::to_string(promised) + " " + noun +
                    " bytes the header promises");
  }
  if (!problem.empty()) throw DataError("'" + path + "': corrupt gzip stream: " + problem);
  out.resize(static_cast<size_t>(keep_bytes));
  return out;
}

int64_t kept_items(int64_t n, int64_t max_examples, const std::string& path) {
  if (max_examples < 0) {
    throw DataError("max_examples must be >= 0 (0 = all), got " + std::to_string(max_examples) +
                    " (reading '" + path + "')");
  }
  return max_examples == 0 ? n : std::min(n, max_examples);
}

}  // namespace

IdxImages read_idx_images(const std::string& path, int64_t max_examples) {
  GzFile file(path);
  const Header header = read_header(file, path, kImagesMagic, "u8 images");
  IdxImages images;
  images.height = header.dims[1];
  images.width = header.dims[2];
  // Each dim is below 2^32, so H*W fits; the bound keeps it physically sensible.
  check_at_most(images.height, kMaxImageSide, "'" + path + "'", "image height (header dim 1)");
  check_at_most(images.width, kMaxImageSide, "'" + path + "'", "image width (header dim 2)");
  if (images.height == 0 || images.width == 0) {
    throw DataError("'" + path + "': image size " + std::to_string(images.height) + "x" +
                    std::to_string(images.width) + ", expected both dims > 0");
  }
  images.n = kept_items(header.dims[0], max_examples, path);
  images.pixels =
      read_payload(file, path, header.dims[0], images.height * images.width, images.n, "image");
  return images;
}

IdxLabels read_idx_labels(const std::string& path, int64_t max_examples) {
  GzFile file(path);
  const Header header = read_header(file, path, kLabelsMagic, "u8 labels");
  IdxLabels labels;
  labels.n = kept_items(header.dims[0], max_examples, path);
  labels.labels = read_payload(file, path, header.dims[0], 1, labels.n, "label");
  return labels;
}

}  // namespace vmoe::data
