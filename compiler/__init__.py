"""hpt.compiler — spec → plan: loading and validation, defaults, date ranges, search, plan writing.

Imports only hpt.schemas and hpt.results (the dataset descriptor); never torch, never the executor.
"""
from __future__ import annotations

from hpt.compiler.pipeline import CompileOptions, CompileResult, compile_spec

__all__ = ["CompileOptions", "CompileResult", "compile_spec"]
