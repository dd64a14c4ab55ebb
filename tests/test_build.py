"""The deployable artifact: how `sam build` makes it, and what `make build` left in .aws-sam.

The tests of what it left are marked `artifact`: a bare `pytest` deselects them (a fresh clone
has no build), `make test` builds first and runs them, as does `pytest -m artifact` after
`make build`.
"""

from __future__ import annotations

import importlib.machinery
import importlib.metadata
import importlib.util
import re
import sys
import zipfile
from pathlib import Path
from typing import Any

import fastapi
import pytest
from scripts import build_function

from tests.test_template import _load_template

ROOT = Path(__file__).resolve().parents[1]
ARTIFACT = ROOT / ".aws-sam" / "build" / "ChatFunction"
LOCK = ROOT / "requirements.lock"
APP_SOURCE = ROOT / "functions" / "chat_api"
# ELF e_machine of each Lambda architecture.
ELF_MACHINE = {"arm64": 183, "x86_64": 62}
LINUX_ARCH = {"arm64": "aarch64", "x86_64": "x86_64"}
MAX_ZIPPED_BYTES = 12_000_000  # 12 MB, as bench/ and the README count
# uvicorn is not here: streaming mode's run.sh serves the app with it.
DEV_ONLY = ["boto3", "botocore", "pytest", "mypy", "ruff", "moto", "hypothesis", "pip"]
# A hash-based .pyc the interpreter loads without checking its source (PEP 552).
UNCHECKED_HASH_FLAGS = 0b01


def _template() -> dict[str, Any]:
    return _load_template()


def _architecture() -> str:
    architecture: str = _template()["Globals"]["Function"]["Architectures"][0]
    return architecture


@pytest.fixture(scope="module")
def artifact() -> Path:
    if not (ARTIFACT / "chat_api" / "handler.py").is_file():
        pytest.fail(f"No artifact in {ARTIFACT}: run `make build` (make test does) first.")
    return ARTIFACT


def _files(root: Path, pattern: str = "*") -> list[Path]:
    return [path for path in root.rglob(pattern) if path.is_file()]


def _pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        if match := re.fullmatch(r"([A-Za-z0-9_.-]+)==(\S+)", line.strip()):
            pins[match[1]] = match[2]
    return pins


def _normalized(project: str) -> str:
    """A project's name as PEP 503 compares it."""
    return re.sub(r"[-_.]+", "-", project).lower()


def _locked() -> dict[str, tuple[str, list[str]]]:
    """requirements.lock as {project: (version, hashes)}; a requirement spans `\\` lines."""
    locked = {}
    text = LOCK.read_text().replace("\\\n", " ")
    for line in text.splitlines():
        if not (requirement := line.split("#", 1)[0].strip()):
            continue
        pin, *options = requirement.split()
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)==(\S+)", pin)
        assert match, f"not pinned with ==: {line}"
        hashes = [option.removeprefix("--hash=") for option in options]
        assert all(option.startswith("--hash=") for option in options), line
        locked[_normalized(match[1])] = (match[2], hashes)
    return locked


def _dist_info(root: Path, project: str) -> list[Path]:
    normalized = re.sub(r"[-_.]+", "_", project).lower()
    return [
        path for path in root.glob("*.dist-info") if path.name.lower().startswith(f"{normalized}-")
    ]


# How sam build is wired


def test_sam_build_runs_the_makefile_from_the_repository_root() -> None:
    metadata = _template()["Resources"]["ChatFunction"]["Metadata"]
    assert metadata["BuildMethod"] == "makefile"
    assert (ROOT / metadata["ContextPath"]).resolve() == ROOT
    assert (ROOT / metadata["WorkingDirectory"]).resolve() == ROOT
    assert re.search(r"^build-ChatFunction:", (ROOT / "Makefile").read_text(), re.MULTILINE)


def test_makefile_builds_wheels_for_the_templates_architecture() -> None:
    default = re.search(r"^FUNCTION_PLATFORM \?= (\S+)$", (ROOT / "Makefile").read_text(), re.M)
    assert default is not None
    assert default[1] == build_function.DEFAULT_PLATFORM
    assert default[1].endswith(f"_{LINUX_ARCH[_architecture()]}")


def test_build_script_compiles_for_the_templates_runtime() -> None:
    runtime = _template()["Globals"]["Function"]["Runtime"]
    assert runtime == "python{}.{}".format(*build_function.RUNTIME_VERSION)


def test_lock_pins_the_versions_requirements_txt_pins() -> None:
    locked = _locked()
    for project, version in _pins().items():
        assert locked[_normalized(project)][0] == version, f"{project}: run `make lock`"


def test_every_locked_requirement_carries_sha256_hashes() -> None:
    locked = _locked()
    assert len(locked) > len(_pins())  # the dependencies of the pins are locked too
    for project, (_, hashes) in locked.items():
        assert hashes, project
        assert all(re.fullmatch(r"sha256:[0-9a-f]{64}", value) for value in hashes), project


def test_lock_is_resolved_for_the_functions_runtime_and_platform() -> None:
    recipe = re.search(r"^lock:.*\n((?:\t.*\n)+)", (ROOT / "Makefile").read_text(), re.M)
    assert recipe is not None
    command = recipe[1].replace("\\\n", " ")
    assert "--generate-hashes" in command
    assert "--python-version {}.{}".format(*build_function.RUNTIME_VERSION) in command
    # uv names pip's platform tag manylinux2014_aarch64 aarch64-manylinux2014.
    policy, arch = build_function.DEFAULT_PLATFORM.split("_", 1)
    assert arch == LINUX_ARCH[_architecture()]
    assert f"--python-platform {arch}-{policy}" in command
    assert "--output-file requirements.lock" in command


def test_build_installs_the_lock_in_hash_checking_mode(tmp_path: Path) -> None:
    command = build_function.pip_install_command(tmp_path, build_function.DEFAULT_PLATFORM)
    assert "--require-hashes" in command
    assert f"--requirement={LOCK}" in command
    assert [arg for arg in command if "requirements.txt" in arg] == []
    assert "--only-binary=:all:" in command


def test_dev_venv_runs_the_locked_runtime_versions() -> None:
    # The tests run in the dev venv, which installs the lock first (hash-checked): what they
    # test is what the artifact ships, even where a dev tool wanted another version.
    rule = re.search(r"^\$\(BIN\)/\.installed:.*\n\t(.*)", (ROOT / "Makefile").read_text(), re.M)
    assert rule is not None
    assert rule[1].endswith(",requirements.lock)")
    for project, (version, _) in _locked().items():
        assert importlib.metadata.version(project) == version, project


def test_build_refuses_another_python_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(build_function, "RUNTIME_VERSION", (3, 12))

    with pytest.raises(SystemExit, match=r"Python 3\.12"):
        build_function.build(tmp_path / "artifact", build_function.DEFAULT_PLATFORM)


def test_build_refuses_a_directory_with_files_in_it(tmp_path: Path) -> None:
    (tmp_path / "left-over.py").write_text("")

    with pytest.raises(SystemExit, match="not empty"):
        build_function.build(tmp_path, build_function.DEFAULT_PLATFORM)


def test_prune_removes_tests_caches_stubs_scripts_and_unused_modules_only(tmp_path: Path) -> None:
    kept = [
        "pkg/__init__.py",
        "pkg/testing.py",
        "pkg-1.0.dist-info/RECORD",
        "pkg/data/bin.txt",
        "pydantic/main.py",
        "aws_lambda_powertools/utilities/__init__.py",
        "aws_lambda_powertools/utilities/jmespath_utils/__init__.py",
    ]
    removed = [
        "bin/pkg-cli",
        "pkg/tests/test_pkg.py",
        "pkg/_tests/test_x.py",
        "pkg/__pycache__/__init__.cpython-311.pyc",
        "pkg/__init__.pyi",
        "pydantic/v1/__init__.py",
        "aws_lambda_powertools/event_handler/api_gateway.py",
        "aws_lambda_powertools/utilities/parser/models/__init__.py",
        "aws_lambda_powertools/utilities/serialization.py",
    ]
    for name in kept + removed:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("")

    build_function.prune(tmp_path)

    assert sorted(str(path.relative_to(tmp_path)) for path in _files(tmp_path)) == sorted(kept)


def test_source_patches_apply_to_the_locked_versions(tmp_path: Path) -> None:
    # The dev venv installs the locked versions the artifact ships: its site-packages.
    site_packages = Path(fastapi.__file__).parents[1]
    for relative in build_function.SOURCE_PATCHES:
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_text((site_packages / relative).read_text())

    build_function.patch_sources(tmp_path)

    patched = (tmp_path / "fastapi/openapi/models.py").read_text()
    assert '"defer_build": True' in patched
    assert "model_rebuild()" not in patched
    dotenv_source = (tmp_path / "pydantic_settings/sources/providers/dotenv.py").read_text()
    assert "\nfrom dotenv import" not in dotenv_source
    assert "        from dotenv import dotenv_values\n" in dotenv_source


def test_a_source_patch_that_no_longer_matches_stops_the_build(tmp_path: Path) -> None:
    for relative in build_function.SOURCE_PATCHES:
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_text("class Changed: ...\n")

    with pytest.raises(SystemExit, match="not there once"):
        build_function.patch_sources(tmp_path)


def test_compiled_bytecode_is_used_without_checking_timestamps(tmp_path: Path) -> None:
    (tmp_path / "module.py").write_text("VALUE = 1\n")

    build_function.compile_bytecode(tmp_path)

    pyc = tmp_path / "__pycache__" / f"module.{sys.implementation.cache_tag}.pyc"
    assert int.from_bytes(pyc.read_bytes()[4:8], "little") == UNCHECKED_HASH_FLAGS


def _load_compiled(root: Path, module: str) -> Any:
    """Run the `.pyc` the build wrote for `module` (under `root`), not its source."""
    source = root.joinpath(*module.split(".")).with_suffix(".py")
    compiled = importlib.util.cache_from_source(str(source))
    loader = importlib.machinery.SourcelessFileLoader(module, compiled)
    spec = importlib.util.spec_from_loader(module, loader)
    assert spec is not None
    loaded = importlib.util.module_from_spec(spec)
    loader.exec_module(loaded)
    return loaded


def test_dependencies_bytecode_drops_docstrings_but_the_apps_and_schema_classes(
    tmp_path: Path,
) -> None:
    documented = (
        '"""Module."""\n'
        "import dataclasses\n"
        "def function():\n"
        '    """Function."""\n'
        "class Plain:\n"
        '    """Plain class."""\n'
        "    def method(self):\n"
        '        """Method."""\n'
        "        return 1\n"
        "@dataclasses.dataclass\n"
        "class Record:\n"
        '    """Record."""\n'
    )
    for package in ["dependency", "openai", "chat_api"]:
        (tmp_path / package).mkdir()
        (tmp_path / package / "module.py").write_text(documented)

    build_function.compile_bytecode(tmp_path)

    dependency = _load_compiled(tmp_path, "dependency.module")
    assert dependency.__doc__ is None
    assert dependency.function.__doc__ is None
    assert dependency.Plain.__doc__ is None
    assert dependency.Plain().method() == 1  # the body left runs as before
    assert dependency.Plain.method.__doc__ is None
    # A dataclass without a docstring would compute its signature for one.
    assert dependency.Record.__doc__ == "Record."
    schema_package = _load_compiled(tmp_path, "openai.module")
    assert schema_package.function.__doc__ is None
    assert schema_package.Plain.__doc__ == "Plain class."  # a schema's description
    app = _load_compiled(tmp_path, "chat_api.module")
    assert (app.__doc__, app.function.__doc__) == ("Module.", "Function.")
    assert app.Plain.method.__doc__ == "Method."


# What `make build` produced


@pytest.mark.artifact
def test_artifact_ships_the_app_as_in_the_repository(artifact: Path) -> None:
    sources = {path.relative_to(APP_SOURCE) for path in _files(APP_SOURCE, "*.py")}
    shipped = {path.relative_to(artifact / "chat_api") for path in _files(artifact / "chat_api")}
    assert {path for path in shipped if path.suffix == ".py"} == sources
    for relative in sources:
        assert (artifact / "chat_api" / relative).read_bytes() == (
            APP_SOURCE / relative
        ).read_bytes()


@pytest.mark.artifact
def test_artifact_ships_the_page_and_its_static_files(artifact: Path) -> None:
    static = APP_SOURCE / "static"
    sources = {path.relative_to(static) for path in _files(static)}
    shipped = {
        path.relative_to(artifact / "chat_api" / "static")
        for path in _files(artifact / "chat_api" / "static")
    }
    assert sources >= {Path("index.html"), Path("app.js"), Path("app.css")}
    assert shipped == sources
    for relative in sources:
        assert (artifact / "chat_api" / "static" / relative).read_bytes() == (
            static / relative
        ).read_bytes()


@pytest.mark.artifact
@pytest.mark.parametrize(("project", "version"), sorted(_pins().items()))
def test_artifact_holds_each_pinned_runtime_requirement(
    artifact: Path, project: str, version: str
) -> None:
    assert [path.name.lower() for path in _dist_info(artifact, project)] == [
        f"{re.sub(r'[-_.]+', '_', project).lower()}-{version}.dist-info"
    ]


@pytest.mark.artifact
def test_artifact_holds_exactly_the_locked_distributions(artifact: Path) -> None:
    shipped = {}
    for path in artifact.glob("*.dist-info"):
        name, version = path.name.removesuffix(".dist-info").rsplit("-", 1)
        shipped[_normalized(name)] = version
    assert shipped == {project: version for project, (version, _) in _locked().items()}


@pytest.mark.artifact
@pytest.mark.parametrize("project", DEV_ONLY)
def test_artifact_holds_no_dev_tool_or_aws_sdk(artifact: Path, project: str) -> None:
    # The Lambda runtime ships boto3; the rest only serve development.
    assert _dist_info(artifact, project) == []
    assert not (artifact / project).exists()


@pytest.mark.artifact
def test_artifact_holds_no_tests_stubs_or_scripts(artifact: Path) -> None:
    assert not (artifact / "bin").exists()
    assert [path for path in artifact.rglob("*") if path.name in {"tests", "_tests"}] == []
    assert _files(artifact, "*.pyi") == []


@pytest.mark.artifact
@pytest.mark.parametrize("module", build_function.UNUSED_MODULES)
def test_artifact_holds_no_module_the_function_never_imports(artifact: Path, module: str) -> None:
    # tests/test_import_audit.py proves that every route answers without them.
    path = artifact.joinpath(*module.split("."))
    assert not path.exists()
    assert not path.with_suffix(".py").exists()


@pytest.mark.artifact
def test_compiled_extensions_are_built_for_the_functions_architecture(artifact: Path) -> None:
    extensions = _files(artifact, "*.so")
    assert extensions  # pydantic-core and jiter at least
    for extension in extensions:
        header = extension.read_bytes()[:20]
        assert header[:4] == b"\x7fELF"
        assert int.from_bytes(header[18:20], "little") == ELF_MACHINE[_architecture()], extension


@pytest.mark.artifact
def test_every_module_has_runtime_bytecode_that_skips_timestamp_checks(artifact: Path) -> None:
    # The tests run on the runtime's Python version, so its magic number is the one to match.
    tag = sys.implementation.cache_tag
    for source in _files(artifact, "*.py"):
        pyc = source.parent / "__pycache__" / f"{source.stem}.{tag}.pyc"
        header = pyc.read_bytes()[:8]
        assert header[:4] == importlib.util.MAGIC_NUMBER, pyc
        assert int.from_bytes(header[4:8], "little") == UNCHECKED_HASH_FLAGS, pyc


@pytest.mark.artifact
def test_artifact_holds_bytecode_of_no_other_python(artifact: Path) -> None:
    tag = sys.implementation.cache_tag
    assert [
        path for path in _files(artifact, "*.pyc") if not path.name.endswith(f".{tag}.pyc")
    ] == []


@pytest.mark.artifact
def test_zipped_artifact_fits_the_size_budget(artifact: Path, tmp_path: Path) -> None:
    archive = tmp_path / "artifact.zip"
    # Deflate at the default level, as `sam deploy` zips it.
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zipped:
        for path in _files(artifact):
            zipped.write(path, path.relative_to(artifact))

    assert archive.stat().st_size <= MAX_ZIPPED_BYTES
