"""Running a worker: credentials, topic creation, the process entry point."""

from __future__ import annotations

import contextlib
import ssl
from typing import Any

from lineguard.settings import KafkaSettings, Settings

__all__ = ["ensure_topics", "faust_credentials", "run_worker"]


def faust_credentials(kafka: KafkaSettings) -> Any:
    """Faust broker credentials from LineGuard's Kafka settings, or None."""
    import faust

    context = None
    if kafka.security_protocol in ("SSL", "SASL_SSL"):
        context = ssl.create_default_context(
            cafile=str(kafka.ssl_cafile) if kafka.ssl_cafile else None
        )
        if kafka.ssl_certfile:
            context.load_cert_chain(
                str(kafka.ssl_certfile), str(kafka.ssl_keyfile) if kafka.ssl_keyfile else None
            )
    if kafka.security_protocol.startswith("SASL"):
        return faust.SASLCredentials(
            username=kafka.sasl_username,
            password=kafka.sasl_password.get_secret_value() if kafka.sasl_password else None,
            mechanism=kafka.sasl_mechanism or "PLAIN",
            ssl_context=context,
        )
    if context is not None:
        return faust.SSLCredentials(context)
    return None


def ensure_topics(settings: Settings) -> None:
    """Create LineGuard's topics if the cluster does not have them yet.

    Production clusters usually create topics through their own tooling;
    this only fills in what is missing, with the configured partition count.
    The scoring group's state topic is compacted (the latest record per
    line is the state) and has as many partitions as the telemetry topic:
    a line's state lives in the partition numbered like its telemetry's.
    """
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import TopicAlreadyExistsError

    from lineguard.models.announce import ensure_models_topic
    from lineguard.stream.state import state_topic_name

    ensure_models_topic(settings)  # compacted, one partition: created apart
    admin = KafkaAdminClient(client_id="lineguard-admin", **settings.kafka.kafka_python_config())
    try:
        existing = set(admin.list_topics())
        wanted = [
            settings.topics.telemetry,
            settings.topics.dead_letter,
            settings.topics.alerts,
            settings.topics.incidents,
            settings.topics.feedback,
        ]
        missing = [
            NewTopic(name, num_partitions=settings.topics.partitions, replication_factor=1)
            for name in wanted
            if name not in existing
        ]
        state = state_topic_name(settings.worker_id)
        if state not in existing:
            missing.append(
                NewTopic(
                    state,
                    num_partitions=settings.topics.partitions,
                    replication_factor=1,
                    topic_configs={"cleanup.policy": "compact"},
                )
            )
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):  # another worker won
                admin.create_topics(missing)
    finally:
        admin.close()


def run_worker(settings: Settings, role: str = "score", loglevel: str = "INFO") -> None:
    """Run a worker in the foreground until SIGTERM or Ctrl-C."""
    import faust
    from threadpoolctl import threadpool_limits

    from lineguard.detectors.scoring import warm_up
    from lineguard.stream.app import create_app

    # One BLAS thread: a micro-batch's products are small, and threads that
    # spin-wait for each other cost more than they give once the broker,
    # InfluxDB and the event loop want the same cores (measured: BLAS was a
    # fifth of a worker's samples with OpenBLAS's default of one per core).
    # A fleet scales out with worker processes instead.
    threadpool_limits(limits=1, user_api="blas")
    warm_up()
    ensure_topics(settings)
    app = create_app(settings, role)
    worker = faust.Worker(app, loglevel=loglevel, quiet=True)
    worker.execute_from_commandline()
