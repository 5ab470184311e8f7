"""Secrets (Kafka SASL password, InfluxDB token and password) never appear in
reprs, error messages or logs, and are wired into the clients that need them."""

from __future__ import annotations

import logging

import pytest
from kafka.errors import KafkaTimeoutError

from lineguard.influx import InfluxUnreachable, InfluxV1Client, _client_kwargs
from lineguard.ingest.gateway import make_producer
from lineguard.settings import InfluxSettings, KafkaSettings, Settings
from lineguard.stream.worker import faust_credentials

KAFKA_SECRET = "kafka-pw-3f9c1e"
TOKEN_SECRET = "influx-token-77ab2d"
INFLUX_PASSWORD = "influx-pw-c0ffee"
SECRETS = (KAFKA_SECRET, TOKEN_SECRET, INFLUX_PASSWORD)


def _assert_clean(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, (
            f"secret leaked: ...{text[max(0, text.find(secret) - 80) :][:160]}"
        )


def _settings(bootstrap: str = "127.0.0.1:9", influx_url: str = "http://127.0.0.1:9") -> Settings:
    return Settings(
        kafka=KafkaSettings(
            bootstrap_servers=bootstrap,
            security_protocol="SASL_PLAINTEXT",
            sasl_mechanism="SCRAM-SHA-256",
            sasl_username="gateway",
            sasl_password=KAFKA_SECRET,
        ),
        influx=InfluxSettings(
            url=influx_url.replace("http://", f"http://qa:{INFLUX_PASSWORD}@"),
            username="qa",
            password=INFLUX_PASSWORD,
            token=TOKEN_SECRET,
            timeout_s=2.0,
        ),
    )


def test_settings_and_clients_do_not_show_secrets_in_reprs() -> None:
    settings = _settings()
    for text in (
        repr(settings),
        str(settings),
        settings.model_dump_json(),
        repr(settings.kafka),
        repr(InfluxV1Client(settings.influx)),
        repr(faust_credentials(settings.kafka)),
    ):
        _assert_clean(text)


def test_secrets_reach_the_clients_that_need_them() -> None:
    settings = _settings()
    config = settings.kafka.kafka_python_config()
    assert config["sasl_plain_password"] == KAFKA_SECRET
    assert config["sasl_mechanism"] == "SCRAM-SHA-256"
    assert config["security_protocol"] == "SASL_PLAINTEXT"
    creds = faust_credentials(settings.kafka)
    assert creds.password == KAFKA_SECRET and creds.mechanism.value == "SCRAM-SHA-256"
    headers = _client_kwargs(settings.influx)["headers"]
    assert headers["Authorization"] == f"Token {TOKEN_SECRET}"
    # SASL without a mechanism defaults to PLAIN on both clients.
    plain = KafkaSettings(security_protocol="SASL_SSL", sasl_username="u", sasl_password="p")
    assert plain.kafka_python_config()["sasl_mechanism"] == "PLAIN"


def test_influx_errors_and_logs_carry_no_secret(caplog) -> None:
    settings = _settings()
    client = InfluxV1Client(settings.influx)
    with caplog.at_level(logging.DEBUG):
        with pytest.raises(InfluxUnreachable) as failure:
            client.write("m f=1 1")  # nothing listens on port 9
        assert client.ping() is False
    client.close()
    _assert_clean(str(failure.value) + repr(failure.value))
    # Something was logged about the attempt (httpx/httpcore at DEBUG), so a
    # clean log is not just an empty one.
    assert "connect_tcp.started host='127.0.0.1' port=9" in caplog.text, caplog.text
    _assert_clean(caplog.text)


@pytest.mark.integration
def test_gateway_producer_logs_carry_no_secret(local_stack, caplog) -> None:
    """A SASL/SCRAM handshake against the real broker, which has
    authentication off: it lists SCRAM-SHA-256 but refuses the handshake
    (Kafka error 33). Tansu can require authentication, but its users can
    only be created by an authenticated client, so no test here logs in; what
    is checked is what the attempt writes to the logs."""
    settings = _settings(bootstrap=local_stack.kafka_bootstrap)
    # The "kafka" logger's own level too: an in-process CLI run earlier in the
    # session quiets it (lineguard.cli.main without -v), and the records must
    # reach the capture whatever ran before.
    with caplog.at_level(logging.DEBUG), caplog.at_level(logging.DEBUG, logger="kafka"):
        producer = make_producer(settings.kafka, max_block_ms=5000)
        with pytest.raises(KafkaTimeoutError) as failure:
            producer.send("secret-test", value=b"x").get(5)
        producer.close(timeout=2)
    # The attempt is in the logs: the handshake sent to this broker and the
    # broker's refusal ...
    handshakes = [
        r.getMessage()
        for r in caplog.records
        if "SaslHandshakeRequest" in r.getMessage() and "SCRAM-SHA-256" in r.getMessage()
    ]
    assert any(local_stack.kafka_bootstrap in h for h in handshakes), caplog.text[-2000:]
    assert "UnsupportedSaslMechanismError" in caplog.text
    # ... and the password is in none of it.
    _assert_clean(caplog.text)
    _assert_clean(str(failure.value) + repr(failure.value))
    _assert_clean(repr(producer))
