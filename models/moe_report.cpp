// Host figures of a MoE report.
#include "models/moe_report.h"

#include <cmath>

namespace vmoe {

MoeStats MoeStats::read(const MoeReport& report) {
  MoeStats out;
  const std::vector<double> s = report.stats.cpu().to_vector<double>();
  out.importance_loss = s[kImportanceLoss];
  out.load_loss = s[kLoadLoss];
  out.gshard_loss = s[kGshardLoss];
  out.dropped_fraction = s[kDroppedFraction];
  for (double l : report.expert_load.cpu().to_vector<double>())
    out.expert_load.push_back(int64_t(std::llround(l)));
  return out;
}

}  // namespace vmoe
