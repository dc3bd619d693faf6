// The CUDA random-number, patch, indexing, routing and optimizer kernels without a GPU: the
// __host__ __device__ bodies of core/cuda/philox.h, index_bodies.h and optim_bodies.h run here
// over grids smaller than their data (so every grid-stride loop wraps), on random inputs, and are
// compared with the CPU backend, the reference. Where the CPU reports an index out of range, the
// body must record the same fields in the kernel error slot (checked against the CPU's message
// on the strict device, which also treats the element as absent) and give the same output.
// What only CUB does (the radix and segmented sorts) is replaced here by std::stable_sort, the
// order CUB's stable sorts produce; CUB itself runs in the GPU check (test/gpu).
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "core/backend.h"
#include "core/cuda/index_bodies.h"
#include "core/cuda/optim_bodies.h"
#include "core/cuda/philox.h"
#include "core/kernel_errors.h"
#include "core/rng.h"
#include "core/tensor.h"

using namespace vmoe;
using vmoe::cuda::GridPos;
using vmoe::cuda::KernelErrorOp;
using vmoe::cuda::KernelErrorSlot;

namespace {

// A grid smaller than every input below: 3 blocks of 32 threads.
constexpr int64_t kBlocks = 3, kThreads = 32;

// Runs `body(GridPos)` for every thread of the grid, as the device would (in some order).
template <class Body>
void run_grid(Body&& body, int64_t blocks = kBlocks, int64_t threads = kThreads) {
  for (int64_t b = 0; b < blocks; ++b)
    for (int64_t t = 0; t < threads; ++t)
      body(GridPos{b, t, threads, blocks});
}

template <class T>
std::vector<T> uniform_values(int64_t n, double lo, double hi, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> u(lo, hi);
  std::vector<T> v(static_cast<size_t>(n));
  for (T& x : v)
    x = T(u(rng));
  return v;
}

template <class I>
std::vector<I> integers(int64_t n, int64_t lo, int64_t hi, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int64_t> u(lo, hi - 1);
  std::vector<I> v(static_cast<size_t>(n));
  for (I& x : v)
    x = I(u(rng));
  return v;
}

std::vector<BFloat16> to_bf16_vector(const std::vector<float>& v) {
  std::vector<BFloat16> out(v.size());
  for (size_t i = 0; i < v.size(); ++i)
    out[i] = to_bf16(v[i]);
  return out;
}

std::vector<uint16_t> bits_of(const std::vector<BFloat16>& v) {
  std::vector<uint16_t> out(v.size());
  for (size_t i = 0; i < v.size(); ++i)
    out[i] = v[i].bits;
  return out;
}

// The CPU backend's f32 result rounded once to bf16: what a bf16-storage kernel with f32 math
// must give (core/cpu/bf16_storage.cpp does the same).
std::vector<uint16_t> bf16_bits_of(const std::vector<float>& v) {
  return bits_of(to_bf16_vector(v));
}

const char* op_name(KernelErrorOp op) {
  switch (op) {
    case KernelErrorOp::index_select:
      return "index_select";
    case KernelErrorOp::index_add:
      return "index_add";
    case KernelErrorOp::gather:
      return "gather";
    case KernelErrorOp::one_hot:
      return "one_hot";
    case KernelErrorOp::assign_slots:
    case KernelErrorOp::assign_slots_order:
      return "assign_slots";
    default:
      return "?";
  }
}

// The CPU's message for the slot's fields ("index_select: index 9 at position 3 is outside
// [-1, 5)"); `what` is the CPU's name for the value.
std::string slot_message(const KernelErrorSlot& s, const char* what) {
  return std::string(op_name(s.op)) + ": " + what + " " + std::to_string(s.value) +
         " at position " + std::to_string(s.position) + " is outside [" + std::to_string(s.lo) +
         ", " + std::to_string(s.hi) + ")";
}

// The first kernel error the strict CPU device recorded since the last check ("" if none).
std::string strict_error() {
  try {
    check_kernel_errors(kCpuStrict);
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "";
}

template <class T>
double max_abs_diff(const std::vector<T>& a, const std::vector<T>& b) {
  REQUIRE(a.size() == b.size());
  double worst = 0;
  for (size_t i = 0; i < a.size(); ++i)
    worst = std::max(worst, std::abs(double(a[i]) - double(b[i])));
  return worst;
}

template <class T>
std::vector<T> host(const Tensor& t) {
  return t.cpu().to_vector<T>();
}

}  // namespace

// ---------------------------------------------------------------- random numbers

TEST_CASE("cuda index bodies: Philox, uniform01 and normal01 equal core/rng.cpp bit for bit",
          "[cuda_bodies]") {
  const RngKey keys[] = {{0, 0},
                         {1, 0},
                         {42, 7},
                         {0xDEADBEEFCAFEull, 0xFFFFFFFFFFFFFFFFull},
                         derive({3, 9}, "dropout", 11)};
  int64_t checked = 0;
  for (const RngKey& key : keys) {
    for (uint64_t c = 0; c < 4000; ++c) {
      // Low counters, counters across the 32-bit boundary, and the top of the range.
      for (uint64_t counter : {c, (uint64_t(1) << 32) - 2000 + c, ~uint64_t(0) - c}) {
        const std::array<uint32_t, 4> want = philox(key, counter);
        const cuda::Philox4 got = cuda::philox(key.seed, key.stream, counter);
        REQUIRE(std::equal(want.begin(), want.end(), got.v));
        const double u = uniform01(key, counter), n = normal01(key, counter);
        const double cu = cuda::uniform01(key.seed, key.stream, counter);
        const double cn = cuda::normal01(key.seed, key.stream, counter);
        REQUIRE(std::memcmp(&u, &cu, sizeof u) == 0);
        REQUIRE(std::memcmp(&n, &cn, sizeof n) == 0);
        ++checked;
      }
    }
  }
  CHECK(checked == 5 * 4000 * 3);
}

TEST_CASE("cuda index bodies: dropout masks and random fills equal the CPU backend's",
          "[cuda_bodies]") {
  const Backend& cpu = cpu_backend();
  const int64_t n = 1000;
  const RngKey key{1234, 56};
  const uint64_t offset = (uint64_t(1) << 32) - 300;  // the counters cross 2^32
  const double rate = 0.3;

  auto check_f = [&]<class T>(T) {
    CAPTURE(dtype_name(dtype_of<T>()));
    const Tensor mask = Tensor::empty({n}, dtype_of<T>(), kCpu);
    cpu.dropout_mask(mask, rate, key, offset);
    std::vector<T> got(size_t(n), T(-1));
    run_grid([&](const GridPos& p) {
      cuda::dropout_mask_body(p, got.data(), n, rate, T(1.0 / (1.0 - rate)), key.seed, key.stream,
                              offset);
    });
    CHECK(got == mask.to_vector<T>());
    const int64_t kept = std::count_if(got.begin(), got.end(), [](T v) { return v != T(0); });
    CHECK(kept > n / 2);  // about 70% kept: the mask is not all zeros or all ones
    CHECK(kept < n - n / 5);

    for (Distribution dist : {Distribution::uniform, Distribution::normal}) {
      const Tensor out = Tensor::empty({n}, dtype_of<T>(), kCpu);
      cpu.random_fill(out, key, offset, dist, -2.0, 3.0);
      std::vector<T> fill(size_t(n), T(-7));
      run_grid([&](const GridPos& p) {
        cuda::random_fill_body(p, fill.data(), n, key.seed, key.stream, offset,
                               dist == Distribution::normal, -2.0, 3.0);
      });
      CHECK(fill == out.to_vector<T>());
    }
  };
  check_f(float{});
  check_f(double{});

  // bf16 storage: the f32 values rounded once.
  const Tensor mask = Tensor::empty({n}, DType::f32, kCpu);
  cpu.dropout_mask(mask, rate, key, offset);
  std::vector<BFloat16> got(static_cast<size_t>(n));
  run_grid([&](const GridPos& p) {
    cuda::dropout_mask_body(p, got.data(), n, rate, float(1.0 / (1.0 - rate)), key.seed, key.stream,
                            offset);
  });
  CHECK(bits_of(got) == bf16_bits_of(mask.to_vector<float>()));
  for (Distribution dist : {Distribution::uniform, Distribution::normal}) {
    const Tensor out = Tensor::empty({n}, DType::f32, kCpu);
    cpu.random_fill(out, key, offset, dist, -2.0, 3.0);
    std::vector<BFloat16> fill(static_cast<size_t>(n));
    run_grid([&](const GridPos& p) {
      cuda::random_fill_body(p, fill.data(), n, key.seed, key.stream, offset,
                             dist == Distribution::normal, -2.0, 3.0);
    });
    CHECK(bits_of(fill) == bf16_bits_of(out.to_vector<float>()));
  }
}

// ---------------------------------------------------------------- patches

TEST_CASE("cuda index bodies: image patches both ways match the CPU backend", "[cuda_bodies]") {
  const Backend& cpu = cpu_backend();
  const int64_t b = 2, h = 8, w = 12, c = 3, p = 4;
  const int64_t patch_count = (h / p) * (w / p), patch_dim = p * p * c;
  auto check = [&]<class T, class E>(T, E) {
    CAPTURE(dtype_name(dtype_of<T>()));
    static_assert(sizeof(T) == sizeof(E));
    const std::vector<T> images = uniform_values<T>(b * h * w * c, -1, 1, 5);
    const std::vector<T> patches = uniform_values<T>(b * patch_count * patch_dim, -1, 1, 6);

    const Tensor ti = Tensor::from_vector(images, {b, h, w, c}, kCpu);
    const Tensor tp = Tensor::empty({b, patch_count, patch_dim}, dtype_of<T>(), kCpu);
    cpu.patches(ti, p, tp, PatchDirection::to_patches);
    std::vector<T> img = images, got(patches.size(), T(0));
    run_grid([&](const GridPos& g) {
      cuda::patches_body(g, reinterpret_cast<E*>(img.data()), reinterpret_cast<E*>(got.data()), b,
                         h, w, c, p, false);
    });
    CHECK(got == tp.to_vector<T>());

    const Tensor ti2 = Tensor::zeros({b, h, w, c}, dtype_of<T>(), kCpu);
    cpu.patches(ti2, p, Tensor::from_vector(patches, {b, patch_count, patch_dim}, kCpu),
                PatchDirection::to_images);
    std::vector<T> back(images.size(), T(0)), pat = patches;
    run_grid([&](const GridPos& g) {
      cuda::patches_body(g, reinterpret_cast<E*>(back.data()), reinterpret_cast<E*>(pat.data()), b,
                         h, w, c, p, true);
    });
    CHECK(back == ti2.to_vector<T>());
  };
  check(float{}, uint32_t{});
  check(double{}, uint64_t{});
}

// ---------------------------------------------------------------- index_select

TEST_CASE("cuda index bodies: index_select matches the CPU, -1 rows zero, errors as the CPU's",
          "[cuda_bodies]") {
  const int64_t rows = 7, row = 5, m = 40;
  auto check = [&]<class T, class E, class I>(T, E, I) {
    CAPTURE(dtype_name(dtype_of<T>()), dtype_name(dtype_of<I>()));
    const std::vector<T> x = uniform_values<T>(rows * row, -3, 3, 11);
    std::vector<I> idx = integers<I>(m, -1, rows, 12);  // repeats and -1 rows
    const Tensor out = Tensor::empty({m, row}, dtype_of<T>(), kCpu);
    cpu_backend().index_select(Tensor::from_vector(x, {rows, row}, kCpu),
                               Tensor::from_vector(idx, {m}, kCpu), out);
    std::vector<T> got(size_t(m * row), T(9));
    KernelErrorSlot slot{};
    run_grid([&](const GridPos& p) {
      cuda::index_select_body(p, reinterpret_cast<const E*>(x.data()), idx.data(),
                              reinterpret_cast<E*>(got.data()), m, row, rows, &slot);
    });
    CHECK(got == out.to_vector<T>());
    CHECK(slot.claimed == 0);

    // An index past the end at position 13: the strict CPU device records it and gives a zero
    // row; the body records the same fields and gives the same rows.
    idx[13] = I(rows + 2);
    const Tensor strict_out = Tensor::empty({m, row}, dtype_of<T>(), kCpuStrict);
    strict_error();
    cpu_strict_backend().index_select(Tensor::from_vector(x, {rows, row}, kCpuStrict),
                                      Tensor::from_vector(idx, {m}, kCpuStrict), strict_out);
    const std::string message = strict_error();
    REQUIRE(message == "index_select: index 9 at position 13 is outside [-1, 7)");
    run_grid([&](const GridPos& p) {
      cuda::index_select_body(p, reinterpret_cast<const E*>(x.data()), idx.data(),
                              reinterpret_cast<E*>(got.data()), m, row, rows, &slot);
    });
    CHECK(got == host<T>(strict_out));
    REQUIRE(slot.claimed == 1);
    CHECK(slot.op == KernelErrorOp::index_select);
    CHECK(slot_message(slot, "index") == message);

    // Rows without columns: the range check alone.
    KernelErrorSlot empty_slot{};
    run_grid([&](const GridPos& p) {
      cuda::check_range_body(p, idx.data(), m, -1, rows, KernelErrorOp::index_select, &empty_slot);
    });
    CHECK(slot_message(empty_slot, "index") == message);
  };
  check(float{}, uint32_t{}, int32_t{});
  check(double{}, uint64_t{}, int64_t{});
  check(int64_t{}, uint64_t{}, int32_t{});
}

// ---------------------------------------------------------------- scatter-add

namespace {

// CUB's stable radix sort of (key, position) pairs, on the host.
template <class K, class P>
void stable_sort_pairs(const std::vector<K>& keys, const std::vector<P>& pos,
                       std::vector<K>& sorted_keys, std::vector<P>& sorted_pos) {
  std::vector<size_t> order(keys.size());
  std::iota(order.begin(), order.end(), size_t(0));
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return keys[a] < keys[b]; });
  sorted_keys.resize(keys.size());
  sorted_pos.resize(keys.size());
  for (size_t i = 0; i < order.size(); ++i) {
    sorted_keys[i] = keys[order[i]];
    sorted_pos[i] = pos[order[i]];
  }
}

// index_add through the bodies: keys, the sort, segment starts, ordered sums.
template <class T, class I, class K, class P>
void index_add_bodies(const std::vector<T>& src, const std::vector<I>& idx, int64_t rows,
                      int64_t row, std::vector<T>& out, KernelErrorSlot& slot) {
  const int64_t m = int64_t(idx.size());
  std::vector<K> keys(static_cast<size_t>(m)), sorted_keys;
  std::vector<P> pos(static_cast<size_t>(m)), sorted_pos, starts(size_t(rows + 1));
  run_grid([&](const GridPos& p) {
    cuda::index_add_keys_body(p, idx.data(), m, rows, keys.data(), pos.data(), &slot);
  });
  stable_sort_pairs(keys, pos, sorted_keys, sorted_pos);
  run_grid([&](const GridPos& p) {
    cuda::segment_starts_body(p, sorted_keys.data(), m, rows, starts.data());
  });
  run_grid([&](const GridPos& p) {
    cuda::segment_add_body(p, src.data(), sorted_pos.data(), starts.data(), out.data(), rows, row,
                           true);
  });
}

}  // namespace

TEST_CASE("cuda index bodies: index_add sums in the CPU's order, bit for bit, with its errors",
          "[cuda_bodies]") {
  const int64_t rows = 9, row = 6, m = 60;
  auto check = [&]<class T, class I, class K, class P>(T, I, K, P) {
    CAPTURE(dtype_name(dtype_of<T>()), dtype_name(dtype_of<I>()), sizeof(K));
    const std::vector<T> src = uniform_values<T>(m * row, -2, 2, 21);
    const std::vector<T> base = uniform_values<T>(rows * row, -1, 1, 22);
    std::vector<I> idx = integers<I>(m, -1, rows, 23);  // every row several times, some -1
    const Tensor out = Tensor::from_vector(base, {rows, row}, kCpu);
    cpu_backend().index_add(Tensor::from_vector(src, {m, row}, kCpu),
                            Tensor::from_vector(idx, {m}, kCpu), out);
    std::vector<T> got = base;
    KernelErrorSlot slot{};
    index_add_bodies<T, I, K, P>(src, idx, rows, row, got, slot);
    // The same additions in the same order: equal bits (f32 too, where order changes results).
    CHECK(got == out.to_vector<T>());
    CHECK(slot.claimed == 0);

    idx[37] = I(-5);
    const Tensor strict_out = Tensor::from_vector(base, {rows, row}, kCpuStrict);
    strict_error();
    cpu_strict_backend().index_add(Tensor::from_vector(src, {m, row}, kCpuStrict),
                                   Tensor::from_vector(idx, {m}, kCpuStrict), strict_out);
    const std::string message = strict_error();
    REQUIRE(message == "index_add: index -5 at position 37 is outside [-1, 9)");
    got = base;
    index_add_bodies<T, I, K, P>(src, idx, rows, row, got, slot);
    CHECK(got == host<T>(strict_out));
    REQUIRE(slot.claimed == 1);
    CHECK(slot.op == KernelErrorOp::index_add);
    CHECK(slot_message(slot, "index") == message);
  };
  check(float{}, int32_t{}, uint32_t{}, int32_t{});
  check(float{}, int64_t{}, uint64_t{}, int64_t{});
  check(double{}, int64_t{}, uint32_t{}, int32_t{});
  check(double{}, int32_t{}, uint64_t{}, int64_t{});

  // bf16 storage: the f32 sums of the bf16 values, rounded once.
  const std::vector<BFloat16> src = to_bf16_vector(uniform_values<float>(m * row, -2, 2, 24));
  const std::vector<BFloat16> base = to_bf16_vector(uniform_values<float>(rows * row, -1, 1, 25));
  const std::vector<int64_t> idx = integers<int64_t>(m, -1, rows, 26);
  auto widen = [](const std::vector<BFloat16>& v) {
    std::vector<float> f(v.size());
    for (size_t i = 0; i < v.size(); ++i)
      f[i] = from_bf16(v[i]);
    return f;
  };
  const Tensor out = Tensor::from_vector(widen(base), {rows, row}, kCpu);
  cpu_backend().index_add(Tensor::from_vector(widen(src), {m, row}, kCpu),
                          Tensor::from_vector(idx, {m}, kCpu), out);
  std::vector<BFloat16> got = base;
  KernelErrorSlot slot{};
  index_add_bodies<BFloat16, int64_t, uint32_t, int32_t>(src, idx, rows, row, got, slot);
  CHECK(bits_of(got) == bf16_bits_of(out.to_vector<float>()));
}

// ---------------------------------------------------------------- gather

TEST_CASE("cuda index bodies: gather and its backward (short and long index rows) match the CPU",
          "[cuda_bodies]") {
  const int64_t rows = 6, n = 9;
  auto check = [&]<class T, class E, class I>(T, E, I) {
    CAPTURE(dtype_name(dtype_of<T>()), dtype_name(dtype_of<I>()));
    const std::vector<T> x = uniform_values<T>(rows * n, -3, 3, 31);
    // k = 3 (the direct backward) and k = 40 (the sorted one; many repeats per row).
    for (int64_t k : {int64_t(3), int64_t(40)}) {
      CAPTURE(k);
      std::vector<I> idx = integers<I>(rows * k, 0, n, 32 + uint32_t(k));
      const Tensor tx = Tensor::from_vector(x, {rows, n}, kCpu);
      const Tensor out = Tensor::empty({rows, k}, dtype_of<T>(), kCpu);
      cpu_backend().gather(tx, Tensor::from_vector(idx, {rows, k}, kCpu), out);
      std::vector<T> got(size_t(rows * k), T(5));
      KernelErrorSlot slot{};
      run_grid([&](const GridPos& p) {
        cuda::gather_body(p, reinterpret_cast<const E*>(x.data()), idx.data(),
                          reinterpret_cast<E*>(got.data()), rows, n, k, &slot);
      });
      CHECK(got == out.to_vector<T>());
      CHECK(slot.claimed == 0);

      // Backward: gx [rows, n] = sum of gy at each index, in j order.
      const std::vector<T> gy = uniform_values<T>(rows * k, -1, 1, 33);
      const Tensor gx = Tensor::empty({rows, n}, dtype_of<T>(), kCpu);
      cpu_backend().gather_backward(Tensor::from_vector(gy, {rows, k}, kCpu),
                                    Tensor::from_vector(idx, {rows, k}, kCpu), gx);
      std::vector<T> back(size_t(rows * n), T(7));
      if (k <= cuda::kGatherBackwardDirectK) {
        run_grid([&](const GridPos& p) {
          cuda::gather_backward_direct_body(p, gy.data(), idx.data(), back.data(), rows, n, k);
        });
      } else {
        std::vector<uint32_t> keys(size_t(rows * k)), sorted_keys;
        std::vector<int32_t> pos(size_t(rows * k)), sorted_pos, starts(size_t(rows * n + 1));
        run_grid([&](const GridPos& p) {
          cuda::gather_backward_keys_body(p, idx.data(), rows, k, n, keys.data(), pos.data());
        });
        stable_sort_pairs(keys, pos, sorted_keys, sorted_pos);
        run_grid([&](const GridPos& p) {
          cuda::segment_starts_body(p, sorted_keys.data(), rows * k, rows * n, starts.data());
        });
        run_grid([&](const GridPos& p) {
          cuda::segment_add_body(p, gy.data(), sorted_pos.data(), starts.data(), back.data(),
                                 rows * n, int64_t(1), false);
        });
      }
      CHECK(back == gx.to_vector<T>());

      // An index out of range: reported with the CPU's fields, its value 0.
      idx[size_t(k + 1)] = I(n);
      const Tensor strict_out = Tensor::empty({rows, k}, dtype_of<T>(), kCpuStrict);
      strict_error();
      cpu_strict_backend().gather(Tensor::from_vector(x, {rows, n}, kCpuStrict),
                                  Tensor::from_vector(idx, {rows, k}, kCpuStrict), strict_out);
      const std::string message = strict_error();
      REQUIRE(message ==
              "gather: index 9 at position " + std::to_string(k + 1) + " is outside [0, 9)");
      run_grid([&](const GridPos& p) {
        cuda::gather_body(p, reinterpret_cast<const E*>(x.data()), idx.data(),
                          reinterpret_cast<E*>(got.data()), rows, n, k, &slot);
      });
      CHECK(got == host<T>(strict_out));
      CHECK(slot_message(slot, "index") == message);
    }
  };
  check(float{}, uint32_t{}, int64_t{});
  check(double{}, uint64_t{}, int32_t{});
}

// ---------------------------------------------------------------- topk, argsort, one_hot

TEST_CASE("cuda index bodies: topk matches the CPU's order, ties by lower index", "[cuda_bodies]") {
  const int64_t rows = 7, n = 10;
  auto check = [&]<class T>(T) {
    CAPTURE(dtype_name(dtype_of<T>()));
    // Values from a small set: many ties; one row of equal values; signed zeros are equal.
    std::vector<T> x(size_t(rows * n));
    const std::vector<int64_t> levels = integers<int64_t>(rows * n, -3, 4, 41);
    for (size_t i = 0; i < x.size(); ++i)
      x[i] = T(levels[i]) / T(2);
    for (int64_t j = 0; j < n; ++j)
      x[size_t(2 * n + j)] = T(1);
    x[size_t(3 * n + 1)] = T(-0.0);
    x[size_t(3 * n + 2)] = T(0.0);
    for (int64_t k : {int64_t(1), int64_t(3), n}) {
      CAPTURE(k);
      const Tensor values = Tensor::empty({rows, k}, dtype_of<T>(), kCpu);
      const Tensor indices = Tensor::empty({rows, k}, DType::i64, kCpu);
      cpu_backend().topk(Tensor::from_vector(x, {rows, n}, kCpu), k, values, indices);
      std::vector<T> got_values(size_t(rows * k));
      std::vector<int64_t> got_indices(size_t(rows * k));
      run_grid(
          [&](const GridPos& p) {
            cuda::topk_body(p, x.data(), got_values.data(), got_indices.data(), rows, n, k);
          },
          2, 2);
      CHECK(got_indices == indices.to_vector<int64_t>());
      CHECK(got_values == values.to_vector<T>());
    }
  };
  check(float{});
  check(double{});
}

TEST_CASE("cuda index bodies: argsort's segments and bf16 keys for CUB", "[cuda_bodies]") {
  const int64_t rows = 4, n = 37;
  std::vector<int64_t> columns(size_t(rows * n), -1), offsets(size_t(rows + 1), -1);
  run_grid([&](const GridPos& p) {
    cuda::argsort_columns_body(p, columns.data(), offsets.data(), rows, n);
  });
  for (int64_t f = 0; f < rows * n; ++f)
    REQUIRE(columns[size_t(f)] == f % n);
  for (int64_t r = 0; r <= rows; ++r)
    REQUIRE(offsets[size_t(r)] == r * n);

  // bf16 keys are sorted as their exact f32 values.
  const std::vector<BFloat16> keys = to_bf16_vector(uniform_values<float>(rows * n, -5, 5, 81));
  std::vector<float> wide(keys.size(), NAN);
  run_grid([&](const GridPos& p) { cuda::widen_bf16_body(p, keys.data(), wide.data(), rows * n); });
  for (size_t i = 0; i < keys.size(); ++i)
    REQUIRE(wide[i] == from_bf16(keys[i]));
}

TEST_CASE("cuda index bodies: one_hot matches the CPU, errors as the CPU's", "[cuda_bodies]") {
  const int64_t n = 23, classes = 5;
  auto check = [&]<class T, class I>(T, I) {
    CAPTURE(dtype_name(dtype_of<T>()), dtype_name(dtype_of<I>()));
    std::vector<I> idx = integers<I>(n, 0, classes, 51);
    const Tensor out = Tensor::empty({n, classes}, dtype_of<T>(), kCpu);
    cpu_backend().one_hot(Tensor::from_vector(idx, {n}, kCpu), out);
    std::vector<T> got(size_t(n * classes), T(3));
    KernelErrorSlot slot{};
    run_grid([&](const GridPos& p) {
      cuda::one_hot_body(p, idx.data(), got.data(), n, classes, &slot);
    });
    CHECK(got == out.to_vector<T>());
    CHECK(slot.claimed == 0);

    idx[17] = I(classes);
    const Tensor strict_out = Tensor::empty({n, classes}, dtype_of<T>(), kCpuStrict);
    strict_error();
    cpu_strict_backend().one_hot(Tensor::from_vector(idx, {n}, kCpuStrict), strict_out);
    const std::string message = strict_error();
    REQUIRE(message == "one_hot: index 5 at position 17 is outside [0, 5)");
    run_grid([&](const GridPos& p) {
      cuda::one_hot_body(p, idx.data(), got.data(), n, classes, &slot);
    });
    CHECK(got == host<T>(strict_out));
    CHECK(slot_message(slot, "index") == message);
  };
  check(float{}, int32_t{});
  check(double{}, int64_t{});
}

// ---------------------------------------------------------------- assign_slots

namespace {

struct SlotResult {
  std::vector<int64_t> combine, dispatch, load;
};

// The five slot-assignment bodies in launch order, each over the grid.
SlotResult assign_slots_bodies(const SlotLayout& L, const std::vector<int64_t>& experts,
                               const std::vector<int64_t>* order, KernelErrorSlot& slot) {
  cuda::SlotGrid g;
  g.tokens = L.tokens;
  g.k = L.k;
  g.experts = L.experts;
  g.group_size = L.group_size;
  g.capacity = L.capacity;
  g.last_capacity = L.last_capacity;
  g.rows_per_expert = L.rows_per_expert;
  g.groups = L.groups();
  g.tiles_per_group = (L.k * L.group_size + cuda::kSlotTile - 1) / cuda::kSlotTile;
  SlotResult r{std::vector<int64_t>(size_t(L.tokens * L.k), 77),
               std::vector<int64_t>(size_t(L.experts * L.rows_per_expert), 77),
               std::vector<int64_t>(size_t(L.experts), 77)};
  std::vector<int32_t> sequence(size_t(g.sequence_length()), 77);
  std::vector<int32_t> counts(size_t(g.groups * g.tiles_per_group * g.experts), 77);
  std::vector<int64_t> kept(size_t(g.groups * g.experts), 77);
  const int64_t* po = order ? order->data() : nullptr;
  run_grid([&](const GridPos& p) {
    cuda::assign_slots_prepare_body(p, g, experts.data(), po, sequence.data(), r.combine.data(),
                                    r.dispatch.data(), &slot);
  });
  run_grid([&](const GridPos& p) {
    cuda::assign_slots_tile_count_body(p, g, sequence.data(), counts.data());
  });
  run_grid([&](const GridPos& p) {
    cuda::assign_slots_tile_scan_body(p, g, counts.data(), kept.data());
  });
  run_grid([&](const GridPos& p) {
    cuda::assign_slots_place_body(p, g, po, sequence.data(), counts.data(), r.combine.data(),
                                  r.dispatch.data());
  });
  run_grid(
      [&](const GridPos& p) { cuda::assign_slots_load_body(p, g, kept.data(), r.load.data()); });
  return r;
}

SlotResult assign_slots_cpu(const Backend& be, Device device, const SlotLayout& L,
                            const std::vector<int64_t>& experts,
                            const std::vector<int64_t>* order) {
  const Tensor combine = Tensor::empty({L.tokens * L.k}, DType::i64, device);
  const Tensor dispatch = Tensor::empty({L.experts * L.rows_per_expert}, DType::i64, device);
  const Tensor load = Tensor::empty({L.experts}, DType::i64, device);
  be.assign_slots(Tensor::from_vector(experts, {L.tokens, L.k}, device),
                  order ? Tensor::from_vector(*order, {L.tokens}, device) : Tensor(), L, combine,
                  dispatch, load);
  return {host<int64_t>(combine), host<int64_t>(dispatch), host<int64_t>(load)};
}

// Per group, a random permutation of its positions (the BPR order).
std::vector<int64_t> group_permutations(const SlotLayout& L, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<int64_t> order(size_t(L.tokens));
  for (int64_t start = 0; start < L.tokens; start += L.group_size) {
    const int64_t s = std::min(L.group_size, L.tokens - start);
    std::iota(order.begin() + start, order.begin() + start + s, int64_t(0));
    std::shuffle(order.begin() + start, order.begin() + start + s, rng);
  }
  return order;
}

}  // namespace

TEST_CASE("cuda index bodies: assign_slots matches the CPU, token and BPR order, with drops",
          "[cuda_bodies]") {
  // 250 tokens in groups of 100 (the last has 50): a group's k-major sequence spans two tiles of
  // kSlotTile; 5 experts.
  SlotLayout L;
  L.tokens = 250;
  L.k = 2;
  L.experts = 5;
  L.group_size = 100;
  for (auto [capacity, last_capacity] : {std::pair<int64_t, int64_t>{7, 3}, {20, 12}, {200, 100}}) {
    CAPTURE(capacity);
    L.capacity = capacity;
    L.last_capacity = last_capacity;
    L.rows_per_expert = (L.groups() - 1) * capacity + last_capacity;
    // Skewed choices: expert 0 is popular, so that it fills first.
    std::vector<int64_t> experts = integers<int64_t>(L.tokens * L.k, 0, L.experts + 2, 61);
    for (int64_t& x : experts)
      x = x >= L.experts ? 0 : x;
    const std::vector<int64_t> order = group_permutations(L, 62);
    for (const std::vector<int64_t>* po :
         {static_cast<const std::vector<int64_t>*>(nullptr), &order}) {
      CAPTURE(po != nullptr);
      const SlotResult want = assign_slots_cpu(cpu_backend(), kCpu, L, experts, po);
      KernelErrorSlot slot{};
      const SlotResult got = assign_slots_bodies(L, experts, po, slot);
      CHECK(got.combine == want.combine);
      CHECK(got.dispatch == want.dispatch);
      CHECK(got.load == want.load);
      CHECK(slot.claimed == 0);
      if (capacity == 7) {  // the small capacity drops assignments
        CHECK(std::count(got.combine.begin(), got.combine.end(), int64_t(-1)) > 0);
      }
    }
  }

  SECTION("an expert or an order position out of range: the CPU's fields, absent assignments") {
    L.capacity = 20;
    L.last_capacity = 12;
    L.rows_per_expert = (L.groups() - 1) * L.capacity + L.last_capacity;
    std::vector<int64_t> experts = integers<int64_t>(L.tokens * L.k, 0, L.experts, 63);
    experts[141] = 9;
    std::vector<int64_t> order = group_permutations(L, 64);
    for (bool bad_order : {false, true}) {
      CAPTURE(bad_order);
      if (bad_order) {  // a valid expert again, and the order entry 130 (group 1, position 30)
        experts[141] = 1;
        order[130] = 100;
      }
      strict_error();
      const SlotResult want =
          assign_slots_cpu(cpu_strict_backend(), kCpuStrict, L, experts, &order);
      const std::string message = strict_error();
      REQUIRE(message == (bad_order
                              ? "assign_slots: position 100 at position 30 is outside [0, 100)"
                              : "assign_slots: expert 9 at position 141 is outside [0, 5)"));
      KernelErrorSlot slot{};
      const SlotResult got = assign_slots_bodies(L, experts, &order, slot);
      CHECK(got.combine == want.combine);
      CHECK(got.dispatch == want.dispatch);
      CHECK(got.load == want.load);
      REQUIRE(slot.claimed == 1);
      CHECK(slot.op ==
            (bad_order ? KernelErrorOp::assign_slots_order : KernelErrorOp::assign_slots));
      CHECK(slot_message(slot, bad_order ? "position" : "expert") == message);
    }
  }
}

// ---------------------------------------------------------------- optimizers

TEST_CASE("cuda index bodies: fused AdamW and SGD match the CPU, with and without clipping",
          "[cuda_bodies]") {
  const int64_t n = 1000;
  auto check = [&]<class T>(T) {
    CAPTURE(dtype_name(dtype_of<T>()));
    const std::vector<T> w0 = uniform_values<T>(n, -1, 1, 71), g = uniform_values<T>(n, -2, 2, 72);
    const std::vector<T> m0 = uniform_values<T>(n, -0.1, 0.1, 73);
    const std::vector<T> v0 = uniform_values<T>(n, 0, 0.01, 74);
    std::vector<uint8_t> mask(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i)
      mask[size_t(i)] = i % 3 == 0 ? 0 : 1;
    // sum of g^2 is about n * 4/3: a max_norm of 5 clips, of 1e3 does not.
    for (double max_norm : {0.0, 5.0, 1e3}) {
      for (bool masked : {true, false}) {
        CAPTURE(max_norm, masked);
        double norm_sq = 0;
        for (T x : g)
          norm_sq += double(x) * double(x);
        const std::vector<double> norm_sq_value{norm_sq};
        UpdateArgs a;
        a.values = Tensor::from_vector(w0, {n}, kCpu);
        a.grads = Tensor::from_vector(g, {n}, kCpu);
        a.decay_mask = Tensor::from_vector(mask, {n}, kCpu);
        a.slot_a = Tensor::from_vector(m0, {n}, kCpu);
        a.slot_b = Tensor::from_vector(v0, {n}, kCpu);
        a.grad_norm_sq = max_norm > 0 ? Tensor::from_vector(norm_sq_value, {}, kCpu) : Tensor();
        a.max_norm = max_norm;
        a.lr = 1e-3;
        a.step = 7;
        AdamWOptions o;
        o.weight_decay = 0.1;
        o.decay_masked_only = masked;
        cpu_backend().adamw_update(a, o);
        std::vector<T> w = w0, m = m0, v = v0;
        const cuda::AdamWScalars<T> s{T(o.b1),
                                      T(o.b2),
                                      T(o.eps),
                                      T(a.lr),
                                      T(o.weight_decay),
                                      1.0 / (1.0 - std::pow(o.b1, 7.0)),
                                      1.0 / (1.0 - std::pow(o.b2, 7.0)),
                                      masked};
        run_grid([&](const GridPos& p) {
          cuda::adamw_body(p, w.data(), g.data(), m.data(), v.data(), mask.data(), n, s,
                           max_norm > 0 ? norm_sq_value.data() : nullptr, max_norm);
        });
        CHECK(w == a.values.to_vector<T>());
        CHECK(m == a.slot_a.to_vector<T>());
        CHECK(v == a.slot_b.to_vector<T>());

        for (bool nesterov : {false, true}) {
          CAPTURE(nesterov);
          UpdateArgs b = a;
          b.values = Tensor::from_vector(w0, {n}, kCpu);
          b.slot_a = Tensor::from_vector(m0, {n}, kCpu);
          b.slot_b = Tensor();
          SgdOptions so;
          so.momentum = 0.9;
          so.nesterov = nesterov;
          so.weight_decay = 0.05;
          so.decay_masked_only = masked;
          cpu_backend().sgd_update(b, so);
          std::vector<T> ws = w0, trace = m0;
          const cuda::SgdScalars<T> ss{T(so.momentum), T(b.lr), T(so.weight_decay), nesterov,
                                       masked};
          run_grid([&](const GridPos& p) {
            cuda::sgd_body(p, ws.data(), g.data(), trace.data(), mask.data(), n, ss,
                           max_norm > 0 ? norm_sq_value.data() : nullptr, max_norm);
          });
          // GCC contracts `gi + mom * trace` into an FMA where it likes (-ffp-contract=fast),
          // and the CPU's vectorised loop and this scalar run contract differently: one
          // rounding apart on values of order 1, hence a few epsilons (a wrong formula, such
          // as a dropped momentum or decay term, is off by more than 1e-4).
          CHECK(max_abs_diff(ws, b.values.to_vector<T>()) <= 8 * std::numeric_limits<T>::epsilon());
          CHECK(max_abs_diff(trace, b.slot_a.to_vector<T>()) <=
                8 * std::numeric_limits<T>::epsilon());
          CHECK(max_abs_diff(ws, w0) > 1e-5);  // the update did something
        }
      }
    }
  };
  check(float{});
  check(double{});
}

TEST_CASE("cuda kernel error slot: the lowest position is reported, whatever the thread order") {
  // Threads of a kernel run in any order; the CPU's serial check reports the first bad element.
  // Two bad indices (positions 13 and 29), the grid run from its last thread to its first.
  const int64_t rows = 7, m = 40;
  std::vector<int64_t> idx(size_t(m), 1);
  idx[13] = rows + 2;
  idx[29] = -5;
  KernelErrorSlot slot{};
  for (int64_t b = kBlocks - 1; b >= 0; --b)
    for (int64_t t = kThreads - 1; t >= 0; --t)
      cuda::check_range_body(GridPos{b, t, kThreads, kBlocks}, idx.data(), m, -1, rows,
                             KernelErrorOp::index_select, &slot);
  REQUIRE(slot.claimed == 1);
  CHECK(slot_message(slot, "index") == "index_select: index 9 at position 13 is outside [-1, 7)");
  // A later error at a higher position leaves the record as it is; a lower one replaces it.
  cuda::report_kernel_error(&slot, KernelErrorOp::gather, 3, 20, 0, 2);
  CHECK(slot.position == 13);
  cuda::report_kernel_error(&slot, KernelErrorOp::gather, 3, 2, 0, 2);
  CHECK(slot.position == 2);
  CHECK(slot.op == KernelErrorOp::gather);
  CHECK(slot.lock == 0);
}

TEST_CASE("cuda index bodies: argsort's sort words order every key type as the CPU's argsort",
          "[cuda_bodies]") {
  // CUB sorts the words ascending and stably; that order must be the CPU's stable argsort in
  // both directions, ties (equal values, -0.0 and +0.0) kept in column order.
  const int64_t n = 300;
  auto check = [&]<class K>(K) {
    CAPTURE(dtype_name(dtype_of<K>()));
    std::vector<K> x(static_cast<size_t>(n));
    std::mt19937 rng(91);
    std::uniform_int_distribution<int> pick(-6, 6);
    for (K& v : x)
      v = K(pick(rng)) * K(std::is_floating_point_v<K> ? 0.75 : 1);  // many ties
    if constexpr (std::is_floating_point_v<K>) {
      x[3] = -0.0;
      x[4] = 0.0;
      x[5] = -0.0;
      x[10] = std::numeric_limits<K>::infinity();
      x[11] = -std::numeric_limits<K>::infinity();
      x[12] = std::numeric_limits<K>::denorm_min();
      x[13] = -std::numeric_limits<K>::max();
    } else {
      x[10] = std::numeric_limits<K>::max();
      x[11] = std::numeric_limits<K>::min();
    }
    for (SortOrder order : {SortOrder::ascending, SortOrder::descending}) {
      const bool descending = order == SortOrder::descending;
      CAPTURE(descending);
      std::vector<cuda::sort_word_t<K>> words(static_cast<size_t>(n));
      run_grid([&](const GridPos& p) {
        cuda::argsort_words_body(p, x.data(), words.data(), n, descending);
      });
      std::vector<int64_t> got(static_cast<size_t>(n));
      std::iota(got.begin(), got.end(), 0);
      std::stable_sort(got.begin(), got.end(),
                       [&](int64_t a, int64_t b) { return words[size_t(a)] < words[size_t(b)]; });
      const Tensor want = Tensor::empty({n}, DType::i64, kCpu);
      cpu_backend().argsort(Tensor::from_vector(x, {n}, kCpu), order, want);
      CHECK(got == want.to_vector<int64_t>());
    }
  };
  check(float{});
  check(double{});
  check(int32_t{});
  check(int64_t{});
}
