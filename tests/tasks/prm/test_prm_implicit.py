"""The implicit PRM's scoring: exact values on fixtures whose log-ratios are known."""

import json
import math
from types import SimpleNamespace

import pytest
import torch

from tasks.prm.implicit import (
    CONFIG_BETA, CONFIG_KIND, CONFIG_REFERENCE, IMPLICIT, ImplicitScorer, encode_text, is_implicit, step_scores,
    token_log_ratios,
)


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def test_a_step_score_is_the_sigmoid_of_the_ratio_summed_so_far():
    ratios = [5.0, 1.0, -0.5, 2.0, 0.25]  # token 0 is the prompt's and never counts
    scores = step_scores(ratios, step_ends=[2, 4], prompt_tokens=1, beta=0.5)
    assert scores == pytest.approx([sigmoid(0.5 * 0.5), sigmoid(0.5 * 2.75)], abs=1e-12)


class FixedLogits(torch.nn.Module):
    """A language model whose next-token distribution is the same at every position."""

    def __init__(self, probabilities: list[float]) -> None:
        super().__init__()
        self.logits = torch.log(torch.tensor(probabilities))

    def forward(self, input_ids, attention_mask):
        return SimpleNamespace(logits=self.logits.expand(*input_ids.shape, -1).clone())


def test_token_log_ratios_are_log_pi_over_pi_ref_of_each_next_token():
    model, reference = FixedLogits([0.5, 0.25, 0.25]), FixedLogits([0.25, 0.25, 0.5])
    ids = torch.tensor([[0, 0, 2, 1]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])  # the last position is padding
    ratios = token_log_ratios(model, reference, ids, mask)
    assert ratios[0].tolist() == pytest.approx([0.0, math.log(2.0), math.log(0.5), 0.0], abs=1e-6)


def test_a_model_equal_to_its_reference_scores_every_step_one_half(tiny_base, question, tmp_path):
    # The scorer end to end: the tiny base saved as an implicit PRM whose reference is itself.
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_base)
    for key, value in {CONFIG_KIND: IMPLICIT, CONFIG_REFERENCE: str(tiny_base), CONFIG_BETA: 0.05}.items():
        setattr(model.config, key, value)
    model.save_pretrained(tmp_path)
    AutoTokenizer.from_pretrained(tiny_base).save_pretrained(tmp_path)
    assert is_implicit(tmp_path) and not is_implicit(tiny_base)
    scorer = ImplicitScorer(tmp_path)
    scores = scorer.per_step([(question, ["Step 1: 3 + 4 = 7", "Step 2: 7 * 2 = 14"]), (question, ["Step 1: 3 + 4 = 9"])])
    assert scores == [[0.5, 0.5], [0.5]]


def test_a_raised_ratio_on_one_step_shows_from_that_step_on(tiny_base, question, tmp_path):
    # Shift the trained copy's output bias toward one token: its log-ratio is positive exactly
    # where that token is the next one, so only the steps that contain it move above one half.
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_base)
    steps = ["Step 1: 3 + 4 = 7", "Step 2: 7 * 2 = 14"]
    encoded = encode_text(tokenizer, question, steps)
    second_step = encoded.input_ids[encoded.step_ends[0] + 1 : encoded.step_ends[1] + 1]
    marked = next(token for token in second_step if token not in encoded.input_ids[: encoded.step_ends[0] + 1])
    model = AutoModelForCausalLM.from_pretrained(tiny_base)
    model.lm_head = torch.nn.Linear(model.config.n_embd, model.config.vocab_size, bias=True)
    model.lm_head.weight = model.transformer.wte.weight
    with torch.no_grad():
        model.lm_head.bias.zero_()
    reference = AutoModelForCausalLM.from_pretrained(tiny_base)
    ids = torch.tensor([encoded.input_ids])
    ratios = token_log_ratios(model, reference, ids, torch.ones_like(ids, dtype=torch.float))
    assert ratios.abs().max().item() < 1e-5  # a zero bias changes nothing
    with torch.no_grad():
        model.lm_head.bias[marked] = 1.0
    ratios = token_log_ratios(model, reference, ids, torch.ones_like(ids, dtype=torch.float))[0].tolist()
    scores = step_scores(ratios, encoded.step_ends, encoded.prompt_tokens, beta=1.0)
    assert scores[0] < 0.5 < scores[1]  # every other token lost a little, the marked one gained


def test_unreadable_solutions_are_refused(tiny_base, question, tmp_path):
    from tasks.prm.model import SolutionTooLong

    config = json.loads((tiny_base / "config.json").read_text())
    assert encode_text(__import__("transformers").AutoTokenizer.from_pretrained(tiny_base), question, []) is None
    model_dir = tmp_path / "implicit"
    model_dir.mkdir()
    for name in (tiny_base).iterdir():
        (model_dir / name.name).write_bytes(name.read_bytes())
    config.update({CONFIG_KIND: IMPLICIT, CONFIG_REFERENCE: str(tiny_base), CONFIG_BETA: 1.0})
    (model_dir / "config.json").write_text(json.dumps(config))
    scorer = ImplicitScorer(model_dir)
    with pytest.raises(ValueError, match="at least one step"):
        scorer.per_step([(question, [])])
    with pytest.raises(SolutionTooLong, match="256 tokens"):
        scorer.per_step([(question, ["Step 1: " + " + ".join(["1"] * 400)])])
