#include "engine/stop_matcher.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "csrc/util/error.h"

namespace jarvis {
namespace {

// Feeds pieces one by one; returns everything released (push + final flush unless stopped).
std::string run(StopMatcher& m, const std::vector<std::string>& pieces) {
  std::string out;
  for (const std::string& p : pieces) out += m.push(p);
  if (!m.stopped()) out += m.flush();
  return out;
}

TEST(StopMatcher, NoStopsPassesEverythingThrough) {
  StopMatcher m({});
  EXPECT_EQ(m.push("Hello"), "Hello");
  EXPECT_EQ(m.push(", world"), ", world");
  EXPECT_FALSE(m.stopped());
}

TEST(StopMatcher, StopSplitAcrossPieces) {
  StopMatcher m({"\nUser:"});
  EXPECT_EQ(m.push("Paris.\nU"), "Paris.");  // "\nU" could start the stop string
  EXPECT_EQ(m.push("se"), "");
  EXPECT_EQ(m.push("r: next"), "");
  EXPECT_TRUE(m.stopped());
  EXPECT_EQ(m.matched(), "\nUser:");
  EXPECT_EQ(m.push("more"), "");
}

TEST(StopMatcher, FalseStartIsReleased) {
  StopMatcher m({"STOP"});
  EXPECT_EQ(m.push("a ST"), "a ");
  EXPECT_EQ(m.push("OP"), "");
  EXPECT_TRUE(m.stopped());

  StopMatcher n({"STOP"});
  EXPECT_EQ(run(n, {"a ST", "ART", " S"}), "a START S");
  EXPECT_FALSE(n.stopped());
}

TEST(StopMatcher, EarliestOfSeveralWins) {
  StopMatcher m({"cd", "b"});
  EXPECT_EQ(run(m, {"abcd"}), "a");
  EXPECT_EQ(m.matched(), "b");
}

TEST(StopMatcher, OverlappingPrefixes) {
  // "aab" arriving as "a","a","b": the held suffix must allow the match to start one later.
  StopMatcher m({"ab"});
  EXPECT_EQ(run(m, {"a", "a", "b", "c"}), "a");
  EXPECT_TRUE(m.stopped());
}

TEST(StopMatcher, RejectsEmptyStop) { EXPECT_THROW(StopMatcher({"x", ""}), InvalidArgument); }

}  // namespace
}  // namespace jarvis
