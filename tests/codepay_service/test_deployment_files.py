"""
The image and the stack as files: no Docker engine runs here, so the Dockerfile, the compose file and the
requirements sets are checked for what they promise (built once, runtime only, non-root, nothing fetched
at start). ``docker compose config`` and ``docker build`` are the checks to run where an engine exists.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = (ROOT / "Dockerfile").read_text()
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
APP_SERVICES = ("web", "worker", "beat")
TEST_TOOLS = (
    "pytest",
    "pytest-django",
    "pytest-timeout",
    "factory-boy",
    "faker",
    "responses",
    "openapi-spec-validator",
)


def requirement_names(path: Path) -> dict[str, str]:
    """name -> full line, for every requirement line (not comments, not -r includes)."""
    lines = [line.strip() for line in path.read_text().splitlines()]
    return {
        re.split(r"[\[=<>~!]", line)[0].lower().replace("_", "-"): line
        for line in lines
        if line and not line.startswith(("#", "-r"))
    }


def test_runtime_requirements_hold_no_test_tools_and_every_line_is_pinned():
    """requirements.txt is what production installs: exact versions, and none of the test tools."""
    runtime = requirement_names(ROOT / "requirements.txt")
    assert [name for name in TEST_TOOLS if name in runtime] == []
    assert [line for line in runtime.values() if "==" not in line] == []
    for needed in ("prometheus-client", "python-json-logger", "drf-spectacular-sidecar", "tqdm", "gunicorn"):
        assert needed in runtime


def test_development_requirements_add_the_test_tools_on_top_of_the_runtime_set():
    """requirements-dev.txt includes requirements.txt and pins every test tool; no package is in both files."""
    text = (ROOT / "requirements-dev.txt").read_text()
    assert "-r requirements.txt" in text.splitlines()
    dev = requirement_names(ROOT / "requirements-dev.txt")
    assert [name for name in TEST_TOOLS if name not in dev] == []
    assert [line for line in dev.values() if "==" not in line] == []
    assert sorted(set(dev) & set(requirement_names(ROOT / "requirements.txt"))) == []


def test_make_test_installs_both_sets_and_make_run_the_runtime_set():
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^test: install-dev$", makefile, re.M)
    assert re.search(r"^run: install$", makefile, re.M)
    assert "pip install --quiet -r requirements-dev.txt" in makefile


def test_make_manage_uses_the_addresses_make_run_recorded(tmp_path):
    """
    After `make run PORT=18698 SANDBOX_PORT=18699` (which writes .dev/ports.mk), a plain `make manage` calls
    that sandbox and announces that notification URL; a port given on the command line still wins.
    """
    makefile = (ROOT / "Makefile").read_text()
    assert "printf 'HOST ?= %s\\nPORT ?= %s\\nSANDBOX_PORT ?= %s\\n'" in makefile and "> $(DEV)/ports.mk" in makefile
    for name in ("requirements.txt", "requirements-dev.txt"):
        (tmp_path / name).write_text((ROOT / name).read_text())
    (tmp_path / "clients" / "python").mkdir(parents=True)
    (tmp_path / "clients" / "python" / "pyproject.toml").write_text(
        (ROOT / "clients" / "python" / "pyproject.toml").read_text()
    )
    (tmp_path / ".dev").mkdir()
    (tmp_path / ".dev" / "ports.mk").write_text("HOST ?= 127.0.0.1\nPORT ?= 18698\nSANDBOX_PORT ?= 18699\n")

    def dry_run(*overrides: str) -> str:
        command = ["make", "-n", "-f", str(ROOT / "Makefile"), "manage", "ARGS=check", *overrides]
        return subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, check=True).stdout

    recorded = dry_run()
    assert "CODEPAY_BASE_URL=http://127.0.0.1:18699 " in recorded
    assert "CODEPAY_NOTIFY_URL=http://127.0.0.1:18698/webhooks/codepay/ " in recorded
    assert "CODEPAY_BASE_URL=http://127.0.0.1:18601 " in dry_run("SANDBOX_PORT=18601")


def test_the_image_installs_runtime_dependencies_at_build_and_runs_as_a_non_root_user():
    """Slim base, requirements.txt (never the dev set) installed at build, static files collected, USER not root."""
    bases = re.findall(r"^FROM (\S+)", DOCKERFILE, re.M)
    assert bases and all(re.fullmatch(r"python:3\.\d+-slim", base) for base in bases)
    assert "pip install -r /tmp/requirements.txt" in DOCKERFILE
    assert "requirements-dev" not in DOCKERFILE
    assert "collectstatic --noinput" in DOCKERFILE
    users = re.findall(r"^USER (\S+)", DOCKERFILE, re.M)
    assert users == ["codepay"]
    # The tests are neither copied nor in the build context.
    assert "COPY . " not in DOCKERFILE and "tests" not in re.findall(r"^COPY (\S+)", DOCKERFILE, re.M)
    assert "tests" in (ROOT / ".dockerignore").read_text().split()


def test_compose_runs_the_built_image_for_web_worker_and_beat_without_installing_or_mounting_source():
    """Each app service builds the Dockerfile into one image; no command runs pip; no bind mount of the source."""
    services = COMPOSE["services"]
    for name in APP_SERVICES:
        service = services[name]
        assert service["build"] == "."
        assert service["image"] == "codepay-service:latest"
        command = service["command"] if isinstance(service["command"], str) else " ".join(service["command"])
        assert "pip" not in command
        assert [volume for volume in service.get("volumes", []) if volume.split(":")[0] in (".", "./", "/app")] == []
    assert "migrate --noinput" in services["web"]["command"] and "exec gunicorn" in services["web"]["command"]
    assert services["worker"]["command"][:4] == ["celery", "-A", "codepay_service", "worker"]
    assert services["beat"]["command"][:4] == ["celery", "-A", "codepay_service", "beat"]


def test_web_and_worker_share_the_metrics_directory_the_image_points_to():
    """Gateway calls observed by the worker reach /metrics on the web through one shared directory."""
    directory = re.search(r"PROMETHEUS_MULTIPROC_DIR=(\S+)", DOCKERFILE).group(1)
    for name in ("web", "worker"):
        assert f"metrics:{directory}" in COMPOSE["services"][name]["volumes"]
    assert "metrics" in COMPOSE["volumes"]


def test_collectstatic_runs_as_the_image_build_runs_it_and_gathers_the_offline_swagger_ui(tmp_path):
    """
    The build step (throwaway secret key, no database, no DEBUG) succeeds and collects Swagger UI from
    drf-spectacular-sidecar, so /api/docs/ in the image loads nothing from the network.
    """
    env = {key: value for key, value in os.environ.items() if not key.startswith(("DJANGO_", "DATABASE_"))}
    env.update(DJANGO_SECRET_KEY="collectstatic-only", STATIC_ROOT=str(tmp_path))
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "--verbosity", "0"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    assert (tmp_path / "drf_spectacular_sidecar" / "swagger-ui-dist" / "swagger-ui-bundle.js").is_file()
    assert (tmp_path / "admin" / "css" / "base.css").is_file()


def test_gunicorn_reads_its_settings_file_from_the_working_directory_and_the_image_has_it():
    """The web process freezes the loaded application's objects out of garbage collection (gunicorn.conf.py):
    gunicorn finds the file on its own where the Procfile and the image start it, and the image copies it."""
    printed = subprocess.run(
        [str(Path(sys.executable).parent / "gunicorn"), "--print-config", "codepay_service.wsgi:application"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    settings = dict(re.findall(r"^(\w+)\s+= (.*)$", printed, re.M))

    assert settings["config"] == "./gunicorn.conf.py"
    assert settings["post_worker_init"] == "<post_worker_init()>"
    assert re.search(r"^COPY .*\bgunicorn\.conf\.py\b.* \./$", DOCKERFILE, re.M)
    assert re.search(r"^WORKDIR /app$", DOCKERFILE, re.M)
