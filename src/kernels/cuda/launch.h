// Host helpers shared by the kernel launchers: the device's multiprocessor count, and a launch with optional
// programmatic dependent launch (PDL: the kernel may start while the previous kernel on the stream finishes).
#pragma once
#include <cuda_runtime.h>

#include <utility>

#include "kernels/cuda/check.h"

namespace qoq::cuda {

// Multiprocessors of the current device, queried once per process.
int sm_count();

template <typename... KernelArgs, typename... Args>
void launch_ex(void (*kernel)(KernelArgs...), dim3 grid, dim3 block, size_t smem_bytes, cudaStream_t stream, bool pdl,
               Args&&... args) {
  cudaLaunchConfig_t cfg{};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = smem_bytes;
  cfg.stream = stream;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = attr;
  cfg.numAttrs = pdl ? 1 : 0;
  QOQ_CUDA_CHECK(cudaLaunchKernelEx(&cfg, kernel, std::forward<Args>(args)...));
}

}  // namespace qoq::cuda
