"""``hub extract``: features of image files, folders or text files, written to one file.

Inputs: for an image backbone, image files and folders (searched recursively for
image suffixes, in sorted order); for a text backbone, text files with one text
per line (blank lines skipped), folders of ``*.txt`` files, or ``-`` for stdin.
Each input is named: the image path, or ``FILE:LINE`` for a text.

Outputs:

* ``.safetensors``: ``pooled`` (N, D), ``stages.<name>`` for each requested stage,
  ``prefix.<name>`` for token models, ``mask`` for text stages; metadata
  ``names`` (JSON list, in row order), ``backbone``, ``weights``, ``pool``,
  ``normalize``, ``precision`` (what the network computed in), ``islands`` (the float32
  islands it ran with, ``--islands``: ``early``, ``depthwise`` or ``none``), ``specs`` and
  ``truncated`` (JSON).
* ``.npy``: one array (``pooled``, or the single requested stage with
  ``--pool none``), and the names, one per line, in ``<stem>.names.txt`` beside it.
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path
from typing import Any

import typer

from hub.cli._common import console

__all__ = ["collect_images", "collect_texts", "register", "write_features"]

OUTPUT_SUFFIXES = (".safetensors", ".npy")


def collect_images(inputs: list[str]) -> tuple[list[Path], list[str]]:
    """Image files and folders -> (paths, names), folders expanded recursively in sorted order
    (hidden files and folders skipped, as in dataset mode)."""
    from hub.errors import InputError
    from hub.inputs import IMAGE_SUFFIXES, image_files

    paths: list[Path] = []
    for raw in inputs:
        p = Path(raw)
        if p.is_dir():
            found = image_files(p)
            if not found:
                raise InputError(f"{raw!r} is a folder with no image files "
                                 f"({', '.join(sorted(IMAGE_SUFFIXES))}).")
            paths.extend(found)
        elif p.is_file():
            if p.suffix.lower() == ".txt":
                raise InputError(f"{raw!r} is a text file, but this is an image backbone. Pass "
                                 "image files or folders, or choose a text backbone.")
            paths.append(p)
        else:
            raise InputError(f"{raw!r} does not exist.")
    return paths, [str(p) for p in paths]


def _lines(text: str, origin: str, texts: list[str], names: list[str]) -> None:
    for n, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            texts.append(line)
            names.append(f"{origin}:{n}")


def collect_texts(inputs: list[str]) -> tuple[list[str], list[str]]:
    """Text files (one text per line), folders of ``*.txt`` and ``-`` -> (texts, names)."""
    from hub.errors import InputError

    texts: list[str] = []
    names: list[str] = []
    for raw in inputs:
        if raw == "-":
            _lines(sys.stdin.read(), "<stdin>", texts, names)
            continue
        p = Path(raw)
        files = sorted(p.rglob("*.txt")) if p.is_dir() else [p]
        if p.is_dir() and not files:
            raise InputError(f"{raw!r} is a folder with no .txt files.")
        for f in files:
            if not f.is_file():
                raise InputError(f"{str(f)!r} does not exist.")
            data = f.read_bytes()
            try:
                text = data.decode("utf-8-sig")
            except UnicodeDecodeError as exc:
                line = data[:exc.start].count(b"\n") + 1
                raise InputError(f"{str(f)!r} is not UTF-8 text (line {line}, byte {exc.start}). "
                                 "Convert it to UTF-8.") from exc
            _lines(text, str(f), texts, names)
    if not texts:
        raise InputError("The text inputs hold no non-blank lines.")
    return texts, names


def _parse_stages(value: str | None) -> Any:
    if value is None:
        return None
    if value.strip() == "all":
        return "all"
    out: list[int | str] = []
    for part in (p.strip() for p in value.split(",")):
        if part:
            out.append(int(part) if part.lstrip("-").isdigit() else part)
    return out


def write_features(feats: Any, names: list[str], out: Path, meta: dict[str, str]) -> list[Path]:
    """Write features to ``out`` (.safetensors or .npy, see the module docstring); returns the
    files written. Each is written to a temporary name first, then renamed."""
    import numpy as np
    from safetensors.torch import save_file

    from hub.atomic import write_atomic
    from hub.errors import InputError

    def tensor(t: Any) -> Any:
        t = t.detach().to("cpu").contiguous()
        # numpy has no bfloat16
        return t.float() if out.suffix == ".npy" and str(t.dtype) == "torch.bfloat16" else t

    written: list[Path] = []
    if out.suffix == ".safetensors":
        tensors: dict[str, Any] = {}
        if feats.pooled is not None:
            tensors["pooled"] = tensor(feats.pooled)
        for k, v in feats.stages.items():
            tensors[f"stages.{k}"] = tensor(v)
        for k, v in feats.prefix.items():
            tensors[f"prefix.{k}"] = tensor(v)
        if feats.mask is not None and feats.stages:
            tensors["mask"] = tensor(feats.mask)
        specs = {k: {"channels": s.channels, "stride": s.stride, "layout": s.layout, "index": s.index}
                 for k, s in feats.stage_specs.items()}
        metadata = {**meta, "names": json.dumps(names, ensure_ascii=False),
                    "specs": json.dumps(specs), "truncated": json.dumps(feats.truncated)}
        write_atomic(out, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))
        return [out]
    arrays = ([feats.pooled] if feats.pooled is not None else []) + list(feats.stages.values())
    if len(arrays) != 1:
        raise InputError(f"An .npy file holds one array; this extraction gives {len(arrays)} "
                         "(pooled and stages). Write .safetensors, or ask for one of them only "
                         "(--pool none with one --stages entry).")
    array = tensor(arrays[0]).numpy()
    write_atomic(out, lambda tmp: np.save(tmp, array))
    written.append(out)
    names_file = out.with_name(out.stem + ".names.txt")
    write_atomic(names_file, "".join(n.replace("\n", " ") + "\n" for n in names))
    written.append(names_file)
    return written


def extract_cmd(
    name: str = typer.Argument(..., help="Backbone name or alias."),
    inputs: list[str] = typer.Argument(..., help="Image files/folders, or text files (one text "
                                       "per line), folders of .txt, or - for stdin."),
    out_arg: str = typer.Option(..., "--out", "-o", help="FEATURES.safetensors or FEATURES.npy, "
                                "or a folder or store URI (s3://bucket/feats/) for a dataset "
                                "(Parquet shards)."),
    stages: str = typer.Option(None, "--stages", help="Comma-separated stage indices or names, "
                               "or 'all' (default: none; the last one with --pool none)."),
    pool: str = typer.Option(None, "--pool", help="avg, max, cls, mean or none (default: the "
                             "weights' own)."),
    normalize: bool = typer.Option(None, "--normalize/--no-normalize", help="L2-normalise the "
                                   "pooled features (default: the weights' own)."),
    batch_size: int = typer.Option(32, "--batch-size", "-b", help="Inputs per forward pass."),
    max_length: int = typer.Option(None, "--max-length", help="Text: truncate to fewer tokens."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda:N."),
    dtype: str = typer.Option("auto", "--dtype", help="auto (bfloat16 where the device runs it "
                              "natively, else float32; features stay float32), float32, float16 "
                              "or bfloat16."),
    weights: str = typer.Option(None, "--weights", help="Weight variant (default: the manifest's)."),
    runtime: str = typer.Option(None, "--runtime", help="openvino: run the network with OpenVINO "
                                "on the CPU (exported once and cached; pip install "
                                "'backbone-hub[openvino]'). Default: torch."),
    islands: str = typer.Option(None, "--islands", help="Image backbones cast to bfloat16 (or "
                                "float16 on CUDA): keep float32 islands, early (the stem and "
                                "the blocks at 1/2 and 1/4 of the side) or depthwise (the "
                                "depthwise convolutions); see docs/extraction.md. Default: none."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Progress bar on stderr."),
    engine: str = typer.Option("local", "--engine", help="Dataset mode: local or ray."),
    address: str = typer.Option(None, "--address", help="Dataset mode, --engine ray: the cluster "
                                "(auto, ray://HOST:10001; default: RAY_ADDRESS or a local one)."),
    workers: int = typer.Option(None, "--workers", help="Dataset mode: decode processes (local; "
                                "default CPUs - 1) or model actors (ray)."),
    shard_size: int = typer.Option(4096, "--shard-size", help="Dataset mode: source rows per "
                                   "Parquet shard."),
    strict: bool = typer.Option(False, "--strict", help="Dataset mode: stop at the first bad item "
                                "(exit 1) instead of logging it to _errors.jsonl."),
    column: str = typer.Option(None, "--column", help="Dataset mode: the JSONL/CSV/Parquet column "
                               "holding image paths, image bytes or text."),
    modality: str = typer.Option(None, "--modality", help="Image-text backbones: the tower, image "
                                 "or text (default: text for .txt files and -, else image)."),
) -> None:
    """Extract features of files and write them, with the input names, to one file.

    With --out a folder (no .safetensors/.npy suffix), SOURCE is a whole dataset (a folder of
    images, a glob, a text file, or a JSONL/CSV/Parquet file with --column) and the folder gets
    resumable Parquet shards, _manifest.json and _errors.jsonl (see docs/scale.md).
    """
    from hub.api import load
    from hub.cli.dataset import is_dataset_out, reject_dataset_options, run_dataset

    dataset_opts: dict[str, Any] = {"engine": engine, "address": address, "workers": workers,
                    "shard_size": shard_size, "strict": strict, "column": column}
    if is_dataset_out(out_arg, OUTPUT_SUFFIXES):
        return run_dataset(name, inputs, out_arg, stages=_parse_stages(stages), pool=pool,
                           normalize=normalize, batch_size=batch_size, max_length=max_length,
                           device=device, dtype=dtype, weights=weights, progress=progress,
                           runtime=runtime, modality=modality, islands=islands, **dataset_opts)
    reject_dataset_options(**dataset_opts)
    out = Path(out_arg)
    from hub.errors import InputError

    chosen = _parse_stages(stages)
    if chosen is None:
        chosen = [-1] if pool == "none" else []
    if out.suffix == ".npy" and (chosen == "all" or len(chosen) != (1 if pool == "none" else 0)):
        raise InputError("An .npy file holds one array: the pooled features, or with --pool none "
                         "one --stages entry. Write .safetensors for several.")
    from hub.atomic import check_writable

    check_writable(out)  # before the backbone loads and runs
    bb = load(name, weights=weights, device=device, dtype=dtype, runtime=runtime, islands=islands)
    if bb.modality == "image-text":  # two towers: one of them extracts
        texty = all(i == "-" or i.lower().endswith(".txt") for i in inputs)
        tower: Any = bb
        bb = tower.tower(modality or ("text" if texty else "image"))
    elif modality is not None:
        raise InputError("--modality applies to image-text backbones.")
    items: list[Any]
    if bb.modality == "text":
        items, names = collect_texts(inputs)
    else:
        items, names = collect_images(inputs)
    with warnings.catch_warnings():  # truncation is reported below, once
        warnings.simplefilter("ignore", UserWarning)
        feats = bb.extract(items, stages=chosen, pool=pool, normalize=normalize,
                           batch_size=batch_size, max_length=max_length, progress=progress,
                           output_device="cpu")
    meta = {"backbone": bb.name, "weights": bb.weights.variant.name if bb.weights else "random",
            "pool": pool or bb.spec.outputs.pool,
            "normalize": str(bb.spec.outputs.normalize if normalize is None else normalize).lower(),
            "precision": feats.precision, "islands": bb.island_mode if bb.islands else "none"}
    files = write_features(feats, names, out, meta)
    shapes = ", ".join(([f"pooled {tuple(feats.pooled.shape)}"] if feats.pooled is not None else [])
                       + [f"{k} {tuple(v.shape)}" for k, v in feats.stages.items()])
    console().print(f"[green]wrote[/] {len(names)} inputs ({shapes}) to "
                    f"{', '.join(str(f) for f in files)}", highlight=False)
    if feats.truncated:
        first = ", ".join(names[i] for i in feats.truncated[:5])
        console(stderr=True).print(f"[yellow]note[/] {len(feats.truncated)} texts were longer than "
                                   f"{bb.max_length if max_length is None else max_length} tokens "
                                   f"and were truncated: {first}"
                                   f"{' ...' if len(feats.truncated) > 5 else ''}", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("extract")(extract_cmd)
