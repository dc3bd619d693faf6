// Loading, overriding, validating and printing run configs (configs/vmoe.proto in protobuf
// text format). The only place in vmoe that calls the protobuf library; everything else reads
// the generated `config::Config` message.
#pragma once
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "configs/vmoe.pb.h"

namespace vmoe {

// A config that cannot be read, parsed, overridden or validated; the message is one line
// that names the file position or field path and what was expected.
class ConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Reads a textproto file, applies `overrides` ("path.to.field=value", in order) and validates
// the result. Parse errors read "FILE:LINE:COL: message" (1-based).
config::Config load_config(const std::string& path, const std::vector<std::string>& overrides = {});

// As load_config, for text already in memory; `source_name` stands for the file in errors.
config::Config parse_config_text(const std::string& text, const std::string& source_name,
                                 const std::vector<std::string>& overrides = {});

// Sets one field of any message from "path.to.field=value": integers, floats, bools (true,
// false, 1, 0), enums by name (any case) and strings as written (one pair of surrounding double
// quotes is removed). A repeated field takes a comma-separated list that replaces its elements.
// Errors read "--set ASSIGNMENT: what is wrong".
void apply_override(google::protobuf::Message& message, const std::string& assignment);

// Checks ranges and cross-field constraints; throws ConfigError naming the field path. Every
// floating-point field goes through check_float (finite and in its documented range), every
// integer field through check_int, and sizes derived from several fields (tokens per image and
// per routing group) are computed with checked multiplication and bounded.
void validate_config(const config::Config& config);

// The allowed values of a floating-point field or option: from lo to hi, either end open.
struct FloatRange {
  double lo = 0, hi = 0;
  bool lo_open = false, hi_open = false;
};

// The one check of a floating-point config field or command-line option: throws ConfigError
// "NAME must be in [LO, HI] (got VALUE)" unless `value` is finite and in `range` (inf and nan
// never are, whatever the range).
void check_float(double value, const std::string& name, const FloatRange& range);

// The same for integers: `value` when it is in [lo, hi], else ConfigError naming `name`.
int64_t check_int(int64_t value, const std::string& name, int64_t lo, int64_t hi);

// Images whose tokens are routed together: model.moe.images_per_group, or 1 for the SOFT
// router (its slots mix the tokens of one image).
int64_t moe_group_images(const config::MoeConfig& moe);

// Compute threads per process (train.threads, OMP_NUM_THREADS) and loader threads: at most this.
inline constexpr int64_t kMaxThreads = 1024;

// The config in text format, fields that are set only; parse_config_text reads it back to an
// equal message.
std::string config_to_text(const config::Config& config);

// The same names beside the generated message types, so callers can write config::load_config.
namespace config {
using vmoe::apply_override;
using vmoe::check_float;
using vmoe::check_int;
using vmoe::config_to_text;
using vmoe::ConfigError;
using vmoe::FloatRange;
using vmoe::kMaxThreads;
using vmoe::load_config;
using vmoe::parse_config_text;
using vmoe::validate_config;
}  // namespace config

}  // namespace vmoe
