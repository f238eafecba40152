"""Training throughput of zspace against the peer stacks, side by side in one run.

Stacks, alternated round by round (A B C A B C ...), each round a fresh stretch of training
steps on the same synthetic data, timed after its first two steps (steady state). Each stack
lives in its own worker process, idle (blocked on a pipe) while the others run: sharing one
process with TensorFlow's thread pools slowed PyTorch by a third here.

- zspace: its default path (``Autoencoder`` + ``fit`` on ``EpochBatches``, the callbacks
  ``zspace.train`` uses per batch);
- keras-docs: the Keras documentation's VAE (custom train_step under tf.GradientTape);
- torch: plain PyTorch 2.13 CPU loop of the same net;
- zspace-bf16: zspace with the opt-in ``precision = "mixed_bfloat16"`` (shown apart: it changes
  the numbers, so it is not the default path the ratio is computed on).

For the reference Fashion-MNIST VAE (Conv2D 32/64/64/64, strides 1/2/2/1, z_dim 16) and the
reference CelebA VAE (96x96x3, Conv2D 32/64/128/256, stride 2, z_dim 256), batch 128, Adam 1e-3,
BCE summed per image + KL. Prints medians, the median of the per-round ratios, training
FLOPs per image, and the fraction of this machine's measured float32 GEMM rate achieved.
The last line is ``ratio_vs_best_peer=R``: zspace over the fastest peer, the lower of the two
architectures.

    python benchmarks/train_throughput.py --quick   # a few minutes
    python benchmarks/train_throughput.py           # more rounds and steps
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from common import CELEBA_VAE, FASHION_VAE, step_timer  # noqa: E402
from peers import gemm_gflops, keras_docs_vae, torch_vae, training_flops_per_image  # noqa: E402

BATCH = 128
WARM_STEPS = 2


def zspace_stack(config, images, steps, precision="float32"):
    from zspace.config import RunConfig, TrainConfig
    from zspace.training.callbacks import NonFiniteGuard
    from zspace.training.run import input_batches, new_model

    run_config = RunConfig(config, TrainConfig(batch_size=BATCH, precision=precision))
    model = new_model(run_config, steps)  # compiled exactly as zspace.train compiles it
    epoch = [0]

    def run():
        timer = step_timer(BATCH)
        batches = input_batches(images, run_config.train, seed=0, start_epoch=epoch[0], end_epoch=epoch[0] + 1)
        model.fit(batches, steps_per_epoch=steps, epochs=epoch[0] + 1, initial_epoch=epoch[0], shuffle=False,
                  callbacks=[NonFiniteGuard(), timer], verbose=0)
        epoch[0] += 1
        return timer.rate()

    return run


def keras_docs_stack(config, images, steps):
    import keras

    keras.utils.set_random_seed(0)
    vae = keras_docs_vae(config)
    x = images[: steps * BATCH]

    def run():
        timer = step_timer(BATCH)
        vae.fit(x, epochs=1, batch_size=BATCH, shuffle=True, callbacks=[timer], verbose=0)
        return timer.rate()

    return run


def torch_stack(config, images, steps):
    import torch

    torch.manual_seed(0)
    model, _, train_step = torch_vae(config)
    data = torch.from_numpy(np.ascontiguousarray(images[: steps * BATCH].transpose(0, 3, 1, 2)))

    def run():
        order = torch.randperm(len(data))
        for step in range(steps):
            if step == WARM_STEPS:
                start = time.perf_counter()
            train_step(data[order[step * BATCH:(step + 1) * BATCH]])
        return (steps - WARM_STEPS) * BATCH / (time.perf_counter() - start)

    return run


STACKS = {
    "zspace": zspace_stack,
    "keras-docs": keras_docs_stack,
    "torch": torch_stack,
    # not the default path: opt-in precision = "mixed_bfloat16" (other numbers than float32)
    "zspace-bf16": lambda config, images, steps: zspace_stack(config, images, steps, "mixed_bfloat16"),
}
PEERS = ("keras-docs", "torch")


def worker(stack: str, arch: str, steps: int) -> None:
    """Builds one stack, then runs a timed round for every "run" line on stdin."""
    from zspace.config import ModelConfig

    config = ModelConfig(**{"fashion": FASHION_VAE, "celeba": CELEBA_VAE}[arch])
    images = np.random.default_rng(0).random((steps * BATCH, *config.input_shape), dtype=np.float32)
    run = STACKS[stack](config, images, steps)
    run()  # compile / first-call costs outside the timed rounds
    print("ready", flush=True)
    for line in sys.stdin:
        if line.strip() != "run":
            break
        print(f"{run():.3f}", flush=True)


def measure(arch, steps, rounds):
    """{stack: [img/s per round]} with the stacks' worker processes alternated round by round."""
    import subprocess

    workers = {}
    for stack in STACKS:
        workers[stack] = subprocess.Popen(
            [sys.executable, __file__, "--worker", stack, "--arch", arch, "--steps", str(steps)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert workers[stack].stdout.readline().strip() == "ready", f"{stack} worker failed"
    rates = {s: [] for s in STACKS}
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
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--arch", choices=["fashion", "celeba", "both"], default="both")
    parser.add_argument("--worker", choices=list(STACKS), help=argparse.SUPPRESS)
    parser.add_argument("--steps", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args.worker, args.arch, args.steps)
    from zspace.config import ModelConfig

    import keras
    import torch

    # steps per round: multiples of 8 so that zspace runs 8 steps per compiled call, as on a real epoch
    plan = {"fashion": (FASHION_VAE, 32 if args.quick else 80), "celeba": (CELEBA_VAE, 16 if args.quick else 40)}
    rounds = 3 if args.quick else 7
    gemm = gemm_gflops()
    print(f"{os.cpu_count()} cores; keras {keras.__version__} on {keras.backend.backend()}, torch {torch.__version__}; "
          f"numpy float32 GEMM {gemm:.0f} GFLOP/s; batch {BATCH}; {rounds} alternated rounds")
    worst = worst_bf16 = None
    for arch in (["fashion", "celeba"] if args.arch == "both" else [args.arch]):
        spec, steps = plan[arch]
        config = ModelConfig(**spec)
        rates = measure(arch, steps, rounds)
        flops = training_flops_per_image(config)
        print(f"\n{arch} VAE {config.input_shape}, z_dim {config.z_dim}: {flops / 1e6:.0f} MFLOP per training image, "
              f"{steps} steps per round")
        for stack, values in rates.items():
            median = float(np.median(values))
            print(f"  {stack:<11} median {median:7.0f} img/s  [{', '.join(f'{v:.0f}' for v in values)}]  "
                  f"{100 * median * flops / (gemm * 1e9):5.1f}% of GEMM rate")
        ratios = {peer: float(np.median(np.array(rates["zspace"]) / np.array(rates[peer]))) for peer in PEERS}
        best_peer = max(PEERS, key=lambda p: np.median(rates[p]))
        bf16 = float(np.median(np.array(rates["zspace-bf16"]) / np.array(rates[best_peer])))
        print("  " + ", ".join(f"zspace / {p} = {r:.2f}" for p, r in ratios.items())
              + f"  (fastest peer: {best_peer}); zspace-bf16 / {best_peer} = {bf16:.2f}")
        worst = ratios[best_peer] if worst is None else min(worst, ratios[best_peer])
        worst_bf16 = bf16 if worst_bf16 is None else min(worst_bf16, bf16)
    print(f"\nbf16_ratio_vs_best_peer={worst_bf16:.2f}  (opt-in precision, not the default path)")
    print(f"ratio_vs_best_peer={worst:.2f}")


if __name__ == "__main__":
    main()
