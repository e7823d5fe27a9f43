"""The plugin contract: hook specifications every backbone-hub plugin may implement.

A plugin is a module (or object) exposed through the ``backbone_hub`` entry-point
group. It implements any of the hooks below, marked with :data:`hub.hookimpl`::

    # my_plugin.py
    import hub

    @hub.hookimpl
    def register_providers(register):
        register(MyProvider())

    @hub.hookimpl
    def register_manifests(register):
        register(Path(__file__).parent / "manifests")

and declares it in its ``pyproject.toml``::

    [project.entry-points.backbone_hub]
    my_plugin = "my_plugin"

Hooks receive a ``register`` callback: the plugin calls back, the core owns
validation, de-duplication and the catalogue. A hook that raises, or registers an
object of the wrong type, is reported by ``hub plugins`` and skipped; the other
plugins keep working. Hooks are grouped by when the core calls them:
discovery of providers, of manifests, then of weight converters.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from hub.provider import Provider

__all__ = ["PROJECT_NAME", "hookimpl", "hookspec", "register_converters", "register_manifests",
           "register_providers"]

PROJECT_NAME = "backbone_hub"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
#: Marker for hook implementations in plugins: ``@hub.hookimpl``.
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


# -------------------------------------------------------------------------------------------------
# Providers
# -------------------------------------------------------------------------------------------------
@hookspec
def register_providers(register: Callable[[Provider], None]) -> None:
    """Register the providers this plugin implements.

    A provider turns a manifest entry plus verified weights into a
    :class:`hub.Backbone`. Its ``name`` is what manifests put in ``provider:``.

    :param register:
        Call ``register(provider)`` once per :class:`hub.provider.Provider` instance.
        Registering a name another plugin already registered is an error that
        names both plugins.

    The return value is ignored. Called once each time the catalogue is built.
    The hook must not import heavy libraries (torch, timm, transformers): import
    them inside the provider's ``build`` method.
    """


# -------------------------------------------------------------------------------------------------
# Manifests
# -------------------------------------------------------------------------------------------------
@hookspec
def register_manifests(register: Callable[[Path], None]) -> None:
    """Register manifest files contributed by this plugin.

    :param register:
        Call ``register(path)`` with a YAML manifest file, or with a directory:
        every ``*.yaml`` / ``*.yml`` file directly inside it is read. Files are
        parsed with a safe YAML loader and validated against the schema in
        :mod:`hub.manifest`; an invalid file is reported against this plugin and
        skipped.

    The return value is ignored.
    """


# -------------------------------------------------------------------------------------------------
# Weight converters
# -------------------------------------------------------------------------------------------------
@hookspec
def register_converters(register: Callable[[str, Callable[[dict[str, Any]], dict[str, Any]]], None]) -> None:
    """Register named state-dict converters for foreign checkpoint key layouts.

    :param register:
        Call ``register(name, fn)``. ``fn`` takes a state dict (``str -> torch.Tensor``)
        loaded from a checkpoint and returns the state dict in the layout the
        provider's architecture expects. A manifest's weight variant names the
        converter in ``converter:``; it runs once, when the checkpoint is
        converted to safetensors, never at load time.

    The return value is ignored.
    """
