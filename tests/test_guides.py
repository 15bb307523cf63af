"""Every ```python block in guides/*.md runs, top to bottom, in one namespace per guide.

A block fenced as ```python no-run is shown but not executed (say in the guide why)."""

import os
import pathlib
import re

import matplotlib
import pyro
import pytest

matplotlib.use("Agg")

GUIDES = pathlib.Path(__file__).resolve().parent.parent / "guides"
BLOCK = re.compile(r"^```python[ \t]*\n(.*?)^```", re.S | re.M)


def guide_files():
    return sorted(p for p in GUIDES.glob("*.md") if p.name != "README.md")


def test_index_lists_every_guide():
    index = (GUIDES / "README.md").read_text()
    assert (GUIDES / "getting_started.md").exists()
    for path in guide_files():
        assert f"]({path.name})" in index, f"guides/README.md does not link {path.name}"


@pytest.mark.parametrize("path", guide_files(), ids=lambda p: p.name)
def test_guide_code_runs(path, tmp_path, monkeypatch):
    blocks = BLOCK.findall(path.read_text())
    if not blocks:
        pytest.skip(f"{path.name} has no runnable code blocks")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PROBNETS_GUIDE_TEST", "1")
    pyro.clear_param_store()
    namespace = {"__name__": f"guide_{path.stem}"}
    for number, block in enumerate(blocks, 1):
        try:
            exec(compile(block, f"{path.name}[block {number}]", "exec"), namespace)
        except Exception as error:
            raise AssertionError(f"{path.name}, code block {number} failed: {error!r}") from error
    assert os.getcwd() == str(tmp_path)
