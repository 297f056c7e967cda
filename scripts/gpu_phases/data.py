"""Phase 3, data: a synthetic competition folder in WORK with the real data's sample counts
but coarse scans (seconds to make, not the 20 GB of the full profile), its image cache at the
check's image size and its folds; the later phases train on it."""

from __future__ import annotations

import os
import time

from .common import data_dir


def phase_data(config, summary, work, deadline, end, record) -> None:
    from lib.core.paths import dataset_work_dir
    from lib.data.dataset import load_competition
    from lib.data.folds import load_or_make_folds
    from lib.data.images import build_image_cache, cache_path
    from lib.synthetic import generate
    from lib.synthetic.profiles import Profile

    # a profile of this check's own sizes, or a named one
    profile = Profile(**config.profile_sizes) if config.profile_sizes else config.profile
    folder = data_dir(config, work)
    workers = 1 if config.smoke else (os.cpu_count() or 1)
    started = time.time()
    generate(folder, profile=profile, seed=0, workers=workers)
    record.update(profile=config.profile, generate_s=round(time.time() - started, 1),
                  size_mib=round(sum(p.stat().st_size for p in folder.rglob("*.csv")) / 2**20))
    started = time.time()
    data = load_competition(folder)
    work_dir = dataset_work_dir(work / "cache", folder)
    cache = build_image_cache(data.metadata, cache_path(work_dir, config.m_bins, config.t_bins),
                              m_bins=config.m_bins, t_bins=config.t_bins, workers=workers,
                              progress=False)
    folds = load_or_make_folds(work_dir, data.train_labels)
    n_oof = int((folds["fold"] == 0).sum())
    record.update(cache_s=round(time.time() - started, 1), images=list(cache["images"].shape),
                  splits=data.metadata["split"].value_counts().to_dict(),
                  fold_train_samples=len(data.split_ids("train")) - n_oof
                  + len(data.split_ids("val")), fold_oof_samples=n_oof,
                  fold_test_samples=len(data.split_ids("val", "test")))
