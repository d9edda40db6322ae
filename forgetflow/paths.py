"""Names from outside (a CSV cell, a command argument) joined into paths stay inside their folder.

The check is on the name itself, not on where it resolves: a name that is absolute or has a ``..`` part is
refused, whatever the file system holds. Symbolic links that the folder's owner put inside the folder are
followed as before (a dataset folder may link its images from another disk).

Also where the package's own shipped folders are, for the modules that list them without importing each other.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath, PureWindowsPath

from forgetflow.errors import ForgetflowError


def confined(folder: Path, name: str, what: str, error: type[ForgetflowError] = ForgetflowError,
             single: bool = False) -> Path:
    """``folder / name``, refused when ``name`` could leave ``folder``.

    Args:
        folder: the folder the name is relative to.
        name: the untrusted part.
        what: how the error names it (e.g. ``"image_path 'x' (train.csv:3)"``).
        error: the exception class to raise.
        single: the name must be one path component (a folder or file directly in ``folder``).

    Raises:
        error: ``name`` is empty, absolute (``/x``, ``C:\\x``), has a ``..`` part, or (``single``) has several parts.
    """
    posix, windows = PurePosixPath(name), PureWindowsPath(name)
    if not name.strip() or posix.is_absolute() or windows.is_absolute() or windows.drive:
        raise error(f"{what} must be a path relative to {folder}")
    if ".." in posix.parts or ".." in windows.parts:
        raise error(f"{what} leaves {folder} ('..' is not allowed)")
    if single and len(windows.parts) != 1:
        raise error(f"{what} must be a single name inside {folder}, not a path")
    return folder / name


SETTINGS_DIR = Path(__file__).resolve().parent / "settings"  # the shipped benchmark settings (bench_settings.py)


def shipped_settings() -> list[str]:
    """Names of the benchmark settings shipped with forgetflow (``forgetflow/settings/<name>.yaml``)."""
    return sorted(p.stem for p in SETTINGS_DIR.glob("*.yaml"))
