"""The deployment files (deploy/ and docs/deploy.md) checked against the real code: every `shopfloor`
command line parses with the real argparse parser, every shipped config validates, no secret is written.

The broker config itself is started in tests/integration/test_deploy_mosquitto.py.
"""

from __future__ import annotations

import configparser
import contextlib
import io
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
import yaml

from shopfloor.app.cli import build_parser
from shopfloor.config import PlantConfig, load_plant_config
from shopfloor.model import system_asset

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
DOC = ROOT / "docs" / "deploy.md"
UNITS = sorted((DEPLOY / "systemd").glob("*.service"))
CONFIGS = sorted((DEPLOY / "config").glob("*.yaml"))
COMPOSE = DEPLOY / "compose.yaml"
# the example values systemd specifiers stand for in the tests
SPECIFIERS = {"%i": "hot-rolling", "%l": "central-1", "%H": "central-1.plant.local", "%%": "%"}
# where the units and the compose file expect each shipped config (docs/deploy.md says so too)
INSTALLED = {
    "/etc/shopfloor/site.yaml": DEPLOY / "config" / "site.yaml",
    "/etc/shopfloor/lines/hot-rolling.yaml": DEPLOY / "config" / "line-hot-rolling.yaml",
}
SHELL_OPERATORS = {"&&", "||", "|", ";", ">", ">>", "<", "2>", "2>&1", "&"}


# -- helpers --------------------------------------------------------------------------------------
def parse_command(argv: list[str]) -> Any:
    """Parse ``shopfloor`` arguments with the real parser; a failure names the command and argparse's message."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            return build_parser().parse_args(argv)
        except SystemExit as exc:
            pytest.fail(
                f"`shopfloor {shlex.join(argv)}` does not parse (exit {exc.code}): {err.getvalue().strip()}"
            )


def shopfloor_invocations(line: str) -> list[list[str]]:
    """The argument lists of every ``shopfloor`` (or ``…/bin/shopfloor``) call in one shell line, and
    of every ``docker compose run [--rm] SERVICE ARGS`` of a Shopfloor service (its entrypoint is
    ``shopfloor``). A word counts as the command only where a shell would run it: first, after an
    operator, after ``sudo [-u USER]``/``env``/``exec`` or a ``VAR=value``."""
    line = re.sub(r"(^|\s)#.*$", "", line)  # a comment (a '#' inside a word, as in uns/v1/#, stays)
    for key, value in SPECIFIERS.items():
        line = line.replace(key, value)
    try:
        words = shlex.split(line)
    except ValueError:
        return []

    def args_from(start: int) -> list[str]:
        out: list[str] = []
        for arg in words[start:]:
            if arg in SHELL_OPERATORS:
                break
            out.append(arg)
        return out

    def command_position(i: int) -> bool:
        if i == 0:
            return True
        prev = words[i - 1]
        if prev in SHELL_OPERATORS or prev in ("sudo", "env", "exec", "nohup") or re.match(r"^\w+=", prev):
            return True
        return i >= 3 and words[i - 2] in ("-u", "--user") and words[i - 3] == "sudo"

    found: list[list[str]] = []
    for i, w in enumerate(words):
        if (w == "shopfloor" or w.endswith("/bin/shopfloor")) and command_position(i):
            found.append(args_from(i + 1))
        if w == "compose" and words[i + 1 : i + 2] == ["run"]:
            j = i + 2
            while j < len(words) and words[j].startswith("-"):
                j += 1
            if j < len(words) and words[j] in shopfloor_services():
                found.append(args_from(j + 1))
    return found


def unit(path: Path) -> configparser.ConfigParser:
    cp = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    cp.optionxform = str  # type: ignore[assignment,method-assign]  # systemd keys are case-sensitive
    cp.read_string(path.read_text(encoding="utf-8"), source=str(path))
    return cp


def logical_lines(text: str) -> list[str]:
    """Lines with backslash continuations joined."""
    out: list[str] = []
    buf = ""
    for raw in text.splitlines():
        if raw.rstrip().endswith("\\"):
            buf += raw.rstrip()[:-1] + " "
            continue
        out.append(buf + raw)
        buf = ""
    if buf:
        out.append(buf)
    return out


def doc_code_lines() -> list[str]:
    """Every logical line inside a fenced code block of docs/deploy.md."""
    lines: list[str] = []
    block: list[str] | None = None
    for raw in DOC.read_text(encoding="utf-8").splitlines():
        if raw.lstrip().startswith("```"):
            if block is None:
                block = []
            else:
                lines += logical_lines("\n".join(block))
                block = None
        elif block is not None:
            block.append(raw)
    return lines


def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def shopfloor_services() -> dict[str, dict[str, Any]]:
    """The compose services built from the repository with deploy/Dockerfile (entrypoint `shopfloor`)."""
    out = {}
    for name, svc in compose()["services"].items():
        build = svc.get("build")
        if isinstance(build, dict) and build.get("dockerfile") == "deploy/Dockerfile":
            out[name] = svc
    return out


def installed_config(path: str) -> PlantConfig:
    for key, value in SPECIFIERS.items():
        path = path.replace(key, value)
    assert path in INSTALLED, f"{path}: no shipped file is installed there (deploy/config/)"
    return load_plant_config(INSTALLED[path], check_sources=True)


def seconds(value: str) -> float:
    """A systemd / compose duration: 90, 90s, 1min 30s, 2m."""
    total, units = 0.0, {"": 1, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600}
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", value)
    assert parts, value
    for number, unit_name in parts:
        total += float(number) * units[unit_name]
    return total


def stop_budget(args: Any, cfg: PlantConfig) -> float:
    """The longest orderly stop of a command: each writer it runs waits its stop_timeout_s, one after the other."""
    if args.command == "acquire":
        budget = 0.0 if args.no_historian else cfg.historian.stop_timeout_s
        publish = cfg.publish.stop_timeout_s if cfg.publish else 30.0  # --publish alone: the default
        return budget + (publish if cfg.publish or args.publish else 0.0)
    if args.command == "ingest":
        return cfg.ingest.stop_timeout_s if cfg.ingest else 30.0
    if args.command == "analytics":
        return cfg.historian.stop_timeout_s
    return 0.0


# -- the units ------------------------------------------------------------------------------------
def test_the_expected_units_are_shipped() -> None:
    names = {p.name for p in UNITS}
    assert names == {
        "shopfloor-acquire@.service",
        "shopfloor-ingest@.service",
        "shopfloor-mes.service",
        "shopfloor-dashboard.service",
        "shopfloor-analytics.service",
    }


@pytest.mark.parametrize("path", UNITS, ids=lambda p: p.name)
def test_each_unit_is_hardened_restarts_and_stops_after_its_services(path: Path) -> None:
    cp = unit(path)
    assert {"Unit", "Service", "Install"} <= set(cp.sections()), cp.sections()
    svc = cp["Service"]
    assert svc.get("User") and svc.get("User") != "root"
    assert svc.get("NoNewPrivileges") == "yes"
    assert svc.get("ProtectSystem") == "strict"
    assert svc.get("Restart") == "always"
    assert svc.get("KillSignal") == "SIGTERM"
    assert "Environment" not in svc  # secrets only from EnvironmentFile= / LoadCredential=
    assert svc.get("EnvironmentFile") or svc.get("LoadCredential")
    workdir = svc.get("WorkingDirectory", "")
    writable = svc.get("ReadWritePaths", "").split()
    assert workdir and workdir in writable, "the working directory (spools, state) must be writable"
    assert cp["Install"].get("WantedBy") == "multi-user.target"

    commands = shopfloor_invocations(svc.get("ExecStart", ""))
    assert len(commands) == 1, svc.get("ExecStart")
    args = parse_command(commands[0])
    cfg = installed_config(args.config)
    budget = stop_budget(args, cfg)
    assert seconds(svc["TimeoutStopSec"]) > budget, f"TimeoutStopSec must exceed {budget} s of orderly stop"
    assert seconds(svc["TimeoutStopSec"]) >= 30


def test_the_edge_runs_without_a_local_historian_and_each_ingest_member_has_its_client_id() -> None:
    exec_start = unit(DEPLOY / "systemd" / "shopfloor-acquire@.service")["Service"]["ExecStart"]
    acquire = parse_command(shopfloor_invocations(exec_start)[0])
    assert acquire.command == "acquire" and acquire.no_historian
    raw = unit(DEPLOY / "systemd" / "shopfloor-ingest@.service")["Service"]["ExecStart"]
    assert "%i" in raw.split("--client-id", 1)[1].split()[0], (
        "each member of the group needs its own client id"
    )


def test_systemd_accepts_every_unit(tmp_path: Path) -> None:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not installed")
    exe = shutil.which("shopfloor") or str(ROOT / ".venv" / "bin" / "shopfloor")
    for path in UNITS:  # an instance of each template, ExecStart pointed at an executable that exists here
        name = path.name.replace("@.", "@hot-rolling.")
        (tmp_path / name).write_text(path.read_text().replace("/opt/shopfloor/venv/bin/shopfloor", exe))
    files = sorted(str(p) for p in tmp_path.iterdir())
    done = subprocess.run([tool, "verify", "--man=no", *files], capture_output=True, text=True, timeout=120)
    # it exits 0 on unknown keys and bad values, but names each one
    assert done.returncode == 0 and not done.stderr.strip() and not done.stdout.strip(), (
        done.stderr + done.stdout
    )


# -- the configs ----------------------------------------------------------------------------------
def test_every_shipped_config_validates_with_the_real_loader_connectors_included() -> None:
    assert {p.name for p in CONFIGS} == {"site.yaml", "line-hot-rolling.yaml"}
    for path in CONFIGS:
        load_plant_config(path, check_sources=True)  # raises ConfigError listing every problem


def test_the_edge_and_the_centre_agree_on_the_broker_and_the_acl_lets_each_do_its_part() -> None:
    edge = load_plant_config(DEPLOY / "config" / "line-hot-rolling.yaml")
    site = load_plant_config(DEPLOY / "config" / "site.yaml")
    assert edge.publish is not None and site.ingest is not None
    assert edge.site == site.site
    assert edge.publish.topic_prefix == site.ingest.topic_prefix
    assert edge.publish.broker.host == site.ingest.broker_settings().broker.host
    assert {a.path for a in edge.assets} <= {a.path for a in site.assets}
    acl = parse_acl((DEPLOY / "mosquitto" / "shopfloor.acl").read_text())
    prefix = edge.publish.topic_prefix.rstrip("/")
    edge_user = edge.publish.user
    assert edge_user in acl
    for a in edge.assets:
        for s in a.signals:
            assert may(acl, edge_user, "write", f"{prefix}/{a.path}/{s.name}"), (a.path, s.name)
        assert may(acl, edge_user, "write", f"{prefix}/{a.path}/$events")
    own = system_asset(edge.site, "shopfloor", "mqtt-publisher", edge.publish.edge_id(edge.site))
    assert may(acl, edge_user, "write", f"{prefix}/{own}/written")  # where publish_writer puts its counters
    assert not may(
        acl, edge_user, "write", f"{prefix}/{edge.site}/_system/shopfloor/mqtt-publisher/other/written"
    )
    other = next(a.path for a in site.assets if a.path.split("/")[2] != edge.assets[0].path.split("/")[2])
    assert not may(acl, edge_user, "write", f"{prefix}/{other}/state")
    assert not may(acl, edge_user, "read", f"{prefix}/{edge.assets[0].path}/state")
    ingest_user = site.ingest.broker_settings().user
    assert ingest_user is not None
    for a in site.assets:
        assert may(acl, ingest_user, "read", f"{prefix}/{a.path}/{a.signals[0].name}")
    assert not may(acl, ingest_user, "write", f"{prefix}/{site.assets[0].path}/state")


def parse_acl(text: str) -> dict[str, list[tuple[str, str]]]:
    users: dict[str, list[tuple[str, str]]] = {}
    current: str | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        if word == "user":
            current = rest.strip()
            users[current] = []
        elif word == "topic":
            assert current is not None, f"an ACL line for anonymous clients: {line}"
            access, _, topic = rest.strip().partition(" ")
            if not topic:
                access, topic = "readwrite", access
            users[current].append((access, topic.strip()))
        else:
            raise AssertionError(f"unexpected ACL line: {line}")
    return users


def may(acl: dict[str, list[tuple[str, str]]], user: str, access: str, topic: str) -> bool:
    return any(
        a in (access, "readwrite") and paho.topic_matches_sub(pattern, topic)
        for a, pattern in acl.get(user, [])
    )


# -- the broker config -----------------------------------------------------------------------------
def test_the_broker_config_keeps_what_it_acknowledged_and_authenticates_every_listener() -> None:
    text = (DEPLOY / "mosquitto" / "mosquitto.conf").read_text()
    lines = [ln.split(None, 1) for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    top: dict[str, str] = {}
    listeners: list[dict[str, str]] = []
    for parts in lines:
        key, value = parts[0], (parts[1].strip() if len(parts) > 1 else "")
        if key == "listener":
            listeners.append({"listener": value})
        elif listeners:
            listeners[-1][key] = value
        else:
            top[key] = value
    assert top["per_listener_settings"] == "true"
    assert top["persistence"] == "true" and top["persistence_location"]
    assert 0 < int(top["autosave_interval"]) <= 30
    assert int(top["max_queued_messages"]) >= 1_000_000  # Mosquitto's default 1000 drops QoS 1 messages
    assert int(top["max_queued_bytes"]) >= 1 << 28
    assert int(top["max_inflight_messages"]) >= 1000  # the Receive Maximum the publisher is held to
    assert listeners, "no listener"
    for lst in listeners:
        assert lst.get("allow_anonymous") == "false", lst
        assert lst.get("acl_file") == "/etc/mosquitto/shopfloor.acl", lst
        public = len(lst["listener"].split()) == 1  # bound to every interface
        if public:
            assert lst.get("certfile") and lst.get("keyfile"), f"a network listener without TLS: {lst}"
        assert lst.get("password_file") or lst.get("use_identity_as_username") == "true", lst
    assert any(lst.get("require_certificate") == "true" for lst in listeners)


# -- the compose file -------------------------------------------------------------------------------
def test_the_compose_file_names_an_image_or_build_for_each_service_and_its_commands_parse() -> None:
    data = compose()
    services = data["services"]
    assert {"mosquitto", "influxdb", "postgres", "ingest", "mes", "dashboard"} <= set(services)
    for name, svc in services.items():
        assert svc.get("image") or svc.get("build"), f"service {name} names neither image nor build"
        build = svc.get("build")
        if build is not None:
            context = build if isinstance(build, str) else build.get("context", ".")
            dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
            assert (DEPLOY / context / dockerfile).is_file(), f"{name}: no {context}/{dockerfile}"
        for volume in svc.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("./") and not source.startswith("./secrets/"):
                assert (DEPLOY / source).exists(), f"{name} mounts {source}, which is not shipped"
        for env_file in svc.get("env_file", []):
            assert env_file.startswith("./secrets/"), f"{name}: env files belong under deploy/secrets/"
    ours = shopfloor_services()
    assert {"acquire-hot-rolling", "ingest", "mes", "dashboard", "analytics"} <= set(ours)
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert re.search(r'^ENTRYPOINT \["shopfloor"\]$', dockerfile, re.MULTILINE)
    assert re.search(r"^RUN pip install /src", dockerfile, re.MULTILINE)
    assert re.search(r"^USER shopfloor$", dockerfile, re.MULTILINE)
    for name, svc in ours.items():
        args = parse_command(list(svc["command"]))
        mounts = {v.split(":")[1]: v.split(":")[0] for v in svc.get("volumes", [])}
        assert args.config in mounts, f"{name}: its --config {args.config} is not mounted"
        assert DEPLOY / mounts[args.config] == INSTALLED[args.config]
        cfg = installed_config(args.config)
        assert seconds(svc["stop_grace_period"]) > stop_budget(args, cfg)
        assert svc["stop_signal"] == "SIGTERM" and svc["restart"] == "always"


# -- the doc ------------------------------------------------------------------------------------------
def test_every_shopfloor_command_in_the_deploy_doc_parses() -> None:
    commands = [args for line in doc_code_lines() for args in shopfloor_invocations(line)]
    assert len(commands) >= 8, f"only {len(commands)} shopfloor commands found in {DOC}"
    seen = set()
    for args in commands:
        parsed = parse_command(args)
        seen.add(parsed.command)
    assert {"acquire", "ingest", "mes", "dashboard", "analytics", "config"} <= seen, seen


def test_the_deploy_doc_quotes_its_figures_and_names_the_files_it_documents() -> None:
    text = DOC.read_text(encoding="utf-8")
    assert "<!-- FIGURE:" not in text and "benchmarks/uns.py" in text  # measured, not a placeholder
    for path in [*UNITS, *CONFIGS, COMPOSE, DEPLOY / "Dockerfile", DEPLOY / "mosquitto" / "mosquitto.conf",
                 DEPLOY / "mosquitto" / "shopfloor.acl"]:  # fmt: skip
        assert str(path.relative_to(ROOT)) in text or path.name in text, (
            f"docs/deploy.md never names {path.name}"
        )


# -- secrets ------------------------------------------------------------------------------------------
# a key that ends in password/token/secret (not *_env, *_file) given a value, or a URL with user:password@
LITERAL_SECRET = re.compile(r"(?i)(?<![./])(password|passwd|token|secret)[\"']?\s*[:=]\s*[\"']?[^\s\"'#{}]")
URL_PASSWORD = re.compile(r"://[^/\s:@]+:[^/\s@]+@")


def literal_secrets(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if LITERAL_SECRET.search(ln) or URL_PASSWORD.search(ln)]


def test_the_secret_detector_finds_secrets_and_passes_references_to_them() -> None:
    assert literal_secrets("  password: hunter2")
    assert literal_secrets('TOKEN="abc"')
    assert literal_secrets("url: mqtt://edge:pw@broker")
    assert literal_secrets("    DOCKER_INFLUXDB_INIT_ADMIN_TOKEN: abc")
    assert literal_secrets("SHOPFLOOR_MQTT_PASSWORD=abc")
    assert literal_secrets("DOCKER_INFLUXDB_INIT_ADMIN_TOKEN_FILE: /run/secrets/influxdb-token") == []
    assert literal_secrets("  influxdb-admin-password:") == []  # a compose secret's name
    assert literal_secrets("tokens_env: SHOPFLOOR_MES_TOKENS") == []
    assert literal_secrets("- ./secrets/shopfloor.passwd:/etc/mosquitto/shopfloor.passwd:ro") == []
    assert literal_secrets("password_env: SHOPFLOOR_MQTT_PASSWORD") == []
    assert literal_secrets("password_file /etc/mosquitto/shopfloor.passwd") == []
    assert literal_secrets("POSTGRES_PASSWORD_FILE: /run/secrets/mes-db-password") == []


def test_no_literal_password_or_token_anywhere_in_deploy() -> None:
    files = [p for p in DEPLOY.rglob("*") if p.is_file()]
    assert len(files) >= 10
    found = {str(p.relative_to(ROOT)): literal_secrets(p.read_text(encoding="utf-8")) for p in files}
    assert not {k: v for k, v in found.items() if v}
    # and the compose file passes no secret in an environment value either
    for name, svc in compose()["services"].items():
        env = svc.get("environment", {})
        items = env.items() if isinstance(env, dict) else (e.split("=", 1) for e in env)
        for key, value in items:
            if re.search(r"PASSWORD|TOKEN|SECRET", key) and not key.endswith("_FILE"):
                pytest.fail(f"{name}: {key}={value!r} in the compose file")
