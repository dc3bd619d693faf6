// Readers for the CIFAR-10 and CIFAR-100 binary versions (cs.toronto.edu/~kriz/cifar.html):
// fixed-size records of label byte(s) + 3072 pixel bytes stored channel-major (1024 R, 1024 G,
// 1024 B, each 32x32 row-major), returned as a 32x32x3 HWC ImageDataset.
#pragma once
#include <string>

#include "data/image_dataset.h"

namespace vmoe::data {

// CIFAR-10: `dir`/data_batch_1.bin .. data_batch_5.bin (train) or `dir`/test_batch.bin (test);
// records of 1 label byte + 3072 pixels; 10 classes.
ImageDataset load_cifar10(const std::string& dir, Split split);

// CIFAR-100: `dir`/train.bin or `dir`/test.bin; records of 1 coarse + 1 fine label byte +
// 3072 pixels; the fine label is used (100 classes).
ImageDataset load_cifar100(const std::string& dir, Split split);

}  // namespace vmoe::data
