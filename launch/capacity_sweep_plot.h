// The capacity-sweep picture: test accuracy vs test-time capacity factor, vanilla routing vs
// Batch Prioritized Routing, from the CSV that `vmoe eval --capacity-sweep` writes.
#pragma once
#include <string>

namespace vmoe {

// Reads `csv_path` (capacity_factor,routing,accuracy,...) and draws `png_path` through gnuplot.
void plot_capacity_sweep(const std::string& csv_path, const std::string& png_path);

}  // namespace vmoe
