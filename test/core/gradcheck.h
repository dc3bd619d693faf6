// Finite-difference gradient checker for tests: compares the gradients autograd computes with
// central differences of loss = sum(f(inputs) * R), R a fixed random projection, so every
// output element matters. Shared by the core and models test suites.
//
//   auto r = vmoe::testing::gradcheck([](const std::vector<Tensor>& in) {
//     return layer_norm(in[0], in[1], in[2], 1e-5);
//   }, {x, scale, bias});
//   INFO(r.message);
//   CHECK(r.ok);          // or VMOE_CHECK_GRADCHECK(fn, inputs) in a Catch2 test
//
// Inputs that require grad (f64, or f32 with loose options) are checked element by element;
// the others are passed through unchanged (labels, indices, constants). Everything runs on the
// inputs' device (the default device in the suites); values come back through .cpu().
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/autograd.h"
#include "core/ops.h"

namespace vmoe::testing {

struct GradcheckOptions {
  double eps = 1e-6;   // central-difference step
  double rtol = 1e-6;  // |analytic - numeric| <= atol + rtol * max(|analytic|, |numeric|)
  double atol = 1e-8;
  RngKey projection_key{0x5eed, 0x9c};  // the fixed random projection R ~ N(0, 1)
};

struct GradcheckResult {
  bool ok = true;
  int64_t checked = 0;     // input elements compared
  int64_t failed = 0;      // of which outside the tolerance
  double worst_ratio = 0;  // largest |analytic - numeric| / tolerance
  std::string message;     // the worst element, or what went wrong structurally
};

using TensorFn = std::function<Tensor(const std::vector<Tensor>&)>;

namespace detail {

inline std::string multi_index(const Shape& shape, int64_t flat) {
  Shape idx(shape.size());
  for (size_t d = shape.size(); d-- > 0;) {
    idx[d] = shape[d] ? flat % shape[d] : 0;
    flat = shape[d] ? flat / shape[d] : 0;
  }
  return shape_str(idx);
}

// The values of t as doubles, read back through a copy to the host.
inline std::vector<double> as_f64(const Tensor& t) {
  NoGrad no_grad;
  return to_dtype(t, DType::f64).cpu().to_vector<double>();
}

// Sets element `i` of a contiguous f32/f64 leaf to v on its device (a one-element fill of a
// view: nothing is read back); returns the value actually stored.
inline double poke(const Tensor& t, int64_t i, double v) {
  Tensor element = t.detach().reshape({-1}).slice(0, i, i + 1);
  fill_(element, v);
  return t.dtype() == DType::f64 ? v : double(float(v));
}

}  // namespace detail

// Checks d sum(fn(inputs) * R) / d input for every input that requires grad.
inline GradcheckResult gradcheck(const TensorFn& fn, const std::vector<Tensor>& inputs_in,
                                 const GradcheckOptions& opt = {}) {
  GradcheckResult res;
  auto fail = [&](const std::string& what) {
    res.ok = false;
    res.message = "gradcheck: " + what;
    return res;
  };

  // Fresh contiguous leaves: perturbing them touches nothing the caller holds.
  std::vector<Tensor> inputs;
  for (size_t i = 0; i < inputs_in.size(); ++i) {
    const Tensor& t = inputs_in[i];
    if (!t.defined() || !t.requires_grad()) {
      inputs.push_back(t);
      continue;
    }
    if (t.dtype() != DType::f64 && t.dtype() != DType::f32)
      return fail("input " + std::to_string(i) + " " + t.desc() + " must be f64 or f32");
    Tensor leaf = t.detach().clone();
    leaf.set_requires_grad(true);
    inputs.push_back(leaf);
  }

  // Analytic gradients.
  Tensor out = fn(inputs);
  if (!out.defined()) return fail("the function returned an undefined tensor");
  if (!is_floating(out.dtype())) return fail("the output " + out.desc() + " is not floating");
  const Shape out_shape = out.shape();
  const std::vector<double> r =
      randn(out_shape, opt.projection_key, 0, DType::f64, kCpu).to_vector<double>();
  auto project = [&](const Tensor& o) {
    const std::vector<double> v = detail::as_f64(o);
    double s = 0;
    for (size_t j = 0; j < v.size(); ++j)
      s += v[j] * r[j];
    return s;
  };
  const double f0 = project(out);
  if (out.requires_grad()) {
    Tensor rt = to_dtype(Tensor::from_vector(r, out_shape, out.device()), out.dtype());
    sum_all(mul(out, rt)).backward();
  }
  out = Tensor();

  auto evaluate = [&]() {
    NoGrad no_grad;
    Tensor o = fn(inputs);
    if (o.shape() != out_shape)
      throw std::logic_error("output shape changed from " + shape_str(out_shape) + " to " +
                             o.desc());
    return project(o);
  };

  // The non-recording forward must compute what the recording one did.
  const double f0_nograd = evaluate();
  if (std::abs(f0_nograd - f0) > 1e-12 * (1 + std::abs(f0))) {
    std::ostringstream os;
    os.precision(17);
    os << "forward differs with and without recording: " << f0 << " vs " << f0_nograd;
    return fail(os.str());
  }

  std::ostringstream worst;
  worst.precision(10);
  for (size_t i = 0; i < inputs.size(); ++i) {
    const Tensor& x = inputs[i];
    if (!x.defined() || !x.requires_grad()) continue;
    const Tensor g = x.grad();
    std::vector<double> analytic(size_t(x.numel()), 0.0);
    if (g.defined()) {
      if (g.shape() != x.shape())
        return fail("gradient of input " + std::to_string(i) + " is " + g.desc() + ", expected " +
                    x.desc());
      analytic = detail::as_f64(g);
    }
    const std::vector<double> original = detail::as_f64(x);
    for (int64_t j = 0; j < x.numel(); ++j) {
      const double orig = original[size_t(j)];
      const double hi = detail::poke(x, j, orig + opt.eps);
      const double f_hi = evaluate();
      const double lo = detail::poke(x, j, orig - opt.eps);
      const double f_lo = evaluate();
      detail::poke(x, j, orig);
      const double numeric = (f_hi - f_lo) / (hi - lo);
      const double a = analytic[size_t(j)];
      const double diff = std::abs(a - numeric);
      const double tol = opt.atol + opt.rtol * std::max(std::abs(a), std::abs(numeric));
      const double ratio = diff / tol;
      ++res.checked;
      if (!(diff <= tol)) ++res.failed;  // also counts NaN
      // The first element, then anything worse; a NaN stays the worst once seen.
      const bool worse = res.checked == 1 || (std::isnan(ratio) && !std::isnan(res.worst_ratio)) ||
                         ratio > res.worst_ratio;
      if (worse) {
        res.worst_ratio = ratio;
        worst.str("");
        worst << "input " << i << " " << x.desc() << " element " << j << " "
              << detail::multi_index(x.shape(), j) << ": analytic " << a << ", numeric " << numeric
              << ", |diff| " << diff << " vs tolerance " << tol
              << (g.defined() ? "" : " (no gradient reached this input)");
      }
    }
  }
  res.ok = res.failed == 0;
  std::ostringstream os;
  os << "gradcheck: " << res.failed << " of " << res.checked << " elements outside tolerance"
     << (res.checked ? "; worst " + worst.str() : std::string("; no input requires grad"));
  res.message = os.str();
  if (res.checked == 0) res.ok = false;
  return res;
}

}  // namespace vmoe::testing

// Catch2 shorthand: runs gradcheck(fn, inputs[, options]) and reports the worst element.
#define VMOE_CHECK_GRADCHECK(...)                            \
  do {                                                       \
    const ::vmoe::testing::GradcheckResult vmoe_gradcheck_ = \
        ::vmoe::testing::gradcheck(__VA_ARGS__);             \
    INFO(vmoe_gradcheck_.message);                           \
    CHECK(vmoe_gradcheck_.ok);                               \
  } while (false)
