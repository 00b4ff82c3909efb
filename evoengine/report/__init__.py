"""Run reports people can look at: a self-contained HTML file and a live local viewer.

    write_report(run_dir, out_path=None) -> Path        one HTML file that opens offline
    write_comparison([run_a, run_b, ...], out) -> Path  several runs side by side
    serve(run_dir, host="127.0.0.1", port=8765)        read-only viewer, refreshes while running
    start_viewer(run_dir, host, port=0) -> Viewer      the same in a background thread (.url, .close())

`data` reads what the page shows through the store's `RunReader`, `elites` shapes the
MAP-Elites maps, `compare` the comparison of runs, `html` assembles the page (assets
page.html, page.css, draw.js, text.js, page.js beside this file), `server` serves it.
"""

from __future__ import annotations

from .compare import write_comparison
from .html import write_report
from .server import Viewer, serve, start_viewer

__all__ = ["Viewer", "serve", "start_viewer", "write_comparison", "write_report"]
