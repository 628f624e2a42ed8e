// Errors carry the context a user needs to fix the input: the file, the field, the limit.
#pragma once
#include <fmt/format.h>

#include <stdexcept>
#include <string>

namespace qoq {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

// Thrown for invalid user input (bad files, bad flags); the CLI maps it to exit code 2.
class InputError : public Error {
 public:
  explicit InputError(const std::string& what) : Error(what) {}
};

template <typename... Args>
[[noreturn]] void fail(fmt::format_string<Args...> f, Args&&... args) {
  throw Error(fmt::format(f, std::forward<Args>(args)...));
}

template <typename... Args>
[[noreturn]] void fail_input(fmt::format_string<Args...> f, Args&&... args) {
  throw InputError(fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace qoq

// Internal invariant; message is a fmt format string with arguments.
#define QOQ_CHECK(cond, ...)                                                                                      \
  do {                                                                                                            \
    if (!(cond)) ::qoq::fail("{}:{}: check failed: {}: {}", __FILE__, __LINE__, #cond, fmt::format(__VA_ARGS__)); \
  } while (0)

// Validation of user-provided data; the message must name the file/field/limit.
#define QOQ_CHECK_INPUT(cond, ...)               \
  do {                                           \
    if (!(cond)) ::qoq::fail_input(__VA_ARGS__); \
  } while (0)
