import dataclasses
import json

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from schemas.records import Problem
from tasks.policies.embedded_model import (
    END_OF_TEXT,
    Example,
    PolicyTrainConfig,
    batch_order,
    build_model,
    build_tokenizer,
    collate,
    encode_corpus,
    held_out_problems,
    learning_rate_factor,
    parameter_count,
    train_embedded_policy,
    train_model,
)
from tasks.synthetic import generate_problems
from tasks.text_format import prompt_for, training_text

TINY = PolicyTrainConfig(
    problems=64, vocab_size=300, n_layer=1, n_head=2, n_embd=32, n_positions=512,
    steps=20, batch_size=8, learning_rate=1e-2, warmup_steps=2, eval_problems=3, eval_samples=2,
)
PROBLEMS = generate_problems(64, seed=1000)
TEXTS = [training_text(problem) for problem in PROBLEMS]
# True running values: 14, 21, 18.
PROBLEM = Problem(
    problem_id="p", question="Mia has 14 apples. She gets 7 more. She gives away 3. How many apples does Mia have now?",
    answer="18", source="inline", reference_steps=("Step 1: 14 + 7 = 21", "Step 2: 21 - 3 = 18\nThe answer is 18."),
)


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models on a busy 2-core machine: two spinning threads are many times slower than one."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer(TEXTS, vocab_size=300)


def test_tokenizer_round_trips_text_with_newlines_and_digits(tokenizer):
    text = "Question: Mia has 907 pens.\nAnswer:\n\nStep 1: 907 * 3 = 2721\n  The answer is 2721.\n"
    assert tokenizer.decode(tokenizer(text)["input_ids"]) == text
    assert all(tokenizer.decode(tokenizer(sample)["input_ids"]) == sample for sample in TEXTS)


def test_tokenizer_splits_every_digit_and_keeps_newline_a_token(tokenizer):
    assert tokenizer.tokenize("2024") == ["2", "0", "2", "4"]
    assert tokenizer.tokenize(" = 57\n") == ["Ġ=", "Ġ", "5", "7", "Ċ"]


def test_end_of_text_is_eos_and_pad(tokenizer):
    assert tokenizer.eos_token == tokenizer.pad_token == END_OF_TEXT
    assert tokenizer.eos_token_id == 0
    assert len(tokenizer) == 300


def test_corpus_ends_each_text_with_end_of_text_and_rejects_overlong_texts(tokenizer):
    [example] = encode_corpus(tokenizer, [PROBLEM], limit=256)
    assert example.ids == tokenizer(training_text(PROBLEM))["input_ids"] + [0]
    assert example.loss_from == 0
    with pytest.raises(ValueError, match="raise n_positions"):
        encode_corpus(tokenizer, PROBLEMS, limit=10)


def test_corpus_without_question_loss_starts_the_loss_at_the_first_step(tokenizer):
    [example] = encode_corpus(tokenizer, [PROBLEM], limit=256, loss_on_question=False)
    assert tokenizer.decode(example.ids[: example.loss_from]) == prompt_for(PROBLEM.question)
    assert tokenizer.decode(example.ids[example.loss_from :]).startswith("Step 1: 14 + 7 = 21\n")


def test_collate_pads_right_and_hides_padding_and_question_from_the_loss():
    ids, mask, labels = collate([Example([5, 6, 7], loss_from=1), Example([8])], pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [8, 0, 0]]
    assert mask.tolist() == [[1, 1, 1], [1, 0, 0]]
    assert labels.tolist() == [[-100, 6, 7], [8, -100, -100]]


def test_learning_rate_warms_up_then_decays_to_zero():
    assert [round(learning_rate_factor(step, 2, 6), 3) for step in range(6)] == [0.5, 1.0, 1.0, 0.75, 0.25, 0.0]


def test_batch_order_covers_each_epoch_once_and_repeats_with_its_seed():
    order = batch_order(count=4, batch_size=2, steps=4, seed=1)
    assert sorted(order[0] + order[1]) == [0, 1, 2, 3]
    assert sorted(order[2] + order[3]) == [0, 1, 2, 3]
    assert order == batch_order(count=4, batch_size=2, steps=4, seed=1)
    assert order != batch_order(count=4, batch_size=2, steps=4, seed=2)


def test_config_rejects_heads_that_do_not_divide_the_width():
    with pytest.raises(ValueError, match="must divide"):
        PolicyTrainConfig(n_embd=30, n_head=4)
    with pytest.raises(ValueError, match="warmup_steps"):
        PolicyTrainConfig(steps=10, warmup_steps=10)


def test_every_config_field_has_help():
    assert all(field.metadata.get("help") for field in dataclasses.fields(PolicyTrainConfig))


def test_tiny_training_lowers_loss_changes_every_parameter_and_survives_save_and_load(tokenizer, tmp_path):
    torch.manual_seed(0)
    model = build_model(TINY, tokenizer)
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    losses = train_model(model, encode_corpus(tokenizer, PROBLEMS, 512), TINY, tokenizer.pad_token_id)

    assert len(losses) == 20
    assert sum(losses[-5:]) < sum(losses[:5]) * 0.8
    unchanged = [name for name, tensor in model.named_parameters() if torch.equal(tensor, before[name])]
    assert unchanged == []

    model.save_pretrained(tmp_path)
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path)
    assert all(torch.equal(tensor, reloaded.state_dict()[name]) for name, tensor in model.state_dict().items())


def test_train_embedded_policy_saves_weights_tokenizer_and_record(tmp_path):
    steps: list[int] = []
    torch.set_num_threads(3)  # TINY trains with 1 thread; the caller's setting must come back
    metrics = train_embedded_policy(tmp_path, TINY, progress=lambda step, loss: steps.append(step))

    assert steps == list(range(20))
    assert torch.get_num_threads() == 3
    assert {path.name for path in tmp_path.iterdir()} >= {
        "config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "training.json",
    }
    model = AutoModelForCausalLM.from_pretrained(tmp_path)
    assert parameter_count(model) == metrics["parameters"]
    # 1 block of width 32: embeddings (300 + 512) * 32, block 12 * 32^2 + 13 * 32, final norm 2 * 32.
    assert metrics["parameters"] == 812 * 32 + 12 * 32 * 32 + 13 * 32 + 2 * 32
    reloaded_tokenizer = AutoTokenizer.from_pretrained(tmp_path)
    assert reloaded_tokenizer.decode(reloaded_tokenizer("Step 1: 7 - 2 = 5\n")["input_ids"]) == "Step 1: 7 - 2 = 5\n"
    record = json.loads((tmp_path / "training.json").read_text())
    assert record["config"] == dataclasses.asdict(TINY)
    assert record["metrics"] == metrics
    # Solve rates are shares of 3 x 2 sampled and 3 greedy solutions.
    assert metrics["solve_rate"] * 6 == pytest.approx(round(metrics["solve_rate"] * 6))
    assert metrics["greedy_solve_rate"] in (0.0, 0.3333, 0.6667, 1.0)


def test_held_out_problems_never_come_from_the_corpus():
    corpus = generate_problems(500, seed=TINY.problem_seed)
    config = dataclasses.replace(TINY, eval_problems=40)
    held_out = held_out_problems(config, {problem.problem_id for problem in corpus})
    assert len(held_out) == 40
    assert not {problem.problem_id for problem in held_out} & {problem.problem_id for problem in corpus}
