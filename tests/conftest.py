from pathlib import Path

import pytest

from tiny import ARCHS, build_model, perturbed, save, write_calibration


@pytest.fixture(scope="session")
def calib_file(tmp_path_factory) -> Path:
    return write_calibration(tmp_path_factory.mktemp("calib") / "calib.jsonl", n=12)


@pytest.fixture(scope="session", params=ARCHS)
def pair(request, tmp_path_factory):
    """(arch, base folder, SFT folder) for each supported architecture; read-only."""
    arch = request.param
    root = tmp_path_factory.mktemp(arch)
    base, tok = build_model(arch, seed=0)
    sft = perturbed(base, seed=1)
    return arch, save(base, tok, root / "base"), save(sft, tok, root / "sft")


@pytest.fixture(scope="session")
def llama_pair(tmp_path_factory):
    root = tmp_path_factory.mktemp("llama")
    base, tok = build_model("llama", seed=0)
    sft = perturbed(base, seed=1)
    return save(base, tok, root / "base"), save(sft, tok, root / "sft")


@pytest.fixture
def rejuv_warnings():
    """The messages rejuv warns with while a test runs (its logger may not propagate once the CLI has run)."""
    import logging

    from rejuv.errors import logger

    messages: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            messages.append(record.getMessage())

    handler = Collect(level=logging.WARNING)
    logger.addHandler(handler)
    yield messages
    logger.removeHandler(handler)
