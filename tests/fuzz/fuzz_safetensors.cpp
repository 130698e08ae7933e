// Fuzzes the safetensors reader: open arbitrary bytes, then read every tensor it accepted.
#include "c3/io/safetensors_reader.hpp"
#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string path = c3::fuzz::write_temporary(data, size);
    try {
        const auto file = c3::io::SafetensorsFile::open(path);
        for (const auto& tensor : file.tensors()) {
            if (c3::io::is_float_dtype(tensor.dtype) && tensor.element_count() < (1u << 20)) {
                std::vector<float> values = file.read<float>(tensor.name);
                (void)values;
            } else if (tensor.byte_count() < (1u << 20)) {
                auto raw = file.read_raw(tensor.name);
                (void)raw;
            }
        }
    } catch (const c3::Error&) {
    }
    return 0;
}
