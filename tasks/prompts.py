"""Prompt formats: how a problem (and the steps written so far) becomes what a policy continues,
and how the policy's text is read back into steps and a final answer.

Three kinds, chosen by `GenerateConfig.prompt_format`:
- `plain`: `Question: …\\nAnswer:\\n` and one step per line (tasks.text_format), the embedded
  model's format and the only one the simulated policy reads.
- `chat`: the policy tokenizer's own chat template (`apply_chat_template`): a system prompt, the
  few-shot examples as user/assistant turns, the problem as the last user turn. The steps written
  so far are the assistant's reply, which the policy continues. The prompt travels as a
  `ChatPrompt`, so each backend renders it where it should: transformers and vLLM with their own
  tokenizer, an OpenAI-compatible server through its chat-completions endpoint (or locally, with
  the tokenizer `chat_template_from` names).
- a Jinja template file: rendered with the problem's fields (`question`, `problem_id`, `source`),
  `examples` (the few-shot examples) and `system`; the steps follow it.

The step boundary (a regex) and the answer reader go with the format: plain splits at a blank line
or a new `Step k:` line and reads `\\boxed{}`, `#### n` or `The answer is n`; chat and templates
split at blank lines and read `\\boxed{}` through math-verify. A format's `id` is recorded on every
run, node and rollout row (`prompt_format`); `description()` is the whole of it, in `runs`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from schemas.errors import UserError
from schemas.records import Problem
from tasks.answers import extract_answer, extract_boxed_answer
from tasks.splitting import DEFAULT_BOUNDARY, split_steps
from tasks.text_format import prompt_for

if TYPE_CHECKING:
    from schemas.config import GenerateConfig

PLAIN, CHAT, TEMPLATE = "plain", "chat", "template"
BLANK_LINE_BOUNDARY = r"\n\s*\n"
BOXED_SYSTEM_PROMPT = "Please reason step by step, and put your final answer within \\boxed{}."
MAX_FEW_SHOT = 16  # more examples than this is almost surely the wrong file


class PromptFormatError(UserError, ValueError):
    """The prompt format cannot be built (a template that does not render, an unreadable few-shot
    file, a separator the boundary does not split); the message is one line saying which."""


@dataclass(frozen=True)
class ChatPrompt:
    """A chat prompt: the conversation so far and the assistant's reply so far, not yet rendered.

    `template_from` names a tokenizer directory whose chat template renders it; None means the
    policy's own (its tokenizer, or its server's chat endpoint).
    """

    messages: tuple[tuple[str, str], ...]  # (role, content), in order
    reply: str = ""
    template_from: str | None = None

    def as_messages(self) -> list[dict[str, str]]:
        return [{"role": role, "content": content} for role, content in self.messages]

    def key(self) -> str:
        """A canonical text of everything that decides the rendered prompt (for cache keys).

        >>> ChatPrompt((("user", "Q?"),)).key()
        'chat:{"messages": [["user", "Q?"]], "reply": "", "template_from": null}'
        """
        body = {"messages": [list(message) for message in self.messages], "reply": self.reply,
                "template_from": self.template_from}
        return "chat:" + json.dumps(body, sort_keys=True, ensure_ascii=False)


Prompt = str | ChatPrompt


def prompt_key(prompt: Prompt) -> str:
    """The text that stands for a prompt in cache keys: a plain prompt is itself."""
    return prompt if isinstance(prompt, str) else prompt.key()


def prompt_preview(prompt: Prompt, limit: int = 80) -> str:
    """A prompt's start, for error messages."""
    text = prompt if isinstance(prompt, str) else (prompt.messages[-1][1] if prompt.messages else prompt.reply)
    return text[:limit]


def render_chat(tokenizer: Any, prompt: ChatPrompt) -> str:
    """The text a chat prompt stands for: the tokenizer's chat template over its messages with the
    assistant's turn opened, then the reply so far (which the policy continues)."""
    if not getattr(tokenizer, "chat_template", None):
        raise PromptFormatError(
            f"the tokenizer of {getattr(tokenizer, 'name_or_path', 'this policy')} has no chat template: "
            "use --prompt-format plain or a template file, or --chat-template-from DIR"
        )
    text = tokenizer.apply_chat_template(prompt.as_messages(), tokenize=False, add_generation_prompt=True)
    return text + prompt.reply


def rendered(tokenizer: Any, prompt: Prompt) -> tuple[str, bool]:
    """(text, is_chat): chat prompts rendered with `prompt.template_from`'s tokenizer when it names
    one, else with `tokenizer`. Chat text already holds its special tokens, so callers tokenize it
    without adding more."""
    if isinstance(prompt, str):
        return prompt, False
    source = chat_tokenizer(prompt.template_from) if prompt.template_from else tokenizer
    return render_chat(source, prompt), True


@lru_cache(maxsize=8)
def chat_tokenizer(path: str) -> Any:
    """A local tokenizer, loaded once, whose chat template renders prompts."""
    from transformers import AutoTokenizer

    if not (Path(path) / "tokenizer_config.json").is_file():
        raise PromptFormatError(f"no tokenizer at {path} (tokenizer_config.json missing) to render chat prompts")
    return AutoTokenizer.from_pretrained(path)


@dataclass(frozen=True)
class FewShotExample:
    """A worked example shown before the problem: its question, steps and final answer."""

    question: str
    steps: tuple[str, ...]
    answer: str


@dataclass(frozen=True)
class PromptFormat:
    """How problems become prompts and texts become steps and answers (module docstring)."""

    kind: str = PLAIN
    step_boundary: str = DEFAULT_BOUNDARY
    step_separator: str = "\n"
    answer_style: str = "any"  # "any" (boxed, #### n, "The answer is n") or "boxed" (math-verify)
    system_prompt: str | None = None
    examples: tuple[FewShotExample, ...] = ()
    template_name: str | None = None
    template_text: str | None = None
    template_from: str | None = None

    def prompt(self, problem: Problem) -> Prompt:
        """What the policy continues with a whole solution."""
        return self.prefix(problem, ())

    def prefix(self, problem: Problem, steps: Sequence[str]) -> Prompt:
        """The prompt plus `steps`, ready for the policy to write the next step."""
        written = "".join(f"{step}{self.step_separator}" for step in steps)
        if self.kind == CHAT:
            return ChatPrompt(self._chat_messages(problem.question), written, self.template_from)
        if self.kind == TEMPLATE:
            return _render_template(self.template_text or "", self._template_fields(problem)) + written
        shown = "".join(
            prompt_for(example.question) + "".join(f"{step}{self.step_separator}" for step in self.solution_steps(example))
            + "\n"
            for example in self.examples
        )
        return shown + prompt_for(problem.question) + written

    def instruction(self, text: str) -> Prompt:
        """An instruction (e.g. the judge's) in this format: a user turn for chat models."""
        return ChatPrompt((("user", text),), "", self.template_from) if self.kind == CHAT else text

    def split(self, text: str) -> list[str]:
        return split_steps(text, self.step_boundary)

    def answer(self, text: str) -> str | None:
        return extract_boxed_answer(text) if self.answer_style == "boxed" else extract_answer(text)

    def solution_steps(self, example: FewShotExample) -> tuple[str, ...]:
        """An example's steps, ending with a sentence that states its answer the way this format reads it."""
        if example.steps and self.answer(example.steps[-1]) is not None:
            return example.steps
        stated = f"The answer is $\\boxed{{{example.answer}}}$." if self.answer_style == "boxed" else (
            f"The answer is {example.answer}.")
        return (*example.steps, stated)

    def description(self) -> dict:
        """Everything that decides the prompts and how texts are read (the runs table keeps it)."""
        return {
            "id": self.id, "kind": self.kind, "step_boundary": self.step_boundary,
            "step_separator": self.step_separator, "answer": self.answer_style, "system_prompt": self.system_prompt,
            "few_shot": len(self.examples), "few_shot_sha256": _digest(self._examples_json()) if self.examples else None,
            "template": self.template_name,
            "template_sha256": _digest(self.template_text) if self.template_text is not None else None,
            "chat_template_from": self.template_from,
        }

    @property
    def id(self) -> str:
        """`plain` for the default, else the kind (and template name) with a digest of the rest.

        >>> PromptFormat().id
        'plain'
        >>> PromptFormat(kind="chat", step_boundary=BLANK_LINE_BOUNDARY, step_separator="\\n\\n").id.startswith("chat:")
        True
        """
        if self == PromptFormat():
            return PLAIN
        settings = json.dumps(
            [self.kind, self.step_boundary, self.step_separator, self.answer_style, self.system_prompt,
             self._examples_json(), self.template_text, self.template_from],
            ensure_ascii=False,
        )
        name = f"{TEMPLATE}:{self.template_name}" if self.kind == TEMPLATE else self.kind
        return f"{name}:{_digest(settings)[:12]}"

    def _chat_messages(self, question: str) -> tuple[tuple[str, str], ...]:
        messages: list[tuple[str, str]] = [("system", self.system_prompt)] if self.system_prompt else []
        for example in self.examples:
            messages.append(("user", example.question))
            messages.append(("assistant", self.step_separator.join(self.solution_steps(example))))
        messages.append(("user", question.strip()))
        return tuple(messages)

    def _template_fields(self, problem: Problem) -> dict:
        return {
            "question": problem.question.strip(), "problem_id": problem.problem_id, "source": problem.source,
            "system": self.system_prompt or "", "step_separator": self.step_separator,
            "examples": [
                {"question": example.question, "steps": list(self.solution_steps(example)), "answer": example.answer,
                 "solution": self.step_separator.join(self.solution_steps(example))}
                for example in self.examples
            ],
        }

    def _examples_json(self) -> str:
        return json.dumps([[e.question, list(e.steps), e.answer] for e in self.examples], ensure_ascii=False)


PLAIN_FORMAT = PromptFormat()


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@lru_cache(maxsize=16)
def _compiled(template_text: str):
    from jinja2 import StrictUndefined
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    environment = ImmutableSandboxedEnvironment(undefined=StrictUndefined, keep_trailing_newline=True, autoescape=False)
    return environment.from_string(template_text)


def _render_template(template_text: str, fields: dict) -> str:
    return _compiled(template_text).render(**fields)


def format_for(config: GenerateConfig) -> PromptFormat:
    """The prompt format a generate config asks for, read and checked now: a template that does not
    render, an unreadable few-shot file or a separator the boundary does not split is one line."""
    choice = config.prompt_format
    kind = choice if choice in (PLAIN, CHAT) else TEMPLATE
    boundary = config.step_boundary or (DEFAULT_BOUNDARY if kind == PLAIN else BLANK_LINE_BOUNDARY)
    separator = config.step_separator if config.step_separator is not None else ("\n" if kind == PLAIN else "\n\n")
    answer_style = config.answer_format or ("any" if kind == PLAIN else "boxed")
    system = config.system_prompt
    if system is None and kind == CHAT:
        system = BOXED_SYSTEM_PROMPT
    template_name = template_text = None
    if kind == TEMPLATE:
        path = Path(choice)
        if not path.is_file():
            raise PromptFormatError(f"prompt format '{choice}' is neither plain, chat nor a template file that exists")
        try:
            template_text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise PromptFormatError(f"cannot read the template {path}: {error}") from None
        template_name = path.name
    prompt_format = PromptFormat(
        kind=kind, step_boundary=boundary, step_separator=separator, answer_style=answer_style,
        system_prompt=system or None, examples=few_shot_examples(config.few_shot_file),
        template_name=template_name, template_text=template_text,
        template_from=str(config.chat_template_from) if config.chat_template_from else None,
    )
    check_format(prompt_format)
    return prompt_format


def check_format(prompt_format: PromptFormat) -> None:
    """Fail now on a format that would fail mid-run or lose steps."""
    steps = ["Step 1: 2 + 3 = 5", "Step 2: 5 * 4 = 20"]
    if split_steps(prompt_format.step_separator.join(steps), prompt_format.step_boundary) != steps:
        raise PromptFormatError(
            f"the step separator {prompt_format.step_separator!r} is not a step boundary for "
            f"{prompt_format.step_boundary!r}: a rebuilt prefix would not split back into its steps"
        )
    if prompt_format.kind == TEMPLATE:
        sample = Problem("0" * 16, "What is 2 + 3?", "5", "prmforge")
        try:
            prompt_format.prompt(sample)
        except Exception as error:  # jinja2 raises its own types for syntax, undefined names, sandbox
            line = getattr(error, "lineno", None)
            where = f" (line {line})" if line else ""
            raise PromptFormatError(
                f"template {prompt_format.template_name} does not render{where}: {error}; its fields are "
                "question, problem_id, source, system, step_separator and examples (question, steps, answer, solution)"
            ) from None


def few_shot_examples(path: Path | None) -> tuple[FewShotExample, ...]:
    """The worked examples of a seed file: every row needs steps (prmforge form with `steps`, or a
    GSM8K answer with its working); a row that cannot serve stops the run with one line."""
    if path is None:
        return ()
    from tasks.ingest import IngestError, read_seed_file

    try:
        result = read_seed_file(Path(path))
    except IngestError as error:
        raise PromptFormatError(f"few-shot file: {error}") from None
    if result.quarantined:
        row = result.quarantined[0]
        raise PromptFormatError(f"few-shot file {path}: row {row.source_row} is not a usable example ({row.reason})")
    without_steps = [problem for problem in result.problems if not problem.reference_steps]
    if without_steps:
        raise PromptFormatError(
            f"few-shot file {path}: row {without_steps[0].source_row} has no steps to show "
            "(give 'steps' in prmforge form, or a GSM8K answer with its working)"
        )
    if not result.problems or len(result.problems) > MAX_FEW_SHOT:
        raise PromptFormatError(f"few-shot file {path} holds {len(result.problems)} examples; give 1 to {MAX_FEW_SHOT}")
    return tuple(FewShotExample(p.question, p.reference_steps, p.answer) for p in result.problems)
