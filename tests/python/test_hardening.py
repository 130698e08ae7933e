"""Hostile inputs and calls: each of them must end in a typed c3 error (or succeed correctly), never in a crash,
a silently wrong result, a half-written checkpoint or an allocation the input chose.

Calls that crashed the interpreter before they were fixed run in a subprocess (run_isolated), so that a
regression fails its test instead of killing pytest.
"""
import json
import os
import resource
import struct
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

import c3
from c3 import _core

SHAPE = dict(hidden_size=32, intermediate_size=64, num_layers=2, num_heads=4, num_kv_heads=2, model_type="llama",
             attention_bias=False, tie_word_embeddings=False, max_position_embeddings=64)


def run_isolated(code, memory_limit_bytes=None, file_size_limit=None, timeout=120):
    """Runs `code` in a fresh interpreter (optionally under RLIMIT_AS / RLIMIT_FSIZE); returns its stdout.
    A crash, a signal or an uncaught exception fails the calling test with the child's output."""
    def limits():
        if memory_limit_bytes:
            resource.setrlimit(resource.RLIMIT_AS, (memory_limit_bytes, memory_limit_bytes))
        if file_size_limit:
            resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, file_size_limit))

    preamble = "import signal; signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\nimport numpy as np, c3\n"
    result = subprocess.run([sys.executable, "-c", preamble + textwrap.dedent(code)], capture_output=True,
                            text=True, timeout=timeout, preexec_fn=limits, env=dict(os.environ, OMP_NUM_THREADS="2"))
    assert result.returncode == 0, f"child failed with {result.returncode}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def tiny_model_dir(tmp_path, name="model", **overrides):
    model = c3.Transformer(dict(SHAPE, vocab_size=64, **overrides), seed=1)
    directory = tmp_path / name
    model.save(str(directory))
    return str(directory), model


def edit_json(path, change):
    with open(path) as file:
        value = json.load(file)
    change(value)
    with open(path, "w") as file:
        json.dump(value, file)


def tiny_cascade_dir(tmp_path):
    cascade = c3.Cascade.new(SHAPE, SHAPE, n_latents=4, seed=2)
    directory = tmp_path / "cascade"
    cascade.save(str(directory))
    return str(directory), cascade


# ---- crashes ------------------------------------------------------------------------------------------------

def test_overflowing_head_sizes_are_a_config_error(tmp_path):
    directory, _ = tiny_model_dir(tmp_path)
    edit_json(os.path.join(directory, "config.json"),
              lambda c: c.update(num_attention_heads=2**62, num_key_value_heads=2**62, head_dim=4))
    out = run_isolated(f"""
        try:
            c3.load_model({directory!r}).forward(np.zeros((1, 1), np.int64))
        except c3.ConfigError as error:
            print("refused:", error)
    """)
    assert "refused" in out and "implausibly large" in out


@pytest.mark.parametrize("value", [-1, 2**64 - 1, 2**40, 0])
def test_latent_counts_out_of_range_are_config_errors(tmp_path, value):
    directory, _ = tiny_cascade_dir(tmp_path)
    edit_json(os.path.join(directory, "config.json"), lambda c: c.update(latent_token_len=value))
    out = run_isolated(f"""
        try:
            c3.Cascade.load({directory!r})
        except c3.ConfigError as error:
            print("refused:", error)
        try:
            c3.Cascade.new({SHAPE!r}, {SHAPE!r}, {value})
        except c3.ConfigError as error:
            print("refused:", error)
    """)
    assert out.count("refused") == 2


def test_set_parameters_on_bf16_storage_matches_float_then_bf16(tmp_path):
    directory, _ = tiny_model_dir(tmp_path)
    rng = np.random.default_rng(0)
    values = {"model.norm.weight": rng.normal(size=32).astype(np.float32),
              "model.layers.0.mlp.up_proj.weight": rng.normal(size=(64, 32)).astype(np.float32)}
    out = run_isolated(f"""
        import pickle
        values = pickle.loads({__import__("pickle").dumps(values)!r})
        stored = c3.load_model({directory!r}, storage="bf16")
        stored.set_parameters(values)
        reference = c3.load_model({directory!r})
        reference.set_parameters(values)
        reference.store_as_bf16()  # the oracle: the same values rounded by store_as_bf16
        ids = np.arange(10).reshape(1, 10)
        np.testing.assert_array_equal(stored.forward(ids)[1], reference.forward(ids)[1])
        print("equal")
    """)
    assert "equal" in out


def test_parameter_views_outlive_reallocating_calls():
    out = run_isolated(f"""
        model = c3.Transformer(dict({SHAPE!r}, vocab_size=64), seed=3)
        views = model.parameters()
        embed = views["model.embed_tokens.weight"]
        flat = model.flat_parameters
        gradients = model.gradients()["model.norm.weight"]
        before = embed.copy()
        model.resize_vocabulary(80)
        embed[:] = 7; flat[:] = 8; gradients[:] = 9  # memory the model no longer uses, but still owned
        new_embed = model.parameters()["model.embed_tokens.weight"]
        assert new_embed.shape == (80, 32)
        np.testing.assert_array_equal(new_embed[:64], before)  # the writes did not reach the model
        norm = model.parameters()["model.norm.weight"]
        model.store_as_bf16()
        norm[:] = 3
        assert model.forward(np.zeros((1, 3), np.int64))[1].shape == (1, 3, 80)
        del views, embed, flat, gradients, new_embed, norm
        print("ok")
    """)
    assert "ok" in out


def test_optimizer_state_views_outlive_load_optimizer_state():
    out = run_isolated(f"""
        model = c3.Transformer(dict({SHAPE!r}, vocab_size=64), seed=3)
        trainer = c3.LanguageModelTrainer(model)
        ids = np.random.default_rng(0).integers(0, 64, size=(2, 9))
        trainer.step(ids)
        state = trainer.optimizer_state()
        first, second = np.array(state["model.first_moment"]), np.array(state["model.second_moment"])
        trainer.load_optimizer_state({{"step": 1, "model.first_moment": first * 0, "model.second_moment": second * 0}})
        state["model.first_moment"][:] = 5  # the array handed out before, still valid memory
        np.testing.assert_array_equal(trainer.optimizer_state()["model.first_moment"], 0)
        print("ok")
    """)
    assert "ok" in out


def test_trainer_after_resize_refuses_mismatched_optimizer_state():
    out = run_isolated(f"""
        model = c3.Transformer(dict({SHAPE!r}, vocab_size=64), seed=3)
        trainer = c3.LanguageModelTrainer(model)
        ids = np.random.default_rng(0).integers(0, 64, size=(2, 9))
        trainer.step(ids)
        model.resize_vocabulary(80)
        try:
            trainer.step(ids)
        except c3.C3ValueError as error:
            print("refused:", error)
        fresh = c3.LanguageModelTrainer(model)  # a new trainer trains the resized model
        assert np.isfinite(fresh.step(ids)["loss"])
    """)
    assert "refused" in out and "changed size" in out


def test_from_models_refuses_bf16_models(tmp_path):
    directory, _ = tiny_model_dir(tmp_path)
    out = run_isolated(f"""
        encoder = c3.load_model({directory!r}, storage="bf16")
        decoder = c3.load_model({directory!r})
        config = dict(num_latents=2, latent_start_token=1, latent_end_token=2, latent_pad_token=3)
        for pair in ((encoder, decoder), (decoder, encoder)):
            try:
                c3.CascadeModel.from_models(*pair, config)
            except c3.C3ValueError as error:
                print("refused:", error)
    """)
    assert out.count("refused") == 2 and "float-stored" in out


# ---- wrong results without an error ---------------------------------------------------------------------------

def small_tokenizer_json():
    vocab = {chr(c): i for i, c in enumerate(range(ord("a"), ord("z") + 1))}
    vocab["ab"] = len(vocab)
    return {"model": {"type": "BPE", "vocab": vocab, "merges": ["a b"]},
            "added_tokens": [{"id": len(vocab), "content": "<s>", "special": True}],
            "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False}}


@pytest.mark.parametrize("where", ["added", "vocab"])
def test_token_ids_outside_int32_are_format_errors(where):
    value = small_tokenizer_json()
    if where == "added":
        value["added_tokens"][0]["id"] = 2**32 + 5
    else:
        value["model"]["vocab"]["b"] = 2**32 + 1
    with pytest.raises(c3.FormatError, match="not in"):
        c3.BpeTokenizer.from_json(json.dumps(value))


def test_huge_sparse_token_id_is_refused_without_allocating():
    value = small_tokenizer_json()
    value["model"]["vocab"]["z"] = 2**24
    text = json.dumps(value)
    assert len(text) < 2000
    # 300 MB of address space above the interpreter: a 2^24-entry table of strings would need ~600 MB.
    out = run_isolated(f"""
        import resource
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        try:
            c3.BpeTokenizer.from_json({text!r})
        except c3.FormatError as error:
            print("refused:", error)
        print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024)
    """)
    assert "refused" in out and "far beyond" in out
    assert int(out.split()[-1]) < 20 << 20  # a 2^24-entry table of strings would be ~600 MB


@pytest.mark.parametrize("key,value", [("latent_start_token", 2**32 + 1), ("latent_end_token", -1),
                                       ("stop_tokens", [-5]), ("prompt_prefix", [2**31]),
                                       ("latent_start_token", "7"), ("projector", 3)])
def test_c3_token_values_out_of_range_are_config_errors(tmp_path, key, value):
    directory, _ = tiny_cascade_dir(tmp_path)
    edit_json(os.path.join(directory, "config.json"), lambda c: c["c3"].update({key: value}))
    with pytest.raises(c3.ConfigError):
        c3.Cascade.load(directory)
    config = c3.Cascade.new(SHAPE, SHAPE, n_latents=4).model.config
    with pytest.raises(c3.ConfigError):
        c3.CascadeModel(dict(config, **{key: value}))


def test_nan_in_loaded_optimizer_moments_is_refused_and_loses_nothing(tmp_path):
    model = c3.Transformer(dict(SHAPE, vocab_size=64), seed=3)
    trainer = c3.LanguageModelTrainer(model)
    ids = np.random.default_rng(0).integers(0, 64, size=(2, 9))
    trainer.step(ids)
    path = str(tmp_path / "checkpoint.safetensors")
    c3.save_checkpoint(path, model, trainer)
    tensors = c3.read_safetensors(path)
    metadata = c3.safetensors_metadata(path)
    for name, bad in (("model.first_moment", np.nan), ("model.second_moment", -1.0)):
        poisoned = dict(tensors)
        poisoned[name] = tensors[name].copy()
        poisoned[name][5] = bad
        c3.write_safetensors(path, poisoned, "F32", metadata)
        fresh = c3.Transformer(dict(SHAPE, vocab_size=64), seed=9)
        fresh_trainer = c3.LanguageModelTrainer(fresh)
        before = fresh.flat_parameters.copy()
        with pytest.raises(c3.C3ValueError, match="moment"):
            c3.load_checkpoint(path, fresh, fresh_trainer)
        np.testing.assert_array_equal(fresh.flat_parameters, before)
        assert fresh_trainer.step_count == 0


def test_attention_mask_and_position_ids_are_checked():
    model = c3.Transformer(dict(SHAPE, vocab_size=64), seed=3)
    ids = np.ones((1, 4), np.int64)
    with pytest.raises(c3.C3ValueError, match="not 0 or 1"):
        model.forward(ids, attention_mask=np.array([[1, 1, 256, 1]]))
    with pytest.raises(c3.C3ValueError, match="not 0 or 1"):
        model.forward(ids, attention_mask=np.array([[1, 1, -1, 1]], np.int8))
    with pytest.raises(c3.C3ValueError, match="whole number"):
        model.forward(ids, position_ids=np.array([[0, 1.5, 2, 3]]))
    with pytest.raises(c3.C3ValueError, match="whole number"):
        model.forward(ids, attention_mask=np.array([[1, 0.5, 1, 1]]))
    with pytest.raises(c3.C3ValueError, match="integers"):
        model.forward(ids, attention_mask=np.array([["1", "1", "1", "1"]]))
    # bool and float 0/1 masks and whole-number positions still work, and agree with the default
    expected = model.forward(ids)[1]
    np.testing.assert_array_equal(model.forward(ids, attention_mask=np.ones((1, 4), bool))[1], expected)
    np.testing.assert_array_equal(model.forward(ids, attention_mask=np.ones((1, 4), np.float32))[1], expected)
    np.testing.assert_array_equal(model.forward(ids, position_ids=np.arange(4)[None])[1], expected)
    np.testing.assert_array_equal(model.forward(ids, position_ids=np.arange(4.0)[None])[1], expected)


def test_set_parameters_checks_everything_before_writing():
    model = c3.Transformer(dict(SHAPE, vocab_size=64), seed=3)
    before = model.flat_parameters.copy()
    values = {"model.norm.weight": np.zeros(32, np.float32), "lm_head.weight": np.zeros((3, 3), np.float32)}
    with pytest.raises(c3.ShapeError):
        model.set_parameters(values)
    with pytest.raises(c3.C3ValueError):
        model.set_parameters({"model.norm.weight": np.zeros(32, np.float32), "no.such.tensor": np.zeros(1)})
    np.testing.assert_array_equal(model.flat_parameters, before)


def test_huge_max_new_tokens_names_the_position_limit():
    model = c3.Transformer(dict(SHAPE, vocab_size=64), seed=3)
    with pytest.raises(c3.C3ValueError, match="max_position_embeddings"):
        model.generate(np.ones((1, 3), np.int64), max_new_tokens=2**64 - 1)
    cascade = c3.Cascade.new(SHAPE, SHAPE, n_latents=4)
    latents = cascade.compress(["abc"])
    with pytest.raises(c3.C3ValueError, match="max_position_embeddings"):
        cascade.model.reconstruct(latents, max_new_tokens=2**64 - 1)


# ---- atomic saves and unique temporary files ------------------------------------------------------------------

def test_failed_save_leaves_the_old_checkpoint_loadable(tmp_path):
    directory, old = tiny_model_dir(tmp_path)
    with open(os.path.join(directory, "tokenizer.json"), "w") as file:
        file.write("{}")
    # A bigger model whose weights cannot be written: the file size limit stands for a full disk.
    out = run_isolated(f"""
        big = c3.Transformer(dict({SHAPE!r}, vocab_size=64, intermediate_size=512), seed=5)
        try:
            big.save({directory!r})
        except c3.C3IOError:
            print("save refused")
        try:
            c3.write_checkpoint({directory!r}, big.parameters(), max_shard_bytes=150_000)
        except c3.C3IOError:
            print("save refused")
    """, file_size_limit=100_000)
    assert out.count("save refused") == 2
    reloaded = c3.load_model(directory)
    np.testing.assert_array_equal(reloaded.flat_parameters, old.flat_parameters)
    assert sorted(os.listdir(tmp_path)) == ["model"]  # no staging directory left behind
    assert sorted(os.listdir(directory)) == ["config.json", "model.safetensors", "tokenizer.json"]


def test_save_replaces_weights_and_keeps_other_files(tmp_path):
    directory, _ = tiny_model_dir(tmp_path)
    model = c3.load_model(directory)
    c3.write_checkpoint(directory, model.parameters(), max_shard_bytes=20000)  # sharded: index + shards
    with open(os.path.join(directory, "tokenizer.json"), "w") as file:
        file.write("{}")
    assert "model.safetensors.index.json" in os.listdir(directory)
    replacement = c3.Transformer(dict(SHAPE, vocab_size=64), seed=11)
    replacement.save(directory)
    names = sorted(os.listdir(directory))
    assert names == ["config.json", "model.safetensors", "tokenizer.json"]  # stale shards and index are gone
    np.testing.assert_array_equal(c3.load_model(directory).flat_parameters, replacement.flat_parameters)


def test_concurrent_writers_of_one_path_never_mix_files(tmp_path):
    path = str(tmp_path / "shared.safetensors")
    arrays = [np.full((256, 1024), value, np.float32) for value in (1.0, 2.0)]
    for _ in range(15):
        threads = [threading.Thread(target=c3.write_safetensors, args=(path, {"x": array}, "F32"))
                   for array in arrays]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        written = c3.read_safetensors(path)["x"]
        assert any(np.array_equal(written, array) for array in arrays)
    assert os.listdir(tmp_path) == ["shared.safetensors"]


# ---- memory the input controls --------------------------------------------------------------------------------

def test_load_peak_memory_is_at_most_the_model_plus_a_fifth(tmp_path):
    config = dict(SHAPE, vocab_size=8192, hidden_size=256, intermediate_size=1024, num_heads=4, num_kv_heads=2,
                  num_layers=4)
    model = c3.Transformer(config, seed=1)
    model_bytes = model.num_parameters * 4
    directory = str(tmp_path / "big")
    model.save(directory)
    del model
    out = run_isolated(f"""
        import resource
        def peak():
            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        baseline = peak()
        for storage in ("float32", "float32"):
            model = c3.load_model({directory!r}, storage=storage)
            del model
        print(baseline, peak())
    """)
    baseline, peak = map(int, out.split())
    assert model_bytes > 30e6
    assert peak - baseline <= 1.2 * model_bytes, (peak - baseline, model_bytes)


def test_vocab_size_beyond_the_weights_is_refused_before_allocating(tmp_path):
    directory, _ = tiny_model_dir(tmp_path)
    edit_json(os.path.join(directory, "config.json"), lambda c: c.update(vocab_size=2**22))
    out = run_isolated(f"""
        import resource
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        for storage in ("float32", "bf16"):
            try:
                c3.load_model({directory!r}, storage=storage)
            except c3.ShapeError as error:
                print("refused")
        print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024)
    """)
    assert out.count("refused") == 2
    assert int(out.split()[-1]) < 50 << 20  # 2^22 x 32 floats would be 512 MB


# ---- errors of the right type -------------------------------------------------------------------------------

def test_invalid_utf8_in_any_json_is_a_readable_format_error(tmp_path):
    bad = b'{"model_type": "qwen2\xff\xfe", "vocab_size": 1}'
    directory, _ = tiny_model_dir(tmp_path)
    with open(os.path.join(directory, "config.json"), "wb") as file:
        file.write(bad)
    errors = []
    for call in (lambda: c3.load_model(directory), lambda: c3.read_hf_config(directory),
                 lambda: c3.BpeTokenizer.from_file(os.path.join(directory, "config.json"))):
        with pytest.raises(c3.FormatError) as info:
            call()
        errors.append(str(info.value))
    header = b'{"x": {"dtype": "F32\xff", "shape": [1], "data_offsets": [0, 4]}}'
    path = tmp_path / "bad.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 4)
    with pytest.raises(c3.FormatError) as info:
        c3.read_safetensors(str(path))
    errors.append(str(info.value))
    index_dir = tmp_path / "sharded"
    index_dir.mkdir()
    (index_dir / "model.safetensors.index.json").write_bytes(b'{"weight_map": {"a\xff": "x"}}')
    with pytest.raises(c3.FormatError) as info:
        c3.read_checkpoint(str(index_dir))
    errors.append(str(info.value))
    cascade_dir, _ = tiny_cascade_dir(tmp_path)
    with open(os.path.join(cascade_dir, "config.json"), "wb") as file:
        file.write(bad)
    with pytest.raises(c3.FormatError) as info:
        c3.Cascade.load(cascade_dir)
    errors.append(str(info.value))
    for message in errors:
        assert "UTF-8" in message, message


@pytest.mark.parametrize("content,error", [(b"{not json", c3.FormatError), (b"[1, 2]", c3.FormatError),
                                           (None, c3.C3IOError)])
def test_cascade_load_with_bad_config_raises_c3_errors(tmp_path, content, error):
    directory, _ = tiny_cascade_dir(tmp_path)
    path = os.path.join(directory, "config.json")
    if content is None:
        os.remove(path)
    else:
        with open(path, "wb") as file:
            file.write(content)
    with pytest.raises(error):
        c3.Cascade.load(directory)


@pytest.mark.parametrize("shape", [(5,), (1, 2, 3, 4), (2, 3)])
def test_latents_of_the_wrong_rank_are_format_errors(tmp_path, shape):
    path = str(tmp_path / "latents.safetensors")
    c3.write_safetensors(path, {"latents": np.zeros(shape, np.float32)}, "F32",
                         {"c3.kind": "latents", "c3.num_latents": str(shape[1] if len(shape) > 1 else 1)})
    with pytest.raises(c3.FormatError, match="batch, N, d"):
        c3.load_latents(path)


def test_latents_round_trip_and_non_finite_latents_are_refused(tmp_path):
    path = str(tmp_path / "latents.safetensors")
    latents = np.random.default_rng(0).normal(size=(2, 4, 8)).astype(np.float32)
    c3.save_latents(path, latents, source_tokens=[3, 5])
    loaded, metadata = c3.load_latents(path)
    np.testing.assert_array_equal(loaded, latents)
    np.testing.assert_array_equal(metadata["source_tokens"], [3, 5])
    latents[1, 2, 3] = np.inf
    with pytest.raises(c3.C3ValueError, match="not finite"):  # never written by c3
        c3.save_latents(path, latents)
    # ... nor read from a file another tool wrote.
    c3.write_safetensors(path, {"latents": latents}, "F32", {"c3.kind": "latents", "c3.num_latents": "4"})
    with pytest.raises(c3.FormatError, match="not finite"):
        c3.load_latents(path)


def test_load_checkpoint_of_a_foreign_file_is_a_format_error(tmp_path):
    model = c3.Transformer(dict(SHAPE, vocab_size=64), seed=3)
    trainer = c3.LanguageModelTrainer(model)
    path = str(tmp_path / "foreign.safetensors")
    c3.write_safetensors(path, {"x": np.zeros(3, np.float32)}, "F32")
    with pytest.raises(c3.FormatError, match="not a c3 training checkpoint"):
        c3.load_checkpoint(path, model, trainer)
    c3.write_safetensors(path, {"x": np.zeros(3, np.float32)}, "F32", {"c3.step": "3"})
    with pytest.raises(c3.FormatError, match="missing tensors"):
        c3.load_checkpoint(path, model, trainer)


def test_cascade_save_brings_its_tokenizer_in_the_same_swap(tmp_path):
    """The tokenizer.json travels inside the staging directory: a save whose tokenizer cannot be copied leaves the
    old cascade directory exactly as it was, and a good save holds the tokenizer the moment it appears."""
    shape = dict(hidden_size=16, intermediate_size=32, num_layers=1, num_heads=2, num_kv_heads=1)
    config = c3.cascade.scratch_model_config(shape, 20, 4)
    old = c3.Cascade.new(config, config, 4, seed=0)
    directory = str(tmp_path / "cascade")
    old.save(directory)
    before = {name: open(os.path.join(directory, name), "rb").read() for name in ("config.json", "model.safetensors")}
    newer = c3.Cascade(c3.Cascade.new(config, config, 4, seed=1).model, old.tokenizer,
                       tokenizer_file=str(tmp_path / "missing" / "tokenizer.json"))
    with pytest.raises(c3.C3IOError, match="cannot copy"):
        newer.save(directory)
    assert {name: open(os.path.join(directory, name), "rb").read() for name in before} == before
    assert sorted(os.listdir(tmp_path)) == ["cascade"]  # no staging directory left behind
    source = tmp_path / "tokenizer.json"
    source.write_text('{"a tokenizer": 1}')
    newer.tokenizer_file = str(source)
    newer.save(directory)
    assert (tmp_path / "cascade" / "tokenizer.json").read_text() == '{"a tokenizer": 1}'
    assert sorted(os.listdir(tmp_path)) == ["cascade", "tokenizer.json"]
