"""Figures for the HTML reports: matplotlib without a display, each figure as PNG bytes."""

from __future__ import annotations

import io


def pyplot():
    """matplotlib's pyplot on the Agg backend (reports run on headless machines)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def figure_png(fig, dpi: int = 110, tight: bool = True) -> bytes:
    """The figure as PNG bytes, closed afterwards; no software stamp, so the same figure gives the same bytes."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight" if tight else None, metadata={"Software": None})
    pyplot().close(fig)
    return buffer.getvalue()
