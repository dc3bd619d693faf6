// The single-process communicator and the argument checks shared by every communicator.
#include "parallel/local_communicator.h"

#include <stdexcept>
#include <string>

#include "core/ops.h"

namespace vmoe {

namespace {

std::string counts_str(const std::vector<int64_t>& counts) {
  std::string s = "[";
  for (size_t i = 0; i < counts.size(); ++i) {
    if (i > 0) s += ", ";
    s += std::to_string(counts[i]);
  }
  return s + "]";
}

// Whether the byte ranges of two contiguous tensors intersect (device addresses are compared,
// never dereferenced).
bool overlaps(const Tensor& a, const Tensor& b) {
  if (a.storage() != b.storage() || a.numel() == 0 || b.numel() == 0) return false;
  const auto* a0 = static_cast<const char*>(a.device_raw());
  const auto* b0 = static_cast<const char*>(b.device_raw());
  const auto* a1 = a0 + size_t(a.numel()) * dtype_size(a.dtype());
  const auto* b1 = b0 + size_t(b.numel()) * dtype_size(b.dtype());
  return a0 < b1 && b0 < a1;
}

void check_pair(const Communicator& comm, const char* op, const Tensor& send, const Tensor& recv) {
  comm_check::tensor(comm, op, "send", send);
  comm_check::tensor(comm, op, "recv", recv);
  if (send.dtype() != recv.dtype()) {
    throw std::invalid_argument(comm_check::where(comm, op) + ": send " + send.desc() +
                                " and recv " + recv.desc() + " have different dtypes");
  }
  if (send.device() != recv.device()) {
    throw std::invalid_argument(comm_check::where(comm, op) + ": send " + send.desc() + " is on " +
                                send.device().str() + " but recv " + recv.desc() + " is on " +
                                recv.device().str());
  }
  if (overlaps(send, recv)) {
    throw std::invalid_argument(comm_check::where(comm, op) + ": send " + send.desc() +
                                " and recv " + recv.desc() + " overlap in memory");
  }
}

// Copies the elements of contiguous `from` into contiguous `to` (same count, any shapes)
// through their device's backend.
void copy_elements(const Tensor& from, const Tensor& to) {
  const int64_t n = from.numel();
  if (n == 0) return;
  Tensor dst = to.detach().reshape({n});
  copy_(dst, from.detach().reshape({n}));
}

}  // namespace

namespace comm_check {

std::string where(const Communicator& comm, const char* op) {
  return std::string(op) + " on communicator '" + comm.name() + "' (rank " +
         std::to_string(comm.rank()) + " of " + std::to_string(comm.size()) + ")";
}

void tensor(const Communicator& comm, const char* op, const char* role, const Tensor& t) {
  if (!t.defined()) {
    throw std::invalid_argument(where(comm, op) + ": " + role + " tensor is undefined");
  }
  if (!t.is_contiguous()) {
    throw std::invalid_argument(where(comm, op) + ": " + role + " " + t.desc() +
                                " is not contiguous (call .contiguous() first)");
  }
}

void all_reduce(const Communicator& comm, const char* op, const Tensor& t) {
  tensor(comm, op, "tensor", t);
  if (t.dtype() == DType::bf16) {
    throw std::invalid_argument(where(comm, op) + ": cannot reduce " + t.desc() +
                                " (bf16 reductions are not supported; reduce in f32)");
  }
}

void all_to_all(const Communicator& comm, const char* op, const Tensor& send, const Tensor& recv) {
  check_pair(comm, op, send, recv);
  if (send.numel() % comm.size() != 0) {
    throw std::invalid_argument(
        where(comm, op) + ": send " + send.desc() + " has " + std::to_string(send.numel()) +
        " elements, not divisible by the communicator size " + std::to_string(comm.size()));
  }
  if (recv.numel() != send.numel()) {
    throw std::invalid_argument(where(comm, op) + ": recv " + recv.desc() + " has " +
                                std::to_string(recv.numel()) + " elements, expected " +
                                std::to_string(send.numel()) + " like send " + send.desc());
  }
}

void all_to_all_v(const Communicator& comm, const char* op, const Tensor& send,
                  const std::vector<int64_t>& send_counts, const Tensor& recv,
                  const std::vector<int64_t>& recv_counts) {
  check_pair(comm, op, send, recv);
  const auto check_counts = [&](const char* role, const std::vector<int64_t>& counts,
                                const Tensor& t) {
    if (int64_t(counts.size()) != comm.size()) {
      throw std::invalid_argument(where(comm, op) + ": " + role + "_counts " + counts_str(counts) +
                                  " has " + std::to_string(counts.size()) +
                                  " entries, expected one per rank (" +
                                  std::to_string(comm.size()) + ")");
    }
    int64_t total = 0;
    for (int64_t c : counts) {
      if (c < 0) {
        throw std::invalid_argument(where(comm, op) + ": " + role + "_counts " +
                                    counts_str(counts) + " has a negative count " +
                                    std::to_string(c));
      }
      total += c;
    }
    if (total != t.numel()) {
      throw std::invalid_argument(where(comm, op) + ": " + role + "_counts " + counts_str(counts) +
                                  " sum to " + std::to_string(total) + ", but " + role + " " +
                                  t.desc() + " has " + std::to_string(t.numel()) + " elements");
    }
  };
  check_counts("send", send_counts, send);
  check_counts("recv", recv_counts, recv);
  const int self = comm.rank();
  if (send_counts[size_t(self)] != recv_counts[size_t(self)]) {
    throw std::invalid_argument(where(comm, op) + ": rank " + std::to_string(self) + " sends " +
                                std::to_string(send_counts[size_t(self)]) +
                                " elements to itself but expects to receive " +
                                std::to_string(recv_counts[size_t(self)]));
  }
}

void broadcast(const Communicator& comm, const char* op, const Tensor& t, int root) {
  tensor(comm, op, "tensor", t);
  if (root < 0 || root >= comm.size()) {
    throw std::invalid_argument(where(comm, op) + ": root " + std::to_string(root) +
                                " is not a rank of the communicator (0 to " +
                                std::to_string(comm.size() - 1) + ")");
  }
}

void all_gather(const Communicator& comm, const char* op, const Tensor& send, const Tensor& recv) {
  check_pair(comm, op, send, recv);
  if (recv.numel() != send.numel() * comm.size()) {
    throw std::invalid_argument(where(comm, op) + ": recv " + recv.desc() + " has " +
                                std::to_string(recv.numel()) + " elements, expected size " +
                                std::to_string(comm.size()) + " x " + std::to_string(send.numel()) +
                                " (send " + send.desc() + ")");
  }
}

void split(const Communicator& comm, int color) {
  if (color < 0) {
    throw std::invalid_argument(where(comm, "split") + ": color " + std::to_string(color) +
                                " must be >= 0");
  }
}

}  // namespace comm_check

LocalCommunicator::LocalCommunicator(std::string name) : name_(std::move(name)) {}

void LocalCommunicator::all_reduce(Tensor& t, ReduceOp /*op*/) {
  comm_check::all_reduce(*this, "all_reduce", t);
}

void LocalCommunicator::all_to_all(const Tensor& send, Tensor& recv) {
  comm_check::all_to_all(*this, "all_to_all", send, recv);
  copy_elements(send, recv);
}

void LocalCommunicator::all_to_all_v(const Tensor& send, const std::vector<int64_t>& send_counts,
                                     Tensor& recv, const std::vector<int64_t>& recv_counts) {
  comm_check::all_to_all_v(*this, "all_to_all_v", send, send_counts, recv, recv_counts);
  copy_elements(send, recv);
}

void LocalCommunicator::broadcast(Tensor& t, int root) {
  comm_check::broadcast(*this, "broadcast", t, root);
}

void LocalCommunicator::all_gather(const Tensor& send, Tensor& recv) {
  comm_check::all_gather(*this, "all_gather", send, recv);
  copy_elements(send, recv);
}

CommRequest LocalCommunicator::iall_reduce(Tensor t, ReduceOp /*op*/) {
  comm_check::all_reduce(*this, "iall_reduce", t);
  return CommRequest();
}

CommRequest LocalCommunicator::iall_to_all(Tensor send, Tensor recv) {
  comm_check::all_to_all(*this, "iall_to_all", send, recv);
  copy_elements(send, recv);
  return CommRequest();
}

CommRequest LocalCommunicator::iall_to_all_v(Tensor send, std::vector<int64_t> send_counts,
                                             Tensor recv, std::vector<int64_t> recv_counts) {
  comm_check::all_to_all_v(*this, "iall_to_all_v", send, send_counts, recv, recv_counts);
  copy_elements(send, recv);
  return CommRequest();
}

CommRequest LocalCommunicator::ibroadcast(Tensor t, int root) {
  comm_check::broadcast(*this, "ibroadcast", t, root);
  return CommRequest();
}

CommRequest LocalCommunicator::iall_gather(Tensor send, Tensor recv) {
  comm_check::all_gather(*this, "iall_gather", send, recv);
  copy_elements(send, recv);
  return CommRequest();
}

std::unique_ptr<Communicator> LocalCommunicator::split(int color, int /*key*/,
                                                       std::string name) const {
  comm_check::split(*this, color);
  return std::make_unique<LocalCommunicator>(std::move(name));
}

}  // namespace vmoe
