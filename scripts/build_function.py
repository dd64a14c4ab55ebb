"""Build the Lambda artifact: runtime wheels for the target platform, the app, runtime bytecode.

`sam build` runs this through the Makefile's `build-ChatFunction` target (BuildMethod:
makefile), so `sam build` and `make build` ship the same thing. A default SAM build ships no
`.pyc` files for the runtime's Python, and Lambda's read-only /var/task cannot cache them, so
every cold start compiles every module it imports; this build compiles them ahead of time with
the runtime's own Python version (run this script with it).

Usage: python3.13 scripts/build_function.py [--platform TAG] ARTIFACTS_DIR
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import marshal
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# requirements.txt's pins with every dependency and the hash of each of their wheels (`make lock`).
REQUIREMENTS_LOCK = ROOT / "requirements.lock"
APP_PACKAGE = ROOT / "functions" / "chat_api"
# The streaming mode's handler: starts the app under uvicorn behind the Lambda Web Adapter.
RUN_SCRIPT = ROOT / "functions" / "run.sh"
# Lambda's python3.13 runs Amazon Linux 2023 (glibc 2.34): manylinux2014 wheels run there.
DEFAULT_PLATFORM = "manylinux2014_aarch64"
RUNTIME_VERSION = (3, 13)

# Nothing the function imports: test suites shipped inside packages, type stubs and the
# console scripts pip writes to bin/ for a command line. dist-info stays whole:
# importlib.metadata reads versions and entry points from it at run time (httpcore2,
# pydantic's plugins), and it carries the licenses.
PRUNED_DIRECTORIES = {"__pycache__", "tests", "_tests"}
PRUNED_SUFFIXES = {".pyi"}
# Powertools' utilities but jmespath_utils, which its Logger imports.
POWERTOOLS_UNUSED_UTILITIES = [
    *("auth_alpha", "batch", "circuit_breaker", "data_classes", "data_masking", "kafka"),
    *("feature_flags", "idempotency", "metadata", "parameters", "parser", "serialization"),
    *("streaming", "typing", "validation"),
]
# Modules of the dependencies that nothing the function runs imports, as `import` names them.
# tests/test_import_audit.py serves every route from an artifact built without them, and
# checks that no module it loads imports one, but where named there (and why).
UNUSED_MODULES = [
    # FastAPI looks for it to refuse pydantic v1 models, and takes its absence for "none".
    "pydantic.v1",
    # The app uses Powertools' Logger and Metrics only: not its event handler (FastAPI is the
    # app), nor the middleware factory and utilities for other features.
    "aws_lambda_powertools.event_handler",
    "aws_lambda_powertools.middleware_factory",
    *(f"aws_lambda_powertools.utilities.{name}" for name in POWERTOOLS_UNUSED_UTILITIES),
    # The OpenAI SDK's beta APIs (assistants, threads, agents, ChatKit): only the client's
    # `beta` property imports them, and the app calls `chat.completions` alone.
    "openai.resources.beta",
    "openai.types.beta",
    "openai.lib.beta",
]
# The dependencies whose classes' docstrings are schema descriptions in /openapi.json
# (OpenAI's types, which the /v1 responses reuse).
SCHEMA_PACKAGES = {"openai"}
# A hash-based `.pyc` whose source is never checked (PEP 552's flags: bit 0 set, bit 1 not).
UNCHECKED_HASH_FLAGS = (1).to_bytes(4, "little")
# Edits of the dependencies' own sources, each with its measured gain in the README ("The
# artifact"). Each text must occur exactly once: a version that changed it fails the build
# instead of shipping unpatched.
SOURCE_PATCHES: dict[str, list[tuple[str, str]]] = {
    # FastAPI's OpenAPI models (some 30, the recursive `Schema` the largest) only write
    # /openapi.json, yet are built when `fastapi.params` imports the module: `defer_build`
    # builds each on first use instead, and the module's own `model_rebuild()` calls (to
    # resolve forward references at import) would build the three largest at once.
    "fastapi/openapi/models.py": [
        (
            '    model_config = {"extra": "allow"}\n',
            '    model_config = {"extra": "allow", "defer_build": True}\n',
        ),
        (
            "\nSchema.model_rebuild()\nOperation.model_rebuild()\nEncoding.model_rebuild()\n",
            "\n",
        ),
    ],
    # FastAPI builds a TypeAdapter for every parameter, body and response of every route when
    # the route registers; built on first use instead, a request builds only its own route's,
    # still inside FastAPI's filter of a warning pydantic gives for these adapters.
    "fastapi/_compat/v2.py": [
        ("from functools import lru_cache\n", "from functools import cached_property, lru_cache\n"),
        (
            "    def __post_init__(self) -> None:\n        with warnings.catch_warnings():\n",
            "    @cached_property\n"
            "    def _type_adapter(self) -> TypeAdapter[Any]:\n"
            "        with warnings.catch_warnings():\n",
        ),
        (
            "            self._type_adapter: TypeAdapter[Any] = TypeAdapter(\n",
            "            return TypeAdapter(\n",
        ),
    ],
    # Powertools' package imports its Metrics and Tracer with its Logger, and the Logger the
    # JMESPath utility (for `correlation_id_path`); the function uses the Logger alone.
    "aws_lambda_powertools/__init__.py": [
        ("from aws_lambda_powertools.metrics import Metrics, single_metric\n", ""),
        ("from aws_lambda_powertools.tracing import Tracer\n", ""),
        (
            "\ninject_user_agent()\n",
            "\ninject_user_agent()\n\n\n"
            "def __getattr__(name):\n"
            '    if name in ("Metrics", "single_metric"):\n'
            "        from aws_lambda_powertools import metrics\n\n"
            "        return getattr(metrics, name)\n"
            '    if name == "Tracer":\n'
            "        from aws_lambda_powertools.tracing import Tracer\n\n"
            "        return Tracer\n"
            '    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")\n',
        ),
    ],
    "aws_lambda_powertools/logging/logger.py": [
        ("from aws_lambda_powertools.utilities import jmespath_utils\n", ""),
        (
            "            if correlation_id_path:\n",
            "            if correlation_id_path:\n"
            "                from aws_lambda_powertools.utilities import jmespath_utils\n\n",
        ),
    ],
    # FastAPI's OpenAPI models (deferred above, yet ~40 classes) and its security schemes are
    # imported by every app: `params` and `param_functions` name `Example` in annotations,
    # `openapi.utils` builds `OpenAPI` only in `get_openapi`, and the dependency analysis
    # imports `fastapi.security` (whose modules import the models) for an `isinstance` and an
    # `issubclass` check. Annotations kept as strings, the import moved into `get_openapi`,
    # and the checks made against the security classes only once something has imported them
    # (nothing can be an instance of a class no module has loaded): only `/docs`,
    # `/openapi.json` and an app with a security scheme import either.
    "fastapi/params.py": [
        ("import re\n", "from __future__ import annotations\n\nimport re\n"),
        (
            "from fastapi.openapi.models import Example\n",
            "from typing import TYPE_CHECKING\n\n"
            "if TYPE_CHECKING:\n    from fastapi.openapi.models import Example\n",
        ),
    ],
    "fastapi/param_functions.py": [
        ("import re\n", "from __future__ import annotations\n\nimport re\n"),
        (
            "from fastapi.openapi.models import Example\n",
            "from typing import TYPE_CHECKING\n\n"
            "if TYPE_CHECKING:\n    from fastapi.openapi.models import Example\n",
        ),
    ],
    "fastapi/openapi/utils.py": [
        ("from fastapi.openapi.models import OpenAPI\n", ""),
        (
            "    return jsonable_encoder(OpenAPI(**output)",
            "    from fastapi.openapi.models import OpenAPI\n\n"
            "    return jsonable_encoder(OpenAPI(**output)",
        ),
    ],
    "fastapi/dependencies/models.py": [
        ("from fastapi.security.base import SecurityBase\n", "import sys\n"),
        (
            "    unwrapped = _unwrapped_call(dependant.call)\n"
            "    return isinstance(unwrapped, SecurityBase)\n",
            '    base = sys.modules.get("fastapi.security.base")\n'
            "    if base is None:\n        return False\n"
            "    unwrapped = _unwrapped_call(dependant.call)\n"
            "    return isinstance(unwrapped, base.SecurityBase)\n",
        ),
        (
            "def _get_security_scheme(*, dependant: Dependant) -> SecurityBase:\n",
            'def _get_security_scheme(*, dependant: Dependant) -> "SecurityBase":\n'
            "    from fastapi.security.base import SecurityBase\n\n",
        ),
    ],
    "fastapi/dependencies/utils.py": [
        ("from fastapi.security.oauth2 import SecurityScopes\n", ""),
        (
            "    elif lenient_issubclass(type_annotation, SecurityScopes):\n",
            "    elif lenient_issubclass(type_annotation, _security_scopes()):\n",
        ),
        (
            "            SecurityScopes,\n        ),\n",
            "            _security_scopes(),\n        ),\n",
        ),
        (
            "        values[dependant.security_scopes_param_name] = SecurityScopes(\n",
            "        from fastapi.security.oauth2 import SecurityScopes\n\n"
            "        values[dependant.security_scopes_param_name] = SecurityScopes(\n",
        ),
        (
            "\n\ndef get_typed_signature(",
            "\n\nclass _NoSecurityScopes:\n    pass\n\n\n"
            "def _security_scopes() -> type:\n"
            '    oauth2 = sys.modules.get("fastapi.security.oauth2")\n'
            "    return _NoSecurityScopes if oauth2 is None else oauth2.SecurityScopes\n"
            "\n\ndef get_typed_signature(",
        ),
    ],
    # Starlette's error middleware imports `html` (and its table of 2,000 entities) for the
    # debug page's traceback, which `debug=False` (this app) never renders.
    "starlette/middleware/errors.py": [
        ("import html\n", ""),
        *(
            (signature, f"{signature}        import html\n\n")
            for signature in (
                "    def format_line(self, index: int, line: str, frame_lineno: int,"
                " frame_index: int) -> str:\n",
                "    def generate_frame_html(self, frame: inspect.FrameInfo, is_collapsed: bool)"
                " -> str:\n",
                "    def generate_html(self, exc: Exception, limit: int = 7) -> str:\n",
            )
        ),
    ],
    # pydantic-settings imports python-dotenv for its `.env` source; the function sets no
    # `env_file`, so only a local run that reads a `.env` needs it.
    "pydantic_settings/sources/providers/dotenv.py": [
        ("from dotenv import dotenv_values\n", ""),
        (
            "        file_vars: dict[str, str | None] = dotenv_values(",
            "        from dotenv import dotenv_values\n\n"
            "        file_vars: dict[str, str | None] = dotenv_values(",
        ),
    ],
}


def pip_install_command(target: Path, platform: str) -> list[str]:
    """pip installing the locked runtime requirements as wheels for the target platform only.

    Hash-checking mode: a wheel whose hash is not in the lock, or a dependency the lock does
    not list, fails the build instead of shipping.
    """
    version = "".join(map(str, RUNTIME_VERSION))
    return [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-compile",
        "--require-hashes",
        "--only-binary=:all:",
        "--implementation=cp",
        f"--python-version={version}",
        f"--platform={platform}",
        f"--target={target}",
        f"--requirement={REQUIREMENTS_LOCK}",
    ]


def install_dependencies(target: Path, platform: str) -> None:
    """The locked runtime requirements, as wheels built for the target platform only."""
    command = pip_install_command(target, platform)
    subprocess.run(command, check=True)  # noqa: S603 (fixed arguments: this interpreter's pip)


def copy_app(target: Path) -> None:
    """The function's own package, without caches the developer's runs left beside it.

    And `run.sh`, the handler in streaming mode: one artifact serves both modes.
    """
    shutil.copytree(
        APP_PACKAGE,
        target / APP_PACKAGE.name,
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
    )
    shutil.copy2(RUN_SCRIPT, target / RUN_SCRIPT.name)
    (target / RUN_SCRIPT.name).chmod(0o755)


def patch_sources(target: Path) -> None:
    """Apply `SOURCE_PATCHES`; a text that is not there exactly once stops the build."""
    for relative, edits in SOURCE_PATCHES.items():
        path = target / relative
        source = path.read_text()
        for old, new in edits:
            if source.count(old) != 1:
                raise SystemExit(f"{relative}: the text to patch is not there once: {old!r}")
            source = source.replace(old, new)
        path.write_text(source)


def prune(target: Path) -> None:
    """Remove what the function never imports."""
    shutil.rmtree(target / "bin", ignore_errors=True)
    for module in UNUSED_MODULES:
        path = target.joinpath(*module.split("."))
        if path.is_dir():  # a package
            shutil.rmtree(path)
        path.with_suffix(".py").unlink(missing_ok=True)  # a module
    for path in sorted(target.rglob("*"), reverse=True):
        if path.is_dir() and path.name in PRUNED_DIRECTORIES:
            shutil.rmtree(path)
        elif path.is_file() and path.suffix in PRUNED_SUFFIXES:
            path.unlink()


def compile_bytecode(target: Path) -> None:
    """`.pyc` for this interpreter, valid without comparing timestamps; docstrings: the app's alone.

    Zipping and deploying reset file times; an unchecked-hash `.pyc` is used as it is. The
    dependencies' docstrings, which no code of theirs reads, would take 1.3 MB of the cold
    start's memory (README, "The artifact").
    """
    for source in sorted(target.rglob("*.py")):
        data = source.read_bytes()
        tree = ast.parse(data, filename=str(source))
        package = source.relative_to(target).parts[0]
        if package != APP_PACKAGE.name:  # FastAPI documents the app's routes with its own
            DocstringRemover(keep_class_docstrings=package in SCHEMA_PACKAGES).visit(tree)
        code = compile(tree, str(source), "exec", dont_inherit=True)
        pyc = Path(importlib.util.cache_from_source(str(source)))
        pyc.parent.mkdir(exist_ok=True)
        header = (
            importlib.util.MAGIC_NUMBER + UNCHECKED_HASH_FLAGS + importlib.util.source_hash(data)
        )
        pyc.write_bytes(header + marshal.dumps(code))


class DocstringRemover(ast.NodeTransformer):
    """Drops the docstrings of modules, functions and classes: no code of theirs reads them.

    A class keeps its docstring where it is decorated (a dataclass without one computes its
    signature to write one) or in `SCHEMA_PACKAGES` (pydantic publishes a model's docstring
    as its schema's description).
    """

    def __init__(self, *, keep_class_docstrings: bool) -> None:
        self.keep_class_docstrings = keep_class_docstrings

    def visit_ClassDef(self, node: ast.ClassDef) -> ast.ClassDef:
        if self.keep_class_docstrings or node.decorator_list:
            self.generic_visit(node)
            return node
        return self.without_docstring(node)

    def without_docstring[Node: ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef](
        self, node: Node
    ) -> Node:
        self.generic_visit(node)
        first = node.body[0] if node.body else None
        if (
            isinstance(first, ast.Expr)
            and isinstance(first.value, ast.Constant)
            and isinstance(first.value.value, str)
        ):
            node.body = node.body[1:] or [ast.copy_location(ast.Pass(), first)]
        return node

    visit_Module = visit_FunctionDef = visit_AsyncFunctionDef = without_docstring


def build(target: Path, platform: str) -> None:
    """Build the artifact into `target`, which must be empty or absent."""
    if sys.version_info[:2] != RUNTIME_VERSION:
        raise SystemExit(
            f"Run this with Python {'.'.join(map(str, RUNTIME_VERSION))} (the Lambda runtime's "
            f"version), not {sys.version.split()[0]}: .pyc files only load in their own version."
        )
    if target.exists() and any(target.iterdir()):
        raise SystemExit(f"{target} is not empty: build into a fresh directory")
    target.mkdir(parents=True, exist_ok=True)
    install_dependencies(target, platform)
    copy_app(target)
    patch_sources(target)
    prune(target)
    compile_bytecode(target)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("target", type=Path, help="artifact directory (SAM's ARTIFACTS_DIR)")
    parser.add_argument(
        "--platform", default=DEFAULT_PLATFORM, help=f"wheel platform tag ({DEFAULT_PLATFORM})"
    )
    arguments = parser.parse_args()
    build(arguments.target.resolve(), arguments.platform)


if __name__ == "__main__":
    main()
