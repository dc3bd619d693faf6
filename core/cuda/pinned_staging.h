// Host <-> device copies of any size through a pair of pinned (page-locked) host buffers: the
// DMA engine reads and writes only pinned memory, so a copy from ordinary memory is cut into
// chunks that pass through the two buffers in turn, the device copy of one chunk overlapping the
// host memcpy of the other. All copies run on the compute stream, ordered after the kernels
// queued before them.
#pragma once
#include <cuda_runtime_api.h>

#include <cstddef>
#include <vector>

namespace vmoe::cuda {

// Bytes of one staging buffer.
inline constexpr size_t kStagingChunkBytes = size_t(8) << 20;

// One chunk of a staged copy: bytes [offset, offset + bytes) of the copy, through staging
// buffer `buffer` (0 or 1, alternating).
struct StagingChunk {
  size_t offset = 0, bytes = 0;
  int buffer = 0;
};

// The chunks of a `bytes`-byte copy through buffers of `chunk_bytes` (> 0): in order, each at
// most chunk_bytes, together exactly [0, bytes); none for 0 bytes.
std::vector<StagingChunk> staging_chunks(size_t bytes, size_t chunk_bytes);

// Copies device memory to ordinary host memory; returns when host_dst holds the data.
void staged_copy_to_host(const void* device_src, void* host_dst, size_t bytes, cudaStream_t stream);
// Copies ordinary host memory to device memory; returns when host_src may be reused (the last
// chunk's device copy may still be in flight, ordered on `stream`).
void staged_copy_from_host(const void* host_src, void* device_dst, size_t bytes,
                           cudaStream_t stream);

}  // namespace vmoe::cuda
