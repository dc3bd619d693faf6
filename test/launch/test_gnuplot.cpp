// The gnuplot wrapper: a script with its data files makes the PNG it names, which lands at any
// destination path (hostile ones too) without that path entering the script; a failing script
// is an error carrying gnuplot's own message; a picture that was not written is an error; quoted
// text always ends on its own line.
#include "launch/gnuplot.h"

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>

#include "command_runner.h"

namespace fs = std::filesystem;

TEST_CASE("gnuplot: a script and its data file make the PNG") {
  const fs::path dir = vmoe::testing::scratch_dir("gnuplot_ok");
  const std::string png = (dir / "line.png").string();
  vmoe::run_gnuplot(vmoe::gnuplot_png_terminal(320, 200) + "set output " +
                        vmoe::gnuplot_quote(vmoe::gnuplot_output_name(0)) +
                        "\nplot 'xy.dat' using 1:2 with lines\n",
                    {{"xy.dat", "0 1\n1 3\n2 2\n"}}, {png});
  std::ifstream in(png, std::ios::binary);
  char signature[8] = {};
  in.read(signature, 8);
  CHECK(std::string(signature, 8) == "\x89PNG\r\n\x1a\n");
}

TEST_CASE("gnuplot: a failing script is an error with gnuplot's message, on one line") {
  const fs::path dir = vmoe::testing::scratch_dir("gnuplot_bad");
  const std::string png = (dir / "bad.png").string();
  try {
    vmoe::run_gnuplot(vmoe::gnuplot_png_terminal(320, 200) + "set output " +
                          vmoe::gnuplot_quote(vmoe::gnuplot_output_name(0)) +
                          "\nplot 'xy.dat' with nosuchstyle\n",
                      {{"xy.dat", "0 1\n"}}, {png});
    FAIL("no exception");
  } catch (const std::runtime_error& e) {
    const std::string what = e.what();
    INFO(what);
    CHECK(what.rfind("gnuplot failed (exit 1): ", 0) == 0);
    CHECK(what.find("nosuchstyle") != std::string::npos);
    CHECK(what.find('\n') == std::string::npos);
  }
}

TEST_CASE("gnuplot: a picture the script does not write is an error naming it") {
  const fs::path dir = vmoe::testing::scratch_dir("gnuplot_none");
  const std::string png = (dir / "never.png").string();
  CHECK_THROWS_WITH(vmoe::run_gnuplot("print 1\n", {}, {png}), Catch::Contains("never.png"));
}

TEST_CASE("gnuplot: quoting doubles single quotes") {
  CHECK(vmoe::gnuplot_quote("it's") == "'it''s'");
  CHECK(vmoe::gnuplot_quote("caf\xc3\xa9 `x`") == "'caf\xc3\xa9 `x`'");
}

TEST_CASE("gnuplot: quoted text has no control character and no invalid UTF-8") {
  const std::string q = "?";  // one replaced byte
  CHECK(vmoe::gnuplot_quote("a\nsystem('touch x')\r\t\x7f") ==
        "'a" + q + "system(''touch x'')" + q + q + q + "'");
  CHECK(vmoe::gnuplot_quote("bad\xff\xc3(\xe2\x82") == "'bad" + q + q + "(" + q + q + "'");
}

TEST_CASE("gnuplot: a hostile destination gets the picture and runs nothing") {
  const fs::path dir = vmoe::testing::scratch_dir("gnuplot_hostile");
  const fs::path sentinel = dir / "SENTINEL";
  const std::string png = (dir / ("x'\nsystem('touch " + sentinel.string() + "')\n#`touch " +
                                  sentinel.string() + "`\xff.png"))
                              .string();
  fs::create_directories(fs::path(png).parent_path());
  vmoe::run_gnuplot(vmoe::gnuplot_png_terminal(320, 200) + "set output " +
                        vmoe::gnuplot_quote(vmoe::gnuplot_output_name(0)) + "\nplot x\n",
                    {}, {png});
  std::ifstream in(png, std::ios::binary);
  char signature[8] = {};
  in.read(signature, 8);
  CHECK(std::string(signature, 8) == "\x89PNG\r\n\x1a\n");
  CHECK_FALSE(fs::exists(sentinel));
}
