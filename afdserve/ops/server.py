"""Start and stop a local TorchServe the same way for ``afdserve serve`` and the end-to-end tests.

``LocalTorchServe`` runs ``torchserve --start`` in its own session (so its java frontend and the
Python workers form one process group, away from the terminal's Ctrl-C), waits until every
worker of every model is READY, and on stop runs ``torchserve --stop`` and then makes sure the
java process and its workers are really gone.

Two modes:
- ``foreground=True`` (tests): the ``torchserve --start --foreground`` launcher stays our child
  and a small watchdog process kills the server's process group if this Python process dies
  without calling ``stop()`` (SIGKILL, CI timeout), so a test run never leaves java behind.
- ``foreground=False`` (``afdserve serve``): the launcher returns at once and the server keeps
  running after this process exits; ``afdserve stop`` finds it again through the PID file.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import requests

from afdserve.ops.keys import KEY_FILE_NAME, read_keys
from afdserve.packaging.manifest import ArchiveVerificationError, served_archives, verify_archive
from afdserve.util.files import find_executable

TS_NAMESPACE = "org.pytorch.serve.ModelServer"  # in the java command line; what ts itself checks
PID_FILE_NAME = ".model_server.pid"  # written by `torchserve --start` into $TMPDIR
MIN_JAVA = 11
JAVA_HINT = (
    "On Debian/Ubuntu: sudo apt-get install openjdk-17-jre-headless; "
    "elsewhere install a Java 11+ runtime and put it on PATH or set JAVA_HOME."
)
DEFAULT_MODELS = ("afd_classifier", "lite0_baseline", "swinir_restorer", "restore_classify")
# A worker that failed to load its model this many times in a row while starting will not load
# it (TorchServe would keep retrying with growing back-off until the timeout).
LOAD_RETRY_LIMIT = 2

# Runs beside a foreground server: the owner holds the write end of our stdin. EOF without the
# "stop" byte means the owner died without stop(), so every process of the server's session is
# killed: the launcher's process group, and any member (a model worker) that left that group.
# Terminal signals are ignored so a Ctrl-C lets the owner's own clean-up run first.
_WATCHDOG = r"""
import os, signal, sys
signal.signal(signal.SIGINT, signal.SIG_IGN)
signal.signal(signal.SIGTERM, signal.SIG_IGN)
if sys.stdin.buffer.read() != b"stop":
    sid = int(sys.argv[1])
    try:
        os.killpg(sid, signal.SIGKILL)
    except OSError:
        pass
    for entry in os.listdir("/proc"):
        try:
            if entry.isdigit() and int(entry) != os.getpid() and os.getsid(int(entry)) == sid:
                os.kill(int(entry), signal.SIGKILL)
        except OSError:
            pass
"""


class TorchServeError(RuntimeError):
    """TorchServe could not be started, or did not become ready."""


class JavaError(TorchServeError):
    """java is missing or older than TorchServe needs."""


class MissingArchiveError(TorchServeError, FileNotFoundError):
    """A model archive named in ``models`` is not in the model store."""


# ---------------------------------------------------------------------------------------------
# Helpers


def find_torchserve() -> str:
    """The ``torchserve`` script of this interpreter's environment first (a venv's bin need not
    be on PATH), then PATH."""
    found = find_executable("torchserve")
    if found:
        return found
    raise TorchServeError(
        "torchserve not found next to %s or on PATH; install the serve extra: "
        "pip install -e '.[serve]' (or run `make venv`)" % sys.executable
    )


def java_executable() -> str | None:
    """The java that ``torchserve --start`` will run: $JAVA_HOME/bin/java, else PATH."""
    home = os.environ.get("JAVA_HOME")
    if home:
        path = os.path.join(home, "bin", "java")
        return path if os.access(path, os.X_OK) else None
    return shutil.which("java")


def parse_java_version(text: str) -> tuple[str, int]:
    """(version string, major) from ``java -version`` output; 1.8.0_x counts as 8."""
    m = re.search(r'version "([^"]+)"', text)
    if not m:
        raise ValueError("no version in %r" % text[:200])
    version = m.group(1)
    parts = version.split(".")
    first = int(re.match(r"\d+", parts[0]).group())
    major = int(re.match(r"\d+", parts[1]).group()) if first == 1 and len(parts) > 1 else first
    return version, major


def check_java(min_major: int = MIN_JAVA) -> str:
    """Return the java version, or raise JavaError saying what to install."""
    java = java_executable()
    if java is None:
        where = "$JAVA_HOME/bin/java" if os.environ.get("JAVA_HOME") else "java on PATH"
        raise JavaError(f"TorchServe needs Java {min_major}+, but there is no {where}. {JAVA_HINT}")
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=60)
        version, major = parse_java_version(out.stderr + out.stdout)
    except (OSError, subprocess.SubprocessError, ValueError) as e:
        raise JavaError(f"Could not run `{java} -version` ({e}). {JAVA_HINT}") from e
    if major < min_major:
        raise JavaError(
            f"TorchServe needs Java {min_major}+, but {java} is version {version}. {JAVA_HINT}"
        )
    return version


def free_ports(n: int = 3) -> list[int]:
    """n distinct ports free on 127.0.0.1 right now (all bound at once so they differ)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def read_properties(path) -> dict[str, str]:
    """key=value lines of a TorchServe config file, parsed as ts.model_server does."""
    props = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            props[key.strip()] = value.strip()
    return props


def _prop_value(value) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def write_properties(base: Path, dest: Path, overrides: dict) -> None:
    """Copy ``base`` to ``dest`` with ``overrides`` replacing (or appended to) its keys."""
    pending = {k: _prop_value(v) for k, v in overrides.items()}
    out = []
    for line in base.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        key = stripped.split("=", 1)[0].strip() if "=" in stripped else None
        if key and not stripped.startswith("#") and key in pending:
            out.append(f"{key}={pending.pop(key)}")
        else:
            out.append(line)
    if pending:
        out.append(f"# added by afdserve.ops.server for this run (base: {base})")
        out.extend(f"{k}={v}" for k, v in pending.items())
    dest.write_text("\n".join(out) + "\n", encoding="utf-8")


def _client_url(address: str) -> str:
    """A URL a local client can use for a bind address (0.0.0.0 -> 127.0.0.1)."""
    return re.sub(r"//(0\.0\.0\.0|\[::\])", "//127.0.0.1", address.rstrip("/"))


def _alive(proc: psutil.Process) -> bool:
    # A zombie holds no ports or memory; here PID 1 may take a while to reap an orphaned java.
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _wait_gone(procs, timeout: float) -> list[psutil.Process]:
    deadline = time.monotonic() + timeout
    alive = [p for p in procs if _alive(p)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.1)
        alive = [p for p in alive if _alive(p)]
    return alive


def _tail(path: Path, lines: int) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return f"({path} not written)"
    return "\n".join(text.splitlines()[-lines:]) or f"({path} is empty)"


def _expired(entry: dict, margin_s: float = 60) -> bool:
    stamp = entry.get("expiration time")
    if not stamp:
        return False  # the API key never expires
    # Java writes nanoseconds and a Z; fromisoformat takes at most microseconds.
    stamp = re.sub(r"(\.\d{6})\d+", r"\1", stamp).replace("Z", "+00:00")
    try:
        when = _dt.datetime.fromisoformat(stamp)
    except ValueError:
        return False
    return when.timestamp() - time.time() < margin_s


# ---------------------------------------------------------------------------------------------
# The server


class LocalTorchServe:
    """A TorchServe started from ``workdir`` with the given models.

    models: model name -> archive file name in ``model_store``, or a list of them for several
        versions of one model (the first one registered is the default).
    workdir: launch directory; key_file.json and logs/ go there.
    ports: (inference, management, metrics); None keeps the config's. When given, or with
        ``extra_config``, a derived config is written to workdir (gRPC ports get free ones too,
        because gRPC is always on and two servers on 7070 make the second one exit).
    tmpdir: when given, TEMP and TMPDIR for the server (PID file, worker sockets, unpacked
        archives), so several servers can run at once; None inherits the environment's.
    log_config: log4j2 file; default log4j2.xml next to config_file, if there is one.
    """

    def __init__(
        self,
        model_store,
        models: dict[str, str | list[str]],
        workdir,
        config_file="config.properties",
        ports: tuple[int, int, int] | None = None,
        foreground: bool = True,
        extra_config: dict | None = None,
        tmpdir=None,
        log_config=None,
    ):
        self.model_store = Path(model_store).resolve()
        self.models = {name: [files] if isinstance(files, (str, Path)) else list(files)
                       for name, files in models.items()}
        self.workdir = Path(workdir).resolve()
        self.base_config = Path(config_file).resolve()
        self.ports = tuple(ports) if ports is not None else None
        if self.ports is not None and len(self.ports) != 3:
            raise ValueError("ports must be (inference, management, metrics)")
        self.foreground = foreground
        self.extra_config = dict(extra_config or {})
        self.tmpdir = Path(tmpdir).resolve() if tmpdir is not None else None
        if log_config is None:
            sibling = self.base_config.with_name("log4j2.xml")
            log_config = sibling if sibling.is_file() else None
        self.log_config = Path(log_config).resolve() if log_config is not None else None
        self.log_dir = self.workdir / "logs"
        self.startup_seconds: float | None = None

        self._launcher: subprocess.Popen | None = None
        self._launcher_out = None
        self._watchdog: subprocess.Popen | None = None
        self._settings: dict[str, str] | None = None
        self._config_path: Path | None = None

    # -- configuration -------------------------------------------------------------------------

    @property
    def config_path(self) -> Path:
        """The config file passed to --ts-config (derived on first use when needed)."""
        if self._config_path is None:
            self._prepare_config()
        return self._config_path

    @property
    def settings(self) -> dict[str, str]:
        if self._settings is None:
            self._prepare_config()
        return self._settings

    def _prepare_config(self) -> None:
        if not self.base_config.is_file():
            raise TorchServeError(f"TorchServe config not found: {self.base_config}")
        overrides = {}
        if self.ports is not None:
            inf, mgmt, met = self.ports
            grpc_inf, grpc_mgmt = free_ports(2)
            overrides.update(
                inference_address=f"http://127.0.0.1:{inf}",
                management_address=f"http://127.0.0.1:{mgmt}",
                metrics_address=f"http://127.0.0.1:{met}",
                grpc_inference_port=grpc_inf,
                grpc_management_port=grpc_mgmt,
            )
        overrides.update(self.extra_config)
        if overrides:
            path = self.workdir / "config.derived.properties"
            if path == self.base_config:
                raise TorchServeError(f"refusing to overwrite {path}")
            self.workdir.mkdir(parents=True, exist_ok=True)
            write_properties(self.base_config, path, overrides)
        else:
            path = self.base_config
        self._config_path = path
        self._settings = read_properties(path)

    def _url(self, key: str, default_port: int) -> str:
        return _client_url(self.settings.get(key, f"http://127.0.0.1:{default_port}"))

    @property
    def inference_url(self) -> str:
        return self._url("inference_address", 8080)

    @property
    def management_url(self) -> str:
        return self._url("management_address", 8081)

    @property
    def grpc_inference_target(self) -> str:
        """host:port of the gRPC inference API, as grpc.insecure_channel takes it."""
        host = self.settings.get("grpc_inference_address", "127.0.0.1")
        host = "127.0.0.1" if host in ("0.0.0.0", "::", "[::]") else host
        return f"{host}:{self.settings.get('grpc_inference_port', '7070')}"

    @property
    def metrics_url(self) -> str:
        return self._url("metrics_address", 8082)

    @property
    def pid_file(self) -> Path:
        return Path(self.tmpdir or tempfile.gettempdir()) / PID_FILE_NAME

    @property
    def key_file(self) -> Path:
        return self.workdir / KEY_FILE_NAME

    @property
    def token_auth(self) -> bool:
        return self.settings.get("disable_token_authorization", "false").lower() != "true"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.pop("TS_CONFIG_FILE", None)  # it would silently win over --ts-config
        env["LOG_LOCATION"] = env["METRICS_LOCATION"] = str(self.log_dir)
        if self.tmpdir is not None:
            env["TEMP"] = env["TMPDIR"] = str(self.tmpdir)
        return env

    def missing_archives(self) -> list[Path]:
        return [path for _, path in self.archives() if not path.is_file()]

    def archives(self) -> list[tuple[str, Path]]:
        """(model name, archive path) for every archive this server loads, in load order."""
        return [(name, self.model_store / f) for name, files in self.models.items() for f in files]

    # -- keys ----------------------------------------------------------------------------------

    def keys(self) -> dict:
        """key_file.json as written by the frontend:
        {"management": {"key", "expiration time"}, "inference": {...}, "API": {"key"}}."""
        try:
            return read_keys(self.key_file)
        except FileNotFoundError:
            raise TorchServeError(f"no {self.key_file}: is TorchServe running from {self.workdir}?")

    def _bearer(self, kind: str) -> dict:
        if not self.token_auth:
            return {}
        return {"Authorization": "Bearer " + self.keys()[kind]["key"]}

    def inference_headers(self) -> dict:
        return self._bearer("inference")

    def management_headers(self) -> dict:
        return self._bearer("management")

    def refresh_keys(self) -> list[str]:
        """Rotate expired (or nearly expired) inference/management keys with the API key; the
        frontend rewrites key_file.json. Returns the kinds rotated."""
        keys = self.keys()
        rotated = []
        for kind in ("inference", "management"):
            if _expired(keys.get(kind, {})):
                r = requests.put(
                    f"{self.management_url}/token",
                    params={"type": kind},
                    headers={"Authorization": "Bearer " + keys["API"]["key"]},
                    timeout=10,
                )
                r.raise_for_status()
                rotated.append(kind)
        return rotated

    # -- state ---------------------------------------------------------------------------------

    def java_process(self) -> psutil.Process | None:
        """The live frontend named by the PID file, if any."""
        try:
            pid = int(self.pid_file.read_text().split()[0])
            proc = psutil.Process(pid)
            if _alive(proc) and TS_NAMESPACE in proc.cmdline():
                return proc
        except (OSError, ValueError, IndexError, psutil.Error):
            pass
        return None

    def is_running(self) -> bool:
        return self.java_process() is not None

    def ping(self) -> requests.Response | None:
        """GET /ping on the inference port: any answer (even 400 for a stale key) means a server
        is there; None when nothing listens."""
        try:
            headers = self.inference_headers() if self.key_file.exists() else {}
        except (TorchServeError, KeyError, ValueError):
            headers = {}
        try:
            return requests.get(f"{self.inference_url}/ping", headers=headers, timeout=3)
        except requests.RequestException:
            return None

    # -- start ---------------------------------------------------------------------------------

    def start(self, timeout: float = 180) -> None:
        if self._launcher is not None and self._launcher.poll() is None:
            raise TorchServeError("this server was already started")
        missing = self.missing_archives()
        if missing:
            raise MissingArchiveError(
                "missing model archive(s): %s; build them with `afdserve build` (or `make build`)"
                % ", ".join(str(p) for p in missing)
            )
        # Every archive must match its manifest (afdserve.packaging.manifest): what is served is what was built.
        for _, path in self.archives():
            try:
                verify_archive(path)
            except ArchiveVerificationError as err:
                raise TorchServeError(str(err)) from None
        check_java()
        torchserve = find_torchserve()
        config = self.config_path
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        if self.tmpdir is not None:
            self.tmpdir.mkdir(parents=True, exist_ok=True)
        running = self.java_process()
        if running is not None:
            raise TorchServeError(
                f"a TorchServe (pid {running.pid}) is already running for {self.pid_file}; "
                "stop it first (afdserve stop / torchserve --stop)"
            )
        # A key file left by a crashed server would make the readiness poll use stale keys.
        self.key_file.unlink(missing_ok=True)

        cmd = [torchserve, "--start", "--ncs", "--model-store", str(self.model_store),
               "--ts-config", str(config)]
        if self.log_config is not None:
            cmd += ["--log-config", str(self.log_config)]
        if self.foreground:
            cmd.append("--foreground")
        cmd += ["--models"] + [f"{name}={path.name}" for name, path in self.archives()]

        t0 = time.monotonic()
        try:
            # The java process inherits these handles: a file, never a pipe nobody reads.
            self._launcher_out = open(self.log_dir / "torchserve.out", "ab")
            self._launcher = subprocess.Popen(
                cmd, cwd=self.workdir, env=self.env(), stdin=subprocess.DEVNULL,
                stdout=self._launcher_out, stderr=subprocess.STDOUT,
                start_new_session=True,  # own process group: killable as one, deaf to Ctrl-C
            )
            if self.foreground:
                self._watchdog = subprocess.Popen(
                    [sys.executable, "-c", _WATCHDOG, str(self._launcher.pid)],
                    stdin=subprocess.PIPE, start_new_session=True,
                )
            self._wait_ready(t0 + timeout, timeout)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - t0

    def _fail(self, message: str) -> TorchServeError:
        parts = [message, f"--- last lines of {self.log_dir / 'ts_log.log'} ---",
                 _tail(self.log_dir / "ts_log.log", 40)]
        out = self.log_dir / "torchserve.out"
        if out.exists() and out.stat().st_size:
            parts += [f"--- last lines of {out} ---", _tail(out, 15)]
        return TorchServeError("\n".join(parts))

    def _check_alive(self) -> None:
        rc = self._launcher.poll()
        if self.foreground and rc is not None:
            raise self._fail(f"torchserve exited early (status {rc})")
        if not self.foreground and rc is not None:
            if rc != 0:
                raise self._fail(f"torchserve --start failed (status {rc})")
            if self.java_process() is None:
                raise self._fail("the TorchServe frontend (java) exited during start-up")

    def _check_load_failures(self) -> None:
        try:
            log = (self.log_dir / "ts_log.log").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return
        for name in self.models:
            # Frontend worker threads are named W-<port>-<model>_<version>; count per worker so
            # two workers failing once each is not taken for a repeated failure.
            workers = re.findall(rf"W-(\d+)-{re.escape(name)}_\S* .*Retry worker", log)
            retries = max((workers.count(w) for w in set(workers)), default=0)
            if retries >= LOAD_RETRY_LIMIT:
                raise self._fail(f"model {name!r}: a worker died {retries} times while loading")

    def _models_ready(self) -> bool:
        try:
            headers = self.management_headers()
        except (TorchServeError, KeyError, ValueError):
            return False  # key file not written (completely) yet
        for name in self.models:
            try:
                r = requests.get(f"{self.management_url}/models/{name}/all", headers=headers, timeout=5)
            except requests.RequestException:
                return False
            if r.status_code == 404:
                # Initial models are registered before the ports open, so this is final.
                raise self._fail(f"model {name!r} was not registered (bad archive?)")
            if r.status_code != 200:
                return False
            workers = [w for version in r.json() for w in version.get("workers", [])]
            if not workers or any(w.get("status") != "READY" for w in workers):
                return False
        return True

    def _wait_ready(self, deadline: float, timeout: float) -> None:
        while True:
            self._check_alive()
            if self._models_ready():
                return
            self._check_load_failures()
            if time.monotonic() > deadline:
                raise self._fail(f"models {sorted(self.models)} not READY after {timeout:.0f} s")
            time.sleep(0.2)

    # -- stop ----------------------------------------------------------------------------------

    def _session_members(self, sid: int) -> list[psutil.Process]:
        members = []
        for proc in psutil.process_iter():
            try:
                if proc.pid != os.getpid() and os.getsid(proc.pid) == sid:
                    members.append(proc)
            except (OSError, psutil.Error):
                pass
        return members

    def stop(self, timeout: float = 30) -> None:
        """``torchserve --stop``, then wait for the frontend and its workers to exit; whatever is
        still alive after ``timeout`` is killed. Safe to call twice or without start()."""
        procs = []
        java = self.java_process()
        roots = [java] if java is not None else []
        if self._launcher is not None and self._launcher.poll() is None:
            try:
                roots.append(psutil.Process(self._launcher.pid))
            except psutil.Error:
                pass
        for root in roots:
            procs.append(root)
            try:
                procs.extend(root.children(recursive=True))
            except psutil.Error:
                pass
        # Our servers run in a session of their own (sid == pgid == launcher pid); everything in
        # it belongs to the server, including workers restarted after the snapshot above.
        sid = None
        if java is not None:
            try:
                sid = os.getsid(java.pid)
                if sid != os.getpgid(java.pid) or sid == os.getsid(0):
                    sid = None  # started by hand in someone's shell session: not ours to sweep
            except OSError:
                sid = None
        elif self._launcher is not None:
            sid = self._launcher.pid

        if java is not None or roots:
            try:
                subprocess.run(
                    [find_torchserve(), "--stop"], cwd=self.workdir, env=self.env(),
                    stdin=subprocess.DEVNULL, capture_output=True, timeout=60,
                )
            except (TorchServeError, OSError, subprocess.SubprocessError):
                if java is not None:
                    java.terminate()

        alive = _wait_gone(procs, timeout)
        for proc in alive:
            try:
                proc.kill()
            except psutil.Error:
                pass
        if sid is not None:
            for proc in self._session_members(sid):
                try:
                    proc.kill()
                except psutil.Error:
                    pass
                alive.append(proc)
        _wait_gone(alive, 10)

        if self._launcher is not None:
            try:
                self._launcher.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._launcher.kill()
                self._launcher.wait()
            self._launcher = None
        if self._launcher_out is not None:
            self._launcher_out.close()
            self._launcher_out = None
        if self._watchdog is not None:
            try:
                self._watchdog.stdin.write(b"stop")
                self._watchdog.stdin.close()
            except OSError:
                pass
            try:
                self._watchdog.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._watchdog.kill()
            self._watchdog = None

    # -- context manager -----------------------------------------------------------------------

    def __enter__(self) -> "LocalTorchServe":
        if self._launcher is None:
            self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"LocalTorchServe(models={self.models}, workdir={str(self.workdir)!r})"


# ---------------------------------------------------------------------------------------------
# CLI: afdserve serve / afdserve stop


def _print_usage(server: LocalTorchServe, models) -> None:
    key = server.keys()["inference"]
    for name in models:
        # An explicit type, so the line still works when -T is swapped for --data-binary
        # (whose default form type TorchServe refuses, docs/api.md).
        print(f'  curl -H "Authorization: Bearer {key["key"]}" -H "Content-Type: application/octet-stream" '
              f"-T image.jpg {server.inference_url}/predictions/{name}")
    if key.get("expiration time"):
        print(f"The inference key expires at {key['expiration time']} (UTC); "
              "`afdserve serve` again prints a fresh one.")
    print(f"Keys: {server.key_file}  Logs: {server.log_dir}/ (ts_log.log, model_log.log)")
    print("Stop with: afdserve stop  (or make stop)")


def _server_from_args(args) -> LocalTorchServe:
    """Every version of each named model in the store (NAME.VERSION.mar), retired ones left
    out, the recorded default first (see afdserve.packaging.manifest.served_archives)."""
    names = [m.strip() for m in args.models.split(",") if m.strip()]
    models = {}
    for name in names:
        models[name] = served_archives(args.model_store, name)
        if not models[name]:
            raise MissingArchiveError(f"no archive {name}.VERSION.mar in {args.model_store}; "
                                      "build it with `afdserve build` (or `make build`)")
    return LocalTorchServe(args.model_store, models, workdir=Path.cwd(), config_file=args.config,
                           foreground=False)


def _cmd_serve(args) -> int:
    try:
        server = _server_from_args(args)
        server.settings
    except TorchServeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    answer = server.ping()
    if answer is not None:
        if answer.status_code != 200 or not server.key_file.exists():
            # 400 is TorchServe refusing the key: the server was started from another directory
            # (its key_file.json is there), or it is not a TorchServe at all.
            print(f"Something already answers on {server.inference_url} (HTTP "
                  f"{answer.status_code} to /ping) but does not accept a key from "
                  f"{server.key_file}. Stop it where it was started (afdserve stop / "
                  "torchserve --stop) or free the port.", file=sys.stderr)
            return 1
        print(f"TorchServe is already running on {server.inference_url}.")
        models = list(server.models)
        try:
            rotated = server.refresh_keys()
            if rotated:
                print("Rotated expired key(s): " + ", ".join(rotated))
            r = requests.get(f"{server.management_url}/models",
                             headers=server.management_headers(), timeout=5)
            r.raise_for_status()
            models = [m["modelName"] for m in r.json()["models"]]
            print("Registered models: " + ", ".join(models))
        except (requests.RequestException, KeyError, ValueError) as e:
            print(f"(could not list its models: {e})")
        _print_usage(server, models)
        return 0
    try:
        server.start(timeout=args.timeout)
    except TorchServeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"TorchServe is up: {', '.join(server.models)} READY after {server.startup_seconds:.1f} s "
          f"(pid {server.java_process().pid}).")
    print(f"Inference {server.inference_url}  management {server.management_url}  "
          f"metrics {server.metrics_url}/metrics")
    _print_usage(server, server.models)
    return 0


def _cmd_stop(args) -> int:
    server = LocalTorchServe(args.model_store, {}, workdir=Path.cwd(), config_file=args.config,
                             foreground=False)
    java = server.java_process()
    if java is None:
        print(f"TorchServe is not running (no live process in {server.pid_file}).")
        return 0
    server.stop()
    print(f"TorchServe (pid {java.pid}) stopped.")
    return 0


def add_commands(subparsers) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--model-store", default="model_store", help="default: %(default)s")
    common.add_argument("--config", default="config.properties",
                        help="TorchServe config file (default: %(default)s)")

    serve = subparsers.add_parser(
        "serve", parents=[common],
        help="start TorchServe in the background and wait until the models are READY",
        description="Start TorchServe from the current directory (key_file.json and logs/ go "
        "here) and return once every worker is READY; the server keeps running.",
    )
    serve.add_argument("--models", default=",".join(DEFAULT_MODELS),
                       help="comma-separated model names; every NAME.VERSION.mar in the store is served "
                            "(default: %(default)s)")
    serve.add_argument("--timeout", type=float, default=180,
                       help="seconds to wait for READY (default: %(default)s)")
    serve.set_defaults(func=_cmd_serve)

    stop = subparsers.add_parser("stop", parents=[common],
                                 help="stop the TorchServe started by `afdserve serve`")
    stop.set_defaults(func=_cmd_stop)
