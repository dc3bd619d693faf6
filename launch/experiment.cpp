// Config -> run objects.
#include "launch/experiment.h"

#include <omp.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <thread>

#include "core/optim/adamw.h"
#include "core/optim/sgd.h"
#include "data/cifar_reader.h"
#include "data/class_subset.h"
#include "data/hdf5_shards.h"
#include "data/image_folder.h"
#include "data/subset_source.h"

namespace vmoe {

VitConfig vit_config_from(const config::ModelConfig& m) {
  VitConfig v;
  v.image_size = m.image_size();
  v.channels = m.channels();
  v.patch_size = m.patch_size();
  v.hidden_size = m.hidden_size();
  v.mlp_dim = m.mlp_dim();
  v.num_heads = m.num_heads();
  v.num_layers = m.num_layers();
  v.num_classes = m.num_classes();
  v.classifier = m.classifier() == config::ModelConfig::GAP ? VitConfig::Classifier::gap
                                                            : VitConfig::Classifier::token;
  v.representation_size = m.representation_size();
  v.dropout_rate = m.dropout_rate();
  v.attention_dropout_rate = m.attention_dropout_rate();
  v.layer_norm_eps = m.layer_norm_eps();
  if (m.has_head_bias_init()) v.head_bias_init = m.head_bias_init();
  if (m.has_moe()) v.moe = moe_config_from(m.moe(), m.num_layers());
  v.recompute = m.recompute() == config::ModelConfig::BLOCKS ? VitConfig::Recompute::blocks
                                                             : VitConfig::Recompute::none;
  return v;
}

MoeConfig moe_config_from(const config::MoeConfig& e, int64_t num_layers) {
  MoeConfig m;
  using R = config::MoeConfig;
  m.router = e.router() == R::EXPERTS_CHOICE ? MoeRouter::experts_choice
             : e.router() == R::SOFT         ? MoeRouter::soft
                                             : MoeRouter::top_k;
  m.dropless = e.dropless();
  m.slots_per_expert = e.slots_per_expert();
  m.num_experts = e.num_experts();
  // Experts Choice and Soft MoE have no k; 1 keeps k-sized figures (capacity, report) defined.
  m.k = m.router == MoeRouter::top_k ? e.k() : 1;
  m.capacity_factor = e.capacity_factor();
  m.eval_capacity_factor =
      e.has_eval_capacity_factor() ? e.eval_capacity_factor() : e.capacity_factor();
  m.batch_priority = e.batch_priority();
  m.eval_batch_priority =
      e.has_eval_batch_priority() ? e.eval_batch_priority() : e.batch_priority();
  m.images_per_group = moe_group_images(e);
  // Soft MoE's noise is off unless set (as its reference); the other routers' default is 1.
  m.noise_std = m.router == MoeRouter::soft && !e.has_noise_std() ? 0.0 : e.noise_std();
  const bool losses = m.router == MoeRouter::top_k;  // the others have none
  m.importance_loss_weight = losses ? e.importance_loss_weight() : 0.0;
  m.load_loss_weight = losses ? e.load_loss_weight() : 0.0;
  m.gshard_loss_weight = losses ? e.gshard_loss_weight() : 0.0;
  m.identical_expert_init = e.identical_expert_init();
  if (e.blocks_size() > 0) {
    m.moe_blocks.assign(e.blocks().begin(), e.blocks().end());
  } else if (e.has_last_n()) {
    m.moe_blocks = last_n_blocks(num_layers, e.last_n());
  } else {
    m.moe_blocks = every_n_blocks(num_layers, e.every_n());
  }
  return m;
}

DType param_dtype_from(const config::ModelConfig& m) {
  DType t = parse_dtype(m.dtype());
  if (t == DType::bf16) {
    throw config::ConfigError(
        "model.dtype 'bf16' is not supported: parameters stay f32 (master weights); for bf16 "
        "compute set train.precision: BF16 with model.dtype 'f32'");
  }
  if (t != DType::f32 && t != DType::f64) {
    throw config::ConfigError("model.dtype '" + m.dtype() +
                              "' is not supported for parameters yet; use f32 or f64");
  }
  return t;
}

Precision precision_from(const config::Config& c) {
  if (c.train().precision() != config::TrainConfig::BF16) return Precision::f32;
  if (param_dtype_from(c.model()) != DType::f32) {
    throw config::ConfigError(
        "train.precision BF16 needs model.dtype 'f32' (f32 master weights), "
        "got '" +
        c.model().dtype() + "'");
  }
  return Precision::bf16;
}

Device device_from(const config::TrainConfig& train) {
  switch (train.device()) {
    case config::TrainConfig::CPU_STRICT:
      return kCpuStrict;
    case config::TrainConfig::CUDA:
      return {DeviceType::cuda, 0};
    default:
      return kCpu;
  }
}

LossKind loss_from(const config::TrainConfig& train) {
  return train.loss() == config::TrainConfig::SIGMOID_XENT ? LossKind::sigmoid_xent
                                                           : LossKind::softmax_xent;
}

int64_t total_steps_from(const config::TrainConfig& train, int64_t steps_per_epoch) {
  if (train.num_steps() > 0) return train.num_steps();
  if (steps_per_epoch < 1) {
    throw config::ConfigError(
        "train.num_epochs: the training set holds less than one batch (data.batch_size), so an "
        "epoch has no steps; set train.num_steps or use a smaller batch");
  }
  // num_epochs is finite and in [0, 1e6] (validated); the product is checked against the same
  // bound as train.num_steps, so it can neither overflow nor wrap into a short run.
  constexpr double kMaxSteps = 1e12;
  const double steps = std::ceil(double(train.num_epochs()) * double(steps_per_epoch));
  if (!(steps <= kMaxSteps)) {
    throw config::ConfigError("train.num_epochs " + std::to_string(train.num_epochs()) + " x " +
                              std::to_string(steps_per_epoch) +
                              " steps per epoch gives more than 1e12 steps");
  }
  return std::max<int64_t>(1, int64_t(steps));
}

LrSchedule schedule_from(const config::Config& c, int64_t total_steps) {
  LrSchedule s;
  switch (c.schedule().kind()) {
    case config::ScheduleConfig::CONSTANT:
      s.kind = LrSchedule::Kind::constant;
      break;
    case config::ScheduleConfig::WARMUP_LINEAR_DECAY:
      s.kind = LrSchedule::Kind::warmup_linear_decay;
      break;
    case config::ScheduleConfig::WARMUP_COSINE_DECAY:
      s.kind = LrSchedule::Kind::warmup_cosine_decay;
      break;
  }
  s.peak = c.optimizer().learning_rate();
  s.end = c.schedule().end_learning_rate();
  s.warmup_steps = c.schedule().warmup_steps();
  s.total_steps = total_steps;
  return s;
}

std::unique_ptr<Optimizer> optimizer_from(const config::OptimizerConfig& o,
                                          const ParameterStore& params) {
  if (o.kind() == config::OptimizerConfig::SGD) {
    SgdOptions s;
    s.momentum = o.momentum();
    s.nesterov = o.nesterov();
    s.weight_decay = o.weight_decay();
    s.decay_masked_only = o.decay_kernels_only();
    return std::make_unique<Sgd>(params, s);
  }
  AdamWOptions a;
  a.b1 = o.b1();
  a.b2 = o.b2();
  a.eps = o.eps();
  a.weight_decay = o.weight_decay();
  a.decay_masked_only = o.decay_kernels_only();
  return std::make_unique<AdamW>(params, a);
}

data::Normalization normalization_from(const config::DataConfig& d) {
  return {float(d.mean()), float(d.std())};
}

data::ThreadedLoaderOptions loader_options_from(const config::Config& c) {
  data::ThreadedLoaderOptions o;
  o.batch_size = c.data().batch_size();
  o.shuffle = c.data().shuffle();
  o.seed = c.train().seed();
  o.drop_last = true;
  o.preprocess.random_flip = c.data().random_flip();
  o.preprocess.crop_padding = c.data().crop_padding();
  o.preprocess.normalization = normalization_from(c.data());
  return o;
}

data::PreprocessOptions eval_preprocess_from(const config::Config& c) {
  data::PreprocessOptions p;
  p.height = p.width = c.model().image_size();
  p.eval_resize = c.model().image_size();
  p.normalization = normalization_from(c.data());
  return p;
}

Progress::Style progress_style_from(const config::OutputConfig& o) {
  switch (o.progress()) {
    case config::OutputConfig::BAR:
      return Progress::Style::bar;
    case config::OutputConfig::LINES:
      return Progress::Style::lines;
    case config::OutputConfig::NONE:
      return Progress::Style::none;
    default:
      return Progress::Style::automatic;
  }
}

namespace {

// A dataset file or folder named by the config: relative to data.dir unless absolute.
std::string data_path(const config::DataConfig& d, const std::string& name) {
  return (std::filesystem::path(d.dir()) / name).string();
}

// Keeps the first `limit` examples; 0 = all.
void keep_first(data::ImageDataset& ds, int64_t limit) {
  if (limit <= 0 || limit >= ds.n) return;
  ds.n = limit;
  ds.images.resize(size_t(limit * ds.height * ds.width * ds.channels));
  ds.labels.resize(size_t(limit));
}

// Every label must name a row of the model's head: the first that does not is named (split,
// example, label) rather than indexing past the logits. `label(i)` and `describe(i)` for i in
// [0, n).
template <class Label, class Describe>
void check_labels(int64_t n, const Label& label, const Describe& describe,
                  const config::ModelConfig& m, const std::string& split) {
  const int64_t classes = m.num_classes();
  for (int64_t i = 0; i < n; ++i) {
    const int64_t l = label(i);
    if (l < 0 || l >= classes) {
      throw std::runtime_error(split + " split: " + describe(i) + " has label " +
                               std::to_string(l) + ", but the model's head has " +
                               std::to_string(classes) + " classes (model.num_classes)");
    }
  }
}

void check_num_classes(int64_t dataset_classes, const config::ModelConfig& m,
                       const std::string& what) {
  if (dataset_classes != m.num_classes()) {
    throw std::runtime_error(what + " has " + std::to_string(dataset_classes) +
                             " classes but the model has " + std::to_string(m.num_classes()) +
                             " (model.num_classes)");
  }
}

// The split as loaded (IDX, CIFAR, HDF5 shards), reduced to data.classes and the example limit,
// its class count and labels checked against the model; the image shape is the caller's check.
data::ImageDataset load_unsized(const config::Config& c, data::Split split) {
  const config::DataConfig& d = c.data();
  const std::filesystem::path dir = d.dir();
  const bool train = split == data::Split::train;
  const bool select = d.classes_size() > 0;
  data::ImageDataset ds;
  const int64_t limit = train ? d.num_train_examples() : c.eval().num_examples();
  // With data.classes the limit counts kept examples, so IDX files are read whole first.
  const int64_t idx_limit = select ? 0 : limit;
  std::string what;
  switch (d.dataset()) {
    case config::DataConfig::IDX: {
      const std::string images = (dir / (train ? d.train_images() : d.test_images())).string();
      ds = data::load_idx_dataset(images, dir / (train ? d.train_labels() : d.test_labels()),
                                  idx_limit);
      what = "IDX file '" + images + "'";
      break;
    }
    case config::DataConfig::CIFAR10:
    case config::DataConfig::CIFAR100:
      ds = d.dataset() == config::DataConfig::CIFAR10 ? data::load_cifar10(d.dir(), split)
                                                      : data::load_cifar100(d.dir(), split);
      what = "CIFAR in '" + d.dir() + "'";
      if (!select) check_num_classes(ds.num_classes, c.model(), what);
      break;
    case config::DataConfig::HDF5_SHARDS: {
      const std::string shard = data_path(d, train ? d.train_shard() : d.test_shard());
      ds = data::load_hdf5_shard(shard);
      what = "HDF5 shard '" + shard + "'";
      if (!select) check_num_classes(ds.num_classes, c.model(), what);
      break;
    }
    case config::DataConfig::IMAGE_FOLDER:
      throw std::runtime_error(
          "data.dataset IMAGE_FOLDER is decoded while streaming and cannot be loaded into "
          "memory here; pack it with `vmoe data pack folder` and use HDF5_SHARDS");
    default: {
      data::IdxSplitFiles files = data::idx_split_files(dir, split);
      ds = data::load_idx_dataset(files.images, files.labels, idx_limit);
      what = "IDX file '" + files.images + "'";
    }
  }
  if (select) ds = data::keep_classes(ds, {d.classes().begin(), d.classes().end()}, what);
  keep_first(ds, limit);
  check_labels(
      ds.n, [&](int64_t i) { return ds.labels[size_t(i)]; },
      [](int64_t i) { return "example " + std::to_string(i); }, c.model(),
      train ? "training" : "test");
  return ds;
}

void check_image_shape(const data::ImageDataset& ds, const config::ModelConfig& m,
                       const std::string& hint) {
  if (ds.height != m.image_size() || ds.width != m.image_size() || ds.channels != m.channels()) {
    throw std::runtime_error("dataset images are " + std::to_string(ds.height) + "x" +
                             std::to_string(ds.width) + "x" + std::to_string(ds.channels) +
                             " but the model expects " + std::to_string(m.image_size()) + "x" +
                             std::to_string(m.image_size()) + "x" + std::to_string(m.channels()) +
                             " (model.image_size, model.channels" + hint + ")");
  }
}

}  // namespace

data::ImageDataset load_split(const config::Config& c, data::Split split) {
  data::ImageDataset ds = load_unsized(c, split);
  check_image_shape(ds, c.model(), "");
  return ds;
}

std::shared_ptr<data::ImageSource> open_split(const config::Config& c, data::Split split) {
  const config::DataConfig& d = c.data();
  const bool train = split == data::Split::train;
  const bool select = d.classes_size() > 0;
  if (d.dataset() == config::DataConfig::IMAGE_FOLDER) {
    const std::string root = data_path(d, train ? d.train_folder() : d.test_folder());
    auto source = std::make_shared<data::ImageFolderSource>(root, c.model().channels());
    // Labels are positions in the sorted class list, so the test folder must name the train
    // folder's classes (checked whenever the train folder is present).
    std::error_code ec;
    if (!train && !d.train_folder().empty() &&
        std::filesystem::is_directory(data_path(d, d.train_folder()), ec)) {
      data::check_same_classes(data_path(d, d.train_folder()), root);
    }
    const std::string what = "image folder '" + root + "'";
    std::shared_ptr<data::ImageSource> out = source;
    if (select) {
      out = std::make_shared<data::ClassSubsetSource>(
          source, std::vector<int32_t>(d.classes().begin(), d.classes().end()), what);
    } else {
      check_num_classes(source->num_classes(), c.model(), what);
    }
    // Example limits keep examples spread over the (class-ordered) folder.
    const int64_t limit = train ? d.num_train_examples() : c.eval().num_examples();
    if (limit > 0 && limit < out->size())
      out = std::make_shared<data::SubsetSource>(out, data::evenly_spaced(out->size(), limit));
    check_labels(
        out->size(), [&](int64_t i) { return out->label(i); },
        [&](int64_t i) { return out->describe(i); }, c.model(), train ? "training" : "test");
    return out;
  }
  data::ImageDataset ds = load_unsized(c, split);
  // Evaluation resizes images of another size (shorter side + centre crop), training only
  // through the inception crop: fine-tuning at a higher resolution than the dataset's.
  if (train && !d.inception_crop()) {
    check_image_shape(ds, c.model(), "; training resizes only with data.inception_crop");
  } else if (ds.channels != c.model().channels()) {
    check_image_shape(ds, c.model(), "");
  }
  return std::make_shared<data::InMemorySource>(std::move(ds), train ? "train" : "test");
}

int threads_per_rank(const config::Config& cfg, int local_ranks) {
  if (cfg.train().threads() > 0) return cfg.train().threads();
  if (const char* env = std::getenv("OMP_NUM_THREADS")) {
    // The first (outermost) entry of the list is the number of threads of our parallel loops.
    const std::string text(env);
    const std::string first = text.substr(0, text.find(','));
    char* end = nullptr;
    errno = 0;
    const long long n = std::strtoll(first.c_str(), &end, 10);
    if (first.empty() || end != first.c_str() + first.size() || errno != 0 || n < 1 ||
        n > config::kMaxThreads) {
      throw std::runtime_error("OMP_NUM_THREADS must be a thread count in [1, " +
                               std::to_string(config::kMaxThreads) + "] (got '" +
                               text.substr(0, 32) + "'); or set train.threads");
    }
    return int(n);
  }
  const int cores = std::max(1, int(std::thread::hardware_concurrency()));
  return std::max(1, std::min(omp_get_num_procs(), cores / std::max(1, local_ranks)));
}

}  // namespace vmoe
