"""scripts/need.sh, the install step behind `make setup|data|browser`, on machines it cannot
see here: as root (no sudo), as a user with sudo, as a user without it, without apt at all, and
with an apt that claims success but installs nothing. apt-get, sudo and id are stand-ins on a
PATH that holds nothing else, so what the script runs is recorded, not executed."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "need.sh"
BASH = shutil.which("bash")


def _exe(path: Path, body: str) -> None:
    path.write_text("#!" + BASH + "\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


def _machine(tmp_path: Path, *, uid: int, sudo: bool, apt: str | None) -> dict:
    """A bin folder with only the tools the script may use. ``apt``: None (no apt-get),
    'works' (installing chromium creates it), 'lies' (exits 0, installs nothing), 'fails'."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls.log"
    os.symlink(shutil.which("env"), bin_dir / "env")
    _exe(bin_dir / "id", f'[ "$1" = -u ] && echo {uid}\n')
    if sudo:
        _exe(bin_dir / "sudo", f'echo "sudo $*" >> {log}\n[ "$1" = -n ] && shift\n[ "$1" = true ] && exit 0\nexec "$@"\n')
    if apt is not None:
        make = "" if apt != "works" else (
            f'case "$*" in *install*chromium*) for t in chromium chromedriver; do printf "#!{BASH}\\n" > {bin_dir}/$t; '
            f'chmod +x {bin_dir}/$t; done;; esac\n'
        )
        _exe(bin_dir / "apt-get", f'echo "apt-get $* DEBIAN_FRONTEND=$DEBIAN_FRONTEND" >> {log}\n{make}exit {1 if apt == "fails" else 0}\n')
    return {"PATH": str(bin_dir), "log": log}


def _run(m: dict, what: str = "browser", **env: str) -> tuple[int, str, list[str]]:
    res = subprocess.run(
        [BASH, str(SCRIPT), what], env={"PATH": m["PATH"], **env}, capture_output=True, text=True, stdin=subprocess.DEVNULL
    )
    calls = m["log"].read_text().splitlines() if m["log"].exists() else []
    return res.returncode, res.stdout + res.stderr, calls


def test_as_root_apt_runs_directly_with_its_frontend_set(tmp_path):
    m = _machine(tmp_path, uid=0, sudo=False, apt="works")
    code, out, calls = _run(m, HEADSTART_REQUIRE_BROWSER="1")
    assert code == 0, out
    assert calls == [
        "apt-get update -qq DEBIAN_FRONTEND=noninteractive",
        "apt-get install -y -qq chromium chromium-driver DEBIAN_FRONTEND=noninteractive",
    ]
    assert "browser: installed" in out
    code, out, calls2 = _run(m)
    assert code == 0 and "browser: present" in out and calls2 == calls  # nothing installed twice


def test_a_user_with_sudo_installs_through_it(tmp_path):
    m = _machine(tmp_path, uid=1000, sudo=True, apt="works")
    code, out, calls = _run(m, HEADSTART_REQUIRE_BROWSER="1")
    assert code == 0, out
    assert calls[0] == "sudo -n true"
    assert "sudo -n env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver" in calls
    assert "apt-get install -y -qq chromium chromium-driver DEBIAN_FRONTEND=noninteractive" in calls


@pytest.mark.parametrize(
    ("uid", "sudo", "apt", "reason"),
    [
        (1000, False, "works", "not running as root, and sudo is missing"),
        (0, False, None, "no apt-get"),
        (0, False, "lies", "apt-get finished, but browser is still not there"),
        (0, False, "fails", "apt-get update failed"),
    ],
)
def test_what_cannot_be_installed_is_said_loudly_and_fails_only_where_required(tmp_path, uid, sudo, apt, reason):
    m = _machine(tmp_path, uid=uid, sudo=sudo, apt=apt)
    code, out, _ = _run(m)
    assert code == 0 and reason in out and "going on without it: the report's browser test will be skipped" in out
    assert "apt-get update && apt-get install -y chromium chromium-driver" in out  # the command to run
    code, out, _ = _run(m, HEADSTART_REQUIRE_BROWSER="1")
    assert code == 1 and reason in out and "this is required here; stopping" in out


def test_data_and_venv_are_checked_by_what_they_install(tmp_path):
    m = _machine(tmp_path, uid=0, sudo=False, apt="lies")
    (tmp_path / "fm").mkdir()
    code, out, _ = _run(m, "data", HEADSTART_FASHION_MNIST=str(tmp_path / "fm"), HEADSTART_REQUIRE_DATA="1")
    assert code == 1 and "dataset-fashion-mnist" in out
    (tmp_path / "fm" / "t10k-images-idx3-ubyte.gz").write_bytes(b"")
    code, out, calls = _run(m, "data", HEADSTART_FASHION_MNIST=str(tmp_path / "fm"), HEADSTART_REQUIRE_DATA="1")
    assert code == 0 and "data: present" in out
    _exe(Path(m["PATH"]) / "python3", "exit 1\n")  # a Python without ensurepip/venv
    code, out, _ = _run(m, "venv")
    assert code == 1 and "python3-venv" in out and "stopping" in out  # venv is always required


def test_an_unknown_target_is_a_usage_error(tmp_path):
    m = _machine(tmp_path, uid=0, sudo=False, apt="works")
    code, out, _ = _run(m, "everything")
    assert code == 64 and "usage" in out
