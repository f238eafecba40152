"""Data-parallel training on 1, 2, ... devices: images per second, speed-up and scaling efficiency.

Each device count trains in its own fresh worker process (logical CPU devices, on a machine
without GPUs, can only be made before the backend's first operation), on zspace's real training
path: the reference config's model built and compiled by ``new_model(config, steps,
replicas_for(config.train))`` and fed by ``input_batches`` (tf.data on TensorFlow, EpochBatches
with the replicas' share on JAX), as ``zspace.train`` does. 1 device is the plain path
(``distribution = "none"``); N > 1 is ``distribution = "data_parallel"``, ``devices = N``
(TensorFlow: MirroredStrategy, JAX: keras.distribution.DataParallel). ``--batch-size`` is the
global batch: each device computes batch / N images per step.

Synthetic random images in [0, 1], ``steps x batch`` of them, one epoch per round. Every worker
first fits one untimed round (tracing, compilation), then the workers' rounds alternate
(1 2 ... 1 2 ...), each timed after its first batch-end callback (steady state, as in
train_throughput.py). Per count: median img/s, speed-up over 1 device, efficiency = speed-up / N.

Correctness in the same run: all workers see the same seed and the same batches, so the mean
training loss of the last round must agree with 1 device's within 1e-4 relative.

On a CPU the logical devices share the machine's cores: the efficiency measures the overhead of
the distributed path, not a scaling figure. The last line is ``scaling_efficiency_N=E`` for the
largest count N.

    python benchmarks/scaling.py --arch fashion --steps 16 --rounds 3   # a smoke test, about a minute
    python benchmarks/scaling.py                                        # CelebA VAE, TensorFlow, 1 and 2 devices: ~4 min
    python benchmarks/scaling.py --backend jax --steps 16 --rounds 3     # about 9 minutes here
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

CONFIGS = {"celeba": ROOT / "configs" / "celeba-vae-kl5.toml", "fashion": ROOT / "configs" / "fashion-vae.toml"}
TOLERANCE = 1e-4  # relative, loss of N devices against 1


def run_config(arch: str, devices: int, batch_size: int):
    from zspace.config import RunConfig

    distributed = {"distribution": "data_parallel", "devices": devices} if devices > 1 else {}
    return RunConfig.load(CONFIGS[arch]).with_overrides(
        {"batch_size": batch_size, "monitor_images": 0, "verbose": 0, "seed": 0, **distributed})


def worker(arch: str, devices: int, steps: int, batch_size: int) -> None:
    """Builds the model on ``devices`` devices, fits one untimed round, then a timed round for every
    "run" line on stdin, answering "img/s loss" (loss: the round's mean training total_loss)."""
    from common import step_timer

    config = run_config(arch, devices, batch_size)  # before the backend's first operation
    from zspace.training.callbacks import NonFiniteGuard
    from zspace.training.distribute import replicas_for
    from zspace.training.run import input_batches, new_model

    replicas = replicas_for(config.train)
    assert replicas.count == devices, (replicas.count, devices)
    replicas.check_batches(batch_size)
    model = new_model(config, steps, replicas)
    images = np.random.default_rng(0).random((steps * batch_size, *config.model.input_shape), dtype=np.float32)
    share = replicas.share if replicas.distribution is not None else None
    epoch = [0]

    def run():
        timer = step_timer(batch_size)
        batches = input_batches(images, config.train, seed=0, start_epoch=epoch[0], end_epoch=epoch[0] + 1,
                                share=share)
        history = model.fit(batches, steps_per_epoch=steps, epochs=epoch[0] + 1, initial_epoch=epoch[0],
                            shuffle=False, callbacks=[NonFiniteGuard(), timer], verbose=0)
        epoch[0] += 1
        if len(timer.marks) < 2:
            raise SystemExit(f"--steps {steps} gives a single compiled call of {model.steps_per_execution} steps: "
                             f"nothing to time; give at least twice as many steps")
        return timer.rate(), float(history.history["total_loss"][-1])

    run()  # tracing / compilation outside the timed rounds
    print(f"ready {model.steps_per_execution}", flush=True)
    for line in sys.stdin:
        if line.strip() != "run":
            break
        rate, loss = run()
        print(f"{rate:.3f} {loss!r}", flush=True)
    replicas.close()


def measure(backend: str, arch: str, counts: list[int], steps: int, rounds: int, batch_size: int):
    """{count: ([img/s per round], [loss per round], steps per execution)}, rounds alternated over the workers."""
    env = {**os.environ, "KERAS_BACKEND": backend, "PYTHONPATH": os.pathsep.join(
        p for p in (str(ROOT / "src"), os.environ.get("PYTHONPATH", "")) if p)}
    workers, spe, logs = {}, {}, {}

    def failed(n):
        workers[n].kill()
        logs[n].seek(0)
        return SystemExit(f"worker for {n} devices failed:\n{logs[n].read()[-3000:]}")

    try:
        for n in counts:  # one at a time: each compiles alone
            logs[n] = tempfile.TemporaryFile("w+")  # not a pipe: a chatty worker must not block on it
            workers[n] = subprocess.Popen(
                [sys.executable, __file__, "--worker", str(n), "--backend", backend, "--arch", arch,
                 "--steps", str(steps), "--batch-size", str(batch_size)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=logs[n], text=True, env=env)
            ready = workers[n].stdout.readline().split()
            if not ready or ready[0] != "ready":
                raise failed(n)
            spe[n] = ready[1]
        results = {n: ([], []) for n in counts}
        for _ in range(rounds):
            for n, process in workers.items():
                process.stdin.write("run\n")
                process.stdin.flush()
                answer = process.stdout.readline().split()
                if len(answer) != 2:
                    raise failed(n)
                rate, loss = answer
                results[n][0].append(float(rate))
                results[n][1].append(float(loss))
    finally:
        for process in workers.values():
            if process.poll() is None:
                process.stdin.close()
                process.wait()
        for log in logs.values():
            log.close()
    return {n: (*results[n], spe[n]) for n in counts}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, nargs="+", default=[1, 2], help="device counts (1 is always run)")
    parser.add_argument("--backend", choices=["tensorflow", "jax"], default="tensorflow")
    parser.add_argument("--arch", choices=list(CONFIGS), default="celeba")
    parser.add_argument("--steps", type=int, default=24, help="training steps per round (one epoch)")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds per device count")
    parser.add_argument("--batch-size", type=int, default=128, help="global batch")
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args.arch, args.worker, args.steps, args.batch_size)
    counts = sorted({1, *args.devices})
    if any(n < 1 or args.batch_size % n for n in counts):
        parser.error(f"device counts must be positive and divide --batch-size {args.batch_size}: {counts}")
    if args.steps < 3:
        parser.error("--steps must be at least 3 (the first batch-end callback starts the clock)")

    config = run_config(args.arch, 1, args.batch_size).model
    print(f"{os.cpu_count()} cores; backend {args.backend}; {args.arch} VAE {tuple(config.input_shape)}, z_dim "
          f"{config.z_dim}; global batch {args.batch_size}; {args.steps} steps per round, {args.rounds} alternated "
          f"rounds after 1 untimed round; 1 device = distribution \"none\", N > 1 = \"data_parallel\"")
    results = measure(args.backend, args.arch, counts, args.steps, args.rounds, args.batch_size)
    base_rate = float(np.median(results[1][0]))
    base_loss = results[1][1][-1]
    print("\n| devices | steps/execution | median img/s | rounds (img/s) | speed-up | efficiency | "
          "final loss | rel. diff vs 1 |")
    print("|---:|---:|---:|---|---:|---:|---:|---:|")
    efficiency, failed = {}, []
    for n in counts:
        rates, losses, spe = results[n]
        median = float(np.median(rates))
        speedup = median / base_rate
        efficiency[n] = speedup / n
        diff = abs(losses[-1] - base_loss) / abs(base_loss)
        if diff > TOLERANCE:
            failed.append(n)
        print(f"| {n} | {spe} | {median:,.0f} | {', '.join(f'{r:.0f}' for r in rates)} | {speedup:.2f} | "
              f"{efficiency[n]:.2f} | {losses[-1]:.6f} | {diff:.1e} |")
    print(f"\nloss after {args.rounds + 1} rounds, N devices vs 1 within {TOLERANCE:g} relative: "
          + ("ok" if not failed else f"FAILED for {failed}"))
    largest = counts[-1]
    print(f"scaling_efficiency_{largest}={efficiency[largest]:.2f}")
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
