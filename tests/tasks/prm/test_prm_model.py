import doctest
import importlib
import json
import math

import pytest
import torch

from tasks.prm.model import (
    STEP_TOKEN, SolutionTooLong, assemble, encode_solution, label_kind_of, load_for_training, load_tokenizer,
    max_positions, resolve_base, step_probabilities, BaseModelMissing,
)


@pytest.mark.parametrize(
    "name", ["tasks.prm.model", "tasks.prm.data", "tasks.prm.train", "tasks.prm.score", "tasks.prm.evaluate", "tasks.prm.loop"]
)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name))
    assert result.attempted > 0
    assert result.failed == 0


def test_assemble_reads_each_step_at_its_own_separator():
    encoded = assemble([10, 11, 12], [[1, 2], [3], [4, 5, 6]], separator_id=99)
    assert encoded.input_ids == [10, 11, 12, 99, 1, 2, 99, 3, 99, 4, 5, 6, 99]  # a separator closes the prompt
    assert encoded.separator_positions == [6, 8, 12]
    assert encoded.step_starts == (4, 7, 9)
    assert [encoded.input_ids[p] for p in encoded.separator_positions] == [99, 99, 99]


def test_the_old_layout_has_no_separator_after_the_prompt():
    encoded = assemble([10, 11, 12], [[1, 2], [3]], separator_id=99, prompt_separator=False)
    assert (encoded.input_ids, encoded.separator_positions) == ([10, 11, 12, 1, 2, 99, 3, 99], [5, 7])


def test_assemble_cuts_the_prompt_from_the_left_never_the_steps():
    encoded = assemble([10, 11, 12], [[1], [2]], separator_id=99, max_length=6)
    assert (encoded.input_ids, encoded.separator_positions, encoded.truncated_prompt_tokens) == ([12, 99, 1, 99, 2, 99], [3, 5], 2)
    with pytest.raises(SolutionTooLong, match="take 5 tokens"):
        assemble([10], [[1], [2]], separator_id=99, max_length=4)
    with pytest.raises(ValueError, match="at least one step"):
        assemble([10], [], separator_id=99)


def test_encode_solution_uses_the_added_separator_token(tiny_base):
    tokenizer = load_tokenizer(tiny_base)
    separator = tokenizer.convert_tokens_to_ids(STEP_TOKEN)
    assert separator == 300  # the 300-token BPE vocabulary, then the separator
    encoded = encode_solution(tokenizer, "Q?", ["Step 1: 2 + 3 = 5", "The answer is 5."])
    prompt = tokenizer("Q?\n", add_special_tokens=False)["input_ids"]
    first = tokenizer("Step 1: 2 + 3 = 5", add_special_tokens=False)["input_ids"]
    assert encoded.input_ids[: len(prompt)] == prompt
    assert encoded.input_ids[len(prompt)] == separator  # closes the prompt
    assert encoded.separator_positions[0] == len(prompt) + 1 + len(first)
    assert encoded.separator_positions[1] == len(encoded.input_ids) - 1
    assert encoded.input_ids.count(separator) == 3


def test_a_step_text_never_splits_the_separator_token(tiny_base):
    tokenizer = load_tokenizer(tiny_base)
    ids = tokenizer("a<|step|>b", add_special_tokens=False)["input_ids"]
    assert tokenizer.convert_tokens_to_ids(STEP_TOKEN) in ids and len(ids) == 3


def test_load_for_training_adds_the_token_once_and_records_how_to_read_scores(tiny_base, tmp_path):
    model, tokenizer = load_for_training(tiny_base, "soft", "orm", seed=0)
    assert len(tokenizer) == 301
    assert model.get_input_embeddings().num_embeddings == 301
    assert model.config.num_labels == 1
    assert all(module.p == 0.0 for module in model.modules() if isinstance(module, torch.nn.Dropout))
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert (config["prm_step_token"], config["prm_label_kind"], config["prm_kind"]) == (STEP_TOKEN, "soft", "orm")
    again, tokenizer_again = load_for_training(tmp_path, "hard", "prm", seed=0)  # a PRM as the base: no second token
    assert len(tokenizer_again) == 301 and again.config.num_labels == 2


def test_the_same_seed_gives_the_same_head(tiny_base):
    first, _ = load_for_training(tiny_base, "hard", "prm", seed=3)
    second, _ = load_for_training(tiny_base, "hard", "prm", seed=3)
    other, _ = load_for_training(tiny_base, "hard", "prm", seed=4)
    assert torch.equal(first.score.weight, second.score.weight)
    assert not torch.equal(first.score.weight, other.score.weight)


def test_step_probabilities_softmax_for_hard_sigmoid_for_soft():
    hard = step_probabilities(torch.tensor([[0.0, 0.0], [0.0, math.log(3.0)]]), "hard")
    assert hard.tolist() == pytest.approx([0.5, 0.75])
    soft = step_probabilities(torch.tensor([[0.0], [math.log(3.0)]]), "soft")
    assert soft.tolist() == pytest.approx([0.5, 0.75])


def test_config_helpers():
    class Config:
        n_positions = 256
        num_labels = 1

    assert max_positions(Config()) == 256
    assert label_kind_of(Config()) == "soft"  # no prm key: decided by the number of labels


def test_a_missing_base_says_what_to_do(tmp_path):
    with pytest.raises(BaseModelMissing, match="pass a local HF model directory"):
        resolve_base(tmp_path / "nothing")
