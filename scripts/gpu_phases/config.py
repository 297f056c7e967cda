"""The GPU check's sizes and constants: the phases in priority order, their shares of the
budget, and the two configurations (FULL on a CUDA machine, SMOKE at toy size on the CPU)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent.parent
ENTRY = REPO_ROOT / "scripts" / "gpu_check.py"  # what the children run (--phase, --bench)
PHASES = ["environment", "throughput", "data", "runs_per_gpu", "precision", "hrnet_fold"]
NEEDS_DATA = {"runs_per_gpu", "precision", "hrnet_fold"}
PARAMS = REPO_ROOT / "params" / "3a_302_cls3_normM.yaml"
RESERVE_S = 5.0  # kept back from every timeout: killing a phase and writing the summary
KILL_GRACE_S = 5.0
DEFAULT_BUDGET_S = 480.0
# The most of the budget a phase plans for beyond its least useful work; what it leaves
# unused goes to the next phases, and the last one takes what is left.
SHARES = dict(environment=0.1, throughput=0.3, data=0.15, runs_per_gpu=0.35, precision=0.25,
              hrnet_fold=1.0)


@dataclass(frozen=True)
class Config:
    """Sizes of one check. FULL is the CUDA machine's; SMOKE the same phases at toy size on
    the CPU. The *_s fields are the estimates used before anything was measured (seconds)."""

    smoke: bool
    device: str
    m_bins: int = 256
    t_bins: int = 192
    tta_offsets: tuple[int, ...] = (-64, -32, 0, 32, 64)
    batch_size: int = 8
    # throughput: (backbone, amp + channels_last, compile) in priority order
    bench: tuple[tuple[str, bool, bool], ...] = ()
    bench_samples: int = 512
    compile_backend: str = "inductor"
    # data: a synthetic profile (name, or counts and scan settings of one made here)
    profile: str = "tiny"
    profile_sizes: dict = field(default_factory=dict)
    # runs per GPU
    sweep_backbone: str = "resnet34"
    sweep_epochs: int = 2
    runs_per_gpu: tuple[int, ...] = (1, 2, 4, 8)
    # precision and the long fold
    precision_backbone: str = "resnet34"
    precision_epochs: tuple[int, int] = (2, 6)  # fewest, most
    fold_backbone: str = "hrnet_w64"
    fold_epochs: tuple[int, int] = (1, 20)
    # estimates before measurements
    process_start_s: float = 12.0  # python + torch + timm + CUDA context
    compile_s: dict = field(default_factory=dict)
    epoch_s: dict = field(default_factory=dict)
    run_overhead_s: float = 30.0  # papermill run beyond its epochs: kernel, data, model, test
    cluster_s: float = 10.0
    sharing_slowdown: float = 0.15  # each run beside the first slows a shared device by this
    data_s: float = 40.0
    environment_s: float = 20.0


FULL = Config(
    smoke=False, device="cuda",
    bench=(("resnet34", True, False), ("resnet34", False, False), ("hrnet_w64", True, False),
           ("hrnet_w64", False, False), ("resnet34", True, True), ("hrnet_w64", True, True),
           ("resnet34", False, True), ("hrnet_w64", False, True)),
    profile="gpu_check_counts",
    # the real data's sample counts; coarse scans (0.5 min, at least 192) and masses to 250
    profile_sizes=dict(n_train=809, n_val=312, n_test=463, scan_interval_min=0.5,
                       max_mass=250, min_scans=192),
    compile_s={"resnet34": 60.0, "hrnet_w64": 180.0},
    epoch_s={"resnet34": 5.0, "hrnet_w64": 15.0},
)
SMOKE = Config(
    smoke=True, device="cpu", m_bins=64, t_bins=96, tta_offsets=(-32, 0, 32), batch_size=4,
    bench=(("mobilenetv3_small_100", True, False), ("mobilenetv3_small_100", False, False),
           ("resnet18", True, False), ("mobilenetv3_small_100", True, True)),
    bench_samples=16, compile_backend="eager", profile="tiny",
    sweep_backbone="resnet18", sweep_epochs=1, runs_per_gpu=(1, 2),
    precision_backbone="resnet18", precision_epochs=(1, 1),
    fold_backbone="mobilenetv3_small_100", fold_epochs=(1, 1),
    process_start_s=5.0, compile_s={"mobilenetv3_small_100": 10.0}, epoch_s={},
    run_overhead_s=15.0, cluster_s=5.0, sharing_slowdown=0.5, data_s=5.0,
    environment_s=5.0,
)
