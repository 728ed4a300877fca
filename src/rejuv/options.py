"""Options: a recipe's config dataclass is the one source of its command-line options, YAML keys, types,
defaults and help.

A field declared with `option(...)` carries its help text (and, where the default is computed at run
time, how to read it); its annotation gives the type. `click_params` turns the fields into click
options, `build_config` fills the dataclass from a YAML file and the command line (defaults < YAML <
command line) and checks every value against its annotation, so `overwrite: 'false'` or `alpha: abc`
is an error naming the key, not a truthy string or a traceback. This module imports neither torch nor
any recipe: the CLI builds a command only when it runs.

A recipe that runs another recipe (plan runs rl and eval) *composes* its config: `settings_of` derives
a section class from the other recipe's config (its fields, help and types; the caller's own defaults),
leaving out the fields the caller sets itself; the section is one field of the caller's config, read
from a YAML mapping (`probe: {learning_rate: 1e-6}`) or prefixed flags (`--probe-learning-rate`), and
`compose` builds the other recipe's config from it. No field is declared twice or copied by hand.
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
    if dataclasses.is_dataclass(default):  # a section: each config gets its own copy
        return dataclasses.field(default_factory=lambda: dataclasses.replace(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def settings_of(config_cls: type, name: str, owned: Iterable[str], defaults: dict[str, Any] | None = None) -> type:
    """A section class: the fields of `config_cls` except `owned` (which the composing recipe sets), with
    their help, types and choices, and `defaults` where the composing recipe's differ."""
    owned, defaults = set(owned), dict(defaults or {})
    hints = typing.get_type_hints(config_cls)
    unknown = (owned | set(defaults)) - {f.name for f in dataclasses.fields(config_cls)}
    if unknown:
        raise ValueError(f"{name}: {config_cls.__name__} has no field(s) {sorted(unknown)}")
    fields = []
    for f in dataclasses.fields(config_cls):
        if f.name in owned:
            continue
        metadata = {**f.metadata, "short": None}  # short flags belong to the recipe's own command
        if f.name in defaults:
            metadata["default_text"] = None
            value = defaults[f.name]
            new = dataclasses.field(default_factory=lambda v=value: type(v)(v), metadata=metadata) \
                if isinstance(value, list | dict) else dataclasses.field(default=value, metadata=metadata)
        elif f.default is not dataclasses.MISSING:
            new = dataclasses.field(default=f.default, metadata=metadata)
        elif f.default_factory is not dataclasses.MISSING:
            new = dataclasses.field(default_factory=f.default_factory, metadata=metadata)
        else:
            raise ValueError(f"{name}: required field {f.name!r} of {config_cls.__name__} must be owned")
        fields.append((f.name, hints[f.name], new))
    section = dataclasses.make_dataclass(name, fields)
    section.__doc__ = f"The {config_cls.__name__} fields a composing recipe leaves to its user."
    return section


def compose(config_cls: type, settings: Any, **owned: Any) -> Any:
    """`config_cls` from a section (see `settings_of`) and the fields the composing recipe sets."""
    return config_cls(**{f.name: getattr(settings, f.name) for f in dataclasses.fields(settings)}, **owned)


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


def _sections(config_cls: type) -> dict[str, type]:
    """The fields of `config_cls` that are sections (name → section class)."""
    hints = typing.get_type_hints(config_cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(config_cls) if dataclasses.is_dataclass(hints[f.name])}


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
    """A YAML mapping of option names (dashes or underscores) to values, a section's options as a nested
    mapping; unknown keys are errors."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise RejuvError(f"{path}: not a readable YAML file ({exc})") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise RejuvError(f"{path}: expected a mapping of option names to values, got {type(data).__name__}")
    return _named(data, config_cls, f"{path}: ")


def _named(data: dict, config_cls: type, where: str) -> dict:
    known, sections = {f.name for f in dataclasses.fields(config_cls)}, _sections(config_cls)
    values = {}
    for key, value in data.items():
        name = str(key).replace("-", "_")
        if name not in known:
            raise RejuvError(f"{where}unknown option {key!r}; known: {', '.join(sorted(known))}")
        if name in sections:
            if not isinstance(value, dict):
                raise RejuvError(f"{where}option {name}: expected a mapping of {name} options, got {value!r}")
            value = _named(value, sections[name], f"{where}option {name}: ")
        values[name] = value
    return values


def build_config(config_cls: type, given: dict[str, Any], config_path: str | None = None):
    """`config_cls` from its defaults, then the YAML file, then the command line (None: not given there).
    A section's command-line values come as `<section>__<field>` (see `click_params`)."""
    from_yaml = read_yaml(config_path, config_cls) if config_path else {}
    return _fill(config_cls, from_yaml, given, f"{config_path}: " if config_path else "", "", "--")


def _fill(config_cls: type, from_yaml: dict, given: dict[str, Any], where: str, name_prefix: str,
          flag_prefix: str):
    hints = _hints(config_cls)
    fields = {f.name: f for f in dataclasses.fields(config_cls)}
    sections = _sections(config_cls)
    values = {}
    for name, section in sections.items():
        inner = {k.removeprefix(f"{name}__"): v for k, v in given.items() if k.startswith(f"{name}__")}
        flag = _flag(fields[name]).removeprefix("--")
        values[name] = _fill(section, from_yaml.get(name, {}), inner, where, f"{name_prefix}{name}.",
                             f"{flag_prefix}{flag}-")
    for name, value in from_yaml.items():
        if name not in sections:
            values[name] = check_value(value, hints[name], _choices(fields[name]), f"{where}option {name_prefix}{name}")
    for name, value in given.items():
        if value is None or value == () or name not in fields or name in sections:
            continue
        if hints[name].is_list and isinstance(value, str | tuple):
            value = split_list(value, hints[name], fields[name])
        flag = flag_prefix + _flag(fields[name]).removeprefix("--")
        values[name] = check_value(value, hints[name], _choices(fields[name]), flag)
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


def click_params(config_cls: type, name_prefix: str = "", flag_prefix: str = "--",
                 help_prefix: str = "") -> list[click.Parameter]:
    """The command-line options (and arguments) of `config_cls`, every default None ('not given'). A
    section's options are prefixed with its flag (`--probe-learning-rate`, passed as `probe__learning_rate`)."""
    hints, sections = _hints(config_cls), _sections(config_cls)
    params: list[click.Parameter] = []
    for f in dataclasses.fields(config_cls):
        if f.name in sections:
            flag = _flag(f).removeprefix("--")
            params += click_params(sections[f.name], f"{name_prefix}{f.name}__", f"{flag_prefix}{flag}-",
                                   f.metadata.get("help", "") + " ")
            continue
        if dict in hints[f.name].base:
            continue
        kind, choices = hints[f.name], _choices(f)
        name = name_prefix + f.name
        if f.metadata.get("positional"):
            params.append(click.Argument([name], nargs=-1))
            continue
        flag = flag_prefix + _flag(f).removeprefix("--")
        decls = [flag] + ([f.metadata["short"]] if f.metadata.get("short") else [])
        common = {"default": None, "show_default": False, "help": help_prefix + help_text(f)}
        if kind.base == (bool,):
            negative = "--no-" + flag.removeprefix("--")
            params.append(click.Option([f"{decls[0]}/{negative}", *decls[1:], name], **common))
        elif kind.is_list:
            listed = choices is not None and kind.base == (str,) and not f.metadata.get("commas")
            repeat = kind.base == (str,)  # names and paths repeat the option; numbers are one comma list
            params.append(click.Option([*decls, name], multiple=repeat, metavar=None if repeat else "LIST",
                                       type=click.Choice(choices) if listed else None, **common))
        else:
            numeric = {(int,): click.INT, (float,): click.FLOAT}.get(kind.base)
            click_type = click.Choice(choices) if choices else numeric
            params.append(click.Option([*decls, name], type=click_type, **common))
    return params


@dataclasses.dataclass(frozen=True)
class Recipe:
    """What the CLI needs of a recipe module: its config class, its run function, and the text it prints
    from the result (JSON or a table a user reads)."""

    config: type
    run: Callable[[Any], Any]
    summary: Callable[[Any, Any], str]
