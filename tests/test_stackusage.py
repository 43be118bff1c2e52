"""Reading .su files: both formats, qualifiers, clone folding, malformed lines, path normalisation."""

from __future__ import annotations

import os

import pytest

from pipeline.facts import PathMap
from pipeline.stackusage import (
    BOUNDED,
    DYNAMIC,
    STATIC,
    fold_name,
    load,
    parse_file,
    parse_line,
)


def test_gcc_line():
    r = parse_line("/src/kernel/bpf/helpers.c:34:1:bpf_map_lookup_elem\t8\tstatic\n")
    assert (r.path, r.line, r.col, r.name, r.size, r.qualifier) == (
        "/src/kernel/bpf/helpers.c", 34, 1, "bpf_map_lookup_elem", 8, STATIC)


def test_clang_line_has_no_column():
    r = parse_line("kernel/bpf/hashtab.c:1053:htab_map_update_elem\t96\tdynamic")
    assert (r.path, r.line, r.col, r.name, r.size, r.qualifier) == (
        "kernel/bpf/hashtab.c", 1053, None, "htab_map_update_elem", 96, DYNAMIC)


def test_path_with_colons_split_from_the_right():
    r = parse_line("C:/odd:dir/x.c:3:7:f\t16\tdynamic,bounded")
    assert (r.path, r.line, r.col, r.name, r.qualifier) == ("C:/odd:dir/x.c", 3, 7, "f", BOUNDED)


@pytest.mark.parametrize("name, base", [
    ("foo", "foo"),
    ("foo.isra.0", "foo"),
    ("foo.constprop.0", "foo"),
    ("foo.part.0", "foo"),
    ("foo.cold", "foo"),
    ("foo.constprop", "foo"),  # gcc 12 as kbuild runs it drops the number
    ("foo.constprop.isra", "foo"),
    ("foo.constprop.0.isra.0", "foo"),
    ("foo.part.0.cold", "foo"),
    ("foo.unknown.1", "foo.unknown.1"),  # not a gcc clone suffix: left alone
])
def test_clone_suffixes_fold(name, base):
    assert fold_name(name) == base


@pytest.mark.parametrize("line", [
    "garbage",
    "x.c:1:2:f\t8",  # two fields
    "x.c:1:2:f\tabc\tstatic",  # size not a number
    "x.c:1:2:f\t8\tweird",  # unknown qualifier
    "x.c:f\t8\tstatic",  # no line number
    "x.c:1:2:f g\t8\tstatic",  # not a C name
])
def test_malformed_lines_raise(line):
    with pytest.raises(ValueError):
        parse_line(line)


def test_malformed_lines_are_counted_with_file_and_line(tmp_path):
    su = tmp_path / "a.su"
    su.write_text("a.c:1:5:ok\t16\tstatic\nnot a row\n\na.c:9:5:ok2\t-3\tstatic\n"
                  "a.c:12:5:ok3\t8\tdynamic,bounded\n")
    rows, errors = parse_file(su)
    assert [r.name for r in rows] == ["ok", "ok3"]
    assert len(errors) == 2
    assert errors[0].startswith(f"{su}:2: ") and errors[1].startswith(f"{su}:4: ")
    data = load([su], PathMap(tmp_path))
    assert data.counts["malformed"] == 2 and data.counts["rows"] == 2


def test_folding_takes_largest_frame_and_worst_qualifier(tmp_path):
    """isra/constprop replace the function (largest wins); a .part is called by it (adds)."""
    su = tmp_path / "a.su"
    su.write_text("a.c:10:12:f\t32\tstatic\n"
                  "a.c:10:12:f.isra.0\t48\tstatic\n"
                  "a.c:10:12:f.part.0\t16\tdynamic,bounded\n"
                  "a.c:20:12:g\t8\tstatic\n"
                  "a.c:20:12:g.constprop.0\t8\tdynamic\n")
    data = load([su], PathMap(tmp_path), lambda f: str(tmp_path))
    f = data.lookup("a.c", "f")
    assert (f.size, f.qualifier, len(f.rows)) == (48 + 16, BOUNDED, 3)
    g = data.lookup("a.c", "g")
    assert (g.size, g.qualifier, g.bounded) == (8, DYNAMIC, False)
    assert data.counts["clone_rows"] == 3


def test_path_normalisation(tmp_path):
    """Relative to the compile dir, absolute in the source tree, absolute in an O= build dir,
    and through a symlink to the source tree: all come out as the ids' relative paths."""
    src, bld = tmp_path / "src", tmp_path / "build"
    (src / "kernel").mkdir(parents=True)
    (bld / "kernel").mkdir(parents=True)
    link = tmp_path / "srclink"
    os.symlink(src, link)
    in_tree = src / "kernel" / "a.su"
    in_tree.write_text("kernel/a.c:1:5:f\t8\tstatic\n./include/linux/x.h:3:20:h\t16\tstatic\n")
    out_of_tree = bld / "kernel" / "b.su"
    out_of_tree.write_text(f"{src}/kernel/b.c:1:5:g\t8\tstatic\n"
                           f"{src}/kernel/../include/linux/x.h:3:20:h\t24\tstatic\n"
                           f"{bld}/kernel/gen.c:2:5:gen\t8\tstatic\n"
                           f"{link}/kernel/c.c:4:5:viasymlink\t8\tstatic\n"
                           "/usr/include/stdio.h:1:1:sys\t8\tstatic\n")
    cwd = {str(in_tree): str(src), str(out_of_tree): str(bld)}
    data = load([in_tree, out_of_tree], PathMap(src, bld), cwd.get)
    assert data.lookup("kernel/a.c", "f").size == 8
    assert data.lookup("kernel/b.c", "g").size == 8
    # one header function from two TUs (relative and absolute spellings): one frame, the larger
    h = data.lookup("include/linux/x.h", "h")
    assert (h.size, len(h.rows)) == (24, 2)
    assert data.lookup("kernel/gen.c", "gen").size == 8  # generated: relative to the build dir
    assert data.lookup("kernel/c.c", "viasymlink").size == 8
    assert data.lookup("/usr/include/stdio.h", "sys").size == 8  # outside both: stays absolute


def test_same_name_different_lines_are_kept_apart(tmp_path):
    su = tmp_path / "a.su"
    su.write_text("include/x.h:3:20:h\t16\tstatic\ninclude/x.h:30:20:h\t64\tstatic\n")
    data = load([su], PathMap(tmp_path), lambda f: str(tmp_path))
    assert data.lookup("include/x.h", "h", 3).size == 16
    assert data.lookup("include/x.h", "h", 30).size == 64
    assert data.lookup("include/x.h", "h").size == 64  # no line: the larger, safely


def test_unreadable_file_is_reported(tmp_path):
    data = load([tmp_path / "missing.su"], PathMap(tmp_path))
    assert data.counts["unreadable_files"] == 1 and "missing.su" in data.errors[0]
