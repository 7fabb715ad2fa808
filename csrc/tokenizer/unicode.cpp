#include "csrc/tokenizer/unicode.h"

#include <algorithm>
#include <array>
#include <vector>

#include "csrc/tokenizer/unicode_tables.h"

namespace jarvis::unicode {
namespace {

uint8_t range_value(const CodePointRange* table, size_t count, uint32_t cp) {
  const CodePointRange* end = table + count;
  const CodePointRange* r =
      std::lower_bound(table, end, cp, [](const CodePointRange& x, uint32_t c) { return x.last < c; });
  return (r != end && r->first <= cp) ? r->value : 0;
}

// ASCII dominates real text; a table avoids the binary search for it.
std::array<uint8_t, 128> make_ascii_flags() {
  std::array<uint8_t, 128> flags{};
  for (uint32_t c = 0; c < 128; ++c) flags[c] = range_value(kCategoryRanges, kCategoryRangeCount, c);
  return flags;
}

// Code points of invalid input bytes are kept in the NFC buffer with this tag so they pass through.
constexpr uint32_t kRawByteTag = 0x80000000u;

constexpr uint32_t kHangulBase = 0xAC00, kHangulCount = 11172;
constexpr uint32_t kLBase = 0x1100, kVBase = 0x1161, kTBase = 0x11A7;
constexpr uint32_t kLCount = 19, kVCount = 21, kTCount = 28, kNCount = kVCount * kTCount;

uint8_t combining_class(uint32_t cp) {
  if (cp < 0x300 || (cp & kRawByteTag)) return 0;
  return range_value(kCombiningClasses, kCombiningClassCount, cp);
}

void decompose(uint32_t cp, std::vector<uint32_t>& out) {
  if (cp >= kHangulBase && cp < kHangulBase + kHangulCount) {
    uint32_t s = cp - kHangulBase;
    out.push_back(kLBase + s / kNCount);
    out.push_back(kVBase + (s % kNCount) / kTCount);
    if (s % kTCount) out.push_back(kTBase + s % kTCount);
    return;
  }
  if (cp >= 0xC0 && !(cp & kRawByteTag)) {
    const Decomposition* end = kDecompositions + kDecompositionCount;
    const Decomposition* d = std::lower_bound(
        kDecompositions, end, cp, [](const Decomposition& x, uint32_t c) { return x.code_point < c; });
    if (d != end && d->code_point == cp) {
      out.insert(out.end(), kDecompositionData + d->offset, kDecompositionData + d->offset + d->length);
      return;
    }
  }
  out.push_back(cp);
}

// Returns 0 when the pair has no primary composite.
uint32_t compose(uint32_t a, uint32_t b) {
  if (a >= kLBase && a < kLBase + kLCount && b >= kVBase && b < kVBase + kVCount) {
    return kHangulBase + ((a - kLBase) * kVCount + (b - kVBase)) * kTCount;
  }
  if (a >= kHangulBase && a < kHangulBase + kHangulCount && (a - kHangulBase) % kTCount == 0 &&
      b > kTBase && b < kTBase + kTCount) {
    return a + (b - kTBase);
  }
  const Composition* end = kCompositions + kCompositionCount;
  const Composition* c = std::lower_bound(kCompositions, end, std::make_pair(a, b),
                                          [](const Composition& x, const std::pair<uint32_t, uint32_t>& k) {
                                            return x.first < k.first || (x.first == k.first && x.second < k.second);
                                          });
  return (c != end && c->first == a && c->second == b) ? c->composite : 0;
}

}  // namespace

uint8_t category_flags(uint32_t cp) {
  static const std::array<uint8_t, 128> kAscii = make_ascii_flags();
  if (cp < 128) return kAscii[cp];
  if (cp == kInvalidCodePoint) return 0;
  return range_value(kCategoryRanges, kCategoryRangeCount, cp);
}

size_t utf8_sequence_length(uint8_t lead) {
  if (lead < 0xC0) return 1;
  if (lead < 0xE0) return 2;
  if (lead < 0xF0) return 3;
  if (lead < 0xF8) return 4;
  return 1;
}

size_t utf8_decode(std::string_view s, size_t pos, uint32_t* cp) {
  const auto* p = reinterpret_cast<const uint8_t*>(s.data()) + pos;
  size_t avail = s.size() - pos;
  uint8_t b0 = p[0];
  *cp = kInvalidCodePoint;
  if (b0 < 0x80) {
    *cp = b0;
    return 1;
  }
  size_t len = utf8_sequence_length(b0);
  if (len == 1 || b0 == 0xC0 || b0 == 0xC1 || b0 > 0xF4 || avail < len) return 1;
  uint32_t c = b0 & (0x7F >> len);
  for (size_t k = 1; k < len; ++k) {
    if ((p[k] & 0xC0) != 0x80) return 1;
    c = (c << 6) | (p[k] & 0x3F);
  }
  static constexpr uint32_t kMinForLength[5] = {0, 0, 0x80, 0x800, 0x10000};
  if (c < kMinForLength[len] || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF)) return 1;
  *cp = c;
  return len;
}

void utf8_append(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

size_t utf8_complete_prefix(std::string_view s) {
  // Only the last three bytes can belong to an unfinished sequence.
  size_t n = s.size();
  for (size_t back = 1; back <= 3 && back <= n; ++back) {
    auto b = static_cast<uint8_t>(s[n - back]);
    if ((b & 0xC0) == 0x80) continue;  // continuation byte: keep looking for the lead
    size_t want = utf8_sequence_length(b);
    return (b >= 0xC0 && want > back) ? n - back : n;
  }
  return n;
}

std::string nfc(std::string_view s) {
  // Below U+0300 nothing decomposes differently nor composes (checked by the generator's data:
  // the smallest second element of a composition is U+0300), and U+0300 starts with byte 0xCC.
  bool trivial = std::all_of(s.begin(), s.end(), [](char c) { return static_cast<uint8_t>(c) < 0xCC; });
  if (trivial) return std::string(s);

  std::vector<uint32_t> buf;
  buf.reserve(s.size());
  for (size_t pos = 0; pos < s.size();) {
    uint32_t cp;
    size_t len = utf8_decode(s, pos, &cp);
    if (cp == kInvalidCodePoint) {
      buf.push_back(kRawByteTag | static_cast<uint8_t>(s[pos]));
    } else {
      decompose(cp, buf);
    }
    pos += len;
  }
  // Canonical ordering: stable sort of each run of non-starters by combining class.
  for (size_t i = 1; i < buf.size(); ++i) {
    uint8_t cc = combining_class(buf[i]);
    if (cc == 0) continue;
    for (size_t j = i; j > 0; --j) {
      uint8_t prev = combining_class(buf[j - 1]);
      if (prev == 0 || prev <= cc) break;
      std::swap(buf[j - 1], buf[j]);
    }
  }
  // Canonical composition (UAX #15): a mark joins the last starter unless a mark of the same or
  // higher class, or another starter, stands between them.
  size_t out_len = 0;
  size_t starter = 0;
  bool have_starter = false;
  uint8_t last_class = 0;  // class of the last char kept after the starter
  for (size_t i = 0; i < buf.size(); ++i) {
    uint32_t c = buf[i];
    uint8_t cc = combining_class(c);
    // Kept chars after the starter are non-starters in canonical order, so the last one decides.
    if (have_starter && (out_len - 1 == starter || last_class < cc)) {
      uint32_t composite = compose(buf[starter], c);
      if (composite != 0) {
        buf[starter] = composite;
        continue;
      }
    }
    if (cc == 0) {
      starter = out_len;
      have_starter = true;
    }
    last_class = cc;
    buf[out_len++] = c;
  }
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < out_len; ++i) {
    if (buf[i] & kRawByteTag) {
      out.push_back(static_cast<char>(buf[i] & 0xFF));
    } else {
      utf8_append(out, buf[i]);
    }
  }
  return out;
}

std::string_view python_strip(std::string_view s) {
  auto space_at = [&](size_t pos, size_t* len) {
    uint32_t cp;
    *len = utf8_decode(s, pos, &cp);
    return cp != kInvalidCodePoint && (category_flags(cp) & kPySpace);
  };
  size_t begin = 0;
  size_t len;
  while (begin < s.size() && space_at(begin, &len)) begin += len;
  size_t end = s.size();
  while (end > begin) {
    size_t start = end - 1;
    while (start > begin && (static_cast<uint8_t>(s[start]) & 0xC0) == 0x80 && end - start < 4) --start;
    if (!space_at(start, &len) || start + len != end) break;
    end = start;
  }
  return s.substr(begin, end - begin);
}

}  // namespace jarvis::unicode
