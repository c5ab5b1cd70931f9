"""The Trainer engine: a batch split over processes or accumulation steps trains as the whole batch
does. The DDP run is real: two `torchrun` processes on CPU, talking gloo over loopback."""

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tasks.prm.config import PRMTrainConfig
from tasks.prm.model import load_for_training
from tasks.prm.train import train_loop, training_examples
from tasks.prm.trainer import MicroBatches, split_batch

ROOT = Path(__file__).resolve().parents[3]
WORKER = Path(__file__).with_name("ddp_worker.py")
# batch_size 3 splits 2 + 1 over two processes: the shares hold unequal numbers of labelled steps and
# LM targets, so an unweighted average of the shares' losses would train other weights.
SETTINGS = {"dataset_version": 1, "steps": 4, "batch_size": 3, "learning_rate": 1e-2, "head_learning_rate": 1e-2}
# Weights: float32 sums in another order, over 4 AdamW steps. The largest gap (about 1e-5) is on the
# attention's key bias, whose true gradient is zero (softmax ignores a shift shared by all keys): Adam
# scales its float noise up to steps of the learning rate's size. Weighting the shares' losses
# equally instead of by their labelled positions ends 0.04 apart, 400 times this.
TOLERANCE = 1e-4
LOSS_TOLERANCE = 1e-5


def trained(base, examples, **changes):
    config = PRMTrainConfig(**SETTINGS | changes)
    model, tokenizer = load_for_training(base, "hard", "prm", seed=0)
    encoded, _ = training_examples(tokenizer, examples, "prm", "hard", 256)
    losses = []
    metrics = train_loop(model, encoded, config, tokenizer.pad_token_id, "cpu", progress=lambda step, loss: losses.append(loss))
    return model.state_dict(), losses, metrics


def largest_difference(first: dict, second: dict) -> float:
    assert first.keys() == second.keys()
    return max(float((first[name] - second[name]).abs().max()) for name in first)


def test_the_shares_of_a_batch_weigh_by_their_labelled_positions(tiny_base, examples):
    from tasks.prm.model import load_tokenizer

    encoded, _ = training_examples(load_tokenizer(tiny_base), examples, "prm", "hard", 256)
    order = [[0, 1, 2]]
    shares = [MicroBatches(encoded, order, 0, process, 2, 1, lm_on=True)[0] for process in (0, 1)]
    assert [share["input_ids"].shape[0] for share in shares] == [2, 1]
    # Two processes: each share's weight is twice its part of the batch, and the parts add up to 1.
    assert [share["target_share"] for share in shares] == [2 * 4 / 6, 2 * 2 / 6]
    good = [sum(token != -100 for token in encoded[index].lm_targets[1:]) for index in order[0]]
    assert shares[0]["lm_share"] == pytest.approx(2 * (good[0] + good[1]) / sum(good))
    with pytest.raises(ValueError, match="cannot be split over 4"):
        split_batch([1, 2, 3], 4)


def test_gradient_accumulation_trains_the_weights_of_the_whole_batch(tiny_base, examples):
    whole, whole_losses, _ = trained(tiny_base, examples)
    accumulated, accumulated_losses, _ = trained(tiny_base, examples, gradient_accumulation_steps=3)
    assert largest_difference(whole, accumulated) < TOLERANCE
    assert accumulated_losses == pytest.approx(whole_losses, abs=LOSS_TOLERANCE)
    initial, _ = load_for_training(tiny_base, "hard", "prm", seed=0)
    assert largest_difference(whole, initial.state_dict()) > 1e-3  # it trained


def test_gradient_checkpointing_trains_the_same_weights_and_bf16_keeps_fp32_weights(tiny_base, examples):
    whole, whole_losses, _ = trained(tiny_base, examples)
    recomputed, recomputed_losses, _ = trained(tiny_base, examples, gradient_checkpointing=True)
    assert largest_difference(whole, recomputed) < TOLERANCE
    assert recomputed_losses == pytest.approx(whole_losses, abs=LOSS_TOLERANCE)
    autocast, autocast_losses, _ = trained(tiny_base, examples, mixed_precision="bf16")
    assert {tensor.dtype for tensor in autocast.values()} == {torch.float32}
    assert autocast_losses != whole_losses and autocast_losses == pytest.approx(whole_losses, abs=0.05)


def test_two_process_ddp_on_cpu_ends_with_the_weights_of_one_process(tiny_base, examples, tmp_path):
    single, single_losses, single_metrics = trained(tiny_base, examples)
    examples_file = tmp_path / "examples.json"
    examples_file.write_text(json.dumps([dataclasses.asdict(example) for example in examples]))
    environment = os.environ | {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo"}
    log = tmp_path / "torchrun.log"
    with log.open("w") as output:
        run = subprocess.run(
            [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(WORKER),
             str(tiny_base), str(examples_file), json.dumps(SETTINGS), str(tmp_path)],
            cwd=ROOT, env=environment, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT, timeout=300,
        )
    assert run.returncode == 0, log.read_text()[-3000:]
    report = json.loads((tmp_path / "run.json").read_text())
    assert report["world_size"] == 2
    distributed = torch.load(tmp_path / "weights.pt")
    assert largest_difference(single, distributed) < TOLERANCE
    assert report["losses"] == pytest.approx(single_losses, abs=LOSS_TOLERANCE)
    assert report["tokens"] == single_metrics.tokens
    assert report["final_lm_loss"] == pytest.approx(single_metrics.final_lm_loss, abs=1e-4)


def test_lora_trains_adapters_on_the_attention_and_saves_a_plain_model(tiny_base, examples):
    pytest.importorskip("peft")  # pinned in requirements.lock; optional at import time
    initial = load_for_training(tiny_base, "hard", "prm", seed=0)[0].state_dict()
    config = PRMTrainConfig(**SETTINGS | {"lora_rank": 4})
    model, tokenizer = load_for_training(tiny_base, "hard", "prm", seed=0)
    encoded, _ = training_examples(tokenizer, examples, "prm", "hard", 256)
    train_loop(model, encoded, config, tokenizer.pad_token_id, "cpu")
    merged = model.state_dict()
    assert merged.keys() == initial.keys()  # the adapters are folded in: a plain StepRewardModel
    changed = {name for name in merged if not torch.equal(merged[name], initial[name])}
    # GPT-2's default LoRA target is the attention's c_attn; the head trains in full; nothing else moves.
    assert changed == {"lm.transformer.h.0.attn.c_attn.weight", "score.weight", "score.bias"}
