"""Property tests run by test_properties.py in a child interpreter under an address-space limit.

Each property takes a valid file (a Hugging Face config.json, a C3 config.json, a tokenizer.json, a latents file),
mutates it (a JSON value replaced by a hostile one, a key deleted or added, bytes flipped, inserted or cut) and
calls the reader and then the model on it. The property: the call succeeds or raises a c3.C3Error subclass.
Any other exception fails the run, and a crash or an allocation past the limit kills the child, which fails the
calling test. Usage: python hostile_properties.py PROPERTY WORK_DIRECTORY MAX_EXAMPLES
"""
import json
import os
import struct
import sys

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import c3

SHAPE = dict(hidden_size=16, intermediate_size=32, num_layers=1, num_heads=2, num_kv_heads=1, model_type="qwen2",
             attention_bias=True, tie_word_embeddings=False, max_position_embeddings=48)

# Values that broke readers before: sizes that overflow or wrap, negative ids, wrong types.
HOSTILE_NUMBERS = [0, 1, -1, -5, 2, 3, 255, 2**15, 2**16, 2**24, 2**31 - 1, 2**31, 2**32 + 1, 2**32 + 5, 2**40,
                   2**62, 2**63 - 1, 2**63, 2**64 - 1, 2**64, -2**63, 1e300, -0.0, 0.5, 1e-300]
hostile_values = st.one_of(
    st.sampled_from(HOSTILE_NUMBERS),
    st.integers(min_value=-2**70, max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=6),
    st.booleans(),
    st.none(),
    st.lists(st.sampled_from(HOSTILE_NUMBERS[:16]), max_size=4),
    st.just({}),
    st.just({"rope_type": "yarn"}),
)


def mutate_json(data, value):
    """One mutation somewhere inside a JSON value (returned; the input is not modified)."""
    if isinstance(value, dict) and value:
        key = data.draw(st.sampled_from(sorted(value)))
        action = data.draw(st.sampled_from(["replace", "delete", "add", "descend", "descend"]))
        result = dict(value)
        if action == "replace":
            result[key] = data.draw(hostile_values)
        elif action == "delete":
            del result[key]
        elif action == "add":
            result[data.draw(st.text(max_size=12))] = data.draw(hostile_values)
        else:
            result[key] = mutate_json(data, value[key])
        return result
    if isinstance(value, list) and value:
        index = data.draw(st.integers(0, len(value) - 1))
        result = list(value)
        action = data.draw(st.sampled_from(["replace", "delete", "descend"]))
        if action == "replace":
            result[index] = data.draw(hostile_values)
        elif action == "delete":
            del result[index]
        else:
            result[index] = mutate_json(data, value[index])
        return result
    return data.draw(hostile_values)


def mutate_bytes(data, blob):
    """A few byte-level edits: flips, insertions (including invalid UTF-8), cuts."""
    blob = bytearray(blob)
    for _ in range(data.draw(st.integers(1, 3))):
        if not blob:
            break
        at = data.draw(st.integers(0, len(blob) - 1))
        action = data.draw(st.sampled_from(["flip", "insert", "cut", "truncate"]))
        if action == "flip":
            blob[at] = data.draw(st.integers(0, 255))
        elif action == "insert":
            blob[at:at] = data.draw(st.sampled_from([b"\xff", b"\xc3", b"9999999999999999999999", b"-", b"[", b"{}",
                                                     b'"', b"\x00", b"1e400"]))
        elif action == "cut":
            del blob[at:at + data.draw(st.integers(1, 16))]
        else:
            del blob[at:]
    return bytes(blob)


def mutated_json_bytes(data, value):
    if data.draw(st.booleans()):
        for _ in range(data.draw(st.integers(1, 3))):
            value = mutate_json(data, value)
        return json.dumps(value).encode()
    return mutate_bytes(data, json.dumps(value, indent=1).encode())


def expect_success_or_c3_error(call):
    try:
        call()
    except c3.C3Error:
        pass


def tokenizer_json():
    """A small byte-level BPE: GPT-2's byte alphabet, a few merges, two added tokens."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    alphabet, extra = {}, 0
    for byte in range(256):
        alphabet[byte] = chr(byte) if byte in printable else chr(256 + extra)
        extra += byte not in printable
    vocab = {symbol: index for index, symbol in enumerate(alphabet.values())}
    merges = []
    for left, right in [("t", "h"), ("th", "e"), ("\u0120", "the"), ("a", "b"), ("ab", "ab")]:
        vocab.setdefault(left + right, len(vocab))
        merges.append(f"{left} {right}")
    added = [{"id": len(vocab), "content": "<|im_end|>", "special": True},
             {"id": len(vocab) + 1, "content": "<img>", "special": True}]
    return {"model": {"type": "BPE", "vocab": vocab, "merges": merges}, "added_tokens": added,
            "normalizer": None, "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False}}


def latents_file_bytes(path):
    c3.save_latents(path, np.random.default_rng(0).normal(size=(2, 3, 4)).astype(np.float32), source_tokens=[5, 7],
                    metadata={"note": "seed"})
    with open(path, "rb") as file:
        return file.read()


def read_json(path):
    with open(path) as file:
        return json.load(file)


def run(name, work, max_examples):
    """Writes the mutated file to `path` and calls `use(data)` on it, max_examples times."""
    ids = np.array([[1, 2, 3]], np.int64)
    mutate = mutated_json_bytes
    if name == "hf_config":
        directory = os.path.join(work, "model")
        c3.Transformer(dict(SHAPE, vocab_size=40), seed=1).save(directory)
        path = os.path.join(directory, "config.json")
        valid = read_json(path)

        def use(data):
            storage = data.draw(st.sampled_from(["float32", "bf16"]))
            expect_success_or_c3_error(lambda: c3.read_hf_config(directory))
            c3.load_model(directory, storage=storage).forward(ids, logits="last")
    elif name == "c3_config":
        directory = os.path.join(work, "cascade")
        c3.Cascade.new(SHAPE, SHAPE, n_latents=3, seed=2).save(directory)
        path = os.path.join(directory, "config.json")
        valid = read_json(path)

        def use(data):
            cascade = c3.Cascade.load(directory)
            cascade.reconstruct(cascade.compress(["ab"]), max_new_tokens=2)
    elif name == "tokenizer_json":
        path, valid = os.path.join(work, "tokenizer.json"), tokenizer_json()

        def use(data):
            tokenizer = c3.BpeTokenizer.from_file(path)
            tokenizer.decode(tokenizer.encode("the theme abab <img> x\u00e9<|im_end|>"))
    elif name == "latents":
        path = os.path.join(work, "latents.safetensors")
        valid = latents_file_bytes(path)
        header_length = struct.unpack("<Q", valid[:8])[0]

        def mutate(data, blob):  # the header as JSON, or the file as bytes
            if data.draw(st.booleans()):
                text = mutated_json_bytes(data, json.loads(blob[8:8 + header_length]))
                return struct.pack("<Q", len(text)) + text + blob[8 + header_length:]
            return mutate_bytes(data, blob)

        def use(data):
            c3.load_latents(path)
    else:
        raise SystemExit(f"unknown property {name}")

    @settings(max_examples=max_examples, deadline=5000, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(st.data())
    def property_(data):
        with open(path, "wb") as file:
            file.write(mutate(data, valid))
        expect_success_or_c3_error(lambda: use(data))

    property_()
    print(f"{name}: {max_examples} examples, success or a c3.C3Error each")


if __name__ == "__main__":
    run(sys.argv[1], sys.argv[2], int(sys.argv[3]))
