// Matching init rules against target names and checking that the shapes map.
#include "parallel/init_rules.h"

#include <map>
#include <regex>
#include <set>
#include <stdexcept>

#include "parallel/init_transforms.h"

namespace vmoe {

namespace {

std::string quoted(const std::string& s) {
  return "'" + s + "'";
}

std::string tensor_text(const std::string& name, const Shape& shape) {
  return quoted(name) + " " + shape_str(shape);
}

std::string rule_text(const std::vector<InitRule>& rules, int i) {
  if (i < 0) return "the default (same name)";
  return "rule " + std::to_string(i) + " (" + transform_name(rules[size_t(i)].transform) +
         " target " + quoted(rules[size_t(i)].target) + ")";
}

std::vector<std::string> split_commas(const std::string& s) {
  std::vector<std::string> out;
  size_t from = 0;
  while (true) {
    const size_t comma = s.find(',', from);
    out.push_back(s.substr(from, comma == std::string::npos ? comma : comma - from));
    if (comma == std::string::npos) return out;
    from = comma + 1;
  }
}

// Empty when `sources` (shapes) map onto `target` by `t`, else why not.
std::string shape_problem(InitTransform t, const Shape& target, const std::vector<Shape>& sources) {
  switch (t) {
    case InitTransform::keep_fresh:
      return "";
    case InitTransform::copy:
      return sources[0] == target ? "" : "the shapes differ";
    case InitTransform::reshape:
      return shape_numel(sources[0]) == shape_numel(target) ? "" : "the element counts differ";
    case InitTransform::tile: {
      if (target.empty() || Shape(target.begin() + 1, target.end()) != sources[0])
        return "the target is not [E] + the source's shape";
      return "";
    }
    case InitTransform::stack: {
      for (const Shape& s : sources)
        if (s != sources[0]) return "the sources' shapes differ";
      Shape want{int64_t(sources.size())};
      want.insert(want.end(), sources[0].begin(), sources[0].end());
      return want == target ? ""
                            : "the target is not [" + std::to_string(sources.size()) +
                                  "] + the sources' shape";
    }
    case InitTransform::zoom_posemb: {
      const Shape& s = sources[0];
      if (s.size() != 3 || target.size() != 3 || s[0] != 1 || target[0] != 1 || s[2] != target[2])
        return "a position embedding zoom maps [1, T, D] to [1, T', D]";
      try {
        posemb_layout(s[1]);
        posemb_layout(target[1]);
      } catch (const std::invalid_argument& e) {
        return e.what();
      }
      return "";
    }
  }
  return "unknown transformation";
}

}  // namespace

const char* transform_name(InitTransform t) {
  switch (t) {
    case InitTransform::copy:
      return "COPY";
    case InitTransform::keep_fresh:
      return "KEEP_FRESH";
    case InitTransform::reshape:
      return "RESHAPE";
    case InitTransform::stack:
      return "STACK";
    case InitTransform::tile:
      return "TILE";
    case InitTransform::zoom_posemb:
      return "ZOOM_POSEMB";
  }
  return "?";
}

std::vector<InitRule> upcycle_rules() {
  return {
      {R"(encoder/block_(\d+)/moe/experts/(fc1|fc2)/(kernel|bias))", "encoder/block_$1/mlp/$2/$3",
       InitTransform::tile, true},
      {R"(encoder/block_(\d+)/moe/router/.*)", "", InitTransform::keep_fresh, false},
  };
}

InitPlan plan_init(const std::vector<InitRule>& rules, const std::vector<NamedShape>& targets,
                   const std::vector<NamedShape>& sources, const std::string& source_file) {
  auto fail = [&](const std::string& what) {
    throw std::runtime_error("init from " + quoted(source_file) + ": " + what);
  };
  std::vector<std::regex> patterns;
  for (size_t i = 0; i < rules.size(); ++i) {
    // libstdc++ compiles a regular expression recursively: a bounded length bounds the stack.
    if (rules[i].target.size() > 1000)
      fail("rule " + std::to_string(i) + ": target is longer than 1000 characters");
    try {
      patterns.emplace_back(rules[i].target, std::regex::ECMAScript);
    } catch (const std::regex_error& e) {
      fail("rule " + std::to_string(i) + ": target " + quoted(rules[i].target) +
           " is not a valid regular expression (" + e.what() + ")");
    }
  }
  std::map<std::string, Shape> source_shapes;
  for (const NamedShape& s : sources)
    source_shapes[s.name] = s.shape;
  std::set<std::string> used;

  InitPlan plan;
  plan.rule_targets.assign(rules.size(), 0);
  for (const NamedShape& target : targets) {
    InitStep step;
    step.target = target.name;
    step.target_shape = target.shape;
    std::smatch m;
    for (size_t i = 0; i < rules.size(); ++i) {
      if (!std::regex_match(target.name, m, patterns[i])) continue;
      step.rule = int(i);
      step.transform = rules[i].transform;
      ++plan.rule_targets[i];
      if (step.transform != InitTransform::keep_fresh) {
        const std::string named = rules[i].source.empty() ? target.name : m.format(rules[i].source);
        step.sources = step.transform == InitTransform::stack ? split_commas(named)
                                                              : std::vector<std::string>{named};
      }
      break;
    }
    if (step.rule < 0) {  // the default: a source of the same name, else the initialisation
      if (!source_shapes.count(target.name)) {
        plan.no_source.push_back(target.name);
        continue;
      }
      step.sources = {target.name};
      if (source_shapes[target.name] != target.shape) {
        fail("target " + tensor_text(target.name, target.shape) + " and source " +
             tensor_text(target.name, source_shapes[target.name]) +
             " differ in shape and no init rule maps them (add one: KEEP_FRESH, RESHAPE, "
             "ZOOM_POSEMB, ...)");
      }
    }
    if (step.transform == InitTransform::keep_fresh) {
      plan.kept_by_rule.push_back(target.name);
      continue;
    }
    std::vector<Shape> shapes;
    std::string source_list;
    for (const std::string& s : step.sources) {
      if (!source_shapes.count(s)) {
        fail(rule_text(rules, step.rule) + ": source " + quoted(s) + " for target " +
             quoted(target.name) + " is not in the file");
      }
      shapes.push_back(source_shapes[s]);
      source_list += (source_list.empty() ? "" : ", ") + tensor_text(s, source_shapes[s]);
      used.insert(s);
    }
    const std::string problem = shape_problem(step.transform, target.shape, shapes);
    if (!problem.empty()) {
      fail(rule_text(rules, step.rule) + ": cannot map source " + source_list + " to target " +
           tensor_text(target.name, target.shape) + ": " + problem);
    }
    plan.steps.push_back(std::move(step));
  }
  for (size_t i = 0; i < rules.size(); ++i) {
    if (rules[i].required && plan.rule_targets[i] == 0)
      fail(rule_text(rules, int(i)) + " is required but matches no parameter of the model");
  }
  for (const NamedShape& s : sources)
    if (!used.count(s.name)) plan.unused_sources.push_back(s.name);
  return plan;
}

}  // namespace vmoe
