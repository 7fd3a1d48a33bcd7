// The MPI communicator: MPI_COMM_WORLD of the processes mpirun started. Tensors are reduced in
// place in host memory; a CUDA tensor is copied to the host and back (a NCCL communicator would
// keep them on the GPU).
#include <mpi.h>

#include <climits>
#include <cstdio>

#include "autograd/ops.h"
#include "nn/dist/communicator.h"

namespace vq::dist {

namespace {

MPI_Datatype mpi_type(DType dtype) {
  switch (dtype) {
    case DType::Float32: return MPI_FLOAT;
    case DType::Float64: return MPI_DOUBLE;
    case DType::Int64: return MPI_INT64_T;
    default:
      throw Error(fmt::format("MPI collectives take float32, float64 or int64 tensors, not {}",
                              dtype_name(dtype)));
  }
}

void check(int status, const char* what) {
  if (status == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  MPI_Error_string(status, text, &length);
  throw Error(fmt::format("{} failed: {}", what, std::string(text, length)));
}

// Runs `op(pointer, count)` on a host copy of `t` (or on t itself when it already is contiguous
// host memory) in chunks MPI's int counts can hold, and writes the result back into t.
template <class Op>
void on_host(const Tensor& t, Op op) {
  const bool direct = t.device().is_cpu() && t.is_contiguous();
  const Tensor host = direct ? t : t.contiguous().cpu();
  auto* bytes = static_cast<char*>(host.raw_data());
  const int64_t element = dtype_size(host.dtype());
  for (int64_t done = 0; done < host.numel(); done += INT_MAX) {
    const int count = static_cast<int>(std::min<int64_t>(INT_MAX, host.numel() - done));
    op(bytes + done * element, count);
  }
  if (!direct) t.copy_(host);
}

class MpiCommunicator : public Communicator {
 public:
  MpiCommunicator() {
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &size_);
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &node_);
    MPI_Comm_rank(node_, &local_rank_);
    MPI_Comm_size(node_, &local_size_);
    // Errors come back as codes (check() turns them into exceptions naming the call).
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  }
  ~MpiCommunicator() override { MPI_Comm_free(&node_); }

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  int local_rank() const override { return local_rank_; }
  int local_size() const override { return local_size_; }

  void all_reduce_sum(const Tensor& t) override {
    const MPI_Datatype type = mpi_type(t.dtype());
    count_payload(t);
    on_host(t, [&](void* data, int count) {
      check(MPI_Allreduce(MPI_IN_PLACE, data, count, type, MPI_SUM, MPI_COMM_WORLD),
            "MPI_Allreduce");
    });
  }

  void broadcast(const Tensor& t, int root) override {
    const MPI_Datatype type = mpi_type(t.dtype());
    count_payload(t);
    on_host(t, [&](void* data, int count) {
      check(MPI_Bcast(data, count, type, root, MPI_COMM_WORLD), "MPI_Bcast");
    });
  }

  Tensor all_gather(const Tensor& t) override {
    Shape shape = t.shape();
    VQ_CHECK(!shape.empty(), "all_gather: expected a tensor with a leading dim");
    const Tensor mine = t.contiguous().cpu();
    count_payload(mine);
    shape[0] *= size_;
    Tensor all = Tensor::empty(shape, t.dtype());
    VQ_CHECK(mine.numel() <= INT_MAX, "all_gather: {} elements per rank is more than MPI takes",
             mine.numel());
    const MPI_Datatype type = mpi_type(t.dtype());
    check(MPI_Allgather(mine.raw_data(), static_cast<int>(mine.numel()), type, all.raw_data(),
                        static_cast<int>(mine.numel()), type, MPI_COMM_WORLD),
          "MPI_Allgather");
    return all.to(t.device());
  }

  void barrier() override { check(MPI_Barrier(MPI_COMM_WORLD), "MPI_Barrier"); }

  [[noreturn]] void abort(const std::string& why) override {
    std::fprintf(stderr, "rank %d of %d: %s; stopping every rank\n", rank_, size_, why.c_str());
    std::fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, 1);
    std::_Exit(1);  // MPI_Abort does not return; this is for the compiler
  }

  std::string describe() const override {
    return fmt::format("{} processes (MPI; {} on this machine)", size_, local_size_);
  }

 private:
  int rank_ = 0, size_ = 1, local_rank_ = 0, local_size_ = 1;
  MPI_Comm node_ = MPI_COMM_NULL;
};

}  // namespace

std::shared_ptr<Communicator> make_mpi_communicator(int* argc, char*** argv) {
  int ready = 0;
  MPI_Initialized(&ready);
  if (!ready) check(MPI_Init(argc, argv), "MPI_Init");
  return std::make_shared<MpiCommunicator>();
}

void finalize_mpi() {
  int done = 0;
  MPI_Finalized(&done);
  if (!done) MPI_Finalize();
}

}  // namespace vq::dist
