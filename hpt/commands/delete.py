"""`hpt delete PLAN_DIR` — remove what a backend keeps of a plan outside the results store (the store is
untouched): Kubernetes Jobs and ConfigMaps (`--backend k8s`, the default), the Docker containers or local trial
processes an interrupted apply left running (`--backend docker|local`). Those of every store the plan was
applied into, or with `--results URI` those of that store's apply only."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from hpt.commands.common import (EXIT_OK, Format, backend_options, chosen_format, err_console, format_option,
                                 output_alias, user_errors)


def register(app: typer.Typer) -> None:
    @app.command("delete")
    @user_errors
    def delete(
        plan_dir: Path = typer.Argument(..., help="The plan folder written by `hpt compile` (plan.json + trials/)."),
        backend: str = typer.Option("k8s", "--backend", "-b", help="Where the plan ran: k8s (default) | docker | local."),
        context: Optional[str] = typer.Option(None, "--context", help="k8s: the kubeconfig context (default: the current one)."),
        namespace: Optional[str] = typer.Option(None, "--namespace", help="k8s: namespace of the Jobs (default: the spec's kubernetes.namespace, else the context's)."),
        kubeconfig: Optional[str] = typer.Option(None, "--kubeconfig", help="k8s: path of the kubeconfig (default: $KUBECONFIG or ~/.kube/config)."),
        results: Optional[str] = typer.Option(None, "--results", "-r", help="Only what the apply into this store left (default: of every store)."),
        dry_run: bool = typer.Option(False, "--dry-run", help="List what would be deleted and delete nothing."),
        fmt: Format = format_option(help="table (one `kind/name` per line) or json."),
        output: Optional[str] = output_alias("-o"),
    ) -> None:
        """Delete what the backend keeps of the plan: k8s its Jobs (running ones are stopped) and ConfigMaps;
        docker its containers; local the trial processes an interrupted apply left running. Rows, models
        and logs in the results store stay; `hpt apply` again starts the unfinished trials anew."""
        from hpt import api
        from hpt.executor.plan import load_plan
        from hpt.store import store_uri

        fmt = chosen_format(fmt, output)
        options = backend_options(backend, {"context": context, "namespace": namespace, "kubeconfig": kubeconfig})
        plan = load_plan(plan_dir)
        if results is not None:   # spelled as `hpt apply` spells it, so that the store's label matches
            plan = plan.with_results(store_uri(results))
        runner = api.make_backend(backend, plan_dir, **options)
        try:
            found = runner.delete_plan(plan.submissions, dry_run=dry_run)
        finally:
            runner.close()
        where = ""
        if backend == "k8s":
            from hpt.executor.backends.kubernetes import KubernetesBackend

            assert isinstance(runner, KubernetesBackend)
            where = runner.namespace
        if fmt is Format.json:
            print(json.dumps({"experiment_id": plan.experiment_id, "backend": backend,
                              **({"namespace": where} if backend == "k8s" else {}),
                              "results": results, "dry_run": dry_run, **found}))
        else:
            for kind, names in found.items():
                for name in names:
                    typer.echo(f"{_KINDS[kind][0]}/{name}")
            verb = "would delete" if dry_run else "deleted"
            counts = " and ".join(f"{len(names)} {_KINDS[kind][1]}" for kind, names in found.items()) or "nothing"
            err_console.print(f"{verb} {counts} of {plan.experiment_id}" + (f" in namespace {where}" if where else "")
                              + (f" (store {results})" if results else " (every store)"), highlight=False)
        raise typer.Exit(EXIT_OK)


# Each kind a backend's delete_plan returns: its `kind/name` prefix, and its name in the summary line.
_KINDS = {"jobs": ("job", "Job(s)"), "configmaps": ("configmap", "ConfigMap(s)"),
          "containers": ("container", "container(s)"), "processes": ("process", "trial process(es)")}
