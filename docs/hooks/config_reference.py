"""MkDocs hook: the page ``configuration/reference.md``, generated from ``conf/`` at every build.

Every config group (a folder under ``conf/``, nested ones such as ``model/encoder`` included) gets a section, and
every option file in it a table of its keys (dotted paths) with their defaults as written, the comment above or
beside each key, the file's own description (its leading comment), its defaults list and its ``_target_``. A
``_target_`` inside ``stellar`` links to its API reference entry, so a target that is not documented (or no longer
exists) fails ``mkdocs build --strict``. Nothing is composed: a variant shows its own keys and names what it
inherits in its defaults list, exactly as the file says.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from mkdocs.structure.files import File, Files

PAGE = "configuration/reference.md"
_KEY = re.compile(r"^(?P<indent>\s*)(?P<key>[A-Za-z_][\w@.\-]*|\"[^\"]+\"):(?P<rest>.*)$")


@dataclass
class Option:
    """One option file of a group: its description, defaults list and (key, value, comment) rows."""

    name: str
    path: str
    description: list[str]
    package: str | None
    defaults: list[Any]
    rows: list[tuple[str, Any, str]] = field(default_factory=list)


def _comments(text: str) -> tuple[list[str], dict[str, str]]:
    """The file's leading comment, and the comment above or beside each key (by dotted path)."""
    header: list[str] = []
    pending: list[str] = []
    stack: list[tuple[int, str]] = []
    notes: dict[str, str] = {}
    seen_key = False
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            body = stripped.lstrip("#").strip()
            if body.startswith("@package"):
                continue
            (pending if seen_key else header).append(body)
            continue
        if not stripped:
            if not seen_key and header:
                seen_key = True  # a blank line closes the header; later comments belong to keys
            pending = []
            continue
        match = _KEY.match(line)
        if match is None or stripped.startswith("-"):
            pending = []
            continue
        seen_key = True
        indent = len(match["indent"])
        while stack and stack[-1][0] >= indent:
            stack.pop()
        key = match["key"].strip('"')
        stack.append((indent, key))
        dotted = ".".join(k for _, k in stack)
        inline = ""
        rest = match["rest"]
        if " #" in rest:
            inline = rest.split(" #", 1)[1].strip()
        note = " ".join([*pending, inline]).strip()
        if note:
            notes[dotted] = note
        pending = []
    return header, notes


def _flatten(value: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """Dotted keys of nested mappings; lists and scalars are leaves."""
    if isinstance(value, dict) and value:
        rows: list[tuple[str, Any]] = []
        for key, sub in value.items():
            rows.extend(_flatten(sub, f"{prefix}.{key}" if prefix else str(key)))
        return rows
    return [(prefix, value)]


def read_option(path: Path, conf: Path) -> Option:
    """Parse one option file of ``conf``."""
    text = path.read_text(encoding="utf-8")
    description, notes = _comments(text)
    data = yaml.safe_load(text) or {}
    package = None
    for line in text.splitlines():
        if line.strip().startswith("# @package"):
            package = line.split("@package", 1)[1].strip()
    defaults = data.pop("defaults", []) if isinstance(data, dict) else []
    option = Option(path.stem, path.relative_to(conf).as_posix(), description, package, defaults)
    for key, value in _flatten(data):
        option.rows.append((key, value, notes.get(key, "")))
    return option


def _value(value: Any) -> str:
    if isinstance(value, str):
        shown = value
    else:
        shown = yaml.safe_dump(value, default_flow_style=True, width=10_000).strip()
        shown = shown.removesuffix("...").strip()
    shown = shown.replace("|", "\\|")
    return f"`{shown}`" if shown else "`''`"


def _target(value: Any) -> str:
    if isinstance(value, str) and value.startswith("stellar."):
        return f"[`{value}`][{value}]"
    return _value(value)


def _text(text: str) -> str:
    """Comment text as Markdown: outside code spans, characters that Markdown would read as links (``[k=v]``),
    HTML (``<survey>``) or emphasis are escaped; pipes everywhere (table cells)."""
    parts = text.split("`")
    for i in range(0, len(parts), 2):  # even parts are outside code spans
        parts[i] = re.sub(r"([\\\[\]*_])", r"\\\1", parts[i]).replace("<", "&lt;")
    return "`".join(parts).replace("|", "\\|")


def _description(header: list[str]) -> list[str]:
    """A file's leading comment: command lines (``python …``) as a code block, the rest as one paragraph."""
    prose = [line for line in header if line and not line.startswith("python ")]
    commands = [line for line in header if line.startswith("python ")]
    lines = [_text(" ".join(prose)), ""] if prose else []
    if commands:
        lines += ["```bash", *commands, "```", ""]
    return lines


def _chosen_by(conf: Path, group: str) -> list[str]:
    """Defaults-list entries of other config files that pick an option of a nested group (``source@source: …``)."""
    leaf = group.rsplit("/", 1)[-1]
    found = []
    for path in sorted(conf.rglob("*.yaml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for entry in data.get("defaults", []) if isinstance(data, dict) else []:
            if isinstance(entry, dict):
                for key, value in entry.items():
                    name = str(key).removeprefix("override ").split("@", 1)[0].strip("/")
                    if name in (leaf, group):
                        shown = "null" if value is None else value
                        found.append(f"`conf/{path.relative_to(conf).as_posix()}` (`{key}: {shown}`)")
    return found


def _defaults(defaults: list[Any]) -> str:
    parts: list[str] = []
    for entry in defaults:
        if isinstance(entry, dict):
            parts.extend(f"`{k}: {'null' if v is None else v}`" for k, v in entry.items())
        else:
            parts.append(f"`{entry}`")
    return ", ".join(parts)


def render(conf: Path) -> str:
    """The whole page, in Markdown."""
    lines = [
        "# Every config group",
        "",
        "Generated from `conf/` at every docs build: a group is a folder, an option is a file in it. Choose an",
        "option with `group=option` and set a key with `group.key=value` (`python train.py split=sky split.nside=32`).",
        "Values are shown as written: `${…}` are interpolations resolved when the run starts, `???` must be given.",
        "A variant shows only its own keys; what it inherits is in its defaults list. How the groups fit together:",
        "[Configuration](index.md).",
        "",
    ]
    primaries = sorted(p for p in conf.glob("*.yaml"))
    lines += ["## Entry-point configs", ""]
    for path in primaries:
        lines += _option_block(read_option(path, conf), level=3)
    groups = sorted({p.parent for p in conf.rglob("*.yaml")} - {conf})
    for group in groups:
        name = group.relative_to(conf).as_posix()
        options = [read_option(p, conf) for p in sorted(group.glob("*.yaml"))]
        lines += [f"## `{name}`", "", "Options: " + ", ".join(f"`{o.name}`" for o in options) + ".", ""]
        chosen = _chosen_by(conf, name)
        if "/" in name:
            lines += [
                "A nested group: a parent config picks its option in its defaults list, and its keys then live under "
                "the parent's key of that name (`python train.py datamodule.source.n=2000`).",
                "",
            ]
        if chosen:
            lines += ["Picked in the defaults lists of: " + ", ".join(chosen) + ".", ""]
        for option in options:
            lines += _option_block(option, level=3, group=name)
    return "\n".join(lines) + "\n"


def _option_block(option: Option, level: int, group: str | None = None) -> list[str]:
    # what one types on the command line for a top-level group; the file's place for a nested one
    title = option.path if group is None else f"{group}{': ' if '/' in group else '='}{option.name}"
    lines = [f"{'#' * level} `{title}`", ""]
    lines += _description(option.description)
    facts = [f"File: `conf/{option.path}`."]
    if option.package:
        facts.append(f"Package: `{option.package}`.")
    if option.defaults:
        facts.append(f"Defaults list: {_defaults(option.defaults)}.")
    targets = [value for key, value, _ in option.rows if key == "_target_"]
    if targets:
        facts.append(f"Builds: {_target(targets[0])}.")
    lines += [" ".join(facts), ""]
    rows = [row for row in option.rows if row[0] != "_target_" and row[0]]
    if rows:
        lines += ["| key | default | note |", "|---|---|---|"]
        for key, value, note in rows:
            shown = _target(value) if key.endswith("_target_") else _value(value)
            lines.append(f"| `{key}` | {shown} | {_text(note)} |")
        lines.append("")
    return lines


def on_files(files: Files, config: Any) -> Files:
    """Add the generated page to the site's files."""
    conf = Path(config["config_file_path"]).parent / "conf"
    files.append(File.generated(config, PAGE, content=render(conf)))
    return files
