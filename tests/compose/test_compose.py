"""Static validation of the production pilot stack (no Docker engine here).

The file must parse, pin every image, publish sane ports, declare its
volumes, health-check every long-running service, provision Grafana from
files that exist, and give LineGuard's services only ``LINEGUARD_*``
variables that :class:`lineguard.settings.Settings` actually reads.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from pydantic_settings import BaseSettings

from lineguard.dashboards.generate import JSON_DIR, dashboard_json
from lineguard.dashboards.grafana import check_model
from lineguard.settings import Settings

COMPOSE_DIR = Path(__file__).resolve().parents[2] / "compose"
LINEGUARD_SERVICES = ("lineguard-init", "score", "archive", "gateway")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((COMPOSE_DIR / "docker-compose.yml").read_text())


def settings_env_names(model: type[BaseSettings] = Settings) -> set[str]:
    """Every environment variable a settings model reads, from the model itself."""
    prefix = model.model_config.get("env_prefix", "")
    names = set()
    for name, info in model.model_fields.items():
        factory = info.default_factory
        nested = info.annotation if isinstance(info.annotation, type) else None
        if nested is not None and issubclass(nested, BaseSettings):
            names |= settings_env_names(nested)
        elif (
            factory is not None and isinstance(factory, type) and issubclass(factory, BaseSettings)
        ):
            names |= settings_env_names(factory)
        else:
            names.add(f"{prefix}{name}".upper())
    return names


def _env_example() -> dict[str, str]:
    out = {}
    for line in (COMPOSE_DIR / ".env.example").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            out[key] = value
    return out


def _interpolated(text: str) -> set[str]:
    """Variables ``${NAME...}`` a compose value takes from the env file."""
    return set(re.findall(r"\$\{(\w+)", text))


def test_settings_env_names_are_derived_from_the_model() -> None:
    names = settings_env_names()
    assert {
        "LINEGUARD_KAFKA_BOOTSTRAP_SERVERS",
        "LINEGUARD_INFLUX_TOKEN",
        "LINEGUARD_TOPIC_PARTITIONS",
        "LINEGUARD_REGISTRY_DIR",
    } <= names
    assert "LINEGUARD_KAFKA" not in names  # nested models expand to their fields


def test_services_images_and_kraft(compose) -> None:
    services = compose["services"]
    assert {"kafka", "influxdb", "grafana", "score", "archive", "gateway"} <= set(services)
    assert not any("zookeeper" in name for name in services)
    kafka = services["kafka"]["environment"]
    assert "controller" in kafka["KAFKA_PROCESS_ROLES"] and kafka["KAFKA_CONTROLLER_QUORUM_VOTERS"]
    for name, service in services.items():
        image = service.get("image")
        assert image, f"{name} has no image"
        repo, _, tag = image.rpartition(":")
        assert repo and tag and tag != "latest", f"{name}: image {image!r} is not pinned"
        if "build" not in service:
            assert re.fullmatch(r"\d+\.\d+\.\d+", tag), f"{name}: pin a full version, got {tag}"
    dockerfile = (COMPOSE_DIR / "Dockerfile").read_text()
    base = re.search(r"^FROM (\S+)", dockerfile, re.M).group(1)
    assert re.search(r":\d+\.\d+\.\d+", base), f"Dockerfile base {base} is not pinned"


def test_ports_volumes_and_health_checks(compose) -> None:
    services = compose["services"]
    host_ports = []
    for name, service in services.items():
        for port in service.get("ports", []):
            host, _, container = str(port).rpartition(":")
            assert container.isdigit(), f"{name}: port {port!r}"
            host_ports.append(host)
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith((".", "/")):
                assert (COMPOSE_DIR / source).exists(), f"{name}: bind mount {source} missing"
            else:
                assert source in compose["volumes"], f"{name}: volume {source} not declared"
        if service.get("restart") != "no":
            check = service.get("healthcheck", {})
            assert check.get("test") and not check.get("disable"), f"{name}: no health check"
        for dependency, condition in (service.get("depends_on") or {}).items():
            assert dependency in services
            if condition["condition"] == "service_healthy":
                assert services[dependency].get("healthcheck", {}).get("test")
    assert len(host_ports) == len(set(host_ports)), host_ports
    assert {"grafana", "influxdb"} <= {n for n, s in services.items() if s.get("ports")}
    # Scoring workers scale by replicas: no fixed container name.
    assert "replicas" in services["score"]["deploy"]
    assert "container_name" not in services["score"]


def test_lineguard_environment_matches_settings(compose) -> None:
    known = settings_env_names()
    example = _env_example()
    used = set()
    for name in LINEGUARD_SERVICES:
        env = compose["services"][name]["environment"]
        used |= {k for k in env if k.startswith("LINEGUARD_")}
        # Every interpolated variable is defined in the example env file.
        for value in env.values():
            for var in _interpolated(str(value)):
                assert var in example, f"{name}: ${{{var}}} not in .env.example"
    used |= {k for k in example if k.startswith("LINEGUARD_")}
    compose_only = {"LINEGUARD_SCORE_REPLICAS", "LINEGUARD_IMAGE_TAG"}  # read by compose
    unknown = used - known - compose_only
    assert not unknown, f"LINEGUARD_* not read by Settings: {sorted(unknown)}"
    for required in (
        "LINEGUARD_KAFKA_BOOTSTRAP_SERVERS",
        "LINEGUARD_INFLUX_URL",
        "LINEGUARD_INFLUX_DATABASE",
        "LINEGUARD_INFLUX_TOKEN",
        "LINEGUARD_REGISTRY_DIR",
    ):
        assert required in used
    # The secrets come from the env file, never from the compose file.
    text = (COMPOSE_DIR / "docker-compose.yml").read_text()
    for secret in ("INFLUXDB_TOKEN", "INFLUXDB_ADMIN_PASSWORD", "GRAFANA_ADMIN_PASSWORD"):
        assert secret in example and example[secret] not in text


def test_influxdb_is_initialised_with_the_v1_mapping(compose) -> None:
    env = compose["services"]["influxdb"]["environment"]
    for key in ("ORG", "BUCKET", "ADMIN_TOKEN", "USERNAME", "PASSWORD"):
        assert env[f"DOCKER_INFLUXDB_INIT_{key}"]
    assert env["DOCKER_INFLUXDB_INIT_MODE"] == "setup"
    script = next(
        v.split(":")[0]
        for v in compose["services"]["influxdb"]["volumes"]
        if "docker-entrypoint-initdb.d" in v
    )
    text = (COMPOSE_DIR / script).read_text()
    assert "v1 dbrp create" in text and "LINEGUARD_INFLUX_DATABASE" in text


def test_grafana_provisions_the_datasource_and_the_generated_dashboards(compose) -> None:
    grafana = compose["services"]["grafana"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in grafana["volumes"]}
    provisioning = COMPOSE_DIR / mounts["/etc/grafana/provisioning"]
    sources = yaml.safe_load((provisioning / "datasources" / "influxdb.yml").read_text())
    uids = [d["uid"] for d in sources["datasources"]]
    assert all(d["type"] == "influxdb" for d in sources["datasources"])
    for var in _interpolated(json.dumps(sources)):
        assert var in grafana["environment"], f"datasource needs ${var} in grafana's environment"
    providers = yaml.safe_load((provisioning / "dashboards" / "lineguard.yml").read_text())
    path = providers["providers"][0]["options"]["path"]
    host_dir = (COMPOSE_DIR / mounts[path]).resolve()
    assert host_dir == JSON_DIR.resolve()
    files = sorted(p.stem for p in host_dir.glob("*.json"))
    assert files == sorted(dashboard_json())
    for name in files:
        model = json.loads((host_dir / f"{name}.json").read_text())
        assert check_model(model, uids) == [], name
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home.startswith(path) and Path(home).name in {f"{n}.json" for n in files}
