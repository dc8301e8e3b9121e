"""Cost models: the analytical interpreter over the IR, systolic-array, cache and queueing
models, and the TVM-measured model. Not built yet: see the targets/cost-model issues."""
