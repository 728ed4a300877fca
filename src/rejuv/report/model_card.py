"""The model card (`README.md`) of a folder `rejuv apply` writes, with the Hub's front matter, and the
mergekit configuration that rebuilds a fusion bit for bit (BENCHMARKS.md: mergekit's `linear` gives the
same bytes)."""

from __future__ import annotations

import yaml

from rejuv.io.format import torch_name


def mergekit_config(base: str, sft: str, alpha: float, out_dtype: str) -> str:
    """mergekit's `linear` merge with the weights of θ = α·θ_SFT + (1−α)·θ_base, computed in float32 and
    stored as `out_dtype` (a safetensors dtype name such as BF16)."""
    config = {"merge_method": "linear",
              "models": [{"model": sft, "parameters": {"weight": float(alpha)}},
                         {"model": base, "parameters": {"weight": float(1.0 - alpha)}}],
              "parameters": {"normalize": False}, "dtype": "float32",
              "out_dtype": torch_name(out_dtype)}
    return yaml.safe_dump(config, sort_keys=False)


def _hub_name(model: str) -> str:
    """How the Hub's front matter names a model: its ID without the `@revision` (a local folder as given)."""
    from rejuv.io.hub import hub_id

    found = hub_id(model)
    return found[0] if found else model


def _number(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def model_card(manifest: dict, command: str, mergekit: str | None) -> str:
    """README.md for an `apply` output: front matter (base_model, tags, library_name) and what was done."""
    fusion_only = manifest["fusion_only"]
    base, sft = _hub_name(manifest["base"]), _hub_name(manifest["sft"])
    if manifest.get("saved_as") == "adapter":  # the Hub's model tree: an adapter of the base
        front = {"base_model": base, "base_model_relation": "adapter", "library_name": "peft",
                 "tags": ["rejuv", "lora", "linear" if fusion_only else "rejuvenation"]}
    else:  # a merge of its two parents
        front = {"base_model": [base, sft], "base_model_relation": "merge", "library_name": "transformers",
                 "tags": ["rejuv", "merge", "linear" if fusion_only else "rejuvenation"]}
    entropy, accuracy = manifest["entropy"], manifest["calibration_accuracy"]
    what = f"the base-anchored fusion θ = α·θ_SFT + (1−α)·θ_base with α = {manifest['alpha']:g}"
    if not fusion_only:
        what += (f", then {manifest['neurons_reset']:,} of {manifest['neurons_total']:,} neurons "
                 f"({manifest['effective_reset_ratio']:.2%}) reset to their base values (ρ = {manifest['rho']:g} "
                 f"per target, {manifest['targets']} targets)")
    lines = ["---", yaml.safe_dump(front, sort_keys=False).strip(), "---", "",
             "# Rejuvenated checkpoint" if not fusion_only else "# Fused checkpoint", "",
             f"Made by rejuv {manifest['version']} from `{manifest['sft']}` (fine-tuned) "
             f"and `{manifest['base']}` (its base): {what}. `rejuvenation.json` holds every detail, including the "
             "reset indices.", "", "```bash", command, "```", ""]
    if manifest.get("calibration"):
        lines += ["| model | mean response entropy (nats) | teacher-forced accuracy |", "|---|---|---|"]
        lines += [f"| {stage} | {_number(entropy.get(stage))} | {_number(accuracy.get(stage))} |"
                  for stage in ("base", "sft", "fused", "rejuvenated") if entropy.get(stage) is not None]
        lines += ["", f"Measured on {manifest['calibration']['samples']} calibration rows "
                      f"(`{manifest['calibration']['path']}`).", ""]
    if manifest["reset_by_kind"]:
        lines += ["| module | neurons reset | share |", "|---|---|---|"]
        lines += [f"| {kind} | {v['reset']:,} | {v['ratio']:.2%} |" for kind, v in manifest["reset_by_kind"].items()]
        lines.append("")
    if mergekit:
        lines += ["The same bytes with mergekit (`mergekit-yaml mergekit_config.yml OUT`):", "", "```yaml",
                  mergekit.strip(), "```", ""]
    return "\n".join(lines)
