"""c3: Context Cascade Compression.

A C++ engine (``c3._core``) with a Python API to build, train and analyse cascades that compress text into
latent tokens and reconstruct it.
"""
import os as _os

# Development builds: C3_CORE_DIR names a CMake build folder holding _core*.so, used without installing.
if _os.environ.get("C3_CORE_DIR"):
    __path__.append(_os.environ["C3_CORE_DIR"])  # noqa: F821

from . import _loader  # noqa: E402

# The best build of the module that this CPU runs (or the one C3_ISA names), imported as c3._core.
_core = _loader.load(__name__, __path__)  # noqa: F821
from ._core import (  # noqa: E402,F401
    C3Error,
    C3IOError,
    C3ValueError,
    ConfigError,
    FormatError,
    ShapeError,
    TokenizerError,
    Utf8Error,
    checkpoint_info,
    num_threads,
    read_checkpoint,
    read_hf_config,
    read_safetensors,
    safetensors_info,
    safetensors_metadata,
    write_checkpoint,
    write_hf_config,
    write_safetensors,
    set_num_threads,
)

__version__ = _core.__version__  # the file VERSION, compiled in

from . import _onednn  # noqa: E402

# oneDNN's sgemm for the large float32 products, where onednn-cpu-gomp is installed (C3_ONEDNN=0: never).
try:
    _onednn.load_at_import(_core)
except ImportError as _error:
    _loader.exit_if_command(__name__, _error)
    raise


def load_onednn(path: str = None) -> str:
    """Send every large float32 product (prefill, training) to oneDNN's sgemm: the library at path, else the one
    loaded last (after unload_onednn), else the one the onednn-cpu-gomp distribution installed (`pip install
    c3[onednn]`; `import c3` loads that one already).
    Returns its description. C3IOError if it is missing or does not load, C3ValueError if it is not a CPU build on
    GNU OpenMP. Results match c3's own kernels to float rounding; a sum is never split across threads either way."""
    return _onednn.load(_core, path)


def unload_onednn() -> None:
    """Run every float32 product on c3's own kernels again."""
    _core.unload_onednn()


def onednn_in_use():
    """'oneDNN <version> (<path>)' while it runs the large float32 products, else None."""
    return _core.onednn_in_use() or None


def build_info() -> dict:
    """How the loaded c3._core was built and why it was chosen: level (generic, avx2, avx512, or native for a
    module built for its machine), selected_by, module (its file), available (the builds installed), cpu_levels
    and cpu_flags (what this CPU supports), compiler, compile_flags, instruction_sets and kernels (compile-time),
    openmp (None without), eigen and eigen_simd; cpu: the cache sizes read at run time (l1d_bytes, l2_bytes,
    l3_bytes, cache_source), vector_bits, and the kernels' cache blocking derived from them."""
    return _loader.build_info(_core)


from ._core import (  # noqa: E402,F401
    BpeTokenizer, ByteTokenizer, LanguageModelTrainer, Transformer, compute_trial, set_trainable,
)
from .data import TokenBatches  # noqa: E402,F401
from .training import fit, load_checkpoint, save_checkpoint  # noqa: E402,F401


def load_model(directory: str, storage: str = "float32", compute: str = "float32") -> Transformer:
    """Load a Hugging Face Qwen2/Llama model directory into c3. storage='bf16' keeps the matrices in bfloat16
    (half the memory; inference only). compute='bf16' (with bf16 storage) runs prompt passes with bf16 dot
    products, about twice as fast on CPUs with AVX512-BF16; compute='auto' takes bf16 only where the storage is bf16
    and compute_trial measures it faster on this CPU (model.compute then reads the choice); the default computes
    in float32."""
    model = Transformer.load(str(directory), storage)
    model.compute = compute
    return model

from ._core import CascadeModel, CascadeTrainer  # noqa: E402,F401
from .cascade import OFFICIAL_PROMPT, Cascade, LongLatents, byte_tokenizer, load_latents, save_latents  # noqa: E402,F401

from . import analysis, corpus  # noqa: E402,F401
