// safetensors: the exact bytes of a hand-built file, round trips of every dtype, one test per
// validation error and limit, checkpoints (and what their loader refuses), and interop with
// Python's safetensors package (when the build knows a Python that has it).
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "nn/checkpoint.h"
#include "nn/file_io.h"
#include "nn/safetensors.h"
#include "test_util.h"

namespace vq::nn {
namespace {

namespace fs = std::filesystem;
using test::allclose;

std::string le64(uint64_t v) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = static_cast<char>((v >> (8 * i)) & 0xff);
  return s;
}

// A file with a header JSON and data bytes, assembled by hand.
std::string file_bytes(const std::string& header, const std::string& data) {
  return le64(header.size()) + header + data;
}

const std::string& temp_dir() {  // one per test process, made once
  static const std::string dir = test::temp_path("safetensors");
  return dir;
}

TEST(Safetensors, BytesMatchTheFormatExactly) {
  const Tensor a = from_vector<float>({1.0f, -2.0f}, {2});
  const Tensor b = from_vector<int64_t>({7}, {1, 1});
  const std::string bytes = safetensors_bytes({{"a", a}, {"b", b}}, {{"k", "v"}});
  // The I64 tensor goes first (widest dtype first keeps every tensor aligned).
  std::string header =
      R"({"__metadata__":{"k":"v"},"b":{"dtype":"I64","shape":[1,1],"data_offsets":[0,8]},)"
      R"("a":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})";
  header.append((8 - header.size() % 8) % 8, ' ');
  const std::string data("\x07\x00\x00\x00\x00\x00\x00\x00\x00\x00\x80\x3f\x00\x00\x00\xc0", 16);
  EXPECT_EQ(bytes, file_bytes(header, data));
  EXPECT_EQ((8 + header.size()) % 8, 0u);
}

TEST(Safetensors, RoundTripsEveryDtype) {
  const NamedTensors tensors = {
      {"f32", test::randn32({3, 4})},
      {"f64", test::randn64({2})},
      {"f16", from_vector<float>({1.5f, -0.25f}, {2}).to(DType::Float16)},
      {"bf16", from_vector<float>({3.0f}, {1}).to(DType::BFloat16)},
      {"i64", arange(0, 5)},
      {"u8", from_vector<uint8_t>({0, 128, 255}, {3})},
      {"empty", zeros({0, 3})},
      {"scalar", scalar_tensor(2.0)},
  };
  const SafetensorsFile f = parse_safetensors(safetensors_bytes(tensors, {{"note", "x"}}), "mem");
  ASSERT_EQ(f.tensors.size(), tensors.size());
  EXPECT_EQ(f.metadata.at("note"), "x");
  for (const auto& [name, original] : tensors) {
    auto it = std::find_if(f.tensors.begin(), f.tensors.end(),
                           [&](const auto& e) { return e.first == name; });
    ASSERT_NE(it, f.tensors.end()) << name;
    EXPECT_EQ(it->second.dtype(), original.dtype()) << name;
    EXPECT_TRUE(allclose(it->second.to(DType::Float64), original.to(DType::Float64), 0, 0)) << name;
  }
}

// Int64 tensors stored as I32 or I16 on request (token indices): the narrow bytes in the file,
// int64 again when read, by either reader; a value that does not fit is refused.
TEST(Safetensors, NarrowIntegersRoundTripAsInt64) {
  const Tensor small = from_vector<int64_t>({0, -32768, 32767, 5}, {2, 2});
  const Tensor wide = from_vector<int64_t>({70000, -2147483648, 2147483647}, {3});
  const std::string bytes = safetensors_bytes({{"s", small}, {"w", wide}, {"f", ones({1})}}, {},
                                              {{"s", "I16"}, {"w", "I32"}});
  // I32 (4 bytes) and F32 before I16: every tensor aligned to its element size.
  EXPECT_NE(bytes.find(R"("s":{"dtype":"I16","shape":[2,2],"data_offsets":[16,24]})"),
            std::string::npos)
      << bytes.substr(8, 200);
  const SafetensorsFile f = parse_safetensors(bytes, "mem");
  std::map<std::string, Tensor> t(f.tensors.begin(), f.tensors.end());
  EXPECT_EQ(t.at("s").dtype(), DType::Int64);
  EXPECT_EQ(t.at("s").to_vector<int64_t>(), small.to_vector<int64_t>());
  EXPECT_EQ(t.at("w").to_vector<int64_t>(), wide.to_vector<int64_t>());
  const std::string dir = temp_dir();
  save_safetensors(dir + "/narrow.safetensors", {{"s", small}}, {}, {{"s", "I16"}});
  EXPECT_EQ(load_safetensors(dir + "/narrow.safetensors").tensors[0].second.to_vector<int64_t>(),
            small.to_vector<int64_t>());
  EXPECT_NE(describe_safetensors(read_safetensors_index(dir + "/narrow.safetensors")).find("I16"),
            std::string::npos);
  EXPECT_VQ_ERROR(safetensors_bytes({{"w", wide}}, {}, {{"w", "I16"}}),
                  "tensor 'w' holds 70000, which I16 cannot");
  EXPECT_VQ_ERROR(safetensors_bytes({{"f", ones({1})}}, {}, {{"f", "I32"}}),
                  "tensor 'f' is float32; only int64 is stored as I32");
  EXPECT_VQ_ERROR(safetensors_bytes({{"s", small}}, {}, {{"s", "U16"}}),
                  "tensor 's' cannot be narrowed to 'U16'");
}

// One corrupt file per validation rule, each with the message it must produce.
TEST(Safetensors, RejectsCorruptFilesWithClearErrors) {
  const std::string good_entry = R"("a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})";
  const std::string eight(8, '\0');
  struct Case {
    std::string bytes, expected;
  };
  const std::vector<Case> cases = {
      {"", "truncated: 0 bytes"},
      {std::string("\x05\x00\x00", 3), "truncated: 3 bytes"},
      {le64(100) + "{}", "header length 100 is larger than the 2 bytes"},
      {file_bytes("{\"a\":", ""), "(header): malformed JSON"},
      {le64(200'000'000) + "{}", "above the limit of 100000000 bytes (kMaxSafetensorsHeaderBytes)"},
      {file_bytes(std::string(100, '[') + std::string(100, ']'), ""),
       "JSON nested deeper than 64 levels"},
      // Element counts that overflow 64 bits must not wrap around to a small size.
      {file_bytes(R"({"a":{"dtype":"F32","shape":[4294967296,4294967296,2],"data_offsets":[0,8]}})",
                  eight),
       "of at most the data section's 8 bytes"},
      {file_bytes(R"({"a":{"dtype":"F32","shape":[8,8,8,8,8,8,8,8,8,8,8,8,8,8,8,8,8,8,8,8,8,8],)"
                  R"("data_offsets":[0,8]}})",
                  eight),
       "holds 8 bytes"},
      {file_bytes("[1,2]", ""), "the header is not a JSON object"},
      {file_bytes(R"({"a":{"dtype":"Q8","shape":[1],"data_offsets":[0,1]}})", "x"),
       "unsupported dtype 'Q8'"},
      {file_bytes(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", "1234"),
       "outside the data section of 4 bytes"},
      {file_bytes(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", eight),
       "holds 8 bytes"},
      {file_bytes(R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", eight),
       "not a non-negative integer"},
      {file_bytes(R"({"a":{"dtype":"F32","shape":[2]}})", eight), "needs 'data_offsets'"},
      {file_bytes("{" + good_entry + R"(,"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                  eight),
       "overlap"},
      {file_bytes("{" + good_entry + R"(,"b":{"dtype":"U8","shape":[1],"data_offsets":[9,10]}})",
                  eight + "xx"),
       "bytes [8, 9) before entry 'b' belong to no tensor"},
      {file_bytes(R"({"a":{"dtype":"I64","shape":[1],"data_offsets":[1,9]}})", eight + "x"),
       "misaligned"},
      {file_bytes("{" + good_entry + "}", eight + "xyz"), "3 trailing bytes"},
      {file_bytes("{" + good_entry + "," + good_entry + "}", eight),
       "the key 'a' appears twice in one JSON object"},
      {file_bytes(R"({"__metadata__":{"k":1}})", ""), "__metadata__ value of 'k' is not a string"},
  };
  for (const auto& c : cases) {
    EXPECT_VQ_ERROR(parse_safetensors(c.bytes, "bad.safetensors"), c.expected);
  }
  EXPECT_VQ_ERROR(load_safetensors("/nonexistent/x.safetensors"),
                  "safetensors file '/nonexistent/x.safetensors' does not exist");
  EXPECT_VQ_ERROR(load_safetensors(temp_dir()), "is not a regular file");
}

TEST(Safetensors, DescribeListsTensorsAndMetadata) {
  const std::string bytes =
      safetensors_bytes({{"encoder.conv_in.weight", zeros({64, 1, 3, 3})}, {"step", arange(0, 1)}},
                        {{"vqgan.training_state", R"({"step":5})"}});
  const SafetensorsIndex f = parse_safetensors_index(bytes, bytes.size(), "mem");
  const std::string text = describe_safetensors(f);
  EXPECT_NE(text.find("encoder.conv_in.weight  F32   [64, 1, 3, 3]"), std::string::npos) << text;
  EXPECT_NE(text.find("2304"), std::string::npos) << text;
  EXPECT_NE(text.find("2 tensors, 577 elements"), std::string::npos) << text;
  EXPECT_NE(text.find("vqgan.training_state: {\n      \"step\": 5\n    }"), std::string::npos)
      << text;
  EXPECT_EQ(describe_safetensors(f, false).find("encoder"), std::string::npos);
}

// Reading by offset: the header alone (no tensor is read), or the tensors a filter keeps, each
// read where the header says; a file cut anywhere is refused by either, naming the file.
TEST(Safetensors, ReadsTheHeaderAloneAndFilteredTensorsByOffset) {
  const Tensor w = test::randn32({4, 4}), b = arange(0, 3);
  const std::string path = temp_dir() + "/offsets.safetensors";
  save_safetensors(path, {{"w", w}, {"b", b}, {"optimizer.w", mul(w, 2.0)}}, {{"k", "v"}});
  const SafetensorsIndex index = read_safetensors_index(path);
  ASSERT_EQ(index.entries.size(), 3u);
  EXPECT_EQ(index.metadata.at("k"), "v");
  EXPECT_EQ(index.data_bytes(), 2 * 16 * 4 + 3 * 8u);
  const SafetensorsFile some = load_safetensors(
      path, [](const std::string& name) { return name.rfind("optimizer.", 0) != 0; });
  ASSERT_EQ(some.tensors.size(), 2u);
  for (const auto& [name, t] : some.tensors) {
    EXPECT_TRUE(allclose(t, name == "w" ? w : b, 0, 0)) << name;
  }
  const std::string bytes = nn::read_file(path, 1 << 20, "test");
  for (size_t cut : {size_t{4}, size_t{20}, bytes.size() - 1}) {
    const std::string cut_path = temp_dir() + "/cut.safetensors";
    nn::write_file_atomically(cut_path, std::string_view(bytes).substr(0, cut));
    EXPECT_THROW(read_safetensors_index(cut_path), Error) << "cut at " << cut;
    EXPECT_THROW(load_safetensors(cut_path), Error) << "cut at " << cut;
  }
  EXPECT_VQ_ERROR(read_safetensors_index("/nonexistent/x.safetensors"), "does not exist");
}

TEST(Safetensors, TruncatingAValidFileAnywhereIsCaught) {
  const std::string bytes = safetensors_bytes({{"w", test::randn32({4, 4})}, {"b", arange(0, 3)}});
  for (size_t cut = 0; cut < bytes.size(); cut += 7) {
    EXPECT_THROW(parse_safetensors(bytes.substr(0, cut), "cut"), Error) << "cut at " << cut;
  }
}

TEST(Checkpoint, GroupsAndTrainingStateRoundTrip) {
  const std::string path = temp_dir() + "/ckpt.safetensors";
  TrainingState state;
  state.step = 1234;
  state.epoch = 3;
  state.total_steps = 987654321;
  state.maintenance_pending = true;
  state.best_val_loss = 0.125;
  state.config_json = R"({"preset":"improved"})";
  save_checkpoint(path,
                  {{"", {{"encoder.conv_in.weight", ones({2, 2})}}},
                   {"optimizer.g.", {{"exp_avg.w", zeros({2})}}}},
                  state);
  const LoadedCheckpoint ck = load_checkpoint(path);
  ASSERT_TRUE(ck.has_state);
  EXPECT_EQ(ck.state.step, 1234);
  EXPECT_EQ(ck.state.epoch, 3);
  EXPECT_EQ(ck.state.total_steps, 987654321);
  EXPECT_TRUE(ck.state.maintenance_pending);
  EXPECT_EQ(ck.state.best_val_loss, 0.125);
  EXPECT_EQ(ck.state.config_json, R"({"preset":"improved"})");
  EXPECT_EQ(ck.group("optimizer.g.").at(0).first, "exp_avg.w");
  EXPECT_EQ(ck.without({"optimizer."}).size(), 1u);
  // An infinite best loss (nothing validated yet) survives as null in JSON.
  save_checkpoint(path, {}, TrainingState{});
  EXPECT_TRUE(std::isinf(load_checkpoint(path).state.best_val_loss));
}

TEST(Checkpoint, RefusesNonFiniteTensorsNamingThemUnlessAllowed) {
  const std::string path = temp_dir() + "/nan.safetensors";
  Tensor codes = ones({4, 2});
  codes.data<float>()[3] = NAN;
  codes.data<float>()[5] = INFINITY;
  save_safetensors(path, {{"encoder.w", ones({2})},
                          {"quantize.embedding.weight", codes},
                          {"step", zeros({1}, DType::Int64)}});
  EXPECT_VQ_ERROR(load_checkpoint(path),
                  "tensor 'quantize.embedding.weight' holds 2 non-finite values (NaN or infinity) "
                  "out of 8");
  const LoadedCheckpoint anyway = load_checkpoint(path, true);
  EXPECT_TRUE(std::isnan(anyway.group("quantize.").at(0).second.data<float>()[3]));
}

TEST(Checkpoint, RefusesAMalformedTrainingState) {
  const std::string path = temp_dir() + "/state.safetensors";
  save_safetensors(path, {},
                   {{"vqgan.training_state", R"({"step":-5,"epoch":0,"best_val_loss":null})"}});
  EXPECT_VQ_ERROR(load_checkpoint(path), "has a negative count (step -5");
  save_safetensors(path, {}, {{"vqgan.training_state", R"({"epoch":0})"}});
  EXPECT_VQ_ERROR(load_checkpoint(path), "the training state in the metadata is malformed");
  save_safetensors(path, {}, {{"vqgan.training_state", "{"}});
  EXPECT_VQ_ERROR(load_checkpoint(path), "(training state): malformed JSON");
}

#ifdef VQ_PYTHON
// Our file loads in Python's safetensors with the same values, and Python's file loads here.
TEST(Safetensors, InteropWithPythonPackage) {
  const std::string dir = temp_dir();
  save_safetensors(dir + "/ours.safetensors",
                   {{"x", from_vector<float>({1.5f, -2.0f, 3.25f, 0.0f}, {2, 2})},
                    {"i", arange(0, 3)},
                    {"i16", from_vector<int64_t>({-7, 300}, {2})}},
                   {{"who", "vqgan.cpp"}}, {{"i16", "I16"}});
  const std::string script = dir + "/interop.py";
  std::ofstream(script)
      << "import sys, numpy as np\n"
         "from safetensors.numpy import load_file, save_file\n"
         "from safetensors import safe_open\n"
         "d = load_file(sys.argv[1] + '/ours.safetensors')\n"
         "assert d['x'].dtype == np.float32 and d['x'].shape == (2, 2), d['x']\n"
         "assert d['x'].tolist() == [[1.5, -2.0], [3.25, 0.0]], d['x']\n"
         "assert d['i'].tolist() == [0, 1, 2]\n"
         "assert d['i16'].dtype == np.int16 and d['i16'].tolist() == [-7, 300], d['i16']\n"
         "with safe_open(sys.argv[1] + '/ours.safetensors', 'np') as f:\n"
         "    assert f.metadata()['who'] == 'vqgan.cpp'\n"
         "save_file({'y': np.arange(6, dtype=np.float64).reshape(3, 2), 'h': np.array([0.5], "
         "dtype=np.float16), 'n': np.array([-5, 40000], dtype=np.int32)},\n"
         "          sys.argv[1] + '/theirs.safetensors', metadata={'from': 'python'})\n";
  const std::string cmd = fmt::format("{} {} {}", VQ_PYTHON, script, dir);
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  const SafetensorsFile f = load_safetensors(dir + "/theirs.safetensors");
  EXPECT_EQ(f.metadata.at("from"), "python");
  for (const auto& [name, t] : f.tensors) {
    if (name == "y") {
      EXPECT_TRUE(allclose(t, arange(0, 6, DType::Float64).view({3, 2}), 0, 0));
    } else if (name == "n") {  // I32 from numpy, read as int64
      EXPECT_EQ(t.to_vector<int64_t>(), (std::vector<int64_t>{-5, 40000}));
    } else {
      EXPECT_EQ(t.to(DType::Float32).item(), 0.5);
    }
  }
}
#endif

}  // namespace
}  // namespace vq::nn
