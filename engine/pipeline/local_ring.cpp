#include "engine/pipeline/local_ring.h"

#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <thread>

#include "csrc/util/error.h"
#include "engine/cluster/model_identity.h"
#include "engine/cluster/rendezvous.h"
#include "engine/pipeline/ring_connect.h"
#include "transport/ucx/ucx_link.h"

extern char** environ;

namespace jarvis {
namespace {

using Clock = std::chrono::steady_clock;

pid_t spawn(const std::vector<std::string>& args) {
  std::vector<char*> argv;
  for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  pid_t pid = -1;
  const int rc = posix_spawn(&pid, argv[0], nullptr, nullptr, argv.data(), environ);
  if (rc != 0) throw Error("cannot start " + args[0] + ": " + std::to_string(rc));
  return pid;
}

// The port a worker wrote once listening (it renames the file into place, so it is whole).
uint16_t wait_for_port(const std::string& path, pid_t pid, int rank, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  while (Clock::now() < deadline) {
    std::ifstream in(path);
    int port = 0;
    if (in >> port && port > 0 && port < 65536) return static_cast<uint16_t>(port);
    int st = 0;
    if (::waitpid(pid, &st, WNOHANG) == pid) {
      throw Error("pipeline rank " + std::to_string(rank) + " (jarvis-worker) exited before listening" +
                  (WIFEXITED(st) ? " with status " + std::to_string(WEXITSTATUS(st))
                                 : " on signal " + std::to_string(WTERMSIG(st))));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  throw Error("pipeline rank " + std::to_string(rank) + " (jarvis-worker) did not listen within " +
              std::to_string(timeout.count()) + " ms");
}

}  // namespace

LocalRing::LocalRing(const LocalRingOptions& o) {
  const int n = static_cast<int>(o.plan.size());
  if (n < 2) throw InvalidArgument("LocalRing: needs at least 2 ranks");
  char dir_template[] = "/tmp/jarvis_ring_XXXXXX";
  if (::mkdtemp(dir_template) == nullptr) throw Error("cannot create a temporary directory for port files");
  dir_ = dir_template;
  pids_.assign(static_cast<size_t>(n - 1), 0);
  try {
    transport::UcxOptions uo;
    uo.connect_timeout = o.timeout;
    transport::UcxListener listener("127.0.0.1", 0, uo);
    // The last rank first: it connects to rank 0; each earlier rank then connects to the one after.
    uint16_t next_port = listener.port();
    for (int r = n - 1; r >= 1; --r) {
      const ShardSpec& s = o.plan[static_cast<size_t>(r)];
      const std::string port_file = dir_ + "/rank" + std::to_string(r) + ".port";
      std::vector<std::string> args{
          o.worker_bin, "--model", o.model_path, "--first-layer", std::to_string(s.first_layer),
                 "--end-layer", std::to_string(s.end_layer), "--listen", "127.0.0.1:0", "--next",
                 "127.0.0.1:" + std::to_string(next_port), "--kv-blocks", std::to_string(o.kv_blocks),
                 "--page-size", std::to_string(o.page_size), "--threads", std::to_string(o.worker_threads),
                 "--connect-timeout", std::to_string(o.timeout.count() / 1000.0), "--port-file", port_file,
                 "--rank", std::to_string(r), "--ranks", std::to_string(n),
                 "--weights", weight_format_name(o.load.weights)};
      if (s.has_head) args.push_back("--tail");  // the last rank computes logits (jarvis-serve --tail last)
      if (static_cast<size_t>(r) < o.devices.size() && o.devices[static_cast<size_t>(r)].is_cuda()) {
        args.insert(args.end(), {"--device", o.devices[static_cast<size_t>(r)].str(), "--gpu-dtype",
                                 gpu_dtype_name(o.gpu_dtype), "--gpu-memory-fraction",
                                 std::to_string(o.gpu_memory_fraction)});
      }
      if (!o.link_delay.empty()) args.insert(args.end(), {"--link-delay", o.link_delay});
      if (!o.link_jitter.empty()) args.insert(args.end(), {"--link-jitter", o.link_jitter});
      if (!o.link_bandwidth.empty()) args.insert(args.end(), {"--link-bandwidth", o.link_bandwidth});
      pids_[static_cast<size_t>(r - 1)] = spawn(args);
      next_port = wait_for_port(port_file, pids_[static_cast<size_t>(r - 1)], r, o.timeout);
    }
    RankHello mine = RankHello::make(0, n, o.plan[0], model_fingerprint(o.model_path));
    mine.kv_blocks = o.kv_blocks;
    mine.page_size = o.page_size;
    RingLinks links = connect_ring_rank0(listener, "127.0.0.1", next_port, uo, mine, o.plan, o.timeout);
    to_next_ = std::move(links.to_next);
    from_last_ = std::move(links.from_prev);
  } catch (...) {
    to_next_.reset();
    from_last_.reset();
    stop(std::chrono::milliseconds(0));
    throw;
  }
}

std::string LocalRing::check_workers() {
  for (size_t i = 0; i < pids_.size(); ++i) {
    int st = 0;
    if (pids_[i] <= 0 || ::waitpid(pids_[i], &st, WNOHANG) != pids_[i]) continue;
    pids_[i] = 0;
    return "pipeline rank " + std::to_string(i + 1) + " (jarvis-worker) exited" +
           (WIFEXITED(st) ? " with status " + std::to_string(WEXITSTATUS(st))
                          : " on signal " + std::to_string(WTERMSIG(st)));
  }
  return "";
}

LocalRing::~LocalRing() { stop(std::chrono::milliseconds(0)); }

void LocalRing::stop(std::chrono::milliseconds grace) {
  const auto deadline = Clock::now() + grace;
  for (pid_t& pid : pids_) {
    if (pid <= 0) continue;
    for (;;) {
      const pid_t done = ::waitpid(pid, nullptr, WNOHANG);
      if (done == pid || done < 0) break;  // < 0: already reaped (it exited before listening)
      if (Clock::now() >= deadline) {
        ::kill(pid, SIGKILL);
        ::waitpid(pid, nullptr, 0);
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    pid = 0;
  }
  if (!dir_.empty()) {
    for (size_t r = 1; r <= pids_.size(); ++r) std::remove((dir_ + "/rank" + std::to_string(r) + ".port").c_str());
    ::rmdir(dir_.c_str());
    dir_.clear();
  }
}

}  // namespace jarvis
