"""Outputs that must not replace what they name, run as a user runs the CLI (in subprocesses): a device, a FIFO or a
symbolic link given as --output is written into or through, never replaced; an --output that names an input under
any spelling is refused in one line before any work; `c3 train --output .` neither nests folders nor saves into the
directory it runs in; c3.torch.from_torch deletes nothing it did not create; staging folders of killed saves are
cleaned up."""
import json
import os
import shutil
import stat
import subprocess
import sys

import numpy as np
import pytest

import c3
from c3 import _core, cli

TINY = ["--steps", "2", "--batch", "2", "--hidden-size", "16", "--layers", "1", "--latents", "2", "--ratio", "4",
        "--quiet"]
TEXTS = ["The quick brown fox.", "Hello world."]


def run_c3(*arguments, cwd):
    return subprocess.run([sys.executable, "-m", "c3.cli", *arguments], cwd=cwd, capture_output=True, text=True,
                          timeout=600)


def one_error_line(result, command):
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"c3 {command}: error: "), result.stderr
    return lines[0]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A tiny cascade from `c3 train`, a texts file and the latents of its texts."""
    directory = tmp_path_factory.mktemp("outputs")
    (directory / "texts.txt").write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    assert run_c3("train", "--output", "casc", *TINY, cwd=directory).returncode == 0
    result = run_c3("compress", "--cascade", "casc", "--texts", "texts.txt", "--output", "lat.safetensors", "--quiet",
                    cwd=directory)
    assert result.returncode == 0, result.stderr
    return directory


@pytest.fixture
def character_device(tmp_path):
    """A node of the null device of our own where this process may make one (root), so that a failing test cannot
    break the machine's /dev/null; else /dev/null itself, which a user other than root cannot replace."""
    node = tmp_path / "null"
    try:
        os.mknod(node, stat.S_IFCHR | 0o666, os.makedev(1, 3))
        return str(node)
    except (OSError, AttributeError):
        return os.devnull


def file_writing_commands(output):
    return [("eval", ["--cascade", "casc", "--texts", "texts.txt", "--output", output, "--quiet"]),
            ("reconstruct", ["--cascade", "casc", "--latents", "lat.safetensors", "--output", output, "--quiet"])]


# ---- special files and links ------------------------------------------------------------------------------------
def test_output_into_a_character_device_writes_into_it(workspace, character_device):
    for command, arguments in file_writing_commands(character_device):
        result = run_c3(command, *arguments, cwd=workspace)
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["output"] == character_device
        assert stat.S_ISCHR(os.lstat(character_device).st_mode), command  # still the device, not a regular file
    assert stat.S_ISCHR(os.stat(os.devnull).st_mode)


def test_output_into_a_fifo_writes_into_it(workspace, tmp_path):
    fifo = str(tmp_path / "pipe")
    os.mkfifo(fifo)
    # The reader opens first, without blocking, so that the command's open finds it; the JSON fits the pipe.
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        result = run_c3("reconstruct", "--cascade", "casc", "--latents", "lat.safetensors", "--output", fifo, "--quiet",
                        cwd=workspace)
        assert result.returncode == 0, result.stderr
        received = os.read(reader, 1 << 16)
    finally:
        os.close(reader)
    assert len(json.loads(received)) == len(TEXTS)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert sorted(os.listdir(tmp_path)) == ["pipe"]


def test_output_through_a_symbolic_link_keeps_the_link(workspace, tmp_path):
    target, link = tmp_path / "metrics.json", tmp_path / "link.json"
    target.write_text("old")
    link.symlink_to("metrics.json")
    for command, arguments in file_writing_commands(str(link)):
        result = run_c3(command, *arguments, cwd=workspace)
        assert result.returncode == 0, result.stderr
        assert link.is_symlink() and os.readlink(link) == "metrics.json"
        assert json.loads(target.read_text()) != "old"
    assert sorted(os.listdir(tmp_path)) == ["link.json", "metrics.json"]  # no temporary left beside either


def test_python_writers_share_the_atomic_writer(tmp_path, character_device):
    # jsonfiles.write_json (the CLI's and the sweep's) and plots.save_figure go through _core.write_file_atomically.
    from c3.jsonfiles import write_json

    cli._write_json(character_device, {"a": 1})
    write_json(character_device, {"b": [1.0, float("nan")]})
    assert stat.S_ISCHR(os.lstat(character_device).st_mode)
    (tmp_path / "real.json").write_text("old")
    (tmp_path / "report.json").symlink_to("real.json")
    write_json(str(tmp_path / "report.json"), {"text": "new é"})
    assert (tmp_path / "report.json").is_symlink()
    assert json.loads((tmp_path / "real.json").read_text(encoding="utf-8")) == {"text": "new é"}
    with pytest.raises(c3.C3ValueError):
        _core.write_file_atomically(str(tmp_path / "x"), 3)


# ---- an output that names an input --------------------------------------------------------------------------------
def spellings(directory, name):
    """Ways to name `name` from inside `directory`: plain, ./, absolute, through a symlink, and (a file of the top
    folder) through a hard link."""
    link = name.replace("/", "_")
    os.symlink(name, directory / f"symlink-to-{link}")
    if "/" not in name:
        os.link(directory / name, directory / f"hardlink-to-{link}")
        yield f"hardlink-to-{link}"
    yield name
    yield f"./{name}"
    yield str(directory / name)
    yield f"symlink-to-{link}"


@pytest.mark.parametrize("command, flag, name", [
    ("compress", "--texts", "texts.txt"), ("eval", "--texts", "texts.txt"),
    ("reconstruct", "--latents", "lat.safetensors"), ("compress", "--cascade", "casc/llm1/model.safetensors"),
    ("eval", "--cascade", "casc/model.safetensors"), ("reconstruct", "--cascade", "casc/config.json")])
def test_output_naming_an_input_is_refused_before_any_work(tmp_path, workspace, command, flag, name):
    directory = tmp_path / "copy"
    shutil.copytree(workspace / "casc", directory / "casc")
    for entry in ("texts.txt", "lat.safetensors"):
        (directory / entry).write_bytes((workspace / entry).read_bytes())
    before = {entry: (directory / entry).read_bytes() for entry in ("texts.txt", "lat.safetensors")}
    inputs = {"compress": ["--cascade", "casc", "--texts", "texts.txt"],
              "eval": ["--cascade", "casc", "--texts", "texts.txt"],
              "reconstruct": ["--cascade", "casc", "--latents", "lat.safetensors"]}[command]
    for output in spellings(directory, name):
        line = one_error_line(run_c3(command, *inputs, "--output", output, "--quiet", cwd=directory), command)
        assert f"--output {output}: " in line and f"the input {flag} " in line, line
        assert {entry: (directory / entry).read_bytes() for entry in before} == before
        assert c3.Cascade.load(str(directory / "casc")) is not None
    assert not [entry for entry in os.listdir(directory) if ".tmp-" in entry or ".saving-" in entry]


def test_train_output_that_names_or_holds_an_input_is_refused(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "text.txt").write_text("An input text to cut passages from. " * 20)
    (tmp_path / "data" / "config.json").write_text(json.dumps({"steps": 2}))
    (tmp_path / "link").symlink_to("data")
    for arguments in (["--output", "data", "--text", "data/text.txt"], ["--output", "./data/", "--text", "data/text.txt"],
                      ["--output", "link", "--text", "data/text.txt"],
                      ["--output", str(tmp_path / "data"), "--config", "link/config.json"]):
        line = one_error_line(run_c3("train", *arguments, *TINY, cwd=tmp_path), "train")
        assert "holds the input --" in line, line
    assert sorted(os.listdir(tmp_path)) == ["data", "link"]
    assert sorted(os.listdir(tmp_path / "data")) == ["config.json", "text.txt"]


# ---- c3 train --output . ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("output", [".", "./", "..", "sub/..", "/"])
def test_train_into_the_current_directory_fails_in_one_line_without_nesting(tmp_path, output):
    (tmp_path / "sub").mkdir()
    line = one_error_line(run_c3("train", "--output", output, *TINY, cwd=tmp_path), "train")
    assert "current directory" in line or "file system root" in line, line
    assert len(line) < 300
    assert sorted(os.listdir(tmp_path)) == ["sub"] and os.listdir(tmp_path / "sub") == []


@pytest.mark.parametrize("command", ["demo", "sweep"])
def test_reports_are_never_written_into_the_file_system_root(tmp_path, command):
    """As root, `c3 demo --output /` wrote a whole report among the system's own files."""
    before = set(os.listdir("/"))
    line = one_error_line(run_c3(command, "--output", "/", "--size", "tiny", "--quiet", cwd=tmp_path), command)
    assert "file system root" in line, line
    assert set(os.listdir("/")) == before


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="needs /proc")
def test_a_folder_that_refuses_files_is_refused_before_any_work(tmp_path):
    """As root, os.access says /proc is writable: the demo trained, then failed writing its plots."""
    line = one_error_line(run_c3("demo", "--output", "/proc", "--size", "tiny", "--quiet", cwd=tmp_path), "demo")
    assert "cannot write into directory /proc" in line, line


@pytest.mark.parametrize("command, arguments", [("demo", ["--size", "tiny"]), ("train", TINY),
                                                ("sweep", ["--size", "tiny"])])
def test_an_empty_output_path_names_the_option(tmp_path, command, arguments):
    line = one_error_line(run_c3(command, *arguments, "--output", "", cwd=tmp_path), command)
    assert "--output: the path is empty" in line, line


def test_train_into_a_folder_named_with_dots_saves_beside_it(tmp_path):
    (tmp_path / "casc").mkdir()
    result = run_c3("train", "--output", "casc/.", *TINY, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert sorted(os.listdir(tmp_path)) == ["casc"]  # no staging folder inside the target or left beside it
    assert "config.json" in os.listdir(tmp_path / "casc") and os.path.isdir(tmp_path / "casc" / "llm1")
    assert not [name for name in os.listdir(tmp_path / "casc") if "saving" in name]


# ---- directory saves: stale staging folders, from_torch -------------------------------------------------------------
def dead_process_id():
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_save_removes_staging_folders_of_dead_processes_only(tmp_path):
    dead = dead_process_id()
    stale = tmp_path / f"model.saving-{dead}-0-1f"
    live = tmp_path / f"model.saving-{os.getpid()}-0-1f"
    foreign = tmp_path / "model.saving-notes"
    for folder in (stale, live, foreign):
        folder.mkdir()
        (folder / "file").write_text("x")
    cascade = c3.Cascade.new(
        c3.cascade.scratch_model_config(dict(hidden_size=16, intermediate_size=48, num_layers=1, num_heads=1,
                                             num_kv_heads=1), 8, 2),
        c3.cascade.scratch_model_config(dict(hidden_size=16, intermediate_size=48, num_layers=1, num_heads=1,
                                             num_kv_heads=1), 8, 2), 2, tokenizer=c3.cascade.byte_tokenizer(), seed=0)
    cascade.save(str(tmp_path / "model"))
    assert sorted(os.listdir(tmp_path)) == sorted(["model", live.name, foreign.name])


def test_write_directory_atomically_keeps_the_old_directory_when_fill_fails(tmp_path):
    target = tmp_path / "model"
    target.mkdir()
    (target / "config.json").write_text("old")

    def failing(staging):
        open(os.path.join(staging, "config.json"), "w").write("new")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        _core.write_directory_atomically(str(target), failing)
    assert (target / "config.json").read_text() == "old" and sorted(os.listdir(tmp_path)) == ["model"]


def test_from_torch_deletes_nothing_it_did_not_create(tmp_path):
    c3_torch = pytest.importorskip("c3.torch")
    config = c3.cascade.scratch_model_config(dict(hidden_size=16, intermediate_size=48, num_layers=1, num_heads=1,
                                                  num_kv_heads=1), 8, 2)
    cascade = c3.Cascade.new(config, config, 2, tokenizer=c3.cascade.byte_tokenizer(), seed=0)
    module = c3_torch.to_torch(cascade)
    target = tmp_path / "target"
    previous = tmp_path / "target.previous"  # the caller's own folder: the old from_torch deleted it
    previous.mkdir()
    (previous / "notes.txt").write_text("mine")
    dead = dead_process_id()
    (tmp_path / f"target.saving-{dead}-0-1f").mkdir()
    c3_torch.from_torch(module, str(target))
    (target / "README.md").write_text("kept")
    c3_torch.from_torch(module, str(target))
    assert (previous / "notes.txt").read_text() == "mine"
    assert (target / "README.md").read_text() == "kept"  # the old directory's other files carry over
    assert sorted(os.listdir(tmp_path)) == ["target", "target.previous"]
    reloaded = c3.Cascade.load(str(target))
    np.testing.assert_allclose(reloaded.compress(TEXTS), cascade.compress(TEXTS), rtol=1e-5, atol=1e-6)
