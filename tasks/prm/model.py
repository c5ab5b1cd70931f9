"""The PRM's input format and how a model for it is built, loaded and read.

A solution is laid out as the prompt and a newline, the step separator `<|step|>` (closing the
prompt; it carries no label), then every step followed by `<|step|>`. Each step's score is read
at the separator after it, which has seen the prompt and every step up to this one. The network
is tasks/prm/modeling.py's StepRewardModel: the base causal LM with its LM head kept, plus a
step head that reads the hidden state and the LM's own surprise at the step's tokens. Hard labels
train two classes (softmax, class 1 = step is fine); soft labels one logit (sigmoid). The label
kind, the model kind and the separator are in config.json, and the directory carries its
modeling file: `AutoModelForTokenClassification.from_pretrained(path, trust_remote_code=True)`
loads it anywhere (plain `from_pretrained` once prmforge is imported).

PRMs trained before StepRewardModel (GPT-2 token classifiers, no separator after the prompt)
still load and score: `prompt_separator` says which layout a model reads.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from schemas.errors import UserError
from tasks.policies.transformers_policy import quiet_transformers

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

STEP_TOKEN = "<|step|>"
IGNORE_INDEX = -100
# Keys this project adds to config.json; other tools ignore them.
CONFIG_STEP_TOKEN = "prm_step_token"
CONFIG_LABEL_KIND = "prm_label_kind"
CONFIG_KIND = "prm_kind"


class SolutionTooLong(UserError, ValueError):
    """The steps alone do not fit the model's context; the message says by how much."""


class BaseModelMissing(UserError, FileNotFoundError):
    """No HF model where training should start; the message says what to do."""


@dataclass(frozen=True)
class EncodedSolution:
    input_ids: list[int]
    separator_positions: list[int]  # one per step, where its score is read
    truncated_prompt_tokens: int = 0  # prompt tokens dropped from the left to fit max_length
    step_starts: tuple[int, ...] = ()  # where each step's tokens begin (they end at its separator)


def assemble(
    prompt_ids: Sequence[int],
    steps_ids: Sequence[Sequence[int]],
    separator_id: int,
    max_length: int | None = None,
    prompt_separator: bool = True,
) -> EncodedSolution:
    """Prompt tokens (closed by a separator), then each step's tokens followed by the separator.

    When it is too long the prompt loses tokens from its start (the question's end, next to the
    steps, matters most); the steps are never cut, since each carries a label.

    >>> assemble([1, 2], [[3], [4, 5]], separator_id=9)
    EncodedSolution(input_ids=[1, 2, 9, 3, 9, 4, 5, 9], separator_positions=[4, 7], truncated_prompt_tokens=0, step_starts=(3, 5))
    >>> assemble([1, 2], [[3], [4, 5]], separator_id=9, max_length=7).input_ids
    [2, 9, 3, 9, 4, 5, 9]
    >>> assemble([1, 2], [[3], [4, 5]], separator_id=9, prompt_separator=False).separator_positions
    [3, 6]
    >>> assemble([1], [[3, 4, 5]], separator_id=9, max_length=4)
    Traceback (most recent call last):
    ...
    tasks.prm.model.SolutionTooLong: the steps take 5 tokens but the model reads at most 4
    """
    if not steps_ids:
        raise ValueError("a solution needs at least one step")
    body: list[int] = [separator_id] if prompt_separator else []
    positions: list[int] = []
    starts: list[int] = []
    for step in steps_ids:
        starts.append(len(body))
        body.extend(step)
        body.append(separator_id)
        positions.append(len(body) - 1)
    prompt = list(prompt_ids)
    dropped = 0
    if max_length is not None and len(prompt) + len(body) > max_length:
        if len(body) > max_length:
            raise SolutionTooLong(f"the steps take {len(body)} tokens but the model reads at most {max_length}")
        dropped = len(prompt) + len(body) - max_length
        prompt = prompt[dropped:]
    return EncodedSolution(
        prompt + body, [len(prompt) + position for position in positions], dropped,
        tuple(len(prompt) + start for start in starts),
    )


def encode_solution(
    tokenizer: PreTrainedTokenizerBase, prompt: str, steps: Sequence[str], max_length: int | None = None,
    prompt_separator: bool = True,
) -> EncodedSolution:
    """`assemble` on the tokenizer's ids of `prompt + "\n"` and of each step."""
    separator_id = tokenizer.convert_tokens_to_ids(STEP_TOKEN)
    if separator_id is None or separator_id == tokenizer.unk_token_id:
        raise ValueError(f"the tokenizer has no {STEP_TOKEN} token: load it with load_tokenizer()")
    prompt_ids = tokenizer(prompt + "\n", add_special_tokens=False)["input_ids"]
    steps_ids = tokenizer(list(steps), add_special_tokens=False)["input_ids"] if steps else []
    return assemble(prompt_ids, steps_ids, separator_id, max_length, prompt_separator)


def reads_prompt_separator(config: object) -> bool:
    """Whether a model reads the layout with a separator after the prompt (StepRewardModel does)."""
    from tasks.prm.modeling import MODEL_TYPE

    return getattr(config, "model_type", None) == MODEL_TYPE


def resolve_base(base: str | Path | None) -> Path:
    """The base model directory: the given path, or the embedded policy."""
    from tasks.policies.embedded_model import EMBEDDED_POLICY_DIR

    path = Path(base).expanduser() if base else EMBEDDED_POLICY_DIR
    if not (path / "config.json").exists():
        hint = "run `prmforge policy train`, or pass --base PATH" if base is None else "pass a local HF model directory"
        raise BaseModelMissing(f"no Hugging Face model at {path} (config.json missing): {hint}")
    return path


def load_tokenizer(path: Path) -> PreTrainedTokenizerBase:
    """The base's tokenizer with the step separator added (once) and a padding token."""
    from transformers import AutoTokenizer

    with quiet_transformers():
        tokenizer = AutoTokenizer.from_pretrained(path)
    if STEP_TOKEN not in tokenizer.get_vocab():
        tokenizer.add_special_tokens({"additional_special_tokens": [STEP_TOKEN]})
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def num_labels_for(label_kind: str) -> int:
    return {"hard": 2, "soft": 1}[label_kind]


def _base_language_model(base: Path) -> PreTrainedModel:
    """The causal LM inside `base`: a plain HF causal LM, or the LM of a PRM trained here."""
    import json

    from transformers import AutoModelForCausalLM

    from tasks.prm.modeling import MODEL_TYPE, StepRewardModel

    with quiet_transformers():
        if json.loads((base / "config.json").read_text()).get("model_type") == MODEL_TYPE:
            return StepRewardModel.from_pretrained(base).lm
        return AutoModelForCausalLM.from_pretrained(base)


def load_for_training(
    base: Path, label_kind: str, kind: str, seed: int, dropout: bool = False, lm_weight: float = 1.0
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A fresh step head on `base`'s LM, embeddings resized for the separator; seeded, so repeatable.

    A PRM reads its own surprise at each step and keeps learning its LM on the good steps
    (`lm_weight`); an ORM reads only the hidden state at the last separator."""
    import torch

    from tasks.prm.modeling import StepRewardConfig, StepRewardModel

    tokenizer = load_tokenizer(base)
    torch.manual_seed(seed)
    language_model = _base_language_model(base)
    if language_model.get_input_embeddings().num_embeddings != len(tokenizer):
        # The separator starts at the mean of the trained embeddings, not at a tiny random vector
        # (which the first layer norm would blow up into an arbitrary direction).
        with quiet_transformers():  # it announces the mean initialisation on every call
            language_model.resize_token_embeddings(len(tokenizer), mean_resizing=True)
    labels = num_labels_for(label_kind)
    label_names = {0: "error", 1: "ok"} if labels == 2 else {0: "ok"}
    config = StepRewardConfig(
        base_config=language_model.config, step_token_id=tokenizer.convert_tokens_to_ids(STEP_TOKEN),
        label_kind=label_kind, step_features=kind == "prm", lm_weight=lm_weight if kind == "prm" else 0.0,
        num_labels=labels, id2label=label_names, label2id={name: index for index, name in label_names.items()},
        pad_token_id=tokenizer.pad_token_id,
    )
    setattr(config, CONFIG_STEP_TOKEN, STEP_TOKEN)
    setattr(config, CONFIG_LABEL_KIND, label_kind)
    setattr(config, CONFIG_KIND, kind)
    with quiet_transformers():
        model = StepRewardModel(config, lm=language_model)
    if not dropout:
        for module in model.modules():
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.0
    return model, tokenizer


def max_positions(config: object) -> int | None:
    """The longest input the model reads, from whichever name its config uses."""
    for name in ("n_positions", "max_position_embeddings"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    base = getattr(config, "base_config", None)  # a StepRewardModel: its LM's context
    return max_positions(base) if base is not None else None


def label_kind_of(config: object) -> str:
    """'hard' or 'soft': from our config key, else from the number of labels (TRL-trained models)."""
    stored = getattr(config, CONFIG_LABEL_KIND, None)
    if stored in ("hard", "soft"):
        return stored
    return "hard" if getattr(config, "num_labels", 2) == 2 else "soft"


def step_probabilities(separator_logits: torch.Tensor, label_kind: str) -> torch.Tensor:
    """P(step is fine) from the logits read at the separators, shape (steps, num_labels) -> (steps,)."""
    if label_kind == "hard":
        return separator_logits.float().softmax(dim=-1)[:, 1]
    return separator_logits.float()[:, 0].sigmoid()


def device_for(preference: str = "auto") -> str:
    """'cuda' when there is a GPU and nothing else was asked for, else 'cpu'."""
    import torch

    if preference != "auto":
        return preference
    return "cuda" if torch.cuda.is_available() else "cpu"


def set_cpu_threads(threads: int | None = None) -> int:
    """torch's CPU threads: `threads`, else $PRMFORGE_TORCH_THREADS, else 1.

    One thread is the default because these models are small: on a busy 2-core machine two
    OpenMP threads spinning against other processes made a training step 25x slower than one.
    """
    import os

    import torch

    chosen = threads or int(os.environ.get("PRMFORGE_TORCH_THREADS", "1"))
    if torch.get_num_threads() != chosen:
        torch.set_num_threads(chosen)
    return chosen


def build_tiny_base(output_dir: Path, seed: int = 0, n_embd: int = 32, n_layer: int = 1) -> Path:
    """A tiny random GPT-2 with the embedded policy's tokenizer recipe, for tests and benchmarks.

    It is no substitute for the embedded policy: its weights are random.
    """
    import torch

    from tasks.policies.embedded_model import PolicyTrainConfig, build_model, build_tokenizer
    from tasks.synthetic import generate_problems
    from tasks.text_format import training_text

    texts = [training_text(problem) for problem in generate_problems(64, seed=1000)]
    tokenizer = build_tokenizer(texts, vocab_size=300)
    config = PolicyTrainConfig(
        problems=64, vocab_size=300, n_layer=n_layer, n_head=2, n_embd=n_embd, n_positions=256,
        steps=2, batch_size=2, warmup_steps=1, seed=seed,
    )
    torch.manual_seed(seed)
    model = build_model(config, tokenizer)
    output_dir.mkdir(parents=True, exist_ok=True)
    with quiet_transformers():
        model.save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)
    return output_dir
