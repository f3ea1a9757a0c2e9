"""Turn what a user types for a model (a family name, a spec file, a run folder, block strings) into a spec."""

from __future__ import annotations

from pathlib import Path

from nas._common.runfiles import SPEC_DOCUMENTS
from nas.arch.blockstrings import is_block_string, parse_block_strings
from nas.arch.efficientnet import FAMILY_NAMES, efficientnet, is_family_name
from nas.arch.spec import Spec, load_spec
from nas.errors import NasError

RUN_FOLDER_SPEC_FILES = tuple(document for document, _ in SPEC_DOCUMENTS)


def resolve_spec(source: str) -> Spec:
    """A spec from a family name ('b0', 'efficientnet_b3'), a spec JSON file, a run folder holding
    best.json / metrics.json / spec.json, or TF / timm block strings."""
    text = source.strip()
    if is_family_name(text):
        return efficientnet(text)
    path = Path(text)
    if path.is_dir():
        for name in RUN_FOLDER_SPEC_FILES:
            if (path / name).is_file():
                return load_spec(path / name)
        raise NasError(f"{path} holds no {' / '.join(RUN_FOLDER_SPEC_FILES)}: not a run folder")
    if path.suffix == ".json" or path.exists():
        return load_spec(path)
    if is_block_string(text):
        return parse_block_strings(text)
    raise NasError(
        f"cannot read model {source!r}: expected a name ({', '.join(n.split('_')[-1] for n in FAMILY_NAMES)}),"
        " a spec .json file, a run folder or block strings"
    )
