"""Guardrail backends, registered by the ``litellm_params.guardrail`` names users write.

Each module of this package registers its backends with ``@register(name, ...)`` when it is
imported, and every module is imported (found with ``pkgutil``, no list kept by hand). Another
installed package registers a guardrail by name with an entry point in the
``extproc.guardrails`` group (``my_check = "my_package.guards:MyCheck"``); a built-in name
wins. A name containing a dot (``my_module.MyGuardrail``) loads a custom class, as LiteLLM does.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
import sys
from collections.abc import Callable
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path

from extproc.backends.base import Guardrail
from extproc.config.litellm_integrations import not_run_here
from extproc.config.loader import ConfigError, GuardrailSpec
from extproc.vocabulary import Action, Finding

GuardrailFactory = Callable[[GuardrailSpec], Guardrail]
REGISTRY: dict[str, GuardrailFactory] = {}
ENTRY_POINT_GROUP = "extproc.guardrails"


def register(*names: str) -> Callable[[type[Guardrail]], type[Guardrail]]:
    """Make a class the backend of ``litellm_params.guardrail: <name>`` for each name; one
    name, one class (two modules claiming a name is a bug, found at import)."""

    def decorate(cls: type[Guardrail]) -> type[Guardrail]:
        for name in names:
            known = REGISTRY.get(name)
            if known is not None and _qualified(known) != _qualified(cls):
                raise RuntimeError(
                    f"guardrail name {name!r} is registered twice: by {_qualified(known)} "
                    f"and by {_qualified(cls)}"
                )
            REGISTRY[name] = cls
        return cls

    return decorate


def _qualified(factory: object) -> str:
    return f"{getattr(factory, '__module__', '?')}.{getattr(factory, '__qualname__', factory)}"


def _load_custom(spec: GuardrailSpec, config_dir: Path | None) -> GuardrailFactory:
    """Import ``module.ClassName``, looking beside the config file first (as LiteLLM does)."""
    module_name, _, class_name = spec.guardrail.rpartition(".")
    search = [str(config_dir)] if config_dir else []
    try:
        sys.path[:0] = search
        try:
            module = importlib.import_module(module_name)
        finally:
            del sys.path[: len(search)]
        factory = getattr(module, class_name)
    except ImportError as error:
        if (error.name or "").split(".")[0] == "litellm":
            raise ConfigError(
                f"guardrail {spec.name!r}: {spec.guardrail!r} is a LiteLLM CustomGuardrail (it "
                f"imports {error.name}, which this service does not run); {PORTING}"
            ) from None
        where = f" (looked beside the config, in {config_dir})" if config_dir else ""
        raise ConfigError(
            f"guardrail {spec.name!r}: cannot load custom guardrail {spec.guardrail!r}: "
            f"{error}{where}; a LiteLLM CustomGuardrail is ported as README's \"Porting a "
            'LiteLLM custom guardrail" shows'
        ) from None
    except AttributeError as error:
        raise ConfigError(
            f"guardrail {spec.name!r}: cannot load custom guardrail {spec.guardrail!r}: {error}"
        ) from None
    return _guardrail_class(spec, factory)


def _guardrail_class(spec: GuardrailSpec, factory: object) -> GuardrailFactory:
    if not (isinstance(factory, type) and issubclass(factory, Guardrail)):
        looks_like_litellm = any(hasattr(factory, hook) for hook in LITELLM_HOOKS)
        raise ConfigError(
            f"guardrail {spec.name!r}: {spec.guardrail!r} is not a subclass of "
            "extproc.backends.base.Guardrail" + (f"; {PORTING}" if looks_like_litellm else "")
        )
    return factory


def _from_entry_point(spec: GuardrailSpec) -> GuardrailFactory | None:
    """The class another installed package registers under this name, if one does."""
    found = list(entry_points(group=ENTRY_POINT_GROUP, name=spec.guardrail))
    if not found:
        return None
    if len(found) > 1:
        claims = ", ".join(sorted(_origin(entry) for entry in found))
        raise ConfigError(
            f"guardrail {spec.name!r}: {len(found)} installed packages register the guardrail "
            f"name {spec.guardrail!r} ({claims}); uninstall all but one, or name the class "
            "itself (guardrail: module.ClassName)"
        )
    (entry,) = found
    try:
        factory = entry.load()
    except Exception as error:
        raise ConfigError(
            f"guardrail {spec.name!r}: cannot load {spec.guardrail!r} registered by "
            f"{_origin(entry)}: {type(error).__name__}: {error}"
        ) from None
    return _guardrail_class(spec, factory)


def _origin(entry: EntryPoint) -> str:
    distribution = entry.dist.name if entry.dist is not None else "an installed package"
    return f"{distribution} ({entry.value})"


# A LiteLLM CustomGuardrail's hooks: seen on a class, it was written for LiteLLM.
LITELLM_HOOKS = (
    "async_pre_call_hook",
    "async_moderation_hook",
    "async_post_call_success_hook",
    "apply_guardrail",
)
PORTING = (
    "port it: subclass extproc.backends.base.Guardrail and implement "
    "`async def scan(self, texts) -> list[Finding]` (README: Porting a LiteLLM custom guardrail)"
)


def build(spec: GuardrailSpec, config_dir: Path | None = None) -> Guardrail:
    _import_builtins()
    if spec.guardrail in REGISTRY:
        return REGISTRY[spec.guardrail](spec)
    if "." in spec.guardrail:
        return _load_custom(spec, config_dir)(spec)
    plugin = _from_entry_point(spec)
    if plugin is not None:
        return plugin(spec)
    known = ", ".join(sorted({*REGISTRY, *entry_points(group=ENTRY_POINT_GROUP).names}))
    elsewhere = not_run_here(spec.guardrail)
    if elsewhere:
        raise ConfigError(
            f"guardrail {spec.name!r}: litellm_params.guardrail {elsewhere} ({known})"
        )
    raise ConfigError(
        f"guardrail {spec.name!r}: unknown litellm_params.guardrail {spec.guardrail!r} "
        f"(known: {known})"
    )


@functools.cache
def _import_builtins() -> None:
    """Import every module of this package (each registers its backends as it is imported):
    a new backend module is found without a list to update."""
    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")


__all__ = ["ENTRY_POINT_GROUP", "REGISTRY", "Action", "Finding", "Guardrail", "build", "register"]
