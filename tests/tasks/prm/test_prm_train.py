import math

import pytest
import torch

from tasks.prm.config import PRMTrainConfig
from tasks.prm.model import IGNORE_INDEX, load_for_training, load_tokenizer
from tasks.prm.train import (
    CHECKPOINT_FILE, TrainingExample, collate, model_card, separator_loss, total_steps, train_loop, training_examples,
)



def config(**changes) -> PRMTrainConfig:
    settings = {"dataset_version": 1, "epochs": 2, "batch_size": 2, "learning_rate": 1e-2, "head_learning_rate": 1e-2} | changes
    return PRMTrainConfig(**settings)


def test_targets_sit_only_on_separators(tiny_base, examples):
    tokenizer = load_tokenizer(tiny_base)
    separator = tokenizer.convert_tokens_to_ids("<|step|>")
    encoded, skipped = training_examples(tokenizer, examples[2:3], "prm", "hard", 256)  # right, then wrong
    assert skipped == []
    (row,) = encoded
    labelled = [(row.input_ids[i], target) for i, target in enumerate(row.targets) if target != IGNORE_INDEX]
    assert labelled == [(separator, 1.0), (separator, 0.0)]
    (outcome,), _ = training_examples(tokenizer, examples[2:3], "orm", "hard", 256)
    assert [t for t in outcome.targets if t != IGNORE_INDEX] == [0.0]  # is_correct, at the last step only
    assert outcome.targets[-1] == 0.0


def test_too_long_solutions_are_skipped_with_the_reason(tiny_base, examples):
    tokenizer = load_tokenizer(tiny_base)
    encoded, skipped = training_examples(tokenizer, examples[:1], "prm", "hard", max_length=8)
    assert encoded == []
    assert skipped[0].solution_id == "a-right" and skipped[0].reason.startswith("too long: the steps take")


def test_losses_have_their_textbook_values_at_zero_logits():
    goal = torch.tensor([[IGNORE_INDEX, 1.0, 0.0]])
    assert separator_loss(torch.zeros(1, 3, 2), goal, "hard").item() == pytest.approx(math.log(2))
    soft_goal = torch.tensor([[IGNORE_INDEX, 0.5]])
    assert separator_loss(torch.zeros(1, 2, 1), soft_goal, "soft").item() == pytest.approx(math.log(2))
    # Only labelled positions count: a huge logit on an ignored position changes nothing.
    logits = torch.zeros(1, 3, 2)
    logits[0, 0, 0] = 50.0
    assert separator_loss(logits, goal, "hard").item() == pytest.approx(math.log(2))


def test_collate_pads_with_ignored_targets():
    ids, mask, goal, lm = collate(
        [TrainingExample([1, 2, 3], [-100.0, -100.0, 1.0], [-100, 2, -100]), TrainingExample([4], [0.0])], pad_id=0
    )
    assert ids.tolist() == [[1, 2, 3], [4, 0, 0]]
    assert mask.tolist() == [[1, 1, 1], [1, 0, 0]]
    assert goal.tolist() == [[-100.0, -100.0, 1.0], [0.0, -100.0, -100.0]]
    assert lm.tolist() == [[-100, 2, -100], [-100, -100, -100]]


def test_training_lowers_the_loss_and_counts_tokens(tiny_base, examples):
    model, tokenizer = load_for_training(tiny_base, "hard", "prm", seed=0)
    encoded, _ = training_examples(tokenizer, examples, "prm", "hard", 256)
    metrics = train_loop(model, encoded, config(epochs=40, batch_size=4), tokenizer.pad_token_id, "cpu")
    assert metrics.steps == total_steps(4, 4, 40) == 40
    assert metrics.tokens == 40 * sum(len(example.input_ids) for example in encoded)  # every solution 40 times
    assert metrics.first_loss == pytest.approx(math.log(2), abs=0.05)  # a fresh head knows nothing
    assert metrics.final_loss < 0.4


def test_soft_labels_train_one_logit(tiny_base, examples):
    model, tokenizer = load_for_training(tiny_base, "soft", "prm", seed=0)
    encoded, _ = training_examples(tokenizer, examples, "prm", "soft", 256)
    metrics = train_loop(model, encoded, config(label_kind="soft", epochs=40, batch_size=4), tokenizer.pad_token_id, "cpu")
    assert metrics.final_loss < 0.55 < metrics.first_loss  # one logit learns slower than two classes


def test_a_resumed_run_ends_with_the_weights_of_an_uninterrupted_one(tiny_base, tmp_path, examples):
    settings = config(epochs=3, checkpoint_every=1)  # 6 steps

    def trained(folder, stop_after=None, resume=False):
        model, tokenizer = load_for_training(tiny_base, "hard", "prm", seed=0)
        encoded, _ = training_examples(tokenizer, examples, "prm", "hard", 256)

        def progress(step, loss):
            if stop_after is not None and step + 1 == stop_after:
                raise KeyboardInterrupt

        try:
            metrics = train_loop(model, encoded, settings, tokenizer.pad_token_id, "cpu", folder, resume, progress)
        except KeyboardInterrupt:
            return model, None
        return model, metrics

    straight, _ = trained(tmp_path / "straight")
    interrupted, none = trained(tmp_path / "resumed", stop_after=2)
    assert none is None and (tmp_path / "resumed" / CHECKPOINT_FILE).exists()
    resumed, metrics = trained(tmp_path / "resumed", resume=True)
    assert metrics.resumed_from_step == 2
    for (name, expected), actual in zip(straight.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.allclose(expected, actual, rtol=0, atol=1e-6), name
    assert not torch.allclose(straight.score.weight, interrupted.score.weight, rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="other settings"):
        model, tokenizer = load_for_training(tiny_base, "hard", "prm", seed=0)
        encoded, _ = training_examples(tokenizer, examples, "prm", "hard", 256)
        train_loop(model, encoded, config(epochs=3, learning_rate=0.5), tokenizer.pad_token_id, "cpu", tmp_path / "resumed", True)


def test_model_card_names_dataset_snapshot_config_and_metrics():
    card = model_card("abc", 3, config(), "/models/base", 2, 17, {"final_loss": 0.25, "nested": {"x": 1}})
    assert "# Process reward model v3" in card
    assert "- dataset version: 2 (warehouse snapshot 17)" in card
    assert '"learning_rate": 0.01' in card
    assert "| final_loss | 0.25 |" in card and "nested" not in card


def test_a_resumed_run_reports_the_losses_and_tokens_of_the_whole_run(tiny_base, tmp_path, examples):
    """The registered metrics of a resumed run are those of the run, not of its last stretch: the
    losses and token count so far travel in the checkpoint (a resume after the last step trains
    nothing and still reports them)."""
    settings = config(epochs=3, checkpoint_every=1)  # 6 steps

    def trained(folder, stop_after=None, resume=False):
        model, tokenizer = load_for_training(tiny_base, "hard", "prm", seed=0)
        encoded, _ = training_examples(tokenizer, examples, "prm", "hard", 256)

        def progress(step, loss):
            if stop_after is not None and step + 1 == stop_after:
                raise KeyboardInterrupt

        return train_loop(model, encoded, settings, tokenizer.pad_token_id, "cpu", folder, resume, progress)

    straight = trained(tmp_path / "straight")
    with pytest.raises(KeyboardInterrupt):
        trained(tmp_path / "resumed", stop_after=4)
    resumed = trained(tmp_path / "resumed", resume=True)
    finished = trained(tmp_path / "straight", resume=True)  # its checkpoint is after the last step
    whole = (straight.steps, straight.first_loss, straight.final_loss, straight.tokens)
    assert (resumed.resumed_from_step, finished.resumed_from_step) == (4, 6)
    assert (resumed.steps, resumed.first_loss, resumed.final_loss, resumed.tokens) == whole
    assert (finished.steps, finished.first_loss, finished.final_loss, finished.tokens) == whole
    assert not math.isnan(straight.final_loss) and straight.tokens > 0
