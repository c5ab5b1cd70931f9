"""One process of a `torchrun` training run, for test_prm_trainer.py: it trains the tiny PRM through
train_loop and the first process writes the weights, the losses and the world size it saw.

    python -m torch.distributed.run --standalone --nproc_per_node 2 ddp_worker.py BASE EXAMPLES SETTINGS OUT
"""

import json
import sys
from pathlib import Path

import torch

from tasks.prm.config import PRMTrainConfig
from tasks.prm.data import StepwiseExample
from tasks.prm.model import load_for_training, set_cpu_threads
from tasks.prm.train import train_loop, training_examples


def main(base: str, examples_file: str, settings: str, output: str) -> None:
    set_cpu_threads(1)
    rows = [StepwiseExample(**row) for row in json.loads(Path(examples_file).read_text())]
    config = PRMTrainConfig(**json.loads(settings))
    model, tokenizer = load_for_training(Path(base), config.label_kind, config.kind, config.seed)
    encoded, _ = training_examples(tokenizer, rows, config.kind, config.label_kind, 256)
    losses = []
    metrics = train_loop(model, encoded, config, tokenizer.pad_token_id, "cpu",
                         progress=lambda step, loss: losses.append(loss))
    world = torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1
    if not torch.distributed.is_initialized() or torch.distributed.get_rank() == 0:
        torch.save(model.state_dict(), Path(output) / "weights.pt")
        (Path(output) / "run.json").write_text(json.dumps(
            {"world_size": world, "losses": losses, "tokens": metrics.tokens, "final_lm_loss": metrics.final_lm_loss}))


if __name__ == "__main__":
    main(*sys.argv[1:])
