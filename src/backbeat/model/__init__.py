"""The model layer: what is stored (tasks, runs, dead letters), how it is encoded, when it fires
(triggers), what runs (job classes and the registry of names) and the events a scheduler emits.

It imports nothing of backbeat's but :mod:`backbeat.errors`; every other layer builds on it.
"""
