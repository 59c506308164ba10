"""`hpt compile`, `hpt schema`, `hpt architectures`: from a spec to a reviewable plan, and the references."""
from __future__ import annotations

import datetime as dt
import json
from enum import Enum
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from hpt.commands.common import Format, chosen_format, console, err_console, format_option, output_alias, styled, user_errors
from hpt.schemas.errors import UserError
from hpt.schemas.plan import PLAN_FILE


class Mode(str, Enum):
    quick = "quick"
    full = "full"


class SchemaName(str, Enum):
    spec = "spec"
    trial = "trial"
    plan = "plan"


def _parse_today(value: Optional[str]) -> Optional[dt.date]:
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise UserError(f"{value!r} is not a date (expected YYYY-MM-DD)", where="--today") from None


@user_errors
def compile_command(
    spec: str = typer.Argument(..., help="The spec file (JSON or YAML), or - for stdin."),
    out: Path = typer.Option(Path("plan"), "--out", "-o", help="Plan directory to write (plan.json + trials/)."),
    today: Optional[str] = typer.Option(None, "--today", help="Run date YYYY-MM-DD (default: today, UTC); its month picks rotating date ranges."),
    data: Optional[str] = typer.Option(None, "--data", help="Dataset folder or gs:// URI; overrides the spec's data."),
    mode: Optional[Mode] = typer.Option(None, "--mode", help="quick or full; overrides the spec's mode."),
    seed: Optional[int] = typer.Option(None, "--seed", min=0, max=2**63 - 1, help="Search seed; overrides search.seed."),
    force: bool = typer.Option(False, "--force", help="Replace a different plan already in --out."),
    explain: bool = typer.Option(False, "--explain", help="First say how each key of a W&B sweep config or Katib Experiment was read, and what hpt reads differently."),
    fmt: Format = format_option(),
    output: Optional[str] = output_alias(),
) -> None:
    """Validate SPEC, resolve defaults and date ranges, and write the plan (a dry run: nothing trains)."""
    from hpt import api

    explanation = None
    if explain:
        from hpt.compiler.explain import explain_spec

        if spec == "-":   # stdin can be read once, and compile reads it
            raise UserError("needs the spec as a file, not stdin", where="--explain")

        explanation = explain_spec(spec)
        if chosen_format(fmt, output) is not Format.json:
            _print_explanation(explanation)
    result = api.compile(spec, out, today=_parse_today(today), data=data, mode=mode.value if mode else None, seed=seed,
                         force=force)
    for warning in result.warnings:
        err_console.print(styled(("warning:", "yellow"), f" {warning}"), soft_wrap=True)
    if chosen_format(fmt, output) is Format.json:
        summary = result.summary() | ({"explain": explanation.to_json()} if explanation else {})
        typer.echo(json.dumps(summary, indent=2))
        return
    _review(result)


def _print_explanation(explanation) -> None:  # noqa: ANN001 — hpt.compiler.explain.Explanation
    words = {"katib": "a Katib Experiment", "wandb": "a W&B sweep config", "hpt": "an hpt spec"}
    table = Table(title=f"How hpt read {words[explanation.origin]}", title_justify="left", show_lines=False)
    table.add_column("key as written")
    table.add_column("read as")
    for key, text in explanation.notes or [("(every key)", "as hpt's own spec reads it (docs/spec.md)")]:
        table.add_row(key, text)
    console.print(table)


def _epochs(resolved) -> str:  # noqa: ANN001
    """The epoch budget as the trials get it: per fidelity where the spec lists fidelities."""
    per = sorted({f.epochs for f in resolved.fidelities})
    if per:
        return "epochs ≤ " + "/".join(str(e) for e in per) + " (per fidelity)"
    return f"epochs ≤ {resolved.epochs}"


def _review(result) -> None:  # noqa: ANN001 — CompileResult, imported lazily
    from hpt.schemas.catalog import format_value

    resolved = result.resolved
    console.print(styled((result.experiment, "bold"), f"  {resolved.architecture.name}  mode ", (resolved.mode, "bold"),
                         f"  {_epochs(resolved)}  month {result.month}"))
    console.print(f"search {resolved.space.method}, seed {resolved.space.seed}"
                  + (" (auto mode: the learning-rate family)" if resolved.auto else ""), highlight=False)
    if resolved.stopping:
        settings = ", ".join(f"{k} {v}" for k, v in resolved.stopping.items() if k != "rule" and v is not None)
        console.print(f"in-trial stopping: {resolved.stopping['rule']} ({settings})", highlight=False)
    if resolved.confirm_top:
        console.print(f"confirmation: the top {resolved.confirm_top} config(s) retrained last on an untouched window",
                      highlight=False)
    console.print(f"data {result.dataset.uri}", highlight=False, soft_wrap=True)

    console.print(f"objective {resolved.objective['metric']} ({resolved.objective['goal']})", highlight=False)
    if resolved.target is not None:
        reach = "≤" if resolved.objective["goal"] == "minimize" else "≥"
        console.print(f"target {resolved.objective['metric']} {reach} {resolved.target:g}: apply starts no new trial once "
                      "a finished trial reaches it (the running ones finish)", highlight=False)
    if resolved.windowed:
        windows = Table(title="date ranges", title_justify="left")
        for column in ("#", "train", "validation", "trials"):
            windows.add_column(column, justify="right" if column in ("#", "trials") else "left")
        per_window = result.configs * resolved.repeats * result.n_fidelities
        for w in result.windows:
            windows.add_row(str(w.index), f"{w.train[0]} → {w.train[1]}", f"{w.validation[0]} → {w.validation[1]}", str(per_window))
        console.print(windows)
    else:
        console.print("no date ranges: the trainer splits its data itself (trainer.windows false)", highlight=False)

    params = Table(title="hyperparameters", title_justify="left")
    params.add_column("name")
    params.add_column("tried")
    params.add_column("count", justify="right")
    for name, domain in resolved.space.domains.items():
        seen = result.values.get(name, [])
        tried = ", ".join(format_value(v) for v in seen)
        if resolved.space.proposer == "random" and type(domain).__name__ == "Distribution":
            tried = f"{domain.describe()}: {len(seen)} draws"
        params.add_row(name, tried, str(len(seen)))
    tuned = set(resolved.space.domains)
    fixed = [p for p in resolved.architecture.parameters if p.name not in tuned]
    if fixed:
        params.add_row("defaults", ", ".join(f"{p.name}={format_value(p.default)}" for p in fixed), "", style="dim")
    console.print(params)
    if result.rungs:
        console.print(halving_table(result.rungs, resolved.space.eta, resolved.space.promotion, resolved.trainer is not None))
    elif resolved.fidelities:
        fids = Table(title="fidelities (each config × range × repeat runs at each)", title_justify="left")
        for column in ("name", "months", "epochs"):
            fids.add_column(column, justify="left" if column == "name" else "right")
        for f in resolved.fidelities:
            fids.add_row(f.name, "whole range" if f.months is None else str(f.months), str(f.epochs))
        console.print(fids)
    verb = "wrote" if result.written else "unchanged:"
    if result.rungs:
        console.print(styled(f"{result.configs} configs{_per_config(result, resolved)} at "
                             f"{result.rungs[0]['fidelity']} = ", (f"{len(result.trial_ids)} trials in round 1", "bold"),
                             f", at most {sum(r['trials'] for r in result.rungs)} in all; {verb} {result.out / PLAN_FILE}"))
        return
    if resolved.space.proposer == "tpe":
        space = resolved.space
        per_round = f"{space.batch} more" if space.batch else "as many more as it runs at once (--parallel)"
        console.print(f"tpe: round 1 is {result.configs} config(s) drawn at random; apply asks Optuna's TPE for "
                      f"{per_round} per round, told every finished result, up to {space.trials} configs "
                      f"(≤ {space.trials * max(1, len(result.windows)) * resolved.repeats} trials)", highlight=False)
    fid_text = f" × {len(resolved.fidelities)} fidelities" if resolved.fidelities else ""
    console.print(styled(f"{result.configs} configs{_per_config(result, resolved)}{fid_text} = ", (f"{len(result.trial_ids)} trials", "bold"), f"; {verb} {result.out / PLAN_FILE}"))


def _per_config(result, resolved) -> str:
    """What multiplies the configs into trials: date ranges (none when trainer.windows is false: one trial
    per config × repeat) and repeats."""
    ranges = f" × {len(result.windows)} date range(s)" if result.windows else ""
    return f"{ranges} × {resolved.repeats} repeat(s)"


def halving_table(rungs: list[dict], eta: int | None, promotion: str | None, user_trainer: bool = False) -> Table:
    """A halving plan's budget: round 1 exactly as written, the later rungs at most (what apply decides;
    async promotion fills each rung in more, smaller rounds but never past these bounds)."""
    table = Table(title=f"successive halving, eta {eta}, {promotion} promotion", title_justify="left",
                  caption="round 1 runs as written; later rungs at most these" +
                          (" (async: more, smaller rounds, as results come in)" if promotion == "async" else ""),
                  caption_justify="left")
    continuing = any("continued" in r for r in rungs)   # search.continue: rungs that differ only in epochs
    columns = ["rung", "fidelity", "months", "epochs", "configs", "trials", "epoch-months"]
    if continuing:
        columns += ["from", "saved"]   # the rung it continues from; the epoch-months not retrained
    for column in columns:
        table.add_column(column, justify="left" if column in ("fidelity", "from") else "right")
    for i, rung in enumerate(rungs):
        bound = "" if i == 0 else "≤ "
        cells = [str(i), rung["fidelity"], "whole range" if rung["months"] is None else str(rung["months"]),
                 str(rung["epochs"]), bound + str(rung["configs"]), bound + str(rung["trials"]), bound + str(rung["epoch_months"])]
        if continuing:
            cells += [rung.get("continued", ""), f"≤ {rung['saved']}" if "continued" in rung else ""]
        table.add_row(*cells)
    total = ["all", "", "", "", "", f"≤ {sum(r['trials'] for r in rungs)}", f"≤ {sum(r['epoch_months'] for r in rungs)}"]
    if continuing:
        saved = sum(r.get("saved", 0) for r in rungs)
        restarting = saved + sum(r["epoch_months"] for r in rungs)
        total.append("")
        total.append(f"≤ {saved} of {restarting} ({saved / max(1, restarting):.0%})")
        table.caption = str(table.caption) + (
            "; a promoted trial continues from its lower rung's checkpoint instead of retraining those epochs"
            + (" — if the trainer continues (docs/trial-protocol.md), else it retrains them" if user_trainer else "")
            + " (search.continue)")
    table.add_row(*total)
    return table


@user_errors
def schema_command(
    name: SchemaName = typer.Argument(SchemaName.spec, help="spec (what you write), trial or plan (what the compiler writes)."),
) -> None:
    """Print a JSON Schema (for editors: point a spec's "$schema" at the saved file)."""
    from hpt.schemas.loader import load_json

    typer.echo(json.dumps(load_json(f"{name.value}.schema.json"), indent=2))


@user_errors
def architectures_command(
    name: Optional[str] = typer.Argument(None, help="One architecture: its hyperparameters in detail."),
    fmt: Format = format_option(),
    output: Optional[str] = output_alias(),
) -> None:
    """Show the architectures catalog: each architecture and its hyperparameters."""
    from hpt.compiler.paths import did_you_mean
    from hpt.schemas.catalog import architectures, format_value

    catalog = architectures()
    if name is not None and name not in catalog:
        raise UserError(f"unknown architecture {name!r}", where="NAME", hint=did_you_mean(name, catalog))
    chosen = [catalog[name]] if name else list(catalog.values())
    if chosen_format(fmt, output) is Format.json:
        typer.echo(json.dumps({a.name: {"description": a.description, "parameters": [
            {"name": p.name, "type": p.type, "default": p.default,
             **({"min": p.min, "max": p.max, "log": p.log} if p.numeric else {"choices": list(p.options)}),
             "auto": list(p.auto), "help": p.help} for p in a.parameters]} for a in chosen}, indent=2))
        return
    if name is None:
        table = Table(title="architectures (hpt architectures NAME for details)", title_justify="left")
        table.add_column("name", style="bold")
        table.add_column("description")
        table.add_column("own hyperparameters")
        shared = set.intersection(*(set(a.param_names) for a in chosen))
        for arch in chosen:
            table.add_row(arch.name, arch.description, ", ".join(p for p in arch.param_names if p not in shared))
        console.print(table)
        console.print("shared by all: " + ", ".join(p for p in chosen[0].param_names if p in shared), highlight=False)
        return
    arch = chosen[0]
    table = Table(title=f"{arch.name}: {arch.description}", title_justify="left")
    table.add_column("hyperparameter", ratio=1)
    table.add_column("default", no_wrap=True)
    table.add_column("range", no_wrap=True)
    table.add_column("auto mode tries", max_width=16)
    for p in arch.parameters:
        table.add_row(styled((p.name, "bold"), "\n", (p.help, "dim")), format_value(p.default), p.describe_range(),
                      ", ".join(format_value(v) for v in p.auto))
    console.print(table)


def register(app: typer.Typer) -> None:
    app.command("compile")(compile_command)
    app.command("schema")(schema_command)
    app.command("architectures")(architectures_command)
