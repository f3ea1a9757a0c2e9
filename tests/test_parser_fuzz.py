"""Property-based fuzz of every parser of user input: spec JSON, block strings, search-space TOML, storage
URLs, FLOPs / budget / window / timeout strings. For at least 1,000 generated or mutated inputs each, the
result is a valid object or NasError, never another exception (a traceback a user would see).

Inputs are valid ones mutated (a field set to any JSON or TOML value, a key dropped or added, bytes cut,
inserted or replaced) and text from small grammars of near-misses. Hypothesis draws a mutation and it is
applied to every valid base input at once (drawing costs far more than parsing), so a failure shrinks to
a small mutation; the draws are derandomized, so every run tries the same inputs.
"""

from __future__ import annotations

import copy
import json
import math
import tempfile
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from nas._common.parse import parse_flops, parse_flops_list, parse_timeout, parse_window
from nas.arch.blockstrings import parse_block_strings, to_tf_strings, to_timm_strings
from nas.arch.efficientnet import FAMILY_NAMES, efficientnet
from nas.arch.space import CHOICE_KEYS, PARAM_SUFFIX, SPACES_DIR, SearchSpace, decode, load_space
from nas.arch.spec import Spec, StageSpec
from nas.errors import NasError
from nas.studies.storage import storage_target

INPUTS = 1000  # at least this many inputs per parser

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**30, 10**30) | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=6)


def fuzz(parse: Callable[[Any], Any], check: Callable[[Any], None], inputs: st.SearchStrategy[list],
         examples: int) -> dict[str, int]:
    """Feed every input of `examples` drawn lists to `parse`: each must give an object `check` accepts, or
    NasError. Returns the tally (at least INPUTS distinct inputs in all)."""
    tally = {"valid": 0, "NasError": 0}

    @settings(max_examples=examples, deadline=None, database=None, derandomize=True,
              phases=(Phase.generate, Phase.shrink),
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(inputs)
    def run(values: list) -> None:
        for value in dict.fromkeys(values):  # distinct inputs only
            try:
                result = parse(value)
            except NasError as exc:
                assert str(exc).strip(), "a NasError must say what is wrong"
                tally["NasError"] += 1
                continue
            check(result)
            tally["valid"] += 1

    run()
    assert sum(tally.values()) >= INPUTS, tally
    return tally


def batches(strategy: st.SearchStrategy, size: int = 10) -> st.SearchStrategy[list]:
    """Lists of `size` independent inputs: one example's fixed cost is shared by all of them."""
    return st.lists(strategy, min_size=size, max_size=size)


# A byte-level mutation: up to three edits (cut, insert, replace), each at a share of the text's length.
edits = st.lists(st.tuples(st.sampled_from(["cut", "insert", "replace"]), st.floats(0, 1), st.integers(0, 12),
                           st.text(max_size=6)), min_size=1, max_size=3)


def apply_edits(text: str, plan: list[tuple[str, float, int, str]]) -> str:
    for kind, where, span, noise in plan:
        start = min(int(where * len(text)), max(len(text) - 1, 0))
        stop = min(len(text), start + span)
        text = {"cut": text[:start] + text[stop:], "insert": text[:start] + noise + text[start:],
                "replace": text[:start] + noise + text[stop:]}[kind]
    return text


# --- spec JSON --------------------------------------------------------------------------------------------


# Valid specs every mutation is applied to: the published family and small ones with every block type,
# no skips, no SE, one channel, 8 pixels, and the largest values allowed.
BASES = [efficientnet(name) for name in FAMILY_NAMES] + [
    parse_block_strings(text, resolution=resolution, num_classes=classes) for text, resolution, classes in (
        ("cn_r1_k3_s2_e1_c8 ds_r2_k5_s1_e1_c16_noskip ir_r3_k7_s2_e4_c24_se0.5", 32, 10),
        ("ds_r1_k1_s1_e1_c1", 8, 1),
        ("ir_r64_k3_s2_e16_c100000_se0.1_noskip", 4096, 1_000_000),
    )]
SPEC_KEYS = sorted(BASES[0].to_dict())
STAGE_KEYS = sorted(BASES[0].to_dict()["stages"][0])


def check_spec(spec: Any) -> None:
    assert isinstance(spec, Spec)
    for stage in spec.stages:
        assert isinstance(stage, StageSpec)
        for name in ("repeats", "kernel", "stride", "expand", "out_channels"):
            assert type(getattr(stage, name)) is int, (name, getattr(stage, name))
        assert type(stage.se_ratio) is float and type(stage.skip) is bool
    for name in ("in_channels", "resolution", "num_classes", "stem_channels", "head_channels"):
        assert type(getattr(spec, name)) is int, (name, getattr(spec, name))
    assert Spec.from_json(spec.to_json()) == spec


@st.composite
def spec_texts(draw: st.DrawFn) -> list[str]:
    kind = draw(st.sampled_from(["set", "set stage field", "drop", "drop stage field", "add", "stages", "bytes",
                                 "nesting", "any"]))
    if kind == "nesting":  # deep enough to exhaust the JSON decoder's recursion
        depth = draw(st.integers(1, 200_000))
        return ["[" * depth + "]" * draw(st.sampled_from([0, depth]))]
    if kind == "any":
        return [json.dumps(draw(json_values))]
    value = draw(json_values)
    key = draw(st.sampled_from(STAGE_KEYS if "stage" in kind else SPEC_KEYS))
    index, plan, extra = draw(st.integers(0, 63)), draw(edits), draw(st.text(min_size=1, max_size=8))

    def mutate(spec: Spec) -> str:
        data = spec.to_dict()
        stage = data["stages"][index % len(data["stages"])]
        if kind == "set":
            data[key] = value
        elif kind == "set stage field":
            stage[key] = value
        elif kind == "drop":
            data.pop(key)
        elif kind == "drop stage field":
            stage.pop(key)
        elif kind == "add":
            data[extra] = value
        elif kind == "stages":
            data["stages"] = value
        text = json.dumps(data, indent=2)
        return apply_edits(text, plan) if kind == "bytes" else text

    return [mutate(spec) for spec in BASES]


def test_spec_json_fuzz():
    fuzz(Spec.from_json, check_spec, spec_texts(), examples=200)


# --- block strings ----------------------------------------------------------------------------------------


# Digits Python's int() or str.isdigit() take besides 0-9: superscripts, Arabic-Indic, full-width, circled.
unicode_digits = st.text(st.sampled_from("²³¹١٢٣۲߂１２①"), min_size=1, max_size=2)
numbers = st.one_of(st.integers(-3, 70).map(str), st.integers().map(str), st.sampled_from(
    ["", "0", "00", "1.5", "0.25", "-1", "1e3", "nan", "inf", "x", "3", "11", "22", "12"]), unicode_digits,
    st.text(max_size=3))
option = st.one_of(st.builds(lambda key, value: key + value,
                             st.sampled_from(["r", "k", "s", "e", "c", "i", "o", "se", "noskip", "q", ""]), numbers),
                   st.text(max_size=5))
token = st.builds(lambda prefix, options: "_".join([prefix, *options]) if prefix else "_".join(options),
                  st.sampled_from(["ds", "ir", "cn", "", "r1", "r2", "x"]), st.lists(option, max_size=8))


def _strings(spec: Spec) -> list[list[str]]:
    try:
        return [to_tf_strings(spec), to_timm_strings(spec)]
    except NasError:  # TF strings cannot express a regular conv
        return [to_timm_strings(spec)]


STRING_BASES = [strings for spec in BASES for strings in _strings(spec)]


@st.composite
def block_texts(draw: st.DrawFn) -> list[str]:
    kind = draw(st.sampled_from(["grammar", "option", "option", "bytes", "any"]))
    if kind == "grammar":
        return [draw(st.sampled_from([" ", ",", ", "])).join(draw(st.lists(token, max_size=5)))]
    if kind == "any":
        return [draw(st.text(max_size=40))]
    index, at, value, plan = draw(st.integers(0, 63)), draw(st.integers(0, 15)), draw(numbers), draw(edits)

    def mutate(strings: list[str]) -> str:
        strings = list(strings)
        if kind == "bytes":
            return apply_edits(" ".join(strings), plan)
        # one option of one stage given another value
        parts = strings[index % len(strings)].split("_")
        where = at % len(parts)
        parts[where] = parts[where].rstrip("0123456789.") + value
        strings[index % len(strings)] = "_".join(parts)
        return " ".join(strings)

    return [mutate(strings) for strings in STRING_BASES]


def test_block_string_fuzz():
    fuzz(parse_block_strings, check_spec, block_texts(), examples=150)


# --- search-space TOML ------------------------------------------------------------------------------------


toml_values = st.recursive(
    st.booleans() | st.integers(-10**20, 10**20) | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.from_regex(r"[a-z_]{1,8}", fullmatch=True),
                                                                inner, max_size=3),
    max_leaves=6)


def toml_value(value: Any) -> str:
    """A value in TOML syntax (TOML's basic strings take JSON's escapes)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return ("nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")) if not math.isfinite(value) \
            else repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    return str(value)


def _is_table_array(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(item, dict) for item in value)


def toml_document(doc: dict[str, Any]) -> str:
    """The space file layout: top-level keys, [tables] and [[arrays of tables]]."""
    lines = [f"{json.dumps(k)} = {toml_value(v)}" for k, v in doc.items()
             if not isinstance(v, dict) and not _is_table_array(v)]
    for key, value in doc.items():
        tables = [value] if isinstance(value, dict) else value if _is_table_array(value) else []
        for table in tables:
            header = f"[{json.dumps(key)}]" if isinstance(value, dict) else f"[[{json.dumps(key)}]]"
            lines += [header, *(f"{json.dumps(k)} = {toml_value(v)}" for k, v in table.items())]
    return "\n".join(lines) + "\n"


def _space_bases() -> list[dict[str, Any]]:
    """The shipped spaces, one with its network table left to the defaults, one with per-stage choices."""
    tiny, mnasnet = (tomllib.loads((SPACES_DIR / f"{name}.toml").read_text()) for name in ("tiny", "mnasnet"))
    defaults = copy.deepcopy(tiny)
    defaults.pop("network")
    narrowed = copy.deepcopy(mnasnet)
    for stage in narrowed["stages"]:
        stage.update(block=["mbconv"], se_ratio=[0.25])
    return [tiny, mnasnet, defaults, narrowed]


SPACE_BASES = _space_bases()
SECTIONS = ["name", "description", "network", "choices", "stages"]
STAGE_FIELDS = ["filters", "layers", "stride", *CHOICE_KEYS, "extra"]


@st.composite
def space_texts(draw: st.DrawFn) -> list[bytes]:
    kind = draw(st.sampled_from(["set", "set stage field", "drop", "add", "stages", "bytes", "binary"]))
    if kind == "binary":
        return [draw(st.binary(max_size=64))]
    section, field = draw(st.sampled_from(SECTIONS)), draw(st.sampled_from(STAGE_FIELDS))
    value, index, plan, whole = draw(toml_values), draw(st.integers(0, 63)), draw(edits), draw(st.booleans())
    stages = draw(st.lists(st.dictionaries(st.sampled_from(["filters", "layers", "stride", "kernel"]), toml_values,
                                           max_size=4), max_size=3))

    def mutate(base: dict[str, Any]) -> bytes:
        doc = copy.deepcopy(base)
        target = doc.get(section)
        if kind == "set":
            if isinstance(target, dict) and not whole:
                keys = sorted(target) + ["extra"]
                target[keys[index % len(keys)]] = value
            else:
                doc[section] = value
        elif kind == "set stage field":
            doc["stages"][index % len(doc["stages"])][field] = value
        elif kind == "drop":
            if isinstance(target, dict) and target and not whole:
                target.pop(sorted(target)[index % len(target)])
            else:
                doc.pop(section, None)
        elif kind == "add":
            doc[f"x{field}"] = value
        elif kind == "stages":
            doc["stages"] = stages
        text = toml_document(doc)
        return (apply_edits(text, plan) if kind == "bytes" else text).encode("utf-8", "surrogatepass")

    return [mutate(base) for base in SPACE_BASES]


def check_space(space: Any) -> None:
    assert isinstance(space, SearchSpace) and space.stages
    first = {f"s{i}_{PARAM_SUFFIX[key]}": getattr(stage, key)[0]
             for i, stage in enumerate(space.stages, start=1) for key in CHOICE_KEYS}
    try:
        check_spec(decode(space, first))  # a valid space yields specs (or says why one is out of bounds)
    except NasError:
        pass


def test_space_toml_fuzz():
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "space.toml"

        def parse(data: bytes) -> SearchSpace:
            path.write_bytes(data)
            return load_space(str(path))

        fuzz(parse, check_space, space_texts(), examples=300)


# --- storage URLs -----------------------------------------------------------------------------------------


@st.composite
def storage_urls(draw: st.DrawFn) -> str:
    if draw(st.integers(0, 4)) == 0:
        return draw(st.text(max_size=30))
    scheme = draw(st.sampled_from(["postgresql", "postgresql+psycopg", "postgresql+psycopg2", "postgresql+nodriver",
                                   "mysql", "mysql+pymysql", "sqlite", "oracle", "mssql", "journal", "file", "redis",
                                   "", "x+y+z"]) | st.text(max_size=8))
    separator = draw(st.sampled_from(["://", ":", ":///", "//", ""]))
    user = draw(st.sampled_from(["", "nas@", "nas:secret@", "n%40s:p@ss@", "@", ":@"]) | st.text(max_size=6))
    host = draw(st.sampled_from(["localhost", "127.0.0.1", "[::1]", "db.example", "", "h:5432", "h:not-a-port",
                                 "h:99999999", "h:-1"]) | st.text(max_size=8))
    tail = draw(st.sampled_from(["", "/nas", "/nas?sslmode=require", "/a/b.journal", "?x", "/nas?a=1&a=2",
                                 "runs/x.journal"]) | st.text(max_size=8))
    return scheme + separator + user + host + tail


def check_target(target: Any) -> None:
    kind, where = target
    assert kind in ("journal", "database") and isinstance(where, str) and where.strip()


def test_storage_url_fuzz():
    fuzz(storage_target, check_target, batches(storage_urls()), examples=INPUTS // 8)


# --- FLOPs, budgets, windows, timeouts --------------------------------------------------------------------


number_texts = st.one_of(
    st.builds(lambda sign, digits, suffix, space: f"{space}{sign}{digits}{space}{suffix}",
              st.sampled_from(["", "-", "+"]),
              st.sampled_from(["400", "0.4", ".5", "4e8", "1e999", "0", "1e-5", "nan", "inf", "١٢", "1_000",
                               "0x10", "4E8", "1e+3", "", "."]) | st.integers(0, 10**40).map(str),
              st.sampled_from(["", "M", "m", "G", "B", "k", "K", "T", "MM", "µ"]),
              st.sampled_from(["", " ", "\t", "\n"])),
    st.floats().map(str), st.text(max_size=12))
list_texts = st.lists(number_texts, max_size=4).map(",".join) | st.text(max_size=16)
window_texts = st.tuples(number_texts, number_texts).map(",".join) | list_texts


def check_flops(value: Any) -> None:
    assert type(value) is int and value >= 1


def check_flops_list(values: Any) -> None:
    assert isinstance(values, list) and values
    for value in values:
        check_flops(value)


def check_window(value: Any) -> None:
    low, high = value
    assert all(type(v) is float and math.isfinite(v) for v in value) and 0 < low <= high


def check_timeout(value: Any) -> None:
    assert value is None or (type(value) is float and 0 < value < math.inf)


@pytest.mark.parametrize("parse, check, inputs", [
    (parse_flops, check_flops, number_texts),
    (parse_flops_list, check_flops_list, list_texts),
    (parse_window, check_window, window_texts),
    (parse_timeout, check_timeout, number_texts),
], ids=["flops", "budgets", "window", "timeout"])
def test_number_string_fuzz(parse, check, inputs):
    fuzz(parse, check, batches(inputs), examples=INPUTS // 5)
