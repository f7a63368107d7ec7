"""The package layout's one rule: imports run one way, from higher-level packages to lower-level ones.

A lower-level module that imports a higher-level one is how twins and import cycles start (a helper left where it was
first needed); this test names the import that breaks the order."""

import ast
from pathlib import Path

import foresight

# Lowest first. A module may import from its own level or any level below it.
LEVELS = [
    {"errors", "cli_args", "files", "runtime", "processes", "ray_jobs"},
    {"model"},
    {"data"},
    {"config"},
    {"train"},
    {"weights"},
    {"evals", "serve", "align", "vlm"},
    {"scaling"},
    {"cli", "__main__"},
]
RANK = {name: i for i, level in enumerate(LEVELS) for name in level}
ROOT = Path(foresight.__file__).parent


def _unit(module: str) -> str:
    """foresight.X.y -> X; foresight.files -> files."""
    return module.split(".")[1]


def _imports(path: Path):
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("foresight"):
            if node.module == "foresight":  # from foresight import runtime
                yield from (f"foresight.{a.name}" for a in node.names)
            else:
                yield node.module
        elif isinstance(node, ast.Import):
            yield from (a.name for a in node.names if a.name.startswith("foresight."))


def test_every_package_has_a_level():
    units = {p.stem if p.is_file() else p.name for p in ROOT.iterdir()
             if (p.suffix == ".py" or (p.is_dir() and (p / "__init__.py").exists())) and p.stem != "__init__"}
    assert units <= set(RANK), f"give these a level in tests/test_layout.py: {sorted(units - set(RANK))}"


def test_imports_run_from_higher_levels_to_lower_ones():
    wrong = []
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT)
        here = rel.parts[0] if len(rel.parts) > 1 else rel.stem
        if here == "__init__":
            continue
        for module in _imports(path):
            there = _unit(module)
            if RANK[there] > RANK[here]:
                wrong.append(f"{rel} imports {module} ({here} is below {there})")
    assert not wrong, "\n".join(wrong)
