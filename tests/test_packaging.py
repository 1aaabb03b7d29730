"""The built wheel is complete (issue #22): installed in a clean virtual environment, away from
the repository, it prints a workflow's schema and renders the templates (policies/ included)."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def build_wheel(out: Path) -> Path:
    """Build from a copy of what git tracks (an in-tree build would leave build/ in the checkout)."""
    import shutil

    src = out.parent / "src"
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    for rel in listed:
        if (ROOT / rel).is_file():
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, src / rel)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(out),
            str(src),
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return next(out.glob("bridgehead-*.whl"))


def missing_from(wheel: Path) -> list[str]:
    """Files of the repository's policies/ and packages that the wheel lacks."""
    names = set(zipfile.ZipFile(wheel).namelist())
    wanted = [
        p.relative_to(ROOT).as_posix()
        for d in ("policies", "bridgehead", "workflows", "activities", "starter")
        for p in (ROOT / d).rglob("*")
        if p.suffix in (".py", ".json") and "__pycache__" not in p.parts
    ]
    return sorted(w for w in wanted + ["worker.py"] if w not in names)


def test_the_wheel_installs_alone_and_renders_templates(tmp_path):
    wheel = build_wheel(tmp_path / "dist")
    assert missing_from(wheel) == []
    env_dir = tmp_path / "clean"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    py = env_dir / "bin" / "python"
    site = subprocess.run(
        [str(py), "-c", "import sysconfig;print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    # The wheel unpacked into the clean environment; its dependencies from this test's environment
    # (a plain path entry: the repository's editable install there is not seen).
    zipfile.ZipFile(wheel).extractall(site)
    (Path(site) / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    away = tmp_path / "elsewhere"
    away.mkdir()

    def run(*a):
        return subprocess.run([str(py), *a], capture_output=True, text=True, cwd=away, timeout=120)

    where = run(
        "-c", "import bridgehead, policies; print(bridgehead.__file__); print(policies.__file__)"
    )
    assert where.returncode == 0 and str(ROOT) not in where.stdout and site in where.stdout, (
        where.stdout + where.stderr
    )
    schema = run("-m", "starter", "schema", "ClusterLifecycle")
    assert schema.returncode == 0 and '"compute_initial_nodes"' in schema.stdout, schema.stderr
    render = run(
        "-c",
        "from bridgehead import policies; print(len(policies.cluster_template('acme', 'c1', {'bridgehead:org': 'acme'})))",
    )
    assert render.returncode == 0 and int(render.stdout) > 1000, render.stderr


def test_twin_a_wheel_without_policies_is_caught(tmp_path):
    wheel = build_wheel(tmp_path / "dist")
    stripped = tmp_path / "stripped.whl"
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(stripped, "w") as dst:
        for item in src.infolist():
            if not item.filename.startswith("policies/"):
                dst.writestr(item, src.read(item))
    assert any(m.startswith("policies/") for m in missing_from(stripped))
