// Byte-level BPE read from a Hugging Face tokenizer.json (GPT-2, Qwen2 and Llama-3 styles), giving the same
// ids as the `tokenizers` package: added tokens are matched first in the raw text (leftmost, longest), the rest
// is pre-tokenized (pretokenize.hpp), mapped byte by byte to GPT-2's printable alphabet and merged by rank.
#pragma once
#include <array>
#include <fstream>
#include <map>
#include <mutex>
#include <queue>
#include <nlohmann/json.hpp>
#include <shared_mutex>
#include <sstream>
#include <unordered_map>

#include "c3/core/json.hpp"
#include "c3/text/pretokenize.hpp"

namespace c3::text {

// GPT-2's reversible byte -> printable code point map.
inline const std::array<uint32_t, 256>& byte_to_unicode() {
    static const std::array<uint32_t, 256> table = [] {
        std::array<uint32_t, 256> map{};
        uint32_t extra = 0;
        for (uint32_t b = 0; b < 256; ++b) {
            const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
            map[b] = printable ? b : 256 + extra++;
        }
        return map;
    }();
    return table;
}

class BpeTokenizer {
public:
    static BpeTokenizer from_file(const std::string& path) {
        std::ifstream stream(path, std::ios::binary);
        C3_CHECK(stream, IOError, "cannot open tokenizer file '", path, "'");
        std::stringstream buffer;
        buffer << stream.rdbuf();
        return from_json_string(buffer.str(), path);
    }

    static BpeTokenizer from_json_string(const std::string& text, const std::string& source = "tokenizer.json") {
        const nlohmann::json json = parse_json_text(text, source);
        BpeTokenizer tokenizer;
        try {
            tokenizer.load(json, source);
        } catch (const nlohmann::json::exception& error) {
            throw FormatError(source + ": unexpected structure: " + error.what());
        }
        return tokenizer;
    }

    size_t vocab_size() const { return id_to_token_.size(); }
    bool needs_nfc() const { return nfc_; }
    std::vector<std::string> special_tokens() const {
        std::vector<std::string> names;
        for (const auto& added : added_)
            if (added.special) names.push_back(added.content);
        return names;
    }

    int32_t token_to_id(const std::string& token) const {
        const auto found = vocab_.find(token);
        if (found != vocab_.end()) return found->second;
        for (const auto& added : added_)
            if (added.content == token) return added.id;
        throw TokenizerError("unknown token '" + token + "'");
    }
    std::string id_to_token(int32_t id) const {
        C3_CHECK(id >= 0 && size_t(id) < id_to_token_.size() && !id_to_token_[size_t(id)].empty(), TokenizerError,
                 "token id ", id, " is not in the vocabulary");
        return id_to_token_[size_t(id)];
    }

    std::vector<int32_t> encode(const std::string& text) const {
        const std::vector<uint32_t> points = decode_utf8(text);
        if (nfc_)
            for (size_t i = 0; i < points.size(); ++i)
                C3_CHECK(!nfc_unstable(points[i]), TokenizerError, "text at code point ", i,
                         " may change under NFC normalisation, which this tokenizer applies: normalise it to NFC "
                         "first (c3's Python binding does)");
        std::vector<int32_t> ids;
        size_t start = 0;
        while (start < points.size()) {
            size_t match_at = points.size(), match_length = 0;
            int32_t match_id = -1;
            find_added(points, start, match_at, match_length, match_id);
            encode_plain(points, start, match_at, ids);
            if (match_id < 0) break;
            ids.push_back(match_id);
            start = match_at + match_length;
        }
        return ids;
    }

    std::string decode(const std::vector<int32_t>& ids, bool skip_special_tokens = false) const {
        static const std::unordered_map<uint32_t, uint8_t> inverse = [] {
            std::unordered_map<uint32_t, uint8_t> map;
            for (uint32_t b = 0; b < 256; ++b) map[byte_to_unicode()[b]] = uint8_t(b);
            return map;
        }();
        std::string bytes, text;
        auto flush = [&]() {
            text += valid_utf8_or_replaced(bytes);
            bytes.clear();
        };
        for (int32_t id : ids) {
            C3_CHECK(id >= 0 && size_t(id) < id_to_token_.size() && !id_to_token_[size_t(id)].empty(), TokenizerError,
                     "token id ", id, " is not in the vocabulary");
            if (is_added_[size_t(id)]) {
                flush();
                if (!(skip_special_tokens && is_special_[size_t(id)])) text += id_to_token_[size_t(id)];
                continue;
            }
            for (uint32_t point : decode_utf8(id_to_token_[size_t(id)])) {
                const auto found = inverse.find(point);
                C3_CHECK(found != inverse.end(), TokenizerError, "token id ", id, " holds a character outside the byte alphabet");
                bytes += char(found->second);
            }
        }
        flush();
        return text;
    }

private:
    struct AddedToken {
        std::string content;
        std::vector<uint32_t> points;
        int32_t id;
        bool special;
    };
    std::unordered_map<std::string, int32_t> vocab_;
    std::vector<std::string> id_to_token_;
    std::vector<uint8_t> is_added_, is_special_;
    std::map<std::pair<int32_t, int32_t>, std::pair<int32_t, int32_t>> merges_;  // pair -> (rank, merged id)
    std::vector<AddedToken> added_;  // longest first
    PreTokenizer pretokenizer_ = PreTokenizer::Gpt2;
    bool add_prefix_space_ = false, ignore_merges_ = false, nfc_ = false;
    int32_t unknown_id_ = -1;
    mutable std::unordered_map<std::string, std::vector<int32_t>> cache_;
    mutable std::shared_mutex cache_mutex_;

public:
    BpeTokenizer() = default;
    BpeTokenizer(const BpeTokenizer& other)
        : vocab_(other.vocab_), id_to_token_(other.id_to_token_), is_added_(other.is_added_),
          is_special_(other.is_special_), merges_(other.merges_), added_(other.added_),
          pretokenizer_(other.pretokenizer_), add_prefix_space_(other.add_prefix_space_),
          ignore_merges_(other.ignore_merges_), nfc_(other.nfc_), unknown_id_(other.unknown_id_) {}
    BpeTokenizer(BpeTokenizer&& other) noexcept
        : vocab_(std::move(other.vocab_)), id_to_token_(std::move(other.id_to_token_)),
          is_added_(std::move(other.is_added_)), is_special_(std::move(other.is_special_)),
          merges_(std::move(other.merges_)), added_(std::move(other.added_)), pretokenizer_(other.pretokenizer_),
          add_prefix_space_(other.add_prefix_space_), ignore_merges_(other.ignore_merges_), nfc_(other.nfc_),
          unknown_id_(other.unknown_id_) {}

private:
    static std::string valid_utf8_or_replaced(const std::string& bytes) {
        try {
            decode_utf8(bytes);
            return bytes;
        } catch (const TokenizerError&) {
            std::string out;  // lossy, as tokenizers' decoder: invalid sequences become U+FFFD
            for (size_t i = 0; i < bytes.size();) {
                size_t length = 1;
                const unsigned char lead = static_cast<unsigned char>(bytes[i]);
                const size_t want = lead < 0x80 ? 1 : (lead >> 5) == 0x6 ? 2 : (lead >> 4) == 0xE ? 3 : (lead >> 3) == 0x1E ? 4 : 0;
                if (want && i + want <= bytes.size()) {
                    try {
                        decode_utf8(std::string_view(bytes).substr(i, want));
                        out.append(bytes, i, want);
                        i += want;
                        continue;
                    } catch (const TokenizerError&) {
                    }
                }
                append_utf8(out, 0xFFFD);
                i += length;
            }
            return out;
        }
    }

    void load(const nlohmann::json& json, const std::string& source) {
        const auto& model = json.at("model");
        C3_CHECK(model.value("type", std::string("BPE")) == "BPE", TokenizerError, source, ": model type '",
                 model.value("type", std::string()), "' is not BPE");
        C3_CHECK(!model.contains("byte_fallback") || !model["byte_fallback"].is_boolean() || !model["byte_fallback"].get<bool>(),
                 TokenizerError, source, ": byte_fallback BPE is not supported");
        ignore_merges_ = model.value("ignore_merges", false);
        // Ids are checked as 64-bit integers before they are narrowed (2^32 + 5 must not become 5).
        auto checked_id = [&](const nlohmann::json& id, const std::string& what) {
            C3_CHECK(id.is_number_integer() && !(id.is_number_unsigned() && id.get<uint64_t>() > uint64_t(INT32_MAX)) &&
                         id.get<int64_t>() >= 0 && id.get<int64_t>() <= INT32_MAX,
                     FormatError, source, ": ", what, " has id ", id.dump(), ", which is not in [0, 2^31)");
            return int32_t(id.get<int64_t>());
        };
        size_t size = 0, entries = 0;
        const nlohmann::json& vocab = model.at("vocab");
        C3_CHECK(vocab.is_object(), FormatError, source, ": model.vocab must be an object of token -> id");
        for (const auto& [token, id] : vocab.items()) {
            vocab_[token] = checked_id(id, "vocab token '" + token + "'");
            size = std::max(size, size_t(vocab_[token]) + 1);
            ++entries;
        }
        const nlohmann::json added_tokens = json.value("added_tokens", nlohmann::json::array());
        C3_CHECK(added_tokens.is_array(), FormatError, source, ": added_tokens must be a list");
        for (const auto& added : added_tokens) {
            C3_CHECK(added.is_object() && added.contains("id") && added.contains("content") &&
                         added["content"].is_string(),
                     FormatError, source, ": an added token needs an integer 'id' and a string 'content'");
            size = std::max(size, size_t(checked_id(added["id"], "added token")) + 1);
            ++entries;
        }
        // The id table is as long as the largest id: a few unused ids are normal (reserved slots), but a table
        // far longer than the file's entries would let a small file allocate gigabytes.
        C3_CHECK(size <= 2 * entries + 1024, FormatError, source, ": the largest token id (", size - 1,
                 ") is far beyond the ", entries, " tokens the file defines");
        id_to_token_.assign(size, std::string());
        is_added_.assign(size, 0);
        is_special_.assign(size, 0);
        for (const auto& [token, id] : vocab_) id_to_token_[size_t(id)] = token;
        for (const auto& added : added_tokens) {
            AddedToken token{added.at("content").get<std::string>(), {}, int32_t(added.at("id").get<int64_t>()),
                             added.value("special", false)};
            token.points = decode_utf8(token.content);
            if (token.points.empty()) continue;
            id_to_token_[size_t(token.id)] = token.content;
            is_added_[size_t(token.id)] = 1;
            is_special_[size_t(token.id)] = token.special;
            added_.push_back(std::move(token));
        }
        std::stable_sort(added_.begin(), added_.end(),
                         [](const AddedToken& a, const AddedToken& b) { return a.points.size() > b.points.size(); });
        size_t rank = 0;
        for (const auto& merge : model.at("merges")) {
            std::string left, right;
            if (merge.is_string()) {
                const std::string text = merge.get<std::string>();
                const size_t space = text.find(' ');
                C3_CHECK(space != std::string::npos, FormatError, source, ": merge '", text, "' has no space");
                left = text.substr(0, space);
                right = text.substr(space + 1);
            } else {
                C3_CHECK(merge.is_array() && merge.size() == 2, FormatError, source, ": a merge must be \"a b\" or [a, b]");
                left = merge[0].get<std::string>();
                right = merge[1].get<std::string>();
            }
            const auto a = vocab_.find(left), b = vocab_.find(right), merged = vocab_.find(left + right);
            C3_CHECK(a != vocab_.end() && b != vocab_.end() && merged != vocab_.end(), FormatError, source,
                     ": merge '", left, " ", right, "' uses tokens outside the vocabulary");
            merges_.emplace(std::make_pair(a->second, b->second), std::make_pair(int32_t(rank++), merged->second));
        }
        // A byte whose symbol is not in the vocabulary becomes the unknown token, or is dropped when there is
        // none (as tokenizers does).
        if (model.contains("unk_token") && model["unk_token"].is_string()) {
            const auto found = vocab_.find(model["unk_token"].get<std::string>());
            if (found != vocab_.end()) unknown_id_ = found->second;
        }
        load_normalizer(json.value("normalizer", nlohmann::json()), source);
        load_pretokenizer(json.value("pre_tokenizer", nlohmann::json()), source);
    }

    void load_normalizer(const nlohmann::json& normalizer, const std::string& source) {
        if (normalizer.is_null()) return;
        const std::string type = normalizer.value("type", std::string());
        if (type == "NFC") {
            nfc_ = true;
            return;
        }
        if (type == "Sequence" && normalizer.contains("normalizers") && normalizer["normalizers"].empty()) return;
        throw TokenizerError(source + ": normalizer '" + type + "' is not supported (null or NFC)");
    }

    void load_pretokenizer(const nlohmann::json& pre, const std::string& source) {
        static const std::string qwen2 =
            "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
        static const std::string llama3 =
            "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
        C3_CHECK(!pre.is_null(), TokenizerError, source, ": a byte-level BPE needs a pre_tokenizer");
        const std::string type = pre.value("type", std::string());
        if (type == "ByteLevel") {
            C3_CHECK(pre.value("use_regex", true), TokenizerError, source,
                     ": a ByteLevel pre-tokenizer without its regex and without a Split is not supported");
            pretokenizer_ = PreTokenizer::Gpt2;
            add_prefix_space_ = pre.value("add_prefix_space", false);
            return;
        }
        C3_CHECK(type == "Sequence" && pre.contains("pretokenizers") && pre["pretokenizers"].size() == 2, TokenizerError,
                 source, ": pre_tokenizer '", type, "' is not supported (ByteLevel, or Sequence of Split and ByteLevel)");
        const auto& split = pre["pretokenizers"][0];
        const auto& byte_level = pre["pretokenizers"][1];
        C3_CHECK(split.value("type", std::string()) == "Split" && byte_level.value("type", std::string()) == "ByteLevel" &&
                     !byte_level.value("use_regex", true),
                 TokenizerError, source, ": only Sequence[Split(regex), ByteLevel(use_regex=false)] is supported");
        const std::string pattern = split.at("pattern").value("Regex", std::string());
        if (pattern == qwen2) pretokenizer_ = PreTokenizer::Qwen2;
        else if (pattern == llama3) pretokenizer_ = PreTokenizer::Llama3;
        else throw TokenizerError(source + ": Split pattern is neither the Qwen2 nor the Llama-3 one: " + pattern);
        add_prefix_space_ = byte_level.value("add_prefix_space", false);
    }

    // The leftmost (then longest) added token at or after `from`.
    void find_added(const std::vector<uint32_t>& p, size_t from, size_t& at, size_t& length, int32_t& id) const {
        for (size_t i = from; i < p.size(); ++i)
            for (const auto& token : added_) {  // longest first
                if (token.points.size() > p.size() - i) continue;
                if (std::equal(token.points.begin(), token.points.end(), p.begin() + long(i))) {
                    at = i;
                    length = token.points.size();
                    id = token.id;
                    return;
                }
            }
    }

    void encode_plain(const std::vector<uint32_t>& all, size_t begin, size_t end, std::vector<int32_t>& ids) const {
        if (begin >= end) return;
        std::vector<uint32_t> p(all.begin() + long(begin), all.begin() + long(end));
        if (add_prefix_space_ && begin == 0 && !is_space(p[0])) p.insert(p.begin(), ' ');
        for (const Span& span : pretokenize(p, pretokenizer_)) {
            std::string word;
            for (size_t i = span.first; i < span.second; ++i) append_utf8(word, p[i]);
            encode_word(word, ids);
        }
    }

public:
    // Merges the lowest-ranked adjacent pair, leftmost first, until none is left (the definition of BPE), in
    // O(n log n): the symbols form a linked list and a min-heap holds the candidate pairs by (rank, position).
    // A popped candidate is used only if its pair is still adjacent and unchanged; every merge pushes the at
    // most two new pairs it creates. Rescanning the word for each merge took quadratic time on long words.
    void merge_symbols(std::vector<int32_t>& symbols) const {
        const size_t n = symbols.size();
        if (n < 2) return;
        constexpr size_t none = SIZE_MAX;
        std::vector<size_t> next(n), previous(n);
        for (size_t i = 0; i < n; ++i) next[i] = i + 1 < n ? i + 1 : none, previous[i] = i > 0 ? i - 1 : none;
        std::vector<uint8_t> alive(n, 1);
        using Candidate = std::pair<int32_t, size_t>;  // (rank, position of the left symbol)
        std::priority_queue<Candidate, std::vector<Candidate>, std::greater<Candidate>> heap;
        auto push = [&](size_t left) {
            if (left == none || next[left] == none) return;
            const auto found = merges_.find({symbols[left], symbols[next[left]]});
            if (found != merges_.end()) heap.push({found->second.first, left});
        };
        for (size_t i = 0; i + 1 < n; ++i) push(i);
        while (!heap.empty()) {
            const auto [rank, left] = heap.top();
            heap.pop();
            if (!alive[left] || next[left] == none) continue;
            const size_t right = next[left];
            const auto found = merges_.find({symbols[left], symbols[right]});
            if (found == merges_.end() || found->second.first != rank) continue;  // stale: the pair changed
            symbols[left] = found->second.second;
            alive[right] = 0;
            next[left] = next[right];
            if (next[right] != none) previous[next[right]] = left;
            push(previous[left]);
            push(left);
        }
        size_t kept = 0;
        for (size_t i = 0; i != none; i = next[i]) symbols[kept++] = symbols[i];
        symbols.resize(kept);
    }

    // The definition merge_symbols implements, step by step: rescan the word for the lowest-ranked pair
    // (leftmost among equals), merge it, repeat. Quadratic; kept as the reference twin for tests and as the
    // baseline of bench_text.
    void merge_symbols_by_rescanning(std::vector<int32_t>& symbols) const {
        while (symbols.size() > 1) {
            int32_t best_rank = -1;
            size_t best = 0;
            for (size_t i = 0; i + 1 < symbols.size(); ++i) {
                const auto found = merges_.find({symbols[i], symbols[i + 1]});
                if (found != merges_.end() && (best_rank < 0 || found->second.first < best_rank)) {
                    best_rank = found->second.first;
                    best = i;
                }
            }
            if (best_rank < 0) break;
            symbols[best] = merges_.at({symbols[best], symbols[best + 1]}).second;
            symbols.erase(symbols.begin() + long(best) + 1);
        }
    }

private:
    void encode_word(const std::string& word_utf8, std::vector<int32_t>& ids) const {
        {
            std::shared_lock lock(cache_mutex_);
            const auto found = cache_.find(word_utf8);
            if (found != cache_.end()) {
                ids.insert(ids.end(), found->second.begin(), found->second.end());
                return;
            }
        }
        std::string mapped;
        std::vector<int32_t> symbols;
        for (unsigned char byte : word_utf8) {
            std::string symbol;
            append_utf8(symbol, byte_to_unicode()[byte]);
            mapped += symbol;
            const auto found = vocab_.find(symbol);
            if (found != vocab_.end()) symbols.push_back(found->second);
            else if (unknown_id_ >= 0) symbols.push_back(unknown_id_);
        }
        if (ignore_merges_) {
            const auto whole = vocab_.find(mapped);
            if (whole != vocab_.end()) symbols = {whole->second};
        }
        merge_symbols(symbols);
        ids.insert(ids.end(), symbols.begin(), symbols.end());
        std::unique_lock lock(cache_mutex_);
        if (cache_.size() < 200000) cache_.emplace(word_utf8, std::move(symbols));
    }
};

}  // namespace c3::text
