"""Roles: what each relation of a step is doing there, and the case it belongs to.

Real solutions state many relations they do not assert. A step reads "For n = 2, the inequality
becomes 9 < 20": `n = 2` opens a case, only `9 < 20` is claimed. Judging `n = 2` against an
earlier `n = 1` cries wolf. So every relation gets a role from the words around it:

- assertion: stated as true ("so 12 × 4 = 48", "we get x = 4", a bare "2 + 3 = 5"). The only
  role that is judged.
- assumption: a case or a hypothesis ("If u = 1", "For n = 2:", "Case 2: p > 3", "x = 3 gives",
  "Substituting x = 4"). A premise inside its case; never judged.
- definition: a name given a meaning ("Let u = x^2", "where h = 5"). A premise; never judged.
- condition: a requirement, range or goal ("we need k < 150/7", "for n ≥ 5", "such that",
  "would mean"). Neither judged nor a premise.
- rejected: stated to be refuted ("81 < 40 is false", "..., which is impossible"). Judged as
  rejected: right when the relation is indeed false.
- question: asked ("Is 23^2 > 500?", "check whether"). Neither judged nor a premise.

Values offered for one name are alternatives, not a sequence of claims: "u = 1 or u = 4",
"x = 5 and x = -2", "n = 2, 3, 4". They are marked `alternative` and never bind the name.

Scopes. A case marker ("Case 1:", a list item, "(b)") or an assumption opens a new scope that
runs to the next one or to the end of the step; scope 0 is what comes before the first. Cases
are siblings: what one case binds is never seen by another, nor by later steps (only scope 0
reaches them). A name bound anew in a case is a new name there (see knowledge.py).

A relation whose role the words do not settle is an assertion only when nothing hypothetical is
near it; a negated one ("it is not true that ...") is left unplaced, and unplaced or unread
relations are `unknown` with the reason, never `invalid`.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from tasks.verifiers.claims import ASSIGNMENT, CONGRUENCE, INEQUALITY, Claim, with_modulus
from tasks.verifiers.reading import BREAK, CASE_MARKER, FRAGMENT, MARKER, MATH, PUNCT, WORD, Item, read_items

ASSERTION, ASSUMPTION, DEFINITION = "assertion", "assumption", "definition"
CONDITION, REJECTED, QUESTION = "condition", "rejected", "question"
ROLES = (ASSERTION, ASSUMPTION, DEFINITION, CONDITION, REJECTED, QUESTION)
UNPLACED = "unplaced"

# Left cues: the nearest one before a relation (within its sentence) gives its role.
_ASSERT_WORDS = frozenset(
    """so thus hence therefore then get gets got getting gives give giving gave yields yield
    yielding obtain obtains obtained have has had is are was were equals equal becomes become
    reads means implies imply since because as note notice know conclude compute computing
    calculate calculating evaluate evaluating simplify simplifies simplifying simplified rewrite
    write writing written expand expanding factor factoring factorizing factored adding
    subtracting multiplying dividing squaring combining find finding see verify confirms confirm
    indeed also which total altogether overall""".split()
)
_ASSUME_WORDS = frozenset(
    "if suppose supposing assume assuming assumed when whenever provided unless given solve solving".split()
)
_BINDING_WORDS = frozenset(
    """for with at take taking try trying tried test testing tested check checking checked
    substitute substituting substituted substitution plug plugging plugged put putting choose
    choosing pick picking consider considering eg example instance like using use letting setting
    say guess""".split()
)
_DEFINE_WORDS = frozenset(
    "let denote denotes denoted define defined defines call called be represent represents where set satisfies satisfy".split()
)
_CONDITION_WORDS = frozenset(
    """need needs needed must want wants require requires required should would could might
    equivalent iff all every any each show shows prove proves demonstrate""".split()
)
_CONDITION_PHRASES = (("such", "that"), ("so", "that"), ("only", "if"), ("as", "long", "as"))
_QUESTION_WORDS = frozenset("whether".split())
_HYPOTHETICAL_WORDS = frozenset("would could might".split())
_NEGATION_WORDS = frozenset("not no never neither nor cannot".split())
# Words that say a division may be meant in whole numbers: "7 / 2 = 3 full boxes", "need 5 buses".
_WHOLE_WORDS = frozenset(
    """full whole complete completely remainder remain remaining left leftover rounded round rounding
    nearest need needed needs least most maximum minimum integer""".split()
)
_COORDINATORS = frozenset("and or ie namely equivalently both respectively".split())
_CANDIDATE_WORDS = frozenset("gives give yields yield leads makes works work fails into in back satisfies".split())
_CANDIDATE_PHRASES = (("is", "too"), ("is", "not", "a"), ("is", "a"), ("is", "not"), ("does", "not"), ("is", "also"))
_REJECTION = re.compile(
    r"^(?:which |this |that |it |and )?(?:is |are |was |would be |be )?(?:clearly |obviously |also )?"
    r"(?:false|not true|untrue|impossible|not possible|a contradiction|contradiction|contradicts|absurd|"
    r"incorrect|wrong|not valid|invalid|not satisfied|does not hold|doesn t hold|do not hold|cannot hold|"
    r"never holds|fails to hold|fails|fail|not the case|cannot be|extraneous|rejected|discarded|ruled out|"
    r"not a solution|not a valid solution|no solution|does not work|doesn t work|does not satisfy|"
    r"doesn t satisfy|not allowed|not admissible|inadmissible|not acceptable|undefined)\b"
)
# Verbs before a relation that refute it: "we reject x = -8", "discarding x = -8".
_REJECT_WORDS = frozenset("reject rejects rejecting discard discards discarding".split())


@dataclass(frozen=True)
class Statement:
    """One relation of a step with its role, the words that gave it, and its scope."""

    claim: Claim
    role: str  # one of ROLES
    cue: str  # "if", "for", "which is false", "?": why this role ("" for a plain assertion)
    scope: int  # 0: before the step's first case or assumption; k: its k-th
    fragment: int  # the links of one chain share it
    alternative: bool = False  # one of several values offered for a name: never a binding
    whole_hint: bool = False  # its sentence speaks of whole groups or rounding ("full boxes", "need")
    sentence: tuple[str, ...] = ()  # its sentence's words and marks, for the invalid gate (gate.py)


@dataclass(frozen=True)
class Unread:
    """A relation-like fragment that could not be read, with the role it would have had."""

    text: str
    reason: str
    role: str


@dataclass(frozen=True)
class Reading:
    statements: tuple[Statement, ...] = ()
    unread: tuple[Unread, ...] = ()
    # Names a sentence introduces in words ("Let $S$ denote the sum ..."): (the number of
    # statements before it, its scope, the name). What was known of the name no longer holds.
    introduced: tuple[tuple[int, int, str], ...] = ()


_NEGATED_MATH = re.compile(r"!=|≠|\\neq?(?![A-Za-z])|\\not(?![A-Za-z])")
_APPROXIMATE_MATH = re.compile(r"≈|\\approx(?![A-Za-z])")


def sentence_marks(sentence: list[Item], moduli: set) -> tuple[str, ...]:
    """What the invalid gate reads of a sentence (tasks.verifiers.gate): its words, punctuation
    and markers (`<case>`, `<item>`); `≠` when its math negates a relation, `≈` when it
    approximates, `<mod>` when it writes a modulus (`moduli`: those of its relations)."""
    marks = [f"<{item.text}>" if item.kind == MARKER else item.text for item in sentence if item.kind in (WORD, PUNCT, MARKER)]
    math = [item.text for item in sentence if item.kind in (FRAGMENT, MATH)]
    if any(_NEGATED_MATH.search(text) for text in math):
        marks.append("≠")
    if any(_APPROXIMATE_MATH.search(text) for text in math):
        marks.append("≈")
    if moduli:
        marks.append("<mod>")
    return tuple(marks)


def _sentences(items: tuple[Item, ...]) -> list[list[Item]]:
    sentences: list[list[Item]] = [[]]
    for item in items:
        if item.kind == MARKER and sentences[-1]:
            sentences.append([])
        if item.kind != BREAK:
            sentences[-1].append(item)
        if item.kind == BREAK or (item.kind == PUNCT and item.text in ".?!;"):
            sentences.append([])
    return [sentence for sentence in sentences if sentence]


def _binding_shaped(item: Item) -> bool:
    """The fragment starts `name = value`: it can bind a name (an assumption's or a definition's)."""
    claims = item.fragment.claims if item.fragment is not None else ()
    return bool(claims) and claims[0].kind in (ASSIGNMENT, CONGRUENCE) and bool(claims[0].lhs.is_Symbol)


def _words(items: list[Item]) -> list[str]:
    return [item.text for item in items if item.kind == WORD]


def _left_cue(words: list[Item], item: Item) -> tuple[str, str] | None:
    """(role, cue) from the words before a relation, nearest first; None if no word decides."""
    for position in range(len(words) - 1, -1, -1):
        entry = words[position]
        if entry.kind == MARKER:
            return (ASSUMPTION, "case") if entry.text == CASE_MARKER else None
        if entry.kind == PUNCT and entry.text == ":":
            return (ASSERTION, ":")
        if entry.kind != WORD:
            continue
        word = entry.text
        previous = _words(words[:position])
        for phrase in _CONDITION_PHRASES:
            if tuple(previous[-(len(phrase) - 1) :] + [word]) == phrase:
                return (CONDITION, " ".join(phrase))
        if word in _REJECT_WORDS:
            return (REJECTED, word)
        if word in _NEGATION_WORDS:
            return (UNPLACED, word)
        if word in _QUESTION_WORDS:
            return (QUESTION, word)
        if word in _CONDITION_WORDS:
            return (CONDITION, word)
        if word in _ASSUME_WORDS:
            return (ASSUMPTION, word)
        if word in _DEFINE_WORDS:
            if _binding_shaped(item):
                return (DEFINITION, word)
            return (CONDITION if word == "where" and _is_range(item) else ASSUMPTION, word)
        if word in _BINDING_WORDS:
            if _binding_shaped(item):
                return (ASSUMPTION, word)
            if word in ("for", "with") and _is_range(item):
                return (CONDITION, word)
            if word == "with" and _is_symbolic(item):
                return (ASSUMPTION, word)  # "reals a and b with a + b = 10": a given constraint
            continue
        if word in _ASSERT_WORDS:
            return (ASSERTION, word)
    return None


def _is_symbolic(item: Item) -> bool:
    claims = item.fragment.claims if item.fragment is not None else ()
    return any(claim.free_symbols for claim in claims)


def _is_range(item: Item) -> bool:
    claims = item.fragment.claims if item.fragment is not None else ()
    return bool(claims) and all(claim.kind == INEQUALITY for claim in claims) and any(c.free_symbols for c in claims)


def _right_cue(after: list[Item], item: Item) -> tuple[str, str] | None:
    """(role, cue) from what follows a relation up to the next one: a rejection, or a candidate."""
    words = " ".join(entry.text for entry in after if entry.kind == WORD)
    words = words.replace("isn t", "is not")
    if _REJECTION.match(words):
        return (REJECTED, _REJECTION.match(words).group(0).strip())
    if not after:
        return None
    leading = _words(after[:3])
    if leading and leading[0] in _HYPOTHETICAL_WORDS:
        return (CONDITION, leading[0])  # "X would mean Y": X is supposed, not asserted
    first = after[0]
    if first.kind == PUNCT and first.text in ":→" and _is_symbolic(item):
        return (ASSUMPTION, first.text)
    if not _binding_shaped(item):
        return None
    leading = _words(after[:4])
    if first.kind == WORD and first.text in _CANDIDATE_WORDS:
        return (ASSUMPTION, first.text)
    for phrase in _CANDIDATE_PHRASES:
        if tuple(leading[: len(phrase)]) == phrase and first.kind == WORD:
            return (ASSUMPTION, " ".join(phrase))
    return None


def _sentence_roles(sentence: list[Item]) -> list[tuple[str, str, bool]]:
    """(role, cue, alternative) for each fragment of one sentence, in order."""
    positions = [index for index, item in enumerate(sentence) if item.kind == FRAGMENT]
    question = sentence[-1].kind == PUNCT and sentence[-1].text == "?"
    roles: list[tuple[str, str, bool]] = []
    for number, position in enumerate(positions):
        item = sentence[position]
        start = positions[number - 1] + 1 if number else 0
        end = positions[number + 1] if number + 1 < len(positions) else len(sentence)
        between, after = sentence[start:position], sentence[position + 1 : end]
        if question:
            roles.append((QUESTION, "?", False))
            continue
        if item.fragment is not None and item.fragment.annotation:
            roles.append((ASSERTION, "calculator", False))
            continue
        right = _right_cue(after, item)
        if right is not None and right[0] == REJECTED:
            roles.append((REJECTED, right[1], False))
            continue
        role: tuple[str, str] | None = None
        alternative = False
        if number:
            joining = [entry for entry in between if not (entry.kind == PUNCT and entry.text == ",")]
            previous = roles[-1]
            if joining and all(entry.kind == WORD and entry.text in _COORDINATORS for entry in joining):
                role = previous[:2]
                if "or" in _words(joining):
                    alternative = True
                    roles[-1] = (previous[0], previous[1], True)
            elif not joining and between and _binding_shaped(item) and previous[0] in (ASSUMPTION, DEFINITION):
                role = previous[:2]
        if role is None:
            role = _left_cue(between, item)
        if right is not None and (
            role is None or (role[0] == ASSERTION and (role[1] not in _STRONG_ASSERT or right[0] == CONDITION))
        ):
            role = right
        roles.append((*(role or (ASSERTION, "")), alternative))
    return _mark_alternatives(sentence, positions, roles)


_STRONG_ASSERT = frozenset("so thus hence therefore".split())
# Cues of an assertion no word derives ("For the second number, 3n = 27", "Total: 5 + 3 = 8").
UNCUED = frozenset({"", ":"})


def _mark_alternatives(
    sentence: list[Item], positions: list[int], roles: list[tuple[str, str, bool]]
) -> list[tuple[str, str, bool]]:
    """Several asserted values for one name in one sentence are alternatives, and so is a list."""
    values: dict[str, set[str]] = {}
    for position, (role, _, _) in zip(positions, roles, strict=True):
        item = sentence[position]
        if role == ASSERTION and _binding_shaped(item):
            first = item.fragment.claims[0]
            values.setdefault(str(first.lhs), set()).add(str(first.rhs))
    marked = []
    for position, (role, cue, alternative) in zip(positions, roles, strict=True):
        item = sentence[position]
        if role == ASSERTION and _binding_shaped(item) and len(values[str(item.fragment.claims[0].lhs)]) > 1:
            alternative = True
        if item.fragment is not None and item.fragment.values_follow:
            alternative = True
        marked.append((role, cue, alternative))
    return marked


_INTRODUCING_WORDS = frozenset("let denote define call".split())
_NAME = re.compile(r"^(?:[A-Za-z](?:_\{?[A-Za-z0-9]+\}?)?|[A-Z]{2,3})$")


def _introduced_names(sentence: list[Item]) -> list[str]:
    """Names a sentence introduces without a relation: `Let $S$ denote the sum`, `Let the number
    of boys be $b$` (a name given a value by a relation is a definition instead)."""
    def introducing(index: int, item: Item) -> bool:
        following = sentence[index + 1] if index + 1 < len(sentence) else None
        lets = item.text == "let" and following is not None and following.kind == PUNCT and following.text == "'"
        return item.kind == WORD and item.text in _INTRODUCING_WORDS and not lets  # "Let's compute x"

    if not any(introducing(index, item) for index, item in enumerate(sentence)):
        return []
    bound = {str(claim.lhs) for item in sentence if item.fragment for claim in item.fragment.claims[:1]}
    names = []
    for item in sentence:
        text = item.text.replace(" ", "")
        name = re.sub(r"_\{([A-Za-z0-9]+)\}", r"_\1", text)
        if item.kind == MATH and _NAME.match(text) and name not in bound:  # `Let $S$ be: $S = 96$` defines S
            names.append(name)
    return names


_RETRACTION = re.compile(
    r"^(?:wait|oops|hmm|correction|actually|no|sorry|mistake)\b|^(?:that|this|it) (?:s |is )?(?:wrong|incorrect|not right|a mistake)"
)


def _retracts(sentence: list[Item]) -> bool:
    """The sentence takes back the one before: "Wait, that's wrong.", "Actually, ...", "Oops"."""
    return bool(_RETRACTION.match(" ".join(_words(sentence[:6]))))


def _link_role(role: str, claim: Claim, link: int, claims: tuple[Claim, ...]) -> str:
    """A chain's links share its role, except computations: `Let x = 3 + 4 = 7` asserts `3 + 4 = 7`,
    and `50 > 7.2^2 = 51.84, which is false` rejects `50 > 7.2^2` and asserts `7.2^2 = 51.84`."""
    closed_equality = claim.operator == "=" and not claim.free_symbols
    if role in (ASSUMPTION, DEFINITION, CONDITION) and link > 0 and closed_equality:
        return ASSERTION
    if role == REJECTED and closed_equality and any(other.operator not in ("=", "≈", "≡") for other in claims):
        return ASSERTION
    return role


def _moduli(claims: list[Claim]) -> set:
    return {claim.modulus for claim in claims if claim.modulus is not None}


@functools.lru_cache(maxsize=4096)
def read_step(text: str) -> Reading:
    """Every relation of the step with its role and scope, and the fragments that could not be read.

    >>> reading = read_step("For $n = 2$, the inequality reads $9 < 20$, which holds.")
    >>> [(s.claim.text, s.role, s.cue, s.scope) for s in reading.statements]
    [('n = 2', 'assumption', 'for', 1), ('9 < 20', 'assertion', 'reads', 1)]
    """
    statements: list[Statement] = []
    unread: list[Unread] = []
    introduced: list[tuple[int, int, str]] = []
    scope, scopes_opened, scope_has_content = 0, 0, False
    fragment_index = 0
    step_claims = [claim for item in read_items(text) if item.fragment for claim in item.fragment.claims]
    step_moduli = _moduli(step_claims)
    seen: set[tuple] = set()
    sentences = _sentences(read_items(text))
    for number, sentence in enumerate(sentences):
        sentence_roles = _sentence_roles(sentence)
        if number + 1 < len(sentences) and _retracts(sentences[number + 1]):
            sentence_roles = [(REJECTED, "retracted", False) if role == ASSERTION else (role, cue, alt)
                              for role, cue, alt in sentence_roles]
        roles = iter(sentence_roles)
        whole_hint = not _WHOLE_WORDS.isdisjoint(_words(sentence))
        sentence_moduli = _moduli([c for item in sentence if item.fragment for c in item.fragment.claims])
        marks = sentence_marks(sentence, sentence_moduli)
        modulus = next(iter(sentence_moduli)) if len(sentence_moduli) == 1 else None
        if modulus is None and not sentence_moduli and len(step_moduli) == 1:
            modulus = next(iter(step_moduli))
        for name in _introduced_names(sentence):
            introduced.append((len(statements), scope, name))
        for item in sentence:
            if item.kind == MARKER:
                scopes_opened += 1
                scope, scope_has_content = scopes_opened, False
                continue
            if item.kind != FRAGMENT or item.fragment is None:
                continue
            role, cue, alternative = next(roles)
            if role == ASSUMPTION and (scope == 0 or scope_has_content):
                scopes_opened += 1
                scope, scope_has_content = scopes_opened, False
            fragment_index += 1
            if item.fragment.problem is not None or role == UNPLACED:
                reason = item.fragment.problem or f"negated relation ({cue!r}) is not read"
                unread.append(Unread(item.fragment.text, reason, ASSERTION if role == UNPLACED else role))
                scope_has_content = scope_has_content or role != ASSUMPTION
                continue
            claims = item.fragment.claims
            for link, claim in enumerate(claims):
                if claim.operator == "≡" and claim.modulus is None and modulus is not None:
                    claim = with_modulus(claim, modulus)
                link_role = _link_role(role, claim, link, claims)
                scope_has_content = scope_has_content or link_role != ASSUMPTION
                # sympy objects hash by structure: printing them for a key cost a third of a step
                key = (link_role, claim.operator, claim.relation.lhs, claim.relation.rhs, claim.modulus, scope)
                if key in seen:
                    continue
                seen.add(key)
                binding_alternative = alternative and link == 0 and _binding_shaped(item)
                statements.append(
                    Statement(claim, link_role, cue, scope, fragment_index, binding_alternative, whole_hint, marks)
                )
    return Reading(tuple(statements), tuple(unread), tuple(introduced))
