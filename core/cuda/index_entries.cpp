// The CUDA backend's random-number, patch, indexing, routing and optimizer entries
// (core/backend.h has their contracts; core/cpu/ is the reference): each picks the element types
// of its tensors and launches the kernels of index_kernels.h on the compute stream. Scratch
// buffers (sort keys, CUB's temporary storage, slot counts) are tensors of the same device, so
// they come from the backend's caching allocator; they are freed when the entry returns, which is
// safe because every later use of that memory is queued behind these kernels on the same stream.
// Nothing here reads device memory: index errors go to the kernel error slot, the clipping norm
// is read by the optimizer kernels themselves.
#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>

#include "core/cuda/combine_kernels.h"
#include "core/cuda/cuda_check.h"
#include "core/cuda/dtype_dispatch.h"
#include "core/cuda/entries.h"
#include "core/cuda/index_kernels.h"
#include "core/cuda/streams.h"

namespace vmoe::cuda {

namespace {

// Calls fn(E{}) with E an unsigned word of the dtype's size: entries that move elements as bits.
template <class Fn>
void dispatch_word(DType t, Fn&& fn) {
  switch (dtype_size(t)) {
    case 1:
      fn(uint8_t{});
      break;
    case 2:
      fn(uint16_t{});
      break;
    case 4:
      fn(uint32_t{});
      break;
    default:
      fn(uint64_t{});
  }
}

template <class E>
E* words(const Tensor& t) {
  return static_cast<E*>(t.device_raw());
}

// [count] of `dtype` on `device`, uninitialised.
Tensor scratch(int64_t count, DType dtype, Device device) {
  return Tensor::empty({std::max<int64_t>(count, 1)}, dtype, device);
}

// Rows of the last axis: numel / size(-1), or 0 for an empty last axis.
int64_t rows_of(const Tensor& t, int64_t n) {
  return n ? t.numel() / n : 0;
}

// The deterministic scatter-add (index_bodies.h): sorts `m` (key, position) pairs made by
// make_keys(keys, positions), then out [dests, row] (+)= the rows of src at each destination's
// positions, in position order. K, P: the narrow pair when keys (<= dests) and positions fit.
template <class T, class MakeKeys>
void scatter_add(const T* src, int64_t m, int64_t dests, int64_t row, bool accumulate, T* out,
                 Device device, MakeKeys&& make_keys) {
  cudaStream_t stream = compute_stream();
  auto run = [&]<class K, class P>(K, P) {
    constexpr DType key_dtype = sizeof(K) == 4 ? DType::i32 : DType::i64;
    constexpr DType pos_dtype = sizeof(P) == 4 ? DType::i32 : DType::i64;
    const Tensor keys = scratch(m, key_dtype, device), sorted_keys = scratch(m, key_dtype, device);
    const Tensor pos = scratch(m, pos_dtype, device), sorted_pos = scratch(m, pos_dtype, device);
    const Tensor starts = scratch(dests + 1, pos_dtype, device);
    K* pk = static_cast<K*>(keys.device_raw());
    K* psk = static_cast<K*>(sorted_keys.device_raw());
    P* pp = static_cast<P*>(pos.device_raw());
    P* psp = static_cast<P*>(sorted_pos.device_raw());
    P* pstarts = static_cast<P*>(starts.device_raw());
    make_keys(pk, pp);
    // Keys run up to dests (the "no destination" key): only their low bits need sorting.
    const int end_bit = std::max(1, int(std::bit_width(uint64_t(dests))));
    const size_t temp_bytes = sort_pairs_temp_bytes<K, P>(m, end_bit);
    const Tensor temp = scratch(int64_t(temp_bytes), DType::u8, device);
    launch_sort_pairs<K, P>(temp.device_raw(), temp_bytes, pk, psk, pp, psp, m, end_bit, stream);
    launch_segment_starts<K, P>(psk, m, dests, pstarts, stream);
    launch_segment_add<T, P>(src, psp, pstarts, out, dests, row, accumulate, stream);
  };
  if (uint64_t(dests) < std::numeric_limits<uint32_t>::max() &&
      m < std::numeric_limits<int32_t>::max())
    run(uint32_t{}, int32_t{});
  else
    run(uint64_t{}, int64_t{});
}

}  // namespace

// ---- random numbers ----

void dropout_mask(const Tensor& mask, double rate, RngKey key, uint64_t offset) {
  dispatch_floating(mask.dtype(), "dropout", [&]<class T>(T) {
    launch_dropout_mask<T>(mask.device_data<T>(), mask.numel(), rate,
                           compute_t<T>(1.0 / (1.0 - rate)), key.seed, key.stream, offset,
                           compute_stream());
  });
}

void random_fill(const Tensor& out, RngKey key, uint64_t offset, Distribution dist, double lo,
                 double hi) {
  dispatch_floating(out.dtype(), "random", [&]<class T>(T) {
    launch_random_fill<T>(out.device_data<T>(), out.numel(), key.seed, key.stream, offset,
                          dist == Distribution::normal, lo, hi, compute_stream());
  });
}

void patches(const Tensor& images, int64_t p, const Tensor& patches, PatchDirection dir) {
  if (!is_floating(images.dtype())) unsupported("image_to_patches", images.dtype());
  dispatch_word(images.dtype(), [&]<class E>(E) {
    launch_patches<E>(words<E>(images), words<E>(patches), images.size(0), images.size(1),
                      images.size(2), images.size(3), p, dir == PatchDirection::to_images,
                      compute_stream());
  });
}

// ---- indexing ----

void index_select(const Tensor& x, const Tensor& idx, const Tensor& out) {
  // Not numel / rows: x may have no rows, and its -1 indices still give zero rows.
  int64_t row = 1;
  for (int64_t d = 1; d < x.dim(); ++d)
    row *= x.size(d);
  const int64_t m = idx.numel(), rows = x.size(0);
  dispatch_index(idx.dtype(), "index_select", [&]<class I>(I) {
    const I* pi = idx.device_data<I>();
    if (row == 0) {
      launch_check_range<I>(pi, m, -1, rows, KernelErrorOp::index_select, kernel_error_slot(),
                            compute_stream());
      return;
    }
    dispatch_word(x.dtype(), [&]<class E>(E) {
      launch_index_select<E, I>(words<E>(x), pi, words<E>(out), m, row, rows, kernel_error_slot(),
                                compute_stream());
    });
  });
}

void index_add(const Tensor& src, const Tensor& idx, const Tensor& out) {
  const int64_t m = idx.numel(), row = src.size(0) ? src.numel() / src.size(0) : 0;
  const int64_t rows = out.size(0);
  dispatch_floating(src.dtype(), "index_add", [&]<class T>(T) {
    dispatch_index(idx.dtype(), "index_add", [&]<class I>(I) {
      const I* pi = idx.device_data<I>();
      if (m == 0) return;
      if (row == 0 || rows == 0) {  // nothing to add: the indices are still checked
        launch_check_range<I>(pi, m, -1, rows, KernelErrorOp::index_add, kernel_error_slot(),
                              compute_stream());
        return;
      }
      scatter_add(src.device_data<T>(), m, rows, row, /*accumulate=*/true, out.device_data<T>(),
                  out.device(), [&]<class K, class P>(K* keys, P* pos) {
                    launch_index_add_keys<I, K, P>(pi, m, rows, keys, pos, kernel_error_slot(),
                                                   compute_stream());
                  });
    });
  });
}

void gather(const Tensor& x, const Tensor& idx, const Tensor& out) {
  if (!is_floating(x.dtype())) unsupported("gather", x.dtype());
  const int64_t n = x.size(-1), k = idx.size(-1), rows = rows_of(idx, k);
  dispatch_index(idx.dtype(), "gather", [&]<class I>(I) {
    dispatch_word(x.dtype(), [&]<class E>(E) {
      launch_gather<E, I>(words<E>(x), idx.device_data<I>(), words<E>(out), rows, n, k,
                          kernel_error_slot(), compute_stream());
    });
  });
}

void gather_backward(const Tensor& gy, const Tensor& idx, const Tensor& gx) {
  const int64_t n = gx.size(-1), k = idx.size(-1), rows = rows_of(idx, k);
  dispatch_floating(gx.dtype(), "gather_backward", [&]<class T>(T) {
    T* pgx = gx.device_data<T>();
    if (rows == 0) {  // no indices: gx is all zeros (zero bits are 0 in every floating type)
      if (gx.numel() > 0)
        VMOE_CUDA_CHECK(cudaMemsetAsync(pgx, 0, size_t(gx.numel()) * sizeof(T), compute_stream()));
      return;
    }
    dispatch_index(idx.dtype(), "gather_backward", [&]<class I>(I) {
      const I* pi = idx.device_data<I>();
      if (k <= kGatherBackwardDirectK) {
        launch_gather_backward_direct<T, I>(gy.device_data<T>(), pi, pgx, rows, n, k,
                                            compute_stream());
        return;
      }
      scatter_add(gy.device_data<T>(), rows * k, rows * n, 1, /*accumulate=*/false, pgx,
                  gx.device(), [&]<class K, class P>(K* keys, P* pos) {
                    launch_gather_backward_keys<I, K, P>(pi, rows, k, n, keys, pos,
                                                         compute_stream());
                  });
    });
  });
}

void topk(const Tensor& x, int64_t k, const Tensor& values, const Tensor& indices) {
  const int64_t n = x.size(-1), rows = rows_of(x, n);
  dispatch_floating(x.dtype(), "topk", [&]<class T>(T) {
    launch_topk<T>(x.device_data<T>(), values.device_data<T>(), indices.device_data<int64_t>(),
                   rows, n, k, compute_stream());
  });
}

void argsort(const Tensor& x, SortOrder order, const Tensor& out) {
  const int64_t n = x.size(-1), rows = rows_of(x, n);
  const bool descending = order == SortOrder::descending;
  auto run = [&]<class K>(const Tensor& keys, K) {
    if (rows * n == 0) return;
    const Device device = keys.device();
    // Two arrays of sort words (the keys' size each): CUB's input and output.
    const Tensor words = scratch(2 * rows * n * int64_t(sizeof(K)), DType::u8, device);
    const Tensor columns = scratch(rows * n, DType::i64, device);
    const Tensor offsets = scratch(rows + 1, DType::i64, device);
    const size_t temp_bytes = argsort_temp_bytes<K>(rows, n);
    const Tensor temp = scratch(int64_t(temp_bytes), DType::u8, device);
    launch_argsort<K>(keys.device_data<K>(), out.device_data<int64_t>(), rows, n, descending,
                      words.device_raw(), columns.device_data<int64_t>(),
                      offsets.device_data<int64_t>(), temp.device_raw(), temp_bytes,
                      compute_stream());
  };
  switch (x.dtype()) {
    case DType::f32:
      run(x, float{});
      break;
    case DType::f64:
      run(x, double{});
      break;
    case DType::i32:
      run(x, int32_t{});
      break;
    case DType::i64:
      run(x, int64_t{});
      break;
    case DType::bf16: {  // sorted as f32: widening is exact and keeps order and ties
      const Tensor wide = scratch(x.numel(), DType::f32, x.device());
      launch_widen_bf16(x.device_data<BFloat16>(), wide.device_data<float>(), x.numel(),
                        compute_stream());
      run(wide, float{});
      break;
    }
    default:
      unsupported("argsort", x.dtype());
  }
}

void one_hot(const Tensor& idx, const Tensor& out) {
  const int64_t classes = out.size(-1), n = idx.numel();
  dispatch_floating(out.dtype(), "one_hot", [&]<class T>(T) {
    dispatch_index(idx.dtype(), "one_hot", [&]<class I>(I) {
      launch_one_hot<T, I>(idx.device_data<I>(), out.device_data<T>(), n, classes,
                           kernel_error_slot(), compute_stream());
    });
  });
}

// ---- routing ----

void assign_slots(const Tensor& experts, const Tensor& order, const SlotLayout& layout,
                  const Tensor& combine_rows, const Tensor& dispatch_rows,
                  const Tensor& expert_load) {
  SlotGrid grid;
  grid.tokens = layout.tokens;
  grid.k = layout.k;
  grid.experts = layout.experts;
  grid.group_size = layout.group_size;
  grid.capacity = layout.capacity;
  grid.last_capacity = layout.last_capacity;
  grid.rows_per_expert = layout.rows_per_expert;
  grid.groups = layout.groups();
  grid.tiles_per_group = (layout.k * layout.group_size + kSlotTile - 1) / kSlotTile;
  // The tile counts and the sequence of experts are i32.
  if (grid.sequence_length() >= std::numeric_limits<int32_t>::max() ||
      layout.experts >= std::numeric_limits<int32_t>::max())
    throw std::invalid_argument("assign_slots: " + std::to_string(layout.tokens) + " tokens x k " +
                                std::to_string(layout.k) + " assignments exceed the i32 range of " +
                                "the cuda kernel");
  const Device device = experts.device();
  const Tensor sequence = scratch(grid.sequence_length(), DType::i32, device);
  const Tensor counts =
      scratch(grid.groups * grid.tiles_per_group * grid.experts, DType::i32, device);
  const Tensor kept = scratch(grid.groups * grid.experts, DType::i64, device);
  launch_assign_slots(grid, experts.device_data<int64_t>(),
                      order.defined() ? order.device_data<int64_t>() : nullptr,
                      combine_rows.device_data<int64_t>(), dispatch_rows.device_data<int64_t>(),
                      expert_load.device_data<int64_t>(), sequence.device_data<int32_t>(),
                      counts.device_data<int32_t>(), kept.device_data<int64_t>(),
                      kernel_error_slot(), compute_stream());
}

// ---- optimizer updates ----

namespace {

// The squared global norm on the device, or null: no clipping.
const double* grad_norm_sq_of(const UpdateArgs& a) {
  return a.grad_norm_sq.defined() ? a.grad_norm_sq.device_data<double>() : nullptr;
}

const uint8_t* decay_mask_of(const UpdateArgs& a) {
  return a.decay_mask.defined() ? a.decay_mask.device_data<uint8_t>() : nullptr;
}

}  // namespace

void adamw_update(const UpdateArgs& args, const AdamWOptions& options) {
  dispatch_f32_f64(args.values.dtype(), "adamw_update", [&]<class T>(T) {
    const AdamWScalars<T> scalars{T(options.b1),
                                  T(options.b2),
                                  T(options.eps),
                                  T(args.lr),
                                  T(options.weight_decay),
                                  1.0 / (1.0 - std::pow(options.b1, double(args.step))),
                                  1.0 / (1.0 - std::pow(options.b2, double(args.step))),
                                  options.decay_masked_only};
    launch_adamw<T>(args.values.device_data<T>(), args.grads.device_data<T>(),
                    args.slot_a.device_data<T>(), args.slot_b.device_data<T>(), decay_mask_of(args),
                    args.values.numel(), scalars, grad_norm_sq_of(args), args.max_norm,
                    compute_stream());
  });
}

void sgd_update(const UpdateArgs& args, const SgdOptions& options) {
  dispatch_f32_f64(args.values.dtype(), "sgd_update", [&]<class T>(T) {
    const SgdScalars<T> scalars{T(options.momentum), T(args.lr), T(options.weight_decay),
                                options.nesterov, options.decay_masked_only};
    launch_sgd<T>(args.values.device_data<T>(), args.grads.device_data<T>(),
                  args.slot_a.device_data<T>(), decay_mask_of(args), args.values.numel(), scalars,
                  grad_norm_sq_of(args), args.max_norm, compute_stream());
  });
}

// ---- MoE combine (core/backend.h): rows i64, f32 and f64 ----

void combine(const Tensor& y, const Tensor& weights, const Tensor& rows, const Tensor& out) {
  const int64_t n = out.size(0), d = out.size(1), k = weights.size(1), r = y.size(0);
  const int64_t* pr = rows.device_data<int64_t>();
  launch_check_range<int64_t>(pr, n * k, -1, r, KernelErrorOp::combine, kernel_error_slot(),
                              compute_stream());
  dispatch_f32_f64(out.dtype(), "combine", [&]<class T>(T) {
    launch_combine<T>(y.device_data<T>(), weights.device_data<T>(), pr, out.device_data<T>(), n, d,
                      k, r, compute_stream());
  });
}

void combine_backward(const Tensor& y, const Tensor& weights, const Tensor& rows,
                      const Tensor& gout, const Tensor& gy, const Tensor& gweights) {
  const int64_t n = gout.size(0), d = gout.size(1), k = weights.size(1), r = y.size(0);
  const int64_t* pr = rows.device_data<int64_t>();
  // Reported first, at the lowest position, so that the scatter's own check of the same rows
  // below cannot name index_add instead.
  launch_check_range<int64_t>(pr, n * k, -1, r, KernelErrorOp::combine, kernel_error_slot(),
                              compute_stream());
  dispatch_f32_f64(gy.dtype(), "combine_backward", [&]<class T>(T) {
    const T* pg = gout.device_data<T>();
    launch_combine_weight_grad<T>(y.device_data<T>(), pr, pg, gweights.device_data<T>(), n, d, k, r,
                                  compute_stream());
    T* pgy = gy.device_data<T>();
    if (r * d == 0) return;
    if (n * k == 0) {  // no choices: y's gradient is zero
      VMOE_CUDA_CHECK(cudaMemsetAsync(pgy, 0, size_t(r * d) * sizeof(T), compute_stream()));
      return;
    }
    // Each row's gradient: the sum of its choices' weighted gout rows in choice order (the
    // deterministic scatter), zero for a row no choice uses.
    const Tensor weighted = scratch(n * k * d, gy.dtype(), gy.device());
    launch_combine_weighted_rows<T>(weights.device_data<T>(), pg, weighted.device_data<T>(), n, d,
                                    k, compute_stream());
    scatter_add(weighted.device_data<T>(), n * k, r, d, /*accumulate=*/false, pgy, gy.device(),
                [&]<class K, class P>(K* keys, P* pos) {
                  launch_index_add_keys<int64_t, K, P>(pr, n * k, r, keys, pos, kernel_error_slot(),
                                                       compute_stream());
                });
  });
}

}  // namespace vmoe::cuda
