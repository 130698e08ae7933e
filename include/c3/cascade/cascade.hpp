// C3: an encoder LLM compresses a context into N latent tokens; a decoder LLM reads them and reconstructs it.
//
//   encoder input:  context tokens (left-padded) , <img> , N query slots , </img>
//                   the slots' embeddings are the learnable queries Q [N, d_enc]
//   latents:        encoder hidden states after the final norm at the slots -> projector -> [N, d_dec]
//   decoder input:  prompt prefix , <img> , N latent slots , </img> , prompt suffix , answer (right-padded)
//                   the slots' embeddings are the projected latents; a document compressed in K chunks gives K
//                   blocks, each in its own <img> ... </img>, and a task may replace the suffix (DecoderLayout)
//   loss:           next-token cross-entropy on the answer tokens only
// Backward runs the same path in reverse: decoder -> latents -> projector -> encoder slots -> Q and encoder.
#pragma once
#include <utility>

#include "c3/cascade/baselines.hpp"
#include "c3/model/generate.hpp"
#include "c3/model/loss.hpp"
#include "c3/ops/gelu.hpp"

namespace c3 {

enum class ProjectorKind { Linear, Mlp };

// Where each part of the decoder prompt sits: the prefix, then `blocks` latent blocks of `width` rows, each wrapped
// in its own <img> ... </img>, then the suffix (the prompt's, or a task's), then the answer. Each block keeps its
// own markers rather than a learned block-index embedding: it adds no parameters, so a pretrained decoder reads K
// blocks as it reads one, and the rotary positions already order the blocks.
struct DecoderLayout {
    size_t prefix = 0, width = 0, blocks = 1, suffix = 0;
    size_t slot(size_t block) const { return prefix + block * (width + 2) + 1; }  // the first row of a block
    size_t suffix_start() const { return prefix + blocks * (width + 2); }
    size_t prompt_length() const { return suffix_start() + suffix; }
    bool is_slot(size_t position) const {
        if (position < prefix || position >= suffix_start()) return false;
        const size_t within = (position - prefix) % (width + 2);
        return within >= 1 && within <= width;
    }
};

// The tasks a decoder prompt of a document's blocks can ask for, and the text of each one's suffix (the tokenizer
// turns it into ids): "chunk" asks for the text of chunk `chunk` (0-based; addressed reconstruction), "continue"
// for the text that follows the document. Text rather than new special tokens, so that vocabularies and checkpoint
// shapes stay as they are, and a pretrained decoder reads an instruction it can parse.
inline const std::vector<std::string>& task_names() {
    static const std::vector<std::string> names = {"chunk", "continue"};
    return names;
}
inline std::string task_prompt(const std::string& task, size_t chunk = 0) {
    if (task == "chunk") return "<chunk " + std::to_string(chunk) + ">";
    C3_CHECK(task == "continue", ValueError, "unknown task '", task, "' (chunk, continue)");
    C3_CHECK(chunk == 0, ValueError, "the continue task addresses no chunk, got chunk ", chunk);
    return "<continue>";
}

// A task's own decoder suffix for each row, in place of the prompt's: ids [B, length], left-padded (mask 1 =
// token; null: every position is a token). Null ids: the prompt suffix for every row.
struct TaskSuffix {
    const int32_t* ids = nullptr;
    const uint8_t* mask = nullptr;
    size_t length = 0;
};

struct CascadeConfig {
    TransformerConfig encoder, decoder;
    size_t num_latents = 16;
    ProjectorKind projector = ProjectorKind::Linear;
    CompressionMethod method = CompressionMethod::C3;  // C3 or a baseline (cascade/baselines.hpp)
    // Token ids in the shared vocabulary (the official tokenizer: 151857, 151858, 151859).
    int32_t latent_start_token = 0, latent_end_token = 0, latent_pad_token = 0;
    std::vector<int32_t> prompt_prefix, prompt_suffix;  // decoder prompt around the latent block
    std::vector<int32_t> stop_tokens;                   // end of an answer (<|im_end|> in the official model)

    size_t encoder_length(size_t context_length) const { return context_length + num_latents + 2; }
    size_t prompt_length() const { return prompt_length(num_latents); }
    size_t prompt_length(size_t block_width) const { return layout(block_width).prompt_length(); }
    DecoderLayout layout(size_t block_width, size_t blocks = 1) const {
        return {prompt_prefix.size(), block_width, blocks, prompt_suffix.size()};
    }
    // Rows of the decoder's latent block for contexts of `context_length` tokens.
    size_t block_width(size_t context_length) const {
        return method == CompressionMethod::NoContext ? 0
               : method == CompressionMethod::FullContext ? context_length
                                                          : num_latents;
    }
    // The longest context the encoder reads with its N queries and their two markers (the Python layer's limit for
    // every method).
    size_t max_context_length() const {
        return encoder.max_position_embeddings >= num_latents + 2 ? encoder.max_position_embeddings - num_latents - 2
                                                                  : 0;
    }
    // Blocks of the hierarchical encoder: as many as the longest context needs to reach N (hierarchical_depth), so
    // that one model serves every ratio up to max_context_length() / N; 0 for the other methods.
    size_t hierarchical_blocks() const {
        return method == CompressionMethod::Hierarchical ? hierarchical_depth(max_context_length(), num_latents) : 0;
    }

    void validate() const {
        encoder.validate();
        decoder.validate();
        // The queries and their two markers must fit in the encoder's positions, the prompt in the decoder's;
        // this also bounds every size computed from num_latents.
        C3_CHECK(num_latents > 0 && encoder.max_position_embeddings >= 2 &&
                     num_latents <= encoder.max_position_embeddings - 2,
                 ConfigError,
                 "num_latents must be positive and, with its 2 markers, fit in the encoder's ",
                 encoder.max_position_embeddings, " positions; got ", num_latents);
        C3_CHECK(prompt_length() <= decoder.max_position_embeddings, ConfigError, "the decoder prompt (",
                 prompt_length(), " tokens with the latents) exceeds the decoder's ", decoder.max_position_embeddings,
                 " positions");
        for (int32_t token : stop_tokens)
            C3_CHECK(token >= 0 && size_t(token) < decoder.vocab_size, ConfigError, "stop token ", token,
                     " is outside the decoder vocabulary of ", decoder.vocab_size);
        for (int32_t token : {latent_start_token, latent_end_token, latent_pad_token}) {
            C3_CHECK(token >= 0 && size_t(token) < encoder.vocab_size && size_t(token) < decoder.vocab_size,
                     ConfigError, "special token id ", token, " is outside the encoder (", encoder.vocab_size,
                     ") or decoder (", decoder.vocab_size, ") vocabulary");
        }
        for (int32_t token : prompt_prefix)
            C3_CHECK(token >= 0 && size_t(token) < decoder.vocab_size, ConfigError, "prompt token ", token,
                     " is outside the decoder vocabulary");
        for (int32_t token : prompt_suffix)
            C3_CHECK(token >= 0 && size_t(token) < decoder.vocab_size, ConfigError, "prompt token ", token,
                     " is outside the decoder vocabulary");
    }
};

// Q and the projector, named as in the official checkpoint. Q is the first entry; the projector's tensors follow,
// then, for the hierarchical baseline only, its blocks (model.hierarchical.blocks.{i}.*, cascade/hierarchical.hpp).
inline std::vector<ParameterInfo> bridge_layout(const CascadeConfig& c) {
    LayoutBuilder b;
    const size_t de = c.encoder.hidden_size, dd = c.decoder.hidden_size;
    b.add("model.Q.weight", {c.num_latents, de}, ParameterKind::Embedding);
    if (c.projector == ProjectorKind::Linear) {
        b.add("model.mm_projector.weight", {dd, de}, ParameterKind::Matrix);
        b.add("model.mm_projector.bias", {dd}, ParameterKind::Bias);
    } else {
        b.add("model.mm_projector.0.weight", {dd, de}, ParameterKind::Matrix);
        b.add("model.mm_projector.0.bias", {dd}, ParameterKind::Bias);
        b.add("model.mm_projector.2.weight", {dd, dd}, ParameterKind::Matrix);
        b.add("model.mm_projector.2.bias", {dd}, ParameterKind::Bias);
    }
    add_hierarchical_layout(b, de, c.hierarchical_blocks());
    return b.entries;
}

// Pointers to Q and the projector in a buffer of bridge_layout (parameters or gradients), as TransformerWeights
// has for a transformer. The MLP projector is projector_weight, GELU, then output_weight; the linear one has no
// output layer (null).
template <typename T>
struct BridgeWeights {
    T* queries = nullptr;                                   // Q [N, d_enc]
    T *projector_weight = nullptr, *projector_bias = nullptr;  // [d_dec, d_enc], [d_dec]
    T *output_weight = nullptr, *output_bias = nullptr;        // [d_dec, d_dec], [d_dec] (MLP projector only)
    std::vector<HierarchicalBlockWeights<T>> blocks;           // the hierarchical baseline's blocks (else empty)
};

// With a trainable mask (one byte per layout entry), frozen entries get null pointers.
template <typename T>
BridgeWeights<T> bind_bridge_weights(const CascadeConfig& c, const std::vector<ParameterInfo>& layout, T* base,
                                     const std::vector<uint8_t>* trainable = nullptr) {
    size_t index = 0;
    auto next = [&]() -> T* {
        const size_t entry = index++;
        return (trainable && !(*trainable)[entry]) ? nullptr : base + layout.at(entry).offset;
    };
    BridgeWeights<T> w;
    w.queries = next();
    w.projector_weight = next();
    w.projector_bias = next();
    if (c.projector == ProjectorKind::Mlp) {
        w.output_weight = next();
        w.output_bias = next();
    }
    w.blocks.resize(c.hierarchical_blocks());
    for (HierarchicalBlockWeights<T>& block : w.blocks) {
        block.conv1 = next();
        block.norm1_weight = next();
        block.norm1_bias = next();
        block.conv2 = next();
        block.norm2_weight = next();
        block.norm2_bias = next();
    }
    return w;
}

// One batch of (context, answer) pairs for Cascade::loss. Contexts are left-padded, answers right-padded; a null
// mask means every position is a token. With blocks = K, each answer reads the K chunks that follow each other in
// `contexts` (batch * K rows), each compressed into its own block; task replaces the prompt suffix.
struct CascadeBatch {
    const int32_t* contexts = nullptr;    // [batch * blocks, context_length]
    const uint8_t* context_mask = nullptr;
    size_t context_length = 0;
    const int32_t* answers = nullptr;     // [batch, answer_length]
    const uint8_t* answer_mask = nullptr;
    size_t answer_length = 0;
    size_t batch = 0;
    size_t blocks = 1;
    TaskSuffix task;

    CascadeBatch() = default;
    CascadeBatch(const int32_t* contexts_, const uint8_t* context_mask_, size_t context_length_,
                 const int32_t* answers_, const uint8_t* answer_mask_, size_t answer_length_, size_t batch_,
                 size_t blocks_ = 1, TaskSuffix task_ = {})
        : contexts(contexts_), context_mask(context_mask_), context_length(context_length_), answers(answers_),
          answer_mask(answer_mask_), answer_length(answer_length_), batch(batch_), blocks(blocks_), task(task_) {}

    size_t answer_tokens() const { return count_real_tokens(answer_mask, batch * answer_length); }
    // Sequences [begin, begin + size) as a batch of their own.
    CascadeBatch sequences(size_t begin, size_t size) const {
        const size_t rows = begin * blocks * context_length;
        TaskSuffix part = task;
        if (task.ids) part.ids += begin * task.length;
        if (task.mask) part.mask += begin * task.length;
        return {contexts + rows, context_mask ? context_mask + rows : nullptr, context_length,
                answers + begin * answer_length, answer_mask ? answer_mask + begin * answer_length : nullptr,
                answer_length, size, blocks, part};
    }
};

// How Cascade::loss runs, and what it reports besides the sum.
template <typename T>
struct CascadeLossOptions {
    bool backward = false;                 // accumulate token_weight * d(sum) into every trainable part
    T token_weight = T(0);                 // 1 / tokens makes the gradient that of the mean
    size_t* token_count = nullptr;         // when set: receives the number of answer tokens scored
    std::vector<T>* row_losses = nullptr;  // when set: receives each decoder row's loss [B * Ld]
};

template <typename T>
struct CascadeActivations {
    size_t batch = 0, context_length = 0, answer_length = 0;
    Activations<T> encoder, decoder;
    std::vector<T> encoder_input;  // [B, Le, d_enc]
    std::vector<T> decoder_input;  // [B, Ld, d_dec]
    std::vector<uint8_t> encoder_mask, decoder_mask;
    std::vector<int32_t> encoder_ids, decoder_ids;
    std::vector<T> slot_states;   // [B, N, d_enc]: encoder hidden at the slots
    std::vector<T> projector_hidden, projector_activation;  // [B, N, d_dec] (MLP projector only)
    std::vector<T> latents;       // [B, W, d_dec]
    size_t block_width = 0;       // W: rows of the decoder's latent block (N for C3)
    DecoderLayout layout;         // the decoder prompt of the last build_decoder_input
    std::vector<uint8_t> block_mask;  // [B, W] (empty: all rows real)
    std::vector<int32_t> block_ids;   // [B, W]: the context tokens in the block (truncation, full context)
    std::vector<size_t> pool_windows; // [B, N, 2]: mean pooling's [begin, end) in the context
    std::vector<HierarchicalSequence<T>> hierarchical;  // [B]: the hierarchical encoder's saved activations
};

// Where Cascade::loss_into accumulates parameter gradients: the model's own buffers, or one set per thread in
// data-parallel training (train/cascade_trainer.hpp). A null part gets none.
template <typename T>
struct CascadeGradients {
    const TransformerWeights<T>* encoder = nullptr;  // Transformer::bind_gradients (null tensors where frozen)
    const TransformerWeights<T>* decoder = nullptr;
    T* bridge = nullptr;  // a buffer of bridge_layout (Q and the projector); frozen entries are left alone
};

// The encoder's and decoder's copies of their matrices for one training step (StepWeights: float transposed or
// bf16), taken from the current parameters; null: the plain weights.
template <typename T>
struct CascadeStepWeights {
    const StepWeights<T>* encoder = nullptr;
    const StepWeights<T>* decoder = nullptr;
};

// Per-position teacher-forced scores of reference answers.
struct AnswerScores {
    size_t batch = 0, length = 0;
    std::vector<float> log_probability;  // [B, La]: log p(reference token | latents, previous reference tokens)
    std::vector<int32_t> rank;           // [B, La]: 0 = the reference token was the top prediction
    std::vector<int32_t> predicted;      // [B, La]: the argmax token
    std::vector<uint8_t> valid;          // [B, La]
};

template <typename T>
class Cascade {
public:
    using Operand = ops::MatrixOperand<T>;  // the projector's float matrices, as ops/products.hpp takes them
    CascadeConfig config;
    Transformer<T> encoder, decoder;
    std::vector<ParameterInfo> bridge;
    std::vector<T> bridge_parameters, bridge_gradients;
    std::vector<uint8_t> bridge_trainable;

    explicit Cascade(const CascadeConfig& cascade_config, WeightStorage storage = WeightStorage::Float)
        : config(cascade_config), encoder(cascade_config.encoder, storage), decoder(cascade_config.decoder, storage) {
        config.validate();
        bridge = bridge_layout(config);
        bridge_parameters.assign(layout_size(bridge), T(0));
        bridge_gradients.assign(bridge_parameters.size(), T(0));
        bridge_trainable.assign(bridge.size(), 1);
        init_parameters(bridge_parameters.data(), bridge, config.encoder.initializer_range, 0);
    }

    void init_random(uint64_t seed) {
        encoder.init_random(seed * 3 + 1);
        decoder.init_random(seed * 3 + 2);
        init_parameters(bridge_parameters.data(), bridge, config.encoder.initializer_range, seed * 3 + 3);
    }
    // Views of Q and the projector, bound on each call (so that a copied cascade points at its own buffers).
    BridgeWeights<T> bridge_weights() { return bind_bridge_weights(config, bridge, bridge_parameters.data()); }
    BridgeWeights<const T> bridge_weights() const {
        return bind_bridge_weights(config, bridge, static_cast<const T*>(bridge_parameters.data()));
    }
    // Their gradients: null where frozen.
    BridgeWeights<T> bridge_weight_gradients() {
        return bind_bridge_weights(config, bridge, bridge_gradients.data(), &bridge_trainable);
    }
    // Freezing by part: "encoder", "decoder", "queries" (Q), "projector" or "hierarchical" (the hierarchical
    // baseline's blocks; nothing for the other methods).
    void set_trainable(const std::string& part, bool value) {
        if (part == "encoder") encoder.set_trainable("", value);
        else if (part == "decoder") decoder.set_trainable("", value);
        else if (part == "queries") bridge_trainable.front() = value;  // Q leads bridge_layout
        else if (part == "projector" || part == "hierarchical") {
            const std::string prefix = part == "projector" ? "model.mm_projector." : "model.hierarchical.";
            for (size_t e = 0; e < bridge.size(); ++e)
                if (bridge[e].name.compare(0, prefix.size(), prefix) == 0) bridge_trainable[e] = value;
        } else {
            throw ValueError("unknown cascade part '" + part + "' (encoder, decoder, queries, projector, hierarchical)");
        }
    }
    std::vector<ParameterGroup<T>> parameter_groups() {
        return {encoder.parameter_group("encoder"), decoder.parameter_group("decoder"),
                {"bridge", bridge_parameters.data(), bridge_gradients.data(), &bridge, &bridge_trainable}};
    }
    // Zeroes every gradient buffer, frozen parts included, so that those read as exact zeros.
    void zero_gradients() {
        encoder.enable_gradients();
        decoder.enable_gradients();
        encoder.zero_gradients();
        decoder.zero_gradients();
        std::fill(bridge_gradients.begin(), bridge_gradients.end(), T(0));
    }
    size_t num_parameters() const {
        return encoder.num_parameters() + decoder.num_parameters() + bridge_parameters.size();
    }

    // Contexts [B, Lc] (left-padded, mask 1 = token) -> latents [B, N, d_dec] in a.latents.
    // step: the encoder's copies of its matrices (StepWeights; null: the plain weights).
    void compress(const int32_t* contexts, const uint8_t* context_mask, size_t batch, size_t context_length,
                  CascadeActivations<T>& a, bool save_for_backward,
                  const StepWeights<T>* step = nullptr) const {
        const size_t N = config.num_latents, de = config.encoder.hidden_size;
        const size_t Le = config.encoder_length(context_length);
        for (size_t b = 0; b < batch && context_mask; ++b) {
            size_t real = 0;
            for (size_t t = 0; t < context_length; ++t) real += context_mask[b * context_length + t] != 0;
            C3_CHECK(real > 0, ValueError, "context ", b, " has no tokens (its mask is all padding)");
        }
        a.batch = batch;
        a.context_length = context_length;
        a.block_width = N;
        a.block_mask.clear();
        a.block_ids.clear();
        if (config.method == CompressionMethod::MeanPool) {
            baselines::mean_pool_forward(*this, contexts, context_mask, batch, context_length, a);
            project(a);
            return;
        }
        if (config.method == CompressionMethod::MeanPoolHidden) {
            baselines::mean_pool_hidden_forward(*this, contexts, context_mask, batch, context_length, a,
                                                save_for_backward, step);
            project(a);
            return;
        }
        if (config.method == CompressionMethod::Hierarchical) {
            baselines::hierarchical_forward(*this, contexts, context_mask, batch, context_length, a);
            project(a);
            return;
        }
        if (config.method != CompressionMethod::C3) {
            baselines::context_tokens_forward(*this, contexts, context_mask, batch, context_length, a);
            return;
        }
        a.encoder_ids.assign(batch * Le, config.latent_pad_token);
        a.encoder_mask.assign(batch * Le, 1);
        for (size_t b = 0; b < batch; ++b) {
            int32_t* row = a.encoder_ids.data() + b * Le;
            for (size_t t = 0; t < context_length; ++t) {
                row[t] = contexts[b * context_length + t];
                a.encoder_mask[b * Le + t] = context_mask ? context_mask[b * context_length + t] : 1;
            }
            row[context_length] = config.latent_start_token;
            row[Le - 1] = config.latent_end_token;
        }
        a.encoder_input.resize(batch * Le * de);
        encoder.embed(a.encoder_input.data(), a.encoder_ids.data(), batch * Le);
        const T* queries = bridge_weights().queries;
        for (size_t b = 0; b < batch; ++b)
            std::memcpy(a.encoder_input.data() + (b * Le + context_length + 1) * de, queries, N * de * sizeof(T));
        ForwardInput<T> in{batch, Le, nullptr, a.encoder_input.data(), a.encoder_mask.data(), nullptr};
        encoder.forward(in, a.encoder, LogitsMode::None, save_for_backward, nullptr, step);
        a.slot_states.resize(batch * N * de);
        for (size_t b = 0; b < batch; ++b)
            std::memcpy(a.slot_states.data() + b * N * de, a.encoder.hidden.data() + (b * Le + context_length + 1) * de,
                        N * de * sizeof(T));
        project(a);
    }

    // Decoder input for given latents [B, N, d_dec] and answers [B, La] (right-padded, may be empty: La = 0).
    void build_decoder_input(const T* latents, const int32_t* answers, const uint8_t* answer_mask, size_t batch,
                             size_t answer_length, CascadeActivations<T>& a) const {
        build_decoder_input(latents, config.num_latents, 1, nullptr, {}, answers, answer_mask, batch, answer_length,
                            a);
    }
    // The same for a block of W latent rows [B, W, d_dec] with a mask [B, W] (null: all real).
    void build_decoder_input(const T* latents, size_t block_width, const uint8_t* block_mask, const int32_t* answers,
                             const uint8_t* answer_mask, size_t batch, size_t answer_length,
                             CascadeActivations<T>& a) const {
        build_decoder_input(latents, block_width, 1, block_mask, {}, answers, answer_mask, batch, answer_length, a);
    }
    // The same for K blocks of W rows each: latents [B, K * W, d_dec] (each row's K blocks in order), mask
    // [B, K * W], and a task's suffix in place of the prompt's. a.block_ids, when it holds B * K * W ids, names
    // the tokens in the blocks (for the decoder's embedding gradient).
    void build_decoder_input(const T* latents, size_t block_width, size_t blocks, const uint8_t* block_mask,
                             const TaskSuffix& task, const int32_t* answers, const uint8_t* answer_mask,
                             size_t batch, size_t answer_length, CascadeActivations<T>& a) const {
        const DecoderLayout layout{config.prompt_prefix.size(), block_width, blocks,
                                   task.ids ? task.length : config.prompt_suffix.size()};
        check_decoder_prompt(layout);
        const size_t rows = blocks * block_width, dd = config.decoder.hidden_size, P = layout.prompt_length();
        const size_t Ld = P + answer_length;
        if (block_mask != a.block_mask.data())
            a.block_mask.assign(block_mask, block_mask ? block_mask + batch * rows : block_mask);
        if (a.block_ids.size() != batch * rows) a.block_ids.clear();
        a.block_width = block_width;
        a.layout = layout;
        a.batch = batch;
        a.answer_length = answer_length;
        a.decoder_ids.assign(batch * Ld, config.latent_pad_token);
        a.decoder_mask.assign(batch * Ld, 1);
        for (size_t b = 0; b < batch; ++b) {
            int32_t* row = a.decoder_ids.data() + b * Ld;
            uint8_t* row_mask = a.decoder_mask.data() + b * Ld;
            std::copy(config.prompt_prefix.begin(), config.prompt_prefix.end(), row);
            for (size_t k = 0; k < blocks; ++k) {
                const size_t slot = layout.slot(k);
                row[slot - 1] = config.latent_start_token;
                for (size_t i = 0; i < block_width; ++i) {
                    const size_t index = b * rows + k * block_width + i;
                    if (!a.block_ids.empty()) row[slot + i] = a.block_ids[index];
                    if (!a.block_mask.empty()) row_mask[slot + i] = a.block_mask[index];
                }
                row[slot + block_width] = config.latent_end_token;
            }
            int32_t* suffix = row + layout.suffix_start();
            if (task.ids) {
                for (size_t i = 0; i < task.length; ++i) {
                    const bool real = !task.mask || task.mask[b * task.length + i];
                    suffix[i] = real ? task.ids[b * task.length + i] : config.latent_pad_token;
                    row_mask[layout.suffix_start() + i] = real;
                }
            } else {
                std::copy(config.prompt_suffix.begin(), config.prompt_suffix.end(), suffix);
            }
            for (size_t t = 0; t < answer_length; ++t) {
                const bool real = !answer_mask || answer_mask[b * answer_length + t];
                row[P + t] = real ? answers[b * answer_length + t] : 0;
                row_mask[P + t] = real;
            }
        }
        a.decoder_input.resize(batch * Ld * dd);
        decoder.embed(a.decoder_input.data(), a.decoder_ids.data(), batch * Ld);
        for (size_t b = 0; b < batch && block_width > 0; ++b)
            for (size_t k = 0; k < blocks; ++k)
                std::memcpy(a.decoder_input.data() + (b * Ld + layout.slot(k)) * dd,
                            latents + (b * rows + k * block_width) * dd, block_width * dd * sizeof(T));
    }

    // A prompt of the layout's blocks fits the decoder's positions, or a ValueError, before anything is allocated
    // (compared by division, so that no product of a hostile block count wraps).
    void check_decoder_prompt(const DecoderLayout& layout) const {
        const size_t limit = config.decoder.max_position_embeddings;
        C3_CHECK(layout.blocks >= 1, ValueError, "a decoder prompt holds at least one latent block");
        C3_CHECK(layout.blocks <= limit / (layout.width + 2) && layout.prefix + layout.suffix <= limit &&
                     layout.prompt_length() <= limit,
                 ValueError, "a decoder prompt of ", layout.blocks, " blocks of ", layout.width,
                 " rows (each with its two markers) and ", layout.prefix + layout.suffix,
                 " prompt tokens exceeds the decoder's ", limit, " positions");
    }

    // Targets for the decoder rows: the row before each real answer token predicts it.
    std::vector<int32_t> answer_targets(const CascadeActivations<T>& a) const {
        const size_t P = a.layout.prompt_length(), Ld = P + a.answer_length;
        std::vector<int32_t> targets(a.batch * Ld, ops::kIgnoreIndex);
        for (size_t b = 0; b < a.batch; ++b)
            for (size_t t = 0; t < a.answer_length; ++t)
                if (a.decoder_mask[b * Ld + P + t]) targets[b * Ld + P + t - 1] = a.decoder_ids[b * Ld + P + t];
        return targets;
    }

    // Sum of answer-token losses over the batch; options.backward also accumulates token_weight * d(sum) into
    // every trainable part (the cascade's own gradient buffers).
    double loss(const CascadeBatch& batch, CascadeActivations<T>& a, const CascadeLossOptions<T>& options = {}) {
        const bool encoder_gradients = options.backward && encoder.any_trainable();
        const bool decoder_gradients = options.backward && decoder.any_trainable();
        if (encoder_gradients) encoder.enable_gradients();
        if (decoder_gradients) decoder.enable_gradients();
        const CascadeGradients<T> gradients{encoder_gradients ? &encoder.weight_gradients : nullptr,
                                            decoder_gradients ? &decoder.weight_gradients : nullptr,
                                            bridge_gradients.data()};
        return loss_into(batch, a, options, gradients);
    }

    // The same, accumulating into explicit gradient buffers, with the products reading the step's copies of the
    // matrices where given. Does not modify the cascade, so threads may run it at once on their own activations
    // and buffers.
    double loss_into(const CascadeBatch& batch, CascadeActivations<T>& a, const CascadeLossOptions<T>& options,
                     const CascadeGradients<T>& gradients, const CascadeStepWeights<T>& step = {}) const {
        const bool backward = options.backward;
        const size_t B = batch.batch;
        const bool bridge_side = gradients.bridge && any_bridge_trainable();
        const bool encoder_side = backward && (gradients.encoder || bridge_side);
        check_decoder_prompt({config.prompt_prefix.size(), config.block_width(batch.context_length), batch.blocks,
                              batch.task.ids ? batch.task.length : config.prompt_suffix.size()});
        compress(batch.contexts, batch.context_mask, B * batch.blocks, batch.context_length, a, encoder_side,
                 step.encoder);
        build_decoder_input(a.latents.data(), a.block_width, batch.blocks,
                            a.block_mask.empty() ? nullptr : a.block_mask.data(), batch.task, batch.answers,
                            batch.answer_mask, B, batch.answer_length, a);
        const std::vector<int32_t> targets = answer_targets(a);
        if (options.token_count) *options.token_count = count_targets(targets.data(), targets.size());
        const size_t Ld = a.layout.prompt_length() + batch.answer_length, dd = config.decoder.hidden_size;
        ForwardInput<T> in{B, Ld, nullptr, a.decoder_input.data(), a.decoder_mask.data(), nullptr};
        std::vector<T> dinput;
        if (encoder_side) dinput.assign(B * Ld * dd, T(0));
        // The decoder's own embedding rows get their gradient below, from dinput, so that latent rows stay apart.
        const TransformerWeights<T>* decoder_gradients = backward ? gradients.decoder : nullptr;
        double total = language_model_loss_into(decoder, in, targets.data(), backward, options.token_weight, a.decoder,
                                                decoder_gradients,
                                                encoder_side || decoder_gradients ? ensure_dinput(dinput, B * Ld * dd)
                                                                                  : nullptr,
                                                options.row_losses, step.decoder);
        if (backward) backward_from_decoder_input(a, dinput, gradients, step.encoder);
        return total;
    }

    // Latents [B, N, d_dec] -> per-position scores of the reference answers (teacher forcing).
    AnswerScores score(const T* latents, const int32_t* answers, const uint8_t* answer_mask, size_t batch,
                       size_t answer_length, CascadeActivations<T>& a) const {
        return score(latents, config.num_latents, nullptr, answers, answer_mask, batch, answer_length, a);
    }
    // The same for a latent block of W rows [B, W, d_dec] with a mask [B, W] (null: all real).
    AnswerScores score(const T* latents, size_t block_width, const uint8_t* block_mask, const int32_t* answers,
                       const uint8_t* answer_mask, size_t batch, size_t answer_length, CascadeActivations<T>& a) const {
        return score(latents, block_width, 1, block_mask, {}, answers, answer_mask, batch, answer_length, a);
    }
    // The same for K blocks [B, K * W, d_dec] (mask [B, K * W]) and a task's suffix (build_decoder_input).
    AnswerScores score(const T* latents, size_t block_width, size_t blocks, const uint8_t* block_mask,
                       const TaskSuffix& task, const int32_t* answers, const uint8_t* answer_mask, size_t batch,
                       size_t answer_length, CascadeActivations<T>& a) const {
        a.block_ids.clear();
        build_decoder_input(latents, block_width, blocks, block_mask, task, answers, answer_mask, batch,
                            answer_length, a);
        const size_t P = a.layout.prompt_length(), Ld = P + answer_length, V = config.decoder.vocab_size;
        ForwardInput<T> in{batch, Ld, nullptr, a.decoder_input.data(), a.decoder_mask.data(), nullptr};
        decoder.forward(in, a.decoder, LogitsMode::All, false);
        AnswerScores s;
        s.batch = batch;
        s.length = answer_length;
        s.log_probability.assign(batch * answer_length, 0.f);
        s.rank.assign(batch * answer_length, -1);
        s.predicted.assign(batch * answer_length, -1);
        s.valid.assign(batch * answer_length, 0);
        parallel_for(batch * answer_length, [&](size_t i) {
            const size_t b = i / answer_length, t = i % answer_length;
            if (!a.decoder_mask[b * Ld + P + t]) return;
            const T* logits = a.decoder.logits.data() + (b * Ld + P + t - 1) * V;
            const int32_t reference = a.decoder_ids[b * Ld + P + t];
            T max_logit = *std::max_element(logits, logits + V);
            double total = 0;
            int32_t rank = 0;
            for (size_t v = 0; v < V; ++v) {
                total += std::exp(double(logits[v] - max_logit));
                rank += logits[v] > logits[reference];
            }
            s.log_probability[i] = float(double(logits[reference] - max_logit) - std::log(total));
            s.rank[i] = rank;
            s.predicted[i] = int32_t(std::max_element(logits, logits + V) - logits);
            s.valid[i] = 1;
        });
        return s;
    }

    // Greedy or sampled reconstruction from latents [B, N, d_dec]. The n-gram rule sees the prompt ids.
    // options.stop_tokens are used as given (config.stop_tokens holds the cascade's own; empty: no stop).
    GenerationResult reconstruct(const T* latents, size_t batch, const GenerationOptions& options) const {
        return reconstruct(latents, config.num_latents, nullptr, batch, options);
    }
    // The same for a latent block of W rows [B, W, d_dec] with a mask [B, W] (null: all real).
    GenerationResult reconstruct(const T* latents, size_t block_width, const uint8_t* block_mask, size_t batch,
                                 const GenerationOptions& options) const {
        return reconstruct(latents, block_width, 1, block_mask, {}, batch, options);
    }
    // The same for K blocks [B, K * W, d_dec] (mask [B, K * W]) and a task's suffix (build_decoder_input): a
    // task's answer, such as one chunk of the document or the text that follows it.
    GenerationResult reconstruct(const T* latents, size_t block_width, size_t blocks, const uint8_t* block_mask,
                                 const TaskSuffix& task, size_t batch, const GenerationOptions& options) const {
        CascadeActivations<T> a;
        build_decoder_input(latents, block_width, blocks, block_mask, task, nullptr, nullptr, batch, 0, a);
        const size_t P = a.layout.prompt_length();
        const bool masked = block_mask || (task.ids && task.mask);
        std::vector<std::vector<int32_t>> history(batch);
        for (size_t b = 0; b < batch; ++b)
            for (size_t t = 0; t < P; ++t)
                if (a.decoder_mask[b * P + t]) history[b].push_back(a.decoder_ids[b * P + t]);
        ForwardInput<T> in{batch, P, nullptr, a.decoder_input.data(), masked ? a.decoder_mask.data() : nullptr,
                           nullptr};
        return generate(decoder, in, options, &history);
    }

    bool any_bridge_trainable() const {
        return std::find(bridge_trainable.begin(), bridge_trainable.end(), 1) != bridge_trainable.end();
    }

private:
    // Sets a.batch to the encoder's rows (the chunks) for the encoder side of a backward pass, which reads it, and
    // back to the decoder's rows when the pass ends.
    struct EncoderBatch {
        CascadeActivations<T>& a;
        size_t decoder_batch;
        EncoderBatch(CascadeActivations<T>& activations, size_t rows) : a(activations), decoder_batch(a.batch) {
            a.batch = rows;
        }
        ~EncoderBatch() { a.batch = decoder_batch; }
        EncoderBatch(const EncoderBatch&) = delete;
        EncoderBatch& operator=(const EncoderBatch&) = delete;
    };

    static T* ensure_dinput(std::vector<T>& dinput, size_t count) {
        if (dinput.size() != count) dinput.assign(count, T(0));
        return dinput.data();
    }

    void project(CascadeActivations<T>& a) const {
        const size_t rows = a.batch * config.num_latents, de = config.encoder.hidden_size, dd = config.decoder.hidden_size;
        a.latents.resize(rows * dd);
        const BridgeWeights<const T> w = bridge_weights();
        if (config.projector == ProjectorKind::Linear) {
            ops::product_forward(a.latents.data(), a.slot_states.data(), Operand{w.projector_weight}, w.projector_bias,
                                 rows, de, dd);
        } else {
            a.projector_hidden.resize(rows * dd);
            a.projector_activation.resize(rows * dd);
            ops::product_forward(a.projector_hidden.data(), a.slot_states.data(), Operand{w.projector_weight},
                                 w.projector_bias, rows, de, dd);
            ops::gelu_forward(a.projector_activation.data(), a.projector_hidden.data(), rows * dd);
            ops::product_forward(a.latents.data(), a.projector_activation.data(), Operand{w.output_weight},
                                 w.output_bias, rows, dd, dd);
        }
    }

    // dinput: gradient on the decoder's input embeddings [B, Ld, d_dec]. Splits it into the decoder's embedding
    // table (token rows) and the latents (slot rows), then runs projector and encoder backward (encoder_step: the
    // encoder's forward copies of its matrices, see compress).
    void backward_from_decoder_input(CascadeActivations<T>& a, const std::vector<T>& dinput,
                                     const CascadeGradients<T>& gradients,
                                     const StepWeights<T>* encoder_step = nullptr) const {
        const size_t N = config.num_latents, de = config.encoder.hidden_size, dd = config.decoder.hidden_size;
        const DecoderLayout& layout = a.layout;
        const size_t Ld = layout.prompt_length() + a.answer_length;
        if (dinput.empty()) return;
        // Truncation and full context put the decoder's own token embeddings in the block: they train them too.
        const bool block_holds_tokens = uses_context_tokens(config.method);
        T* decoder_embed = gradients.decoder ? gradients.decoder->embed : nullptr;
        T* encoder_embed = gradients.encoder ? gradients.encoder->embed : nullptr;
        if (decoder_embed) {
            for (size_t b = 0; b < a.batch; ++b)
                for (size_t t = 0; t < Ld; ++t) {
                    if (!block_holds_tokens && layout.is_slot(t)) continue;
                    if (!a.decoder_mask[b * Ld + t]) continue;
                    T* row = decoder_embed + size_t(a.decoder_ids[b * Ld + t]) * dd;
                    const T* g = dinput.data() + (b * Ld + t) * dd;
                    for (size_t i = 0; i < dd; ++i) row[i] += g[i];
                }
        }
        if (!(gradients.encoder || (gradients.bridge && any_bridge_trainable()))) return;
        if (!uses_projector(config.method)) return;
        // The encoder side runs over every compressed chunk: K per decoder row, in a.latents' order.
        const size_t B = a.batch * layout.blocks;
        std::vector<T> dlatents(B * N * dd);
        for (size_t b = 0; b < a.batch; ++b)
            for (size_t k = 0; k < layout.blocks; ++k)
                std::memcpy(dlatents.data() + (b * layout.blocks + k) * N * dd,
                            dinput.data() + (b * Ld + layout.slot(k)) * dd, N * dd * sizeof(T));
        EncoderBatch restore_batch(a, B);
        // Projector.
        const size_t rows = B * N;
        const BridgeWeights<const T> w = bridge_weights();
        // Gradient views into the given buffer: null where frozen or without a buffer.
        const BridgeWeights<T> g = gradients.bridge
                                       ? bind_bridge_weights(config, bridge, gradients.bridge, &bridge_trainable)
                                       : BridgeWeights<T>{};
        std::vector<T> dslots(rows * de, T(0));
        if (config.projector == ProjectorKind::Linear) {
            ops::product_backward(dslots.data(), g.projector_weight, g.projector_bias, dlatents.data(),
                                  a.slot_states.data(), Operand{w.projector_weight}, rows, de, dd);
        } else {
            std::vector<T> dactivation(rows * dd, T(0)), dhidden(rows * dd, T(0));
            ops::product_backward(dactivation.data(), g.output_weight, g.output_bias, dlatents.data(),
                                  a.projector_activation.data(), Operand{w.output_weight}, rows, dd, dd);
            ops::gelu_backward(dhidden.data(), dactivation.data(), a.projector_hidden.data(), rows * dd);
            ops::product_backward(dslots.data(), g.projector_weight, g.projector_bias, dhidden.data(),
                                  a.slot_states.data(), Operand{w.projector_weight}, rows, de, dd);
        }
        if (config.method == CompressionMethod::MeanPool) {
            baselines::mean_pool_backward(*this, a, dslots.data(), encoder_embed);
            return;
        }
        if (config.method == CompressionMethod::MeanPoolHidden) {
            baselines::mean_pool_hidden_backward(*this, a, dslots.data(), gradients.encoder, encoder_step);
            return;
        }
        if (config.method == CompressionMethod::Hierarchical) {
            baselines::hierarchical_backward(*this, a, dslots.data(), g.blocks, encoder_embed);
            return;
        }
        T* dqueries = g.queries;  // null when Q is frozen
        if (!gradients.encoder && !dqueries) return;
        // Encoder: the gradient enters at the slot rows of its final hidden states.
        const size_t Lc = a.context_length, Le = config.encoder_length(Lc);
        std::vector<T> dhidden(B * Le * de, T(0)), dencoder_input(B * Le * de, T(0));
        for (size_t b = 0; b < B; ++b)
            std::memcpy(dhidden.data() + (b * Le + Lc + 1) * de, dslots.data() + b * N * de, N * de * sizeof(T));
        encoder.backward_into(a.encoder, nullptr, dhidden.data(), dencoder_input.data(), gradients.encoder,
                              encoder_step);
        // Slot rows feed Q; token rows feed the encoder's embedding table.
        for (size_t b = 0; b < B; ++b)
            for (size_t t = 0; t < Le; ++t) {
                const T* g = dencoder_input.data() + (b * Le + t) * de;
                T* target = nullptr;
                if (t > Lc && t <= Lc + N) target = dqueries ? dqueries + (t - Lc - 1) * de : nullptr;
                else if (encoder_embed)
                    target = encoder_embed + size_t(a.encoder_ids[b * Le + t]) * de;
                if (target)
                    for (size_t i = 0; i < de; ++i) target[i] += g[i];
            }
    }
};

// A cascade from two (pretrained) transformers, copied in. `settings` gives all but the encoder's and decoder's
// configs (num_latents, projector, method, special tokens, prompt, stop tokens), which come from the models; Q and
// the projector start random, as init_random(seed) makes them. The models must be float-stored, as a cascade is
// trained and saved in float.
template <typename T>
Cascade<T> cascade_from_models(const Transformer<T>& encoder, const Transformer<T>& decoder, CascadeConfig settings,
                               uint64_t seed) {
    C3_CHECK(!encoder.stores_bf16() && !decoder.stores_bf16(), ValueError,
             "from_models needs float-stored models (a cascade is trained and saved in float); "
             "load them with storage='float32'");
    settings.encoder = encoder.config;
    settings.decoder = decoder.config;
    settings.validate();  // before the two transformers are allocated
    Cascade<T> cascade(settings);
    cascade.init_random(seed);
    cascade.encoder.parameters = encoder.parameters;
    cascade.decoder.parameters = decoder.parameters;
    return cascade;
}

}  // namespace c3
