"""`rejuv eval` results in lm-evaluation-harness's layout, for the tools that compare runs by reading it.

Per checkpoint, a folder `lm_eval/<checkpoint, with / as __>/` holds `results_rejuv.json` (`results[task]
["<metric>,<filter>"]`, with `_stderr` beside each metric, `n-samples`, `configs`, `higher_is_better`) and
`samples_<task>_rejuv.jsonl` (one line per problem: `doc_id`, `target`, `resps`, `filtered_resps` and the
metrics). lm-evaluation-harness stamps its file names with the date; these carry `rejuv` instead, so that
the same run gives the same bytes and a `results_*.json` glob still finds them. The filter is `none`.
"""

from __future__ import annotations

import math

from rejuv.report.stats import mean_sd


def _sanitized(checkpoint: str) -> str:
    return checkpoint.strip("/").replace("/", "__")


def _stderr(values: list[float]) -> float | None:
    cell = mean_sd(values)
    return None if cell["sd"] is None else cell["sd"] / math.sqrt(cell["n"])


def lm_eval_files(report: dict, samples: list[dict], data_paths: dict[str, str]) -> dict[str, str | list[dict]]:
    """{relative path: content} (a dict for JSON, a list of rows for JSONL) from an eval report, its sample
    rows and the file each benchmark came from."""
    cfg = report["config"]
    files: dict[str, str | list[dict]] = {}
    for checkpoint in dict.fromkeys(r["checkpoint"] for r in report["results"]):
        folder = f"lm_eval/{_sanitized(checkpoint)}"
        results, configs, n_samples, better = {}, {}, {}, {}
        for r in (r for r in report["results"] if r["checkpoint"] == checkpoint):
            task, k_values = r["benchmark"], [k for k in r["pass@k"] if k != "1"]
            per_problem = [c / r["samples_per_problem"] for c in r["correct_per_problem"]]
            results[task] = {"alias": task, "pass@1,none": r["pass@1"], "pass@1_stderr,none": _stderr(per_problem)}
            for k in k_values:
                results[task][f"pass@{k},none"] = r["pass@k"][k]
                results[task][f"pass@{k}_stderr,none"] = "N/A"
            metrics = ["pass@1", *(f"pass@{k}" for k in k_values)]
            better[task] = {m: True for m in metrics}
            n_samples[task] = {"original": r["problems"], "effective": r["problems"]}
            configs[task] = {"task": task, "dataset_path": data_paths[task], "output_type": "generate_until",
                             "repeats": r["samples_per_problem"], "num_fewshot": 0,
                             "generation_kwargs": {"do_sample": cfg["temperature"] > 0,
                                                   "temperature": cfg["temperature"], "top_p": cfg["top_p"],
                                                   "max_gen_toks": cfg["max_new_tokens"]},
                             "metric_list": [{"metric": m, "aggregation": "mean", "higher_is_better": True}
                                             for m in metrics]}
            rows = [s for s in samples if s["checkpoint"] == checkpoint and s["benchmark"] == task]
            by_problem: dict[int, list[dict]] = {}
            for s in rows:
                by_problem.setdefault(s["problem"], []).append(s)
            files[f"{folder}/samples_{task}_rejuv.jsonl"] = [
                {"doc_id": i, "target": group[0]["answer"], "resps": [[s["completion"] for s in group]],
                 "filtered_resps": [s["completion"] for s in group],
                 "pass@1": sum(s["correct"] for s in group) / len(group)}
                for i, group in sorted(by_problem.items())]
        files[f"{folder}/results_rejuv.json"] = {
            "results": results, "group_subtasks": {t: [] for t in results}, "configs": configs,
            "versions": {t: 0 for t in results}, "n-shot": {t: 0 for t in results},
            "higher_is_better": better, "n-samples": n_samples,
            "config": {"model": "rejuv", "model_args": f"pretrained={checkpoint}", "batch_size": cfg["batch_size"],
                       "device": cfg["device"], "random_seed": cfg["seed"]},
            "model_name": checkpoint, "model_name_sanitized": _sanitized(checkpoint),
            "rejuv_version": report["version"], "engine": report["engine"]}
    return files
