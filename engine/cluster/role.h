// Which rank this process is. In order of precedence:
//   1. an explicit rank (--rank N);
//   2. the launcher's environment: JARVIS_RANK, OMPI_COMM_WORLD_RANK (Open MPI mpirun),
//      PMIX_RANK / PMI_RANK (MPICH, Intel MPI, srun --mpi=pmi2/pmix), SLURM_PROCID (srun);
//      the matching size variable (OMPI_COMM_WORLD_SIZE, PMI_SIZE, SLURM_NTASKS), when set, must
//      equal the number of nodes in the cluster file;
//   3. the host: exactly one node whose name or address host equals this host's name.
// Errors (ClusterConfigError) say what was tried and why it failed.
#pragma once

#include <functional>
#include <optional>
#include <string>

#include "engine/cluster/cluster_config.h"

namespace jarvis {

using EnvLookup = std::function<const char*(const char* name)>;  // nullptr when unset

struct Role {
  int rank = 0;
  std::string source;  // "--rank", "OMPI_COMM_WORLD_RANK", "hostname 'edge1'", ...
};

// `env` defaults to std::getenv, `hostname` to gethostname().
Role discover_role(const ClusterConfig& cluster, std::optional<int> explicit_rank, const EnvLookup& env = nullptr,
                   const std::optional<std::string>& hostname = std::nullopt);

std::string local_hostname();

}  // namespace jarvis
