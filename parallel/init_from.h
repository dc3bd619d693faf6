// Initialising an allocated ParameterStore from a weights file (parallel/weights_file.h) or a
// training checkpoint (parallel/checkpoint.h) through init rules (parallel/init_rules.h): both
// hold the parameters as params/<name> at their global shapes. Optimizer state is not read.
#pragma once
#include <string>
#include <vector>

#include "core/parameters.h"
#include "parallel/init_rules.h"

namespace vmoe {

// Plans (plan_init) and applies `rules` with the tensors of `path`: every planned target gets
// its transformed source values (converted to the store's dtype), an expert-sharded target only
// this process's experts' rows; the other targets keep their values. The same on every rank
// count: values depend on the file only. Not collective. Throws std::runtime_error, one line
// naming the file: a missing or unreadable file, one without params/ tensors, and plan_init's
// errors.
InitPlan init_from_file(const std::string& path, const std::vector<InitRule>& rules,
                        ParameterStore& params);

// A short report of a plan: targets per transformation, per rule, the targets that kept their
// initialisation and the source tensors nothing read (long lists cut after a few names).
std::string init_report(const std::string& path, const std::vector<InitRule>& rules,
                        const InitPlan& plan);

}  // namespace vmoe
