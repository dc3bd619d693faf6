// Initialisation rules (docs/transfer.md): which tensor of another run's weights file or
// checkpoint initialises which parameter of a new model, and how. Planning only (names and
// shapes); parallel/init_from.h reads the values and writes them into a ParameterStore.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace vmoe {

enum class InitTransform : uint8_t {
  copy,         // the source as it is; shapes must be equal
  keep_fresh,   // no source: the target keeps its own initialisation
  reshape,      // the source's values in order; element counts must be equal
  stack,        // several sources [S...] -> target [n, S...] (sources comma-separated)
  tile,         // source [S...] -> target [E, S...], E copies (dense MLP -> identical experts)
  zoom_posemb,  // ViT position embedding [1, T, D] -> [1, T', D] (init_transforms.h)
};
const char* transform_name(InitTransform t);  // "COPY", "KEEP_FRESH", ... as in the config

struct InitRule {
  std::string target;  // ECMAScript regular expression, matching the whole target name
  // Source name, "$1"... replaced by the target match's groups ("$&" the whole name, "$$" a
  // dollar); "" = the target's own name. STACK: comma-separated names, one per leading index.
  std::string source;
  InitTransform transform = InitTransform::copy;
  bool required = false;  // true: a rule matching no target is an error
};

// Sparse upcycling (PAPER.md's successors): every MoE layer's experts start as copies of the
// dense MLP of the same block (kernels and biases, TILE), the router keeps its initialisation;
// every other parameter goes by name (the default).
std::vector<InitRule> upcycle_rules();

// A named tensor's global shape.
struct NamedShape {
  std::string name;
  Shape shape;
};

// How one target parameter is initialised.
struct InitStep {
  std::string target;
  Shape target_shape;
  InitTransform transform = InitTransform::copy;
  std::vector<std::string> sources;  // empty for keep_fresh
  int rule = -1;                     // index into the rules; -1: the default (same name)
};

struct InitPlan {
  std::vector<InitStep> steps;              // targets with a source, in target order
  std::vector<std::string> kept_by_rule;    // targets a KEEP_FRESH rule keeps
  std::vector<std::string> no_source;       // targets no rule matched and no source names
  std::vector<std::string> unused_sources;  // source tensors no step reads
  std::vector<int64_t> rule_targets;        // per rule: targets it matched
};

// Matches every target against the rules (the first whose `target` matches the whole name
// wins); a target no rule matches takes the source of the same name when there is one (its
// shape must be equal) and keeps its initialisation otherwise. Every shape is checked.
// Throws std::runtime_error, one line starting "init from 'FILE': " and naming the rule and
// both tensors with their shapes: a rule's regular expression that does not compile (or is
// longer than 1000 characters), a source missing from the file, shapes a transformation cannot
// map, a same-name source of another shape with no rule, a `required` rule that matched no
// target.
InitPlan plan_init(const std::vector<InitRule>& rules, const std::vector<NamedShape>& targets,
                   const std::vector<NamedShape>& sources, const std::string& source_file);

}  // namespace vmoe
