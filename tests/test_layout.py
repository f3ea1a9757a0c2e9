"""The package's layout: the pipeline's steps as subpackages, imports pointing down the pipeline only."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# The steps from the bottom up. A module may import its own package and any package of a lower layer;
# packages of one layer are independent of each other.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("nas.errors",),
    ("nas._common",),
    ("nas.arch",),
    ("nas.model",),
    ("nas.proxy", "nas.latency", "nas.studies"),
    ("nas.supernet",),
    ("nas.search",),
    ("scaling",),
    ("nas.deploy",),
    ("nas.cli", "nas"),
)
# Third-party packages a step must not need.
FORBIDDEN = {"nas.arch": ("torch", "optuna", "fvcore"), "nas.studies": ("torch",), "nas._common": ("torch", "optuna")}


def package_of(module: str) -> str:
    """The layer entry a dotted module name belongs to (longest match)."""
    names = sorted((name for layer in LAYERS for name in layer), key=len, reverse=True)
    for name in names:
        if module == name or module.startswith(name + "."):
            return name
    raise AssertionError(f"{module} belongs to no layer")


def rank(package: str) -> int:
    return next(i for i, layer in enumerate(LAYERS) if package in layer)


def modules() -> list[tuple[str, Path]]:
    found = []
    for top in ("nas", "scaling"):
        for path in sorted((ROOT / top).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found.append((".".join(parts), path))
    return found


def imports(path: Path, module: str) -> list[str]:
    """Every module an import statement in the file names, top-level or inside functions."""
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = module.split(".")[: -node.level] if not path.name == "__init__.py" else module.split(".")
                names.append(".".join(base + ([node.module] if node.module else [])))
            elif node.module:
                names.append(node.module)
    return names


def test_top_level_holds_only_the_entry_points_the_error_type_and_subpackages():
    files = sorted(p.name for p in (ROOT / "nas").iterdir() if p.is_file() and p.suffix == ".py")
    assert files == ["__init__.py", "__main__.py", "errors.py"]
    for folder in (p for p in (ROOT / "nas").iterdir() if p.is_dir() and p.name != "__pycache__"):
        init = folder / "__init__.py"
        assert init.is_file(), f"{folder} is not a package"
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc and "import" in doc, f"{init} needs a docstring saying what it holds and may import"


@pytest.mark.parametrize("module,path", modules(), ids=lambda value: str(value) if isinstance(value, str) else "")
def test_imports_point_down_the_pipeline(module, path):
    own = package_of(module)
    for name in imports(path, module):
        top = name.split(".")[0]
        if top in ("nas", "scaling"):
            target = package_of(name)
            if target == own or (own == "nas" and target != "nas"):  # the root's lazy API re-exports everything
                continue
            assert rank(target) < rank(own), f"{module} imports {name}: {target} is not below {own}"
        for forbidden in FORBIDDEN.get(own, ()):
            assert top != forbidden, f"{module} imports {name}, which {own} must not need"


def test_the_import_check_catches_an_upward_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from nas.search.run import run_search\n")
    target = package_of(imports(bad, "nas.arch.bad")[0])
    assert rank(target) > rank(package_of("nas.arch.bad"))
