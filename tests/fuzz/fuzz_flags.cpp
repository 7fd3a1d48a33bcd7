// The command-line parser: the input's lines are the arguments, for flags of every type
// (`--name value`, `--name=value`, booleans, numbers with limits, unknown flags and suggestions).
#include <algorithm>
#include <cstdio>
#include <vector>

#include "fuzz_util.h"
#include "trainers/flags.h"

namespace {

void parse(const std::string& input) {
  std::vector<std::string> args = {"program"};
  for (size_t start = 0; start <= input.size();) {
    const size_t end = std::min(input.find('\n', start), input.size());
    args.push_back(input.substr(start, end - start));
    start = end + 1;
  }
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  std::string text = "x";
  int64_t count = 1, limited = 5;
  double rate = 0.5;
  bool on = false;
  vq::train::Flags flags("program", "a fuzzing target");
  flags.add_string("text", &text, "a string");
  flags.add_int("count", &count, "an integer");
  flags.add_int("limited", &limited, "an integer of at least 2", 2);
  flags.add_double("rate", &rate, "a number of at least 0", 0);
  flags.add_bool("on", &on, "a switch");
  // --help prints to stdout; keep the fuzzer's output readable.
  static const bool quiet = std::freopen("/dev/null", "w", stdout) != nullptr;
  (void)quiet;
  flags.parse(static_cast<int>(argv.size()), argv.data());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return vq::fuzz::run_one(data, size, parse);
}
