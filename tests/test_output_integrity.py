"""Output integrity (issue 12): outputs checked before any work, the export and its manifest
published as one unit, the shrink guard, stale files cleaned, one writer per output, and the
pair still consistent after kill -9 at random points of `linker run` and on a full disk.

docs/reliability.md ("Output") lists each promise with the test below that checks it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner, Result

from linker import pipeline
from linker.cli import cli
from linker.engine import RunDirectory
from linker.engine.store import ExportLocation
from linker.errors import OutputBusy, OutputError, SettingsError, ShrinkRefused
from linker.export import takedown_frame, write_export
from linker.io.locking import OutputLock
from linker.pipeline import export_run
from linker.settings import load_settings
from linker.synth import generate_world

ROOT = Path(__file__).resolve().parent.parent

KILL_POINTS = int(os.environ.get("LINKER_KILL_POINTS", "4"))
"""Random kill points of the `linker run` kill test (a longer run: LINKER_KILL_POINTS=100)."""

KILL_SEED = int(os.environ.get("LINKER_KILL_SEED", "12"))


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("world")
    generate_world(1000, 4, out)
    return out


def _snapshot(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file()}


def _invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args])


def _one_line_error(result: Result, code: int, *needles: str) -> str:
    assert result.exit_code == code, result.output
    # One line, the last; a run that got as far as its stages may have logged warnings.
    lines = result.output.strip().splitlines()
    errors = [line for line in lines if line.startswith("Error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], result.output
    assert all(" WARNING " in line for line in lines[:-1]), result.output
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


def _no_work(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make any stage running fail the test: the refusal must come before the work."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a stage ran before the output was checked")

    monkeypatch.setattr(pipeline, "run_stages", refuse)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _pair(out: Path) -> tuple[str, int] | None:
    """The (sha256, rows) of a consistent export/manifest pair at ``out``; ``None`` when
    neither exists. Fails the test when they do not match each other."""
    manifest_path = out.with_name(out.name + ".manifest.json")
    if not out.exists():
        assert not manifest_path.exists(), "a manifest without its export"
        return None
    assert manifest_path.exists(), "an export without its manifest"
    manifest = json.loads(manifest_path.read_text())
    digest = _sha(out)
    assert manifest["export"]["sha256"] == digest, "the manifest names another file"
    rows = len(pd.read_csv(out, dtype="string", keep_default_na=False))
    assert manifest["export"]["rows"] == rows
    return digest, rows


def _leftovers(out: Path) -> list[str]:
    """Temporary files and uncommitted versions beside an export."""
    location = ExportLocation(out)
    found = [
        p.name
        for p in out.parent.iterdir()
        if p.name.startswith(f".{out.name}") and p.name.endswith(".tmp")
    ]
    if location.home.is_dir():
        found += [
            p.name
            for p in location.home.iterdir()
            if p.name.endswith(".tmp")
            or (p.name.startswith("g-") and p.name != location.committed())
        ]
    return found


# --- checked before any work ---


@pytest.mark.parametrize(
    "where",
    ["out_table", "out_subdir", "out_via_symlink", "run_dir_is_data", "run_dir_inside"],
)
def test_outputs_inside_the_data_directory_are_refused_before_any_work(
    where: str, world: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _no_work(monkeypatch)
    before = _snapshot(world)
    link = tmp_path / "link"
    link.symlink_to(world, target_is_directory=True)
    out, run_dir = tmp_path / "takedown.csv", tmp_path / "run"
    option = "--out"
    if where == "out_table":
        out = world / "events.csv"
    elif where == "out_subdir":
        out = world / "lists" / "takedown.csv"
    elif where == "out_via_symlink":
        out = link / "accounts.csv"
    else:
        option = "--run-dir"
        run_dir = world if where == "run_dir_is_data" else world / "takedown.run"
    result = _invoke("run", world, "--out", out, "--run-dir", run_dir)
    _one_line_error(result, 2, option, "inside the input data directory")
    assert _snapshot(world) == before
    assert sorted(p.name for p in world.iterdir()) == sorted(before)


def test_export_out_inside_the_data_directory_is_refused(world: Path, tmp_path: Path) -> None:
    out = tmp_path / "takedown.csv"
    assert _invoke("run", world, "--out", out).exit_code == 0
    before = _snapshot(world)
    result = _invoke(
        "export", "--run-dir", tmp_path / "takedown.run", "--out", world / "events.csv"
    )
    _one_line_error(result, 2, "events.csv", "inside the input data directory")
    result = _invoke(
        "export",
        "--run-dir",
        tmp_path / "takedown.run",
        "--out",
        tmp_path / "takedown.run" / "scores.parquet",
    )
    _one_line_error(result, 2, "artefact of the run directory")
    assert _snapshot(world) == before


def test_existing_directory_as_out_is_refused_before_any_work(
    world: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _no_work(monkeypatch)
    target = tmp_path / "takedown.csv"
    target.mkdir()
    _one_line_error(_invoke("run", world, "--out", target), 2, str(target), "is a directory")
    run_dir = tmp_path / "saved"
    store = RunDirectory(run_dir)
    store.begin()
    store.write("scores", _scores())
    store.write_json("manifest", {"settings": {"run": {}}})
    _one_line_error(_invoke("export", "--run-dir", run_dir, "--out", target), 2, "is a directory")
    assert target.is_dir() and not list(target.iterdir())


def _mount_tmpfs(where: Path, options: str) -> bool:
    where.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)],
        capture_output=True,
        check=False,
    )
    return done.returncode == 0


@contextlib.contextmanager
def _tmpfs(where: Path, options: str) -> Iterator[Path]:
    if shutil.which("mount") is None or not _mount_tmpfs(where, options):
        pytest.skip("cannot mount a tmpfs here (needs root and mount permission)")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True, check=False)


@pytest.mark.parametrize("where", ["under_a_file", "proc", "run_dir_under_a_file"])
def test_unwritable_output_location_is_refused_before_any_work(
    where: str, world: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Tests run as root, so permissions would not stop them: a path under a regular file
    # and a path under /proc cannot be created by anyone.
    _no_work(monkeypatch)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    out, run_dir = tmp_path / "takedown.csv", tmp_path / "run"
    if where == "under_a_file":
        out = blocker / "takedown.csv"
    elif where == "proc":
        out = Path("/proc/linker-test-output/takedown.csv")
    else:
        run_dir = blocker / "run"
    result = _invoke("run", world, "--out", out, "--run-dir", run_dir)
    path = str(run_dir if where == "run_dir_under_a_file" else out)
    _one_line_error(result, 2, path)
    assert not (tmp_path / "takedown.csv").exists()


def test_read_only_file_system_is_refused_before_any_work(
    world: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _no_work(monkeypatch)
    with _tmpfs(tmp_path / "ro", "ro,size=64k") as ro:
        result = _invoke("run", world, "--out", ro / "takedown.csv", "--run-dir", tmp_path / "r")
        _one_line_error(result, 2, str(ro), "Read-only file system")
        result = _invoke("run", world, "--out", tmp_path / "t.csv", "--run-dir", ro / "run")
        _one_line_error(result, 2, str(ro / "run"), "Read-only file system")


# --- the shrink guard ---


def _scores(n_suspend: int = 6, n_review: int = 2) -> pd.DataFrame:
    ids = [f"s{i}" for i in range(n_suspend)] + [f"r{i}" for i in range(n_review)]
    return pd.DataFrame(
        {
            "account_id": ids,
            "billing_customer_id": ["b"] * len(ids),
            "cluster_id": ["C-0001"] * len(ids),
            "cluster_size": [len(ids)] * len(ids),
            "score": [0.9] * n_suspend + [0.6] * n_review,
            "action": ["suspend"] * n_suspend + ["review"] * n_review,
            "reasons": ["card"] * len(ids),
            "reason_codes": ["shared_payment:1"] * len(ids),
        }
    )


def _saved_run(root: Path, scores: pd.DataFrame, **run_settings: object) -> Path:
    store = RunDirectory(root)
    store.begin()
    store.write("scores", scores)
    store.write_json("manifest", {"settings": {"run": run_settings}})
    return root


def test_a_much_smaller_list_is_refused_and_the_previous_one_kept(tmp_path: Path) -> None:
    out = tmp_path / "takedown.csv"
    big = _saved_run(tmp_path / "big", _scores(6, 2))
    export_run(big, out)
    before = _pair(out)
    # Empty; too few suspend rows (2 of 6 with more rows in all); too few rows.
    for scores in (_scores(0, 0), _scores(2, 8), _scores(3, 0)):
        small = _saved_run(tmp_path / "small", scores)
        with pytest.raises(ShrinkRefused, match=r"shrink_floor 0\.5.*previous list is kept"):
            export_run(small, out)
        assert _pair(out) == before
        assert _leftovers(out) == []
    # Half the suspend rows and half the rows is not below the floor.
    export_run(_saved_run(tmp_path / "half", _scores(3, 1)), out)
    assert _pair(out)[1] == 4  # type: ignore[index]


def test_allow_shrink_and_the_floor_setting(tmp_path: Path) -> None:
    out = tmp_path / "takedown.csv"
    export_run(_saved_run(tmp_path / "big", _scores(6, 2)), out)
    empty = _saved_run(tmp_path / "empty", _scores(0, 0))
    result = _invoke("export", "--run-dir", empty, "--out", out)
    _one_line_error(result, 2, str(out), "--allow-shrink")
    assert _pair(out)[1] == 8  # type: ignore[index]
    result = _invoke("export", "--run-dir", empty, "--out", out, "--allow-shrink")
    assert result.exit_code == 0, result.output
    assert _pair(out)[1] == 0  # type: ignore[index]
    manifest = json.loads(out.with_name("takedown.csv.manifest.json").read_text())
    assert manifest["replaced"]["rows"] == 8 and manifest["allow_shrink"] is True
    # The floor is a setting of the run (TOML [run] shrink_floor); 0 turns the guard off.
    export_run(_saved_run(tmp_path / "big", _scores(6, 2)), out)
    export_run(_saved_run(tmp_path / "off", _scores(1, 0), shrink_floor=0.0), out)
    assert _pair(out)[1] == 1  # type: ignore[index]
    settings = tmp_path / "linker.toml"
    settings.write_text("[run]\nshrink_floor = 0.25\n")
    assert load_settings(settings).run.shrink_floor == 0.25
    settings.write_text("[run]\nshrink_floor = 1.5\n")
    with pytest.raises(SettingsError, match=r"run\.shrink_floor must be in \[0, 1\]"):
        load_settings(settings)


def test_run_refuses_to_empty_a_list_and_keeps_the_run_for_allow_shrink(
    world: Path, tmp_path: Path
) -> None:
    out = tmp_path / "takedown.csv"
    assert _invoke("run", world, "--out", out).exit_code == 0
    before = _pair(out)
    assert before is not None and before[1] > 0
    # An allow-list that spares every account empties the list.
    allow = tmp_path / "allow.csv"
    accounts = pd.read_csv(world / "accounts.csv", dtype="string")
    allow.write_text("".join(f"account_id,{a}\n" for a in accounts["account_id"]))
    result = _invoke("run", world, "--out", out, "--allowlist", allow)
    _one_line_error(result, 2, str(out), "previous list is kept", "--allow-shrink")
    assert _pair(out) == before and _leftovers(out) == []
    manifest = json.loads((tmp_path / "takedown.run" / "manifest.json").read_text())
    assert manifest["export"]["published"] is False and manifest["export"]["rows"] == 0
    result = _invoke(
        "run", world, "--out", out, "--allowlist", allow, "--from", "export", "--allow-shrink"
    )
    assert result.exit_code == 0, result.output
    assert _pair(out)[1] == 0  # type: ignore[index]


# --- stale files, locks ---


def test_stale_temporary_files_of_a_crashed_run_are_removed(world: Path, tmp_path: Path) -> None:
    out = tmp_path / "takedown.csv"
    assert _invoke("run", world, "--out", out).exit_code == 0
    run_dir = tmp_path / "takedown.run"
    home = tmp_path / ".takedown.csv.d"
    stale = [
        tmp_path / ".takedown.csv.k2j4_x9q.tmp",  # an earlier version's atomic write
        tmp_path / ".takedown.csv.manifest.json.abcdefgh.tmp",
        home / "g-crashed1" / "takedown.csv",  # a version never committed
        run_dir / ".scores.parquet.abcdefgh.tmp",
        run_dir / "tables" / ".events.parquet.12345678.tmp",
        run_dir / "quarantine" / ".events.csv.zzzzzzzz.tmp",
    ]
    for path in stale:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
    (home / ".current.0badf00d.tmp").symlink_to("g-crashed1")
    kept = [tmp_path / ".notes.abcdefgh.tmp", run_dir / "my-notes.txt"]
    for path in kept:
        path.write_text("mine")
    before = _pair(out)
    assert _invoke("run", world, "--out", out).exit_code == 0
    for path in [*stale, home / ".current.0badf00d.tmp", home / "g-crashed1"]:
        assert not os.path.lexists(path), path
    for path in kept:
        assert path.read_text() == "mine"
    assert _pair(out) == before
    assert _leftovers(out) == []
    assert sorted(p.name for p in home.iterdir()) == sorted(
        ["current", "lock", str(ExportLocation(out).committed())]
    )


_HOLD_LOCK = """
import sys, time
from pathlib import Path
from linker.io.locking import OutputLock
OutputLock(Path(sys.argv[1]), "test").acquire()
print("locked", flush=True)
time.sleep(120)
"""


@contextlib.contextmanager
def _lock_held_by_child(lock_file: Path) -> Iterator[subprocess.Popen[str]]:
    child = subprocess.Popen(
        [sys.executable, "-c", _HOLD_LOCK, str(lock_file)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "locked"
        yield child
    finally:
        child.kill()
        child.wait(timeout=30)


def test_a_second_writer_of_the_same_output_is_refused_naming_the_holder(
    world: Path, tmp_path: Path
) -> None:
    out = tmp_path / "takedown.csv"
    assert _invoke("run", world, "--out", out).exit_code == 0
    before = _pair(out)
    with _lock_held_by_child(ExportLocation(out).lock_file) as child:
        line = _one_line_error(_invoke("run", world, "--out", out), 1, str(out), f"pid {child.pid}")
        assert "another linker process is writing it" in line
        result = _invoke("export", "--run-dir", tmp_path / "takedown.run", "--out", out)
        _one_line_error(result, 1, f"pid {child.pid}")
    assert _pair(out) == before
    # Two runs to different lists through one run directory.
    with _lock_held_by_child(tmp_path / "takedown.run" / ".lock") as child:
        result = _invoke(
            "run", world, "--out", tmp_path / "other.csv", "--run-dir", tmp_path / "takedown.run"
        )
        _one_line_error(result, 1, "run directory", f"pid {child.pid}")
    assert not (tmp_path / "other.csv").exists()
    # A holder killed with -9 leaves no lock behind.
    assert _invoke("run", world, "--out", out).exit_code == 0


def test_lock_is_exclusive_in_one_process_too(tmp_path: Path) -> None:
    with (
        OutputLock(tmp_path / "lock", "x.csv"),
        pytest.raises(OutputBusy, match=f"pid {os.getpid()}"),
    ):
        OutputLock(tmp_path / "lock", "x.csv").acquire()
    OutputLock(tmp_path / "lock", "x.csv").acquire().release()


# --- crashes: kill -9 inside the commit, and at random points of `linker run` ---

_STEPS = ("replace", "symlink", "rename", "unlink", "rmdir", "mkdir", "link", "fsync")


def _write_in_child(out: Path, frame: pd.DataFrame, crash_at: int) -> int:
    """Fork; the child publishes ``frame`` at ``out`` and dies (``os._exit``, no clean-up,
    as under kill -9) at its ``crash_at``-th file-system step. Returns its exit status."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 0
        try:
            count = [0]

            def step(fn):  # type: ignore[no-untyped-def]
                def inner(*args, **kwargs):  # type: ignore[no-untyped-def]
                    count[0] += 1
                    if count[0] == crash_at:
                        os._exit(137)
                    return fn(*args, **kwargs)

                return inner

            for name in _STEPS:
                setattr(os, name, step(getattr(os, name)))
            shutil.rmtree = step(shutil.rmtree)
            shutil.copyfile = step(shutil.copyfile)
            write_export(frame, out, shrink_floor=0.0)
        except BaseException:
            code = 1
        os._exit(code)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.01)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    pytest.fail("the writer hung")


@pytest.mark.parametrize("start", ["empty", "earlier_version_files", "published"])
def test_a_crash_at_every_step_of_a_publication_leaves_the_old_pair_or_the_new(
    start: str, tmp_path: Path
) -> None:
    old_frame = takedown_frame(_scores(6, 2))
    new_frame = takedown_frame(_scores(9, 3))
    template = tmp_path / "template"
    template.mkdir()
    if start == "earlier_version_files":  # two regular files, as linker wrote them before
        write_export(old_frame, tmp_path / "scratch" / "takedown.csv")
        for name in ("takedown.csv", "takedown.csv.manifest.json"):
            shutil.copyfile(tmp_path / "scratch" / name, template / name)
    elif start == "published":
        write_export(old_frame, template / "takedown.csv")
    old = _pair(template / "takedown.csv")
    reference = tmp_path / "reference" / "takedown.csv"
    write_export(new_frame, reference)
    new = _pair(reference)
    outcomes = []
    for crash_at in range(1, 200):
        work = tmp_path / f"crash{crash_at}"
        shutil.copytree(template, work, symlinks=True)
        status = _write_in_child(work / "takedown.csv", new_frame, crash_at)
        state = _pair(work / "takedown.csv")
        assert state in (old, new), (crash_at, state)
        outcomes.append(state == new)
        # The next writer cleans up after the crashed one.
        write_export(new_frame, work / "takedown.csv")
        assert _pair(work / "takedown.csv") == new and _leftovers(work / "takedown.csv") == []
        shutil.rmtree(work)
        if status == 0:
            break
    else:
        pytest.fail("the writer never finished")
    assert outcomes[-1] and not outcomes[0], "the crashes should span the commit"
    assert outcomes == sorted(outcomes), "once new, always new"


def _linker(*args: str | Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "linker.cli", *map(str, args)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def _check_after_kill(out: Path, run_dir: Path, allowed: set[tuple[str, int] | None]) -> None:
    state = _pair(out)
    assert state in allowed, state
    if state is not None and RunDirectory.is_run(run_dir):
        manifest = json.loads((run_dir / "manifest.json").read_text())
        published = json.loads(out.with_name(out.name + ".manifest.json").read_text())
        if manifest["export"]["sha256"] == state[0]:
            assert published["run_dir"] == str(run_dir.resolve())


def test_kill_9_at_random_points_of_linker_run_leaves_a_consistent_pair(
    world: Path, tmp_path: Path
) -> None:
    out = tmp_path / "takedown.csv"
    run_dir = tmp_path / "takedown.run"
    # The new run exports every account: a different, larger list. Its reference copy is
    # written elsewhere, alongside the first run.
    every = ("--action", "suspend", "--action", "review", "--action", "none")
    reference = tmp_path / "reference" / "takedown.csv"
    began = time.monotonic()
    first = _linker("run", world, "--out", out)
    ref = _linker("run", world, "--out", reference, *every)
    assert first.wait(timeout=300) == 0, first.stderr.read() if first.stderr else ""
    duration = time.monotonic() - began
    assert ref.wait(timeout=300) == 0, ref.stderr.read() if ref.stderr else ""
    old, new = _pair(out), _pair(reference)
    assert old is not None and new is not None and old != new
    args = ("run", world, "--out", out, *every)
    rng = random.Random(KILL_SEED)
    for _ in range(KILL_POINTS):
        child = _linker(*args)
        time.sleep(rng.uniform(0.0, duration * 1.1))
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=60)
        _check_after_kill(out, run_dir, {old, new})
    final = _linker(*args)
    assert final.wait(timeout=300) == 0, final.stderr.read() if final.stderr else ""
    assert _pair(out) == new
    assert _leftovers(out) == []
    assert not [p for p in run_dir.rglob("*.tmp")]


def test_a_full_disk_keeps_the_previous_pair(world: Path, tmp_path: Path) -> None:
    with _tmpfs(tmp_path / "disk", "size=160k") as disk:
        out = disk / "takedown.csv"
        run_dir = tmp_path / "run"
        result = _invoke("run", world, "--out", out, "--run-dir", run_dir)
        assert result.exit_code == 0, result.output
        before = _pair(out)
        # Fill the disk, leaving less than the new list needs.
        filler = disk / "filler"
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, b"\0" * 4096)
        finally:
            os.close(fd)
        filler_size = filler.stat().st_size
        os.truncate(filler, max(filler_size - 24 * 1024, 0))
        every = ("--action", "suspend", "--action", "review", "--action", "none")
        result = _invoke("run", world, "--out", out, "--run-dir", run_dir, *every)
        _one_line_error(result, 1, str(out), "No space left on device", "previous list is kept")
        assert _pair(out) == before and _leftovers(out) == []
        filler.unlink()
        result = _invoke("run", world, "--out", out, "--run-dir", run_dir, *every)
        assert result.exit_code == 0, result.output
        assert _pair(out) != before and _leftovers(out) == []


def test_output_error_types() -> None:
    assert OutputError("x").exit_code == 2 and ShrinkRefused("x").exit_code == 2
    assert OutputBusy("x").exit_code == 1
