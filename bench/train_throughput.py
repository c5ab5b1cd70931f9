"""Training throughput of prmforge's PRM loop against a bare torch loop, same model, same batches.

    .venv/bin/python bench/train_throughput.py [--steps 60] [--rounds 3] [--base PATH]

prmforge's loop (tasks/prm/train.py: train_loop, on transformers.Trainer) does what a real run does:
Trainer's setup, the LR schedule, gradient clipping, loss bookkeeping, a progress callback and a
Trainer checkpoint every `checkpoint_every` steps (the default, 50) and at the end. The bare loop collates the same batches and runs forward, the model's loss (the
separator loss plus the LM loss on good steps), backward and AdamW, nothing else. The two alternate for several rounds in one process (the machine
may be shared: alternating spreads the noise evenly). Throughput is non-padding tokens over wall
time, and also over this process's CPU time: with one torch thread the CPU-time figure is what
other processes on a shared machine cannot disturb, so the final ratio uses it (CPU only: on a
GPU, CPU time says nothing). The base is the embedded policy when it is present, else a random GPT-2 of the same shape.
Target: prmforge / bare >= 0.9. The last line is `name: value`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from tasks.policies.embedded_model import EMBEDDED_POLICY_DIR, batch_order  # noqa: E402
from tasks.prm.config import PRMTrainConfig  # noqa: E402
from tasks.prm.data import StepwiseExample  # noqa: E402
from tasks.prm.model import build_tiny_base, load_for_training, set_cpu_threads  # noqa: E402
from tasks.prm.train import collate, train_loop, training_examples  # noqa: E402
from tasks.synthetic import generate_problems  # noqa: E402


def synthetic_examples(count: int) -> list[StepwiseExample]:
    """Reference solutions, and the same with one step's result off by one (labelled wrong from there)."""
    examples = []
    for index, problem in enumerate(generate_problems(count, seed=4242)):
        steps = list(problem.reference_steps)
        wrong_at = len(steps) // 2
        labels = [True] * len(steps)
        if index % 2:
            head, _, result = steps[wrong_at].rpartition("= ")
            steps[wrong_at] = f"{head}= {int(result.split()[0]) + 1}" if result.split()[0].isdigit() else steps[wrong_at]
            labels[wrong_at:] = [False] * (len(steps) - wrong_at)
        examples.append(StepwiseExample(
            f"s{index}", problem.problem_id, problem.question, tuple(steps), tuple(labels),
            tuple(float(label) for label in labels), all(labels),
        ))
    return examples


def bare_loop(model, examples, config: PRMTrainConfig, pad_id: int, steps: int) -> tuple[int, float]:
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    model.train()
    tokens = 0
    began = time.perf_counter()
    for indices in batch_order(len(examples), config.batch_size, steps, config.seed):
        ids, mask, goal, lm = collate([examples[index] for index in indices], pad_id)
        loss = model(input_ids=ids, attention_mask=mask, labels=goal, lm_labels=lm).loss  # step loss + LM loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        tokens += int(mask.sum())
    return tokens, time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60, help="Optimizer steps per loop and round.")
    parser.add_argument("--rounds", type=int, default=3, help="Alternating rounds of both loops.")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads.")
    parser.add_argument("--base", type=Path, default=None, help="Base model (default: embedded policy, else random).")
    arguments = parser.parse_args()
    set_cpu_threads(arguments.threads)
    scratch = Path(tempfile.mkdtemp(prefix="prm-bench-"))
    base = arguments.base or (EMBEDDED_POLICY_DIR if (EMBEDDED_POLICY_DIR / "config.json").exists() else None)
    if base is None:
        base = build_tiny_base(scratch / "base", n_embd=192, n_layer=4)  # the embedded policy's shape, random weights
        print("base: random GPT-2 of the embedded policy's shape (4 layers, 192 wide); the embedded policy is absent")
    else:
        print(f"base: {base}")
    examples_per_epoch = arguments.steps * arguments.batch_size
    config = PRMTrainConfig(dataset_version=1, epochs=1.0, batch_size=arguments.batch_size, learning_rate=5e-4)
    model, tokenizer = load_for_training(base, "hard", "prm", seed=0)
    encoded, skipped = training_examples(tokenizer, synthetic_examples(examples_per_epoch), "prm", "hard", 256)
    print(f"{len(encoded)} solutions ({len(skipped)} skipped), {arguments.steps} steps of {arguments.batch_size} per loop "
          f"and round, {arguments.rounds} rounds, {arguments.threads} thread(s)")
    initial = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    rows = []  # per round: (ours wall, bare wall, ours cpu, bare cpu) in tokens per second
    for round_index in range(arguments.rounds + 1):  # round 0 warms up both and is not counted
        measured = {}
        # Alternate which loop goes first, so that drift on a shared machine favours neither.
        for which in (("ours", "bare") if round_index % 2 else ("bare", "ours")):
            model.load_state_dict(initial)
            wall, cpu = time.perf_counter(), time.process_time()
            if which == "ours":
                metrics = train_loop(model, encoded, config, tokenizer.pad_token_id, "cpu", scratch / "checkpoints",
                                     progress=lambda step, loss: None)
                tokens = metrics.tokens
            else:
                tokens, _ = bare_loop(model, encoded, config, tokenizer.pad_token_id, len(encoded) // config.batch_size)
            measured[which] = (tokens, time.perf_counter() - wall, time.process_time() - cpu)
        assert measured["ours"][0] == measured["bare"][0], "the two loops must see the same tokens"
        if round_index:
            (tokens, ours_wall, ours_cpu), (_, bare_wall, bare_cpu) = measured["ours"], measured["bare"]
            rows.append((tokens / ours_wall, tokens / bare_wall, tokens / ours_cpu, tokens / bare_cpu))
            print(f"round {round_index}: wall clock prmforge {rows[-1][0]:.0f} vs bare {rows[-1][1]:.0f} tokens/s; "
                  f"CPU time prmforge {rows[-1][2]:.0f} vs bare {rows[-1][3]:.0f} tokens/CPU-s ({tokens} tokens each)")
    wall_ratio = statistics.median(row[0] / row[1] for row in rows)
    cpu_ratio = statistics.median(row[2] / row[3] for row in rows)
    print(f"median wall clock: prmforge {statistics.median(r[0] for r in rows):.0f}, bare {statistics.median(r[1] for r in rows):.0f} tokens/s")
    print(f"ratio, wall clock (median of rounds; noisy on a shared machine): {wall_ratio:.3f}")
    print(f"ratio, CPU time (median of rounds; what other processes cannot disturb): {cpu_ratio:.3f} (target >= 0.9)")
    print(f"train_throughput_ratio: {cpu_ratio:.3f}")

if __name__ == "__main__":
    main()
