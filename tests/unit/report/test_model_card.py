"""The model card of an apply output: the Hub's front matter (parents by Hub ID, the relation), and the
mergekit config that rebuilds a fusion."""

import yaml

from rejuv.report.model_card import mergekit_config, model_card


def _manifest(**changes):
    found = {"base": "org/base@main", "sft": "/local/sft", "fusion_only": True, "alpha": 0.5, "rho": 0.0,
             "version": "0", "entropy": {}, "calibration_accuracy": {}, "calibration": None, "reset_by_kind": {},
             "neurons_reset": 0, "neurons_total": 10, "effective_reset_ratio": 0.0, "targets": 0}
    return {**found, **changes}


def _front(card: str) -> dict:
    return yaml.safe_load(card.split("---")[1])


def test_a_merge_names_both_parents_the_base_by_its_hub_id():
    front = _front(model_card(_manifest(), "rejuv apply ...", None))
    assert front["base_model"] == ["org/base", "/local/sft"] and front["base_model_relation"] == "merge"
    assert front["library_name"] == "transformers"


def test_an_adapter_output_names_its_base_as_an_adapter_for_the_hubs_model_tree():
    front = _front(model_card(_manifest(saved_as="adapter", fusion_only=False), "rejuv apply ...", None))
    assert front == {"base_model": "org/base", "base_model_relation": "adapter", "library_name": "peft",
                     "tags": ["rejuv", "lora", "rejuvenation"]}


def test_the_mergekit_config_is_the_linear_merge_of_the_fusion():
    config = yaml.safe_load(mergekit_config("b", "s", 0.7, "BF16"))
    assert config["merge_method"] == "linear" and config["out_dtype"] == "bfloat16"
    weights = {m["model"]: m["parameters"]["weight"] for m in config["models"]}
    assert weights == {"s": 0.7, "b": 1.0 - 0.7} and config["parameters"]["normalize"] is False
