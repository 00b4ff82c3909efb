"""The `evoengine` command. User errors (`EvoError`) are printed without a traceback
unless `--debug`."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from pathlib import Path

from .errors import EvoError

OFFLINE_NOTE = (
    "no model configured: using the built-in offline operators (AST edits for Python, line edits for text).\n"
    "  To use a model: evoengine run PROBLEM -c openai   (or -c vllm / -c ollama; see docs/models.md)"
)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="evoengine", description="Evolutionary program search.")
    p.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="start a search on a problem")
    r.add_argument(
        "problem",
        help="a bundled problem name, a problem folder, a problem.py, or a peer's folder "
        "(OpenEvolve's or ShinkaEvolve's, see docs/porting.md)",
    )
    r.add_argument("--evaluator", help="OpenEvolve's evaluator.py, when PROBLEM is their initial program")
    r.add_argument("-c", "--config", help="config preset name (configs/NAME.yaml) or YAML file")
    _overrides(r, "--set", "override a config key, e.g. --set islands.count=2 (repeatable)")
    r.add_argument("--budget", type=int, help="candidates to evaluate (budget.candidates)")
    r.add_argument("--target-score", type=float, help="stop once the best score reaches this (budget.target_score)")
    r.add_argument("--run-dir", type=Path, help="where the run is written (default runs/<time>-<problem>)")
    r.add_argument("--from", dest="from_run", type=Path, help="seed with the best candidates of an earlier run")
    r.add_argument("--ray", metavar="ADDRESS", help="evaluate on a Ray cluster at ADDRESS ('auto' or host:port)")
    r.add_argument("-q", "--quiet", action="store_true", help="no progress bar")

    s = sub.add_parser("resume", help="continue a stopped or killed run")
    s.add_argument("run_dir", type=Path)
    s.add_argument("--budget", type=int, help="new total of candidates for the run")
    s.add_argument("--target-score", type=float, help="stop once the best score reaches this (budget.target_score)")
    _overrides(s, "--set", "override a config key (repeatable)")
    s.add_argument("-q", "--quiet", action="store_true")

    st = sub.add_parser("status", help="show a run's progress")
    st.add_argument("run_dir", type=Path)
    st.add_argument("--json", action="store_true", help="machine-readable output")

    b = sub.add_parser("best", help="print or write the best candidate")
    b.add_argument("run_dir", type=Path)
    b.add_argument("-o", "--output", type=Path, help="the file to write (a folder, for candidates of several files)")

    sub.add_parser("problems", help="list bundled problems")

    lin = sub.add_parser("lineage", help="show the ancestry of the best (or a given) candidate")
    lin.add_argument("run_dir", type=Path)
    lin.add_argument("--candidate", type=int)
    lin.add_argument("--export", choices=["json", "graphml", "dot"], help="write the whole lineage graph")
    lin.add_argument("-o", "--output", type=Path, help="file for --export (default: standard output)")

    rep = sub.add_parser("report", help="write a self-contained HTML report (of one run, or several compared)")
    rep.add_argument("run_dirs", type=Path, nargs="+", metavar="run_dir")
    rep.add_argument("-o", "--output", type=Path, help="the HTML file (default RUN/report.html, or compare.html)")

    se = sub.add_parser("self-evolve", help="evolve evoengine's own harness by short inner searches")
    se.add_argument("-c", "--config", help="config preset or YAML for the outer search")
    _overrides(se, "--set", "override a key of the outer search's config")
    _overrides(se, "--inner-set", "override a key of every inner search's config (e.g. models, islands.count)")
    se.add_argument("--budget", type=int, default=30, help="harness candidates to evaluate (default 30)")
    se.add_argument("--inner-budget", type=int, default=30, help="candidates per inner search (default 30)")
    se.add_argument("--suite", default="circle_packing,deceptive_ridge", help="problems, comma-separated")
    se.add_argument("--seeds", type=int, default=2, help="seeds per problem (1..N; default 2)")
    se.add_argument(
        "--gate",
        type=float,
        default=0.9,
        help="full suite only if stage 1 reaches GATE x the default harness's (default 0.9)",
    )
    se.add_argument("--harness", type=Path, help="the harness to start from (default: the built-in one)")
    se.add_argument("--run-dir", type=Path)
    se.add_argument("-o", "--output", type=Path, help="also copy the best harness here")
    se.add_argument("-q", "--quiet", action="store_true")

    bl = sub.add_parser(
        "baselines", help="a search against independent sampling and greedy refinement, several seeds each"
    )
    bl.add_argument("problem", help="as for `run`")
    bl.add_argument("--seeds", type=int, default=10, help="seeds 0..N-1 of each setup (default 10)")
    bl.add_argument("-c", "--config", help="config preset name or YAML file, for all three setups")
    _overrides(bl, "--set", "override a config key for all three setups (repeatable)")
    bl.add_argument("--budget", type=int, help="candidates per run (budget.candidates)")
    bl.add_argument(
        "--run-dir",
        type=Path,
        help="the folder of the runs (default runs/<time>-<problem>-baselines); an earlier one goes on from where it stopped",
    )
    bl.add_argument(
        "--setup",
        nargs="+",
        action="append",
        default=[],
        metavar=("NAME", "KEY=VALUE"),
        help="a further setup beside the three, e.g. --setup no-elites selection.elites=0 (repeatable)",
    )
    bl.add_argument("--jobs", type=int, default=1, help="runs at once, each in its own process (default 1)")
    bl.add_argument("-q", "--quiet", action="store_true", help="no progress bar")

    cmp = sub.add_parser("compare", help="runs of one problem side by side (say, a search against its baselines)")
    cmp.add_argument("run_dirs", type=Path, nargs="+", metavar="RUN_DIR", help="runs, or a folder of runs")

    sv = sub.add_parser("serve", help="a read-only local viewer, refreshed while the run goes on")
    sv.add_argument("run_dir", type=Path)
    sv.add_argument("--host", default="127.0.0.1")
    sv.add_argument("--port", type=int, default=8765)
    return p


def _overrides(parser: argparse.ArgumentParser, flag: str, help: str) -> None:
    dest = "inner" if flag == "--inner-set" else "overrides"
    parser.add_argument(flag, dest=dest, action="append", default=[], metavar="KEY=VALUE", help=help)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.INFO if not getattr(args, "quiet", False) else logging.WARNING,
        format="evoengine: %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("httpx", "openai", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        return COMMANDS[args.command](args)
    except EvoError as exc:
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `evoengine status RUN | head`: the reader left, nothing is wrong
        sys.stderr.close()
        return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from .evaluation.early import EarlyWorker

    with asyncio.Runner() as runner:
        # The first worker boots beside the engine's imports and config (the pool takes it if
        # the run needs that very worker); the run goes on in the same event loop.
        early = None if args.ray or args.evaluator else runner.run(EarlyWorker.start(args.problem, args.run_dir))
        try:
            from .config import load_config
            from .engine import create
            from .porting import prepare_run

            overrides = [*args.overrides, *_target_score(args)]
            if args.budget is not None:
                overrides.append(f"budget.candidates={args.budget}")
            if args.ray:
                overrides += ["evaluation.backend=ray", f"ray.address={args.ray}"]
            # a peer's folder: their config mapped
            problem, mapped = prepare_run(args.problem, args.evaluator, args.config)
            config = load_config(args.config, [*mapped, *overrides])
            engine = create(
                problem, config, run_dir=args.run_dir, from_run=args.from_run, progress=not args.quiet, early=early
            )
            return _drive(engine, runner)
        finally:
            if early is not None:  # a no-op once a pool took it
                runner.run(early.close())


def _cmd_resume(args: argparse.Namespace) -> int:
    from .engine import reopen

    overrides = (*args.overrides, *_target_score(args))
    engine = reopen(args.run_dir, budget=args.budget, overrides=overrides, progress=not args.quiet)
    return _drive(engine)


def _target_score(args: argparse.Namespace) -> list[str]:
    return [f"budget.target_score={args.target_score}"] if args.target_score is not None else []


def _drive(engine, runner: asyncio.Runner | None = None) -> int:
    if engine.offline_only:
        print(OFFLINE_NOTE, file=sys.stderr)
    print(f"run directory: {engine.run_dir}", file=sys.stderr)
    summary = runner.run(engine.run()) if runner is not None else asyncio.run(engine.run())
    print("\n".join(summary.lines()))
    return summary.exit_code


def _cmd_self_evolve(args: argparse.Namespace) -> int:
    import shutil

    from .config import load_config
    from .engine import create, new_run_dir
    from .selfevolve import prepare

    overrides = [f"budget.candidates={args.budget}", *args.overrides]
    config = load_config(args.config, overrides)
    run_dir = args.run_dir or new_run_dir(Path("runs"), "harness")
    if (run_dir / "archive.sqlite").exists():
        raise EvoError(f"{run_dir} already holds a run: resume it with `evoengine resume {run_dir}`")
    problems = [p.strip() for p in args.suite.split(",") if p.strip()]
    folder = prepare(
        run_dir / "problem",
        problems=problems,
        seeds=list(range(1, args.seeds + 1)),
        inner_budget=args.inner_budget,
        gate=args.gate,
        overrides=args.inner,
        seed_harness=args.harness,
    )
    engine = create(folder, config, run_dir=run_dir, progress=not args.quiet)
    code = _drive(engine)
    best = engine.best_path()
    if best is not None:
        print(f"use it with:  --set harness={best}")
        if args.output:
            shutil.copyfile(best, args.output)
            print(f"copied the best harness to {args.output}")
    return code


def _cmd_status(args: argparse.Namespace) -> int:
    from .status import render_status, run_status

    status = run_status(args.run_dir)
    print(json.dumps(status, indent=2) if args.json else render_status(status))
    return 0


def _cmd_best(args: argparse.Namespace) -> int:
    from .api import open_run

    run = open_run(args.run_dir)
    best = run.best
    if best is None:
        raise EvoError(f"{args.run_dir} has no valid candidate yet")
    if args.output and run.folder:  # a candidate of several files: the folder, file by file
        from .files import split_files, write_folder

        write_folder(split_files(best.text), args.output)
        print(f"wrote candidate {best.id} (score {best.score:.6g}) as the folder {args.output}", file=sys.stderr)
    elif args.output:
        args.output.write_text(best.text)
        print(f"wrote candidate {best.id} (score {best.score:.6g}) to {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(best.text)
    return 0


def _cmd_problems(args: argparse.Namespace) -> int:
    from .problem import bundled_problems, load_problem

    for folder in bundled_problems():
        try:
            p = load_problem(folder).problem
            first = p.description.strip().splitlines()[0] if p.description.strip() else ""
            print(f"{folder.name:<20} {p.kind:<8} {first}")
        except EvoError as exc:
            print(f"{folder.name:<20} (broken: {exc})")
    return 0


def _cmd_lineage(args: argparse.Namespace) -> int:
    from .lineage import export_lineage, lineage_text, render_ancestry
    from .store import RunReader

    with RunReader.open(args.run_dir) as reader:
        if args.export and args.output:
            print(f"wrote {export_lineage(reader, args.export, args.output)}", file=sys.stderr)
        elif args.export:
            sys.stdout.write(lineage_text(reader, args.export))
        else:
            print(render_ancestry(reader, args.candidate))
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from .report import write_comparison, write_report
    from .report.compare import expand

    if len(expand(args.run_dirs)) == 1:  # one run (a folder of runs is a comparison)
        path = write_report(args.run_dirs[0], args.output)
    else:
        path = write_comparison(args.run_dirs, args.output)
    print(f"wrote {path}")
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    from .report.compare import comparison_table

    print(comparison_table(args.run_dirs))
    return 0


def _cmd_baselines(args: argparse.Namespace) -> int:
    from .baselines import default_root, run_baselines, with_setups
    from .config import load_config

    if args.seeds < 1:
        raise EvoError(f"--seeds {args.seeds}: give at least 1 (10 or more show an interval worth reading)")
    setups = with_setups(args.setup)
    if not load_config(args.config, args.overrides).models:
        print(OFFLINE_NOTE, file=sys.stderr)
    root = args.run_dir or default_root(args.problem)
    print(f"runs in: {root}", file=sys.stderr)
    code, table = run_baselines(
        args.problem, seeds=args.seeds, root=root, config=args.config, overrides=args.overrides,
        budget=args.budget, jobs=args.jobs, setups=setups, progress=not args.quiet, say=lambda line: print(line, file=sys.stderr),
    )  # fmt: skip
    if table:
        print(table)
        print(f"again: evoengine compare {root}   as a page: evoengine report {root}", file=sys.stderr)
    return code


def _cmd_serve(args: argparse.Namespace) -> int:
    from .report import serve

    serve(args.run_dir, host=args.host, port=args.port)
    return 0


COMMANDS = {
    "run": _cmd_run,
    "resume": _cmd_resume,
    "status": _cmd_status,
    "best": _cmd_best,
    "problems": _cmd_problems,
    "lineage": _cmd_lineage,
    "report": _cmd_report,
    "serve": _cmd_serve,
    "compare": _cmd_compare,
    "baselines": _cmd_baselines,
    "self-evolve": _cmd_self_evolve,
}


if __name__ == "__main__":
    sys.exit(main())
