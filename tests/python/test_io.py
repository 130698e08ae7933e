"""Checkpoint IO against the reference implementations: the `safetensors` package (files it writes are read by
c3 and vice versa, byte for byte where the format fixes the bytes), transformers' config.json in both rope
spellings, and malformed files that must raise c3.FormatError naming the path."""
import json
import os
import struct
import threading

import numpy as np
import pytest
import torch

import c3
from c3 import _core
from conftest import make_hf_model

safetensors = pytest.importorskip("safetensors")
import safetensors.numpy  # noqa: E402
import safetensors.torch  # noqa: E402
transformers = pytest.importorskip("transformers")

TORCH_DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "F64": torch.float64}


def sample_arrays(seed=0):
    rng = np.random.default_rng(seed)
    special = np.array([np.inf, -np.inf, np.nan, -0.0, 1e-6, 7e4, 65520.0, 1.0 + 2.0**-11, 3e-41], np.float32)
    return {
        "model.embed_tokens.weight": (rng.standard_normal((11, 6)) * 3).astype(np.float32),
        "model.norm.weight": rng.standard_normal(6).astype(np.float32),
        "special": special,
        "scalar": np.array(2.5, np.float32),
        "empty": np.zeros((0, 4), np.float32),
    }


def assert_same(actual, expected):
    """Equal values, NaN where NaN, and the sign of zero kept (a NaN's sign differs between converters)."""
    assert actual.shape == expected.shape
    np.testing.assert_array_equal(actual, expected)
    numbers = ~np.isnan(expected)
    np.testing.assert_array_equal(np.signbit(actual[numbers]), np.signbit(expected[numbers]))


@pytest.mark.parametrize("dtype", ["F32", "F16", "BF16", "F64"])
def test_c3_reads_files_written_by_safetensors_torch(tmp_path, dtype):
    path = str(tmp_path / "torch.safetensors")
    tensors = {name: torch.from_numpy(array).to(TORCH_DTYPES[dtype]) for name, array in sample_arrays().items()}
    safetensors.torch.save_file(tensors, path, metadata={"format": "pt"})
    loaded = _core.read_safetensors(path)
    assert sorted(loaded) == sorted(tensors)
    for name, tensor in tensors.items():
        assert loaded[name].dtype == np.float32
        assert_same(loaded[name], tensor.to(torch.float32).numpy())
    info = _core.safetensors_info(path)
    assert [name for name, _, _ in info] == sorted(tensors)
    assert all(entry_dtype == dtype for _, entry_dtype, _ in info)
    assert dict((name, shape) for name, _, shape in info)["model.embed_tokens.weight"] == (11, 6)
    assert _core.safetensors_metadata(path) == {"format": "pt"}


@pytest.mark.parametrize("dtype", ["F32", "F16", "BF16", "F64"])
def test_safetensors_reads_files_written_by_c3(tmp_path, dtype):
    path = str(tmp_path / "c3.safetensors")
    arrays = sample_arrays(1)
    _core.write_safetensors(path, arrays, dtype=dtype, metadata={"format": "pt", "origin": "c3"})
    assert not os.path.exists(path + ".tmp")
    loaded = safetensors.torch.load_file(path)
    for name, array in arrays.items():
        assert loaded[name].dtype == TORCH_DTYPES[dtype]
        # torch rounds float32 -> float16/bfloat16 to nearest even, as c3 must.
        expected = torch.from_numpy(array).to(TORCH_DTYPES[dtype])
        assert_same(loaded[name].to(torch.float32).numpy(), expected.to(torch.float32).numpy())
    with safetensors.safe_open(path, framework="np") as handle:
        assert handle.metadata() == {"format": "pt", "origin": "c3"}


@pytest.mark.parametrize("numpy_dtype,dtype", [(np.float32, "F32"), (np.float16, "F16"), (np.float64, "F64")])
def test_c3_writes_the_same_bytes_as_safetensors(tmp_path, numpy_dtype, dtype):
    with np.errstate(over="ignore"):
        arrays = {name: array.astype(numpy_dtype) for name, array in sample_arrays(2).items()}
    theirs, ours = str(tmp_path / "theirs.safetensors"), str(tmp_path / "ours.safetensors")
    # One metadata key: the package keeps metadata in a hash map, so the order of several keys varies.
    safetensors.numpy.save_file(arrays, theirs, metadata={"format": "np"})
    _core.write_safetensors(ours, arrays, dtype=dtype, metadata={"format": "np"})
    assert open(ours, "rb").read() == open(theirs, "rb").read()


def test_bfloat16_rounding_matches_torch_on_many_values(tmp_path):
    rng = np.random.default_rng(3)
    bits = rng.integers(0, 2**32, size=200_000, dtype=np.uint64).astype(np.uint32)
    values = bits.view(np.float32)
    for dtype in ["BF16", "F16"]:
        path = str(tmp_path / f"many_{dtype}.safetensors")
        _core.write_safetensors(path, {"x": values}, dtype=dtype)
        ours = safetensors.torch.load_file(path)["x"].view(torch.int16).numpy()
        theirs = torch.from_numpy(values).to(TORCH_DTYPES[dtype])
        finite = np.isfinite(values)
        np.testing.assert_array_equal(ours[finite], theirs.view(torch.int16).numpy()[finite])
        assert torch.isnan(safetensors.torch.load_file(path)["x"][torch.from_numpy(np.isnan(values))]).all()


def test_integer_tensors_come_back_as_stored(tmp_path):
    path = str(tmp_path / "ints.safetensors")
    arrays = {"ids": np.array([1, -2, 2**40], np.int64), "mask": np.array([True, False]),
              "bytes": np.arange(5, dtype=np.uint8), "weight": np.ones(3, np.float16)}
    safetensors.numpy.save_file(arrays, path)
    loaded = _core.read_safetensors(path)
    for name, array in arrays.items():
        expected = array.astype(np.float32) if array.dtype.kind == "f" else array
        assert loaded[name].dtype == expected.dtype
        np.testing.assert_array_equal(loaded[name], expected)


def test_write_errors(tmp_path):
    path = str(tmp_path / "x.safetensors")
    with pytest.raises(c3.C3ValueError):
        _core.write_safetensors(path, {"w": np.ones(2, np.float32)}, dtype="I32")
    with pytest.raises(c3.C3ValueError):
        _core.write_safetensors(path, {"w": np.ones(2, np.float32)}, metadata={"k": 1})
    with pytest.raises(c3.C3IOError):
        _core.write_safetensors(str(tmp_path / "missing_dir" / "x.safetensors"), {"w": np.ones(2, np.float32)})
    assert not os.path.exists(str(tmp_path / "missing_dir"))


def test_sharded_checkpoint_loads_in_transformers(tmp_path):
    """A model written by c3 in shards, with c3's config.json, is what transformers loads."""
    model = make_hf_model(kind="qwen2", heads=4, kv_heads=2, tied=False)
    source = tmp_path / "source"
    model.save_pretrained(source)
    config = _core.read_hf_config(str(source))
    state = {name: tensor.numpy() for name, tensor in model.state_dict().items()}
    target = str(tmp_path / "written")
    written = _core.write_checkpoint(target, state, dtype="F32", max_shard_bytes=30_000, metadata={"format": "pt"})
    assert len(written) > 2 and written[-1].endswith("model.safetensors.index.json")
    _core.write_hf_config(config, target)

    reloaded = transformers.AutoModelForCausalLM.from_pretrained(target)
    for name, tensor in reloaded.state_dict().items():
        assert torch.equal(tensor, model.state_dict()[name]), name
    ours = _core.read_checkpoint(target)
    assert sorted(ours) == sorted(state)
    for name, array in state.items():
        np.testing.assert_array_equal(ours[name], array)
    ids = torch.tensor([[1, 5, 9, 2]])
    with torch.no_grad():
        assert torch.equal(reloaded(ids).logits, model(ids).logits)


def test_reads_sharded_checkpoints_written_by_transformers(tmp_path):
    model = make_hf_model(kind="llama", heads=4, kv_heads=1, tied=False)
    model.save_pretrained(tmp_path, max_shard_size="40KB")
    assert (tmp_path / "model.safetensors.index.json").exists()
    loaded = _core.read_checkpoint(str(tmp_path))
    state = model.state_dict()
    assert sorted(loaded) == sorted(state)
    for name, tensor in state.items():
        np.testing.assert_array_equal(loaded[name], tensor.numpy())
    names = [name for name, _, _ in _core.checkpoint_info(str(tmp_path))]
    assert names == sorted(state)


# ------------------------------------------------------------------------------------------------------------
# config.json

def test_reads_qwen2_config_saved_by_transformers(tmp_path):
    transformers.Qwen2Config(vocab_size=151, hidden_size=96, intermediate_size=160, num_hidden_layers=3,
                             num_attention_heads=6, num_key_value_heads=2, max_position_embeddings=512,
                             rope_theta=1e6, rms_norm_eps=1e-5, tie_word_embeddings=True, bos_token_id=3,
                             eos_token_id=[4, 5]).save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert "rope_parameters" in saved  # transformers 5 spelling
    config = _core.read_hf_config(str(tmp_path))
    assert config == dict(model_type="qwen2", vocab_size=151, hidden_size=96, intermediate_size=160, num_layers=3,
                          num_heads=6, num_kv_heads=2, head_dim=16, max_position_embeddings=512, rope_theta=1e6,
                          rms_norm_eps=1e-5, attention_bias=True, tie_word_embeddings=True, initializer_range=0.02,
                          bos_token_id=3, eos_token_id=4)


def test_reads_llama_config_saved_by_transformers(tmp_path):
    transformers.LlamaConfig(vocab_size=200, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                             num_attention_heads=4, head_dim=32, rope_theta=5e5, attention_bias=True,
                             bos_token_id=None, eos_token_id=None).save_pretrained(tmp_path)
    config = _core.read_hf_config(str(tmp_path / "config.json"))
    assert config["model_type"] == "llama"
    assert config["num_kv_heads"] == 4  # defaults to the number of heads
    assert config["head_dim"] == 32
    assert config["rope_theta"] == 5e5
    assert config["attention_bias"] is True
    assert config["tie_word_embeddings"] is False
    assert config["bos_token_id"] == -1 and config["eos_token_id"] == -1


def test_reads_transformers4_config_with_top_level_rope_theta(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(dict(
        model_type="qwen2", vocab_size=151936, hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
        num_attention_heads=12, num_key_value_heads=2, rope_theta=1000000.0, rope_scaling=None,
        max_position_embeddings=32768, rms_norm_eps=1e-6, tie_word_embeddings=True, use_sliding_window=False,
        sliding_window=131072, max_window_layers=21)))
    config = _core.read_hf_config(str(tmp_path))
    assert config["rope_theta"] == 1e6 and config["head_dim"] == 128
    # transformers agrees on what the file says.
    reference = transformers.AutoConfig.from_pretrained(tmp_path)
    assert reference.rope_parameters["rope_theta"] == config["rope_theta"]


@pytest.mark.parametrize("kind", ["qwen2", "llama"])
def test_config_written_by_c3_loads_in_transformers(tmp_path, kind):
    config = _core.config_from_dict(dict(model_type=kind, vocab_size=120, hidden_size=48, intermediate_size=64,
                                         num_layers=2, num_heads=4, num_kv_heads=2, head_dim=16, rope_theta=2e5,
                                         attention_bias=kind == "qwen2", eos_token_id=7))
    _core.write_hf_config(config, str(tmp_path))
    reference = transformers.AutoConfig.from_pretrained(tmp_path)
    assert type(reference).__name__ == ("Qwen2Config" if kind == "qwen2" else "LlamaConfig")
    assert reference.rope_parameters == {"rope_theta": 2e5, "rope_type": "default"}
    assert reference.head_dim == 16 and reference.num_key_value_heads == 2 and reference.eos_token_id == 7
    assert _core.read_hf_config(str(tmp_path)) == config


def test_unsupported_rope_scaling_is_a_config_error(tmp_path):
    transformers.LlamaConfig(vocab_size=100, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                             num_attention_heads=4,
                             rope_parameters={"rope_type": "linear", "factor": 2.0, "rope_theta": 1e4}
                             ).save_pretrained(tmp_path)
    with pytest.raises(c3.ConfigError, match="rope scaling type linear is not supported"):
        _core.read_hf_config(str(tmp_path))


def test_config_errors_name_the_key_and_file(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(dict(model_type="qwen2", hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                                    num_attention_heads=4)))
    with pytest.raises(c3.ConfigError, match="vocab_size") as error:
        _core.read_hf_config(str(path))
    assert str(path) in str(error.value)
    path.write_text("{\"model_type\": ")
    with pytest.raises(c3.FormatError, match="not valid JSON"):
        _core.read_hf_config(str(path))
    with pytest.raises(c3.C3IOError):
        _core.read_hf_config(str(tmp_path / "absent"))


def test_config_dict_conversion():
    config = _core.config_from_dict(dict(hidden_size=96, num_heads=6, num_kv_heads=3))
    assert config["head_dim"] == 16  # hidden_size / num_heads when not given
    assert config["model_type"] == "qwen2" and config["vocab_size"] == 256  # the other defaults
    with pytest.raises(c3.ConfigError, match="unknown config key 'hidden'"):
        _core.config_from_dict(dict(hidden=64))
    with pytest.raises(c3.ConfigError, match="hidden_size"):
        _core.config_from_dict(dict(hidden_size="64"))
    with pytest.raises(c3.ConfigError, match="attention_bias"):
        _core.config_from_dict(dict(attention_bias=1))
    with pytest.raises(c3.ConfigError, match="num_layers"):
        _core.config_from_dict(dict(num_layers=-1))
    with pytest.raises(c3.ConfigError):
        _core.config_from_dict(dict(num_heads=4, num_kv_heads=3))  # validate(): not a multiple
    assert _core.config_from_dict(dict(vocab_size=np.int64(50), tie_word_embeddings=np.bool_(True),
                                       rope_theta=np.float32(1e4)))["vocab_size"] == 50


# ------------------------------------------------------------------------------------------------------------
# Malformed files

def header_file(header, data_bytes=0, length=None):
    text = header if isinstance(header, bytes) else header.encode()
    return struct.pack("<Q", len(text) if length is None else length) + text + b"\0" * data_bytes


MALFORMED = {
    "empty": b"",
    "truncated header length": b"\x10\x00\x00",
    "header length past end": header_file("{}", length=100),
    "huge header length": header_file("{}", length=1 << 60),
    "invalid json": header_file('{"w": {'),
    "non-object json": header_file("[1, 2]"),
    "unknown dtype": header_file('{"w":{"dtype":"Q7","shape":[1],"data_offsets":[0,4]}}', 4),
    "negative shape": header_file('{"w":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}', 8),
    "overflowing shape": header_file(
        '{"w":{"dtype":"F32","shape":[1099511627776,1099511627776],"data_offsets":[0,8]}}', 8),
    "offsets past end": header_file('{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}', 8),
    "size mismatch": header_file('{"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}', 12),
    "overlap": header_file('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},'
                           '"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}', 12),
    "truncated data": header_file('{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}', 5),
    "deep nesting": header_file("[" * 50000),
}


@pytest.mark.parametrize("label", sorted(MALFORMED))
def test_malformed_files_raise_format_error(tmp_path, label):
    path = tmp_path / ("bad_" + label.replace(" ", "_") + ".safetensors")
    path.write_bytes(MALFORMED[label])
    for read in (_core.read_safetensors, _core.safetensors_info, _core.read_checkpoint):
        with pytest.raises(c3.FormatError) as error:
            read(str(path))
        assert isinstance(error.value, ValueError)
        assert str(path) in str(error.value)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(c3.C3IOError):
        _core.read_safetensors(str(tmp_path / "absent.safetensors"))
    with pytest.raises(OSError):
        _core.read_checkpoint(str(tmp_path))  # a directory with no checkpoint in it


def test_reads_release_the_gil(tmp_path):
    path = str(tmp_path / "big.safetensors")
    _core.write_safetensors(path, {"x": np.ones((512, 1024), np.float32)}, dtype="BF16")
    results, errors = [], []

    def read():
        try:
            results.append(float(_core.read_safetensors(path)["x"].sum()))
        except Exception as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=read) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and results == [512.0 * 1024] * 4
