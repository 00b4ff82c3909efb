"""A candidate of several files (a small package, a config plus code, a prompt plus its tool
definitions), kept as one text so that the store, lineage, report and replay treat it like
any other candidate.

The one text is the files in order, each introduced by a header line of its own::

    === FILE: solver.py ===
    ...the lines of solver.py...
    === FILE: settings.yaml ===
    ...the lines of settings.yaml...

A file whose last line has no newline is announced as ``=== FILE: name (no newline at end)
===``. Names are relative POSIX paths of letters, digits and ``._+-`` (``pkg/__init__.py``);
a file's content may not itself hold a header line (`join_files` refuses it), so `split_files`
and `join_files` undo each other exactly. A problem whose `initial` names a folder has such
candidates (`Problem.folder`); the evaluator is handed a folder holding the files.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path

_NAME = r"[\w.+-]+(?:/[\w.+-]+)*"
HEADER = re.compile(rf"^=== FILE: ({_NAME})( \(no newline at end\))? ===$")
NAME = re.compile(rf"^{_NAME}$")
SKIPPED = ("__pycache__",)  # folders a seed folder may hold that are not part of the candidate

# Language by file suffix, for each file's EVOLVE-BLOCK comments and prompts; anything else is text.
LANGUAGES = {
    ".py": "python", ".yaml": "yaml", ".yml": "yaml", ".sh": "shell", ".c": "c", ".h": "c", ".cpp": "cpp",
    ".cc": "cpp", ".hpp": "cpp", ".cu": "cuda", ".rs": "rust", ".go": "go", ".java": "java", ".js": "javascript",
    ".ts": "typescript", ".lua": "lua", ".sql": "sql", ".jl": "julia", ".r": "r", ".swift": "swift",
    ".v": "verilog", ".sv": "verilog", ".f90": "fortran",
}  # fmt: skip


class FilesError(ValueError):
    """Files that cannot be kept as one text, or a text that is not such files; the message
    names the file and what to fix."""


def language_of(name: str) -> str:
    """The language of file `name`, by its suffix ("text" when unknown)."""
    return LANGUAGES.get(Path(name).suffix.lower(), "text")


def check_name(name: str) -> str:
    """`name` if it is a usable relative file name, else a FilesError saying why."""
    parts = name.split("/")
    if not NAME.match(name) or any(p in (".", "..") for p in parts):
        raise FilesError(
            f"{name!r} is not a usable file name: use a relative path of letters, digits and ._+- "
            "(folders separated by /, no '..')"
        )
    return name


def join_files(files: Mapping[str, str]) -> str:
    """The one text holding `files` (name -> content), in the mapping's order."""
    if not files:
        raise FilesError("a candidate of several files needs at least one file")
    out: list[str] = []
    for name, content in files.items():
        check_name(name)
        for number, line in enumerate(content.split("\n"), 1):
            if HEADER.match(line.rstrip("\r")):
                raise FilesError(
                    f"file {name}, line {number}: {line.strip()!r} looks like a file header; "
                    "a line of the form '=== FILE: name ===' cannot be part of a file"
                )
        bare = bool(content) and not content.endswith("\n")
        out.append(f"=== FILE: {name}{' (no newline at end)' if bare else ''} ===\n")
        out.append(content + ("\n" if bare else ""))
    return "".join(out)


def split_files(text: str) -> dict[str, str]:
    """The files (name -> content) in a text `join_files` wrote; FilesError if it is not one."""
    files: dict[str, str] = {}
    name, bare, lines = "", False, []

    def close() -> None:
        content = "".join(lines)
        files[name] = content[:-1] if bare else content

    for number, line in enumerate(split_lines(text), 1):
        header = HEADER.match(line.rstrip("\r\n"))
        if header is None:
            if not name:
                raise FilesError(f"line {number}: expected a '=== FILE: name ===' header before any text")
            lines.append(line)
            continue
        if name:
            close()
        name, bare, lines = header.group(1), bool(header.group(2)), []
        if name in files:
            raise FilesError(f"line {number}: file {name} appears twice")
    if not name:
        raise FilesError("no '=== FILE: name ===' header: this is not a candidate of several files")
    close()
    return files


def split_lines(text: str) -> list[str]:
    """Lines with their ends, split on LF only (as Python and editors count them)."""
    parts = text.split("\n")
    return [p + "\n" for p in parts[:-1]] + ([parts[-1]] if parts[-1] else [])


def read_folder(folder: Path) -> dict[str, str]:
    """The text files under `folder` (sorted by path; hidden files and `__pycache__` left out)."""
    files: dict[str, str] = {}
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        hidden = any(part.startswith(".") or part in SKIPPED for part in rel.parts)
        if hidden or path.suffix in (".pyc", ".pyo") or not path.is_file():
            continue
        name = check_name(rel.as_posix())
        try:
            files[name] = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise FilesError(f"{path}: not UTF-8 text ({exc}); a candidate's files must be text") from None
    if not files:
        raise FilesError(f"{folder}: the folder holds no files")
    return files


def write_folder(files: Mapping[str, str], folder: Path) -> Path:
    """Write `files` under `folder` (created if missing), each file whole."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        path = folder / check_name(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, encoding="utf-8", errors="surrogatepass")
    return folder


def replace_folder(files: Mapping[str, str], folder: Path) -> Path:
    """Make `folder` hold exactly `files`: written beside it, then swapped in, so a reader sees
    the old folder or the new one (a file left from an earlier best never lingers)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    new = folder.parent / f".{folder.name}.new"
    shutil.rmtree(new, ignore_errors=True)
    write_folder(files, new)
    old = folder.parent / f".{folder.name}.old"
    shutil.rmtree(old, ignore_errors=True)
    if folder.exists():
        os.replace(folder, old)
    os.replace(new, folder)
    shutil.rmtree(old, ignore_errors=True)
    return folder


def remove_stale_folders(prefix: str) -> None:
    """Remove the temporary folders `<prefix><pid>-...` of this user's processes that are gone
    (an engine killed before it could remove its own)."""
    for path in Path(tempfile.gettempdir()).glob(f"{prefix}*-*"):
        pid = path.name[len(prefix) :].split("-", 1)[0]
        try:
            if pid.isdigit() and path.stat().st_uid == os.geteuid():
                os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(path, ignore_errors=True)
        except OSError:
            continue
