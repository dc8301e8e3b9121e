"""Search over co-design points (search space, samplers, Pareto front, study storage).

Not built yet: see the search issue."""
