"""What ``precision = "auto"`` means on this machine.

``"auto"`` picks "mixed_float16" (with Keras' loss scaling) where the backend sees a GPU,
"mixed_bfloat16" on CPUs with native bfloat16 arithmetic (AVX512-BF16; AMX-BF16 CPUs have it
too), and "float32" otherwise. On the measured runs (3 seeds each, Fashion-MNIST and the CelebA
net) bfloat16's final losses and z-space statistics stayed inside the seed-to-seed spread; paired by
seed, its validation loss ended 0.2-0.4% higher (benchmarks/README.md, `precision.py`).
It is resolved on every start: a run resumed on another machine may train on with another one.
"""

from __future__ import annotations

from pathlib import Path

import keras

__all__ = ["cpu_has_native_bf16", "backend_sees_a_gpu", "resolve_precision"]

# The CPU flag of native bfloat16 dot products (Linux /proc/cpuinfo), which oneDNN uses for mixed_bfloat16.
NATIVE_BF16_FLAG = "avx512_bf16"
# /proc/cpuinfo is a few kB per core: read at most this much of it.
_CPUINFO_BYTES = 1 << 20


def cpu_has_native_bf16(cpuinfo: str | None = None) -> bool:
    """Whether the CPU has native bfloat16 arithmetic (``cpuinfo``: the text of /proc/cpuinfo;
    None reads it; False where there is none, as on macOS or Windows)."""
    if cpuinfo is None:
        try:
            with open(Path("/proc/cpuinfo"), encoding="utf-8", errors="replace") as f:
                cpuinfo = f.read(_CPUINFO_BYTES)
        except OSError:
            return False
    return any(line.split(":", 1)[0].strip() == "flags" and NATIVE_BF16_FLAG in line.split(":", 1)[-1].split()
               for line in cpuinfo.splitlines())


def backend_sees_a_gpu() -> bool:
    """Whether Keras' backend would run on a GPU."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return bool(tf.config.list_physical_devices("GPU"))
    if backend == "jax":
        import jax

        return jax.default_backend() == "gpu"
    if backend == "torch":
        import torch

        return torch.cuda.is_available()
    return False


def resolve_precision(precision: str, gpu: bool | None = None, native_bf16: bool | None = None) -> str:
    """The Keras dtype policy for the config's ``precision``: itself, or what "auto" means here
    (``gpu`` / ``native_bf16``: what this machine has; None asks it)."""
    if precision != "auto":
        return precision
    if gpu if gpu is not None else backend_sees_a_gpu():
        return "mixed_float16"
    return "mixed_bfloat16" if (native_bf16 if native_bf16 is not None else cpu_has_native_bf16()) else "float32"
