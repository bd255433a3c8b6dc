"""selfplay.checkpoints: atomic checkpoint folders, and one clear line when one cannot be written.

The failures are real, not mocked: a child process lowers RLIMIT_FSIZE (with SIGXFSZ
ignored) so that writes past the limit fail with EFBIG, as on a full disk, inside the
real torch.save and safetensors (save_pretrained) writers.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pytest

from selfplay import cli
from selfplay.checkpoints import CheckpointError, human_bytes, write_checkpoint
from selfplay.runs import checkpoints

REPO = Path(__file__).resolve().parent.parent


def _write_text(text: str):
    def write(folder: Path) -> None:
        (folder / "state.json").write_text(text)
    return write


def _names(run_dir: Path) -> list[str]:
    return sorted(p.name for p in (run_dir / "checkpoints").iterdir())


def test_writes_replaces_and_keeps_last(tmp_path):
    run = tmp_path / "run"
    for step in (1, 2, 3):
        assert write_checkpoint(run, step, _write_text(f"s{step}"), keep_last=2) == run / "checkpoints" / f"step-{step:06d}"
    assert _names(run) == ["step-000002", "step-000003"]
    # a staging folder left by a killed process is cleared; a folder of the same name is replaced
    (run / "checkpoints" / "step-000003.tmp").mkdir()
    (run / "checkpoints" / "step-000003.tmp" / "junk").write_text("half")
    write_checkpoint(run, 3, _write_text("again"), keep_last=2)
    assert _names(run) == ["step-000002", "step-000003"]
    assert os.listdir(run / "checkpoints" / "step-000003") == ["state.json"]
    assert (run / "checkpoints" / "step-000003" / "state.json").read_text() == "again"
    # killed mid-swap: step 3 was set aside as .old and not yet replaced; it is put back, not lost
    os.rename(run / "checkpoints" / "step-000003", run / "checkpoints" / "step-000003.old")
    write_checkpoint(run, 4, _write_text("s4"), keep_last=0)  # 0 keeps all
    assert (run / "checkpoints" / "step-000003" / "state.json").read_text() == "again"
    assert [p.name for p in checkpoints(run)] == ["step-000002", "step-000003", "step-000004"]


def test_program_errors_propagate_unchanged_and_leave_nothing(tmp_path):
    run = tmp_path / "run"
    write_checkpoint(run, 1, _write_text("good"), keep_last=3)

    def buggy(folder: Path) -> None:
        (folder / "half.json").write_text("{")
        raise ValueError("a bug, not the disk")

    with pytest.raises(ValueError, match="a bug, not the disk"):
        write_checkpoint(run, 2, buggy, keep_last=3)
    assert _names(run) == ["step-000001"]
    assert (run / "checkpoints" / "step-000001" / "state.json").read_text() == "good"


def test_parent_is_a_file_gives_one_line_with_no_checkpoint_yet(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoints").write_text("not a folder")  # mkdir of the staging folder: ENOTDIR
    with pytest.raises(CheckpointError) as info:
        write_checkpoint(run, 1, _write_text("x"), keep_last=2)
    message = str(info.value)
    assert "\n" not in message
    assert str(run / "checkpoints" / "step-000001") in message
    assert os.strerror(20) in message  # "Not a directory"
    assert " free on that file system when it failed" in message
    assert f"selfplay train --resume {run}" in message and "no checkpoint yet" in message
    assert isinstance(info.value.__cause__, NotADirectoryError)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a chmod 0o555 folder anyway; "
                    "test_parent_is_a_file_gives_one_line_with_no_checkpoint_yet covers a refused mkdir")
def test_read_only_checkpoints_folder(tmp_path):
    run = tmp_path / "run"
    good = write_checkpoint(run, 1, _write_text("good"), keep_last=2)
    (run / "checkpoints").chmod(0o555)
    try:
        with pytest.raises(CheckpointError) as info:
            write_checkpoint(run, 2, _write_text("x"), keep_last=2)
    finally:
        (run / "checkpoints").chmod(0o755)
    message = str(info.value)
    assert "\n" not in message and os.strerror(13) in message  # "Permission denied"
    assert f"last good checkpoint is {good}" in message and f"selfplay train --resume {run}" in message
    assert _names(run) == ["step-000001"]


# The child: a first checkpoint (a tiny HF model + tokenizer + trainer state) under a 4 MB
# limit, then torch.save of an 8 MB tensor, then save_pretrained of the 0.5 MB model under
# a 100 kB limit. It reports each CheckpointError, then (limit lifted) loads checkpoint 1.
CHILD = textwrap.dedent("""
    import json, resource, signal, sys
    from pathlib import Path
    import torch
    from selfplay.checkpoints import CheckpointError, write_checkpoint
    from selfplay.models import load_model

    run = Path(sys.argv[1])
    model, tok = load_model("tiny")
    state = {"step": 1, "w": torch.arange(10.0)}
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
    def limit(n):
        resource.setrlimit(resource.RLIMIT_FSIZE, (n, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))

    def first(folder):
        model.save_pretrained(folder)
        tok.save_pretrained(folder)
        torch.save(state, folder / "trainer_state.pt")
    def big_tensor(folder):
        (folder / "rollout.json").write_text("{}")
        torch.save({"w": torch.zeros(2_000_000)}, folder / "trainer_state.pt")
    def model_too_big(folder):
        model.save_pretrained(folder)

    out = {}
    limit(4_000_000)
    write_checkpoint(run, 1, first, keep_last=3)
    for step, write, n in ((2, big_tensor, 4_000_000), (3, model_too_big, 100_000)):
        limit(n)
        try:
            write_checkpoint(run, step, write, keep_last=3)
            out[step] = None
        except CheckpointError as err:
            out[step] = {"message": str(err), "cause": type(err.__cause__).__name__, "cause_text": str(err.__cause__)}
    limit(resource.RLIM_INFINITY)
    loaded, _ = load_model(str(run / "checkpoints" / "step-000001"))
    out["same_weights"] = all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))
    out["state"] = torch.load(run / "checkpoints" / "step-000001" / "trainer_state.pt")["w"].tolist()
    print(json.dumps(out))
""")


def test_file_too_large_in_torch_save_and_save_pretrained(tmp_path):
    run = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-c", CHILD, str(run)], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    good = run / "checkpoints" / "step-000001"
    for step, cause in (("2", "RuntimeError"), ("3", "SafetensorError")):
        assert out[step] is not None, f"step {step} was written despite the file size limit"
        message = out[step]["message"]
        assert out[step]["cause"] == cause, out[step]
        assert "\n" not in message
        assert str(run / "checkpoints" / f"step-00000{step}") in message
        assert " free on that file system when it failed" in message
        assert f"last good checkpoint is {good}" in message
        assert f"resume from it with: selfplay train --resume {run}" in message
    # what the real errors were, and that they were put in words
    assert "unexpected pos" in out["2"]["cause_text"] and "writing trainer_state.pt" in out["2"]["message"]
    assert "os error 27" in out["3"]["cause_text"] and os.strerror(27) in out["3"]["message"]  # "File too large"
    assert _names(run) == ["step-000001"]  # no .tmp left, the good one untouched
    assert out["same_weights"] is True and out["state"] == list(map(float, range(10)))


def test_human_bytes():
    assert [human_bytes(n) for n in (0, 999, 12_000_000, 3_500_000_000)] == ["0 B", "999 B", "12.0 MB", "3.5 GB"]


def test_cli_prints_checkpoint_error_as_one_line(tmp_path, monkeypatch, capsys):
    command = types.ModuleType("fake_train_command")
    command.add_arguments = lambda parser: None

    def run(args):
        run_dir = tmp_path / "run"
        run_dir.mkdir()
        (run_dir / "checkpoints").write_text("")
        write_checkpoint(run_dir, 7, _write_text("x"), keep_last=1)

    command.run = run
    monkeypatch.setitem(sys.modules, "fake_train_command", command)
    monkeypatch.setattr(cli, "quiet_libraries", lambda: None)  # keep this process's env and warning filters
    monkeypatch.setattr(cli, "COMMANDS", {"boom": ("fake_train_command", "raises CheckpointError")})
    assert cli.main(["boom"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: cannot write checkpoint ") and err.count("\n") == 1


def test_a_training_run_on_a_full_disk_stops_with_one_line_and_keeps_its_last_checkpoint(tmp_path):
    """`selfplay train` itself, with writes capped (RLIMIT_FSIZE) just above what the first
    checkpoint needs: the second checkpoint's weights no longer fit."""
    run = tmp_path / "run"
    code = textwrap.dedent(f"""
        import resource, signal, sys
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        from selfplay import cli
        sys.argv = ["selfplay", "train", "spiral_kuhn_tiny", "output_dir={run}", "steps=4", "save_every=2",
                    "eval.every=0", "threads=1", "recipe.samples_per_step=32", "recipe.parallel_games=8",
                    "optim.average_decay=0"]
        # the first checkpoint (step 2) is written freely; from then on, no file may grow past 64 kB
        import selfplay.trainer as trainer
        save = trainer.Trainer.save
        def capped(self):
            if self.step > 2:
                resource.setrlimit(resource.RLIMIT_FSIZE, (64_000, 64_000))
            return save(self)
        trainer.Trainer.save = capped
        sys.exit(cli.main())
    """)
    env = {**os.environ, "SELFPLAY_NO_PROGRESS": "1"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO)
    assert out.returncode == 1, out.stderr
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("error: cannot write checkpoint") and "Traceback" not in out.stderr, out.stderr
    assert "step-000004" in lines[-1] and "free" in lines[-1] and f"selfplay train --resume {run}" in lines[-1]
    assert "step-000002" in lines[-1]  # the last good checkpoint, named
    assert _names(run) == ["step-000002"]  # the good one intact, no staging folder left
    from selfplay.runs import latest_checkpoint

    resumed = subprocess.run([sys.executable, "-m", "selfplay.cli", "train", "--resume", str(run), "steps=2"],
                             capture_output=True, text=True, env=env, cwd=REPO)
    assert resumed.returncode == 0, resumed.stderr  # the kept checkpoint loads
    assert latest_checkpoint(run).name == "step-000002"
