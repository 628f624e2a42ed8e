#include "core/thread_pool.h"

#include <algorithm>
#include <cstdlib>
#include <exception>
#include <string>

namespace qoq {

namespace {
thread_local bool t_in_pool = false;
}

ThreadPool::ThreadPool(int num_threads) {
  num_threads = std::max(1, num_threads);
  for (int i = 0; i + 1 < num_threads; ++i) workers_.emplace_back([this, i] { worker_loop(i); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_ = true;
  }
  cv_work_.notify_all();
  for (auto& t : workers_) t.join();
}

ThreadPool& ThreadPool::global() {
  static ThreadPool pool([] {
    if (const char* env = std::getenv("QOQ_NUM_THREADS")) {
      const int n = std::atoi(env);
      if (n > 0) return n;
    }
    return int(std::max(1u, std::thread::hardware_concurrency()));
  }());
  return pool;
}

void ThreadPool::worker_loop(int) {
  t_in_pool = true;
  uint64_t seen = 0;
  for (;;) {
    std::unique_lock<std::mutex> lk(mu_);
    cv_work_.wait(lk, [&] { return stop_ || (generation_ != seen && next_chunk_ < num_chunks_); });
    if (stop_) return;
    while (next_chunk_ < num_chunks_) {
      const int64_t c = next_chunk_++;
      const auto* job = job_;
      const int64_t b = c * job_chunk_, e = std::min(job_n_, b + job_chunk_);
      lk.unlock();
      (*job)(b, e);
      lk.lock();
      if (++done_chunks_ == num_chunks_) cv_done_.notify_all();
    }
    seen = generation_;
  }
}

void ThreadPool::parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn, int64_t grain) {
  if (n <= 0) return;
  grain = std::max<int64_t>(1, grain);
  const int64_t max_chunks = (n + grain - 1) / grain;
  if (workers_.empty() || t_in_pool || max_chunks == 1) {
    fn(0, n);
    return;
  }
  std::lock_guard<std::mutex> run_lk(run_mu_);
  // A few chunks per thread balances uneven work without much scheduling overhead.
  const int64_t chunks = std::min<int64_t>(max_chunks, int64_t(num_threads()) * 4);
  const int64_t chunk = (n + chunks - 1) / chunks;
  std::exception_ptr error;
  std::mutex err_mu;
  std::function<void(int64_t, int64_t)> guarded = [&](int64_t b, int64_t e) {
    try {
      fn(b, e);
    } catch (...) {
      std::lock_guard<std::mutex> lk(err_mu);
      if (!error) error = std::current_exception();
    }
  };
  {
    std::lock_guard<std::mutex> lk(mu_);
    job_ = &guarded;
    job_n_ = n;
    job_chunk_ = chunk;
    num_chunks_ = (n + chunk - 1) / chunk;
    next_chunk_ = 0;
    done_chunks_ = 0;
    ++generation_;
  }
  cv_work_.notify_all();
  // The caller works too.
  t_in_pool = true;
  std::unique_lock<std::mutex> lk(mu_);
  while (next_chunk_ < num_chunks_) {
    const int64_t c = next_chunk_++;
    const int64_t b = c * chunk, e = std::min(n, b + chunk);
    lk.unlock();
    guarded(b, e);
    lk.lock();
    ++done_chunks_;
  }
  cv_done_.wait(lk, [&] { return done_chunks_ == num_chunks_; });
  job_ = nullptr;
  t_in_pool = false;
  lk.unlock();
  if (error) std::rethrow_exception(error);
}

}  // namespace qoq
