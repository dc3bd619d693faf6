// Every op on every backend, as ggml's test-backend-ops does: ONE table of op cases
// (op_table() below), each naming the backend Entry it exercises and a dtype, building its
// inputs from a seed (the same values on every device: drawn on the host, then copied) and
// running the op on a given device through the public ops of core/ops.h and through the
// backend entry itself. Every case runs on every available backend and is compared with the
// CPU reference by normalised error, max |out - ref| / max(1, max |ref|).
//
// Guard bytes: the outputs a case provides (Ctx::out) are views in the middle of a buffer of
// guard bytes - copy_, fill_, add_ and scale_ write into them through the public ops, kernels
// that take an output tensor through a backend-level call. After the run the bytes outside
// the view (before, after and between its elements) must be untouched, and every element of
// an output the kernel must write must have changed.
//
// Backends declare what they support (backend_supports); an unsupported (entry, dtype) is
// counted as skipped, never as passed, and the tally is printed at the end. A bf16 case
// whose entry the CPU lacks in bf16 takes the CPU's f32 result on the same (bf16-rounded)
// inputs as its reference. assign_slots and the optimizer updates are compared with
// independent formulations instead (one_hot + cumsum; hand loops in double).
//
// Shapes in case names: "^T" an input stored transposed (the last two axes swapped in
// memory), "~" a gapped view (padded rows, at an offset in a larger buffer).
//
// This table is the single place for per-backend op cases; test_ops.cpp checks the CPU
// reference itself against closed forms.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <map>
#include <numeric>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "core/autograd.h"
#include "core/backend.h"
#include "core/kernel_errors.h"
#include "core/ops.h"
#include "vmoe_build_features.h"  // VMOE_WITH_CUDA

using namespace vmoe;

namespace {

// ---------------------------------------------------------------- backends under test

// A device this build has a backend for but this machine lacks (a CUDA build without a GPU):
// its runs are reported as skipped, with the reason.
struct UnavailableDevice {
  Device device;
  std::string reason;  // "cuda:0 is not available: cudaErrorNoDevice: ..."
};

bool in_this_build(Device d) {
  return d.type != DeviceType::cuda || VMOE_WITH_CUDA;
}

// Every device whose backend this build has and this machine runs; the CPU (first) is the
// reference. A new device is one line here. Devices of the build that cannot run here go to
// `unavailable` when given.
std::vector<Device> backends_under_test(std::vector<UnavailableDevice>* unavailable = nullptr) {
  const Device candidates[] = {
      kCpu,
      kCpuStrict,
      Device{DeviceType::cuda, 0},
  };
  std::vector<Device> out;
  for (Device d : candidates) {
    if (!in_this_build(d)) continue;
    try {
      backend_for(d);
      out.push_back(d);
    } catch (const std::exception& e) {
      if (unavailable) unavailable->push_back({d, e.what()});
    }
  }
  return out;
}

constexpr Entry kLastEntry = Entry::load_loss_backward;  // the last enumerator of Entry

constexpr DType kFloats[] = {DType::f32, DType::f64, DType::bf16};
constexpr DType kAllDTypes[] = {DType::f32, DType::f64, DType::bf16,
                                DType::i32, DType::i64, DType::u8};
constexpr DType kNumeric[] = {DType::f32, DType::f64, DType::bf16, DType::i32, DType::i64};

// ---------------------------------------------------------------- input values and layouts

// How input values are drawn: N(0, scale^2), uniform in [lo, hi), integers in [lo, hi), or
// away from zero (|v| in [0.5, 1.5), either sign).
struct Gen {
  enum class Kind { normal, uniform, integers, nonzero } kind = Kind::normal;
  double a = 1, b = 0;
};
Gen normal(double scale = 1) {
  return {Gen::Kind::normal, scale, 0};
}
Gen uniform(double lo, double hi) {
  return {Gen::Kind::uniform, lo, hi};
}
Gen integers(int64_t lo, int64_t hi) {
  return {Gen::Kind::integers, double(lo), double(hi)};
}
Gen nonzero() {
  return {Gen::Kind::nonzero, 0, 0};
}

enum class Layout {
  contiguous,
  transposed,  // the last two axes swapped in memory
  gapped,      // rows padded by 3 elements (rank 1: every other element)
};

std::string shape_name(const Shape& s, Layout layout = Layout::contiguous) {
  return shape_str(s) + (layout == Layout::transposed ? "^T" : layout == Layout::gapped ? "~" : "");
}

Shape layout_strides(const Shape& shape, Layout layout) {
  const size_t r = shape.size();
  if (layout == Layout::transposed && r >= 2) {
    Shape swapped = shape;
    std::swap(swapped[r - 1], swapped[r - 2]);
    Shape st = contiguous_strides(swapped);
    std::swap(st[r - 1], st[r - 2]);
    return st;
  }
  if (layout == Layout::gapped) {
    Shape st(r);
    int64_t s = r == 1 ? 2 : 1;
    for (size_t i = r; i-- > 0;) {
      st[i] = s;
      s = s * shape[i] + (i + 1 == r && r >= 2 ? 3 : 0);
    }
    return st;
  }
  return contiguous_strides(shape);
}

// Elements spanned by a view of `shape` with `strides` (0 when empty).
int64_t extent(const Shape& shape, const Shape& strides) {
  if (shape_numel(shape) == 0) return 0;
  int64_t e = 1;
  for (size_t d = 0; d < shape.size(); ++d)
    e += (shape[d] - 1) * strides[d];
  return e;
}

// fn(flat index, element offset) for every element in row-major order.
template <class Fn>
void for_each_offset(const Shape& shape, const Shape& strides, Fn fn) {
  const int64_t n = shape_numel(shape);
  Shape idx(shape.size(), 0);
  for (int64_t i = 0; i < n; ++i) {
    int64_t off = 0;
    for (size_t d = 0; d < shape.size(); ++d)
      off += idx[d] * strides[d];
    fn(i, off);
    for (size_t d = shape.size(); d-- > 0;) {
      if (++idx[d] < shape[d]) break;
      idx[d] = 0;
    }
  }
}

// ---------------------------------------------------------------- the context of one run

constexpr int64_t kGuardBytes = 40;  // each side; a multiple of every dtype size, not of 64
constexpr uint8_t kGuardByte = 0xA5;

// A guarded output: `view` lies in `buffer` (u8, on the device) between guard bytes.
struct Guard {
  Tensor buffer;
  Tensor view;
  bool must_write = true;
};

// What a case's function gets: the device, the dtype, makers of inputs (drawn from the
// case's seed) and of guarded outputs.
class Ctx {
 public:
  Ctx(Device device_in, DType case_dtype_in, DType dtype_in, uint64_t seed)
      : device(device_in), case_dtype(case_dtype_in), dtype(dtype_in), seed_(seed) {}

  const Device device;
  const DType case_dtype;  // the case's dtype
  const DType dtype;       // what it computes in: case_dtype, or f32 for the CPU reference of bf16

  const Backend& be() const { return backend_for(device); }
  // Whether the op layer takes the case's dtype (f32, f64; bf16 reaches kernels directly).
  bool op_layer() const { return case_dtype == DType::f32 || case_dtype == DType::f64; }

  // `n` host values drawn from the next stream of the case's seed.
  std::vector<double> draw(int64_t n, Gen gen) {
    const RngKey key{seed_, ++stream_};
    std::vector<double> v =
        gen.kind == Gen::Kind::normal
            ? randn({n}, key, 0, DType::f64, kCpu).to_vector<double>()
            : rand_uniform({n}, key, 0, 1, 0, DType::f64, kCpu).to_vector<double>();
    for (double& x : v) {
      switch (gen.kind) {
        case Gen::Kind::normal:
          x *= gen.a;
          break;
        case Gen::Kind::uniform:
          x = gen.a + (gen.b - gen.a) * x;
          break;
        case Gen::Kind::integers:
          x = std::min(gen.b - 1, gen.a + std::floor((gen.b - gen.a) * x));
          break;
        case Gen::Kind::nonzero:
          x = x < 0.5 ? -0.5 - 2 * x : 2 * x - 0.5;
          break;
      }
    }
    return v;
  }

  // Host values as a `dt` tensor on the device, in `layout`. Values of the computing dtype
  // are rounded to bf16 first in a bf16 case, so that its f32 reference sees them too.
  Tensor values_as(DType dt, const std::vector<double>& v, const Shape& shape,
                   Layout layout = Layout::contiguous) {
    Tensor host = Tensor::from_vector(v, shape, kCpu);
    if (dt == dtype && case_dtype == DType::bf16) host = host.to(DType::bf16);
    return place(host.to(dt), layout);
  }
  Tensor input_as(DType dt, const Shape& shape, Gen gen = normal(),
                  Layout layout = Layout::contiguous) {
    return values_as(dt, draw(shape_numel(shape), gen), shape, layout);
  }
  Tensor input(const Shape& shape, Gen gen = normal(), Layout layout = Layout::contiguous) {
    return input_as(dtype, shape, gen, layout);
  }
  Tensor index(DType dt, const std::vector<int64_t>& v, const Shape& shape) {
    return values_as(dt, std::vector<double>(v.begin(), v.end()), shape);
  }
  Tensor empty(const Shape& shape, DType dt) const { return Tensor::empty(shape, dt, device); }

  // A guarded output of `shape` in `layout`; holding `init` when given (kernels that update
  // in place or accumulate), else every element must be written by the op.
  Tensor out_as(DType dt, const Shape& shape, Layout layout = Layout::contiguous,
                const Tensor& init = {}) {
    const Shape strides = layout_strides(shape, layout);
    const int64_t esize = int64_t(dtype_size(dt));
    const int64_t bytes = 2 * kGuardBytes + extent(shape, strides) * esize;
    Tensor buffer =
        Tensor::from_vector(std::vector<uint8_t>(size_t(bytes), kGuardByte), {bytes}, device);
    Tensor view = Tensor::view_of(buffer.storage(), shape, strides, kGuardBytes / esize, dt);
    if (init.defined()) copy_(view, init);
    guards_.push_back({buffer, view, !init.defined()});
    return view;
  }
  Tensor out(const Shape& shape, Layout layout = Layout::contiguous, const Tensor& init = {}) {
    return out_as(dtype, shape, layout, init);
  }

  // "" when every guard byte is intact and every must-write element was written.
  std::string check_guards() const {
    std::ostringstream os;
    for (size_t g = 0; g < guards_.size(); ++g) {
      const Guard& guard = guards_[g];
      const std::vector<uint8_t> bytes = guard.buffer.cpu().to_vector<uint8_t>();
      std::vector<bool> covered(bytes.size(), false);
      const int64_t esize = int64_t(dtype_size(guard.view.dtype()));
      int64_t unwritten = 0, first_unwritten = -1;
      for_each_offset(guard.view.shape(), guard.view.strides(), [&](int64_t i, int64_t off) {
        const size_t at = size_t(kGuardBytes + off * esize);
        bool untouched = true;
        for (size_t b = at; b < at + size_t(esize); ++b) {
          covered[b] = true;
          untouched = untouched && bytes[b] == kGuardByte;
        }
        if (untouched && guard.must_write && unwritten++ == 0) first_unwritten = i;
      });
      int64_t overwritten = 0, first_overwritten = -1;
      for (size_t b = 0; b < bytes.size(); ++b) {
        if (!covered[b] && bytes[b] != kGuardByte && overwritten++ == 0)
          first_overwritten = int64_t(b) - kGuardBytes;
      }
      if (overwritten > 0)
        os << "guarded output " << g << " " << guard.view.desc() << ": " << overwritten
           << " guard byte(s) overwritten, the first at byte " << first_overwritten
           << " from the view's start; ";
      if (unwritten > 0)
        os << "guarded output " << g << " " << guard.view.desc() << ": " << unwritten
           << " element(s) not written, the first at flat index " << first_unwritten << "; ";
    }
    return os.str();
  }

 private:
  // A host tensor on the device, in `layout` (same logical values).
  Tensor place(const Tensor& host, Layout layout) const {
    if (layout == Layout::contiguous || host.dim() == 0) return host.to(device);
    const Shape strides = layout_strides(host.shape(), layout);
    const int64_t offset = layout == Layout::gapped ? 5 : 0;
    const int64_t numel = offset + extent(host.shape(), strides) + 2;
    // What lies between the elements: NaN (or 222) makes a kernel that reads it visible.
    const double junk =
        is_floating(host.dtype()) ? std::numeric_limits<double>::quiet_NaN() : 222.0;
    Tensor buffer = Tensor::full({numel}, junk, host.dtype(), kCpu);
    Tensor view = Tensor::view_of(buffer.storage(), host.shape(), strides, offset, host.dtype());
    copy_(view, host);
    Tensor on_device = buffer.to(device);
    return Tensor::view_of(on_device.storage(), host.shape(), strides, offset, host.dtype());
  }

  uint64_t seed_;
  uint64_t stream_ = 0;
  std::vector<Guard> guards_;
};

// ---------------------------------------------------------------- the table

using Outputs = std::vector<Tensor>;
using CaseFn = std::function<Outputs(Ctx&)>;

struct OpCase {
  std::string name;  // the op and its shapes
  Entry entry;
  DType dtype;
  CaseFn run;
  // An independent formulation, run on the CPU in `dtype`; without it the reference is `run`
  // on the CPU backend.
  CaseFn reference;
};

class Table {
 public:
  void add(std::string name, Entry entry, DType dtype, CaseFn run, CaseFn reference = {}) {
    cases_.push_back({std::move(name), entry, dtype, std::move(run), std::move(reference)});
  }
  std::vector<OpCase> take() { return std::move(cases_); }

 private:
  std::vector<OpCase> cases_;
};

Tensor apply_unary(UnaryOp op, const Tensor& x) {
  switch (op) {
    case UnaryOp::neg:
      return vmoe::neg(x);
    case UnaryOp::exp:
      return vmoe::exp(x);
    case UnaryOp::log:
      return vmoe::log(x);
    case UnaryOp::tanh:
      return vmoe::tanh(x);
    case UnaryOp::sigmoid:
      return vmoe::sigmoid(x);
    case UnaryOp::relu:
      return vmoe::relu(x);
    case UnaryOp::sqrt:
      return vmoe::sqrt(x);
    case UnaryOp::square:
      return vmoe::square(x);
    case UnaryOp::gelu:
      return vmoe::gelu(x);
    case UnaryOp::normal_cdf:
      return vmoe::normal_cdf(x);
  }
  return {};
}

constexpr UnaryOp kUnaryOps[] = {
    UnaryOp::neg,  UnaryOp::exp,  UnaryOp::log,    UnaryOp::tanh, UnaryOp::sigmoid,
    UnaryOp::relu, UnaryOp::sqrt, UnaryOp::square, UnaryOp::gelu, UnaryOp::normal_cdf};

// Inputs each unary op is defined and smooth on.
Gen unary_domain(UnaryOp op) {
  if (op == UnaryOp::log || op == UnaryOp::sqrt) return uniform(0.1, 4);
  if (op == UnaryOp::relu) return nonzero();
  return normal(2);
}

// A leaf copy of x that requires grad.
Tensor leaf(const Tensor& x) {
  Tensor l = x.detach().clone();
  l.set_requires_grad(true);
  return l;
}

Shape without_last(const Shape& s) {
  return Shape(s.begin(), s.end() - 1);
}

// ---- memory and elementwise

void add_copy_fill_cases(Table& t) {
  struct CopyShape {
    Shape shape;
    Layout src, dst;
  };
  const CopyShape copy_shapes[] = {{{5, 7}, Layout::transposed, Layout::gapped},
                                   {{3, 4, 5}, Layout::gapped, Layout::transposed},
                                   {{0, 3}, Layout::contiguous, Layout::contiguous},
                                   {{1}, Layout::contiguous, Layout::gapped},
                                   {{}, Layout::contiguous, Layout::contiguous}};
  for (DType dt : kAllDTypes) {
    // Integers in [0, 100) are exact in every dtype (and never the guard byte's value).
    const Gen gen = is_floating(dt) ? normal(3) : integers(0, 100);
    for (const CopyShape& s : copy_shapes) {
      t.add("copy_ " + shape_name(s.shape, s.src) + " -> " + shape_name(s.shape, s.dst),
            Entry::copy, dt, [=](Ctx& c) {
              Tensor src = c.input(s.shape, gen, s.src);
              Tensor dst = c.out(s.shape, s.dst);
              copy_(dst, src);
              return Outputs{dst, contiguous(src)};
            });
    }
    if (dt == DType::f64) continue;
    for (bool from_f64 : {true, false}) {
      t.add(std::string("copy_ converting ") + (from_f64 ? "from" : "to") +
                " f64 [4, 6]~ -> [4, 6]^T",
            Entry::copy, dt, [=](Ctx& c) {
              const DType from = from_f64 ? DType::f64 : c.dtype,
                          to = from_f64 ? c.dtype : DType::f64;
              Tensor src = c.input_as(from, {4, 6}, integers(0, 100), Layout::gapped);
              Tensor dst = c.out_as(to, {4, 6}, Layout::transposed);
              copy_(dst, src);
              return Outputs{dst, to_dtype(src, to)};
            });
    }
  }
  struct FillShape {
    Shape shape;
    Layout layout;
  };
  const FillShape fill_shapes[] = {{{4, 6}, Layout::gapped},        {{3, 5}, Layout::transposed},
                                   {{0}, Layout::contiguous},       {{1}, Layout::contiguous},
                                   {{2, 3, 4}, Layout::contiguous}, {{}, Layout::contiguous}};
  for (DType dt : kAllDTypes) {
    const double value = is_floating(dt) ? -2.5 : 7;
    for (const FillShape& s : fill_shapes) {
      t.add("fill_ " + shape_name(s.shape, s.layout), Entry::fill, dt, [=](Ctx& c) {
        Tensor v = c.out(s.shape, s.layout);
        fill_(v, value);
        Tensor z = c.out(s.shape, s.layout);
        fill_(z, 0.0);
        return Outputs{v, z, Tensor::full(s.shape, value, c.dtype, c.device)};
      });
    }
  }
}

void add_elementwise_cases(Table& t) {
  struct BinaryShapes {
    Shape a, b;
    Layout la = Layout::contiguous, lb = Layout::contiguous;
  };
  const BinaryShapes binary_shapes[] = {{{3, 4}, {3, 4}},
                                        {{3, 1}, {1, 4}},
                                        {{2, 3, 4}, {3, 1}, Layout::transposed},
                                        {{}, {5}},
                                        {{0, 4}, {4}},
                                        {{1}, {1}},
                                        {{4, 5}, {4, 5}, Layout::gapped, Layout::transposed}};
  const BinaryOp binary_ops[] = {BinaryOp::add, BinaryOp::sub, BinaryOp::mul, BinaryOp::div};
  for (DType dt : kFloats) {
    for (const BinaryShapes& s : binary_shapes) {
      t.add("add/sub/mul/div " + shape_name(s.a, s.la) + " x " + shape_name(s.b, s.lb),
            Entry::binary, dt, [=](Ctx& c) {
              Tensor a = c.input(s.a, normal(), s.la), b = c.input(s.b, nonzero(), s.lb);
              const Shape shape = broadcast_shapes(s.a, s.b, "test");
              Outputs out;
              for (BinaryOp op : binary_ops) {
                Tensor o = c.out(shape);
                c.be().binary(op, expand(a, shape), expand(b, shape), o);
                out.push_back(o);
              }
              if (c.op_layer()) {
                out.insert(out.end(), {add(a, b), sub(b, a), mul(a, b), div(a, b), a * 2.5 + 1.0});
              }
              return out;
            });
    }
  }

  struct UnaryShape {
    Shape shape;
    Layout layout = Layout::contiguous;
  };
  const UnaryShape unary_shapes[] = {
      {{0}}, {{1}}, {{7, 9}, Layout::transposed}, {{3, 40}, Layout::gapped}};
  for (DType dt : kFloats) {
    for (const UnaryShape& s : unary_shapes) {
      t.add("unary (all ops) " + shape_name(s.shape, s.layout), Entry::unary, dt, [=](Ctx& c) {
        Outputs out;
        for (UnaryOp op : kUnaryOps) {
          Tensor x = c.input(s.shape, unary_domain(op), s.layout);
          Tensor o = c.out(s.shape);
          c.be().unary(op, contiguous(x), o);
          out.push_back(o);
          if (c.op_layer()) out.push_back(apply_unary(op, x));
        }
        return out;
      });
    }
    for (const Shape& shape : {Shape{0}, Shape{1}, Shape{5, 6}}) {
      t.add("unary backward (all ops) " + shape_name(shape), Entry::unary_backward, dt,
            [=](Ctx& c) {
              Outputs out;
              for (UnaryOp op : kUnaryOps) {
                Tensor x = c.input(shape, unary_domain(op)), gy = c.input(shape);
                Tensor y = c.empty(shape, c.dtype);
                c.be().unary(op, x, y);
                Tensor gx = c.out(shape);
                c.be().unary_backward(op, x, y, gy, gx);
                out.push_back(gx);
                if (c.op_layer()) {
                  Tensor xl = leaf(x);
                  apply_unary(op, xl).backward(gy);
                  out.push_back(xl.grad());
                }
              }
              return out;
            });
    }
  }

  struct InPlaceShape {
    Shape shape;
    Layout dst, src;
  };
  const InPlaceShape in_place_shapes[] = {{{4, 6}, Layout::gapped, Layout::transposed},
                                          {{3, 5}, Layout::transposed, Layout::gapped},
                                          {{2, 3, 4}, Layout::contiguous, Layout::contiguous},
                                          {{0, 3}, Layout::contiguous, Layout::contiguous},
                                          {{1}, Layout::gapped, Layout::contiguous}};
  for (DType dt : kFloats) {
    for (const InPlaceShape& s : in_place_shapes) {
      t.add("add_ " + shape_name(s.shape, s.dst) + " += " + shape_name(s.shape, s.src),
            Entry::add_scaled, dt, [=](Ctx& c) {
              Tensor dst = c.out(s.shape, s.dst, c.input(s.shape));
              add_(dst, c.input(s.shape, normal(), s.src), -0.75);
              return Outputs{dst};
            });
      t.add("scale_ " + shape_name(s.shape, s.dst), Entry::scale, dt, [=](Ctx& c) {
        Tensor dst = c.out(s.shape, s.dst, c.input(s.shape));
        scale_(dst, 1.5);
        return Outputs{dst};
      });
    }
  }
}

// ---- reductions

void add_reduction_cases(Table& t) {
  struct SquaresShape {
    Shape shape;
    Layout layout = Layout::contiguous;
  };
  const SquaresShape squares_shapes[] = {
      {{0}}, {{1}}, {{5, 7}, Layout::transposed}, {{40000}}, {{3, 4}, Layout::gapped}};
  for (DType dt : kFloats) {
    for (const SquaresShape& s : squares_shapes) {
      t.add("sum_squares " + shape_name(s.shape, s.layout), Entry::sum_squares, dt, [=](Ctx& c) {
        Tensor x = c.input(s.shape, normal(), s.layout);
        // The kernel accumulates into its [1] f64 output.
        Tensor acc =
            c.out_as(DType::f64, {1}, Layout::contiguous, c.values_as(DType::f64, {0.5}, {1}));
        c.be().sum_squares(contiguous(x), acc);
        return Outputs{acc, sum_squares(x)};
      });
    }
  }

  struct SumShape {
    Shape shape;
    std::vector<int64_t> axes;
    Layout layout = Layout::contiguous;
  };
  const SumShape sum_shapes[] = {{{2, 3, 4}, {0, 2}},
                                 {{3, 5}, {0}, Layout::transposed},
                                 {{4, 6}, {1}, Layout::gapped},
                                 {{0, 3}, {0}},
                                 {{1, 1}, {0, 1}},
                                 {{3, 4}, {}},
                                 {{5, 300}, {0}},
                                 {{2, 3, 4}, {1}}};
  for (DType dt : kFloats) {
    for (const SumShape& s : sum_shapes) {
      std::string axes;
      for (int64_t a : s.axes)
        axes += (axes.empty() ? "" : ", ") + std::to_string(a);
      t.add("sum " + shape_name(s.shape, s.layout) + " over {" + axes + "}", Entry::reduce_sum, dt,
            [=](Ctx& c) {
              Tensor x = c.input(s.shape, normal(), s.layout);
              Shape kept = s.shape;
              for (int64_t a : s.axes)
                kept[size_t(a)] = 1;
              Tensor o = c.out(kept);
              c.be().reduce_sum(contiguous(x), o);
              Outputs out{o};
              if (c.op_layer()) {
                out.push_back(sum(x, s.axes));
                out.push_back(mean(x, s.axes, KeepDim::yes));
              }
              return out;
            });
    }
  }

  struct MaxShape {
    Shape shape;
    Layout layout = Layout::contiguous;
  };
  const MaxShape max_shapes[] = {
      {{4, 7}}, {{1, 1}}, {{3, 5}, Layout::transposed}, {{2, 3, 4}, Layout::gapped}};
  for (DType dt : kFloats) {
    for (const MaxShape& s : max_shapes) {
      t.add("max over the last axis " + shape_name(s.shape, s.layout), Entry::max_last, dt,
            [=](Ctx& c) {
              Tensor x = c.input(s.shape, normal(), s.layout);
              const Shape rows = without_last(s.shape);
              Tensor values = c.out(rows), arg = c.out_as(DType::i64, rows);
              c.be().max_last(contiguous(x), values, arg);
              Outputs out{values, arg};
              if (c.op_layer())
                out.insert(out.end(), {max(x, -1), max(x, 0, KeepDim::yes), argmax(x)});
              return out;
            });
    }
  }

  struct CumsumShape {
    Shape shape;
    int64_t axis;
    Layout layout = Layout::contiguous;
  };
  const CumsumShape cumsum_shapes[] = {{{2, 3, 4}, 1}, {{5}, 0},
                                       {{0, 3}, 0},    {{3, 4}, 1, Layout::transposed},
                                       {{1}, 0},       {{3, 200}, 1, Layout::gapped}};
  for (DType dt : kNumeric) {
    for (const CumsumShape& s : cumsum_shapes) {
      t.add("cumsum " + shape_name(s.shape, s.layout) + " along " + std::to_string(s.axis),
            Entry::cumsum, dt, [=](Ctx& c) {
              Tensor x =
                  c.input(s.shape, is_floating(c.dtype) ? normal() : integers(-5, 6), s.layout);
              int64_t outer = 1, inner = 1;
              for (int64_t i = 0; i < s.axis; ++i)
                outer *= s.shape[size_t(i)];
              for (size_t i = size_t(s.axis) + 1; i < s.shape.size(); ++i)
                inner *= s.shape[i];
              const int64_t n = s.shape[size_t(s.axis)];
              Tensor forward = c.out(s.shape), reverse = c.out(s.shape);
              c.be().cumsum(contiguous(x), outer, n, inner, ScanDirection::forward, forward);
              c.be().cumsum(contiguous(x), outer, n, inner, ScanDirection::reverse, reverse);
              return Outputs{forward, reverse, cumsum(x, s.axis)};
            });
    }
  }
}

// ---- matrix products

void add_gemm_cases(Table& t) {
  struct GemmShape {
    int64_t batch, m, k, n;
    bool ta = false, tb = false;
  };
  const GemmShape gemm_shapes[] = {{1, 7, 5, 3},
                                   {1, 7, 5, 3, true},
                                   {1, 7, 5, 3, false, true},
                                   {1, 7, 5, 3, true, true},
                                   {3, 6, 4, 5, false, true},
                                   {2, 33, 17, 29, true},
                                   {1, 1, 1, 1},
                                   {1, 4, 0, 3},
                                   {1, 0, 3, 2}};
  for (DType dt : kFloats) {
    for (const GemmShape& s : gemm_shapes) {
      const bool batched = s.batch > 1;
      auto with_batch = [=](Shape shape) {
        if (batched) shape.insert(shape.begin(), s.batch);
        return shape;
      };
      const Shape as = with_batch(s.ta ? Shape{s.k, s.m} : Shape{s.m, s.k});
      const Shape bs = with_batch(s.tb ? Shape{s.n, s.k} : Shape{s.k, s.n});
      const Shape cs = with_batch({s.m, s.n});
      t.add("gemm " + shape_name(as, Layout::gapped) + (s.ta ? "'" : "") + " x " +
                shape_name(bs, Layout::gapped) + (s.tb ? "'" : "") + ", alpha 2, beta 0.5",
            Entry::gemm, dt, [=](Ctx& c) {
              // Operands and result with padded rows: lda, ldb, ldc exceed the row lengths.
              Tensor a = c.input(as, normal(), Layout::gapped);
              Tensor b = c.input(bs, normal(), Layout::gapped);
              Tensor out = c.out(cs, Layout::gapped, c.input(cs));
              const size_t r = cs.size();
              GemmArgs g;
              g.trans_a = s.ta;
              g.trans_b = s.tb;
              g.m = s.m;
              g.n = s.n;
              g.k = s.k;
              g.batch = s.batch;
              g.a = a.device_raw();
              g.b = b.device_raw();
              g.c = out.device_raw();
              g.lda = a.strides()[r - 2];
              g.ldb = b.strides()[r - 2];
              g.ldc = out.strides()[r - 2];
              g.stride_a = batched ? a.strides()[0] : 0;
              g.stride_b = batched ? b.strides()[0] : 0;
              g.stride_c = batched ? out.strides()[0] : 0;
              g.alpha = 2;
              g.beta = 0.5;
              g.dtype = c.dtype;
              c.be().gemm(g);
              Outputs outs{out};
              if (c.op_layer()) {
                outs.push_back(
                    matmul(a, b, s.ta ? Trans::yes : Trans::no, s.tb ? Trans::yes : Trans::no));
                if (!batched && !s.ta && !s.tb) outs.push_back(linear(a, b, c.input({s.n})));
              }
              return outs;
            });
    }
  }
}

// ---- neural-network ops

void add_nn_cases(Table& t) {
  struct RowShape {
    Shape shape;
    Layout layout = Layout::contiguous;
  };
  const SoftmaxKind kinds[] = {SoftmaxKind::plain, SoftmaxKind::log};
  const RowShape softmax_shapes[] = {
      {{4, 7}}, {{1, 1}}, {{2, 3, 5}, Layout::transposed}, {{3, 100}, Layout::gapped}};
  const RowShape layer_norm_shapes[] = {
      {{5, 8}}, {{1, 1}}, {{0, 4}}, {{3, 2, 6}, Layout::transposed}, {{4, 16}, Layout::gapped}};
  for (DType dt : kFloats) {
    for (const RowShape& s : softmax_shapes) {
      t.add("softmax, log_softmax " + shape_name(s.shape, s.layout), Entry::softmax, dt,
            [=](Ctx& c) {
              Tensor x = c.input(s.shape, normal(4), s.layout);
              Outputs out;
              for (SoftmaxKind kind : kinds) {
                Tensor y = c.out(s.shape);
                c.be().softmax(contiguous(x), y, kind);
                out.push_back(y);
              }
              if (c.op_layer()) out.insert(out.end(), {softmax(x), log_softmax(x)});
              return out;
            });
    }
    for (const Shape& shape : {Shape{4, 7}, Shape{1, 1}, Shape{3, 9}}) {
      t.add("softmax, log_softmax backward " + shape_name(shape), Entry::softmax_backward, dt,
            [=](Ctx& c) {
              Tensor x = c.input(shape, normal(3)), gy = c.input(shape);
              Outputs out;
              for (SoftmaxKind kind : kinds) {
                Tensor y = c.empty(shape, c.dtype);
                c.be().softmax(x, y, kind);
                Tensor gx = c.out(shape);
                c.be().softmax_backward(y, gy, gx, kind);
                out.push_back(gx);
                if (c.op_layer()) {
                  Tensor xl = leaf(x);
                  (kind == SoftmaxKind::log ? log_softmax(xl) : softmax(xl)).backward(gy);
                  out.push_back(xl.grad());
                }
              }
              return out;
            });
    }
    for (const RowShape& s : layer_norm_shapes) {
      const int64_t d = s.shape.back();
      t.add("layer_norm " + shape_name(s.shape, s.layout), Entry::layer_norm, dt, [=](Ctx& c) {
        Tensor x = c.input(s.shape, normal(3), s.layout);
        Tensor scale = c.input({d}), bias = c.input({d});
        const Shape rows = without_last(s.shape);
        Tensor y = c.out(s.shape), mu = c.out(rows), rstd = c.out(rows);
        c.be().layer_norm(contiguous(x), scale, bias, 1e-5, y, mu, rstd);
        Outputs out{y, mu, rstd};
        if (c.op_layer()) out.push_back(layer_norm(x, scale, bias, 1e-5));
        return out;
      });
      t.add("layer_norm backward " + shape_name(s.shape), Entry::layer_norm_backward, dt,
            [=](Ctx& c) {
              Tensor x = c.input(s.shape, normal(3)), gy = c.input(s.shape);
              Tensor scale = c.input({d}), bias = c.input({d});
              const Shape rows = without_last(s.shape);
              Tensor y = c.empty(s.shape, c.dtype), mu = c.empty(rows, c.dtype),
                     rstd = c.empty(rows, c.dtype);
              c.be().layer_norm(x, scale, bias, 1e-5, y, mu, rstd);
              Tensor gx = c.out(s.shape), gscale = c.out({d}), gbias = c.out({d});
              c.be().layer_norm_backward(x, scale, mu, rstd, gy, gx, gscale, gbias);
              Outputs out{gx, gscale, gbias};
              if (c.op_layer()) {
                Tensor xl = leaf(x), sl = leaf(scale), bl = leaf(bias);
                layer_norm(xl, sl, bl, 1e-5).backward(gy);
                out.insert(out.end(), {xl.grad(), sl.grad(), bl.grad()});
              }
              return out;
            });
    }
    // Fused bias + GELU: a dense layer's shared bias (G = 1) and the stacked experts' rows.
    const Shape bias_gelu_shapes[] = {{1, 6, 10}, {3, 5, 7}, {2, 0, 4}};
    for (const Shape& shape : bias_gelu_shapes) {
      const Shape bias_shape{shape[0], shape[2]};
      t.add("bias_gelu " + shape_name(shape), Entry::bias_gelu, dt, [=](Ctx& c) {
        Tensor x = c.input(shape, normal(3)), bias = c.input(bias_shape);
        Tensor y = c.out(shape);
        c.be().bias_gelu(x, bias, y);
        Outputs out{y};
        if (c.op_layer()) out.push_back(bias_gelu(x, bias));
        return out;
      });
      t.add("bias_gelu backward " + shape_name(shape), Entry::bias_gelu_backward, dt, [=](Ctx& c) {
        Tensor x = c.input(shape, normal(3)), bias = c.input(bias_shape), gy = c.input(shape);
        Tensor gx = c.out(shape);
        c.be().bias_gelu_backward(x, bias, gy, gx);
        Outputs out{gx};
        if (c.op_layer()) {
          Tensor xl = leaf(x), bl = leaf(bias);
          bias_gelu(xl, bl).backward(gy);
          out.insert(out.end(), {xl.grad(), bl.grad()});
        }
        return out;
      });
    }
    // MoE combine: expert rows [R, D], weights [N, k], rows as routing makes them (each used
    // once, -1 dropped).
    struct CombineCase {
      int64_t rows, d, n, k;
      std::vector<int64_t> index;
    };
    const CombineCase combines[] = {{6, 5, 3, 2, {0, 4, -1, 2, 5, 1}},
                                    {9, 33, 4, 2, {8, 0, 1, -1, 3, 7, -1, 2}},
                                    {3, 4, 0, 2, {}}};
    for (const CombineCase& s : combines) {
      const std::string name =
          std::to_string(s.n) + "x" + std::to_string(s.k) + " of " + shape_name({s.rows, s.d});
      const int64_t m = int64_t(s.index.size());
      t.add("combine " + name, Entry::combine, dt, [=](Ctx& c) {
        Tensor y = c.input({s.rows, s.d}), w = c.input({s.n, s.k});
        Tensor rows = c.index(DType::i64, s.index, {m});
        Tensor out = c.out({s.n, s.d});
        c.be().combine(y, w, rows, out);
        Outputs outs{out};
        if (c.op_layer()) outs.push_back(combine(y, w, rows));
        return outs;
      });
      t.add("combine backward " + name, Entry::combine_backward, dt, [=](Ctx& c) {
        Tensor y = c.input({s.rows, s.d}), w = c.input({s.n, s.k}), g = c.input({s.n, s.d});
        Tensor rows = c.index(DType::i64, s.index, {m});
        Tensor gy = c.out({s.rows, s.d}), gw = c.out({s.n, s.k});
        c.be().combine_backward(y, w, rows, g, gy, gw);
        Outputs outs{gy, gw};
        if (c.op_layer()) {
          Tensor yl = leaf(y), wl = leaf(w);
          combine(yl, wl, rows).backward(g);
          outs.insert(outs.end(), {yl.grad(), wl.grad()});
        }
        return outs;
      });
    }
    // The experts' MLP on occupied rows: padding rows inside and at the end of experts, an
    // expert with no tokens, and no rows at all.
    struct ExpertCase {
      int64_t e, r, d, m;
      std::vector<int64_t> occupied;
    };
    const ExpertCase expert_cases[] = {{2, 5, 3, 4, {0, 1, -1, 2, -1, 3, -1, -1, 4, 5}},
                                       {3, 2, 5, 6, {-1, -1, 0, 1, 2, -1}},
                                       {2, 0, 3, 4, {}}};
    for (const ExpertCase& s : expert_cases) {
      const std::string name = shape_name({s.e, s.r, s.d}) + " M " + std::to_string(s.m);
      const Shape xs{s.e, s.r, s.d}, hs{s.e, s.r, s.m}, w1s{s.e, s.d, s.m}, w2s{s.e, s.m, s.d};
      const Shape b1s{s.e, s.m}, b2s{s.e, s.d}, occ_shape{s.e * s.r};
      t.add("expert_mlp " + name, Entry::expert_mlp, dt, [=](Ctx& c) {
        Tensor x = c.input(xs), w1 = c.input(w1s), b1 = c.input(b1s), w2 = c.input(w2s),
               b2 = c.input(b2s);
        Tensor occ = c.index(DType::i64, s.occupied, occ_shape);
        Tensor pre = c.out(hs), h = c.out(hs), y = c.out(xs);
        c.be().expert_mlp(x, occ, w1, b1, w2, b2, pre, h, y);
        Outputs out{pre, h, y};
        if (c.op_layer()) out.push_back(expert_mlp(x, occ, w1, b1, w2, b2));
        return out;
      });
      t.add("expert_mlp backward " + name, Entry::expert_mlp_backward, dt, [=](Ctx& c) {
        Tensor x = c.input(xs), w1 = c.input(w1s), b1 = c.input(b1s), w2 = c.input(w2s),
               b2 = c.input(b2s), pre = c.input(hs, normal(2)), gy = c.input(xs);
        Tensor occ = c.index(DType::i64, s.occupied, occ_shape);
        Tensor gpre = c.out(hs), gx = c.out(xs), gb1 = c.out(b1s), gb2 = c.out(b2s);
        c.be().expert_mlp_backward(gy, occ, w1, b1, w2, pre, gpre, gx, gb1, gb2);
        Outputs out{gpre, gx, gb1, gb2};
        if (c.op_layer()) {
          Tensor xl = leaf(x), w1l = leaf(w1), b1l = leaf(b1), w2l = leaf(w2), b2l = leaf(b2);
          expert_mlp(xl, occ, w1l, b1l, w2l, b2l).backward(gy);
          out.insert(out.end(), {xl.grad(), w1l.grad(), b1l.grad(), w2l.grad(), b2l.grad()});
        }
        return out;
      });
    }
    // MoE auxiliary losses over routing groups: whole groups, a last partial group, one-row
    // groups.
    struct AuxCase {
      int64_t n, e, group_size;
    };
    const AuxCase aux_cases[] = {{12, 4, 4}, {11, 3, 4}, {5, 2, 1}};
    for (const AuxCase& s : aux_cases) {
      const int64_t groups = (s.n + s.group_size - 1) / s.group_size;
      const Shape xs{s.n, s.e}, gs{groups, s.e};
      const std::string name = shape_name(xs) + " in groups of " + std::to_string(s.group_size);
      std::vector<int64_t> kth(size_t(s.n));
      for (int64_t i = 0; i < s.n; ++i)
        kth[size_t(i)] = (i * 7 + 3) % s.e;
      const double sigma = 0.25;
      t.add("importance_loss " + name, Entry::importance_loss, dt, [=](Ctx& c) {
        Tensor p = c.input(xs, uniform(0.05, 1));
        Tensor loss = c.out({}), sums = c.out(gs);
        c.be().importance_loss(p, s.group_size, loss, sums);
        Outputs out{loss, sums};
        if (c.op_layer()) out.push_back(fused_importance_loss(p, s.group_size));
        return out;
      });
      t.add("importance_loss backward " + name, Entry::importance_loss_backward, dt, [=](Ctx& c) {
        Tensor p = c.input(xs, uniform(0.05, 1)), g = c.input({});
        Tensor sums = c.empty(gs, c.dtype), loss = c.empty({}, c.dtype);
        c.be().importance_loss(p, s.group_size, loss, sums);
        Tensor gp = c.out(xs);
        c.be().importance_loss_backward(sums, s.group_size, g, gp);
        Outputs out{gp};
        if (c.op_layer()) {
          Tensor pl = leaf(p);
          fused_importance_loss(pl, s.group_size).backward(g);
          out.push_back(pl.grad());
        }
        return out;
      });
      t.add("load_loss " + name, Entry::load_loss, dt, [=](Ctx& c) {
        Tensor logits = c.input(xs), noisy = c.input(xs);
        Tensor k = c.index(DType::i64, kth, {s.n});
        Tensor loss = c.out({}), means = c.out(gs);
        c.be().load_loss(logits, noisy, k, sigma, s.group_size, loss, means);
        Outputs out{loss, means};
        if (c.op_layer()) out.push_back(fused_load_loss(logits, noisy, k, sigma, s.group_size));
        return out;
      });
      t.add("load_loss backward " + name, Entry::load_loss_backward, dt, [=](Ctx& c) {
        Tensor logits = c.input(xs), noisy = c.input(xs), g = c.input({});
        Tensor k = c.index(DType::i64, kth, {s.n});
        Tensor means = c.empty(gs, c.dtype), loss = c.empty({}, c.dtype);
        c.be().load_loss(logits, noisy, k, sigma, s.group_size, loss, means);
        Tensor gl = c.out(xs), gn = c.out(xs);
        c.be().load_loss_backward(logits, noisy, k, sigma, s.group_size, means, g, gl, gn);
        Outputs out{gl, gn};
        if (c.op_layer()) {
          Tensor ll = leaf(logits), nl = leaf(noisy);
          fused_load_loss(ll, nl, k, sigma, s.group_size).backward(g);
          out.insert(out.end(), {ll.grad(), nl.grad()});
        }
        return out;
      });
    }
    // Fused attention: separate [B, H, N, Dh] tensors with N from one token to a ViT-like 50 and
    // a tile edge (64); and views of a fused projection [B, N, 3, H, Dh] with out [B, N, H, Dh]
    // (self_attention's layout; 3 heads, 17 tokens).
    struct AttentionCase {
      Shape shape;  // [B, H, N, Dh]
      bool projection;
    };
    const AttentionCase attention_cases[] = {{{1, 1, 1, 4}, false},
                                             {{3, 1, 17, 8}, false},
                                             {{2, 1, 50, 16}, false},
                                             {{1, 2, 65, 32}, false},
                                             {{2, 3, 17, 8}, true}};
    for (const AttentionCase& a : attention_cases) {
      const Shape shape = a.shape;
      const int64_t b = shape[0], h = shape[1], n = shape[2], dh = shape[3], d = h * dh;
      const Shape rows{b * h, n};
      const DType lse_dtype = dt == DType::f64 ? DType::f64 : DType::f32;
      // The storages of q, k, v (and their gradients) and of out (and gout), and views of them.
      const Shape in_shape = a.projection ? Shape{b, n, 3 * d} : Shape{3, b, h, n, dh};
      const Shape out_shape = a.projection ? Shape{b, n, d} : shape;
      auto in_view = [=](const Tensor& x, int64_t part) {
        const Shape strides =
            a.projection ? Shape{n * 3 * d, dh, 3 * d, 1} : Shape{h * n * dh, n * dh, dh, 1};
        const int64_t offset = part * (a.projection ? d : b * h * n * dh);
        return Tensor::view_of(x.storage(), shape, strides, x.offset() + offset, x.dtype());
      };
      auto out_view = [=](const Tensor& x) {
        const Shape strides =
            a.projection ? Shape{n * d, dh, d, 1} : Shape{h * n * dh, n * dh, dh, 1};
        return Tensor::view_of(x.storage(), shape, strides, x.offset(), x.dtype());
      };
      const std::string name = (a.projection ? "projection " : "") + shape_name(shape);
      t.add("attention " + name, Entry::attention_forward, dt, [=](Ctx& c) {
        Tensor in = c.input(in_shape);
        Tensor out = c.out(out_shape), lse = c.empty(rows, lse_dtype);
        c.be().attention_forward(in_view(in, 0), in_view(in, 1), in_view(in, 2), 0.3, out_view(out),
                                 lse);
        return Outputs{out, lse};
      });
      t.add("attention backward " + name, Entry::attention_backward, dt, [=](Ctx& c) {
        Tensor in = c.input(in_shape), gout = c.input(out_shape);
        Tensor out = c.empty(out_shape, c.dtype), lse = c.empty(rows, lse_dtype);
        c.be().attention_forward(in_view(in, 0), in_view(in, 1), in_view(in, 2), 0.3, out_view(out),
                                 lse);
        Tensor grads = c.out(in_shape);
        c.be().attention_backward(in_view(in, 0), in_view(in, 1), in_view(in, 2), out_view(out),
                                  lse, out_view(gout), 0.3, in_view(grads, 0), in_view(grads, 1),
                                  in_view(grads, 2));
        return Outputs{grads};
      });
    }
    const RowShape xent_shapes[] = {{{4, 5}}, {{1, 1}}, {{6, 10}, Layout::transposed}, {{0, 3}}};
    for (Entry entry : {Entry::softmax_xent, Entry::sigmoid_xent}) {
      const bool soft = entry == Entry::softmax_xent;
      for (const RowShape& s : xent_shapes) {
        const int64_t rows = s.shape[0], classes = s.shape[1];
        t.add(std::string(soft ? "softmax" : "sigmoid") + " cross-entropy " +
                  shape_name(s.shape, s.layout),
              entry, dt, [=](Ctx& c) {
                Tensor logits = c.input(s.shape, normal(3), s.layout);
                Tensor labels = c.input_as(DType::i32, {rows}, integers(0, classes));
                Tensor loss = c.out({rows}), dlogits = c.out(s.shape);
                (soft ? c.be().softmax_xent : c.be().sigmoid_xent)(contiguous(logits), labels, loss,
                                                                   dlogits);
                Outputs out{loss, dlogits};
                if (c.op_layer()) {
                  Tensor ll = leaf(logits);
                  Tensor mean_loss =
                      soft ? softmax_cross_entropy(ll, labels) : sigmoid_cross_entropy(ll, labels);
                  mean_loss.backward();
                  out.insert(out.end(), {mean_loss, ll.grad()});
                }
                return out;
              });
      }
    }
    struct DropoutShape {
      Shape shape;
      double rate;
    };
    for (const DropoutShape& s : {DropoutShape{{0}, 0.5}, DropoutShape{{1}, 0.25},
                                  DropoutShape{{1000}, 0.25}, DropoutShape{{10, 33}, 0.5}}) {
      t.add("dropout " + shape_name(s.shape) + " rate " + std::to_string(s.rate),
            Entry::dropout_mask, dt, [=](Ctx& c) {
              const RngKey key{77, 5};
              Tensor mask = c.out(s.shape);
              c.be().dropout_mask(mask, s.rate, key, 7);
              Outputs out{mask};
              if (c.op_layer()) out.push_back(dropout(c.input(s.shape), s.rate, key, 7));
              return out;
            });
    }
    struct RandomShape {
      Shape shape;
      Distribution dist;
      uint64_t offset;
    };
    for (const RandomShape& s :
         {RandomShape{{3, 1000}, Distribution::normal, 0},
          RandomShape{{1000}, Distribution::uniform, 123},
          RandomShape{{0}, Distribution::normal, 5}, RandomShape{{1}, Distribution::uniform, 1}}) {
      const bool is_normal = s.dist == Distribution::normal;
      t.add(std::string(is_normal ? "randn " : "rand_uniform [-2, 5) ") + shape_name(s.shape) +
                " from " + std::to_string(s.offset),
            Entry::random_fill, dt, [=](Ctx& c) {
              const RngKey key{91, 2};
              Tensor o = c.out(s.shape);
              c.be().random_fill(o, key, s.offset, s.dist, -2, 5);
              return Outputs{
                  o, is_normal ? randn(s.shape, key, s.offset, c.dtype, c.device)
                               : rand_uniform(s.shape, key, -2, 5, s.offset, c.dtype, c.device)};
            });
    }
    struct PatchShape {
      Shape images;
      int64_t p;
      Layout layout = Layout::contiguous;
    };
    for (const PatchShape& s :
         {PatchShape{{2, 4, 6, 3}, 2}, PatchShape{{1, 3, 6, 2}, 3}, PatchShape{{1, 1, 1, 1}, 1},
          PatchShape{{0, 2, 2, 1}, 2}, PatchShape{{2, 4, 4, 2}, 2, Layout::transposed}}) {
      const Shape ps = {s.images[0], (s.images[1] / s.p) * (s.images[2] / s.p),
                        s.p * s.p * s.images[3]};
      t.add("patches " + shape_name(s.images, s.layout) + " p " + std::to_string(s.p) +
                ", both directions",
            Entry::patches, dt, [=](Ctx& c) {
              Tensor images = c.input(s.images, normal(), s.layout);
              Tensor patches = c.out(ps);
              c.be().patches(contiguous(images), s.p, patches, PatchDirection::to_patches);
              Tensor back = c.out(s.images);
              c.be().patches(back, s.p, c.input(ps), PatchDirection::to_images);
              Outputs out{patches, back};
              if (c.op_layer()) out.push_back(image_to_patches(images, s.p));
              return out;
            });
    }
  }
}

// ---- indexing

void add_index_cases(Table& t) {
  struct SelectCase {
    Shape x;
    DType idx_dtype;
    std::vector<int64_t> idx;
    Layout layout = Layout::contiguous;
  };
  const SelectCase selects[] = {{{5, 3}, DType::i64, {4, -1, 0, 4, 2}},
                                {{5, 2, 2}, DType::i32, {1, 3}, Layout::gapped},
                                {{4, 3}, DType::i64, {}},
                                {{1, 1}, DType::i32, {0}},
                                {{0, 3}, DType::i64, {-1, -1}}};
  for (DType dt : kAllDTypes) {
    const Gen gen = is_floating(dt) ? normal() : integers(0, 100);
    for (const SelectCase& s : selects) {
      const int64_t m = int64_t(s.idx.size());
      Shape os = s.x;
      os[0] = m;
      t.add("index_select " + shape_name(s.x, s.layout) + " at " + std::to_string(m) + " " +
                dtype_name(s.idx_dtype) + " indices",
            Entry::index_select, dt, [=](Ctx& c) {
              Tensor x = c.input(s.x, gen, s.layout);
              Tensor idx = c.index(s.idx_dtype, s.idx, {m});
              Tensor o = c.out(os);
              c.be().index_select(contiguous(x), idx, o);
              return Outputs{o, index_select(x, idx)};
            });
    }
  }

  struct AddCase {
    Shape src;
    int64_t rows;
    DType idx_dtype;
    std::vector<int64_t> idx;
    Layout layout = Layout::contiguous;
  };
  const AddCase adds[] = {{{6, 4}, 3, DType::i64, {1, -1, 1, 0, 2, 1}},
                          {{0, 4}, 2, DType::i64, {}},
                          {{3, 1}, 1, DType::i32, {0, 0, 0}},
                          {{4, 2, 3}, 5, DType::i64, {3, 2, 1, 0}, Layout::transposed}};
  struct GatherCase {
    Shape x, idx;
    DType idx_dtype;
    Layout layout = Layout::contiguous;
  };
  const GatherCase gathers[] = {{{3, 5}, {3, 4}, DType::i64},
                                {{1, 1}, {1, 1}, DType::i32},
                                {{2, 3, 6}, {2, 3, 2}, DType::i64, Layout::transposed},
                                {{0, 4}, {0, 2}, DType::i64}};
  struct TopkCase {
    Shape x;
    int64_t k;
    Gen gen;
    Layout layout = Layout::contiguous;
  };
  const TopkCase topks[] = {{{4, 9}, 3, normal()},
                            {{2, 5}, 5, integers(0, 3)},  // ties: the lower index first
                            {{1, 1}, 1, normal()},
                            {{3, 6}, 2, integers(0, 2), Layout::transposed},
                            {{0, 4}, 2, normal()}};
  struct OneHotCase {
    Shape idx;
    DType idx_dtype;
    int64_t classes;
  };
  const OneHotCase one_hots[] = {
      {{3}, DType::i32, 3}, {{2, 2}, DType::i64, 4}, {{0}, DType::i64, 2}, {{1}, DType::i32, 1}};
  for (DType dt : kFloats) {
    for (const AddCase& s : adds) {
      const int64_t m = int64_t(s.idx.size());
      Shape os = s.src;
      os[0] = s.rows;
      t.add("index_add " + shape_name(s.src, s.layout) + " into " + std::to_string(s.rows) +
                " rows, " + dtype_name(s.idx_dtype) + " indices",
            Entry::index_add, dt, [=](Ctx& c) {
              Tensor src = c.input(s.src, normal(), s.layout);
              Tensor idx = c.index(s.idx_dtype, s.idx, {m});
              // The kernel accumulates into its output.
              Tensor o = c.out(os, Layout::contiguous, c.input(os));
              c.be().index_add(contiguous(src), idx, o);
              Outputs out{o};
              if (c.op_layer()) out.push_back(index_add(s.rows, idx, src));
              return out;
            });
    }
    for (const GatherCase& s : gathers) {
      const int64_t n = s.x.back();
      t.add("gather " + shape_name(s.x, s.layout) + " at " + shape_name(s.idx) + " " +
                dtype_name(s.idx_dtype),
            Entry::gather, dt, [=](Ctx& c) {
              Tensor x = c.input(s.x, normal(), s.layout);
              Tensor idx = c.input_as(s.idx_dtype, s.idx, integers(0, n));
              Tensor o = c.out(s.idx);
              c.be().gather(contiguous(x), idx, o);
              Outputs out{o};
              if (c.op_layer()) out.push_back(gather(x, idx));
              return out;
            });
      t.add("gather backward " + shape_name(s.idx) + " into " + shape_name(s.x) + " " +
                dtype_name(s.idx_dtype),
            Entry::gather_backward, dt, [=](Ctx& c) {
              Tensor x = c.input(s.x), gy = c.input(s.idx);
              Tensor idx = c.input_as(s.idx_dtype, s.idx, integers(0, n));
              Tensor gx = c.out(s.x);
              c.be().gather_backward(gy, idx, gx);
              Outputs out{gx};
              if (c.op_layer()) {
                Tensor xl = leaf(x);
                gather(xl, idx).backward(gy);
                out.push_back(xl.grad());
              }
              return out;
            });
    }
    for (const TopkCase& s : topks) {
      Shape vs = s.x;
      vs.back() = s.k;
      t.add("topk " + shape_name(s.x, s.layout) + " k " + std::to_string(s.k), Entry::topk, dt,
            [=](Ctx& c) {
              Tensor x = c.input(s.x, s.gen, s.layout);
              Tensor values = c.out(vs), indices = c.out_as(DType::i64, vs);
              c.be().topk(contiguous(x), s.k, values, indices);
              Outputs out{values, indices};
              if (c.op_layer()) {
                TopK r = topk(x, s.k);
                out.insert(out.end(), {r.values, r.indices});
              }
              return out;
            });
    }
    for (const OneHotCase& s : one_hots) {
      Shape os = s.idx;
      os.push_back(s.classes);
      t.add("one_hot " + shape_name(s.idx) + " " + dtype_name(s.idx_dtype) + " of " +
                std::to_string(s.classes) + " classes",
            Entry::one_hot, dt, [=](Ctx& c) {
              Tensor idx = c.input_as(s.idx_dtype, s.idx, integers(0, s.classes));
              Tensor o = c.out(os);
              c.be().one_hot(idx, o);
              return Outputs{o, one_hot(idx, s.classes, c.dtype)};
            });
    }
  }

  struct SortCase {
    Shape x;
    bool ties;
    Layout layout = Layout::contiguous;
  };
  const SortCase sorts[] = {{{3, 10}, true}, {{1}, false},
                            {{0}, false},    {{4, 6}, false, Layout::transposed},
                            {{1000}, true},  {{2, 7}, true, Layout::gapped}};
  for (DType dt : kNumeric) {
    for (const SortCase& s : sorts) {
      t.add("argsort (stable, both orders) " + shape_name(s.x, s.layout) +
                (s.ties ? " with ties" : ""),
            Entry::argsort, dt, [=](Ctx& c) {
              const Gen gen = s.ties || !is_floating(c.dtype) ? integers(-3, 4) : normal();
              Tensor x = c.input(s.x, gen, s.layout);
              Tensor up = c.out_as(DType::i64, s.x), down = c.out_as(DType::i64, s.x);
              c.be().argsort(contiguous(x), SortOrder::ascending, up);
              c.be().argsort(contiguous(x), SortOrder::descending, down);
              return Outputs{up, down, argsort(x), argsort(x, Order::descending)};
            });
    }
  }
}

// ---- routing: slot assignment, against one_hot + cumsum

struct SlotCase {
  int64_t tokens, k, experts, group_size, capacity, last_capacity;
  bool bpr;  // Batch Prioritized Routing: each group's tokens by descending priority

  SlotLayout layout() const {
    SlotLayout l{tokens, k, experts, group_size, capacity, last_capacity, 0};
    l.rows_per_expert = l.groups() == 0 ? 0 : (l.groups() - 1) * capacity + last_capacity;
    return l;
  }
};

struct SlotInputs {
  Tensor experts;               // [N, k] i64, distinct per token, best first
  Tensor priority;              // [N] f64 with ties (BPR)
  Tensor order;                 // [N] i64 group-local positions in slot order, or undefined
  std::vector<int64_t> tokens;  // [N] the tokens in slot order (global ids), on the host
};

SlotInputs slot_inputs(Ctx& c, const SlotCase& s) {
  const SlotLayout l = s.layout();
  // Each token's k experts: the first k of a random ranking.
  Tensor scores =
      Tensor::from_vector(c.draw(s.tokens * s.experts, normal()), {s.tokens, s.experts}, kCpu);
  Tensor experts = argsort(scores, Order::descending).slice(1, 0, s.k).contiguous();
  const std::vector<double> priority = c.draw(s.tokens, integers(0, 3));
  std::vector<int64_t> local(size_t(s.tokens)), tokens(size_t(s.tokens));
  for (int64_t g = 0; g < l.groups(); ++g) {
    const int64_t start = g * s.group_size, n = std::min(s.group_size, s.tokens - start);
    const auto first = local.begin() + start, last = first + n;
    std::iota(first, last, int64_t(0));
    if (s.bpr) {
      std::stable_sort(first, last, [&](int64_t a, int64_t b) {
        return priority[size_t(start + a)] > priority[size_t(start + b)];
      });
    }
    for (int64_t i = start; i < start + n; ++i)
      tokens[size_t(i)] = start + local[size_t(i)];
  }
  return {experts.to(c.device), c.values_as(DType::f64, priority, {s.tokens}),
          s.bpr ? c.index(DType::i64, local, {s.tokens}) : Tensor(), tokens};
}

// The same assignment by another route: within a group, the slot of each assignment in the
// k-major sequence is the running count of its expert (one_hot + cumsum) minus one.
Outputs reference_slots(Ctx& c, const SlotCase& s) {
  const SlotLayout l = s.layout();
  const SlotInputs in = slot_inputs(c, s);
  const int64_t rows = l.rows_per_expert;
  std::vector<int64_t> combine(size_t(s.tokens * s.k), -1), dispatch(size_t(s.experts * rows), -1),
      load(size_t(s.experts), 0);
  for (int64_t g = 0; g < l.groups(); ++g) {
    const int64_t start = g * s.group_size, n = std::min(s.group_size, s.tokens - start);
    const int64_t cap = g + 1 == l.groups() ? s.last_capacity : s.capacity;
    const std::vector<int64_t> tokens(in.tokens.begin() + start, in.tokens.begin() + start + n);
    Tensor order = Tensor::from_vector(tokens, {n}, c.device);                  // [n]
    Tensor seq = index_select(in.experts, order).transpose(0, 1).contiguous();  // [k, n]
    seq = seq.reshape({s.k * n});                                               // k-major
    Tensor hot = one_hot(seq, s.experts, DType::f64);                           // [k n, E]
    Tensor slot = sum(mul(cumsum(hot, 0), hot), {1}) - 1.0;                     // [k n]
    const std::vector<int64_t> chosen = seq.cpu().to_vector<int64_t>();
    const std::vector<double> slots = slot.cpu().to_vector<double>();
    for (int64_t a = 0; a < s.k * n; ++a) {
      const int64_t rank = a / n, token = tokens[size_t(a % n)], e = chosen[size_t(a)];
      const int64_t at = int64_t(slots[size_t(a)]);
      if (at >= cap) continue;
      const int64_t row = e * rows + g * s.capacity + at;
      combine[size_t(token * s.k + rank)] = row;
      dispatch[size_t(row)] = token;
      ++load[size_t(e)];
    }
  }
  Outputs out{Tensor::from_vector(combine, {s.tokens * s.k}, kCpu),
              Tensor::from_vector(dispatch, {s.experts * rows}, kCpu),
              Tensor::from_vector(load, {s.experts}, kCpu)};
  const Outputs again = out;  // the public op gives the same
  out.insert(out.end(), again.begin(), again.end());
  if (s.bpr) out.push_back(in.order);
  return out;
}

void add_routing_cases(Table& t) {
  const SlotCase cases[] = {
      {12, 2, 4, 6, 2, 2, false},  // two groups, drops
      {10, 2, 3, 4, 2, 1, true},   // a smaller last group with its own capacity
      {16, 3, 3, 16, 8, 8, true},  // k = E
      {9, 1, 4, 9, 4, 4, true},   {1, 1, 2, 1, 4, 4, false}, {0, 2, 3, 4, 4, 4, true},
  };
  for (const SlotCase& s : cases) {
    std::ostringstream name;
    name << "assign_slots " << s.tokens << " tokens, k " << s.k << ", " << s.experts
         << " experts, groups of " << s.group_size << ", capacity " << s.capacity << "/"
         << s.last_capacity << (s.bpr ? ", BPR order" : ", token order");
    t.add(
        name.str(), Entry::assign_slots, DType::i64,
        [=](Ctx& c) {
          const SlotLayout l = s.layout();
          const SlotInputs in = slot_inputs(c, s);
          Tensor combine = c.out({s.tokens * s.k}),
                 dispatch = c.out({s.experts * l.rows_per_expert}), load = c.out({s.experts});
          c.be().assign_slots(in.experts, in.order, l, combine, dispatch, load);
          // The public ops, with the BPR order made on the device.
          const Tensor order = s.bpr ? priority_order(in.priority, l) : Tensor();
          const SlotAssignment a = assign_slots(in.experts, order, l);
          Outputs out{combine, dispatch, load, a.combine_rows, a.dispatch_rows, a.expert_load};
          if (s.bpr) out.push_back(order);
          return out;
        },
        [=](Ctx& c) { return reference_slots(c, s); });
  }
}

// ---- optimizer updates, against hand loops in double

struct UpdateCase {
  int64_t n;
  int clip;  // 0: no norm given; 1: norm 3 above max_norm 1.5 (factor 1/2); 2: norm below max
  bool decay_masked_only;
  int64_t step;
  bool nesterov = false;
};

struct UpdateInputs {
  Tensor values, grads, mask, slot_a, slot_b, grad_norm_sq;
  double max_norm = 0;
};

UpdateInputs update_inputs(Ctx& c, const UpdateCase& s) {
  UpdateInputs in;
  in.values = c.input({s.n});
  in.grads = c.input({s.n});
  in.mask = c.input_as(DType::u8, {s.n}, integers(0, 2));
  in.slot_a = c.input({s.n}, normal(0.1));
  in.slot_b = c.input({s.n}, uniform(0.01, 0.1));
  if (s.clip > 0) {
    in.grad_norm_sq = c.values_as(DType::f64, {s.clip == 1 ? 9.0 : 1.0}, {1});
    in.max_norm = s.clip == 1 ? 1.5 : 2.0;
  }
  return in;
}

std::vector<double> host_doubles(const Tensor& t) {
  return t.cpu().to(DType::f64).to_vector<double>();
}

const AdamWOptions kAdamW{0.9, 0.999, 1e-8, 0.1, true};
const SgdOptions kSgd{0.9, false, 0.1, true};
constexpr double kLr = 0.01;

void add_update_cases(Table& t) {
  const UpdateCase adam_cases[] = {
      {1000, 1, true, 1}, {37, 0, false, 3}, {1, 2, true, 2}, {0, 0, true, 1}};
  const UpdateCase sgd_cases[] = {
      {1000, 1, true, 1, true}, {37, 0, false, 3, false}, {5, 2, true, 2, true}, {0, 0, true, 1}};
  auto describe = [](const char* what, const UpdateCase& s) {
    std::ostringstream os;
    os << what << " [" << s.n << "] step " << s.step
       << (s.clip == 1   ? ", clipped"
           : s.clip == 2 ? ", norm below the limit"
                         : "")
       << (s.decay_masked_only ? ", masked decay" : ", decay everywhere");
    return os.str();
  };
  auto clip_factor = [](const UpdateInputs& in) {
    if (!in.grad_norm_sq.defined()) return 1.0;
    const double norm = std::sqrt(host_doubles(in.grad_norm_sq)[0]);
    return norm > in.max_norm ? in.max_norm / norm : 1.0;
  };
  for (DType dt : kFloats) {
    for (const UpdateCase& s : adam_cases) {
      t.add(
          describe("adamw", s), Entry::adamw_update, dt,
          [=](Ctx& c) {
            const UpdateInputs in = update_inputs(c, s);
            Tensor w = c.out({s.n}, Layout::contiguous, in.values),
                   m = c.out({s.n}, Layout::contiguous, in.slot_a),
                   v = c.out({s.n}, Layout::contiguous, in.slot_b);
            AdamWOptions o = kAdamW;
            o.decay_masked_only = s.decay_masked_only;
            c.be().adamw_update({.values = w,
                                 .grads = in.grads,
                                 .decay_mask = in.mask,
                                 .slot_a = m,
                                 .slot_b = v,
                                 .grad_norm_sq = in.grad_norm_sq,
                                 .max_norm = in.max_norm,
                                 .lr = kLr,
                                 .step = s.step},
                                o);
            return Outputs{w, m, v, in.grads};
          },
          [=](Ctx& c) {
            const UpdateInputs in = update_inputs(c, s);
            std::vector<double> w = host_doubles(in.values), g = host_doubles(in.grads),
                                mask = host_doubles(in.mask), m = host_doubles(in.slot_a),
                                v = host_doubles(in.slot_b);
            const double factor = clip_factor(in), b1 = kAdamW.b1, b2 = kAdamW.b2;
            for (size_t i = 0; i < w.size(); ++i) {
              const double gi = g[i] * factor;
              m[i] = b1 * m[i] + (1 - b1) * gi;
              v[i] = b2 * v[i] + (1 - b2) * gi * gi;
              const double m_hat = m[i] / (1 - std::pow(b1, double(s.step)));
              const double v_hat = v[i] / (1 - std::pow(b2, double(s.step)));
              const double decay = s.decay_masked_only ? mask[i] : 1.0;
              w[i] -= kLr * (m_hat / (std::sqrt(v_hat) + kAdamW.eps) +
                             kAdamW.weight_decay * decay * w[i]);
            }
            return Outputs{Tensor::from_vector(w, {s.n}, kCpu), Tensor::from_vector(m, {s.n}, kCpu),
                           Tensor::from_vector(v, {s.n}, kCpu),
                           Tensor::from_vector(g, {s.n}, kCpu)};
          });
    }
    for (const UpdateCase& s : sgd_cases) {
      t.add(
          describe(s.nesterov ? "sgd nesterov" : "sgd momentum", s), Entry::sgd_update, dt,
          [=](Ctx& c) {
            const UpdateInputs in = update_inputs(c, s);
            Tensor w = c.out({s.n}, Layout::contiguous, in.values),
                   trace = c.out({s.n}, Layout::contiguous, in.slot_a);
            SgdOptions o = kSgd;
            o.nesterov = s.nesterov;
            o.decay_masked_only = s.decay_masked_only;
            c.be().sgd_update({.values = w,
                               .grads = in.grads,
                               .decay_mask = in.mask,
                               .slot_a = trace,
                               .slot_b = Tensor(),
                               .grad_norm_sq = in.grad_norm_sq,
                               .max_norm = in.max_norm,
                               .lr = kLr,
                               .step = s.step},
                              o);
            return Outputs{w, trace, in.grads};
          },
          [=](Ctx& c) {
            const UpdateInputs in = update_inputs(c, s);
            std::vector<double> w = host_doubles(in.values), g = host_doubles(in.grads),
                                mask = host_doubles(in.mask), trace = host_doubles(in.slot_a);
            const double factor = clip_factor(in), mom = kSgd.momentum;
            for (size_t i = 0; i < w.size(); ++i) {
              const double gi = g[i] * factor;
              trace[i] = gi + mom * trace[i];
              const double step = s.nesterov ? gi + mom * trace[i] : trace[i];
              const double decay = s.decay_masked_only ? mask[i] : 1.0;
              w[i] -= kLr * (step + kSgd.weight_decay * decay * w[i]);
            }
            return Outputs{Tensor::from_vector(w, {s.n}, kCpu),
                           Tensor::from_vector(trace, {s.n}, kCpu),
                           Tensor::from_vector(g, {s.n}, kCpu)};
          });
    }
  }
}

// THE table: every per-backend op case.
std::vector<OpCase> op_table() {
  Table t;
  add_copy_fill_cases(t);
  add_elementwise_cases(t);
  add_reduction_cases(t);
  add_gemm_cases(t);
  add_nn_cases(t);
  add_index_cases(t);
  add_routing_cases(t);
  add_update_cases(t);
  return t.take();
}

// ---------------------------------------------------------------- running and comparing

struct HostOutput {
  Shape shape;
  bool exact = false;  // an integer output: compared exactly
  std::vector<double> values;
};

struct RunResult {
  std::vector<HostOutput> outputs;
  std::string error;  // "" when the run went through with its guards intact
};

uint64_t seed_of(const OpCase& c) {
  uint64_t h = 0xcbf29ce484222325ull;  // FNV-1a of name and dtype: stable under new cases
  for (char ch : c.name + "/" + dtype_name(c.dtype))
    h = (h ^ uint8_t(ch)) * 0x100000001b3ull;
  return h;
}

RunResult run_case(const OpCase& c, const CaseFn& fn, Device device, DType dtype) {
  RunResult r;
  try {
    Ctx ctx(device, c.dtype, dtype, seed_of(c));
    const Outputs outs = fn(ctx);
    backend_for(device).synchronize();
    check_kernel_errors(device);
    for (size_t i = 0; i < outs.size(); ++i) {
      if (!outs[i].defined()) {
        r.error += "output " + std::to_string(i) + " is undefined; ";
        continue;
      }
      r.outputs.push_back({outs[i].shape(), !is_floating(outs[i].dtype()), host_doubles(outs[i])});
    }
    r.error += ctx.check_guards();
  } catch (const std::exception& e) {
    r.error += std::string("threw: ") + e.what();
  }
  return r;
}

// The reference outputs of a case: its independent formulation, the CPU backend in the
// case's dtype, or (bf16 the CPU lacks) the CPU in f32 on the same bf16-rounded inputs.
RunResult reference_of(const OpCase& c) {
  if (c.reference) return run_case(c, c.reference, kCpu, c.dtype);
  if (backend_supports(cpu_backend(), c.entry, c.dtype)) return run_case(c, c.run, kCpu, c.dtype);
  if (c.dtype == DType::bf16 && backend_supports(cpu_backend(), c.entry, DType::f32))
    return run_case(c, c.run, kCpu, DType::f32);
  return {{}, "no CPU reference for this entry and dtype"};
}

double tolerance(DType case_dtype) {
  switch (case_dtype) {
    case DType::f64:
      return 1e-10;
    case DType::f32:
      return 1e-5;
    case DType::bf16:
      return 2e-2;
    default:
      return 0;
  }
}

// "" when every output matches its reference within the case's tolerance.
std::string compare(const RunResult& ref, const RunResult& got, DType case_dtype) {
  if (got.outputs.size() != ref.outputs.size())
    return std::to_string(got.outputs.size()) + " outputs, the reference has " +
           std::to_string(ref.outputs.size());
  std::ostringstream os;
  os.precision(10);
  for (size_t o = 0; o < ref.outputs.size(); ++o) {
    const HostOutput &r = ref.outputs[o], &g = got.outputs[o];
    if (r.shape != g.shape) {
      os << "output " << o << " has shape " << shape_str(g.shape) << ", the reference "
         << shape_str(r.shape) << "; ";
      continue;
    }
    double max_ref = 0, max_diff = 0;
    size_t worst = 0;
    for (size_t i = 0; i < r.values.size(); ++i) {
      const double a = g.values[i], b = r.values[i];
      double diff = 0;
      if (std::isnan(a) || std::isnan(b))
        diff = std::isnan(a) && std::isnan(b) ? 0 : std::numeric_limits<double>::infinity();
      else if (a != b)
        diff = std::abs(a - b);  // inf when exactly one is infinite
      if (std::isfinite(b)) max_ref = std::max(max_ref, std::abs(b));
      if (diff > max_diff || std::isnan(diff)) {
        max_diff = diff;
        worst = i;
      }
    }
    const double error = max_diff / std::max(1.0, max_ref);
    const double tol = g.exact ? 0 : tolerance(case_dtype);
    if (!(error <= tol))
      os << "output " << o << " " << shape_str(r.shape) << ": normalised error " << error << " > "
         << tol << ", worst at flat index " << worst << " (" << g.values[worst] << ", reference "
         << r.values[worst] << "); ";
  }
  return os.str();
}

// Counts of the runs, and what each backend skipped.
struct Tally {
  int64_t passed = 0, failed = 0, skipped = 0;
  std::map<std::string, std::map<std::string, std::set<std::string>>> skips;  // backend, dtype
  std::vector<std::string> unavailable;  // "cuda:0: every case (<reason>)"

  std::string summary(size_t cases, size_t backends) const {
    std::ostringstream os;
    os << "backend op table: " << cases << " cases x " << backends << " backends: " << passed
       << " runs passed, " << failed << " failed, " << skipped
       << " skipped (device missing here, or entry not supported by the backend):";
    for (const std::string& line : unavailable)
      os << "\n  " << line;
    for (const auto& [backend, by_dtype] : skips) {
      os << "\n  " << backend << ":";
      for (const auto& [dtype, entries] : by_dtype) {
        os << " " << dtype << " {";
        bool first = true;
        for (const std::string& e : entries) {
          os << (first ? "" : ", ") << e;
          first = false;
        }
        os << "}";
      }
    }
    return os.str();
  }
};

}  // namespace

TEST_CASE("backend ops: every case of the table on every backend, against the CPU reference") {
  const std::vector<OpCase> table = op_table();
  std::vector<UnavailableDevice> unavailable;
  const std::vector<Device> devices = backends_under_test(&unavailable);
  REQUIRE(devices.size() >= 2);
  REQUIRE(devices.front() == kCpu);
  Tally tally;
  for (const UnavailableDevice& u : unavailable) {
    tally.skipped += int64_t(table.size());
    tally.unavailable.push_back(u.device.str() + ": every case, the device is missing (" +
                                u.reason + ")");
  }
  for (const OpCase& c : table) {
    const std::string label =
        c.name + " (" + entry_name(c.entry) + ", " + dtype_name(c.dtype) + ")";
    std::optional<RunResult> ref;  // made when a backend first needs it
    for (Device d : devices) {
      if (!backend_supports(backend_for(d), c.entry, c.dtype)) {
        ++tally.skipped;
        tally.skips[d.str()][dtype_name(c.dtype)].insert(entry_name(c.entry));
        continue;
      }
      if (!ref) ref = reference_of(c);
      std::string error;
      if (!ref->error.empty()) {
        error = "reference: " + ref->error;
      } else {
        const RunResult got = run_case(c, c.run, d, c.dtype);
        error = got.error.empty() ? compare(*ref, got, c.dtype) : got.error;
      }
      INFO(label << " on " << d.str() << ": " << error);
      CHECK(error.empty());
      ++(error.empty() ? tally.passed : tally.failed);
    }
  }
  CHECK(tally.passed > 0);
  WARN(tally.summary(table.size(), devices.size()));
}

TEST_CASE("backend ops: the table covers every entry, in every dtype the CPU handles, and bf16") {
  const std::vector<OpCase> table = op_table();
  std::set<std::pair<int, DType>> covered;
  std::set<std::string> names;
  for (const OpCase& c : table) {
    covered.insert({int(c.entry), c.dtype});
    // Names (with the dtype) identify cases in reports and seed their inputs.
    CHECK(names.insert(c.name + "/" + dtype_name(c.dtype)).second);
  }
  for (int i = 0; i <= int(kLastEntry); ++i) {
    const Entry e = Entry(i);
    CAPTURE(entry_name(e));
    bool any = false;
    for (DType dt : kAllDTypes) {
      any = any || covered.count({i, dt}) > 0;
      if (backend_supports(cpu_backend(), e, dt)) CHECK(covered.count({i, dt}) == 1);
    }
    CHECK(any);
    // Every floating entry has bf16 cases, which report as skipped where unsupported.
    if (backend_supports(cpu_backend(), e, DType::f32)) {
      CHECK(covered.count({i, DType::f64}) == 1);
      CHECK(covered.count({i, DType::bf16}) == 1);
    }
  }
}

TEST_CASE("backend ops: the harness catches overruns, unwritten elements and wrong values") {
  const Device d = default_device();
  {
    // A kernel that writes exactly its view passes.
    Ctx c(d, DType::f32, DType::f32, 1);
    Tensor o = c.out({3, 4}, Layout::gapped);
    fill_(o, 1.0);
    CHECK(c.check_guards().empty());
    // One that writes past the end of each row hits the gaps and the trailing guard.
    Tensor wide = Tensor::view_of(o.storage(), {3, 5}, o.strides(), o.offset(), DType::f32);
    fill_(wide, 2.0);
    // The gaps are 3 elements wide: row 0 and 1 write into them, row 2 past the view's end.
    CHECK_THAT(c.check_guards(), Catch::Contains("guarded output 0 [3, 4] f32: 12 guard byte(s) "
                                                 "overwritten, the first at byte 16"));
  }
  {
    // Writing before the view's start.
    Ctx c(d, DType::f64, DType::f64, 1);
    Tensor o = c.out({4});
    Tensor early = Tensor::view_of(o.storage(), {5}, {1}, o.offset() - 1, DType::f64);
    fill_(early, 0.0);
    CHECK_THAT(c.check_guards(), Catch::Contains("8 guard byte(s) overwritten, the first at "
                                                 "byte -8 from the view's start"));
  }
  {
    // A kernel that leaves an element of a must-write output alone; an output with initial
    // values (updated in place) may keep them.
    Ctx c(d, DType::i64, DType::i64, 1);
    Tensor o = c.out({4});
    Tensor most = o.slice(0, 0, 3);
    fill_(most, 5.0);
    Tensor kept = c.out({2}, Layout::contiguous, c.index(DType::i64, {1, 2}, {2}));
    CHECK_THAT(c.check_guards(),
               Catch::Contains("guarded output 0 [4] i64: 1 element(s) not written, the first "
                               "at flat index 3") &&
                   !Catch::Contains("guarded output 1"));
  }
  // Inputs: the same values on every device, and in every layout.
  for (Layout layout : {Layout::contiguous, Layout::transposed, Layout::gapped}) {
    Ctx a(kCpu, DType::f32, DType::f32, 7), b(d, DType::f32, DType::f32, 7);
    Tensor x = a.input({3, 4}, normal(), Layout::contiguous), y = b.input({3, 4}, normal(), layout);
    CHECK(y.device() == d);
    CHECK(y.is_contiguous() == (layout == Layout::contiguous));
    CHECK(host_doubles(y) == host_doubles(x));
  }
  // bf16 cases: the f32 reference sees the bf16-rounded values.
  Ctx ref(kCpu, DType::bf16, DType::f32, 3), dev(kCpu, DType::bf16, DType::bf16, 3);
  CHECK(host_doubles(ref.input({50})) == host_doubles(dev.input({50})));
  // Normalised error against the tolerance of the case's dtype; integers exactly.
  const RunResult want{{{{3}, false, {1, -100, 0.5}}, {{2}, true, {4, 5}}}, ""};
  RunResult got = want;
  CHECK(compare(want, got, DType::f32).empty());
  got.outputs[0].values[2] = 0.5 + 1e-4;  // 1e-6 of max |ref| = 100
  CHECK(compare(want, got, DType::f32).empty());
  CHECK_THAT(compare(want, got, DType::f64), Catch::Contains("output 0 [3]: normalised error"));
  got = want;
  got.outputs[1].values[0] = 4.5;
  CHECK_THAT(compare(want, got, DType::f32), Catch::Contains("output 1 [2]"));
  got = want;
  got.outputs[0].values[1] = std::nan("");
  CHECK_THAT(compare(want, got, DType::f32), Catch::Contains("normalised error inf"));
  got.outputs[0].shape = {1, 3};
  CHECK_THAT(compare(want, got, DType::f32), Catch::Contains("has shape [1, 3]"));
}
