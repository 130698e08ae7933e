// Fuzzes the latents reader (c3.load_latents): arbitrary bytes as a latents file.
#include "c3/io/latents.hpp"
#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string path = c3::fuzz::write_temporary(data, size);
    try {
        const c3::io::LatentsFile file = c3::io::read_latents(path);
        (void)file;
    } catch (const c3::Error&) {
    }
    return 0;
}
