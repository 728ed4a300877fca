"""What ran, as every record states it beside what was asked: the device and dtype a run resolved (`auto`
and the defaults become what they are on this machine), the engine, and the versions of the libraries whose
numbers it depends on. Read from package metadata: no library is imported to name its version."""

from __future__ import annotations

from importlib import metadata

LIBRARIES = ("rejuv", "torch", "transformers", "trl", "accelerate", "peft", "datasets", "safetensors",
             "math-verify", "vllm")


def library_versions() -> dict[str, str | None]:
    """Installed version of each library rejuv's results depend on; None for one not installed (vLLM)."""
    found = {}
    for name in LIBRARIES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def what_ran(device: str | None, dtype: str | None, engine: str | None) -> dict:
    """The record of what ran: resolved device and dtype (None where nothing was computed on a device), the
    engine, the library versions."""
    return {"device": device, "dtype": dtype, "engine": engine, "versions": library_versions()}
