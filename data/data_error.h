// The one exception type of the data library: bad files, inconsistent datasets and invalid
// loader options, each with a one-line message that names the file or option.
#pragma once
#include <stdexcept>

namespace vmoe::data {

class DataError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace vmoe::data
