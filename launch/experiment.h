// Turns a validated config into the objects a run needs: model hyper-parameters, optimizer,
// schedule, loss, datasets and loader options. The one place that reads config messages for
// training and evaluation.
#pragma once
#include <memory>
#include <string>

#include "configs/config.h"
#include "core/optim/optimizer.h"
#include "core/optim/schedule.h"
#include "data/image_dataset.h"
#include "data/image_source.h"
#include "data/preprocess.h"
#include "data/threaded_loader.h"
#include "launch/progress.h"
#include "launch/train_step.h"
#include "models/vit_config.h"

namespace vmoe {

VitConfig vit_config_from(const config::ModelConfig& model);
MoeConfig moe_config_from(const config::MoeConfig& moe, int64_t num_layers);
DType param_dtype_from(const config::ModelConfig& model);
// train.device -> the device parameters, optimizer state and activations live on.
Device device_from(const config::TrainConfig& train);
// train.precision, checked against model.dtype (BF16 needs f32 parameters; a ConfigError names
// both fields).
Precision precision_from(const config::Config& config);
LossKind loss_from(const config::TrainConfig& train);
LrSchedule schedule_from(const config::Config& config, int64_t total_steps);
std::unique_ptr<Optimizer> optimizer_from(const config::OptimizerConfig& opt,
                                          const ParameterStore& params);
data::Normalization normalization_from(const config::DataConfig& data);
data::ThreadedLoaderOptions loader_options_from(const config::Config& config);
// Evaluation preprocessing to model.image_size: images of another size have their shorter side
// resized to it and are centre-cropped; the config's normalisation.
data::PreprocessOptions eval_preprocess_from(const config::Config& config);
Progress::Style progress_style_from(const config::OutputConfig& output);

// Loads the train or test split named by the data config (IDX, CIFAR-10/100, HDF5 shards) into
// memory, reduced to data.classes (relabelled 0..n-1) and the example limit; the image shape
// and class count must match the model (error names both). IMAGE_FOLDER datasets are an error
// here: only open_split streams them.
data::ImageDataset load_split(const config::Config& config, data::Split split);

// Opens the train or test split of any dataset kind as a source: image folders (IMAGE_FOLDER,
// decoded in read(), model.channels channels, class count checked against the model) or the
// in-memory kinds as load_split does, except that images of another size than the model's are
// accepted where the pipeline resizes them: the test split (evaluation resizes) and the train
// split with data.inception_crop.
std::shared_ptr<data::ImageSource> open_split(const config::Config& config, data::Split split);

// Threads per rank: train.threads, else OMP_NUM_THREADS when the launcher set it (e.g. from
// Slurm's --cpus-per-task), else the node's cores shared out among its `local_ranks` ranks.
// Each is bounded by config::kMaxThreads (train.threads by the config's validation).
int threads_per_rank(const config::Config& cfg, int local_ranks);

// Total number of updates of the run (train.num_steps, or num_epochs * steps per epoch).
int64_t total_steps_from(const config::TrainConfig& train, int64_t steps_per_epoch);

}  // namespace vmoe
