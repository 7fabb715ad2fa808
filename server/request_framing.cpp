#include "server/request_framing.h"

#include <cctype>
#include <cstdint>

namespace jarvis::server {
namespace {

constexpr size_t kMaxChunkLine = 1024;  // "<hex size>[;extensions]\r\n"

Framing incomplete() { return {}; }

Framing refused(int status, std::string message) {
  Framing f;
  f.state = Framing::State::kRefused;
  f.status = status;
  f.message = std::move(message);
  return f;
}

// RFC 9110 5.6.2 tchar.
bool is_token_char(unsigned char c) {
  if (std::isalnum(c)) return true;
  switch (c) {
    case '!': case '#': case '$': case '%': case '&': case '\'': case '*': case '+': case '-': case '.':
    case '^': case '_': case '`': case '|': case '~':
      return true;
    default:
      return false;
  }
}

bool is_token(std::string_view s) {
  if (s.empty()) return false;
  for (unsigned char c : s) {
    if (!is_token_char(c)) return false;
  }
  return true;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// The line starting at `pos`, without its CRLF; npos in `next` while it has not fully arrived.
// A line ending in a bare LF is an error (`bare_lf`).
struct Line {
  std::string_view text;
  size_t next = std::string_view::npos;
  bool bare_lf = false;
};

Line line_at(std::string_view data, size_t pos) {
  Line line;
  const size_t nl = data.find('\n', pos);
  if (nl == std::string_view::npos) return line;
  line.next = nl + 1;
  if (nl == pos || data[nl - 1] != '\r') {
    line.bare_lf = true;
    return line;
  }
  line.text = data.substr(pos, nl - 1 - pos);
  return line;
}

struct RequestLine {
  bool ok = false;
  int status = 400;
  std::string message;
  std::string method;
  bool http10 = false;
};

RequestLine parse_request_line(std::string_view line, const FramingLimits& limits) {
  RequestLine r;
  const size_t sp1 = line.find(' ');
  const size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos || line.find(' ', sp2 + 1) != std::string_view::npos) {
    r.message = "malformed request line (want 'METHOD TARGET HTTP/1.1')";
    return r;
  }
  const std::string_view method = line.substr(0, sp1);
  const std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  const std::string_view version = line.substr(sp2 + 1);
  if (!is_token(method)) {
    r.message = "malformed request method";
    return r;
  }
  if (target.empty()) {
    r.message = "empty request target";
    return r;
  }
  if (target.size() > limits.max_target_bytes) {
    r.status = 414;
    r.message = "the request target is longer than " + std::to_string(limits.max_target_bytes) + " bytes";
    return r;
  }
  for (unsigned char c : target) {
    if (c <= 0x20 || c == 0x7f) {
      r.message = "control character in the request target";
      return r;
    }
  }
  if (version == "HTTP/1.1" || version == "HTTP/1.0") {
    r.ok = true;
    r.method = std::string(method);
    r.http10 = version == "HTTP/1.0";
    return r;
  }
  if (version.size() == 8 && version.substr(0, 5) == "HTTP/" && std::isdigit(static_cast<unsigned char>(version[5])) &&
      version[6] == '.' && std::isdigit(static_cast<unsigned char>(version[7]))) {
    r.message = "HTTP version " + std::string(version.substr(5)) + " is not supported (use HTTP/1.1)";
    return r;
  }
  r.message = "malformed HTTP version in the request line";
  return r;
}

// What the headers say about the body.
struct BodyHeaders {
  int content_length_count = 0;
  std::string_view content_length;
  int transfer_encoding_count = 0;
  std::string transfer_encoding;  // lower case
  bool expect_continue = false;
};

// Where a chunked body that starts at `pos` ends (then the request is complete), or why not.
Framing frame_chunked(std::string_view data, size_t begin, size_t pos, const FramingLimits& limits) {
  uint64_t total = 0;
  for (;;) {
    const Line size_line = line_at(data, pos);
    if (size_line.next == std::string_view::npos) {
      if (data.size() - pos > kMaxChunkLine) return refused(400, "chunk size line too long");
      return incomplete();
    }
    if (size_line.bare_lf) return refused(400, "chunk size line must end with CRLF");
    std::string_view hex = size_line.text.substr(0, size_line.text.find(';'));
    hex = trim(hex);
    if (hex.empty() || hex.size() > 15) return refused(400, "malformed chunk size");
    uint64_t size = 0;
    for (unsigned char c : hex) {
      if (!std::isxdigit(c)) return refused(400, "malformed chunk size");
      size = size * 16 + static_cast<uint64_t>(std::isdigit(c) ? c - '0' : std::tolower(c) - 'a' + 10);
    }
    total += size;
    if (total > limits.max_body_bytes) {
      return refused(413, "the request body is larger than " + std::to_string(limits.max_body_bytes) + " bytes");
    }
    pos = size_line.next;
    if (size == 0) break;
    if (data.size() < pos + size + 2) return incomplete();
    if (data.substr(pos + size, 2) != "\r\n") return refused(400, "chunk data not followed by CRLF");
    pos += size + 2;
  }
  // Trailer fields, then the empty line that ends the message.
  const size_t trailers_start = pos;
  for (;;) {
    const Line line = line_at(data, pos);
    if (line.next == std::string_view::npos) {
      if (data.size() - trailers_start > limits.max_head_bytes) return refused(431, "chunked trailers too large");
      return incomplete();
    }
    if (line.bare_lf) return refused(400, "trailer line must end with CRLF");
    pos = line.next;
    if (line.text.empty()) break;
  }
  Framing f;
  f.state = Framing::State::kComplete;
  f.begin = begin;
  f.end = pos;
  return f;
}

}  // namespace

Framing frame_request(std::string_view data, const FramingLimits& limits) {
  size_t begin = 0;
  while (data.substr(begin, 2) == "\r\n") begin += 2;
  if (begin > 64) return refused(400, "too many empty lines before the request line");

  // The request line, checked as soon as it has arrived, so garbage is refused at once.
  const Line first = line_at(data, begin);
  if (first.next == std::string_view::npos) {
    const std::string_view partial = data.substr(begin);
    for (size_t i = 0; i < partial.size(); ++i) {
      const unsigned char c = partial[i];
      if ((c < 0x20 && !(c == '\r' && i + 1 == partial.size())) || c == 0x7f) {
        return refused(400, "control character in the request line");
      }
    }
    if (partial.size() > limits.max_target_bytes + 64) {
      return refused(414, "the request target is longer than " + std::to_string(limits.max_target_bytes) +
                              " bytes");
    }
    return incomplete();
  }
  if (first.bare_lf) return refused(400, "the request line must end with CRLF");
  const RequestLine rl = parse_request_line(first.text, limits);
  if (!rl.ok) return refused(rl.status, rl.message);

  BodyHeaders bh;
  size_t pos = first.next;
  for (;;) {
    if (pos - begin > limits.max_head_bytes) {
      return refused(431, "request headers larger than " + std::to_string(limits.max_head_bytes) + " bytes");
    }
    const Line line = line_at(data, pos);
    if (line.next == std::string_view::npos) {
      if (data.size() - begin > limits.max_head_bytes) {
        return refused(431, "request headers larger than " + std::to_string(limits.max_head_bytes) + " bytes");
      }
      return incomplete();
    }
    if (line.bare_lf) return refused(400, "header lines must end with CRLF");
    pos = line.next;
    if (line.text.empty()) break;
    if (line.text.front() == ' ' || line.text.front() == '\t') {
      return refused(400, "folded header lines (obs-fold) are not accepted");
    }
    const size_t colon = line.text.find(':');
    if (colon == std::string_view::npos || !is_token(line.text.substr(0, colon))) {
      return refused(400, "malformed header line (want 'Name: value')");
    }
    const std::string_view value = trim(line.text.substr(colon + 1));
    for (unsigned char c : value) {
      if ((c < 0x20 && c != '\t') || c == 0x7f) return refused(400, "control character in a header value");
    }
    const std::string name = lower(line.text.substr(0, colon));
    if (name == "content-length") {
      ++bh.content_length_count;
      bh.content_length = value;
    } else if (name == "transfer-encoding") {
      ++bh.transfer_encoding_count;
      bh.transfer_encoding = lower(value);
    } else if (name == "expect") {
      bh.expect_continue = lower(value) == "100-continue";
    }
  }
  const size_t head_end = pos;

  const bool chunked = bh.transfer_encoding_count > 0;
  if (chunked) {
    if (bh.content_length_count > 0) {
      return refused(400, "Content-Length and Transfer-Encoding together: the body's length is ambiguous");
    }
    if (bh.transfer_encoding_count > 1) return refused(400, "more than one Transfer-Encoding header");
    if (rl.http10) return refused(400, "Transfer-Encoding is not allowed in HTTP/1.0");
    if (bh.transfer_encoding != "chunked") {
      return refused(501, "Transfer-Encoding '" + bh.transfer_encoding + "' is not supported (only chunked)");
    }
  }
  uint64_t length = 0;
  if (bh.content_length_count > 1) {
    return refused(400, "more than one Content-Length header: the body's length is ambiguous");
  }
  if (bh.content_length_count == 1) {
    const std::string_view v = bh.content_length;
    if (!v.empty() && v.front() == '-') return refused(400, "negative Content-Length");
    if (v.empty()) return refused(400, "empty Content-Length");
    for (unsigned char c : v) {
      if (!std::isdigit(c)) return refused(400, "Content-Length is not a decimal number");
    }
    size_t digits = v.size();
    size_t lead = 0;
    while (lead + 1 < v.size() && v[lead] == '0') ++lead;  // leading zeros do not make it large
    digits -= lead;
    for (size_t i = lead; i < v.size() && digits <= 19; ++i) length = length * 10 + static_cast<uint64_t>(v[i] - '0');
    if (digits > 19 || length > limits.max_body_bytes) {
      return refused(413, "the request body is larger than " + std::to_string(limits.max_body_bytes) + " bytes");
    }
  } else if (!chunked && (rl.method == "POST" || rl.method == "PUT" || rl.method == "PATCH")) {
    return refused(411, rl.method + " needs a Content-Length header (or Transfer-Encoding: chunked)");
  }

  if (chunked) {
    Framing f = frame_chunked(data, begin, head_end, limits);
    f.expect_continue = f.state == Framing::State::kIncomplete && bh.expect_continue;
    return f;
  }
  if (data.size() < head_end + length) {
    Framing f;
    f.expect_continue = bh.expect_continue;
    return f;
  }
  Framing f;
  f.state = Framing::State::kComplete;
  f.begin = begin;
  f.end = head_end + static_cast<size_t>(length);
  return f;
}

}  // namespace jarvis::server
