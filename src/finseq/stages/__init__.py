"""One thin entry point per dvc.yaml stage: read params, call finseq.pipeline, write outputs.

Run as `python -m finseq.stages.<stage>` from the repository root (dvc.yaml does).
"""
