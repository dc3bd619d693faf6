// Vision Transformer tests: forward and backward against the PyTorch golden file
// (test/golden/make_vit_golden.py), reference initialisation, parameter names, input checks.
#include <catch2/catch.hpp>
#include <cmath>
#include <string>

#include "core/autograd.h"
#include "core/ops.h"
#include "launch/train_step.h"
#include "models/vision_transformer.h"
#include "hdf5/hdf5_file.h"

using namespace vmoe;

namespace {

const std::string kGolden = std::string(VMOE_SOURCE_DIR) + "/test/golden/vit_golden.h5";

Tensor read_tensor(const Hdf5File& f, const std::string& name, DType as) {
  H5Array a = f.read(name);
  Tensor t;
  switch (a.type) {
    case H5Type::f64:
      t = Tensor::empty(a.shape, DType::f64, kCpu);
      break;
    case H5Type::f32:
      t = Tensor::empty(a.shape, DType::f32, kCpu);
      break;
    case H5Type::i32:
      t = Tensor::empty(a.shape, DType::i32, kCpu);
      break;
    case H5Type::i64:
      t = Tensor::empty(a.shape, DType::i64, kCpu);
      break;
    default:
      FAIL("unexpected dataset type for " << name);
  }
  std::copy(a.bytes.begin(), a.bytes.end(), static_cast<uint8_t*>(t.raw_data()));
  t = t.to(default_device());  // the device the suite runs on
  return as == t.dtype() ? t : to_dtype(t, as);
}

// Largest |a - b| / (atol + rtol |b|) over all elements; <= 1 means within tolerance.
double tolerance_ratio(const Tensor& a, const Tensor& b, double rtol, double atol) {
  REQUIRE(a.shape() == b.shape());
  auto va = to_dtype(a, DType::f64).cpu().to_vector<double>();
  auto vb = to_dtype(b, DType::f64).cpu().to_vector<double>();
  double worst = 0;
  for (size_t i = 0; i < va.size(); ++i)
    worst = std::max(worst, std::abs(va[i] - vb[i]) / (atol + rtol * std::abs(vb[i])));
  return worst;
}

struct GoldenCase {
  VitConfig config;
  LossKind loss;
};

GoldenCase golden_case(const Hdf5File& f, const std::string& group) {
  auto attr_int = [&](const std::string& k) { return f.get_attr_int(group + "/" + k); };
  GoldenCase c;
  VitConfig& v = c.config;
  v.image_size = attr_int("image_size");
  v.channels = attr_int("channels");
  v.patch_size = attr_int("patch_size");
  v.hidden_size = attr_int("hidden_size");
  v.mlp_dim = attr_int("mlp_dim");
  v.num_heads = attr_int("num_heads");
  v.num_layers = attr_int("num_layers");
  v.num_classes = attr_int("num_classes");
  v.representation_size = attr_int("representation_size");
  v.classifier = f.get_attr_string(group + "/classifier") == "gap" ? VitConfig::Classifier::gap
                                                                   : VitConfig::Classifier::token;
  c.loss = f.get_attr_string(group + "/loss") == "sigmoid_xent" ? LossKind::sigmoid_xent
                                                                : LossKind::softmax_xent;
  return c;
}

void check_golden(const std::string& group, DType dtype, double rtol, double atol) {
  Hdf5File f(kGolden, Hdf5File::Mode::Read);
  GoldenCase gc = golden_case(f, group);
  ParameterStore params;
  VisionTransformer model(params, gc.config);
  params.allocate(0, dtype);
  for (const ParamInfo& info : params.infos()) {
    INFO("parameter " << info.name);
    Tensor dst = params.value(info.name).detach();
    copy_(dst, read_tensor(f, group + "/params/" + info.name, dtype));
  }
  Tensor images = read_tensor(f, group + "/inputs/images", dtype).set_requires_grad(true);
  Tensor labels = read_tensor(f, group + "/inputs/labels", DType::i32);
  VitOutput out = model(images, ForwardContext{});
  Tensor loss = classification_loss(out.logits, labels, gc.loss);
  loss.backward();
  CHECK(tolerance_ratio(out.logits, read_tensor(f, group + "/outputs/logits", dtype), rtol, atol) <=
        1);
  CHECK(tolerance_ratio(loss, read_tensor(f, group + "/outputs/loss", dtype), rtol, atol) <= 1);
  CHECK(tolerance_ratio(images.grad(), read_tensor(f, group + "/grads/images", dtype), rtol,
                        atol) <= 1);
  for (const ParamInfo& info : params.infos()) {
    INFO("gradient of " << info.name);
    CHECK(tolerance_ratio(params.grad(info.name),
                          read_tensor(f, group + "/grads/" + info.name, dtype), rtol, atol) <= 1);
  }
}

}  // namespace

TEST_CASE("vit: golden forward and backward in f64 (token, pre-logits, softmax xent)") {
  check_golden("case_token", DType::f64, 1e-9, 1e-12);
}

TEST_CASE("vit: golden forward and backward in f64 (gap, sigmoid xent)") {
  check_golden("gap_sigmoid", DType::f64, 1e-9, 1e-12);
}

TEST_CASE("vit: golden forward and backward in f32") {
  check_golden("case_token", DType::f32, 2e-3, 2e-5);
  check_golden("gap_sigmoid", DType::f32, 2e-3, 2e-5);
}

TEST_CASE("vit: reference initialisation and parameter names") {
  VitConfig c;
  c.num_layers = 2;
  c.representation_size = 32;
  ParameterStore params;
  VisionTransformer model(params, c);
  params.allocate(7);
  for (const char* name : {"embedding/kernel", "cls", "encoder/posembed_input/pos_embedding",
                           "encoder/block_00/ln1/scale", "encoder/block_00/attn/qkv/kernel",
                           "encoder/block_01/mlp/fc2/bias", "encoder/encoder_norm/bias",
                           "pre_logits/kernel", "head/kernel", "head/bias"}) {
    INFO(name);
    CHECK(params.contains(name));
  }
  auto values = [&](const char* n) { return params.value(n).cpu().to_vector<float>(); };
  for (float v : values("head/kernel"))
    CHECK(v == 0.0f);
  for (float v : values("head/bias"))
    CHECK(v == Approx(-std::log(10.0)));
  for (float v : values("cls"))
    CHECK(v == 0.0f);
  for (float v : values("encoder/block_00/ln1/scale"))
    CHECK(v == 1.0f);
  // Xavier uniform over [D, D] per projection: |w| <= sqrt(6 / (2D)).
  const double limit = std::sqrt(6.0 / (2.0 * double(c.hidden_size)));
  double max_abs = 0;
  for (float v : values("encoder/block_00/attn/qkv/kernel"))
    max_abs = std::max(max_abs, double(std::abs(v)));
  CHECK(max_abs <= limit);
  CHECK(max_abs > 0.9 * limit);
  // Position embedding N(0, 0.02).
  auto pe = values("encoder/posembed_input/pos_embedding");
  double ss = 0;
  for (float v : pe)
    ss += double(v) * v;
  CHECK(std::sqrt(ss / double(pe.size())) == Approx(0.02).epsilon(0.1));
  // MLP biases N(0, 1e-6): tiny but not zero.
  double bmax = 0;
  for (float v : values("encoder/block_00/mlp/fc1/bias"))
    bmax = std::max(bmax, double(std::abs(v)));
  CHECK(bmax > 0);
  CHECK(bmax < 1e-5);
}

TEST_CASE("vit: initialisation is a function of (seed, name) only") {
  VitConfig c;
  c.num_layers = 1;
  ParameterStore a, b, other;
  VisionTransformer ma(a, c), mb(b, c), mo(other, c);
  a.allocate(3);
  b.allocate(3);
  other.allocate(4);
  CHECK(a.flat_values(Sharding::replicated).cpu().to_vector<float>() ==
        b.flat_values(Sharding::replicated).cpu().to_vector<float>());
  CHECK(a.value("embedding/kernel").cpu().to_vector<float>() !=
        other.value("embedding/kernel").cpu().to_vector<float>());
}

TEST_CASE("vit: images of the wrong shape are a clear error") {
  VitConfig c;
  c.num_layers = 1;
  ParameterStore params;
  VisionTransformer model(params, c);
  params.allocate(0);
  Tensor images = Tensor::zeros({2, 32, 32, 1});
  REQUIRE_THROWS_WITH(model(images, ForwardContext{}),
                      Catch::Contains("do not match the model: expected [B, 28, 28, 1]"));
}

TEST_CASE("vit: invalid configs name the field") {
  VitConfig c;
  c.hidden_size = 66;
  ParameterStore params;
  REQUIRE_THROWS_WITH(VisionTransformer(params, c),
                      Catch::Contains("model.hidden_size must be divisible by model.num_heads"));
  c = VitConfig{};
  c.patch_size = 5;
  REQUIRE_THROWS_WITH(VisionTransformer(params, c), Catch::Contains("model.image_size"));
}
