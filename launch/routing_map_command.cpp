// `vmoe routing-map`: for a few test images, the expert that each patch's first choice went to
// in every MoE layer, drawn as in the paper's routing figures (rows: images; columns: the image,
// then one panel per MoE layer; patches whose first choice was dropped are crossed), and
// optionally written as CSV. Each image is routed inside the group it belongs to when the test
// split is evaluated (eval batches of data.eval_batch_size, groups of images_per_group), so the
// routing is the one `vmoe eval` and `vmoe predict` see.
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <stdexcept>

#include "core/autograd.h"
#include "core/error_text.h"
#include "data/eval_batches.h"
#include "launch/commands.h"
#include "launch/evaluate.h"
#include "launch/experiment.h"
#include "launch/gnuplot.h"
#include "launch/routing_flags.h"
#include "launch/saved_model.h"

namespace vmoe {

namespace fs = std::filesystem;

namespace {

// First-choice routing of one image's patches in one MoE layer.
struct PatchRouting {
  int64_t block = 0;
  std::vector<int32_t> expert;  // [P] first-choice expert per patch (row-major patch grid)
  std::vector<uint8_t> kept;    // [P] 1 if that first choice got a slot
};

// Distinct colours for experts (tab20 order: strong then light); beyond 20, spread hues.
std::string expert_colour(int64_t e, int64_t num_experts) {
  static const char* kColours[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                                   "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
                                   "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5",
                                   "#c49c94", "#f7b6d2", "#c7c7c7", "#dbdb8d", "#9edae5"};
  if (num_experts <= 20) return kColours[e];
  // HSV hue wheel at full saturation and value.
  const double h = 6.0 * double(e) / double(num_experts);
  const int i = int(h);
  const double f = h - i;
  double r = 0, g = 0, b = 0;
  switch (i % 6) {
    case 0:
      r = 1, g = f, b = 0;
      break;
    case 1:
      r = 1 - f, g = 1, b = 0;
      break;
    case 2:
      r = 0, g = 1, b = f;
      break;
    case 3:
      r = 0, g = 1 - f, b = 1;
      break;
    case 4:
      r = f, g = 0, b = 1;
      break;
    default:
      r = 1, g = 0, b = 1 - f;
      break;
  }
  char buf[8];
  std::snprintf(buf, sizeof buf, "#%02x%02x%02x", int(255 * r), int(255 * g), int(255 * b));
  return buf;
}

std::string screen_margins(double x0, double x1, double y0, double y1) {
  std::ostringstream s;
  s << "set lmargin at screen " << x0 << "; set rmargin at screen " << x1
    << "; set bmargin at screen " << y0 << "; set tmargin at screen " << y1 << "\n";
  return s.str();
}

}  // namespace

int run_routing_map(const RoutingMapArgs& args) {
  SavedModel saved = load_saved_model(args.workdir, args.weights, args.overrides);
  const config::Config& cfg = saved.config;
  if (!cfg.model().has_moe())
    throw std::runtime_error("routing-map needs a V-MoE model (" +
                             quote_for_error(saved.weights_path) + " is dense)");
  // As `vmoe eval`: 0 (the default) keeps the config's capacity, "" its BPR.
  check_routing_flags(cfg, saved.weights_path, {args.capacity_factor, args.bpr});
  if (args.images.empty()) throw std::runtime_error("--images needs at least one test image");
  const data::ImageDataset test_set = load_split(cfg, data::Split::test);
  for (int64_t i : args.images)
    if (i < 0 || i >= test_set.n)
      throw std::runtime_error("--images: test image " + std::to_string(i) +
                               " is outside the test split's " + std::to_string(test_set.n) +
                               " images");
  const VitConfig& vit = saved.model->config();
  const int64_t side = vit.image_size / vit.patch_size;
  const int64_t patches = vit.num_patches(), tokens = vit.num_tokens();
  const int64_t first_patch = tokens - patches;  // the class token (if any) is token 0
  const int64_t eval_batch = cfg.data().eval_batch_size();
  const int64_t group = moe_group_images(cfg.model().moe());
  const int64_t num_experts = cfg.model().moe().num_experts();

  NoGrad no_grad;
  std::vector<std::vector<PatchRouting>> maps;  // [image][MoE layer]
  for (int64_t i : args.images) {
    // The routing group that holds image i in an evaluation of the test split.
    const int64_t b0 = i / eval_batch * eval_batch;
    const int64_t g0 = b0 + (i - b0) / group * group;
    const int64_t g1 = std::min({g0 + group, b0 + eval_batch, test_set.n});
    data::Batch b = data::eval_batch(test_set, g0, g1 - g0, normalization_from(cfg.data()));
    ForwardContext ctx{Mode::eval, {}, g0};
    ctx.record_routing = true;
    if (args.capacity_factor > 0) ctx.eval_capacity_factor = args.capacity_factor;
    ctx.eval_batch_priority = parse_bpr(args.bpr);
    VitOutput out = saved.model->operator()(batch_images(b, saved.model->device()), ctx);
    std::vector<PatchRouting> layers;
    for (const MoeReport& m : out.moe) {
      const std::vector<int32_t> experts =
          to_dtype(m.routing.experts, DType::i32).cpu().to_vector<int32_t>();
      const std::vector<uint8_t> kept = m.routing.kept.cpu().to_vector<uint8_t>();
      const int64_t k = m.routing.experts.size(1);
      PatchRouting r{m.block, {}, {}};
      for (int64_t p = 0; p < patches; ++p) {
        const int64_t row = ((i - g0) * tokens + first_patch + p) * k;  // first choice
        r.expert.push_back(experts[size_t(row)]);
        r.kept.push_back(kept[size_t(row)]);
      }
      layers.push_back(std::move(r));
    }
    maps.push_back(std::move(layers));
  }
  const size_t num_layers = maps.front().size();
  if (num_layers == 0) throw std::runtime_error("the model reported no MoE layer routing");

  if (!args.data.empty()) {
    std::ofstream csv(args.data);
    if (!csv) throw std::runtime_error("cannot write " + quote_for_error(args.data));
    csv << "image,block,patch,row,col,expert,kept\n";
    for (size_t r = 0; r < maps.size(); ++r)
      for (const PatchRouting& l : maps[r])
        for (int64_t p = 0; p < patches; ++p)
          csv << args.images[r] << "," << l.block << "," << p << "," << p / side << "," << p % side
              << "," << l.expert[size_t(p)] << "," << int(l.kept[size_t(p)]) << "\n";
    if (!csv) throw std::runtime_error("cannot write " + quote_for_error(args.data));
  }

  // The picture: panels of kPanel pixels, a title strip at the top, the legend at the bottom.
  const std::string png =
      fs::absolute(args.output.empty() ? (fs::path(saved.output_dir) / "routing_map.png")
                                       : fs::path(args.output))
          .string();
  constexpr int kPanel = 170, kTitle = 30, kTop = 40, kLegend = 70;
  const int cols = 1 + int(num_layers), rows = int(maps.size());
  const int width = cols * kPanel + 20, height = kTop + rows * (kPanel + kTitle) + kLegend;
  auto sx = [&](double px) { return px / width; };
  auto sy = [&](double px) { return 1.0 - px / height; };  // pixels from the top
  std::map<std::string, std::string> files;
  std::string capacity;  // the test-time routing, when not the config's
  if (args.capacity_factor > 0) {
    char text[32];
    std::snprintf(text, sizeof text, "capacity %g", args.capacity_factor);
    capacity = text;
  }
  if (!args.bpr.empty())
    capacity += std::string(capacity.empty() ? "" : ", ") + (args.bpr == "on" ? "BPR" : "vanilla");
  if (!capacity.empty()) capacity = " (" + capacity + ")";
  std::ostringstream s;
  s << gnuplot_png_terminal(width, height) << "set output " << gnuplot_quote(gnuplot_output_name(0))
    << "\n"
    << "set multiplot title 'First-choice expert per patch" << capacity << "' font 'sans,12'\n"
    << "unset key\nunset tics\nunset colorbox\nset border lw 0.5\n";
  s << "set palette maxcolors " << num_experts << "\nset palette defined (";
  for (int64_t e = 0; e < num_experts; ++e)
    s << (e ? ", " : "") << e << " '" << expert_colour(e, num_experts) << "'";
  s << ")\nset cbrange [-0.5:" << num_experts - 0.5 << "]\n";
  const int64_t h = test_set.height, w = test_set.width, c = test_set.channels;
  for (int r = 0; r < rows; ++r) {
    const int64_t i = args.images[size_t(r)];
    const double top = kTop + r * (kPanel + kTitle) + kTitle;
    auto panel = [&](int col) {
      return screen_margins(sx(10 + col * kPanel + 4), sx(10 + (col + 1) * kPanel - 4),
                            sy(top + kPanel - 4), sy(top));
    };
    // The image itself, pixel rows top to bottom.
    std::ostringstream img;
    const uint8_t* px = test_set.images.data() + size_t(i * h * w * c);
    for (int64_t y = 0; y < h; ++y) {
      for (int64_t x = 0; x < w; ++x) {
        const uint8_t* p = px + (y * w + x) * c;
        img << x << " " << y << " " << int(p[0]) << " " << int(p[c > 2 ? 1 : 0]) << " "
            << int(p[c > 2 ? 2 : 0]) << "\n";
      }
      img << "\n";
    }
    const std::string img_file = "image" + std::to_string(r) + ".dat";
    files[img_file] = img.str();
    s << panel(0) << "set title 'test image " << i << " (label " << test_set.labels[size_t(i)]
      << ")'\nset xrange [-0.5:" << w - 0.5 << "]\nset yrange [" << h - 0.5 << ":-0.5]\n"
      << "plot " << gnuplot_quote(img_file) << " using 1:2:3:4:5 with rgbimage\n";
    // One panel per MoE layer: the expert index matrix, crosses where the choice was dropped.
    s << "set xrange [-0.5:" << side - 0.5 << "]\nset yrange [" << side - 0.5 << ":-0.5]\n";
    for (size_t l = 0; l < num_layers; ++l) {
      const PatchRouting& pr = maps[size_t(r)][l];
      std::ostringstream matrix, dropped;
      for (int64_t p = 0; p < patches; ++p) {
        matrix << pr.expert[size_t(p)] << ((p + 1) % side ? " " : "\n");
        if (!pr.kept[size_t(p)]) dropped << p % side << " " << p / side << "\n";
      }
      const std::string tag = std::to_string(r) + "_" + std::to_string(l);
      files["experts" + tag + ".dat"] = matrix.str();
      char title[32];
      std::snprintf(title, sizeof title, "MoE block %02lld", static_cast<long long>(pr.block));
      s << panel(int(l) + 1) << "set title '" << title << "'\nplot 'experts" << tag
        << ".dat' matrix with image";
      if (!dropped.str().empty()) {
        files["dropped" + tag + ".dat"] = dropped.str();
        s << ", 'dropped" << tag << ".dat' using 1:2 with points pt 2 ps 1.6 lw 2.5 lc rgb 'black'";
      }
      s << "\n";
    }
  }
  // Legend: one coloured box per expert and the dropped marker.
  s << "unset title\nunset border\nset xrange [0:1]\nset yrange [0:1]\n"
    << screen_margins(sx(10), sx(width - 10), sy(height - 4), sy(height - kLegend + 8))
    << "set key horizontal center center maxcols " << std::min<int64_t>(num_experts + 1, 6)
    << " samplen 1.5\nset style fill solid 1.0 border lc rgb 'black'\nplot NaN notitle";
  for (int64_t e = 0; e < num_experts; ++e)
    s << ", keyentry with boxes fc rgb '" << expert_colour(e, num_experts) << "' title 'expert "
      << e << "'";
  s << ", keyentry with points pt 2 lw 2.5 lc rgb 'black' title 'dropped'\nunset "
       "multiplot\n";
  run_gnuplot(s.str(), files, {png});
  std::printf("written: %s\n", png.c_str());
  if (!args.data.empty()) std::printf("written: %s\n", args.data.c_str());
  return 0;
}

}  // namespace vmoe
