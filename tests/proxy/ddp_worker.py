"""One process of a distributed training run for tests/proxy/test_distributed.py, started by torchrun.

    python -m torch.distributed.run --standalone --nproc-per-node 2 tests/proxy/ddp_worker.py FOLDER OUT EPOCHS

Trains the tests' small network on the folder exactly as `nas train SPEC --data folder:FOLDER --preset tiny
--epochs EPOCHS --lr 0.2 --seed 1` does, then each rank writes what it holds to OUT/rank<r>.safetensors: its
EMA weights and buffers (`ema.*`) and the training loss and validation accuracy of every epoch.
"""

import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

from nas.proxy import distributed
from nas.proxy.data import load_dataset
from nas.proxy.presets import get_preset
from nas.proxy.trainer import train
from tests.proxy.folders import SMALL


def main() -> None:
    folder, out, epochs = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
    torch.set_num_threads(1)
    place = distributed.init_from_env("cpu")
    preset = get_preset("tiny").with_changes(epochs=epochs, lr_per_256=0.2)
    data = load_dataset(f"folder:{folder}", seed=1, image_size=preset.resolution)
    result = train(SMALL, data, preset, seed=1, evaluate_test=True, state_path=out / "run" / "train_state.safetensors")
    tensors = {f"ema.{k}": v for k, v in result.state_dict.items()}
    tensors["train_loss"] = torch.tensor([report.train_loss for report in result.history])
    tensors["val_acc"] = torch.tensor([report.val_acc for report in result.history])
    tensors["world_size"] = torch.tensor(result.world_size)
    save_file(tensors, str(out / f"rank{place.rank}.safetensors"))
    distributed.shutdown()


if __name__ == "__main__":
    main()
