"""docs/settings.md is generated from the settings models and must not drift."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from lineguard.cli import main
from lineguard.settings import settings_reference

DOC = Path(__file__).parents[2] / "docs" / "settings.md"


def test_the_committed_reference_is_the_generated_one() -> None:
    # On failure: lineguard settings --markdown > docs/settings.md
    assert DOC.read_text() == settings_reference() + "\n"


def test_the_reference_lists_the_settings_users_asked_for() -> None:
    text = settings_reference()
    for name in (
        "LINEGUARD_STATE_DIR",
        "LINEGUARD_REGISTRY_DIR",
        "LINEGUARD_TOPIC_MODELS",
        "LINEGUARD_TOPIC_FEEDBACK",
        "LINEGUARD_TOPIC_INCIDENTS",
        "LINEGUARD_INFLUX_TIMEOUT_S",
        "LINEGUARD_KAFKA_SASL_PASSWORD",
        "LINEGUARD_BUFFER_DIR",
    ):
        assert f"| `{name}` |" in text, name


def test_settings_shows_values_in_effect_with_secrets_redacted() -> None:
    env = {
        "LINEGUARD_INFLUX_URL": "http://writer:s3cret@influx.plant:8086",
        "LINEGUARD_INFLUX_TOKEN": "t0ken",
        "LINEGUARD_STATE_DIR": "/var/lib/lineguard",
    }
    from lineguard.settings import get_settings

    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(main, ["settings"], env=env)
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    assert "LINEGUARD_INFLUX_URL=http://writer:***@influx.plant:8086\n" in result.output
    assert "LINEGUARD_REGISTRY_DIR=/var/lib/lineguard/registry\n" in result.output
    assert "s3cret" not in result.output and "t0ken" not in result.output
