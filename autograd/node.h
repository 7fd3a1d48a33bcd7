// The autograd graph. Every differentiable op that sees an input requiring grad attaches a Node to
// its output: the op's name (for error messages), one Edge per input (to the input's own Node, or
// to the leaf whose .grad it accumulates into), and the backward closure written next to the
// op's forward. Closures capture only what backward needs, through SavedTensor, which remembers
// the storage version so an in-place write after the forward is caught instead of silently
// producing a wrong gradient.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "autograd/tensor.h"

namespace vq {

struct Edge {
  std::shared_ptr<Node> fn;          // the input was produced by a differentiable op, or
  std::shared_ptr<TensorImpl> leaf;  // the input is a leaf that requires grad
  bool defined() const { return fn != nullptr || leaf != nullptr; }
};

// What a backward closure fills: one gradient per op input, shaped like that input. Gradients of
// inputs that need none may stay undefined (and are never computed when needs(i) is false).
class Grads {
 public:
  explicit Grads(std::vector<bool> needs) : needs_(std::move(needs)), grads_(needs_.size()) {}
  bool needs(size_t i) const { return needs_.at(i); }
  Tensor& operator[](size_t i) { return grads_.at(i); }
  std::vector<Tensor>& all() { return grads_; }

 private:
  std::vector<bool> needs_;
  std::vector<Tensor> grads_;
};

using BackwardFn = std::function<void(const Tensor& dout, Grads& grads)>;

struct Node {
  Node() = default;
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;
  // Frees long chains iteratively; the default recursive destruction could overflow the stack.
  ~Node();

  std::string name;
  std::vector<Edge> next;
  std::vector<Shape> input_shapes;
  BackwardFn backward;  // reset after use unless retain_graph
};

// A tensor kept for backward: a history-free alias (so no reference cycle through grad_fn) plus
// the storage version at save time.
class SavedTensor {
 public:
  SavedTensor() = default;
  explicit SavedTensor(const Tensor& t);
  // The saved value; throws naming `op` when it was modified in place after being saved.
  const Tensor& get(const char* op) const;

 private:
  Tensor tensor_;
  uint64_t version_ = 0;
};

// ---- grad mode ----
bool grad_enabled();

// Disables graph recording in its scope (optimizer steps, EMA updates, evaluation).
class NoGradGuard {
 public:
  NoGradGuard();
  ~NoGradGuard();
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool previous_;
};

// ---- helpers for op implementations ----

// True when grad mode is on and any input requires grad: only then is a Node attached.
bool needs_graph(std::initializer_list<Tensor> inputs);
bool needs_graph(const std::vector<Tensor>& inputs);

// Makes `out` the differentiable result of op `name` applied to `inputs`.
void attach_grad_fn(Tensor& out, const char* name, const std::vector<Tensor>& inputs,
                    BackwardFn backward);

// Runs reverse-mode accumulation from `root` (see Tensor::backward).
void run_backward(const Tensor& root, const Tensor& grad, bool retain_graph);

// d(root)/d(input) for each input (leaves that require grad), like torch.autograd.grad: nothing is
// accumulated into any .grad, and only the part of the graph that leads to the inputs runs. An
// input the root does not depend on gets zeros. `root` must be a one-element tensor.
std::vector<Tensor> grad(const Tensor& root, const std::vector<Tensor>& inputs, bool retain_graph);

}  // namespace vq
