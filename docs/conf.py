"""Sphinx configuration: the API reference from the docstrings, the guides as narrative pages.

Build with ``sphinx-build -W -b html docs docs/_build/html`` (``pip install -e ".[docs]"``).
"""

import os
import re
import sys

sys.path.insert(0, os.path.abspath(".."))

import probnets  # noqa: E402

project = "probnets"
author = "probnets developers"
copyright = "probnets developers"
release = probnets.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.mathjax",
    "myst_parser",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build"]

# Docstrings use reST field lists (``:param x:``); the signatures' type hints are shown in those
# fields (documented parameters only), not repeated in the signature.
autodoc_default_options = {
    "members": True,
    "undoc-members": False,
    "show-inheritance": True,
    "member-order": "bysource",
}
autodoc_class_signature = "separated"
autoclass_content = "both"
autodoc_typehints = "description"
autodoc_typehints_description_target = "documented_params"
# Importing the models needs only torch and pyro; nothing heavier is mocked.
autodoc_mock_imports = []

# The guides' fences: ``python no-run`` blocks are shown like ``python`` ones; ``$`` math.
myst_enable_extensions = ["dollarmath"]
myst_heading_anchors = 3

html_theme = "alabaster"
html_title = f"probnets {release}"


# Reference entries in the docstrings follow Pyro's layout: "[1] *Title*, authors" with the
# entry's later lines indented. reST would read the indented lines as a new block (and warn
# about an emphasis that spans the break); joined into the entry's paragraph they render as
# written.
_REFERENCE = re.compile(r"^(\s*)\[\d+\] ")


def join_reference_lines(app, what, name, obj, options, lines):
    indent = None
    for i, line in enumerate(lines):
        match = _REFERENCE.match(line)
        if match:
            indent = match.group(1)
        elif indent is not None and line.strip() and line.startswith(indent + " "):
            lines[i] = indent + line.strip()
        else:
            indent = None


def setup(app):
    app.connect("autodoc-process-docstring", join_reference_lines)


# Parameter names such as ``x``, ``lr`` or ``model`` in field lists resolve to every attribute of
# that name across the package (dataclass fields, namedtuple fields); Sphinx then warns that the
# reference is ambiguous. They are parameter names, not references, so those warnings are off.
suppress_warnings = ["ref.python"]
