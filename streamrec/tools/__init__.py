"""Tools around the runtime: benchmarks, the demo and its local stack, replay, repartition,
topic admin, the terminal dashboard.
"""
