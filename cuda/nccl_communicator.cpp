#include "cuda/nccl_communicator.h"

#include <cuda_runtime_api.h>
#include <nccl.h>

#include <cstdlib>
#include <cstring>

#include "autograd/ops.h"
#include "cuda/check.h"

namespace vq::cuda {

namespace {

void check(ncclResult_t status, const char* call) {
  if (status == ncclSuccess) return;
  throw Error(fmt::format("NCCL call failed: {}: {} ({})", call, ncclGetErrorString(status),
                          ncclGetLastError(nullptr)));
}

ncclDataType_t nccl_type(DType dtype) {
  switch (dtype) {
    case DType::Float32: return ncclFloat32;
    case DType::Float64: return ncclFloat64;
    case DType::Int64: return ncclInt64;
    case DType::BFloat16: return ncclBfloat16;
    case DType::Float16: return ncclFloat16;
    default: throw Error(fmt::format("NCCL collectives do not take {} tensors", dtype_name(dtype)));
  }
}

class NcclCommunicator : public dist::Communicator {
 public:
  NcclCommunicator(std::shared_ptr<dist::Communicator> host, Device device)
      : host_(std::move(host)), device_(device) {
    VQ_CUDA_CHECK(cudaSetDevice(device.index));
    // The id travels as int64 words (what every communicator can broadcast).
    ncclUniqueId id;
    if (host_->is_root()) check(ncclGetUniqueId(&id), "ncclGetUniqueId");
    constexpr int64_t kWords = (sizeof(id) + 7) / 8;
    const Tensor words = zeros({kWords}, DType::Int64);
    std::memcpy(words.raw_data(), &id, sizeof(id));
    host_->broadcast(words, 0);
    std::memcpy(&id, words.raw_data(), sizeof(id));
    check(ncclCommInitRank(&comm_, host_->size(), id, host_->rank()), "ncclCommInitRank");
  }
  ~NcclCommunicator() override { ncclCommDestroy(comm_); }

  int rank() const override { return host_->rank(); }
  int size() const override { return host_->size(); }
  int local_rank() const override { return host_->local_rank(); }
  int local_size() const override { return host_->local_size(); }

  void all_reduce_sum(const Tensor& t) override {
    if (!on_gpu(t)) return host_->all_reduce_sum(t);
    count_payload(t);
    in_place(t, [&](void* data, size_t count) {
      check(
          ncclAllReduce(data, data, count, nccl_type(t.dtype()), ncclSum, comm_, cudaStreamLegacy),
          "ncclAllReduce");
    });
  }

  void broadcast(const Tensor& t, int root) override {
    if (!on_gpu(t)) return host_->broadcast(t, root);
    count_payload(t);
    in_place(t, [&](void* data, size_t count) {
      check(ncclBroadcast(data, data, count, nccl_type(t.dtype()), root, comm_, cudaStreamLegacy),
            "ncclBroadcast");
    });
  }

  Tensor all_gather(const Tensor& t) override {
    if (!on_gpu(t)) return host_->all_gather(t);
    const Tensor mine = t.contiguous();
    count_payload(mine);
    Shape shape = t.shape();
    VQ_CHECK(!shape.empty(), "all_gather: expected a tensor with a leading dim");
    shape[0] *= size();
    Tensor all = Tensor::empty(shape, t.dtype(), t.device());
    check(ncclAllGather(mine.raw_data(), all.raw_data(), static_cast<size_t>(mine.numel()),
                        nccl_type(t.dtype()), comm_, cudaStreamLegacy),
          "ncclAllGather");
    return all;
  }

  int64_t payload_bytes() const override {
    return Communicator::payload_bytes() + host_->payload_bytes();
  }
  void barrier() override { host_->barrier(); }
  [[noreturn]] void abort(const std::string& why) override {
    host_->abort(why);
    std::_Exit(1);  // not reached: the compiler cannot see that a virtual call does not return
  }
  std::string describe() const override {
    return fmt::format("{}, NCCL {}.{} on {}", host_->describe(), NCCL_MAJOR, NCCL_MINOR,
                       device_.str());
  }

 private:
  bool on_gpu(const Tensor& t) const {
    if (!t.device().is_cuda()) return false;
    VQ_CHECK(t.device() == device_, "NCCL communicator on {} got a tensor on {}", device_.str(),
             t.device().str());
    return true;
  }
  // Runs op on t's memory, or on a contiguous copy that is written back.
  template <class Op>
  void in_place(const Tensor& t, Op op) {
    const Tensor data = t.is_contiguous() ? t : t.contiguous();
    op(data.raw_data(), static_cast<size_t>(data.numel()));
    if (!t.is_contiguous()) t.copy_(data);
  }

  std::shared_ptr<dist::Communicator> host_;
  Device device_;
  ncclComm_t comm_ = nullptr;
};

}  // namespace

std::shared_ptr<dist::Communicator> make_nccl_communicator(std::shared_ptr<dist::Communicator> host,
                                                           Device device) {
  VQ_CHECK(device.is_cuda(), "a NCCL communicator needs a CUDA device, got {}", device.str());
  return std::make_shared<NcclCommunicator>(std::move(host), device);
}

}  // namespace vq::cuda
