"""The configuration reference: every group under conf/, its options, every key with its
default and the one-line description written above it (or after it) in the yaml file.

Where descriptions come from (the rule the docs' Development page states):
- a file's leading comment block describes the option (`# @package` lines left out);
- a key's description is its trailing `# comment`, else the comment block directly above
  it; a key with neither takes the description of the same key in another option of the
  same group (data.batch_size is described once, in data/folder.yaml); `_target_` is
  always "the class Hydra instantiates";
- keys of `# @package _global_` presets (experiment=, ablation=, debug=) are settings of
  other groups' keys and take those keys' descriptions.

tests/test_docs_site.py fails when a key has no description, so the reference never
falls behind the files.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

KEY_LINE = re.compile(r"^(?P<indent> *)(?P<key>[\w.-]+|'[^']*'|\"[^\"]*\"):(?:\s|$)(?P<rest>.*)$")
TARGET = "the class Hydra instantiates (`_target_`)"
PRIMARY = "(primary configs)"


@dataclass
class Key:
    path: str  # dotted, as a command-line override names it
    default: object
    description: str | None
    is_section: bool


@dataclass
class Option:
    group: str  # "model", "hydra/launcher"; PRIMARY for train.yaml, tune.yaml, ...
    name: str  # the file's stem
    file: Path
    package: str  # "" for _global_ and primary configs
    description: str
    is_global: bool
    keys: list[Key] = field(default_factory=list)
    builds_on: list[str] = field(default_factory=list)  # its defaults list, _self_ left out


def _inline_comment(rest: str) -> str | None:
    """The `# comment` after a value, outside quotes."""
    quote = None
    for i, ch in enumerate(rest):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or rest[i - 1].isspace()):
            return rest[i + 1 :].strip()
    return None


def _lookup(tree, parts: list[str]):
    node = tree
    for part in parts:
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def parse_option(file: Path, group: str) -> Option:
    lines = file.read_text().splitlines()
    tree = yaml.safe_load(file.read_text()) or {}
    package = "" if group == PRIMARY else group.replace("/", ".")
    leading: list[str] = []
    i = 0
    while i < len(lines) and lines[i].lstrip().startswith("#"):
        text = lines[i].strip().lstrip("#").strip()
        if text.startswith("@package"):
            package = text.split(None, 1)[1].strip()
        else:
            leading.append(text)
        i += 1
    is_global = package == "_global_"
    if is_global:
        package = ""
    option = Option(group, file.stem, file, package, " ".join(leading), is_global)
    for entry in tree.get("defaults", []) if isinstance(tree, dict) else []:
        if entry != "_self_":
            option.builds_on.append(
                entry
                if isinstance(entry, str)
                else ", ".join(f"{k}: {v}" for k, v in entry.items())
            )
    # (indent, key) of the mappings the current line sits in
    stack: list[tuple[int, str]] = []
    pending: list[str] = []  # the comment block directly above the current line
    for number, line in enumerate(lines):
        stripped = line.strip()
        if number < i:  # the leading block describes the file, not the first key
            continue
        if not stripped:
            pending = []
            continue
        if stripped.startswith("#"):
            pending.append(stripped.lstrip("#").strip())
            continue
        match = KEY_LINE.match(line)
        if not match or stripped.startswith("- "):
            pending = []
            continue
        indent = len(match["indent"])
        key = match["key"].strip("'\"")
        while stack and stack[-1][0] >= indent:
            stack.pop()
        parents = [k for _, k in stack]
        rest = match["rest"]
        value_text = rest.split(" #")[0].strip() if not rest.startswith("#") else ""
        is_section = value_text == "" or value_text in ("|", ">")
        if not stack and key == "defaults":
            pending = []
            stack.append((indent, key))
            continue
        if parents and parents[0] == "defaults":
            pending = []
            continue
        description = _inline_comment(rest) or (" ".join(pending) if pending else None)
        if key == "_target_" and not description:
            description = TARGET
        parts = [*parents, key]
        default = None if is_section else _lookup(tree, parts)
        path = ".".join([p for p in [package] if p] + parts)
        option.keys.append(Key(path, default, description, is_section))
        if is_section:
            stack.append((indent, key))
        pending = []
    return option


def options(conf: Path) -> list[Option]:
    found = []
    for file in sorted(conf.rglob("*.yaml")):
        relative = file.relative_to(conf)
        if relative.parts[0] == "local":  # per-user, git-ignored
            continue
        group = PRIMARY if len(relative.parts) == 1 else "/".join(relative.parts[:-1])
        found.append(parse_option(file, group))
    return found


def described(conf: Path) -> list[Option]:
    """Every option with each key's description filled in from its group or its home."""
    every = options(conf)
    home: dict[str, str] = {}
    for option in every:
        if not option.is_global:
            for key in option.keys:
                if key.description:
                    home.setdefault(key.path, key.description)
    for option in every:
        for key in option.keys:
            if not key.description:
                key.description = home.get(key.path)
    return every


def missing_descriptions(conf: Path) -> list[str]:
    return [
        f"{option.file.relative_to(conf.parent)}: {key.path}"
        for option in described(conf)
        for key in option.keys
        if not key.description and not key.is_section  # a section's keys say what it holds
    ]


def _value(value) -> str:
    if value is None:
        return "`null`"
    text = yaml.safe_dump(value, default_flow_style=True, width=10_000).strip()
    text = text.removesuffix("...").strip()
    return "`" + text.replace("|", "\\|") + "`"


def _cell(text: str) -> str:
    """Comment text as a table cell: `<class>` is text here, not an HTML tag."""
    parts = text.split("`")  # odd parts are code spans, where markdown escapes by itself
    parts[::2] = [part.replace("<", "&lt;").replace(">", "&gt;") for part in parts[::2]]
    return "`".join(parts).replace("|", "\\|")


def render(conf: Path) -> str:
    every = described(conf)
    groups: dict[str, list[Option]] = {}
    for option in every:
        groups.setdefault(option.group, []).append(option)
    out = [
        "# Configuration reference",
        "",
        "Generated from `conf/` when the site is built (`docs_build/conf_reference.py`): "
        "every config group, its options, and every key with its default as written in "
        "the file (`${...}` are interpolations, resolved at run time; see them with "
        "`python src/train.py --cfg job --resolve`) and the comment written above it. "
        "Override any key on the command line: `python src/train.py data.batch_size=64`; "
        "choose an option of a group with `group=option` (`model=alexnet`).",
        "",
        "| group | options |",
        "|---|---|",
    ]
    order = sorted(groups, key=lambda g: (g != PRIMARY, g))
    for group in order:
        names = ", ".join(f"[`{o.name}`](#{_anchor(o)})" for o in groups[group])
        out.append(f"| `{group}` | {names} |" if group != PRIMARY else f"| {group} | {names} |")
    for group in order:
        title = "Primary configs" if group == PRIMARY else f"`{group}=`"
        out += ["", f"## {title}", ""]
        if group == PRIMARY:
            out.append(
                "One per entry point: `src/train.py` reads `train.yaml`, `src/tune.py` "
                "`tune.yaml`, and so on."
            )
        for option in groups[group]:
            out += ["", f"### {option.name} {{#{_anchor(option)}}}", ""]
            out.append(
                f"`conf/{option.file.relative_to(conf).as_posix()}`"
                + (" (sets keys of other groups)" if option.is_global else "")
            )
            if option.description:
                out += ["", _cell(option.description)]
            if option.builds_on:
                uses = ", ".join(f"`{entry}`" for entry in option.builds_on)
                out += [
                    "",
                    f"Defaults list: {uses}.",
                ]
            rows = [k for k in option.keys if not k.is_section or k.description]
            if rows:
                out += ["", "| key | default | what it does |", "|---|---|---|"]
                for key in rows:
                    default = "" if key.is_section else _value(key.default)
                    out.append(f"| `{key.path}` | {default} | {_cell(key.description or '')} |")
    return "\n".join(out) + "\n"


def _anchor(option: Option) -> str:
    group = "primary" if option.group == PRIMARY else option.group.replace("/", "-")
    return f"{group}-{option.name}".replace("_", "-")
