"""``robench bench``: throughput of each stage on this machine, one module per stage.

Every figure is measured against a reference in the same process (the per-sample path, the bare
model step, the stand-in model), so ratios stay meaningful on a shared machine; every benchmark
runs on :mod:`robench.bench.synthetic` data unless given a data set. Figures, with the machine
and date, go to BENCHMARKS.md; no test asserts a speed.
"""
