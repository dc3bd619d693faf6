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
#include <regex>
#include <set>
#include <string_view>
#include <system_error>

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

// Rewrites the parser's error into "SOURCE:LINE:COL: message" (1-based), pointing at the
// offending token and wording the common errors in our terms.
std::string located_error(const std::string& text, const std::string& source_name,
                          const FirstErrorCollector& error, const pb::Descriptor* root) {
  static const std::regex kUnknownField(
      R"re(^Message type "([^"]+)" has no field named "([^"]+)"\.$)re");
  static const std::regex kUnknownEnum(
      R"re(^Unknown enumeration value of "([^"]*)" for field "([^"]+)"\.$)re");
  static const std::regex kDuplicate(
      R"re(^Non-repeated field "([^"]+)" is specified multiple times\.$)re");

  size_t offset = offset_of(text, error.line(), error.column());
  std::string message = error.message();
  std::smatch m;
  if (std::regex_match(error.message(), m, kUnknownField)) {
    message = "unknown field '" + m[2].str() + "' in " + m[1].str();
    offset = start_of_token_before(text, offset, m[2].str());
  } else if (std::regex_match(error.message(), m, kUnknownEnum)) {
    message = "unknown value '" + m[1].str() + "' for enum field '" + m[2].str() + "'";
    if (const pb::EnumDescriptor* e = unique_enum_for_field(root, m[2].str())) {
      message += " (expected one of " + enum_value_names(e) + ")";
    }
    offset = start_of_token_before(text, offset, m[1].str());
  } else if (std::regex_match(error.message(), m, kDuplicate)) {
    message = "field '" + m[1].str() + "' is set more than once";
    offset = start_of_token_before(text, offset, m[1].str());
  } else {
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
    throw ConfigError("cannot read config file '" + path + "': " + std::strerror(errno));
  }
  std::string text;
  char buffer[1 << 14];
  size_t n = 0;
  while ((n = std::fread(buffer, 1, sizeof(buffer), file.get())) > 0)
    text.append(buffer, n);
  if (std::ferror(file.get())) {
    throw ConfigError("cannot read config file '" + path + "': " + std::strerror(errno));
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
    throw ConfigError("--set " + assignment + ": " + what);
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

// Shortest text that reads back to the same value (1e-05, 0.5, 128).
template <class T>
std::string num(T v) {
  char buffer[64];
  const auto [ptr, ec] = std::to_chars(buffer, buffer + sizeof(buffer), v);
  return ec == std::errc() ? std::string(buffer, ptr) : std::string("?");
}

[[noreturn]] void invalid(const std::string& message) {
  throw ConfigError(message);
}

template <class T>
void require_positive(T v, const char* path) {
  if (!(v > 0)) invalid(std::string(path) + " must be > 0 (got " + num(v) + ")");
}

template <class T>
void require_non_negative(T v, const char* path) {
  if (!(v >= 0)) invalid(std::string(path) + " must be >= 0 (got " + num(v) + ")");
}

// [0, 1): probabilities that must leave something (dropout) and decay rates.
void require_unit_interval(float v, const char* path) {
  if (!(v >= 0 && v < 1)) invalid(std::string(path) + " must be in [0, 1) (got " + num(v) + ")");
}

void require_finite(float v, const char* path) {
  if (!std::isfinite(v)) invalid(std::string(path) + " must be finite (got " + num(v) + ")");
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

void validate_moe(const config::MoeConfig& e, int32_t num_layers) {
  require_positive(e.num_experts(), "model.moe.num_experts");
  require_positive(e.k(), "model.moe.k");
  if (e.k() > e.num_experts()) {
    invalid("model.moe.k must be <= model.moe.num_experts (got " + num(e.k()) + " and " +
            num(e.num_experts()) + ")");
  }
  require_positive(e.capacity_factor(), "model.moe.capacity_factor");
  if (e.has_eval_capacity_factor())
    require_positive(e.eval_capacity_factor(), "model.moe.eval_capacity_factor");
  require_positive(e.images_per_group(), "model.moe.images_per_group");
  require_non_negative(e.noise_std(), "model.moe.noise_std");
  require_non_negative(e.importance_loss_weight(), "model.moe.importance_loss_weight");
  require_non_negative(e.load_loss_weight(), "model.moe.load_loss_weight");
  require_non_negative(e.gshard_loss_weight(), "model.moe.gshard_loss_weight");
  const int placements = int(e.has_every_n()) + int(e.has_last_n()) + int(e.blocks_size() > 0);
  if (placements > 1) invalid("model.moe: set only one of every_n, last_n, blocks");
  if (e.has_last_n()) require_positive(e.last_n(), "model.moe.last_n");
  if (e.exchange_chunks() < 0 || e.exchange_chunks() > 64)
    invalid("model.moe.exchange_chunks must be 0 (automatic) to 64, got " +
            num(e.exchange_chunks()));
  if (e.blocks_size() == 0 && !e.has_last_n()) require_positive(e.every_n(), "model.moe.every_n");
  for (int32_t b : e.blocks()) {
    if (b < 0 || b >= num_layers) {
      invalid("model.moe.blocks names block " + num(b) + ", outside the " + num(num_layers) +
              " blocks of the model (0-based)");
    }
  }
}

void validate_model(const config::ModelConfig& m) {
  require_positive(m.image_size(), "model.image_size");
  require_positive(m.channels(), "model.channels");
  require_positive(m.patch_size(), "model.patch_size");
  require_positive(m.hidden_size(), "model.hidden_size");
  require_positive(m.mlp_dim(), "model.mlp_dim");
  require_positive(m.num_heads(), "model.num_heads");
  require_positive(m.num_layers(), "model.num_layers");
  require_positive(m.num_classes(), "model.num_classes");
  require_divisible(m.image_size(), m.patch_size(), "model.image_size", "model.patch_size");
  require_divisible(m.hidden_size(), m.num_heads(), "model.hidden_size", "model.num_heads");
  require_non_negative(m.representation_size(), "model.representation_size");
  require_unit_interval(m.dropout_rate(), "model.dropout_rate");
  require_unit_interval(m.attention_dropout_rate(), "model.attention_dropout_rate");
  require_positive(m.layer_norm_eps(), "model.layer_norm_eps");
  if (m.has_head_bias_init()) require_finite(m.head_bias_init(), "model.head_bias_init");
  if (m.dtype() != "f32" && m.dtype() != "bf16" && m.dtype() != "f64") {
    invalid("model.dtype must be one of f32, bf16, f64 (got '" + m.dtype() + "')");
  }
  if (m.has_moe()) validate_moe(m.moe(), m.num_layers());
}

void validate_data(const config::DataConfig& d) {
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
  require_positive(d.batch_size(), "data.batch_size");
  require_positive(d.eval_batch_size(), "data.eval_batch_size");
  require_non_negative(d.crop_padding(), "data.crop_padding");
  require_finite(d.mean(), "data.mean");
  require_positive(d.std(), "data.std");
  require_finite(d.std(), "data.std");
  require_non_negative(d.num_train_examples(), "data.num_train_examples");
  require_positive(d.loader_threads(), "data.loader_threads");
  require_positive(d.prefetch_batches(), "data.prefetch_batches");
  if (!(d.inception_area_min() > 0 && d.inception_area_min() <= 1)) {
    invalid("data.inception_area_min must be in (0, 1] (got " + num(d.inception_area_min()) + ")");
  }
  if (!(d.inception_area_max() >= d.inception_area_min() && d.inception_area_max() <= 1)) {
    invalid("data.inception_area_max must be in [data.inception_area_min, 1] (got " +
            num(d.inception_area_max()) + " with min " + num(d.inception_area_min()) + ")");
  }
  if (d.inception_crop() && d.crop_padding() > 0) {
    invalid("data.inception_crop and data.crop_padding cannot both be on (got crop_padding " +
            num(d.crop_padding()) + ")");
  }
  require_non_negative(d.mixup_alpha(), "data.mixup_alpha");
  require_finite(d.mixup_alpha(), "data.mixup_alpha");
}

void validate_optimizer(const config::OptimizerConfig& o) {
  require_positive(o.learning_rate(), "optimizer.learning_rate");
  require_finite(o.learning_rate(), "optimizer.learning_rate");
  require_unit_interval(o.b1(), "optimizer.b1");
  require_unit_interval(o.b2(), "optimizer.b2");
  require_positive(o.eps(), "optimizer.eps");
  require_non_negative(o.weight_decay(), "optimizer.weight_decay");
  require_finite(o.weight_decay(), "optimizer.weight_decay");
  require_unit_interval(o.momentum(), "optimizer.momentum");
  require_non_negative(o.grad_clip_norm(), "optimizer.grad_clip_norm");
}

void validate_schedule(const config::ScheduleConfig& s, const config::OptimizerConfig& o) {
  require_non_negative(s.warmup_steps(), "schedule.warmup_steps");
  require_non_negative(s.end_learning_rate(), "schedule.end_learning_rate");
  // A decay that ends above the peak would be a rise.
  if (s.kind() != config::ScheduleConfig::CONSTANT &&
      !(s.end_learning_rate() <= o.learning_rate())) {
    invalid("schedule.end_learning_rate must be <= optimizer.learning_rate (got " +
            num(s.end_learning_rate()) + " and " + num(o.learning_rate()) + ")");
  }
}

void validate_train(const config::TrainConfig& t) {
  require_non_negative(t.num_steps(), "train.num_steps");
  require_non_negative(t.num_epochs(), "train.num_epochs");
  require_finite(t.num_epochs(), "train.num_epochs");
  if (t.num_steps() == 0 && !(t.num_epochs() > 0)) {
    invalid("train.num_steps or train.num_epochs must be > 0 (got " + num(t.num_steps()) + " and " +
            num(t.num_epochs()) + ")");
  }
  require_positive(t.log_every_steps(), "train.log_every_steps");
  require_non_negative(t.eval_every_steps(), "train.eval_every_steps");
  require_non_negative(t.threads(), "train.threads");
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
    throw ConfigError("--set " + assignment + ": expected path.to.field=value");
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

void validate_config(const config::Config& config) {
  validate_model(config.model());
  validate_data(config.data());
  validate_optimizer(config.optimizer());
  validate_schedule(config.schedule(), config.optimizer());
  validate_train(config.train());
  require_non_negative(config.eval().num_examples(), "eval.num_examples");
  require_positive(config.parallel().gradient_bucket_mb(), "parallel.gradient_bucket_mb");
  require_non_negative(config.checkpoint().every_steps(), "checkpoint.every_steps");
  require_non_negative(config.checkpoint().every_minutes(), "checkpoint.every_minutes");
  require_non_negative(config.checkpoint().keep(), "checkpoint.keep");
  require_non_empty(config.output().metrics_file(), "output.metrics_file");
  require_non_empty(config.output().weights_file(), "output.weights_file");
}

std::string config_to_text(const config::Config& config) {
  pb::TextFormat::Printer printer;
  printer.SetUseUtf8StringEscaping(true);
  std::string text;
  if (!printer.PrintToString(config, &text)) throw ConfigError("cannot print config");
  return "# proto-file: configs/vmoe.proto\n# proto-message: vmoe.config.Config\n\n" + text;
}

}  // namespace vmoe
