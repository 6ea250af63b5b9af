"""The production stack's files (issue 14, item 6), checked by parsing them: no Docker engine here.

docker-compose.yml runs the Procfile's processes; only the Caddy proxy publishes ports; web and
Flower sit on internal networks behind it; PostgreSQL, Redis and Weaviate are internal and need a
password or key from a variable without a default; every image is pinned to a version. The
Dockerfile runs as a fixed non-root uid and copies the tree only through a .dockerignore that
keeps .git, .venv and var/ out. The Caddyfile overwrites the forwarded headers Django and the
throttles trust.
"""

from __future__ import annotations

import re
from typing import Any

from .deploy_files import (
    PROXY,
    ROOT,
    SECRETS,
    STORES,
    argv,
    assignments,
    compose,
    dockerfile,
    env,
    internal_networks,
    networks_of,
    option,
    procfile,
    requires,
    services,
)

# --- commands: the Procfile's and compose's, compared ------------------------------------------
_VARIABLE = re.compile(r"\$\{(\w+)(?::?-([^}]*))?\}|\$(\w+)")
# Where a process listens is the one deliberate difference: loopback in the Procfile (one machine,
# nothing else should reach it), every interface of its own container in compose (only the
# internal networks reach those). The ports are checked against the Caddyfile instead.
_LISTEN_OPTIONS = {"--bind", "-b", "--address"}


def normalise(command: str | list[str]) -> list[str]:
    """An argv with `--opt=value` split, `${VAR:-default}` resolved to its default and any other
    variable to `<VAR>`, and listening addresses blanked."""
    tokens: list[str] = []
    for arg in argv(command):
        tokens.extend(arg.split("=", 1) if arg.startswith("--") and "=" in arg else [arg])
    out: list[str] = []
    listen_value = False
    for token in tokens:
        if listen_value:
            out.append("<listen>")
            listen_value = False
            continue
        listen_value = token in _LISTEN_OPTIONS
        out.append(
            _VARIABLE.sub(
                lambda m: m.group(2) if m.group(2) is not None else f"<{m.group(1) or m.group(3)}>", token
            )
        )
    return out


def test_normalise_resolves_defaults_and_blanks_listen_addresses() -> None:
    assert normalise("gunicorn app --bind 127.0.0.1:$PORT --workers ${WEB_CONCURRENCY:-2}") == normalise(
        ["gunicorn", "app", "--bind", "0.0.0.0:8000", "--workers", "2"]
    )
    assert normalise("flower --address=127.0.0.1 --port=${FLOWER_PORT:-5555}") == [
        "flower",
        "--address",
        "<listen>",
        "--port",
        "5555",
    ]
    assert normalise("celery -Q a,b") != normalise("celery -Q a")


def test_every_procfile_process_runs_the_same_command_in_compose() -> None:
    compose_services = services()
    for name, command in procfile().items():
        assert name in compose_services, f"Procfile process {name!r} has no compose service"
        assert "command" in compose_services[name], f"compose service {name!r} has no command"
        _, command = assignments(command)  # the environment is compared below, where compose has one
        assert normalise(compose_services[name]["command"]) == normalise(command), name


def test_the_processes_run_ahead_have_a_cpu_weight_above_the_default_in_compose() -> None:
    """WORKER_NICE (selfos/priority.py) ranks processes on one machine; in containers the cgroup's
    weight does (`cpu_shares`, 1024 by default), and a nice inside a container would rank a
    process only among its own container's."""
    compose_services = services()
    nice = {name: int(assignments(command)[0].get("WORKER_NICE", 0)) for name, command in procfile().items()}
    ahead = {name for name, value in nice.items() if value < 0}
    assert ahead == {"relay", "express"}
    shares = {name: int(service.get("cpu_shares", 1024)) for name, service in compose_services.items()}
    weighted = {name for name, value in shares.items() if value > 1024}
    # And the database, which the Procfile does not run (scripts/with_services.py ranks the
    # embedded one the same way).
    assert weighted == {*ahead, "db"}


# --- ports and networks -------------------------------------------------------------------------
def published_ports(service: dict[str, Any]) -> list[tuple[str, str]]:
    """(published, target) for each of a service's `ports`, short or long syntax."""
    pairs = []
    for port in service.get("ports") or []:
        if isinstance(port, dict):
            pairs.append((str(port.get("published", "")), str(port["target"])))
        else:
            spec = str(port).split("/", 1)[0]
            parts = spec.rsplit(":", 2)
            pairs.append((parts[-2] if len(parts) > 1 else "", parts[-1]))
    return pairs


def test_only_the_proxy_publishes_ports_and_only_80_and_443() -> None:
    all_services = services()
    for name, service in all_services.items():
        assert service.get("network_mode") != "host", f"{name} shares the host's network"
        if name != PROXY:
            assert not service.get("ports"), f"{name} publishes {service['ports']}"
    ports = published_ports(all_services[PROXY])
    assert ports, "the proxy publishes nothing"
    assert {port for pair in ports for port in pair} <= {"80", "443"}, ports


def test_web_and_flower_are_reachable_only_through_the_proxy() -> None:
    all_services = services()
    internal = internal_networks()
    proxy_networks = networks_of(all_services[PROXY])
    for name in ("web", "flower"):
        service = all_services[name]
        assert not service.get("ports"), name
        # Internal networks only: nothing outside Docker reaches them, and a port published on
        # them would not work either.
        assert networks_of(service) <= internal, f"{name} is on {networks_of(service) - internal}"
        assert networks_of(service) & proxy_networks, f"the proxy cannot reach {name}"
    # The proxy reaches no store: a compromised proxy still has no path to the data.
    for name in STORES:
        assert networks_of(all_services[name]) <= internal, name
        assert not networks_of(all_services[name]) & proxy_networks, f"the proxy shares a network with {name}"


def test_every_referenced_service_network_and_volume_is_declared() -> None:
    spec = compose()
    all_services = spec["services"]
    declared_networks = set(spec.get("networks") or {}) | {"default"}
    declared_volumes = set(spec.get("volumes") or {})
    for name, service in all_services.items():
        assert "image" in service or "build" in service, name
        assert networks_of(service) <= declared_networks, name
        depends = service.get("depends_on") or []
        assert set(depends) <= set(all_services), f"{name} depends on {depends}"
        for volume in service.get("volumes") or []:
            source = volume.split(":", 1)[0] if isinstance(volume, str) else volume["source"]
            if source.startswith((".", "/")):
                assert (ROOT / source).exists(), f"{name} mounts missing {source}"
            else:
                assert source in declared_volumes, f"{name} uses undeclared volume {source}"


# --- credentials --------------------------------------------------------------------------------
def test_secrets_come_from_variables_without_defaults() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    for variable in SECRETS:
        uses = re.findall(rf"\$\{{{variable}([^}}]*)\}}", text)
        assert uses, f"{variable} is never used"
        for rest in uses:
            assert rest.startswith((":?", "?")), f"${{{variable}{rest}}} has a default or is optional"
        # A literal next to the variable's name would be a default in disguise.
        assert not re.search(rf"^\s*{variable}:\s*[^$\s]", text, re.MULTILINE), variable


def test_production_security_defaults_are_not_turned_off() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    assert "DJANGO_SECURE_COOKIES" not in text
    for name, service in services().items():
        for key, value in env(service).items():
            if key.startswith("DJANGO_SECURE_"):
                assert value is None, f"{name} sets {key}={value!r}: pass it through, or leave it out"
        if "build" in service:
            assert env(service)["DJANGO_SETTINGS_MODULE"] == "selfos.settings.production", name


def test_weaviate_needs_the_api_key_and_the_app_has_it() -> None:
    all_services = services()
    weaviate = env(all_services["weaviate"])
    assert str(weaviate["AUTHENTICATION_ANONYMOUS_ACCESS_ENABLED"]).lower() == "false"
    assert str(weaviate["AUTHENTICATION_APIKEY_ENABLED"]).lower() == "true"
    assert requires(weaviate["AUTHENTICATION_APIKEY_ALLOWED_KEYS"], "WEAVIATE_API_KEY")
    assert weaviate["AUTHENTICATION_APIKEY_USERS"]
    assert not all_services["weaviate"].get("ports")
    for name, service in all_services.items():
        if "build" in service:
            assert requires(env(service)["WEAVIATE_API_KEY"], "WEAVIATE_API_KEY"), name
            assert env(service)["WEAVIATE_URL"] == "http://weaviate:8080", name


def test_the_cache_is_a_redis_of_its_own_that_keeps_nothing_on_disk() -> None:
    """The cache holds vectors derived from users' text (workers/memory/fresh.py): a deleted one
    must not live on in an append-only file or a snapshot."""
    all_services = services()
    cache_args = argv(all_services["cache"]["command"])
    assert cache_args[0] == "redis-server"
    assert option(cache_args, "--save") == "" and option(cache_args, "--appendonly") == "no"
    assert requires(option(cache_args, "--requirepass"), "REDIS_PASSWORD")
    assert "volumes" not in all_services["cache"]
    for name, service in all_services.items():
        if "build" in service:
            cache_url = env(service)["CACHE_URL"]
            assert cache_url.startswith("redis://:${REDIS_PASSWORD:?"), name
            assert cache_url.endswith("@cache:6379/0"), name


def test_redis_and_postgres_need_passwords_the_app_uses() -> None:
    all_services = services()
    redis_args = argv(all_services["redis"]["command"])
    assert redis_args[0] == "redis-server"  # the image's entrypoint drops root only for this
    assert requires(option(redis_args, "--requirepass"), "REDIS_PASSWORD")
    assert requires(env(all_services["db"])["POSTGRES_PASSWORD"], "POSTGRES_PASSWORD")
    for name, service in all_services.items():
        if "build" in service:
            redis_url = env(service)["REDIS_URL"]
            assert redis_url.startswith("redis://:${REDIS_PASSWORD:?"), name
            assert redis_url.endswith("@redis:6379/0"), name
            database_url = env(service)["DATABASE_URL"]
            assert re.fullmatch(
                r"postgres://selfos:\$\{POSTGRES_PASSWORD:\?[^}]*\}@db:5432/selfos", database_url
            )


def test_flower_requires_basic_auth_for_its_pages_and_api() -> None:
    all_services = services()
    flower = all_services["flower"]
    assert requires(env(flower)["FLOWER_BASIC_AUTH"], "FLOWER_BASIC_AUTH")
    for name, service in all_services.items():
        assert "FLOWER_UNAUTHENTICATED_API" not in env(service), name
    assert not any("unauthenticated" in arg for arg in argv(flower["command"]))


def test_web_trusts_exactly_one_proxy_hop() -> None:
    assert str(env(services()["web"])["DJANGO_NUM_PROXIES"]) == "1"


# --- images -------------------------------------------------------------------------------------
def pinned(image: str) -> bool:
    """A digest, or a tag that starts with a full version (1.2.3): never latest, never `7`."""
    if re.search(r"@sha256:[0-9a-f]{64}$", image):
        return True
    name, _, tag = image.rpartition(":")
    if not name or "/" in tag:  # no tag at all (that colon was a registry's port)
        return False
    return re.match(r"v?\d+\.\d+\.\d+", tag) is not None


def test_pinned_recognises_versions() -> None:
    assert pinned("redis:7.4.6-alpine") and pinned("pgvector/pgvector:0.8.1-pg17")
    assert pinned("caddy@sha256:" + "0" * 64)
    for loose in ("redis", "redis:7", "redis:latest", "pgvector/pgvector:pg17", "host:5000/img"):
        assert not pinned(loose), loose


def test_every_image_is_pinned() -> None:
    all_services = services()
    for name, service in all_services.items():
        if "image" in service:
            assert pinned(service["image"]), f"{name}: {service['image']}"
        else:
            assert "build" in service, name
    # The stores and the proxy by name: official or upstream images, so the pin means something.
    assert all_services[PROXY]["image"].startswith("caddy:")
    assert all_services["db"]["image"].startswith("pgvector/pgvector:")
    assert all_services["redis"]["image"].startswith("redis:")
    assert "semitechnologies/weaviate:" in all_services["weaviate"]["image"]
    bases = [
        next(a for a in args.split() if not a.startswith("--"))
        for keyword, args in dockerfile()
        if keyword == "FROM"
    ]
    assert bases and all(pinned(base) for base in bases), bases
