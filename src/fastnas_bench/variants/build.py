"""The variant pipeline: spec → (train | load) → prune → fine-tune → metrics → cached entry.

Every step uses the libraries' own machinery: Ultralytics' trainer, validator, FLOPs counter and
exporter, and modelopt for the pruning. A pruned network is handed to the trainer as a module so
it is fine-tuned as is; the stock ``YOLO.train()`` would rebuild it from the YAML and silently
drop every weight whose shape changed.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

from fastnas_bench import progress
from fastnas_bench.compat.ultralytics import torch_cpu_threads
from fastnas_bench.errors import BadInputError
from fastnas_bench.host import cpu_threads
from fastnas_bench.methods.base import PruneContext
from fastnas_bench.methods.registry import get_method, get_method_class
from fastnas_bench.variants.cache import ArtifactCache
from fastnas_bench.variants.data import GENERATED_PREFIX, GeneratedDataConfig, generate_dataset, validate_data_yaml
from fastnas_bench.variants.spec import VariantSpec
from fastnas_bench.variants.splits import DataSplits, carve_search_split
from fastnas_bench.variants.variant import MODEL_FILE, Variant
from fastnas_bench.versions import BUILD, versions_of
from fastnas_bench.yolo.models import describe_structure, load_model
from fastnas_bench.yolo.per_image import STATS_FILE
from fastnas_bench.yolo.train import build_log, finetune, save_unfinetuned, train_source, validate

log = logging.getLogger(__name__)


def resolve_data(data: str, cache: ArtifactCache) -> DataSplits:
    """The select/report views of a dataset (see :mod:`fastnas_bench.variants.splits`).

    ``generated`` is written into the cache (one dataset for every build seed: seeds vary training,
    not the images a drop is measured on); a local YAML is validated; names without a path that
    Ultralytics knows (``coco128.yaml``) are resolved, and when online downloaded, by Ultralytics.

    Raises:
        BadInputError: for a bad path or a dataset Ultralytics cannot resolve (offline, say).
    """
    if data == GENERATED_PREFIX:
        yaml_path: Path | str = generate_dataset(cache.root / "datasets", GeneratedDataConfig())
    else:
        path = Path(data).expanduser()
        if path.suffix not in {".yaml", ".yml"}:
            raise BadInputError(f"data {data!r} must be a dataset YAML or {GENERATED_PREFIX!r}")
        yaml_path = validate_data_yaml(path) if path.parent != Path(".") or path.exists() else data
    from ultralytics.data.utils import check_det_dataset

    try:
        dataset = check_det_dataset(str(yaml_path))
    except Exception as e:  # noqa: BLE001 - Ultralytics raises FileNotFoundError, ConnectionError, SyntaxError, ...
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise BadInputError(f"dataset {data!r} is not available: {first_line}") from None
    return carve_search_split(dataset, cache.root / "datasets")


def _prune_context(
    spec: VariantSpec, data: Path, device: str, source: Variant, match: float | None, cache: ArtifactCache, work: Path
) -> PruneContext:
    return PruneContext(
        spec=spec, data_yaml=data, device=device, work_dir=work, match_flops_ratio=match,
        cache_root=cache.root, source_sha256=source.meta["files"][MODEL_FILE],
    )


def build_variant(
    spec: VariantSpec, cache: ArtifactCache, device: str = "cpu", *, rebuild: bool = False
) -> Variant:
    """Build (or read from cache) the variant described by ``spec``.

    Any variant other than the source first builds the source (also cached); a pruned variant
    prunes a copy of it, and every such variant is then fine-tuned ``finetune_epochs``.

    Args:
        spec: The variant to build.
        cache: Artifact cache holding the entry.
        device: ``cpu`` or ``cuda[:N]``.
        rebuild: Rebuild this entry even if cached (``--rebuild-variants``). Only this entry: a
            caller that wants a fresh source too rebuilds it first.
    """
    splits = resolve_data(spec.data, cache)
    # Every accuracy-driven choice (best epoch, FastNAS widths) sees the search split only.
    data = splits.select_yaml
    is_source = spec == spec.source()
    source = None if is_source else build_variant(spec.source(), cache, device)
    # Rivals are compared with FastNAS at equal FLOPs: they aim at the ratio FastNAS reached (under
    # a latency budget every method aims at the measured latency instead).
    match = None
    if spec.method != "baseline" and spec.latency is None and get_method_class(spec.method).matches_fastnas_flops:
        match = build_variant(replace(spec, method="fastnas"), cache, device).meta["flops_ratio"]

    def builder(tmp: Path) -> dict[str, Any]:
        meta: dict[str, Any] = {
            "spec": spec.to_dict(),
            "versions": versions_of(BUILD),
            "device": device,
            "splits": {"train_images": splits.train_images, "search_images": splits.search_images,
                       "val_images": splits.val_images},
        }
        # Every core for Ultralytics' training, validation and FastNAS's score calls (it would take one
        # fewer: on a 2-core machine half of it).
        with build_log(tmp / "logs" / "build.log"), torch_cpu_threads(cpu_threads()):
            progress.report(f"building {spec.name} ({key}); cached after this run")
            if source is None:
                best = train_source(spec, data, device, tmp / "train")
            else:
                model = load_model(source.weights)
                constrain = None
                if spec.method != "baseline":
                    method = get_method(spec.method)
                    ctx = _prune_context(spec, data, device, source, match, cache, tmp / "work")
                    model = method.prune(model, ctx)  # type: ignore[arg-type]
                    constrain = method.constrain
                    meta["pruned_before_finetune"] = describe_structure(model)
                    meta["prune_notes"] = method.notes
                    if match is not None:
                        meta["matched_flops_ratio"] = match
                # No fine-tune (a damaged variant a test builds): the pruned network as it is.
                best = (finetune(model, spec, data, device, tmp / "train", constrain) if spec.finetune_epochs else
                        save_unfinetuned(model, source.weights, tmp / "unfinetuned.pt"))
            shutil.copyfile(best, tmp / MODEL_FILE)
            meta.update(describe_structure(load_model(tmp / MODEL_FILE)))
            progress.report(f"{spec.name}: validating on the held-out val split ({splits.val_images} images)")
            meta.update(validate(tmp / MODEL_FILE, spec, splits.report_yaml, device, tmp / "val", tmp / STATS_FILE))
            if source is not None:
                meta["flops_ratio"] = round(meta["gflops"] / source.gflops, 4)
                meta["source_key"] = source.meta["key"]
                meta["source_sha256"] = source.meta["files"][MODEL_FILE]
        # Keep logs and the training curve; drop the trainer's duplicate weights.
        for scratch in ("train/weights", "work", "val"):
            shutil.rmtree(tmp / scratch, ignore_errors=True)
        return meta

    key = spec.key()
    meta = cache.get_or_build(key, builder, rebuild=rebuild)
    reason = stale_reason(meta, source, match)
    if reason:
        log.warning("rebuilding %s: %s", key, reason)
        meta = cache.get_or_build(key, builder, rebuild=True)
    return Variant(spec=spec, path=cache.path(key), meta=meta)


def stale_reason(meta: dict[str, Any], source: Variant | None, match: float | None) -> str | None:
    """Why a cached entry no longer follows from its inputs, or ``None``.

    A key hashes the spec, not the builds it derives from: a rebuilt source, or a FastNAS sibling
    that now reaches another FLOPs ratio, must not leave a pruned entry or a rival built from
    the old one in place.
    """
    if match is not None and meta.get("matched_flops_ratio") != match:
        return f"built to match FLOPs ratio {meta.get('matched_flops_ratio')}, FastNAS now reaches {match}"
    built_from = meta.get("source_sha256")
    if source is not None and built_from is not None and built_from != source.meta["files"][MODEL_FILE]:
        return f"built from source model {built_from[:12]}, the cached source is now {source.meta['files'][MODEL_FILE][:12]}"
    return None
