"""Data-parallel training on Keras' own engines.

- One process, several devices (``[train] distribution = "data_parallel"``): TensorFlow's
  ``tf.distribute.MirroredStrategy``, or ``keras.distribution.DataParallel`` on JAX. On a
  machine without GPUs, ``devices = N`` makes N logical CPU devices (how it is tested here).
- Several processes (machines): JAX only, ``jax.distributed.initialize`` (what
  ``keras.distribution.initialize`` calls, with the timeouts it does not expose) and
  ``DataParallel`` over every process's devices. Keras 3's ``fit`` does not run under
  TensorFlow's MultiWorkerMirroredStrategy (keras-team/keras#20585); PyTorch has no Keras
  distribution at all. Both are refused with one line.

``batch_size`` is the global batch: each of R replicas computes ``batch_size / R`` images and the
gradients are summed over replicas of losses scaled by 1/R, so one step is the step of one device
on the whole batch (equal up to float rounding; tests/test_distribute.py).
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import sys
import threading
from dataclasses import dataclass, field

import keras
import numpy as np

from zspace.config_fields import MAX_PROCESSES
from zspace.errors import ConfigError, RunError

__all__ = ["Cluster", "BatchShare", "Replicas", "replicas_for", "outside_distribution", "COORDINATOR_TIMEOUT_S",
           "HEARTBEAT_TIMEOUT_S"]

COORDINATOR_TIMEOUT_S = 60.0
"""Seconds every process waits for all ``num_processes`` to meet at the coordinator before it gives
up with one line (``ZSPACE_COORDINATOR_TIMEOUT_S``)."""

HEARTBEAT_TIMEOUT_S = 30
"""Seconds without a heartbeat after which JAX's coordination service declares a process dead and
stops the others (``ZSPACE_HEARTBEAT_TIMEOUT_S``). A process waiting in a collective for a dead peer
stops at once (the connection breaks) with zspace's one line."""

_ADDRESS = re.compile(r"^(?P<host>\[[0-9a-fA-F:.]+\]|[A-Za-z0-9._-]+):(?P<port>[0-9]{1,5})$")


def _env_float(name: str, default: float) -> float:
    """A positive number of seconds from environment variable ``name``, else ``default``."""
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        seconds = float(value)
    except ValueError:
        seconds = float("nan")
    if not math.isfinite(seconds) or not 0 < seconds <= 86_400:
        raise ConfigError(f"environment variable {name}={value!r} must be a number of seconds in (0, 86400].")
    return seconds


@dataclass(frozen=True)
class Cluster:
    """Where this process stands in a multi-process run (not part of the run's config: it differs
    per process). One process (the default) needs nothing.

    Attributes:
        coordinator: ``HOST:PORT`` of process 0, which every process can reach; empty for one process.
        num_processes: processes in all (one per machine, usually).
        process_id: this process, 0 .. num_processes - 1; 0 is the chief, the only one that writes.
    """

    coordinator: str = ""
    num_processes: int = 1
    process_id: int = 0

    def __post_init__(self) -> None:
        if (isinstance(self.num_processes, bool) or not isinstance(self.num_processes, int)
                or not 1 <= self.num_processes <= MAX_PROCESSES):
            raise ConfigError(f"num_processes must be an integer in 1..{MAX_PROCESSES:,}. "
                              f"Received: {self.num_processes!r}")
        if (isinstance(self.process_id, bool) or not isinstance(self.process_id, int)
                or not 0 <= self.process_id < self.num_processes):
            raise ConfigError(f"process_id must be in 0..{self.num_processes - 1} (num_processes = "
                              f"{self.num_processes}). Received: {self.process_id!r}")
        if self.num_processes > 1 or self.coordinator:
            match = _ADDRESS.match(self.coordinator or "")
            if not match or not 1 <= int(match["port"]) <= 65535:
                raise ConfigError(f"coordinator must be HOST:PORT (process 0's address, port 1-65535) when "
                                  f"num_processes > 1. Received: {self.coordinator!r}")

    @property
    def is_chief(self) -> bool:
        return self.process_id == 0

    @property
    def multi_process(self) -> bool:
        return self.num_processes > 1

    @classmethod
    def from_env(cls, environ=None, coordinator: str | None = None, num_processes: int | None = None,
                 process_id: int | None = None) -> "Cluster":
        """The cluster of the arguments given, else of ``ZSPACE_COORDINATOR``, ``ZSPACE_NUM_PROCESSES``
        and ``ZSPACE_PROCESS_ID`` (so a scheduler such as SLURM or a Kubernetes indexed Job can set them)."""
        environ = os.environ if environ is None else environ

        def number(name: str, given: int | None, default: int) -> int:
            if given is not None:
                return given
            raw = environ.get(name, "").strip()
            if not raw:
                return default
            if not re.fullmatch(r"[0-9]{1,9}", raw):
                raise ConfigError(f"environment variable {name}={raw!r} must be a non-negative integer.")
            return int(raw)

        try:
            return cls(coordinator if coordinator is not None else environ.get("ZSPACE_COORDINATOR", "").strip(),
                       number("ZSPACE_NUM_PROCESSES", num_processes, 1), number("ZSPACE_PROCESS_ID", process_id, 0))
        except ConfigError as exc:
            used = [name for name, given in (("ZSPACE_COORDINATOR", coordinator), ("ZSPACE_NUM_PROCESSES",
                    num_processes), ("ZSPACE_PROCESS_ID", process_id)) if given is None and environ.get(name)]
            if not used:
                raise
            raise ConfigError(f"{exc} (from the environment: {', '.join(used)})") from None


SINGLE_PROCESS = Cluster()


@dataclass(frozen=True)
class BatchShare:
    """One process's rows of a global batch under JAX's DataParallel.

    Keras' JAX trainer lays every batch out like the first, so a batch must divide by the devices. A
    split's last, smaller batch is padded to ``padded`` rows with copies of its first images, which
    weigh 0; the real rows weigh ``padded / real`` (Keras' mask convention), so that every batch mean
    of the loss and the metrics is the mean over the ``real`` images: none is left out of an epoch,
    none counts twice.

    Attributes:
        real: images in the global batch.
        padded: rows fed: ``real`` rounded up to a multiple of the devices.
        part: this process's rows of the padded batch (the processes' parts in process order).
    """

    real: int
    padded: int
    part: slice

    def positions(self) -> np.ndarray:
        """(rows in part,) int: the position in the real batch of each row of this process's part."""
        return (np.arange(self.padded) % self.real)[self.part]

    def weights(self) -> np.ndarray:
        """(rows in part,) float32: each row's sample weight, 0 on padding."""
        whole = np.where(np.arange(self.padded) < self.real, np.float32(self.padded / self.real), np.float32(0))
        return whole.astype(np.float32)[self.part]


@dataclass
class Replicas:
    """The devices a run trains on and how its data reaches them.

    Attributes:
        count: replicas in all (devices over every process); 1 without distribution.
        cluster: this process's place.
        strategy: TensorFlow's MirroredStrategy, or None.
        distribution: the ``keras.distribution`` set for the run (JAX), or None.
    """

    count: int = 1
    cluster: Cluster = SINGLE_PROCESS
    strategy: object = None
    distribution: object = None
    _previous_distribution: object = field(default=None, repr=False)

    @property
    def is_chief(self) -> bool:
        return self.cluster.is_chief

    def scope(self):
        """The context in which the model must be built (TensorFlow: the strategy's scope)."""
        return self.strategy.scope() if self.strategy is not None else contextlib.nullcontext()

    def share(self, rows: int) -> BatchShare | None:
        """This process's part of a global batch of ``rows`` images under JAX's DataParallel; None
        where the batch goes whole to ``fit`` (no distribution, or TensorFlow's strategy, which splits
        batches itself, unevenly if need be)."""
        if self.distribution is None:
            return None
        padded = -(-rows // self.count) * self.count
        per_process = padded // self.cluster.num_processes
        start = self.cluster.process_id * per_process
        return BatchShare(real=rows, padded=padded, part=slice(start, start + per_process))

    def check_batches(self, batch_size: int) -> None:
        """Refuses a global batch that does not divide by the devices."""
        if self.count > 1 and batch_size % self.count:
            raise ConfigError(f"batch_size ({batch_size}) must be a multiple of the {self.count} devices of "
                              f"distribution = \"data_parallel\" (each gets batch_size / {self.count} images).")

    def check_same(self, what: str, text: str) -> None:
        """Refuses a multi-process run whose processes differ in ``what`` (``text`` describes this process's):
        they would wait for each other forever (another batch size, another number of epochs or images).
        A collective: every process calls it at the same point."""
        if not self.cluster.multi_process:
            return
        import hashlib

        from jax.experimental import multihost_utils

        digest = np.frombuffer(hashlib.sha256(text.encode()).digest(), dtype=np.uint8)
        every = np.asarray(multihost_utils.process_allgather(digest))
        differ = [p for p in range(len(every)) if not np.array_equal(every[p], every[0])]
        if differ:
            who = (f"processes {', '.join(map(str, differ))} differ" if len(differ) > 1
                   else f"process {differ[0]} differs")
            raise ConfigError(f"the processes were started with different {what}: {who} from process 0; "
                              f"start all {self.cluster.num_processes} alike.")

    def close(self) -> None:
        """Puts back the Keras distribution that was set before the run."""
        if self.distribution is not None:
            keras.distribution.set_distribution(self._previous_distribution)
            self.distribution = None


def replicas_for(train, cluster: Cluster = SINGLE_PROCESS) -> Replicas:
    """Sets up the devices of a run for its TrainConfig ``train``; call :meth:`Replicas.close` after."""
    backend = keras.backend.backend()
    if cluster.multi_process:
        if backend != "jax":
            raise RunError(f"--num-processes {cluster.num_processes}: several processes train on the JAX backend "
                           f"only (KERAS_BACKEND=jax); Keras 3's fit does not run under TensorFlow's "
                           f"MultiWorkerMirroredStrategy, and PyTorch has no Keras distribution. Received backend: "
                           f"{backend}")
        if train.distribution != "data_parallel":
            raise ConfigError(f"--num-processes {cluster.num_processes} needs distribution = \"data_parallel\". "
                              f"Received: distribution = {train.distribution!r}")
    if train.distribution == "none":
        return Replicas()
    if backend == "tensorflow":
        return _mirrored(train.devices)
    if backend == "jax":
        return _data_parallel(train.devices, cluster)
    raise RunError(f'distribution = "data_parallel" runs on the TensorFlow and JAX backends; Keras has no '
                   f"distribution for {backend}. Received backend: {backend}")


@contextlib.contextmanager
def outside_distribution():
    """Runs the block with no Keras distribution set (JAX's DataParallel), then puts it back.

    For saving: Keras' saving makes a throwaway optimizer, whose variable a multi-process distribution
    would lay out with a collective that only the saving process joins (a hang, then a mismatch). For
    inference on the replicated weights (the z-space monitor, the TensorBoard grids): every process
    computes the same whole batch, as one program over all devices, and gets every row back.
    A no-op without a distribution (TensorFlow's strategy is not one).
    """
    previous = keras.distribution.distribution()
    if previous is None:
        yield
        return
    keras.distribution.set_distribution(None)
    try:
        yield
    finally:
        keras.distribution.set_distribution(previous)


# --- TensorFlow ---------------------------------------------------------------------------------

def _mirrored(devices: int) -> Replicas:
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        n = devices or len(gpus)
        if n > len(gpus):
            raise RunError(f"devices = {n} but TensorFlow sees {len(gpus)} GPUs.")
        names = [f"/gpu:{i}" for i in range(n)]
    else:
        n = devices or 1
        _logical_cpus(tf, n)
        names = [d.name for d in tf.config.list_logical_devices("CPU")][:n]
    if n == 1:
        return Replicas()  # one device: the plain path, without a strategy's overhead
    # One strategy per set of devices for the whole process: each new MirroredStrategy numbers its
    # collectives from the start again, and a later run's collective could meet an earlier one's cached
    # parameters ("Collective instance N expected type ...").
    strategy = _STRATEGIES.get(tuple(names))
    if strategy is None:
        strategy = _STRATEGIES[tuple(names)] = tf.distribute.MirroredStrategy(names)
    return Replicas(count=strategy.num_replicas_in_sync, strategy=strategy)


_STRATEGIES: dict[tuple[str, ...], object] = {}


def _logical_cpus(tf, n: int) -> None:
    """Splits the CPU into ``n`` logical devices, unless TensorFlow already has as many. (Listing the
    logical devices starts TensorFlow, after which they cannot be made: try first, then look.)"""
    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * n)
    except RuntimeError:
        have = len(tf.config.list_logical_devices("CPU"))
        if have >= n:
            return
        raise RunError(f"devices = {n} needs {n} logical CPU devices, but TensorFlow already started with {have}; "
                       f"train in a fresh process (the devices are made before TensorFlow's first operation).") from None


# --- JAX ----------------------------------------------------------------------------------------

def _data_parallel(devices: int, cluster: Cluster) -> Replicas:
    import jax

    if cluster.multi_process:
        _initialize_processes(cluster)
    if devices > 1:
        try:  # only before JAX's first computation; it leaves GPU machines as they are
            jax.config.update("jax_num_cpu_devices", devices)
        except RuntimeError:
            pass
    local = jax.local_devices()
    if cluster.multi_process and jax.device_count() != len(local) * jax.process_count():
        # JAX's multi-process helpers lay the devices out as (processes, devices per process): uneven counts
        # end every process in a reshape error, at the first collective
        raise RunError(f"process {cluster.process_id} has {len(local)} {local[0].platform} devices, but the "
                       f"{jax.process_count()} processes have {jax.device_count()} in all: every process needs the "
                       f"same number of devices (on GPU hosts, make the same count visible, e.g. CUDA_VISIBLE_DEVICES).")
    n = devices or (1 if local[0].platform == "cpu" else len(local))
    if n > len(local):
        raise RunError(f"devices = {n} but JAX has {len(local)} {local[0].platform} devices in this process"
                       + ("; on a CPU, train in a fresh process (the devices are made before JAX's first "
                          "computation)." if local[0].platform == "cpu" else "."))
    if n == 1 and not cluster.multi_process:
        # One device: the plain path. Keras' distributed input skips its one-batch-ahead copy to the GPU:
        # the CelebA VAE on one H100 ran at 0.69x (10,938 against 15,892 images/s).
        return Replicas()
    # The same first n devices of every process, in process order: batch rows follow the process ids.
    chosen = [d for p in range(jax.process_count())
              for d in sorted((x for x in jax.devices() if x.process_index == p), key=lambda x: x.id)[:n]]
    previous = keras.distribution.distribution()
    distribution = keras.distribution.DataParallel(devices=chosen, auto_shard_dataset=False)
    keras.distribution.set_distribution(distribution)
    return Replicas(count=len(chosen), cluster=cluster, distribution=distribution,
                    _previous_distribution=previous)


def _check_port_free(cluster: Cluster) -> None:
    """Process 0 serves the coordinator on every interface at the address's port: refused in one line when
    something else holds it (JAX would end with a traceback: "Failed to start RPC server")."""
    import socket

    port = int(cluster.coordinator.rsplit(":", 1)[1])
    with socket.socket(socket.AF_INET6 if socket.has_ipv6 else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("::" if socket.has_ipv6 else "", port))
        except OSError as exc:
            raise RunError(f"coordinator {cluster.coordinator}: port {port} is in use on this machine "
                           f"({exc.strerror}); process 0 serves the coordinator there: choose a free port.") from None


_initialized: Cluster | None = None


def _initialize_processes(cluster: Cluster) -> None:
    """Joins the other processes (once per process), or exits with one line after the timeout."""
    global _initialized
    import jax

    if _initialized is not None:
        if _initialized != cluster:
            raise RunError(f"this process already joined {_initialized}; a process joins one cluster.")
        return
    timeout = _env_float("ZSPACE_COORDINATOR_TIMEOUT_S", COORDINATOR_TIMEOUT_S)
    heartbeat = _env_float("ZSPACE_HEARTBEAT_TIMEOUT_S", HEARTBEAT_TIMEOUT_S)
    jax.config.update("jax_cpu_collectives_implementation", "gloo")  # CPU collectives across processes
    joined = threading.Event()

    def give_up() -> None:
        # JAX's own timeout aborts the process with a C++ stack trace; this one line comes first.
        if not joined.wait(timeout):
            role = ("waited for the other processes at" if cluster.is_chief
                    else "could not join the coordinator")
            print(f"zspace: error: process {cluster.process_id} of {cluster.num_processes} {role} "
                  f"{cluster.coordinator} for {timeout:g} s (ZSPACE_COORDINATOR_TIMEOUT_S); check the address "
                  f"(process 0's host and a free port), that every process has its own --process-id "
                  f"0..{cluster.num_processes - 1}, and that all {cluster.num_processes} were started.",
                  file=sys.stderr, flush=True)
            os._exit(2)

    if cluster.is_chief:
        _check_port_free(cluster)
    threading.Thread(target=give_up, daemon=True, name="zspace-join-timeout").start()
    jax.distributed.initialize(cluster.coordinator, cluster.num_processes, cluster.process_id,
                               initialization_timeout=int(timeout) + 30,
                               heartbeat_timeout_seconds=max(int(heartbeat), 2))
    joined.set()
    _initialized = cluster
