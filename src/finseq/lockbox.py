"""The lockbox stage (`run_lockbox`): the bars from `split.lockbox` on stay sealed from every
default stage (prepare cuts them off before it computes anything: prepare.seal_lockbox),
and are opened only by one explicit, recorded act, `split.lockbox_open: true`.

Sealed, the stage writes metrics/lockbox.json as {"opened": false, "openings": K, "date"}
and reads no bar at all; it imports nothing that scores (torch, the bootstraps), so a sealed
run, the default, takes under a second. Opened, finseq.lockbox_opening scores the sealed bars.

Openings are counted from git, so that none can be taken back quietly: every metrics/
lockbox.json in the history of any ref (branches, tags and DVC's experiment refs) that says
"opened": true, each distinct file once, plus this opening.
"""

from __future__ import annotations

import datetime
import json
import subprocess
from pathlib import Path

from finseq.atomic import write_json
from finseq.errors import ConfigError
from finseq.params import Params
from finseq.paths import LOCKBOX_METRICS


def _git(root: Path, *args: str) -> subprocess.CompletedProcess | None:
    try:
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True)
    except FileNotFoundError:
        return None


def recorded_openings(root: Path = Path()) -> int | None:
    """How many distinct opened metrics/lockbox.json files the git history of any ref holds;
    None outside a git repository (no history to count from). A file committed twice (an
    experiment's commit, then the same file on a branch) is one opening."""
    inside = _git(root, "rev-parse", "--is-inside-work-tree")
    if inside is None or inside.returncode != 0:
        return None
    log = _git(root, "log", "--all", "--format=%H", "--", LOCKBOX_METRICS)
    opened = set()
    for commit in log.stdout.split() if log.returncode == 0 else []:
        shown = _git(root, "show", f"{commit}:./{LOCKBOX_METRICS}")
        if shown.returncode != 0:  # the commit deleted it
            continue
        try:
            recorded = json.loads(shown.stdout)
        except json.JSONDecodeError:
            continue
        if isinstance(recorded, dict) and recorded.get("opened") is True:
            opened.add(shown.stdout)
    return len(opened)


def lockbox_report(params: Params, root: Path = Path()) -> dict:
    """What metrics/lockbox.json says: sealed, or this opening's figures and count."""
    openings = recorded_openings(root)
    report = {"date": params.split.lockbox, "opened": params.split.lockbox_open}
    if not params.split.lockbox_open:
        return {**report, "openings": openings}
    if openings is None:
        raise ConfigError(
            "split.lockbox_open = True outside a git repository: an opening must be recorded "
            "in git history; run it in the project's git checkout"
        )
    from finseq.lockbox_opening import lockbox_figures, lockbox_table

    table, model_md5 = lockbox_table(params, root)
    return {
        **report,
        "openings": openings + 1,
        "opened_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "model_md5": model_md5,
        "lockbox": lockbox_figures(table, params),
    }


def run_lockbox(params: Params, root: Path = Path()) -> dict:
    """The lockbox stage under a project root: metrics/lockbox.json."""
    report = lockbox_report(params, root)
    write_json(root / LOCKBOX_METRICS, report)
    return report
