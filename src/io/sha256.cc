#include "io/sha256.h"

#include <openssl/evp.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <vector>

#include "qoq/error.h"

namespace qoq::io {
namespace {

namespace fs = std::filesystem;

struct MdCtxDeleter {
  void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
};
using MdCtx = std::unique_ptr<EVP_MD_CTX, MdCtxDeleter>;

MdCtx new_sha256() {
  MdCtx ctx(EVP_MD_CTX_new());
  QOQ_CHECK(ctx && EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) == 1, "EVP SHA-256 init failed");
  return ctx;
}

std::string finish_hex(EVP_MD_CTX* ctx) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  QOQ_CHECK(EVP_DigestFinal_ex(ctx, md, &len) == 1 && len == 32, "EVP SHA-256 final failed");
  static const char* kHex = "0123456789abcdef";
  std::string out(2 * len, '0');
  for (unsigned i = 0; i < len; ++i) {
    out[2 * i] = kHex[md[i] >> 4];
    out[2 * i + 1] = kHex[md[i] & 15];
  }
  return out;
}

}  // namespace

std::string sha256_hex(std::string_view bytes) {
  MdCtx ctx = new_sha256();
  QOQ_CHECK(EVP_DigestUpdate(ctx.get(), bytes.data(), bytes.size()) == 1, "EVP SHA-256 update failed");
  return finish_hex(ctx.get());
}

std::string sha256_file(const std::string& path) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) fail_input("{}: cannot hash: not a regular file", path);
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> f(std::fopen(path.c_str(), "rb"), &std::fclose);
  if (!f) fail_input("{}: cannot open for hashing: {}", path, std::strerror(errno));
  MdCtx ctx = new_sha256();
  // 1 MiB reads: large enough that hashing a multi-GB model is bound by SHA-256, not by syscalls.
  std::vector<char> buf(size_t(1) << 20);
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), f.get())) > 0)
    QOQ_CHECK(EVP_DigestUpdate(ctx.get(), buf.data(), n) == 1, "EVP SHA-256 update failed");
  if (std::ferror(f.get())) fail_input("{}: read error while hashing", path);
  return finish_hex(ctx.get());
}

std::string sha256_model_dir(const std::string& dir) {
  const fs::path d(dir);
  std::error_code ec;
  if (!fs::is_regular_file(d / "config.json", ec)) fail_input("{}: cannot hash: config.json is missing", dir);
  std::vector<std::string> weights;
  for (const auto& e : fs::directory_iterator(d, ec)) {
    const std::string name = e.path().filename().string();
    const auto ends_with = [&](const char* s) {
      const size_t n = std::strlen(s);
      return name.size() >= n && name.compare(name.size() - n, n, s) == 0;
    };
    if (e.is_regular_file() && (ends_with(".safetensors") || ends_with(".safetensors.index.json")))
      weights.push_back(name);
  }
  if (ec) fail_input("{}: cannot list directory: {}", dir, ec.message());
  if (weights.empty()) fail_input("{}: cannot hash: no *.safetensors files", dir);
  std::sort(weights.begin(), weights.end());
  std::string manifest = sha256_file((d / "config.json").string()) + "  config.json\n";
  for (const auto& w : weights) manifest += sha256_file((d / w).string()) + "  " + w + "\n";
  return sha256_hex(manifest);
}

std::string sha256_source(const std::string& path) {
  std::error_code ec;
  return fs::is_directory(path, ec) ? sha256_model_dir(path) : sha256_file(path);
}

}  // namespace qoq::io
