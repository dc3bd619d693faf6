// The CUDA backend's elementwise, reduction and row entries (core/backend.h has their
// contracts, core/cpu/ their reference semantics): each takes the op layer's checked tensors,
// picks the stored type and launches the kernels of kernels.h on the compute stream. Strided
// entries pass a StridedIndex (strided_index.h) built here from the tensors' shapes and strides.
// Scratch for two-pass sums is a device tensor freed on return: the caching allocator hands the
// block out again only to work queued after this on the same stream.
#include <cuda_runtime_api.h>

#include <stdexcept>
#include <string>

#include "core/cuda/cuda_check.h"
#include "core/cuda/dtype_dispatch.h"
#include "core/cuda/entries.h"
#include "core/cuda/kernels.h"
#include "core/cuda/streams.h"
#include "core/cuda/strided_index.h"

namespace vmoe::cuda {

namespace {

template <int NT>
StridedIndex<NT> strided_index(const Tensor& shape_of, const Shape* const (&strides)[NT]) {
  return make_strided_index<NT>(shape_of.shape(), strides);
}

// Rows of the last axis: [rows, n].
struct Rows {
  int64_t rows, n;
};
Rows rows_of(const Tensor& x) {
  const int64_t n = x.dim() == 0 ? 1 : x.size(-1);
  return Rows{n == 0 ? 0 : x.numel() / n, n};
}

// Uninitialised device scratch of `n` values of `dtype` on x's device.
Tensor scratch(const Tensor& x, int64_t n, DType dtype) {
  return Tensor::empty({n}, dtype, x.device());
}

// A layer-norm parameter or statistic in the compute type of x's dtype T: the tensor itself
// when it already is (f32/f64 models, mixed precision's f32 master weights), else a converted
// copy in `holder` (bf16 scale/bias with bf16 x).
template <class T>
const compute_t<T>* in_compute_type(const Tensor& p, Tensor& holder) {
  using C = compute_t<T>;
  if (p.dtype() == dtype_of<C>()) return p.device_data<C>();
  holder = Tensor::empty(p.shape(), dtype_of<C>(), p.device());
  copy(p, holder);
  return holder.device_data<C>();
}

// A parameter gradient written in the compute type: into `g` directly when it has that dtype,
// else into `holder`, which finish() then converts into g.
template <class T>
struct ComputeOutput {
  const Tensor& g;
  Tensor holder;
  compute_t<T>* ptr() {
    using C = compute_t<T>;
    if (g.dtype() == dtype_of<C>()) return g.device_data<C>();
    holder = Tensor::empty(g.shape(), dtype_of<C>(), g.device());
    return holder.device_data<C>();
  }
  void finish() {
    if (holder.defined()) copy(holder, g);
  }
};

}  // namespace

void copy(const Tensor& src, const Tensor& dst) {
  const int64_t n = src.numel();
  if (n == 0) return;
  if (src.dtype() == dst.dtype() && src.is_contiguous() && dst.is_contiguous()) {
    VMOE_CUDA_CHECK(cudaMemcpyAsync(dst.device_raw(), src.device_raw(),
                                    size_t(n) * dtype_size(src.dtype()), cudaMemcpyDeviceToDevice,
                                    compute_stream()));
    return;
  }
  launch_copy(src.device_raw(), src.dtype(), dst.device_raw(), dst.dtype(),
              strided_index<2>(src, {&src.strides(), &dst.strides()}), n, compute_stream());
}

void fill(const Tensor& dst, double value) {
  const int64_t n = dst.numel();
  if (n == 0) return;
  if (value == 0 && dst.is_contiguous()) {  // every dtype's zero is all zero bits
    VMOE_CUDA_CHECK(cudaMemsetAsync(dst.device_raw(), 0, size_t(n) * dtype_size(dst.dtype()),
                                    compute_stream()));
    return;
  }
  launch_fill(dst.device_raw(), dst.dtype(), value, strided_index<1>(dst, {&dst.strides()}), n,
              compute_stream());
}

void binary(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out) {
  dispatch_floating(out.dtype(), "binary", [&]<class T>(T) {
    launch_binary<T>(op, a.device_data<T>(), b.device_data<T>(), out.device_data<T>(),
                     strided_index<3>(out, {&a.strides(), &b.strides(), &out.strides()}),
                     out.numel(), compute_stream());
  });
}

void unary(UnaryOp op, const Tensor& x, const Tensor& out) {
  dispatch_floating(out.dtype(), "unary", [&]<class T>(T) {
    launch_unary<T>(op, x.device_data<T>(), out.device_data<T>(), x.numel(), compute_stream());
  });
}

void unary_backward(UnaryOp op, const Tensor& x, const Tensor& y, const Tensor& gy,
                    const Tensor& gx) {
  dispatch_floating(gx.dtype(), "unary_backward", [&]<class T>(T) {
    launch_unary_backward<T>(op, x.device_data<T>(), y.device_data<T>(), gy.device_data<T>(),
                             gx.device_data<T>(), x.numel(), compute_stream());
  });
}

void bias_gelu(const Tensor& x, const Tensor& bias, const Tensor& y) {
  dispatch_floating(y.dtype(), "bias_gelu", [&]<class T>(T) {
    launch_bias_gelu<T>(x.device_data<T>(), bias.device_data<T>(), y.device_data<T>(), x.size(1),
                        x.size(2), x.numel(), compute_stream());
  });
}

void bias_gelu_backward(const Tensor& x, const Tensor& bias, const Tensor& gy, const Tensor& gx) {
  dispatch_floating(gx.dtype(), "bias_gelu_backward", [&]<class T>(T) {
    launch_bias_gelu_backward<T>(x.device_data<T>(), bias.device_data<T>(), gy.device_data<T>(),
                                 gx.device_data<T>(), x.size(1), x.size(2), x.numel(),
                                 compute_stream());
  });
}

void add_scaled(const Tensor& dst, const Tensor& src, double alpha) {
  dispatch_floating(dst.dtype(), "add_scaled", [&]<class T>(T) {
    launch_add_scaled<T>(dst.device_data<T>(), src.device_data<T>(), alpha,
                         strided_index<2>(dst, {&dst.strides(), &src.strides()}), dst.numel(),
                         compute_stream());
  });
}

void scale(const Tensor& dst, double s) {
  dispatch_floating(dst.dtype(), "scale", [&]<class T>(T) {
    launch_scale<T>(dst.device_data<T>(), s, strided_index<1>(dst, {&dst.strides()}), dst.numel(),
                    compute_stream());
  });
}

void sum_squares(const Tensor& x, const Tensor& out) {
  const int64_t n = x.numel();
  if (n == 0) return;
  dispatch_floating(x.dtype(), "sum_squares", [&]<class T>(T) {
    const Tensor partials = scratch(x, sum_squares_blocks(n), DType::f64);  // [blocks]
    launch_sum_squares<T>(x.device_data<T>(), n, partials.device_data<double>(),
                          out.device_data<double>(), compute_stream());
  });
}

void reduce_sum(const Tensor& x, const Tensor& out) {
  dispatch_floating(x.dtype(), "reduce_sum", [&]<class T>(T) {
    const ReduceSumPlan plan = make_reduce_sum_plan(x.shape(), out.shape());
    const int64_t need = reduce_sum_scratch(plan);
    const Tensor partials = need > 0 ? scratch(x, need, DType::f64) : Tensor();  // [chunks * n_out]
    launch_reduce_sum<T>(x.device_data<T>(), out.device_data<T>(), plan,
                         need > 0 ? partials.device_data<double>() : nullptr, compute_stream());
  });
}

void max_last(const Tensor& x, const Tensor& values, const Tensor& arg) {
  const Rows r = rows_of(x);
  dispatch_floating(x.dtype(), "max", [&]<class T>(T) {
    launch_max_last_rows<T>(x.device_data<T>(), values.device_data<T>(), arg.device_data<int64_t>(),
                            r.rows, r.n, compute_stream());
  });
}

void cumsum(const Tensor& x, int64_t outer, int64_t n, int64_t inner, ScanDirection dir,
            const Tensor& out) {
  const bool reverse = dir == ScanDirection::reverse;
  auto run = [&]<class T>(T) {
    launch_cumsum<T>(x.device_data<T>(), out.device_data<T>(), outer, n, inner, reverse,
                     compute_stream());
  };
  switch (x.dtype()) {
    case DType::i32:
      run(int32_t{});
      break;
    case DType::i64:
      run(int64_t{});
      break;
    default:
      dispatch_floating(x.dtype(), "cumsum", run);
  }
}

void softmax(const Tensor& x, const Tensor& y, SoftmaxKind kind) {
  const Rows r = rows_of(x);
  dispatch_floating(x.dtype(), "softmax", [&]<class T>(T) {
    launch_softmax_rows<T>(x.device_data<T>(), y.device_data<T>(), r.rows, r.n, kind,
                           compute_stream());
  });
}

void softmax_backward(const Tensor& y, const Tensor& gy, const Tensor& gx, SoftmaxKind kind) {
  const Rows r = rows_of(y);
  dispatch_floating(y.dtype(), "softmax_backward", [&]<class T>(T) {
    launch_softmax_backward_rows<T>(y.device_data<T>(), gy.device_data<T>(), gx.device_data<T>(),
                                    r.rows, r.n, kind, compute_stream());
  });
}

void layer_norm(const Tensor& x, const Tensor& scale, const Tensor& bias, double eps,
                const Tensor& y, const Tensor& mean, const Tensor& rstd) {
  const Rows r = rows_of(x);
  dispatch_floating(x.dtype(), "layer_norm", [&]<class T>(T) {
    using C = compute_t<T>;
    Tensor scale_c, bias_c;
    launch_layer_norm_rows<T>(x.device_data<T>(), in_compute_type<T>(scale, scale_c),
                              in_compute_type<T>(bias, bias_c), eps, y.device_data<T>(),
                              mean.device_data<C>(), rstd.device_data<C>(), r.rows, r.n,
                              compute_stream());
  });
}

void layer_norm_backward(const Tensor& x, const Tensor& scale, const Tensor& mean,
                         const Tensor& rstd, const Tensor& gy, const Tensor& gx,
                         const Tensor& gscale, const Tensor& gbias) {
  const Rows r = rows_of(x);
  dispatch_floating(x.dtype(), "layer_norm_backward", [&]<class T>(T) {
    using C = compute_t<T>;
    Tensor scale_c;
    launch_layer_norm_backward_rows<T>(x.device_data<T>(), in_compute_type<T>(scale, scale_c),
                                       mean.device_data<C>(), rstd.device_data<C>(),
                                       gy.device_data<T>(), gx.device_data<T>(), r.rows, r.n,
                                       compute_stream());
    if (r.n == 0) return;
    // [2, chunks, d]: gscale's then gbias's partial column sums.
    const Tensor partials =
        scratch(x, 2 * layer_norm_param_chunks(r.n, r.rows) * r.n, dtype_of<C>());
    ComputeOutput<T> gs{gscale, {}}, gb{gbias, {}};
    launch_layer_norm_param_grads<T>(
        x.device_data<T>(), mean.device_data<C>(), rstd.device_data<C>(), gy.device_data<T>(),
        partials.device_data<C>(), gs.ptr(), gb.ptr(), r.rows, r.n, compute_stream());
    gs.finish();
    gb.finish();
  });
}

void softmax_xent(const Tensor& logits, const Tensor& labels, const Tensor& loss,
                  const Tensor& dlogits) {
  dispatch_floating(logits.dtype(), "softmax_cross_entropy", [&]<class T>(T) {
    launch_softmax_xent_rows<T>(logits.device_data<T>(), labels.device_data<int32_t>(),
                                loss.device_data<T>(), dlogits.device_data<T>(), logits.size(0),
                                logits.size(1), kernel_error_slot(), compute_stream());
  });
}

void sigmoid_xent(const Tensor& logits, const Tensor& labels, const Tensor& loss,
                  const Tensor& dlogits) {
  dispatch_floating(logits.dtype(), "sigmoid_cross_entropy", [&]<class T>(T) {
    launch_sigmoid_xent_rows<T>(logits.device_data<T>(), labels.device_data<int32_t>(),
                                loss.device_data<T>(), dlogits.device_data<T>(), logits.size(0),
                                logits.size(1), kernel_error_slot(), compute_stream());
  });
}

}  // namespace vmoe::cuda
