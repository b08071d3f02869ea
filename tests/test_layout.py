"""The package's layout is its architecture: imports flow one way, and dvc.yaml declares
exactly the code each stage runs."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "pipeline"
# Engine sub-packages, lowest first: a module may import its own layer and those below.
LAYERS = {
    "data": 0, "models": 1, "train": 2, "screen": 3, "search": 3, "winner": 3, "evaluate": 4,
    "report": 5, "recommend": 6,
}  # fmt: skip
STAGES = ("prepare", "weights", "backbone", "score", "screen", "sweep", "final", "linear_baseline",
          "export", "report")  # fmt: skip
# Read by every stage but not a stage's computation: params are declared key by key (config
# types them, preflight checks them against what they name and turns class names into ids,
# as config did), and progress bars and log lines change no result.
NOT_DEPS = {"pipeline.config", "pipeline.preflight", "pipeline.errors", "pipeline.paths",
            "pipeline.progress", "pipeline.quiet_tf"}  # fmt: skip


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imports(name: str) -> set[str]:
    """Every pipeline module `name` imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(MODULES[name].read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("pipeline"):
            for alias in node.names:
                child = f"{node.module}.{alias.name}"
                found.add(child if child in MODULES else node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("pipeline"))
    return {m for m in found if m in MODULES and MODULES[m].name != "__init__.py"}


def processes(name: str) -> set[str]:
    """Modules `name` runs as `python -m <module>` (the coordinator's local workers run
    `pipeline.cli worker`, which calls coordinator.run_worker: cli.py is code the stage runs)."""
    source = MODULES[name].read_text()
    return {m for m in MODULES if f'"-m", "{m}"' in source}


def closure(name: str) -> set[str]:
    """The modules a stage runs: its imports, transitively, and the files of the modules
    they start as processes."""
    seen, todo = set(), [name]
    while todo:
        current = todo.pop()
        if current not in seen and current not in NOT_DEPS:
            seen.add(current)
            todo.extend(imports(current))
    return seen | {p for m in seen for p in processes(m)}


def test_every_module_imports():
    """A name imported from a package that lacks it is found here, not in a stage."""
    for name in sorted(MODULES):
        importlib.import_module(name)


def test_no_module_imports_a_stage():
    up = [(m, i) for m in MODULES for i in imports(m) if i.startswith("pipeline.stages")]
    assert not [(m, i) for m, i in up if not m.startswith("pipeline.stages")], up


def test_engine_layers_import_only_their_own_or_lower():
    def layer(name: str) -> int | None:
        parts = name.split(".")
        return LAYERS.get(parts[1]) if len(parts) > 2 else None

    wrong = [
        (m, i)
        for m in MODULES
        if layer(m) is not None
        for i in imports(m)
        if i.startswith("pipeline.stages") or i == "pipeline.cli" or (layer(i) or 0) > layer(m)
    ]
    assert not wrong, wrong


def test_config_sits_below_every_layer():
    """The schema describes params: it imports nothing of Thaw's but its errors."""
    assert imports("pipeline.config") <= {"pipeline.errors"}, imports("pipeline.config")
    source = MODULES["pipeline.config"].read_text()
    assert "import pipeline" not in source and "from pipeline import" not in source


def test_preflight_is_read_by_no_engine_layer():
    """The checks against the world sit above data/, models/, search/ and the rest."""
    engine = [m for m in MODULES if m.split(".")[1:2] and m.split(".")[1] in LAYERS]
    readers = [m for m in engine if "pipeline.preflight" in imports(m)]
    assert not readers, readers


def test_no_import_circle():
    graph = {m: imports(m) for m in MODULES}
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path + [node, nxt]
            if nxt not in state and (cycle := visit(nxt, path + [node])):
                return cycle
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state:
            assert (cycle := visit(start, [])) is None, " -> ".join(cycle)


def test_every_stage_is_a_main_over_the_engine():
    stages = {m.rsplit(".", 1)[1] for m in MODULES if m.startswith("pipeline.stages.")}
    assert stages == set(STAGES)
    for stage in STAGES:
        tree = ast.parse(MODULES[f"pipeline.stages.{stage}"].read_text())
        functions = [n.name for n in tree.body if isinstance(n, ast.FunctionDef)]
        assert "main" in functions, stage
        assert not [n for n in tree.body if isinstance(n, ast.ClassDef)], stage


def test_dvc_yaml_declares_exactly_the_code_each_stage_runs():
    spec = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    for stage in STAGES:
        body = spec[stage].get("do", spec[stage])
        assert body["cmd"].split()[:3] == ["python", "-m", f"pipeline.stages.{stage}"]
        declared = {d for d in body["deps"] if d.startswith("pipeline/")}
        wanted = {
            MODULES[m].relative_to(ROOT).as_posix() for m in closure(f"pipeline.stages.{stage}")
        }
        assert declared == wanted, (
            f"{stage}: missing {sorted(wanted - declared)}, extra {sorted(declared - wanted)}"
        )


def third_party_imports(name: str) -> set[str]:
    """Top-level names of every non-pipeline module `name` imports, anywhere in the file."""
    found = set()
    for node in ast.walk(ast.parse(MODULES[name].read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[0] for a in node.names)
    return found - {"pipeline"}


def test_models_and_evaluate_know_nothing_of_the_tuner():
    """The search space lives in search/; a configuration runs (train/runner.py) and is
    read back from a recorded trial (models/configuration.py) without Optuna."""
    lower = [m for m in MODULES if m.split(".")[1:2] in (["models"], ["evaluate"], ["train"])]
    wrong = [(m, "optuna") for m in lower if "optuna" in third_party_imports(m)]
    wrong += [(m, i) for m in lower for i in imports(m) if i.startswith("pipeline.search")]
    assert not wrong, wrong


def test_no_function_is_over_60_lines():
    long = [
        f"{name}.{node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for name, path in MODULES.items()
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno - node.lineno + 1 > 60
    ]
    assert not long, long
