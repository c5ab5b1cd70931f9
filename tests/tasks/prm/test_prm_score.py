import pytest
import torch

from tasks.policies.transformers_policy import quiet_transformers
from tasks.prm.model import STEP_TOKEN, encode_solution, load_for_training
from tasks.prm.score import PRMScorer, StepScores, aggregate



def test_aggregates_exact():
    assert aggregate([0.5, 0.25, 1.0]) == StepScores([0.5, 0.25, 1.0], min=0.25, last=1.0, product=0.125, mean=0.5833333333333334)
    assert aggregate([0.3]).aggregated("last") == 0.3
    with pytest.raises(ValueError, match="at least one"):
        aggregate([])
    with pytest.raises(ValueError, match="unknown aggregation"):
        aggregate([0.3]).aggregated("max")


def test_scores_are_probabilities_with_consistent_aggregates(tiny_prm, examples, question):
    scores = PRMScorer(tiny_prm).score(question, examples[0].steps)
    assert len(scores.per_step) == 2
    assert all(0.0 < value < 1.0 for value in scores.per_step)
    assert scores == aggregate(scores.per_step)


def test_batched_scoring_matches_one_at_a_time(tiny_prm, examples):
    scorer = PRMScorer(tiny_prm, batch_size=3)
    solutions = [(example.prompt, example.steps) for example in examples] + [("Short?", ("Step 1: 1 + 1 = 2",))]
    batched = scorer.score_many(solutions)
    for solution, together in zip(solutions, batched, strict=True):
        alone = scorer.score(*solution)
        assert together.per_step == pytest.approx(alone.per_step, abs=1e-5)


def test_the_trained_prm_learned_its_training_labels(tiny_prm, examples, question):
    scorer = PRMScorer(tiny_prm)
    right = scorer.score(question, examples[0].steps)
    slip = scorer.score(question, examples[1].steps)
    assert right.min > slip.min


def test_plain_transformers_loads_the_prm_and_agrees_with_the_scorer(tiny_prm, examples, question):
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    model = AutoModelForTokenClassification.from_pretrained(tiny_prm).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_prm)
    assert type(model).__name__ == "StepRewardModel"
    assert model.config.prm_step_token == STEP_TOKEN and model.config.num_labels == 2
    encoded = encode_solution(tokenizer, question, examples[2].steps)
    with torch.inference_mode():
        logits = model(input_ids=torch.tensor([encoded.input_ids])).logits[0]
    by_hand = logits[encoded.separator_positions].softmax(-1)[:, 1].tolist()
    assert by_hand == pytest.approx(PRMScorer(tiny_prm).score(question, examples[2].steps).per_step, abs=1e-5)


def test_a_soft_label_model_is_read_through_a_sigmoid(tiny_base, tmp_path):
    model, tokenizer = load_for_training(tiny_base, "soft", "prm", seed=1)
    with quiet_transformers():
        model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    scorer = PRMScorer(tmp_path)
    assert scorer.label_kind == "soft"
    encoded = encode_solution(tokenizer, "Q?", ["Step 1: 1 + 1 = 2"])
    with torch.inference_mode():
        logit = model.eval()(input_ids=torch.tensor([encoded.input_ids])).logits[0, encoded.separator_positions[0], 0]
    assert scorer.score("Q?", ["Step 1: 1 + 1 = 2"]).per_step == pytest.approx([torch.sigmoid(logit).item()], abs=1e-6)


def test_no_steps_or_no_model_say_so(tiny_prm, tmp_path):
    with pytest.raises(ValueError, match="at least one step"):
        PRMScorer(tiny_prm).score("Q?", [])
    with pytest.raises(FileNotFoundError, match="no trained model"):
        PRMScorer(tmp_path)
