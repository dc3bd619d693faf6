// JPEG decoding through libjpeg-turbo's libjpeg API (the one place data/ calls libjpeg).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#include "data/image_source.h"

namespace vmoe::data {

// Decodes the JPEG in `bytes` into `out` with `channels` channels (1 = grey, 3 = RGB; colour
// images are converted to grey as Y = 0.299 R + 0.587 G + 0.114 B, grey images replicated).
// Thread-safe (no shared state). Throws DataError naming `what` (usually the file path) for
// a corrupt or unsupported file, e.g. CMYK.
void decode_jpeg(const uint8_t* bytes, size_t size, int64_t channels, const std::string& what,
                 Image& out);

}  // namespace vmoe::data
