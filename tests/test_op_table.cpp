// The op table (op_table.h) against ops.h: every declared op has cases or a stated exemption, and
// every differentiable case passes a float64 gradcheck (the CUDA comparison of the same cases is
// CudaOpTable.EveryCaseMatchesCpu in test_cuda).
#include <fstream>
#include <regex>
#include <set>

#include "test_util.h"
#include "tests/op_table.h"

namespace vq {
namespace {

// The function names declared at namespace level in autograd/ops.h (operators excluded).
std::set<std::string> declared_ops() {
  std::ifstream header(VQ_OPS_HEADER);
  EXPECT_TRUE(header.good()) << "cannot read " << VQ_OPS_HEADER;
  const std::regex declaration(
      R"(^(?:inline )?[A-Za-z_:<>]+(?: [A-Za-z_:<>&*]+)? [*&]?([a-z_0-9]+)\()");
  std::set<std::string> names;
  std::string line;
  std::smatch m;
  while (std::getline(header, line)) {
    if (std::regex_search(line, m, declaration)) names.insert(m[1]);
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
    if (c.differentiable) {
      EXPECT_TRUE(test::grads_ok(c.fn, c.inputs));
    } else {
      EXPECT_NO_THROW(c.fn(c.inputs));
    }
  }
}

}  // namespace
}  // namespace vq
