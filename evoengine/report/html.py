"""The report as one self-contained HTML file: page, styles, plotly.js and data inline.

Candidate text is model-written and untrusted, so it enters the page only as JSON inside a
`<script type="application/json">` block with `<`, `>` and `&` escaped (no text can close
the block), and the page's script puts it on screen with `textContent`. A
Content-Security-Policy lets only the page's own two scripts run (by hash), so even markup
that slipped through could not execute.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import html
import json
import math
import os
import re
import tempfile
from importlib import resources
from pathlib import Path
from typing import Any

from ..store import RunStore
from .data import all_details, run_summary

REPORT_NAME = "report.html"


@functools.cache
def _asset(name: str) -> str:
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


@functools.cache
def _plotly_js() -> str:
    import plotly.offline

    js = plotly.offline.get_plotlyjs()
    if "</script" in js.lower():  # cannot happen with plotly's bundle; would end the block early
        js = re.sub(r"</(script)", r"<\\/\1", js, flags=re.IGNORECASE)
    return js


def _finite(value: Any) -> Any:
    """JSON has no NaN/Infinity: turn them into null, recursively."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def script_json(data: Any) -> str:
    """JSON that is safe inside a <script> block: `<`, `>` and `&` are escaped as \\u003c etc."""
    try:
        text = json.dumps(data, separators=(",", ":"), allow_nan=False, default=str)
    except ValueError:
        text = json.dumps(_finite(data), separators=(",", ":"), allow_nan=False, default=str)
    return text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")


def _hash(script: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode() + "'"


def content_security_policy(live: bool) -> str:
    """Only the page's own scripts may run; nothing loads from the network (but the
    viewer's own JSON endpoints when live)."""
    scripts = " ".join(_hash(s) for s in (_plotly_js(), _asset("page.js")))
    return "; ".join(
        [
            "default-src 'none'",
            # plotly's WebGL traces (regl) compile shaders' glue code with new Function.
            f"script-src {scripts} 'unsafe-eval'",
            "style-src 'unsafe-inline'",
            "img-src data: blob:",
            "font-src data:",
            "connect-src 'self'" if live else "connect-src 'none'",
            "base-uri 'none'",
            "form-action 'none'",
        ]
    )


def render_page(summary: dict[str, Any], live: bool = False) -> str:
    """The page for a summary (with `details` embedded for a static report)."""
    values = {
        "csp": html.escape(content_security_policy(live), quote=True),
        "title": html.escape(f"evoengine · {summary['run']['name']}"),
        "css": _asset("page.css"),
        "data": script_json(summary),
        "plotly": _plotly_js(),
        "app": _asset("page.js"),
    }
    # One pass over the template only, so no inserted text is ever read as a placeholder.
    return re.sub(r"\{\{(\w+)\}\}", lambda m: values[m.group(1)], _asset("page.html"))


def write_report(run_dir: str | Path, out_path: str | Path | None = None) -> Path:
    """Write the run's report (default `run_dir/report.html`); it opens offline, anywhere."""
    run_dir = Path(run_dir)
    out = Path(out_path) if out_path is not None else run_dir / REPORT_NAME
    store = RunStore.open(run_dir, readonly=True)
    try:
        summary = run_summary(store, run_dir, live=False)
        summary["details"] = all_details(store)
    finally:
        store.close()
    page = render_page(summary, live=False)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".report-", suffix=".html", dir=out.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(page)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out
