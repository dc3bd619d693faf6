// Config loading: text-format parsing with one-line located errors, `--set` overrides resolved
// through descriptors, validation of values and printing.
#include "configs/config.h"

#include <google/protobuf/descriptor.h>
#include <google/protobuf/io/tokenizer.h>
#include <google/protobuf/text_format.h>

#include <cctype>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <optional>
#include <regex>
#include <set>
#include <string_view>
#include <system_error>

#include "core/checked_math.h"
#include "core/error_text.h"

namespace vmoe {

namespace {

namespace pb = google::protobuf;

// ---------------------------------------------------------------------------------------------
// Parsing

// Keeps the first error only: the parser stops there and later messages would be noise.
class FirstErrorCollector : public pb::io::ErrorCollector {
 public:
  void AddError(int line, pb::io::ColumnNumber column, const std::string& message) override {
    if (has_error_) return;
    has_error_ = true;
    line_ = line;
    column_ = column;
    message_ = message;
  }
  // Warnings (e.g. a deprecated field) do not stop a run.
  void AddWarning(int, pb::io::ColumnNumber, const std::string&) override {}

  bool has_error() const { return has_error_; }
  int line() const { return line_; }
  int column() const { return column_; }
  const std::string& message() const { return message_; }

 private:
  bool has_error_ = false;
  int line_ = 0;
  int column_ = 0;
  std::string message_;
};

// Byte offset of a tokenizer position (0-based line and column; the tokenizer advances tabs to
// the next multiple of 8 columns).
size_t offset_of(const std::string& text, int line, int column) {
  size_t pos = 0;
  for (int l = 0; l < line && pos < text.size(); ++pos) {
    if (text[pos] == '\n') ++l;
  }
  int col = 0;
  while (pos < text.size() && text[pos] != '\n' && col < column) {
    col = text[pos] == '\t' ? col + 8 - col % 8 : col + 1;
    ++pos;
  }
  return pos;
}

// The parser reports some errors at the token after the offending one; when `token` ends just
// before `offset` (whitespace between), returns its start so the error points at it.
size_t start_of_token_before(const std::string& text, size_t offset, const std::string& token) {
  size_t end = offset;
  while (end > 0 && std::isspace(static_cast<unsigned char>(text[end - 1])))
    --end;
  if (!token.empty() && end >= token.size() &&
      text.compare(end - token.size(), token.size(), token) == 0) {
    return end - token.size();
  }
  return offset;
}

// The enum named by a field called `field_name` anywhere under `root`, if exactly one enum
// type has a field of that name (the parser's message gives the field name only).
const pb::EnumDescriptor* unique_enum_for_field(const pb::Descriptor* root,
                                                const std::string& field_name) {
  std::set<const pb::EnumDescriptor*> found;
  std::set<const pb::Descriptor*> seen;
  std::vector<const pb::Descriptor*> todo{root};
  while (!todo.empty()) {
    const pb::Descriptor* d = todo.back();
    todo.pop_back();
    if (!seen.insert(d).second) continue;
    for (int i = 0; i < d->field_count(); ++i) {
      const pb::FieldDescriptor* f = d->field(i);
      if (f->message_type() != nullptr) todo.push_back(f->message_type());
      if (f->enum_type() != nullptr && f->name() == field_name) found.insert(f->enum_type());
    }
  }
  return found.size() == 1 ? *found.begin() : nullptr;
}

std::string enum_value_names(const pb::EnumDescriptor* e) {
  std::string names;
  for (int i = 0; i < e->value_count(); ++i) {
    if (i > 0) names += ", ";
    names += e->value(i)->name();
  }
  return names;
}

// The parts between the literal pieces of `message` = pieces[0] X pieces[1] Y ... pieces[n],
// or nothing when it does not have that form. A captured part never contains the first
// character of the piece after it (the pieces after a capture start with a quote). A plain
// scan: std::regex recursion overflows the stack on a long token.
std::optional<std::vector<std::string>> split_message(const std::string& message,
                                                      const std::vector<std::string>& pieces) {
  if (message.compare(0, pieces[0].size(), pieces[0]) != 0) return std::nullopt;
  std::vector<std::string> parts;
  size_t at = pieces[0].size();
  for (size_t i = 1; i < pieces.size(); ++i) {
    const size_t end = message.find(pieces[i].front(), at);
    if (end == std::string::npos || message.compare(end, pieces[i].size(), pieces[i]) != 0)
      return std::nullopt;
    parts.push_back(message.substr(at, end - at));
    at = end + pieces[i].size();
  }
  if (at != message.size()) return std::nullopt;
  return parts;
}

// Rewrites the parser's error into "SOURCE:LINE:COL: message" (1-based), pointing at the
// offending token and wording the common errors in our terms. Echoed tokens are cut.
std::string located_error(const std::string& text, const std::string& source_name,
                          const FirstErrorCollector& error, const pb::Descriptor* root) {
  size_t offset = offset_of(text, error.line(), error.column());
  std::string message = error.message();
  if (auto m = split_message(message, {"Message type \"", "\" has no field named \"", "\"."})) {
    message = "unknown field " + quote_for_error((*m)[1]) + " in " + error_text((*m)[0]);
    offset = start_of_token_before(text, offset, (*m)[1]);
  } else if (auto e = split_message(
                 message, {"Unknown enumeration value of \"", "\" for field \"", "\"."})) {
    message =
        "unknown value " + quote_for_error((*e)[0]) + " for enum field " + quote_for_error((*e)[1]);
    if (const pb::EnumDescriptor* d = unique_enum_for_field(root, (*e)[1])) {
      message += " (expected one of " + enum_value_names(d) + ")";
    }
    offset = start_of_token_before(text, offset, (*e)[0]);
  } else if (auto d = split_message(message,
                                    {"Non-repeated field \"", "\" is specified multiple times."})) {
    message = "field " + quote_for_error((*d)[0]) + " is set more than once";
    offset = start_of_token_before(text, offset, (*d)[0]);
  } else {
    message = error_text(message, 400);
    // "Expected identifier, got: " with nothing after it means the text ended early.
    if (message.size() >= 5 && message.compare(message.size() - 5, 5, "got: ") == 0) {
      message += "end of file";
    }
    if (!message.empty() && message.back() == '.') message.pop_back();
    if (!message.empty()) {
      message[0] = static_cast<char>(std::tolower(static_cast<unsigned char>(message[0])));
    }
  }
  for (char& c : message) {
    if (c == '\n' || c == '\r') c = ' ';
  }

  size_t line_start = 0;
  int line = 1;
  for (size_t i = 0; i < offset && i < text.size(); ++i) {
    if (text[i] == '\n') {
      ++line;
      line_start = i + 1;
    }
  }
  const size_t column = offset - line_start + 1;
  return source_name + ":" + std::to_string(line) + ":" + std::to_string(column) + ": " + message;
}

std::string read_text_file(const std::string& path) {
  errno = 0;
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> file(std::fopen(path.c_str(), "rb"),
                                                       &std::fclose);
  if (!file) {
    throw ConfigError("cannot read config file " + quote_for_error(path) + ": " +
                      std::strerror(errno));
  }
  std::string text;
  char buffer[1 << 14];
  size_t n = 0;
  while ((n = std::fread(buffer, 1, sizeof(buffer), file.get())) > 0)
    text.append(buffer, n);
  if (std::ferror(file.get())) {
    throw ConfigError("cannot read config file " + quote_for_error(path) + ": " +
                      std::strerror(errno));
  }
  return text;
}

// ---------------------------------------------------------------------------------------------
// Overrides

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front())))
    s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back())))
    s.remove_suffix(1);
  return s;
}

bool equals_ignoring_case(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(a[i])) !=
        std::tolower(static_cast<unsigned char>(b[i]))) {
      return false;
    }
  }
  return true;
}

enum class NumberStatus { kOk, kSyntax, kRange };

// Whole-string number parse; a leading '+' is allowed (from_chars itself rejects it).
template <class T>
NumberStatus parse_number(std::string_view s, T& out) {
  s = trim(s);
  if (s.size() > 1 && s.front() == '+' && s[1] != '-') s.remove_prefix(1);
  if (s.empty()) return NumberStatus::kSyntax;
  const char* end = s.data() + s.size();
  const auto [ptr, ec] = std::from_chars(s.data(), end, out);
  if (ec == std::errc::result_out_of_range) return NumberStatus::kRange;
  if (ec != std::errc() || ptr != end) return NumberStatus::kSyntax;
  return NumberStatus::kOk;
}

// Where the override being applied points, for error messages.
struct OverrideTarget {
  const std::string& assignment;  // the whole "path=value"
  const std::string& path;        // "model.hidden_size"

  [[noreturn]] void fail(const std::string& what) const {
    throw ConfigError("--set " + error_text(assignment) + ": " + what);
  }
};

template <class T>
T number_or_fail(std::string_view text, const OverrideTarget& target, const char* expected,
                 const char* type_name) {
  T value{};
  switch (parse_number(text, value)) {
    case NumberStatus::kOk:
      return value;
    case NumberStatus::kRange:
      target.fail("value out of range for " + target.path + " (" + type_name + ")");
    case NumberStatus::kSyntax:
      break;
  }
  target.fail(std::string("expected ") + expected + " for " + target.path);
}

// Sets (singular) or appends (repeated) one value of a scalar field.
void set_scalar(pb::Message& message, const pb::FieldDescriptor* field, std::string_view text,
                const OverrideTarget& target) {
  const pb::Reflection* r = message.GetReflection();
  const bool add = field->is_repeated();
  switch (field->cpp_type()) {
    case pb::FieldDescriptor::CPPTYPE_INT32: {
      const auto v = number_or_fail<int32_t>(text, target, "an integer", "int32");
      add ? r->AddInt32(&message, field, v) : r->SetInt32(&message, field, v);
      return;
    }
    case pb::FieldDescriptor::CPPTYPE_INT64: {
      const auto v = number_or_fail<int64_t>(text, target, "an integer", "int64");
      add ? r->AddInt64(&message, field, v) : r->SetInt64(&message, field, v);
      return;
    }
    case pb::FieldDescriptor::CPPTYPE_UINT32: {
      const auto v = number_or_fail<uint32_t>(text, target, "a non-negative integer", "uint32");
      add ? r->AddUInt32(&message, field, v) : r->SetUInt32(&message, field, v);
      return;
    }
    case pb::FieldDescriptor::CPPTYPE_UINT64: {
      const auto v = number_or_fail<uint64_t>(text, target, "a non-negative integer", "uint64");
      add ? r->AddUInt64(&message, field, v) : r->SetUInt64(&message, field, v);
      return;
    }
    case pb::FieldDescriptor::CPPTYPE_FLOAT: {
      const auto v = number_or_fail<float>(text, target, "a number", "float");
      add ? r->AddFloat(&message, field, v) : r->SetFloat(&message, field, v);
      return;
    }
    case pb::FieldDescriptor::CPPTYPE_DOUBLE: {
      const auto v = number_or_fail<double>(text, target, "a number", "double");
      add ? r->AddDouble(&message, field, v) : r->SetDouble(&message, field, v);
      return;
    }
    case pb::FieldDescriptor::CPPTYPE_BOOL: {
      const std::string_view t = trim(text);
      bool v = false;
      if (equals_ignoring_case(t, "true") || t == "1") {
        v = true;
      } else if (!(equals_ignoring_case(t, "false") || t == "0")) {
        target.fail("expected true or false for " + target.path);
      }
      add ? r->AddBool(&message, field, v) : r->SetBool(&message, field, v);
      return;
    }
    case pb::FieldDescriptor::CPPTYPE_ENUM: {
      const std::string_view t = trim(text);
      const pb::EnumDescriptor* e = field->enum_type();
      const pb::EnumValueDescriptor* v = nullptr;
      for (int i = 0; i < e->value_count() && v == nullptr; ++i) {
        if (equals_ignoring_case(t, e->value(i)->name())) v = e->value(i);
      }
      if (v == nullptr) {
        target.fail("expected one of " + enum_value_names(e) + " for " + target.path);
      }
      add ? r->AddEnum(&message, field, v) : r->SetEnum(&message, field, v);
      return;
    }
    case pb::FieldDescriptor::CPPTYPE_STRING: {
      // Shells usually strip quotes already; a pair that survives is text-format habit.
      std::string_view t = text;
      if (t.size() >= 2 && t.front() == '"' && t.back() == '"') t = t.substr(1, t.size() - 2);
      add ? r->AddString(&message, field, std::string(t))
          : r->SetString(&message, field, std::string(t));
      return;
    }
    case pb::FieldDescriptor::CPPTYPE_MESSAGE:
      break;
  }
  target.fail(target.path + " is a message; set one of its fields instead");
}

// ---------------------------------------------------------------------------------------------
// Validation

// Shortest text that reads back to the same value (1e-05, 0.5, 128, nan, inf).
template <class T>
std::string num(T v) {
  char buffer[64];
  const auto [ptr, ec] = std::to_chars(buffer, buffer + sizeof(buffer), v);
  return ec == std::errc() ? std::string(buffer, ptr) : std::string("?");
}

[[noreturn]] void invalid(const std::string& message) {
  throw ConfigError(message);
}

std::string range_text(const FloatRange& r) {
  return std::string(r.lo_open ? "(" : "[") + num(r.lo) + ", " + num(r.hi) +
         (r.hi_open ? ")" : "]");
}

bool in_range(double v, const FloatRange& r) {
  return std::isfinite(v) && (r.lo_open ? v > r.lo : v >= r.lo) &&
         (r.hi_open ? v < r.hi : v <= r.hi);
}

// The check of every floating-point field: finite and in `range`; the value is printed in its
// own type (a float field's 0.1 reads "0.1", not its double widening).
template <class T>
void require_float(T v, const std::string& path, const FloatRange& range) {
  if (!in_range(double(v), range))
    invalid(path + " must be in " + range_text(range) + " (got " + num(v) + ")");
}

// The check of every integer field: in [lo, hi] (physically sensible bounds, documented in
// configs/vmoe.proto), so that products of sizes cannot overflow downstream.
void require_int(int64_t v, const std::string& path, int64_t lo, int64_t hi) {
  if (v < lo || v > hi) {
    invalid(path + " must be in [" + num(lo) + ", " + num(hi) + "] (got " + num(v) + ")");
  }
}

void require_non_empty(const std::string& v, const char* path) {
  if (v.empty()) invalid(std::string(path) + " must not be empty");
}

void require_divisible(int64_t a, int64_t b, const char* a_path, const char* b_path) {
  if (a % b != 0) {
    invalid(std::string(a_path) + " must be divisible by " + b_path + " (got " + num(a) + " and " +
            num(b) + ")");
  }
}

// Ranges shared by several fields.
constexpr FloatRange kUnitOpen{0, 1, false, true};     // [0, 1): dropout, decay rates
constexpr FloatRange kWeight{0, 1000};                 // loss weights, noise, mixup
constexpr FloatRange kCapacityFactor{0, 65536, true};  // (0, 65536]
constexpr int64_t kMaxSteps = 1'000'000'000'000;       // 1e12 steps
constexpr int64_t kMaxExamples = int64_t(1) << 40;
constexpr int64_t kMaxBatch = int64_t(1) << 20;
constexpr int64_t kMaxTokensPerImage = int64_t(1) << 20;
constexpr int64_t kMaxTokensPerGroup = int64_t(1) << 24;

// The fields that one router uses and another does not (configs/vmoe.proto MoeConfig.Router):
// set for a router that ignores them, they are errors rather than silently unused.
void validate_router(const config::MoeConfig& e) {
  using R = config::MoeConfig;
  const std::string name = R::Router_Name(e.router());
  auto not_for = [&](bool set, const char* field, const char* why) {
    if (set) invalid("model.moe." + std::string(field) + " does not apply to router " + name + why);
  };
  if (e.has_slots_per_expert()) {
    require_int(e.slots_per_expert(), "model.moe.slots_per_expert", 1, 65536);
    not_for(e.router() != R::SOFT, "slots_per_expert", " (only SOFT has slots)");
  }
  if (e.dropless()) {
    not_for(e.router() != R::TOP_K, "dropless", " (only TOP_K drops choices)");
    const char* why = " with dropless: true (no choice is dropped)";
    not_for(e.has_capacity_factor(), "capacity_factor", why);
    not_for(e.has_eval_capacity_factor(), "eval_capacity_factor", why);
    not_for(e.has_batch_priority(), "batch_priority", why);
    not_for(e.has_eval_batch_priority(), "eval_batch_priority", why);
  }
  if (e.router() == R::TOP_K) return;
  const char* no_k = " (experts, not tokens, choose; or every slot sees every token)";
  not_for(e.has_k(), "k", no_k);
  const char* no_order = " (no token order to prioritise)";
  not_for(e.has_batch_priority(), "batch_priority", no_order);
  not_for(e.has_eval_batch_priority(), "eval_batch_priority", no_order);
  const char* no_loss = " (it has no auxiliary loss)";
  not_for(e.has_importance_loss_weight(), "importance_loss_weight", no_loss);
  not_for(e.has_load_loss_weight(), "load_loss_weight", no_loss);
  not_for(e.has_gshard_loss_weight(), "gshard_loss_weight", no_loss);
  if (e.router() == R::SOFT) {
    not_for(e.has_eval_capacity_factor(), "eval_capacity_factor",
            " (slots are parameters: their number is fixed by training)");
    not_for(e.has_images_per_group(), "images_per_group", " (slots mix the tokens of one image)");
  }
}

void validate_moe(const config::MoeConfig& e, const config::ModelConfig& m) {
  require_int(e.num_experts(), "model.moe.num_experts", 1, 65536);
  require_int(e.k(), "model.moe.k", 1, 65536);
  if (e.k() > e.num_experts()) {
    invalid("model.moe.k must be <= model.moe.num_experts (got " + num(e.k()) + " and " +
            num(e.num_experts()) + ")");
  }
  require_float(e.capacity_factor(), "model.moe.capacity_factor", kCapacityFactor);
  if (e.has_eval_capacity_factor())
    require_float(e.eval_capacity_factor(), "model.moe.eval_capacity_factor", kCapacityFactor);
  require_int(e.images_per_group(), "model.moe.images_per_group", 1, 65536);
  require_float(e.noise_std(), "model.moe.noise_std", kWeight);
  require_float(e.importance_loss_weight(), "model.moe.importance_loss_weight", kWeight);
  require_float(e.load_loss_weight(), "model.moe.load_loss_weight", kWeight);
  require_float(e.gshard_loss_weight(), "model.moe.gshard_loss_weight", kWeight);
  const int placements = int(e.has_every_n()) + int(e.has_last_n()) + int(e.blocks_size() > 0);
  if (placements > 1) invalid("model.moe: set only one of every_n, last_n, blocks");
  if (e.has_last_n()) require_int(e.last_n(), "model.moe.last_n", 1, 1024);
  require_int(e.exchange_chunks(), "model.moe.exchange_chunks", 0, 64);
  if (e.blocks_size() == 0 && !e.has_last_n())
    require_int(e.every_n(), "model.moe.every_n", 1, 1024);
  for (int32_t b : e.blocks()) {
    if (b < 0 || b >= m.num_layers()) {
      invalid("model.moe.blocks names block " + num(b) + ", outside the " + num(m.num_layers()) +
              " blocks of the model (0-based)");
    }
  }
  validate_router(e);
  const int64_t side = m.image_size() / m.patch_size();
  const int64_t tokens = checked_mul(side, side, "model tokens per image") + 1;
  const int64_t group = checked_mul(moe_group_images(e), tokens, "model.moe tokens per group");
  if (group > kMaxTokensPerGroup) {
    invalid("model.moe.images_per_group makes routing groups of " + num(group) +
            " tokens, more than " + num(kMaxTokensPerGroup) + " (got " + num(e.images_per_group()) +
            " images of " + num(tokens) + " tokens)");
  }
}

void validate_model(const config::ModelConfig& m) {
  require_int(m.image_size(), "model.image_size", 1, 8192);
  require_int(m.channels(), "model.channels", 1, 64);
  require_int(m.patch_size(), "model.patch_size", 1, 8192);
  require_int(m.hidden_size(), "model.hidden_size", 1, 65536);
  require_int(m.mlp_dim(), "model.mlp_dim", 1, 262144);
  require_int(m.num_heads(), "model.num_heads", 1, 65536);
  require_int(m.num_layers(), "model.num_layers", 1, 1024);
  require_int(m.num_classes(), "model.num_classes", 1, 16777216);
  require_divisible(m.image_size(), m.patch_size(), "model.image_size", "model.patch_size");
  require_divisible(m.hidden_size(), m.num_heads(), "model.hidden_size", "model.num_heads");
  const int64_t side = m.image_size() / m.patch_size();
  const int64_t tokens = checked_mul(side, side, "model tokens per image") + 1;
  if (tokens > kMaxTokensPerImage) {
    invalid("model.patch_size gives " + num(tokens) + " tokens per image, more than " +
            num(kMaxTokensPerImage) + " (got image_size " + num(m.image_size()) +
            " and patch_size " + num(m.patch_size()) + ")");
  }
  require_int(m.representation_size(), "model.representation_size", 0, 65536);
  require_float(m.dropout_rate(), "model.dropout_rate", kUnitOpen);
  require_float(m.attention_dropout_rate(), "model.attention_dropout_rate", kUnitOpen);
  require_float(m.layer_norm_eps(), "model.layer_norm_eps", {0, 1, true});
  if (m.has_head_bias_init())
    require_float(m.head_bias_init(), "model.head_bias_init", {-10000, 10000});
  if (m.dtype() != "f32" && m.dtype() != "f64") {
    invalid("model.dtype must be one of f32, f64 (got '" + m.dtype().substr(0, 32) + "')" +
            (m.dtype() == "bf16" ? ": parameters stay f32 (master weights); for bf16 compute set "
                                   "train.precision: BF16"
                                 : ""));
  }
  if (m.has_moe()) validate_moe(m.moe(), m);
}

void validate_data(const config::DataConfig& d, const config::ModelConfig& m) {
  require_non_empty(d.dir(), "data.dir");
  require_non_empty(d.train_images(), "data.train_images");
  require_non_empty(d.train_labels(), "data.train_labels");
  require_non_empty(d.test_images(), "data.test_images");
  require_non_empty(d.test_labels(), "data.test_labels");
  if (d.dataset() == config::DataConfig::IMAGE_FOLDER) {
    require_non_empty(d.train_folder(), "data.train_folder");
    require_non_empty(d.test_folder(), "data.test_folder");
  }
  if (d.dataset() == config::DataConfig::HDF5_SHARDS) {
    require_non_empty(d.train_shard(), "data.train_shard");
    require_non_empty(d.test_shard(), "data.test_shard");
  }
  require_int(d.batch_size(), "data.batch_size", 1, kMaxBatch);
  require_int(d.eval_batch_size(), "data.eval_batch_size", 1, kMaxBatch);
  require_int(d.crop_padding(), "data.crop_padding", 0, m.image_size());
  require_float(d.mean(), "data.mean", {-1000, 1000});
  require_float(d.std(), "data.std", {1e-6, 1000});
  require_int(d.num_train_examples(), "data.num_train_examples", 0, kMaxExamples);
  require_int(d.loader_threads(), "data.loader_threads", 1, kMaxThreads);
  require_int(d.prefetch_batches(), "data.prefetch_batches", 1, 1024);
  require_float(d.inception_area_min(), "data.inception_area_min", {0, 1, true});
  require_float(d.inception_area_max(), "data.inception_area_max",
                {double(d.inception_area_min()), 1});
  if (d.inception_crop() && d.crop_padding() > 0) {
    invalid("data.inception_crop and data.crop_padding cannot both be on (got crop_padding " +
            num(d.crop_padding()) + ")");
  }
  require_float(d.mixup_alpha(), "data.mixup_alpha", kWeight);
  // The kept classes become the model's classes 0..n-1 (ids above the dataset's class count are
  // checked when the dataset is opened).
  if (d.classes_size() > 0) {
    if (m.num_classes() != d.classes_size()) {
      invalid("data.classes keeps " + num(d.classes_size()) + " classes but model.num_classes is " +
              num(m.num_classes()) + " (the kept classes are the model's classes)");
    }
    std::set<int32_t> seen;
    for (int32_t id : d.classes()) {
      if (id < 0) invalid("data.classes: class id " + num(id) + " is negative");
      if (!seen.insert(id).second) invalid("data.classes names class " + num(id) + " twice");
    }
  }
}

void validate_optimizer(const config::OptimizerConfig& o) {
  require_float(o.learning_rate(), "optimizer.learning_rate", {0, 1000, true});
  require_float(o.b1(), "optimizer.b1", kUnitOpen);
  require_float(o.b2(), "optimizer.b2", kUnitOpen);
  require_float(o.eps(), "optimizer.eps", {0, 1, true});
  require_float(o.weight_decay(), "optimizer.weight_decay", {0, 1000});
  require_float(o.momentum(), "optimizer.momentum", kUnitOpen);
  require_float(o.grad_clip_norm(), "optimizer.grad_clip_norm", {0, 1e9});
}

void validate_schedule(const config::ScheduleConfig& s, const config::OptimizerConfig& o) {
  require_int(s.warmup_steps(), "schedule.warmup_steps", 0, kMaxSteps);
  require_float(s.end_learning_rate(), "schedule.end_learning_rate", {0, 1000});
  // A decay that ends above the peak would be a rise.
  if (s.kind() != config::ScheduleConfig::CONSTANT &&
      !(s.end_learning_rate() <= o.learning_rate())) {
    invalid("schedule.end_learning_rate must be <= optimizer.learning_rate (got " +
            num(s.end_learning_rate()) + " and " + num(o.learning_rate()) + ")");
  }
}

void validate_train(const config::TrainConfig& t) {
  require_int(t.num_steps(), "train.num_steps", 0, kMaxSteps);
  require_float(t.num_epochs(), "train.num_epochs", {0, 1e6});
  if (t.num_steps() == 0 && !(t.num_epochs() > 0)) {
    invalid("train.num_steps or train.num_epochs must be > 0 (got " + num(t.num_steps()) + " and " +
            num(t.num_epochs()) + ")");
  }
  require_int(t.log_every_steps(), "train.log_every_steps", 1, kMaxSteps);
  require_int(t.eval_every_steps(), "train.eval_every_steps", 0, kMaxSteps);
  require_int(t.threads(), "train.threads", 0, kMaxThreads);
}

// Gradient accumulation: micro-batches of whole images and, for a V-MoE, whole routing groups.
// Checked here for one rank; `vmoe train` checks each rank's share again (train_step.h).
void validate_microbatches(const config::Config& c) {
  const int64_t m = c.train().microbatches();
  require_int(m, "train.microbatches", 1, kMaxBatch);
  if (m == 1) return;  // the batch itself: its split is checked where the rank count is known
  const int64_t batch = c.data().batch_size();
  const int64_t group = c.model().has_moe() ? moe_group_images(c.model().moe()) : 1;
  if (batch % m != 0) {
    invalid("train.microbatches must divide data.batch_size (got " + num(m) + " and " + num(batch) +
            ")");
  }
  if ((batch / m) % group != 0) {
    invalid("train.microbatches " + num(m) + " splits data.batch_size " + num(batch) +
            " into micro-batches of " + num(batch / m) + " images, not whole routing groups of " +
            num(group) + " (model.moe.images_per_group)");
  }
}

// Init rules: targets that compile, sources where the transformation needs one.
void validate_init(const config::InitConfig& init, const config::ModelConfig& m) {
  if (init.preset() == config::InitConfig::UPCYCLE && !m.has_moe())
    invalid("init.preset UPCYCLE needs model.moe (a V-MoE to upcycle the dense model into)");
  for (int i = 0; i < init.rules_size(); ++i) {
    const config::InitRule& r = init.rules(i);
    const std::string path = "init.rules[" + num(i) + "]";
    require_non_empty(r.target(), (path + ".target").c_str());
    // libstdc++ compiles a regular expression recursively: a bounded length bounds the stack.
    if (r.target().size() > 1000) {
      invalid(path + ".target must be at most 1000 characters (got " + num(r.target().size()) +
              ")");
    }
    try {
      std::regex(r.target(), std::regex::ECMAScript);
    } catch (const std::regex_error& e) {
      invalid(path + ".target is not a valid regular expression (got '" +
              error_text(r.target(), 80) + "': " + e.what() + ")");
    }
    if (r.transform() == config::InitRule::STACK && r.source().empty())
      invalid(path + ".source must list the stacked tensors (comma-separated) for STACK");
  }
}

}  // namespace

config::Config parse_config_text(const std::string& text, const std::string& source_name,
                                 const std::vector<std::string>& overrides) {
  config::Config config;
  pb::TextFormat::Parser parser;
  FirstErrorCollector errors;
  parser.RecordErrorsTo(&errors);
  if (!parser.ParseFromString(text, &config)) {
    if (!errors.has_error()) throw ConfigError(source_name + ": cannot parse config");
    throw ConfigError(located_error(text, source_name, errors, config.GetDescriptor()));
  }
  for (const std::string& assignment : overrides)
    apply_override(config, assignment);
  validate_config(config);
  return config;
}

config::Config load_config(const std::string& path, const std::vector<std::string>& overrides) {
  return parse_config_text(read_text_file(path), path, overrides);
}

void apply_override(pb::Message& message, const std::string& assignment) {
  const size_t eq = assignment.find('=');
  if (eq == std::string::npos || eq == 0) {
    throw ConfigError("--set " + error_text(assignment) + ": expected path.to.field=value");
  }
  const std::string path = assignment.substr(0, eq);
  const std::string_view value = std::string_view(assignment).substr(eq + 1);
  const OverrideTarget target{assignment, path};

  pb::Message* current = &message;
  size_t start = 0;
  while (true) {
    const size_t dot = path.find('.', start);
    const std::string segment = path.substr(start, dot == std::string::npos ? dot : dot - start);
    const pb::Descriptor* type = current->GetDescriptor();
    const pb::FieldDescriptor* field = type->FindFieldByName(segment);
    if (field == nullptr) {
      target.fail("no field '" + segment + "' in " + type->full_name());
    }
    const std::string so_far = path.substr(0, dot);
    if (dot == std::string::npos) {
      if (field->cpp_type() == pb::FieldDescriptor::CPPTYPE_MESSAGE) {
        target.fail(so_far + " is a message; set one of its fields (" + so_far + ".FIELD=VALUE)");
      }
      if (!field->is_repeated()) {
        set_scalar(*current, field, value, target);
        return;
      }
      // A list replaces the old elements; an empty value leaves the list empty.
      current->GetReflection()->ClearField(current, field);
      if (value.empty()) return;
      size_t from = 0;
      while (true) {
        const size_t comma = value.find(',', from);
        set_scalar(*current, field, value.substr(from, comma - from), target);
        if (comma == std::string_view::npos) return;
        from = comma + 1;
      }
    }
    if (field->cpp_type() != pb::FieldDescriptor::CPPTYPE_MESSAGE) {
      target.fail(so_far + " is not a message, so it has no field '" +
                  path.substr(dot + 1, path.find('.', dot + 1) - dot - 1) + "'");
    }
    if (field->is_repeated()) {
      target.fail(so_far + " is a repeated message; --set cannot address its elements");
    }
    current = current->GetReflection()->MutableMessage(current, field);
    start = dot + 1;
  }
}

int64_t moe_group_images(const config::MoeConfig& moe) {
  return moe.router() == config::MoeConfig::SOFT ? 1 : moe.images_per_group();
}

void validate_config(const config::Config& config) {
  try {
    validate_model(config.model());
    validate_data(config.data(), config.model());
    validate_optimizer(config.optimizer());
    validate_schedule(config.schedule(), config.optimizer());
    validate_train(config.train());
    validate_microbatches(config);
    validate_init(config.init(), config.model());
  } catch (const SizeOverflow& e) {
    throw ConfigError(e.what());
  }
  require_int(config.eval().num_examples(), "eval.num_examples", 0, kMaxExamples);
  require_float(config.parallel().gradient_bucket_mb(), "parallel.gradient_bucket_mb",
                {0, 65536, true});
  require_int(config.checkpoint().every_steps(), "checkpoint.every_steps", 0, kMaxSteps);
  require_float(config.checkpoint().every_minutes(), "checkpoint.every_minutes", {0, 1e6});
  require_int(config.checkpoint().keep(), "checkpoint.keep", 0, 1000000);
  require_non_empty(config.output().metrics_file(), "output.metrics_file");
  require_non_empty(config.output().weights_file(), "output.weights_file");
}

void check_float(double value, const std::string& name, const FloatRange& range) {
  require_float(value, name, range);
}

int64_t check_int(int64_t value, const std::string& name, int64_t lo, int64_t hi) {
  require_int(value, name, lo, hi);
  return value;
}

std::string config_to_text(const config::Config& config) {
  pb::TextFormat::Printer printer;
  printer.SetUseUtf8StringEscaping(true);
  std::string text;
  if (!printer.PrintToString(config, &text)) throw ConfigError("cannot print config");
  return "# proto-file: configs/vmoe.proto\n# proto-message: vmoe.config.Config\n\n" + text;
}

}  // namespace vmoe
