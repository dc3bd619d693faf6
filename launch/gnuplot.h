// The one place that runs gnuplot (Debian package gnuplot-nox): a script and its data files go
// into a temporary folder, gnuplot runs there, and the PNG files the script names are checked.
#pragma once
#include <map>
#include <string>
#include <vector>

namespace vmoe {

// `set terminal` line for a PNG of width x height pixels (cairo, antialiased).
std::string gnuplot_png_terminal(int width, int height);

// A string literal for a gnuplot script: single-quoted, quotes doubled.
std::string gnuplot_quote(const std::string& text);

// Runs gnuplot on `script` in a fresh temporary folder holding `data_files` (file name ->
// content; the script refers to them by bare name). `outputs` are the files the script writes
// (absolute paths): each must exist and be non-empty afterwards. Throws when gnuplot is not on
// PATH (naming the Debian package), or fails (its stderr, joined on one line, in the message).
void run_gnuplot(const std::string& script, const std::map<std::string, std::string>& data_files,
                 const std::vector<std::string>& outputs);

}  // namespace vmoe
