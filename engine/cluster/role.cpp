#include "engine/cluster/role.h"

#include <unistd.h>

#include <cctype>
#include <climits>
#include <cstdlib>

namespace jarvis {

namespace {

struct EnvPair {
  const char* rank;
  const char* size;  // nullptr: the launcher has no size variable we check
};

constexpr EnvPair kLaunchers[] = {
    {"JARVIS_RANK", nullptr},         {"OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"},
    {"PMIX_RANK", nullptr},           {"PMI_RANK", "PMI_SIZE"},
    {"SLURM_PROCID", "SLURM_NTASKS"},
};

int parse_env_int(const char* name, const char* value) {
  const std::string s(value);
  bool digits = !s.empty() && s.size() <= 9;
  for (char c : s) digits = digits && std::isdigit(static_cast<unsigned char>(c));
  if (!digits) throw ClusterConfigError(std::string(name) + "='" + s + "' is not a non-negative integer");
  return std::stoi(s);
}

void check_rank(const ClusterConfig& c, int rank, const std::string& source) {
  if (rank < 0 || rank >= c.n_ranks()) {
    throw ClusterConfigError(source + " gives rank " + std::to_string(rank) + " but " +
                             (c.path.empty() ? "the cluster file" : c.path) + " has " + std::to_string(c.n_ranks()) +
                             " nodes (ranks 0.." + std::to_string(c.n_ranks() - 1) + ")");
  }
}

}  // namespace

std::string local_hostname() {
  char buf[HOST_NAME_MAX + 1] = {};
  if (::gethostname(buf, sizeof buf - 1) != 0) return "";
  return buf;
}

Role discover_role(const ClusterConfig& c, std::optional<int> explicit_rank, const EnvLookup& env_in,
                   const std::optional<std::string>& hostname) {
  if (explicit_rank) {
    check_rank(c, *explicit_rank, "--rank");
    return Role{*explicit_rank, "--rank"};
  }
  const EnvLookup env = env_in ? env_in : EnvLookup([](const char* n) -> const char* { return std::getenv(n); });
  for (const EnvPair& l : kLaunchers) {
    const char* v = env(l.rank);
    if (v == nullptr) continue;
    const int rank = parse_env_int(l.rank, v);
    check_rank(c, rank, l.rank);
    if (l.size != nullptr) {
      if (const char* size = env(l.size)) {
        const int n = parse_env_int(l.size, size);
        if (n != c.n_ranks()) {
          throw ClusterConfigError(std::string(l.size) + "=" + std::to_string(n) + " processes were launched but " +
                                   (c.path.empty() ? "the cluster file" : c.path) + " has " +
                                   std::to_string(c.n_ranks()) + " nodes");
        }
      }
    }
    return Role{rank, l.rank};
  }
  const std::string host = hostname ? *hostname : local_hostname();
  std::vector<int> matches;
  for (int r = 0; r < c.n_ranks(); ++r) {
    if (c.nodes[r].name == host || c.nodes[r].host == host) matches.push_back(r);
  }
  if (matches.size() == 1) return Role{matches[0], "hostname '" + host + "'"};
  std::string why = matches.empty() ? "no node is named '" + host + "' or has it as its address host"
                                    : std::to_string(matches.size()) + " nodes match host '" + host + "'";
  throw ClusterConfigError(
      "cannot tell which rank this process is: no --rank, no launcher rank variable "
      "(JARVIS_RANK, OMPI_COMM_WORLD_RANK, PMIX_RANK, PMI_RANK, SLURM_PROCID), and " +
      why);
}

}  // namespace jarvis
