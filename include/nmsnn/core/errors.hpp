// nmsnn/core/errors.hpp — the exception hierarchy. Every public entry point validates its
// input and throws one of these with a message that says what was expected, what was found
// and where.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace nmsnn {

/// Base of everything nmsnn throws on purpose.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// A matrix or vector has the wrong number of rows or columns, or is empty.
class ShapeError : public Error {
 public:
  using Error::Error;
};

/// An argument or option has a value outside its domain (zero time steps, NaN in the data,
/// label outside 0..K-1, begin_eval >= time_steps, ...).
class ValueError : public Error {
 public:
  using Error::Error;
};

/// Training diverged: the loss, a gradient or a parameter became NaN or infinite.
class NumericalError : public Error {
 public:
  using Error::Error;
};

/// A file could not be read or written, or its content is malformed.
class IoError : public Error {
 public:
  using Error::Error;
};

/// The estimated memory of a computation exceeds the configured limit.
class ResourceError : public Error {
 public:
  using Error::Error;
};

namespace detail {

template <class... Parts>
std::string concat(Parts&&... parts) {
  std::ostringstream os;
  (os << ... << std::forward<Parts>(parts));
  return os.str();
}

template <class E, class... Parts>
[[noreturn]] void raise(Parts&&... parts) {
  throw E(concat(std::forward<Parts>(parts)...));
}

}  // namespace detail

/// Internal invariant check. Throws nmsnn::Error (a bug in nmsnn, not in the caller's input).
#define NMSNN_ASSERT(cond)                                                                  \
  do {                                                                                      \
    if (!(cond))                                                                            \
      ::nmsnn::detail::raise<::nmsnn::Error>("nmsnn internal error: ", #cond, " at ",      \
                                             __FILE__, ":", __LINE__);                      \
  } while (0)

}  // namespace nmsnn
