// `vmoe plot WORKDIR`: training curves from WORKDIR/metrics.jsonl (losses, accuracies, learning
// rate and, for V-MoE runs, per-layer dropped fraction, load balance and the auxiliary loss)
// and, when WORKDIR/capacity_sweep.csv exists, the capacity sweep: PNGs in WORKDIR/plots/.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>
#include <vector>

#include "core/error_text.h"
#include "launch/capacity_sweep_plot.h"
#include "launch/commands.h"
#include "launch/gnuplot.h"

namespace vmoe {

namespace fs = std::filesystem;

namespace {

using Series = std::vector<std::pair<double, double>>;  // (step, value)

// Every numeric key of metrics.jsonl -> its (step, value) points in file order.
std::map<std::string, Series> read_metrics(const fs::path& path) {
  std::ifstream in(path);
  if (!in)
    throw std::runtime_error("no metrics file " + quote_for_error(path.string()) +
                             " (expected the workdir of `vmoe train`)");
  std::map<std::string, Series> series;
  std::string line;
  int row = 0;
  while (std::getline(in, line)) {
    ++row;
    if (line.empty()) continue;
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const std::exception&) {
      throw std::runtime_error(quote_for_error(path.string()) + " line " + std::to_string(row) +
                               " is not JSON");
    }
    if (!j.is_object() || !j.contains("step") || !j["step"].is_number())
      throw std::runtime_error(quote_for_error(path.string()) + " line " + std::to_string(row) +
                               " has no numeric 'step'");
    const double step = j["step"].get<double>();
    for (const auto& [key, value] : j.items())
      if (key != "step" && value.is_number()) series[key].emplace_back(step, value.get<double>());
  }
  if (series.empty())
    throw std::runtime_error("metrics file " + quote_for_error(path.string()) + " is empty");
  return series;
}

struct Curve {
  std::string key, title;
};

// One PNG with one line per curve that the metrics have; false (nothing drawn) if none.
bool draw(const std::map<std::string, Series>& metrics, const std::vector<Curve>& curves,
          const fs::path& png, const std::string& title, const std::string& ylabel,
          const std::string& key_position = "top right") {
  std::map<std::string, std::string> files;
  std::ostringstream plot;
  const char* sep = "plot ";
  for (const Curve& c : curves) {
    auto it = metrics.find(c.key);
    if (it == metrics.end()) continue;
    std::ostringstream data;
    data.precision(10);
    for (const auto& [step, value] : it->second)
      data << step << " " << value << "\n";
    const std::string file = "curve" + std::to_string(files.size()) + ".dat";
    files[file] = data.str();
    // One point (e.g. the final evaluation only) would be invisible as a line.
    const char* style = it->second.size() < 20 ? "linespoints pt 7 ps 0.8" : "lines";
    plot << sep << gnuplot_quote(file) << " using 1:2 with " << style << " lw 2 title "
         << gnuplot_quote(c.title);
    sep = ", ";
  }
  if (files.empty()) return false;
  std::ostringstream s;
  s << gnuplot_png_terminal(800, 500) << "set output " << gnuplot_quote(gnuplot_output_name(0))
    << "\n"
    << "set title " << gnuplot_quote(title) << "\nset xlabel 'step'\nset ylabel "
    << gnuplot_quote(ylabel) << "\nset grid\nset key " << key_position << "\n"
    << plot.str() << "\n";
  run_gnuplot(s.str(), files, {png.string()});
  return true;
}

}  // namespace

int run_plot(const PlotArgs& args) {
  const fs::path workdir = fs::absolute(args.workdir);
  const std::map<std::string, Series> metrics = read_metrics(workdir / "metrics.jsonl");
  const fs::path out = workdir / "plots";
  std::error_code ec;
  fs::create_directories(out, ec);
  if (ec)
    throw std::runtime_error("cannot create " + quote_for_error(out.string()) + ": " +
                             ec.message());

  std::vector<fs::path> written;
  auto add = [&](bool drawn, const fs::path& png) {
    if (drawn) written.push_back(png);
  };
  add(draw(metrics, {{"train/loss", "train"}, {"eval/loss", "eval"}}, out / "loss.png", "Loss",
           "loss"),
      out / "loss.png");
  add(draw(metrics, {{"train/accuracy", "train"}, {"eval/accuracy", "eval"}}, out / "accuracy.png",
           "Accuracy", "accuracy", "bottom right"),
      out / "accuracy.png");
  add(draw(metrics, {{"train/lr", "learning rate"}}, out / "learning_rate.png", "Learning rate",
           "learning rate"),
      out / "learning_rate.png");
  // V-MoE: one curve per MoE layer.
  std::vector<Curve> dropped, balance;
  for (const auto& [key, series] : metrics) {
    if (key.rfind("moe/", 0) != 0) continue;
    const std::string layer = key.substr(4, key.find('/', 4) - 4);
    if (key.ends_with("/dropped_fraction")) dropped.push_back({key, layer});
    if (key.ends_with("/load_max_over_mean")) balance.push_back({key, layer});
  }
  add(draw(metrics, dropped, out / "moe_dropped_fraction.png",
           "Dropped fraction of expert assignments (training)", "dropped fraction"),
      out / "moe_dropped_fraction.png");
  add(draw(metrics, balance, out / "moe_load_balance.png",
           "Expert load balance: max / mean load (training)", "max load / mean load"),
      out / "moe_load_balance.png");
  add(draw(metrics, {{"train/aux_loss", "auxiliary loss"}}, out / "aux_loss.png",
           "Auxiliary (importance + load) loss", "weighted aux loss"),
      out / "aux_loss.png");
  const fs::path sweep = workdir / "capacity_sweep.csv";
  if (fs::exists(sweep)) {
    plot_capacity_sweep(sweep.string(), (out / "capacity_sweep.png").string());
    written.push_back(out / "capacity_sweep.png");
  }
  for (const fs::path& p : written)
    std::printf("written: %s\n", p.c_str());
  return 0;
}

}  // namespace vmoe
