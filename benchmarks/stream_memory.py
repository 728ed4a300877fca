"""Peak memory of the streamed passes (fusion, parameter drift, update statistics) against model size.

    python benchmarks/stream_memory.py [--layers 2 8 32] [--hidden 512]

For each size it writes a random Llama checkpoint and a perturbed copy, then
runs each pass in a fresh process and reports the growth of its peak RSS
(the high-water mark VmHWM after the pass minus the resident size just before it, after imports). A pass that streams
shows the same growth whatever the number of tensors.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from synthetic import perturb_checkpoint, write_synthetic_model

PASSES = {
    "fusion": "rejuv.api.fuse(base, sft, out, alpha=0.5, progress=False)",
    "param_drift": ("from rejuv.io.reader import Checkpoint\n"
                    "from rejuv.diagnostics.params import parameter_drift\n"
                    "b, s = Checkpoint(base), Checkpoint(sft)\n"
                    "parameter_drift(b, s, s.names())"),
    # `rejuv diagnose --reference`: the update from the perturbed copy back to the base, with the base known
    # (sparsity, rank per matrix, spikes): the same pair of tensors per step as the drift, plus the base's.
    "update": ("from rejuv.io.reader import Checkpoint\n"
               "from rejuv.diagnostics.update import update_statistics\n"
               "b, s = Checkpoint(base), Checkpoint(sft)\n"
               "update_statistics(s, [b], s.names(), base=b)"),
}

# Peak = VmHWM after resetting it (clear_refs 5) just before the pass. ru_maxrss would not do: Linux
# carries it over exec from the parent, this script, whose size then hides the pass's growth.
MEASURE = """
import json, sys, time
# imported by the passes anyway; keep imports out of the figure
import rejuv.api, rejuv.diagnostics.params, rejuv.diagnostics.update
def status(key):
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith(key + ":"))
base, sft, out = sys.argv[1:4]
open("/proc/self/clear_refs", "w").write("5")
before = status("VmRSS")
start = time.perf_counter()
{body}
print(json.dumps({{"seconds": time.perf_counter() - start, "growth_mb": (status("VmHWM") - before) / 1024}}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, nargs="+", default=[2, 8, 32])
    parser.add_argument("--hidden", type=int, default=512)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for layers in args.layers:
            root = Path(tmp) / f"l{layers}"
            base = write_synthetic_model(root / "base", hidden=args.hidden, layers=layers, vocab=4096,
                                         dtype="float32", max_shard_bytes=256 * 2**20)
            sft = perturb_checkpoint(base, root / "sft", max_shard_bytes=256 * 2**20)
            size_mb = sum(f.stat().st_size for f in base.glob("*.safetensors")) / 2**20
            tensors = 2 + 9 * layers + 1
            for name, body in PASSES.items():
                t0 = time.perf_counter()
                out = subprocess.run([sys.executable, "-c", MEASURE.format(body=body), str(base), str(sft),
                                      str(root / f"out_{name}")], capture_output=True, text=True, check=True)
                result = json.loads(out.stdout.strip().splitlines()[-1])
                rows.append({"pass": name, "layers": layers, "tensors": tensors, "model_mb": round(size_mb, 1),
                             "seconds": round(result["seconds"], 2), "rss_growth_mb": round(result["growth_mb"], 1),
                             "process_seconds": round(time.perf_counter() - t0, 2)})
                print(json.dumps(rows[-1]), flush=True)
    print("\n| pass | tensors | model (MB) | pass time (s) | peak RSS growth (MB) |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['pass']} | {r['tensors']} | {r['model_mb']} | {r['seconds']} | {r['rss_growth_mb']} |")


if __name__ == "__main__":
    main()
