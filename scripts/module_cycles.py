#!/usr/bin/env python3
"""Report cycles between the gateway crate's top-level modules (src/<module>/ or src/<module>.rs).

A module depends on another when any of its files names `crate::<other>` (in a `use` or a
path), outside its unit tests: a file's text from its first `#[cfg(test)] mod` on, and files
named tests.rs or under a tests/ folder, are skipped (unit tests may use any module to build
their fixtures, e.g. a default Config). Binaries (src/bin/) are not modules of the library and are skipped.
Exit status 1 when a cycle exists, with the cycle's modules and one edge of each pair.
Usage: python3 scripts/module_cycles.py [SRC_DIR]
"""
import os
import re
import sys

src = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "src")
modules = set()
edges = {}
where = {}
ref = re.compile(r"\bcrate::([a-z_][a-z0-9_]*)")
for root, _dirs, files in os.walk(src):
    rel = os.path.relpath(root, src)
    if rel.split(os.sep)[0] == "bin":
        continue
    for f in files:
        if not f.endswith(".rs") or f == "tests.rs" or "tests" in rel.split(os.sep):
            continue
        top = rel.split(os.sep)[0] if rel != "." else f[:-3]
        if top in ("lib", "main"):
            continue
        modules.add(top)
        text = open(os.path.join(root, f), encoding="utf-8").read()
        # Only a test *module* ends the product code: a single `#[cfg(test)]` helper in the
        # middle of a file must not hide the references after it.
        text = re.split(r"#\[cfg\(test\)\]\s*mod\s+\w+", text, maxsplit=1)[0]
        for m in ref.finditer(text):
            other = m.group(1)
            if other != top:
                edges.setdefault(top, set()).add(other)
                where.setdefault((top, other), os.path.join(rel, f))

# Tarjan's strongly connected components.
index, low, stack, on_stack, sccs = {}, {}, [], set(), []
counter = [0]


def visit(v):
    index[v] = low[v] = counter[0]
    counter[0] += 1
    stack.append(v)
    on_stack.add(v)
    for w in sorted(edges.get(v, ())):
        if w not in modules:
            continue
        if w not in index:
            visit(w)
            low[v] = min(low[v], low[w])
        elif w in on_stack:
            low[v] = min(low[v], index[w])
    if low[v] == index[v]:
        scc = []
        while True:
            w = stack.pop()
            on_stack.discard(w)
            scc.append(w)
            if w == v:
                break
        sccs.append(scc)


sys.setrecursionlimit(10_000)
for v in sorted(modules):
    if v not in index:
        visit(v)
cycles = [sorted(s) for s in sccs if len(s) > 1]
print(f"{len(modules)} modules, {sum(len(e) for e in edges.values())} dependencies")
for c in cycles:
    print("cycle:", " <-> ".join(c))
    for a in c:
        for b in c:
            if b in edges.get(a, ()):
                print(f"  {a} -> {b} (e.g. {where[(a, b)]})")
if not cycles:
    print("no cycles between top-level modules")
sys.exit(1 if cycles else 0)
