// The scalar helpers of communicator.h: one number reduced over all ranks (host tensors: the
// value is known on the host).
#include "parallel/communicator.h"

namespace vmoe {

double all_reduce_scalar(Communicator& comm, double value, ReduceOp op) {
  Tensor t = Tensor::from_vector<double>({value}, {1}, kCpu);
  comm.all_reduce(t, op);
  return t.data<double>()[0];
}

int64_t all_reduce_scalar(Communicator& comm, int64_t value, ReduceOp op) {
  Tensor t = Tensor::from_vector<int64_t>({value}, {1}, kCpu);
  comm.all_reduce(t, op);
  return t.data<int64_t>()[0];
}

}  // namespace vmoe
