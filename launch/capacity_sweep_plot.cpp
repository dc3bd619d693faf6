// Draws capacity_sweep.csv as accuracy vs capacity factor, one line per routing (see header).
#include "launch/capacity_sweep_plot.h"

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <stdexcept>

#include "core/error_text.h"
#include "launch/gnuplot.h"

namespace vmoe {

void plot_capacity_sweep(const std::string& csv_path, const std::string& png_path) {
  std::ifstream in(csv_path);
  if (!in) throw std::runtime_error("cannot read capacity sweep " + quote_for_error(csv_path));
  std::string line;
  std::getline(in, line);
  if (line.rfind("capacity_factor,routing,accuracy", 0) != 0)
    throw std::runtime_error(quote_for_error(csv_path) +
                             " is not a capacity sweep: expected the header "
                             "'capacity_factor,routing,accuracy,...', got " +
                             quote_for_error(line));
  std::map<std::string, std::string> series;  // routing -> "capacity accuracy_percent" lines
  int row = 1;
  while (std::getline(in, line)) {
    ++row;
    if (line.empty()) continue;
    std::istringstream fields(line);
    std::string capacity, routing, accuracy;
    std::getline(fields, capacity, ',');
    std::getline(fields, routing, ',');
    std::getline(fields, accuracy, ',');
    double c = 0, a = 0;
    try {
      c = std::stod(capacity);
      a = std::stod(accuracy);
    } catch (const std::exception&) {
      throw std::runtime_error(quote_for_error(csv_path) + " line " + std::to_string(row) +
                               ": expected numbers, got " + quote_for_error(line));
    }
    series[routing] += std::to_string(c) + " " + std::to_string(100 * a) + "\n";
  }
  if (series.empty())
    throw std::runtime_error("capacity sweep " + quote_for_error(csv_path) + " has no rows");
  std::ostringstream s;
  s << gnuplot_png_terminal(800, 520) << "set output " << gnuplot_quote(gnuplot_output_name(0))
    << "\n"
    << "set title 'Test accuracy vs test-time capacity factor'\n"
    << "set xlabel 'capacity factor C'\nset ylabel 'test accuracy (%)'\n"
    << "set logscale x 2\nset grid\nset key bottom right\n"
    << "plot ";
  std::map<std::string, std::string> files;
  const char* sep = "";
  for (const auto& [routing, text] : series) {
    const std::string file = "series" + std::to_string(files.size()) + ".dat";
    files[file] = text;
    const std::string title = routing == "bpr" ? "BPR" : routing;
    s << sep << gnuplot_quote(file) << " using 1:2 with linespoints lw 2 pt 7 title "
      << gnuplot_quote(title);
    sep = ", ";
  }
  s << "\n";
  run_gnuplot(s.str(), files, {png_path});
}

}  // namespace vmoe
