"""One thin entry point per dvc.yaml stage: read params and run the stage's `run_<stage>`
(or, for train, its ranks), which writes the outputs atomically. The params are read and
checked before the stage's module is imported, so a bad one stops the stage in about half a
second, not after the seconds that importing torch, arch and scipy take.

Run as `python -m finseq.stages.<stage>` from the repository root (dvc.yaml does).
"""
