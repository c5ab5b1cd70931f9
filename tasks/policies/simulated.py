"""A simulated policy: it solves the synthetic problems step by step, with mistakes we know exactly.

It writes what the embedded model is trained to write (`Step k: a op b = c` lines, the last one
followed by `The answer is N.`), but its mistakes come from a configured random process, so the
ground truth of every step and every prefix's chance of success are known. It is the instrument
that tells whether a labeller is right, and it needs no model.

The error process runs one step at a time over one state: is the carried value correct?
- Correct: with probability `error_rate` the step makes a mistake (its kind drawn by weight) and
  the value becomes wrong; otherwise it writes the true next value.
- Wrong: with probability `recovery_rate` the step silently recovers (it writes the true previous
  value on the left and the true result); otherwise it goes on from the wrong value, still making
  mistakes at `error_rate`, and the value stays wrong.
Every mistake is built to give a value other than the true one, and a wrong value carried on
honestly never meets the true value again (each operation is one-to-one; a division that does not
come out even is rounded to a neighbour that is not the true value). So the two-state chain is
exact, and the chance that R more steps end on the true value (and so the right answer) is

    p = pi + (s - pi) * (1 - e - r) ** R,  with pi = r / (e + r)

where e is the error rate, r the recovery rate and s is 1 if the prefix's carried value is correct,
else 0 (p = s when e + r = 0). `success_probability` computes it; `step_is_correct` and
`first_error_index` give each step's ground truth.

Sampling ignores temperature and top_p: the error process is the policy's whole distribution.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from functools import lru_cache

from schemas.records import Generation, Problem, SamplingParams
from tasks.ids import content_id
from tasks.splitting import split_steps
from tasks.synthetic import ITEMS, PEOPLE, Operation, answer_line, apply, step_line
from tasks.prompts import PLAIN_FORMAT, PromptFormat
from tasks.text_format import ANSWER_HEADER

SPEC_NAME = "simulated"
ERROR_KINDS = ("arithmetic_slip", "wrong_operand", "copy_error")
QUESTION_LABEL = "Question: "


@dataclass(frozen=True)
class SimulatedConfig:
    """The simulated policy's error process. Spec form: `simulated:error_rate=0.3,seed=3`."""

    error_rate: float = field(
        default=0.15,
        metadata={"help": "Chance that a step makes a mistake, whether or not the value is already wrong."},
    )
    recovery_rate: float = field(
        default=0.1,
        metadata={"help": "Chance that a step after a mistake silently writes the true running value again."},
    )
    arithmetic_slip: float = field(
        default=1.0,
        metadata={"help": "Weight of slips: the right operation on the carried value, the result off by 1-3."},
    )
    wrong_operand: float = field(
        default=1.0,
        metadata={"help": "Weight of wrong operands: not the question's number, but computed correctly."},
    )
    copy_error: float = field(
        default=1.0,
        metadata={"help": "Weight of copy errors: the carried value miscopied on the left, computed correctly."},
    )
    seed: int = field(
        default=0,
        metadata={"help": "Seed of the error process; a sample also hashes the sampling seed, prompt, index."},
    )

    def __post_init__(self) -> None:
        for name in ("error_rate", "recovery_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {value}")
        for name in ERROR_KINDS:
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} is a weight and must be a finite number >= 0, got {value}")
        if sum(self.weights().values()) <= 0:
            raise ValueError(f"give at least one error kind a positive weight ({', '.join(ERROR_KINDS)})")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise ValueError(f"seed must be an integer, got {self.seed!r}")

    def weights(self) -> dict[str, float]:
        return {kind: getattr(self, kind) for kind in ERROR_KINDS}


def parse_spec(spec: str) -> SimulatedConfig:
    """The config a spec names: `simulated` (the defaults) or `simulated:key=value,...`.

    >>> parse_spec("simulated:error_rate=0.3,seed=3").error_rate
    0.3
    """
    backend, colon, options = spec.strip().partition(":")
    if backend != SPEC_NAME:
        raise ValueError(f"a simulated policy spec starts with '{SPEC_NAME}', got {spec!r}")
    if not colon:
        return SimulatedConfig()
    known = {item.name: type(item.default) for item in fields(SimulatedConfig)}
    values: dict[str, float | int] = {}
    for option in options.split(","):
        key, equals, raw = (part.strip() for part in option.partition("="))
        if not (key and equals and raw):
            raise ValueError(f"expected key=value in {spec!r}, got {option.strip()!r}")
        if key not in known:
            raise ValueError(f"unknown key {key!r} in {spec!r}; known keys: {', '.join(known)}")
        if key in values:
            raise ValueError(f"key {key!r} is given twice in {spec!r}")
        values[key] = _parse_value(key, raw, known[key])
    return SimulatedConfig(**values)


def _parse_value(key: str, raw: str, kind: type) -> float | int:
    try:
        return int(raw) if kind is int else float(raw)
    except ValueError:
        wanted = "an integer" if kind is int else "a number"
        raise ValueError(f"{key} must be {wanted}, got {raw!r}") from None


def spec_of(config: SimulatedConfig) -> str:
    """The full spec of `config`; `parse_spec` reads it back to an equal config."""
    return f"{SPEC_NAME}:" + ",".join(f"{item.name}={getattr(config, item.name)!r}" for item in fields(config))


# --- Reading the question and the steps ---------------------------------------------------------

_NAMES = "|".join(name for name, _ in PEOPLE)
_PRONOUNS = "|".join(sorted({pronoun for _, pronoun in PEOPLE}))
_ITEMS = "|".join(ITEMS)
_OPENING = re.compile(rf"(?:{_NAMES}) has (?P<value>\d+) (?:{_ITEMS})\.")
_CLOSING = re.compile(rf"How many (?:{_ITEMS}) does (?:{_NAMES}) have now\?")
_OPERATION_SENTENCES = (
    ("+", re.compile(rf"(?:{_PRONOUNS}) gets (\d+) more\.")),
    ("-", re.compile(rf"(?:{_PRONOUNS}) gives away (\d+)\.")),
    ("*", re.compile(rf"Then (?:{_PRONOUNS.lower()}) has (\d+) times as many\.")),
    ("/", re.compile(rf"(?:{_PRONOUNS}) shares them equally among (\d+) friends and keeps one share\.")),
)
_STEP = re.compile(
    r"Step \d+: (?P<left>-?\d+) (?P<operator>[-+*/]) (?P<operand>-?\d+) = (?P<result>-?\d+)"
    r"(?:\nThe answer is (?P<answer>-?\d+)\.)?"
)
_ANSWER_ONLY = re.compile(r"The answer is (?P<answer>-?\d+)\.")


@dataclass(frozen=True)
class ArithmeticQuestion:
    """What a synthetic question asks: `values[i]` is the true running value after i operations."""

    operations: tuple[Operation, ...]
    values: tuple[int, ...]


@lru_cache(maxsize=4096)
def parse_question(question: str) -> ArithmeticQuestion:
    """The starting amount and operations of a question written by tasks.synthetic.

    >>> parse_question("Mia has 14 apples. She gets 7 more. Then she has 3 times as many. "
    ...                "How many apples does Mia have now?").values
    (14, 21, 63)
    """
    sentences = re.split(r"(?<=[.?])\s+", question.strip())
    opening = _OPENING.fullmatch(sentences[0])
    if opening is None or len(sentences) < 3 or not _CLOSING.fullmatch(sentences[-1]):
        raise ValueError(f"not a synthetic question (tasks.synthetic writes them): {question!r}")
    operations = tuple(_read_operation(sentence, question) for sentence in sentences[1:-1])
    values = [int(opening["value"])]
    for operation in operations:
        try:
            values.append(apply(values[-1], operation))
        except ValueError as error:
            raise ValueError(f"the question does not divide evenly ({error}): {question!r}") from None
    return ArithmeticQuestion(operations, tuple(values))


def _read_operation(sentence: str, question: str) -> Operation:
    for operator, pattern in _OPERATION_SENTENCES:
        match = pattern.fullmatch(sentence)
        if match and int(match[1]) >= 1:
            return Operation(operator, int(match[1]))
    raise ValueError(f"{sentence!r} is none of tasks.synthetic's operation sentences, in {question!r}")


def split_prompt(prompt: str) -> tuple[str, list[str]]:
    """The question and the steps of a prompt written by tasks.text_format.prefix_for.

    >>> split_prompt("Question: Q?\\nAnswer:\\nStep 1: 1 + 1 = 2\\n")
    ('Q?', ['Step 1: 1 + 1 = 2'])
    """
    separator = "\n" + ANSWER_HEADER
    if not prompt.startswith(QUESTION_LABEL) or separator not in prompt:
        raise ValueError(
            f"the simulated policy reads prompts of the form 'Question: ...\\nAnswer:\\n' and then "
            f"the steps (tasks.text_format.prefix_for), got {prompt[:80]!r}"
        )
    question, _, solution = prompt[len(QUESTION_LABEL) :].partition(separator)
    return question, split_steps(solution)


@dataclass(frozen=True)
class Computation:
    """The arithmetic a step states: `left operation = result`."""

    left: int
    operation: Operation
    result: int


@dataclass(frozen=True)
class WrittenStep:
    """A step in the policy's format. `computation` is None for a step that only states the answer."""

    computation: Computation | None
    answer: int | None


def read_step(text: str) -> WrittenStep | None:
    """The step `text` states, or None if it is not in the policy's format.

    >>> read_step("Step 2: 21 - 3 = 18\\nThe answer is 18.").answer
    18
    >>> read_step("Step 2: 21 - 3 =") is None
    True
    """
    text = text.strip()
    if match := _ANSWER_ONLY.fullmatch(text):
        return WrittenStep(None, int(match["answer"]))
    if match := _STEP.fullmatch(text):
        operation = Operation(match["operator"], int(match["operand"]))
        answer = None if match["answer"] is None else int(match["answer"])
        return WrittenStep(Computation(int(match["left"]), operation, int(match["result"])), answer)
    return None


@dataclass(frozen=True)
class PrefixState:
    """Where a prefix leaves the policy."""

    steps_done: int  # computation steps written so far
    carried: int  # the running value the last of them claims (the starting value if none)
    answer: int | None  # the answer already stated, which completes the solution


def read_prefix(truth: ArithmeticQuestion, steps: Sequence[str]) -> PrefixState:
    """The state after `steps`; a ValueError says which step the policy cannot continue from."""
    carried, done, answer = truth.values[0], 0, None
    for number, text in enumerate(steps, start=1):
        written = read_step(text)
        if written is None:
            raise ValueError(
                f"step {number} {text!r} is not 'Step k: a op b = c': the simulated policy continues "
                "only its own format (was a step cut off by max_new_tokens or a stop string?)"
            )
        if answer is not None:
            raise ValueError(f"step {number} {text!r} comes after the answer was stated")
        if written.computation is not None:
            carried, done = written.computation.result, done + 1
        answer = written.answer
    return PrefixState(done, carried, answer)


# --- Ground truth -------------------------------------------------------------------------------


def step_is_correct(question: str, steps_before: Sequence[str], step: str) -> bool:
    """Whether `step`, written after `steps_before`, is the right next step of the solution.

    A computation step at position i (0-based: `len(steps_before)`) is correct exactly when it
    applies the question's operation i, with its operand, to the TRUE running value and states the
    TRUE result, whatever earlier steps claimed. So a step that computes correctly from a wrong
    carried value is incorrect, and a recovery step that writes the true value is correct; a
    right value reached by a wrong operation is incorrect. An answer line, on the last computation
    step or alone after it, must state the true answer; an answer anywhere else is incorrect, and
    so is a step that is not in the `Step k: a op b = c` format. The `k` label is not checked.

    For the policy's own solutions this makes the first incorrect step the first whose claimed
    result differs from the true running value (ProcessBench's "first wrong step").
    """
    truth = parse_question(question)
    written = read_step(step)
    if written is None or any(_states_answer(before) for before in steps_before):
        return False
    position, last = len(steps_before), len(truth.operations)
    if written.computation is None:
        return position == last and written.answer == truth.values[-1]
    if position >= last:
        return False
    expected = Computation(truth.values[position], truth.operations[position], truth.values[position + 1])
    if written.computation != expected:
        return False
    return written.answer is None or (position == last - 1 and written.answer == truth.values[-1])


def _states_answer(step: str) -> bool:
    written = read_step(step)
    return written is not None and written.answer is not None


def first_error_index(question: str, steps: Sequence[str]) -> int:
    """The 0-based index of the first incorrect step (see `step_is_correct`), or -1 if none is."""
    for index, step in enumerate(steps):
        if not step_is_correct(question, steps[:index], step):
            return index
    return -1


def success_probability(question: str, steps_so_far: Sequence[str], config: SimulatedConfig) -> float:
    """The exact chance that the policy, continuing `steps_so_far`, reaches the right answer.

    A prefix that already states an answer gives 1.0 or 0.0 by that answer.
    """
    truth = parse_question(question)
    state = read_prefix(truth, steps_so_far)
    if state.answer is not None:
        return 1.0 if state.answer == truth.values[-1] else 0.0
    done = min(state.steps_done, len(truth.operations))
    correct = state.carried == truth.values[done]
    return reach_probability(correct, len(truth.operations) - done, config.error_rate, config.recovery_rate)


def reach_probability(correct: bool, remaining: int, error_rate: float, recovery_rate: float) -> float:
    """The chance that the carried value is correct after `remaining` steps of the two-state chain.

    >>> round(reach_probability(True, 2, error_rate=0.2, recovery_rate=0.1), 12)
    0.66
    >>> round(reach_probability(False, 2, error_rate=0.2, recovery_rate=0.1), 12)
    0.17
    """
    start = 1.0 if correct else 0.0
    if error_rate + recovery_rate == 0:
        return start
    stationary = recovery_rate / (error_rate + recovery_rate)
    probability = stationary + (start - stationary) * (1.0 - error_rate - recovery_rate) ** remaining
    return min(1.0, max(0.0, probability))


# --- Writing steps ------------------------------------------------------------------------------


def write_continuation(
    truth: ArithmeticQuestion, state: PrefixState, config: SimulatedConfig, rng: random.Random
) -> str:
    """The remaining steps and the answer line, one per line, as the embedded model writes them."""
    if state.answer is not None:
        return ""
    lines = []
    value = state.carried
    for position in range(state.steps_done, len(truth.operations)):
        step = _next_step(truth, position, value, config, rng)
        lines.append(step_line(position + 1, step.left, step.operation, step.result))
        value = step.result
    lines.append(answer_line(value))
    return "".join(f"{line}\n" for line in lines)


def _next_step(
    truth: ArithmeticQuestion, position: int, value: int, config: SimulatedConfig, rng: random.Random
) -> Computation:
    operation = truth.operations[position]
    before, after = truth.values[position], truth.values[position + 1]
    if value != before and rng.random() < config.recovery_rate:
        return Computation(before, operation, after)
    if rng.random() < config.error_rate:
        return _mistake(truth, position, value, config, rng)
    return Computation(value, operation, _carry_on(value, operation, after))


def _carry_on(value: int, operation: Operation, true_result: int) -> int:
    """The honest result from `value`; an uneven division rounds to a neighbour that stays wrong."""
    if operation.operator == "/" and value % operation.operand:
        rounded = value // operation.operand
        return rounded if rounded != true_result else rounded + 1
    return apply(value, operation)


def _mistake(
    truth: ArithmeticQuestion, position: int, value: int, config: SimulatedConfig, rng: random.Random
) -> Computation:
    """A step whose result is not the true running value, of a kind drawn by weight."""
    kinds = [kind for kind, weight in config.weights().items() if weight > 0]
    kind = rng.choices(kinds, weights=[getattr(config, kind) for kind in kinds])[0]
    true_result = truth.values[position + 1]
    wrong = [step for step in _MISTAKES[kind](truth, position, value) if step.result != true_result]
    if not wrong:  # e.g. no other divisor divides the value; there is always a slip
        wrong = [step for step in _slips(truth, position, value) if step.result != true_result]
    return rng.choice(wrong)


def _slips(truth: ArithmeticQuestion, position: int, value: int) -> list[Computation]:
    operation = truth.operations[position]
    honest = _carry_on(value, operation, truth.values[position + 1])
    # Slips stay at or above zero unless the honest result is already below it.
    results = [honest + delta for delta in (-3, -2, -1, 1, 2, 3) if honest + delta >= min(0, honest)]
    return [Computation(value, operation, result) for result in results]


def _wrong_operands(truth: ArithmeticQuestion, position: int, value: int) -> list[Computation]:
    operation = truth.operations[position]
    numbers = {truth.values[0], *(other.operand for other in truth.operations)}
    numbers |= {operation.operand + delta for delta in (-2, -1, 1, 2)}
    smallest = 2 if operation.operator in "*/" else 1
    steps = []
    for operand in sorted(numbers):
        if operand == operation.operand or operand < smallest:
            continue
        if operation.operator == "/" and value % operand:
            continue
        wrong = Operation(operation.operator, operand)
        steps.append(Computation(value, wrong, apply(value, wrong)))
    return steps


def _copy_errors(truth: ArithmeticQuestion, position: int, value: int) -> list[Computation]:
    operation = truth.operations[position]
    lefts = {value + delta for delta in (-10, -2, -1, 1, 2, 10)}
    if value >= 10:
        lefts.add(int(str(value)[::-1]))  # swapped digits
    if operation.operator == "/":
        lefts |= {value + multiple * operation.operand for multiple in (-2, -1, 1, 2)}
    steps = []
    for left in sorted(lefts):
        if left == value or left < 1 or (operation.operator == "/" and left % operation.operand):
            continue
        steps.append(Computation(left, operation, apply(left, operation)))
    return steps


_MISTAKES: dict[str, Callable[[ArithmeticQuestion, int, int], list[Computation]]] = {
    "arithmetic_slip": _slips,
    "wrong_operand": _wrong_operands,
    "copy_error": _copy_errors,
}


# --- The policy ---------------------------------------------------------------------------------

_WORD = re.compile(r"\S+")


class SimulatedPolicy:
    """A Policy that continues synthetic solutions with the error process of its config.

    Each sample depends only on (config, params.seed, prompt, sample index), never on the batch
    or call order. generated_tokens counts whitespace-separated words, a stand-in for a tokenizer.
    """

    def __init__(self, config: SimulatedConfig | None = None) -> None:
        self.config = config or SimulatedConfig()

    @classmethod
    def from_spec(cls, spec: str) -> SimulatedPolicy:
        return cls(parse_spec(spec))

    prompts_per_call = 64  # a program: calls cost nothing, only the cache granularity matters

    def cannot_solve(self, problems: Sequence[Problem], prompt_format: PromptFormat) -> str | None:
        """Why this policy cannot do the run at all: it reads only the plain format, without
        few-shot examples, and only the questions tasks.synthetic writes."""
        plain = (prompt_format.kind, prompt_format.step_separator, prompt_format.examples) == (
            PLAIN_FORMAT.kind, PLAIN_FORMAT.step_separator, ())
        if not plain:
            return (f"the simulated policy reads only the plain prompt format, not {prompt_format.id}: "
                    "use --prompt-format plain (without few-shot examples), or a model policy")
        unreadable = []
        for problem in problems:
            try:
                parse_question(problem.question)
            except ValueError:
                unreadable.append(problem)
        if not unreadable:
            return None
        first = unreadable[0]
        where = f"row {first.source_row} of {first.source_file}" if first.source_file else f"problem {first.problem_id}"
        kinds = ", ".join(sorted({problem.source for problem in unreadable}))
        return (f"the simulated policy solves only prmforge's synthetic arithmetic questions; {len(unreadable)} of "
                f"{len(problems)} problems are not ({kinds} form; e.g. {where}: {first.question[:60]!r}): "
                "use --policy embedded, transformers:PATH, vllm:PATH or openai:URL/MODEL")

    @property
    def name(self) -> str:
        return spec_of(self.config)

    def generate(self, prompts: Sequence[str], n: int, params: SamplingParams) -> list[list[Generation]]:
        if n < 0:
            raise ValueError(f"n must be at least 0, got {n}")
        outputs = []
        for prompt in prompts:
            if not isinstance(prompt, str):
                raise ValueError("the simulated policy reads only plain text prompts, not chat prompts")
            question, steps = split_prompt(prompt)
            truth = parse_question(question)
            state = read_prefix(truth, steps)
            # A prompt that stops mid-line gets its line ended first, as the model would.
            lead = "" if prompt.endswith("\n") or state.answer is not None else "\n"
            samples = []
            for index in range(n):
                text = write_continuation(truth, state, self.config, self._rng(prompt, index, params))
                samples.append(_finish(lead + text, params))
            outputs.append(samples)
        return outputs

    def _rng(self, prompt: str, index: int, params: SamplingParams) -> random.Random:
        return random.Random(int(content_id("simulated", self.config.seed, params.seed, index, prompt), 16))


def _finish(text: str, params: SamplingParams) -> Generation:
    """Cut `text` at the first stop string, then at `params.max_new_tokens` words."""
    cuts = [text.find(stop) for stop in params.stop if stop and stop in text]
    if cuts:
        text = text[: min(cuts)]
    words = list(_WORD.finditer(text))
    limit = params.max_new_tokens
    if len(words) > limit:
        return Generation(text[: words[limit - 1].end()] if limit > 0 else "", max(limit, 0), "length")
    return Generation(text, len(words), "stop")
