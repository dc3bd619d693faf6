// The one place that runs gnuplot (Debian package gnuplot-nox): a script and its data files go
// into a private temporary folder, gnuplot runs there, and the PNG files it writes there are
// copied to where the caller wants them. No path from outside ever appears in a script: the
// script names only files in that folder (names we make), so a workdir or output path with a
// newline, quote or backtick cannot become a gnuplot command.
#pragma once
#include <cstddef>
#include <map>
#include <string>
#include <vector>

namespace vmoe {

// `set terminal` line for a PNG of width x height pixels (cairo, antialiased).
std::string gnuplot_png_terminal(int width, int height);

// A string literal for a gnuplot script: single-quoted (no backtick substitution), quotes
// doubled, control characters and bytes that are not UTF-8 replaced by '?', so that the literal
// always ends on its own line. For titles and bare file names; never for a path from outside.
std::string gnuplot_quote(const std::string& text);

// The bare file name under which a script writes output `index` of run_gnuplot
// ("output0.png"): e.g. "set output " + gnuplot_quote(gnuplot_output_name(0)).
std::string gnuplot_output_name(size_t index);

// Runs gnuplot on `script` in a fresh private temporary folder holding `data_files` (file name
// -> content; the script refers to them by bare name). Output i is written by the script as
// gnuplot_output_name(i) and must exist and be non-empty afterwards; it is then copied to
// `outputs[i]` (any path). Throws when gnuplot is not on PATH (naming the Debian package), or
// fails (its stderr, joined on one line, in the message). gnuplot runs without a shell.
void run_gnuplot(const std::string& script, const std::map<std::string, std::string>& data_files,
                 const std::vector<std::string>& outputs);

}  // namespace vmoe
