"""Every public function and method of probnets carries type hints (the package ships
``py.typed``, so type checkers trust them): each parameter but ``self``/``cls`` and the return
(``__init__`` excepted) are annotated.

Public means reachable without an underscore: the module path, the enclosing class and the
function's own name (``__init__`` and ``__call__`` count; other dunders do not). Functions
nested inside functions are private to them.
"""

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "probnets"
SUBPACKAGES = sorted(p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name[0].isalpha())
CHECKED_DUNDERS = {"__init__", "__call__"}


def _is_public(name):
    return not name.startswith("_") or name in CHECKED_DUNDERS


def _missing_annotations(function):
    """The names left unannotated in ``function``'s signature (``return`` for the return)."""
    arguments = function.args
    every = arguments.posonlyargs + arguments.args + arguments.kwonlyargs
    every += [a for a in (arguments.vararg, arguments.kwarg) if a is not None]
    missing = [a.arg for a in every if a.annotation is None and a.arg not in ("self", "cls")]
    if function.returns is None and function.name != "__init__":
        missing.append("return")
    return missing


def _public_functions(tree):
    """``(qualified name, node)`` of the module-level functions and the methods of public
    classes (nested classes included), skipping anything under an underscore name."""
    stack = [(node, "") for node in tree.body]
    while stack:
        node, prefix = stack.pop()
        if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
            stack.extend((child, f"{prefix}{node.name}.") for child in node.body)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and _is_public(node.name):
            yield prefix + node.name, node


def _modules(subpackage):
    root = PACKAGE / subpackage
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        if any(part.startswith("_") and part != "__init__" for part in parts):
            continue
        yield path


def unannotated(subpackage):
    """``"file:line name(missing, ...)"`` for every public function of ``subpackage`` (or the
    top-level modules for ``"."``) that lacks an annotation."""
    paths = (
        [p for p in PACKAGE.glob("*.py") if not p.name.startswith("_") or p.name == "__init__.py"]
        if subpackage == "."
        else _modules(subpackage)
    )
    found = []
    for path in paths:
        tree = ast.parse(path.read_text(), filename=str(path))
        for name, node in _public_functions(tree):
            missing = _missing_annotations(node)
            if missing:
                where = path.relative_to(PACKAGE.parent)
                found.append(f"{where}:{node.lineno} {name}({', '.join(missing)})")
    return found


@pytest.mark.parametrize("subpackage", [".", *SUBPACKAGES])
def test_public_functions_are_annotated(subpackage):
    found = unannotated(subpackage)
    assert not found, f"{len(found)} public functions lack type hints:\n" + "\n".join(found)


def test_the_check_sees_a_missing_annotation():
    tree = ast.parse(
        "class A:\n"
        "    def f(self, x: int) -> int: ...\n"
        "    def g(self, x): ...\n"
        "    def _h(self, x): ...\n"
        "    def __init__(self, y): ...\n"
        "def k(*args: int, **kw) -> None: ...\n"
        "class _B:\n"
        "    def f(self, x): ...\n"
    )
    found = {name: _missing_annotations(node) for name, node in _public_functions(tree)}
    assert found == {
        "A.f": [],
        "A.g": ["x", "return"],
        "A.__init__": ["y"],
        "k": ["kw"],
    }
