"""Writing a checkpoint folder so that a failed write loses nothing and says what to do.

`write_checkpoint` stages `checkpoints/step-N.tmp`, renames it to `checkpoints/step-N`
and prunes old ones. A write that fails for a reason outside the program (a full disk, a
file size limit, a read-only folder) becomes one `CheckpointError` line that names the
folder, the OS error, the free space, and the exact command that resumes from the last good
checkpoint -- instead of torch's `unexpected pos 739392 vs 739280` traceback and a stray
`.tmp` folder. Earlier checkpoints are never touched by a failed write.

Light on purpose (no torch): the CLI imports it to print a `CheckpointError`.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
from collections.abc import Callable
from pathlib import Path

from selfplay.runs import CHECKPOINTS, checkpoints, latest_checkpoint


class CheckpointError(RuntimeError):
    """A checkpoint could not be written. The message is one line; the fields say the same."""

    def __init__(self, folder: Path, reason: str, free_bytes: int | None, run_dir: Path, last_good: Path | None):
        self.folder, self.reason, self.free_bytes = Path(folder), reason, free_bytes
        self.run_dir, self.last_good = Path(run_dir), last_good
        free = f"{human_bytes(free_bytes)} free" if free_bytes is not None else "free space unknown"
        resume = f"selfplay train --resume {shlex.quote(str(run_dir))}"
        if last_good is not None:
            then = f"the last good checkpoint is {last_good}; resume from it with: {resume}"
        else:
            then = f"there is no checkpoint yet, so `{resume}` would start the run from the beginning"
        message = f"cannot write checkpoint {folder}: {reason}; {free} on that file system when it failed; {then}"
        super().__init__(message.replace("\r", " ").replace("\n", " "))  # one line, whatever a path holds

    def __reduce__(self):  # picklable (multiprocessing, Ray) despite the custom constructor
        return type(self), (self.folder, self.reason, self.free_bytes, self.run_dir, self.last_good)


def write_checkpoint(run_dir: Path, step: int, write: Callable[[Path], None], keep_last: int) -> Path:
    """Write `run_dir/checkpoints/step-{step:06d}` and return it.

    `write(folder)` fills a staging folder `step-{step:06d}.tmp` (created empty), which is
    then renamed into place, replacing a folder of the same name. Then all but the newest
    `keep_last` checkpoints are deleted (`keep_last <= 0` keeps all; the new one always stays).

    An OSError, or an I/O failure inside torch.save / safetensors (a RuntimeError or
    SafetensorError without an errno), removes the staging folder and raises CheckpointError
    from it. Any other exception removes the staging folder and propagates unchanged.
    """
    run_dir = Path(run_dir)
    final = run_dir / CHECKPOINTS / f"step-{step:06d}"
    staging = final.with_name(final.name + ".tmp")
    old = final.with_name(final.name + ".old")  # the replaced folder, for the moment of the swap
    try:
        # left by a process killed mid-write: a half staging folder, or good ones set aside mid-swap
        _remove(staging)
        for set_aside in sorted((run_dir / CHECKPOINTS).glob("step-*.old")):
            if set_aside.is_dir() and not set_aside.with_suffix("").exists():
                os.rename(set_aside, set_aside.with_suffix(""))
            else:
                _remove(set_aside)
        staging.mkdir(parents=True)
        write(staging)
        if final.exists():
            os.rename(final, old)
            try:
                os.rename(staging, final)
            except BaseException:
                os.rename(old, final)  # put the good one back
                raise
            _remove(old)
        else:
            os.rename(staging, final)
    except BaseException as err:
        failed = is_write_failure(err)
        free = free_space(final) if failed else None  # as it was when the write failed: why it failed
        _remove(staging)
        if failed:
            raise CheckpointError(final, describe(err, staging), free, run_dir, latest_checkpoint(run_dir)) from err
        raise
    if keep_last > 0:
        for stale in checkpoints(run_dir)[:-keep_last]:
            if stale != final:
                shutil.rmtree(stale, ignore_errors=True)  # a checkpoint is written; a failed prune must not undo that
    return final


# ---- what counts as a write failure, and how to say it -------------------------------------

# torch's zip writer (caffe2 inline_container.cc) reports a short or failed write this way,
# with no errno: a full disk or RLIMIT_FSIZE gives "unexpected pos 576 vs 534".
_TORCH_IO = re.compile(r"unexpected pos \d+ vs \d+|PytorchStreamWriter failed|file write failed|open file failed")
_ENFORCE_PREFIX = re.compile(r"^\[enforce fail at [^\]]*\]\s*\.?\s*")


def is_write_failure(err: BaseException) -> bool:
    """An error from the file system rather than from the program: OSError, safetensors'
    I/O errors, and RuntimeErrors raised by torch.save's writer."""
    if isinstance(err, OSError):
        return True
    if type(err).__name__ == "SafetensorError" and type(err).__module__.startswith("safetensors"):
        return True  # safetensors' own exception class is not a RuntimeError
    if isinstance(err, RuntimeError):
        return bool(_TORCH_IO.search(str(err))) or _raised_in(err, ("torch/serialization.py", "/safetensors/"))
    return False


def describe(err: BaseException, staging: Path) -> str:
    """The OS error in words (strerror), and the file being written when it is known."""
    message = " ".join(str(err).split())  # one line
    path = err.filename if isinstance(err, OSError) else _file_in(err, staging)
    where = None
    if path is not None:
        try:
            inside = Path(os.path.abspath(path)).relative_to(staging.absolute())
            where = f"writing {inside}" if inside.parts else f"creating {staging.name}"
        except ValueError:
            where = f"at {path}"
    code = re.search(r"os error (\d+)", message)  # safetensors: "I/O error: File too large (os error 27)"
    pos = re.search(r"unexpected pos \d+ vs \d+", message)  # torch.save: no errno at all
    if isinstance(err, OSError):
        reason = err.strerror or message or type(err).__name__
    elif code:
        reason = os.strerror(int(code.group(1)))
    elif pos:
        where = f"{where}, " if where else ""
        return f"a write in torch.save came up short ({where}{pos.group()}), as on a full disk or past a file size limit"
    else:
        reason = _ENFORCE_PREFIX.sub("", message) or type(err).__name__
    return f"{reason} ({where})" if where else reason


def free_space(path: Path) -> int | None:
    """Free bytes on the file system holding `path` (or its nearest existing parent)."""
    path = Path(path).absolute()
    for candidate in (path, *path.parents):
        try:
            if candidate.is_dir():
                return shutil.disk_usage(candidate).free
        except OSError:
            continue
    return None


def human_bytes(n: float) -> str:
    """12000000 -> '12.0 MB' (powers of 1000, as disks are sold)."""
    if n < 1000:
        return f"{int(n)} B"
    for unit in ("kB", "MB", "GB", "TB", "PB"):
        n /= 1000
        if n < 1000 or unit == "PB":
            return f"{n:.1f} {unit}"
    raise AssertionError("unreachable")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        try:
            path.unlink()
        except OSError:
            pass


def _frames(err: BaseException):
    tb = err.__traceback__
    while tb is not None:
        yield tb.tb_frame
        tb = tb.tb_next


def _raised_in(err: BaseException, path_parts: tuple[str, ...]) -> bool:
    return any(part in frame.f_code.co_filename.replace(os.sep, "/") for frame in _frames(err) for part in path_parts)


def _file_in(err: BaseException, staging: Path) -> str | None:
    """The innermost file path under `staging` held by a frame of the traceback (torch.save's
    `f`, safetensors' `filename`): the file being written when the error came."""
    root = os.fspath(staging.absolute())
    for frame in reversed(list(_frames(err))):
        for value in frame.f_locals.values():
            if isinstance(value, (str, os.PathLike)):
                try:
                    text = os.path.abspath(os.fspath(value))
                except (TypeError, ValueError):
                    continue
                if text.startswith(root + os.sep):
                    return text
    return None
