// The order in which one epoch visits a dataset: a permutation of [0, n) that is a pure
// function of (seed, epoch), so every rank computes the same order and a resumed run continues
// the exact sequence.
#pragma once
#include <cstdint>
#include <vector>

namespace vmoe::data {

// [n] a permutation of 0..n-1 (Fisher-Yates driven by counter_hash(seed, shuffle, epoch, i)).
std::vector<int64_t> epoch_permutation(int64_t n, uint64_t seed, int64_t epoch);

}  // namespace vmoe::data
