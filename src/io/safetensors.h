// safetensors: mmap reader with full header validation, atomic writer, and sharded checkpoints
// (model.safetensors.index.json). Tensors come back as views that keep the mapping alive.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "qoq/tensor.h"

namespace qoq::io {

using TensorMap = std::map<std::string, Tensor>;
using StringMap = std::map<std::string, std::string>;

class SafetensorsFile {
 public:
  // Throws InputError naming the file and the field/tensor on any inconsistency.
  static SafetensorsFile open(const std::string& path);
  // Parses bytes in memory (fuzzing, tests); `owner` keeps them alive; `name` stands for the path in errors.
  static SafetensorsFile from_memory(const uint8_t* data, size_t size, std::shared_ptr<void> owner,
                                     const std::string& name);

  const std::string& path() const { return path_; }
  const StringMap& metadata() const { return metadata_; }  // the __metadata__ map
  const TensorMap& tensors() const { return tensors_; }
  bool has(const std::string& name) const { return tensors_.count(name) != 0; }
  const Tensor& get(const std::string& name) const;  // InputError naming file and tensor when absent

 private:
  static SafetensorsFile parse(std::shared_ptr<void> owner, const uint8_t* data, size_t size, const std::string& path);
  std::string path_;
  StringMap metadata_;
  TensorMap tensors_;
};

// Writes one file atomically (temp file + rename; on failure the destination is untouched). Tensors are laid
// out by decreasing element size, then name, so every tensor is aligned to its element size.
void write_safetensors(const std::string& path, const TensorMap& tensors, const StringMap& metadata = {});

// Writes `dir`/`base`.safetensors when the tensors total at most `max_shard_bytes`, else shards
// `base`-0000i-of-0000N.safetensors plus `base`.safetensors.index.json. Returns the file names written.
std::vector<std::string> write_safetensors_sharded(const std::string& dir, const TensorMap& tensors,
                                                   const StringMap& metadata, uint64_t max_shard_bytes,
                                                   const std::string& base = "model");

// Reads a sharded checkpoint through its index (weight_map: tensor -> shard file in the same directory).
// Every listed tensor must be present in its shard. `metadata` (optional) gets the first shard's __metadata__.
TensorMap read_safetensors_index(const std::string& index_path, StringMap* metadata = nullptr);

}  // namespace qoq::io
