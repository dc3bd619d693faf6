// libjpeg decompression with errors turned into DataError. libjpeg reports fatal errors through
// error_exit, which must not return: it longjmps back to decode_jpeg, whose frame holds no
// object with a destructor between setjmp and the jump.
#include "data/jpeg_decode.h"

// jpeglib.h needs size_t and FILE declared first.
#include <csetjmp>
#include <cstdint>
#include <cstdio>
#include <vector>

#include <jpeglib.h>
// jerror.h after jpeglib.h: the message codes (JWRN_JPEG_EOF).
#include <jerror.h>

#include "data/checked_size.h"
#include "data/data_error.h"

namespace vmoe::data {
namespace {

struct ErrorManager {
  jpeg_error_mgr base;  // first member: libjpeg sees a jpeg_error_mgr*
  std::jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
};

void on_error(j_common_ptr cinfo) {
  auto* err = reinterpret_cast<ErrorManager*>(cinfo->err);
  (*cinfo->err->format_message)(cinfo, err->message);
  std::longjmp(err->jump, 1);
}

void on_message(j_common_ptr /*cinfo*/) {}  // warnings are not printed

// Missing image data is an error: a truncated file (JWRN_JPEG_EOF) or entropy-coded data that
// ends at a marker before the image is complete (JWRN_HIT_MARKER, e.g. a header declaring a
// larger frame than the data holds); libjpeg alone would fill the missing rows with grey and
// warn. Other corrupt-data warnings (extraneous bytes, common in real datasets) are tolerated.
void on_emit(j_common_ptr cinfo, int msg_level) {
  const int code = cinfo->err->msg_code;
  if (msg_level < 0 && (code == JWRN_JPEG_EOF || code == JWRN_HIT_MARKER)) on_error(cinfo);
}

// Decodes into out; returns false with err.message set on a libjpeg error. Kept free of C++
// objects with destructors so that the longjmp skips nothing.
bool decode(const uint8_t* bytes, size_t size, int64_t channels, Image& out, ErrorManager& err,
            jpeg_decompress_struct& cinfo) {
  cinfo.err = jpeg_std_error(&err.base);
  err.base.error_exit = on_error;
  err.base.output_message = on_message;
  err.base.emit_message = on_emit;
  if (setjmp(err.jump) != 0) {
    jpeg_destroy_decompress(&cinfo);
    return false;
  }
  jpeg_create_decompress(&cinfo);
  jpeg_mem_src(&cinfo, bytes, static_cast<unsigned long>(size));
  jpeg_read_header(&cinfo, TRUE);
  // The frame size is the header's word: bound it before libjpeg or we allocate for it.
  // (Each side is below 2^16, so the product fits.)
  const int64_t declared = int64_t{cinfo.image_width} * int64_t{cinfo.image_height};
  if (declared > kMaxImagePixels) {
    std::snprintf(err.message, sizeof err.message,
                  "header declares %ux%u pixels, more than the %lld pixels (8192 x 8192) this "
                  "reader accepts",
                  unsigned(cinfo.image_width), unsigned(cinfo.image_height),
                  static_cast<long long>(kMaxImagePixels));
    jpeg_destroy_decompress(&cinfo);
    return false;
  }
  cinfo.out_color_space = channels == 1 ? JCS_GRAYSCALE : JCS_RGB;
  jpeg_start_decompress(&cinfo);
  out.height = cinfo.output_height;
  out.width = cinfo.output_width;
  out.channels = channels;
  // resize may throw bad_alloc: only before any further libjpeg call could longjmp over it.
  out.pixels.resize(size_t(out.height * out.width * channels));
  const size_t row_bytes = size_t(out.width * channels);
  while (cinfo.output_scanline < cinfo.output_height) {
    JSAMPROW row = out.pixels.data() + size_t(cinfo.output_scanline) * row_bytes;
    jpeg_read_scanlines(&cinfo, &row, 1);
  }
  jpeg_finish_decompress(&cinfo);
  jpeg_destroy_decompress(&cinfo);
  return true;
}

}  // namespace

void decode_jpeg(const uint8_t* bytes, size_t size, int64_t channels, const std::string& what,
                 Image& out) {
  if (channels != 1 && channels != 3) {
    throw DataError("JPEG '" + what + "': channels must be 1 or 3, got " +
                    std::to_string(channels));
  }
  ErrorManager err{};
  jpeg_decompress_struct cinfo{};
  if (!decode(bytes, size, channels, out, err, cinfo)) {
    throw DataError("corrupt or unsupported JPEG '" + what + "': " + err.message);
  }
}

}  // namespace vmoe::data
