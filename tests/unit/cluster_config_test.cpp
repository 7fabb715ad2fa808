// Cluster file parsing (engine/cluster/cluster_config.h) and rank discovery (role.h).
#include "engine/cluster/cluster_config.h"

#include <gtest/gtest.h>

#include <map>
#include <string>

#include "engine/cluster/role.h"
#include "transport/transport_error.h"

using namespace jarvis;
using namespace std::chrono_literals;

namespace {

const std::string kExample = std::string(JARVIS_SOURCE_DIR) + "/engine/cluster/examples/smollm2-3-local.json";

std::string error_of(const std::string& json) {
  try {
    parse_cluster_config(json, "c.json");
  } catch (const ClusterConfigError& e) {
    return e.what();
  }
  return "";
}

// A valid two-node file with one field replaced by `patch` ("" keeps it as is).
std::string two_nodes(const std::string& node1_extra = "", const std::string& top_extra = "") {
  return R"({"model": "m.gguf", )" + top_extra + R"("nodes": [
    {"name": "a", "address": "127.0.0.1:7000"},
    {"name": "b", "address": "127.0.0.1:7001")" +
         node1_extra + "}]}";
}

}  // namespace

TEST(ClusterConfig, ReadsTheExampleFile) {
  const ClusterConfig c = read_cluster_config(kExample);
  ASSERT_EQ(c.n_ranks(), 3);
  // Relative model paths are anchored at the cluster file's folder.
  EXPECT_EQ(c.model, std::string(JARVIS_SOURCE_DIR) +
                         "/engine/cluster/examples/../../../models/SmolLM2-135M-Instruct.Q4_1.gguf");
  EXPECT_EQ(c.nodes[1].name, "rank1");
  EXPECT_EQ(c.nodes[1].host, "127.0.0.1");
  EXPECT_EQ(c.nodes[1].port, 7101);
  EXPECT_FALSE(c.nodes[1].device.is_cuda());
  EXPECT_EQ(c.nodes[0].memory_bytes, int64_t{2} << 30);
  EXPECT_EQ(c.nodes[2].model, c.model);
  EXPECT_EQ(c.split(), (std::vector<int>{10, 10, 10}));
  EXPECT_EQ(c.memory_budgets(), (std::vector<int64_t>{int64_t{2} << 30, int64_t{1} << 30, int64_t{1} << 30}));
  EXPECT_EQ(c.ends.head_rank, 0);
  EXPECT_EQ(c.ends.tail_rank, 0);
  const transport::LinkShapes shapes = c.link_shapes();
  EXPECT_EQ(shapes.get(0, 1).delay, 2ms);
  EXPECT_EQ(shapes.get(2, 1).delay, 10ms);
  EXPECT_EQ(shapes.get(1, 2).jitter, 1ms);
  EXPECT_DOUBLE_EQ(shapes.get(0, 2).bits_per_second, 100e6);
  // The command line overrides the file link by link and may add a default for the rest.
  const transport::LinkShapes cli = c.link_shapes("1-2:5ms,*:1ms", "", "0-1:1gbit");
  EXPECT_EQ(cli.get(1, 2).delay, 5ms);
  EXPECT_EQ(cli.get(1, 2).jitter, 1ms);  // from the file, untouched
  EXPECT_EQ(cli.get(0, 1).delay, 2ms);
  EXPECT_DOUBLE_EQ(cli.get(0, 1).bits_per_second, 1e9);
  EXPECT_EQ(cli.get(3, 4).delay, 1ms);
  EXPECT_THROW(c.link_shapes("0-1:2parsecs"), transport::LinkSpecError);
  // The example plans and fits: the file's split passes plan_split.
  EXPECT_NO_THROW(plan_split(30, c.n_ranks(), c.split(), c.ends));
}

TEST(ClusterConfig, OptionalFieldsAndForms) {
  const ClusterConfig c = parse_cluster_config(
      two_nodes(R"(, "device": "cuda:1", "memory": 3221225472, "model": "/abs/x.gguf")", R"("head": 1, "tail": "b", )"),
      "/etc/jarvis/c.json");
  EXPECT_EQ(c.model, "/etc/jarvis/m.gguf");
  EXPECT_EQ(c.nodes[1].model, "/abs/x.gguf");
  EXPECT_TRUE(c.nodes[1].device.is_cuda());
  EXPECT_EQ(c.nodes[1].device.index, 1);
  EXPECT_EQ(c.nodes[1].device.str(), "cuda:1");
  EXPECT_EQ(c.nodes[1].memory_bytes, int64_t{3} << 30);
  EXPECT_EQ(c.nodes[0].memory_bytes, 0);
  EXPECT_FALSE(c.split().has_value());  // no layers anywhere: divide evenly
  EXPECT_EQ(c.ends.head_rank, 1);
  EXPECT_EQ(c.ends.tail_rank, 1);
  const ClusterConfig v6 =
      parse_cluster_config(R"({"model": "m", "nodes": [{"name": "a", "address": "[::1]:80", "layers": [0, 3]}]})", "");
  EXPECT_EQ(v6.nodes[0].host, "::1");
  EXPECT_EQ(v6.nodes[0].port, 80);
  EXPECT_EQ(v6.split(), std::vector<int>{3});
}

TEST(ClusterConfig, EveryMalformedFieldIsNamed) {
  const std::map<std::string, std::string> cases = {
      // broken JSON and top level
      {"{", "c.json: JSON:"},
      {"[]", "top level: must be an object"},
      {R"({"nodes": []})", "model: missing"},
      {R"({"model": 3, "nodes": []})", "model: must be a string"},
      {R"({"model": "m"})", "nodes: missing"},
      {R"({"model": "m", "nodes": []})", "nodes: must be a non-empty list"},
      {R"({"model": "m", "nodes": [1]})", "nodes[0]: must be an object"},
      {two_nodes("", R"("modle": "x", )"), "modle: unknown field"},
      // node fields
      {two_nodes(R"(, "adress": "x")"), "nodes[1].adress: unknown field"},
      {R"({"model": "m", "nodes": [{"address": "h:1"}]})", "nodes[0].name: missing"},
      {R"({"model": "m", "nodes": [{"name": "a"}]})", "nodes[0].address: missing"},
      {R"({"model": "m", "nodes": [{"name": "a", "address": "h:1"}, {"name": "a", "address": "h:2"}]})",
       "nodes[1].name: 'a' is also the name of an earlier node"},
      {R"({"model": "m", "nodes": [{"name": "a", "address": "host"}]})", "nodes[0].address: 'host' has no port"},
      {R"({"model": "m", "nodes": [{"name": "a", "address": ":7000"}]})", "nodes[0].address: ':7000' has no host"},
      {R"({"model": "m", "nodes": [{"name": "a", "address": "h:70000"}]})", "port '70000' is not a number in 1..65535"},
      {R"({"model": "m", "nodes": [{"name": "a", "address": "h:x1"}]})", "port 'x1'"},
      {R"({"model": "m", "nodes": [{"name": "a", "address": "::1:80"}]})", "write an IPv6 address as [addr]:port"},
      {two_nodes(R"(, "device": "tpu")"), "nodes[1].device: 'tpu' is not a device"},
      {two_nodes(R"(, "device": "cuda:x")"), "nodes[1].device: 'cuda:x' is not a device"},
      {two_nodes(R"(, "device": "gpu")"), "nodes[1].device: 'gpu' is not a device (cpu, cuda or cuda:N)"},
      {two_nodes(R"(, "device": 0)"), "nodes[1].device: must be a string"},
      {two_nodes(R"(, "memory": "8 parsecs")"), "nodes[1].memory: '8 parsecs' is not a memory size"},
      {two_nodes(R"(, "memory": -5)"), "nodes[1].memory: must be a positive byte count"},
      {two_nodes(R"(, "memory": true)"), "nodes[1].memory: must be a positive byte count"},
      {two_nodes(R"(, "layers": 3)"), "nodes[1].layers: given here but not on nodes[0]"},
      {R"({"model": "m", "nodes": [{"name": "a", "address": "h:1", "layers": 3}, {"name": "b", "address": "h:2"}]})",
       "nodes[1].layers: missing, but nodes[0] has layers"},
      {R"({"model": "m", "nodes": [{"name": "a", "address": "h:1", "layers": -3}]})", "nodes[0].layers: -3 is outside"},
      {R"({"model": "m", "nodes": [{"name": "a", "address": "h:1", "layers": "3"}]})",
       "nodes[0].layers: must be an integer"},
      {R"({"model": "m", "nodes": [{"name": "a", "address": "h:1", "layers": [0]}]})",
       "nodes[0].layers: a range must be [first, end)"},
      {R"({"model": "m", "nodes": [{"name": "a", "address": "h:1", "layers": [5, 2]}]})", "ends before it starts"},
      {R"({"model": "m", "nodes": [{"name": "a", "address": "h:1", "layers": [0, 10]},
          {"name": "b", "address": "h:2", "layers": [11, 20]}]})",
       "nodes[1].layers: range [11,20] must start at layer 10"},
      // ends and links
      {two_nodes("", R"("head": "c", )"), "head: no node is named 'c'"},
      {two_nodes("", R"("tail": 2, )"), "tail: 2 is outside [0, 1]"},
      {two_nodes("", R"("links": {}, )"), "links: must be a list"},
      {two_nodes("", R"("links": [{"from": "a"}], )"), "links[0].to: missing"},
      {two_nodes("", R"("links": [{"from": "a", "to": "z"}], )"), "links[0].to: no node is named 'z'"},
      {two_nodes("", R"("links": [{"from": "a", "to": 0}], )"), "links[0]: joins rank 0 to itself"},
      {two_nodes("", R"("links": [{"from": "a", "to": "b", "delay": "2 weeks"}], )"), "links[0].delay: bad duration"},
      {two_nodes("", R"("links": [{"from": "a", "to": "b", "jitter": 5}], )"), "links[0].jitter: must be a string"},
      {two_nodes("", R"("links": [{"from": "a", "to": "b", "bandwidth": "fast"}], )"), "links[0].bandwidth:"},
      {two_nodes("", R"("links": [{"from": "a", "to": "b", "delay": "1ms", "loss": "1%"}], )"),
       "links[0].loss: unknown field"},
  };
  for (const auto& [json, expected] : cases) {
    const std::string e = error_of(json);
    EXPECT_NE(e.find(expected), std::string::npos) << "input: " << json << "\nerror: " << e;
    EXPECT_EQ(e.rfind("c.json: ", 0), 0u) << e;  // every error names the file
  }
  EXPECT_THROW(read_cluster_config("/nonexistent/cluster.json"), ClusterConfigError);
}

TEST(ClusterConfig, ByteSizesAndDevices) {
  EXPECT_EQ(parse_byte_size("8GiB", "m"), int64_t{8} << 30);
  EXPECT_EQ(parse_byte_size("8G", "m"), int64_t{8} << 30);
  EXPECT_EQ(parse_byte_size("512MiB", "m"), int64_t{512} << 20);
  EXPECT_EQ(parse_byte_size("2GB", "m"), int64_t{2000000000});
  EXPECT_EQ(parse_byte_size("1.5 KiB", "m"), 1536);
  EXPECT_EQ(parse_byte_size("1048576", "m"), 1048576);
  for (const char* bad : {"", "GiB", "0", "-1GiB", "8 parsecs", "1e3"}) {
    EXPECT_THROW(parse_byte_size(bad, "m"), ClusterConfigError) << bad;
  }
  // Devices are parsed by csrc/model/device.h (--device's syntax): one parser for both.
  const ClusterConfig c = parse_cluster_config(two_nodes(R"(, "device": "cuda")"), "c.json");
  EXPECT_FALSE(c.nodes[0].device.is_cuda());  // no "device": the CPU
  EXPECT_EQ(c.nodes[1].device.str(), "cuda:0");
}

namespace {

EnvLookup fake_env(std::map<std::string, std::string> vars) {
  auto shared = std::make_shared<std::map<std::string, std::string>>(std::move(vars));
  return [shared](const char* name) -> const char* {
    auto it = shared->find(name);
    return it == shared->end() ? nullptr : it->second.c_str();
  };
}

}  // namespace

TEST(ClusterRole, PrecedenceRankThenLauncherThenHost) {
  const ClusterConfig c = read_cluster_config(kExample);
  const EnvLookup none = fake_env({});
  EXPECT_EQ(discover_role(c, 2, fake_env({{"OMPI_COMM_WORLD_RANK", "1"}}), "rank0").rank, 2);
  EXPECT_EQ(
      discover_role(c, std::nullopt, fake_env({{"OMPI_COMM_WORLD_RANK", "1"}, {"OMPI_COMM_WORLD_SIZE", "3"}}), "rank0")
          .rank,
      1);
  const Role slurm = discover_role(c, std::nullopt, fake_env({{"SLURM_PROCID", "2"}, {"SLURM_NTASKS", "3"}}), "x");
  EXPECT_EQ(slurm.rank, 2);
  EXPECT_EQ(slurm.source, "SLURM_PROCID");
  EXPECT_EQ(discover_role(c, std::nullopt, fake_env({{"PMI_RANK", "1"}}), "x").rank, 1);
  EXPECT_EQ(discover_role(c, std::nullopt, fake_env({{"PMIX_RANK", "2"}}), "x").rank, 2);
  EXPECT_EQ(discover_role(c, std::nullopt, fake_env({{"JARVIS_RANK", "0"}, {"SLURM_PROCID", "2"}}), "x").rank, 0);
  // By host name: a node's name...
  const Role by_name = discover_role(c, std::nullopt, none, "rank1");
  EXPECT_EQ(by_name.rank, 1);
  EXPECT_EQ(by_name.source, "hostname 'rank1'");
  // ...or its address host, when exactly one node has it.
  const ClusterConfig multi = parse_cluster_config(
      R"({"model": "m", "nodes": [{"name": "a", "address": "edge-a:1"}, {"name": "b", "address": "edge-b:1"}]})", "");
  EXPECT_EQ(discover_role(multi, std::nullopt, none, "edge-b").rank, 1);
}

TEST(ClusterRole, ErrorsSayWhatWasTried) {
  const ClusterConfig c = read_cluster_config(kExample);
  auto message = [&](std::optional<int> rank, std::map<std::string, std::string> env, const std::string& host) {
    try {
      discover_role(c, rank, fake_env(std::move(env)), host);
    } catch (const ClusterConfigError& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_NE(message(3, {}, "x").find("--rank gives rank 3 but"), std::string::npos);
  EXPECT_NE(message(std::nullopt, {{"SLURM_PROCID", "5"}}, "x").find("SLURM_PROCID gives rank 5"), std::string::npos);
  EXPECT_NE(message(std::nullopt, {{"PMI_RANK", "one"}}, "x").find("PMI_RANK='one' is not"), std::string::npos);
  EXPECT_NE(message(std::nullopt, {{"OMPI_COMM_WORLD_RANK", "1"}, {"OMPI_COMM_WORLD_SIZE", "4"}}, "x")
                .find("OMPI_COMM_WORLD_SIZE=4 processes were launched but"),
            std::string::npos);
  const std::string none = message(std::nullopt, {}, "elsewhere");
  EXPECT_NE(none.find("no node is named 'elsewhere'"), std::string::npos) << none;
  EXPECT_NE(none.find("SLURM_PROCID"), std::string::npos) << none;
  // Three local ranks share 127.0.0.1: the host alone cannot pick one.
  EXPECT_NE(message(std::nullopt, {}, "127.0.0.1").find("3 nodes match host '127.0.0.1'"), std::string::npos);
}
