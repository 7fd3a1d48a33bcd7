// The op table (op_table.h) against ops.h: every declared op has cases or a stated exemption, and
// every differentiable case small enough passes a float64 gradcheck (the CUDA comparison of the
// same cases is Cuda/OpCaseParity.MatchesCpu/<op> in test_cuda).
#include <cctype>
#include <cmath>
#include <fstream>
#include <set>

#include "test_util.h"
#include "tests/op_table.h"

namespace vq {
namespace {

// The function names declared at namespace level in autograd/ops.h: an unindented line that is
// not a struct, namespace, using or template line, whose first '(' follows a lower-case name
// after a space, '*' or '&' (so operator+ and the like are left out).
std::set<std::string> declared_ops() {
  std::ifstream header(VQ_OPS_HEADER);
  EXPECT_TRUE(header.good()) << "cannot read " << VQ_OPS_HEADER;
  std::set<std::string> names;
  std::string line;
  while (std::getline(header, line)) {
    if (line.empty() || !std::isalpha(static_cast<unsigned char>(line[0]))) continue;
    bool skip = false;
    for (const char* word : {"struct ", "namespace ", "using ", "template "}) {
      skip |= line.rfind(word, 0) == 0;
    }
    const size_t paren = line.find('(');
    if (skip || paren == std::string::npos) continue;
    size_t start = paren;
    while (start > 0 &&
           (std::islower(static_cast<unsigned char>(line[start - 1])) ||
            std::isdigit(static_cast<unsigned char>(line[start - 1])) || line[start - 1] == '_')) {
      --start;
    }
    if (start == paren || start == 0) continue;
    const char before = line[start - 1];
    if (before == ' ' || before == '*' || before == '&')
      names.insert(line.substr(start, paren - start));
  }
  return names;
}

TEST(OpTable, EveryDeclaredOpHasCasesOrAnExemption) {
  const std::set<std::string> declared = declared_ops();
  EXPECT_GT(declared.size(), 60u) << "the parser found too few declarations in ops.h";
  std::set<std::string> with_cases, exempt;
  for (const auto& c : test::op_cases()) with_cases.insert(c.op);
  for (const auto& [name, why] : test::op_exemptions()) {
    exempt.insert(name);
    EXPECT_FALSE(why.empty()) << name;
    EXPECT_FALSE(with_cases.count(name)) << name << " has cases and an exemption";
  }
  for (const std::string& name : declared) {
    EXPECT_TRUE(with_cases.count(name) || exempt.count(name))
        << name << " is declared in ops.h but has no case in tests/op_table.cpp and no exemption";
  }
  for (const std::string& name : with_cases) {
    EXPECT_TRUE(declared.count(name)) << name << " has cases but is not declared in ops.h";
  }
  for (const std::string& name : exempt) {
    EXPECT_TRUE(declared.count(name)) << name << " is exempt but not declared in ops.h";
  }
}

TEST(OpTable, DifferentiableCasesPassGradcheckF64) {
  for (const auto& c : test::op_cases()) {
    SCOPED_TRACE(c.name());
    if (c.differentiable && c.finite_differences) {
      EXPECT_TRUE(test::grads_ok(c.fn, c.inputs));
    } else {
      EXPECT_NO_THROW(c.fn(c.inputs));
    }
  }
}

// A case too large for finite differences leans on a gradchecked case of the same op.
TEST(OpTable, EveryDifferentiableOpHasAGradcheckedCase) {
  std::set<std::string> differentiable, gradchecked;
  for (const auto& c : test::op_cases()) {
    if (c.differentiable) differentiable.insert(c.op);
    if (c.differentiable && c.finite_differences) gradchecked.insert(c.op);
  }
  for (const std::string& op : differentiable) {
    EXPECT_TRUE(gradchecked.count(op)) << op << " has no case small enough to gradcheck";
  }
}

// The rows bench_ops times run on their benchmark inputs (float32, a training step's size) and
// give a finite result (the inputs suit the call).
TEST(OpTable, BenchmarkRowsRunOnTheirInputs) {
  int flagged = 0;
  NoGradGuard no_grad;
  for (const test::OpCase& c : test::op_cases()) {
    if (!c.bench_inputs) continue;
    ++flagged;
    const Tensor out = c.fn(c.bench_inputs());
    EXPECT_TRUE(is_floating(out.dtype())) << c.name();
    EXPECT_TRUE(std::isfinite(sum(mul(out, 0.0)).item())) << c.name();  // x * 0 is NaN for NaN/inf
  }
  EXPECT_GE(flagged, 8);
}

}  // namespace
}  // namespace vq
