"""The spec's `kubernetes` section: the one rule set it is validated by, at compile time.

`ClusterSettings.parse` checks the section (apimachinery's validation, as regular expressions) and returns
the typed settings; the compiler calls it, and the Kubernetes backend trusts what a compiled plan holds.
The predicates below are also what the rendered objects are checked with (executor/backends/kubernetes/render.py).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from hpt.schemas.errors import UserError

# Environment the container gets from hpt; env_from_secrets may not shadow these.
RESERVED_ENV = {"HPT_MANIFEST", "HPT_RESULTS", "HPT_TRIAL_ID", "HPT_ATTEMPT", "HPT_TRIAL_TICKET", "HOME", "TMPDIR",
                "XDG_CACHE_HOME", "TORCH_HOME", "MPLCONFIGDIR", "PYTHONDONTWRITEBYTECODE"}

# -- what the OpenAPI schemas do not check (apimachinery's validation, as regular expressions) ---
# Anchored with \Z, not $: Python's $ also matches before a trailing newline ("default\n").
DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?\Z")                        # ≤ 63
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\Z")  # ≤ 253
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?\Z")            # ≤ 63
QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]\Z")            # ≤ 63
ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*\Z")                                # what Kubernetes accepts
ENV_VAR_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\Z")       # what a spec may name: a shell can read it too
SECRET_KEY = re.compile(r"^[-._a-zA-Z0-9]+\Z")
QUANTITY = re.compile(r"^[+]?(\d+(\.\d*)?|\.\d+)(([KMGTPE]i)|[numkMGTPE]|([eE][+-]?\d+))?\Z")
TOLERATION_OPERATORS = {"Exists", "Equal"}
TAINT_EFFECTS = {"NoSchedule", "PreferNoSchedule", "NoExecute"}

SETTINGS_KEYS = {"namespace", "nodeSelector", "tolerations", "serviceAccountName", "imagePullSecrets",
                 "priorityClassName", "env_from_secrets"}


def is_dns1123_label(value: Any) -> bool:
    return isinstance(value, str) and len(value) <= 63 and bool(DNS1123_LABEL.match(value))


def is_dns1123_subdomain(value: Any) -> bool:
    return isinstance(value, str) and len(value) <= 253 and bool(DNS1123_SUBDOMAIN.match(value))


def is_label_value(value: Any) -> bool:
    return isinstance(value, str) and len(value) <= 63 and bool(LABEL_VALUE.match(value))


def is_qualified_name(key: Any) -> bool:
    """A label or annotation key: [prefix/]name, prefix a DNS subdomain, name ≤ 63."""
    if not isinstance(key, str):
        return False
    prefix, slash, name = key.rpartition("/")
    if slash and not is_dns1123_subdomain(prefix):
        return False
    return len(name) <= 63 and bool(QUALIFIED_NAME.match(name))


def is_quantity(value: Any) -> bool:
    return isinstance(value, str) and bool(QUANTITY.match(value))


# -- cluster settings from the spec's kubernetes section ------------------------------------------
@dataclass(frozen=True)
class ClusterSettings:
    namespace: str | None = None
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: list[dict[str, Any]] = field(default_factory=list)
    service_account_name: str | None = None
    image_pull_secrets: list[str] = field(default_factory=list)
    priority_class_name: str | None = None
    env_from_secrets: list[dict[str, str]] = field(default_factory=list)

    @classmethod
    def parse(cls, section: Mapping[str, Any] | None, where: str = "kubernetes") -> "ClusterSettings":
        """Validate the spec's kubernetes section; UserError names the first bad field."""
        section = dict(section or {})
        unknown = sorted(set(section) - SETTINGS_KEYS)
        if unknown:
            raise UserError(f"unknown field {unknown[0]!r}", where=where, hint=f"known: {', '.join(sorted(SETTINGS_KEYS))}")

        namespace = section.get("namespace")
        if namespace is not None and not is_dns1123_label(namespace):
            raise UserError(f"{namespace!r} is not a valid namespace (lowercase letters, digits, '-', ≤ 63)", where=f"{where}.namespace")

        node_selector = section.get("nodeSelector") or {}
        if not isinstance(node_selector, dict):
            raise UserError("must be a map of label → value", where=f"{where}.nodeSelector")
        for key, value in node_selector.items():
            if not is_qualified_name(key):
                raise UserError(f"{key!r} is not a valid label key", where=f"{where}.nodeSelector")
            if not is_label_value(value):
                raise UserError(f"{value!r} is not a valid label value (≤ 63 of [A-Za-z0-9-_.])", where=f"{where}.nodeSelector.{key}")

        tolerations = section.get("tolerations") or []
        if not isinstance(tolerations, list):
            raise UserError("must be a list", where=f"{where}.tolerations")
        for i, tol in enumerate(tolerations):
            check_toleration(tol, f"{where}.tolerations[{i}]")

        service_account = section.get("serviceAccountName")
        if service_account is not None and not is_dns1123_subdomain(service_account):
            raise UserError(f"{service_account!r} is not a valid service account name", where=f"{where}.serviceAccountName")

        raw_pull = section.get("imagePullSecrets") or []
        if not isinstance(raw_pull, list):
            raise UserError("must be a list of secret names", where=f"{where}.imagePullSecrets")
        for i, item in enumerate(raw_pull):
            name = item.get("name") if isinstance(item, dict) else item
            if not is_dns1123_subdomain(name):
                raise UserError(f"{name!r} is not a valid secret name", where=f"{where}.imagePullSecrets[{i}]")

        priority = section.get("priorityClassName")
        if priority is not None and not is_dns1123_subdomain(priority):
            raise UserError(f"{priority!r} is not a valid priority class name", where=f"{where}.priorityClassName")

        raw_env = section.get("env_from_secrets") or []
        if not isinstance(raw_env, list):
            raise UserError("must be a list of {name, secret, key}", where=f"{where}.env_from_secrets")
        seen: set[str] = set()
        for i, item in enumerate(raw_env):
            at = f"{where}.env_from_secrets[{i}]"
            if not isinstance(item, dict) or set(item) != {"name", "secret", "key"}:
                raise UserError("must be {name, secret, key}: an env var filled from one key of a Secret", where=at,
                                hint="secret values never go into a spec")
            if not (isinstance(item["name"], str) and ENV_VAR_NAME.match(item["name"])):
                raise UserError(f"{item['name']!r} is not a valid environment variable name", where=f"{at}.name")
            if item["name"] in RESERVED_ENV or item["name"] in seen:
                raise UserError(f"{item['name']!r} is set by hpt or listed twice", where=f"{at}.name")
            if not is_dns1123_subdomain(item["secret"]):
                raise UserError(f"{item['secret']!r} is not a valid secret name", where=f"{at}.secret")
            if not (isinstance(item["key"], str) and len(item["key"]) <= 253 and SECRET_KEY.match(item["key"])):
                raise UserError(f"{item['key']!r} is not a valid secret key", where=f"{at}.key")
            seen.add(item["name"])

        return cls.trusted(section)

    @classmethod
    def trusted(cls, section: Mapping[str, Any] | None) -> "ClusterSettings":
        """The settings of a section `parse` has accepted (a compiled manifest's): built, not checked again."""
        section = section or {}
        return cls(namespace=section.get("namespace"), node_selector=dict(section.get("nodeSelector") or {}),
                   tolerations=[dict(t) for t in section.get("tolerations") or []],
                   service_account_name=section.get("serviceAccountName"),
                   image_pull_secrets=[s["name"] if isinstance(s, dict) else s for s in section.get("imagePullSecrets") or []],
                   priority_class_name=section.get("priorityClassName"),
                   env_from_secrets=[{"name": e["name"], "secret": e["secret"], "key": e["key"]}
                                     for e in section.get("env_from_secrets") or []])


def check_toleration(tol: Any, where: str) -> None:
    if not isinstance(tol, dict):
        raise UserError("must be a map with key, operator, value, effect, tolerationSeconds", where=where)
    unknown = sorted(set(tol) - {"key", "operator", "value", "effect", "tolerationSeconds"})
    if unknown:
        raise UserError(f"unknown field {unknown[0]!r}", where=where)
    operator = tol.get("operator", "Equal")
    if operator not in TOLERATION_OPERATORS:
        raise UserError(f"operator must be Exists or Equal, not {operator!r}", where=f"{where}.operator")
    if "key" in tol and not (tol["key"] == "" or is_qualified_name(tol["key"])):
        raise UserError(f"{tol['key']!r} is not a valid taint key", where=f"{where}.key")
    if operator == "Exists" and tol.get("value"):
        raise UserError("a toleration with operator Exists has no value", where=f"{where}.value")
    if "value" in tol and not is_label_value(tol["value"]):
        raise UserError(f"{tol['value']!r} is not a valid taint value", where=f"{where}.value")
    if "effect" in tol and tol["effect"] not in TAINT_EFFECTS | {""}:
        raise UserError(f"effect must be one of {', '.join(sorted(TAINT_EFFECTS))}, not {tol['effect']!r}", where=f"{where}.effect")
    seconds = tol.get("tolerationSeconds")
    if seconds is not None:
        if not isinstance(seconds, int) or isinstance(seconds, bool):
            raise UserError("must be a whole number of seconds", where=f"{where}.tolerationSeconds")
        if tol.get("effect") != "NoExecute":
            raise UserError("tolerationSeconds applies only to effect NoExecute", where=f"{where}.tolerationSeconds")
