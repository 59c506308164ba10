"""A Katib `kubeflow.org/v1beta1` `Experiment`, read into hpt's own words.

Katib's API types (pkg/apis/controller/experiments/v1beta1) are the definition of each key; this
module turns a parsed Experiment into an hpt spec document, which then goes through the same
validation, defaults and plan as any spec. What it reads:

- `spec.parameters`: `int` (min/max → int-uniform; with `step`, or for grid, the values min, min+step, …),
  `double` (min/max → uniform, `distribution: logUniform` → log-uniform; `step` → q-uniform, or the
  values for grid), `categorical` and `discrete` (`list` → values). Katib writes numbers as strings.
- `spec.objective`: `type` → goal, `objectiveMetricName` → objective.metric, `additionalMetricNames`
  → metrics (reported beside it).
- `spec.algorithm`: random, grid, tpe and multivariate-tpe (→ tpe), bayesianoptimization (→ tpe: a
  different model-based sampler, said in a note), hyperband (→ halving; its `resource_name` parameter
  becomes the fidelities' epochs), `random_state` → search.seed.
- `spec.maxTrialCount` → search.trials; `parallelTrialCount` → a note for `hpt apply --parallel`.
- `spec.trialTemplate`: the `primaryContainerName` container of a batch/v1 Job `trialSpec` is the
  trainer: its image and its command + args, `${trialParameters.NAME}` standing for the parameter its
  `reference` names.

Each read key gets a note (`hpt compile --explain`); what hpt cannot do as Katib does is an error
naming the key and why, or a warning where the rest keeps its meaning. docs/katib.md is the table.
"""
from __future__ import annotations

import math
import re
from typing import Any

from hpt.compiler.wandb import Translated
from hpt.schemas.errors import UserError

API_VERSION = "kubeflow.org/v1beta1"
KIND = "Experiment"
ALGORITHMS = {"random": "random", "grid": "grid", "tpe": "tpe", "multivariate-tpe": "tpe",
              "bayesianoptimization": "tpe", "hyperband": "halving"}
REFUSED_ALGORITHMS = {"cmaes": "CMA-ES", "sobol": "Sobol sequences", "pbt": "population-based training",
                      "enas": "neural architecture search", "darts": "neural architecture search"}
MACRO = re.compile(r"\$\{trialParameters\.([A-Za-z0-9_.-]+)\}")
MAX_GRID_STEPS = 10_000   # one parameter's values from min/max/step


def is_katib(doc: Any) -> bool:
    return isinstance(doc, dict) and doc.get("kind") == KIND and str(doc.get("apiVersion", "")).startswith("kubeflow.org/")


def read_experiment(doc: dict[str, Any]) -> Translated:
    """The Experiment in hpt's words; every problem collected (the spec's errors come in one run)."""
    out: dict[str, Any] = {}
    result = Translated(out)
    errors, notes, warnings = result.errors, result.notes, result.warnings

    def error(where: str, message: str, hint: str | None = None) -> None:
        errors.append(UserError(message, where=where, hint=hint))

    if doc.get("apiVersion") != API_VERSION:
        error("apiVersion", f"{doc.get('apiVersion')!r} is not read; hpt reads {API_VERSION} Experiments")
    spec = doc.get("spec")
    if not isinstance(spec, dict):
        error("spec", "an Experiment needs its spec (an object)")
        return result
    meta = doc.get("metadata") or {}
    if isinstance(meta, dict) and isinstance(meta.get("name"), str):
        notes.append(("metadata.name", f"the trainer's name: the results' architecture column ({meta['name']})"))
    if isinstance(meta, dict) and meta.get("namespace"):
        notes.append(("metadata.namespace", "not used: the k8s backend's namespace is the spec's kubernetes.namespace "
                                            "or --namespace"))
    known = {"parameters", "objective", "algorithm", "earlyStopping", "parallelTrialCount", "maxTrialCount",
             "maxFailedTrialCount", "trialTemplate", "metricsCollectorSpec", "resumePolicy"}
    for key in spec:
        if key not in known:
            error(f"spec.{key}", f"{key} is not read by hpt" + (" (neural architecture search)" if key == "nasConfig" else ""))

    algorithm = _algorithm(spec.get("algorithm"), out, result)
    _parameters(spec.get("parameters"), algorithm, out, result)
    _objective(spec.get("objective"), out, result)
    _counts(spec, algorithm, out, result)
    _early_stopping(spec.get("earlyStopping"), out, result)
    _collector(spec.get("metricsCollectorSpec"), out, result)
    _trial_template(spec.get("trialTemplate"), meta, out, result)
    if "resumePolicy" in spec:
        notes.append(("spec.resumePolicy", "not needed: a plan is always resumable (re-apply skips finished trials)"))
    warnings.extend(f"{where}: {text}" for where, text in result.notes if text.startswith(("not applied", "different")))
    out.pop("_collector", None)
    return result


def _number(value: Any, where: str, result: Translated, integer: bool = False) -> float | int | None:
    """Katib's feasibleSpace numbers are strings ("0.01"); YAML may give numbers too."""
    try:
        number = float(value) if not isinstance(value, bool) else math.nan
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number) or (integer and number != int(number)):
        result.errors.append(UserError(f"expected {'an integer' if integer else 'a number'}, got {value!r}", where=where))
        return None
    return int(number) if integer else number


def _algorithm(section: Any, out: dict[str, Any], result: Translated) -> str:
    if not isinstance(section, dict) or not isinstance(section.get("algorithmName"), str):
        result.errors.append(UserError("algorithm.algorithmName is required", where="spec.algorithm"))
        return "random"
    name = section["algorithmName"]
    where = "spec.algorithm.algorithmName"
    if name in REFUSED_ALGORITHMS:
        result.errors.append(UserError(f"{name} ({REFUSED_ALGORITHMS[name]}) is not one of hpt's searches", where=where,
                                       hint="use random, grid, tpe or hyperband"))
        return "random"
    if name not in ALGORITHMS:
        result.errors.append(UserError(f"unknown algorithm {name!r}", where=where,
                                       hint=f"one of {', '.join(ALGORITHMS)}"))
        return "random"
    method = ALGORITHMS[name]
    out["search"] = {"method": method}
    result.written["search.method"] = where
    said = {"bayesianoptimization": "tpe: Optuna's TPE, a different model-based sampler than Katib's Gaussian-process "
                                    "(scikit-optimize) one; same budget, different proposals",
            "multivariate-tpe": "tpe (hpt's TPE is multivariate)", "hyperband": "halving over the fidelities "
                                "resource_name gives (successive halving, one bracket: hpt runs no hyperband brackets)"}
    result.notes.append((where, said.get(name, method)))
    settings = section.get("algorithmSettings") or []
    for i, setting in enumerate(settings if isinstance(settings, list) else []):
        at = f"spec.algorithm.algorithmSettings[{i}]"
        if not isinstance(setting, dict):
            continue
        key, value = setting.get("name"), setting.get("value")
        if key == "random_state":
            seed = _number(value, at + ".value", result, integer=True)
            if seed is not None:
                out["search"]["seed"] = seed
                result.written["search.seed"] = at + ".value"
                result.notes.append((at, f"random_state → search.seed {seed}"))
        elif name == "hyperband" and key in ("resource_name", "eta", "r_l"):
            out.setdefault("_hyperband", {})[key] = (value, at)
        elif name in ("tpe", "multivariate-tpe") and key == "n_startup_trials":
            result.notes.append((at, "not applied: hpt's tpe draws its first batch at random (search.batch)"))
        else:
            result.notes.append((at, f"not applied: {key!r} has no counterpart in hpt's {method}"))
    return name


def _parameters(params: Any, algorithm: str, out: dict[str, Any], result: Translated) -> None:
    if not isinstance(params, list) or not params:
        result.errors.append(UserError("parameters: a list of {name, parameterType, feasibleSpace}", where="spec.parameters"))
        return
    found: dict[str, Any] = {}
    for i, param in enumerate(params):
        at = f"spec.parameters[{i}]"
        if not isinstance(param, dict) or not isinstance(param.get("name"), str):
            result.errors.append(UserError("a parameter needs a name", where=at))
            continue
        name, kind, space = param["name"], param.get("parameterType"), param.get("feasibleSpace") or {}
        if name in found:
            result.errors.append(UserError(f"{name!r} is given twice", where=f"{at}.name"))
            continue
        form = _parameter(name, kind, space, algorithm, at, result)
        if form is None:
            result.broken.add(name)   # its error is said; a reference to it is no second problem
        else:
            found[name] = form
            result.written[f"parameters.{name}"] = at
            result.notes.append((at, f"{name} ({kind}): {_describe(form)}"))
    out["parameters"] = found


def _describe(form: dict[str, Any]) -> str:
    if "values" in form:
        return f"values {form['values']}" if len(form["values"]) <= 12 else f"{len(form['values'])} values"
    if "value" in form:
        return f"fixed at {form['value']}"
    q = f", q {form['q']}" if "q" in form else ""
    return f"{form['distribution']} over [{form['min']}, {form['max']}]{q}"


def _parameter(name: str, kind: Any, space: dict[str, Any], algorithm: str, at: str, result: Translated) -> Any:
    where = f"{at}.feasibleSpace"
    if kind in ("categorical", "discrete"):
        items = space.get("list")
        if not isinstance(items, list) or not items:
            result.errors.append(UserError(f"a {kind} parameter needs feasibleSpace.list", where=where))
            return None
        if kind == "categorical":
            return {"values": [str(v) for v in items]}
        values = [_number(v, f"{where}.list[{j}]", result) for j, v in enumerate(items)]
        if any(v is None for v in values):
            return None
        ints = all(float(v) == int(v) and "." not in str(raw) for v, raw in zip(values, items))  # type: ignore[arg-type]
        return {"values": [int(v) if ints else v for v in values]}  # type: ignore[arg-type]
    if kind not in ("int", "double"):
        result.errors.append(UserError(f"parameterType {kind!r}: one of int, double, categorical, discrete",
                                       where=f"{at}.parameterType"))
        return None
    integer = kind == "int"
    low = _number(space.get("min"), f"{where}.min", result, integer)
    high = _number(space.get("max"), f"{where}.max", result, integer)
    if low is None or high is None:
        return None
    step = _number(space["step"], f"{where}.step", result, integer) if "step" in space else None
    distribution = space.get("distribution", "uniform")
    if distribution in ("normal", "logNormal"):
        result.errors.append(UserError(f"{distribution} over min/max: how Katib derives its mean and deviation depends on "
                                       "the suggestion service", where=f"{where}.distribution",
                                       hint="use uniform or logUniform, or a W&B sweep's normal with mu and sigma"))
        return None
    if distribution not in ("uniform", "logUniform"):
        result.errors.append(UserError(f"unknown distribution {distribution!r}", where=f"{where}.distribution"))
        return None
    if algorithm == "grid" or (low == high):
        step = step if step is not None else (1 if integer else None)
        if low == high:
            return {"value": low}
        if step is None:
            result.errors.append(UserError("grid needs feasibleSpace.step for a double parameter", where=where))
            return None
        if step <= 0 or (high - low) / step > MAX_GRID_STEPS:
            result.errors.append(UserError(f"step {step!r} gives no grid (or more than {MAX_GRID_STEPS:,} values)",
                                           where=f"{where}.step"))
            return None
        count = int(math.floor((high - low) / step + 1e-9)) + 1
        values = [low + k * step if integer else float(f"{low + k * step:.12g}") for k in range(count)]
        result.notes.append((where, f"grid values {values[0]} … {values[-1]} every {step} ({count} values), as Katib's "
                                    "grid lists them"))
        return {"values": values}
    log = distribution == "logUniform"
    if step is not None:
        if log:
            result.errors.append(UserError("a logUniform distribution with a step", where=f"{where}.step"))
            return None
        return {"distribution": "q-uniform", "min": low, "max": high, "q": step}
    if integer:
        return {"distribution": "int-uniform", "min": low, "max": high}
    return {"distribution": "log-uniform" if log else "uniform", "min": low, "max": high}


def _objective(section: Any, out: dict[str, Any], result: Translated) -> None:
    if not isinstance(section, dict) or not isinstance(section.get("objectiveMetricName"), str):
        result.errors.append(UserError("objective.objectiveMetricName is required", where="spec.objective"))
        return
    goal = section.get("type")
    if goal not in ("minimize", "maximize"):
        result.errors.append(UserError(f"objective.type {goal!r}: minimize or maximize", where="spec.objective.type"))
        return
    name = section["objectiveMetricName"]
    out["objective"] = {"metric": name, "goal": goal}
    result.written["objective.metric"] = "spec.objective.objectiveMetricName"
    result.written["objective.goal"] = "spec.objective.type"
    extra = section.get("additionalMetricNames") or []
    if extra:   # hpt's open metrics: any name; Katib gives a goal to the objective only
        out["metrics"] = [{"name": name, "goal": goal}] + [m for m in extra if m != name]
        result.written["metrics"] = "spec.objective.additionalMetricNames"
        result.notes.append(("spec.objective.additionalMetricNames", "reported beside the objective in every row"))
    if "goal" in section:   # Katib: once the objective reaches it, no more trials are tried
        target = _number(section["goal"], "spec.objective.goal", result)
        if target is not None:
            out.setdefault("search", {})["target"] = target
            result.written["search.target"] = "spec.objective.goal"
            result.notes.append(("spec.objective.goal", f"search.target {target:g}: once a trial's {name} reaches it, "
                                                        "apply starts no new trial (the running ones finish), as Katib "
                                                        "ends the Experiment"))
    if section.get("metricStrategies"):
        result.notes.append(("spec.objective.metricStrategies", "not applied: a row holds the metric the program reports last "
                                                               "(Katib's default is the best, by the objective's type)"))


def _counts(spec: dict[str, Any], algorithm: str, out: dict[str, Any], result: Translated) -> None:
    if "maxTrialCount" in spec:
        count = _number(spec["maxTrialCount"], "spec.maxTrialCount", result, integer=True)
        if count is not None and count >= 1:
            out.setdefault("search", {})["trials"] = count
            result.written["search.trials"] = "spec.maxTrialCount"
            result.notes.append(("spec.maxTrialCount", f"search.trials {count}" + (" (the configs at the cheapest fidelity)"
                                                                                  if algorithm == "hyperband" else "")))
    if "parallelTrialCount" in spec:
        result.notes.append(("spec.parallelTrialCount", f"run it with hpt apply --parallel {spec['parallelTrialCount']} "
                                                        "(hpt's parallelism is apply's, not the plan's)"))
    if "maxFailedTrialCount" in spec:
        result.notes.append(("spec.maxFailedTrialCount", "not applied: hpt runs every trial; failed ones are kept and "
                                                         "retried by the next apply"))
    hyper = out.pop("_hyperband", None)
    if algorithm != "hyperband":
        return
    hyper = hyper or {}
    value, at = hyper.get("resource_name", (None, "spec.algorithm.algorithmSettings"))
    params = out.get("parameters", {})
    if value is None:
        result.errors.append(UserError("hyperband needs its resource_name setting", where=at))
    elif str(value) not in params:
        result.errors.append(UserError(f"resource_name {value!r} is not one of the parameters", where=at))
    else:
        # hpt's rungs are fidelities (epochs, months) in the manifest's budget, and a Katib program takes its
        # resource as a parameter: until a rung's budget can be rendered into the command, every config runs
        # at the resource's largest value, drawn at random like Katib's first bracket.
        name = str(value)
        space = params[name]
        top = space.get("max", (space.get("values") or [space.get("value")])[-1]) if isinstance(space, dict) else space
        params[name] = {"value": top}
        out["search"]["method"] = "random"
        result.notes.append((at, f"not applied: hyperband's rungs over {name}: random search with {name} at its largest "
                                 f"value {top} (hpt's halving runs over fidelities in the manifest's budget, which a "
                                 "Katib program does not read)"))


def _early_stopping(section: Any, out: dict[str, Any], result: Translated) -> None:
    if not section:
        return
    name = section.get("algorithmName") if isinstance(section, dict) else None
    if name != "medianstop":
        result.errors.append(UserError(f"early stopping {name!r} is not one of hpt's", where="spec.earlyStopping.algorithmName",
                                       hint="medianstop"))
        return
    # Katib's settings (pkg/earlystopping/v1beta1/medianstop): min_trials_required (default 3), start_step
    # (default 4), strings like every Katib setting; hpt's rule median is the same rule with those names.
    stopping: dict[str, Any] = {"rule": "median"}
    items = section.get("algorithmSettings") or []
    for i, setting in enumerate(items if isinstance(items, list) else []):
        at = f"spec.earlyStopping.algorithmSettings[{i}]"
        if not isinstance(setting, dict):
            continue
        key = setting.get("name")
        if key not in ("min_trials_required", "start_step"):
            result.errors.append(UserError(f"unknown medianstop setting {key!r}", where=f"{at}.name",
                                           hint="min_trials_required or start_step"))
            continue
        value = _number(setting.get("value"), f"{at}.value", result, integer=True)
        if value is not None:
            stopping[key] = value
    from hpt.compiler.stopping import STOPPING

    try:
        settings = STOPPING.get("median").resolve(stopping, "spec.earlyStopping")
    except UserError as err:
        result.errors.append(err)
        return
    out.setdefault("search", {})["stopping"] = stopping
    result.written["search.stopping"] = "spec.earlyStopping"
    result.notes.append(("spec.earlyStopping", f"medianstop → search.stopping rule median (min_trials_required "
                                               f"{settings['min_trials_required']}, start_step {settings['start_step']}): "
                                               "a running trial whose best objective so far is worse than the median of "
                                               "the finished trials' running averages at that step is stopped, as Katib's "
                                               "medianstop does; its steps are the program's reports (its epoch=N pair, "
                                               "else their order)"))


def _strings(doc: Any, change: Any) -> Any:
    """`doc` with `change` applied to every string in it."""
    if isinstance(doc, str):
        return change(doc)
    if isinstance(doc, dict):
        return {k: _strings(v, change) for k, v in doc.items()}
    if isinstance(doc, list):
        return [_strings(v, change) for v in doc]
    return doc


def _collector(section: Any, out: dict[str, Any], result: Translated) -> None:
    """Katib's metrics collectors → hpt's `trainer.metrics_from` (the collector registry reads them)."""
    where = "spec.metricsCollectorSpec"
    section = section if isinstance(section, dict) else {}
    kind = (section.get("collector") or {}).get("kind", "StdOut")
    source = section.get("source") or {}
    filters = (source.get("filter") or {}).get("metricsFormat") or []
    path = (source.get("fileSystemPath") or {})
    if len(filters) > 1:
        result.errors.append(UserError("more than one filter regex: hpt's stdout collector takes one", where=f"{where}.source.filter"))
    if kind == "StdOut":
        out["_collector"] = {"format": "stdout", "regex": filters[0]} if filters else "stdout"
        result.notes.append((where, "StdOut: the program's name=value lines are its metrics, the last of each its value "
                                    "(Katib's latest)" + (f", with the filter {filters[0]}" if filters else "")))
    elif kind == "File" and path.get("format", "TEXT") == "JSON":
        out["_collector"] = {"format": "json-lines", "file": str(path.get("path", "metrics.json")).lstrip("/")}
        result.notes.append((where, f"different: File, JSON: one JSON object per line, read from {out['_collector']['file']} "
                                    "inside the trial's output folder ($HPT_TRIAL_OUTPUT), where Katib reads the "
                                    "container's own path: the program must write it there"))
    elif kind == "File":
        out["_collector"] = {"format": "stdout", "regex": filters[0]} if filters else "stdout"
        result.notes.append((where, "different: File, TEXT: name=value lines read from what the program prints, not "
                                    f"from {path.get('path', 'the file')} in the container: a program that only writes "
                                    "the file reports nothing"))
    elif kind == "TensorFlowEvent":
        out["_collector"] = "tensorboard"
        result.notes.append((where, "TensorFlowEvent: event files under the trial's output folder"))
    else:
        result.errors.append(UserError(f"metrics collector {kind!r} is not one hpt reads",
                                       where=f"{where}.collector.kind", hint="StdOut, File or TensorFlowEvent"))


def _trial_template(section: Any, meta: Any, out: dict[str, Any], result: Translated) -> None:
    where = "spec.trialTemplate"
    if not isinstance(section, dict):
        result.errors.append(UserError("trialTemplate is required: it is the program each trial runs", where=where))
        return
    if "configMap" in section:
        result.errors.append(UserError("a trial template in a ConfigMap is not read: hpt never reads the cluster at compile",
                                       where=f"{where}.configMap", hint="write the trialSpec into the Experiment"))
        return
    job = section.get("trialSpec")
    if not isinstance(job, dict) or job.get("apiVersion") != "batch/v1" or job.get("kind") != "Job":
        kind = f"{job.get('apiVersion')}/{job.get('kind')}" if isinstance(job, dict) else "none"
        result.errors.append(UserError(f"trialSpec {kind}: hpt runs batch/v1 Jobs", where=f"{where}.trialSpec",
                                       hint="a TFJob or PyTorchJob needs its operator; write the trial as a Job"))
        return
    containers = (((job.get("spec") or {}).get("template") or {}).get("spec") or {}).get("containers") or []
    primary = section.get("primaryContainerName")
    chosen = [c for c in containers if isinstance(c, dict) and (c.get("name") == primary or primary is None)]
    if not chosen:
        result.errors.append(UserError(f"no container named {primary!r} in the trialSpec", where=f"{where}.primaryContainerName"))
        return
    container = chosen[0]
    argv = [str(a) for a in (container.get("command") or []) + (container.get("args") or [])]
    if not argv:
        result.errors.append(UserError("the primary container has no command: hpt runs the command it is given",
                                       where=f"{where}.trialSpec"))
        return
    references: dict[str, str] = {}
    for i, tp in enumerate(section.get("trialParameters") or []):
        if isinstance(tp, dict) and isinstance(tp.get("name"), str):
            references[tp["name"]] = str(tp.get("reference", tp["name"]))
    params = set(out.get("parameters", {}))
    from hpt.compiler.macros import job_placeholders

    for macro in sorted(set(job_placeholders(job))):   # Katib renders them anywhere in the trialSpec
        if macro not in references:
            result.errors.append(UserError(f"${{trialParameters.{macro}}} names no trialParameter", where=f"{where}.trialSpec"))
        elif references[macro] not in params and references[macro] not in result.broken:
            result.errors.append(UserError(f"trialParameter {macro!r} refers to {references[macro]!r}: only parameters "
                                           "are read (Katib's ${trialSpec.Name}-style metadata references are not)",
                                           where=f"{where}.trialParameters"))
    # hpt renders ${trialParameters.NAME} by hyperparameter name: each trialParameter becomes its reference
    def by_reference(text: str) -> str:
        return MACRO.sub(lambda m: "${trialParameters.%s}" % references.get(m.group(1), m.group(1)), text)

    argv = [by_reference(a) for a in argv]
    collector = result.doc.pop("_collector", "stdout")
    trainer: dict[str, Any] = {"command": argv, "windows": False, "metrics_from": collector,
                               "job": _strings(job, by_reference), "container": str(container.get("name") or "trainer")}
    # A Katib trial image has no hpt inside: the backends run its container as it is and apply reads the metrics
    # from its log — what StdOut reads (File and TensorFlowEvent read files inside the container: hpt-trial
    # must be in the image for those, and the manifest says so by leaving collect out).
    if collector == "stdout" or (isinstance(collector, dict) and collector.get("format") == "stdout"):
        trainer["collect"] = "log"
    if isinstance(container.get("image"), str):
        trainer["image"] = container["image"]
    if isinstance(meta, dict) and isinstance(meta.get("name"), str):
        trainer["name"] = meta["name"]
    out["trainer"] = trainer
    result.written["trainer.command"] = f"{where}.trialSpec"
    result.notes.append((f"{where}.primaryContainerName", f"the trainer: {container.get('image')} running {' '.join(argv)}"
                         + ("; the image needs no hpt: docker runs this container, k8s the trialSpec Job, and apply "
                            "reads the metrics from its log" if trainer.get("collect") else
                            "; the image must contain hpt (hpt-trial reads the collector's files inside it)")))
    if section.get("successCondition") or section.get("failureCondition"):
        result.notes.append((f"{where}.successCondition", "a Job's own: hpt's row says done when the program exits 0"))
    if section.get("retain"):
        result.notes.append((f"{where}.retain", "not applied: the backend removes finished trial Jobs (their logs are in the store)"))
