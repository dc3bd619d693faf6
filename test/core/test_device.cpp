// The device layer of core/: device names and the default device, the caching allocator,
// Tensor::to between the CPU and the strict test device, host access to device memory, the
// transfer counters, the strict device's poisoned memory and its recorded kernel errors.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <new>
#include <stdexcept>
#include <vector>

#include "core/allocator.h"
#include "core/autograd.h"
#include "core/backend.h"
#include "core/kernel_errors.h"
#include "core/ops.h"
#include "core/transfer_counts.h"
#include "vmoe_build_features.h"  // VMOE_WITH_CUDA

using namespace vmoe;
using Catch::Matchers::Contains;
using Catch::Matchers::StartsWith;

namespace {

// Sets the default device for one scope.
class DefaultDeviceScope {
 public:
  explicit DefaultDeviceScope(Device device) : saved_(default_device()) {
    set_default_device(device);
  }
  ~DefaultDeviceScope() { set_default_device(saved_); }
  DefaultDeviceScope(const DefaultDeviceScope&) = delete;
  DefaultDeviceScope& operator=(const DefaultDeviceScope&) = delete;

 private:
  Device saved_;
};

// A raw allocation source that counts its calls and refuses to hold more than a limit.
struct RawCounts {
  int64_t allocations = 0, frees = 0, live_bytes = 0, limit = std::numeric_limits<int64_t>::max();
};
RawCounts g_raw;

void* counting_allocate(size_t bytes) {
  if (g_raw.live_bytes + int64_t(bytes) > g_raw.limit) return nullptr;
  ++g_raw.allocations;
  g_raw.live_bytes += int64_t(bytes);
  return ::operator new(bytes);
}
void counting_free(void* p, size_t bytes) {
  ++g_raw.frees;
  g_raw.live_bytes -= int64_t(bytes);
  ::operator delete(p);
}
const RawAllocation kCountingRaw{counting_allocate, counting_free};

// The raw bytes of a tensor, read back through a copy to the host.
std::vector<uint8_t> bytes_of(const Tensor& t) {
  Tensor c = t.cpu();
  const auto* p = static_cast<const uint8_t*>(c.raw_data());
  return std::vector<uint8_t>(p, p + c.numel() * int64_t(dtype_size(c.dtype())));
}

// 0, 1, 2, ... as `dtype` on the host (exact in every dtype for n <= 256).
Tensor counting(const Shape& shape, DType dtype) {
  return arange(shape_numel(shape), DType::i64, kCpu).to(dtype).reshape(shape);
}

std::vector<double> as_doubles(const Tensor& t) {
  return t.cpu().to(DType::f64).to_vector<double>();
}

constexpr DType kAllDTypes[] = {DType::f32, DType::f64, DType::bf16,
                                DType::i32, DType::i64, DType::u8};

}  // namespace

// ---------------------------------------------------------------- devices

TEST_CASE("device: names, parse_device and its errors") {
  CHECK(parse_device("cpu") == kCpu);
  CHECK(parse_device("CPU") == kCpu);
  CHECK(parse_device("cpu_strict") == kCpuStrict);
  CHECK(parse_device("CPU_STRICT") == kCpuStrict);
  CHECK(parse_device("cuda") == Device{DeviceType::cuda, 0});
  CHECK(parse_device("cuda:3") == Device{DeviceType::cuda, 3});
  CHECK(kCpu.str() == "cpu");
  CHECK(kCpuStrict.str() == "cpu_strict");
  CHECK(Device{DeviceType::cuda, 2}.str() == "cuda:2");
  CHECK(kCpu.host_readable());
  CHECK_FALSE(kCpuStrict.host_readable());
  CHECK_FALSE(Device{DeviceType::cuda, 0}.host_readable());
  for (const char* bad : {"gpu", "", "cuda:", "cuda:x", "cuda:12345", "cpu strict"}) {
    CAPTURE(bad);
    CHECK_THROWS_AS(parse_device(bad), std::invalid_argument);
    CHECK_THROWS_WITH(parse_device(bad), Contains(std::string("unknown device '") + bad + "'") &&
                                             Contains("expected cpu, cpu_strict, cuda"));
  }
}

TEST_CASE("device: the default device places the factories' tensors") {
  const Device before = default_device();
  for (Device d : {kCpu, kCpuStrict}) {
    DefaultDeviceScope scope(d);
    CHECK(default_device() == d);
    CHECK(Tensor::empty({2}).device() == d);
    CHECK(Tensor::zeros({2}).device() == d);
    CHECK(Tensor::full({2}, 1.0).device() == d);
    CHECK(Tensor::from_vector(std::vector<float>{1, 2}, {2}).device() == d);
    CHECK(arange(3).device() == d);
    CHECK(randn({2}, RngKey{1, 2}).device() == d);
    CHECK(rand_uniform({2}, RngKey{1, 2}, 0, 1).device() == d);
    // An explicit device wins.
    CHECK(Tensor::zeros({2}, DType::f32, kCpu).device() == kCpu);
    CHECK(arange(3, DType::i64, kCpuStrict).device() == kCpuStrict);
    // Ops keep their inputs' device.
    CHECK(add(Tensor::zeros({2}), Tensor::zeros({2})).device() == d);
  }
  CHECK(default_device() == before);
}

TEST_CASE("device: backends by device, and what they support") {
  CHECK(std::string(backend_for(kCpu).name) == "cpu");
  CHECK(std::string(backend_for(kCpuStrict).name) == "cpu_strict");
  CHECK(&backend_for(kCpu) == &cpu_backend());
  CHECK(&backend_for(kCpuStrict) == &cpu_strict_backend());
  CHECK(backend_for(kCpu).allocator != backend_for(kCpuStrict).allocator);
  // cuda: absent from a build without CUDA; in a CUDA build, the GPU's table, or one line that
  // names the device and why it is missing.
  if (!VMOE_WITH_CUDA) {
    CHECK_THROWS_WITH(backend_for(Device{DeviceType::cuda, 0}),
                      Contains("no backend for device cuda:0"));
  } else {
    std::string name;
    try {
      name = backend_for(Device{DeviceType::cuda, 0}).name;
      CHECK(name == "cuda");
    } catch (const std::exception& e) {
      CHECK_THAT(std::string(e.what()), StartsWith("cuda:0 is not available: ") && !Contains("\n"));
    }
  }
  for (const Backend* b : {&cpu_backend(), &cpu_strict_backend()}) {
    CAPTURE(b->name);
    CHECK(backend_supports(*b, Entry::unary, DType::f32));
    CHECK(backend_supports(*b, Entry::unary, DType::f64));
    CHECK(backend_supports(*b, Entry::unary, DType::bf16));  // bf16 storage, f32 compute
    CHECK_FALSE(backend_supports(*b, Entry::topk, DType::bf16));
    CHECK(backend_supports(*b, Entry::copy, DType::bf16));
    CHECK(backend_supports(*b, Entry::index_select, DType::u8));
    CHECK(backend_supports(*b, Entry::assign_slots, DType::i64));
    CHECK_FALSE(backend_supports(*b, Entry::assign_slots, DType::i32));
  }
  // A missing entry is unsupported whatever the dtype; without a supports_dtype query every
  // dtype of a present entry is.
  Backend partial;
  partial.copy = cpu_backend().copy;
  CHECK(backend_supports(partial, Entry::copy, DType::bf16));
  CHECK_FALSE(backend_supports(partial, Entry::fill, DType::f32));
  CHECK_FALSE(backend_supports(partial, Entry::assign_slots, DType::i64));
  // Optional entries are checked by the ops that use them, with a message naming the kernel.
  partial.name = "partial";
  CHECK(is_optional(Entry::assign_slots));
  CHECK_FALSE(is_optional(Entry::gemm));
  CHECK(std::string(entry_name(Entry::sgd_update)) == "sgd_update");
  CHECK_THROWS_WITH(require_entry(partial, Entry::assign_slots, DType::i64),
                    Contains("the partial backend has no assign_slots kernel for i64"));
  CHECK_NOTHROW(require_entry(cpu_backend(), Entry::adamw_update, DType::f32));
}

TEST_CASE("device: ops refuse operands on different devices") {
  Tensor a = Tensor::zeros({2}, DType::f32, kCpu), b = Tensor::zeros({2}, DType::f32, kCpuStrict);
  CHECK_THROWS_WITH(add(a, b), Contains("add: operands on different devices (cpu and cpu_strict)"));
  CHECK_THROWS_WITH(copy_(a, b), Contains("operands on different devices"));
  CHECK_THROWS_WITH(index_select(a, Tensor::zeros({1}, DType::i64, kCpuStrict)),
                    Contains("operands on different devices"));
}

// ---------------------------------------------------------------- caching allocator

TEST_CASE("allocator: block_size classes") {
  CHECK(CachingAllocator::block_size(0) == 64);
  CHECK(CachingAllocator::block_size(1) == 64);
  CHECK(CachingAllocator::block_size(64) == 64);
  CHECK(CachingAllocator::block_size(65) == 128);
  CHECK(CachingAllocator::block_size(500) == 512);
  CHECK(CachingAllocator::block_size(512) == 512);
  // Above 512: 8 classes per power of two.
  CHECK(CachingAllocator::block_size(513) == 576);
  CHECK(CachingAllocator::block_size(1000) == 1024);
  CHECK(CachingAllocator::block_size(1024) == 1024);
  CHECK(CachingAllocator::block_size(1025) == 1152);
  CHECK(CachingAllocator::block_size(size_t(1) << 20) == size_t(1) << 20);
  CHECK(CachingAllocator::block_size((size_t(1) << 20) + 1) == (size_t(1) << 20) + (1 << 17));
  size_t previous = 0;
  for (size_t bytes = 0; bytes < 70000; bytes += 7) {
    const size_t b = CachingAllocator::block_size(bytes);
    CAPTURE(bytes);
    CHECK(b >= bytes);
    CHECK(b >= previous);  // monotonic
    CHECK(b % 64 == 0);
    if (bytes > 512) CHECK(double(b) <= 1.125 * double(bytes));
    previous = b;
  }
}

TEST_CASE("allocator: CachingAllocator reuses freed blocks of the same size class") {
  g_raw = RawCounts{};
  {
    CachingAllocator a(kCountingRaw);
    void* p = a.allocate(1000);  // class 1024
    AllocatorStats s = a.stats();
    CHECK(s.requests == 1);
    CHECK(s.system_allocations == 1);
    CHECK(s.in_use_bytes == 1024);
    CHECK(s.peak_in_use_bytes == 1024);
    CHECK(s.cached_bytes == 0);
    a.deallocate(p, 1000);
    s = a.stats();
    CHECK(s.in_use_bytes == 0);
    CHECK(s.cached_bytes == 1024);
    CHECK(g_raw.frees == 0);
    // Another request of the same class gets the cached block back, without the system.
    void* q = a.allocate(1010);
    CHECK(q == p);
    s = a.stats();
    CHECK(s.requests == 2);
    CHECK(s.system_allocations == 1);
    CHECK(s.cached_bytes == 0);
    CHECK(s.in_use_bytes == 1024);
    // A different class does not take it.
    a.deallocate(q, 1010);
    void* r = a.allocate(3000);  // class 3072
    CHECK(r != p);
    s = a.stats();
    CHECK(s.system_allocations == 2);
    CHECK(s.in_use_bytes == 3072);
    CHECK(s.peak_in_use_bytes == 3072);
    CHECK(s.cached_bytes == 1024);
    CHECK(g_raw.allocations == 2);
    // Peak: since the start, or since reset_peak().
    void* t = a.allocate(100);  // class 128
    CHECK(a.stats().peak_in_use_bytes == 3072 + 128);
    a.deallocate(t, 100);
    CHECK(a.stats().peak_in_use_bytes == 3072 + 128);
    a.reset_peak();
    CHECK(a.stats().peak_in_use_bytes == 3072);
    // empty_cache returns the cached blocks to the system; blocks in use stay.
    CHECK(a.stats().cached_bytes == 1024 + 128);
    a.empty_cache();
    CHECK(a.stats().cached_bytes == 0);
    CHECK(g_raw.frees == 2);
    CHECK(g_raw.live_bytes == 3072);
    a.deallocate(r, 3000);
    CHECK(a.stats().cached_bytes == 3072);
    CHECK(a.stats().in_use_bytes == 0);
    // Zero bytes is a valid request and never a null pointer.
    void* z = a.allocate(0);
    CHECK(z != nullptr);
    a.deallocate(z, 0);
  }
  // The destructor frees what was cached.
  CHECK(g_raw.live_bytes == 0);
  CHECK(g_raw.frees == g_raw.allocations);
}

TEST_CASE("allocator: out of memory frees the cache once, then throws bad_alloc") {
  g_raw = RawCounts{};
  g_raw.limit = 4096;
  CachingAllocator a(kCountingRaw);
  void* p = a.allocate(2048);
  a.deallocate(p, 2048);  // cached
  // 3072 does not fit beside the cached 2048: the cache is released and the request served.
  void* q = a.allocate(3000);
  CHECK(a.stats().cached_bytes == 0);
  CHECK(g_raw.live_bytes == 3072);
  CHECK_THROWS_AS(a.allocate(4096), std::bad_alloc);
  CHECK(a.stats().in_use_bytes == 3072);
  a.deallocate(q, 3000);
  a.empty_cache();
  CHECK(g_raw.live_bytes == 0);
}

TEST_CASE("allocator: storages of both devices come from their backend's caching allocator") {
  for (Device d : {kCpu, kCpuStrict}) {
    CAPTURE(d.str());
    Allocator& alloc = *backend_for(d).allocator;
    // An odd size that no other test uses, so its class is empty of other blocks.
    const int64_t n = 12345;
    const AllocatorStats before = alloc.stats();
    {
      Tensor t = Tensor::empty({n}, DType::u8, d);
      CHECK(alloc.stats().requests == before.requests + 1);
      CHECK(alloc.stats().in_use_bytes ==
            before.in_use_bytes + int64_t(CachingAllocator::block_size(size_t(n))));
    }
    CHECK(alloc.stats().in_use_bytes == before.in_use_bytes);
    const int64_t system = alloc.stats().system_allocations;
    { Tensor again = Tensor::empty({n}, DType::u8, d); }
    CHECK(alloc.stats().system_allocations == system);  // served from the cache
  }
}

// ---------------------------------------------------------------- Tensor::to and host access

TEST_CASE("tensor: to() round trips cpu <-> cpu_strict for every dtype, contiguous or not") {
  for (DType dt : kAllDTypes) {
    CAPTURE(dtype_name(dt));
    const Tensor host = counting({3, 4}, dt);
    // Contiguous.
    Tensor dev = host.to(kCpuStrict);
    CHECK(dev.device() == kCpuStrict);
    CHECK(dev.dtype() == dt);
    CHECK(dev.shape() == Shape{3, 4});
    CHECK(dev.storage() != host.storage());
    Tensor back = dev.cpu();
    CHECK(back.device() == kCpu);
    CHECK(bytes_of(back) == bytes_of(host));
    // A transposed view on the device comes back as its own row-major copy.
    const std::vector<double> transposed = as_doubles(host.transpose(0, 1).contiguous());
    Tensor device_t = dev.transpose(0, 1);
    CHECK_FALSE(device_t.is_contiguous());
    Tensor back_t = device_t.cpu();
    CHECK(back_t.is_contiguous());
    CHECK(back_t.shape() == Shape{4, 3});
    CHECK(as_doubles(back_t) == transposed);
    // A non-contiguous host view goes to the device the same way.
    Tensor up_t = host.transpose(0, 1).to(kCpuStrict);
    CHECK(up_t.is_contiguous());
    CHECK(as_doubles(up_t) == transposed);
    // A slice with an offset.
    Tensor sliced = dev.slice(1, 1, 3).slice(0, 1, 3);
    CHECK(as_doubles(sliced) == std::vector<double>{5, 6, 9, 10});
    CHECK(as_doubles(host.slice(0, 2, 3).to(kCpuStrict)) == std::vector<double>{8, 9, 10, 11});
    // Empty tensors move too.
    Tensor empty = Tensor::empty({0, 4}, dt, kCpu).to(kCpuStrict);
    CHECK(empty.device() == kCpuStrict);
    CHECK(empty.shape() == Shape{0, 4});
    CHECK(empty.cpu().numel() == 0);
    // To its own device: the tensor itself.
    CHECK(dev.to(kCpuStrict).impl() == dev.impl());
    CHECK(host.cpu().impl() == host.impl());
  }
}

TEST_CASE("tensor: to() is not recorded by autograd") {
  Tensor x = Tensor::from_vector(std::vector<double>{1, 2}, {2}, kCpu);
  x.set_requires_grad(true);
  Tensor y = x.to(kCpuStrict);
  CHECK_FALSE(y.requires_grad());
  CHECK(y.grad_fn() == nullptr);
}

TEST_CASE("tensor: host access to strict memory throws, naming the call") {
  Tensor t = Tensor::from_vector(std::vector<float>{1, 2, 3}, {3}, kCpuStrict);
  Tensor one = Tensor::full({}, 4.0, DType::f64, kCpuStrict);
  auto check_throws = [](auto&& fn, const std::string& call) {
    CHECK_THROWS_AS(fn(), std::logic_error);
    CHECK_THROWS_WITH(fn(), Contains("Tensor::" + call + " on cpu_strict memory") &&
                                Contains("copy it with .to(kCpu) or .cpu() first"));
  };
  check_throws([&] { return t.data<float>(); }, "data()");
  check_throws([&] { return t.raw_data(); }, "data()");
  check_throws([&] { return t.to_vector<float>(); }, "to_vector()");
  check_throws([&] { return one.item(); }, "item()");
  check_throws([&] { return t.slice(0, 1, 2).data<float>(); }, "data()");
  // The message names the tensor.
  CHECK_THROWS_WITH(t.data<float>(), Contains("[3] f32"));
  // Device pointers stay available to backends; the host copy reads fine.
  CHECK(t.device_data<float>() != nullptr);
  CHECK(t.cpu().to_vector<float>() == std::vector<float>{1, 2, 3});
  CHECK(one.cpu().item() == 4.0);
  // On the CPU all of them work.
  Tensor h = t.cpu();
  CHECK(h.data<float>()[2] == 3.0f);
  CHECK(h.raw_data() == h.device_raw());
  CHECK(h.to_vector<float>().size() == 3);
}

// ---------------------------------------------------------------- transfer counts

TEST_CASE("transfer counts: exactly the copies made") {
  const TransferCounts cpu_before = transfer_counts(DeviceType::cpu);
  TransferCounter c(kCpuStrict);
  auto check_counts = [&](int64_t to_host, int64_t to_bytes, int64_t from_host,
                          int64_t from_bytes) {
    const TransferCounts n = c.now();
    CHECK(n.to_host == to_host);
    CHECK(n.to_host_bytes == to_bytes);
    CHECK(n.from_host == from_host);
    CHECK(n.from_host_bytes == from_bytes);
  };
  check_counts(0, 0, 0, 0);
  // One host -> device copy of 6 f32.
  Tensor x = Tensor::from_vector(std::vector<float>{1, 2, 3, 4, 5, 6}, {2, 3}, kCpuStrict);
  check_counts(0, 0, 1, 24);
  // Work on the device copies nothing: factories, ops, views, backward.
  Tensor z = Tensor::zeros({2, 3}, DType::f32, kCpuStrict);
  Tensor w = randn({3, 2}, RngKey{1, 1}, 0, DType::f32, kCpuStrict);
  w.set_requires_grad(true);
  Tensor y = sum_all(matmul(add(x, z).transpose(0, 1).contiguous().transpose(0, 1), w));
  y.backward();
  Tensor a = arange(5, DType::f32, kCpuStrict);
  Tensor sq = sum_squares(a);
  check_counts(0, 0, 1, 24);
  // One device -> host copy per read back; a non-contiguous view is made contiguous on the
  // device first.
  CHECK(y.cpu().numel() == 1);
  check_counts(1, 4, 1, 24);
  CHECK(x.transpose(0, 1).cpu().shape() == Shape{3, 2});
  check_counts(2, 28, 1, 24);
  CHECK(sq.cpu().item() == 30.0);
  check_counts(3, 36, 1, 24);
  // Empty tensors copy nothing.
  Tensor::empty({0}, DType::f32, kCpu).to(kCpuStrict).cpu();
  check_counts(3, 36, 1, 24);
  // Synchronisations and kernel-error checks (a one-flag read) are counted too.
  backend_for(kCpuStrict).synchronize();
  CHECK(c.now().synchronizations == 1);
  check_kernel_errors(kCpuStrict);
  check_counts(4, 40, 1, 24);
  // Nothing is counted for the host-readable CPU.
  check_kernel_errors(kCpu);
  Tensor::from_vector(std::vector<float>{1}, {1}, kCpu).cpu();
  const TransferCounts cpu_after = transfer_counts(DeviceType::cpu);
  CHECK(cpu_after.to_host == cpu_before.to_host);
  CHECK(cpu_after.from_host == cpu_before.from_host);
  CHECK(cpu_after.synchronizations == cpu_before.synchronizations);
}

// ---------------------------------------------------------------- the strict device

TEST_CASE("strict device: fresh memory is poisoned with 0xFF bytes") {
  for (DType dt : kAllDTypes) {
    CAPTURE(dtype_name(dt));
    for (int64_t n : {1, 7, 1000}) {
      const std::vector<uint8_t> b = bytes_of(Tensor::empty({n}, dt, kCpuStrict));
      CHECK(b.size() == size_t(n) * dtype_size(dt));
      CHECK(std::count(b.begin(), b.end(), uint8_t(0xFF)) == int64_t(b.size()));
    }
  }
  // Also a block that comes back from the cache after holding zeros.
  const int64_t n = 4321;
  { Tensor z = Tensor::zeros({n}, DType::f32, kCpuStrict); }
  const std::vector<uint8_t> b = bytes_of(Tensor::empty({n}, DType::f32, kCpuStrict));
  CHECK(std::count(b.begin(), b.end(), uint8_t(0xFF)) == int64_t(b.size()));
  // As values: NaN floats and -1 integers.
  CHECK(std::isnan(Tensor::empty({}, DType::f64, kCpuStrict).cpu().item()));
  CHECK(Tensor::empty({}, DType::i64, kCpuStrict).cpu().item() == -1.0);
}

TEST_CASE("strict device: kernel errors are recorded and thrown once by check_kernel_errors") {
  Tensor x = Tensor::from_vector(std::vector<float>{1, 2, 3, 4}, {2, 2}, kCpuStrict);
  Tensor bad = Tensor::from_vector(std::vector<int64_t>{1, 5}, {2}, kCpuStrict);
  check_kernel_errors(kCpuStrict);  // nothing pending
  // The kernel does not throw; the bad index counts as absent (a zero row).
  Tensor y;
  CHECK_NOTHROW(y = index_select(x, bad));
  CHECK(y.cpu().to_vector<float>() == std::vector<float>{3, 4, 0, 0});
  // A second error does not replace the first.
  CHECK_NOTHROW(one_hot(Tensor::from_vector(std::vector<int32_t>{7}, {1}, kCpuStrict), 3));
  CHECK_THROWS_AS(check_kernel_errors(kCpuStrict), std::invalid_argument);
  // ... and the check cleared it.
  CHECK_NOTHROW(check_kernel_errors(kCpuStrict));
  index_select(x, bad);
  CHECK_THROWS_WITH(check_kernel_errors(kCpuStrict),
                    "index_select: index 5 at position 1 is outside [-1, 2)");
  one_hot(Tensor::from_vector(std::vector<int32_t>{7}, {1}, kCpuStrict), 3);
  index_select(x, bad);
  CHECK_THROWS_WITH(check_kernel_errors(kCpuStrict),
                    "one_hot: index 7 at position 0 is outside [0, 3)");
  CHECK_NOTHROW(check_kernel_errors(kCpuStrict));
  // Directly: recorded on the strict device, thrown at once on the CPU.
  kernel_error(kCpuStrict, "test: recorded");
  CHECK_THROWS_WITH(check_kernel_errors(kCpuStrict), "test: recorded");
  CHECK_THROWS_AS(kernel_error(kCpu, "test: thrown"), std::invalid_argument);
  CHECK_THROWS_WITH(index_select(x.cpu(), bad.cpu()),
                    "index_select: index 5 at position 1 is outside [-1, 2)");
  CHECK_NOTHROW(check_kernel_errors(kCpu));
  // Errors of one device type do not show on another.
  kernel_error(kCpuStrict, "test: strict only");
  CHECK_NOTHROW(check_kernel_errors(kCpu));
  CHECK_THROWS_WITH(check_kernel_errors(kCpuStrict), "test: strict only");
}
