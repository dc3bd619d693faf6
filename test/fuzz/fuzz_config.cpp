// Fuzzes the config text parser and validation: parse_config_text (textproto parse + validate),
// then, for a config that passes, one --set override built from the input's last line.
#include <cstdint>
#include <string>

#include "configs/config.h"
#include "test/fuzz/fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  vmoe::fuzz::expect_clean([&] {
    const vmoe::config::Config config = vmoe::parse_config_text(text, "fuzz.textproto");
    // A valid config round-trips through its text form.
    const std::string again = vmoe::config_to_text(config);
    vmoe::parse_config_text(again, "fuzz-roundtrip.textproto");
  });
  // The last line as a --set override on the default config (which may be invalid: errors ok).
  const size_t nl = text.rfind('\n');
  const std::string assignment = nl == std::string::npos ? text : text.substr(nl + 1);
  vmoe::fuzz::expect_clean([&] {
    vmoe::config::Config config;
    vmoe::apply_override(config, assignment);
    vmoe::validate_config(config);
  });
  return 0;
}
