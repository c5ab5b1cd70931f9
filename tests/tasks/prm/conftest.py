"""Shared PRM fixtures: a tiny random GPT-2 base and a tiny PRM trained on inline examples."""

from __future__ import annotations

import pytest

from tasks.prm.data import StepwiseExample

QUESTION = "Mia has 3 pens. She gets 4 more. Then she has 2 times as many. How many pens does Mia have now?"


def example(name: str, steps: list[tuple[str, bool]], is_correct: bool, variant: str = "original") -> StepwiseExample:
    return StepwiseExample(
        solution_id=name, problem_id="p-" + name[0], prompt=QUESTION, steps=tuple(text for text, _ in steps),
        labels=tuple(label for _, label in steps), soft_labels=tuple(1.0 if label else 0.0 for _, label in steps),
        is_correct=is_correct, variant=variant,
    )


EXAMPLES = [
    example("a-right", [("Step 1: 3 + 4 = 7", True), ("Step 2: 7 * 2 = 14\nThe answer is 14.", True)], True),
    example("a-slip", [("Step 1: 3 + 4 = 8", False), ("Step 2: 8 * 2 = 16\nThe answer is 16.", False)], False),
    example("b-late", [("Step 1: 3 + 4 = 7", True), ("Step 2: 7 * 2 = 15\nThe answer is 15.", False)], False),
    example("b-right", [("Step 1: 3 + 4 = 7", True), ("Step 2: 7 * 2 = 14\nThe answer is 14.", True)], True),
]


@pytest.fixture(scope="session")
def examples() -> list[StepwiseExample]:
    """Two problems, right and wrong solutions; one goes wrong only at its second step."""
    return EXAMPLES


@pytest.fixture(scope="session")
def question() -> str:
    return QUESTION


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory):
    from tasks.prm.model import build_tiny_base, set_cpu_threads

    set_cpu_threads(1)  # tiny models: one thread is fastest on a shared machine
    return build_tiny_base(tmp_path_factory.mktemp("prm-base") / "tiny")


@pytest.fixture(scope="session")
def train_prm(tmp_path_factory):
    """Train a hard-label PRM on `base` and save it as an HF directory: train_prm(base, examples, config, name)."""

    def train(base, examples, config, name: str):
        from tasks.policies.transformers_policy import quiet_transformers
        from tasks.prm.model import load_for_training
        from tasks.prm.train import train_loop, training_examples

        model, tokenizer = load_for_training(base, "hard", "prm", seed=0)
        encoded, _ = training_examples(tokenizer, examples, "prm", "hard", 256)
        train_loop(model, encoded, config, tokenizer.pad_token_id, "cpu")
        output = tmp_path_factory.mktemp(name) / "model"
        with quiet_transformers():
            model.save_pretrained(output)
        tokenizer.save_pretrained(output)
        return output

    return train


@pytest.fixture(scope="session")
def tiny_prm(tiny_base, train_prm):
    """A hard-label PRM trained for a few steps and saved as an HF directory."""
    from tasks.prm.config import PRMTrainConfig
    from tasks.prm.model import set_cpu_threads

    set_cpu_threads(1)
    config = PRMTrainConfig(dataset_version=1, epochs=40, batch_size=4, learning_rate=1e-2, head_learning_rate=1e-2)  # it memorises
    return train_prm(tiny_base, EXAMPLES, config, "prm")
