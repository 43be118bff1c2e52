"""The ``kcg`` command line: ``kcg run``, one command per stage, ``query`` and ``diff``."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from pipeline.config import load_config
from pipeline.fsutil import KcgError
from pipeline.runner import STAGE_ORDER, Context, DirectTree, NotBuiltError, run_stages

DEFAULT_CONFIG = "configs/default.yaml"


def _add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, help=f"run configuration (default: {DEFAULT_CONFIG})")
    p.add_argument("--output", type=Path, help="output directory (default: outputs/<config name>)")
    p.add_argument("--jobs", "-j", type=int, default=os.cpu_count() or 1,
                   help="parallel jobs (default: number of cores)")
    p.add_argument("--force", action="store_true", help="rerun stages even when up to date")
    p.add_argument("--source", type=Path, dest="source_dir",
                   help="direct-tree mode: an already built kernel tree (runs from parse on)")
    p.add_argument("--compile-commands", type=Path, help="direct-tree mode: its compile database")
    p.add_argument("--stack-usage", type=Path,
                   help="direct-tree mode: where the .su files are (default: beside the objects)")
    p.add_argument("--executor", choices=("local", "dask"), default="local",
                   help="where parse tasks run (default: a local process pool)")
    p.add_argument("--scheduler", help="Dask scheduler address for --executor dask")
    p.add_argument("--facts-store", type=Path,
                   help="content-addressed facts store (default: ~/.cache/kcg/facts)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--no-parse-ahead", action="store_true",
                   help="do not parse while the kernel builds (kcg run: the default when both "
                   "build and parse run with the local executor)")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="kcg", description=__doc__)
    sub = ap.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run every stage in order (or --from/--to a range)")
    _add_run_options(run)
    run.add_argument("--from", dest="from_stage", choices=STAGE_ORDER,
                     help="start at this stage (it is rerun; earlier outputs must exist)")
    run.add_argument("--to", dest="to_stage", choices=STAGE_ORDER, help="stop after this stage")
    for name in STAGE_ORDER:
        sp = sub.add_parser(name, help=f"run only the {name} stage")
        _add_run_options(sp)
    q = sub.add_parser("query", help="answer questions from a callgraph.sqlite database")
    q.add_argument("--db", type=Path, required=True)
    q.add_argument("--json", action="store_true")
    q.add_argument("--depth", type=int, default=1,
                   help="callers/callees: levels to follow (default 1; 0 = all)")
    q.add_argument("--max-depth", type=int, default=256,
                   help="path: the longest call chain searched (default 256)")
    q.add_argument("what", choices=("stack", "callers", "callees", "path", "icall", "roots"))
    q.add_argument("args", nargs="*")
    d = sub.add_parser("diff", help="what changed between two output directories")
    d.add_argument("out_a", type=Path)
    d.add_argument("out_b", type=Path)
    d.add_argument("--json", action="store_true")
    d.add_argument("--limit", type=int, default=20,
                   help="text output: functions listed per root and change (default 20; 0 = all)")
    return ap


def make_context(args: argparse.Namespace) -> Context:
    direct = None
    if args.source_dir or args.compile_commands:
        if not (args.source_dir and args.compile_commands):
            raise KcgError("direct-tree mode needs both --source DIR and --compile-commands FILE")
        if args.config:
            raise KcgError("--config and direct-tree mode (--source/--compile-commands) exclude each other")
        if not args.output:
            raise KcgError("direct-tree mode needs --output DIR")
        # Checked here too (the stages check again) so a typo fails before anything is written.
        if not args.source_dir.is_dir():
            raise KcgError(f"--source {args.source_dir.resolve()}: no such directory")
        if not args.compile_commands.is_file():
            raise KcgError(f"--compile-commands {args.compile_commands.resolve()}: no such file")
        if args.stack_usage and not args.stack_usage.is_dir():
            raise KcgError(f"--stack-usage {args.stack_usage.resolve()}: no such directory")
        direct = DirectTree(args.source_dir.resolve(), args.compile_commands.resolve(),
                            args.stack_usage.resolve() if args.stack_usage else None)
        config = None
        out = args.output
    else:
        if args.stack_usage:
            raise KcgError("--stack-usage belongs to direct-tree mode "
                           "(with --source DIR --compile-commands FILE)")
        config = load_config(args.config or DEFAULT_CONFIG)
        out = args.output or config.output or Path("outputs") / config.name
    if args.jobs < 1:
        raise KcgError(f"--jobs must be at least 1, got {args.jobs}")
    if args.executor == "dask" and not args.scheduler:
        raise KcgError("--executor dask needs --scheduler ADDRESS")
    return Context(out=out.resolve(), config=config, jobs=args.jobs, force=args.force, direct=direct,
                   executor=args.executor, scheduler=args.scheduler,
                   facts_store=args.facts_store, progress=not args.no_progress and sys.stderr.isatty())


def select_stages(args: argparse.Namespace, ctx: Context) -> tuple[list[str], str | None]:
    if args.command != "run":
        return [args.command], args.command
    # Direct-tree mode keeps all stages: there source only records the given tree and build
    # imports its compile database (no make), so the real work starts at parse.
    names = list(STAGE_ORDER)
    first = args.from_stage
    start = names.index(first) if first else 0
    end = names.index(args.to_stage) + 1 if args.to_stage else len(names)
    if start >= end:
        raise KcgError(f"--from {first} comes after --to {args.to_stage}")
    return names[start:end], first


def wants_parse_ahead(args: argparse.Namespace, ctx: Context, names: list[str]) -> bool:
    """Parse while the kernel builds when this run goes on to parse anyway (see ParseAhead).

    Not with Dask: its workers would read a tree the build is still writing, on other hosts.
    """
    return ("build" in names and "parse" in names and ctx.executor == "local"
            and ctx.direct is None and not args.no_parse_ahead)


def cmd_run(args: argparse.Namespace) -> int:
    from pipeline.stages import get_stages

    ctx = make_context(args)
    names, first = select_stages(args, ctx)
    ctx.extra["parse_ahead"] = wants_parse_ahead(args, ctx, names)
    registry = get_stages()
    t0 = time.monotonic()
    try:
        rows = run_stages(ctx, [registry[n] for n in names], first_forced=first,
                          log=lambda s: print(s, file=sys.stderr))
    except NotBuiltError as e:
        print(f"kcg: {e}", file=sys.stderr)
        return 3
    print(f"\n== kcg summary: {ctx.out} ({time.monotonic() - t0:.1f}s) ==")
    for name, status, result in rows:
        print(f"{name:9} {status}")
        if result:
            for line in result.summary:
                print(f"          {line}")
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = build_parser()
    # `kcg query --db F callers --depth 2 FN`: argparse fills the query's `args` (nargs="*")
    # before it meets --depth and then calls FN unrecognised; give such words back to it.
    args, extra = parser.parse_known_args(argv)
    if extra:
        if args.command != "query" or any(x.startswith("-") for x in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.args = [*args.args, *extra]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.command == "query":
            from pipeline.query import main as query_main
            return query_main(args)
        if args.command == "diff":
            from pipeline.diff import main as diff_main
            return diff_main(args)
        return cmd_run(args)
    except ModuleNotFoundError as e:
        # Only a pipeline module that does not exist yet; any other import error is a bug.
        if e.name and e.name.startswith("pipeline."):
            print(f"kcg: '{args.command}' is not built yet ({e.name} does not exist)", file=sys.stderr)
            return 3
        raise
    except KcgError as e:
        print(f"kcg: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("kcg: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
