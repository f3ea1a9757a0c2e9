"""The inference form (BN folded, channels-last) equals the eval-mode network; ONNX export matches it too."""

import torch
from torch import nn

from nas.arch.efficientnet import efficientnet
from nas.model.builder import ConvBN, build_model
from nas.model.inference import (
    export_inference_program,
    fold_batchnorm,
    inference_model,
)
from nas.model.onnx import export_onnx, onnx_session, run_onnx
from tests.trained_weights import Block, randomize_batchnorm, toy_network, trained_like


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
        assert (export_inference_program(model, x).module()(x) - expected).abs().max() < 1e-4


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
