// A fixed pool of worker threads for the CPU kernels. parallel_for splits [0, n) into contiguous chunks,
// runs them on the workers and the calling thread, and returns when all are done.
#pragma once
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace qoq {

class ThreadPool {
 public:
  explicit ThreadPool(int num_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int num_threads() const { return int(workers_.size()) + 1; }

  // fn(begin, end) over chunks of at least `grain` items. Nested calls from a worker run inline.
  void parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn, int64_t grain = 1);

  // The process-wide pool; size from QOQ_NUM_THREADS or hardware_concurrency().
  static ThreadPool& global();

 private:
  void worker_loop(int index);

  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable cv_work_, cv_done_;
  const std::function<void(int64_t, int64_t)>* job_ = nullptr;
  int64_t job_n_ = 0, job_chunk_ = 0, next_chunk_ = 0, num_chunks_ = 0, done_chunks_ = 0;
  uint64_t generation_ = 0;
  bool stop_ = false;
  std::mutex run_mu_;  // one parallel_for at a time
};

// Convenience: ThreadPool::global().parallel_for(...)
inline void parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn, int64_t grain = 1) {
  ThreadPool::global().parallel_for(n, fn, grain);
}

}  // namespace qoq
