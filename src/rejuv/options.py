"""Options: a recipe's config dataclass is the one source of its command-line options, YAML keys, types,
defaults and help.

A field declared with `option(...)` carries its help text (and, where the default is computed at run
time, how to read it); its annotation gives the type. `click_params` turns the fields into click
options, `build_config` fills the dataclass from a YAML file and the command line (defaults < YAML <
command line) and checks every value against its annotation, so `overwrite: 'false'` or `alpha: abc`
is an error naming the key, not a truthy string or a traceback. This module imports neither torch nor
any recipe: the CLI builds a command only when it runs.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import click
import yaml

from rejuv.errors import RejuvError


def option(default: Any = dataclasses.MISSING, *, help: str = "", default_text: str | None = None,  # noqa: A002
           choices: Iterable[str] | Callable[[], Iterable[str]] | None = None,
           known: Callable[[], Iterable[str]] | None = None, flag: str | None = None, short: str | None = None,
           positional: bool = False, commas: bool = False) -> Any:
    """A config field with what the CLI and YAML need to know about it.

    `default` may be a list or dict (copied per instance). `default_text` replaces the shown default where
    the real one is decided at run time. `choices` (or a function returning them, for registries) are
    enforced; `known` names are only listed in the help (e.g. rewards, which also take module:function).
    `flag` renames the command-line option; `positional` takes the values as arguments; `commas` lets a
    list of names be given as one comma-separated value too. A `dict` field is read from YAML alone.
    """
    metadata = {"help": help, "default_text": default_text, "choices": choices, "known": known, "flag": flag,
                "short": short, "positional": positional, "commas": commas}
    if isinstance(default, list | dict):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


@dataclasses.dataclass(frozen=True)
class _Type:
    """A field's annotation, reduced to what the checks need."""

    base: tuple[type, ...]  # scalar types accepted, e.g. (float, str) for `float | str`
    optional: bool
    is_list: bool


def _field_type(hint: Any) -> _Type:
    args = typing.get_args(hint) if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union \
        else (hint,)
    optional = type(None) in args
    args = tuple(a for a in args if a is not type(None))
    if len(args) == 1 and typing.get_origin(args[0]) is list:
        return _Type(typing.get_args(args[0]) or (str,), optional, True)
    return _Type(tuple(typing.get_origin(a) or a for a in args), optional, False)


def _hints(config_cls: type) -> dict[str, _Type]:
    hints = typing.get_type_hints(config_cls)
    return {f.name: _field_type(hints[f.name]) for f in dataclasses.fields(config_cls)}


def _choices(field: dataclasses.Field) -> list[str] | None:
    found = field.metadata.get("choices")
    return None if found is None else list(found() if callable(found) else found)


def _flag(field: dataclasses.Field) -> str:
    return field.metadata.get("flag") or "--" + field.name.replace("_", "-")


_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "text", dict: "a mapping"}


def _scalar(value: Any, accepted: tuple[type, ...], where: str) -> Any:
    """`value` as one of the accepted types; YAML gives real types, the command line gives text."""
    if isinstance(value, str) and (int in accepted or float in accepted):
        for kind in (int, float):  # text from the command line or a comma list: a number where one is taken
            if kind in accepted:
                try:
                    return _scalar(kind(value.strip()), (kind,), where)
                except ValueError:
                    continue
    for kind in accepted:
        if kind is bool and isinstance(value, bool):
            return value
        if kind is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if kind is float and isinstance(value, int | float) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise RejuvError(f"{where}: must be a finite number, got {value!r}")
            return float(value)
        if kind in (str, dict) and isinstance(value, kind):
            return value
    wanted = " or ".join(_NAMES.get(k, k.__name__) for k in accepted)
    raise RejuvError(f"{where}: expected {wanted}, got {value!r}")


def check_value(value: Any, kind: _Type, choices: list[str] | None, where: str) -> Any:
    """One option's value, checked against its type and choices; errors start with `where` (the YAML file
    and key, or the command-line flag)."""
    if value is None:
        if kind.optional:
            return None
        raise RejuvError(f"{where}: a value is required, got null")
    if kind.is_list:
        items = value if isinstance(value, list | tuple) else [value]
        value = [_scalar(v, kind.base, where) for v in items]
        bad = [v for v in value if choices is not None and v not in choices]
    else:
        value = _scalar(value, kind.base, where)
        bad = [value] if choices is not None and value not in choices else []
    if bad:
        raise RejuvError(f"{where}: {bad[0]!r} is not one of {', '.join(map(str, choices))}")
    return value


def check_positive(cfg, *names: str, allow_zero: tuple[str, ...] = ()) -> None:
    """Numeric options that must be > 0 (or ≥ 0 for `allow_zero`), named in the error."""
    for name in (*names, *allow_zero):
        value = getattr(cfg, name)
        if value is not None and (value < 0 or (value == 0 and name not in allow_zero)):
            raise RejuvError(f"{name} must be {'≥' if name in allow_zero else '>'} 0, got {value}")


def read_yaml(path: str | Path, config_cls: type) -> dict:
    """A flat YAML mapping of option names (dashes or underscores) to values; unknown keys are errors."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise RejuvError(f"{path}: not a readable YAML file ({exc})") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise RejuvError(f"{path}: expected a mapping of option names to values, got {type(data).__name__}")
    known = {f.name for f in dataclasses.fields(config_cls)}
    values = {}
    for key, value in data.items():
        name = str(key).replace("-", "_")
        if name not in known:
            raise RejuvError(f"{path}: unknown option {key!r}; known: {', '.join(sorted(known))}")
        values[name] = value
    return values


def build_config(config_cls: type, given: dict[str, Any], config_path: str | None = None):
    """`config_cls` from its defaults, then the YAML file, then the command line (None: not given there)."""
    hints = _hints(config_cls)
    fields = {f.name: f for f in dataclasses.fields(config_cls)}
    values = {}
    if config_path:
        for name, value in read_yaml(config_path, config_cls).items():
            values[name] = check_value(value, hints[name], _choices(fields[name]), f"{config_path}: option {name}")
    for name, value in given.items():
        if value is None or value == () or name not in fields:
            continue
        if hints[name].is_list and isinstance(value, str | tuple):
            value = split_list(value, hints[name], fields[name])
        values[name] = check_value(value, hints[name], _choices(fields[name]), _flag(fields[name]))
    missing = [f for f in fields.values() if f.name not in values and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING]
    if missing:
        raise RejuvError("missing required option(s): " + ", ".join(
            f.name.upper() if f.metadata.get("positional") else _flag(f) for f in missing))
    return config_cls(**values)


def split_list(value: str | tuple, kind: _Type, field: dataclasses.Field) -> list:
    """Command-line list values: repeated options, positional arguments, or one comma-separated value."""
    items = [value] if isinstance(value, str) else list(value)
    if kind.base != (str,) or field.metadata.get("commas"):
        items = [part.strip() for item in items for part in item.split(",") if part.strip()]
    return items


def _shown_default(field: dataclasses.Field) -> str | None:
    if field.metadata.get("default_text") is not None:
        return field.metadata["default_text"]
    if field.default_factory is not dataclasses.MISSING:
        value = field.default_factory()
    elif field.default is dataclasses.MISSING or field.default is None:
        return None
    else:
        value = field.default
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, list):
        return ",".join(map(str, value)) if value else None
    return str(value)


def help_text(field: dataclasses.Field) -> str:
    text = field.metadata.get("help", "")
    known = field.metadata.get("known")
    if known is not None:
        text += f" Registered: {', '.join(known())}."
    if field.metadata.get("commas") and _choices(field):
        text += f" Choices: {', '.join(_choices(field))}."
    shown = _shown_default(field)
    if field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
        shown = "required"
    return f"{text} [{shown}]".strip() if shown is not None else text


def click_params(config_cls: type) -> list[click.Parameter]:
    """The command-line options (and arguments) of `config_cls`, every default None ('not given')."""
    hints = _hints(config_cls)
    params: list[click.Parameter] = []
    for f in dataclasses.fields(config_cls):
        if dict in hints[f.name].base:
            continue
        kind, choices = hints[f.name], _choices(f)
        if f.metadata.get("positional"):
            params.append(click.Argument([f.name], nargs=-1))
            continue
        decls = [_flag(f)] + ([f.metadata["short"]] if f.metadata.get("short") else [])
        common = {"default": None, "show_default": False, "help": help_text(f)}
        if kind.base == (bool,):
            negative = "--no-" + _flag(f).removeprefix("--")
            params.append(click.Option([f"{decls[0]}/{negative}", *decls[1:], f.name], **common))
        elif kind.is_list:
            listed = choices is not None and kind.base == (str,) and not f.metadata.get("commas")
            repeat = kind.base == (str,)  # names and paths repeat the option; numbers are one comma list
            params.append(click.Option([*decls, f.name], multiple=repeat, metavar=None if repeat else "LIST",
                                       type=click.Choice(choices) if listed else None, **common))
        else:
            numeric = {(int,): click.INT, (float,): click.FLOAT}.get(kind.base)
            click_type = click.Choice(choices) if choices else numeric
            params.append(click.Option([*decls, f.name], type=click_type, **common))
    return params


@dataclasses.dataclass(frozen=True)
class Recipe:
    """What the CLI needs of a recipe module: its config class, its run function, and the text it prints
    from the result (JSON or a table a user reads)."""

    config: type
    run: Callable[[Any], Any]
    summary: Callable[[Any, Any], str]
