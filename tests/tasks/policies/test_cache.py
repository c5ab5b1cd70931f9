"""The durable request cache, around the simulated policy."""

import pytest

from schemas.records import SamplingParams
from tasks.policies.cache import CachedPolicy
from tasks.policies.registry import load_policy
from tasks.synthetic import generate_problems
from tasks.text_format import prompt_for

PROMPTS = [prompt_for(problem.question) for problem in generate_problems(5, seed=0)]
A, B, C, D, E = PROMPTS
PARAMS = SamplingParams(seed=3)


class Recording:
    """The simulated policy, recording the prompts of each call; it fails on `failing` prompts."""

    def __init__(self, failing=()):
        self.inner = load_policy("simulated")
        self.calls: list[list[str]] = []
        self.failing = set(failing)

    @property
    def name(self):
        return self.inner.name

    def generate(self, prompts, n, params):
        self.calls.append(list(prompts))
        if self.failing & set(prompts):
            raise ConnectionError("server went away")
        return self.inner.generate(prompts, n, params)


@pytest.fixture()
def path(tmp_path):
    return tmp_path / "requests.sqlite"


def test_a_repeated_call_is_served_from_the_cache(path):
    inner = Recording()
    cached = CachedPolicy(inner, path)
    first = cached.generate([A, B], 3, PARAMS)
    assert first == inner.inner.generate([A, B], 3, PARAMS)
    assert cached.generate([A, B], 3, PARAMS) == first
    assert inner.calls == [[A, B]]
    assert (cached.hits, cached.misses, len(cached)) == (2, 2, 2)
    assert cached.name == inner.name


def test_stored_requests_survive_a_new_process(path):
    first = CachedPolicy(Recording(), path).generate([A, B], 2, PARAMS)
    inner = Recording()
    reopened = CachedPolicy(inner, path)
    assert reopened.generate([A, B], 2, PARAMS) == first
    assert inner.calls == [] and reopened.hits == 2


def test_only_misses_are_sent_and_the_order_is_kept(path):
    inner = Recording()
    cached = CachedPolicy(inner, path)
    cached.generate([A, C], 2, PARAMS)
    mixed = cached.generate([B, A, D, C, B], 2, PARAMS)
    assert inner.calls == [[A, C], [B, D]]  # B asked twice, sent once
    assert mixed == inner.inner.generate([B, A, D, C, B], 2, PARAMS)
    assert (cached.hits, cached.misses) == (2 + 1, 2 + 2)


def test_n_params_and_policy_are_part_of_the_key(path):
    inner = Recording()
    cached = CachedPolicy(inner, path)
    cached.generate([A], 2, PARAMS)
    cached.generate([A], 3, PARAMS)
    cached.generate([A], 2, SamplingParams(seed=4))
    cached.generate([A], 2, SamplingParams(seed=3, stop=("\n",)))
    assert len(inner.calls) == 4
    other = Recording()
    other.inner = load_policy("simulated:error_rate=0.5")
    CachedPolicy(other, path).generate([A], 2, PARAMS)
    assert other.calls == [[A]]


def test_a_failed_call_keeps_what_was_stored_and_a_rerun_resumes(path):
    cached = CachedPolicy(Recording(failing={D}), path)
    cached.generate([A, B], 2, PARAMS)
    with pytest.raises(ConnectionError):
        cached.generate([C, D], 2, PARAMS)
    assert len(cached) == 2  # the failed call stored nothing, the earlier one everything

    inner = Recording()
    rerun = CachedPolicy(inner, path)
    rows = rerun.generate([A, B, C, D, E], 2, PARAMS)
    assert inner.calls == [[C, D, E]]
    assert rows == inner.inner.generate([A, B, C, D, E], 2, PARAMS)
