"""Reading a JSON file a user points at: a missing, unreadable or malformed file is one NasError naming it."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from nas.errors import NasError


def read_json(path: str | os.PathLike[str], what: str, missing_hint: str = "") -> Any:
    """The parsed contents of `path`; `what` names the file in errors ('spec file'), `missing_hint` follows
    the not-found one."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise NasError(f"{what} not found: {path}{missing_hint}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise NasError(f"cannot read {what} {path}: {exc}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise NasError(f"{path}: not valid JSON: {exc}") from None
