"""`hpt delete PLAN_DIR` — remove a plan's Kubernetes Jobs and ConfigMaps (the results store is untouched):
those of every store the plan was applied into, or with `--results URI` those of that store's apply only."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from hpt.commands.common import EXIT_OK, Format, chosen_format, err_console, format_option, output_alias, user_errors


def register(app: typer.Typer) -> None:
    @app.command("delete")
    @user_errors
    def delete(
        plan_dir: Path = typer.Argument(..., help="The plan folder written by `hpt compile` (plan.json + trials/)."),
        context: Optional[str] = typer.Option(None, "--context", help="The kubeconfig context (default: the current one)."),
        namespace: Optional[str] = typer.Option(None, "--namespace", help="Namespace of the Jobs (default: the spec's kubernetes.namespace, else the context's)."),
        kubeconfig: Optional[str] = typer.Option(None, "--kubeconfig", help="Path of the kubeconfig (default: $KUBECONFIG or ~/.kube/config)."),
        results: Optional[str] = typer.Option(None, "--results", "-r", help="Only the Jobs of the apply into this store (default: of every store)."),
        dry_run: bool = typer.Option(False, "--dry-run", help="List what would be deleted and delete nothing."),
        fmt: Format = format_option(help="table (one `kind/name` per line) or json."),
        output: Optional[str] = output_alias("-o"),
    ) -> None:
        """Delete the plan's Jobs (running ones are stopped) and ConfigMaps from the cluster. Rows, models
        and logs in the results store stay; `hpt apply` again starts the unfinished trials anew."""
        from hpt.executor.backends import get_backend
        from hpt.executor.plan import load_plan
        from hpt.store import store_uri

        fmt = chosen_format(fmt, output)
        plan = load_plan(plan_dir)
        if results is not None:   # spelled as `hpt apply` spells it, so that the store's label matches
            plan = plan.with_results(store_uri(results))
        backend = get_backend("k8s", context=context, namespace=namespace, kubeconfig=kubeconfig)
        found = backend.delete_plan(plan.submissions, dry_run=dry_run)
        ns = backend.namespace
        if fmt is Format.json:
            print(json.dumps({"experiment_id": plan.experiment_id, "namespace": ns, "results": results, "dry_run": dry_run,
                              **found}))
        else:
            for kind in ("jobs", "configmaps"):
                for name in found.get(kind, []):
                    typer.echo(f"{kind[:-1]}/{name}")
            verb = "would delete" if dry_run else "deleted"
            err_console.print(f"{verb} {len(found.get('jobs', []))} Job(s) and {len(found.get('configmaps', []))} "
                              f"ConfigMap(s) of {plan.experiment_id} in namespace {ns}"
                              + (f" (store {results})" if results else " (every store)"), highlight=False)
        raise typer.Exit(EXIT_OK)
