// CPU threads for inference and training. No LibTorch types: the element includes it.
#pragma once

namespace pefm {

// CPU threads LibTorch uses for the operators called from this thread on (its intra-op
// pool; with OpenMP the setting belongs to the calling thread). `threads` <= 0:
// default_cpu_threads(). Cheap when the count is already in force, so callers may apply
// it per frame.
void use_cpu_threads(int threads);
// CPUs this process may run on (its affinity mask: taskset, cgroup cpusets), at least 1.
int usable_cpus();
// OMP_NUM_THREADS when set (the user's choice for this process), else usable_cpus() --
// not LibTorch's own default, which can be 1 on a 2-core machine.
int default_cpu_threads();

}  // namespace pefm
