"""The layering of docs/ARCHITECTURE.md, checked on the source tree (static: nothing is imported).

* core (``amsgrad.core``): the standard library, NumPy and other core modules only;
* adapters (``amsgrad.adapters``): core, their framework, and other adapters' public names;
* apps (``amsgrad.apps``): anything of amsgrad; nothing in amsgrad imports an app but the CLI
  entry points (``amsgrad.__main__`` and other apps);
* no module imports another module's private name (``_name``), nor reaches one through an
  imported module (``module._name``); the exceptions are the compiled extensions, imported by
  their one user (``amsgrad.core._native`` by the kernel dispatcher, ``amsgrad.apps._roofline``
  by the benchmark worker);
* docs/ARCHITECTURE.md lists every source file of the package, and nothing else.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "src" / "amsgrad"
ARCHITECTURE = ROOT / "docs" / "ARCHITECTURE.md"

# Third-party packages each layer may import (the standard library is always allowed).
CORE_THIRD_PARTY = {"numpy"}
ADAPTER_THIRD_PARTY = {"numpy", "torch", "jax", "jaxlib", "optax", "triton"}
# The benchmark suite times its peers, TensorFlow and MindSpore among them.
APP_THIRD_PARTY = {"numpy", "matplotlib", "tensorflow", "mindspore"}
# Imports of a private module allowed by name: (importing module, imported module).
PRIVATE_MODULE_IMPORTS = {
    ("amsgrad.core.kernel", "amsgrad.core._native"),
    ("amsgrad.apps.bench_worker", "amsgrad.apps._roofline"),
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer(module: str) -> str:
    parts = module.split(".")
    if len(parts) >= 2 and parts[1] in ("core", "adapters", "apps"):
        return parts[1]
    return "entry"  # amsgrad/__init__.py and the public re-export modules


def sources() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def imports(path: Path) -> list[tuple[str, list[str], int]]:
    """Every import in the file (top level or inside functions): (module, names, line)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = (
        module_name(path) if path.name == "__init__.py" else module_name(path).rsplit(".", 1)[0]
    )
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((alias.name, [], node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            names = [alias.name for alias in node.names]
            found.append((base, names, node.lineno))
    return found


# The public methods of named tuples, whose names start with an underscore.
NAMEDTUPLE_API = {"_make", "_replace", "_asdict", "_fields", "_field_defaults"}


def is_private(name: str) -> bool:
    dunder = name.startswith("__") and name.endswith("__")
    return name.startswith("_") and not dunder and name not in NAMEDTUPLE_API


def resolved_targets(base: str, names: list[str]) -> list[str]:
    """The amsgrad modules an import statement depends on (``from amsgrad.core import x``
    depends on ``amsgrad.core.x`` when that is a module, else on ``amsgrad.core``)."""
    if not names:
        return [base]
    targets = []
    for name in names:
        candidate = f"{base}.{name}"
        relative = Path(*candidate.split("."))
        if (PACKAGE.parent / relative).with_suffix(".py").exists() or (
            PACKAGE.parent / relative / "__init__.py"
        ).exists():
            targets.append(candidate)
        else:
            targets.append(base)
    return targets


def violations() -> list[str]:
    found = []
    for path in sources():
        module = module_name(path)
        own = layer(module)
        third = {
            "core": CORE_THIRD_PARTY,
            "adapters": ADAPTER_THIRD_PARTY,
            "apps": APP_THIRD_PARTY | ADAPTER_THIRD_PARTY,
            "entry": {"numpy"},
        }[own]
        where = f"{path.relative_to(ROOT)}"
        for base, names, line in imports(path):
            top = base.split(".")[0]
            if top != "amsgrad":
                if top not in sys.stdlib_module_names and top not in third and top != "__future__":
                    found.append(f"{where}:{line}: the {own} layer imports {top}")
                continue
            for name in names:
                if is_private(name) and (module, f"{base}.{name}") not in PRIVATE_MODULE_IMPORTS:
                    found.append(f"{where}:{line}: imports the private name {base}.{name}")
            for target in resolved_targets(base, names):
                private = any(is_private(part) for part in target.split(".")[1:])
                allowed = (module, target) in PRIVATE_MODULE_IMPORTS or (
                    own == "entry" and target == "amsgrad._version"
                )
                if private and not allowed:
                    found.append(f"{where}:{line}: imports the private module {target}")
                theirs = layer(target)
                if own == "core" and theirs != "core":
                    found.append(f"{where}:{line}: core imports {target} ({theirs})")
                if own == "adapters" and theirs not in ("core", "adapters"):
                    found.append(f"{where}:{line}: an adapter imports {target} ({theirs})")
                if theirs == "apps" and own != "apps" and module != "amsgrad.__main__":
                    found.append(f"{where}:{line}: {module} imports the application {target}")
        found.extend(private_attribute_uses(path))
    return found


def private_attribute_uses(path: Path) -> list[str]:
    """``alias._name`` where ``alias`` is an imported amsgrad module."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    aliases = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "amsgrad":
                    aliases.add(alias.asname or alias.name.split(".")[0])
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("amsgrad"):
            for alias in node.names:
                aliases.add(alias.asname or alias.name)
    found = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in aliases
            and is_private(node.attr)
        ):
            name = f"{node.value.id}.{node.attr}"
            found.append(f"{path.relative_to(ROOT)}:{node.lineno}: uses the private {name}")
    return found


def test_layers_and_private_names():
    assert violations() == []


def test_the_checker_sees_a_violation(tmp_path, monkeypatch):
    """The rule can fail: a core module that imports an adapter and a private name is caught."""
    package = tmp_path / "amsgrad"
    (package / "core").mkdir(parents=True)
    (package / "adapters").mkdir()
    (package / "__init__.py").write_text("")
    (package / "core" / "__init__.py").write_text("")
    (package / "adapters" / "__init__.py").write_text("")
    (package / "adapters" / "torch.py").write_text("")
    (package / "core" / "bad.py").write_text(
        "import torch\nfrom amsgrad.adapters import torch as t\nfrom amsgrad.core.x import _y\n"
    )
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", package)
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    problems = violations()
    assert any("core layer imports torch" in p for p in problems)
    assert any("core imports amsgrad.adapters.torch" in p for p in problems)
    assert any("private name amsgrad.core.x._y" in p for p in problems)


def listed_files() -> set[str]:
    text = ARCHITECTURE.read_text(encoding="utf-8")
    return set(re.findall(r"^\| `(src/amsgrad/[^`]+)` \|", text, flags=re.MULTILINE))


def test_architecture_document_lists_every_source_file():
    actual = {
        str(path.relative_to(ROOT))
        for path in PACKAGE.rglob("*")
        if path.suffix in (".py", ".c", ".h") and "__pycache__" not in path.parts
    }
    listed = listed_files()
    assert actual - listed == set(), "source files missing from docs/ARCHITECTURE.md"
    assert listed - actual == set(), "docs/ARCHITECTURE.md lists files that do not exist"


@pytest.mark.parametrize("module", ["amsgrad.torch", "amsgrad.jax", "amsgrad.optax"])
def test_public_framework_modules_only_re_export(module):
    """amsgrad.torch and friends are entry points: all their code lives in amsgrad.adapters."""
    path = PACKAGE / (module.split(".")[1] + ".py")
    tree = ast.parse(path.read_text(encoding="utf-8"))
    kinds = {type(node).__name__ for node in tree.body}
    assert kinds <= {"Expr", "ImportFrom", "Assign"}
