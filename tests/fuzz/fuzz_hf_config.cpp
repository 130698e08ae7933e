// Fuzzes the Hugging Face config reader: arbitrary bytes as config.json. An accepted config must describe a
// model whose layout (every size and product) is computable; a small one is built and run for one token.
#include "c3/io/hf_config.hpp"
#include "c3/model/transformer.hpp"
#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    try {
        const nlohmann::json json = c3::parse_json_text(std::string(reinterpret_cast<const char*>(data), size), "fuzz");
        const c3::TransformerConfig config = c3::io::parse_hf_config(json, "fuzz");
        const auto layout = c3::transformer_layout(config);
        if (c3::layout_size(layout) < (size_t(1) << 16) && config.max_position_embeddings >= 1) {
            c3::Transformer<float> model(config);
            const int32_t id = 0;
            c3::ForwardInput<float> input{1, 1, &id, nullptr, nullptr, nullptr};
            c3::Activations<float> activations;
            model.forward(input, activations, c3::LogitsMode::Last, false);
        }
    } catch (const c3::Error&) {
    }
    return 0;
}
