"""The collective weight path: learner rank 0 sends weights straight into each engine's memory.

`weights_ref = "<backend>://<host>:<port>/<version>"`, backend `nccl` (GPU to GPU) or `gloo`
(CPU, and how this path is tested without a GPU). The learner's `WeightSender` serves a
`torch.distributed.TCPStore` at host:port. Every receiver (a rollout actor's process, or each
vLLM worker of its engine) pairs with the sender in a *two-member* process group of its own:
a receiver that dies or restarts breaks only its pair, never the others, and a new one can join
at any time (unlike one broadcast group, whose membership is fixed when it is created).

One transfer, for the version the receiver asks for (the newest announced on `policy`):
1. the receiver writes its request under `pair/<k>/want/<n>` in the store;
2. the sender's thread for pair k answers `pair/<k>/reply/<n>` with the layout (names, dtypes,
   shapes, byte offsets) or, when that version is no longer staged, an error;
3. one flat byte buffer travels sender → receiver over the pair's process group (`send`/`recv`),
   and the receiver cuts it into tensors without copying.
Requests go through the store, so neither side sits in a collective while the other is busy
(a rollout actor may generate for minutes between syncs). The sender stages a version once
(packed in the wire dtype on its device) and keeps the last `keep`; a receiver asking for one
no longer staged gets `WeightsUnavailable` and asks again for the next announcement.

Who may ask: the store listens only on the sender's host address (loopback for a local
service). Every request carries an HMAC of (pair, request, version) under the run's secret
(`LONGTIDE_WEIGHTS_SECRET`, which the launcher gives every actor and which never travels on
Kafka); the sender answers a request without it with an error and ends that pair, sending
nothing. A pair's process group meets under a store prefix derived from the secret, so a
process without it cannot take the receiver's place in the group either. The store itself has
no authentication: a process that reaches it can still disturb pairs (a denial of service),
so in a cluster it belongs on a private network.
"""

from __future__ import annotations

import contextlib
import datetime
import enum
import hashlib
import hmac
import json
import logging
import os
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from actors.settings import SECRET_ENV

log = logging.getLogger(__name__)

ALIGN = 64
"""Byte alignment of each tensor in the flat buffer (any dtype's view of a slice is valid)."""
POLL_SECONDS = 0.02
CONNECT_TIMEOUT = 30.0
"""Seconds a receiver waits to reach the sender, pair with it, or get a reply."""
TRANSFER_TIMEOUT = 600.0
"""Seconds one transfer (and a sender's pairing) may take: a large model over a slow link."""
KEEP = 2
"""Versions a sender stages: a receiver asks for the newest announced one, and a second covers a
publish landing between reading the announcement and asking (each is a full copy on the
learner's device)."""


class CollectiveBackend(enum.StrEnum):
    GLOO = "gloo"
    NCCL = "nccl"

    def device(self) -> torch.device:
        return (
            torch.device("cuda", torch.cuda.current_device()) if self is CollectiveBackend.NCCL else torch.device("cpu")
        )


class WeightsUnavailable(RuntimeError):
    """The requested version cannot be had from this sender now (no longer staged, or the
    sender is gone); a newer announcement will say where to get weights."""


class PairClosed(WeightsUnavailable):
    """The sender ended this pair (it stopped, or its thread for the pair failed)."""


@dataclass(frozen=True)
class Address:
    backend: CollectiveBackend
    host: str
    port: int

    def ref(self, version: int) -> str:
        return f"{self.backend}://{self.host}:{self.port}/{version}"

    @staticmethod
    def is_ref(ref: str) -> bool:
        return ref.partition("://")[0] in set(CollectiveBackend)

    @staticmethod
    def parse(ref: str) -> tuple[Address, int]:
        scheme, _, rest = ref.partition("://")
        hostport, _, version = rest.rpartition("/")
        host, _, port = hostport.rpartition(":")
        if scheme not in set(CollectiveBackend) or not host or not port.isdigit() or not version.isdigit():
            raise ValueError(f"weights_ref {ref!r}: expected gloo://HOST:PORT/VERSION or nccl://HOST:PORT/VERSION")
        return Address(CollectiveBackend(scheme), host, int(port)), int(version)


def pack(
    state: dict[str, torch.Tensor], dtype: torch.dtype | None, device: torch.device
) -> tuple[list[Any], torch.Tensor]:
    """(layout, flat uint8 buffer on `device`): every tensor in the buffer, floating ones cast to `dtype`."""
    layout, offset = [], 0
    for name, value in state.items():
        out_dtype = dtype if dtype is not None and value.is_floating_point() else value.dtype
        nbytes = value.numel() * out_dtype.itemsize
        layout.append([name, str(out_dtype).removeprefix("torch."), list(value.shape), offset, nbytes])
        offset += -(-nbytes // ALIGN) * ALIGN
    flat = torch.empty(offset, dtype=torch.uint8, device=device)
    for (_, dtype_name, _, start, nbytes), value in zip(layout, state.values(), strict=True):
        target = flat[start : start + nbytes].view(getattr(torch, dtype_name))
        target.copy_(value.detach().reshape(-1))
    return layout, flat


def unpack(layout: list[Any], flat: torch.Tensor) -> dict[str, torch.Tensor]:
    """Views into `flat`, one per tensor of the layout (no copy)."""
    return {
        name: flat[start : start + nbytes].view(getattr(torch, dtype_name)).view(shape)
        for name, dtype_name, shape, start, nbytes in layout
    }


def run_secret() -> str:
    """The run's secret from the environment; an error naming the variable when it is missing."""
    secret = os.environ.get(SECRET_ENV, "")
    if not secret:
        raise RuntimeError(f"the collective weight path needs the run's secret in {SECRET_ENV} (the launcher sets it)")
    return secret


def run_mac(secret: str, *parts: object) -> str:
    """What proves a message on the store comes from a process of the run: an HMAC of `parts`
    (a purpose and the pair's numbers) under the run's secret."""
    return hmac.new(secret.encode(), "/".join(map(str, parts)).encode(), hashlib.sha256).hexdigest()


def _pair_group(
    store: dist.Store, pair: int, rank: int, backend: CollectiveBackend, timeout: float, secret: str
) -> Any:
    """The two-member process group of pair `pair` (rank 0 the sender, 1 the receiver). Its
    rendezvous keys sit under a prefix derived from the run's secret: the store cannot list its
    keys, so a process without the secret cannot join the group as the receiver."""
    prefixed = dist.PrefixStore(f"pair/{pair}/pg/{run_mac(secret, 'group', pair)}/", store)
    span = datetime.timedelta(seconds=timeout)
    if backend is CollectiveBackend.NCCL:
        options = dist.ProcessGroupNCCL.Options()
        options._timeout = span
        return dist.ProcessGroupNCCL(prefixed, rank, 2, options)
    return dist.ProcessGroupGloo(prefixed, rank, 2, span)


class Waited(enum.Enum):
    READY = "ready"
    CLOSED = "closed"
    STOPPED = "stopped"


def _wait_key(store: dist.Store, key: str, closed: str, timeout: float, stop: threading.Event | None = None) -> Waited:
    """Poll until `key` exists (READY), the pair's `closed` key appears without it (CLOSED) or
    `stop` is set (STOPPED); TimeoutError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not store.check([key]):
        if store.check([closed]):  # `key` may have come just before (a refusal's reply, then the close)
            return Waited.READY if store.check([key]) else Waited.CLOSED
        if stop is not None and stop.is_set():
            return Waited.STOPPED
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {key!r} in the weight store after {timeout:.0f} s")
        time.sleep(POLL_SECONDS)
    return Waited.READY


class WeightSender:
    """Learner side: stages versions and serves every receiver that pairs with it."""

    def __init__(
        self,
        backend: CollectiveBackend,
        *,
        host: str,
        dtype: torch.dtype | None,
        keep: int = KEEP,
        timeout: float = TRANSFER_TIMEOUT,
        secret: str | None = None,
    ) -> None:
        """`host`: the only address the store listens on; `secret`: the run's (default: from
        the environment, `SECRET_ENV`)."""
        self.backend = backend
        self.device = backend.device()
        self.keep = keep
        self.dtype = dtype
        self.timeout = timeout
        self.secret = secret or run_secret()
        self.refused = 0
        """Requests refused for not carrying the run's secret."""
        # TCPStore's own server listens on every address; a socket bound to `host` is handed to it
        # instead (detached: the store's server owns the descriptor from here on)
        listener = socket.create_server((host, 0), family=socket.AF_INET6 if ":" in host else socket.AF_INET)
        port = listener.getsockname()[1]
        self.store = dist.TCPStore(
            host,
            port,
            is_master=True,
            wait_for_workers=False,
            timeout=datetime.timedelta(seconds=timeout),
            master_listen_fd=listener.detach(),
        )
        self.address = Address(backend, host, self.store.port)
        self._staged: dict[int, tuple[bytes, torch.Tensor]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.served: dict[int, int] = {}
        """Transfers completed, per pair."""
        self.pairs_open = 0
        """Pairs with a serving thread (a receiver that closes its pair ends its thread)."""
        self._accept = threading.Thread(target=self._accept_pairs, name="weights-accept", daemon=True)
        self._accept.start()

    def stage(self, version: int, state: dict[str, torch.Tensor]) -> str:
        """Pack `version` for sending; returns its `weights_ref`."""
        layout, flat = pack(state, self.dtype, self.device)
        header = json.dumps({"version": version, "layout": layout, "nbytes": flat.numel()}).encode()
        with self._lock:
            self._staged[version] = (header, flat)
            for old in sorted(self._staged)[: -self.keep]:
                del self._staged[old]
        return self.address.ref(version)

    def staged(self) -> list[int]:
        with self._lock:
            return sorted(self._staged)

    def _accept_pairs(self) -> None:
        seen = 0
        while not self._stop.is_set():
            pairs = self.store.add("pairs", 0)
            for pair in range(seen + 1, pairs + 1):
                threading.Thread(target=self._serve, args=(pair,), name=f"weights-pair-{pair}", daemon=True).start()
            seen = pairs
            self._stop.wait(POLL_SECONDS * 5)

    def _serve(self, pair: int) -> None:
        """Answer pair `pair`'s requests until the receiver closes it or the sender stops;
        the pair is then marked closed, so a receiver waiting on it fails at once."""
        closed = f"pair/{pair}/closed"
        try:
            hello = f"pair/{pair}/hello"  # first the receiver shows the run's secret, then the pair forms
            if _wait_key(self.store, hello, closed, self.timeout, self._stop) is not Waited.READY:
                return
            if not hmac.compare_digest(self.store.get(hello).decode(), run_mac(self.secret, "hello", pair)):
                self.refused += 1
                log.warning("weight pair %d refused: its receiver does not hold the run's secret", pair)
                return
            self.store.set(f"pair/{pair}/welcome", "1")
            group = _pair_group(self.store, pair, 0, self.backend, self.timeout, self.secret)
            self.pairs_open += 1
            request = 0
            while True:
                request += 1
                want = f"pair/{pair}/want/{request}"
                if _wait_key(self.store, want, closed, float("inf"), self._stop) is not Waited.READY:
                    return
                version, _, mac = self.store.get(want).decode().partition(":")
                version = int(version)
                if not hmac.compare_digest(mac, run_mac(self.secret, "want", pair, request, version)):
                    self.refused += 1
                    log.warning("weight pair %d: request %d refused (no run secret); ending the pair", pair, request)
                    error = "refused: the request does not carry this run's secret"
                    self.store.set(f"pair/{pair}/reply/{request}", json.dumps({"error": error}))
                    return
                with self._lock:
                    header, flat = self._staged.get(version, (None, None))
                    staged = sorted(self._staged)
                if flat is None:
                    error = f"version {version} is no longer staged (staged: {staged})"
                    self.store.set(f"pair/{pair}/reply/{request}", json.dumps({"error": error}))
                    continue
                self.store.set(f"pair/{pair}/reply/{request}", header)
                group.send([flat], 1, request).wait()
                self.served[pair] = self.served.get(pair, 0) + 1
        except Exception:  # a receiver that died mid-transfer ends its own pair only
            log.warning("weight pair %d ended", pair, exc_info=True)
        finally:
            self.pairs_open -= 1
            with contextlib.suppress(Exception):
                self.store.set(closed, "sender")

    def close(self) -> None:
        self._stop.set()
        self._accept.join(timeout=5)
        deadline = time.monotonic() + 5
        while self.pairs_open > 0 and time.monotonic() < deadline:  # every pair marked closed
            time.sleep(POLL_SECONDS)


class WeightReceiver:
    """Receiver side: one pair with one sender; `receive(version)` returns that version's tensors.

    Connecting and waiting for a reply give up after `connect_timeout` (a learner that is gone
    must not stall a rollout actor); the bytes themselves may take up to `timeout`."""

    def __init__(
        self,
        address: Address,
        timeout: float = TRANSFER_TIMEOUT,
        connect_timeout: float = CONNECT_TIMEOUT,
        secret: str | None = None,
    ) -> None:
        """`secret`: the run's (default: from the environment, `SECRET_ENV`)."""
        self.address = address
        self.secret = secret or run_secret()
        self.connect_timeout = connect_timeout
        self.device = address.backend.device()
        self.store = dist.TCPStore(
            address.host, address.port, is_master=False, timeout=datetime.timedelta(seconds=connect_timeout)
        )
        self.pair = self.store.add("pairs", 1)
        self.closed = f"pair/{self.pair}/closed"
        self.store.set(f"pair/{self.pair}/hello", run_mac(self.secret, "hello", self.pair))
        welcome = _wait_key(self.store, f"pair/{self.pair}/welcome", self.closed, connect_timeout)
        if welcome is Waited.CLOSED:
            where = f"{address.backend}://{address.host}:{address.port}"
            raise PairClosed(f"{where}: the sender refused pair {self.pair}: not this run's secret")
        self.group = _pair_group(self.store, self.pair, 1, address.backend, timeout, self.secret)
        self.requests = 0

    def receive(self, version: int) -> dict[str, torch.Tensor]:
        self.requests += 1
        want, reply_key = (f"pair/{self.pair}/{kind}/{self.requests}" for kind in ("want", "reply"))
        self.store.set(want, f"{version}:{run_mac(self.secret, 'want', self.pair, self.requests, version)}")
        if _wait_key(self.store, reply_key, self.closed, self.connect_timeout) is Waited.CLOSED:
            raise PairClosed(f"{self.address.ref(version)}: the sender closed pair {self.pair}")
        reply = json.loads(self.store.get(reply_key))
        self.store.delete_key(want)
        self.store.delete_key(reply_key)
        if "error" in reply:
            raise WeightsUnavailable(f"{self.address.ref(version)}: {reply['error']}")
        flat = torch.empty(reply["nbytes"], dtype=torch.uint8, device=self.device)
        self.group.recv([flat], 0, self.requests).wait()
        return unpack(reply["layout"], flat)

    def close(self) -> None:
        """End the pair (the sender's thread for it returns)."""
        with contextlib.suppress(Exception):
            self.store.set(self.closed, "receiver")


_receivers: dict[Address, WeightReceiver] = {}


def receive_weights(ref: str) -> dict[str, torch.Tensor]:
    """Resolve a collective `weights_ref` in this process (tensors on the backend's device).

    The pair with each sender is made on first use and kept. A sender that cannot be reached
    (a learner that stopped or restarted at a new address), a closed pair or a failed transfer
    drops the pair and raises `WeightsUnavailable`: the caller waits for the next announcement,
    which pairs again."""
    address, version = Address.parse(ref)
    try:
        if address not in _receivers:
            _receivers[address] = WeightReceiver(address)
        return _receivers[address].receive(version)
    except PairClosed:
        _receivers.pop(address, None)
        raise
    except WeightsUnavailable:
        raise
    except Exception as exc:  # noqa: BLE001 - unreachable or broken: pair again next time
        dropped = _receivers.pop(address, None)
        if dropped is not None:
            dropped.close()
        raise WeightsUnavailable(f"{ref}: {type(exc).__name__}: {exc}") from exc
