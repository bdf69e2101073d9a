"""The package's layers: imports run one way, core <- training <- tools (and train.py/explain.py on top)."""

import ast
import pathlib

import introspective_tf

PACKAGE = pathlib.Path(introspective_tf.__file__).parent
LAYERS = {"core": 0, "training": 1, "tools": 2}


def _layer(module: str) -> int:
    """introspective_tf.training.data -> 1; introspective_tf.models -> 0."""
    parts = module.split(".")
    return LAYERS.get(parts[1], 0) if len(parts) > 1 else 0


def _imported_modules(path: pathlib.Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):  # module level and inside functions alike
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("introspective_tf"):
            # `from introspective_tf import training` imports the sub-package itself
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in names if name.startswith("introspective_tf")}


def test_no_module_imports_a_higher_layer():
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        for imported in _imported_modules(path):
            if _layer(imported) > _layer(module):
                upward.append(f"{module} imports {imported}")
    assert not upward


def test_the_checker_sees_an_upward_import(tmp_path):
    module = tmp_path / "models.py"
    module.write_text("def f():\n    from introspective_tf.tools import compare\n")
    assert any(_layer(name) > _layer("introspective_tf.models") for name in _imported_modules(module))
