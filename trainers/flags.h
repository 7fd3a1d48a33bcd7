// Command-line flags for our programs: `--name value` or `--name=value`, booleans as `--name`
// (or `--name=true|false`). Each flag has a type, default and help line; --help prints them all.
// Unknown flags, missing or malformed values and values out of range are errors naming the flag.
#pragma once

#include <cstdint>
#include <functional>
#include <set>
#include <string>
#include <vector>

namespace vq::train {

class Flags {
 public:
  Flags(std::string program, std::string summary);

  void add_string(const std::string& name, std::string* value, const std::string& help);
  void add_int(const std::string& name, int64_t* value, const std::string& help,
               int64_t min = INT64_MIN);
  void add_double(const std::string& name, double* value, const std::string& help,
                  double min = -1e300);
  void add_bool(const std::string& name, bool* value, const std::string& help);

  // Parses argv; returns false when --help was printed (the caller exits 0). Throws vq::Error on
  // bad input.
  bool parse(int argc, char** argv);
  bool was_set(const std::string& name) const { return set_.count(name) > 0; }
  // Text --help prints after the flags (a table the flags refer to).
  void set_epilogue(std::string text) { epilogue_ = std::move(text); }
  // The value argv gives a flag (`--name value` or `--name=value`; the last one wins), or
  // `fallback`, before any flag is declared: a flag that decides the others' defaults (a model
  // config) is read first, so that --help shows the defaults that apply.
  static std::string peek(int argc, char** argv, const std::string& name, std::string fallback);
  std::string help() const;

 private:
  struct Flag {
    std::string name, type, help, default_text;
    std::function<void(const std::string&)> assign;
  };
  const Flag* find(const std::string& name) const;

  std::string program_, summary_, epilogue_;
  std::vector<Flag> flags_;
  std::set<std::string> set_;
};

}  // namespace vq::train
