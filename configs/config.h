// Loading, overriding, validating and printing run configs (configs/vmoe.proto in protobuf
// text format). The only place in vmoe that calls the protobuf library; everything else reads
// the generated `config::Config` message.
#pragma once
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

// Checks ranges and cross-field constraints; throws ConfigError naming the field path.
void validate_config(const config::Config& config);

// The config in text format, fields that are set only; parse_config_text reads it back to an
// equal message.
std::string config_to_text(const config::Config& config);

// The same names beside the generated message types, so callers can write config::load_config.
namespace config {
using vmoe::apply_override;
using vmoe::config_to_text;
using vmoe::ConfigError;
using vmoe::load_config;
using vmoe::parse_config_text;
using vmoe::validate_config;
}  // namespace config

}  // namespace vmoe
