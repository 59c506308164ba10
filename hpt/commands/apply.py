"""`hpt apply PLAN_DIR` — run a compiled plan on a backend; `hpt status PLAN_DIR` — where each trial stands."""
from __future__ import annotations

import json
import math
import shlex
import sys
from pathlib import Path
from typing import Any, Optional

import typer

from hpt.api import DEFAULT_RESULTS, LOCAL_STATE
from hpt.commands.common import (EXIT_OK, SUMMARY_AT, SUMMARY_TOP, Format, all_option, backend_options, chosen_format,
                                 console, err_console, format_option, output_alias, plain_progress, progress_every_s,
                                 user_errors)
from hpt.schemas.errors import UserError

# The spelling of a boolean option's "off" form, where it is not --no-<name>.
OFF_FLAGS = {"cancel_on_exit": "--keep-on-exit"}


def _results_uri(plan, results: str | None) -> str:  # noqa: ANN001 — LoadedPlan
    return results or plan.results or DEFAULT_RESULTS


def _resume_command(plan_dir: str, backend: str, results: str, given: dict[str, Any]) -> str:
    parts = ["hpt", "apply", plan_dir]
    if backend != "local":
        parts += ["--backend", backend]
    parts += ["--results", results]
    for key, value in given.items():
        if value is not None:
            flag = "--" + key.replace("_", "-")
            off = OFF_FLAGS.get(key, "--no-" + key.replace("_", "-"))
            parts += [flag] if value is True else [off] if value is False else [flag, str(value)]
    return " ".join(shlex.quote(p) for p in parts)


def _config_params(submissions: list[Any]) -> dict[str, dict[str, Any]]:
    """config id → the hyperparameters that tell the plan's configs apart (one config: all of them)."""
    params = {s.manifest.config: s.manifest.params for s in submissions}
    names = sorted({k for p in params.values() for k in p})
    varying = [k for k in names if len({json.dumps(p.get(k), sort_keys=True) for p in params.values()}) > 1] or names
    return {config: {k: p[k] for k in varying if k in p} for config, p in params.items()}


def _label(params: dict[str, Any]) -> str:
    return " ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())


def _rounds(rounds: list[dict[str, Any]], states: dict[str, str],
            params: dict[str, dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """A halving plan's rounds as status shows them: rung, fidelity, configs, promotions (with each promoted
    config's parameters), trial states."""
    params = params or {}
    out = []
    for r in rounds:
        counts: dict[str, int] = {}
        for tid in r["trials"]:
            counts[states.get(tid, "pending")] = counts.get(states.get(tid, "pending"), 0) + 1
        out.append({"round": r["round"], "rung": r.get("rung"), "fidelity": r["fidelity"], "configs": len(r["configs"]),
                    "scored": r.get("scored"), "promotion": r.get("promotion"),
                    "promoted": [dict(p, params=params.get(p["config"], {})) for p in r.get("promoted", [])],
                    "told": r.get("told"), "batch": r.get("batch"),
                    "trials": len(r["trials"]), "states": counts})
    return out


def _rounds_table(rounds: list[dict[str, Any]], halving: dict[str, Any] | None, tpe: dict[str, Any] | None):  # noqa: ANN202
    """The rounds decided so far (a rich Table): halving's rungs and promotions, or tpe's batches."""
    from rich.table import Table

    if tpe:
        table = Table(title=f"tpe: up to {tpe['trials']} configs, round 1 of {tpe['batch']}", title_justify="left")
        for column in ("round", "configs", "batch", "trials", "told"):
            table.add_column(column, justify="right")
        for r in rounds:
            states = ", ".join(f"{n} {k}" for k, n in sorted(r["states"].items()))
            table.add_row(str(r["round"]), str(r["configs"]), str(r["batch"] or tpe["batch"]), f"{r['trials']} ({states})",
                          "random start" if r["told"] is None else f"{r['told']} results")
        return table
    halving = halving or {"eta": "?", "rungs": []}
    mode = halving.get("promotion", "sync")   # a plan compiled before `promotion` existed was synchronous
    table = Table(title=f"successive halving ({mode} promotion), eta {halving['eta']}: rounds decided so far",
                  title_justify="left")
    for column in ("round", "rung", "fidelity", "configs", "trials", "promoted (best first: config, mean objective)"):
        table.add_column(column, justify="left" if column in ("fidelity",) or column.startswith("promoted") else "right",
                         overflow="fold")
    for r in rounds:
        states = ", ".join(f"{n} {k}" for k, n in sorted(r["states"].items()))
        if r["scored"] is None:
            promoted = f"all {r['configs']} configs start here"
        else:
            of = f"{r['scored']} finished" if r["promotion"] == "async" else str(r["scored"])
            promoted = f"{r['configs']} of {of}: " + "; ".join(
                " ".join(filter(None, [p["config"], _label(p.get("params", {})),
                                       f"({p['score']:.4g})" if p["score"] is not None else ""])) for p in r["promoted"])
        table.add_row(str(r["round"]), str(r["rung"]), r["fidelity"], str(r["configs"]), f"{r['trials']} ({states})", promoted)
    rungs = halving["rungs"]
    reached = {r["rung"] for r in rounds}
    rest = [x for i, x in enumerate(rungs) if i not in reached]
    if rest:
        later = ", ".join(f"{x['fidelity']} ≤ {x['configs']} configs" for x in rest)
        when = ("each config promoted as soon as enough of its rung has finished" if mode == "async"
                else "each once the round before is all done")
        table.caption = f"still to decide: {later} ({when})"
    return table


def _status_summary(states: list) -> list:  # noqa: ANN001 — hpt.executor.status.TrialState
    """What a summarised status lists: every running trial (few: the run's parallelism), the best done by the
    objective, and the first failed trial of each reason (the reasons' counts follow the table)."""
    running = [s for s in states if s.state == "running"][:SUMMARY_AT]
    done = sorted((s for s in states if s.state == "done"), key=lambda s: (s.score is None, s.score or 0.0))[:SUMMARY_TOP]
    first_failed: dict[str, object] = {}
    for s in states:
        if s.state == "failed" and s.detail not in first_failed:
            first_failed[s.detail] = s
    return running + done + list(first_failed.values())[:SUMMARY_TOP]


def _printable(text: str) -> str:
    """A detail as status shows it: a row's reason is data, so a character that is not printable (a terminal's
    escape, a newline) is shown escaped, never sent to the terminal."""
    return text if text.isprintable() else "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _status_lines(title: str, states: list) -> str:  # noqa: ANN001 — hpt.executor.status.TrialState
    """Every trial as one line of aligned columns under a title (`hpt status --all` of a big plan)."""
    trial = max(len("trial"), *(len(s.trial_id) for s in states))
    state = max(len(s.state) for s in states)
    lines = [title, f"{'trial':<{trial}}  {'state':<{state}}  detail"]
    lines += [f"{s.trial_id:<{trial}}  {s.state:<{state}}  {_printable(s.detail)}" for s in states]
    return "\n".join(line.rstrip() for line in lines) + "\n"


def register(app: typer.Typer) -> None:
    @app.command("apply")
    @user_errors
    def apply(
        plan_dir: Path = typer.Argument(..., help="The plan folder written by `hpt compile` (plan.json + trials/)."),
        backend: str = typer.Option("local", "--backend", "-b", help="Where trials run: local | docker | k8s."),
        results: Optional[str] = typer.Option(None, "--results", "-r", help="Results store: a folder or gs://BUCKET/PREFIX. Default: the spec's `results`, else ./hpt-results."),
        parallel: Optional[int] = typer.Option(None, "--parallel", "-j", min=1, help="Trials at once. Default: what the backend allows (local: cores ÷ cpus per trial)."),
        retries: int = typer.Option(2, "--retries", min=0, help="Extra attempts for a trial that failed transiently (killed, lost, no row written)."),
        timeout: Optional[float] = typer.Option(None, "--timeout", min=0.001, help="Cancel a trial after this many seconds; its row says `timed out after N s`."),
        max_failures: Optional[int] = typer.Option(None, "--max-failures", min=1, help="Stop the run (cancelling running trials) once this many trials have failed."),
        skip_failed: bool = typer.Option(False, "--skip-failed", help="Keep trials that failed in an earlier run as failed instead of retrying them."),
        dry_run: bool = typer.Option(False, "--dry-run", help="Print what would run (for local: the exact commands) and change nothing."),
        fmt: Format = format_option(help="table (a progress bar on stderr, then a summary; where stderr is no terminal, one timestamped line per event instead) or json (one event per line on stdout)."),
        output: Optional[str] = output_alias("-o"),
        junit: Optional[Path] = typer.Option(None, "--junit", help="Also write a JUnit XML report of the plan's trials (for Jenkins)."),
        backoff: float = typer.Option(5.0, "--backoff", min=0.0, help="Seconds before the first retry of a transient failure; doubles each attempt."),
        context: Optional[str] = typer.Option(None, "--context", help="k8s: the kubeconfig context."),
        namespace: Optional[str] = typer.Option(None, "--namespace", help="k8s: the namespace for the Jobs."),
        cancel_on_exit: Optional[bool] = typer.Option(None, "--cancel-on-exit/--keep-on-exit", help="k8s: delete running Jobs when apply stops (default: the backend's)."),
        warm: Optional[bool] = typer.Option(None, "--warm/--no-warm", help="local, docker: fork trials from a worker that imported torch once (docker: in a long-lived slot container per concurrent trial) instead of a fresh hpt-trial process (container). Default: warm, except GPU trials and user command trainers (docker: any user trainer), named on stderr; --warm forks every trial, --no-warm none."),
    ) -> None:
        """Run every trial of a plan that has no row yet; safe to re-run (it resumes)."""
        from hpt import api
        from hpt.executor.events import JsonLines, PlainLines, RichProgress
        from hpt.executor.plan import load_plan
        from hpt.executor.publish import ResultsPublisher
        from hpt.store import open_store

        fmt = chosen_format(fmt, output)
        for flag, seconds in (("--timeout", timeout), ("--backoff", backoff)):
            if seconds is not None and not math.isfinite(seconds):  # click's range check lets nan and inf through
                raise UserError(f"{seconds} is not a number of seconds", where=flag)
        plan = load_plan(plan_dir)
        uri = _results_uri(plan, results)
        given = {"context": context, "namespace": namespace, "cancel_on_exit": cancel_on_exit, "warm": warm}
        options = backend_options(backend, given)

        if dry_run:
            runner = api.make_backend(backend, plan_dir, **options)
            # Like `kubectl apply --dry-run`: works without credentials; the store only trims what is done.
            try:
                store = open_store(uri)
                rows = ResultsPublisher(store).sync()
                uri = store.uri
            except UserError as err:
                if uri.startswith("gs://"):
                    err_console.print(f"note: cannot read {uri} ({err.message}); listing every trial", highlight=False)
                    rows = {}
                else:
                    raise
            plan = plan.with_results(uri, timeout)
            subs = plan.submissions   # by trial id: a trial not listed is not parsed (LoadedPlan)
            todo = [subs[i] for i, tid in enumerate(plan.trial_ids)
                    if tid not in rows or (rows[tid].get("status") not in ("done", "stopped") and not skip_failed)]
            text = runner.dry_run(todo)
            # A user's command: the program each trial starts, as its manifest has it rendered (compiler/macros.py).
            programs = {s.trial_id: list(s.manifest.trainer.get("argv") or s.manifest.trainer["command"])
                        for s in todo if s.manifest.trainer.get("command")}
            if programs and fmt is not Format.json:
                text += "".join(f"# {tid} runs: {shlex.join(argv)}\n" for tid, argv in programs.items())
            done = len(plan.submissions) - len(todo)
            if fmt is Format.json:
                print(json.dumps({"event": "dry-run", "experiment_id": plan.experiment_id, "backend": backend,
                                  "results": uri, "total": len(plan.submissions), "to_run": len(todo),
                                  "already_done": done, "trials": [s.trial_id for s in todo], "commands": text}
                                 | ({"programs": programs} if programs else {})
                                 | ({"halving": plan.plan.halving, "rounds": len(plan.plan.rounds or [])}
                                    if plan.plan.halving else {})))
            else:
                err_console.print(f"dry run: {len(todo)} of {len(plan.submissions)} trial(s) would run on {backend} "
                                  f"({done} have a row already); results → {uri}", highlight=False)
                sys.stdout.write(text)
                if plan.plan.halving:
                    from hpt.commands.compile import halving_table

                    rounds = plan.plan.rounds or []
                    mode = plan.plan.halving.get("promotion", "sync")   # older plans: synchronous
                    when = (f"the next is decided when round {len(rounds)} is done" if mode == "sync" else
                            "configs are promoted as soon as enough of their rung has finished (async: more, "
                            "smaller rounds, within the same upper bound)")
                    err_console.print(f"halving: {len(rounds)} round(s) decided so far; {when}", highlight=False)
                    err_console.print(halving_table(plan.plan.halving["rungs"], plan.plan.halving["eta"], mode,
                                                    bool(plan.plan.spec.get("trainer"))))
            raise typer.Exit(EXIT_OK)

        if fmt is Format.json:
            reporter = JsonLines()
        elif plain_progress():
            reporter = PlainLines(every_s=progress_every_s())
        else:
            reporter = RichProgress(err_console)

        def announce(decision) -> None:  # noqa: ANN001 — hpt.compiler.rounds.Decision
            if fmt is Format.json:
                print(json.dumps({"event": "round", "round": decision.round, "fidelity": decision.fidelity,
                                  "configs": decision.configs, "trials": decision.trials, **decision.record}), flush=True)
                return
            promoted = decision.record.get("promoted")
            if promoted is not None:
                best = ", ".join(f"{p['config']} ({p['score']:.4g})" if p["score"] is not None else p["config"]
                                 for p in promoted[:3])
                finished = " finished" if decision.record.get("promotion") == "async" else ""
                message = (f"round {decision.round}: promoted {len(promoted)} of {decision.record['scored']}{finished} configs to "
                           f"{decision.fidelity} ({len(decision.trials)} trials); best {best}")
            else:
                message = (f"round {decision.round}: {len(decision.configs)} new configs proposed "
                           f"({len(decision.trials)} trials), told {decision.record.get('told', 0)} results")
            if isinstance(reporter, PlainLines):
                reporter.line(message)
            else:
                err_console.print(message, highlight=False, soft_wrap=True)

        store_uri = open_store(uri).uri
        outcome = api.apply(plan_dir, backend=backend, results=store_uri, parallel=parallel, retries=retries,
                            timeout=timeout, max_failures=max_failures, skip_failed=skip_failed, backoff=backoff,
                            junit=junit, reporter=reporter,
                            on_round=announce, resume_hint=_resume_command(str(plan_dir), backend, store_uri, given),
                            backend_options=options, loaded=plan)
        raise typer.Exit(outcome.exit_code)

    @app.command("status")
    @user_errors
    def status(
        plan_dir: Path = typer.Argument(..., help="The plan folder written by `hpt compile`."),
        results: Optional[str] = typer.Option(None, "--results", "-r", help="Results store (default: the spec's `results`, else ./hpt-results)."),
        fmt: Format = format_option(),
        output: Optional[str] = output_alias("-o"),
        everything: bool = all_option(),
    ) -> None:
        """Every trial of a plan: pending, running, done, or failed and why (summarised past a few hundred; --all)."""
        from hpt.executor.plan import load_plan
        from hpt.executor.status import apply_state, trial_states
        from hpt.store import open_store

        fmt = chosen_format(fmt, output)
        plan = load_plan(plan_dir, parse=False)   # every manifest checked; plan.json says what status needs
        if plan.plan.rounds:                      # ... except the parameters of each round's configs
            plan = load_plan(plan_dir)
        store = open_store(_results_uri(plan, results))
        run = apply_state(store, plan.experiment_id)
        states = trial_states(plan, store, plan_dir.resolve() / LOCAL_STATE, run)
        counts: dict[str, int] = {}
        for s in states:
            counts[s.state] = counts.get(s.state, 0) + 1
        resume = _resume_command(str(plan_dir), run.backend if run and run.backend else "local", store.uri, {})
        apply_doc = {**(run.to_dict() if run else {"alive": None}), "resume": resume}
        not_done = len(states) - counts.get("done", 0) - counts.get("stopped", 0) - counts.get("skipped", 0)
        note = ""
        if run is not None and run.alive is None:
            note = f"hpt apply runs on {run.host} (pid {run.pid}); its last update: {run.updated_at}"
        elif run is not None and run.alive is False and not_done:
            if not run.finished:
                note = f"the hpt apply that ran this plan (pid {run.pid} on {run.host}) is not running any more; "
            note += f"{not_done} trial(s) not done. Resume with: {resume}"
        rounds = _rounds(plan.plan.rounds, {s.trial_id: s.state for s in states},
                         _config_params(plan.submissions)) if plan.plan.rounds else []
        if fmt is Format.json:
            print(json.dumps({"experiment_id": plan.experiment_id, "results": store.uri, "counts": counts,
                              "apply": apply_doc, "trials": [s.to_dict() for s in states]}
                             | ({"rounds": rounds} if rounds else {}), indent=1))
            return
        from rich.table import Table
        from rich.text import Text

        colour = {"done": "green", "stopped": "yellow", "failed": "red", "running": "cyan", "pending": "dim", "skipped": "dim"}
        summarised = len(states) > SUMMARY_AT and not everything
        shown = _status_summary(states) if summarised else states
        title = f"{plan.experiment_id} · {store.uri}"
        table = Table(title=f"{title}: {len(states)} trials; running, the best {SUMMARY_TOP} done and the first "
                            f"failed of each reason" if summarised else title, title_justify="left")
        if len(shown) > SUMMARY_AT:   # --all of thousands: aligned lines (rich lays a table out cell by cell: 25 s at 20,000)
            console.file.write(_status_lines(title, shown))
        else:
            for col in ("trial", "state", "detail"):   # the attempt number is in --format json and in a retry's detail
                table.add_column(col, overflow="fold")
            for s in shown:
                table.add_row(s.trial_id, Text(s.state, style=colour[s.state]), _printable(s.detail))
            console.print(table)
        if summarised:
            reasons: dict[str, int] = {}
            for s in states:
                if s.state == "failed":
                    reasons[s.detail] = reasons.get(s.detail, 0) + 1
            for reason, n in sorted(reasons.items(), key=lambda item: -item[1])[:SUMMARY_TOP]:
                console.print(Text.assemble((f"{n:>6} failed: ", "red"), _printable(reason)))
            if len(reasons) > SUMMARY_TOP:
                console.print(f"… {len(reasons) - SUMMARY_TOP} more failure reason(s)", highlight=False)
            console.print(f"(--all lists all {len(states)} trials; --format json gives them to a program)", highlight=False)
        console.print(", ".join(f"{counts.get(k, 0)} {k}" for k in ("done", "stopped", "failed", "running", "pending", "skipped")
                                if k not in ("stopped", "skipped") or counts.get(k)), highlight=False)
        skipped = next((s.detail for s in states if s.state == "skipped"), "")
        if skipped:
            console.print(f"{skipped}: the search is over (no new trial starts)", highlight=False, soft_wrap=True)
        if rounds:
            console.print(_rounds_table(rounds, plan.plan.halving, plan.plan.tpe))
        if note:
            console.print(note, highlight=False, soft_wrap=True)
