"""The image (Dockerfile, .dockerignore) and the TLS proxy (deploy/Caddyfile): non-root, nothing
local copied in, forwarded headers overwritten, Flower's metrics hidden."""

from __future__ import annotations

import posixpath
import re
import shlex
from dataclasses import dataclass, field

from .deploy_files import (
    PROXY,
    ROOT,
    argv,
    dockerfile,
    env,
    option,
    requires,
    services,
)


# --- Dockerfile and .dockerignore ---------------------------------------------------------------
def _pattern(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern as a regex: `**` spans directories, `*` and `?` stay in one."""
    assert "[" not in pattern and "\\" not in pattern, f"unsupported by this check: {pattern}"
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out + r"\Z")


def dockerignored(path: str) -> bool:
    """Whether Docker leaves `path` out of the build context: the last matching pattern decides,
    `!` re-includes, and a pattern that matches a directory takes everything in it."""
    ignored = False
    parts = path.split("/")
    candidates = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        regex = _pattern(posixpath.normpath(line.lstrip("!")).lstrip("/"))
        if any(regex.match(candidate) for candidate in candidates):
            ignored = not negate
    return ignored


KEPT_OUT = (
    ".git/HEAD",
    ".venv/bin/python",
    "var/flower-auth",
    "var/pgdata/PG_VERSION",
    "var/models/model.onnx",
    "bench/results/tmp/run.json",
    "test-artifacts/report.xml",
    "workers/__pycache__",
    "workers/__pycache__/apps.cpython-311.pyc",
    "__pycache__/x.pyc",
    "tests/stray.pyc",
    ".pytest_cache/v/cache/lastfailed",
    ".ruff_cache/CACHEDIR.TAG",
    "staticfiles/admin/css/base.css",
    ".env",
)
NEEDED = (
    "manage.py",
    "requirements/production.txt",
    "requirements/base.in",
    "selfos/settings/production.py",
    "workers/memory/onnx_encoder.py",
    "outbox/models.py",
)


def test_dockerignore_keeps_local_state_out_and_the_code_in() -> None:
    for path in KEPT_OUT:
        assert dockerignored(path), f"{path} would be copied into the image"
    for path in NEEDED:
        assert not dockerignored(path), f"{path} would be missing from the image"


def test_dockerfile_copies_the_tree_only_through_the_dockerignore() -> None:
    whole_tree = [
        args
        for keyword, args in dockerfile()
        if keyword in {"COPY", "ADD"} and "." in [a for a in args.split() if not a.startswith("--")][:-1]
    ]
    if whole_tree:
        assert (ROOT / ".dockerignore").exists()
        for path in (".git/config", ".venv/pyvenv.cfg", "var/flower-auth"):
            assert dockerignored(path), path


def test_the_image_runs_as_a_fixed_non_root_uid_that_owns_var() -> None:
    instructions = dockerfile()
    users = [args for keyword, args in instructions if keyword == "USER"]
    assert users, "no USER: the container runs as root"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0, f"USER {users[-1]}: want a fixed numeric uid, not root"
    last_user = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "USER")
    runs_before = [args for keyword, args in instructions[:last_user] if keyword == "RUN"]
    assert any(re.search(rf"chown -R {uid}(:\d+)? var\b", run) for run in runs_before), (
        "var/ not given to the user"
    )
    # Nothing after USER switches back.
    assert all(keyword != "USER" for keyword, _ in instructions[last_user + 1 :])


def test_the_image_keeps_its_build_steps() -> None:
    runs = " && ".join(args for keyword, args in dockerfile() if keyword == "RUN")
    assert re.search(r"pip install --no-cache-dir --require-hashes .*-r requirements/production.txt", runs)
    assert "manage.py collectstatic --noinput" in runs
    assert "manage.py memory prepare" in runs


# --- Caddyfile ----------------------------------------------------------------------------------
@dataclass
class Block:
    tokens: list[str]
    children: list[Block] = field(default_factory=list)

    def find(self, directive: str) -> list[Block]:
        """Every line, at any depth, that starts with `directive`."""
        found = [child for child in self.children if child.tokens[:1] == [directive]]
        return found + [hit for child in self.children for hit in child.find(directive)]


def caddyfile() -> Block:
    """The Caddyfile as a tree of lines: a line ending in `{` opens a block, `}` closes it."""
    root = Block([])
    stack = [root]
    for line in (ROOT / "deploy" / "Caddyfile").read_text().splitlines():
        lexer = shlex.shlex(line, posix=True)
        lexer.whitespace_split = True
        lexer.commenters = "#"
        tokens = list(lexer)
        if not tokens:
            continue
        if tokens == ["}"]:
            stack.pop()
            assert stack, "unbalanced } in the Caddyfile"
        elif tokens[-1] == "{":
            block = Block(tokens[:-1])
            stack[-1].children.append(block)
            stack.append(block)
        else:
            stack[-1].children.append(Block(tokens))
    assert len(stack) == 1, "unclosed { in the Caddyfile"
    return root


def site(address: str) -> Block:
    sites = [block for block in caddyfile().children if block.tokens == [address]]
    assert len(sites) == 1, f"want one site for {address}, found {len(sites)}"
    return sites[0]


def test_caddy_sites_come_from_required_variables() -> None:
    addresses = [block.tokens for block in caddyfile().children if block.tokens]
    assert addresses == [["{$SELFOS_DOMAIN}"], ["{$FLOWER_DOMAIN}"]]
    proxy_env = env(services()[PROXY])
    for variable in ("SELFOS_DOMAIN", "FLOWER_DOMAIN", "CADDY_TLS"):
        assert requires(proxy_env[variable], variable), variable
    for address in ("{$SELFOS_DOMAIN}", "{$FLOWER_DOMAIN}"):
        assert [b.tokens for b in site(address).find("tls")] == [["tls", "{$CADDY_TLS}"]], address
    volumes = services()[PROXY]["volumes"]
    assert "./deploy/Caddyfile:/etc/caddy/Caddyfile:ro" in volumes


def assert_proxies_with_overwritten_headers(address: str, upstream: str) -> None:
    proxies = site(address).find("reverse_proxy")
    assert [p.tokens for p in proxies] == [["reverse_proxy", upstream]], address
    headers = [child.tokens for child in proxies[0].children]
    assert ["header_up", "X-Forwarded-Proto", "{scheme}"] in headers, address
    assert ["header_up", "X-Forwarded-For", "{remote_host}"] in headers, address


def test_caddy_proxies_to_web_and_flower_overwriting_the_forwarded_headers() -> None:
    all_services = services()
    web_port = option(argv(all_services["web"]["command"]), "--bind").rsplit(":", 1)[1]
    flower_port = option(argv(all_services["flower"]["command"]), "--port")
    assert_proxies_with_overwritten_headers("{$SELFOS_DOMAIN}", f"web:{web_port}")
    assert_proxies_with_overwritten_headers("{$FLOWER_DOMAIN}", f"flower:{flower_port}")
    # Trusting an incoming X-Forwarded-For would let any client choose its throttle key.
    assert not caddyfile().find("trusted_proxies")


def test_caddy_hides_flowers_unauthenticated_metrics_and_sends_hsts() -> None:
    flower = site("{$FLOWER_DOMAIN}")
    assert any(
        block.tokens[1].startswith("/metrics") and block.tokens[-1] in {"403", "404"}
        for block in flower.find("respond")
    )
    assert any(b.tokens[:2] == ["header", "Strict-Transport-Security"] for b in flower.find("header"))
