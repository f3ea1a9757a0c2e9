"""A network trained for real (the `tiny` preset on Fashion-MNIST, seconds) and its export, shared by the tests
of what an export carries: preprocessing, prediction, the int8 form."""

from __future__ import annotations

from pathlib import Path

import pytest

from nas.arch.spec import Spec, StageSpec
from nas.cli.main import main
from nas.proxy.data import FASHION_MNIST_DIR

# Small enough to train in seconds; one input channel, as Fashion-MNIST has.
TINY_NET = Spec(
    stages=(
        StageSpec("ds", 1, 3, 1, 1, 16, 0.25),
        StageSpec("mbconv", 2, 3, 2, 4, 24, 0.25),
        StageSpec("mbconv", 1, 5, 2, 4, 40, 0.25),
    ),
    in_channels=1, resolution=16, num_classes=10, stem_channels=16, head_channels=96, name="tiny_net",
)


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A `nas train` run folder: TINY_NET trained with the tiny preset on the real Fashion-MNIST."""
    if not Path(FASHION_MNIST_DIR).is_dir():
        pytest.skip(f"Fashion-MNIST is not installed in {FASHION_MNIST_DIR} (apt-get install dataset-fashion-mnist)")
    folder = tmp_path_factory.mktemp("trained")
    (folder / "tiny_net.json").write_text(TINY_NET.to_json())
    # two epochs take it well above chance, so the int8 check compares real predictions
    code = main(["-q", "train", str(folder / "tiny_net.json"), "--preset", "tiny", "--subset", "2000",
                 "--epochs", "2", "--threads", "1", "--out", str(folder / "run")])
    assert code == 0
    return folder / "run"


@pytest.fixture(scope="session")
def exported_run(trained_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The trained run exported with the default formats."""
    out = tmp_path_factory.mktemp("export") / "tiny_net"
    assert main(["-q", "export", str(trained_run), "--out", str(out)]) == 0
    return out
