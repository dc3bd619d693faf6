// PNG decoding and encoding through libpng's simplified API (the one place data/ calls libpng).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#include "data/image_source.h"

namespace vmoe::data {

// Decodes the PNG in `bytes` into `out` with `channels` channels (1 = grey, 3 = RGB). Palette
// images are expanded, 16-bit samples reduced to 8 bits, alpha composited onto black; colour is
// converted to grey as Y = (299 R + 587 G + 114 B) / 1000 (as JPEG does), grey is replicated to
// RGB. Thread-safe. Throws DataError naming `what` for a corrupt file.
void decode_png(const uint8_t* bytes, size_t size, int64_t channels, const std::string& what,
                Image& out);

// Writes `image` (1 or 3 channels, 8 bits) as a PNG file. Throws DataError naming `path`.
void write_png(const std::string& path, const Image& image);

}  // namespace vmoe::data
