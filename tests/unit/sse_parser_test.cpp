// SseParser against the event-stream rules of the HTML Living Standard (server-sent events):
// events end at a blank line, LF or CRLF; `data:` lines join with newlines; one optional space
// after the colon is dropped; comments and other fields carry no data.
#include "benchmarks/serving/openai_stream_client.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace {

using jarvis::bench::SseParser;
using Events = std::vector<std::string>;

Events feed_all(SseParser& p, const std::string& s) { return p.feed(s.data(), s.size()); }

TEST(SseParser, EventsEndAtBlankLines) {
  SseParser p;
  EXPECT_EQ(feed_all(p, "data: {\"a\":1}\n\ndata: [DONE]\n\n"), (Events{"{\"a\":1}", "[DONE]"}));
}

TEST(SseParser, BytesSplitAnywhere) {
  const std::string stream = "data: one\r\n\r\ndata:two\n\n: keep-alive\n\ndata: three\n\n";
  for (size_t cut = 0; cut <= stream.size(); ++cut) {
    SseParser p;
    Events got = feed_all(p, stream.substr(0, cut));
    Events rest = feed_all(p, stream.substr(cut));
    got.insert(got.end(), rest.begin(), rest.end());
    EXPECT_EQ(got, (Events{"one", "two", "three"})) << "cut at " << cut;
  }
}

TEST(SseParser, MultiLineDataAndOtherFields) {
  SseParser p;
  EXPECT_EQ(feed_all(p, "event: message\nid: 7\ndata: a\ndata:  b\nretry: 10\n\n"),
            (Events{"a\n b"}));  // only the first space after the colon is dropped
  EXPECT_EQ(feed_all(p, ": comment only\n\n"), Events{});
}

TEST(SseParser, IncompleteEventWaits) {
  SseParser p;
  EXPECT_EQ(feed_all(p, "data: partial\n"), Events{});
  EXPECT_EQ(feed_all(p, "\n"), (Events{"partial"}));
}

}  // namespace
