"""What `rejuv sft` and `rejuv rl` train on: a tiny local Llama, arithmetic SFT rows and RL prompts."""

import json
import random

import pytest

from tiny import build_model, save


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    base, tok = build_model("llama", seed=0)
    save(base, tok, root / "base")
    rng = random.Random(0)
    with open(root / "sft.jsonl", "w") as f:
        for _ in range(32):
            a, b = rng.randint(1, 9), rng.randint(1, 9)
            f.write(json.dumps({"prompt": f"compute {a}+{b}.", "completion": f"{a}+{b}={a + b}. \\boxed{{{a + b}}}"})
                    + "\n")
    with open(root / "rl.jsonl", "w") as f:
        for i in range(16):
            f.write(json.dumps({"prompt": f"compute {i}+1.", "answer": "7"}) + "\n")
    return root

