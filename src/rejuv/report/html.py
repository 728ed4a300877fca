"""HTML pages from Jinja2 templates (`rejuv/report/templates/`), escaped by default: checkpoint names, paths,
decoded tokens and messages come from files rejuv does not control, so no value reaches a page unescaped
unless a template says so. Undefined names are errors, not blanks."""

from __future__ import annotations

import base64
from functools import cache

import jinja2


def number(value, digits: int = 4) -> str:
    """A report cell: – for a missing value, floats to `digits` significant digits, anything else as text."""
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def readable(text: str) -> str:
    """A decoded token with its edges visible: leading/trailing spaces as ␣, newlines as ⏎."""
    return text.replace("\n", "⏎").replace(" ", "␣") if text.strip() != text or "\n" in text else text


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


@cache
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.PackageLoader("rejuv.report", "templates"), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                             keep_trailing_newline=True)
    env.filters.update(num=number, readable=readable, data_uri=data_uri)
    env.globals["zip"] = zip
    return env


def render(template: str, **context) -> str:
    """The page `template` (a file in rejuv/report/templates) filled with `context`."""
    return _environment().get_template(template).render(**context)
