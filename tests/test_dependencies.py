"""Dependency floors that are true: each floor in pyproject.toml is at least the version that added an API the
code calls, that API is really called (so the reason is not stale), and the installed version satisfies it.

The versions in FLOOR_REASONS were checked against the releases themselves (e.g. optuna 4.6's
optuna/trial/_trial.py has no set_constraint, 5.0's has; onnxscript 0.5.6 has no
_framework_apis/torch_2_11.py, which torch 2.13's ONNX exporter imports, 0.6.0 has; onnxruntime 1.18 does
not import beside numpy 2, 1.19 runs and writes this project's files). Installing every lowest version into a
fresh environment would need the package index during the test run, which CI has not.
"""

from __future__ import annotations

import re
import tomllib
from importlib.metadata import version
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]

# distribution -> (lowest version with what we use, what we use, a string our code contains that uses it)
FLOOR_REASONS = {
    "optuna": ("5.0", "Trial.set_constraint (new in 5.0)", "set_constraint("),
    "onnxscript": ("0.6", "onnxscript._framework_apis.torch_2_11, imported by torch 2.13's exporter", "dynamo=True"),
    "onnx": ("1.16", "ONNX IR version 10, which torch 2.13's exporter writes", "import onnx"),
    # 1.18 runs the files too but is built against numpy 1 and fails to import beside numpy 2, which
    # numpy>=1.26 lets in; 1.19 (checked: float and int8 files, quantize_onnx) is the first built for both.
    "onnxruntime": ("1.19", "numpy 2 builds; IR version 10 models; quant_pre_process, QDQ quantize_static",
                    "quantize_static("),
    "safetensors": ("0.4", "safetensors.SafetensorError at the top level, safe_open(...).metadata()",
                    "from safetensors import SafetensorError"),
    "kornia": ("0.8", "kornia.augmentation.auto.RandAugment", "from kornia.augmentation.auto import"),
    "sqlalchemy": ("2.1", "postgresql:// URLs open with psycopg 3 (2.0 defaults to psycopg2)", "RDBStorage("),
    "optuna-dashboard": ("0.21", "the version tested with Optuna 5 and the journal file", "study.journal"),
}


def declared() -> dict[str, Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    lines = list(project["dependencies"]) + [r for extra in project["optional-dependencies"].values() for r in extra]
    requirements = [Requirement(line) for line in lines]
    return {req.name.lower(): req for req in requirements if req.name != "effnas"}


def floor(requirement: Requirement) -> Version | None:
    lows = [Version(spec.version) for spec in requirement.specifier if spec.operator in (">=", "==", "~=")]
    return max(lows) if lows else None


def project_text() -> str:
    files = [*ROOT.glob("nas/**/*.py"), *ROOT.glob("scaling/**/*.py"), ROOT / "pyproject.toml", ROOT / "README.md"]
    return "\n".join(path.read_text() for path in files)


@pytest.mark.parametrize("name", sorted(FLOOR_REASONS))
def test_each_floor_covers_the_apis_the_code_uses(name):
    needed, reason, evidence = FLOOR_REASONS[name]
    requirement = declared().get(name)
    assert requirement is not None, f"{name} is used ({reason}) but not declared"
    assert floor(requirement) is not None and floor(requirement) >= Version(needed), \
        f"{requirement} allows versions without {reason}"
    assert evidence in project_text(), f"the reason for {name}'s floor is stale: nothing uses {evidence!r}"


def test_every_declared_floor_is_installed_here():
    for name, requirement in declared().items():
        installed = version(name)
        assert requirement.specifier.contains(installed, prereleases=True), f"{name} {installed} vs {requirement}"


def test_optuna_below_five_lacks_what_the_search_calls():
    """The search sets Optuna constraints on every trial: the API the floor exists for."""
    import optuna

    assert hasattr(optuna.trial.Trial, "set_constraint")
    assert declared()["optuna"].specifier.contains("5.0.0") and not declared()["optuna"].specifier.contains("4.6.0")
    assert not declared()["optuna"].specifier.contains("6.0.0")  # a major release may drop it again


def test_every_third_party_import_is_declared():
    """Each top-level package the code imports is a dependency (or the standard library)."""
    imported = set()
    for path in [*ROOT.glob("nas/**/*.py"), *ROOT.glob("scaling/**/*.py")]:
        imported |= set(re.findall(r"^\s*(?:from|import) ([a-zA-Z_]\w*)", path.read_text(), re.M))
    import sys

    third_party = {name for name in imported if name not in sys.stdlib_module_names and name not in ("nas", "scaling")}
    distribution = {"PIL": "pillow"}
    names = {distribution.get(name, name).lower().replace("_", "-") for name in third_party}
    assert names <= set(declared()), f"imported but not declared: {sorted(names - set(declared()))}"
