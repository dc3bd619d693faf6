// The two pinned staging buffers and the chunked copies through them.
#include "core/cuda/pinned_staging.h"

#include <cstring>
#include <mutex>
#include <stdexcept>

#include "core/cuda/cuda_check.h"

namespace vmoe::cuda {

std::vector<StagingChunk> staging_chunks(size_t bytes, size_t chunk_bytes) {
  if (chunk_bytes == 0) throw std::invalid_argument("staging_chunks: chunk_bytes must be > 0");
  std::vector<StagingChunk> chunks;
  chunks.reserve((bytes + chunk_bytes - 1) / chunk_bytes);
  for (size_t offset = 0; offset < bytes; offset += chunk_bytes) {
    const size_t n = bytes - offset < chunk_bytes ? bytes - offset : chunk_bytes;
    chunks.push_back({offset, n, int(chunks.size() % 2)});
  }
  return chunks;
}

namespace {

// Two pinned buffers, each with the event of the last device copy that used it. One copy at a
// time (loader threads copy too): the mutex is held for a whole copy.
struct Staging {
  std::mutex mutex;
  char* buffers[2] = {nullptr, nullptr};
  cudaEvent_t done[2] = {nullptr, nullptr};

  Staging() {
    for (int b = 0; b < 2; ++b) {
      void* p = nullptr;
      VMOE_CUDA_CHECK(cudaMallocHost(&p, kStagingChunkBytes));
      buffers[b] = static_cast<char*>(p);
      VMOE_CUDA_CHECK(cudaEventCreateWithFlags(&done[b], cudaEventDisableTiming));
    }
  }
};

// Created on first use on the current device; never destroyed (the runtime may be gone at exit).
Staging& staging() {
  static Staging* const s = new Staging();
  return *s;
}

}  // namespace

void staged_copy_to_host(const void* device_src, void* host_dst, size_t bytes,
                         cudaStream_t stream) {
  if (bytes == 0) return;
  Staging& s = staging();
  std::lock_guard lock(s.mutex);
  const std::vector<StagingChunk> chunks = staging_chunks(bytes, kStagingChunkBytes);
  const char* src = static_cast<const char*>(device_src);
  char* dst = static_cast<char*>(host_dst);
  auto enqueue = [&](const StagingChunk& c) {
    VMOE_CUDA_CHECK(cudaMemcpyAsync(s.buffers[c.buffer], src + c.offset, c.bytes,
                                    cudaMemcpyDeviceToHost, stream));
    VMOE_CUDA_CHECK(cudaEventRecord(s.done[c.buffer], stream));
  };
  // Two chunks in flight: while the host copies chunk i out of its buffer, chunk i + 1 arrives
  // in the other one.
  for (size_t i = 0; i < chunks.size() && i < 2; ++i)
    enqueue(chunks[i]);
  for (size_t i = 0; i < chunks.size(); ++i) {
    const StagingChunk& c = chunks[i];
    VMOE_CUDA_CHECK(cudaEventSynchronize(s.done[c.buffer]));
    std::memcpy(dst + c.offset, s.buffers[c.buffer], c.bytes);
    if (i + 2 < chunks.size()) enqueue(chunks[i + 2]);
  }
}

void staged_copy_from_host(const void* host_src, void* device_dst, size_t bytes,
                           cudaStream_t stream) {
  if (bytes == 0) return;
  Staging& s = staging();
  std::lock_guard lock(s.mutex);
  const char* src = static_cast<const char*>(host_src);
  char* dst = static_cast<char*>(device_dst);
  for (const StagingChunk& c : staging_chunks(bytes, kStagingChunkBytes)) {
    // The buffer's previous device copy (this call's or an earlier one's) must have read it.
    VMOE_CUDA_CHECK(cudaEventSynchronize(s.done[c.buffer]));
    std::memcpy(s.buffers[c.buffer], src + c.offset, c.bytes);
    VMOE_CUDA_CHECK(cudaMemcpyAsync(dst + c.offset, s.buffers[c.buffer], c.bytes,
                                    cudaMemcpyHostToDevice, stream));
    VMOE_CUDA_CHECK(cudaEventRecord(s.done[c.buffer], stream));
  }
}

}  // namespace vmoe::cuda
