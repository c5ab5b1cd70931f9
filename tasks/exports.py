"""Dataset exports for trainers other than TRL: OpenRLHF's process-reward form.

OpenRLHF's PRM trainer (`openrlhf.cli.train_prm`) reads one text per solution, `input`, in which a
placeholder token follows every step, and one label per placeholder, `value`: the reward token
`+` for a good step and `-` for a bad one. It tokenizes `input` without special tokens and puts
each label at the position of the next placeholder token (the id `tokenizer.encode(placeholder)`
gives, which must be a single token). So the placeholder has to come out of the tokenizer as that
same single token wherever it stands in the text. Math-Shepherd writes `step ки`; byte-level BPE
tokenizers (Qwen2, Llama 3, GPT-2) glue a leading space to the word, making ` ки` another token
than `ки`, and every label would silently miss. Here the placeholder stands on its own line
(`separator` is a newline by default), which those tokenizers always split off; for a
SentencePiece tokenizer whose placeholder carries the word-start marker (Llama 2, Mistral), pass
`separator=" "`.

Train with the arguments `openrlhf.json` records beside the files:
`--input_key input --label_key value --placeholder_token ки --reward_tokens + -`.
A row whose text already holds the placeholder is left out (`excluded.parquet`, with the reason).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import polars as pl

PLACEHOLDER = "ки"
GOOD, BAD = "+", "-"
SEPARATOR = "\n"
_HOLDS = "__holds_placeholder"


def openrlhf_input(prompt: str, steps: Sequence[str], placeholder: str = PLACEHOLDER, separator: str = SEPARATOR) -> str:
    """The problem, then every step followed by the placeholder, one step per line.

    >>> openrlhf_input("Q?", ["Step 1: 1 + 1 = 2", "The answer is 2."])
    'Q?\\nStep 1: 1 + 1 = 2\\nки\\nThe answer is 2.\\nки'
    """
    return prompt + "".join(f"\n{step}{separator}{placeholder}" for step in steps)


def openrlhf_rows(dataset: pl.DataFrame, placeholder: str = PLACEHOLDER,
                  separator: str = SEPARATOR) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(rows, excluded): `input`, `value` (`+`/`-` per step), `soft_value` (q per step), and the ids
    and split of the stepwise dataset; excluded rows keep their ids with the reason."""
    ids = ["solution_id", "problem_id", "split", "variant"]
    step = pl.element()
    holds_placeholder = (pl.col("prompt").str.contains(placeholder, literal=True)
                         | pl.col("completions").list.eval(step.str.contains(placeholder, literal=True)).list.any())
    marked = dataset.with_columns(holds_placeholder.alias(_HOLDS))
    rows = marked.filter(~pl.col(_HOLDS)).select(
        *ids,
        pl.concat_str(pl.col("prompt"), pl.col("completions").list.eval(
            pl.concat_str(pl.lit("\n"), step, pl.lit(f"{separator}{placeholder}"))).list.join("")).alias("input"),
        pl.col("labels").list.eval(pl.when(step).then(pl.lit(GOOD)).otherwise(pl.lit(BAD))).alias("value"),
        pl.col("soft_labels").alias("soft_value"),
    )
    excluded = marked.filter(pl.col(_HOLDS)).select(
        *ids, pl.lit(f"the text holds the placeholder {placeholder!r} itself").alias("reason"))
    schema = {"solution_id": pl.String, "problem_id": pl.String, "split": pl.String, "variant": pl.String,
              "input": pl.String, "value": pl.List(pl.String), "soft_value": pl.List(pl.Float64)}
    excluded_schema = {"solution_id": pl.String, "problem_id": pl.String, "split": pl.String,
                       "variant": pl.String, "reason": pl.String}
    return rows.cast(schema), excluded.cast(excluded_schema)


def export_openrlhf(dataset: pl.DataFrame, folder: Path, placeholder: str = PLACEHOLDER,
                    separator: str = SEPARATOR) -> Path:
    """`folder/{train,test}.parquet` in OpenRLHF's process-reward form, `openrlhf.json` with the
    trainer arguments that read them, and `excluded.parquet` when a row had to be left out."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rows, excluded = openrlhf_rows(dataset, placeholder, separator)
    for split in ("train", "test"):
        rows.filter(pl.col("split") == split).drop("split").write_parquet(folder / f"{split}.parquet")
    if not excluded.is_empty():
        excluded.write_parquet(folder / "excluded.parquet")
    arguments = {"input_key": "input", "label_key": "value", "placeholder_token": placeholder,
                 "reward_tokens": [GOOD, BAD], "separator": separator}
    (folder / "openrlhf.json").write_text(json.dumps(arguments, ensure_ascii=False, indent=1) + "\n")
    return folder
