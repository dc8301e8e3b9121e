"""scikit-optimize as a *scalarised* baseline sampler (ParEGO-style) inside Optuna.

skopt optimises one objective (SEARCH.md §3), so every trial is proposed for one random
scalarisation of the objectives, as in ParEGO (Knowles, IEEE TEC 2006):

1. the objective vectors recorded so far (as searched: log10 for decade-spanning objectives,
   maximised ones negated) are normalised to [0, 1] by their observed range;
2. a weight vector ``w`` is drawn uniformly from the simplex, from an RNG keyed by the seed and
   the trial number (so the sequence does not depend on workers or on resuming);
3. each recorded design scores the augmented Chebyshev value
   ``max_i w_i f_i + 0.05 * sum_i w_i f_i`` (in [0, 1.05]); a design that violates a
   constraint scores ``2.1 + v / (1 + v)`` (``v``: the sum of its relative violations, so in
   [2.1, 3.1), rising with the violation); one that cannot be built scores 4;
4. a fresh ``skopt.Optimizer`` is told all of them and asked for the next point: an
   extra-trees surrogate (``forest_minimize``'s), expected improvement over 2,000 sampled
   candidates, 10 random initial points. skopt's GP was measured at about 40 s per step at 100
   trials on this space (about 30 one-hot dimensions, ARD length scales fitted with L-BFGS),
   extra trees at 0.3 s.

skopt sees the whole flattened space (:func:`codesign.search.space.search_space`): a trial with
fewer stages ignores the later stages' knobs, which skopt then models as noise (recorded
trials fill their unused knobs with the first choice). Trials live in the Optuna study as with
any other sampler, so resume, workers and reports are unchanged.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from optuna.distributions import BaseDistribution, CategoricalDistribution, IntDistribution
from optuna.samplers import BaseSampler, RandomSampler
from optuna.trial import FrozenTrial, TrialState

from codesign.search.results import trial_constraints

#: ParEGO's augmentation coefficient.
RHO = 0.05
INFEASIBLE = 2.1
FAILED = 4.0


class SkoptScalarizedSampler(BaseSampler):
    """Propose each trial with skopt on a random Chebyshev scalarisation of the objectives.

    ``space``: the full (flattened) search space; ``directions``: per objective;
    ``constraint_scales``: constraint name -> the size of a unit violation (e.g. the SLA
    itself), so that violations of different units add up.
    """

    def __init__(
        self,
        *,
        space: Mapping[str, BaseDistribution],
        directions: Sequence[str],
        constraint_scales: Mapping[str, float] | None = None,
        seed: int = 0,
        n_initial_points: int = 10,
    ) -> None:
        self._space = dict(space)
        # skopt refuses dimensions with a single value; those knobs are constants anyway
        self._names = [n for n, d in self._space.items() if not d.single()]
        self._signs = np.array([-1.0 if d == "maximize" else 1.0 for d in directions])
        self._scales = dict(constraint_scales or {})
        self._seed = seed
        self._n_initial = n_initial_points
        self._proposals: dict[int, dict[str, Any]] = {}
        self._fallback = RandomSampler(seed=seed)

    def reseed_rng(self) -> None:
        self._fallback.reseed_rng()

    def infer_relative_search_space(self, study: Any, trial: FrozenTrial) -> dict:
        return {}

    def sample_relative(self, study: Any, trial: FrozenTrial, search_space: dict) -> dict:
        return {}

    def before_trial(self, study: Any, trial: FrozenTrial) -> None:
        self._proposals[trial.number] = self.propose(study.get_trials(deepcopy=False), trial)

    def sample_independent(
        self, study: Any, trial: FrozenTrial, param_name: str, param_distribution: Any
    ) -> Any:
        proposal = self._proposals.get(trial.number, {})
        value = proposal.get(param_name)
        if value is not None and param_distribution._contains(
            param_distribution.to_internal_repr(value)
        ):
            return value
        return self._fallback.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(
        self, study: Any, trial: FrozenTrial, state: TrialState, values: Sequence[float] | None
    ) -> None:
        self._proposals.pop(trial.number, None)

    # --- the scalarised skopt step -------------------------------------------------------------

    def weights(self, number: int) -> np.ndarray:
        """The trial's scalarisation weights: uniform on the simplex, keyed by seed and trial."""
        rng = np.random.default_rng([self._seed, number])
        return rng.dirichlet(np.ones(len(self._signs)))

    def scalarize(self, trials: Sequence[FrozenTrial], weights: np.ndarray) -> list[float]:
        """The augmented Chebyshev value of each finished trial (lower is better)."""
        done = [t for t in trials if t.state == TrialState.COMPLETE and t.values is not None]
        if done:
            raw = np.array([t.values for t in done], dtype=float) * self._signs
            low, high = raw.min(axis=0), raw.max(axis=0)
            span = np.where(high > low, high - low, 1.0)
        out = []
        for t in trials:
            if t.state != TrialState.COMPLETE or t.values is None:
                out.append(FAILED)
                continue
            # the scales come in the run's constraint order (study.constraint_scales)
            named = trial_constraints(t, list(self._scales))
            violation = sum(max(0.0, v) / self._scales.get(k, 1.0) for k, v in named.items())
            if violation > 0:
                out.append(INFEASIBLE + violation / (1.0 + violation))
                continue
            f = (np.asarray(t.values, dtype=float) * self._signs - low) / span
            out.append(float(np.max(weights * f) + RHO * np.sum(weights * f)))
        return out

    def propose(self, trials: Sequence[FrozenTrial], trial: FrozenTrial) -> dict[str, Any]:
        import skopt

        fixed = {n: _only_value(d) for n, d in self._space.items() if d.single()}
        if not self._names:
            return fixed
        # a FAIL that does not count (its process was killed, or a run-wide error stopped it:
        # ``not_counted``, search/study.py) says nothing about its design, which runs again
        finished = [
            t
            for t in trials
            if t.state in (TrialState.COMPLETE, TrialState.FAIL)
            and t.number != trial.number
            and "not_counted" not in t.user_attrs
        ]
        dims = [_dimension(self._space[n]) for n in self._names]
        optimizer = skopt.Optimizer(
            dims,
            base_estimator="ET",
            acq_func="EI",
            acq_optimizer="sampling",
            acq_optimizer_kwargs={"n_points": 2000},
            n_initial_points=self._n_initial,
            random_state=(self._seed * 1_000_003 + trial.number) % 2**32,
        )
        if finished:
            xs = [self._encode(t.params) for t in finished]
            ys = self.scalarize(finished, self.weights(trial.number))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # re-proposed points, GP convergence notes
                optimizer.tell(xs, ys)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            point = optimizer.ask()
        return {**fixed, **{n: self._decode(n, v) for n, v in zip(self._names, point, strict=True)}}

    def _encode(self, params: Mapping[str, Any]) -> list[Any]:
        out = []
        for name in self._names:
            dist = self._space[name]
            value = params.get(name)
            if isinstance(dist, CategoricalDistribution):
                idx = dist.choices.index(value) if value in dist.choices else 0
                out.append(str(idx))
            else:
                out.append(int(value) if value is not None else int(dist.low))
        return out

    def _decode(self, name: str, value: Any) -> Any:
        dist = self._space[name]
        if isinstance(dist, CategoricalDistribution):
            return dist.choices[int(value)]
        return int(value)


def _only_value(dist: BaseDistribution) -> Any:
    if isinstance(dist, CategoricalDistribution):
        return dist.choices[0]
    return int(dist.low)


def _dimension(dist: BaseDistribution) -> Any:
    from skopt.space import Categorical, Integer

    if isinstance(dist, CategoricalDistribution):
        return Categorical([str(i) for i in range(len(dist.choices))])
    if isinstance(dist, IntDistribution):
        return Integer(dist.low, dist.high)
    raise TypeError(f"skopt baseline: unsupported distribution {dist!r}")
