"""Backend registration: every module of extproc.backends registers itself when imported (no
list kept by hand), other packages register names through entry points, and a name nobody
registers is refused naming the known ones."""

from __future__ import annotations

import ast
import asyncio
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from extproc.backends import ENTRY_POINT_GROUP, build, register
from extproc.backends.base import Guardrail
from extproc.config import ConfigError, GuardrailSpec

BACKENDS = Path(__file__).resolve().parents[2] / "extproc" / "backends"


def declared_names() -> dict[str, str]:
    """Every name an ``@register(...)`` decorator in extproc/backends gives, -> its module."""
    names: dict[str, str] = {}
    for path in sorted(BACKENDS.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.ClassDef):
                continue
            for decorator in node.decorator_list:
                if isinstance(decorator, ast.Call) and getattr(decorator.func, "id", "") == (
                    "register"
                ):
                    for arg in decorator.args:
                        names[arg.value] = f"extproc.backends.{path.stem}"  # type: ignore[attr-defined]
    return names


def test_every_backend_module_is_registered_by_the_first_build() -> None:
    """In a fresh interpreter (here every test has imported backends already): one build
    registers every name declared anywhere in the package, each by its own module."""
    script = textwrap.dedent("""
        import json
        from extproc.backends import REGISTRY, build
        from extproc.config import GuardrailSpec
        build(GuardrailSpec("probe", "pii", ("pre_call",)))
        print(json.dumps({name: cls.__module__ for name, cls in REGISTRY.items()}))
    """)
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    registered = json.loads(result.stdout)
    declared = declared_names()
    assert len(declared) >= 19  # the decorators were found (the ast walk is not vacuous)
    assert registered == declared


def test_an_unknown_name_is_refused_naming_the_known_ones() -> None:
    with pytest.raises(ConfigError) as refused:
        build(GuardrailSpec("g", "piii", ("pre_call",)))
    message = str(refused.value)
    assert message.startswith("guardrail 'g': unknown litellm_params.guardrail 'piii' (known: ")
    assert all(name in message for name in declared_names())


def test_a_name_registered_twice_is_an_error_at_import() -> None:
    class Impostor(Guardrail):
        pass

    with pytest.raises(RuntimeError, match=r"'pii' is registered twice: by extproc\.backends\.pii"):
        register("pii")(Impostor)


# -- entry points: a guardrail another installed package registers by name -----------------


def install(root: Path, distribution: str, entries: dict[str, str], module: str = "") -> None:
    """A distribution as pip leaves it on sys.path: its dist-info with entry_points.txt, and
    (optionally) a module of its own."""
    info = root / f"{distribution.replace('-', '_')}-1.0.dist-info"  # as pip names it
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {distribution}\nVersion: 1.0\n")
    lines = [f"[{ENTRY_POINT_GROUP}]", *(f"{name} = {value}" for name, value in entries.items())]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    if module:
        (root / f"{distribution.replace('-', '_')}.py").write_text(textwrap.dedent(module))


PLUGIN = """
    from extproc.backends.base import INPUT, Action, Capabilities, Finding, Guardrail

    class Codenames(Guardrail):
        capabilities = Capabilities(pure=True)

        async def check(self, texts, context=INPUT):
            return [
                Finding(i, t.index("kumquat"), t.index("kumquat") + 7, "CODENAME", Action.BLOCK)
                for i, t in enumerate(texts)
                if "kumquat" in t
            ]

    class NotAGuardrail:
        pass
"""


def test_an_installed_package_registers_a_guardrail_by_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install(
        tmp_path,
        "acme-guards",
        {"acme_codenames": "acme_guards:Codenames", "acme_wrong": "acme_guards:NotAGuardrail"},
        PLUGIN,
    )
    install(tmp_path, "acme-broken", {"acme_broken": "acme_broken_missing:Nothing"})
    monkeypatch.syspath_prepend(str(tmp_path))
    guardrail = build(GuardrailSpec("g", "acme_codenames", ("pre_call",)))
    assert type(guardrail).__name__ == "Codenames" and guardrail.capabilities.pure
    found = asyncio.run(guardrail.check(["a kumquat"]))
    assert [(f.type, f.start) for f in found] == [("CODENAME", 2)]
    with pytest.raises(ConfigError, match="'acme_wrong' is not a subclass of"):
        build(GuardrailSpec("g", "acme_wrong", ("pre_call",)))
    with pytest.raises(ConfigError, match=r"cannot load 'acme_broken' registered by acme-broken"):
        build(GuardrailSpec("g", "acme_broken", ("pre_call",)))
    with pytest.raises(ConfigError, match=r"known: .*acme_codenames"):
        build(GuardrailSpec("g", "acme_nothing", ("pre_call",)))


def test_a_name_two_packages_register_is_refused_and_builtins_win(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install(tmp_path, "acme-one", {"acme_codenames": "acme_one:Codenames"}, PLUGIN)
    install(tmp_path, "acme-two", {"acme_codenames": "acme_two:Codenames", "pii": "x:Y"}, PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError, match=r"2 installed packages register .*acme-one"):
        build(GuardrailSpec("g", "acme_codenames", ("pre_call",)))
    assert type(build(GuardrailSpec("g", "pii", ("pre_call",)))).__module__ == (
        "extproc.backends.pii"
    )
