"""The report as one self-contained HTML file: page, styles, scripts and data inline.

Candidate text is model-written and untrusted, so it enters the page only as JSON inside a
`<script type="application/json">` block with `<`, `>` and `&` escaped (no text can close
the block), or inside gzip chunks in base64; the page's scripts put it on screen with
`textContent`. A Content-Security-Policy lets only the page's own scripts run (by hash), so
even markup that slipped through could not execute. The scripts are our own (no charting
library): canvas charts, a canvas lineage tree, a virtualised table and a small highlighter.
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
from importlib import resources
from pathlib import Path
from typing import Any

from ..store import RunReader
from .data import detail_chunks, lineage_order, run_summary

REPORT_NAME = "report.html"
SCRIPTS = ("draw.js", "text.js", "page.js")  # in load order; each its own <script>


@functools.cache
def _asset(name: str) -> str:
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


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
    scripts = " ".join(_hash(_asset(name)) for name in SCRIPTS)
    return "; ".join(
        [
            "default-src 'none'",
            f"script-src {scripts}",
            "style-src 'unsafe-inline'",
            "img-src data: blob:",
            "connect-src 'self' data:" if live else "connect-src data:",
            "base-uri 'none'",
            "form-action 'none'",
        ]
    )


def render_page(data: dict[str, Any], title: str, live: bool = False) -> str:
    """The page for `data` (a run summary, with `details` for a static report, or a comparison)."""
    values = {
        "csp": html.escape(content_security_policy(live), quote=True),
        "title": html.escape(f"evoengine · {title}"),
        "css": _asset("page.css"),
        "data": script_json(data),
        "scripts": "".join(f"<script>{_asset(name)}</script>\n" for name in SCRIPTS),
    }
    # One pass over the template only, so no inserted text is ever read as a placeholder.
    return re.sub(r"\{\{(\w+)\}\}", lambda m: values[m.group(1)], _asset("page.html"))


def write_page(page: str, out: Path) -> Path:
    """Write `page` to `out` atomically, with the permissions the umask gives new files."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(page, encoding="utf-8")
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return out


def write_report(run_dir: str | Path, out_path: str | Path | None = None) -> Path:
    """Write the run's report (default `run_dir/report.html`); it opens offline, anywhere."""
    run_dir = Path(run_dir)
    out = Path(out_path) if out_path is not None else run_dir / REPORT_NAME
    with RunReader.open(run_dir) as reader:  # the summary with every proposal's texts embedded
        summary = run_summary(reader, run_dir, live=False)
        summary["details"] = detail_chunks(reader, lineage_order(summary))
    return write_page(render_page(summary, summary["run"]["name"]), out)
