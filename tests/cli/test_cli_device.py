"""`--device` on the commands that run networks: a missing GPU is one line and exit 2 before anything is
written, and the device reaches the trainer and the latency measurement."""

import pytest
import torch

from nas.search.config import SearchConfig

needs_no_gpu = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")


@needs_no_gpu
@pytest.mark.parametrize("command", [
    ("search", "--space", "tiny", "--proxy", "tiny", "--target-flops", "60M", "--study", "gpu"),
    ("scale", "--base", "b0", "--proxy", "tiny", "--study", "gpu"),
    ("latency", "b0", "--runs", "1"),
    ("train", "b0", "--preset", "tiny"),
])
def test_missing_gpu_is_one_line_and_writes_nothing(run_nas, tmp_path, monkeypatch, command):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_nas(*command, "--device", "cuda")
    assert code == 2 and err.count("\n") == 1 and "no CUDA GPU" in err
    assert not (tmp_path / "runs").exists()


def test_search_trains_its_candidates_on_the_configured_device(monkeypatch):
    import nas.proxy.trainer
    from nas.proxy.data import FASHION_MNIST_DIR

    if not FASHION_MNIST_DIR.is_dir():
        pytest.skip("dataset-fashion-mnist not installed")
    from nas.search.estimators import proxy_evaluator
    from tests.proxy.folders import SMALL

    seen = []
    monkeypatch.setattr(nas.proxy.trainer, "train", lambda *a, **k: seen.append(k["device"]) or
                        type("Result", (), {"val_acc": 0.5})())
    evaluate = proxy_evaluator(SearchConfig(proxy="tiny", device="cpu"))
    assert evaluate(SMALL, lambda report: None) == 0.5 and seen == [torch.device("cpu")]


def test_latency_on_an_explicit_cpu_device(run_nas):
    code, out, err = run_nas("latency", "b0", "--resolution", "64", "--runs", "2", "--warmup", "1", "--device", "cpu")
    assert code == 0 and "mean" in out, err
