"""A config's model arguments, as the rest of rejuv reads them: local folders. A Hub ID is fetched (or found in
the cache) by `rejuv.io.hub`, an adapter's base resolved from the adapter (`rejuv.io.adapter`), and the config
remembers what was given and where each came from, for the records."""

from __future__ import annotations

from pathlib import Path

from rejuv.io.hub import Source, hub_id, resolve


def resolve_models(cfg) -> None:
    """Every model argument of `cfg` (its options declared `path="checkpoint"`) as a local folder, before any
    work: a Hub ID becomes its snapshot, fetched or found in the cache; an adapter's base, when the config names
    none (`base`), is resolved from the adapter. The config then holds local folders and remembers what was
    given (`rejuv.options.as_given`: records and rebuild commands name the Hub ID) and where each came from
    (`sources`)."""
    from rejuv.io.adapter import LoraAdapter, is_adapter
    from rejuv.options import map_paths

    allow_pickle = bool(getattr(cfg, "allow_pickle", False))
    progress = bool(getattr(cfg, "progress", True))
    found: dict[str, Source] = cfg.__dict__.setdefault("_sources", {})
    given: dict[str, str] = cfg.__dict__.setdefault("_given", {})

    def local(name: str, value: str) -> str:
        source = resolve(value, allow_pickle, progress)
        if source.repo_id is not None:
            given[source.path] = value
            found[source.path] = source
        return source.path

    map_paths(cfg, "checkpoint", local)
    for path in list(_checkpoints(cfg)):
        if is_adapter(path) and getattr(cfg, "base", None) is None:
            adapter = LoraAdapter(path, allow_pickle)
            ref = adapter.base_ref
            adapter.close()
            if ref is not None and hub_id(ref) is not None and not Path(ref).exists():
                base = resolve(ref, allow_pickle, progress)
                found[base.path] = base


def _checkpoints(cfg) -> list[str]:
    from rejuv.options import declared_paths

    return [value for _, role, value in declared_paths(cfg, "checkpoint")]


def sources(cfg) -> dict[str, dict]:
    """What a record states of the models a config was run on: for each Hub model, as given → its ID, the
    revision asked for and the commit it resolved to (an adapter's base included)."""
    found: dict[str, Source] = cfg.__dict__.get("_sources", {})
    return {source.spec: source.record() for source in found.values()}
