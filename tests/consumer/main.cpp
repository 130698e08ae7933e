// Builds a tiny model through the installed headers and checks that the KV cache agrees with the full forward.
#include <c3/model/generate.hpp>
#include <cmath>
#include <cstdio>

int main() {
    c3::TransformerConfig config;
    config.vocab_size = 32;
    config.hidden_size = 32;
    config.num_heads = 4;
    config.num_kv_heads = 2;
    config.head_dim = 8;
    c3::Transformer<float> model(config);
    model.init_random(1);
    std::vector<int32_t> prompt = {1, 2, 3, 4};
    c3::GenerationOptions options;
    options.max_new_tokens = 4;
    c3::GenerationResult result = c3::generate(model, c3::ForwardInput<float>{1, 4, prompt.data()}, options);
    std::vector<int32_t> sequence = prompt;
    sequence.insert(sequence.end(), result.tokens.begin(), result.tokens.end() - 1);
    c3::Activations<float> full;
    model.forward(c3::ForwardInput<float>{1, sequence.size(), sequence.data()}, full, c3::LogitsMode::Last, false);
    const int32_t best = int32_t(std::max_element(full.logits.begin(), full.logits.end()) - full.logits.begin());
    if (best != result.tokens.back()) {
        std::printf("consumer: cached and full decoding disagree\n");
        return 1;
    }
    std::printf("consumer: find_package(c3) works, generated %zu tokens\n", result.tokens.size());
    return 0;
}
