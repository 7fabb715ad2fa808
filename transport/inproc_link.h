// Two ends of an in-process link, for ranks running as threads (tests, single-process pipelines).
// Messages are moved, not serialised; order is kept; destroying one end breaks the other
// (after it has drained what was already sent).
#pragma once

#include <memory>
#include <utility>

#include "transport/link.h"

namespace jarvis::transport {

std::pair<std::unique_ptr<Link>, std::unique_ptr<Link>> make_inproc_link_pair();

}  // namespace jarvis::transport
