// The CUDA elementwise kernels' math without a GPU: the __host__ __device__ bodies of
// core/cuda/kernel_bodies.h run here over the grids the launchers use (kernels.cu), and over a
// small grid whose threads take several elements each (the grid-stride loop), and their results
// are compared with the CPU backend's entries on the same inputs: f32 and f64, and bf16 against
// the CPU's f32 result on the bf16-rounded inputs. The device run of the same kernels is
// test/gpu's job. Row kernels: test_cuda_row_bodies.cpp; reductions: test_cuda_reduce_bodies.cpp.
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "core/backend.h"
#include "core/cuda/kernel_bodies.h"
#include "core/cuda/strided_index.h"
#include "core/ops.h"
#include "core/tensor.h"
#include "test/core/cuda_host_grid.h"

using namespace vmoe;
using namespace vmoe::test;
using vmoe::cuda::GridPos;

namespace {

const char* name_of(UnaryOp op) {
  static const char* const names[] = {"neg",  "exp",  "log",    "tanh", "sigmoid",
                                      "relu", "sqrt", "square", "gelu", "normal_cdf"};
  return names[int(op)];
}

const char* name_of(BinaryOp op) {
  static const char* const names[] = {"add", "sub", "mul", "div", "equal"};
  return names[int(op)];
}

// The launchers' grid for n elements, and a small one whose threads loop (3 blocks of 64).
std::vector<std::pair<int64_t, int64_t>> grids_for(int64_t n) {
  return {{cuda::element_blocks(n), cuda::kElementThreads}, {3, 64}};
}

// Calls fn(T{}) with T the C++ type stored for dtype t.
template <class Fn>
void with_stored(DType t, Fn&& fn) {
  switch (t) {
    case DType::f32:
      return fn(float{});
    case DType::f64:
      return fn(double{});
    case DType::bf16:
      return fn(BFloat16{});
    case DType::i32:
      return fn(int32_t{});
    case DType::i64:
      return fn(int64_t{});
    case DType::u8:
      return fn(uint8_t{});
  }
}

// As launch_copy: same-dtype copies move unsigned words of the dtype's size.
template <class Fn>
void with_word(size_t bytes, Fn&& fn) {
  switch (bytes) {
    case 1:
      return fn(uint8_t{});
    case 2:
      return fn(uint16_t{});
    case 4:
      return fn(uint32_t{});
    default:
      return fn(uint64_t{});
  }
}

const DType kAllDtypes[] = {DType::f32, DType::f64, DType::bf16, DType::i32, DType::i64, DType::u8};

// A [dims] tensor of `dtype` holding `values` (converted by the CPU backend's copy).
Tensor cpu_tensor(const std::vector<double>& values, const Shape& shape, DType dtype) {
  const Tensor src = Tensor::from_vector(values, shape, kCpu);
  const Tensor out = Tensor::empty(shape, dtype, kCpu);
  cpu_backend().copy(src, out);
  return out;
}

// The bytes of a whole (contiguous) tensor.
std::vector<unsigned char> bytes_of(const Tensor& t) {
  const auto* p = static_cast<const unsigned char*>(t.raw_data());
  return std::vector<unsigned char>(p, p + size_t(t.numel()) * dtype_size(t.dtype()));
}

}  // namespace

TEMPLATE_TEST_CASE("cuda kernel bodies: unary ops and their derivatives match the CPU backend",
                   "[cuda_bodies]", float, double, BFloat16) {
  using T = TestType;
  using R = ref_t<T>;
  const Backend& cpu = cpu_backend();
  const int64_t n = 1000;
  for (UnaryOp op :
       {UnaryOp::neg, UnaryOp::exp, UnaryOp::log, UnaryOp::tanh, UnaryOp::sigmoid, UnaryOp::relu,
        UnaryOp::sqrt, UnaryOp::square, UnaryOp::gelu, UnaryOp::normal_cdf}) {
    CAPTURE(name_of(op));
    const bool positive = op == UnaryOp::log || op == UnaryOp::sqrt;
    const std::vector<T> x = random_of<T>(n, positive ? 0.1 : -4.0, 4.0, 7);
    const std::vector<T> gy = random_of<T>(n, -1.0, 1.0, 8);
    for (auto [blocks, threads] : grids_for(n)) {
      CAPTURE(blocks, threads);
      std::vector<T> y(static_cast<size_t>(n), of_double<T>(NAN)),
          gx(static_cast<size_t>(n), of_double<T>(NAN));
      run_grid(blocks, threads,
               [&](const GridPos& p) { cuda::unary_body(p, op, x.data(), y.data(), n); });
      run_grid(blocks, threads, [&](const GridPos& p) {
        cuda::unary_backward_body(p, op, x.data(), y.data(), gy.data(), gx.data(), n);
      });
      // The CPU on the same inputs (the body's y for the derivative, so both see one y).
      const Tensor tx = Tensor::from_vector(as_ref(x), {n}, kCpu);
      const Tensor ty = Tensor::empty({n}, dtype_of<R>(), kCpu);
      const Tensor tgx = Tensor::empty({n}, dtype_of<R>(), kCpu);
      cpu.unary(op, tx, ty);
      cpu.unary_backward(op, tx, Tensor::from_vector(as_ref(y), {n}, kCpu),
                         Tensor::from_vector(as_ref(gy), {n}, kCpu), tgx);
      // f32: the CPU backend's own vectorised exp/tanh (core/cpu/fast_math.h) are a few ulps
      // from the standard ones the bodies use.
      CHECK(max_rel_error(y, ty.to_vector<R>()) < tolerance<T>(2e-6));
      CHECK(max_rel_error(gx, tgx.to_vector<R>()) < tolerance<T>(2e-5));
    }
  }
}

TEMPLATE_TEST_CASE("cuda kernel bodies: binary ops on strided and broadcast views match the CPU",
                   "[cuda_bodies]", float, double, BFloat16) {
  using T = TestType;
  using R = ref_t<T>;
  const Backend& cpu = cpu_backend();
  const DType dt = dtype_of<T>();
  // a [4, 1, 6] broadcast to [4, 5, 6] (stride 0), b a transposed [6, 5, 4], out written through
  // a transposed view: nothing merges, the strided index keeps all three axes.
  const Tensor a =
      expand(Tensor::from_vector(random_of<T>(24, -2, 2, 1), {4, 1, 6}, kCpu), {4, 5, 6});
  const Tensor b =
      permute(Tensor::from_vector(random_of<T>(120, 0.5, 2, 2), {6, 5, 4}, kCpu), {2, 1, 0});
  for (BinaryOp op :
       {BinaryOp::add, BinaryOp::sub, BinaryOp::mul, BinaryOp::div, BinaryOp::equal}) {
    CAPTURE(name_of(op));
    // b's column 0 equal to a's where they meet: `equal` sees both answers.
    Tensor bb = b;
    if (op == BinaryOp::equal) {
      bb = contiguous(b);
      for (int64_t i = 0; i < 4; ++i)
        for (int64_t k = 0; k < 6; ++k)
          bb.data<T>()[(i * 5 + 0) * 6 + k] = a.data<T>()[i * 6 + k];
      bb = permute(contiguous(permute(bb, {2, 1, 0})), {2, 1, 0});
    }
    for (auto [blocks, threads] : grids_for(120)) {
      const Tensor out_buf = Tensor::full({6, 5, 4}, 7.0, dt, kCpu);
      const Tensor out = permute(out_buf, {2, 1, 0});
      const cuda::StridedIndex<3> idx =
          cuda::make_strided_index<3>(out.shape(), {&a.strides(), &bb.strides(), &out.strides()});
      REQUIRE(idx.rank == 3);
      run_grid(blocks, threads, [&](const GridPos& p) {
        cuda::binary_body(p, op, a.data<T>(), bb.data<T>(), out.data<T>(), idx, 120);
      });
      // The CPU in R on the same (rounded) values; an op of two values is one rounding on both
      // sides, so the results agree exactly, bf16 included (f32 rounded once to bf16).
      const Tensor ra = contiguous(to_dtype(a, dtype_of<R>()));
      const Tensor rb = contiguous(to_dtype(bb, dtype_of<R>()));
      const Tensor rout = Tensor::empty({4, 5, 6}, dtype_of<R>(), kCpu);
      cpu.binary(op, ra, rb, rout);
      std::vector<T> expected;
      for (R v : rout.to_vector<R>())
        expected.push_back(of_double<T>(double(v)));
      CHECK(max_rel_error(contiguous(out).to_vector<T>(), expected) == 0);
    }
  }
}

TEST_CASE("cuda kernel bodies: copy between strided views converts every dtype pair as the CPU",
          "[cuda_bodies]") {
  const Backend& cpu = cpu_backend();
  // Quarters in [0, 60): exact in the float types before bf16's rounding, truncated by the
  // integer ones, in range for u8.
  std::vector<double> values(60);
  for (size_t i = 0; i < values.size(); ++i)
    values[i] = double((i * 37) % 240) / 4.0;
  for (DType ts : kAllDtypes) {
    for (DType td : kAllDtypes) {
      CAPTURE(dtype_name(ts), dtype_name(td));
      // src: a [5, 4, 3] tensor seen as [3, 5, 4]; dst: columns 2..6 of [3, 5, 8].
      const Tensor src = permute(cpu_tensor(values, {5, 4, 3}, ts), {2, 0, 1});
      const Tensor cpu_base = Tensor::full({3, 5, 8}, 3.0, td, kCpu);
      const Tensor body_base = Tensor::full({3, 5, 8}, 3.0, td, kCpu);
      cpu.copy(src, slice(cpu_base, 2, 2, 6));
      const Tensor dst = slice(body_base, 2, 2, 6);
      const cuda::StridedIndex<2> idx =
          cuda::make_strided_index<2>(src.shape(), {&src.strides(), &dst.strides()});
      const int64_t n = src.numel();
      for (auto [blocks, threads] : grids_for(n)) {
        if (ts == td) {
          with_word(dtype_size(ts), [&]<class W>(W) {
            run_grid(blocks, threads, [&](const GridPos& p) {
              cuda::copy_body(p, static_cast<const W*>(src.raw_data()),
                              static_cast<W*>(dst.raw_data()), idx, n);
            });
          });
        } else {
          with_stored(ts, [&]<class S>(S) {
            with_stored(td, [&]<class D>(D) {
              run_grid(blocks, threads, [&](const GridPos& p) {
                cuda::copy_body(p, src.data<S>(), dst.data<D>(), idx, n);
              });
            });
          });
        }
        // Bit for bit, the untouched columns included.
        CHECK(bytes_of(body_base) == bytes_of(cpu_base));
      }
    }
  }
}

TEST_CASE("cuda kernel bodies: fill of a strided view matches the CPU for every dtype",
          "[cuda_bodies]") {
  for (DType t : kAllDtypes) {
    for (double value : {2.5, 0.0, 200.75}) {
      CAPTURE(dtype_name(t), value);
      const Tensor cpu_base = Tensor::full({4, 6, 5}, 1.0, t, kCpu);
      const Tensor body_base = Tensor::full({4, 6, 5}, 1.0, t, kCpu);
      cpu_backend().fill(permute(slice(cpu_base, 1, 1, 5), {2, 0, 1}), value);
      const Tensor dst = permute(slice(body_base, 1, 1, 5), {2, 0, 1});
      const cuda::StridedIndex<1> idx = cuda::make_strided_index<1>(dst.shape(), {&dst.strides()});
      with_stored(t, [&]<class D>(D) {
        run_grid(3, 64, [&](const GridPos& p) {
          cuda::fill_body(p, dst.data<D>(), cuda::from_double<D>(value), idx, dst.numel());
        });
      });
      CHECK(bytes_of(body_base) == bytes_of(cpu_base));
    }
  }
}

TEMPLATE_TEST_CASE("cuda kernel bodies: add_scaled and scale on strided views match the CPU",
                   "[cuda_bodies]", float, double, BFloat16) {
  using T = TestType;
  using R = ref_t<T>;
  const Backend& cpu = cpu_backend();
  const std::vector<T> d0 = random_of<T>(120, -2, 2, 11), s0 = random_of<T>(120, -2, 2, 12);
  // dst: a transposed view of [6, 5, 4]; src: contiguous [4, 5, 6].
  const Tensor body_dst = permute(Tensor::from_vector(d0, {6, 5, 4}, kCpu), {2, 1, 0});
  const Tensor src = Tensor::from_vector(s0, {4, 5, 6}, kCpu);
  const cuda::StridedIndex<2> idx2 =
      cuda::make_strided_index<2>(body_dst.shape(), {&body_dst.strides(), &src.strides()});
  const cuda::StridedIndex<1> idx1 =
      cuda::make_strided_index<1>(body_dst.shape(), {&body_dst.strides()});
  run_grid(3, 64, [&](const GridPos& p) {
    cuda::add_scaled_body(p, body_dst.data<T>(), src.data<T>(), -0.75, idx2, 120);
  });
  run_grid(2, 32,
           [&](const GridPos& p) { cuda::scale_body(p, body_dst.data<T>(), 1.5, idx1, 120); });

  const Tensor ref_dst = permute(Tensor::from_vector(as_ref(d0), {6, 5, 4}, kCpu), {2, 1, 0});
  cpu.add_scaled(ref_dst, Tensor::from_vector(as_ref(s0), {4, 5, 6}, kCpu), -0.75);
  cpu.scale(ref_dst, 1.5);
  // f32: two roundings, possibly fused differently by the compilers (an FMA).
  CHECK(max_rel_error(contiguous(body_dst).to_vector<T>(), contiguous(ref_dst).to_vector<R>()) <
        tolerance<T>(1e-6));
}

TEST_CASE("cuda kernel bodies: strided index merges contiguous axes and names the rank limit",
          "[cuda_bodies]") {
  const Shape shape = {2, 1, 3, 4}, dense = contiguous_strides(shape);
  const cuda::StridedIndex<1> one = cuda::make_strided_index<1>(shape, {&dense});
  CHECK(one.rank == 1);
  CHECK(one.sizes[0] == 24);
  CHECK(cuda::is_dense(one));
  // A transposed pair stays two axes: element (i, j) of [3, 4] at j * 3 + i.
  const Shape ts = {3, 4}, tstr = {1, 3};
  const cuda::StridedIndex<1> tr = cuda::make_strided_index<1>(ts, {&tstr});
  REQUIRE(tr.rank == 2);
  int64_t off[1];
  cuda::strided_offsets(tr, 1 * 4 + 2, off);
  CHECK(off[0] == 2 * 3 + 1);
  // Nine axes that cannot merge.
  const Shape big(9, 2);
  Shape strides(9);
  for (size_t d = 0; d < 9; ++d)
    strides[d] = int64_t(1) << (2 * (8 - d));  // gaps between the axes
  CHECK_THROWS_WITH(cuda::make_strided_index<1>(big, {&strides}),
                    Catch::Contains("9 dimensions after merging, at most 8"));
}
