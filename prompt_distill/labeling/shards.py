"""Split the labelling over several processes (one per group of GPUs) and merge their outputs deterministically.

Sentence ``i`` belongs to shard ``i % num_shards`` (round robin, so every shard gets a similar mix of short and long
sentences; a repeated sentence is labelled once, by the shard of its first occurrence). Shard ``k`` of ``n`` writes
``NAME.shard-k-of-n.jsonl`` (+ its sidecar and header) next to the final ``NAME.jsonl``; the merge checks that the
shards come from the same input, model and prompt and that every selected sentence is finished exactly once, then
writes the final three files in input order.

    python -m prompt_distill.labeling.shards --output_file data/prompt_distillation_lang.jsonl --num_shards 2
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..cli import report_error, setup_logging
from ..data import DataError, read_sentences
from ..duplicates import first_occurrences
from ..errors import PromptDistillError
from ..preflight import PreflightError
from ..tracking import (
    DEFAULT_REPORT_TO,
    JOB_LABEL,
    REPORT_TO,
    REPORT_TO_HELP,
    RUN_GROUP_HELP,
    dataset_artifact_name,
    dataset_files,
    run_group,
    start_run,
)
from .run_files import (
    IDENTITY_FIELDS,
    LABELLED,
    TOO_LONG_STATUS,
    OutputLock,
    RunFiles,
    identity_differences,
    load_sidecar,
    prepare_output,
    read_header,
    rebuild_training_file,
    sha256_file,
    write_json_atomic,
    write_sidecar,
)


def select_shard(indices: Sequence[int], shard_index: int, num_shards: int) -> list[int]:
    """The indices this shard labels: every ``num_shards``-th one, starting at ``shard_index``."""
    if num_shards < 1:
        raise PreflightError(f"--num_shards must be at least 1, got {num_shards}.")
    if not 0 <= shard_index < num_shards:
        raise PreflightError(f"--shard_index must be in 0..{num_shards - 1}, got {shard_index}.")
    return list(indices)[shard_index::num_shards]


def shard_output_path(output_file, shard_index: int, num_shards: int) -> Path:
    """``data/x.jsonl`` -> ``data/x.shard-0-of-2.jsonl``; the output itself when there is one shard."""
    select_shard([], shard_index, num_shards)  # validates
    path = Path(output_file)
    if num_shards == 1:
        return path
    stem = path.name[: -len(".jsonl")] if path.name.endswith(".jsonl") else path.name
    return path.with_name(f"{stem}.shard-{shard_index}-of-{num_shards}.jsonl")


def selected_count(total: int, max_samples: int | None) -> int:
    return total if max_samples is None else min(total, max_samples)


@dataclass
class MergeResult:
    output_file: Path
    labelled: int
    unparseable: int
    shard_files: list[Path]
    too_long: int = 0


def merge_shards(output_file, num_shards: int, *, overwrite: bool = False) -> MergeResult:
    """Merge finished shard outputs into ``output_file``; an incomplete or foreign shard is an error."""
    select_shard([], 0, num_shards)  # --num_shards 0 is a flag error, not an empty merge
    shard_files = [RunFiles.for_output(shard_output_path(output_file, k, num_shards)) for k in range(num_shards)]
    headers = []
    for k, files in enumerate(shard_files):
        header = read_header(files)
        if header is None:
            raise DataError(f"{files.header}: missing; shard {k} has not run yet (run its create_data.py command).")
        if header.get("shard") != {"index": k, "count": num_shards}:
            raise DataError(f"{files.header}: belongs to shard {header.get('shard')}, expected {k} of {num_shards}.")
        headers.append(header)
    shared_fields = {key: flag for key, flag in IDENTITY_FIELDS.items() if key != "shard"}
    for k, header in enumerate(headers[1:], start=1):
        differences = identity_differences(header, headers[0], shared_fields)
        if differences:
            raise DataError(f"Shards 0 and {k} were made from different runs:\n  " + "\n  ".join(differences))

    first = headers[0]
    input_file = first["input_file"]
    if not Path(input_file).is_file() or sha256_file(input_file) != first["input_sha256"]:
        raise DataError(f"{input_file}: missing or changed since the shards were labelled; the merge needs it.")
    texts = read_sentences(input_file).texts
    max_samples = {header["sessions"][-1].get("max_samples") for header in headers}
    if len(max_samples) != 1:
        raise DataError(f"The shards were last run with different --max_samples: {sorted(map(str, max_samples))}.")
    limit = selected_count(len(texts), max_samples.pop())
    firsts = first_occurrences(texts)  # a repeated sentence is labelled at its first occurrence, by that one's shard

    merged: dict[int, dict] = {}
    for k, files in enumerate(shard_files):
        records = load_sidecar(files, texts).records
        foreign = [index for index in records if index % num_shards != k]
        if foreign:
            raise DataError(f"{files.sidecar}: sentence {foreign[0]} does not belong to shard {k} of {num_shards}.")
        missing = [index for index in select_shard(range(limit), k, num_shards)
                   if firsts[index] == index and index not in records]
        if missing:
            raise DataError(
                f"{files.sidecar}: shard {k} is incomplete ({len(missing)} sentences not finished, e.g. input "
                f"sentence {missing[0] + 1}); rerun its create_data.py command to resume it, then merge again."
            )
        merged.update(records)

    target = RunFiles.for_output(output_file)
    identity = {key: first[key] for key in IDENTITY_FIELDS}
    identity["shard"] = {"index": 0, "count": 1}  # the same header a single-process run would write
    with OutputLock(target):
        prepare_output(target, identity, overwrite)
        write_sidecar(target, merged)
        rebuild_training_file(target, merged, first["labels"])
        sessions = [dict(session, shard=k) for k, header in enumerate(headers) for session in header["sessions"]]
        write_json_atomic(
            target.header,
            {
                **identity,
                "input_file": input_file,
                "sentences": len(texts),
                **({"task": first["task"]} if "task" in first else {}),
                "merged_from": [str(files.training) for files in shard_files],
                "sessions": sessions,
            },
        )
    labelled = sum(record["status"] == LABELLED for record in merged.values())
    too_long = sum(record["status"] == TOO_LONG_STATUS for record in merged.values())
    return MergeResult(Path(output_file), labelled, len(merged) - labelled - too_long,
                       [files.training for files in shard_files], too_long)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Merge the shard outputs of create_data.py into one output.")
    parser.add_argument("--output_file", required=True, help="The final output; shards are found next to it.")
    parser.add_argument("--num_shards", type=int, required=True)
    parser.add_argument("--overwrite", action="store_true", help="Replace an output made from a different run.")
    parser.add_argument("--report_to", default=DEFAULT_REPORT_TO, choices=list(REPORT_TO), help=REPORT_TO_HELP)
    parser.add_argument("--run_group", default=None, help=RUN_GROUP_HELP)
    args = parser.parse_args(argv)
    setup_logging()
    try:
        result = merge_shards(args.output_file, args.num_shards, overwrite=args.overwrite)
    except PromptDistillError as error:
        return report_error(error)
    print(  # the merge's report
        f"Merged {len(result.shard_files)} shards into {result.output_file}: {result.labelled} labelled, "
        f"{result.unparseable} unparseable" + (f", {result.too_long} too long for the context" if result.too_long else "")
        + f" (listed in {RunFiles.for_output(result.output_file).sidecar})."
    )
    log_merge(result, args.report_to, args.run_group)
    return 0


def log_merge(result: MergeResult, report_to, group: str | None) -> None:
    """The merge as a label run of the labelling's group: the shards' datasets as inputs, the merged dataset (the
    one training reads) as the artifact ``data-<stem>``. A wandb failure is a warning; the merged files stay."""
    from .tracking import artifact_name_for

    output = result.output_file
    header = read_header(RunFiles.for_output(output)) or {}
    tracking = start_run(report_to, JOB_LABEL, f"{output.name.removesuffix('.jsonl')} merge",
                         run_group(group, output), {"merge": {"output_file": str(output),
                                                              "num_shards": len(result.shard_files)},
                                                    "run_file": {k: v for k, v in header.items() if k != "sessions"}})
    if tracking is None:
        return
    for shard in result.shard_files:
        tracking.use_artifact(artifact_name_for(shard), "dataset", dataset_files(shard))
    tracking.summary({"label/labelled_total": result.labelled, "label/unparseable_total": result.unparseable,
                      "label/too_long_total": result.too_long})
    tracking.log_artifact(dataset_files(output), dataset_artifact_name(output), "dataset",
                          metadata={"labelled": result.labelled, "unparseable": result.unparseable,
                                    "too_long": result.too_long, "shards": len(result.shard_files)})
    tracking.finish()


if __name__ == "__main__":
    sys.exit(main())
