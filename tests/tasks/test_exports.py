"""The OpenRLHF export, tokenized the way OpenRLHF's process-reward dataset documents it: the text
without special tokens, the placeholder's id from encoding it alone (it must be one token), and
the labels placed, in order, at the positions of that id. Every label must land on its own step.

The tokenizers are byte-level BPEs built here with the two pre-tokenizer families real PRM bases
use: GPT-2's rule (` ?letters`) and Qwen2's / Llama 3's (`[^\\r\\n letters digits]?letters`). On
both, the placeholder is a token of its own vocabulary, as `ки` is in real ones.
"""

import polars as pl
import pytest

from tasks.exports import BAD, GOOD, PLACEHOLDER, export_openrlhf, openrlhf_input, openrlhf_rows

QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
    r"|\s+(?!\S)|\s+"
)
DATASET = pl.DataFrame({
    "solution_id": ["s1", "s2", "s3"], "problem_id": ["p1", "p2", "p3"], "split": ["train", "test", "train"],
    "variant": ["original", "original", "hnc"],
    "prompt": ["Mia has 3 apples. She gets 2 more. How many apples?", "Let $x = 2$. Find $x^2$.", "Sam has 4 coins."],
    "completions": [
        ["Step 1: 3 + 2 = 5", "so she has five apples", "The answer is 5."],
        ["We square it: $x^2 = 4$", "Hence $\\boxed{4}$"],
        ["Step 1: 4 * 2 = 8 coins"],
    ],
    "labels": [[True, True, False], [True, True], [False]],
    "soft_labels": [[1.0, 0.5, 0.0], [0.75, 1.0], [0.0]],
})


def byte_level_tokenizer(rule: str):
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    if rule == "gpt2":
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    else:
        tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ])
    tokenizer.decoder = decoders.ByteLevel()
    corpus = [f"{text} {PLACEHOLDER} {PLACEHOLDER}\n{PLACEHOLDER}.{PLACEHOLDER}" for text in DATASET["prompt"]] * 20
    trainer = trainers.BpeTrainer(vocab_size=400, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  special_tokens=["<|endoftext|>"], show_progress=False)
    tokenizer.train_from_iterator(corpus, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="<|endoftext|>")


def single_token(tokenizer, text: str) -> int:
    ids = tokenizer.encode(text, add_special_tokens=False)
    assert len(ids) == 1, f"{text!r} is {len(ids)} tokens"
    return ids[0]


def labels_by_position(tokenizer, text: str, values: list[str]) -> dict[int, int]:
    """OpenRLHF's reading: label k goes to the k-th position holding the placeholder's id."""
    input_ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    placeholder = single_token(tokenizer, PLACEHOLDER)
    positions = [index for index, token in enumerate(input_ids) if token == placeholder]
    labels = [single_token(tokenizer, value) for value in values]
    return dict(zip(positions, labels[: len(positions)]))


@pytest.mark.parametrize("rule", ["gpt2", "qwen2"])
def test_every_label_lands_on_its_own_step(rule):
    tokenizer = byte_level_tokenizer(rule)
    rows, excluded = openrlhf_rows(DATASET)
    assert excluded.is_empty() and rows.height == 3
    for row, completions in zip(rows.iter_rows(named=True), DATASET["completions"]):
        input_ids = tokenizer(row["input"], add_special_tokens=False)["input_ids"]
        placed = labels_by_position(tokenizer, row["input"], row["value"])
        assert len(placed) == len(completions) == len(row["value"])  # no label lost, none extra
        start, before = 0, row["input"].split("\n")[0]  # the problem comes before the first step
        for (position, label), step, value in zip(sorted(placed.items()), completions, row["value"]):
            # The tokens since the previous placeholder are exactly this step, on its own line.
            assert tokenizer.decode(input_ids[start:position]) == f"{before}\n{step}\n"
            assert label == single_token(tokenizer, value)
            start, before = position + 1, ""
    assert rows["value"].to_list() == [[GOOD, GOOD, BAD], [GOOD, GOOD], [BAD]]
    assert rows["soft_value"].to_list() == DATASET["soft_labels"].to_list()


@pytest.mark.parametrize("rule", ["gpt2", "qwen2"])
def test_math_shepherds_space_before_the_placeholder_would_lose_the_labels_here(rule):
    tokenizer = byte_level_tokenizer(rule)
    steps = DATASET["completions"][0].to_list()
    glued = openrlhf_input(DATASET["prompt"][0], steps, separator=" ")
    assert len(labels_by_position(tokenizer, glued, [GOOD] * len(steps))) < len(steps)


def test_the_export_writes_both_splits_the_trainer_arguments_and_what_it_left_out(tmp_path):
    holding = DATASET.with_columns(
        completions=pl.Series([["Step 1: 3 + 2 = 5", f"a {PLACEHOLDER} here", "The answer is 5."],
                               *DATASET["completions"].to_list()[1:]])
    )
    folder = export_openrlhf(holding, tmp_path / "openrlhf")
    train, test = pl.read_parquet(folder / "train.parquet"), pl.read_parquet(folder / "test.parquet")
    assert train["solution_id"].to_list() == ["s3"] and test["solution_id"].to_list() == ["s2"]
    assert pl.read_parquet(folder / "excluded.parquet").select("solution_id", "reason").rows() == [
        ("s1", f"the text holds the placeholder {PLACEHOLDER!r} itself")]
    import json

    assert json.loads((folder / "openrlhf.json").read_text()) == {
        "input_key": "input", "label_key": "value", "placeholder_token": PLACEHOLDER,
        "reward_tokens": [GOOD, BAD], "separator": "\n"}
