// Where a request ends, or why it is refused, in the bytes a connection received: the rules of
// RFC 9112 (sections 2.2, 6.1-6.3, 7.1) for a server that must not let two parsers disagree.
#include <gtest/gtest.h>

#include <string>

#include "server/request_framing.h"

namespace jarvis::server {
namespace {

using State = Framing::State;

Framing frame(const std::string& data, size_t max_body = 1 << 20) {
  FramingLimits limits;
  limits.max_body_bytes = max_body;
  return frame_request(data, limits);
}

TEST(RequestFraming, GetWithoutBodyEndsAtTheEmptyLine) {
  const std::string req = "GET /health HTTP/1.1\r\nHost: x\r\n\r\n";
  const Framing f = frame(req + "GET /next");
  ASSERT_EQ(f.state, State::kComplete);
  EXPECT_EQ(f.begin, 0u);
  EXPECT_EQ(f.end, req.size());
}

TEST(RequestFraming, WaitsForEveryByteOfAContentLengthBody) {
  const std::string head = "POST /v1/completions HTTP/1.1\r\nContent-Length: 5\r\n\r\n";
  EXPECT_EQ(frame("POST /v1/comp").state, State::kIncomplete);
  EXPECT_EQ(frame(head).state, State::kIncomplete);
  EXPECT_EQ(frame(head + "abcd").state, State::kIncomplete);
  const Framing f = frame(head + "abcdeXYZ");
  ASSERT_EQ(f.state, State::kComplete);
  EXPECT_EQ(f.end, head.size() + 5);
}

TEST(RequestFraming, SkipsEmptyLinesBeforeTheRequestLine) {
  const std::string req = "GET / HTTP/1.1\r\n\r\n";
  const Framing f = frame("\r\n\r\n" + req);
  ASSERT_EQ(f.state, State::kComplete);
  EXPECT_EQ(f.begin, 4u);
  EXPECT_EQ(f.end, 4 + req.size());
}

TEST(RequestFraming, ChunkedBodyEndsAfterTheLastChunkAndTrailers) {
  const std::string head = "POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
  const std::string body = "3;ext=1\r\nabc\r\nA\r\n0123456789\r\n0\r\nX-Trailer: t\r\n\r\n";
  for (size_t cut = 0; cut < body.size(); ++cut) {
    ASSERT_EQ(frame(head + body.substr(0, cut)).state, State::kIncomplete) << cut;
  }
  const Framing f = frame(head + body + "GET");
  ASSERT_EQ(f.state, State::kComplete);
  EXPECT_EQ(f.end, head.size() + body.size());
}

TEST(RequestFraming, ChunkedBodyOverTheLimitIs413BeforeItArrives) {
  const Framing f = frame("POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n400\r\nab", 1000);
  EXPECT_EQ(f.state, State::kRefused);
  EXPECT_EQ(f.status, 413);
}

TEST(RequestFraming, BadChunkSyntaxIs400) {
  EXPECT_EQ(frame("POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n").status, 400);
  EXPECT_EQ(frame("POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcd\r\n0\r\n\r\n").status, 400);
}

// The smuggling vectors: each must be refused from the head alone, not waited on.
TEST(RequestFraming, AmbiguousBodyLengthsAre400) {
  const Framing two = frame("POST /x HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n");
  EXPECT_EQ(two.state, State::kRefused);
  EXPECT_EQ(two.status, 400);
  const Framing both = frame("POST /x HTTP/1.1\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n");
  EXPECT_EQ(both.status, 400);
  EXPECT_EQ(frame("POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n").status,
            400);
  EXPECT_EQ(frame("POST /x HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n").status, 501);
}

TEST(RequestFraming, NegativeOrNonNumericContentLengthIs400NotA413) {
  const Framing neg = frame("POST /x HTTP/1.1\r\nContent-Length: -5\r\n\r\n");
  EXPECT_EQ(neg.state, State::kRefused);
  EXPECT_EQ(neg.status, 400);
  EXPECT_NE(neg.message.find("negative"), std::string::npos) << neg.message;
  EXPECT_EQ(frame("POST /x HTTP/1.1\r\nContent-Length: abc\r\n\r\n").status, 400);
  EXPECT_EQ(frame("POST /x HTTP/1.1\r\nContent-Length: 1 2\r\n\r\n").status, 400);
  EXPECT_EQ(frame("POST /x HTTP/1.1\r\nContent-Length: +2\r\n\r\n").status, 400);
}

TEST(RequestFraming, TooLargeContentLengthIs413) {
  EXPECT_EQ(frame("POST /x HTTP/1.1\r\nContent-Length: 1001\r\n\r\n", 1000).status, 413);
  EXPECT_EQ(frame("POST /x HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n").status, 413);
  EXPECT_EQ(frame("POST /x HTTP/1.1\r\nContent-Length: 0000000000000000000001\r\n\r\nx").state, State::kComplete);
}

TEST(RequestFraming, PostWithoutALengthIs411AtOnce) {
  const Framing f = frame("POST /v1/completions HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(f.state, State::kRefused);
  EXPECT_EQ(f.status, 411);
  EXPECT_EQ(frame("GET /health HTTP/1.1\r\n\r\n").state, State::kComplete);  // GET needs no length
}

TEST(RequestFraming, GarbageIsRefusedBeforeTheHeadEnds) {
  EXPECT_EQ(frame(std::string("\x16\x03\x01\x02\x00", 5)).status, 400);  // a TLS hello
  EXPECT_EQ(frame("GET /health HTTP/1.1\n\n").status, 400);                 // bare LF
  EXPECT_EQ(frame("hello world\r\n").status, 400);
  EXPECT_EQ(frame("GET /health HTTP/2.0\r\n\r\n").status, 400);  // a client error, not ours
  EXPECT_EQ(frame("GET  /health HTTP/1.1\r\n\r\n").status, 400);
  EXPECT_EQ(frame("GET /health HTTP/1.1\r\nBad Header: x\r\n\r\n").status, 400);
  EXPECT_EQ(frame("GET /health HTTP/1.1\r\nX: a\r\n folded\r\n\r\n").status, 400);
  EXPECT_EQ(frame("GET /health HTTP/1.1\r\nNoColon\r\n\r\n").status, 400);
}

TEST(RequestFraming, OversizedHeadsAndTargets) {
  EXPECT_EQ(frame("GET /" + std::string(9000, 'a') + " HTTP/1.1\r\n\r\n").status, 414);
  EXPECT_EQ(frame("GET /" + std::string(9000, 'a')).status, 414);  // refused before the line ends
  std::string head = "GET / HTTP/1.1\r\n";
  while (head.size() < (70u << 10)) head += "X-A: " + std::string(100, 'b') + "\r\n";
  EXPECT_EQ(frame(head).status, 431);
}

TEST(RequestFraming, ExpectContinueIsReportedWhileTheBodyIsMissing) {
  const std::string head = "POST /x HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n";
  const Framing waiting = frame(head);
  EXPECT_EQ(waiting.state, State::kIncomplete);
  EXPECT_TRUE(waiting.expect_continue);
  EXPECT_FALSE(frame(head.substr(0, head.size() - 2)).expect_continue);  // head not complete yet
  EXPECT_EQ(frame(head + "abc").state, State::kComplete);
}

}  // namespace
}  // namespace jarvis::server
