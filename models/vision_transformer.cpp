// Vision Transformer construction (reference initialisation) and forward pass.
#include "models/vision_transformer.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <optional>
#include <stdexcept>

#include "core/autograd.h"
#include "core/checkpoint.h"
#include "core/op_profile.h"
#include "models/example_dropout.h"
#include "models/mlp_block.h"
#include "models/moe_layer.h"

namespace vmoe {

namespace {

[[noreturn]] void bad(const std::string& field, const std::string& what) {
  throw std::invalid_argument("model." + field + " " + what);
}

}  // namespace

void validate(const VitConfig& c) {
  auto positive = [](const char* name, int64_t v) {
    if (v <= 0) bad(name, "must be > 0, got " + std::to_string(v));
  };
  positive("image_size", c.image_size);
  positive("channels", c.channels);
  positive("patch_size", c.patch_size);
  positive("hidden_size", c.hidden_size);
  positive("mlp_dim", c.mlp_dim);
  positive("num_heads", c.num_heads);
  positive("num_layers", c.num_layers);
  positive("num_classes", c.num_classes);
  if (c.image_size % c.patch_size != 0)
    bad("image_size", "must be divisible by model.patch_size (got " + std::to_string(c.image_size) +
                          " and " + std::to_string(c.patch_size) + ")");
  if (c.hidden_size % c.num_heads != 0)
    bad("hidden_size", "must be divisible by model.num_heads (got " +
                           std::to_string(c.hidden_size) + " and " + std::to_string(c.num_heads) +
                           ")");
  // The token count, checked: an image/patch ratio whose square overflows is an error here.
  c.num_tokens();
  if (c.representation_size < 0)
    bad("representation_size", "must be >= 0, got " + std::to_string(c.representation_size));
  for (auto [name, rate] : {std::pair{"dropout_rate", c.dropout_rate},
                            std::pair{"attention_dropout_rate", c.attention_dropout_rate}}) {
    if (!(rate >= 0 && rate < 1)) bad(name, "must be in [0, 1), got " + std::to_string(rate));
  }
  if (!(std::isfinite(c.layer_norm_eps) && c.layer_norm_eps > 0))
    bad("layer_norm_eps", "must be finite and > 0, got " + std::to_string(c.layer_norm_eps));
  if (c.head_bias_init && !std::isfinite(*c.head_bias_init))
    bad("head_bias_init", "must be finite, got " + std::to_string(*c.head_bias_init));
  if (c.moe) {
    validate(*c.moe, c.num_layers);
    // The capacities of a full group, checked at construction rather than at the first step.
    const int64_t group_tokens =
        checked_mul(c.moe->images_per_group, c.num_tokens(), "model.moe tokens per group");
    expert_capacity(group_tokens, c.moe->k, c.moe->capacity_factor, c.moe->num_experts);
    expert_capacity(group_tokens, c.moe->k, c.moe->eval_capacity_factor, c.moe->num_experts);
  }
}

std::string VisionTransformer::block_prefix(int64_t i) {
  char buf[48];
  std::snprintf(buf, sizeof buf, "encoder/block_%02lld", static_cast<long long>(i));
  return buf;
}

VisionTransformer::VisionTransformer(ParameterStore& store, VitConfig config,
                                     std::shared_ptr<const ExpertExchange> exchange)
    : store_(&store),
      config_((validate(config), config)),
      embedding_(
          store, "embedding", config.patch_size * config.patch_size * config.channels,
          config.hidden_size,
          InitSpec::lecun_normal(double(config.patch_size * config.patch_size * config.channels)),
          InitSpec::zeros()),
      pos_embedding_(store.declare("encoder/posembed_input/pos_embedding",
                                   {1, config.num_tokens(), config.hidden_size},
                                   InitSpec::normal(0.02))),
      encoder_norm_(store, "encoder/encoder_norm", config.hidden_size, config.layer_norm_eps),
      head_(store, "head",
            config.representation_size ? config.representation_size : config.hidden_size,
            config.num_classes, InitSpec::zeros(), InitSpec::constant(config.head_bias())) {
  const VitConfig& c = config_;
  if (c.classifier == VitConfig::Classifier::token)
    cls_ = store.declare("cls", {1, 1, c.hidden_size}, InitSpec::zeros());
  if (!exchange) exchange = std::make_shared<LocalExchange>();
  for (int64_t i = 0; i < c.num_layers; ++i) {
    const std::string prefix = block_prefix(i);
    std::unique_ptr<FeedForward> ff;
    if (c.moe && std::count(c.moe->moe_blocks.begin(), c.moe->moe_blocks.end(), i)) {
      ff = std::make_unique<MoeLayer>(store, prefix + "/moe", c.hidden_size, c.mlp_dim,
                                      c.num_tokens(), *c.moe, exchange);
    } else {
      ff = std::make_unique<MlpBlock>(store, prefix + "/mlp", c.hidden_size, c.mlp_dim,
                                      c.dropout_rate);
    }
    blocks_.push_back(std::make_unique<EncoderBlock>(store, prefix, c.hidden_size, c.num_heads,
                                                     c.layer_norm_eps, c.dropout_rate,
                                                     c.attention_dropout_rate, std::move(ff)));
    block_params_.emplace_back();
    for (ParamId id = 0; id < store.size(); ++id)
      if (store.infos()[id].name.rfind(prefix + "/", 0) == 0) block_params_.back().push_back(id);
  }
  if (c.representation_size > 0) {
    pre_logits_.emplace(store, "pre_logits", c.hidden_size, c.representation_size,
                        InitSpec::lecun_normal(double(c.hidden_size)), InitSpec::zeros());
  }
}

FeedForwardOutput VisionTransformer::run_block(size_t i, const Tensor& x,
                                               const ForwardContext& ctx) const {
  const EncoderBlock& block = *blocks_[i];
  if (config_.recompute == VitConfig::Recompute::none || !ctx.training() || !grad_enabled())
    return block(x, ctx, i);
  // The re-run in backward: same keys and examples (same dropout and noise), no report.
  ForwardContext again = ctx;
  again.moe_reports = nullptr;
  again.record_routing = false;
  const SegmentFn segment = [&block, ctx, again, i](const std::vector<Tensor>& in,
                                                    CheckpointPass pass) {
    FeedForwardOutput y = block(in[0], pass == CheckpointPass::forward ? ctx : again, i);
    return std::vector<Tensor>{y.out, y.aux_loss};
  };
  std::vector<Tensor> params;
  for (ParamId id : block_params_[i])
    params.push_back((*store_)[id]);
  const size_t reports = ctx.moe_reports ? ctx.moe_reports->size() : 0;
  std::vector<Tensor> out = checkpoint(segment, {x}, params);
  // The report of an MoE block carries the differentiable aux loss, as without recompute.
  if (ctx.moe_reports && ctx.moe_reports->size() > reports)
    ctx.moe_reports->back().aux_loss = out[1];
  return {out[0], out[1]};
}

VitOutput VisionTransformer::operator()(const Tensor& images, const ForwardContext& ctx) const {
  const VitConfig& c = config_;
  if (images.dim() != 4 || images.size(1) != c.image_size || images.size(2) != c.image_size ||
      images.size(3) != c.channels) {
    throw std::invalid_argument("images " + images.desc() +
                                " do not match the model: expected [B, " +
                                std::to_string(c.image_size) + ", " + std::to_string(c.image_size) +
                                ", " + std::to_string(c.channels) + "]");
  }
  const int64_t b = images.size(0);
  VitOutput result;
  ForwardContext block_ctx = ctx;
  block_ctx.moe_reports = &result.moe;
  // Images arrive as f32; a model in another float type (f64) computes in its own.
  const Tensor pixels =
      images.dtype() == store_->dtype() ? images : to_dtype(images, store_->dtype());
  // Mixed precision (models/precision.h): the patches enter the embedding GEMM in the
  // activation dtype, and every activation after it stays in that dtype up to the final norm.
  std::optional<ProfileRegion> region(std::in_place, "embedding");
  const Tensor patches = to_dtype(image_to_patches(pixels, c.patch_size),
                                  activation_dtype(ctx.precision, store_->dtype()));
  Tensor x = embedding_(patches);  // [B, N, D]
  if (cls_)
    x = concat({expand(operand_for((*store_)[*cls_], x), {b, 1, c.hidden_size}), x},
               1);  // [B, T, D]
  x = example_dropout(x + operand_for((*store_)[pos_embedding_], x), c.dropout_rate, ctx,
                      "embed_dropout", 0);
  region.reset();
  for (size_t i = 0; i < blocks_.size(); ++i) {
    FeedForwardOutput y = run_block(i, x, block_ctx);
    x = y.out;
    // The auxiliary losses come from the layers themselves, reports or not.
    if (y.aux_loss.defined())
      result.aux_loss = result.aux_loss.defined() ? result.aux_loss + y.aux_loss : y.aux_loss;
  }
  // The final norm, readout, pre-logits and head in the parameter dtype (f32 logits and loss).
  region.emplace("head");
  x = encoder_norm_(to_dtype(x, store_->dtype()));
  Tensor rep = cls_ ? x.slice(1, 0, 1).reshape({b, c.hidden_size}) : mean(x, {1});
  if (pre_logits_) rep = tanh((*pre_logits_)(rep));
  result.logits = head_(rep);
  result.pre_logits = rep;
  return result;
}

// Mirrors operator() above, part by part.
VitCost VisionTransformer::cost(const CostShape& s) const {
  const VitConfig& c = config_;
  const int64_t b = s.batch, t = c.num_tokens(), d = c.hidden_size;
  const int64_t patch = c.patch_size * c.patch_size * c.channels;
  const DType a = s.activation, f = s.param;
  const bool dropout = s.training && c.dropout_rate > 0;
  VitCost cost;
  LayerCost& stem = cost.stem;
  stem.keep(b * c.num_patches() * patch, a);  // patches (the images need no gradient)
  stem += embedding_.cost(b * c.num_patches(), a, f, InputGrad::no);
  if (cls_) {
    stem.cast(d, f, a);
    stem.keep(b * t * d, a);  // concat
  }
  stem.cast(t * d, f, a);   // position embedding
  stem.keep(b * t * d, a);  // + position embedding
  if (dropout) stem.keep(2 * b * t * d, a);
  for (size_t i = 0; i < blocks_.size(); ++i)
    cost.blocks.push_back(blocks_[i]->cost(s, t));
  cost.block_input_bytes = b * t * d * int64_t(dtype_size(a));
  LayerCost& tail = cost.tail;
  if (a != f) tail.keep(b * t * d, f);  // back to the parameter dtype
  tail += encoder_norm_.cost(b * t, f);
  if (!cls_) {
    tail.keep(2 * b * d, f);  // mean over tokens: sum, scaled
    tail.small_tensors += 1;  // the scale
  } else if (b > 1) {
    tail.keep(b * d, f);  // the class token's row, copied
  }
  if (pre_logits_) {
    tail += pre_logits_->cost(b, f, f);
    tail.keep(b * c.representation_size, f);  // tanh
  }
  tail += head_.cost(b, f, f);
  return cost;
}

}  // namespace vmoe
