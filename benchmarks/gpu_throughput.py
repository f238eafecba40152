"""Training throughput on one CUDA GPU: zspace on Keras' JAX and PyTorch backends, in float32
and mixed precision, beside a plain PyTorch loop of the same net (float32 and bf16 autocast).

The GPU counterpart of train_throughput.py (same reference nets, same alternated rounds, each
stack in its own worker process because the Keras backend is fixed per process). A round is
one ``fit`` (or loop) of ``--steps`` steps, timed as a whole after a device synchronisation,
so asynchronous dispatch cannot flatter a stack. zspace runs its default path: the model
compiled by ``new_model``, batches from ``input_batches`` and the ``NonFiniteGuard`` callback,
as ``zspace.train`` runs them. Needs an NVIDIA GPU with JAX and/or PyTorch built for CUDA;
CI never runs it (no GPU there).

    KERAS_BACKEND is ignored: each worker sets its own.
    python benchmarks/gpu_throughput.py [--arch fashion|celeba|both] [--batch 128] [--steps 100] [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import numpy as np  # noqa: E402
from common import CELEBA_VAE, FASHION_VAE  # noqa: E402

# name: (Keras backend of the worker, zspace precision or plain-torch autocast dtype)
STACKS = {
    "zspace-jax": ("jax", "float32"),
    "zspace-jax-bf16": ("jax", "mixed_bfloat16"),
    "zspace-jax-fp16": ("jax", "mixed_float16"),
    "zspace-torch": ("torch", "float32"),
    "zspace-torch-bf16": ("torch", "mixed_bfloat16"),
    "torch": ("torch", "float32"),
    "torch-bf16": ("torch", "bfloat16"),
}
FLOAT32 = ("zspace-jax", "zspace-torch", "torch")


def zspace_stack(config, images, steps, batch, precision):
    from zspace.config import RunConfig, TrainConfig
    from zspace.training.callbacks import NonFiniteGuard
    from zspace.training.run import input_batches, new_model

    run_config = RunConfig(config, TrainConfig(batch_size=batch, precision=precision))
    model = new_model(run_config, steps)
    epoch = [0]

    def run():
        batches = input_batches(images, run_config.train, seed=0, start_epoch=epoch[0], end_epoch=epoch[0] + 1)
        start = time.perf_counter()
        history = model.fit(batches, steps_per_epoch=steps, epochs=epoch[0] + 1, initial_epoch=epoch[0],
                            shuffle=False, callbacks=[NonFiniteGuard()], verbose=0)
        float(history.history["loss"][-1])  # logs are host values once fit returns
        epoch[0] += 1
        assert np.isfinite(history.history["loss"][-1])
        return steps * batch / (time.perf_counter() - start)

    return run


def torch_stack(config, images, steps, batch, dtype):
    import torch

    from peers import torch_vae

    torch.manual_seed(0)
    model, _, train_step = torch_vae(config)
    model.to("cuda")  # moves the parameters in place: the optimizer keeps them
    data = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2))).to("cuda")
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=dtype == "bfloat16")

    def run():
        order = torch.randperm(len(data), device="cuda")
        torch.cuda.synchronize()
        start = time.perf_counter()
        for step in range(steps):
            with autocast:
                loss = train_step(data[order[step * batch:(step + 1) * batch]])
        torch.cuda.synchronize()
        assert torch.isfinite(loss)
        return steps * batch / (time.perf_counter() - start)

    return run


def worker(stack: str, arch: str, steps: int, batch: int) -> None:
    from zspace.config import ModelConfig

    config = ModelConfig(**{"fashion": FASHION_VAE, "celeba": CELEBA_VAE}[arch])
    images = np.random.default_rng(0).random((steps * batch, *config.input_shape), dtype=np.float32)
    setting = STACKS[stack][1]
    if stack.startswith("zspace"):
        run = zspace_stack(config, images, steps, batch, setting)
    else:
        run = torch_stack(config, images, steps, batch, setting)
    run()  # compilation and first-call costs stay out of the rounds
    print("ready", flush=True)
    for line in sys.stdin:
        if line.strip() != "run":
            break
        print(f"{run():.3f}", flush=True)


def measure(arch, steps, batch, rounds):
    workers = {}
    for stack, (backend, _) in STACKS.items():
        env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3",
               "XLA_PYTHON_CLIENT_PREALLOCATE": "false"}  # two JAX workers share the GPU
        process = subprocess.Popen(
            [sys.executable, __file__, "--worker", stack, "--arch", arch, "--steps", str(steps),
             "--batch", str(batch)], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        if process.stdout.readline().strip() != "ready":
            print(f"  {stack}: worker failed (its stderr is above); left out", flush=True)
            continue
        workers[stack] = process
    rates = {stack: [] for stack in workers}
    try:
        for _ in range(rounds):
            for stack, process in workers.items():
                process.stdin.write("run\n")
                process.stdin.flush()
                rates[stack].append(float(process.stdout.readline()))
    finally:
        for process in workers.values():
            process.stdin.close()
            process.wait()
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", choices=["fashion", "celeba", "both"], default="both")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--worker", choices=list(STACKS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args.worker, args.arch, args.steps, args.batch)
    import torch

    print(f"{torch.cuda.get_device_name()}; torch {torch.__version__}; batch {args.batch}, {args.steps} steps per "
          f"round, {args.rounds} alternated rounds", flush=True)
    for arch in (["fashion", "celeba"] if args.arch == "both" else [args.arch]):
        rates = measure(arch, args.steps, args.batch, args.rounds)
        print(f"\n{arch} VAE", flush=True)
        best = max((s for s in FLOAT32 if s in rates and not s.startswith("zspace")),
                   key=lambda s: np.median(rates[s]), default=None)
        for stack, values in rates.items():
            ratio = f"x{np.median(np.array(values) / np.array(rates[best])):.2f} of {best}" if best else ""
            print(f"  {stack:<18} median {np.median(values):8.0f} img/s  {ratio:<18} "
                  f"[{', '.join(f'{v:.0f}' for v in values)}]", flush=True)


if __name__ == "__main__":
    main()
