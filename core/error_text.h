// Text from outside (paths, config values, file contents, CLI arguments) made safe to echo in a
// one-line error message: control characters and bytes that are not UTF-8 shown as escapes
// (\n, \t, \r, \xHH), and long text cut in the middle with its length, so that an error line
// never spans several lines, runs commands in a terminal, or repeats megabytes of input.
#pragma once
#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace vmoe {

// How many characters of one echoed token an error message keeps by default.
inline constexpr size_t kErrorTokenChars = 200;

namespace detail {

// Length of the valid UTF-8 sequence at text[at] (1 to 4), or 0 when the bytes there are not
// one (a stray continuation byte, an overlong form, a surrogate, a truncated sequence).
inline size_t utf8_sequence_length(std::string_view text, size_t at) {
  const auto byte = [&](size_t i) { return static_cast<unsigned char>(text[i]); };
  const unsigned char b0 = byte(at);
  if (b0 < 0x80) return 1;
  size_t n = 0;
  unsigned char lo = 0x80, hi = 0xbf;  // range of the second byte
  if (b0 >= 0xc2 && b0 <= 0xdf) {
    n = 2;
  } else if (b0 >= 0xe0 && b0 <= 0xef) {
    n = 3;
    if (b0 == 0xe0) lo = 0xa0;
    if (b0 == 0xed) hi = 0x9f;
  } else if (b0 >= 0xf0 && b0 <= 0xf4) {
    n = 4;
    if (b0 == 0xf0) lo = 0x90;
    if (b0 == 0xf4) hi = 0x8f;
  } else {
    return 0;
  }
  if (at + n > text.size()) return 0;
  if (byte(at + 1) < lo || byte(at + 1) > hi) return 0;
  for (size_t i = 2; i < n; ++i)
    if (byte(at + i) < 0x80 || byte(at + i) > 0xbf) return 0;
  return n;
}

// `text` as printable units: one valid UTF-8 character or one escape each.
inline std::vector<std::string> printable_units(std::string_view text) {
  static const char* hex = "0123456789abcdef";
  std::vector<std::string> units;
  for (size_t at = 0; at < text.size();) {
    const unsigned char c = static_cast<unsigned char>(text[at]);
    const size_t n = utf8_sequence_length(text, at);
    if (c == '\n') {
      units.emplace_back("\\n");
    } else if (c == '\t') {
      units.emplace_back("\\t");
    } else if (c == '\r') {
      units.emplace_back("\\r");
    } else if (n == 0 || c < 0x20 || c == 0x7f) {
      std::string escape = "\\x";
      escape += hex[c >> 4];
      escape += hex[c & 15];
      units.push_back(std::move(escape));
    } else {
      units.emplace_back(text.substr(at, n));
      at += n;
      continue;
    }
    ++at;
  }
  return units;
}

// `text` escaped and, when longer than `max_chars` characters, cut to its head and tail around
// "..."; `cut` says whether it was cut.
inline std::string shorten_for_error(std::string_view text, size_t max_chars, bool& cut) {
  if (max_chars < 8) max_chars = 8;
  // Decode at most 4 bytes per kept character from each end: huge input costs nothing.
  const size_t window = 4 * max_chars;
  const bool long_text = text.size() > 2 * window;
  std::vector<std::string> head = printable_units(long_text ? text.substr(0, window) : text);
  std::string out;
  cut = long_text || head.size() > max_chars;
  if (!cut) {
    for (const std::string& u : head)
      out += u;
    return out;
  }
  const std::vector<std::string> tail =
      long_text ? printable_units(text.substr(text.size() - window)) : head;
  const size_t keep_head = max_chars * 2 / 3, keep_tail = max_chars - keep_head;
  for (size_t i = 0; i < keep_head && i < head.size(); ++i)
    out += head[i];
  out += "...";
  for (size_t i = tail.size() > keep_tail ? tail.size() - keep_tail : 0; i < tail.size(); ++i)
    out += tail[i];
  return out;
}

}  // namespace detail

// `text` for an error line, unquoted: control characters and invalid UTF-8 bytes escaped; when
// longer than `max_chars` characters, its head and tail around "..." and the full length, e.g.
// "aaaa...zz (5000 bytes)".
inline std::string error_text(std::string_view text, size_t max_chars = kErrorTokenChars) {
  bool cut = false;
  std::string out = detail::shorten_for_error(text, max_chars, cut);
  if (cut) {
    out += " (";
    out += std::to_string(text.size());
    out += " bytes)";
  }
  return out;
}

// error_text in single quotes, the length outside them: 'aaaa...zz' (5000 bytes).
inline std::string quote_for_error(std::string_view text, size_t max_chars = kErrorTokenChars) {
  bool cut = false;
  std::string out(1, '\'');
  out += detail::shorten_for_error(text, max_chars, cut);
  out += '\'';
  if (cut) {
    out += " (";
    out += std::to_string(text.size());
    out += " bytes)";
  }
  return out;
}

}  // namespace vmoe
