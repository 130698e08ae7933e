// Fuzzes the C3 config reader: arbitrary bytes as a C3 decoder config.json, with a fixed valid encoder config.
// An accepted config must give a cascade whose every size is bounded; a small one is built.
#include "c3/io/c3_checkpoint.hpp"
#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const c3::TransformerConfig encoder = c3::fuzz::small_encoder_config();
    try {
        const nlohmann::json json = c3::parse_json_text(std::string(reinterpret_cast<const char*>(data), size), "fuzz");
        const c3::CascadeConfig config = c3::io::parse_c3_config(json, "fuzz", encoder, c3::CascadeConfig{});
        const size_t total = c3::layout_size(c3::transformer_layout(config.decoder)) +
                             c3::layout_size(c3::bridge_layout(config));
        if (total < (size_t(1) << 16)) c3::Cascade<float> cascade(config);
    } catch (const c3::Error&) {
    }
    return 0;
}
