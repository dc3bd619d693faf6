// Encoder block forward.
#include "models/encoder_block.h"

#include "core/op_profile.h"
#include "models/example_dropout.h"

namespace vmoe {

EncoderBlock::EncoderBlock(ParameterStore& store, const std::string& prefix, int64_t dim,
                           int64_t heads, double eps, double dropout_rate,
                           double attention_dropout_rate, std::unique_ptr<FeedForward> feed_forward)
    : dropout_rate_(dropout_rate),
      ln1_(store, prefix + "/ln1", dim, eps),
      attn_(store, prefix + "/attn", dim, heads, attention_dropout_rate),
      ln2_(store, prefix + "/ln2", dim, eps),
      feed_forward_(std::move(feed_forward)) {}

FeedForwardOutput EncoderBlock::operator()(const Tensor& x, const ForwardContext& ctx,
                                           uint64_t index) const {
  Tensor normed = [&] {
    ProfileRegion region("layer_norm");
    return ln1_(x);
  }();
  Tensor h = [&] {
    ProfileRegion region("attention");
    return x + example_dropout(attn_(normed, ctx, index), dropout_rate_, ctx, "attn_out", index);
  }();
  {
    ProfileRegion region("layer_norm");
    normed = ln2_(h);
  }
  FeedForwardOutput f = (*feed_forward_)(normed, ctx, index);
  ProfileRegion region("residual");
  return {h + f.out, f.aux_loss};
}

LayerCost EncoderBlock::cost(const CostShape& s, int64_t tokens) const {
  const int64_t rows = s.batch * tokens, d = ln1_.dim();
  const bool dropout = s.training && dropout_rate_ > 0;
  LayerCost c = ln1_.cost(rows, s.activation);
  c += attn_.cost(s, tokens);
  if (dropout) c.keep(2 * rows * d, s.activation);  // mask, product
  c.keep(rows * d, s.activation);                   // h = x + a
  c += ln2_.cost(rows, s.activation);
  c += feed_forward_->cost(s, tokens);
  c.keep(rows * d, s.activation);  // h + f
  return c;
}

}  // namespace vmoe
