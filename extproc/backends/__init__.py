"""Guardrail backends, registered by the ``litellm_params.guardrail`` names users write.

A name containing a dot (``my_module.MyGuardrail``) loads a custom class, as LiteLLM does.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from pathlib import Path

from extproc.backends.base import Guardrail
from extproc.config.litellm_integrations import not_run_here
from extproc.config.loader import ConfigError, GuardrailSpec
from extproc.vocabulary import Action, Finding

GuardrailFactory = Callable[[GuardrailSpec], Guardrail]
REGISTRY: dict[str, GuardrailFactory] = {}


def register(*names: str) -> Callable[[type[Guardrail]], type[Guardrail]]:
    def decorate(cls: type[Guardrail]) -> type[Guardrail]:
        for name in names:
            REGISTRY[name] = cls
        return cls

    return decorate


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
    if not (isinstance(factory, type) and issubclass(factory, Guardrail)):
        looks_like_litellm = any(hasattr(factory, hook) for hook in LITELLM_HOOKS)
        raise ConfigError(
            f"guardrail {spec.name!r}: {spec.guardrail!r} is not a subclass of "
            "extproc.backends.base.Guardrail" + (f"; {PORTING}" if looks_like_litellm else "")
        )
    return factory


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
    known = ", ".join(sorted(REGISTRY))
    elsewhere = not_run_here(spec.guardrail)
    if elsewhere:
        raise ConfigError(
            f"guardrail {spec.name!r}: litellm_params.guardrail {elsewhere} ({known})"
        )
    raise ConfigError(
        f"guardrail {spec.name!r}: unknown litellm_params.guardrail {spec.guardrail!r} "
        f"(known: {known})"
    )


# Modules that register built-in backends when imported (one line each).
BUILTIN_MODULES = (
    "aim",
    "azure_content_safety",
    "bedrock",
    "content_filter",
    "lakera",
    "litellm_names",
    "llm_guard",
    "openai_moderation",
    "pii",
    "presidio",
    "prompt_injection",
    "secrets",
    "webhook",
)


def _import_builtins() -> None:
    for module in BUILTIN_MODULES:
        importlib.import_module(f"extproc.backends.{module}")


__all__ = ["REGISTRY", "Action", "Finding", "Guardrail", "build", "register"]
