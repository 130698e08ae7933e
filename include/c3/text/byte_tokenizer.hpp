// A byte-level tokenizer for from-scratch experiments: ids 0..255 are the bytes of the UTF-8 text, then the
// named special tokens. No training, no unknown text: every string encodes.
#pragma once
#include <string>
#include <vector>

#include "c3/core/errors.hpp"

namespace c3::text {

class ByteTokenizer {
public:
    explicit ByteTokenizer(std::vector<std::string> special_tokens = {"<pad>", "<bos>", "<eos>", "<img>", "</img>", "<imgpad>"})
        : specials_(std::move(special_tokens)) {}

    size_t vocab_size() const { return 256 + specials_.size(); }
    const std::vector<std::string>& special_tokens() const { return specials_; }

    std::vector<int32_t> encode(const std::string& text) const {
        std::vector<int32_t> ids(text.size());
        for (size_t i = 0; i < text.size(); ++i) ids[i] = int32_t(static_cast<unsigned char>(text[i]));
        return ids;
    }

    // Special tokens render as their names unless skipped; bytes that are not valid UTF-8 stay as they are.
    std::string decode(const std::vector<int32_t>& ids, bool skip_special_tokens = false) const {
        std::string text;
        for (int32_t id : ids) {
            C3_CHECK(id >= 0 && size_t(id) < vocab_size(), TokenizerError, "token id ", id,
                     " is outside the byte tokenizer's vocabulary of ", vocab_size());
            if (id < 256) text += char(id);
            else if (!skip_special_tokens) text += specials_[size_t(id) - 256];
        }
        return text;
    }

    int32_t token_to_id(const std::string& name) const {
        for (size_t i = 0; i < specials_.size(); ++i)
            if (specials_[i] == name) return int32_t(256 + i);
        throw TokenizerError("unknown token '" + name + "' (the byte tokenizer knows bytes and its special tokens)");
    }

    std::string id_to_token(int32_t id) const {
        C3_CHECK(id >= 0 && size_t(id) < vocab_size(), TokenizerError, "token id ", id, " is outside the vocabulary");
        return id < 256 ? std::string(1, char(id)) : specials_[size_t(id) - 256];
    }

private:
    std::vector<std::string> specials_;
};

}  // namespace c3::text
