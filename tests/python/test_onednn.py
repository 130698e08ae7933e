"""oneDNN's sgemm behind the float32 products (include/c3/ops/onednn.hpp, python/c3/_onednn.py): every product kind it
takes (forward as stored, forward on a step's transposed copy, both backward products) agrees with c3's own kernels,
through a model's forward and a trainer's steps on one thread and across threads; bad libraries are typed errors."""
import os
import subprocess
import sys

import numpy as np
import pytest

import c3
from c3 import _onednn

LIBRARY = _onednn.installed_library()
pytestmark = pytest.mark.skipif(LIBRARY is None, reason="onednn-cpu-gomp is not installed (pip install c3[onednn])")


@pytest.fixture
def native_then_onednn():
    """Yields (use_native, use_onednn) switches and leaves oneDNN loaded as `import c3` had it."""
    before = c3.onednn_in_use()
    yield c3.unload_onednn, lambda: c3.load_onednn(LIBRARY)
    if before:
        c3.load_onednn(LIBRARY)
    else:
        c3.unload_onednn()


def model_directory(tmp_path, hidden=128, layers=2, vocab=320):
    """A Llama checkpoint whose products pass oneDNN's size threshold at 64 rows (64 x 128 x 352 and up)."""
    import torch
    import transformers

    config = transformers.LlamaConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=352,
                                      num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                                      max_position_embeddings=256, tie_word_embeddings=False)
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(config)
    model.save_pretrained(tmp_path, safe_serialization=True)
    return str(tmp_path)


def test_the_installed_library_is_loaded_at_import():
    assert c3.onednn_in_use() is not None and c3.onednn_in_use().startswith("oneDNN 3.")
    assert c3.build_info()["onednn"] == c3.onednn_in_use()


def test_forward_matches_the_native_kernels(tmp_path, native_then_onednn):
    use_native, use_onednn = native_then_onednn
    directory = model_directory(tmp_path)
    ids = np.random.default_rng(0).integers(0, 320, size=(2, 96))
    model = c3.load_model(directory)
    use_native()
    native = model.forward(ids)[1]
    use_onednn()
    onednn = model.forward(ids)[1]
    assert np.abs(native).max() > 0.1
    np.testing.assert_allclose(onednn, native, rtol=1e-4, atol=1e-4)
    assert not np.array_equal(onednn, native), "the same bits: the products did not reach oneDNN"


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("compute_dtype", ["float32", "bfloat16"])
def test_training_steps_match_the_native_kernels(tmp_path, native_then_onednn, threads, compute_dtype):
    """float32 steps take all four product kinds to oneDNN (forward on the transposed copy, both backward
    products); bf16 steps the weight gradient. Two threads: data-parallel shares call it inside a parallel region."""
    use_native, use_onednn = native_then_onednn
    directory = model_directory(tmp_path)
    ids = np.random.default_rng(1).integers(0, 320, size=(8, 65))
    previous = c3.num_threads()
    c3.set_num_threads(threads)
    try:
        losses = {}
        initial = c3.load_model(directory).parameters()["model.layers.0.mlp.down_proj.weight"].copy()
        for name, switch in (("native", use_native), ("onednn", use_onednn)):
            switch()
            model = c3.load_model(directory)
            trainer = c3.LanguageModelTrainer(model, learning_rate=1e-3, compute_dtype=compute_dtype)
            losses[name] = [trainer.step(ids)["loss"] for _ in range(3)]
            losses[name + " weights"] = model.parameters()["model.layers.0.mlp.down_proj.weight"].copy()
    finally:
        c3.set_num_threads(previous)
    np.testing.assert_allclose(losses["onednn"], losses["native"], rtol=1e-4)
    # Three AdamW steps of 1e-3 move a weight by up to 3e-3; a weight whose gradient is near zero moves by a
    # normalised ratio of two rounding-sized numbers, so the weights agree to a share of one step.
    change = np.abs(losses["native weights"] - initial).max()
    difference = np.abs(losses["onednn weights"] - losses["native weights"]).max()
    assert change > 1e-3 and difference < 0.1 * change, (change, difference)


def test_bad_libraries_are_typed_errors(tmp_path):
    with pytest.raises(c3.C3IOError, match="cannot load oneDNN"):
        c3.load_onednn(str(tmp_path / "missing.so"))
    not_a_library = tmp_path / "libdnnl.so.3"
    not_a_library.write_bytes(b"not an ELF file")
    with pytest.raises(c3.C3IOError, match="cannot load oneDNN"):
        c3.load_onednn(str(not_a_library))
    libgomp = next((path for path in ("/usr/lib/x86_64-linux-gnu/libgomp.so.1", "/usr/lib64/libgomp.so.1")
                    if os.path.exists(path)), None)
    if libgomp:
        with pytest.raises(c3.C3ValueError, match="not a oneDNN library"):
            c3.load_onednn(libgomp)
    assert c3.onednn_in_use() is not None, "a failed load leaves the loaded library in use"


@pytest.mark.parametrize("setting, expected", [("0", "None"), (LIBRARY, "oneDNN 3.")])
def test_the_environment_chooses(setting, expected):
    result = subprocess.run([sys.executable, "-c", "import c3; print(c3.onednn_in_use())"], capture_output=True,
                            text=True, env={**os.environ, "C3_ONEDNN": setting}, check=True)
    assert result.stdout.startswith(expected)


def test_a_bad_environment_path_fails_the_import_in_one_line(tmp_path):
    result = subprocess.run([sys.executable, "-m", "c3.cli", "--version"], capture_output=True, text=True,
                            env={**os.environ, "C3_ONEDNN": str(tmp_path / "missing.so")})
    assert result.returncode == 2
    assert result.stderr.startswith("c3: error: C3_ONEDNN=") and result.stderr.count("\n") == 1


def test_the_gemm_rate_measures_any_shape_and_refuses_bad_sizes():
    assert c3._core.measure_gemm_rate(64, 1, 32, 48) > 0
    with pytest.raises(c3.C3ValueError, match="measure_gemm_rate"):
        c3._core.measure_gemm_rate(0, 1)
    with pytest.raises(c3.C3ValueError, match="measure_gemm_rate"):
        c3._core.measure_gemm_rate(64, 1, 1 << 16, 8)


def test_loading_without_a_path_takes_the_library_loaded_last(native_then_onednn):
    before = c3.onednn_in_use()
    c3.unload_onednn()
    assert c3.onednn_in_use() is None
    assert c3.load_onednn() == before
