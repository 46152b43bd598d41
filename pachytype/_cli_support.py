"""Helpers the CLI commands share: loading a registry named `MODULE:ATTRIBUTE`."""

from __future__ import annotations

import importlib
import os
import sys

import click

from pachytype._registry import Registry


def load_registry(target: str, param_hint: str = "MODULE:REGISTRY") -> Registry:
    """Import `MODULE:ATTRIBUTE` (from the current directory too); it must be a Registry."""
    module_name, _, attribute = target.partition(":")
    if not module_name or not attribute:
        raise click.BadParameter(
            f"{target!r} is not MODULE:REGISTRY; for example examples.bank.refs:REGISTRY",
            param_hint=param_hint,
        )
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise click.BadParameter(
            f"cannot import {module_name!r} ({error}); run from the project's root directory",
            param_hint=param_hint,
        ) from error
    registry = getattr(module, attribute, None)
    if not isinstance(registry, Registry):
        raise click.BadParameter(
            f"{target!r} is not a pachytype Registry (got {type(registry).__name__}); point "
            f"at the REGISTRY of a generated refs.py",
            param_hint=param_hint,
        )
    return registry
