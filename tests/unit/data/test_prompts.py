"""One prompt rule for every command: the rule itself, then every command run on the same rows."""

import json
import subprocess

import pytest
import trl

import rejuv.method.attribution
from rejuv.data.prompts import prompt_ids, sequence_ids, uses_template
from rejuv.errors import RejuvError
from rejuv.evaluation.engines import TransformersEngine
from rejuv.planner.plan import PlanConfig, PlanEvaluation, ProbeSettings, run_plan
from rejuv.recipes.apply import ApplyConfig, run_apply
from rejuv.recipes.diagnose import DiagnoseConfig, DiagnoseEvaluation, run_diagnose
from rejuv.recipes.eval import EvalConfig, run_eval
from rejuv.recipes.rl import RLRecipeConfig, run_rl
from rejuv.recipes.sft import SFTRecipeConfig, run_sft

from tiny import build_bpe_chat_model, make_bpe_chat_tokenizer, make_tokenizer, perturbed, save

PROMPTS = [f"compute {a}+{b}." for a, b in ((3, 4), (12, 7), (25, 5), (9, 9), (1, 30), (14, 16))]


@pytest.fixture(scope="module")
def bpe():
    return make_bpe_chat_tokenizer()


def chatml_ids(tok, text: str) -> list[int]:
    """What a ChatML chat model is prompted with, from transformers alone."""
    return list(tok.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True)["input_ids"])


# -- the rule ----------------------------------------------------------------------------------------
def test_auto_uses_the_template_when_there_is_one(bpe):
    plain = make_tokenizer()
    plain.chat_template = None
    assert uses_template(bpe, "auto") and not uses_template(plain, "auto") and not uses_template(bpe, "never")
    with pytest.raises(RejuvError, match="always, but the tokenizer has no chat template"):
        uses_template(plain, "always", "m")
    from rejuv.recipes.eval import EvalConfig  # the mode is checked where the option is declared

    with pytest.raises(RejuvError, match="chat_template: 'sometimes' is not one of auto, always, never"):
        EvalConfig(checkpoints=["m"], data=["d"], out="o", chat_template="sometimes")


def test_prompt_ids_with_and_without_the_template(bpe):
    assert prompt_ids(PROMPTS[1], bpe, True, "r") == chatml_ids(bpe, PROMPTS[1])
    assert prompt_ids(PROMPTS[1], bpe, False, "r") == bpe(PROMPTS[1])["input_ids"]
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": PROMPTS[1]}]
    assert prompt_ids(messages, bpe, True, "r") == list(
        bpe.apply_chat_template(messages, add_generation_prompt=True)["input_ids"])
    with pytest.raises(RejuvError, match="r: chat messages need the chat template"):
        prompt_ids(messages, bpe, False, "r")


def test_sequences_are_the_prompt_then_the_response(bpe):
    record = {"prompt": PROMPTS[0], "completion": "3+4=7. \\boxed{7}"}
    ids, start = sequence_ids(record, bpe, True, "r")
    assert ids[:start] == chatml_ids(bpe, PROMPTS[0])
    assert bpe.decode(ids[start:]) == "3+4=7. \\boxed{7}<|im_end|>\n"
    # Chat rows with the same content give the same ids as the text row.
    chat = {"prompt": [{"role": "user", "content": PROMPTS[0]}],
            "completion": [{"role": "assistant", "content": "3+4=7. \\boxed{7}"}]}
    assert sequence_ids(chat, bpe, True, "r") == (ids, start)
    ids, start = sequence_ids(record, bpe, False, "r")
    assert ids[:start] == bpe(PROMPTS[0])["input_ids"] and ids[-1] == bpe.eos_token_id
    assert bpe.decode(ids[start:-1]) == "3+4=7. \\boxed{7}"
    ids, start = sequence_ids({"text": "12+7=19."}, bpe, True, "r")
    assert start == 0 and ids == bpe("12+7=19.")["input_ids"] + [bpe.eos_token_id]


# -- every command on the same rows ------------------------------------------------------------------
def dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


@pytest.fixture(scope="module")
def every_command(tmp_path_factory):
    """Runs sft, rl, eval, diagnose, apply and plan on the same rows of a ChatML model; records the prompt ids
    each hands to its engine, and whether a stale temporary folder beside its output survived."""
    root = tmp_path_factory.mktemp("prompts")
    model, tok = build_bpe_chat_model()
    save(model, tok, root / "base")
    save(perturbed(model, seed=1), tok, root / "sft")
    with open(root / "rows.jsonl", "w") as f:
        for p in PROMPTS:
            f.write(json.dumps({"prompt": p, "completion": "x=7. \\boxed{7}"}) + "\n")
    with open(root / "problems.jsonl", "w") as f:
        for p in PROMPTS:
            f.write(json.dumps({"problem": p, "answer": "7"}) + "\n")
    seen: dict[str, list[list[int]]] = {}
    current = {"command": None}

    def record(ids_list):
        seen.setdefault(current["command"], []).extend([list(map(int, ids)) for ids in ids_list])

    patch = pytest.MonkeyPatch()
    sft_train = trl.SFTTrainer.train

    def spy_sft_train(self, *args, **kwargs):
        record([row["input_ids"][: next(i for i, label in enumerate(row["labels"]) if label != -100)]
                for row in self.train_dataset])
        return sft_train(self, *args, **kwargs)

    tokenize_prompts = trl.GRPOTrainer._tokenize_prompts

    def spy_tokenize_prompts(self, prompts):
        result = tokenize_prompts(self, prompts)
        record(result[0])
        return result

    generate = TransformersEngine.generate

    def spy_generate(self, prompts, progress=None):
        record(prompts)
        return generate(self, prompts, progress)

    def spy_stats(original):
        def wrapper(model, adapter, samples, *args, **kwargs):
            record([s.input_ids[: s.response_start] for s in samples])
            return original(model, adapter, samples, *args, **kwargs)
        return wrapper

    patch.setattr(trl.SFTTrainer, "train", spy_sft_train)
    patch.setattr(trl.GRPOTrainer, "_tokenize_prompts", spy_tokenize_prompts)
    patch.setattr(TransformersEngine, "generate", spy_generate)
    patch.setattr(rejuv.method.attribution, "response_token_stats",
                  spy_stats(rejuv.method.attribution.response_token_stats))  # apply's and diagnose's passes
    base, sft, rows, problems = (str(root / n) for n in ("base", "sft", "rows.jsonl", "problems.jsonl"))
    commands = {
        "sft": lambda out: run_sft(SFTRecipeConfig(model=base, data=rows, out=out, save_epochs=[1],
                                                   per_device_batch_size=8, progress=False)),
        "rl": lambda out: run_rl(RLRecipeConfig(model=sft, data=problems, out=out, rewards=["tiny:contains_seven"],
                                                max_steps=2, num_generations=2, per_device_batch_size=6,
                                                max_completion_length=3, progress=False)),
        "eval": lambda out: run_eval(EvalConfig(checkpoints=[sft], data=[problems], out=out, samples=1,
                                                max_new_tokens=2, progress=False)),
        "diagnose": lambda out: run_diagnose(DiagnoseConfig(base=base, checkpoints=[sft], calib=rows, out=out,
                                                            eval=problems, k=1, progress=False,
                                                            evaluation=DiagnoseEvaluation(samples=1,
                                                                                          max_new_tokens=2))),
        "apply": lambda out: run_apply(ApplyConfig(base=base, sft=sft, calib=rows, out=out, rho=0.05,
                                                   progress=False)),
        "plan": lambda out: run_plan(PlanConfig(
            base=base, checkpoints=[base, sft], names=["b", "s"], calib=rows, probe_data=problems, out=out,
            budget_steps=4, alphas=[0.5], rhos=[0.0], probe_top=0, k=1, progress=False,
            probe=ProbeSettings(rewards=["tiny:contains_seven"], num_generations=2, per_device_batch_size=4,
                                max_completion_length=3),
            evaluation=PlanEvaluation(samples=1, max_new_tokens=2))),
    }
    stale = {}
    try:
        for name, command in commands.items():
            out = root / "out" / name
            out.parent.mkdir(exist_ok=True)
            stale[name] = root / "out" / f".{name}.rejuv-tmp-{dead_pid()}"
            stale[name].mkdir()
            (stale[name] / "half-written").write_text("x")
            current["command"] = name
            command(str(out))
    finally:
        patch.undo()
    return tok, seen, stale


@pytest.mark.slow
def test_every_command_builds_the_same_prompt_ids(every_command):
    tok, seen, _ = every_command
    reference = {tuple(chatml_ids(tok, p)) for p in PROMPTS}
    assert set(seen) == {"sft", "rl", "eval", "diagnose", "apply", "plan"}
    for command, ids in seen.items():
        assert {tuple(x) for x in ids} <= reference, command
    # Commands that read every row saw every prompt: the same ids, not merely a subset.
    for command in ("sft", "eval", "diagnose", "apply", "plan"):
        assert {tuple(x) for x in seen[command]} == reference, command


@pytest.mark.slow
def test_every_command_clears_a_killed_runs_temporary_folder(every_command):
    _, _, stale = every_command
    for command, folder in stale.items():
        assert not folder.exists(), command
        assert (folder.parent / command).is_dir(), command
