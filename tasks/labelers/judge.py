"""LLM-judge labels: a policy reads a whole solution and names its first wrong step.

Per solution path (a first step down to a terminal step) the policy gets `JUDGE_PROMPT`: the
problem, the steps numbered (1), (2), ..., and the instruction to answer with the number of the
first wrong step or "none". `parse_first_error` reads the answer. Labels follow first-error
semantics (as in "The Lessons of Developing PRMs"): steps before the named step are positive
(hard True, q 1.0); the named step and every later one are negative (hard False, q 0.0); "none"
makes every step positive. An answer we cannot read is unknown: that path gets no labels, and its
`Judgement` (prompt, raw output, reason) says why, so nothing disappears silently.

A node shared by several paths gets one label: the first path in terminal-id order that labels it
decides, and `JudgeResult.disagreements` counts the labels a later path's judgement contradicted.

Failures. An answer we cannot read is never an error. A backend that cannot do the task at all
(it rejects the prompt: the simulated policy reads only its own prompt format, a small model's
context is shorter than the prompt) raises `JudgeUnavailable`, a UserError whose one line says
what to use instead; nothing is labelled. A policy that is down or too slow (PolicyUnavailable,
PolicyTimeout) stops the run with its own message.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from schemas.errors import UserError
from schemas.records import Generation, Node, PolicyUsage, SamplingParams, StepLabel
from tasks.ids import content_id
from tasks.labelers.base import LabelRequest, LabelResult, Progress
from tasks.fit import prompts_without_room
from tasks.policies.base import Policy
from tasks.prompts import Prompt

LABELER = "judge"
INSTEAD = (
    "judge with a policy that follows instructions and has room for a whole solution "
    "(transformers:PATH, vllm:PATH or openai:URL/MODEL), or label with --labeler mc, search or progress"
)


class JudgeUnavailable(UserError, RuntimeError):
    """The judge backend cannot do the judge task at all; the message says what to use instead."""

JUDGE_PROMPT = """\
You are checking a step-by-step solution to a math problem.

Problem:
{problem}

Solution, one numbered step per line:
{steps}

Find the first step that is wrong: a wrong calculation, a wrong fact, or a conclusion that does \
not follow from the problem and the steps before it. Reply with the number of that step only, \
for example "Step 2". If every step is correct, reply "none".
First wrong step:"""

WHOLE, STEPWISE, AUTO = "whole", "stepwise", "auto"
MARKS = {True: " ok", False: " wrong"}  # a stepwise answer ends with one
CRITIC_RECORD = "critic.json"  # a critic's directory holds it (tasks/critic.py), with its protocol
_MARK = re.compile(r"\b(ok|wrong)\W*$", re.IGNORECASE)

_STEP_NUMBER = re.compile(r"\b(?:step|paragraph)[_\s]*(?:#|no\.?|number)?\s*\(?(-?\d+)\)?", re.IGNORECASE)
_BOXED = re.compile(r"\\boxed\{\s*(-?\d+)\s*\}")
_BARE_NUMBER = re.compile(r"\(?(-?\d+)\)?")
_NO_ERROR = re.compile(
    r"\bnone\b|\bno (?:wrong |incorrect )?(?:mistakes?|errors?|steps? (?:is|are) wrong)\b"
    r"|\ball (?:the )?(?:\w+ )?steps? (?:are|is) (?:correct|right|valid)\b"
    r"|\b(?:everything|all) (?:is )?correct\b|\bnothing is wrong\b",
    re.IGNORECASE,
)
_ANSWER_MARKER = re.compile(r"\b(?:answer|first wrong step)\s*:|\bfirst wrong step is\b", re.IGNORECASE)


def parse_first_error(text: str, n_steps: int) -> int | None:
    """The 0-based index of the step the judge names, -1 for "no wrong step", None if unclear.

    The judge numbers steps from 1, so "Step 3" is index 2. Out-of-range numbers (0 included),
    two different numbers, or a number together with "no error" are unclear, never guessed.
    When the text has an "Answer:" marker, only what follows the last one is read.

    >>> [parse_first_error(text, 4) for text in ("Step 3", "3", "The first error is in step 2.")]
    [2, 2, 1]
    >>> [parse_first_error(text, 4) for text in ("-1", "none", "No mistakes", "all steps are correct")]
    [-1, -1, -1, -1]
    >>> [parse_first_error(text, 4) for text in ("Step 7", "0", "I think so.", "", "Step 2 or step 3")]
    [None, None, None, None, None]
    >>> parse_first_error("Step 1 has no errors.", 4) is None
    True
    >>> parse_first_error("Step 1 is fine, step 2 is fine.\\nAnswer: \\\\boxed{3}", 4)
    2
    """
    markers = list(_ANSWER_MARKER.finditer(text))
    if markers:
        text = text[markers[-1].end() :]
    text = text.strip()
    whole = _BARE_NUMBER.fullmatch(text.rstrip(".").strip())
    numbers = {int(match) for match in _STEP_NUMBER.findall(text)} | {int(m) for m in _BOXED.findall(text)}
    if whole is not None:
        numbers.add(int(whole[1]))
    says_none = _NO_ERROR.search(text) is not None
    if numbers == {-1} or (says_none and not numbers):
        return -1
    if len(numbers) != 1 or says_none:
        return None
    number = numbers.pop()
    return number - 1 if 1 <= number <= n_steps else None


def stepwise_prompt(problem: str, steps: Sequence[str]) -> str:
    """The stepwise judge's question about the last of `steps`: the problem, then the solution up
    to that step, one step per line. The judge answers with its check of the step, ending in " ok"
    or " wrong" (a critic first recomputes the step's arithmetic: " | 4 * 3 = 12 wrong").

    >>> stepwise_prompt("Q?", ["Step 1: 2 + 2 = 4", "Step 2: 4 * 3 = 13"])
    'Q?\\nStep 1: 2 + 2 = 4\\nStep 2: 4 * 3 = 13'
    """
    return "\n".join([problem.strip(), *(" ".join(step.split()) for step in steps)])


def read_mark(text: str) -> bool | None:
    """A stepwise answer's verdict, its last word: True for "ok", False for "wrong", None otherwise.

    >>> read_mark(" | 4 * 3 = 12 wrong"), read_mark(" ok."), read_mark(" | 4 * 3 = 12"), read_mark("")
    (False, True, None, None)
    """
    match = _MARK.search(text.strip())
    return None if match is None else match[1].lower() == "ok"


def backend_protocol(policy: Policy) -> str:
    """The protocol a backend was trained for: a critic's directory (transformers:DIR, vllm:DIR)
    records it in critic.json; any other backend takes the whole-solution prompt."""
    import json
    from pathlib import Path

    _, _, location = policy.name.partition(":")
    record = Path(location) / CRITIC_RECORD if location else None
    if record is None or not record.is_file():
        return WHOLE
    try:
        return json.loads(record.read_text()).get("config", {}).get("protocol", WHOLE)
    except (OSError, ValueError):
        return WHOLE


def judge_prompt(problem: str, steps: list[str]) -> str:
    numbered = "\n".join(f"({number}) {' '.join(step.split())}" for number, step in enumerate(steps, 1))
    return JUDGE_PROMPT.format(problem=problem.strip(), steps=numbered)


@dataclass(frozen=True)
class Judgement:
    """One judged path, kept whatever the outcome: the raw prompt and output, and what was read."""

    terminal_node_id: str
    prompt: str
    output: str
    first_error: int | None  # 0-based; -1 = no wrong step; None = unreadable (no labels)
    reason: str
    generated_tokens: int
    finish_reason: str = "stop"

    @property
    def answer(self) -> str | None:
        """What was read, as the judge numbers steps: "3" for the third step, "none", or None."""
        if self.first_error is None:
            return None
        return "none" if self.first_error == -1 else str(self.first_error + 1)


@dataclass
class JudgeResult(LabelResult):
    judgements: list[Judgement] = field(default_factory=list)
    disagreements: int = 0
    params: SamplingParams = field(default_factory=SamplingParams)  # what the judge was sampled with

    @property
    def unknown(self) -> list[Judgement]:
        return [judgement for judgement in self.judgements if judgement.first_error is None]


def path_labels(path: list[Node], first_error: int, raw: str) -> list[StepLabel]:
    """First-error labels for one path; `raw` (the judge's answer) is quoted in each reason."""
    quoted = " ".join(raw.split())[:80]
    labels = []
    for index, node in enumerate(path):
        good = first_error == -1 or index < first_error
        where = "no wrong step" if first_error == -1 else f"first wrong step {first_error + 1}"
        labels.append(
            StepLabel(
                label_id=content_id("label", node.node_id, LABELER),
                node_id=node.node_id,
                labeler=LABELER,
                q=1.0 if good else 0.0,
                hard=good,
                n=0,
                n_correct=0,
                generated_tokens=0,
                reason=f"judge: {where} (answer {quoted!r})",
            )
        )
    return labels


Answers = tuple[list["Judgement"], PolicyUsage]  # what ask_whole and ask_stepwise return


@dataclass(frozen=True)
class JudgeConfig:
    max_new_tokens: int = field(default=256, metadata={"help": "longest judge answer, in tokens"})
    temperature: float = field(default=0.0, metadata={"help": "0 asks the backend for its greedy answer"})
    batch_size: int = field(default=8, metadata={"help": "prompts per policy call"})
    protocol: str = field(
        default=AUTO,
        metadata={"help": "'whole': JUDGE_PROMPT once per solution; 'stepwise': one prompt per step, answered with a check "
                  "ending in ok or wrong (a critic trained so); 'auto': what the backend's critic.json says, else whole"},
    )

    def __post_init__(self) -> None:
        if self.protocol not in (AUTO, WHOLE, STEPWISE):
            raise ValueError(f"protocol must be {AUTO}, {WHOLE} or {STEPWISE}, got {self.protocol!r}")

    def asking(self, policy: Policy, base: SamplingParams) -> tuple[Callable[..., Answers], SamplingParams]:
        """How to ask `policy`: its protocol's asker (ask_whole or ask_stepwise), and `base` with
        this config's sampling settings (a stepwise answer is one step's check, STEPWISE_TOKENS)."""
        protocol = backend_protocol(policy) if self.protocol == AUTO else self.protocol
        tokens = STEPWISE_TOKENS if protocol == STEPWISE else self.max_new_tokens
        params = replace(base, max_new_tokens=tokens, temperature=self.temperature, stop=())
        return (ask_stepwise if protocol == STEPWISE else ask_whole), params


class JudgeLabeler:
    """Asks the policy for the first wrong step of every solution path that has a node to label."""

    name = LABELER

    def __init__(self, config: JudgeConfig | None = None) -> None:
        self.config = config or JudgeConfig()

    def label(self, policy: Policy, request: LabelRequest, progress: Progress | None = None) -> JudgeResult:
        wanted = {node.node_id for node in request.to_label}
        paths = [path for path in _paths(request.nodes) if any(node.node_id in wanted for node in path)]
        ask, params = self.config.asking(policy, request.params)
        result = JudgeResult(params=params)
        decided: dict[str, StepLabel] = {}
        covered: set[str] = set()  # wanted nodes on a path judged so far, for progress
        for start in range(0, len(paths), self.config.batch_size):
            batch = paths[start : start + self.config.batch_size]
            questions = [request.problems[path[0].problem_id].question for path in batch]
            steps = [[node.step_text for node in path] for path in batch]
            answers, usage = ask(policy, questions, steps, params, request.prompt_format.instruction)
            for path, answer in zip(batch, answers, strict=True):
                result.judgements.append(replace(answer, terminal_node_id=path[-1].node_id))
                if answer.first_error is None:
                    continue
                for label in path_labels(path, answer.first_error, answer.output):
                    if label.node_id not in wanted:
                        continue
                    earlier = decided.setdefault(label.node_id, label)
                    result.disagreements += earlier.hard != label.hard
            result.usage.add(usage)
            newly = {node.node_id for path in batch for node in path if node.node_id in wanted} - covered
            covered |= newly
            if progress:
                progress(len(newly))
        result.labels = list(decided.values())
        return result


STEPWISE_TOKENS = 32  # a stepwise answer is one step's check: its recomputed arithmetic and a mark
UNREADABLE = "unreadable answer: no single step number or 'none'"
UNREADABLE_MARK = "unreadable answer: a step check that ends in neither ok nor wrong"


def ask_whole(
    policy: Policy, questions: list[str], steps: list[list[str]], params: SamplingParams, wrap=lambda text: text
) -> tuple[list[Judgement], PolicyUsage]:
    """One JUDGE_PROMPT per solution, in one call; `wrap` puts each in the run's prompt format."""
    prompts = [judge_prompt(question, path) for question, path in zip(questions, steps, strict=True)]
    began = time.perf_counter()
    outputs = ask_judge(policy, [wrap(prompt) for prompt in prompts], params)
    usage = PolicyUsage(len(prompts), 0, time.perf_counter() - began, 1)
    answers = []
    for path, prompt, (generation, *_) in zip(steps, prompts, outputs, strict=True):
        usage.generated_tokens += generation.generated_tokens
        first_error = parse_first_error(generation.text, len(path))
        answers.append(Judgement("", prompt, generation.text, first_error, UNREADABLE if first_error is None else "read",
                                 generation.generated_tokens, generation.finish_reason))
    return answers, usage


def ask_stepwise(
    policy: Policy, questions: list[str], steps: list[list[str]], params: SamplingParams, wrap=lambda text: text
) -> tuple[list[Judgement], PolicyUsage]:
    """Each solution's steps checked in turn, one call per round for every solution still going:
    the first check ending in " wrong" is its first error, " ok" on every step is "none", any
    other answer unreadable. A judgement keeps the last prompt and every check, one per line."""
    marks: list[list[str]] = [[] for _ in steps]
    prompts = [""] * len(steps)
    found: list[int | None] = [None] * len(steps)
    tokens, finish = [0] * len(steps), ["stop"] * len(steps)
    usage = PolicyUsage()
    active = [index for index, path in enumerate(steps) if path]
    while active:
        asked = [stepwise_prompt(questions[index], steps[index][: len(marks[index]) + 1]) for index in active]
        began = time.perf_counter()
        outputs = ask_judge(policy, [wrap(prompt) for prompt in asked], params)
        usage.add(PolicyUsage(len(asked), 0, time.perf_counter() - began, 1))
        going = []
        for index, prompt, (generation, *_) in zip(active, asked, outputs, strict=True):
            prompts[index], finish[index] = prompt, generation.finish_reason
            tokens[index] += generation.generated_tokens
            marks[index].append(generation.text)
            verdict = read_mark(generation.text)
            if verdict is False:
                found[index] = len(marks[index]) - 1
            elif verdict and len(marks[index]) == len(steps[index]):
                found[index] = -1
            elif verdict:
                going.append(index)
        active = going
    usage.generated_tokens = sum(tokens)
    return [
        Judgement("", prompts[index], "\n".join(marks[index]), found[index],
                  UNREADABLE_MARK if found[index] is None else "read", tokens[index], finish[index])
        for index in range(len(steps))
    ], usage


def ask_judge(policy: Policy, prompts: list[Prompt], params: SamplingParams) -> list[list[Generation]]:
    """One greedy answer per prompt; a backend that cannot take the prompt is JudgeUnavailable.

    A prompt longer than the policy's context is found before anything is sent, where the policy
    can count tokens. Policy backends reject a request they cannot serve with ValueError (the
    simulated policy's prompt format, a prompt longer than the model's context). Errors a user acts
    on elsewhere (a server down, a timeout) pass through unchanged; anything else is a bug.
    """
    too_long = prompts_without_room(policy, prompts)
    if too_long:
        overflow = too_long[min(too_long)]
        raise JudgeUnavailable(
            f"policy {_shortened(policy.name, 60)!r} cannot act as the judge (a prompt has {overflow.tokens} "
            f"tokens; the model's context is {overflow.context}); {INSTEAD}"
        )
    try:
        return policy.generate(prompts, 1, params)
    except UserError:
        raise
    except ValueError as error:
        raise JudgeUnavailable(
            f"policy {_shortened(policy.name, 60)!r} cannot act as the judge "
            f"({_shortened(' '.join(str(error).split()), 140)}); {INSTEAD}"
        ) from error


def _shortened(text: str, limit: int) -> str:
    """
    >>> _shortened("abcdef", 4)
    'a...'
    """
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _paths(nodes: dict[str, Node]) -> list[list[Node]]:
    """Every root-to-terminal path, in terminal-id order."""
    paths = []
    for terminal in sorted((node for node in nodes.values() if node.is_terminal), key=lambda node: node.node_id):
        path = [terminal]
        while path[-1].parent_id is not None:
            path.append(nodes[path[-1].parent_id])
        paths.append(path[::-1])
    return paths
