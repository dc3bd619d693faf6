// Global-norm gradient clipping over every flat gradient buffer of a ParameterStore.
#pragma once
#include "core/parameters.h"

namespace vmoe {

// Global L2 norm of all gradients.
double global_grad_norm(const ParameterStore& params);
// Scales the gradients so that their global norm is at most max_norm (0 = no clipping).
// Returns the norm before clipping.
double clip_grad_norm(ParameterStore& params, double max_norm);

}  // namespace vmoe
