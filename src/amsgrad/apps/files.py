"""Output folders of the applications, checked before a long run rather than after it."""

from __future__ import annotations

import os
import tempfile

__all__ = ["folder_problem"]


def folder_problem(folder: str, *, create: bool = False) -> str | None:
    """Why files cannot be written into ``folder``, or None when they can.

    With ``create``, a missing folder (and its parents) is made first. The check writes and
    removes a temporary file, which is the only test that answers for every file system and
    permission model.
    """
    if create and not os.path.exists(folder):
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError as error:
            return f"folder {folder!r} cannot be created ({error.strerror or error})"
    if not os.path.exists(folder):
        return f"folder {folder!r} does not exist"
    if not os.path.isdir(folder):
        return f"{folder!r} is a file, not a folder"
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        return f"folder {folder!r} cannot be written ({error.strerror or error})"
    return None
