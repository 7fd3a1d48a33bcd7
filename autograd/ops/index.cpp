// Joining and indexing: concat/stack (copies into slices; backward slices the gradient),
// index_select/embedding and gather (backward: index_add / scatter_add of the gradient),
// index_add/scatter_add (backward: the gradient itself and its gather), one_hot and bincount.
#include "autograd/ops/op_util.h"

namespace vq {

namespace {

void check_index_range(const char* op, const Tensor& index, int64_t size) {
  if (index.numel() == 0) return;
  const Tensor cpu = index.to(kCPU).contiguous();
  const int64_t* p = cpu.data<int64_t>();
  for (int64_t i = 0; i < cpu.numel(); ++i) {
    VQ_CHECK(p[i] >= 0 && p[i] < size, "{}: index {} at position {} is out of range [0, {})", op,
             p[i], i, size);
  }
}

}  // namespace

Tensor concat(const std::vector<Tensor>& tensors, int64_t dim) {
  VQ_CHECK(!tensors.empty(), "concat: no tensors given");
  const Tensor& first = tensors[0];
  check_defined("concat", first);
  dim = wrap_dim(dim, first.dim(), "concat");
  Shape shape = first.shape();
  shape[dim] = 0;
  for (const Tensor& t : tensors) {
    check_same("concat", first, t);
    bool fits = t.dim() == first.dim();
    for (int64_t d = 0; fits && d < t.dim(); ++d) fits = d == dim || t.size(d) == first.size(d);
    VQ_CHECK(fits, "concat: shape {} does not match {} outside dim {}", shape_str(t.shape()),
             shape_str(first.shape()), dim);
    shape[dim] += t.size(dim);
  }
  Tensor out = Tensor::empty(shape, first.dtype(), first.device());
  std::vector<int64_t> sizes;
  {
    NoGradGuard no_grad;
    int64_t at = 0;
    for (const Tensor& t : tensors) {
      out.narrow(dim, at, t.size(dim)).copy_(t);
      sizes.push_back(t.size(dim));
      at += t.size(dim);
    }
  }
  if (needs_graph(tensors)) {
    attach_grad_fn(out, "concat", tensors, [dim, sizes](const Tensor& dout, Grads& g) {
      int64_t at = 0;
      for (size_t i = 0; i < sizes.size(); ++i) {
        if (g.needs(i)) g[i] = dout.narrow(dim, at, sizes[i]);
        at += sizes[i];
      }
    });
  }
  return out;
}

Tensor stack(const std::vector<Tensor>& tensors, int64_t dim) {
  VQ_CHECK(!tensors.empty(), "stack: no tensors given");
  dim = wrap_dim(dim, tensors[0].dim() + 1, "stack");
  std::vector<Tensor> expanded;
  for (const Tensor& t : tensors) {
    VQ_CHECK(t.shape() == tensors[0].shape(), "stack: shapes {} and {} differ",
             shape_str(tensors[0].shape()), shape_str(t.shape()));
    expanded.push_back(t.unsqueeze(dim));
  }
  return concat(expanded, dim);
}

Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index) {
  check_defined("index_select", x);
  check_index("index_select", index);
  VQ_CHECK(index.dim() == 1, "index_select: the index must be 1-D, got {}",
           shape_str(index.shape()));
  VQ_CHECK(index.device() == x.device(), "index_select: index on {} but input on {}",
           index.device().str(), x.device().str());
  dim = wrap_dim(dim, x.dim(), "index_select");
  check_index_range("index_select", index, x.size(dim));
  const AxisSplit s = split_at(x.shape(), dim);
  Shape shape = x.shape();
  shape[dim] = index.numel();
  Tensor out = Tensor::empty(shape, x.dtype(), x.device());
  const Tensor idx = index.contiguous();
  backend_for(x).index_select(x.contiguous(), s.A, s.X, s.B, idx, out);
  if (needs_graph({x})) {
    attach_grad_fn(out, "index_select", {x},
                   [dim, idx, shape = x.shape()](const Tensor& dout, Grads& g) {
                     g[0] = index_add(zeros(shape, dout.dtype(), dout.device()), dim, idx, dout);
                   });
  }
  return out;
}

Tensor embedding(const Tensor& weight, const Tensor& indices) {
  check_rank("embedding", weight, 2, "weight [K, D]");
  Shape shape = indices.shape();
  shape.push_back(weight.size(1));
  return index_select(weight, 0, indices.reshape({-1})).view(shape);
}

Tensor gather(const Tensor& x, int64_t dim, const Tensor& index) {
  check_defined("gather", x);
  check_index("gather", index);
  dim = wrap_dim(dim, x.dim(), "gather");
  bool fits = index.dim() == x.dim();
  for (int64_t d = 0; fits && d < x.dim(); ++d) fits = d == dim || index.size(d) == x.size(d);
  VQ_CHECK(fits, "gather: index shape {} must match input shape {} except along dim {}",
           shape_str(index.shape()), shape_str(x.shape()), dim);
  check_index_range("gather", index, x.size(dim));
  const AxisSplit s = split_at(x.shape(), dim);
  const Tensor idx = index.contiguous();
  Tensor out = Tensor::empty(index.shape(), x.dtype(), x.device());
  backend_for(x).gather(x.contiguous(), s.A, s.X, s.B, idx, out);
  if (needs_graph({x})) {
    attach_grad_fn(out, "gather", {x}, [dim, idx, shape = x.shape()](const Tensor& dout, Grads& g) {
      g[0] = scatter_add(zeros(shape, dout.dtype(), dout.device()), dim, idx, dout);
    });
  }
  return out;
}

Tensor index_add(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& src) {
  check_same("index_add", x, src);
  check_index("index_add", index);
  dim = wrap_dim(dim, x.dim(), "index_add");
  Shape expected = x.shape();
  expected[dim] = index.numel();
  VQ_CHECK(index.dim() == 1 && src.shape() == expected,
           "index_add: source {} must have shape {} (the input's, with dim {} = index length {})",
           shape_str(src.shape()), shape_str(expected), dim, index.numel());
  check_index_range("index_add", index, x.size(dim));
  const AxisSplit s = split_at(x.shape(), dim);
  Tensor out = x.contiguous().clone().detach();
  const Tensor idx = index.contiguous();
  backend_for(x).index_add(out, s.A, s.X, s.B, idx, src.contiguous());
  if (needs_graph({x, src})) {
    attach_grad_fn(out, "index_add", {x, src}, [dim, idx](const Tensor& dout, Grads& g) {
      if (g.needs(0)) g[0] = dout;
      if (g.needs(1)) g[1] = index_select(dout, dim, idx);
    });
  }
  return out;
}

Tensor scatter_add(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& src) {
  check_same("scatter_add", x, src);
  check_index("scatter_add", index);
  dim = wrap_dim(dim, x.dim(), "scatter_add");
  bool fits = index.shape() == src.shape() && index.dim() == x.dim();
  for (int64_t d = 0; fits && d < x.dim(); ++d) fits = d == dim || index.size(d) == x.size(d);
  VQ_CHECK(fits,
           "scatter_add: index {} and source {} must match, and match input {} except along dim {}",
           shape_str(index.shape()), shape_str(src.shape()), shape_str(x.shape()), dim);
  check_index_range("scatter_add", index, x.size(dim));
  const AxisSplit s = split_at(x.shape(), dim);
  Tensor out = x.contiguous().clone().detach();
  const Tensor idx = index.contiguous();
  backend_for(x).scatter_add(out, s.A, s.X, s.B, idx, src.contiguous());
  if (needs_graph({x, src})) {
    attach_grad_fn(out, "scatter_add", {x, src}, [dim, idx](const Tensor& dout, Grads& g) {
      if (g.needs(0)) g[0] = dout;
      if (g.needs(1)) g[1] = gather(dout, dim, idx);
    });
  }
  return out;
}

Tensor one_hot(const Tensor& indices, int64_t num_classes, DType dtype) {
  check_index("one_hot", indices);
  VQ_CHECK(num_classes >= 1, "one_hot: num_classes must be >= 1, got {}", num_classes);
  const int64_t n = indices.numel();
  Shape shape = indices.shape();
  shape.push_back(num_classes);
  NoGradGuard no_grad;
  Tensor out = zeros({n, num_classes}, dtype, indices.device());
  out = scatter_add(out, 1, indices.reshape({n, 1}), ones({n, 1}, dtype, indices.device()));
  return out.view(shape);
}

Tensor bincount(const Tensor& indices, int64_t num_classes) {
  check_index("bincount", indices);
  check_index_range("bincount", indices, num_classes);
  Tensor counts = Tensor::empty({num_classes}, DType::Int64, indices.device());
  backend_for(indices).bincount(indices.contiguous(), counts);
  return counts;
}

}  // namespace vq
