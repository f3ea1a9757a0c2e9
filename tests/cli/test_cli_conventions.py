"""The command's conventions: --version, logging (-v/-q; library code logs, never prints), --config files whose
resolved settings reproduce a run."""

from __future__ import annotations

import ast
import json
import logging
import tomllib
from importlib.metadata import version
from pathlib import Path

import pytest

from nas._common.logs import LOGGERS
from nas.cli.config_file import write_settings
from nas.search.report import CONFIG_ATTR, load_run_study

ROOT = Path(__file__).resolve().parents[2]
TINY_SEARCH = ["search", "--strategy", "standalone", "--space", "tiny", "--proxy", "tiny", "--target-flops", "60M",
               "--population", "2", "--sampler", "random", "--seed", "1", "--threads", "1", "--timeout", "none"]


def test_version_is_the_installed_distributions(run_nas):
    code, out, _ = run_nas("--version")
    assert code == 0 and out.strip() == f"nas {version('effnas')}"


# A process's last word: the one error line of the command or of a worker process (nas.errors).
PROCESS_REPORTERS = {("errors.py", "run_reporting"), ("errors.py", "_report")}


def test_library_code_logs_and_never_prints():
    """print() belongs to the CLI (and the terminal-table helper it uses) and to the error line a process
    ends with; everything else logs."""
    offenders = []
    for top in LOGGERS:
        for path in sorted((ROOT / top).rglob("*.py")):
            if "cli" in path.parts or path.name == "tables.py":
                continue
            tree = ast.parse(path.read_text())
            allowed = {id(node) for function in ast.walk(tree) if isinstance(function, ast.FunctionDef)
                       and (path.name, function.name) in PROCESS_REPORTERS for node in ast.walk(function)}
            for node in ast.walk(tree):
                if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "print" and id(node) not in allowed:
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert offenders == []


def test_quiet_and_verbose_set_the_level_of_the_tools_loggers(run_nas):
    for flag, level in (("-q", logging.WARNING), ("-v", logging.DEBUG), (None, logging.INFO)):
        code, _, _ = run_nas(*([flag] if flag else []), "show", "b0")
        assert code == 0 and all(logging.getLogger(name).level == level for name in LOGGERS)


def test_search_settings_file_reproduces_the_run(tmp_path, run_nas):
    argv = [*TINY_SEARCH, "--study", "rt", "--runs-dir", str(tmp_path)]
    code, _, err = run_nas(*argv, "--n-trials", "1")
    assert code == 0, err
    settings_file = tmp_path / "rt" / "search.toml"
    settings = tomllib.loads(settings_file.read_text())
    assert settings["space"] == "tiny" and settings["seed"] == 1 and settings["n-trials"] == 1
    identity = load_run_study(tmp_path / "rt").user_attrs[CONFIG_ATTR]
    # The file alone runs the same study: accepted as the same settings, nothing left to do, same file again.
    before = settings_file.read_text()
    code, out, err = run_nas("search", "--config", str(settings_file))
    assert code == 0, err
    assert settings_file.read_text() == before
    study = load_run_study(tmp_path / "rt")
    assert study.user_attrs[CONFIG_ATTR] == identity and len(study.trials) == 1
    # A flag overrides the file: another seed is another identity, which the study refuses.
    code, _, err = run_nas("search", "--config", str(settings_file), "--seed", "2")
    assert code == 2 and "exists with other settings" in err and "seed" in err


def test_scale_settings_file_reproduces_the_run(tmp_path, run_nas):
    argv = ["scale", "--base", "b0", "--alpha", "1.2", "--beta", "1.1", "--gamma", "1.15", "--study", "fam",
            "--runs", str(tmp_path)]
    code, _, err = run_nas(*argv)
    assert code == 0, err
    family = (tmp_path / "fam" / "family" / "family.csv").read_text()
    settings = tmp_path / "fam" / "scale.toml"
    assert tomllib.loads(settings.read_text())["alpha"] == 1.2
    (tmp_path / "fam" / "family" / "family.csv").unlink()
    code, _, err = run_nas("scale", "--config", str(settings))
    assert code == 0, err
    assert (tmp_path / "fam" / "family" / "family.csv").read_text() == family


def test_a_config_file_takes_every_option_and_flags_override(tmp_path, run_nas):
    config = tmp_path / "run.toml"
    config.write_text('base = "b0"\nbeta = 1.1\nalpha = 1.2\ngamma = 1.15\nstudy = "from-file"\n'
                      f'runs = "{tmp_path}"\nbudgets = "0.7e9"\n')
    code, _, err = run_nas("scale", "--config", str(config), "--study", "from-flag")
    assert code == 0, err
    assert (tmp_path / "from-flag" / "family" / "family.csv").is_file() and not (tmp_path / "from-file").exists()
    assert tomllib.loads((tmp_path / "from-flag" / "scale.toml").read_text())["study"] == "from-flag"


@pytest.mark.parametrize("text, message", [
    ('base = "b0"\nno_such_option = 1\n', "not an option of this command: no_such_option"),
    ('base = "b0"\ngrid-step = "wide"\n', "--grid-step"),
    ('base = "b0"\npublished = "yes"\n', "published must be true or false"),
    ('base = "b0\n', "not valid TOML"),
    ('[scale]\nbase = "b0"\n', "tables are not settings"),
])
def test_a_bad_config_file_is_one_line_and_exit_2(tmp_path, run_nas, text, message):
    config = tmp_path / "bad.toml"
    config.write_text(text)
    code, _, err = run_nas("scale", "--config", str(config), "--runs", str(tmp_path))
    assert code == 2 and message in err and err.count("\n") == 1


def test_a_missing_config_file_is_one_line(tmp_path, run_nas):
    code, _, err = run_nas("search", "--config", str(tmp_path / "none.toml"))
    assert code == 2 and "none.toml" in err and err.count("\n") == 1


def test_settings_files_keep_no_passwords_and_round_trip(tmp_path):
    settings = {"storage": "postgresql://nas:secret@db.example:5432/nas", "enqueue": ["b0", "b1"], "w": -0.07,
                "hard": True, "n": 3, "timeout": float("inf"), "quote": 'a "b" \\ c'}
    from nas.cli.config_file import _plain

    path = write_settings({key: _plain(value) for key, value in settings.items()}, tmp_path, "search")
    read = tomllib.loads(path.read_text())
    assert read["storage"] == "postgresql://nas@db.example:5432/nas" and "secret" not in path.read_text()
    assert {k: v for k, v in read.items() if k != "storage"} == {k: v for k, v in settings.items() if k != "storage"}
    assert json.dumps(read["enqueue"]) == '["b0", "b1"]'
