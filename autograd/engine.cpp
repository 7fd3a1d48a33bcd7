// The backward engine: a depth-first topological sort of the graph reachable from the root, then
// one reverse sweep that calls each node's closure and routes the gradients along its edges.
// Gradients meeting at a node are summed; leaves accumulate into .grad (+=, so gradients of
// several backward calls add up until zero_grad).
#include <unordered_map>
#include <unordered_set>

#include "autograd/node.h"
#include "autograd/ops.h"

namespace vq {

namespace {
thread_local bool g_grad_enabled = true;
}  // namespace

bool grad_enabled() { return g_grad_enabled; }
NoGradGuard::NoGradGuard() : previous_(g_grad_enabled) { g_grad_enabled = false; }
NoGradGuard::~NoGradGuard() { g_grad_enabled = previous_; }

SavedTensor::SavedTensor(const Tensor& t) {
  if (!t.defined()) return;
  tensor_ = t.detach();
  version_ = t.storage()->version();
}

const Tensor& SavedTensor::get(const char* op) const {
  VQ_CHECK(!tensor_.defined() || tensor_.storage()->version() == version_,
           "backward of '{}': a tensor it saved (shape {}) was modified in place after the "
           "forward pass; clone it before modifying, or modify it after backward",
           op, shape_str(tensor_.shape()));
  return tensor_;
}

Node::~Node() {
  std::vector<std::shared_ptr<Node>> orphans;
  auto collect = [&orphans](std::vector<Edge>& edges) {
    for (Edge& e : edges) {
      if (e.fn && e.fn.use_count() == 1) orphans.push_back(std::move(e.fn));
    }
  };
  collect(next);
  while (!orphans.empty()) {
    std::shared_ptr<Node> node = std::move(orphans.back());
    orphans.pop_back();
    collect(node->next);
  }  // each node dies here with its own edges already emptied
}

bool needs_graph(std::initializer_list<Tensor> inputs) {
  if (!g_grad_enabled) return false;
  for (const Tensor& t : inputs) {
    if (t.requires_grad()) return true;
  }
  return false;
}

bool needs_graph(const std::vector<Tensor>& inputs) {
  if (!g_grad_enabled) return false;
  for (const Tensor& t : inputs) {
    if (t.requires_grad()) return true;
  }
  return false;
}

void attach_grad_fn(Tensor& out, const char* name, const std::vector<Tensor>& inputs,
                    BackwardFn backward) {
  auto node = std::make_shared<Node>();
  node->name = name;
  node->backward = std::move(backward);
  for (const Tensor& in : inputs) {
    Edge edge;
    if (in.requires_grad()) {
      if (in.grad_fn()) {
        edge.fn = in.grad_fn();
      } else {
        edge.leaf = in.impl_ptr();
      }
    }
    node->next.push_back(std::move(edge));
    node->input_shapes.push_back(in.defined() ? in.shape() : Shape{});
  }
  TensorImpl* impl = out.impl();
  impl->requires_grad = true;
  impl->grad_fn = std::move(node);
}

namespace {

// Nodes reachable from root in an order where every node comes after all nodes that feed it
// gradients (reverse post-order of a DFS). Iterative, so deep graphs cannot overflow the stack.
std::vector<Node*> topological_order(Node* root) {
  std::vector<Node*> post_order;
  std::unordered_set<Node*> visited{root};
  std::vector<std::pair<Node*, size_t>> stack{{root, 0}};
  while (!stack.empty()) {
    auto& [node, next_edge] = stack.back();
    if (next_edge < node->next.size()) {
      Node* child = node->next[next_edge++].fn.get();
      if (child != nullptr && visited.insert(child).second) stack.emplace_back(child, 0);
    } else {
      post_order.push_back(node);
      stack.pop_back();
    }
  }
  return {post_order.rbegin(), post_order.rend()};
}

void accumulate_leaf(TensorImpl* leaf, const Tensor& grad) {
  if (!leaf->grad.defined()) {
    // A private copy: the incoming gradient may alias another leaf's or a saved tensor.
    leaf->grad = grad.clone();
  } else {
    leaf->grad.add_(grad);
  }
}

}  // namespace

namespace {

// What a backward sweep does with the gradients that reach leaves.
struct LeafSink {
  // run_backward: accumulate into every leaf's .grad. grad(): collect for the chosen leaves only.
  std::unordered_map<TensorImpl*, Tensor>* captured = nullptr;
  void take(TensorImpl* leaf, const Tensor& g) const {
    if (captured == nullptr) {
      accumulate_leaf(leaf, g);
      return;
    }
    auto it = captured->find(leaf);
    if (it != captured->end()) it->second = it->second.defined() ? add(it->second, g) : g;
  }
  bool wants(const Edge& e) const { return captured == nullptr || captured->count(e.leaf.get()); }
};

// Nodes (of `order`) from which some wanted leaf is reachable; gradients elsewhere are not needed.
std::unordered_set<Node*> nodes_leading_to_sink(const std::vector<Node*>& order,
                                                const LeafSink& sink) {
  std::unordered_set<Node*> useful;
  for (auto it = order.rbegin(); it != order.rend(); ++it) {  // inputs before consumers
    for (const Edge& e : (*it)->next) {
      if ((e.leaf && sink.wants(e)) || (e.fn && useful.count(e.fn.get()))) {
        useful.insert(*it);
        break;
      }
    }
  }
  return useful;
}

void sweep(const Tensor& root, const Tensor& seed, bool retain_graph, const LeafSink& sink) {
  NoGradGuard no_grad;
  if (root.is_leaf()) {
    sink.take(root.impl(), seed);
    return;
  }
  const std::vector<Node*> order = topological_order(root.grad_fn().get());
  const bool prune = sink.captured != nullptr;
  const std::unordered_set<Node*> useful =
      prune ? nodes_leading_to_sink(order, sink) : std::unordered_set<Node*>{};
  std::unordered_map<Node*, Tensor> pending;
  pending[root.grad_fn().get()] = seed;
  for (Node* node : order) {
    auto it = pending.find(node);
    if (it == pending.end()) continue;  // every gradient into it was zero/undefined, or pruned
    const Tensor dout = std::move(it->second);
    pending.erase(it);
    VQ_CHECK(node->backward != nullptr,
             "backward through '{}' a second time: its saved tensors were freed by the first "
             "backward; pass retain_graph=true to the first call",
             node->name);

    std::vector<bool> needs;
    for (const Edge& e : node->next) {
      needs.push_back(prune ? ((e.leaf && sink.wants(e)) || (e.fn && useful.count(e.fn.get())))
                            : e.defined());
    }
    Grads grads(needs);
    node->backward(dout, grads);
    if (!retain_graph) node->backward = nullptr;

    for (size_t i = 0; i < node->next.size(); ++i) {
      const Edge& edge = node->next[i];
      const Tensor& g = grads[i];
      if (!needs[i] || !g.defined()) continue;
      VQ_CHECK(g.shape() == node->input_shapes[i],
               "backward of '{}': the gradient for input {} has shape {}, but the input has "
               "shape {}",
               node->name, i, shape_str(g.shape()), shape_str(node->input_shapes[i]));
      if (edge.leaf) {
        sink.take(edge.leaf.get(), g);
      } else {
        Tensor& slot = pending[edge.fn.get()];
        slot = slot.defined() ? add(slot, g) : g;
      }
    }
  }
}

Tensor checked_seed(const Tensor& root, const Tensor& grad) {
  VQ_CHECK(root.defined(), "backward() called on an undefined tensor");
  VQ_CHECK(root.requires_grad(),
           "backward(): the tensor (shape {}) does not require grad and has no grad_fn; did "
           "any input have requires_grad set, and was grad mode on?",
           shape_str(root.shape()));
  if (!grad.defined()) {
    VQ_CHECK(root.numel() == 1,
             "backward(): the tensor has shape {}; a gradient argument is required for "
             "non-scalar outputs (or reduce it to a scalar first, e.g. with sum())",
             shape_str(root.shape()));
    return ones_like(root);
  }
  VQ_CHECK(grad.shape() == root.shape(),
           "backward(): gradient shape {} differs from the tensor's shape {}",
           shape_str(grad.shape()), shape_str(root.shape()));
  return grad;
}

}  // namespace

void run_backward(const Tensor& root, const Tensor& grad, bool retain_graph) {
  sweep(root, checked_seed(root, grad), retain_graph, LeafSink{});
}

std::vector<Tensor> grad(const Tensor& root, const std::vector<Tensor>& inputs, bool retain_graph) {
  std::unordered_map<TensorImpl*, Tensor> captured;
  for (const Tensor& in : inputs) {
    VQ_CHECK(in.defined() && in.is_leaf() && in.requires_grad(),
             "grad(): every input must be a leaf tensor that requires grad");
    captured[in.impl()] = Tensor();
  }
  sweep(root, checked_seed(root, Tensor()), retain_graph, LeafSink{&captured});
  std::vector<Tensor> out;
  for (const Tensor& in : inputs) {
    const Tensor& g = captured[in.impl()];
    out.push_back(g.defined() ? g : zeros_like(in.detach()));
  }
  return out;
}

}  // namespace vq
