// Reading the planned sources of init rules and writing the transformed values.
#include "parallel/init_from.h"

#include <map>
#include <optional>
#include <sstream>
#include <stdexcept>

#include "core/ops.h"
#include "hdf5/hdf5_file.h"
#include "parallel/checkpoint_reader.h"
#include "parallel/init_transforms.h"

namespace vmoe {

namespace {

const std::string kPrefix = "params/";

std::string name_list(const std::vector<std::string>& names, size_t shown = 6) {
  std::string out;
  for (size_t i = 0; i < names.size() && i < shown; ++i) {
    if (i > 0) out += ", ";
    out += names[i];
  }
  if (names.size() > shown) {
    out += ", ... (";
    out += std::to_string(names.size() - shown);
    out += " more)";
  }
  return out;
}

// The values of a target as the step computes them, at the target's global shape.
std::vector<double> step_values(const InitStep& step, const std::vector<std::vector<double>>& src,
                                const std::vector<Shape>& src_shapes, const Tensor& current) {
  switch (step.transform) {
    case InitTransform::copy:
    case InitTransform::reshape:
      return src[0];
    case InitTransform::stack:
      return stack_leading(src);
    case InitTransform::tile:
      return tile_leading(src[0], step.target_shape[0]);
    case InitTransform::zoom_posemb: {
      const std::vector<double> initial =
          to_dtype(current.detach(), DType::f64).cpu().to_vector<double>();
      return zoom_posemb(src[0], src_shapes[0][1], initial, step.target_shape[1],
                         step.target_shape[2]);
    }
    case InitTransform::keep_fresh:
      break;
  }
  throw std::logic_error("init: no values for a kept target");
}

}  // namespace

InitPlan init_from_file(const std::string& path, const std::vector<InitRule>& rules,
                        ParameterStore& params) {
  std::optional<Hdf5File> file;
  try {
    file.emplace(path, Hdf5File::Mode::Read);
  } catch (const std::exception& e) {
    throw std::runtime_error("init from '" + path + "': cannot open it (" + e.what() + ")");
  }
  std::vector<NamedShape> sources;
  for (const std::string& p : file->list()) {
    if (p.rfind(kPrefix, 0) != 0) continue;  // optimizer state, anything else
    sources.push_back({p.substr(kPrefix.size()), file->info(p).shape});
  }
  if (sources.empty()) {
    throw std::runtime_error("init from '" + path +
                             "': it holds no params/ tensors (not a weights file or checkpoint)");
  }
  std::vector<NamedShape> targets;
  for (const ParamInfo& info : params.infos())
    targets.push_back({info.name, info.shape});
  const InitPlan plan = plan_init(rules, targets, sources, path);
  std::map<std::string, Shape> shapes;
  for (const NamedShape& s : sources)
    shapes[s.name] = s.shape;

  for (const InitStep& step : plan.steps) {
    const ParamInfo& info = params.infos()[params.id(step.target)];
    const bool sharded = info.local_shape != info.shape;  // this process holds some experts
    const ExpertShard& shard = params.expert_shard();
    Tensor dst = params.value(step.target).detach();
    Tensor src;
    if (sharded && step.transform == InitTransform::copy) {
      // An expert tensor copied as it is: only this process's experts are read (as a
      // checkpoint is loaded on another rank count), never the whole [E, ...] tensor.
      const std::string& s = step.sources[0];
      const H5Array a = file->read_rows(kPrefix + s, shard.first, shard.count,
                                        {{H5Type::f32, H5Type::f64}, shapes.at(s), {}});
      src = Tensor::from_vector(h5_values(a), info.local_shape, kCpu);
    } else {
      std::vector<std::vector<double>> values;
      std::vector<Shape> src_shapes;
      for (const std::string& s : step.sources) {
        // Type, shape and stored size checked before reading (hdf5_checks.h).
        const H5Array a = file->read(kPrefix + s, {{H5Type::f32, H5Type::f64}, shapes.at(s), {}});
        values.push_back(h5_values(a));
        src_shapes.push_back(a.shape);
      }
      // A transformed source (a dense MLP tiled into experts, ...) is read whole and sliced.
      src =
          Tensor::from_vector(step_values(step, values, src_shapes, dst), step.target_shape, kCpu);
      if (sharded) src = src.slice(0, shard.first, shard.first + shard.count).contiguous();
    }
    copy_(dst, to_dtype(src, dst.dtype()).to(dst.device()));
  }
  return plan;
}

std::string init_report(const std::string& path, const std::vector<InitRule>& rules,
                        const InitPlan& plan) {
  std::map<std::string, int64_t> by_transform;
  for (const InitStep& s : plan.steps)
    ++by_transform[transform_name(s.transform)];
  std::ostringstream out;
  out << "init from " << path << ":";
  for (const auto& [name, count] : by_transform)
    out << " " << count << " " << name;
  out << ", " << plan.kept_by_rule.size() + plan.no_source.size() << " kept fresh\n";
  for (size_t i = 0; i < rules.size(); ++i) {
    out << "  rule " << i << " " << transform_name(rules[i].transform) << " '" << rules[i].target
        << "'";
    if (!rules[i].source.empty()) out << " <- '" << rules[i].source << "'";
    out << ": " << plan.rule_targets[i] << " targets\n";
  }
  if (!plan.kept_by_rule.empty())
    out << "  kept fresh by rule: " << name_list(plan.kept_by_rule) << "\n";
  if (!plan.no_source.empty())
    out << "  kept fresh, no source: " << name_list(plan.no_source) << "\n";
  if (!plan.unused_sources.empty())
    out << "  sources unused: " << name_list(plan.unused_sources) << "\n";
  return out.str();
}

}  // namespace vmoe
