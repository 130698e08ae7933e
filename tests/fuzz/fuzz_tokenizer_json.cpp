// Fuzzes the tokenizer.json loader, then encodes and decodes a fixed text with whatever loaded.
#include "c3/text/bpe.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string json(reinterpret_cast<const char*>(data), size);
    try {
        auto tokenizer = c3::text::BpeTokenizer::from_json_string(json);
        const auto ids = tokenizer.encode("Hello, world! 123 \xE4\xBD\xA0\xE5\xA5\xBD");
        (void)tokenizer.decode(ids);
    } catch (const c3::Error&) {
    }
    return 0;
}
