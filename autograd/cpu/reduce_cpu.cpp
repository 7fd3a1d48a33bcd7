// Reductions and softmax over the X axis of a contiguous [A, X, B] tensor. B == 1 reduces
// contiguous rows; B > 1 walks X rows of B contiguous values, accumulating a block of outputs at
// a time so memory is read in order. Sums accumulate in double: results are then independent of
// summation order to float precision, and identical for any thread count.
#include <cmath>
#include <limits>
#include <vector>

#include "autograd/cpu/cpu_backend.h"
#include "autograd/cpu/loops.h"

namespace vq::cpu {

namespace {

constexpr int64_t kBlock = 256;  // outputs per task when B > 1

template <class T>
struct Acc {
  using type = std::conditional_t<std::is_floating_point_v<T>, double, T>;
};

template <class T>
T reduce_identity(ReduceOp op) {
  switch (op) {
    case ReduceOp::Sum: return T(0);
    case ReduceOp::Max: return std::numeric_limits<T>::lowest();
    case ReduceOp::Min: return std::numeric_limits<T>::max();
  }
  return T(0);
}

// NOTE: NaN propagates through max/min (v != v), as in PyTorch.
template <class T, class A>
inline A combine(ReduceOp op, A acc, T v) {
  switch (op) {
    case ReduceOp::Sum: return acc + static_cast<A>(v);
    case ReduceOp::Max: return (v > acc || v != v) ? static_cast<A>(v) : acc;
    case ReduceOp::Min: return (v < acc || v != v) ? static_cast<A>(v) : acc;
  }
  return acc;
}

// Runs fn(a, b0, b1) over [A] x blocks of [B].
template <class F>
void for_each_block(int64_t A, int64_t X, int64_t B, F&& fn) {
  const int64_t blocks = (B + kBlock - 1) / kBlock;
  const int64_t grain = std::max<int64_t>(1, 32768 / std::max<int64_t>(1, X * std::min(B, kBlock)));
  parallel_for(A * blocks, grain, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      const int64_t a = t / blocks, b0 = (t % blocks) * kBlock;
      fn(a, b0, std::min(B, b0 + kBlock));
    }
  });
}

}  // namespace

void CpuBackend::reduce(ReduceOp op, const Tensor& x, int64_t A, int64_t X, int64_t B,
                        const Tensor& out) {
  dispatch_arith(x.dtype(), "reduce", [&](auto tag) {
    using T = decltype(tag);
    using Ac = typename Acc<T>::type;
    const T* in = x.data<T>();
    T* o = out.data<T>();
    if (B == 1) {
      parallel_for(A, std::max<int64_t>(1, 32768 / std::max<int64_t>(X, 1)),
                   [&](int64_t a0, int64_t a1) {
                     for (int64_t a = a0; a < a1; ++a) {
                       const T* row = in + a * X;
                       Ac acc = reduce_identity<Ac>(op);
                       if (op == ReduceOp::Sum) {
                         for (int64_t i = 0; i < X; ++i) acc += static_cast<Ac>(row[i]);
                       } else {
                         for (int64_t i = 0; i < X; ++i) acc = combine(op, acc, row[i]);
                       }
                       o[a] = static_cast<T>(acc);
                     }
                   });
      return;
    }
    for_each_block(A, X, B, [&](int64_t a, int64_t b0, int64_t b1) {
      Ac acc[kBlock];
      const int64_t nb = b1 - b0;
      for (int64_t j = 0; j < nb; ++j) acc[j] = reduce_identity<Ac>(op);
      for (int64_t i = 0; i < X; ++i) {
        const T* row = in + (a * X + i) * B + b0;
        if (op == ReduceOp::Sum) {
          for (int64_t j = 0; j < nb; ++j) acc[j] += static_cast<Ac>(row[j]);
        } else {
          for (int64_t j = 0; j < nb; ++j) acc[j] = combine(op, acc[j], row[j]);
        }
      }
      for (int64_t j = 0; j < nb; ++j) o[a * B + b0 + j] = static_cast<T>(acc[j]);
    });
  });
}

// Fixed chunks summed in order, then the chunk sums in order: the same bits for any thread count.
void CpuBackend::squared_norm(const std::vector<Tensor>& xs, const Tensor& out) {
  constexpr int64_t kChunk = 16384;
  double total = 0.0;
  for (const Tensor& x : xs) {
    const int64_t n = x.numel(), chunks = (n + kChunk - 1) / kChunk;
    std::vector<double> partial(chunks, 0.0);
    dispatch_floating(x.dtype(), "squared_norm", [&](auto tag) {
      using T = decltype(tag);
      const T* p = x.data<T>();
      parallel_for(chunks, 4, [&](int64_t c0, int64_t c1) {
        for (int64_t c = c0; c < c1; ++c) {
          double acc = 0.0;
          for (int64_t i = c * kChunk, end = std::min(n, i + kChunk); i < end; ++i) {
            const double v = static_cast<double>(p[i]);
            acc += v * v;
          }
          partial[c] = acc;
        }
      });
    });
    for (const double v : partial) total += v;
  }
  *out.data<double>() = total;
}

void CpuBackend::arg_reduce(bool min, const Tensor& x, int64_t A, int64_t X, int64_t B,
                            const Tensor& values, const Tensor& indices) {
  dispatch_arith(x.dtype(), "argmax/argmin", [&](auto tag) {
    using T = decltype(tag);
    const T* in = x.data<T>();
    T* vals = values.data<T>();
    int64_t* idx = indices.data<int64_t>();
    // NOTE: ties keep the first index; NaN wins (and the first NaN stays).
    auto better = [min](T v, T best) {
      if (best != best) return false;
      if (v != v) return true;
      return min ? v < best : v > best;
    };
    for_each_block(A, X, B, [&](int64_t a, int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) {
        const T* p = in + a * X * B + b;
        T best = p[0];
        int64_t best_i = 0;
        for (int64_t i = 1; i < X; ++i) {
          if (better(p[i * B], best)) {
            best = p[i * B];
            best_i = i;
          }
        }
        vals[a * B + b] = best;
        idx[a * B + b] = best_i;
      }
    });
  });
}

void CpuBackend::softmax(const Tensor& x, int64_t A, int64_t X, int64_t B, bool log,
                         const Tensor& y) {
  dispatch_floating(x.dtype(), "softmax", [&](auto tag) {
    using T = decltype(tag);
    const T* in = x.data<T>();
    T* out = y.data<T>();
    for_each_block(A, X, B, [&](int64_t a, int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) {
        const T* p = in + a * X * B + b;
        T* q = out + a * X * B + b;
        T mx = -std::numeric_limits<T>::infinity();
        for (int64_t i = 0; i < X; ++i) mx = std::max(mx, p[i * B]);
        double total = 0;
        // NOTE: subtracting the max keeps exp from overflowing.
        for (int64_t i = 0; i < X; ++i) {
          const T e = std::exp(p[i * B] - mx);
          if (!log) q[i * B] = e;
          total += e;
        }
        if (log) {
          const T lse = mx + static_cast<T>(std::log(total));
          for (int64_t i = 0; i < X; ++i) q[i * B] = p[i * B] - lse;
        } else {
          const T inv = static_cast<T>(1.0 / total);
          for (int64_t i = 0; i < X; ++i) q[i * B] *= inv;
        }
      }
    });
  });
}

void CpuBackend::softmax_backward(const Tensor& dy, const Tensor& y, int64_t A, int64_t X,
                                  int64_t B, bool log, const Tensor& dx) {
  dispatch_floating(y.dtype(), "softmax backward", [&](auto tag) {
    using T = decltype(tag);
    const T* g = dy.data<T>();
    const T* out = y.data<T>();
    T* d = dx.data<T>();
    for_each_block(A, X, B, [&](int64_t a, int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) {
        const int64_t base = a * X * B + b;
        double dot = 0;
        if (log) {
          // y = x - logsumexp(x): dx = dy - softmax(x) * sum(dy)
          for (int64_t i = 0; i < X; ++i) dot += g[base + i * B];
          for (int64_t i = 0; i < X; ++i) {
            d[base + i * B] = g[base + i * B] - std::exp(out[base + i * B]) * static_cast<T>(dot);
          }
        } else {
          // y = softmax(x): dx = y * (dy - sum(dy * y))
          for (int64_t i = 0; i < X; ++i) dot += g[base + i * B] * out[base + i * B];
          for (int64_t i = 0; i < X; ++i) {
            d[base + i * B] = out[base + i * B] * (g[base + i * B] - static_cast<T>(dot));
          }
        }
      }
    });
  });
}

}  // namespace vq::cpu
