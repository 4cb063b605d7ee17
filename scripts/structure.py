#!/usr/bin/env python3
"""Print the structure figures of the `hpcpolicy` package (no import of it: `ast` only).

    python3 scripts/structure.py [REPO]      # REPO defaults to this checkout

Figures: lines in `cli/`; the `hpcpolicy` packages `cli/` imports; import circles (strongly
connected groups of modules, imports inside functions included, `if TYPE_CHECKING:` ones not);
functions over 60 lines; modules over 400 lines. Each list is printed after its count, so a
change can be traced.
"""

from __future__ import annotations

import ast
import os
import sys
from typing import Dict, List, Set

FUNCTION_LIMIT = 60
MODULE_LIMIT = 400


def modules(root: str) -> Dict[str, str]:
    """Dotted module name -> file path for every .py file under `root/hpcpolicy`."""
    out: Dict[str, str] = {}
    base = os.path.join(root, "hpcpolicy")
    for folder, _dirs, files in os.walk(base):
        for name in files:
            if not name.endswith(".py"):
                continue
            path = os.path.join(folder, name)
            rel = os.path.relpath(path, root)[: -len(".py")].split(os.sep)
            if rel[-1] == "__init__":
                rel = rel[:-1]
            out[".".join(rel)] = path
    return out


def _typing_only(tree: ast.AST) -> Set[int]:
    """ids of the nodes under `if TYPE_CHECKING:` (read by type checkers, never run)."""
    out: Set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If):
            test = node.test
            name = test.attr if isinstance(test, ast.Attribute) else getattr(test, "id", "")
            if name == "TYPE_CHECKING":
                out.update(id(inner) for stmt in node.body for inner in ast.walk(stmt))
    return out


def imports(name: str, path: str, known: Dict[str, str], runtime: bool = False) -> Set[str]:
    """The hpcpolicy modules `name` imports anywhere in its file (a submodule when one exists);
    with `runtime`, leaving out the imports only type checkers read (`if TYPE_CHECKING:`)."""
    with open(path, encoding="utf-8") as handle:
        tree = ast.parse(handle.read(), path)
    package = name if path.endswith("__init__.py") else name.rpartition(".")[0]
    skip = _typing_only(tree) if runtime else set()
    found: Set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.add(sub if sub in known else target)
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr == "import_module" and node.args
              and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            found.add(node.args[0].value)  # importlib.import_module("hpcpolicy.x")
    return {m for m in found if m in known and m != name}


def graph(root: str, runtime: bool = False) -> Dict[str, Set[str]]:
    known = modules(root)
    return {name: imports(name, path, known, runtime) for name, path in known.items()}


def circles(edges: Dict[str, Set[str]]) -> List[List[str]]:
    """Strongly connected groups of more than one module (Tarjan, iterative)."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on_stack: Set[str] = set()
    found: List[List[str]] = []
    counter = 0
    for start in sorted(edges):
        if start in index:
            continue
        work = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1:
                    found.append(sorted(group))
    return found


def long_functions(root: str) -> List[str]:
    out = []
    for name, path in sorted(modules(root).items()):
        with open(path, encoding="utf-8") as handle:
            tree = ast.parse(handle.read(), path)
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > FUNCTION_LIMIT:
                    out.append(f"{name}.{node.name} ({length})")
    return out


def line_count(path: str) -> int:
    with open(path, encoding="utf-8") as handle:
        return sum(1 for _ in handle)


def main() -> int:
    root = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else
                           os.path.join(os.path.dirname(__file__), ".."))
    known = modules(root)
    edges = graph(root)
    cli = sorted(m for m in known if m == "hpcpolicy.cli" or m.startswith("hpcpolicy.cli."))
    cli_lines = sum(line_count(known[m]) for m in cli)
    used = {".".join(target.split(".")[:2]) for m in cli for target in edges[m]
            if not target.startswith("hpcpolicy.cli")}
    packages = {m for m, p in known.items() if p.endswith("__init__.py")} - {"hpcpolicy"}
    cli_packages = sorted(used & packages)
    cli_modules = sorted(used - packages)
    found = circles(graph(root, runtime=True))
    long_fns = long_functions(root)
    big = sorted(f"{m} ({line_count(p)})" for m, p in known.items()
                 if line_count(p) > MODULE_LIMIT)
    print(f"lines in cli/: {cli_lines} ({len(cli)} modules)")
    print(f"packages cli/ imports: {len(cli_packages)}  {' '.join(cli_packages)}"
          f"  (and {len(cli_modules)} top-level modules: {' '.join(cli_modules)})")
    print(f"import circles: {len(found)}")
    for group in found:
        print(f"    {' <-> '.join(group)}")
    print(f"functions over {FUNCTION_LIMIT} lines: {len(long_fns)}")
    for item in long_fns:
        print(f"    {item}")
    print(f"modules over {MODULE_LIMIT} lines: {len(big)}")
    for item in big:
        print(f"    {item}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
