// Read-only memory maps of model files, shared by the readers so tensor views can keep the mapping alive.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace qoq::io {

class MappedFile {
 public:
  // Maps the whole file private copy-on-write (writes through views never reach the file); throws InputError
  // naming the path when it cannot be opened.
  static std::shared_ptr<MappedFile> open(const std::string& path);
  // Wraps bytes already in memory (fuzzers, tests); `owner` keeps them alive.
  static std::shared_ptr<MappedFile> from_memory(const uint8_t* data, size_t size, std::shared_ptr<void> owner,
                                                 std::string name);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  MappedFile() = default;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
  bool mapped_ = false;
  std::shared_ptr<void> owner_;
  std::string path_;
};

// Reads a whole (small) text file; throws InputError naming the path.
std::string read_text_file(const std::string& path);

}  // namespace qoq::io
