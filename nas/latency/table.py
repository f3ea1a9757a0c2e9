"""A latency table: the measured latency of every part (stem, block, head; see `parts`) on one device.

Each entry is the median of the paper's protocol (warm-up, then repeated timed runs at a fixed batch size and
thread count) on the same inference form `nas latency --backend folded` times, so the table follows that form
wherever `nas.latency.measure` takes it. The file (JSON) records the setup it was measured under -- device,
machine, torch version, threads, batch, backend, runs and warm-up -- and `build_table` only measures parts
it lacks, saving atomically after each one: a build can be stopped at any time, resumed, and extended with
another space, resolution or network. Measuring into a table measured under another setup is refused;
reading one (to predict for another device) is not. A table is calibrated on a few whole networks timed beside
it (`calibrate_table`): a part timed alone pays a fixed cost per call that it does not pay inside a network, so
the predictor scales the sum of the entries by the table's measured ratio.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import random
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from nas._common.atomic import write_text_atomic
from nas._common.jsonfile import read_json
from nas._common.runfiles import LATENCY_TABLE_FILE, RUNS_DIR
from nas.arch.space import RandomChoices, SearchSpace, load_space, sample
from nas.arch.spec import Spec
from nas.errors import NasError
from nas.latency.measure import measure_model, time_networks
from nas.latency.parts import Part, space_parts, spec_keys, unique_parts
from nas.model.device import resolve_device

TABLE_SCHEMA = 1
TABLE_KIND = "effnas latency table"
TABLE_BACKEND = "folded"  # the deployed inference form: BN folded, channels-last, torch.export


@dataclass(frozen=True)
class MeasureSetup:
    """What a table's latencies hold for: where and how they were measured."""

    device: str
    machine: str
    torch: str
    threads: int = 1
    batch: int = 1
    backend: str = TABLE_BACKEND
    runs: int = 20
    warmup: int = 5

    def describe(self) -> str:
        return (f"{self.device} ({self.machine}), torch {self.torch}, {self.threads} thread(s), batch {self.batch}, "
                f"{self.backend}, median of {self.runs} runs after {self.warmup} warm-up")


def machine_name(device: torch.device) -> str:
    """The processor (or GPU) a device is, as a person would name it."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model or platform.processor() or platform.machine()}, {os.cpu_count()} CPUs"


def current_setup(device: str = "cpu", *, threads: int = 1, batch: int = 1, runs: int = 20,
                  warmup: int = 5) -> MeasureSetup:
    """The setup a measurement on this machine with these settings has (NasError for a missing device)."""
    if threads < 1 or batch < 1 or runs < 1 or warmup < 0:
        raise NasError("threads, batch and runs must be at least 1 and warmup at least 0")
    resolved = resolve_device(device)
    return MeasureSetup(device=str(resolved), machine=machine_name(resolved), torch=torch.__version__,
                        threads=threads, batch=batch, runs=runs, warmup=warmup)


@dataclass(frozen=True)
class CalibrationPoint:
    """One whole network timed for the calibration: the sum of its parts' entries against its own latency."""

    network: str
    parts_s: float
    measured_s: float


@dataclass(frozen=True)
class Calibration:
    """Whole networks timed beside the table (see `calibrate_table`), and the scale they give.

    A part timed alone pays a call's fixed cost that the same part inside a network does not, so the raw sum of
    the entries runs above the network's latency; `scale` (the median of measured / parts over the networks)
    takes that out.
    """

    networks: tuple[CalibrationPoint, ...]

    @property
    def scale(self) -> float:
        return statistics.median(point.measured_s / point.parts_s for point in self.networks)


@dataclass
class LatencyTable:
    """Median seconds per part key, measured under `setup`; `path` is where it is saved.

    `calibration` (optional) scales the sum of a network's entries to its latency; without one the scale is 1.
    """

    setup: MeasureSetup
    entries: dict[str, float] = field(default_factory=dict)
    path: Path | None = None
    calibration: Calibration | None = None

    @property
    def scale(self) -> float:
        """What the sum of a network's entries is multiplied by to predict its latency."""
        return self.calibration.scale if self.calibration is not None else 1.0

    def __len__(self) -> int:
        return len(self.entries)

    def __contains__(self, key: object) -> bool:
        return key in self.entries

    def missing(self, keys: Iterable[str]) -> list[str]:
        """The keys (deduplicated, in order) the table has no entry for."""
        return [key for key in dict.fromkeys(keys) if key not in self.entries]

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"schema_version": TABLE_SCHEMA, "kind": TABLE_KIND,
                                "setup": dataclasses.asdict(self.setup), "entries": self.entries}
        if self.calibration is not None:
            data["calibration"] = {"scale": self.calibration.scale,
                                   "networks": [dataclasses.asdict(point) for point in self.calibration.networks]}
        return data

    def save(self, path: str | os.PathLike[str] | None = None) -> Path:
        """Write the table atomically (to `path`, else where it was loaded from) and return the file."""
        target = table_file(path) if path is not None else self.path
        if target is None:
            raise NasError("the latency table has no file: give a path to save it to")
        write_text_atomic(target, json.dumps(self.to_dict(), indent=1) + "\n")
        self.path = target
        return target


def default_table_path(setup: MeasureSetup) -> Path:
    """runs/latency-DEVICE-tTHREADS-bBATCH: one folder per setup, so tables of two setups never collide."""
    return Path(RUNS_DIR) / f"latency-{setup.device.replace(':', '')}-t{setup.threads}-b{setup.batch}"


def table_file(path: str | os.PathLike[str]) -> Path:
    """A table's file: `path` itself when it names a .json file, else `path`/latency_table.json (a run folder)."""
    path = Path(path)
    return path if path.suffix == ".json" else path / LATENCY_TABLE_FILE


def load_table(path: str | os.PathLike[str]) -> LatencyTable:
    """Read a table file (or the one in a run folder); NasError naming the file and the problem."""
    file = table_file(path)
    data = read_json(file, "latency table", " (build one with `nas latency-table`)")
    if not isinstance(data, dict) or data.get("kind") != TABLE_KIND:
        raise NasError(f"{file}: not a latency table (no \"kind\": \"{TABLE_KIND}\")")
    if data.get("schema_version") != TABLE_SCHEMA:
        raise NasError(f"{file}: latency table schema {data.get('schema_version')!r}, expected {TABLE_SCHEMA}")
    try:
        setup = MeasureSetup(**data["setup"])
        entries = {str(key): float(value) for key, value in data["entries"].items()}
        calibration = None
        if data.get("calibration") is not None:
            calibration = Calibration(tuple(CalibrationPoint(str(point["network"]), float(point["parts_s"]),
                                                             float(point["measured_s"]))
                                            for point in data["calibration"]["networks"]))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise NasError(f"{file}: malformed latency table ({type(exc).__name__}: {exc})") from None
    bad = next((key for key, value in entries.items() if not value > 0), None)
    if bad is not None:
        raise NasError(f"{file}: entry {bad!r} is not a positive number of seconds")
    if calibration is not None and not (calibration.networks and all(
            point.parts_s > 0 and point.measured_s > 0 for point in calibration.networks)):
        raise NasError(f"{file}: the calibration needs at least one network with positive times")
    return LatencyTable(setup=setup, entries=entries, path=file, calibration=calibration)


def open_table(path: str | os.PathLike[str], setup: MeasureSetup) -> LatencyTable:
    """The table at `path` to measure into with `setup`: the existing one if its setup is the same, else new.

    An existing table measured under another setup is refused, naming the first difference, so that entries
    measured under two setups never mix in one file.
    """
    file = table_file(path)
    if not file.exists():
        return LatencyTable(setup=setup, path=file)
    table = load_table(file)
    check_same_setup(table, setup)
    return table


def check_same_setup(table: LatencyTable, setup: MeasureSetup) -> None:
    """NasError naming the first field in which `setup` differs from the table's."""
    for name in (f.name for f in dataclasses.fields(MeasureSetup)):
        ours, theirs = getattr(setup, name), getattr(table.setup, name)
        if ours != theirs:
            raise NasError(f"latency table {table.path} was measured with {name} {theirs!r}, this run has "
                           f"{ours!r}: measure into another table (another --out)")


def measure_part(part: Part, setup: MeasureSetup, seed: int = 0) -> float:
    """The median latency in seconds of one part under `setup`, in the folded inference form."""
    torch.manual_seed(seed)
    return measure_model(part.make(), part.input_shape, backend=setup.backend, threads=setup.threads,
                         batch=setup.batch, runs=setup.runs, warmup=setup.warmup, seed=seed, device=setup.device,
                         channels_last_input=part.channels_last_input).median_s


Progress = Callable[[int, int, str, float], None]  # (done, to do, key, seconds) after each measured part


def build_table(table: LatencyTable, parts: Mapping[str, Part], *, progress: Progress | None = None) -> list[str]:
    """Measure the parts the table lacks, saving it after each one; returns the keys measured.

    Measuring needs this machine to be the table's setup (device, machine, torch, protocol); a part already in
    the table is never measured again, so an interrupted build resumes where it stopped.
    """
    check_same_setup(table, current_setup(table.setup.device, threads=table.setup.threads,
                                          batch=table.setup.batch, runs=table.setup.runs,
                                          warmup=table.setup.warmup))
    todo = table.missing(parts)
    for done, key in enumerate(todo, start=1):
        table.entries[key] = measure_part(parts[key], table.setup)
        table.save()
        if progress is not None:
            progress(done, len(todo), key, table.entries[key])
    return todo



CALIBRATION_NETWORKS = 10  # whole networks timed per calibration; the scale is the median of their ratios
CALIBRATION_SEED = 1234  # the networks are a fixed draw, so a recalibration times the same ones


def calibration_specs(space: SearchSpace | None, specs: Sequence[Spec] = (),
                      count: int = CALIBRATION_NETWORKS) -> list[Spec]:
    """The networks a table is calibrated on: `count` drawn from `space` with a fixed seed, else `specs`."""
    if space is None:
        return list(specs)[:count]
    rng = random.Random(CALIBRATION_SEED)
    return [sample(space, RandomChoices(rng)).replace(name=f"{space.name}-calibration{index}")
            for index in range(count)]


def calibrate_table(table: LatencyTable, specs: Sequence[Spec], *, rounds: int = 4) -> Calibration:
    """Time each spec whole, with the table's setup on this machine, against the sum of its parts' entries;
    store the result as the table's calibration (and save). The table must hold every part of the specs."""
    if not specs:
        raise NasError("a calibration needs at least one network")
    check_same_setup(table, current_setup(table.setup.device, threads=table.setup.threads,
                                          batch=table.setup.batch, runs=table.setup.runs,
                                          warmup=table.setup.warmup))
    sums = []
    for spec in specs:
        keys = spec_keys(spec)
        missing = table.missing(keys)
        if missing:
            raise NasError(f"latency table {table.path or '(not saved)'} has no entry for {missing[0]!r} (a part "
                           f"of calibration network {spec.name or 'spec'}): measure its parts first")
        sums.append(sum(table.entries[key] for key in keys))
    timed = time_networks(specs, backend=table.setup.backend, threads=table.setup.threads, batch=table.setup.batch,
                          runs=table.setup.runs, warmup=table.setup.warmup, rounds=rounds,
                          device=table.setup.device)
    table.calibration = Calibration(tuple(CalibrationPoint(spec.name or f"network{index}", parts, latency.median_s)
                                          for index, (spec, parts, latency) in enumerate(zip(specs, sums, timed))))
    if table.path is not None:
        table.save()
    return table.calibration


def table_parts(space: str | SearchSpace | None = None, specs: Sequence[Spec] = (),
                resolution: int | None = None) -> dict[str, Part]:
    """The parts of a space (a name, file or loaded space) and of some networks, at `resolution` if given."""
    parts: dict[str, Part] = {}
    if space is not None:
        parts.update(space_parts(load_space(space) if isinstance(space, str) else space, resolution))
    if resolution is not None:
        specs = [spec.replace(resolution=resolution) for spec in specs]
    parts.update(unique_parts(specs))
    return parts


def build_latency_table(path: str | os.PathLike[str] | None = None, *, space: str | SearchSpace | None = None,
                        specs: Sequence[Spec] = (), resolution: int | None = None, device: str = "cpu",
                        threads: int = 1, batch: int = 1, runs: int = 20, warmup: int = 5,
                        calibration: int = CALIBRATION_NETWORKS, recalibrate: bool = False,
                        progress: Progress | None = None) -> LatencyTable:
    """Measure (or complete) the table of a space's and some networks' parts on this machine: `nas latency-table`.

    `path` is a .json file or a folder (default runs/latency-DEVICE-tTHREADS-bBATCH); an existing table there
    is resumed, and refused if it was measured under another setup. Then, unless the table has one already (or
    `recalibrate`), `calibration` whole networks of the space (else the given specs) are timed to calibrate it;
    0 leaves it uncalibrated.
    """
    setup = current_setup(device, threads=threads, batch=batch, runs=runs, warmup=warmup)
    table = open_table(path if path is not None else default_table_path(setup), setup)
    build_table(table, table_parts(space, specs, resolution), progress=progress)
    if calibration > 0 and (table.calibration is None or recalibrate):
        calibrate_on(table, space, specs, resolution, calibration)
    return table


def calibrate_on(table: LatencyTable, space: str | SearchSpace | None, specs: Sequence[Spec] = (),
                 resolution: int | None = None, count: int = CALIBRATION_NETWORKS) -> Calibration | None:
    """Calibrate `table` on `count` networks of `space` (else on `specs`) at `resolution` if given; None when
    there is no network to time."""
    networks = calibration_specs(load_space(space) if isinstance(space, str) else space, specs, count)
    if resolution is not None:
        networks = [spec.replace(resolution=resolution) for spec in networks]
    return calibrate_table(table, networks) if networks else None
