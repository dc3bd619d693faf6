// `vmoe predict`: runs a trained model on images and writes logits, pre-logits, predictions
// and, for every MoE layer, the routing of every token (docs/predict.md has the layout).
#include <algorithm>
#include <cstdio>
#include <map>

#include "core/autograd.h"
#include "core/error_text.h"
#include "data/eval_batches.h"
#include "hdf5/hdf5_file.h"
#include "launch/commands.h"
#include "launch/evaluate.h"
#include "launch/experiment.h"
#include "launch/routing_flags.h"
#include "launch/saved_model.h"

namespace vmoe {

namespace {

// images u8 [N, H, W, C] (and labels, if present) from an HDF5 file.
data::ImageDataset read_h5_images(const std::string& path, const config::Config& cfg) {
  Hdf5File f(path, Hdf5File::Mode::Read);
  if (!f.has("images"))
    throw std::runtime_error("input " + quote_for_error(path) + " has no dataset 'images'");
  H5Array a = f.read("images");
  if (a.type != H5Type::u8 || a.shape.size() != 4) {
    throw std::runtime_error("input " + quote_for_error(path) +
                             ": 'images' must be uint8 [N, H, W, C], got " +
                             std::string(h5_type_name(a.type)) + " " + shape_str(a.shape));
  }
  data::ImageDataset ds;
  ds.n = a.shape[0];
  ds.height = a.shape[1];
  ds.width = a.shape[2];
  ds.channels = a.shape[3];
  ds.images = std::move(a.bytes);
  ds.num_classes = int32_t(cfg.model().num_classes());
  ds.labels.assign(size_t(ds.n), 0);
  if (f.has("labels")) {
    H5Array l = f.read("labels");
    if (l.type != H5Type::i32 || l.numel() != ds.n)
      throw std::runtime_error("input " + quote_for_error(path) + ": 'labels' must be int32 [N]");
    std::copy_n(reinterpret_cast<const int32_t*>(l.bytes.data()), ds.n, ds.labels.begin());
  }
  const auto& m = cfg.model();
  if (ds.height != m.image_size() || ds.width != m.image_size() || ds.channels != m.channels()) {
    throw std::runtime_error("input " + quote_for_error(path) + " images are " +
                             shape_str({ds.height, ds.width, ds.channels}) +
                             " but the model expects " +
                             shape_str({m.image_size(), m.image_size(), m.channels()}));
  }
  return ds;
}

template <class T>
void append(std::vector<T>& dst, const Tensor& t) {
  std::vector<T> v = t.cpu().to_vector<T>();
  dst.insert(dst.end(), v.begin(), v.end());
}

struct LayerRouting {
  std::vector<int32_t> experts;
  std::vector<float> weights;
  std::vector<uint8_t> kept;
  std::vector<int64_t> load;
  double dropped = 0;
};

}  // namespace

int run_predict(const PredictArgs& args) {
  SavedModel saved = load_saved_model(args.workdir, args.weights, args.overrides);
  const config::Config& cfg = saved.config;
  if (args.output.empty()) throw std::runtime_error("--output is required");
  // Test-time routing, as `vmoe eval`: the flags need a V-MoE; 0 / "" keep the config's.
  check_routing_flags(cfg, saved.weights_path, {args.capacity_factor, args.bpr});
  const bool from_test = args.input.empty() || args.input == "test";
  const data::ImageDataset ds =
      from_test ? load_split(cfg, data::Split::test) : read_h5_images(args.input, cfg);
  if (args.start < 0 || args.start >= ds.n)
    throw std::runtime_error("--start " + std::to_string(args.start) + " is outside the input's " +
                             std::to_string(ds.n) + " images");
  const int64_t end = args.count > 0 ? std::min(ds.n, args.start + args.count) : ds.n;
  const int64_t batch = args.batch_size > 0 ? args.batch_size : cfg.data().eval_batch_size();
  const int64_t tokens = saved.model->config().num_tokens();

  NoGrad no_grad;
  std::vector<float> logits, pre_logits;
  std::vector<int32_t> labels, predictions;
  std::vector<int64_t> indices;
  std::map<int64_t, LayerRouting> routing;
  int64_t classes = 0, rep = 0, k = 0, batches = 0;
  for (int64_t s = args.start; s < end; s += batch) {
    data::Batch b =
        data::eval_batch(ds, s, std::min(batch, end - s), normalization_from(cfg.data()));
    ForwardContext ctx{Mode::eval, {}, s};
    ctx.record_routing = true;
    if (args.capacity_factor != 0) ctx.eval_capacity_factor = args.capacity_factor;
    ctx.eval_batch_priority = parse_bpr(args.bpr);
    VitOutput out = saved.model->operator()(batch_images(b, saved.model->device()), ctx);
    classes = out.logits.size(1);
    rep = out.pre_logits.size(1);
    append(logits, to_dtype(out.logits, DType::f32));
    append(pre_logits, to_dtype(out.pre_logits, DType::f32));
    append(predictions, to_dtype(argmax(out.logits), DType::i32));
    labels.insert(labels.end(), b.labels.begin(), b.labels.end());
    indices.insert(indices.end(), b.indices.begin(), b.indices.end());
    for (const MoeReport& m : out.moe) {
      LayerRouting& r = routing[m.block];
      k = m.routing.experts.size(1);
      append(r.experts, to_dtype(m.routing.experts, DType::i32));
      append(r.weights, m.routing.weights);
      append(r.kept, m.routing.kept);
      const MoeStats stats = MoeStats::read(m);
      if (r.load.empty()) r.load.assign(stats.expert_load.size(), 0);
      for (size_t e = 0; e < stats.expert_load.size(); ++e)
        r.load[e] += stats.expert_load[e];
      r.dropped += stats.dropped_fraction;
    }
    ++batches;
  }
  const int64_t n = end - args.start;
  Hdf5File f(args.output, Hdf5File::Mode::Create);
  f.write("logits", H5Type::f32, {n, classes}, logits.data());
  f.write("pre_logits", H5Type::f32, {n, rep}, pre_logits.data());
  f.write("predictions", H5Type::i32, {n}, predictions.data());
  f.write("labels", H5Type::i32, {n}, labels.data());
  f.write("indices", H5Type::i64, {n}, indices.data());
  for (const auto& [block, r] : routing) {
    const std::string g = "moe/" + VisionTransformer::block_prefix(block).substr(8) + "/";
    f.write(g + "experts", H5Type::i32, {n, tokens, k}, r.experts.data());
    f.write(g + "weights", H5Type::f32, {n, tokens, k}, r.weights.data());
    f.write(g + "kept", H5Type::u8, {n, tokens, k}, r.kept.data());
    f.write(g + "expert_load", H5Type::i64, {int64_t(r.load.size())}, r.load.data());
    f.set_attr(g + "dropped_fraction", r.dropped / double(batches));
  }
  f.set_attr("source", from_test ? std::string("test split of the config's dataset") : args.input);
  f.set_attr("weights", saved.weights_path);
  f.set_attr("config", config::config_to_text(cfg));
  f.close();
  std::printf("predicted %lld images -> %s\n", static_cast<long long>(n), args.output.c_str());
  return 0;
}

}  // namespace vmoe
