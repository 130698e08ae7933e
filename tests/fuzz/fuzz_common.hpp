// Shared by the fuzz targets: any c3::Error is an accepted answer to hostile bytes; anything else escapes and
// is reported by libFuzzer as a crash (as are sanitizer findings).
#pragma once
#include <cstdint>
#include <cstdio>
#include <string>
#include <unistd.h>

#include "c3/core/errors.hpp"

namespace c3::fuzz {

// Writes the input to a per-process temporary file (the safetensors reader reads files, as users do).
inline std::string write_temporary(const uint8_t* data, size_t size) {
    const std::string path = "/tmp/c3_fuzz_" + std::to_string(getpid()) + ".bin";
    FILE* file = std::fopen(path.c_str(), "wb");
    if (!file) return path;
    if (size) std::fwrite(data, 1, size, file);
    std::fclose(file);
    return path;
}

}  // namespace c3::fuzz
