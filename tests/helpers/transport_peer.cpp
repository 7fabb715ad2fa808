// The far end of the two-process UCX tests and of the latency measurement:
//   transport_peer echo HOST PORT [RNDV_THRESH|-] [TLS|-]   connect, echo data, answer pings until the link ends
//   transport_peer rtt HOST PORT BYTES COUNT [RNDV_THRESH|-] [TLS|-]   connect, print round-trip stats
//   transport_peer serve PORT [RNDV_THRESH|-] [TLS|-]        listen on PORT, accept one link, echo
// A trailing "peer" turns on UCX's peer error handling (UcxOptions::ucx_peer_error_handling).
// A tool, so it may exit with a status: 0 when the peer closed the link, 1 on any other error.
#include <cstdio>
#include <cstdlib>
#include <string>

#include "transport/rtt.h"
#include "transport/ucx/ucx_link.h"

using namespace jarvis::transport;

namespace {

UcxOptions options_from(int argc, char** argv, int first) {
  UcxOptions o;
  if (argc > first && std::string(argv[first]) != "-") o.rndv_thresh = argv[first];
  if (argc > first && std::string(argv[first]) == "-") o.rndv_thresh.clear();
  if (argc > first + 1 && std::string(argv[first + 1]) != "-") o.tls = argv[first + 1];
  if (argc > first + 2) o.ucx_peer_error_handling = std::string(argv[first + 2]) == "peer";
  return o;
}

int echo(Link& link) {
  for (;;) {
    Message m;
    try {
      m = link.recv(std::chrono::seconds(60));
    } catch (const LinkBroken&) {
      return 0;  // the test closed or dropped the link: normal end
    }
    if (!answer_ping(link, m)) link.send(MessageType::kData, m.tag, m.payload.data(), m.payload.size());
  }
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const std::string mode = argc > 1 ? argv[1] : "";
    if (mode == "echo" && argc >= 4) {
      auto link = ucx_connect(argv[2], static_cast<uint16_t>(std::atoi(argv[3])), options_from(argc, argv, 4));
      return echo(*link);
    }
    if (mode == "serve" && argc >= 3) {
      UcxListener l("127.0.0.1", static_cast<uint16_t>(std::atoi(argv[2])), options_from(argc, argv, 3));
      auto link = l.accept(std::chrono::seconds(30));
      return echo(*link);
    }
    if (mode == "rtt" && argc >= 6) {
      auto link = ucx_connect(argv[2], static_cast<uint16_t>(std::atoi(argv[3])), options_from(argc, argv, 6));
      const size_t bytes = std::strtoull(argv[4], nullptr, 10), count = std::strtoull(argv[5], nullptr, 10);
      measure_rtt(*link, bytes, count / 10 + 1);  // warm-up: wire-up and first-touch costs
      const RttStats s = measure_rtt(*link, bytes, count);
      std::printf("bytes=%zu samples=%zu min_us=%.1f median_us=%.1f mean_us=%.1f p99_us=%.1f\n", bytes, s.samples,
                  s.min.count() / 1e3, s.median.count() / 1e3, s.mean.count() / 1e3, s.p99.count() / 1e3);
      return 0;
    }
    std::fprintf(stderr, "usage: transport_peer echo HOST PORT | serve PORT | rtt HOST PORT BYTES COUNT [RNDV|-] [TLS|-] [peer|none]\n");
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "transport_peer: %s\n", e.what());
    return 1;
  }
}
