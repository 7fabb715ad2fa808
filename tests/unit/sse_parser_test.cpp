// SseParser against the event-stream rules of the HTML Living Standard (server-sent events):
// events end at a blank line, LF or CRLF; `data:` lines join with newlines; one optional space
// after the colon is dropped; comments and other fields carry no data; lines may end with a lone
// CR; a byte-order mark may open the stream.
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

TEST(SseParser, LoneCrAndMixedLineEnds) {
  const std::string stream = "data: one\r\rdata: two\r\n\ndata: three\n\r\n";
  for (size_t cut = 0; cut <= stream.size(); ++cut) {  // a CR at a cut must wait for the next byte
    SseParser p;
    Events got = feed_all(p, stream.substr(0, cut));
    Events rest = feed_all(p, stream.substr(cut));
    got.insert(got.end(), rest.begin(), rest.end());
    EXPECT_EQ(got, (Events{"one", "two", "three"})) << "cut at " << cut;
  }
}

TEST(SseParser, FieldNamesAreExact) {
  SseParser p;
  // "data" alone is the data field with an empty value; "datax" and "Data" are other fields.
  EXPECT_EQ(feed_all(p, "data\n\ndatax: no\nData: no\n\ndata:yes\n\n"), (Events{"", "yes"}));
}

TEST(SseParser, ByteOrderMarkOnlyAtTheStart) {
  SseParser p;
  EXPECT_EQ(feed_all(p, "\xEF\xBB\xBF" "data: a\n\n"), (Events{"a"}));
  EXPECT_EQ(feed_all(p, "\xEF\xBB\xBF" "data: b\n\n"), Events{});  // a field named BOM+"data"
}

TEST(SseParser, FinishKeepsAnUnterminatedLastEvent) {
  SseParser p;
  EXPECT_EQ(feed_all(p, "data: a\n\ndata: [DONE]"), (Events{"a"}));
  EXPECT_EQ(p.finish(), (Events{"[DONE]"}));
  EXPECT_EQ(p.finish(), Events{});
  EXPECT_EQ(feed_all(p, "data: b\n"), Events{});
  EXPECT_EQ(p.finish(), (Events{"b"}));
  EXPECT_EQ(feed_all(p, ": ping\n"), Events{});
  EXPECT_EQ(p.finish(), Events{});
}

}  // namespace
