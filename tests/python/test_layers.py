"""The Python package's layers point one way (scripts/check_layers.py): the face -> c3.eval -> c3.experiments ->
c3.cli, and `import c3` loads no evaluation or experiment module."""
import importlib.util
import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def checker():
    spec = importlib.util.spec_from_file_location("check_layers", ROOT / "scripts" / "check_layers.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_package_imports_only_its_own_and_lower_layers():
    assert checker().python_findings(ROOT / "python" / "c3") == []


def test_an_import_from_a_higher_layer_is_found_at_the_top_and_inside_a_function(tmp_path):
    package = tmp_path / "c3"
    (package / "eval").mkdir(parents=True)
    (package / "experiments").mkdir()
    files = {
        "__init__.py": "from . import analysis\n",
        "analysis.py": "import numpy\nfrom .eval import scoring\n",  # face -> eval: refused
        "plots.py": "def draw():\n    from c3.experiments import report\n",  # face -> experiments, in a function
        "eval/__init__.py": "",
        "eval/scoring.py": "from .. import analysis\nfrom . import surprisal\n",  # allowed
        "eval/surprisal.py": "import c3.cli\n",  # eval -> cli: refused
        "experiments/__init__.py": "",
        "experiments/sweep.py": "from ..eval import scoring\nfrom c3 import eval, analysis\n",  # allowed
        "cli.py": "from .experiments import sweep\n",  # allowed
    }
    for name, text in files.items():
        (package / name).write_text(textwrap.dedent(text))
    found = checker().python_findings(package)
    assert len(found) == 3, found
    assert any("c3/analysis.py:2: imports c3.eval.scoring" in line for line in found)
    assert any("c3/plots.py:2: imports c3.experiments.report" in line for line in found)
    assert any("c3/eval/surprisal.py:1: imports c3.cli" in line for line in found)


def test_import_c3_loads_no_evaluation_experiment_or_command_line_module():
    code = ("import sys, c3; print(sorted(m for m in sys.modules if m.startswith(('c3.eval', 'c3.experiments', "
            "'c3.cli', 'tqdm', 'matplotlib', 'scipy'))))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=dict(os.environ),
                            check=True)
    assert result.stdout.strip() == "[]", result.stdout
