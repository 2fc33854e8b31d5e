"""install.sh chooses the torch build: CPU with --cpu or when no NVIDIA driver is present, CUDA otherwise, CI as before.

The real script runs in a scratch copy of the repository whose ``.venv/bin/python`` is a stand-in that records every
call (pip itself and PyPI are outside our control and far too slow here); PATH holds only the tools the script uses,
so ``nvidia-smi`` is present exactly when a test puts it there.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOOLS = ("bash", "dirname", "uname", "cat", "env")
FAKE_PYTHON = """#!/bin/bash
echo "$*" >> "$FAKE_LOG"
if [ "$1" = "-c" ]; then
  case "$2" in
    "import torch") exit "${FAKE_TORCH_MISSING:-1}" ;;
    *torch.version.cuda*) echo "${FAKE_TORCH_CUDA:-}"; exit 0 ;;
  esac
fi
case "$*" in
  *--index-url*) exit 0 ;;
  *"torch=="*) exit "${FAKE_LOCAL_CPU_WHEEL_MISSING:-0}" ;;
esac
exit 0
"""
NO_DRIVER = not Path("/proc/driver/nvidia").exists()  # the one thing PATH cannot hide


@pytest.fixture
def repo(tmp_path):
    root = tmp_path / "repo"
    (root / ".venv" / "bin").mkdir(parents=True)
    (root / "tests" / "oracle").mkdir(parents=True)
    shutil.copy(ROOT / "install.sh", root / "install.sh")
    (root / "tests" / "oracle" / "setup_venv.sh").write_text('echo "setup_venv.sh" >> "$FAKE_LOG"\n')
    python = root / ".venv" / "bin" / "python"
    python.write_text(FAKE_PYTHON)
    python.chmod(0o755)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in TOOLS:
        (bin_dir / tool).symlink_to(shutil.which(tool))
    return root


def _install(repo, *args, driver=False, **env):
    bin_dir = repo.parent / "bin"
    if driver:
        (bin_dir / "nvidia-smi").write_text("#!/bin/bash\n")
        (bin_dir / "nvidia-smi").chmod(0o755)
    log = repo / "calls.log"
    full_env = {"PATH": str(bin_dir), "FAKE_LOG": str(log), "HOME": str(repo), **env}
    done = subprocess.run(
        ["bash", str(repo / "install.sh"), *args], env=full_env, capture_output=True, text=True, timeout=60
    )
    calls = log.read_text().splitlines() if log.exists() else []
    return done, [c for c in calls if c != "-c import torch"]


@pytest.mark.skipif(not NO_DRIVER, reason="this host has /proc/driver/nvidia, which a test cannot hide")
def test_no_driver_installs_the_local_cpu_wheel_and_says_so_once(repo):
    done, calls = _install(repo)
    assert done.returncode == 0, done.stderr
    assert calls == ["-m pip install -q torch==2.13.0+cpu", "-m pip install -q -e ."]
    notes = [line for line in done.stdout.splitlines() if "NVIDIA" in line]
    assert len(notes) == 1 and "CPU build" in notes[0]


def test_cpu_flag_falls_back_to_pytorchs_cpu_index(repo):
    done, calls = _install(repo, "--cpu", driver=True, FAKE_LOCAL_CPU_WHEEL_MISSING="1")
    assert done.returncode == 0, done.stderr
    assert calls == [
        "-m pip install -q torch==2.13.0+cpu",
        "-m pip install -q --index-url https://download.pytorch.org/whl/cpu torch==2.13.0+cpu",
        "-m pip install -q -e .",
    ]
    assert "NVIDIA" not in done.stdout  # asked for, not detected


def test_a_driver_leaves_torch_to_pip(repo):
    done, calls = _install(repo, driver=True)
    assert done.returncode == 0, done.stderr
    assert calls == ["-m pip install -q -e ."]
    assert done.stdout == ""


@pytest.mark.skipif(not NO_DRIVER, reason="this host has /proc/driver/nvidia, which a test cannot hide")
def test_gpu_flag_keeps_the_cuda_route_without_a_driver(repo):
    done, calls = _install(repo, "--gpu")
    assert done.returncode == 0, done.stderr
    assert calls == ["-m pip install -q -e .[gpu]"]


def test_ci_dev_install_is_unchanged(repo):
    done, calls = _install(repo, "--dev", CI="true")
    assert done.returncode == 0, done.stderr
    assert calls == ["-m pip install -q torch==2.13.0", "-m pip install -q -e .[dev]", "setup_venv.sh"]
    assert done.stdout == ""


def test_torch_already_there_is_kept_but_a_cuda_build_is_pointed_out(repo):
    done, calls = _install(repo, "--cpu", FAKE_TORCH_MISSING="0", FAKE_TORCH_CUDA="12.8")
    assert done.returncode == 0, done.stderr
    assert not any("torch==" in c for c in calls)
    assert "already has the CUDA build" in done.stdout
    done, _ = _install(repo, "--cpu", FAKE_TORCH_MISSING="0", FAKE_TORCH_CUDA="")
    assert "CUDA" not in done.stdout


@pytest.mark.parametrize("args", [["--cpu", "--gpu"], ["--cuda"]])
def test_bad_options_exit_2_with_one_line(repo, args):
    done, calls = _install(repo, *args)
    assert done.returncode == 2 and calls == []
    assert len(done.stderr.strip().splitlines()) == 1


def test_install_script_is_executable():
    assert os.access(ROOT / "install.sh", os.X_OK)
