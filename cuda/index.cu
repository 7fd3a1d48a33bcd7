// Index kernels on [A, X, B] views (A outer, X the indexed axis, B inner), and bincount.
// Size letters: I indices (index_select/index_add) or rows of the index tensor (gather,
// scatter_add), K classes. One thread per element of the [A, I, B] side.
// Pure data movement (index_select, gather) works on any dtype by element size. The
// accumulating kernels (index_add, scatter_add, bincount) use atomicAdd, so duplicate indices
// are summed in an unspecified order: float results may differ from the CPU's in the last bits
// when an output receives several contributions (integers are exact). Under set_deterministic
// index_add and scatter_add instead let each output element walk the indices in order and add
// its own contributions, as the CPU's loop does (bit-equal to it; slower: every output element
// reads every index).
#include <algorithm>
#include <type_traits>

#include "cuda/launch.cuh"

namespace vq::cuda {

namespace {

// atomicAdd for every dtype the CPU's index_add accepts.
__device__ __forceinline__ void atomic_add(float* p, float v) { atomicAdd(p, v); }
__device__ __forceinline__ void atomic_add(double* p, double v) { atomicAdd(p, v); }
__device__ __forceinline__ void atomic_add(int64_t* p, int64_t v) {
  // Two's complement addition is the same on unsigned bits (and wraps like the CPU's int64).
  atomicAdd(reinterpret_cast<unsigned long long*>(p), static_cast<unsigned long long>(v));
}
__device__ __forceinline__ void atomic_add(uint8_t* p, uint8_t v) {
  // No byte atomics: compare-and-swap the aligned 32-bit word holding the byte. The word stays
  // inside the allocation, whose blocks are 512-byte aligned and sized.
  const uintptr_t address = reinterpret_cast<uintptr_t>(p);
  unsigned int* word = reinterpret_cast<unsigned int*>(address & ~uintptr_t{3});
  const unsigned int shift = static_cast<unsigned int>(address & 3u) * 8u;
  unsigned int old = *word, assumed;
  do {
    assumed = old;
    const unsigned int byte = ((assumed >> shift) + v) & 0xffu;  // wraps mod 256, like the CPU
    old = atomicCAS(word, assumed, (assumed & ~(0xffu << shift)) | (byte << shift));
  } while (old != assumed);
}

template <class U>
__global__ void index_select_kernel(const U* x, int64_t X, int64_t B, const int64_t* index,
                                    int64_t I, U* out, int64_t total) {
  VQ_GRID_LOOP(o, total) {
    const int64_t b = o % B, i = (o / B) % I, a = o / (B * I);
    out[o] = x[(a * X + index[i]) * B + b];
  }
}

template <class T>
__global__ void index_add_kernel(T* out, int64_t X, int64_t B, const int64_t* index, int64_t I,
                                 const T* src, int64_t total) {
  VQ_GRID_LOOP(e, total) {
    const int64_t b = e % B, i = (e / B) % I, a = e / (B * I);
    atomic_add(out + (a * X + index[i]) * B + b, src[e]);
  }
}

// Deterministic index_add: block (a, x) walks the I indices in order; its threads hold the B
// columns of out[a, x, :], starting from their current values.
template <class T>
__global__ void index_add_ordered_kernel(T* out, int64_t A, int64_t X, int64_t B,
                                         const int64_t* index, int64_t I, const T* src) {
  for (int64_t ax = blockIdx.x; ax < A * X; ax += gridDim.x) {
    const int64_t a = ax / X, x = ax % X;
    for (int64_t b = threadIdx.x; b < B; b += blockDim.x) {
      T acc = out[ax * B + b];
      for (int64_t i = 0; i < I; ++i) {
        if (index[i] == x) acc += src[(a * I + i) * B + b];
      }
      out[ax * B + b] = acc;
    }
  }
}

template <class U>
__global__ void gather_kernel(const U* x, int64_t X, int64_t B, const int64_t* index, int64_t I,
                              U* out, int64_t total) {
  VQ_GRID_LOOP(o, total) {
    const int64_t b = o % B, a = o / (B * I);
    out[o] = x[(a * X + index[o]) * B + b];
  }
}

template <class T>
__global__ void scatter_add_kernel(T* out, int64_t X, int64_t B, const int64_t* index, int64_t I,
                                   const T* src, int64_t total) {
  VQ_GRID_LOOP(e, total) {
    const int64_t b = e % B, a = e / (B * I);
    atomic_add(out + (a * X + index[e]) * B + b, src[e]);
  }
}

// Deterministic scatter_add: one thread per output element (a, x, b) walks i in order.
template <class T>
__global__ void scatter_add_ordered_kernel(T* out, int64_t X, int64_t B, const int64_t* index,
                                           int64_t I, const T* src, int64_t total) {
  VQ_GRID_LOOP(o, total) {
    const int64_t b = o % B, a = o / (B * X), x = (o / B) % X;
    T acc = out[o];
    for (int64_t i = 0; i < I; ++i) {
      const int64_t e = (a * I + i) * B + b;
      if (index[e] == x) acc += src[e];
    }
    out[o] = acc;
  }
}

__global__ void bincount_kernel(const int64_t* indices, int64_t n, int64_t* counts) {
  VQ_GRID_LOOP(i, n) atomic_add(counts + indices[i], int64_t{1});
}

}  // namespace

void launch_index_select(size_t elem_size, const void* x, int64_t A, int64_t X, int64_t B,
                         const int64_t* index, int64_t I, void* out) {
  dispatch_bits(elem_size, [&](auto tag) {
    using U = decltype(tag);
    launch_1d("index_select_kernel", A * I * B, index_select_kernel<U>, static_cast<const U*>(x), X,
              B, index, I, static_cast<U*>(out), A * I * B);
  });
}

void launch_index_add(DType dtype, void* out, int64_t A, int64_t X, int64_t B, const int64_t* index,
                      int64_t I, const void* src, bool deterministic) {
  dispatch_arith(dtype, "index_add", [&](auto tag) {
    using T = decltype(tag);
    if (deterministic) {
      if (A * X * B == 0) return;
      const unsigned blocks = static_cast<unsigned>(std::min<int64_t>(A * X, 1 << 16));
      index_add_ordered_kernel<T><<<blocks, threads_for_row(B)>>>(
          static_cast<T*>(out), A, X, B, index, I, static_cast<const T*>(src));
      VQ_CUDA_CHECK_LAUNCH("index_add_ordered_kernel");
      return;
    }
    launch_1d("index_add_kernel", A * I * B, index_add_kernel<T>, static_cast<T*>(out), X, B, index,
              I, static_cast<const T*>(src), A * I * B);
  });
}

void launch_gather(size_t elem_size, const void* x, int64_t A, int64_t X, int64_t B,
                   const int64_t* index, int64_t I, void* out) {
  dispatch_bits(elem_size, [&](auto tag) {
    using U = decltype(tag);
    launch_1d("gather_kernel", A * I * B, gather_kernel<U>, static_cast<const U*>(x), X, B, index,
              I, static_cast<U*>(out), A * I * B);
  });
}

void launch_scatter_add(DType dtype, void* out, int64_t A, int64_t X, int64_t B,
                        const int64_t* index, int64_t I, const void* src, bool deterministic) {
  dispatch_arith(dtype, "scatter_add", [&](auto tag) {
    using T = decltype(tag);
    if (deterministic) {
      launch_1d("scatter_add_ordered_kernel", A * X * B, scatter_add_ordered_kernel<T>,
                static_cast<T*>(out), X, B, index, I, static_cast<const T*>(src), A * X * B);
      return;
    }
    launch_1d("scatter_add_kernel", A * I * B, scatter_add_kernel<T>, static_cast<T*>(out), X, B,
              index, I, static_cast<const T*>(src), A * I * B);
  });
}

void launch_bincount(const int64_t* indices, int64_t n, int64_t* counts, int64_t K) {
  if (K > 0) VQ_CUDA_CHECK(cudaMemsetAsync(counts, 0, K * sizeof(int64_t)));
  launch_1d("bincount_kernel", n, bincount_kernel, indices, n, counts);
}

}  // namespace vq::cuda
