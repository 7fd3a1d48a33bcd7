// Data-parallel training across processes. Every process (a rank) holds the whole model, trains
// on its slice of each global batch, and the ranks combine what has to be global (gradients,
// codebook statistics, batch-norm statistics, skip decisions) through a Communicator:
//   single process  world size 1, every collective is the identity (communicator.cpp);
//   MPI             processes started by mpirun (mpi_communicator.cpp; CUDA tensors travel
//                   through host memory).
// The process-wide communicator is world(); a program sets it up with a WorldScope at the
// start of main, and every part that needs the global view asks world().
#pragma once

#include <memory>
#include <string>

#include "autograd/tensor.h"

namespace vq::dist {

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual int local_rank() const = 0;  // among the ranks on this machine
  virtual int local_size() const = 0;
  // In place: every rank ends with the element-wise sum over ranks (float32, float64 or int64).
  virtual void all_reduce_sum(const Tensor& t) = 0;
  // In place: every rank ends with rank `root`'s values.
  virtual void broadcast(const Tensor& t, int root) = 0;
  // Every rank's tensor (one shape on every rank) stacked along dim 0 in rank order (in a
  // single process: `t` itself).
  virtual Tensor all_gather(const Tensor& t) = 0;
  virtual void barrier() = 0;
  // Stops every rank of the job now, after printing `why` with this rank's number: a rank that
  // fails must not leave the others waiting in a collective forever.
  [[noreturn]] virtual void abort(const std::string& why) = 0;
  virtual std::string describe() const = 0;

  bool is_root() const { return rank() == 0; }
  // Bytes this rank has handed to all-reduces, broadcasts and all-gathers so far (what the
  // README's network sizing starts from).
  virtual int64_t payload_bytes() const { return payload_bytes_; }
  void all_reduce_mean(const Tensor& t);
  double sum(double value);  // a number summed over ranks
  bool any(bool flag);       // true on every rank when it is true on one (collective decisions)

 protected:
  void count_payload(const Tensor& t) { payload_bytes_ += t.numel() * dtype_size(t.dtype()); }

 private:
  int64_t payload_bytes_ = 0;
};

// The process-wide communicator (single-process until a WorldScope sets up another).
Communicator& world();
inline bool distributed() { return world().size() > 1; }

// Sets up world() for a program's lifetime: MPI when mpirun started the process (its
// environment says so) and this build has MPI, else a single process. Throws when mpirun
// started several ranks of a build without MPI.
class WorldScope {
 public:
  WorldScope(int* argc, char*** argv);
  ~WorldScope();
  WorldScope(const WorldScope&) = delete;
  WorldScope& operator=(const WorldScope&) = delete;
};

// Sum over ranks that autograd sees through: forward sum_r x_r; backward the sum over ranks of
// the incoming gradients. Under data parallelism each rank's loss is its share of the objective
// (their mean), so rank r's input feeds every rank's loss through the sum: its gradient is the
// sum of theirs, and the gradient averaging then divides by the world size.
Tensor all_reduce_sum_with_grad(const Tensor& x);

// The GPU a rank of a data-parallel run computes on: its local rank, so that the ranks of one
// machine use distinct GPUs (NCCL refuses two ranks on one). Throws, saying what to change, when
// the machine runs more ranks than it has GPUs.
int gpu_for_local_rank(int local_rank, int local_size, int gpus);

// Replaces world() (nullptr restores the single process): the trainer wraps the MPI world in a
// NCCL communicator once it knows its GPU.
void set_world(std::shared_ptr<Communicator> comm);
std::shared_ptr<Communicator> shared_world();

}  // namespace vq::dist
