#include "trainers/flags.h"

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <numeric>
#include <vector>

#include "autograd/error.h"

namespace vq::train {

Flags::Flags(std::string program, std::string summary)
    : program_(std::move(program)), summary_(std::move(summary)) {}

void Flags::add_string(const std::string& name, std::string* value, const std::string& help) {
  flags_.push_back({name, "text", help, value->empty() ? "\"\"" : *value,
                    [value](const std::string& v) { *value = v; }});
}

void Flags::add_int(const std::string& name, int64_t* value, const std::string& help, int64_t min) {
  flags_.push_back(
      {name, "int", help, std::to_string(*value), [value, name, min](const std::string& v) {
         char* end = nullptr;
         errno = 0;
         const long long parsed = std::strtoll(v.c_str(), &end, 10);
         VQ_CHECK(!v.empty() && *end == '\0' && errno == 0, "--{}: '{}' is not an integer", name,
                  v);
         VQ_CHECK(parsed >= min, "--{}: {} is below the minimum {}", name, parsed, min);
         *value = parsed;
       }});
}

void Flags::add_double(const std::string& name, double* value, const std::string& help,
                       double min) {
  flags_.push_back(
      {name, "number", help, fmt::format("{}", *value), [value, name, min](const std::string& v) {
         char* end = nullptr;
         errno = 0;
         const double parsed = std::strtod(v.c_str(), &end);
         VQ_CHECK(!v.empty() && *end == '\0' && errno == 0 && std::isfinite(parsed),
                  "--{}: '{}' is not a finite number", name, v);
         VQ_CHECK(parsed >= min, "--{}: {} is below the minimum {}", name, parsed, min);
         *value = parsed;
       }});
}

void Flags::add_bool(const std::string& name, bool* value, const std::string& help) {
  flags_.push_back(
      {name, "bool", help, *value ? "true" : "false", [value, name](const std::string& v) {
         VQ_CHECK(v == "true" || v == "false" || v == "1" || v == "0",
                  "--{}: '{}' is not a boolean (true or false)", name, v);
         *value = v == "true" || v == "1";
       }});
}

const Flags::Flag* Flags::find(const std::string& name) const {
  for (const Flag& f : flags_) {
    if (f.name == name) return &f;
  }
  return nullptr;
}

namespace {

// Levenshtein distance: the fewest single-character insertions, deletions and substitutions.
size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> row(b.size() + 1);
  std::iota(row.begin(), row.end(), size_t{0});
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t substitute = diagonal + (a[i - 1] == b[j - 1] ? 0 : 1);
      diagonal = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, substitute});
    }
  }
  return row[b.size()];
}

}  // namespace

std::string Flags::peek(int argc, char** argv, const std::string& name, std::string fallback) {
  const std::string flag = "--" + name;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == flag && i + 1 < argc) {
      fallback = argv[++i];
    } else if (arg.rfind(flag + "=", 0) == 0) {
      fallback = arg.substr(flag.size() + 1);
    }
  }
  return fallback;
}

bool Flags::parse(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      std::fputs(help().c_str(), stdout);
      return false;
    }
    VQ_CHECK(arg.rfind("--", 0) == 0 && arg.size() > 2,
             "unexpected argument '{}' (flags start with --; see --help)", arg);
    std::string name = arg.substr(2), value;
    const size_t eq = name.find('=');
    const bool inline_value = eq != std::string::npos;
    if (inline_value) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
    }
    const Flag* flag = find(name);
    if (flag == nullptr) {
      std::string close;  // the nearest flag name, if it is near enough to be a typo
      size_t best = std::max<size_t>(2, name.size() / 3) + 1;
      for (const Flag& f : flags_) {
        const size_t d = edit_distance(name, f.name);
        if (d < best) {
          best = d;
          close = f.name;
        }
      }
      throw Error(fmt::format("unknown flag --{}{} (see --help)", name,
                              close.empty() ? "" : "; did you mean --" + close + "?"));
    }
    if (!inline_value) {
      if (flag->type == "bool") {
        value = "true";
      } else {
        VQ_CHECK(i + 1 < argc, "--{} needs a value ({})", name, flag->type);
        value = argv[++i];
      }
    }
    flag->assign(value);
    set_.insert(name);
  }
  return true;
}

std::string Flags::help() const {
  std::string out = fmt::format("usage: {} [flags]\n{}\n\nflags:\n", program_, summary_);
  for (const Flag& f : flags_) {
    out += fmt::format("  --{:<26} {}", f.name + (f.type == "bool" ? "" : " " + f.type), f.help);
    out += fmt::format(" (default: {})\n", f.default_text);
  }
  if (!epilogue_.empty()) out += "\n" + epilogue_ + "\n";
  return out;
}

}  // namespace vq::train
