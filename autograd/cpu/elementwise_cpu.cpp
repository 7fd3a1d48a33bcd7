// Elementwise CPU kernels. The op is made a compile-time constant (with_*_op) so each loop body
// is a straight expression the compiler can vectorise; the scalar math is shared with CUDA
// (elementwise_math.h). Contiguous runs take the plain-pointer path, the rest strided pointers.
#include "autograd/cpu/cpu_backend.h"
#include "autograd/cpu/loops.h"

namespace vq::cpu {

namespace {

template <class F>
void with_unary_op(UnaryOp op, F&& f) {
  using U = UnaryOp;
  switch (op) {
#define VQ_CASE(name) \
  case U::name: f(std::integral_constant<U, U::name>{}); return;
    VQ_CASE(Neg)
    VQ_CASE(Abs)
    VQ_CASE(Sqrt)
    VQ_CASE(Rsqrt) VQ_CASE(Exp) VQ_CASE(Log) VQ_CASE(Sigmoid) VQ_CASE(Tanh) VQ_CASE(Relu)
        VQ_CASE(LeakyRelu) VQ_CASE(Silu) VQ_CASE(Softplus) VQ_CASE(Clamp) VQ_CASE(PowScalar)
            VQ_CASE(Sign) VQ_CASE(Round) VQ_CASE(AddScalar) VQ_CASE(MulScalar)
#undef VQ_CASE
  }
}

template <class F>
void with_binary_op(BinaryOp op, F&& f) {
  using B = BinaryOp;
  switch (op) {
    case B::Add: f(std::integral_constant<B, B::Add>{}); return;
    case B::Sub: f(std::integral_constant<B, B::Sub>{}); return;
    case B::Mul: f(std::integral_constant<B, B::Mul>{}); return;
    case B::Div: f(std::integral_constant<B, B::Div>{}); return;
    case B::Pow: f(std::integral_constant<B, B::Pow>{}); return;
    case B::Maximum: f(std::integral_constant<B, B::Maximum>{}); return;
    case B::Minimum: f(std::integral_constant<B, B::Minimum>{}); return;
  }
}

template <class T>
T& at(char* p, int64_t stride, int64_t i) {
  return *reinterpret_cast<T*>(p + i * stride);
}

}  // namespace

void CpuBackend::unary(UnaryOp op, UnaryParams params, const Tensor& x, const Tensor& out) {
  StridedLoop<2> loop({&out, &x});
  dispatch_floating(out.dtype(), "unary op", [&](auto tag) {
    using T = decltype(tag);
    with_unary_op(op, [&](auto op_c) {
      constexpr UnaryOp OP = decltype(op_c)::value;
      loop.run([params](const std::array<char*, 2>& p, const std::array<int64_t, 2>& s, int64_t n) {
        if (s[0] == sizeof(T) && s[1] == sizeof(T)) {
          T* __restrict__ o = reinterpret_cast<T*>(p[0]);
          const T* __restrict__ in = reinterpret_cast<const T*>(p[1]);
          for (int64_t i = 0; i < n; ++i) o[i] = unary_forward<T>(OP, in[i], params);
        } else {
          for (int64_t i = 0; i < n; ++i)
            at<T>(p[0], s[0], i) = unary_forward<T>(OP, at<T>(p[1], s[1], i), params);
        }
      });
    });
  });
}

void CpuBackend::unary_backward(UnaryOp op, UnaryParams params, const Tensor& dout,
                                const Tensor& saved, const Tensor& dx) {
  StridedLoop<3> loop({&dx, &dout, &saved});
  dispatch_floating(dx.dtype(), "unary op backward", [&](auto tag) {
    using T = decltype(tag);
    with_unary_op(op, [&](auto op_c) {
      constexpr UnaryOp OP = decltype(op_c)::value;
      loop.run([params](const std::array<char*, 3>& p, const std::array<int64_t, 3>& s, int64_t n) {
        if (s[0] == sizeof(T) && s[1] == sizeof(T) && s[2] == sizeof(T)) {
          T* __restrict__ o = reinterpret_cast<T*>(p[0]);
          const T* __restrict__ g = reinterpret_cast<const T*>(p[1]);
          const T* __restrict__ v = reinterpret_cast<const T*>(p[2]);
          for (int64_t i = 0; i < n; ++i) o[i] = g[i] * unary_derivative<T>(OP, v[i], params);
        } else {
          for (int64_t i = 0; i < n; ++i) {
            at<T>(p[0], s[0], i) =
                at<T>(p[1], s[1], i) * unary_derivative<T>(OP, at<T>(p[2], s[2], i), params);
          }
        }
      });
    });
  });
}

void CpuBackend::binary(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out) {
  StridedLoop<3> loop({&out, &a, &b});
  dispatch_arith(out.dtype(), "binary op", [&](auto tag) {
    using T = decltype(tag);
    with_binary_op(op, [&](auto op_c) {
      constexpr BinaryOp OP = decltype(op_c)::value;
      loop.run([](const std::array<char*, 3>& p, const std::array<int64_t, 3>& s, int64_t n) {
        T* __restrict__ o = reinterpret_cast<T*>(p[0]);
        const T* __restrict__ x = reinterpret_cast<const T*>(p[1]);
        const T* __restrict__ y = reinterpret_cast<const T*>(p[2]);
        if (s[0] == sizeof(T) && s[1] == sizeof(T) && s[2] == sizeof(T)) {
          for (int64_t i = 0; i < n; ++i) o[i] = binary_forward<T>(OP, x[i], y[i]);
        } else if (s[0] == sizeof(T) && s[1] == sizeof(T) && s[2] == 0) {
          const T yv = *y;
          for (int64_t i = 0; i < n; ++i) o[i] = binary_forward<T>(OP, x[i], yv);
        } else if (s[0] == sizeof(T) && s[1] == 0 && s[2] == sizeof(T)) {
          const T xv = *x;
          for (int64_t i = 0; i < n; ++i) o[i] = binary_forward<T>(OP, xv, y[i]);
        } else {
          for (int64_t i = 0; i < n; ++i) {
            at<T>(p[0], s[0], i) =
                binary_forward<T>(OP, at<T>(p[1], s[1], i), at<T>(p[2], s[2], i));
          }
        }
      });
    });
  });
}

void CpuBackend::compare(CompareOp op, const Tensor& a, const Tensor& b, const Tensor& out) {
  StridedLoop<3> loop({&out, &a, &b});
  dispatch_arith(a.dtype(), "compare", [&](auto tag) {
    using T = decltype(tag);
    loop.run([op](const std::array<char*, 3>& p, const std::array<int64_t, 3>& s, int64_t n) {
      for (int64_t i = 0; i < n; ++i) {
        at<uint8_t>(p[0], s[0], i) = vq::compare<T>(op, at<T>(p[1], s[1], i), at<T>(p[2], s[2], i));
      }
    });
  });
}

void CpuBackend::where(const Tensor& cond, const Tensor& a, const Tensor& b, const Tensor& out) {
  StridedLoop<4> loop({&out, &cond, &a, &b});
  dispatch_arith(out.dtype(), "where", [&](auto tag) {
    using T = decltype(tag);
    loop.run([](const std::array<char*, 4>& p, const std::array<int64_t, 4>& s, int64_t n) {
      for (int64_t i = 0; i < n; ++i) {
        at<T>(p[0], s[0], i) =
            at<uint8_t>(p[1], s[1], i) ? at<T>(p[2], s[2], i) : at<T>(p[3], s[3], i);
      }
    });
  });
}

}  // namespace vq::cpu
