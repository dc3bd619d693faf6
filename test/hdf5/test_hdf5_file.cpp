// Tests of the plain HDF5 file wrapper (hdf5/hdf5_file.h) and the HDF5 RAII handles and
// checking macro (hdf5/hdf5_handle.h): round trips, names, attributes, error messages,
// checksums and interoperability with files written by h5py.
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <thread>
#include <vector>

#include "hdf5/hdf5_file.h"
#include "hdf5/hdf5_handle.h"

using namespace vmoe;
namespace fs = std::filesystem;

namespace {

// A fresh directory under the system temp dir, removed with its contents at scope exit.
class TempDir {
 public:
  TempDir() {
    static std::atomic<int> counter{0};
    path_ = fs::temp_directory_path() /
            ("vmoe_test_hdf5_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  fs::path path_;
};

template <typename T>
std::vector<uint8_t> bytes_of(const std::vector<T>& v) {
  std::vector<uint8_t> b(v.size() * sizeof(T));
  if (!b.empty()) std::memcpy(b.data(), v.data(), b.size());
  return b;
}

template <typename T>
void write_vec(Hdf5File& f, const std::string& name, H5Type t, const std::vector<int64_t>& shape,
               const std::vector<T>& v) {
  f.write(name, t, shape, v.data());
}

std::vector<char> read_file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<char>(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// The message of the exception `fn` throws, or "" if it throws nothing.
template <typename Fn>
std::string error_of(Fn fn) {
  try {
    fn();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

}  // namespace

TEST_CASE("hdf5: every element type round trips (scalars and empty arrays included)") {
  TempDir dir;
  const std::string path = dir.file("types.h5");
  const std::vector<float> f32{1.5f, -2.25f, 3.0e-8f, 4.0f, 5.0f, -6.0f};
  const std::vector<double> f64{1.0 / 3.0, -2.0e300, 3.5, 4.0e-310};
  const std::vector<int32_t> i32{-2147483647 - 1, 0, 7, 2147483647, -5, 6};
  const std::vector<int64_t> i64{int64_t(1) << 62, -1, 3};
  const std::vector<uint8_t> u8{0, 1, 127, 128, 255, 42, 9, 8};
  const std::vector<uint16_t> bf16{0x3f80, 0xbf80, 0x7f80, 0x0001};  // 1, -1, inf, tiny
  {
    Hdf5File f(path, Hdf5File::Mode::Create);
    write_vec(f, "f32", H5Type::f32, {2, 3}, f32);
    write_vec(f, "f64", H5Type::f64, {4}, f64);
    write_vec(f, "i32", H5Type::i32, {3, 1, 2}, i32);
    write_vec(f, "i64", H5Type::i64, {3}, i64);
    write_vec(f, "u8", H5Type::u8, {2, 2, 2}, u8);
    write_vec(f, "bf16", H5Type::bf16, {2, 2}, bf16);
    const double scalar_f64 = -0.125;
    const int32_t scalar_i32 = -77;
    const uint16_t scalar_bf16 = 0x4049;
    f.write("scalars/f64", H5Type::f64, {}, &scalar_f64);
    f.write("scalars/i32", H5Type::i32, {}, &scalar_i32);
    f.write("scalars/bf16", H5Type::bf16, {}, &scalar_bf16);
    f.write("empty", H5Type::f32, {0, 3}, nullptr);
  }
  Hdf5File f(path, Hdf5File::Mode::Read);
  auto check = [&](const std::string& name, H5Type t, const std::vector<int64_t>& shape,
                   const std::vector<uint8_t>& bytes) {
    INFO("dataset " << name);
    H5Array a = f.read(name);
    CHECK(a.type == t);
    CHECK(a.shape == shape);
    CHECK(a.bytes == bytes);
    CHECK(a.bytes.size() == size_t(a.numel()) * h5_type_size(t));
  };
  check("f32", H5Type::f32, {2, 3}, bytes_of(f32));
  check("f64", H5Type::f64, {4}, bytes_of(f64));
  check("i32", H5Type::i32, {3, 1, 2}, bytes_of(i32));
  check("i64", H5Type::i64, {3}, bytes_of(i64));
  check("u8", H5Type::u8, {2, 2, 2}, bytes_of(u8));
  check("bf16", H5Type::bf16, {2, 2}, bytes_of(bf16));
  check("scalars/f64", H5Type::f64, {}, bytes_of(std::vector<double>{-0.125}));
  check("scalars/i32", H5Type::i32, {}, bytes_of(std::vector<int32_t>{-77}));
  check("scalars/bf16", H5Type::bf16, {}, bytes_of(std::vector<uint16_t>{0x4049}));
  check("empty", H5Type::f32, {0, 3}, {});
  CHECK(h5_type_name(H5Type::bf16) == std::string("bf16"));
}

TEST_CASE("hdf5: bf16 is stored as uint16 with the attribute dtype=bf16") {
  TempDir dir;
  const std::string path = dir.file("bf16.h5");
  const std::vector<uint16_t> bits{0x3f80, 0x4000};
  {
    Hdf5File f(path, Hdf5File::Mode::Create);
    write_vec(f, "w", H5Type::bf16, {2}, bits);
    write_vec(f, "plain_u8", H5Type::u8, {2}, std::vector<uint8_t>{1, 2});
  }
  Hdf5File f(path, Hdf5File::Mode::Read);
  CHECK(f.get_attr_string("w/dtype") == "bf16");
  CHECK_FALSE(f.has_attr("plain_u8/dtype"));
  Hdf5Lock lock;
  H5FileId file{VMOE_H5_CHECK(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT))};
  H5DatasetId ds{VMOE_H5_CHECK(H5Dopen2(file.get(), "w", H5P_DEFAULT))};
  H5TypeId type{VMOE_H5_CHECK(H5Dget_type(ds.get()))};
  CHECK(H5Tget_class(type.get()) == H5T_INTEGER);
  CHECK(H5Tget_size(type.get()) == 2);
  CHECK(H5Tget_sign(type.get()) == H5T_SGN_NONE);
}

TEST_CASE("hdf5: nested names create groups and has() / list() see datasets only") {
  TempDir dir;
  const std::string path = dir.file("nested.h5");
  const float v = 1.0f;
  {
    Hdf5File f(path, Hdf5File::Mode::Create);
    f.write("encoder/block_01/mlp/fc1/kernel", H5Type::f32, {}, &v);
    f.write("encoder/block_00/mlp/fc1/kernel", H5Type::f32, {}, &v);
    f.write("encoder/block_00/attn/qkv/bias", H5Type::f32, {}, &v);
    f.write("/head/bias", H5Type::f32, {}, &v);  // a leading '/' is ignored
    f.write("cls", H5Type::f32, {}, &v);
    f.set_attr("encoder/note", "groups carry attributes, list() ignores them");
  }
  Hdf5File f(path, Hdf5File::Mode::Read);
  CHECK(f.list() == std::vector<std::string>{"cls", "encoder/block_00/attn/qkv/bias",
                                             "encoder/block_00/mlp/fc1/kernel",
                                             "encoder/block_01/mlp/fc1/kernel", "head/bias"});
  CHECK(f.has("encoder/block_00/mlp/fc1/kernel"));
  CHECK(f.has("/head/bias"));
  CHECK_FALSE(f.has("encoder"));               // a group
  CHECK_FALSE(f.has("encoder/block_00/mlp"));  // a group
  CHECK_FALSE(f.has("nope"));
  CHECK_FALSE(f.has("encoder/block_07/mlp/fc1/kernel"));  // missing intermediate group
  CHECK_FALSE(f.has("cls/below_a_dataset"));
  CHECK_THROWS_AS(f.has(""), std::invalid_argument);
  CHECK_THROWS_AS(f.has("a//b"), std::invalid_argument);
  CHECK(Hdf5File(dir.file("empty.h5"), Hdf5File::Mode::Create).list().empty());
}

TEST_CASE("hdf5: info() gives type and shape without the data, errors like read()") {
  TempDir dir;
  const std::string path = dir.file("info.h5");
  const std::vector<double> v(6, 1.5);
  const int32_t scalar = 7;
  {
    Hdf5File f(path, Hdf5File::Mode::Create);
    write_vec(f, "params/w", H5Type::f64, {2, 3}, v);
    f.write("count", H5Type::i32, {}, &scalar);
  }
  Hdf5File f(path, Hdf5File::Mode::Read);
  const H5DatasetInfo w = f.info("params/w");
  CHECK(w.type == H5Type::f64);
  CHECK(w.shape == std::vector<int64_t>{2, 3});
  const H5DatasetInfo c = f.info("/count");
  CHECK(c.type == H5Type::i32);
  CHECK(c.shape.empty());
  const std::string missing = error_of([&] { f.info("params/nope"); });
  CHECK(contains(missing, "'params/nope'"));
  CHECK(contains(missing, path));
  CHECK(contains(missing, "no such dataset"));
  CHECK(contains(error_of([&] { f.info("params"); }), "is a group"));
}

TEST_CASE("hdf5: read_rows() reads a leading-axis range, checked like read()") {
  TempDir dir;
  const std::string path = dir.file("rows.h5");
  std::vector<float> v(4 * 3);
  for (size_t i = 0; i < v.size(); ++i)
    v[i] = float(i);
  {
    Hdf5File f(path, Hdf5File::Mode::Create);
    write_vec(f, "experts/w", H5Type::f32, {4, 3}, v);
  }
  Hdf5File f(path, Hdf5File::Mode::Read);
  const H5Array rows =
      f.read_rows("experts/w", 1, 2, {{H5Type::f32}, std::vector<int64_t>{4, 3}, {}});
  CHECK(rows.shape == std::vector<int64_t>{2, 3});
  std::vector<float> got(6);
  REQUIRE(rows.bytes.size() == got.size() * sizeof(float));
  std::memcpy(got.data(), rows.bytes.data(), rows.bytes.size());
  CHECK(got == std::vector<float>(v.begin() + 3, v.begin() + 9));  // rows 1 and 2
  CHECK(f.read_rows("experts/w", 4, 0).shape == std::vector<int64_t>{0, 3});
  const std::string outside = error_of([&] { f.read_rows("experts/w", 3, 2); });
  CHECK(contains(outside, "rows [3, 5) are not within the leading axis of its shape [4, 3]"));
  CHECK(contains(outside, path));
  CHECK(contains(error_of([&] {
                   f.read_rows("experts/w", 0, 1, {{H5Type::f64}, {}, {}});
                 }),
                 "'experts/w'"));
}

TEST_CASE("hdf5: root, group and dataset attributes of every kind") {
  TempDir dir;
  const std::string path = dir.file("attrs.h5");
  const std::string big(200000, 'x');  // larger than the 64 KiB compact attribute limit
  {
    Hdf5File f(path, Hdf5File::Mode::Create);
    f.set_attr("format", std::string("vmoe-weights-1"));
    f.set_attr("empty", "");
    f.set_attr("config", big);
    f.set_attr("step", int64_t(1) << 40);
    f.set_attr("layers", 12);  // plain int
    f.set_attr("lr", 3.0e-4);
    f.set_attr("case_token/image_size", 8);  // creates the group
    f.set_attr("case_token/classifier", "token");
    const double w = 2.0;
    f.write("params/w", H5Type::f64, {}, &w);
    f.set_attr("params/w/origin", "dataset attribute");
    f.set_attr("step", int64_t(7));                 // replaces
    f.set_attr("lr", std::string("now a string"));  // replaces with another kind
  }
  Hdf5File f(path, Hdf5File::Mode::Read);
  CHECK(f.get_attr_string("format") == "vmoe-weights-1");
  CHECK(f.get_attr_string("empty").empty());
  CHECK(f.get_attr_string("config") == big);
  CHECK(f.get_attr_int("step") == 7);
  CHECK(f.get_attr_int("layers") == 12);
  CHECK(f.get_attr_double("layers") == 12.0);
  CHECK(f.get_attr_string("lr") == "now a string");
  CHECK(f.get_attr_int("case_token/image_size") == 8);
  CHECK(f.get_attr_string("/case_token/classifier") == "token");
  CHECK(f.get_attr_string("params/w/origin") == "dataset attribute");
  CHECK(f.has_attr("step"));
  CHECK(f.has_attr("case_token/image_size"));
  CHECK_FALSE(f.has_attr("image_size"));
  CHECK_FALSE(f.has_attr("missing_group/image_size"));
  CHECK(f.list() == std::vector<std::string>{"params/w"});

  const std::string missing = error_of([&] { f.get_attr_int("nope"); });
  CHECK(contains(missing, "'nope'"));
  CHECK(contains(missing, path));
  CHECK(contains(missing, "no such attribute"));
  const std::string wrong_kind = error_of([&] { f.get_attr_int("format"); });
  CHECK(contains(wrong_kind, "is a string, expected an integer"));
  CHECK(contains(error_of([&] { f.get_attr_string("step"); }), "expected a string"));
  CHECK(contains(error_of([&] { f.get_attr_double("format"); }), "expected a number"));

  Hdf5File real(dir.file("real.h5"), Hdf5File::Mode::Create);
  real.set_attr("x", 0.1);
  CHECK(real.get_attr_double("x") == 0.1);
  CHECK(contains(error_of([&] { real.get_attr_int("x"); }), "is a real number"));
}

TEST_CASE("hdf5: a missing dataset is reported with the file and dataset names") {
  TempDir dir;
  const std::string path = dir.file("missing.h5");
  const float v = 0.0f;
  {
    Hdf5File f(path, Hdf5File::Mode::Create);
    f.write("encoder/block_00/ln1/scale", H5Type::f32, {}, &v);
  }
  Hdf5File f(path, Hdf5File::Mode::Read);
  const std::string msg = error_of([&] { f.read("encoder/block_00/ln2/scale"); });
  CHECK(contains(msg, "'encoder/block_00/ln2/scale'"));
  CHECK(contains(msg, "'" + path + "'"));
  CHECK(contains(msg, "no such dataset"));
  CHECK_THROWS_AS(f.read("encoder/block_00/ln2/scale"), Hdf5Error);
  CHECK(contains(error_of([&] { f.read("encoder/block_00"); }), "is a group, not a dataset"));
  CHECK(contains(error_of([&] { f.read("encoder/block_00/ln1/scale/x"); }), "no such dataset"));
}

TEST_CASE("hdf5: unopenable paths give a one-line error naming the path") {
  TempDir dir;
  const std::string nowhere = dir.file("does_not_exist.h5");
  const std::string text = dir.file("not_hdf5.txt");
  std::ofstream(text) << "this is plain text, not an HDF5 file\n";
  const std::string in_missing_dir = dir.file("no_such_dir/out.h5");

  struct Case {
    std::string path;
    Hdf5File::Mode mode;
    std::string reason;
  };
  const std::vector<Case> cases{
      {nowhere, Hdf5File::Mode::Read, "no such file"},
      {dir.file(""), Hdf5File::Mode::Read, "it is a directory"},
      {text, Hdf5File::Mode::Read, "unable to open file"},
      {text, Hdf5File::Mode::Append, "unable to open file"},
      {in_missing_dir, Hdf5File::Mode::Create, "unable to create file"},
  };
  for (const Case& c : cases) {
    INFO("path " << c.path);
    std::string msg;
    try {
      Hdf5File f(c.path, c.mode);
    } catch (const Hdf5Error& e) {
      msg = e.what();
    }
    INFO("message: " << msg);
    CHECK(contains(msg, "cannot open HDF5 file '" + c.path + "'"));
    CHECK(contains(msg, c.reason));
    CHECK_FALSE(contains(msg, "\n"));
  }
  CHECK_FALSE(fs::exists(nowhere));  // reading never creates
}

TEST_CASE("hdf5: non-empty datasets are chunked (<= 1 MiB) with a Fletcher32 checksum") {
  TempDir dir;
  const std::string path = dir.file("chunks.h5");
  std::vector<float> big(700 * 1000);
  for (size_t i = 0; i < big.size(); ++i)
    big[i] = float(i % 9973) * 0.5f;
  {
    Hdf5File f(path, Hdf5File::Mode::Create);
    write_vec(f, "big", H5Type::f32, {700, 1000}, big);
    write_vec(f, "small", H5Type::i64, {3}, std::vector<int64_t>{1, 2, 3});
    const double s = 1.0;
    f.write("scalar", H5Type::f64, {}, &s);
    f.write("empty", H5Type::u8, {0}, nullptr);
  }
  CHECK(Hdf5File(path, Hdf5File::Mode::Read).read("big").bytes == bytes_of(big));

  Hdf5Lock lock;
  H5FileId file{VMOE_H5_CHECK(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT))};
  auto layout = [&](const char* name, std::vector<hsize_t>* chunk, bool* fletcher) {
    H5DatasetId ds{VMOE_H5_CHECK(H5Dopen2(file.get(), name, H5P_DEFAULT))};
    H5PlistId dcpl{VMOE_H5_CHECK(H5Dget_create_plist(ds.get()))};
    const H5D_layout_t l = H5Pget_layout(dcpl.get());
    *fletcher = false;
    for (int i = 0; i < H5Pget_nfilters(dcpl.get()); ++i) {
      unsigned flags = 0;
      size_t nelmts = 0;
      unsigned config = 0;
      const H5Z_filter_t id =
          H5Pget_filter2(dcpl.get(), unsigned(i), &flags, &nelmts, nullptr, 0, nullptr, &config);
      if (id == H5Z_FILTER_FLETCHER32) *fletcher = true;
    }
    if (l == H5D_CHUNKED) {
      chunk->assign(8, 0);
      chunk->resize(size_t(VMOE_H5_CHECK(H5Pget_chunk(dcpl.get(), 8, chunk->data()))));
    }
    return l;
  };
  std::vector<hsize_t> chunk;
  bool fletcher = false;
  REQUIRE(layout("big", &chunk, &fletcher) == H5D_CHUNKED);
  CHECK(fletcher);
  REQUIRE(chunk.size() == 2);
  CHECK(chunk[1] == 1000);  // whole rows
  CHECK(chunk[0] * chunk[1] * sizeof(float) <= (size_t(1) << 20));
  CHECK(chunk[0] < 700);  // really split
  CHECK(layout("small", &chunk, &fletcher) == H5D_CHUNKED);
  CHECK(fletcher);
  CHECK(layout("scalar", &chunk, &fletcher) == H5D_CONTIGUOUS);  // scalars cannot be chunked
  CHECK(layout("empty", &chunk, &fletcher) != H5D_CHUNKED);
}

TEST_CASE("hdf5: a flipped byte in a dataset's data is detected on read") {
  TempDir dir;
  const std::string path = dir.file("corrupt.h5");
  std::vector<int32_t> data(4096);
  for (size_t i = 0; i < data.size(); ++i)
    data[i] = int32_t(i * 2654435761u);
  const std::vector<double> other{1.0, 2.0, 3.0};
  {
    Hdf5File f(path, Hdf5File::Mode::Create);
    write_vec(f, "params/victim", H5Type::i32, {64, 64}, data);
    write_vec(f, "params/bystander", H5Type::f64, {3}, other);
  }
  // Locate the (single) chunk of the victim on disk and check it holds exactly our bytes.
  haddr_t address = 0;
  hsize_t stored_size = 0;
  {
    Hdf5Lock lock;
    H5FileId file{VMOE_H5_CHECK(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT))};
    H5DatasetId ds{VMOE_H5_CHECK(H5Dopen2(file.get(), "params/victim", H5P_DEFAULT))};
    H5SpaceId space{VMOE_H5_CHECK(H5Dget_space(ds.get()))};
    hsize_t nchunks = 0;
    VMOE_H5_CHECK(H5Dget_num_chunks(ds.get(), space.get(), &nchunks));
    REQUIRE(nchunks == 1);
    hsize_t offset[2] = {0, 0};
    unsigned filter_mask = 0;
    VMOE_H5_CHECK(
        H5Dget_chunk_info(ds.get(), space.get(), 0, offset, &filter_mask, &address, &stored_size));
  }
  std::vector<char> bytes = read_file_bytes(path);
  const size_t data_bytes = data.size() * sizeof(int32_t);
  REQUIRE(stored_size == data_bytes + 4);  // the data, then its 4-byte Fletcher32 checksum
  REQUIRE(address + stored_size <= bytes.size());
  REQUIRE(std::memcmp(bytes.data() + address, data.data(), data_bytes) == 0);

  bytes[address + data_bytes / 2] ^= 0x10;
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), std::streamsize(bytes.size()));
  }
  Hdf5File f(path, Hdf5File::Mode::Read);
  const std::string msg = error_of([&] { f.read("params/victim"); });
  INFO("message: " << msg);
  CHECK(contains(msg, "'params/victim'"));
  CHECK(contains(msg, path));
  CHECK(contains(msg, "Fletcher32"));
  CHECK_THROWS_AS(f.read("params/victim"), Hdf5Error);
  CHECK(f.read("params/bystander").bytes == bytes_of(other));  // the rest of the file is fine
}

TEST_CASE("hdf5: Create truncates / Append keeps / Read refuses writes / rewrites replace") {
  TempDir dir;
  const std::string path = dir.file("modes.h5");
  const std::vector<float> a{1, 2, 3, 4};
  const std::vector<float> b{5, 6, 7, 8};
  {
    Hdf5File f(path, Hdf5File::Mode::Create);
    write_vec(f, "a", H5Type::f32, {4}, a);
    f.set_attr("step", 1);
  }
  {
    Hdf5File f(path, Hdf5File::Mode::Append);
    CHECK(f.get_attr_int("step") == 1);
    write_vec(f, "b", H5Type::f32, {4}, b);
    write_vec(f, "a", H5Type::f32, {4}, b);                           // same shape: in place
    write_vec(f, "b", H5Type::f64, {2}, std::vector<double>{9, 10});  // new type and shape
    f.flush();
  }
  {
    Hdf5File f(path, Hdf5File::Mode::Read);
    CHECK(f.list() == std::vector<std::string>{"a", "b"});
    CHECK(f.read("a").bytes == bytes_of(b));
    H5Array rb = f.read("b");
    CHECK(rb.type == H5Type::f64);
    CHECK(rb.shape == std::vector<int64_t>{2});
    CHECK(rb.bytes == bytes_of(std::vector<double>{9, 10}));
    const std::string msg = error_of([&] { write_vec(f, "c", H5Type::f32, {4}, a); });
    CHECK(contains(msg, "read-only"));
    CHECK(contains(msg, "'c'"));
    CHECK_THROWS_AS(f.set_attr("k", 1), Hdf5Error);
    f.flush();  // harmless on a read-only file
  }
  {
    Hdf5File f(path, Hdf5File::Mode::Create);
    CHECK(f.list().empty());
    CHECK_FALSE(f.has_attr("step"));
    write_vec(f, "x", H5Type::f32, {4}, a);
    CHECK(contains(error_of([&] { write_vec(f, "x/y", H5Type::f32, {4}, a); }),
                   "'x' exists and is not a group"));
    CHECK(contains(error_of([&] { f.set_attr("x/y/z", 1); }), "'x' exists and is not a group"));
    CHECK_THROWS_AS(f.write("neg", H5Type::f32, {-1}, a.data()), std::invalid_argument);
    CHECK_THROWS_AS(f.write("null", H5Type::f32, {4}, nullptr), std::invalid_argument);
  }
  Hdf5File appended(dir.file("new_by_append.h5"), Hdf5File::Mode::Append);
  write_vec(appended, "a", H5Type::f32, {4}, a);
  CHECK(appended.read("a").bytes == bytes_of(a));
}

TEST_CASE("hdf5: close and move and reopen") {
  TempDir dir;
  const std::string path = dir.file("close.h5");
  Hdf5File f(path, Hdf5File::Mode::Create);
  const int64_t v = 42;
  f.write("v", H5Type::i64, {}, &v);
  Hdf5File moved = std::move(f);
  CHECK(moved.path() == path);
  CHECK(moved.has("v"));
  moved.close();
  moved.close();  // a second close does nothing
  CHECK(contains(error_of([&] { moved.read("v"); }), "is closed"));
  Hdf5File again(path, Hdf5File::Mode::Read);
  CHECK(again.read("v").bytes == bytes_of(std::vector<int64_t>{42}));
  CHECK(again.mode() == Hdf5File::Mode::Read);
}

TEST_CASE("hdf5: VMOE_H5_CHECK names the call and the source line and HDF5's message") {
  TempDir dir;
  const std::string path = dir.file("check.h5");
  Hdf5File(path, Hdf5File::Mode::Create).set_attr("x", 1);
  hdf5_init();
  Hdf5Lock lock;
  H5FileId file{VMOE_H5_CHECK(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT))};
  std::string msg;
  try {
    VMOE_H5_CHECK(H5Gopen2(file.get(), "no_such_group", H5P_DEFAULT));
  } catch (const Hdf5Error& e) {
    msg = e.what();
  }
  INFO("message: " << msg);
  CHECK(contains(msg, "H5Gopen2(file.get(), \"no_such_group\", H5P_DEFAULT)"));
  CHECK(contains(msg, "test_hdf5_file.cpp:"));
  CHECK(contains(msg, "H5Gopen2(): unable to open group"));
  CHECK(hdf5_error_stack().empty());  // the stack was consumed and cleared

  // Handles close exactly once and transfer ownership on move.
  const hid_t raw = VMOE_H5_CHECK(H5Screate(H5S_SCALAR));
  {
    H5SpaceId a{raw};
    H5SpaceId b = std::move(a);
    CHECK_FALSE(a);
    CHECK(b.get() == raw);
    CHECK(H5Iis_valid(raw) > 0);
  }
  CHECK(H5Iis_valid(raw) <= 0);
}

TEST_CASE("hdf5: files can be used from several threads at once") {
  TempDir dir;
  constexpr int kThreads = 4;
  std::vector<std::thread> threads;
  std::vector<int> ok(kThreads, 0);
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      const std::string path = dir.file("thread_" + std::to_string(t) + ".h5");
      int good = 0;
      {
        Hdf5File f(path, Hdf5File::Mode::Create);
        for (int i = 0; i < 40; ++i) {
          std::vector<int32_t> v(257, t * 1000 + i);
          f.write("g/d" + std::to_string(i), H5Type::i32, {257}, v.data());
        }
      }
      Hdf5File f(path, Hdf5File::Mode::Read);
      for (int i = 0; i < 40; ++i) {
        H5Array a = f.read("g/d" + std::to_string(i));
        if (a.bytes == bytes_of(std::vector<int32_t>(257, t * 1000 + i))) ++good;
      }
      ok[size_t(t)] = good;
    });
  }
  for (std::thread& th : threads)
    th.join();
  for (int t = 0; t < kThreads; ++t)
    CHECK(ok[size_t(t)] == 40);
}

TEST_CASE("hdf5: reads the h5py-written ViT golden file") {
  const std::string path = std::string(VMOE_SOURCE_DIR) + "/test/golden/vit_golden.h5";
  Hdf5File f(path, Hdf5File::Mode::Read);
  CHECK(f.get_attr_string("case_token/classifier") == "token");
  CHECK(f.get_attr_string("gap_sigmoid/classifier") == "gap");
  CHECK(f.get_attr_string("gap_sigmoid/loss") == "sigmoid_xent");
  CHECK(f.get_attr_int("case_token/hidden_size") == 16);
  H5Array images = f.read("case_token/inputs/images");
  CHECK(images.type == H5Type::f64);
  CHECK(images.shape == std::vector<int64_t>{3, 8, 8, 3});
  H5Array labels = f.read("case_token/inputs/labels");
  CHECK(labels.type == H5Type::i32);
  CHECK(labels.shape == std::vector<int64_t>{3});
  H5Array loss = f.read("case_token/outputs/loss");
  CHECK(loss.shape.empty());
  double loss_value = 0;
  std::memcpy(&loss_value, loss.bytes.data(), sizeof(double));
  CHECK(loss_value > 0.0);
  const std::vector<std::string> names = f.list();
  CHECK(std::count(names.begin(), names.end(), "case_token/params/encoder/block_01/mlp/fc2/bias") ==
        1);
  CHECK(std::count(names.begin(), names.end(), "gap_sigmoid/grads/images") == 1);
}
