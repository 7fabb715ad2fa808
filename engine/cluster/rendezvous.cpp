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

namespace {

Json hello_json(const RankHello& h) {
  return Json{{"protocol", h.protocol},         {"engine_version", h.engine_version},
              {"model_hash", h.model_hash},     {"rank", h.rank},
              {"world_size", h.world_size},     {"first_layer", h.shard.first_layer},
              {"end_layer", h.shard.end_layer}, {"has_embedding", h.shard.has_embedding},
              {"has_head", h.shard.has_head},   {"kv_blocks", h.kv_blocks},
              {"page_size", h.page_size},       {"host", h.host}};
}

RankHello hello_from(const Json& j, const std::string& from) {
  try {
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
    h.kv_blocks = j.at("kv_blocks").get<int64_t>();
    h.page_size = j.at("page_size").get<int>();
    h.host = j.at("host").get<std::string>();
    return h;
  } catch (const Json::exception& e) {
    throw RendezvousError(from + ": malformed rendezvous hello: " + e.what());
  }
}

Json parse_json(const std::string& text, const std::string& from) {
  try {
    return Json::parse(text);
  } catch (const Json::exception& e) {
    throw RendezvousError(from + ": malformed rendezvous message: " + e.what());
  }
}

}  // namespace

std::string RankHello::to_json() const { return hello_json(*this).dump(); }

RankHello RankHello::from_json(const std::string& text, const std::string& from) {
  return hello_from(parse_json(text, from), from);
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
  if (o.kv_blocks > 0 && me.kv_blocks > 0 && o.kv_blocks != me.kv_blocks) {
    return r + " has " + std::to_string(o.kv_blocks) + " KV blocks, rank 0 has " + std::to_string(me.kv_blocks) +
           ": every rank must reserve the same blocks (give kv_blocks in the cluster file, or the same memory budgets)";
  }
  if (o.page_size > 0 && me.page_size > 0 && o.page_size != me.page_size) {
    return r + " has KV pages of " + std::to_string(o.page_size) + " tokens, rank 0 has " +
           std::to_string(me.page_size);
  }
  if (expected && (o.shard.first_layer != expected->first_layer || o.shard.end_layer != expected->end_layer ||
                   o.shard.has_embedding != expected->has_embedding || o.shard.has_head != expected->has_head)) {
    return r + " holds " + layers(o.shard) + " but the plan gives it " + layers(*expected);
  }
  return std::nullopt;
}

namespace {

// Rank 0's bookkeeping: every hello seen so far, and the first problem.
class Checker {
 public:
  Checker(const RankHello& mine, const std::vector<ShardSpec>& plan, size_t links, bool star)
      : mine_(mine), plan_(plan) {
    const int world = mine.world_size;
    by_rank_.resize(static_cast<size_t>(std::max(world, 1)));
    seen_.assign(by_rank_.size(), false);
    by_rank_[0] = mine;
    seen_[0] = true;
    if (star && static_cast<int>(links) != world - 1) {
      note("rank 0 has " + std::to_string(links) + " links for " + std::to_string(world) + " ranks");
    }
    if (!plan.empty()) {
      if (static_cast<int>(plan.size()) != world) {
        note("the plan has " + std::to_string(plan.size()) + " shards for " + std::to_string(world) + " ranks");
      } else if (auto m = hello_mismatch(mine, mine, plan[0])) {
        note(*m);
      }
    }
  }

  void add(const RankHello& h, const std::string& from) {
    if (problem_) return;
    const int world = mine_.world_size;
    if (h.rank <= 0 || h.rank >= world) {
      note(from + " says it is rank " + std::to_string(h.rank) + ", outside 1.." + std::to_string(world - 1));
    } else if (seen_[h.rank]) {
      note("two processes say they are rank " + std::to_string(h.rank) + " (" + by_rank_[h.rank].host + " and " +
           h.host + ")");
    } else {
      seen_[h.rank] = true;
      by_rank_[h.rank] = h;
      if (auto m = hello_mismatch(mine_, h, plan_.empty() ? std::nullopt : std::optional<ShardSpec>(plan_[h.rank]))) {
        note(*m);
      }
    }
  }

  void note(const std::string& problem) {
    if (!problem_) problem_ = problem;
  }
  const std::optional<std::string>& problem() const { return problem_; }
  Json verdict() const { return problem_ ? Json{{"ok", false}, {"error", *problem_}} : Json{{"ok", true}}; }
  std::vector<RankHello> hellos() const { return by_rank_; }

 private:
  const RankHello& mine_;
  const std::vector<ShardSpec>& plan_;
  std::vector<RankHello> by_rank_;
  std::vector<bool> seen_;
  std::optional<std::string> problem_;
};

// Throws RendezvousError unless the verdict says ok.
void accept_verdict(const Json& verdict, const std::string& from, int rank) {
  bool ok = false;
  try {
    ok = verdict.at("ok").get<bool>();
  } catch (const Json::exception& e) {
    throw RendezvousError(from + ": malformed rendezvous answer from rank 0: " + e.what());
  }
  if (!ok) {
    throw RendezvousError("rendezvous failed (rank " + std::to_string(rank) +
                          "): " + verdict.value("error", std::string("rank 0 gave no reason")));
  }
}

}  // namespace

std::vector<RankHello> rendezvous_leader(const RankHello& mine, const std::vector<transport::Link*>& links,
                                         const std::vector<ShardSpec>& plan, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  Checker check(mine, plan, links.size(), true);
  // Collect every hello even after a problem, so each rank gets the verdict rather than a timeout.
  std::optional<transport::LinkTimeout> silent;
  for (transport::Link* link : links) {
    try {
      check.add(RankHello::from_json(receive_text(*link, deadline), link->describe()), link->describe());
    } catch (const transport::LinkTimeout& e) {
      if (!silent) silent.emplace(e);
      check.note(std::string("a rank did not say hello in time: ") + e.what());
    } catch (const RendezvousError& e) {
      check.note(e.what());
    }
  }
  const Json verdict = check.verdict();
  for (transport::Link* link : links) {
    try {
      send_json(*link, verdict);
    } catch (const transport::TransportError&) {
      // That rank is gone; the others still hear the verdict, and rank 0 reports below.
    }
  }
  if (silent) throw transport::LinkTimeout(*check.problem());
  if (check.problem()) throw RendezvousError("rendezvous failed: " + *check.problem());
  return check.hellos();
}

std::vector<RankHello> rendezvous_ring(const RankHello& mine, transport::Link* from_prev, transport::Link* to_next,
                                       const std::vector<ShardSpec>& plan, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  if (mine.world_size <= 1) {
    Checker check(mine, plan, 0, false);
    if (check.problem()) throw RendezvousError("rendezvous failed: " + *check.problem());
    return check.hellos();
  }
  if (from_prev == nullptr || to_next == nullptr) {
    throw RendezvousError("rank " + std::to_string(mine.rank) + ": a ring rendezvous needs both ring links");
  }
  const std::string prev = from_prev->describe();
  if (mine.rank == 0) {
    // Round 1: the hellos travel the ring and come back to rank 0 with every rank's appended.
    send_json(*to_next, Json{{"hellos", Json::array({hello_json(mine)})}});
    Checker check(mine, plan, 0, false);
    const Json round = parse_json(receive_text(*from_prev, deadline), prev);
    if (!round.contains("hellos") || !round["hellos"].is_array()) {
      throw RendezvousError(prev + ": malformed rendezvous message: no hello list");
    }
    const Json& list = round["hellos"];
    for (size_t i = 1; i < list.size(); ++i) check.add(hello_from(list[i], prev), prev);
    if (!check.problem() && static_cast<int>(list.size()) != mine.world_size) {
      check.note("the ring has " + std::to_string(list.size()) + " ranks, rank 0 expects " +
                 std::to_string(mine.world_size));
    }
    // Round 2: the verdict travels the ring; its return means every rank has heard it.
    send_json(*to_next, check.verdict());
    receive_text(*from_prev, deadline);
    if (check.problem()) throw RendezvousError("rendezvous failed: " + *check.problem());
    return check.hellos();
  }
  Json round = parse_json(receive_text(*from_prev, deadline), prev);
  if (!round.contains("hellos") || !round["hellos"].is_array()) {
    throw RendezvousError(prev + ": malformed rendezvous message: no hello list");
  }
  round["hellos"].push_back(hello_json(mine));
  send_json(*to_next, round);
  const Json verdict = parse_json(receive_text(*from_prev, deadline), prev);
  send_json(*to_next, verdict);
  accept_verdict(verdict, prev, mine.rank);
  return {};
}

void rendezvous_follower(transport::Link& to_leader, const RankHello& mine, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  send_json(to_leader, hello_json(mine));
  accept_verdict(parse_json(receive_text(to_leader, deadline), to_leader.describe()), to_leader.describe(), mine.rank);
}

}  // namespace jarvis
