// Scalar math of the elementwise ops and their derivatives, written once for both backends (the
// CUDA kernels include this file too, so CPU tests exercise the same arithmetic).
// Derivatives are written in terms of the input x or the output y, whichever is cheaper and
// more stable (unary_grad_uses_output says which).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#include "autograd/philox.h"  // VQ_HD

namespace vq {

// e^x for float without a libm call, so loops over it vectorise: x log2(e) = n + f with n an
// integer and |f| <= 1/2; 2^f from a degree-6 polynomial (relative error ~1e-7, about 1 ulp),
// 2^n assembled in the exponent bits. Inputs are clamped to [-87.3, 88]: results below
// 2^-126 come out as ~1e-38 instead of denormals, which nothing here depends on.
VQ_HD float exp_fast(float x) {
  const bool nan = x != x;
  const float clamped = x < -87.3f ? -87.3f : (x > 88.0f ? 88.0f : x);
  const float t = clamped * 1.44269504088896341f;
  const float n = (t + 12582912.0f) - 12582912.0f;  // round to nearest (valid for |t| < 2^22)
  const float f = t - n;
  float p = 1.5332501e-4f;
  p = p * f + 1.3394707e-3f;
  p = p * f + 9.6184911e-3f;
  p = p * f + 5.5503423e-2f;
  p = p * f + 2.4022647e-1f;
  p = p * f + 6.9314720e-1f;
  p = p * f + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
#if defined(__CUDA_ARCH__)
  const float scale = __int_as_float(bits);
#else
  float scale;
  std::memcpy(&scale, &bits, sizeof(scale));
#endif
  return nan ? x : p * scale;
}
VQ_HD double exp_fast(double x) { return std::exp(x); }

enum class UnaryOp : uint8_t {
  Neg,
  Abs,
  Sqrt,
  Rsqrt,
  Exp,
  Log,
  Sigmoid,
  Tanh,
  Relu,
  LeakyRelu,
  Silu,
  Softplus,
  Clamp,
  PowScalar,
  Sign,
  Round,
  AddScalar,
  MulScalar
};
enum class BinaryOp : uint8_t { Add, Sub, Mul, Div, Pow, Maximum, Minimum };
enum class CompareOp : uint8_t { Eq, Ne, Lt, Le, Gt, Ge };

// Per-op constants: leaky slope (a), clamp bounds (a, b), exponent (a), scalar operand (a).
struct UnaryParams {
  double a = 0.0;
  double b = 0.0;
};

template <class T>
VQ_HD T sigmoid_of(T x) {
  // NOTE: exp of -|x| never overflows: 1 / (1 + e^-x) for x >= 0, e^x / (1 + e^x) below.
  const T e = exp_fast(x >= T(0) ? -x : x);
  return (x >= T(0) ? T(1) : e) / (T(1) + e);
}

template <class T>
VQ_HD T unary_forward(UnaryOp op, T x, UnaryParams p) {
  switch (op) {
    case UnaryOp::Neg: return -x;
    case UnaryOp::Abs: return x < T(0) ? -x : x;
    case UnaryOp::Sqrt: return std::sqrt(x);
    case UnaryOp::Rsqrt: return T(1) / std::sqrt(x);
    case UnaryOp::Exp: return exp_fast(x);
    case UnaryOp::Log: return std::log(x);
    case UnaryOp::Sigmoid: return sigmoid_of(x);
    case UnaryOp::Tanh: return std::tanh(x);
    case UnaryOp::Relu: return x <= T(0) ? T(0) : x;  // NOTE: NaN stays NaN, like PyTorch
    case UnaryOp::LeakyRelu: return x > T(0) ? x : x * T(p.a);
    case UnaryOp::Silu: return x * sigmoid_of(x);
    // softplus(x) = max(x, 0) + log(1 + e^-|x|): no overflow for large |x|.
    case UnaryOp::Softplus: return (x > T(0) ? x : T(0)) + std::log1p(std::exp(x > T(0) ? -x : x));
    case UnaryOp::Clamp: return x < T(p.a) ? T(p.a) : (x > T(p.b) ? T(p.b) : x);
    case UnaryOp::PowScalar: return std::pow(x, T(p.a));
    case UnaryOp::Sign: return T((x > T(0)) - (x < T(0)));
    case UnaryOp::Round: return std::nearbyint(x);
    case UnaryOp::AddScalar: return x + T(p.a);
    case UnaryOp::MulScalar: return x * T(p.a);
  }
  return x;
}

// Whether an op's derivative is written in terms of its output y (else its input x): backward
// saves only that one tensor.
VQ_HD constexpr bool unary_grad_uses_output(UnaryOp op) {
  return op == UnaryOp::Sqrt || op == UnaryOp::Rsqrt || op == UnaryOp::Exp ||
         op == UnaryOp::Sigmoid || op == UnaryOp::Tanh;
}

// d(out)/d(x), given v = y when unary_grad_uses_output(op), else v = x.
template <class T>
VQ_HD T unary_derivative(UnaryOp op, T v, UnaryParams p) {
  switch (op) {
    case UnaryOp::Neg: return T(-1);
    case UnaryOp::Abs: return T((v > T(0)) - (v < T(0)));  // NOTE: 0 at the kink, like PyTorch
    case UnaryOp::Sqrt: return T(0.5) / v;                 // 1 / (2 sqrt x)
    case UnaryOp::Rsqrt: return T(-0.5) * v * v * v;       // -x^(-3/2) / 2
    case UnaryOp::Exp: return v;
    case UnaryOp::Log: return T(1) / v;
    case UnaryOp::Sigmoid: return v * (T(1) - v);
    case UnaryOp::Tanh: return T(1) - v * v;
    case UnaryOp::Relu: return v > T(0) ? T(1) : T(0);  // NOTE: 0 at x = 0
    case UnaryOp::LeakyRelu: return v > T(0) ? T(1) : T(p.a);
    case UnaryOp::Silu: {
      // d/dx x s(x) = s + x s (1 - s)
      const T s = sigmoid_of(v);
      return s * (T(1) + v * (T(1) - s));
    }
    case UnaryOp::Softplus: return sigmoid_of(v);
    // NOTE: the gradient passes at the bounds themselves (PyTorch does the same).
    case UnaryOp::Clamp: return (v >= T(p.a) && v <= T(p.b)) ? T(1) : T(0);
    case UnaryOp::PowScalar: return T(p.a) * std::pow(v, T(p.a - 1.0));
    case UnaryOp::Sign: return T(0);
    case UnaryOp::Round: return T(0);
    case UnaryOp::AddScalar: return T(1);
    case UnaryOp::MulScalar: return T(p.a);
  }
  return T(0);
}

template <class T>
VQ_HD T binary_forward(BinaryOp op, T a, T b) {
  switch (op) {
    case BinaryOp::Add: return a + b;
    case BinaryOp::Sub: return a - b;
    case BinaryOp::Mul: return a * b;
    case BinaryOp::Div: return a / b;
    case BinaryOp::Pow: return std::pow(a, b);
    case BinaryOp::Maximum: return a > b ? a : b;
    case BinaryOp::Minimum: return a < b ? a : b;
  }
  return a;
}

template <class T>
VQ_HD bool compare(CompareOp op, T a, T b) {
  switch (op) {
    case CompareOp::Eq: return a == b;
    case CompareOp::Ne: return a != b;
    case CompareOp::Lt: return a < b;
    case CompareOp::Le: return a <= b;
    case CompareOp::Gt: return a > b;
    case CompareOp::Ge: return a >= b;
  }
  return false;
}

}  // namespace vq
