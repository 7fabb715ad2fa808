#include "engine/cluster/rendezvous.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "engine/cluster/role.h"

#ifndef JARVIS_VERSION
#error "JARVIS_VERSION must be defined by the build (engine/CMakeLists.txt)"
#endif

namespace jarvis {

namespace {

using Json = nlohmann::json;
using Clock = std::chrono::steady_clock;

std::string short_hash(const std::string& h) { return h.size() > 16 ? h.substr(0, 16) + "..." : h; }

std::string layers(const ShardSpec& s) {
  std::string out = "layers [" + std::to_string(s.first_layer) + ", " + std::to_string(s.end_layer) + ")";
  if (s.has_embedding) out += " + embedding";
  if (s.has_head) out += " + head";
  return out;
}

void send_json(transport::Link& link, const Json& j) {
  const std::string text = j.dump();
  link.send(transport::MessageType::kData, kRendezvousTag, text.data(), text.size());
}

std::string receive_text(transport::Link& link, Clock::time_point deadline) {
  const auto left = std::max(Clock::duration::zero(), deadline - Clock::now());
  const transport::Message m = link.recv(left);
  if (m.type != transport::MessageType::kData || m.tag != kRendezvousTag) {
    throw RendezvousError(link.describe() + ": expected a rendezvous message, got type " +
                          std::to_string(static_cast<int>(m.type)) + " tag " + std::to_string(m.tag) +
                          " (is the peer a Jarvis rank of this version?)");
  }
  return std::string(m.payload.begin(), m.payload.end());
}

}  // namespace

std::string engine_version() { return JARVIS_VERSION; }

RankHello RankHello::make(int rank, int world_size, const ShardSpec& shard, const std::string& model_hash) {
  RankHello h;
  h.engine_version = jarvis::engine_version();
  h.model_hash = model_hash;
  h.rank = rank;
  h.world_size = world_size;
  h.shard = shard;
  h.host = local_hostname();
  return h;
}

std::string RankHello::to_json() const {
  return Json{{"protocol", protocol},         {"engine_version", engine_version},
              {"model_hash", model_hash},     {"rank", rank},
              {"world_size", world_size},     {"first_layer", shard.first_layer},
              {"end_layer", shard.end_layer}, {"has_embedding", shard.has_embedding},
              {"has_head", shard.has_head},   {"host", host}}
      .dump();
}

RankHello RankHello::from_json(const std::string& text, const std::string& from) {
  try {
    const Json j = Json::parse(text);
    RankHello h;
    h.protocol = j.at("protocol").get<int>();
    // A peer speaking another protocol may lack the other fields: report the protocol first.
    if (h.protocol != kRendezvousProtocol) {
      h.engine_version = j.value("engine_version", std::string("?"));
      h.rank = j.value("rank", -1);
      return h;
    }
    h.engine_version = j.at("engine_version").get<std::string>();
    h.model_hash = j.at("model_hash").get<std::string>();
    h.rank = j.at("rank").get<int>();
    h.world_size = j.at("world_size").get<int>();
    h.shard.first_layer = j.at("first_layer").get<int>();
    h.shard.end_layer = j.at("end_layer").get<int>();
    h.shard.has_embedding = j.at("has_embedding").get<bool>();
    h.shard.has_head = j.at("has_head").get<bool>();
    h.host = j.at("host").get<std::string>();
    return h;
  } catch (const Json::exception& e) {
    throw RendezvousError(from + ": malformed rendezvous hello: " + e.what());
  }
}

std::optional<std::string> hello_mismatch(const RankHello& me, const RankHello& o,
                                          const std::optional<ShardSpec>& expected) {
  const std::string r = "rank " + std::to_string(o.rank) + (o.host.empty() ? "" : " (" + o.host + ")");
  if (o.protocol != me.protocol || o.engine_version != me.engine_version) {
    return r + " runs engine version " + o.engine_version + " (protocol " + std::to_string(o.protocol) +
           "), rank 0 runs " + me.engine_version + " (protocol " + std::to_string(me.protocol) + ")";
  }
  if (o.model_hash != me.model_hash) {
    return r + " has model hash " + short_hash(o.model_hash) + ", rank 0 has " + short_hash(me.model_hash) +
           ": every rank must load the same model file";
  }
  if (o.world_size != me.world_size) {
    return r + " expects " + std::to_string(o.world_size) + " ranks, rank 0 expects " + std::to_string(me.world_size);
  }
  if (expected && (o.shard.first_layer != expected->first_layer || o.shard.end_layer != expected->end_layer ||
                   o.shard.has_embedding != expected->has_embedding || o.shard.has_head != expected->has_head)) {
    return r + " holds " + layers(o.shard) + " but the plan gives it " + layers(*expected);
  }
  return std::nullopt;
}

std::vector<RankHello> rendezvous_leader(const RankHello& mine, const std::vector<transport::Link*>& links,
                                         const std::vector<ShardSpec>& plan, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  const int world = mine.world_size;
  std::vector<RankHello> by_rank(static_cast<size_t>(std::max(world, 1)));
  by_rank[0] = mine;
  std::vector<bool> seen(by_rank.size(), false);
  seen[0] = true;
  std::optional<std::string> problem;
  if (static_cast<int>(links.size()) != world - 1) {
    problem = "rank 0 has " + std::to_string(links.size()) + " links for " + std::to_string(world) + " ranks";
  }
  if (!plan.empty() && !problem) {
    if (static_cast<int>(plan.size()) != world) {
      problem = "the plan has " + std::to_string(plan.size()) + " shards for " + std::to_string(world) + " ranks";
    } else if (auto m = hello_mismatch(mine, mine, plan[0])) {
      problem = *m;
    }
  }
  // Collect every hello even after a problem, so each rank gets the verdict rather than a timeout.
  std::optional<transport::LinkTimeout> silent;
  for (transport::Link* link : links) {
    try {
      const RankHello h = RankHello::from_json(receive_text(*link, deadline), link->describe());
      if (problem) continue;
      if (h.rank <= 0 || h.rank >= world) {
        problem = link->describe() + " says it is rank " + std::to_string(h.rank) + ", outside 1.." +
                  std::to_string(world - 1);
      } else if (seen[h.rank]) {
        problem = "two processes say they are rank " + std::to_string(h.rank) + " (" + by_rank[h.rank].host + " and " +
                  h.host + ")";
      } else {
        seen[h.rank] = true;
        by_rank[h.rank] = h;
        problem = hello_mismatch(mine, h, plan.empty() ? std::nullopt : std::optional<ShardSpec>(plan[h.rank]));
      }
    } catch (const transport::LinkTimeout& e) {
      if (!silent) silent.emplace(e);
      if (!problem) problem = std::string("a rank did not say hello in time: ") + e.what();
    } catch (const RendezvousError& e) {
      if (!problem) problem = e.what();
    }
  }
  const Json verdict = problem ? Json{{"ok", false}, {"error", *problem}} : Json{{"ok", true}};
  for (transport::Link* link : links) {
    try {
      send_json(*link, verdict);
    } catch (const transport::TransportError&) {
      // That rank is gone; the others still hear the verdict, and rank 0 reports below.
    }
  }
  if (silent) throw transport::LinkTimeout(*problem);
  if (problem) throw RendezvousError("rendezvous failed: " + *problem);
  return by_rank;
}

void rendezvous_follower(transport::Link& to_leader, const RankHello& mine, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  const std::string hello = mine.to_json();
  to_leader.send(transport::MessageType::kData, kRendezvousTag, hello.data(), hello.size());
  const std::string text = receive_text(to_leader, deadline);
  Json verdict;
  try {
    verdict = Json::parse(text);
    if (verdict.at("ok").get<bool>()) return;
  } catch (const Json::exception& e) {
    throw RendezvousError(to_leader.describe() + ": malformed rendezvous answer from rank 0: " + e.what());
  }
  throw RendezvousError("rendezvous failed (rank " + std::to_string(mine.rank) +
                        "): " + verdict.value("error", std::string("rank 0 gave no reason")));
}

}  // namespace jarvis
