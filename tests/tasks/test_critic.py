"""The critic's training data, exactly, and its extended positions."""

from __future__ import annotations

import pytest

from tasks.critic import CriticConfig, critic_examples, recomputed, extend_positions, judged_first_error_f1, trained_positions, verdict_text
from tasks.labelers.judge import judge_prompt, parse_first_error, read_mark, stepwise_prompt
from tasks.prm.data import StepwiseExample

QUESTION = "Mia has 3 pens. She gets 4 more. She gets 2 more. She gets 1 more. How many pens does Mia have now?"
STEPS = ("Step 1: 3 + 4 = 7", "Step 2: 7 + 2 = 9", "Step 3: 9 + 1 = 11", "Step 4: 11 + 0 = 11\nThe answer is 11.")


def _example(labels: tuple[bool, ...], variant: str = "original") -> StepwiseExample:
    return StepwiseExample("s" + "".join("TF"[not label] for label in labels), "p", QUESTION, STEPS, labels,
                           tuple(float(label) for label in labels), all(labels), variant)


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    from transformers import AutoTokenizer

    from tasks.prm.model import build_tiny_base

    return AutoTokenizer.from_pretrained(build_tiny_base(tmp_path_factory.mktemp("critic-base") / "tiny"))


@pytest.mark.parametrize(("labels", "verdict", "index"), [
    ((True, True, False, False), " Step 3", 2),
    ((True, True, True, True), " none", -1),
    ((False, True, True, True), " Step 1", 0),  # the first wrong step decides, whatever follows
])
def test_the_target_is_the_verdict_the_judge_parser_reads(labels, verdict, index):
    assert verdict_text(labels) == verdict
    assert parse_first_error(verdict, len(labels)) == index


def test_a_whole_example_is_the_judge_prompt_then_the_verdict_with_loss_on_the_verdict_only(tokenizer):
    (wrong, right), skipped = critic_examples(
        tokenizer, [_example((True, True, False, False)), _example((True,) * 4)], 768, protocol="whole")
    prompt = tokenizer(judge_prompt(QUESTION, list(STEPS)))["input_ids"]
    assert skipped == 0
    assert wrong.ids[: wrong.loss_from] == prompt == right.ids[: right.loss_from]
    assert tokenizer.decode(wrong.ids[wrong.loss_from :]) == " Step 3<|endoftext|>"
    assert tokenizer.decode(right.ids[right.loss_from :]) == " none<|endoftext|>"
    assert (wrong.says_none, right.says_none) == (False, True)


def test_a_stepwise_example_is_a_step_prompt_as_sent_then_its_recomputed_check(tokenizer):
    texts, skipped = critic_examples(tokenizer, [_example((True, True, False, False)), _example((True,) * 4)], 256)
    assert skipped == 0 and len(texts) == 3 + 4  # the wrong solution's steps up to its first wrong one
    wrong = texts[2]
    assert wrong.ids[: wrong.loss_from] == tokenizer(stepwise_prompt(QUESTION, list(STEPS[:3])))["input_ids"]
    assert tokenizer.decode(wrong.ids[wrong.loss_from :]) == " | 9 + 1 = 10 wrong<|endoftext|>"
    assert tokenizer.decode(texts[0].ids[texts[0].loss_from :]) == " | 3 + 4 = 7 ok<|endoftext|>"
    last = texts[-1]
    assert tokenizer.decode(last.ids) == (f"{QUESTION}\nStep 1: 3 + 4 = 7\nStep 2: 7 + 2 = 9\nStep 3: 9 + 1 = 11\n"
                                          "Step 4: 11 + 0 = 11 The answer is 11. | 11 + 0 = 11 ok<|endoftext|>")
    assert [text.says_none for text in texts] == [True, True, False, True, True, True, True]
    assert read_mark(tokenizer.decode(wrong.ids[wrong.loss_from : -1])) is False


@pytest.mark.parametrize(("step", "claim"), [
    ("Step 3: 9 + 1 = 11", "9 + 1 = 10"),
    ("Step 1: 12 / 5 = 2", "12 / 5 = 2.4"),
    ("First 2 * (3 + 4) = 15, then 15 - 1 = 14.", "15 - 1 = 14"),  # the last claim
    ("So (2 + 3) * 4 = 21", "(2 + 3) * 4 = 20"),
    ("The answer is 11.", None),
    ("Step 2: 5 / 0 = 1", None),
])
def test_recomputed_puts_the_exact_value_in_place_of_the_written_one(step, claim):
    assert recomputed(step) == claim


def test_merged_variants_are_not_trained_on_slips_and_references_are_and_texts_too_long_are_counted(tokenizer):
    examples, skipped = critic_examples(tokenizer, [_example((True,) * 4, "hnc"), _example((True,) * 4)], 40)
    assert (examples, skipped) == ([], 1)
    kept, _ = critic_examples(tokenizer, [_example((True,) * 4, variant) for variant in ("hnc", "slip", "reference")],
                              768, protocol="whole")
    assert len(kept) == 2


def test_extended_positions_keep_the_model_and_repeat_the_trained_block():
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=50, n_positions=16, n_embd=8, n_layer=1, n_head=2)).eval()
    with torch.no_grad():
        model.transformer.wpe.weight[12:] *= 0.01  # positions 12-15 look untrained
    extended = extend_positions(model, 40).eval()
    weight, old = extended.transformer.wpe.weight, model.transformer.wpe.weight
    assert extended.config.n_positions == 40
    assert torch.equal(weight[:12], old[:12]) and torch.equal(weight[12], old[0]) and torch.equal(weight[39], old[39 % 12])
    ids = torch.tensor([[1, 2, 3, 4, 5]])
    assert torch.allclose(extended(input_ids=ids).logits, model(input_ids=ids).logits)
    assert extended.lm_head.weight.data_ptr() == extended.transformer.wte.weight.data_ptr()  # still tied


def test_trained_positions_reads_the_norms():
    assert trained_positions([1.0, 1.0, 0.2]) == 2


def test_f1_counts_unreadable_answers_as_misses():
    assert judged_first_error_f1([-1, 1], [-1, 1]) == 1.0
    assert judged_first_error_f1([-1, 1], [None, 1]) == 0.0
    assert judged_first_error_f1([1, 2], [1, 2]) is None  # no correct rows: no F1


def test_the_config_refuses_what_has_no_meaning():
    with pytest.raises(ValueError, match="steps must be at least 1"):
        CriticConfig(steps=0)
    with pytest.raises(ValueError, match="warmup_steps"):
        CriticConfig(steps=5, warmup_steps=5)
