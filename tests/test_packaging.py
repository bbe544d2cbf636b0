"""The wheel carries what an installed linker needs outside the checkout: queries, pom, marker."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    # No build isolation: the build backend comes from the dev extra, so no download happens.
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "-w", str(out), str(ROOT)],
        check=True,
        capture_output=True,
        text=True,
    )  # fmt: skip
    (built,) = out.glob("linker-*.whl")
    return built


def test_wheel_ships_every_query_file_and_the_package_data(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for path in sorted((ROOT / "queries").rglob("*.cypher")):
        inside = "linker/cypher/" + path.relative_to(ROOT / "queries").as_posix()
        assert inside in names, f"{inside} missing from {wheel.name}"
        assert zipfile.ZipFile(wheel).read(inside) == path.read_bytes()
    assert {"linker/py.typed", "linker/neo4j/pom.xml"} <= names
    for init in sorted((ROOT / "linker").rglob("__init__.py")):  # every subpackage
        assert init.relative_to(ROOT).as_posix() in names, init
    grass = ROOT / "linker" / "neo4j" / "browser" / "linker.grass"
    assert zipfile.ZipFile(wheel).read("linker/neo4j/browser/linker.grass") == grass.read_bytes()
    for schema in sorted((ROOT / "linker" / "schemas").glob("*.json")):
        inside = f"linker/schemas/{schema.name}"
        assert zipfile.ZipFile(wheel).read(inside) == schema.read_bytes(), inside


def test_installed_wheel_finds_its_queries_away_from_the_checkout(
    wheel: Path, tmp_path: Path
) -> None:
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target),
         str(wheel)],
        check=True,
        capture_output=True,
        text=True,
    )  # fmt: skip
    probe = (
        "import linker.queries as q; "
        "print(q.QUERY_DIR); print(','.join(q.available_queries(include_load=True))); "
        "print('MATCH (c:Cluster)' in q.load_query('top_clusters'))"
    )
    env = dict(os.environ, PYTHONPATH=str(target))
    done = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=tmp_path,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    query_dir, names, found = done.stdout.strip().splitlines()
    assert Path(query_dir).is_relative_to(target)
    expected = sorted(p.stem for p in (ROOT / "queries").glob("*.cypher"))
    expected += sorted(f"load/{p.stem}" for p in (ROOT / "queries" / "load").glob("*.cypher"))
    assert names.split(",") == sorted(expected)
    assert found == "True"
