// UCX links on loopback: two threads with separate UCP contexts, and a truly separate process
// (tests/helpers/transport_peer.cpp) that echoes what it gets; a killed or frozen peer must be
// reported as LinkBroken within the configured bound.
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>

#include <string>
#include <thread>
#include <vector>

#include "transport/rtt.h"
#include "transport/ucx/ucx_link.h"

extern char** environ;

using namespace jarvis::transport;
using namespace std::chrono_literals;

namespace {

const std::vector<size_t> kSizes = {1, 7, 100, 4096, 16384, 65536, 256 * 1024 + 1, 1 << 20, 4 << 20};

std::vector<uint8_t> pattern(size_t bytes, uint32_t seed) {
  std::vector<uint8_t> p(bytes);
  uint32_t x = seed * 2654435761u + 1;
  for (auto& v : p) {
    x ^= x << 13, x ^= x >> 17, x ^= x << 5;
    v = static_cast<uint8_t>(x);
  }
  return p;
}

// A child process running the helper; killed on destruction if still alive.
class Peer {
 public:
  explicit Peer(std::vector<std::string> args) {
    args.insert(args.begin(), JARVIS_TRANSPORT_PEER);
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    if (posix_spawn(&pid_, argv[0], nullptr, nullptr, argv.data(), environ) != 0) pid_ = -1;
  }
  ~Peer() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      wait();
    }
  }
  pid_t pid() const { return pid_; }
  int wait() {  // exit status, or -signal
    int st = 0;
    ::waitpid(pid_, &st, 0);
    pid_ = -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -WTERMSIG(st);
  }

 private:
  pid_t pid_ = -1;
};

UcxOptions fast_failure_options() {
  UcxOptions o;
  o.heartbeat_interval = 100ms;
  o.heartbeat_timeout = 1000ms;
  return o;
}

void exchange_all_sizes(Link& link) {
  for (size_t i = 0; i < kSizes.size(); ++i) {
    const auto p = pattern(kSizes[i], static_cast<uint32_t>(i));
    link.send(MessageType::kData, static_cast<uint32_t>(i), p.data(), p.size());
    Message m = link.recv(20s);
    ASSERT_EQ(m.tag, i);
    ASSERT_EQ(m.payload.size(), p.size());
    ASSERT_TRUE(m.payload == p) << "payload of " << kSizes[i] << " bytes differs";
  }
}

// Seconds until the link reports LinkBroken while receiving; fails the test (and returns a huge
// value) if it is still up after `limit`, so a detection bug cannot hang the suite.
double seconds_until_broken(Link& link, std::chrono::seconds limit, std::string* why = nullptr) {
  const auto t0 = Clock::now();
  try {
    while (Clock::now() - t0 < limit) link.try_recv(100ms);
  } catch (const LinkBroken& e) {
    if (why) *why = e.what();
    return std::chrono::duration<double>(Clock::now() - t0).count();
  }
  ADD_FAILURE() << "link still up after " << limit.count() << " s";
  return 1e9;
}

}  // namespace

TEST(TransportUcx, TwoContextsInOneProcessBothDirections) {
  UcxListener listener("127.0.0.1", 0);
  std::unique_ptr<Link> server;
  std::thread t([&] { server = listener.accept(10s); });
  auto client = ucx_connect("127.0.0.1", listener.port());
  t.join();
  // Both sides send everything first, then receive: large messages in flight both ways at once
  // must not deadlock.
  std::thread s([&] {
    for (size_t i = 0; i < kSizes.size(); ++i) server->send(pattern(kSizes[i], 100 + i), static_cast<uint32_t>(i));
  });
  for (size_t i = 0; i < kSizes.size(); ++i) client->send(pattern(kSizes[i], static_cast<uint32_t>(i)), static_cast<uint32_t>(i));
  for (size_t i = 0; i < kSizes.size(); ++i) {
    Message m = client->recv(20s);
    EXPECT_EQ(m.seq, i);
    EXPECT_TRUE(m.payload == pattern(kSizes[i], 100 + i)) << kSizes[i];
  }
  s.join();
  for (size_t i = 0; i < kSizes.size(); ++i) {
    Message m = server->recv(20s);
    EXPECT_TRUE(m.payload == pattern(kSizes[i], static_cast<uint32_t>(i))) << kSizes[i];
  }
  // recv with a timeout and nothing sent: nullopt after about the timeout, link still usable.
  const auto t1 = Clock::now();
  EXPECT_FALSE(server->try_recv(50ms).has_value());
  EXPECT_GE(Clock::now() - t1, 50ms);
  EXPECT_LT(Clock::now() - t1, 1s);
  EXPECT_THROW(client->recv(10ms), LinkTimeout);
  client->send({5});
  EXPECT_EQ(server->recv(5s).payload, std::vector<uint8_t>{5});
  // Orderly close: the other end learns at once, not after the heartbeat timeout.
  client.reset();
  const auto t0 = Clock::now();
  EXPECT_THROW(server->try_recv(10s), LinkBroken);
  EXPECT_LT(Clock::now() - t0, 1s);
}

TEST(TransportUcx, SeparateProcessEchoesEverySize) {
  for (const char* tls : {"-", "tcp"}) {
    SCOPED_TRACE(tls);
    UcxOptions o;
    if (std::string(tls) != "-") o.tls = tls;
    UcxListener listener("127.0.0.1", 0, o);
    Peer peer({"echo", "127.0.0.1", std::to_string(listener.port()), "256k", tls});
    ASSERT_GT(peer.pid(), 0);
    auto link = listener.accept(20s);
    exchange_all_sizes(*link);
    // The peer answers pings too (rtt.h).
    const RttStats rtt = measure_rtt(*link, 16384, 50);
    EXPECT_EQ(rtt.samples, 50u);
    EXPECT_GT(rtt.min.count(), 0);
    // A receiver that has gone to sleep (past its spin window, blocked on the UCX event fd) must
    // wake when a message comes, not at its next periodic check (heartbeat interval, 200 ms).
    for (int i = 0; i < 3; ++i) {
      std::this_thread::sleep_for(100ms);
      const RttStats idle = measure_rtt(*link, 64, 1);
      std::printf("round trip to a sleeping peer (%s): %.1f us\n", tls, idle.max.count() / 1e3);
      EXPECT_LT(idle.max, 50ms);
    }
    link.reset();
    EXPECT_EQ(peer.wait(), 0);  // the peer saw an orderly close
  }
}

TEST(TransportUcx, KilledPeerIsReportedWithinBound) {
  UcxListener listener("127.0.0.1", 0, fast_failure_options());
  Peer peer({"echo", "127.0.0.1", std::to_string(listener.port())});
  auto link = listener.accept(20s);
  exchange_all_sizes(*link);
  ::kill(peer.pid(), SIGKILL);
  const double secs = seconds_until_broken(*link, 10s);
  std::printf("killed peer noticed after %.3f s\n", secs);
  EXPECT_LT(secs, 2.0);  // heartbeat timeout 1 s plus a check interval; the socket usually tells at once
  EXPECT_THROW(link->send({1, 2, 3}), LinkBroken);
}

// Sending (not receiving) into a killed peer must also fail with LinkBroken, not crash or hang,
// over both the default transports (shared memory on one host) and TCP.
TEST(TransportUcx, SendingToKilledPeerFails) {
  for (const char* tls : {"-", "tcp"}) {
    SCOPED_TRACE(tls);
    UcxOptions o = fast_failure_options();
    if (std::string(tls) != "-") o.tls = tls;
    UcxListener listener("127.0.0.1", 0, o);
    Peer peer({"echo", "127.0.0.1", std::to_string(listener.port()), "256k", tls});
    auto link = listener.accept(20s);
    exchange_all_sizes(*link);
    ::kill(peer.pid(), SIGKILL);
    const auto big = pattern(1 << 20, 9);
    const auto t0 = Clock::now();
    bool broken = false;
    while (!broken && Clock::now() - t0 < 10s) {
      try {
        link->send(big);
      } catch (const LinkBroken& e) {
        broken = true;
        std::printf("send to killed peer (%s) failed after %.3f s: %s\n", tls,
                    std::chrono::duration<double>(Clock::now() - t0).count(), e.what());
      }
    }
    EXPECT_TRUE(broken);
    EXPECT_LT(Clock::now() - t0, 2s);
  }
}

TEST(TransportUcx, FrozenPeerTimesOutByHeartbeat) {
  UcxListener listener("127.0.0.1", 0, fast_failure_options());
  Peer peer({"echo", "127.0.0.1", std::to_string(listener.port())});
  auto link = listener.accept(20s);
  link->send({42});
  EXPECT_EQ(link->recv(10s).payload, std::vector<uint8_t>{42});
  ::kill(peer.pid(), SIGSTOP);  // alive, socket open, but silent: only heartbeats can tell
  std::string why;
  const double secs = seconds_until_broken(*link, 10s, &why);
  std::printf("frozen peer noticed after %.3f s: %s\n", secs, why.c_str());
  EXPECT_GT(secs, 0.5);  // not before the heartbeat timeout could have passed (1 s, minus the gap since last rx)
  EXPECT_LT(secs, 2.0);
  ::kill(peer.pid(), SIGKILL);
}

TEST(TransportUcx, ConnectToNobodyFailsInTime) {
  UcxOptions o;
  o.connect_timeout = 300ms;
  uint16_t port;
  { port = UcxListener("127.0.0.1", 0).port(); }  // a port that was free a moment ago
  const auto t0 = Clock::now();
  EXPECT_THROW(ucx_connect("127.0.0.1", port, o), LinkBroken);
  EXPECT_LT(Clock::now() - t0, 2s);
}
