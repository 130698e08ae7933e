// Typed errors. Every failure the library can detect throws one of these; the Python bindings map each type
// to its own Python exception class, so a bad file or a wrong shape never aborts the interpreter.
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>

namespace c3 {

struct Error : std::runtime_error {
    using std::runtime_error::runtime_error;
};
// A file or byte stream that does not follow its format (safetensors, config.json, tokenizer.json, ...).
struct FormatError : Error {
    using Error::Error;
};
// A file that cannot be opened, read or written.
struct IOError : Error {
    using Error::Error;
};
// Tensors whose shapes do not fit together.
struct ShapeError : Error {
    using Error::Error;
};
// A value out of its domain: NaN or Inf, a token id past the vocabulary, a sequence past the positions.
struct ValueError : Error {
    using Error::Error;
};
// A model configuration that is inconsistent or not supported.
struct ConfigError : Error {
    using Error::Error;
};
// Text that the tokenizer cannot encode, or ids it cannot decode: values out of the tokenizer's domain.
struct TokenizerError : ValueError {
    using ValueError::ValueError;
};
// Bytes that are not valid UTF-8, wherever text is read (tokenizers, metrics): the one error of the one decoder
// (core/utf8.hpp). It is a TokenizerError and so a ValueError, which is what each caller's layer catches.
struct Utf8Error : TokenizerError {
    using TokenizerError::TokenizerError;
};

namespace detail {
template <typename... Args>
std::string concat(const Args&... args) {
    std::ostringstream stream;
    (stream << ... << args);
    return stream.str();
}
}  // namespace detail

// Throws ErrorType with the streamed message when the condition fails.
#define C3_CHECK(condition, ErrorType, ...)                                 \
    do {                                                                    \
        if (!(condition)) throw ErrorType(::c3::detail::concat(__VA_ARGS__)); \
    } while (0)

}  // namespace c3
