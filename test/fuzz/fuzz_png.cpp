// Fuzzes decode_png from memory, to grey and to RGB; a decoded image must have the size its
// fields state.
#include <cstdint>

#include "data/png_codec.h"
#include "test/fuzz/fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  for (int64_t channels : {1, 3}) {
    vmoe::fuzz::expect_clean([&] {
      vmoe::data::Image image;
      vmoe::data::decode_png(data, size, channels, "fuzz.png", image);
      if (image.channels != channels || image.height <= 0 || image.width <= 0 ||
          image.pixels.size() != size_t(image.height * image.width * channels)) {
        vmoe::fuzz::finding("decode_png", "decoded image does not match its size fields");
      }
    });
  }
  return 0;
}
