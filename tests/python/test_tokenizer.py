"""c3's tokenizers against the `tokenizers` package: byte-level BPE in GPT-2, Qwen2 and Llama-3 styles, trained
offline on a multilingual corpus made here, with added and special tokens."""
import json

import numpy as np
import pytest

import c3
from c3 import _core

tokenizers = pytest.importorskip("tokenizers")
from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers  # noqa: E402

QWEN2 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|"
         r"\s+(?!\S)|\s+")
LLAMA3 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
          r"\s*[\r\n]+|\s+(?!\S)|\s+")
SPECIALS = ["<|im_start|>", "<|im_end|>", "<img>", "</img>", "<imgpad>"]

MULTILINGUAL = ("The quick brown fox jumps over the lazy dog. I'm sure they'll say it's DONE'S.\n"
                "敏捷的棕色狐狸跳过了懒狗。日本語のテキストも少し。 한국어 문장입니다.\n"
                "def f(x):\n    return x ** 2  # square\n\n\n\tTabs\r\nand CRLF\r\n   \n"
                "Émojis 🦊🐶👩‍👩‍👧 — “quotes” 1234567 ½ ² Ⅻ café naïve Ångström (e\u0301 combining)\n"
                "<|im_start|>user\nHi<|im_end|><img><imgpad><imgpad></img>  trailing   ")


def pydoc_text():
    import pydoc_data.topics
    return "\n".join(pydoc_data.topics.topics[key] for key in sorted(pydoc_data.topics.topics))


def corpus():
    return [MULTILINGUAL] * 3 + pydoc_text().split("\n\n")[:2000]


def build(style, tmp_path):
    tokenizer = Tokenizer(models.BPE(ignore_merges=(style == "llama3")))
    if style == "gpt2":
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    else:
        pattern = QWEN2 if style == "qwen2" else LLAMA3
        tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(pattern), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
        if style == "qwen2":
            tokenizer.normalizer = normalizers.NFC()
    tokenizer.decoder = tokenizers.decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=1500, special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tokenizer.train_from_iterator(corpus(), trainer)
    path = tmp_path / f"{style}.json"
    tokenizer.save(str(path))
    return tokenizer, str(path)


@pytest.fixture(params=["gpt2", "qwen2", "llama3"])
def pair(request, tmp_path):
    return build(request.param, tmp_path)


def test_ids_match_tokenizers_and_round_trip(pair):
    reference, path = pair
    ours = _core.BpeTokenizer.from_file(path)
    for text in (MULTILINGUAL, pydoc_text()):
        expected = reference.encode(text, add_special_tokens=False).ids
        ids = ours.encode(text)
        assert ids.dtype == np.int32
        np.testing.assert_array_equal(ids, expected)
        assert ours.decode(ids) == reference.decode(expected, skip_special_tokens=False)
    if reference.normalizer is None:
        assert ours.decode(ours.encode(MULTILINGUAL)) == MULTILINGUAL


def test_special_tokens_and_skipping(pair):
    _, path = pair
    ours = _core.BpeTokenizer.from_file(path)
    ids = ours.encode("<img>hello</img>")
    assert ids[0] == ours.token_to_id("<img>") and ids[-1] == ours.token_to_id("</img>")
    assert ours.decode(ids, skip_special_tokens=True) == "hello"
    assert set(SPECIALS) <= set(ours.special_tokens)
    with pytest.raises(c3.TokenizerError, match="unknown token"):
        ours.token_to_id("<never>")
    with pytest.raises(c3.TokenizerError):
        ours.decode([ours.vocab_size + 5])


def test_both_merge_spellings_load_the_same(pair, tmp_path):
    reference, path = pair
    data = json.load(open(path))
    merges = data["model"]["merges"]
    as_pairs = [m.split(" ", 1) if isinstance(m, str) else m for m in merges]
    as_strings = [" ".join(m) for m in as_pairs]
    for variant in (as_pairs, as_strings):
        data["model"]["merges"] = variant
        ours = _core.BpeTokenizer.from_json(json.dumps(data))
        np.testing.assert_array_equal(ours.encode(MULTILINGUAL), reference.encode(MULTILINGUAL).ids)


def test_byte_tokenizer():
    tokenizer = c3.byte_tokenizer()
    assert tokenizer.vocab_size == 262
    text = "héllo 🦊"
    ids = tokenizer.encode(text)
    np.testing.assert_array_equal(ids, np.frombuffer(text.encode(), dtype=np.uint8))
    assert tokenizer.decode(ids) == text
    assert tokenizer.decode([tokenizer.token_to_id("<img>"), 104]) == "<img>h"
    assert tokenizer.decode([tokenizer.token_to_id("<eos>"), 104], skip_special_tokens=True) == "h"
    with pytest.raises(c3.TokenizerError, match="unknown token"):
        tokenizer.token_to_id("<nope>")
    with pytest.raises(c3.TokenizerError):
        tokenizer.decode([262])


def test_malformed_tokenizer_files_raise(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(c3.FormatError, match="bad.json"):
        _core.BpeTokenizer.from_file(str(bad))
    bad.write_text(json.dumps({"model": {"type": "WordPiece", "vocab": {}}}))
    with pytest.raises(c3.TokenizerError, match="not BPE"):
        _core.BpeTokenizer.from_file(str(bad))
    bad.write_text(json.dumps({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": ["a b"]},
                               "pre_tokenizer": {"type": "ByteLevel"}}))
    with pytest.raises(c3.FormatError, match="outside the vocabulary"):
        _core.BpeTokenizer.from_file(str(bad))
    with pytest.raises(c3.C3IOError):
        _core.BpeTokenizer.from_file(str(tmp_path / "missing.json"))


def test_invalid_utf8_is_an_error():
    with pytest.raises((UnicodeEncodeError, c3.TokenizerError)):
        c3.byte_tokenizer().encode("\ud800")


@pytest.mark.parametrize("word", ["the" * 5000, "ab" * 3000 + "c", "aaaa" * 2000, None])
def test_long_words_match_tokenizers(pair, word):
    # The merge loop uses a priority queue; long words (one pre-token) must still give the tokenizers ids.
    reference, path = pair
    ours = c3.BpeTokenizer.from_file(path)
    rng = np.random.default_rng(len(word or ""))
    if word is None:  # a long random word over the letters the merges use most
        word = "".join(rng.choice(list("theaisnor"), size=20000))
    assert ours.encode(word).tolist() == reference.encode(word).ids
