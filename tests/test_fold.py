"""The inference form (BN folded, channels-last) equals the eval-mode network; ONNX export matches it too."""

import pytest
import torch
from torch import nn

from nas.errors import NasError
from nas.family import efficientnet
from nas.fold import fold_batchnorm, frozen_inference_model, inference_model
from nas.latency import BACKENDS, compare_backends, measure_latency, measure_model
from nas.model import ConvBN, build_model
from nas.onnx_export import export_onnx, onnx_session, run_onnx
from trained_weights import randomize_batchnorm, trained_like


class Block(nn.Module):
    """A conv block shaped like nas.model.ConvBN but defined here: folding relies only on .conv/.bn/.act."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=1e-3, momentum=0.01)
        self.act = nn.SiLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


def toy_network() -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(Block(3, 16, 3, 2), Block(16, 16, 3, groups=16), Block(16, 24, 1),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.5), nn.Linear(24, 10))
    randomize_batchnorm(net)
    return net.eval()


def test_folding_removes_every_batchnorm_and_keeps_outputs():
    net = toy_network()
    folded = fold_batchnorm(net)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert all(m.conv.bias is not None for m in folded.modules() if isinstance(m, Block))
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        expected = net(x)
        assert (folded(x) - expected).abs().max() < 1e-4
        assert (inference_model(net)(x) - expected).abs().max() < 1e-4
    # The source network is untouched: still has its BNs.
    assert sum(isinstance(m, nn.BatchNorm2d) for m in net.modules()) == 3


def test_folding_matches_the_batchnorm_formula_on_one_conv():
    block = Block(2, 3, 1).eval()
    randomize_batchnorm(block)
    folded = fold_batchnorm(block)
    bn = block.bn
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    torch.testing.assert_close(folded.conv.weight, block.conv.weight * scale[:, None, None, None])
    torch.testing.assert_close(folded.conv.bias, bn.bias - bn.running_mean * scale)


def test_inference_form_of_b0_equals_the_eval_network():
    model = trained_like(build_model(efficientnet("b0")))
    deployed = inference_model(model)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in deployed.modules())
    assert sum(isinstance(m, ConvBN) for m in deployed.modules()) == sum(isinstance(m, ConvBN) for m in model.modules())
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        expected = model(x)
        assert expected.abs().max() > 1.0  # logits of order one, so the tolerance below means something
        assert (deployed(x) - expected).abs().max() < 1e-4
        assert (frozen_inference_model(model)(x) - expected).abs().max() < 1e-4


def test_onnx_export_matches_torch_with_a_dynamic_batch(tmp_path):
    net = toy_network()
    path = export_onnx(fold_batchnorm(net), tmp_path / "toy.onnx", torch.randn(1, 3, 32, 32))
    session = onnx_session(path)
    assert session.get_inputs()[0].shape[0] == "batch"
    for batch in (1, 3):
        x = torch.randn(batch, 3, 32, 32)
        with torch.no_grad():
            expected = net(x).numpy()
        assert abs(run_onnx(session, x) - expected).max() < 1e-4


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
