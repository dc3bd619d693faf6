// Global-norm gradient clipping over every flat gradient buffer of a ParameterStore.
#pragma once
#include "core/parameters.h"

namespace vmoe {

// Squared L2 norm of one sharding class's (local) gradients.
double grad_sum_squares(const ParameterStore& params, Sharding sharding);
// Global L2 norm of all gradients of a single-process store.
double global_grad_norm(const ParameterStore& params);
// Scales the gradients by max_norm / norm when norm > max_norm > 0 (norm computed by the
// caller, e.g. over all ranks).
void clip_grads_to_norm(ParameterStore& params, double norm, double max_norm);
// Scales the gradients so that their global norm is at most max_norm (0 = no clipping).
// Returns the norm before clipping.
double clip_grad_norm(ParameterStore& params, double max_norm);

}  // namespace vmoe
