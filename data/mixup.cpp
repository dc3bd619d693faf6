// Beta draws from Gamma draws of a generator seeded by the counter hash, and the pairwise mix.
#include "data/mixup.h"

#include <algorithm>
#include <random>
#include <string>

#include "data/counter_hash.h"
#include "data/data_error.h"

namespace vmoe::data {
namespace {
constexpr auto kMixupStream = static_cast<RandomStream>(0x4d49585550u);  // "MIXUP"
}

float mixup_lambda(float alpha, uint64_t seed, int64_t epoch, int64_t pair) {
  if (!(alpha > 0)) throw DataError("mixup alpha must be > 0, got " + std::to_string(alpha));
  std::mt19937_64 gen(
      counter_hash(seed, kMixupStream, static_cast<uint64_t>(epoch), static_cast<uint64_t>(pair)));
  std::gamma_distribution<double> gamma(alpha, 1.0);
  const double a = gamma(gen);
  const double b = gamma(gen);
  return a + b > 0 ? static_cast<float>(a / (a + b)) : 0.5f;
}

namespace {

// a, b <- lam a + (1 - lam) b, lam b + (1 - lam) a: both members of a pair, n values each.
void mix_pair(float* a, float* b, int64_t n, float lam) {
  for (int64_t i = 0; i < n; ++i) {
    const float va = a[i];
    const float vb = b[i];
    a[i] = lam * va + (1 - lam) * vb;
    b[i] = lam * vb + (1 - lam) * va;
  }
}

}  // namespace

void mixup_batch(Batch& batch, int32_t num_classes, float alpha, uint64_t seed, int64_t epoch,
                 int64_t first_slot) {
  const int64_t n = batch.batch_size;
  const int64_t pixels = batch.height * batch.width * batch.channels;
  batch.targets.assign(static_cast<size_t>(n * num_classes), 0.0f);
  for (int64_t k = 0; k < n; ++k) {
    const int32_t label = batch.labels[static_cast<size_t>(k)];
    if (label < 0 || label >= num_classes) {
      throw DataError("mixup: label " + std::to_string(label) + " outside [0, " +
                      std::to_string(num_classes) + ")");
    }
    batch.targets[static_cast<size_t>(k * num_classes + label)] = 1.0f;
  }
  for (int64_t k = 0; k < n; ++k) {
    const int64_t slot = first_slot + k;
    if (slot % 2 != 0) continue;  // handle each pair from its even member
    const int64_t p = k + 1;      // partner slot slot + 1
    if (p >= n) continue;
    const float lam = mixup_lambda(alpha, seed, epoch, slot / 2);
    mix_pair(batch.images.data() + k * pixels, batch.images.data() + p * pixels, pixels, lam);
    mix_pair(batch.targets.data() + k * num_classes, batch.targets.data() + p * num_classes,
             num_classes, lam);
  }
}

}  // namespace vmoe::data
