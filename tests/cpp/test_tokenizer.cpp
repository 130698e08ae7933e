// Tokenizers in C++: the byte tokenizer, the pre-tokenizer scanners, and BPE on a hand-written tokenizer.json.
#include <gtest/gtest.h>

#include "c3/text/bpe.hpp"
#include "c3/text/byte_tokenizer.hpp"

using namespace c3;

TEST(ByteTokenizer, RoundTripAndSpecials) {
    text::ByteTokenizer tokenizer;
    const std::string input = "caf\xC3\xA9 \xF0\x9F\xA6\x8A";
    const auto ids = tokenizer.encode(input);
    EXPECT_EQ(ids.size(), input.size());
    EXPECT_EQ(tokenizer.decode(ids), input);
    EXPECT_EQ(tokenizer.token_to_id("<imgpad>"), 261);
    EXPECT_EQ(tokenizer.decode({261, 'a'}, true), "a");
    EXPECT_THROW(tokenizer.token_to_id("<x>"), TokenizerError);
    EXPECT_THROW(tokenizer.decode({262}), TokenizerError);
}

TEST(PreTokenizer, Gpt2Spans) {
    const auto points = text::decode_utf8("Hello world's  end\n\nok 123!!");
    std::vector<std::string> pieces;
    for (auto [begin, end] : text::pretokenize(points, text::PreTokenizer::Gpt2)) {
        std::string piece;
        for (size_t i = begin; i < end; ++i) text::append_utf8(piece, points[i]);
        pieces.push_back(piece);
    }
    const std::vector<std::string> expected = {"Hello", " world", "'s", " ", " end", "\n", "\n", "ok", " 123", "!!"};
    EXPECT_EQ(pieces, expected);
}

TEST(PreTokenizer, Llama3GroupsDigitsByThree) {
    const auto points = text::decode_utf8("x1234567");
    std::vector<size_t> lengths;
    for (auto [begin, end] : text::pretokenize(points, text::PreTokenizer::Llama3)) lengths.push_back(end - begin);
    EXPECT_EQ(lengths, (std::vector<size_t>{1, 3, 3, 1}));
}

TEST(Bpe, HandWrittenTokenizer) {
    // Byte alphabet for 'a', 'b', ' ' (as 'Ġ'), merges a+b then ab+a, plus one special token.
    const std::string json = R"({
        "model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "Ġ": 2, "ab": 3, "aba": 4},
                  "merges": ["a b", ["ab", "a"]]},
        "added_tokens": [{"id": 5, "content": "<s>", "special": true}],
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "use_regex": true}
    })";
    auto tokenizer = text::BpeTokenizer::from_json_string(json);
    EXPECT_EQ(tokenizer.encode("aba ab<s>b"), (std::vector<int32_t>{4, 2, 3, 5, 1}));
    EXPECT_EQ(tokenizer.decode({4, 2, 3, 5, 1}), "aba ab<s>b");
    EXPECT_EQ(tokenizer.decode({4, 5}, true), "aba");
    EXPECT_THROW(tokenizer.encode("\xFF"), TokenizerError);
    EXPECT_THROW(text::BpeTokenizer::from_json_string("{"), FormatError);
    EXPECT_THROW(text::BpeTokenizer::from_json_string(R"({"model": {"type": "BPE", "vocab": {}, "merges": ["x y"]},
                                                          "pre_tokenizer": {"type": "ByteLevel"}})"),
                 FormatError);
}
