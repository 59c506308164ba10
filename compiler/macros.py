"""A command template → the argv of one trial: W&B's sweep macros and Katib's trial parameters, rendered as they do.

    >>> render_command(["${env}", "${interpreter}", "train.py", "${args}"], {"lr": 0.001, "tanh": True},
    ...                program="train.py")
    ['/usr/bin/env', 'python', 'train.py', '--lr=0.001', '--tanh=True']
    >>> render_command(["python", "train.py", "--lr=${trialParameters.lr}"], {"lr": 1e-05})
    ['python', 'train.py', '--lr=1e-05']

W&B (its agent is the definition: wandb/sdk/launch/sweeps/utils.py create_sweep_command_args, and the agent's
command loop): a macro is a whole argv word `${name}`, replaced by zero or more words —
  ${env}                    /usr/bin/env
  ${interpreter}            python (hpt-trial runs it as its own interpreter, as it does a first word python)
  ${program}                the trainer's `program`
  ${args}                   --name=value for every hyperparameter, value as Python's str() writes it
                            (True, 0.001, 1e-05, [1, 2], relu)
  ${args_no_hyphens}        name=value
  ${args_no_boolean_flags}  --name=value, but a bool as --name when true and nothing when false
  ${args_json}              one word: json.dumps of {name: value}
  ${args_json_file}         one word: the path of a file holding that JSON, written by hpt-trial before the
                            program starts (the manifest keeps the token, hpt.schemas.protocol.ARGS_JSON_FILE)
Katib: `${trialParameters.NAME}` anywhere inside a word is replaced by NAME's value as a string (Katib's
parameter assignments are strings: a number as Python's str() writes it, a bool as true / false).
Hyperparameters appear in the manifest's `params` order (sorted by name). An unknown macro or parameter is a
compile error (W&B's agent would silently drop an unknown macro word).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

from hpt.schemas.errors import UserError
from hpt.schemas.protocol import ARGS_JSON_FILE, nested_params

ENV = "/usr/bin/env"
INTERPRETER = "python"
ARGS_MACROS = ("args", "args_no_hyphens", "args_no_boolean_flags", "args_json", "args_json_file")
MACROS = ("env", "interpreter", "program", *ARGS_MACROS)
_WORD_MACRO = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}\Z")
_TRIAL_PARAMETER = re.compile(r"\$\{trialParameters\.([^{}]+)\}")


@dataclass(frozen=True)
class CommandUse:
    """What a command template passes to its program: W&B macros (whole words) and Katib placeholders."""
    macros: tuple[str, ...] = ()
    placeholders: tuple[str, ...] = ()        # trialParameters names, in order of appearance
    unknown: tuple[str, ...] = field(default=())   # ${word} macros neither W&B nor Katib has

    @property
    def templated(self) -> bool:
        """The command is a template (a macro or a placeholder appears): the manifest gets the rendered argv."""
        return bool(self.macros or self.placeholders or self.unknown)

    @property
    def passes_all(self) -> bool:
        """Every hyperparameter reaches the program (an ${args…} macro)."""
        return any(m in ARGS_MACROS for m in self.macros)

    def passes(self, name: str) -> bool:
        return self.passes_all or name in self.placeholders


def command_use(template: Sequence[str]) -> CommandUse:
    macros, placeholders, unknown = [], [], []
    for word in template:
        whole = _WORD_MACRO.match(word)
        if whole:
            (macros if whole.group(1) in MACROS else unknown).append(whole.group(1))
            continue
        placeholders += _TRIAL_PARAMETER.findall(word)
    return CommandUse(tuple(macros), tuple(dict.fromkeys(placeholders)), tuple(unknown))


def check_command(template: Sequence[str], names: Iterable[str], *, program: str = "",
                  where: str = "trainer.command") -> CommandUse:
    """The template's macros and placeholders, each known: UserError naming the first word that is not."""
    use = command_use(template)
    known = set(names)
    for i, word in enumerate(template):
        whole = _WORD_MACRO.match(word)
        if whole and whole.group(1) not in MACROS:
            raise UserError(f"unknown macro ${{{whole.group(1)}}}", where=f"{where}[{i}]",
                            hint="W&B's macros: " + ", ".join(f"${{{m}}}" for m in MACROS)
                                 + "; Katib's ${trialParameters.NAME}")
        if whole and whole.group(1) == "program" and not program:
            raise UserError("${program} needs the trainer's \"program\"", where=f"{where}[{i}]",
                            hint='add "program": "train.py" to the trainer section')
        for name in _TRIAL_PARAMETER.findall(word):
            if name not in known:
                from hpt.compiler.paths import did_you_mean

                raise UserError(f"${{trialParameters.{name}}}: no hyperparameter {name!r}", where=f"{where}[{i}]",
                                hint=did_you_mean(name, sorted(known)))
    return use


def wandb_value(value: Any) -> str:
    """A value as W&B's agent writes it into `--name=value`: Python's str() (True, 0.001, 1e-05, [1, 2])."""
    return f"{value}"


def katib_value(value: Any) -> str:
    """A value as a Katib trial parameter: a string; bools as true / false (Katib has no bool type, a
    categorical of "true"/"false" is how such specs spell one), numbers as Python's str() writes them."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return f"{value}"


def args_json(params: Mapping[str, Any]) -> str:
    """${args_json}: W&B's json.dumps of the parameters (default separators), nested parameters nested
    again (hpt.schemas.protocol.nested_params)."""
    return json.dumps(nested_params(dict(params)))


def macro_words(params: Mapping[str, Any], program: str = "") -> dict[str, list[str]]:
    """Each W&B macro → the words it stands for (create_sweep_command_args' table)."""
    flags, no_hyphens, no_booleans = [], [], []
    for name, value in params.items():
        flag = f"{name}={wandb_value(value)}"
        flags.append("--" + flag)
        no_hyphens.append(flag)
        if isinstance(value, bool):
            if value:
                no_booleans.append("--" + name)
        else:
            no_booleans.append("--" + flag)
    return {"env": [ENV], "interpreter": [INTERPRETER], "program": [program] if program else [], "args": flags,
            "args_no_hyphens": no_hyphens, "args_no_boolean_flags": no_booleans, "args_json": [args_json(params)],
            "args_json_file": [ARGS_JSON_FILE]}


def job_placeholders(job: Any) -> list[str]:
    """Every ${trialParameters.NAME} in a Job's strings (Katib renders them anywhere in the trialSpec)."""
    if isinstance(job, str):
        return _TRIAL_PARAMETER.findall(job)
    items = job.values() if isinstance(job, dict) else job if isinstance(job, list) else ()
    return [name for item in items for name in job_placeholders(item)]


def render_job(job: Any, params: Mapping[str, Any]) -> Any:
    """A Katib trialSpec with every ${trialParameters.NAME} replaced by NAME's value, as Katib renders it."""
    if isinstance(job, str):
        return _TRIAL_PARAMETER.sub(lambda m: katib_value(params[m.group(1)]), job)
    if isinstance(job, dict):
        return {k: render_job(v, params) for k, v in job.items()}
    if isinstance(job, list):
        return [render_job(v, params) for v in job]
    return job


def render_command(template: Sequence[str], params: Mapping[str, Any], *, program: str = "") -> list[str]:
    """The argv one trial runs: every macro and placeholder replaced (check_command first for good errors)."""
    words = macro_words(params, program)
    out: list[str] = []
    for word in template:
        whole = _WORD_MACRO.match(word)
        if whole and whole.group(1) in words:
            out += words[whole.group(1)]
            continue
        out.append(_TRIAL_PARAMETER.sub(lambda m: katib_value(params[m.group(1)]), word))
    return out
