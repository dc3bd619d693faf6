// libpng simplified API: png_image reads into a caller buffer and reports errors in
// image.message, so no setjmp is needed here.
#include "data/png_codec.h"

#include <png.h>

#include <vector>

#include "data/checked_size.h"
#include "data/data_error.h"

namespace vmoe::data {
namespace {

// Deflate expands at most 1032:1 and a 1-bit PNG packs 8 pixels in a byte: no PNG file holds
// more pixels than this per byte of its size.
constexpr int64_t kPngMaxPixelsPerByte = 8 * 1032;

uint8_t luma(uint8_t r, uint8_t g, uint8_t b) {
  return uint8_t((299 * uint32_t(r) + 587 * uint32_t(g) + 114 * uint32_t(b) + 500) / 1000);
}

}  // namespace

void decode_png(const uint8_t* bytes, size_t size, int64_t channels, const std::string& what,
                Image& out) {
  if (channels != 1 && channels != 3) {
    throw DataError("PNG '" + what + "': channels must be 1 or 3, got " + std::to_string(channels));
  }
  png_image image{};
  image.version = PNG_IMAGE_VERSION;
  if (!png_image_begin_read_from_memory(&image, bytes, size)) {
    const std::string message = image.message;
    png_image_free(&image);
    throw DataError("corrupt or unsupported PNG '" + what + "': " + message);
  }
  // Decode to the file's own colour kind, then convert grey <-> RGB here with one formula.
  const bool colour = (image.format & PNG_FORMAT_FLAG_COLOR) != 0;
  image.format = colour ? PNG_FORMAT_RGB : PNG_FORMAT_GRAY;
  const int64_t native = colour ? 3 : 1;
  const int64_t h = image.height;
  const int64_t w = image.width;
  // Sides are below 2^32 (libpng refuses more than 10^6 anyway), so h * w fits in 64 bits.
  const auto refuse = [&](const std::string& why) {
    png_image_free(&image);
    throw DataError("PNG '" + what + "': header declares " + std::to_string(w) + "x" +
                    std::to_string(h) + " pixels, " + why);
  };
  if (h * w > kMaxImagePixels) {
    refuse("more than the " + std::to_string(kMaxImagePixels) +
           " pixels (8192 x 8192) this reader accepts");
  }
  if (h * w > kPngMaxPixelsPerByte * int64_t(size)) {
    refuse("more than a " + std::to_string(size) + "-byte file can hold (at most " +
           std::to_string(kPngMaxPixelsPerByte) + " pixels per byte)");
  }
  std::vector<uint8_t> decoded(size_t(h * w * native));
  const png_color black{0, 0, 0};
  if (!png_image_finish_read(&image, &black, decoded.data(), 0, nullptr)) {
    const std::string message = image.message;
    png_image_free(&image);
    throw DataError("corrupt or unsupported PNG '" + what + "': " + message);
  }
  out.height = h;
  out.width = w;
  out.channels = channels;
  const size_t pixels = size_t(h * w);
  if (native == channels) {
    out.pixels = std::move(decoded);
  } else if (channels == 1) {
    out.pixels.resize(pixels);
    for (size_t p = 0; p < pixels; ++p) {
      out.pixels[p] = luma(decoded[3 * p], decoded[3 * p + 1], decoded[3 * p + 2]);
    }
  } else {
    out.pixels.resize(pixels * 3);
    for (size_t p = 0; p < pixels; ++p) {
      out.pixels[3 * p] = out.pixels[3 * p + 1] = out.pixels[3 * p + 2] = decoded[p];
    }
  }
}

void write_png(const std::string& path, const Image& img) {
  if (img.channels != 1 && img.channels != 3) {
    throw DataError("cannot write PNG '" + path + "': channels must be 1 or 3, got " +
                    std::to_string(img.channels));
  }
  if (img.height <= 0 || img.width <= 0 ||
      img.pixels.size() != size_t(img.height * img.width * img.channels)) {
    throw DataError("cannot write PNG '" + path + "': image " + std::to_string(img.height) + "x" +
                    std::to_string(img.width) + "x" + std::to_string(img.channels) +
                    " does not match its " + std::to_string(img.pixels.size()) + " bytes");
  }
  png_image image{};
  image.version = PNG_IMAGE_VERSION;
  image.width = png_uint_32(img.width);
  image.height = png_uint_32(img.height);
  image.format = img.channels == 3 ? PNG_FORMAT_RGB : PNG_FORMAT_GRAY;
  if (!png_image_write_to_file(&image, path.c_str(), 0, img.pixels.data(), 0, nullptr)) {
    const std::string message = image.message;
    png_image_free(&image);
    throw DataError("cannot write PNG '" + path + "': " + message);
  }
}

}  // namespace vmoe::data
