// Fuzzes the IDX readers (images and labels). Input byte 0 chooses how the rest is stored: bit 0
// gzip-compressed (else raw), bits 1-2 max_examples (0 = all).
#include <zlib.h>

#include <cstdint>
#include <string>
#include <vector>

#include "data/idx_reader.h"
#include "test/fuzz/fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t mode = data[0];
  const uint8_t* body = data + 1;
  const size_t body_size = size - 1;
  std::string path;
  if ((mode & 1) != 0) {
    path = (vmoe::fuzz::scratch_dir() / "input.gz").string();
    gzFile f = gzopen(path.c_str(), "wb");
    if (f == nullptr) vmoe::fuzz::finding("harness", "gzopen");
    if (body_size > 0) gzwrite(f, body, static_cast<unsigned>(body_size));
    gzclose(f);
  } else {
    path = vmoe::fuzz::write_input("input", body, body_size);
  }
  const int64_t max_examples = (mode >> 1) & 3;
  vmoe::fuzz::expect_clean([&] { vmoe::data::read_idx_images(path, max_examples); });
  vmoe::fuzz::expect_clean([&] { vmoe::data::read_idx_labels(path, max_examples); });
  return 0;
}
