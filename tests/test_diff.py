"""``kcg diff``: on two synthetic versions it reports exactly the planted changes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from emit_fixture import PLANTED, emitted, make_output

from pipeline.cli import main
from pipeline.diff import diff_sides, format_text, load_side
from pipeline.fsutil import KcgError


@pytest.fixture(scope="module")
def outs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("diff")
    return emitted(base / "a", "a"), emitted(base / "b", "b")


def _check_planted(d: dict) -> None:
    for key in ("helpers", "kfuncs", "helper_ids"):
        assert d[key] == PLANTED[key], key
    assert d["other_roots"] == {"added": [], "removed": []}
    assert d["graph_changes"] == {
        r: {"entered": PLANTED["entered"].get(r, []), "left": PLANTED["left"].get(r, [])}
        for r in sorted(set(PLANTED["entered"]) | set(PLANTED["left"]))}
    assert {c["root"]: c["delta"] for c in d["max_stack_changes"]} == PLANTED["max_stack_delta"]
    assert {c["root"]: (c["bounded_a"], c["bounded_b"]) for c in d["max_stack_changes"]} == \
        PLANTED["bounded"]
    assert d["a"]["kernel_version"] == "6.1.192" and d["b"]["kernel_version"] == "6.12.57"


def test_reports_exactly_the_planted_changes(outs: tuple[Path, Path]) -> None:
    d = diff_sides(load_side(outs[0]), load_side(outs[1]))
    _check_planted(d)
    assert d["common_roots"] == 8


def test_same_answer_from_sqlite(outs: tuple[Path, Path], tmp_path: Path) -> None:
    # Output directories that only kept their databases.
    only_db = []
    for o in outs:
        d = tmp_path / o.name
        d.mkdir()
        shutil.copy(o / "callgraph.sqlite", d / "callgraph.sqlite")
        only_db.append(d)
    from_db = diff_sides(load_side(only_db[0]), load_side(only_db[1]))
    assert from_db["a"]["read_from"] == "sqlite"
    _check_planted(from_db)
    from_json = diff_sides(load_side(outs[0]), load_side(outs[1]))
    for k in ("a", "b"):
        from_db.pop(k), from_json.pop(k)
    assert from_db == from_json


def test_no_changes_against_itself(outs: tuple[Path, Path], tmp_path: Path) -> None:
    d = diff_sides(load_side(outs[0]), load_side(make_output(tmp_path / "a2", "a")))
    assert d["graph_changes"] == {} and d["max_stack_changes"] == []
    assert all(d[k] == {"added": [], "removed": []}
               for k in ("helpers", "kfuncs", "other_roots", "helper_ids"))


def test_text_and_json_cli(outs: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    a, b = map(str, outs)
    assert main(["diff", a, b, "--json"]) == 0
    _check_planted(json.loads(capsys.readouterr().out))
    assert main(["diff", a, b]) == 0
    text = capsys.readouterr().out
    for line in ("helpers: 1 added, 1 removed", "  + bpf_user_ringbuf_drain",
                 "  - bpf_probe_read", "  + bpf_iter_num_new", "  - bpf_cgroup_kptr_get",
                 "  bpf_map_update_elem: 224+ -> 256 (+32)",
                 "  bpf_map_lookup_elem: 1 entered, 0 left",
                 "    + htab_lock_check@kernel/bpf/hashtab.c", "    - memcpy"):
        assert line in text.splitlines(), line


def test_text_limit() -> None:
    d = {"a": {"dir": "A", "kernel_version": "1", "roots": 1},
         "b": {"dir": "B", "kernel_version": "2", "roots": 1},
         "helpers": {"added": [f"h{i}" for i in range(5)], "removed": []},
         "kfuncs": {"added": [], "removed": []}, "other_roots": {"added": [], "removed": []},
         "helper_ids": {"added": [], "removed": []}, "common_roots": 0,
         "graph_changes": {}, "max_stack_changes": []}
    text = format_text(d, limit=2)
    assert "  + h1" in text and "  + h2" not in text and "and 3 more" in text
    assert "  + h4" in format_text(d, limit=0)


def test_missing_inputs(tmp_path: Path) -> None:
    with pytest.raises(KcgError, match="no such output directory"):
        load_side(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(KcgError, match="neither roots.json"):
        load_side(tmp_path / "empty")
