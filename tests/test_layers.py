"""The package's layers: imports only go down, and no module grows past what one job needs."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "charrnn"
# Bottom to top; a module may import from its own layer or any layer below.
LAYERS = {
    "charrnn.errors": 0, "charrnn.version": 0, "charrnn.options": 0, "charrnn.config": 0, "charrnn.bundled": 0,
    "charrnn.threads": 0, "charrnn.cores": 0, "charrnn.sampling": 0, "charrnn.encodings": 0,
    "charrnn.core": 1, "charrnn.generation": 2, "charrnn.formats": 2, "charrnn.training": 3,
    "charrnn.api": 4, "charrnn": 4, "charrnn.commands": 5, "charrnn.__main__": 5,
}  # fmt: skip
MODULES = sorted(PACKAGE.rglob("*.py"))


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(name: str) -> int:
    while name not in LAYERS:
        name = name.rsplit(".", 1)[0]
    return LAYERS[name]


def charrnn_imports(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
    return [name for name in names if name == "charrnn" or name.startswith("charrnn.")]


@pytest.mark.parametrize("path", MODULES, ids=lambda path: module_name(path))
def test_imports_only_go_down(path):
    name = module_name(path)
    upward = [imported for imported in charrnn_imports(path) if layer_of(imported) > layer_of(name)]
    assert not upward, f"{name} (layer {layer_of(name)}) imports {upward} from above"


@pytest.mark.parametrize("path", MODULES, ids=lambda path: module_name(path))
def test_no_module_is_much_over_350_lines(path):
    assert len(path.read_text(encoding="utf-8").splitlines()) <= 380
