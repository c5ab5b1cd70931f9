"""Labellers by name, as `--labeler` and the config select them."""

from __future__ import annotations

from tasks.labelers.base import Labeler


def labeler_names() -> list[str]:
    return sorted(_factories())


def _factories() -> dict:
    from tasks.labelers.adaptive import AdaptiveLabeler
    from tasks.labelers.judge import JudgeLabeler
    from tasks.labelers.mc import MonteCarloLabeler
    from tasks.labelers.progress import ProgressLabeler
    from tasks.labelers.search import FirstErrorSearchLabeler

    return {
        "mc": MonteCarloLabeler, "search": FirstErrorSearchLabeler, "progress": ProgressLabeler, "judge": JudgeLabeler,
        "adaptive": AdaptiveLabeler,
    }


def get_labeler(name: str, **options) -> Labeler:
    """The labeller `name`, built with `options` (e.g. the adaptive labeller's `budget`)."""
    factories = _factories()
    if name not in factories:
        raise ValueError(f"unknown labeler '{name}': choose one of {', '.join(sorted(factories))}")
    return factories[name](**options)
