"""What a design is: a pipeline of ranking stages (the one stage type), its chips' knobs and
its load settings. Plain frozen data: the spec loader (:mod:`codesign.pipeline`), the search
and the evaluator (:mod:`codesign.evaluate`) all build and read these."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Stage:
    model: str
    items: int
    keep: int
    target: str
    knobs: dict[str, Any] = field(default_factory=dict)
    engines: int = 1
    batch: int = 0  # 0: all items in one inference batch
    name: str = ""
    cost_model: str = "analytical"  # the pipeline's; see stage_cost

    @property
    def batch_items(self) -> int:
        return self.batch or self.items


@dataclass(frozen=True)
class LoadSettings:
    queries: int = 2000
    warmup: int = 256
    arrival: str = "exponential"
    query_size: dict[str, Any] | None = None
    sla_ms: float | None = None
    percentile: int = 95
    seed: int = 0


@dataclass(frozen=True)
class Pipeline:
    name: str
    stages: tuple[Stage, ...]
    load: LoadSettings = LoadSettings()
    description: str = ""
    source: str = ""
    path: str | None = None
    #: Per target: knob values of its chip or socket (budgets, clock), shared by its stages.
    chips: tuple[tuple[str, dict[str, Any]], ...] = ()

    def chip_knobs(self, target: str) -> dict[str, Any]:
        return dict(dict(self.chips).get(target, {}))
