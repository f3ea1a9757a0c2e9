"""The paper's latency protocol on each backend."""

import pytest

from nas.arch.efficientnet import efficientnet
from nas.errors import NasError
from nas.latency.measure import (
    BACKENDS,
    compare_backends,
    measure_latency,
    measure_model,
)
from tests.trained_weights import toy_network


def test_latency_reports_the_requested_runs_on_every_backend():
    net = toy_network()
    for backend in BACKENDS:
        result = measure_model(net, (3, 32, 32), backend=backend, runs=4, warmup=1, batch=2)
        assert result.runs == 4 and result.batch == 2 and result.backend == backend
        assert 0 < result.median_s and min(result.times_s) <= result.mean_s <= max(result.times_s)


def test_latency_of_a_spec_uses_its_resolution():
    spec = efficientnet("b0").replace(resolution=32, num_classes=10)
    result = measure_latency(spec, backend="folded", runs=3, warmup=1)
    assert result.runs == 3 and result.threads == 1 and result.batch == 1


def test_unknown_backend_is_a_user_error():
    with pytest.raises(NasError, match="tensorrt"):
        measure_model(toy_network(), (3, 32, 32), backend="tensorrt")


def test_interleaved_comparison_gives_each_backend_all_its_runs():
    results = compare_backends(toy_network(), (3, 32, 32), ("eager", "folded"), runs=7, warmup=1, rounds=3)
    assert {name: r.runs for name, r in results.items()} == {"eager": 7, "folded": 7}
