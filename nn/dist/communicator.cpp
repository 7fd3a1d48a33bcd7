#include "nn/dist/communicator.h"

#include <cstdio>
#include <cstdlib>

#include "autograd/node.h"
#include "autograd/ops.h"

namespace vq::dist {

#ifdef VQ_WITH_MPI
std::shared_ptr<Communicator> make_mpi_communicator(int* argc,
                                                    char*** argv);  // mpi_communicator.cpp
void finalize_mpi();
#endif

namespace {

class SingleProcess : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  int local_rank() const override { return 0; }
  int local_size() const override { return 1; }
  void all_reduce_sum(const Tensor&) override {}
  void broadcast(const Tensor&, int) override {}
  Tensor all_gather(const Tensor& t) override { return t; }
  void barrier() override {}
  [[noreturn]] void abort(const std::string& why) override {
    std::fprintf(stderr, "%s\n", why.c_str());
    std::exit(1);
  }
  std::string describe() const override { return "1 process"; }
};

std::shared_ptr<Communicator>& current() {
  static std::shared_ptr<Communicator> comm = std::make_shared<SingleProcess>();
  return comm;
}

// The rank count mpirun (Open MPI, or an MPICH-style PMI launcher) gives this process; 0 when it
// was not started by one.
int launched_ranks() {
  for (const char* name : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE"}) {
    if (const char* v = std::getenv(name)) return std::atoi(v);
  }
  return 0;
}

}  // namespace

void Communicator::all_reduce_mean(const Tensor& t) {
  all_reduce_sum(t);
  if (size() > 1) {
    NoGradGuard no_grad;
    t.copy_(mul(t, 1.0 / size()));
  }
}

double Communicator::sum(double value) {
  if (size() == 1) return value;
  const Tensor t = full({1}, value, DType::Float64);
  all_reduce_sum(t);
  return t.item();
}

bool Communicator::any(bool flag) { return sum(flag ? 1.0 : 0.0) > 0.5; }

int gpu_for_local_rank(int local_rank, int local_size, int gpus) {
  VQ_CHECK(gpus > 0, "data-parallel training on CUDA: no GPU on this machine");
  VQ_CHECK(local_size <= gpus,
           "data-parallel training on CUDA: this machine runs {} ranks but has {} GPU(s); every "
           "rank needs its own GPU (NCCL refuses two ranks on one): start at most {} ranks per "
           "machine (mpirun --npernode {}), or make more GPUs visible (CUDA_VISIBLE_DEVICES)",
           local_size, gpus, gpus, gpus);
  VQ_CHECK(local_rank >= 0 && local_rank < local_size, "local rank {} is outside [0, {})",
           local_rank, local_size);
  return local_rank;
}

Communicator& world() { return *current(); }

void set_world(std::shared_ptr<Communicator> comm) {
  current() = comm ? std::move(comm) : std::make_shared<SingleProcess>();
}

std::shared_ptr<Communicator> shared_world() { return current(); }

WorldScope::WorldScope(int* argc, char*** argv) {
  const int ranks = launched_ranks();
  if (ranks == 0) return;
#ifdef VQ_WITH_MPI
  current() = make_mpi_communicator(argc, argv);
#else
  VQ_CHECK(ranks == 1,
           "started as one of {} ranks, but this build has no MPI (configure with -DVQ_MPI=ON "
           "and install libopenmpi-dev; scripts/setup.sh does)",
           ranks);
#endif
}

WorldScope::~WorldScope() {
#ifdef VQ_WITH_MPI
  if (distributed() || launched_ranks() > 0) {
    current() = std::make_shared<SingleProcess>();
    finalize_mpi();
  }
#endif
}

Tensor all_reduce_sum_with_grad(const Tensor& x) {
  if (!distributed()) return x;
  Tensor out;
  {
    NoGradGuard no_grad;
    out = x.contiguous().clone();
    world().all_reduce_sum(out);
  }
  if (needs_graph({x})) {
    attach_grad_fn(out, "all_reduce_sum", {x}, [](const Tensor& dout, Grads& g) {
      Tensor summed = dout.contiguous().clone();
      world().all_reduce_sum(summed);
      g[0] = summed;
    });
  }
  return out;
}

}  // namespace vq::dist
