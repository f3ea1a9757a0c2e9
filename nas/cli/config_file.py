"""`--config FILE.toml` for any subcommand that adds it, and the resolved settings a run writes to its folder.

A settings file holds the subcommand's long options as TOML keys (`target-flops = "300M"`, `n-trials = 40`,
`hard-reward = true`, `enqueue = ["b0"]`; underscores work too). It is read by turning each key into the
flag it names, placed before the command line's own flags, so argparse checks types and choices as for
typed flags, and a flag given on the command line overrides the file (a repeatable flag given there
replaces the file's list). Keys that are not options of the subcommand are an error naming them.

After parsing, `resolved_settings` lists every option's value the run uses (file, flags and defaults
together); `write_settings` writes them as TOML into the run folder (`<command>.toml`), so
`nas <command> --config runs/<study>/<command>.toml` runs the same thing again. Passwords in URLs are not
written (libpq reads them from ~/.pgpass or PGPASSWORD).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from nas._common.atomic import write_text_atomic
from nas.errors import NasError

CONFIG_DEST = "config"
SKIPPED = {"help", CONFIG_DEST}  # options that are not settings of a run


def add_config_option(parser: argparse.ArgumentParser) -> None:
    """Give a subcommand `--config FILE.toml`."""
    parser.add_argument("--config", metavar="FILE.toml", dest=CONFIG_DEST,
                        help="read options from a TOML file (keys are the long option names, e.g."
                             " target-flops = \"300M\"); flags on the command line override it")


def expand_command_line(parser: argparse.ArgumentParser,
                        argv: list[str]) -> tuple[list[str], argparse.ArgumentParser | None]:
    """`nas ...` argv with its subcommand's --config file expanded into flags, and that subcommand's parser
    (None when the subcommand takes no --config)."""
    choices = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    for index, arg in enumerate(argv):
        if arg in choices:
            sub = choices[arg]
            if not any(action.dest == CONFIG_DEST for action in sub._actions):
                return argv, None
            return argv[:index + 1] + expand_config(sub, argv[index + 1:]), sub
        if not arg.startswith("-"):
            break
    return argv, None


def _options(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """The subcommand's settings by long option name without dashes ('target-flops')."""
    found = {}
    for action in parser._actions:
        longs = [s for s in action.option_strings if s.startswith("--")]
        if longs and action.dest not in SKIPPED:
            found[longs[0][2:]] = action
    return found


def expand_config(parser: argparse.ArgumentParser, argv: Sequence[str]) -> list[str]:
    """The subcommand's argv with the flags its --config file names inserted before the command line's."""
    path = _config_path(argv)
    if path is None:
        return list(argv)
    settings = read_settings_file(path)
    options = _options(parser)
    unknown = sorted(key for key in settings if key.replace("_", "-") not in options)
    if unknown:
        raise NasError(f"{path}: not an option of this command: {', '.join(unknown)} "
                       f"(known: {', '.join(sorted(options))})")
    given = {arg.split("=", 1)[0] for arg in argv if arg.startswith("--")}
    tokens: list[str] = []
    for key, value in settings.items():
        name = key.replace("_", "-")
        flag = f"--{name}"
        action = options[name]
        if isinstance(action, argparse._AppendAction) and flag in given:
            continue  # the command line's list replaces the file's
        tokens += _flag_tokens(path, flag, action, value)
    return tokens + list(argv)


def _config_path(argv: Sequence[str]) -> Path | None:
    for index, arg in enumerate(argv):
        if arg == "--config":
            if index + 1 >= len(argv):
                return None  # argparse reports the missing value
            return Path(argv[index + 1])
        if arg.startswith("--config="):
            return Path(arg.split("=", 1)[1])
    return None


def read_settings_file(path: Path) -> dict[str, Any]:
    """The key/value pairs of a settings TOML file; a missing or malformed one is a NasError naming it."""
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except OSError as exc:
        raise NasError(f"--config {path}: cannot read ({exc.strerror or exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise NasError(f"--config {path}: not valid TOML ({exc})") from None
    nested = [key for key, value in data.items() if isinstance(value, dict)]
    if nested:
        raise NasError(f"--config {path}: tables are not settings ({', '.join(nested)}); write key = value lines")
    return data


def _flag_tokens(path: Path, flag: str, action: argparse.Action, value: Any) -> list[str]:
    if action.nargs == 0:  # store_true / store_false
        if not isinstance(value, bool):
            raise NasError(f"--config {path}: {flag[2:]} must be true or false, got {value!r}")
        return [flag] if value != action.default else []
    values = value if isinstance(value, list) else [value]
    if isinstance(value, list) and not isinstance(action, argparse._AppendAction):
        raise NasError(f"--config {path}: {flag[2:]} takes one value, got a list")
    tokens = []
    for item in values:
        if isinstance(item, (dict, list)) or isinstance(item, bool):
            raise NasError(f"--config {path}: {flag[2:]} cannot be {item!r}")
        tokens += [flag, str(item)]
    return tokens


def resolved_settings(parser: argparse.ArgumentParser, args: argparse.Namespace) -> dict[str, Any]:
    """Every setting of the subcommand as parsed (None values left out: they mean the default)."""
    settings = {}
    for name, action in _options(parser).items():
        value = getattr(args, action.dest, None)
        if value is None or (isinstance(value, (list, tuple)) and not value):
            continue
        settings[name] = _plain(value)
    return settings


def _plain(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, (bool, int, float)):
        return value
    text = os.fspath(value) if isinstance(value, os.PathLike) else str(value)
    return _without_password(text)


def _without_password(text: str) -> str:
    """A URL with its password removed (other text unchanged)."""
    if "://" not in text:
        return text
    parts = urlsplit(text)
    if parts.password is None:
        return text
    host = parts.hostname or ""
    netloc = f"{parts.username}@{host}" if parts.username else host
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


def write_settings(settings: dict[str, Any], folder: str | os.PathLike[str], command: str) -> Path:
    """Write the resolved settings as `<command>.toml` in the run folder (atomically); returns its path."""
    text = f"# nas {command}: the settings this run used; `nas {command} --config THIS_FILE` runs it again\n"
    text += "".join(f"{key} = {_toml_value(value)}\n" for key, value in settings.items())
    if tomllib.loads(text) != settings:  # a value this writer cannot express must not go unnoticed
        raise AssertionError(f"settings do not round-trip through TOML: {settings}")
    path = Path(folder) / f"{command}.toml"
    write_text_atomic(path, text)
    return path


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return repr(value) if math.isfinite(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    return json.dumps(str(value))  # a JSON string is a TOML basic string


def save_run_settings(args: argparse.Namespace, folder: str | os.PathLike[str], command: str) -> Path | None:
    """Write the settings `main` resolved for this run into its folder (nothing when run() was called directly)."""
    settings = getattr(args, "resolved_settings", None)
    return None if settings is None else write_settings(settings, folder, command)
