"""The models-topic follower reconnects: a cut network path, healed, and announcements still land.

``ModelUpdates`` is the worker's follower of the compacted models topic (a
thread with its own kafka-python consumer). Here it runs against the real
broker behind the stack's pausable proxy:

* started while the path is cut, its consumer cannot bootstrap and raises;
  the follower counts the failure (``reconnects``), builds a new consumer,
  and once the path is back it reads the topic and applies an announcement;
* cut again while following and healed, a promotion announced afterwards
  still takes effect.
"""

from __future__ import annotations

import uuid

import pytest

from lineguard.models.announce import Announcement, announce, ensure_models_topic
from lineguard.settings import KafkaSettings, Settings, TopicSettings
from lineguard.stream.model_updates import ModelUpdates
from tests.support.workers import poll

pytestmark = pytest.mark.integration


def _active(updates: ModelUpdates, line: str) -> str | None:
    found = updates.active(line)
    return found.version if found is not None else None


def test_the_follower_reconnects_after_the_path_to_the_broker_was_cut(proxied_stack) -> None:
    tag = uuid.uuid4().hex[:8]
    settings = Settings(
        kafka=KafkaSettings(bootstrap_servers=proxied_stack.kafka_bootstrap),
        topics=TopicSettings(models=f"models-{tag}"),
    )
    ensure_models_topic(settings)
    announce(settings, Announcement("press-1", "promote", "v0001", "aa"))
    proxy = proxied_stack.proxy
    updates = ModelUpdates(settings)
    proxy.pause()
    try:
        updates.start()
        # kafka-python gives up bootstrapping after its request timeout (30 s).
        poll(lambda: updates.reconnects >= 1, 90, "the follower failing to reach the cut broker")
        assert _active(updates, "press-1") is None  # nothing could be read meanwhile
        proxy.resume()
        poll(
            lambda: _active(updates, "press-1") == "v0001",
            90,
            "the announcement made before the cut applied after the path came back",
        )
        assert updates.caught_up()

        proxy.pause()
        proxy.resume()
        announce(settings, Announcement("press-1", "promote", "v0002", "bb"))
        poll(
            lambda: _active(updates, "press-1") == "v0002",
            90,
            "a promotion announced after a second cut taking effect",
        )
    finally:
        if proxy.paused:
            proxy.resume()
        updates.stop()
