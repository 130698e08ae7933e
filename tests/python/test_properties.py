"""Property-based tests (Hypothesis) of the readers against mutated files: each property runs in a child
interpreter (hostile_properties.py) under an address-space limit, so a crash or an allocation past the limit
fails the test instead of killing pytest. The property: success or a c3.C3Error subclass, nothing else."""
import os
import resource
import subprocess
import sys

import pytest

pytest.importorskip("hypothesis")

# Address-space limit of the child: the interpreter with NumPy, Hypothesis and c3 loaded takes about 150 MB of
# address space, so no input may make c3 reserve more than about 850 MB.
ADDRESS_SPACE_LIMIT = 1 << 30
MAX_EXAMPLES = 120


@pytest.mark.parametrize("name", ["hf_config", "c3_config", "tokenizer_json", "latents"])
def test_mutated_files_give_success_or_a_c3_error(name, tmp_path):
    script = os.path.join(os.path.dirname(__file__), "hostile_properties.py")

    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE_LIMIT, ADDRESS_SPACE_LIMIT))

    result = subprocess.run([sys.executable, script, name, str(tmp_path), str(MAX_EXAMPLES)], capture_output=True,
                            text=True, timeout=600, preexec_fn=limit, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout[-5000:]}\n{result.stderr[-5000:]}"
    assert "success or a c3.C3Error each" in result.stdout
