"""Every module says what is public (`__all__`), and every name it lists exists, as httpx checks."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

PACKAGES = ("broker", "workers", "discord_bridge", "mjsim")
# Entry points run their work when imported as __main__ only; importing them is still safe.
MODULES = sorted(
    info.name
    for package in PACKAGES
    for info in pkgutil.walk_packages(importlib.import_module(package).__path__, f"{package}.")
)


@pytest.mark.parametrize("name", MODULES)
def test_module_lists_its_public_names_and_they_exist(name: str) -> None:
    module = importlib.import_module(name)
    if name.endswith("__main__"):
        return
    exported = getattr(module, "__all__", None)
    assert exported is not None, f"{name} has no __all__"
    assert sorted(exported) == sorted(set(exported)), f"{name}.__all__ repeats a name"
    missing = [n for n in exported if not hasattr(module, n)]
    assert not missing, f"{name}.__all__ names what it does not define: {missing}"


def test_imports_flow_one_way() -> None:
    """The bridge never imports workers nor the reverse; nothing imports mjsim (DESIGN.md §5)."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    forbidden = {"discord_bridge": {"workers", "mjsim"}, "workers": {"discord_bridge", "mjsim"},
                 "broker": {"workers", "discord_bridge", "mjsim"},
                 "mjsim": {"broker", "workers", "discord_bridge"}}  # fmt: skip
    offences = []
    for package, banned in forbidden.items():
        for path in (root / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                names = []
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    names = [node.module]
                offences += [f"{path.relative_to(root)}: {n}" for n in names if n.split(".")[0] in banned]
    assert offences == []
