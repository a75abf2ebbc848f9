"""Deterministic fault-injection simulation: the whole system in one process, one seed.

See docs/sim.md. The entry points are :func:`run_seed` (one seeded run of
N terminals over D trading days against one host, checked after every day)
and :class:`SimConfig`; ``posbatch simulate`` is the command line over them.
"""
