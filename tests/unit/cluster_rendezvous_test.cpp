// SHA-256, model fingerprints and the rank rendezvous (engine/cluster/{sha256,model_identity,rendezvous}.h).
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <memory>
#include <thread>
#include <vector>

#include "csrc/util/error.h"
#include "engine/cluster/model_identity.h"
#include "engine/cluster/placement.h"
#include "engine/cluster/rendezvous.h"
#include "engine/cluster/sha256.h"
#include "transport/inproc_link.h"

using namespace jarvis;
using namespace std::chrono_literals;

namespace {

const std::string kModel = std::string(JARVIS_SOURCE_DIR) + "/models/SmolLM2-135M-Instruct.Q4_1.gguf";

// `sha256sum` (GNU coreutils) of a file: the independent reference for our implementation.
std::string coreutils_sha256(const std::string& path) {
  std::unique_ptr<FILE, int (*)(FILE*)> p(::popen(("sha256sum '" + path + "'").c_str(), "r"), ::pclose);
  if (!p) return "";
  char buf[65] = {};
  return std::fread(buf, 1, 64, p.get()) == 64 ? std::string(buf, 64) : "";
}

std::string temp_path(const char* name) { return ::testing::TempDir() + "/" + name; }

}  // namespace

// FIPS 180-2 appendix B test vectors.
TEST(ClusterSha256, KnownVectors) {
  EXPECT_EQ(sha256_hex("", 0), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(sha256_hex("abc", 3), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  const std::string two_blocks = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
  EXPECT_EQ(sha256_hex(two_blocks.data(), two_blocks.size()),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  // One million 'a', fed in odd-sized pieces to exercise the buffering.
  Sha256 h;
  const std::string chunk(997, 'a');
  size_t left = 1000000;
  while (left > 0) {
    const size_t n = std::min(left, chunk.size());
    h.update(chunk.data(), n);
    left -= n;
  }
  EXPECT_EQ(h.finish_hex(), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST(ClusterSha256, WholeModelFileMatchesCoreutils) {
  const std::string expected = coreutils_sha256(kModel);
  if (expected.empty()) GTEST_SKIP() << "sha256sum not available";
  std::ifstream in(kModel, std::ios::binary);
  Sha256 h;
  std::vector<char> buf(1 << 20);
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    h.update(buf.data(), static_cast<size_t>(in.gcount()));
  }
  EXPECT_EQ(h.finish_hex(), expected);
}

TEST(ClusterFingerprint, StableAndSensitiveToHeaderAndWeights) {
  const std::string sampled = model_fingerprint(kModel);
  EXPECT_EQ(sampled.size(), 64u);
  EXPECT_EQ(model_fingerprint(kModel), sampled);
  EXPECT_NE(model_fingerprint(kModel, FingerprintMode::kFull), sampled);
  // A copy with one metadata byte changed (inside general.organization), and one with a weight byte changed
  // at a sampled offset (the very last byte is always in the last sample).
  std::ifstream in(kModel, std::ios::binary);
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  ASSERT_GT(bytes.size(), size_t{64} << 20);  // past the "small file: hash all" threshold
  const std::string copy = temp_path("fingerprint_copy.gguf");
  auto write = [&](const std::vector<char>& b) {
    std::ofstream out(copy, std::ios::binary | std::ios::trunc);
    out.write(b.data(), static_cast<std::streamsize>(b.size()));
  };
  write(bytes);
  EXPECT_EQ(model_fingerprint(copy), sampled);
  const std::string needle = "HuggingFaceTB";  // general.organization
  auto at = std::search(bytes.begin(), bytes.begin() + (1 << 20), needle.begin(), needle.end());
  ASSERT_NE(at, bytes.begin() + (1 << 20));
  std::vector<char> edited = bytes;
  edited[at - bytes.begin()] = 'X';
  write(edited);
  EXPECT_NE(model_fingerprint(copy), sampled);
  edited = bytes;
  edited.back() ^= 1;
  write(edited);
  EXPECT_NE(model_fingerprint(copy), sampled);
  write(bytes);  // and one byte longer: the size alone
  std::ofstream(copy, std::ios::binary | std::ios::app).put('\0');
  EXPECT_NE(model_fingerprint(copy), sampled);
  std::remove(copy.c_str());
  EXPECT_THROW(model_fingerprint("/nonexistent/model.gguf"), ModelFileError);
}

namespace {

struct Ring {
  // links[i]: rank 0's end towards rank i+1; peers[i]: rank i+1's end.
  std::vector<std::unique_ptr<transport::Link>> leader_ends, peer_ends;
  explicit Ring(int world) {
    for (int r = 1; r < world; ++r) {
      auto [a, b] = transport::make_inproc_link_pair();
      leader_ends.push_back(std::move(a));
      peer_ends.push_back(std::move(b));
    }
  }
  std::vector<transport::Link*> leader_links() {
    std::vector<transport::Link*> out;
    for (auto& l : leader_ends) out.push_back(l.get());
    return out;
  }
};

struct Outcome {
  bool ok = false;
  std::string error;
};

// Runs rank 0 here and ranks 1..N-1 on threads; hellos[r] is rank r's.
std::vector<Outcome> run(const std::vector<RankHello>& hellos, const std::vector<ShardSpec>& plan = {}) {
  const int world = static_cast<int>(hellos.size());
  Ring ring(world);
  std::vector<Outcome> out(world);
  std::vector<std::thread> threads;
  for (int r = 1; r < world; ++r) {
    threads.emplace_back([&, r] {
      try {
        rendezvous_follower(*ring.peer_ends[r - 1], hellos[r], 10s);
        out[r].ok = true;
      } catch (const std::exception& e) {
        out[r].error = e.what();
      }
    });
  }
  try {
    const auto seen = rendezvous_leader(hellos[0], ring.leader_links(), plan, 10s);
    out[0].ok = seen.size() == hellos.size() && seen[world - 1].rank == world - 1;
  } catch (const std::exception& e) {
    out[0].error = e.what();
  }
  for (auto& t : threads) t.join();
  return out;
}

std::vector<RankHello> hellos(int world, const std::string& hash = "aa11") {
  const auto plan = plan_split(30, world);
  std::vector<RankHello> out;
  for (int r = 0; r < world; ++r) out.push_back(RankHello::make(r, world, plan[r], hash));
  return out;
}

}  // namespace

TEST(ClusterRendezvous, AgreeingRanksPass) {
  EXPECT_FALSE(engine_version().empty());
  const auto h = hellos(3, model_fingerprint(kModel));
  for (const Outcome& o : run(h, plan_split(30, 3))) EXPECT_TRUE(o.ok) << o.error;
  const RankHello back = RankHello::from_json(h[2].to_json(), "test");
  EXPECT_EQ(back.model_hash, h[2].model_hash);
  EXPECT_EQ(back.shard.first_layer, 20);
  EXPECT_EQ(back.shard.end_layer, 30);
  EXPECT_FALSE(back.shard.has_head);
}

TEST(ClusterRendezvous, ModelHashMismatchFailsEveryRank) {
  auto h = hellos(3, "9c4e00112233445566778899");
  h[2].model_hash = "1f3a00112233445566778899";
  const auto out = run(h);
  for (int r = 0; r < 3; ++r) {
    EXPECT_FALSE(out[r].ok);
    EXPECT_NE(out[r].error.find("rank 2"), std::string::npos) << out[r].error;
    EXPECT_NE(out[r].error.find("has model hash 1f3a001122334455..., rank 0 has 9c4e001122334455..."),
              std::string::npos)
        << out[r].error;
  }
}

TEST(ClusterRendezvous, VersionAndProtocolMismatch) {
  auto h = hellos(2);
  h[1].engine_version = "0.0.9";
  auto out = run(h);
  EXPECT_NE(out[0].error.find("rank 1"), std::string::npos) << out[0].error;
  EXPECT_NE(out[0].error.find("runs engine version 0.0.9 (protocol " + std::to_string(kRendezvousProtocol) + "), rank 0 runs " + engine_version()),
            std::string::npos)
      << out[0].error;
  EXPECT_EQ(out[1].error.find("rendezvous failed (rank 1)"), 0u) << out[1].error;
  h = hellos(2);
  h[1].protocol = kRendezvousProtocol + 1;
  out = run(h);
  EXPECT_NE(out[0].error.find("(protocol " + std::to_string(kRendezvousProtocol + 1) + ")"), std::string::npos)
      << out[0].error;
  EXPECT_FALSE(out[1].ok);
}

TEST(ClusterRendezvous, WrongShardWorldOrRank) {
  auto h = hellos(3);
  h[1].shard.end_layer = 19;
  auto out = run(h, plan_split(30, 3));
  EXPECT_NE(out[2].error.find("rank 1 (" + h[1].host + ") holds layers [10, 19) but the plan gives it layers [10, 20)"),
            std::string::npos)
      << out[2].error;
  h = hellos(3);
  h[2].world_size = 4;
  out = run(h);
  EXPECT_NE(out[0].error.find("rank 2 (" + h[2].host + ") expects 4 ranks, rank 0 expects 3"), std::string::npos)
      << out[0].error;
  h = hellos(3);
  h[2].rank = 1;  // two processes claim rank 1
  out = run(h);
  EXPECT_NE(out[0].error.find("two processes say they are rank 1"), std::string::npos) << out[0].error;
  EXPECT_FALSE(out[1].ok);
  EXPECT_FALSE(out[2].ok);
}

TEST(ClusterRendezvous, KvLayoutMismatch) {
  auto h = hellos(3);
  for (auto& x : h) x.kv_blocks = 256, x.page_size = 16;
  EXPECT_TRUE(run(h)[0].ok);
  h[2].kv_blocks = 255;
  auto out = run(h);
  EXPECT_NE(out[0].error.find("rank 2 (" + h[2].host + ") has 255 KV blocks, rank 0 has 256"), std::string::npos)
      << out[0].error;
  EXPECT_FALSE(out[1].ok);
  h = hellos(2);
  for (auto& x : h) x.kv_blocks = 256, x.page_size = 16;
  h[1].page_size = 32;
  out = run(h);
  EXPECT_NE(out[0].error.find("has KV pages of 32 tokens, rank 0 has 16"), std::string::npos) << out[0].error;
}

TEST(ClusterRendezvous, SilentRankTimesOutAndOthersAreTold) {
  Ring ring(3);
  const auto h = hellos(3);
  std::string follower_error;
  std::thread t([&] {
    try {
      rendezvous_follower(*ring.peer_ends[0], h[1], 10s);
    } catch (const RendezvousError& e) {
      follower_error = e.what();
    }
  });
  // Rank 2 never says hello.
  EXPECT_THROW(rendezvous_leader(h[0], ring.leader_links(), {}, 200ms), transport::LinkTimeout);
  t.join();
  EXPECT_NE(follower_error.find("did not say hello in time"), std::string::npos) << follower_error;
  // A follower whose leader never answers gets a timeout, not a hang.
  auto [a, b] = transport::make_inproc_link_pair();
  EXPECT_THROW(rendezvous_follower(*b, h[1], 50ms), transport::LinkTimeout);
  // Garbage instead of a hello is a RendezvousError, not a crash.
  EXPECT_THROW(RankHello::from_json("{\"protocol\": " + std::to_string(kRendezvousProtocol) + "}", "x"), RendezvousError);
  EXPECT_THROW(RankHello::from_json("not json", "x"), RendezvousError);
}

namespace {

// Ranks 0..N-1 on threads over a ring of in-process links: pairs[r] joins rank r to rank r+1 (mod N).
std::vector<Outcome> run_ring(const std::vector<RankHello>& hellos, const std::vector<ShardSpec>& plan = {}) {
  const int world = static_cast<int>(hellos.size());
  std::vector<std::pair<std::unique_ptr<transport::Link>, std::unique_ptr<transport::Link>>> pairs;
  for (int r = 0; r < world; ++r) pairs.push_back(transport::make_inproc_link_pair());
  std::vector<Outcome> out(world);
  std::vector<std::thread> threads;
  for (int r = 0; r < world; ++r) {
    threads.emplace_back([&, r] {
      transport::Link* to_next = pairs[r].first.get();
      transport::Link* from_prev = pairs[(r + world - 1) % world].second.get();
      if (world == 2) from_prev = to_next = (r == 0 ? pairs[0].first.get() : pairs[0].second.get());
      try {
        const auto seen = rendezvous_ring(hellos[r], from_prev, to_next, plan, 10s);
        out[r].ok =
            r != 0 || (seen.size() == hellos.size() && seen[world - 1].model_hash == hellos[world - 1].model_hash);
      } catch (const std::exception& e) {
        out[r].error = e.what();
      }
    });
  }
  for (auto& t : threads) t.join();
  return out;
}

}  // namespace

TEST(ClusterRendezvous, RingPassesAndFailsEveryRankAlike) {
  for (int world : {1, 2, 3, 5}) {
    for (const Outcome& o : run_ring(hellos(world), plan_split(30, world)))
      EXPECT_TRUE(o.ok) << world << ": " << o.error;
  }
  auto h = hellos(4, "9c4e00112233445566778899");
  h[3].model_hash = "1f3a00112233445566778899";
  for (const Outcome& o : run_ring(h)) {
    EXPECT_NE(o.error.find("rank 3 (" + h[3].host + ") has model hash 1f3a001122334455..., rank 0 has 9c4e"),
              std::string::npos)
        << o.error;
  }
  h = hellos(2);
  h[1].engine_version = "9.9.9";
  for (const Outcome& o : run_ring(h))
    EXPECT_NE(o.error.find("runs engine version 9.9.9"), std::string::npos) << o.error;
  h = hellos(3);
  h[2].shard = plan_split(30, 3)[1];
  for (const Outcome& o : run_ring(h, plan_split(30, 3))) {
    EXPECT_NE(o.error.find("holds layers [10, 20) but the plan gives it layers [20, 30)"), std::string::npos)
        << o.error;
  }
  // A ring missing a rank: rank 0 hears the hellos back from rank 1, one short.
  h = hellos(3);
  h[0].world_size = h[1].world_size = 2;
  h.pop_back();
  h[0].world_size = 3;
  const auto out = run_ring(h);
  EXPECT_NE(out[0].error.find("expects 2 ranks, rank 0 expects 3"), std::string::npos) << out[0].error;
}
