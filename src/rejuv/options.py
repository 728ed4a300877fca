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
import functools
import math
import os
import shlex
import types
import typing
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import click
import yaml

from rejuv.errors import RejuvError

PATH_ROLES = ("checkpoint", "file", "input", "output")


def option(default: Any = dataclasses.MISSING, *, help: str = "", default_text: str | None = None,  # noqa: A002
           choices: Iterable[str] | Callable[[], Iterable[str]] | None = None,
           known: Callable[[], Iterable[str]] | None = None, flag: str | None = None, short: str | None = None,
           positional: bool = False, commas: bool = False, path: str | None = None,
           at_least: float | None = None, above: float | None = None, at_most: float | None = None,
           below: float | None = None, check: Callable[[Any], Any] | None = None, nonempty: bool = False,
           distinct: bool = False, affects: str | tuple[str, ...] = (), shared: bool = False) -> Any:
    """A config field with what the CLI, YAML and the config's own checks need to know about it.

    `default` may be a list or dict (copied per instance). `default_text` replaces the shown default where
    the real one is decided at run time. `choices` (or a function returning them, for registries) are
    enforced; `known` names are only listed in the help (e.g. rewards, which also take module:function).
    `flag` renames the command-line option; `positional` takes the values as arguments; `commas` lets a
    list of names be given as one comma-separated value too. A `dict` field is read from YAML alone.

    `path` declares what a path option names: `checkpoint` (a model folder read), `file` (a file read),
    `input` (a file or folder read) or `output` (a folder written); the output guard (`rejuv.io.output`)
    derives the inputs an output may not touch from these declarations, so no path can be forgotten.
    `at_least`/`above`/`at_most`/`below` bound a number (each item of a list); `check` takes the value and
    returns it (normalised) or raises `RejuvError` with the problem; a list may be declared `nonempty` and
    its items `distinct`. Every config checks these on construction, however it is built (`Config`).
    `affects` tags the results the option changes (`"output"`, `"attribution"`, ...): the fingerprints, resume
    keys and reproduce-commands that depend on those results take the tagged options (`tagged`,
    `command_line`), so none is listed by hand and a new option is counted where it is declared. A `shared`
    option (seed, device, chat template, loading rules, progress) means the same in every command, and a
    recipe that runs another passes it on (`passed_on`).
    """
    if path is not None and path not in PATH_ROLES:
        raise ValueError(f"path must be one of {PATH_ROLES}, got {path!r}")
    metadata = {"help": help, "default_text": default_text, "choices": choices, "known": known, "flag": flag,
                "short": short, "positional": positional, "commas": commas, "path": path,
                "bounds": (at_least, above, at_most, below), "check": check, "nonempty": nonempty,
                "distinct": distinct, "affects": (affects,) if isinstance(affects, str) else tuple(affects),
                "shared": shared}
    if isinstance(default, list | dict):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=metadata)
    if dataclasses.is_dataclass(default):  # a section: each config gets its own copy
        return dataclasses.field(default_factory=lambda: dataclasses.replace(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


class OptionError(RejuvError):
    """A config value refused by its field's declaration or by a rule between fields; `name` is the field
    (dotted inside a section), so that `build_config` can say where the value came from. A rule between
    fields names the others in `also`: the error is then told by whichever of them the user gave."""

    def __init__(self, name: str, problem: str, also: tuple[str, ...] = ()):
        self.name, self.problem, self.also = name, problem, also
        super().__init__(f"{name}: {problem}")

    def within(self, section: str) -> OptionError:
        """The same error, its fields named inside `section`."""
        return OptionError(f"{section}.{self.name}", self.problem, tuple(f"{section}.{n}" for n in self.also))


class Config:
    """Base of every recipe config (and section): it checks itself when it is built, from the command line,
    a YAML file, the Python API or another recipe alike. Each field is checked against its annotation and
    declaration (type, choices, bounds, `check`), then `check()` applies the rules between fields. Values
    are normalised as the command line normalises them: `"0.5"` for a number is 0.5, `"a,b"` for a list is
    two items, a `Path` for a path option is its text, a mapping for a section is that section."""

    def __post_init__(self) -> None:
        check_fields(self)
        self.check()

    def check(self) -> None:
        """Rules between fields; raise `OptionError(field, problem)`."""


# Options many recipes share, declared once: their types, bounds and help are the same everywhere.
SEED_LIMIT = 2**32  # numpy's and transformers' set_seed take seeds below 2^32


def seed_option(help: str = "Seed.", affects: str | tuple[str, ...] = ()) -> Any:  # noqa: A002
    return option(0, help=help, at_least=0, below=SEED_LIMIT, affects=affects, shared=True)


def out_option(help: str = "Output folder (written atomically).", default: Any = dataclasses.MISSING) -> Any:  # noqa: A002
    return option(default, help=help, path="output")


def overwrite_option(what: str = "output folder") -> Any:
    return option(False, help=f"Replace an existing {what} that an earlier run of this command wrote (never a "
                  "folder with other files).")


def progress_option(help: str = "Show progress bars.") -> Any:  # noqa: A002
    return option(True, help=help, shared=True)


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
    section = dataclasses.make_dataclass(name, fields, bases=(Config,))
    section.__doc__ = f"The {config_cls.__name__} fields a composing recipe leaves to its user."
    return section


def compose(config_cls: type, settings: Any, section: str | None = None, **owned: Any) -> Any:
    """`config_cls` from a section (see `settings_of`) and the fields the composing recipe sets. A value the
    composed config refuses is named as the caller's option (`probe.num_generations`) when `section` is given."""
    given = {f.name for f in dataclasses.fields(settings)}
    try:
        return config_cls(**{name: getattr(settings, name) for name in given}, **owned)
    except OptionError as exc:
        if section is None or exc.name.split(".")[0] not in given:
            raise
        raise exc.within(section) from None


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


@functools.cache
def _specs(config_cls: type) -> tuple[tuple[dataclasses.Field, _Type, type | None], ...]:
    """(field, its type, its section class or None) for every field of `config_cls`, computed once per class."""
    hints = typing.get_type_hints(config_cls)
    return tuple((f, _field_type(hints[f.name]), hints[f.name] if dataclasses.is_dataclass(hints[f.name]) else None)
                 for f in dataclasses.fields(config_cls))


def _hints(config_cls: type) -> dict[str, _Type]:
    return {f.name: kind for f, kind, _ in _specs(config_cls)}


def _sections(config_cls: type) -> dict[str, type]:
    """The fields of `config_cls` that are sections (name → section class)."""
    return {f.name: section for f, _, section in _specs(config_cls) if section is not None}


def _choices(field: dataclasses.Field) -> list[str] | None:
    found = field.metadata.get("choices")
    return None if found is None else list(found() if callable(found) else found)


def _flag(field: dataclasses.Field) -> str:
    return field.metadata.get("flag") or "--" + field.name.replace("_", "-")


_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "text", dict: "a mapping", list: "a list"}


def _scalar(value: Any, accepted: tuple[type, ...], name: str) -> Any:
    """`value` as one of the accepted types; YAML and Python give real types, the command line gives text."""
    if isinstance(value, str) and (int in accepted or float in accepted):
        for kind in (int, float):  # text from the command line or a comma list: a number where one is taken
            if kind in accepted:
                try:
                    return _scalar(kind(value.strip()), (kind,), name)
                except (ValueError, OptionError):
                    continue
    for kind in accepted:
        if kind is bool and isinstance(value, bool):
            return value
        if kind is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if kind is float and isinstance(value, int | float) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise OptionError(name, f"must be a finite number, got {value!r}")
            return float(value)
        if kind in (str, dict) and isinstance(value, kind):
            return value
        if kind is list and isinstance(value, list | tuple):  # a structured value (token ids), checked by `check`
            return list(value)
    wanted = " or ".join(_NAMES.get(k, k.__name__) for k in accepted)
    raise OptionError(name, f"expected {wanted}, got {value!r}")


def check_value(value: Any, kind: _Type, choices: list[str] | None, name: str) -> Any:
    """One option's value, checked against its type and choices; an `OptionError` names `name`."""
    if value is None:
        if kind.optional:
            return None
        raise OptionError(name, "a value is required, got null")
    if kind.is_list:
        if not isinstance(value, list | tuple):
            raise OptionError(name, f"expected a list, got {value!r}")
        value = [_scalar(v, kind.base, name) for v in value]
        bad = [v for v in value if choices is not None and v not in choices]
    else:
        value = _scalar(value, kind.base, name)
        bad = [value] if choices is not None and value not in choices else []
    if bad:
        raise OptionError(name, f"{bad[0]!r} is not one of {', '.join(map(str, choices))}")
    return value


def _number(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def _bounded(value: Any, bounds: tuple, name: str) -> None:
    at_least, above, at_most, below = bounds
    if not isinstance(value, int | float) or isinstance(value, bool):
        return
    low = f"[{_number(at_least)}" if at_least is not None else f"({_number(above)}" if above is not None else None
    high = f"{_number(at_most)}]" if at_most is not None else f"{_number(below)})" if below is not None else None
    fails = ((at_least is not None and value < at_least) or (above is not None and value <= above)
             or (at_most is not None and value > at_most) or (below is not None and value >= below))
    if not fails:
        return
    if low and high:
        raise OptionError(name, f"must lie in {low}, {high}, got {value!r}")
    if low:
        raise OptionError(name, f"must be {'≥' if at_least is not None else '>'} {low[1:]}, got {value!r}")
    raise OptionError(name, f"must be {'≤' if at_most is not None else '<'} {high[:-1]}, got {value!r}")


def _field_value(value: Any, field: dataclasses.Field, kind: _Type) -> Any:
    name = field.name
    if field.metadata.get("path") and not isinstance(value, str | list | tuple | type(None)):
        value = os.fspath(value) if isinstance(value, os.PathLike) else value
    if kind.is_list and isinstance(value, str | tuple):
        value = split_list(value, kind, field)
    if kind.is_list and field.metadata.get("path") and isinstance(value, list):
        value = [os.fspath(v) if isinstance(v, os.PathLike) else v for v in value]
    value = check_value(value, kind, _choices(field), name)
    bounds = field.metadata.get("bounds", (None,) * 4)
    for item in (value if kind.is_list and value is not None else [value]):
        _bounded(item, bounds, name)
    if kind.is_list and value is not None:
        if field.metadata.get("nonempty") and not value:
            raise OptionError(name, "give at least one")
        repeated = [v for i, v in enumerate(value) if v in value[:i]]
        if field.metadata.get("distinct") and repeated:
            raise OptionError(name, f"{repeated[0]!r} is given twice")
    custom = field.metadata.get("check")
    if custom is not None and value is not None:
        try:
            value = custom(value)
        except RejuvError as exc:
            raise OptionError(name, str(exc)) from None
    return value


def _section_value(value: Any, section: type, name: str) -> Any:
    if isinstance(value, section):
        return value
    if isinstance(value, dict):
        known = {f.name for f in dataclasses.fields(section)}
        unknown = sorted(str(k) for k in value if str(k).replace("-", "_") not in known)
        if unknown:
            raise OptionError(name, f"unknown option {unknown[0]!r}; known: {', '.join(sorted(known))}")
        try:
            return section(**{str(k).replace("-", "_"): v for k, v in value.items()})
        except OptionError as exc:
            raise exc.within(name) from None
    if dataclasses.is_dataclass(value) and {f.name for f in dataclasses.fields(value)} == \
            {f.name for f in dataclasses.fields(section)}:  # the same settings, another recipe's section class
        return _section_value(dataclasses.asdict(value), section, name)
    raise OptionError(name, f"expected a mapping of {name} options, got {value!r}")


def check_fields(cfg: Any) -> None:
    """Check and normalise every field of `cfg` against its declaration (see `Config`)."""
    for field, kind, section in _specs(type(cfg)):
        value = getattr(cfg, field.name)
        value = _section_value(value, section, field.name) if section else _field_value(value, field, kind)
        object.__setattr__(cfg, field.name, value)


def declared_paths(cfg: Any, role: str | None = None, prefix: str = "") -> list[tuple[str, str, str]]:
    """(option name, role, path) of every path option of `cfg` and its sections that is set, in field order;
    only those of `role` when given."""
    found = []
    for field, _, section in _specs(type(cfg)):
        value = getattr(cfg, field.name)
        if section is not None:
            found += declared_paths(value, role, f"{prefix}{field.name}.")
            continue
        declared = field.metadata.get("path")
        if declared is None or value is None or (role is not None and declared != role):
            continue
        for item in value if isinstance(value, list) else [value]:
            found.append((prefix + field.name, declared, item))
    return found


def map_paths(cfg: Any, role: str, change: Callable[[str, str], str], prefix: str = "") -> None:
    """Replace every set path option of `role` in `cfg` and its sections by `change(option name, value)`
    (a Hub ID by its local snapshot), item by item in a list."""
    for field, _, section in _specs(type(cfg)):
        value = getattr(cfg, field.name)
        if section is not None:
            map_paths(value, role, change, f"{prefix}{field.name}.")
        elif field.metadata.get("path") == role and value is not None:
            new = [change(prefix + field.name, v) for v in value] if isinstance(value, list) else \
                change(prefix + field.name, value)
            object.__setattr__(cfg, field.name, new)


def settings_for(settings_cls: type, cfg: Any, **given: Any) -> Any:
    """A component's own settings (a dataclass) from a recipe's config: each field from the config's option of
    the same name, unless `given`. The recipe builds them; the component never sees the config."""
    names = [f.name for f in dataclasses.fields(settings_cls)]
    return settings_cls(**{n: given[n] if n in given else getattr(cfg, n) for n in names if n in given
                           or hasattr(cfg, n)})


def replaced(cfg: Any, **changes: Any) -> Any:
    """`dataclasses.replace`, keeping what the config learnt when its models were resolved (`as_given`)."""
    new = dataclasses.replace(cfg, **changes)
    new.__dict__.update({k: v for k, v in cfg.__dict__.items() if k in ("_given", "_sources")})
    return new


def as_given(cfg: Any, value: Any) -> Any:
    """A path option's value as the user gave it (a Hub ID rather than the snapshot folder it resolved to)."""
    given = getattr(cfg, "__dict__", {}).get("_given", {})
    if isinstance(value, list):
        return [given.get(v, v) if isinstance(v, str) else v for v in value]
    return given.get(value, value) if isinstance(value, str) else value


def tagged(cfg: Any, tag: str) -> dict[str, Any]:
    """The options of `cfg` whose declaration says they change `tag`'s results, in declaration order."""
    return {f.name: getattr(cfg, f.name) for f, _, _ in _specs(type(cfg)) if tag in f.metadata.get("affects", ())}


def recorded(cfg: Any) -> dict[str, Any]:
    """The options as a record states them (`asdict`), less the output folder: a record lives in it, and a
    recipe run by another writes into a temporary folder whose name would make the bytes differ run by run."""
    outputs = {f.name for f, _, _ in _specs(type(cfg)) if f.metadata.get("path") == "output"}
    return {k: as_given(cfg, v) for k, v in dataclasses.asdict(cfg).items() if k not in outputs}


def passed_on(cfg: Any, target_cls: type) -> dict[str, Any]:
    """The `shared` options of `cfg` that `target_cls` declares too: what a recipe passes on to one it runs."""
    theirs = {f.name for f, _, _ in _specs(target_cls) if f.metadata.get("shared")}
    return {f.name: getattr(cfg, f.name) for f, _, _ in _specs(type(cfg)) if f.metadata.get("shared")
            and f.name in theirs}


def command_line(cfg: Any, command: str, tags: tuple[str, ...], values: dict[str, Any] | None = None,
                 flags: tuple[str, ...] = ()) -> str:
    """`rejuv <command>` with every option tagged with one of `tags` (its value from `values`, else `cfg`), in
    declaration order, then `flags`, then `--out OUT` (OUT stands for the output folder, so that a record of
    the command does not depend on where it was written). Text is shell-quoted."""
    values = values or {}
    parts = ["rejuv", command]
    for f, _, _ in _specs(type(cfg)):
        if not set(tags) & set(f.metadata.get("affects", ())):
            continue
        value = values.get(f.name, as_given(cfg, getattr(cfg, f.name)))
        if value is None:
            continue
        text = f"{value:g}" if isinstance(value, float) else str(value)
        parts += [_flag(f), text if isinstance(value, int | float) else shlex.quote(text)]
    return " ".join([*parts, *(shlex.quote(x) for x in flags), "--out", "OUT"])


def flag_of(config_cls: type, name: str) -> str:
    """The command-line flag of a (dotted) field name: `probe.chord_data` → `--probe-chord-data`."""
    head, _, rest = name.partition(".")
    fields = {f.name: f for f in dataclasses.fields(config_cls)}
    if head not in fields:
        return name
    flag = _flag(fields[head])
    if rest and head in _sections(config_cls):
        return flag + "-" + flag_of(_sections(config_cls)[head], rest).removeprefix("--")
    return flag


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
    A section's command-line values come as `<section>__<field>` (see `click_params`). A value refused by
    the config's checks is named where it came from: the YAML file and (dotted) key, or the flag."""
    from_yaml = read_yaml(config_path, config_cls) if config_path else {}
    where: dict[str, str] = {}
    given_names: set[str] = set()
    values = _collect(config_cls, from_yaml, given, f"{config_path}: " if config_path else "", "", "--", where,
                      given_names)
    missing = [f for f in dataclasses.fields(config_cls) if f.name not in values
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise RejuvError("missing required option(s): " + ", ".join(
            f.name.upper() if f.metadata.get("positional") else _flag(f) for f in missing))
    try:
        return config_cls(**values)
    except OptionError as exc:
        name = next((n for n in (exc.name, *exc.also) if n in given_names), exc.name)
        raise RejuvError(f"{where.get(name, name)}: {exc.problem}") from None


def _collect(config_cls: type, from_yaml: dict, given: dict[str, Any], yaml_where: str, name_prefix: str,
             flag_prefix: str, where: dict[str, str], given_names: set[str]) -> dict:
    """The values given for `config_cls` (a section's as a mapping); in `where` each field's origin, in
    `given_names` the fields given in the file or on the command line."""
    fields = {f.name: f for f in dataclasses.fields(config_cls)}
    sections = _sections(config_cls)
    values: dict[str, Any] = {}
    for name, field in fields.items():
        flag = flag_prefix + _flag(field).removeprefix("--")
        where[name_prefix + name] = name.upper() if field.metadata.get("positional") else flag
        if name in sections:
            inner = {k.removeprefix(f"{name}__"): v for k, v in given.items() if k.startswith(f"{name}__")}
            section_values = _collect(sections[name], from_yaml.get(name, {}), inner, yaml_where,
                                      f"{name_prefix}{name}.", flag + "-", where, given_names)
            if section_values:
                values[name] = section_values
            continue
        if name in from_yaml:
            values[name] = from_yaml[name]
            where[name_prefix + name] = f"{yaml_where}option {name_prefix}{name}"
            given_names.add(name_prefix + name)
        cli = given.get(name)
        if cli is not None and cli != ():
            values[name] = cli
            given_names.add(name_prefix + name)
            where[name_prefix + name] = name.upper() if field.metadata.get("positional") else flag
    return values


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
