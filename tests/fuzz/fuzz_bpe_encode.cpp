// Fuzzes BPE encoding with a fixed byte-level tokenizer: every valid UTF-8 input must round-trip exactly.
#include <cstdlib>

#include "c3/text/bpe.hpp"

namespace {
const c3::text::BpeTokenizer& tokenizer() {
    // Every byte symbol, a few merges, two special tokens: enough to exercise all paths.
    static const c3::text::BpeTokenizer instance = [] {
        std::string vocab;
        int id = 0;
        for (uint32_t b = 0; b < 256; ++b) {
            std::string symbol;
            c3::text::append_utf8(symbol, c3::text::byte_to_unicode()[b]);
            std::string escaped;
            for (char c : symbol) escaped += (c == '"' || c == '\\') ? std::string("\\") + c : std::string(1, c);
            vocab += (id ? "," : "") + std::string("\"") + escaped + "\":" + std::to_string(id);
            ++id;
        }
        vocab += ",\"th\":256,\"the\":257,\"\xC4\xA0t\":258";
        const std::string json = "{\"model\":{\"type\":\"BPE\",\"vocab\":{" + vocab +
                                 "},\"merges\":[\"t h\",\"th e\",\"\xC4\xA0 t\"]},"
                                 "\"added_tokens\":[{\"id\":259,\"content\":\"<img>\",\"special\":true},"
                                 "{\"id\":260,\"content\":\"<|im_end|>\",\"special\":true}],"
                                 "\"pre_tokenizer\":{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"use_regex\":true}}";
        return c3::text::BpeTokenizer::from_json_string(json);
    }();
    return instance;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string text(reinterpret_cast<const char*>(data), size);
    std::vector<int32_t> ids;
    try {
        ids = tokenizer().encode(text);
    } catch (const c3::TokenizerError&) {
        return 0;  // invalid UTF-8 is refused, with its offset
    }
    if (tokenizer().decode(ids) != text) std::abort();
    return 0;
}
