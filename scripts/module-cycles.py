#!/usr/bin/env python3
"""Module cycles of a Rust crate: the strongly connected components of its file-level
module graph.

A module is one source file (`src/a/b.rs` or `src/a/b/mod.rs` is `a::b`; `lib.rs` is
`crate`), found by following `mod x;` declarations from `src/lib.rs` (or `src/main.rs`)
and `#[path = ...]` attributes. Module A depends on module B when A's code names B through
`use crate::...`, `use super::...`, `use self::...`, a path starting with one of A's child
modules, or an inline `crate::b::...` / `super::b::...` path. A name imported through a
re-export (`pub use b::Thing` in a parent) is followed to the module that defines it, so
only real dependencies count; the re-exporting module depends on the one it re-exports.

Comments, string literals and `#[cfg(test)]` items (blocks, `use`s, test-only module files)
are left out. Inline `mod x { ... }` blocks count as part of their file. This is a parser of
convenience, not of Rust: macros that build paths and glob imports of items are not seen.

Usage: scripts/module-cycles.py CRATE_DIR [CRATE_DIR ...] [--edges] [--check]
Prints, for each crate, every component of more than one module, with the `file:line` of
the references that make its edges when --edges is given. Exits 0, or with --check 1 when
any crate has a cycle (CI runs it so).
"""

import os
import re
import sys
from collections import defaultdict

IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
ITEM_DEF = re.compile(
    r"\b(?:struct|enum|trait|type|fn|const|static|union|mod)\s+(" + IDENT + r")"
    r"|\bmacro_rules!\s*(" + IDENT + r")"
)
MOD_DECL = re.compile(r"((?:#\[[^\]]*\]\s*)*)(?:pub(?:\([^)]*\))?\s+)?mod\s+(" + IDENT + r")\s*;")
USE_STMT = re.compile(r"\buse\s+([^;]+);")
INLINE_PATH = re.compile(r"(?<![A-Za-z0-9_:])((?:crate|super|self)(?:::" + IDENT + r")+)")
CHILD_PATH = re.compile(r"(?<![A-Za-z0-9_:.])(" + IDENT + r"(?:::" + IDENT + r")+)")


def strip(text):
    """The code with comments and string/char literals blanked (newlines kept, so line
    numbers stay right)."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
            i = j
        elif text.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif c == "r" and re.match(r'r#*"', text[i:]) and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")):
            hashes = re.match(r"r(#*)\"", text[i:]).group(1)
            end = text.find('"' + hashes, i + 2 + len(hashes))
            j = n if end < 0 else end + 1 + len(hashes)
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            j += 1
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif c == "'":
            # A char literal ('a', '\n', '\u{..}'), not a lifetime ('a).
            m = re.match(r"'(?:\\.[^']*|[^'\\])'", text[i:])
            if m:
                out.append(" " * len(m.group(0)))
                i += len(m.group(0))
            else:
                out.append(c)
                i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def drop_cfg_test(code):
    """The code with every `#[cfg(test)]` item blanked. Returns it and the names of the
    test-only `mod x;` declarations."""
    test_mods = set()
    chars = list(code)
    for m in re.finditer(r"#\[cfg\(test\)\]", code):
        start = m.start()
        semi = code.find(";", m.end())
        brace = code.find("{", m.end())
        if semi >= 0 and (brace < 0 or semi < brace):
            end = semi + 1
            decl = re.search(r"\bmod\s+(" + IDENT + r")\s*;", code[m.end():end])
            if decl:
                test_mods.add(decl.group(1))
        elif brace >= 0:
            depth, j = 0, brace
            while j < len(code):
                if code[j] == "{":
                    depth += 1
                elif code[j] == "}":
                    depth -= 1
                    if depth == 0:
                        break
                j += 1
            end = j + 1
        else:
            continue
        for k in range(start, min(end, len(chars))):
            if chars[k] != "\n":
                chars[k] = " "
    return "".join(chars), test_mods


def expand_use(tree):
    """`a::{b, c::{d as e, self}}` as [(["a","b"], "b"), (["a","c","d"], "e"), (["a","c"], "c")]."""
    tree = re.sub(r"\s+", " ", tree).strip()

    def split_top(s):
        parts, depth, cur = [], 0, ""
        for ch in s:
            if ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
            if ch == "," and depth == 0:
                parts.append(cur)
                cur = ""
            else:
                cur += ch
        parts.append(cur)
        return [p.strip() for p in parts if p.strip()]

    def walk(prefix, s):
        s = s.strip()
        brace = s.find("{")
        if brace >= 0 and s.endswith("}"):
            head = s[:brace].rstrip(":").strip()
            new_prefix = prefix + [p for p in head.split("::") if p]
            result = []
            for part in split_top(s[brace + 1 : -1]):
                result.extend(walk(new_prefix, part))
            return result
        alias = None
        m = re.match(r"(.*?)\s+as\s+(" + IDENT + r")$", s)
        if m:
            s, alias = m.group(1), m.group(2)
        segs = prefix + [p.strip() for p in s.split("::") if p.strip()]
        if segs and segs[-1] == "self":
            segs = segs[:-1]
        if not segs or segs[-1] == "*":
            return [(segs, None)]
        return [(segs, alias or segs[-1])]

    return walk([], tree)


class Module:
    def __init__(self, name, path, is_dir_owner):
        self.name = name  # tuple of segments; () is the crate root
        self.path = path
        self.is_dir_owner = is_dir_owner  # lib.rs, main.rs, mod.rs: children in the same dir
        self.code = ""
        self.children = {}  # child name -> module tuple
        self.defs = set()
        self.imports = {}  # bound name -> (segments, line)
        self.uses = []  # (segments, line) of every use path
        self.inline = []  # (segments, line) of inline paths


def line_of(code, pos):
    return code.count("\n", 0, pos) + 1


def load(crate_dir):
    src = os.path.join(crate_dir, "src")
    root = os.path.join(src, "lib.rs")
    if not os.path.exists(root):
        root = os.path.join(src, "main.rs")
    modules = {}
    macros = {}
    stack = [((), root, True)]
    while stack:
        name, path, owner = stack.pop()
        if name in modules or not os.path.exists(path):
            continue
        mod = Module(name, path, owner)
        modules[name] = mod
        with open(path, encoding="utf-8") as f:
            raw = f.read()
        code, test_mods = drop_cfg_test(strip(raw))
        mod.code = code
        for m in re.finditer(r"#\[macro_export\]\s*macro_rules!\s*(" + IDENT + r")", code):
            macros[m.group(1)] = name
        base_dir = os.path.dirname(path)
        if not owner:
            base_dir = os.path.join(base_dir, os.path.splitext(os.path.basename(path))[0])
        for m in MOD_DECL.finditer(code):
            attrs, child = m.group(1), m.group(2)
            if child in test_mods:
                continue
            explicit = re.search(r'#\[path\s*=\s*"([^"]+)"\]', raw[m.start() : m.end()])
            if explicit:
                # #[path] is relative to the directory of the declaring file.
                child_path = os.path.normpath(os.path.join(os.path.dirname(path), explicit.group(1)))
                child_owner = os.path.basename(child_path) == "mod.rs"
            else:
                flat = os.path.join(base_dir, child + ".rs")
                nested = os.path.join(base_dir, child, "mod.rs")
                child_path, child_owner = (flat, False) if os.path.exists(flat) else (nested, True)
            mod.children[child] = name + (child,)
            stack.append((name + (child,), child_path, child_owner))
    for mod in modules.values():
        code = mod.code
        for m in ITEM_DEF.finditer(code):
            mod.defs.add(m.group(1) or m.group(2))
        use_spans = []
        for m in USE_STMT.finditer(code):
            line = line_of(code, m.start())
            use_spans.append((m.start(), m.end()))
            for segs, bound in expand_use(m.group(1)):
                segs = [s.lstrip(":") for s in segs if s]
                if not segs:
                    continue
                mod.uses.append((segs, line))
                if bound:
                    mod.imports[bound] = (segs, line)
        masked = list(code)
        for a, b in use_spans:
            for k in range(a, b):
                if masked[k] != "\n":
                    masked[k] = " "
        masked = "".join(masked)
        for m in INLINE_PATH.finditer(masked):
            mod.inline.append((m.group(1).split("::"), line_of(masked, m.start())))
        for m in CHILD_PATH.finditer(masked):
            segs = m.group(1).split("::")
            if segs[0] in mod.children:
                mod.inline.append((segs, line_of(masked, m.start())))
    return modules, macros


def resolve(modules, macros, here, segs, depth=0):
    """The module that `segs`, written in module `here`, lands in (following imports to
    where an item is defined), or None for a path outside the crate."""
    if not segs or depth > 12:
        return None
    first = segs[0]
    if first == "crate":
        cur, rest = (), segs[1:]
    elif first == "super":
        cur, rest = here, segs
        while rest and rest[0] == "super":
            cur, rest = cur[:-1], rest[1:]
    elif first == "self":
        cur, rest = here, segs[1:]
    elif first in modules[here].children:
        cur, rest = here, segs
    else:
        return None
    i = 0
    while i < len(rest) and cur + (rest[i],) in modules:
        cur = cur + (rest[i],)
        i += 1
    if i == len(rest):
        return cur
    item = rest[i]
    mod = modules[cur]
    if item in mod.defs:
        return cur
    if cur == () and item in macros:
        return macros[item]
    if item in mod.imports:
        target = resolve(modules, macros, cur, mod.imports[item][0], depth + 1)
        if target is not None:
            return target
    return cur


def graph(modules, macros):
    edges = defaultdict(dict)  # a -> b -> first (file, line)
    for name, mod in modules.items():
        for segs, line in mod.uses + mod.inline:
            target = resolve(modules, macros, name, segs)
            if target is None or target == name:
                continue
            edges[name].setdefault(target, (mod.path, line))
    return edges


def sccs(nodes, edges):
    """Tarjan's algorithm, iterative."""
    index, low, on_stack, stack, out = {}, {}, set(), [], []
    counter = [0]
    for root in nodes:
        if root in index:
            continue
        work = [(root, iter(sorted(edges.get(root, {}))))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, it = work[-1]
            advanced = False
            for nxt in it:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter[0]
                    counter[0] += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(edges.get(nxt, {})))))
                    advanced = True
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == node:
                        break
                out.append(comp)
    return out


def show(name):
    return "::".join(name) if name else "crate"


def main(argv):
    show_edges = "--edges" in argv
    check = "--check" in argv
    cycles = 0
    dirs = [a for a in argv if not a.startswith("--")]
    if not dirs:
        print(__doc__.strip().split("\n\n")[-2], file=sys.stderr)
        return 2
    for crate_dir in dirs:
        modules, macros = load(crate_dir)
        edges = graph(modules, macros)
        comps = [sorted(c) for c in sccs(sorted(modules), edges) if len(c) > 1]
        comps.sort(key=lambda c: (-len(c), c))
        cycles += len(comps)
        count = sum(len(v) for v in edges.values())
        print(f"{crate_dir}: {len(modules)} modules, {count} edges, {len(comps)} cycle(s)")
        for comp in comps:
            members = set(comp)
            print(f"  {len(comp)} modules: {', '.join(show(m) for m in comp)}")
            if show_edges:
                for a in comp:
                    for b, (path, line) in sorted(edges.get(a, {}).items()):
                        if b in members:
                            rel = os.path.relpath(path, crate_dir)
                            print(f"    {show(a)} -> {show(b)}  ({rel}:{line})")
    return 1 if check and cycles else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
