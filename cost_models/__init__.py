"""Cost models: the analytical interpreter over the IR (analytical.py), the systolic-array
GEMM model in SCALE-Sim convention (systolic.py), embedding-cache hit rates (embedding_cache.py),
queueing simulation of server pools under load (queueing.py) and the op-to-workload mapping
every target shares (workload.py). The TVM-measured model comes with its own issue."""
