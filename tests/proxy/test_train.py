"""The proxy trainer on tiny real data: it learns, it is seeded, and its callback, divergence and
checkpoint behave as the search and scaling stages rely on."""

import json
import math
from pathlib import Path
from dataclasses import replace

import pytest
import torch

from nas.arch.resolve import resolve_spec
from nas.arch.spec import save_spec
from nas.cli.main import main
from nas.deploy.load import load
from nas.errors import NasError
from nas.model.builder import build_model
from nas.proxy.augment import resize_images
from nas.proxy.checkpoint import load_checkpoint, save_checkpoint
from nas.proxy.data import FASHION_MNIST_DIR, load_dataset, split_train_val
from nas.proxy.presets import get_preset
from nas.proxy.schedule import compressed_schedule
from nas.proxy.trainer import EpochReport, TrainingDiverged, evaluate, proxy_spec, train
from tests.proxy.folders import SMALL

TINY = get_preset("tiny")


def synthetic_data(n=320, seed=0):
    """Four classes told apart by which image quadrant is bright: learnable in a few steps."""
    gen = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 4, (n,), generator=gen)
    images = torch.randint(0, 60, (n, 1, 16, 16), generator=gen, dtype=torch.uint8)
    for q in range(4):
        r, c = divmod(q, 2)
        images[labels == q, :, r * 8:(r + 1) * 8, c * 8:(c + 1) * 8] += 150
    return split_train_val("synthetic", images, labels, images[:64], labels[:64], 4,
                           val_fraction=0.2, subset=None, seed=0)


@pytest.fixture(scope="module")
def fashion():
    if not FASHION_MNIST_DIR.is_dir():
        pytest.skip("dataset-fashion-mnist not installed")
    data = load_dataset("fashion-mnist", subset=1500, seed=0)
    return replace(data, test_x=data.test_x[:1000], test_y=data.test_y[:1000])


def test_learns_fashion_mnist(fashion):
    preset = TINY.with_changes(epochs=5, subset=1500, batch_size=64, lr_per_256=0.2)
    result = train(SMALL, fashion, preset, evaluate_test=True)
    assert result.val_acc > 0.6 and result.test_acc > 0.6  # chance is 0.1
    assert result.spec.in_channels == 1 and result.spec.num_classes == 10 and result.spec.resolution == 16
    assert len(result.history) == 5 and result.history[-1].train_loss < result.history[0].train_loss


def test_same_seed_same_result_other_seed_differs():
    data = synthetic_data()
    a = train(SMALL, data, TINY, seed=1)
    b = train(SMALL, data, TINY, seed=1)
    c = train(SMALL, data, TINY, seed=2)
    assert [r.train_loss for r in a.history] == [r.train_loss for r in b.history]
    assert all(torch.equal(a.state_dict[k], b.state_dict[k]) for k in a.state_dict)
    assert a.history[0].train_loss != c.history[0].train_loss


def test_callback_gets_reports_and_its_exceptions_propagate():
    class Prune(Exception):
        pass

    seen = []

    def on_epoch(report):
        seen.append(report)
        if report.epoch == 1:
            raise Prune()

    with pytest.raises(Prune):
        train(SMALL, synthetic_data(), TINY.with_changes(epochs=4), on_epoch=on_epoch)
    assert [r.epoch for r in seen] == [0, 1] and all(isinstance(r, EpochReport) for r in seen)
    assert 0.0 <= seen[1].val_acc <= 1.0 and seen[1].images_per_s > 0


def test_last_report_lr_follows_compressed_schedule():
    data = synthetic_data()
    result = train(SMALL, data, TINY)
    steps = TINY.images // TINY.batch_size  # the preset is sized in images seen
    assert result.steps == steps == result.history[-1].steps
    expected = compressed_schedule(TINY.lr_per_256 * TINY.batch_size / 256, steps)(steps - 1)
    assert result.history[-1].lr == pytest.approx(expected)


def test_non_finite_loss_raises_with_epoch_and_step():
    with pytest.raises(TrainingDiverged) as info:
        train(SMALL, synthetic_data(), TINY.with_changes(lr_per_256=1e30))
    assert info.value.epoch == 0 and info.value.step >= 1  # step 0 has learning rate 0 (warmup)


def test_proxy_spec_and_presets():
    data = synthetic_data()
    adapted = proxy_spec(resolve_spec("b0"), data, get_preset("search"))
    assert (adapted.in_channels, adapted.num_classes, adapted.resolution) == (1, 4, 32)
    with pytest.raises(NasError, match="unknown proxy preset"):
        get_preset("huge")
    with pytest.raises(NasError, match="batch_size"):
        TINY.with_changes(batch_size=0)
    with pytest.raises(NasError, match="unknown preset field"):
        TINY.with_changes(momentum=0.5)


def test_checkpoint_round_trip_reproduces_accuracy(tmp_path):
    data = synthetic_data()
    result = train(SMALL, data, TINY)
    save_checkpoint(tmp_path / "m.safetensors", result.state_dict, result.spec,
                    {"mean": result.mean, "std": result.std})
    state, spec, meta = load_checkpoint(tmp_path / "m.safetensors")
    assert spec == result.spec and meta["mean"] == list(result.mean)
    model = build_model(spec)
    model.load_state_dict(state)
    acc = evaluate(model, resize_images(data.val_x, spec.resolution), data.val_y,
                   torch.tensor(meta["mean"]), torch.tensor(meta["std"]))
    assert acc == result.val_acc
    (tmp_path / "bad.safetensors").write_bytes(b"garbage")
    with pytest.raises(NasError, match="not a safetensors checkpoint"):
        load_checkpoint(tmp_path / "bad.safetensors")


def _small_train_command(tmp_path: Path) -> list[str]:
    """`nas train` of a small spec on a small IDX data set written into tmp_path, one epoch of the tiny preset."""
    from tests.proxy.test_data import make_idx_dir

    data_dir = tmp_path / "idx"
    data_dir.mkdir()
    make_idx_dir(data_dir, compress=True, n_train=200, n_test=40)
    save_spec(SMALL, tmp_path / "small.json")
    return ["train", str(tmp_path / "small.json"), "--data", f"idx:{data_dir}", "--preset", "tiny", "--epochs", "1"]


def test_cli_train_writes_run_folder(tmp_path, capsys):
    out = tmp_path / "run"
    rc = main([*_small_train_command(tmp_path), "--out", str(out)])
    assert rc == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["preset"]["epochs"] == 1 and 0 <= metrics["test_acc"] <= 1
    state, spec, _ = load_checkpoint(out / "checkpoint.safetensors")
    assert spec == resolve_spec(str(out))
    loaded = load(str(out)).state_dict()  # what export reads from a run folder
    assert all(torch.equal(loaded[k], v) for k, v in state.items())
    assert "test acc" in capsys.readouterr().out


def test_cli_preset_change_sets_any_field_and_a_wrong_one_is_one_line_exit_2(tmp_path, capsys):
    out = tmp_path / "run"
    rc = main([*_small_train_command(tmp_path), "--preset-change", "flip=false", "--preset-change", "crop_padding=0",
               "--out", str(out)])
    assert rc == 0
    recipe = json.loads((out / "metrics.json").read_text())["preset"]
    assert recipe["flip"] is False and recipe["crop_padding"] == 0 and recipe["epochs"] == 1
    for change, message in (("flip=maybe", "must be of type bool"), ("flop=1", "unknown preset field"),
                            ("flip", "expected FIELD=VALUE"), ("crop_padding=-0.1", "crop_padding")):
        rc = main(["train", "b0", "--preset", "tiny", "--preset-change", change, "--out", str(tmp_path / "bad")])
        err = capsys.readouterr().err
        assert rc == 2 and err.count("\n") == 1 and "--preset-change" in err and message in err, (change, err)
    assert not (tmp_path / "bad").exists()


def test_cli_missing_data_is_one_line_exit_2(tmp_path, capsys):
    rc = main(["train", "b0", "--data", f"idx:{tmp_path / 'missing'}", "--preset", "tiny"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "missing" in err


def _conv_outputs_channels_last(model: torch.nn.Module, inputs: torch.Tensor) -> list[bool]:
    """For each convolution in a forward pass: did its output come out channels_last (and not NCHW)?"""
    seen: list[bool] = []
    hooks = [m.register_forward_hook(lambda _m, _i, out: seen.append(
        out.is_contiguous(memory_format=torch.channels_last) and not out.is_contiguous()))
        for m in model.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size != (1, 1)]
    with torch.no_grad():
        model(inputs)
    for hook in hooks:
        hook.remove()
    return seen


def test_speed_bench_baseline_runs_nchw_and_the_trainer_channels_last():
    """The bench's 'plain eager NCHW' loop must really be NCHW: with one input channel `.contiguous()` keeps the
    NHWC strides and the network silently runs channels_last, which made the baseline look 2.5x faster."""
    import importlib.util
    from pathlib import Path

    from nas.proxy.augment import crop_flip, normalize

    path = Path(__file__).parents[2] / "bench" / "bench_train_speed.py"
    module_spec = importlib.util.spec_from_file_location("bench_train_speed", path)
    bench = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(bench)

    images = torch.randint(0, 256, (4, 1, 32, 32), dtype=torch.uint8)
    batch = normalize(crop_flip(images, 4, torch.Generator().manual_seed(0)), torch.zeros(1), torch.ones(1))
    net = SMALL.replace(in_channels=1, num_classes=10, resolution=32)
    plain = build_model(net).eval()
    assert not any(_conv_outputs_channels_last(plain, bench.as_nchw(batch)))
    assert torch.equal(bench.as_nchw(batch), batch)
    assert all(_conv_outputs_channels_last(plain, batch.contiguous()))  # the trap as_nchw avoids
    fast = build_model(net).eval().to(memory_format=torch.channels_last)
    assert all(_conv_outputs_channels_last(fast, batch))


def test_rand_augment_preset_trains_seeded_and_differs_from_plain():
    data = synthetic_data()
    with_ra = TINY.with_changes(randaugment_ops=2)
    first, again = train(SMALL, data, with_ra, seed=3), train(SMALL, data, with_ra, seed=3)
    plain = train(SMALL, data, TINY, seed=3)
    assert [h.train_loss for h in first.history] == [h.train_loss for h in again.history]
    assert first.history[0].train_loss != plain.history[0].train_loss


def test_bad_rand_augment_setting_is_a_preset_error():
    with pytest.raises(NasError, match="magnitude must be 1..29"):
        TINY.with_changes(randaugment_ops=2, randaugment_magnitude=40)


def test_cli_bad_rand_augment_is_one_line_exit_2(tmp_path, capsys):
    rc = main(["train", "b0", "--preset", "tiny", "--randaugment", "20", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "ops must be" in err
    assert not (tmp_path / "run").exists()


def test_trainer_runs_its_convs_on_reachable_taps(monkeypatch):
    """The trainer switches on nas.model.builder.skip_unreachable_taps (its correctness is tested in test_model)."""
    import nas.model.builder

    smallest_maps = []
    real = nas.model.builder.conv_on_reachable_taps

    def recording(conv, x):
        smallest_maps.append(x.shape[-1])
        return real(conv, x)

    monkeypatch.setattr(nas.model.builder, "conv_on_reachable_taps", recording)
    train(SMALL, synthetic_data(), TINY)
    assert smallest_maps and min(smallest_maps) <= 2  # at 16 px the last stage runs on 2x2 maps, which its 5x5 kernel overhangs


# --- presets sized in images seen ----------------------------------------------------------------


def test_presets_keep_their_fashion_mnist_steps_and_give_a_small_data_set_as_many():
    old_epochs = {"tiny": 2, "search": 4, "scale": 5, "full": 15}  # the presets' epochs before they were images
    for name, epochs in old_epochs.items():
        preset = get_preset(name)
        pool = preset.subset or 60_000
        steps_per_epoch = (pool - round(pool * 0.1)) // preset.batch_size
        assert preset.total_steps(steps_per_epoch, preset.batch_size) == epochs * steps_per_epoch, name
    # A 4,000-image folder (3,600 training images, 28 batches) gets the search preset's 280 steps, in 10 epochs.
    assert get_preset("search").total_steps(3600 // 128, 128) == 280
    assert get_preset("search").with_changes(epochs=4).total_steps(28, 128) == 112
    with pytest.raises(NasError, match="images or epochs"):
        TINY.with_changes(epochs=2, images=100)


def test_tiny_preset_on_fashion_mnist_is_still_its_two_epochs(fashion):
    sized = train(SMALL, fashion, TINY)
    by_epochs = train(SMALL, fashion, TINY.with_changes(epochs=2))
    assert [h.train_loss for h in sized.history] == [h.train_loss for h in by_epochs.history]
    assert len(sized.history) == 2 and sized.steps == by_epochs.steps == 18


def test_a_short_last_epoch_ends_the_run_at_the_preset_s_images():
    data = synthetic_data()  # 256 training images: 8 batches of 32 an epoch
    result = train(SMALL, data, TINY.with_changes(images=32 * 20))
    assert [h.steps for h in result.history] == [8, 16, 20]


# --- devices and precision -----------------------------------------------------------------------


def _conv_output_dtypes(run) -> set:
    dtypes = set()
    hook = torch.nn.modules.module.register_module_forward_hook(
        lambda module, _i, out: dtypes.add(out.dtype) if isinstance(module, torch.nn.Conv2d) else None)
    try:
        result = run()
    finally:
        hook.remove()
    return dtypes, result


@pytest.mark.parametrize("amp,dtype", [("off", torch.float32), ("bf16", torch.bfloat16), ("fp16", torch.float16)])
def test_amp_runs_the_convolutions_in_its_precision(amp, dtype):
    dtypes, result = _conv_output_dtypes(lambda: train(SMALL, synthetic_data(), TINY, device="cpu", amp=amp))
    assert dtypes == {dtype} and result.amp == amp and result.device == "cpu"
    assert all(math.isfinite(h.train_loss) for h in result.history) and 0 <= result.val_acc <= 1
    assert all(v.dtype in (torch.float32, torch.int64) for v in result.state_dict.values())  # weights stay fp32


def test_cli_explicit_cpu_device_and_a_missing_gpu(tmp_path, capsys):
    from tests.proxy.test_data import make_idx_dir

    make_idx_dir(tmp_path, compress=True, n_train=200, n_test=40)
    save_spec(SMALL, tmp_path / "small.json")
    common = ["train", str(tmp_path / "small.json"), "--data", f"idx:{tmp_path}", "--preset", "tiny", "--epochs", "1"]
    assert main([*common, "--device", "cpu", "--out", str(tmp_path / "run")]) == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert (metrics["device"], metrics["amp"], metrics["processes"], metrics["data_path"]) == ("cpu", "off", 1, "memory")
    capsys.readouterr()
    if not torch.cuda.is_available():
        assert main([*common, "--device", "cuda", "--out", str(tmp_path / "gpu")]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "no CUDA GPU" in err and not (tmp_path / "gpu").exists()


# --- resuming from the training state --------------------------------------------------------------


class Killed(Exception):
    pass


@pytest.mark.parametrize("where", ["epoch end", "mid-epoch", "mid-epoch streamed"])
def test_interrupted_run_resumes_to_the_same_weights(tmp_path, monkeypatch, where):
    import nas.proxy.trainer

    if where == "mid-epoch streamed":
        from tests.proxy.folders import write_patch_folder

        data = load_dataset(f"folder:{write_patch_folder(tmp_path / 'f', 160)}", image_size=16, memory_budget=0)
    else:
        data = synthetic_data()
    preset = TINY.with_changes(epochs=3, subset=None)
    whole = train(SMALL, data, preset, seed=4, state_path=tmp_path / "whole.safetensors", loader_workers=0)
    state = tmp_path / "cut.safetensors"
    if where == "epoch end":
        def on_epoch(report):
            raise Killed()
        with pytest.raises(Killed):
            train(SMALL, data, preset, seed=4, state_path=state, on_epoch=on_epoch, loader_workers=0)
    else:
        monkeypatch.setattr(nas.proxy.trainer, "STATE_EVERY_STEPS", 3)
        real_save = nas.proxy.trainer._save_state

        def save_then_die(run, path, identity):
            real_save(run, path, identity)
            if run.step % run.source.steps_per_epoch:  # a save inside an epoch: the process dies right after
                raise Killed()
        monkeypatch.setattr(nas.proxy.trainer, "_save_state", save_then_die)
        with pytest.raises(Killed):
            train(SMALL, data, preset, seed=4, state_path=state, loader_workers=0)
        monkeypatch.setattr(nas.proxy.trainer, "_save_state", real_save)
    resumed = train(SMALL, data, preset, seed=4, state_path=state, loader_workers=0)
    assert resumed.resumed_at_step in ((whole.history[0].steps,) if where == "epoch end" else (3,))
    assert [h.train_loss for h in resumed.history] == [h.train_loss for h in whole.history]
    assert all(torch.equal(resumed.state_dict[k], v) for k, v in whole.state_dict.items())
    again = train(SMALL, data, preset, seed=4, state_path=state, loader_workers=0)  # finished: nothing to train
    assert again.resumed_at_step == whole.steps and again.val_acc == whole.val_acc
    with pytest.raises(NasError, match="state of another run .*seed"):
        train(SMALL, data, preset, seed=5, state_path=state)


def test_compiled_network_trains_the_same_weights():
    """torch.compile's tracing with its plain eager backend (inductor's code generation takes minutes on a
    CPU): the compiled module trains the network's own parameters, step for step."""
    data = synthetic_data()
    preset = TINY.with_changes(images=32 * 4)
    compiled, eager = train(SMALL, data, preset, compile="eager"), train(SMALL, data, preset)
    assert [h.train_loss for h in compiled.history] == [h.train_loss for h in eager.history]
    assert all(torch.equal(compiled.state_dict[k], v) for k, v in eager.state_dict.items())


def test_evaluation_uses_batchnorm_statistics_recomputed_on_training_images():
    # The returned weights' BN statistics are the exact ones of the first `bn_calibration` training images
    # (unaugmented), computed here independently: the stem BN's input mean and (biased) variance per channel.
    data = synthetic_data()
    preset = TINY.with_changes(bn_calibration=100)
    result = train(SMALL, data, preset, seed=0)
    model = build_model(result.spec)
    model.load_state_dict(result.state_dict)
    stem_bn = model.stem.bn
    mean = torch.tensor(result.mean).view(1, -1, 1, 1)
    std = torch.tensor(result.std).view(1, -1, 1, 1)
    images = resize_images(data.train_x[:100], result.spec.resolution).float()
    with torch.no_grad():
        x = model.stem.conv((images - mean) / std)  # what the stem's BN sees
    torch.testing.assert_close(stem_bn.running_mean, x.mean((0, 2, 3)), rtol=1e-4, atol=1e-5)
    # BatchNorm keeps the unbiased variance as its running estimate
    torch.testing.assert_close(stem_bn.running_var, x.var((0, 2, 3), unbiased=True), rtol=1e-3, atol=1e-5)
    off = train(SMALL, data, TINY.with_changes(bn_calibration=0), seed=0)
    assert not torch.allclose(off.state_dict[_bn_key(off.state_dict)], result.state_dict[_bn_key(result.state_dict)])


def _bn_key(state: dict) -> str:
    return next(k for k in state if k.endswith("running_mean"))
