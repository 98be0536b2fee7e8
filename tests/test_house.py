"""The package's import graph follows the layer order written here, has no circle, and the registries are
their modules.

The order is the pipeline, bottom to top: leaves and adapters, host facts, registries, what a variant is,
YOLO plumbing, backends, measurement, pruning methods, the build, verdicts, settings, report, the measured
latency frontier, the pytest plugin, the command line. A module may import from its own layer or any layer
listed before it, never from one after it; a new module must be placed here before the test passes.
"""

from __future__ import annotations

import ast
from pathlib import Path

from fastnas_bench.backends.registry import BACKEND_NAMES, get_backend_class
from fastnas_bench.config.settings import resolve_settings
from fastnas_bench.methods.registry import METHOD_NAMES, get_method_class

SRC = Path(__file__).resolve().parents[1] / "src" / "fastnas_bench"
PACKAGE = "fastnas_bench"

#: Bottom to top. An entry names a module or a package (all modules below it).
LAYERS: list[tuple[str, ...]] = [
    ("errors", "progress", "versions", "keys", "fsutil", "fsurl", "registry"),
    ("compat",),
    ("host",),
    ("methods.registry", "backends.registry"),
    ("variants.data", "variants.splits"),
    ("variants.spec",),
    ("variants.remote",),
    ("variants.profiles", "variants.cache", "variants.variant"),
    ("yolo.models", "traceable"),
    ("yolo.stock", "yolo.stock_probe", "yolo.export", "yolo.train", "yolo.per_image"),
    ("backends._lib", "backends.base"),
    ("backends",),
    ("measure.timing", "measure.stats", "measure.nodes"),
    ("measure.inject", "measure.ab_worker", "measure.ab", "measure.measurer", "measure.probe", "measure.ab_env",
     "measure.node_profile"),
    ("methods.base", "methods._lib"),
    ("methods",),
    ("variants.build",),
    ("verdicts.outcome", "verdicts.checks", "verdicts.records", "verdicts.accuracy", "verdicts.results_store"),
    ("verdicts.gates", "verdicts.baselines"),
    ("config.options", "config.settings", "config.matrix"),
    ("report",),
    ("frontier",),
    ("pytest_plugin",),
    ("cli",),
]


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _runtime_imports(path: Path) -> set[str]:
    """Package modules ``path`` imports at run time (function-local imports included, type-checking-only
    imports not), as names relative to the package."""
    return _imports_of(path.read_text(), _module_name(path), path.name == "__init__.py")


def _imports_of(source: str, module: str, is_package: bool) -> set[str]:
    tree = ast.parse(source)
    type_only = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
                 and "TYPE_CHECKING" in ast.unparse(node.test) for n in ast.walk(node)}
    here = f"{PACKAGE}.{module}".split(".")
    package = here if is_package else here[:-1]
    found = set()
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.ImportFrom):
            # Relative imports resolved against this module's package, so they cannot slip past.
            base = ".".join(package[:len(package) - node.level + 1] + ([node.module] if node.module else [])) \
                if node.level else (node.module or "")
            submodules = [f"{base}.{a.name}" for a in node.names if _exists(_inner(f"{base}.{a.name}"))]
            # `from pkg import module` imports the module, not the package; `from module import name` the module.
            modules = submodules or [base]
        elif isinstance(node, ast.Import):
            modules = [a.name for a in node.names]
        else:
            continue
        for name in modules:
            if name.startswith(PACKAGE + "."):
                inner = _inner(name)
                while inner and not _exists(inner):
                    inner = inner.rpartition(".")[0]
                if inner:
                    found.add(inner)
    return found


def _inner(name: str) -> str:
    return name.removeprefix(PACKAGE + ".")


def _exists(module: str) -> bool:
    if not module or module == PACKAGE:
        return False
    base = SRC.joinpath(*module.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def _layer(module: str) -> int:
    """Index of the most specific entry naming ``module`` (a package entry covers its modules)."""
    best = (-1, -1)
    for index, entries in enumerate(LAYERS):
        for entry in entries:
            if module == entry or module.startswith(entry + "."):
                best = max(best, (len(entry), index))
    assert best[1] >= 0, f"module {module} is in no layer of tests/test_house.py: place it"
    return best[1]


def _graph() -> dict[str, set[str]]:
    """Module → the package modules it imports; package ``__init__`` files are left out (they import nothing)."""
    return {_module_name(path): {m for m in _runtime_imports(path) if not _module_name(path).startswith(m + ".")}
            for path in SRC.rglob("*.py") if path.name != "__init__.py"}


def test_package_inits_import_nothing() -> None:
    """Importing a subpackage costs nothing and hides no arrow: every import names its module."""
    heavy = [str(p.relative_to(SRC)) for p in SRC.rglob("__init__.py") if _runtime_imports(p)]
    assert not heavy, heavy


def test_every_layer_entry_names_a_module_or_package() -> None:
    missing = [entry for entries in LAYERS for entry in entries if not _exists(entry)]
    assert not missing, f"LAYERS names what does not exist: {missing}"


def test_every_import_follows_the_layer_order() -> None:
    unplaced = [m for m in _graph() if not any(m == e or m.startswith(e + ".") for entries in LAYERS for e in entries)]
    assert not unplaced, f"modules in no layer of tests/test_house.py (place them): {unplaced}"
    against = [f"{m} (layer {_layer(m)}) imports {i} (layer {_layer(i)})"
               for m, imports in sorted(_graph().items()) for i in sorted(imports) if _layer(i) > _layer(m)]
    assert not against, "imports against the layer order:\n" + "\n".join(against)


def test_the_import_graph_has_no_circle() -> None:
    graph = _graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    circles: list[list[str]] = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for nxt in sorted(graph.get(module, ())):
            if state.get(nxt) == 1:
                circles.append(path[path.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not circles, "import circles: " + "; ".join(" → ".join(c) for c in circles)


def test_the_layer_test_sees_imports() -> None:
    """The checks above cannot pass by reading nothing: known arrows are found, relative imports and
    `from package import module` included."""
    source = "from ..config import settings\nfrom fastnas_bench.methods import registry\nfrom . import cache\n"
    assert _imports_of(source, "variants.spec", False) == {"config.settings", "methods.registry", "variants.cache"}
    graph = _graph()
    assert "variants.spec" in graph["variants.build"] and "methods.registry" in graph["variants.spec"]
    assert "pytest_plugin.session" in graph["pytest_plugin.hooks"]
    assert "host" in graph["config.settings"] and "config.settings" not in graph["host"]


def test_registries_are_their_modules_and_classes_carry_their_metadata() -> None:
    helpers = ("__init__", "base", "registry")
    assert set(BACKEND_NAMES) == {p.stem.replace("_", "-") for p in SRC.glob("backends/*.py") if p.stem not in helpers}
    assert set(METHOD_NAMES) == {p.stem.replace("_", "-") for p in SRC.glob("methods/*.py") if p.stem not in helpers}
    for name in BACKEND_NAMES:
        assert get_backend_class(name).name == name
    for name in METHOD_NAMES:
        assert get_method_class(name).name == name
    # What a class declares is what a run parametrizes: ORT has no fp16 target, TensorRT runs on CUDA only.
    gpu = resolve_settings({"gpu": True, "backends": ("onnxruntime", "tensorrt")})
    assert [t.id for t in gpu.targets] == ["onnxruntime", "tensorrt", "tensorrt-fp16"]
    assert "torch-compile" not in resolve_settings({}).backends and "torch-compile" in resolve_settings({"gpu": True}).backends
    assert not get_method_class("unstructured").structured and get_method_class("l2struct").matches_fastnas_flops
    assert get_method_class("fastnas-latency").budget == "latency" and get_method_class("fastnas").budget == "either"
    # Capabilities: which backends a latency table can time single layers on, per device.
    assert get_backend_class("onnxruntime").times_layers == ("cpu",)
    assert get_backend_class("pytorch").times_layers == ("cpu", "cuda")
    assert not get_backend_class("torch-compile").times_layers and not get_backend_class("tensorrt").times_layers


def test_no_module_outside_compat_names_a_private_third_party_name() -> None:
    """Private names of Ultralytics, modelopt, pytest and pytest-benchmark are reached through ``compat`` only."""
    markers = ("_predict_once", "_predict_augment", "_benchmarksession", "stats.stats.data", "global_and_fixture_disabled",
               '"sensitivity_map"', "longrepr[2]")
    offenders = [f"{_module_name(p)}: {m}" for p in SRC.rglob("*.py") if not _module_name(p).startswith("compat")
                 for m in markers if m in p.read_text()]
    assert not offenders, offenders
