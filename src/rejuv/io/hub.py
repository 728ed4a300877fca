"""Models named by Hub ID: `org/name`, at a revision with `org/name@rev` (a branch, tag or commit), resolved
through `huggingface_hub` with its usual environment (`HF_ENDPOINT`, `HF_TOKEN`, `HF_HOME` and the cache,
`HF_HUB_OFFLINE`) into a local snapshot folder that the rest of rejuv reads like any `save_pretrained` one.

A local folder of that name wins. Only what rejuv reads is fetched: safetensors weights and their index,
the config and generation config, tokenizer and chat-template files, and a PEFT adapter's config and weights;
pickled weights (`*.bin`) only with `--allow-pickle`, and a repo with nothing else is refused before anything
is downloaded. The commit a revision resolved to is kept (`Source`), so that records name it, never just
"main". Each failure is one line: an unknown repo, a gated or unauthorised one, a missing revision, offline
with nothing cached, a Hub that cannot be reached.
"""

from __future__ import annotations

import re
import sys
import time
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path

from rejuv.errors import RejuvError

# `org/name` or `org/name@revision`; Hub names are letters, digits, `-`, `_` and `.`
_HUB_ID = re.compile(r"^(?P<repo>[A-Za-z0-9][\w.-]*/[\w.-]+)(?:@(?P<revision>[\w./-]+))?$")
WEIGHTS = ("*.safetensors", "model.safetensors.index.json")
PICKLED = ("pytorch_model*.bin", "pytorch_model.bin.index.json", "adapter_model.bin")
READ = ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
        "special_tokens_map.json", "tokenizer.model", "vocab.json", "merges.txt", "added_tokens.json",
        "spiece.model", "chat_template.jinja", "chat_template.json", "adapter_config.json", *WEIGHTS)


@dataclass(frozen=True)
class Source:
    """Where a model argument was read from: `spec` as given, the local `path` rejuv reads, and for a Hub
    model its ID, the revision asked for (None: the default branch) and the commit it resolved to."""

    spec: str
    path: str
    repo_id: str | None = None
    revision: str | None = None
    commit: str | None = None

    def record(self) -> dict:
        """What a record states about the argument."""
        if self.repo_id is None:
            return {"path": self.spec}
        return {"hub_id": self.repo_id, "revision": self.revision or "main", "commit": self.commit}


def hub_id(spec: str) -> tuple[str, str | None] | None:
    """(repo ID, revision) when `spec` reads as a Hub ID, else None."""
    found = _HUB_ID.match(spec or "")
    if not found or ".." in spec or spec.startswith(("./", "../")):
        return None
    return found.group("repo"), found.group("revision")


_RESOLVED: dict[tuple, Source] = {}  # one resolution per process: recipes that run recipes reuse it


def resolve(spec: str, allow_pickle: bool = False, progress: bool = True) -> Source:
    """The local folder of a model argument: `spec` itself when it exists on disk (a local folder wins) or
    does not read as a Hub ID (the caller then says what is missing), else the snapshot of the Hub repo at its
    revision, fetched (or found in the cache) through `huggingface_hub`."""
    found = hub_id(spec)
    if Path(spec).exists() or found is None:
        return Source(spec, spec)
    from huggingface_hub import constants

    key = (spec, allow_pickle, constants.ENDPOINT, constants.is_offline_mode())
    if key not in _RESOLVED:
        _RESOLVED[key] = _fetch(spec, *found, allow_pickle, progress)
    return _RESOLVED[key]


def _fetch(spec: str, repo_id: str, revision: str | None, allow_pickle: bool, progress: bool) -> Source:
    import huggingface_hub
    from huggingface_hub import constants

    offline = constants.is_offline_mode()
    with _hub_errors(spec, repo_id, revision, offline):
        if offline:
            folder = Path(huggingface_hub.snapshot_download(repo_id, revision=revision, local_files_only=True,
                                                           allow_patterns=_patterns(None, allow_pickle, spec)))
            _check_weights([str(p.relative_to(folder)) for p in folder.rglob("*")], allow_pickle, spec)
            return Source(spec, str(folder), repo_id, revision, folder.name)
        try:
            info = huggingface_hub.HfApi().model_info(repo_id, revision=revision, files_metadata=True)
        except _connection_errors() as exc:  # no Hub to ask: what the cache holds, as huggingface_hub does
            with _hub_errors(spec, repo_id, revision, offline=True, reason=f"the Hub cannot be reached ({exc})"):
                folder = Path(huggingface_hub.snapshot_download(repo_id, revision=revision, local_files_only=True,
                                                               allow_patterns=_patterns(None, allow_pickle, spec)))
            return Source(spec, str(folder), repo_id, revision, folder.name)
        files = {s.rfilename: s.size or 0 for s in info.siblings or []}
        patterns = _patterns(files, allow_pickle, spec)
        wanted = {name: size for name, size in files.items() if any(fnmatch(name, p) for p in patterns)}
        start = time.monotonic()
        _say(progress, f"fetching {repo_id}@{info.sha[:12]}: {len(wanted)} files, {_size(sum(wanted.values()))}"
                       f" ({', '.join(sorted(wanted)[:4])}{', ...' if len(wanted) > 4 else ''})")
        with _hub_bars(progress):  # by the revision asked for, so that the cache maps it for offline runs
            folder = huggingface_hub.snapshot_download(repo_id, revision=revision, allow_patterns=patterns)
        commit = Path(folder).name  # snapshots/<commit>: what was downloaded, whatever moved since
        _say(progress, f"fetched {repo_id}@{commit[:12]} in {time.monotonic() - start:.0f} s: {folder}")
        return Source(spec, folder, repo_id, revision, commit)


def _patterns(files: dict | None, allow_pickle: bool, spec: str) -> list[str]:
    """What to fetch; with the repo's file list, a repo with no safetensors weights (only pickled ones) is
    refused here, before anything is downloaded."""
    if files is not None:
        _check_weights(list(files), allow_pickle, spec)
    return [*READ, *(PICKLED if allow_pickle else ())]


def _check_weights(names: list[str], allow_pickle: bool, spec: str) -> None:
    safe = any(n.endswith(".safetensors") for n in names)
    pickled = any(fnmatch(n, p) for n in names for p in PICKLED)
    if not safe and pickled and not allow_pickle:
        raise RejuvError(f"{spec}: the repo holds only pickle weights (*.bin), which can run arbitrary code when "
                         "loaded; nothing was downloaded; pass --allow-pickle if you trust the source")
    if not safe and not pickled:
        raise RejuvError(f"{spec}: the repo holds no model weights (*.safetensors) and no adapter")


def _connection_errors() -> tuple[type[BaseException], ...]:
    import httpx2

    return (httpx2.ConnectError, httpx2.TimeoutException)


class _hub_errors:  # noqa: N801 (used as a context manager)
    """The Hub's failures as one line each, naming the argument."""

    def __init__(self, spec: str, repo_id: str, revision: str | None, offline: bool, reason: str | None = None):
        self.spec, self.repo_id, self.revision, self.offline, self.reason = spec, repo_id, revision, offline, reason

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, exc, tb) -> bool:
        if exc is None or isinstance(exc, RejuvError):
            return False
        from huggingface_hub import constants
        from huggingface_hub.errors import (
            GatedRepoError,
            HfHubHTTPError,
            LocalEntryNotFoundError,
            OfflineModeIsEnabled,
            RepositoryNotFoundError,
            RevisionNotFoundError,
        )

        spec, where = self.spec, constants.ENDPOINT
        if isinstance(exc, GatedRepoError):
            raise RejuvError(f"{spec}: a gated repo on {where}; accept its conditions on its page, then log in "
                             "(HF_TOKEN or `hf auth login`) with an account that was granted access") from None
        if isinstance(exc, RevisionNotFoundError):
            raise RejuvError(f"{spec}: {self.repo_id} has no revision {self.revision!r} (a branch, tag or commit) "
                             f"on {where}") from None
        if isinstance(exc, RepositoryNotFoundError):
            raise RejuvError(f"{spec}: no model {self.repo_id} on {where}, or it is private and no token here may "
                             "read it (HF_TOKEN or `hf auth login`); a local folder of that name does not exist "
                             "either") from None
        if isinstance(exc, LocalEntryNotFoundError | OfflineModeIsEnabled | FileNotFoundError):
            why = self.reason or ("HF_HUB_OFFLINE is set" if self.offline else "the Hub cannot be reached")
            raise RejuvError(f"{spec}: not in the Hugging Face cache ({constants.HF_HUB_CACHE}) and {why}; fetch it "
                             "once online, or give a local folder") from None
        if isinstance(exc, HfHubHTTPError):
            status = getattr(getattr(exc, "response", None), "status_code", "?")
            raise RejuvError(f"{spec}: the Hub ({where}) answered {status}: {str(exc).splitlines()[0]}") from None
        if isinstance(exc, _connection_errors()):
            raise RejuvError(f"{spec}: the Hub ({where}) cannot be reached ({exc}) and nothing is cached") from None
        return False


class _hub_bars:  # noqa: N801
    """huggingface_hub's own bars on a terminal with progress on; in a log, rejuv's lines say it instead."""

    def __init__(self, progress: bool):
        self.show = progress and sys.stderr.isatty()

    def __enter__(self) -> None:
        from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars

        self.was_disabled = are_progress_bars_disabled()
        if not self.show:
            disable_progress_bars()

    def __exit__(self, *exc) -> None:
        from huggingface_hub.utils import enable_progress_bars

        if not self.show and not self.was_disabled:
            enable_progress_bars()


def _say(progress: bool, message: str) -> None:
    from rejuv.progress import _SILENT

    if progress and not _SILENT[0]:
        print(f"[hub] {message}", file=sys.stderr, flush=True)


def _size(nbytes: int) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if nbytes < 1000 or unit == "TB":
            return f"{nbytes:.0f} {unit}" if unit == "B" else f"{nbytes:.1f} {unit}"
        nbytes /= 1000
    return f"{nbytes} B"

