"""Chat-shaped models built here: a Qwen2-architecture causal LM whose tokenizer carries a chat
template, for tests of the `chat` prompt format and for the GPU check. No hub is reachable, so
nothing is downloaded: the tokenizer is a byte-level BPE trained on synthetic problems, the
weights are random, or briefly trained so that the model writes the chat format's shape (steps
separated by blank lines, a `\\boxed{}` answer, end of turn). Its arithmetic stays poor.

Shapes: `TINY` (two layers, hidden 64, heads of 32: vLLM's CPU kernels take it) and
`QWEN2_5_1_5B` (the published Qwen2.5-1.5B configuration, for real-sized throughput on a GPU).
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from tasks.synthetic import generate_problems

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

END_OF_TEXT, TURN_START, TURN_END = "<|endoftext|>", "<|im_start|>", "<|im_end|>"

# ChatML: every message as `<|im_start|>role\ncontent<|im_end|>\n`; the generation prompt opens
# the assistant's turn.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
SYSTEM_PROMPT = "Please reason step by step, and put your final answer within \\boxed{}."


@dataclass(frozen=True)
class Qwen2Shape:
    """The architecture numbers of a Qwen2 model (transformers' Qwen2Config fields)."""

    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    max_position_embeddings: int
    vocab_size: int | None = None  # None: the tokenizer's size
    rope_theta: float = 1_000_000.0
    rms_norm_eps: float = 1e-6
    tie_word_embeddings: bool = True


TINY = Qwen2Shape(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
                  num_key_value_heads=1, max_position_embeddings=1024)
QWEN2_5_1_5B = Qwen2Shape(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
                          num_key_value_heads=2, max_position_embeddings=32768, vocab_size=151_936)


def chat_solution(steps: Sequence[str], answer: str) -> str:
    """An assistant turn in the chat format: steps separated by blank lines, then the boxed answer.

    >>> chat_solution(["Step 1: 2 + 3 = 5"], "5")
    'Step 1: 2 + 3 = 5\\n\\nThe answer is $\\\\boxed{5}$.'
    """
    return "\n\n".join([*steps, f"The answer is $\\boxed{{{answer}}}$."])


def training_conversations(count: int, seed: int) -> list[list[dict[str, str]]]:
    """Synthetic problems as chat conversations with worked answers (the step lines without their
    plain-format answer sentence)."""
    conversations = []
    for problem in generate_problems(count, seed=seed, min_steps=2, max_steps=4):
        steps = [step.split("\n")[0] for step in problem.reference_steps]
        conversations.append([
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": problem.question},
            {"role": "assistant", "content": chat_solution(steps, problem.answer)},
        ])
    return conversations


def build_chat_tokenizer(texts: Sequence[str], vocab_size: int = 400, pad_to: int | None = None) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer (any text round-trips) with ChatML's special tokens and template.

    `pad_to` fills the vocabulary with placeholder tokens up to that size, so that every id a
    random model of a real vocabulary size samples decodes (to `<|extra_N|>`).
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=[END_OF_TEXT, TURN_START, TURN_END],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer)
    if pad_to and pad_to > tokenizer.get_vocab_size():
        tokenizer = _padded(tokenizer, pad_to)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, eos_token=TURN_END, pad_token=END_OF_TEXT, unk_token=END_OF_TEXT,
        additional_special_tokens=[TURN_START], chat_template=CHAT_TEMPLATE, model_max_length=None,
    )


def build_chat_model(output_dir: Path, shape: Qwen2Shape = TINY, seed: int = 0, train_steps: int = 0,
                     dtype: str = "float32", device: str = "cpu") -> Path:
    """A Qwen2-shaped causal LM with a chat tokenizer, saved with `save_pretrained` in `output_dir`.

    `train_steps` > 0 trains it briefly on synthetic chat conversations, so that it writes their
    shape (a few hundred steps of the TINY shape take seconds on a CPU). `device` is where the
    weights are initialised (a 1.5B model initialises in seconds on a GPU, minutes on a CPU).
    """
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    conversations = training_conversations(256, seed=1000 + seed)
    probe = build_chat_tokenizer([], vocab_size=300)  # only to render the texts the BPE learns from
    texts = [probe.apply_chat_template(conversation, tokenize=False) for conversation in conversations]
    tokenizer = build_chat_tokenizer(texts, vocab_size=400, pad_to=shape.vocab_size)
    vocab_size = shape.vocab_size or len(tokenizer)
    if vocab_size < len(tokenizer):
        shape = replace(shape, vocab_size=len(tokenizer))
    fields = {**asdict(shape), "vocab_size": vocab_size}
    config = Qwen2Config(
        **fields, bos_token_id=tokenizer.convert_tokens_to_ids(END_OF_TEXT),
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, torch_dtype=dtype,
    )
    torch.manual_seed(seed)
    with torch.device(device):
        model = Qwen2ForCausalLM(config)
    if train_steps:
        _train(model, tokenizer, texts, train_steps, seed)
    model = model.to(getattr(torch, dtype)).eval()
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    model.generation_config = GenerationConfig(eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    model.save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)
    return output_dir


def _padded(tokenizer, size: int):
    """The same tokenizer with placeholder tokens appended to its BPE vocabulary up to `size` ids
    (reachable by no merge: only a model's sampled ids produce them)."""
    from tokenizers import Tokenizer

    data = json.loads(tokenizer.to_str())
    vocabulary = data["model"]["vocab"]
    taken = {token["id"] for token in data["added_tokens"]} | set(vocabulary.values())
    free = (index for index in range(size) if index not in taken)
    for index in free:
        vocabulary[f"<|extra_{index}|>"] = index
    return Tokenizer.from_str(json.dumps(data))


def _train(model, tokenizer, texts: Sequence[str], steps: int, seed: int, batch_size: int = 16,
           learning_rate: float = 3e-3) -> None:
    """Next-token training on whole conversations; enough to learn their shape, not their arithmetic."""
    import torch

    rng = random.Random(seed)
    encoded = [tokenizer(text, add_special_tokens=False)["input_ids"] for text in texts]
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate)
    # One thread: on a busy shared CPU two spinning OpenMP threads made each step many times slower.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    model.train()
    try:
        for _ in range(steps):
            chosen = rng.sample(encoded, min(batch_size, len(encoded)))
            batch = tokenizer.pad({"input_ids": chosen}, return_tensors="pt")
            labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
            loss = model(**batch, labels=labels).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
    finally:
        torch.set_num_threads(threads)
        model.eval()
