"""The gateway config file: the example validates, mistakes name their line."""

from __future__ import annotations

from pathlib import Path

import pytest

from lineguard.ingest.gateway_config import ConfigError, load_config, parse_config

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "gateway" / "gateway.toml"

BASE = """\
site = "s1"
gateway_id = "gw1"

[[sources]]
type = "opcua"
name = "plc"
endpoint = "opc.tcp://127.0.0.1:4840"

[lines.l1]
period_s = 1.0

[[sensors]]
line = "l1"
name = "a"
source = "plc"
tag = "ns=2;s=A"
"""


def test_example_config_is_valid():
    config = load_config(EXAMPLE)
    assert config.site == "plant-a"
    assert [s.name for s in config.line_sensors("valve1")] == ["Pressure", "Temperature"]
    temp = config.line_sensors("valve1")[1]
    assert config.staleness_s(temp) == 30.0
    assert config.staleness_s(config.line_sensors("valve1")[0]) == 5.0
    assert config.source("uns").type == "sparkplug"
    # The password is a secret: not in the repr.
    assert "change-me" not in repr(config)


def test_unknown_line_is_refused_with_its_line_number():
    text = BASE + '\n[[sensors]]\nline = "l9"\nname = "b"\nsource = "plc"\ntag = "ns=2;s=B"\n'
    with pytest.raises(ConfigError) as err:
        parse_config(text, "gw.toml")
    # line = "l9" is line 19 of the text.
    assert "gw.toml:19: sensors.1.line" in str(err.value)
    assert "unknown line 'l9'" in str(err.value)


def test_one_tag_feeding_two_sensors_is_refused_with_both_lines():
    text = BASE + '\n[[sensors]]\nline = "l1"\nname = "b"\nsource = "plc"\ntag = "ns=2;s=A"\n'
    with pytest.raises(ConfigError) as err:
        parse_config(text, "gw.toml")
    msg = str(err.value)
    assert "gw.toml:22: sensors.1.tag" in msg
    assert "already feeds l1/a (line 16)" in msg


def test_type_error_points_at_the_key():
    text = BASE.replace("period_s = 1.0", 'period_s = "fast"')
    with pytest.raises(ConfigError) as err:
        parse_config(text, "gw.toml")
    assert "gw.toml:10: lines.l1.period_s" in str(err.value)
    assert "'fast'" in str(err.value)


def test_misspelt_key_is_refused():
    text = BASE.replace(
        'endpoint = "opc.tcp://127.0.0.1:4840"', 'endpoint = "opc.tcp://x:1"\nendpiont = "x"'
    )
    with pytest.raises(ConfigError) as err:
        parse_config(text, "gw.toml")
    assert "gw.toml:8: sources.0.endpiont" in str(err.value)


def test_security_policy_without_certificate_is_refused():
    text = BASE.replace(
        'endpoint = "opc.tcp://127.0.0.1:4840"',
        'endpoint = "opc.tcp://127.0.0.1:4840"\nsecurity_policy = "Basic256Sha256"\n'
        'security_mode = "SignAndEncrypt"',
    )
    with pytest.raises(ConfigError) as err:
        parse_config(text, "gw.toml")
    assert "gw.toml:4: sources.0" in str(err.value)
    assert "certificate and private_key" in str(err.value)


def test_not_toml_is_a_config_error():
    with pytest.raises(ConfigError, match="not valid TOML"):
        parse_config("site = ", "gw.toml")
