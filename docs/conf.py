"""Sphinx configuration of c3's documentation site. Build it with `bash scripts/docs.sh` (output: site/)."""
import os
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
if os.environ.get("C3_CORE_DIR"):  # a development build: the package from this checkout, _core from the build
    sys.path.insert(0, os.path.join(ROOT, "python"))

project = "c3"
author = "the c3 authors"
copyright = "the c3 authors, Apache-2.0"

extensions = ["myst_nb", "sphinx.ext.autodoc"]
myst_enable_extensions = ["colon_fence"]
myst_heading_anchors = 3

# scripts/docs.sh puts executed copies of the notebooks in notebooks/: the site never runs them itself.
nb_execution_mode = "off"
nb_merge_streams = True

autodoc_default_options = {"members": True, "show-inheritance": False}
autodoc_member_order = "bysource"
autodoc_typehints = "description"

exclude_patterns = ["_build", "notebooks/*.py", ".ipynb_checkpoints"]
html_theme = "furo"
html_title = "c3: Context Cascade Compression"
html_static_path = []
