"""One thin entry point per dvc.yaml stage: read params and run the stage's `run_<stage>`
(or, for train, its ranks), which writes the outputs atomically.

Run as `python -m finseq.stages.<stage>` from the repository root (dvc.yaml does).
"""
