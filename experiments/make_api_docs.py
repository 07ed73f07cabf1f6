"""Writes ``docs/api.md``: the public API of ``ssl_jax``, generated from its docstrings.

    python experiments/make_api_docs.py            # rewrite docs/api.md
    python experiments/make_api_docs.py --check    # exit 1 if docs/api.md is out of date

For every module of :data:`MODULES` and every name of its ``__all__`` (in that order): the
signature, the first paragraph of the docstring and its ``Args`` / ``Attributes`` /
``Returns`` sections; for classes also their public methods and properties. Signatures are
read from the source (annotations and defaults as written there), so the page is the same
whatever the installed JAX/Flax versions and never holds memory addresses. Constants are
documented by a string literal right after their assignment (an attribute docstring).
"""

import argparse
import ast
import dataclasses
import importlib
import inspect
import re
import sys
import textwrap
from pathlib import Path

import flax.linen as nn

MODULES = (
    "ssl_jax.losses",
    "ssl_jax.metrics",
    "ssl_jax.augment",
    "ssl_jax.models",
    "ssl_jax.methods",
    "ssl_jax.train",
    "ssl_jax.eval",
    "ssl_jax.data",
    "ssl_jax.pretrained",
)
OUT = Path(__file__).resolve().parents[1] / "docs" / "api.md"
SECTIONS = ("Args", "Attributes", "Returns")
_SECTION_RE = re.compile(
    r"^(Args|Arguments|Attributes|Returns|Yields|Raises|References|Example|Examples|Note|"
    r"Notes|Reference)::?\s*$"
)
_ROLE_RE = re.compile(r":(?:func|meth|class|mod|attr|data|obj):")
_ADDRESS_RE = re.compile(r" at 0x[0-9a-fA-F]+")
_WIDTH = 92


# -- docstrings ------------------------------------------------------------------------------
def split_docstring(doc: str) -> tuple[str, dict[str, list[str]]]:
    """The first paragraph and the Google-style sections of a cleaned docstring.

    Args:
      doc: a docstring as ``inspect.getdoc`` returns it (dedented).

    Returns:
      ``(summary, sections)``: the first paragraph joined into one line, and section name
      (``'Args'``, ``'Returns'``, ...) -> the section's dedented lines.
    """
    lines = doc.strip().splitlines()
    summary: list[str] = []
    for line in lines:
        if not line.strip() or _SECTION_RE.match(line):
            break
        summary.append(line.strip())
    sections: dict[str, list[str]] = {}
    current = None
    for line in lines:
        m = _SECTION_RE.match(line)
        if m:
            current = "Args" if m.group(1) == "Arguments" else m.group(1)
            sections[current] = []
        elif current is not None:
            if line and not line[0].isspace():
                current = None  # text back at the left margin ends the section
            else:
                sections[current].append(line)
    for name, body in sections.items():
        sections[name] = textwrap.dedent("\n".join(body)).strip("\n").splitlines()
    return " ".join(summary), sections


def section_entries(body: list[str]) -> list[str]:
    """Entries of an ``Args``-like section: one string per ``name: text`` item.

    Args:
      body: the section's dedented lines; continuation lines are indented further.

    Returns:
      The entries, each joined into one line.
    """
    entries: list[str] = []
    for line in body:
        if not line.strip():
            continue
        if line[0].isspace() and entries:
            entries[-1] += " " + line.strip()
        else:
            entries.append(line.strip())
    return entries


def _md(text: str) -> str:
    return _ROLE_RE.sub("", text)


def _entry_md(entry: str) -> str:
    m = re.match(r"^([\w*][\w*, ./]*?)(\s*\([^)]*\))?:\s+(.*)$", entry)
    if m is None:
        return f"- {_md(entry)}"
    return f"- `{m.group(1)}`{m.group(2) or ''}: {_md(m.group(3))}"


# -- signatures from the source --------------------------------------------------------------
def _source_node(obj) -> ast.AST | None:
    try:
        source = inspect.getsource(inspect.unwrap(obj))
    except (OSError, TypeError):
        return None
    tree = ast.parse(textwrap.dedent(source))
    return tree.body[0] if tree.body else None


def _function_texts(node) -> tuple[dict[str, tuple[str | None, str | None]], str | None]:
    """``name -> (annotation, default)`` as written in a ``def``, and the return annotation."""
    a = node.args
    texts: dict[str, tuple[str | None, str | None]] = {}
    positional = a.posonlyargs + a.args
    defaults = [None] * (len(positional) - len(a.defaults)) + list(a.defaults)
    pairs = list(zip(positional, defaults, strict=True))
    pairs += list(zip(a.kwonlyargs, a.kw_defaults, strict=True))
    pairs += [(x, None) for x in (a.vararg, a.kwarg) if x is not None]
    for arg, default in pairs:
        ann = ast.unparse(arg.annotation) if arg.annotation is not None else None
        texts[arg.arg] = (ann, ast.unparse(default) if default is not None else None)
    returns = ast.unparse(node.returns) if node.returns is not None else None
    return texts, returns


def _field_texts(cls: type) -> dict[str, tuple[str | None, str | None]]:
    """Dataclass fields as written in the class bodies of ``cls`` and its bases."""
    texts: dict[str, tuple[str | None, str | None]] = {}
    for klass in reversed(cls.__mro__):
        if not klass.__module__.startswith("ssl_jax"):
            continue
        node = _source_node(klass)
        for stmt in getattr(node, "body", []):
            if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
                default = ast.unparse(stmt.value) if stmt.value is not None else None
                texts[stmt.target.id] = (ast.unparse(stmt.annotation), default)
    return texts


def _runtime_text(value) -> str:
    if value is inspect.Parameter.empty:
        return ""
    text = getattr(value, "__qualname__", None) or repr(value)
    return _ADDRESS_RE.sub("", text)


def format_signature(name: str, obj, *, wrap: bool = True, drop_self: bool = False) -> str:
    """``name(params) -> returns`` with annotations and defaults as written in the source.

    Args:
      name: the name to print.
      obj: a function or a class (dataclass fields or ``__init__`` give its parameters).
      wrap: put one parameter per line when the signature is wider than the page.
      drop_self: leave out a leading ``self`` / ``cls`` (methods read off their class).

    Returns:
      The signature as text.
    """
    is_class = inspect.isclass(obj)
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return f"{name}(...)"
    returns = None
    if is_class:
        if dataclasses.is_dataclass(obj):
            texts = _field_texts(obj)
        else:
            node = _source_node(obj.__init__) if "__init__" in vars(obj) else None
            texts = _function_texts(node)[0] if isinstance(node, ast.FunctionDef) else {}
    else:
        node = _source_node(obj)
        texts, returns = _function_texts(node) if isinstance(node, ast.FunctionDef) else ({}, None)
    skip = {"parent", "name"} if is_class and issubclass(obj, nn.Module) else set()
    params = [p for p in sig.parameters.values() if p.name not in skip]
    if drop_self and params and params[0].name in ("self", "cls"):
        params = params[1:]
    parts: list[str] = []
    star_done = False
    for i, p in enumerate(params):
        if p.kind is p.KEYWORD_ONLY and not star_done:
            parts.append("*")
        star_done = star_done or p.kind in (p.KEYWORD_ONLY, p.VAR_POSITIONAL)
        prefix = {p.VAR_POSITIONAL: "*", p.VAR_KEYWORD: "**"}.get(p.kind, "")
        ann, default = texts.get(p.name, (None, None))
        if p.name not in texts:
            default = _runtime_text(p.default) or None
        text = prefix + p.name + (f": {ann}" if ann else "")
        if default is not None:
            text += f" = {default}" if ann else f"={default}"
        parts.append(text)
        last_positional_only = p.kind is p.POSITIONAL_ONLY and (
            i + 1 == len(params) or params[i + 1].kind is not p.POSITIONAL_ONLY
        )
        if last_positional_only:
            parts.append("/")
    tail = f" -> {returns}" if returns else ""
    one_line = f"{name}({', '.join(parts)}){tail}"
    if not wrap or len(one_line) <= _WIDTH:
        return one_line
    return f"{name}(\n" + "".join(f"    {x},\n" for x in parts) + f"){tail}"


# -- constants -------------------------------------------------------------------------------
def attribute_doc(module, name: str) -> str | None:
    """The string literal right after ``name = ...`` in the module that defines ``name``.

    Follows ``from x import name`` re-exports from package ``__init__`` files.

    Args:
      module: the module where ``name`` is public.
      name: a module-level constant.

    Returns:
      The attribute docstring (dedented), or None if there is none.
    """
    tree = ast.parse(inspect.getsource(module))
    body = tree.body
    for i, node in enumerate(body):
        targets = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, ast.AnnAssign):
            targets = [node.target]
        if any(isinstance(t, ast.Name) and t.id == name for t in targets):
            nxt = body[i + 1] if i + 1 < len(body) else None
            if (
                isinstance(nxt, ast.Expr)
                and isinstance(nxt.value, ast.Constant)
                and isinstance(nxt.value.value, str)
            ):
                return inspect.cleandoc(nxt.value.value)
            return None
        if isinstance(node, ast.ImportFrom):
            for alias in node.names:
                if (alias.asname or alias.name) == name:
                    package = module.__name__ if hasattr(module, "__path__") else None
                    package = package or module.__name__.rpartition(".")[0]
                    source = importlib.import_module(
                        "." * node.level + (node.module or ""), package
                    )
                    return attribute_doc(source, alias.name)
    return None


def doc_of(module, name: str) -> str:
    """The docstring of public ``module.name``: its own, or an attribute docstring for data.

    Args:
      module: the public module.
      name: a name of its ``__all__``.

    Returns:
      The cleaned docstring, ``''`` if there is none.
    """
    obj = getattr(module, name)
    if inspect.isclass(obj) or callable(obj):
        return inspect.getdoc(obj) or ""
    return attribute_doc(module, name) or ""


def public_members(cls: type) -> list[tuple[str, object, bool]]:
    """Public methods and properties written in ``cls``'s own body, in definition order.

    Args:
      cls: a class.

    Returns:
      ``(name, function, is_property)`` triples; static and class methods are unwrapped.
    """
    members = []
    for name, value in vars(cls).items():
        func = value.fget if isinstance(value, property) else getattr(value, "__func__", value)
        # Skip what a decorator generated (``flax.struct.dataclass``'s ``replace``).
        if name.startswith("_") or not getattr(func, "__module__", "").startswith("ssl_jax"):
            continue
        if isinstance(value, property):
            members.append((name, value.fget, True))
        elif isinstance(value, staticmethod | classmethod):
            members.append((name, value.__func__, False))
        elif inspect.isfunction(value):
            members.append((name, value, False))
    return members


def member_doc(cls: type, name: str, func, is_property: bool) -> str:
    """A member's docstring, inherited from the base class that documents it if need be."""
    return (inspect.getdoc(func) if is_property else inspect.getdoc(getattr(cls, name))) or ""


# -- the page --------------------------------------------------------------------------------
def _doc_lines(doc: str, sections: tuple[str, ...] = SECTIONS) -> list[str]:
    summary, found = split_docstring(doc)
    lines = [_md(summary), ""] if summary else []
    for section in sections:
        entries = section_entries(found.get(section, []))
        if not entries:
            continue
        if section == "Returns" and not re.match(r"^[\w*][\w*, ./]*?(\s*\([^)]*\))?: ", entries[0]):
            lines += [f"**Returns:** {_md(' '.join(entries))}", ""]
            continue
        lines += [f"**{section}:**", "", *[_entry_md(e) for e in entries], ""]
    return lines


def _class_lines(cls: type) -> list[str]:
    lines = []
    for name, func, is_property in public_members(cls):
        summary = _md(split_docstring(member_doc(cls, name, func, is_property))[0])
        own = inspect.getdoc(func) if is_property else func.__doc__
        if is_property:
            head = f"`{name}` (property)"
        else:
            head = f"`{format_signature(name, func, wrap=False, drop_self=True)}`"
        where = " (documented on the base class)" if summary and not own else ""
        lines.append(f"- {head}{where}: {summary}")
    return ["**Methods and properties:**", "", *lines, ""] if lines else []


def _base_name(base: type) -> str:
    if base is nn.Module:
        return "flax.linen.Module"
    if base.__module__.startswith("ssl_jax") or base.__module__ == "builtins":
        return base.__qualname__
    return f"{base.__module__}.{base.__qualname__}"


def module_page(module_name: str) -> list[str]:
    """The markdown lines for one public module."""
    module = importlib.import_module(module_name)
    lines = [f"## `{module_name}`", "", inspect.getdoc(module) or "", ""]
    for name in module.__all__:
        obj = getattr(module, name)
        if inspect.isclass(obj):
            bases = [_base_name(b) for b in obj.__bases__ if b is not object]
            kind = f"class, subclass of {', '.join(f'`{b}`' for b in bases)}" if bases else "class"
        elif callable(obj):
            kind = "function"
        else:
            kind = f"constant, `{type(obj).__name__}`"
        lines += [f"### `{module_name}.{name}`", "", f"*{kind}*", ""]
        is_error = inspect.isclass(obj) and issubclass(obj, BaseException)
        if (inspect.isclass(obj) or callable(obj)) and not is_error:
            lines += ["```python", format_signature(name, obj), "```", ""]
        lines += _doc_lines(doc_of(module, name))
        if inspect.isclass(obj):
            lines += _class_lines(obj)
    return lines


def render() -> str:
    """The whole of ``docs/api.md``."""
    lines = [
        "# ssl_jax API reference",
        "",
        "Generated from the docstrings by `python experiments/make_api_docs.py`; do not edit",
        "by hand (`tests/test_public_api.py` checks that this page is up to date). Each entry",
        "shows the signature, the first paragraph of the docstring and its Args / Attributes /",
        "Returns; the docstrings in the source say more. How to add a method:",
        "[adding_a_method.md](adding_a_method.md).",
        "",
        *[f"- [`{m}`](#{m.replace('.', '')})" for m in MODULES],
        "",
    ]
    for module_name in MODULES:
        lines += module_page(module_name)
    text = "\n".join(line.rstrip() for line in lines)
    return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if docs/api.md is stale")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = args.out.read_text(encoding="utf-8") if args.out.exists() else ""
        if current != text:
            print(f"{args.out} is out of date: run python experiments/make_api_docs.py")
            return 1
        print(f"{args.out} is up to date")
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    print(f"wrote {args.out} ({len(text.splitlines())} lines)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
