"""Deciding quickly whether a download can work, so that a machine without a network fails
in seconds with a hint instead of minutes of retries.

Why a load used to be slow offline: huggingface_hub retries a failed HEAD request with backoff
(1 + 2 + 4 + 8 + 8 s) when no local copy exists, for each file transformers asks for
(adapter_config.json, then config.json): ~47 s. torchvision's `urlopen` has no timeout at all,
so a firewall that drops packets hangs until the operating system gives up.

So before any download: honour HF_HUB_OFFLINE (no network call at all), let the caller look in
the library's local cache, then probe the host (or the proxy) with one TCP connection bounded by
$PROGBENCH_NET_TIMEOUT seconds, DNS included (the probe runs in a thread we stop waiting for).
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

from progbench.config import BackboneSpec
from progbench.errors import WeightsError

OFFLINE_ENVS = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
TIMEOUT_ENV = "PROGBENCH_NET_TIMEOUT"
DEFAULT_PROBE_TIMEOUT = 3.0  # seconds for DNS + TCP connect
DOWNLOAD_STALL_TIMEOUT = 60.0  # seconds without data before a torch.hub download gives up
_PROBE_TTL = 60.0  # seconds a probe's answer is reused
_TRUE = {"1", "ON", "YES", "TRUE"}
_probes: dict[tuple[str, int], tuple[float, str | None]] = {}
_lock = threading.Lock()


def offline_mode() -> bool:
    """HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) is set: progbench then makes no network call,
    for any library, exactly as huggingface_hub does."""
    from huggingface_hub import constants

    env = any(os.environ.get(v, "").strip().upper() in _TRUE for v in OFFLINE_ENVS)
    return env or bool(constants.HF_HUB_OFFLINE)


def probe_timeout() -> float:
    raw = os.environ.get(TIMEOUT_ENV)
    if not raw:
        return DEFAULT_PROBE_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if value <= 0:
        raise WeightsError(f"${TIMEOUT_ENV}={raw!r} is not a positive number of seconds")
    return value


def hf_endpoint() -> str:
    from huggingface_hub import constants

    return constants.ENDPOINT


def _probe_target(url: str) -> tuple[str, int]:
    """The host:port a download of `url` connects to first: the proxy, when one applies."""
    import urllib.request  # loads ssl and http.client: only when a download is about to start

    parsed = urlparse(url)
    host, scheme = parsed.hostname or "", parsed.scheme or "https"
    proxy = urllib.request.getproxies().get(scheme)
    if proxy and not urllib.request.proxy_bypass(host):
        p = urlparse(proxy if "://" in proxy else f"http://{proxy}")
        return p.hostname or "", p.port or (443 if p.scheme == "https" else 80)
    return host, parsed.port or (443 if scheme == "https" else 80)


def _connects(host: str, port: int, timeout: float) -> str | None:
    """None when a TCP connection opens within `timeout`, else why not."""
    result: list[str | None] = []

    def attempt() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            result.append(None)
        except socket.gaierror as err:
            result.append(f"cannot resolve {host} ({err.strerror or err})")
        except OSError as err:
            result.append(f"cannot connect to {host}:{port} ({err.strerror or err})")

    # getaddrinfo ignores socket timeouts; a thread bounds the DNS lookup too.
    thread = threading.Thread(target=attempt, daemon=True, name="progbench-net-probe")
    thread.start()
    thread.join(timeout)
    return result[0] if result else f"{host}:{port} did not answer within {timeout:g} s"


def unreachable_reason(url: str) -> str | None:
    """None when a TCP connection to `url`'s host (or its proxy) opens within the probe
    timeout, else why not. Answers are reused for a minute."""
    target = _probe_target(url)
    now = time.monotonic()
    with _lock:
        hit = _probes.get(target)
    if hit is not None and now - hit[0] < _PROBE_TTL:
        return hit[1]
    why = _connects(*target, probe_timeout()) if target[0] else f"{url} names no host"
    with _lock:
        _probes[target] = (time.monotonic(), why)
    return why


def reachable(url: str) -> bool:
    return unreachable_reason(url) is None


def clear_probe_cache() -> None:
    with _lock:
        _probes.clear()


def offline_hint(spec: BackboneSpec, manual: str) -> str:
    return (
        f"Without network access, run `progbench weights fetch {spec.name} --to DIR` on a "
        f"machine that has it, copy DIR here and pass --weights-dir DIR (or set PROGBENCH_WEIGHTS_DIR=DIR); or {manual} "
        "and pass that path as --weights PATH (docs/MODELS.md, 'Weights on machines without a "
        "network'). For a dry run use --weights random."
    )


def require_network(url: str, what: str, spec: BackboneSpec, manual: str) -> None:
    """Raise WeightsError at once when `url` cannot be downloaded from here."""
    if offline_mode():
        why = "HF_HUB_OFFLINE is set, so no download is attempted"
    else:
        reason = unreachable_reason(url)
        if reason is None:
            return
        why = reason
    raise WeightsError(f"could not fetch {what} for {spec.name}: {why}", offline_hint(spec, manual))


@contextmanager
def download_timeout(seconds: float = DOWNLOAD_STALL_TIMEOUT) -> Iterator[None]:
    """torch.hub's urlopen takes no timeout; bound each socket operation while it runs."""
    before = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(before)


def hf_cached(repo_id: str, filename: str) -> Path | None:
    """The file from the local Hugging Face cache, without any network call; None if absent."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo_id, filename)
    return Path(found) if isinstance(found, str) else None


def drop_hf_download_metadata(folder: Path) -> None:
    """hf_hub_download(local_dir=...) keeps resume metadata in .cache/; a weights folder holds
    only the files the loader reads."""
    import shutil

    shutil.rmtree(folder / ".cache", ignore_errors=True)
