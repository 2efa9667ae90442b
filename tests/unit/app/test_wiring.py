"""How the pieces meet: only through constructors and the bus (no hook set on a service after it is built)."""

import ast

from tests.conftest import ROOT


def test_the_composition_root_sets_no_hook_on_a_built_service():
    """`self.orders.on_paid = ...` is how domains used to meet; they subscribe to the bus instead."""
    offenders = []
    for path in (ROOT / "app" / "platform.py", ROOT / "app" / "main.py", *(ROOT / "app").glob("*/wiring.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            # a function, method or object handed to a built service (flags and numbers are state, not hooks)
            hooked = isinstance(node, ast.Assign) and not isinstance(node.value, ast.Constant)
            for target in node.targets if hooked else []:
                if isinstance(target, ast.Attribute) and isinstance(target.value, ast.Attribute):
                    offenders.append(f"{path.name}:{node.lineno}: {ast.unparse(target)}")
    assert offenders == []
