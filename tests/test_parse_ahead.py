"""Parse-ahead on the real kernel: TUs parsed while make runs are the parse stage's cache hits.

A cold ``bpf-core`` run (its own output directory and an empty facts store) with parse-ahead at
normal priority (``KCG_PARSE_AHEAD_IDLE=0``: not SCHED_IDLE), so it gets a fair share of the two
cores.  Every TU parse-ahead kept must be a
cache hit of the parse stage (the ``make -n`` commands give the same keys as the compile database
written after the build), and the facts must be the ones a plain parse gives.  ~3 minutes.
"""

from __future__ import annotations

import pytest

from pipeline import cli
from pipeline.fsutil import read_json
from tests.conftest import REPO, _explain


def test_parse_ahead_feeds_the_parse_stage(kcg, tmp_path):
    out, store = tmp_path / "out", tmp_path / "facts"
    r = kcg("run", "--config", REPO / "configs" / "bpf-core.yaml", "--to", "parse", "--output", out,
            "--facts-store", store, "--no-progress", env={"KCG_PARSE_AHEAD_IDLE": "0"})
    assert r.returncode == 0, _explain(r)
    ahead = read_json(out / "manifests" / "build.json")["counts"]["parse_ahead"]
    parse = read_json(out / "manifests" / "parse.json")["counts"]
    tus = read_json(out / "compile_commands.json")
    assert ahead["planned"] == len(tus), ahead  # make -n knew every TU before the build
    assert ahead["already_cached"] == 0 and ahead["kept"] >= 1, ahead
    # The store was empty: its hits are exactly what parse-ahead kept.
    assert parse["cached"] == ahead["kept"], (parse, ahead)
    assert parse["failed"] == 0 and parse["with_errors"] == 0
    assert "parse-ahead:" in r.stdout

    keys = {t["file"]: t["key"] for t in read_json(out / "parse.json")["tus"]}
    r = kcg("parse", "--config", REPO / "configs" / "bpf-core.yaml", "--output", out, "--force",
            "--facts-store", tmp_path / "facts-plain", "--no-progress")
    assert r.returncode == 0, _explain(r)
    plain = {t["file"]: t["key"] for t in read_json(out / "parse.json")["tus"]}
    assert plain == keys


@pytest.mark.parametrize(("argv", "wanted"), [
    (["run"], True),
    (["run", "--no-parse-ahead"], False),
    (["run", "--to", "build"], False),      # nothing would read the facts
    (["run", "--from", "parse"], False),    # no build
    (["run", "--executor", "dask", "--scheduler", "tcp://127.0.0.1:1"], False),
    (["build"], False),
])
def test_when_parse_ahead_runs(argv, wanted):
    args = cli.parse_args([*argv, "--config", str(REPO / "configs" / "bpf-core.yaml")])
    ctx = cli.make_context(args)
    names, _ = cli.select_stages(args, ctx)
    assert cli.wants_parse_ahead(args, ctx, names) is wanted
