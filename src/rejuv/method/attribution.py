"""Where a model is over-confident, and which neurons make it so.

1. `response_token_stats`: teacher-forced next-token entropy (and top-1 mass,
   argmax, gold log-prob) at every response position.
2. `select_targets`: per sample, the N response positions with the largest
   entropy gap |H_S(t) − H_B(t)|, with the gold (or argmax) next token.
3. `attribute_sample`: per target, a score for every neuron of every
   reader/writer module, on the target logit z_y(t):
   - writers (o_proj, down_proj), input neuron i: exact direct logit
     attribution a_i(t)·⟨W[:, i], d_y(t)⟩ with d_y(t) = s(t)·(γ ⊙ W_U[y]) and
     s(t) = 1/rms(x_L(t)) frozen from the forward pass;
   - readers (q/k/v/gate/up), output neuron j: gradient×activation of the true
     logit z_y(t); q/gate/up at t only, k/v summed over the prefix 0..t. Module
     outputs are hooked at the linear layer, i.e. before RoPE and q_norm/k_norm.
   It also returns |z̃ − z|, the error of the frozen-norm decomposition
   z̃ = ⟨embedding + Σ writes, d_y(t)⟩ + b_y.
   Families with more roles (docs/method.md, "Other families"): a norm stored as
   (1 + weight) counts its offset in γ; a post-norm after o_proj or down_proj
   (Gemma 2/3, OLMo 2) is frozen like the final norm, at the rms of what it
   normalises, so a writer's direction becomes (offset + γ_post)/rms_post ⊙ d_y;
   a fused projection (Phi-3's qkv_proj, gate_up_proj) holds several kinds as
   row spans, each scored as its own kind; an expert's down neuron is scored
   through its routing weight at the position (0 where the router skipped it),
   its gate/up neurons by grad×act inside the experts' block; soft-capped logits
   (Gemma 2) are scored before the cap, which keeps their order.

Each sample runs forward once, up to its last target, in a few pieces that end at
targets (`forward_pieces`; the graph runs from piece to piece through a KV cache).
Per piece, one batched backward (`torch.autograd.grad(..., is_grads_batched=True)`)
gives each of its targets the gradient of its own logit alone, over the positions
up to the piece's end only, in chunks of targets sized from the memory the device
has free (`targets_per_backward`). Where a copy of the sample per target paid N
forwards and N backwards (benchmarks/attribution_copies.py keeps that path as the
reference the tests compare with), this pays one forward and the backwards.
Writers need no backward. Measured in BENCHMARKS.md, with the alternatives that
measured slower on a CPU: a backward per target on a retained graph (the same work
in smaller matrix products), and a piece per target (each piece's pass over the
weights costs more than the positions it saves).

The model may be spread over devices (`device_map="auto"`): inputs go to the
embedding's device, per-target vectors are gathered on the unembedding's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from transformers import DynamicCache

from rejuv.data.calibration import Sample
from rejuv.errors import RejuvError
from rejuv.method.arch import READER_KINDS, ArchAdapter, Neurons
from rejuv.method.attribution_record import Target

# What one more forward piece costs (its pass over the weights, one more backward call, the cache), in
# token-backwards of one target; measured on a CPU in BENCHMARKS.md ("Attribution ... issue 18").
PIECE_COST_TOKENS = 128


@dataclass
class TokenStats:
    """Per response position of one sample (index k ↔ input position response_start-1+k)."""

    entropy: torch.Tensor  # nats, float32
    top1: torch.Tensor  # probability of the argmax token
    argmax: torch.Tensor  # int64
    gold_logprob: torch.Tensor  # log p(gold next token)


def _input_device(model: nn.Module) -> torch.device:
    return model.get_input_embeddings().weight.device


def _pad_batch(samples: list[Sample], pad_id: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    length = max(len(s.input_ids) for s in samples)
    ids = torch.full((len(samples), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(samples), length), dtype=torch.long)
    for row, s in enumerate(samples):
        ids[row, : len(s.input_ids)] = torch.tensor(s.input_ids)
        mask[row, : len(s.input_ids)] = 1
    return ids.to(device), mask.to(device)


def _unembed(model: nn.Module, adapter: ArchAdapter) -> tuple[torch.Tensor, torch.Tensor | None]:
    head = model.get_submodule(adapter.unembedding)
    return head.weight, getattr(head, "bias", None)


@torch.no_grad()
def response_token_stats(model: nn.Module, adapter: ArchAdapter, samples: list[Sample],
                         batch_size: int = 8, progress=None) -> list[TokenStats]:
    """Teacher-forced statistics at every response position, one `TokenStats` per sample.

    Logits are computed only at response positions (hidden state × unembedding),
    in float32, so a long prompt or a large vocabulary costs no full logit tensor.
    """
    device = _input_device(model)
    backbone = model.get_submodule(adapter.backbone)
    weight, bias = _unembed(model, adapter)
    cap = adapter.logit_softcap(model.config.to_dict())
    stats: list[TokenStats] = []
    for first in range(0, len(samples), batch_size):
        batch = samples[first: first + batch_size]
        # Right padding: under a causal mask, real tokens never see the pads.
        ids, mask = _pad_batch(batch, 0, device)
        hidden = backbone(input_ids=ids, attention_mask=mask, use_cache=False).last_hidden_state
        hidden, ids = hidden.to(weight.device), ids.to(weight.device)
        for row, s in enumerate(batch):
            pos = torch.tensor(list(s.predict_positions), device=weight.device)
            logits = (hidden[row, pos].float() @ weight.float().T)
            if bias is not None:
                logits = logits + bias.float()
            if cap is not None:
                logits = cap * torch.tanh(logits / cap)
            logp = torch.log_softmax(logits, dim=-1)
            probs = logp.exp()
            top1, argmax = probs.max(dim=-1)
            gold = ids[row, pos + 1]
            stats.append(TokenStats(
                entropy=-(probs * logp).sum(-1).cpu(),
                top1=top1.cpu(),
                argmax=argmax.cpu(),
                gold_logprob=logp.gather(-1, gold[:, None])[:, 0].cpu(),
            ))
        if progress is not None:
            progress.update(len(batch))
    return stats


def mean_entropy(stats: list[TokenStats]) -> float:
    """Token-weighted mean over all response positions."""
    return float(torch.cat([s.entropy for s in stats]).double().mean())


def select_targets(samples: list[Sample], base: list[TokenStats], sft: list[TokenStats],
                   per_sample: int, token: str = "gold") -> list[Target]:
    """The `per_sample` positions of each sample with the largest |H_S − H_B|."""
    targets = []
    for i, (s, b, f) in enumerate(zip(samples, base, sft, strict=True)):
        gap = (f.entropy - b.entropy).abs()
        order = torch.sort(gap, descending=True, stable=True).indices[:per_sample]
        offset = s.predict_positions.start
        for k in sorted(order.tolist()):
            position = offset + k
            y = s.input_ids[position + 1] if token == "gold" else int(f.argmax[k])
            targets.append(Target(i, position, y, float(gap[k])))
    return targets


def norm_eps(norm: nn.Module) -> float:
    for attr in ("variance_epsilon", "eps"):
        if hasattr(norm, attr):
            return float(getattr(norm, attr))
    raise RejuvError(f"norm {type(norm).__name__} exposes no epsilon; unsupported norm")


def targets_per_backward(targets: int, reader_bytes: int, device: torch.device) -> int:
    """How many targets one batched backward takes: their gradients of every reader output (`reader_bytes`
    each, twice that for the backward's own temporaries) within half the memory the device has free."""
    if device.type == "cuda":
        free = torch.cuda.mem_get_info(device)[0]
    else:
        try:
            with open("/proc/meminfo") as f:
                free = next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:"))
        except (OSError, StopIteration):
            return targets
    return max(1, min(targets, free // 2 // max(2 * reader_bytes, 1)))


def forward_pieces(positions: list[int], piece_cost: int | None = None) -> list[list[int]]:
    """Indices of the targets (into `positions`) grouped by the forward piece they end, in position order.

    A target's backward covers every position up to the end of its piece: more pieces, shorter backwards,
    but one more forward call and one more backward per piece. The grouping of the sorted targets minimises
    Σ (targets in the piece × the piece's end) + `piece_cost` per piece, both in token-backwards, exactly
    (dynamic programming; targets at one position never split)."""
    piece_cost = PIECE_COST_TOKENS if piece_cost is None else piece_cost
    order = sorted(range(len(positions)), key=lambda k: positions[k])
    ends = [positions[k] + 1 for k in order]
    best = [0.0] + [math.inf] * len(order)  # best[j]: the cost of the first j targets in pieces
    cut = [0] * (len(order) + 1)
    for j in range(1, len(order) + 1):
        for i in range(j):  # the last piece ends at target j-1 and holds targets i..j-1
            if i > 0 and ends[i - 1] == ends[j - 1]:
                continue
            cost = best[i] + (j - i) * ends[j - 1] + piece_cost
            if cost < best[j]:
                best[j], cut[j] = cost, i
    groups, j = [], len(order)
    while j > 0:
        groups.append(order[cut[j]:j])
        j = cut[j]
    return groups[::-1]


def _capture_plan(adapter: ArchAdapter, neurons: list[Neurons]) -> tuple[dict, list, dict]:
    """The loaded model's modules to hook: reader modules (a fused one holds several kinds), writers, and
    experts modules (each holding every expert's neurons of its layer)."""
    readers: dict[str, list[Neurons]] = {}
    writers: list[Neurons] = []
    experts: dict[str, list[Neurons]] = {}
    for n in neurons:
        if n.expert is not None:
            experts.setdefault(adapter.experts.memory(adapter.layers, n.layer), []).append(n)
        elif n.kind in READER_KINDS:
            readers.setdefault(n.module, []).append(n)
        else:
            writers.append(n)
    return readers, writers, experts


def _expert_scores(model: nn.Module, path: str, neurons: list[Neurons], kept: dict, grad: torch.Tensor,
                   d: torch.Tensor) -> dict[Neurons, torch.Tensor]:
    """Scores of every expert's neurons in one layer. At each target, an expert the router did not pick
    contributes nothing (0). For a picked expert e with routing weight w: its down neuron i writes
    w·m_i·W_down[:, i] (exact DLA through the routing weight), and its gate and up neurons get
    gradient × activation from the gradient of the target logit at the layer's output (`grad`), which they
    reach only through w·W_down·(act(gate) ⊙ up)."""
    module = model.get_submodule(path)
    gate_up, down = module.gate_up_proj.detach().float(), module.down_proj.detach().float()
    width = down.shape[-1]
    hidden, chosen, weights = kept["in"], kept["index"], kept["weight"]
    by = {(n.expert, n.kind): n for n in neurons}
    scores = {n: torch.zeros(hidden.shape[0], width) for n in neurons}
    for k in range(hidden.shape[0]):
        for slot in range(chosen.shape[1]):
            e = int(chosen[k, slot])
            if e >= gate_up.shape[0]:  # a sentinel for "no expert" in some dispatches
                continue
            w = weights[k, slot].float().to(gate_up.device)
            pre = gate_up[e] @ hidden[k].to(gate_up.device)
            with torch.enable_grad():
                gate = pre[:width].clone().requires_grad_(True)
                up = pre[width:].clone().requires_grad_(True)
                mid = module.act_fn(gate) * up
                out = w * (down[e] @ mid)
                g_gate, g_up = torch.autograd.grad(out, [gate, up], grad_outputs=grad[k].to(out))
            mid = mid.detach()
            scores[by[e, "gate_proj"]][k] += (gate.detach() * g_gate).cpu()
            scores[by[e, "up_proj"]][k] += (up.detach() * g_up).cpu()
            scores[by[e, "down_proj"]][k] += (w * mid * (d[k].to(down.device) @ down[e])).cpu()
    return scores


def _backwards(graph_out: dict, hidden: list, hidden_device, pieces: list, starts: list, targets: list[Target],
               w_y: torch.Tensor, bias, tokens: torch.Tensor, readers: dict, experts: dict) -> tuple:
    """Per piece, the target logits and their batched backwards: each reader module's grad×act at the target
    (`point`) and summed over the prefix (`prefix`, where k/v need it), full width, and the gradient of each
    target's logit at the experts' output (`experts_grad`). Returns (z, point, prefix, experts_grad)."""
    n_targets, head = len(targets), w_y.device
    point = {m: torch.empty(n_targets, graph_out[m][-1].shape[-1]) for m in readers}
    prefix = {m: torch.empty(n_targets, graph_out[m][-1].shape[-1]) for m in readers
              if any(n.kind in ("k_proj", "v_proj") for n in readers[m])}
    experts_grad = {m: torch.empty(n_targets, graph_out[m][-1].shape[-1]) for m in experts}
    z = torch.empty(n_targets, device=head)
    reader_bytes = sum(t.numel() * t.element_size() for outs in graph_out.values() for t in outs)
    chunk = targets_per_backward(n_targets, reader_bytes, hidden_device)
    with torch.enable_grad():
        for p, rows in enumerate(pieces):
            z_piece = (hidden[p] * w_y[rows]).sum(-1)
            if bias is not None:
                z_piece = z_piece + bias[tokens[rows]].float()
            z[rows] = z_piece.detach()
            # q/gate/up act at the target only, in its own piece; k/v over the prefix, in every piece so far
            inputs = [(m, i) for m in graph_out for i in (range(p + 1) if m in prefix else [p])]
            one_hot = torch.eye(len(rows), device=z_piece.device)
            for first in range(0, len(rows), chunk):
                last = min(first + chunk, len(rows))
                # row k of the batch back-propagates target k's logit alone; the graph stays for what is left
                grads = torch.autograd.grad(z_piece, [graph_out[m][i] for m, i in inputs],
                                            grad_outputs=one_hot[first:last], is_grads_batched=True,
                                            retain_graph=p < len(pieces) - 1 or last < len(rows))
                local = torch.tensor([targets[k].position - starts[p] for k in rows[first:last]])
                batch = torch.arange(last - first)
                chunk_rows = rows[first:last]
                summed: dict[str, torch.Tensor | float] = {m: 0.0 for m in prefix}
                for (m, i), grad in zip(inputs, grads, strict=True):
                    if m in experts:  # [chunk, positions, hidden]: the gradient at the target's own position
                        experts_grad[m][chunk_rows] = grad[batch, local].float().cpu()
                        continue
                    out, grad = graph_out[m][i].detach()[0].float(), grad[:, 0].float()  # [ℓ, d], [chunk, ℓ, d]
                    if m in prefix:  # later positions get exactly zero gradient
                        summed[m] = summed[m] + torch.einsum("ld,cld->cd", out, grad)
                    if i == p:
                        point[m][chunk_rows] = (out[local] * grad[batch, local]).cpu()
                for m in prefix:
                    prefix[m][chunk_rows] = summed[m].cpu()

    return z, point, prefix, experts_grad


def _direction_and_error(adapter: ArchAdapter, final_norm: nn.Module, at_targets: dict, w_y: torch.Tensor,
                         z: torch.Tensor, bias, tokens: torch.Tensor, head) -> tuple[torch.Tensor, torch.Tensor]:
    """The frozen final norm's direction d_y = (offset + γ) ⊙ W_U[y] / rms(x_L) per target, and |z̃ − z|, the
    error of the logit rebuilt from what the embedding and each layer added to the stream."""
    gamma = adapter.norm_offset + final_norm.weight.float().to(head)
    inv_rms = torch.rsqrt(at_targets[("residual",)].pow(2).mean(-1, keepdim=True) + norm_eps(final_norm))
    d = inv_rms * gamma * w_y.detach()
    writes = [rows for key, rows in at_targets.items() if key[0] == "write"]  # in forward order
    z_tilde = (torch.stack(writes).sum(0) * d).sum(-1)
    if bias is not None:
        z_tilde = z_tilde + bias[tokens].float()
    return d, (z_tilde - z).abs().cpu()


def _writer_scores(model: nn.Module, adapter: ArchAdapter, writers: list[Neurons], at_targets: dict,
                   d: torch.Tensor) -> dict[Neurons, torch.Tensor]:
    """Exact DLA of every writer's input neurons: a_i·⟨W[:, i], d_y⟩, through a post-norm where the family has
    one (frozen at the rms of the writer's output, like the final norm)."""
    scores = {}
    for n in writers:
        w = model.get_submodule(n.module).weight  # [hidden, in], on its layer's device
        direction = d.to(w.device)
        post = adapter.post_norm(n)
        if post is not None:
            norm = model.get_submodule(post)
            out = at_targets[("out", n.module)].to(w.device)
            post_inv_rms = torch.rsqrt(out.pow(2).mean(-1, keepdim=True) + norm_eps(norm))
            direction = direction * (adapter.norm_offset + norm.weight.float().to(w.device)) * post_inv_rms
        scores[n] = (at_targets[("in", n.module)].to(w.device) * (direction @ w.float())).cpu()
    return scores


class _Capture:
    """What the forward pass keeps for the scores: the output of every reader and expert block, per piece, with
    its graph (for the backwards); and at the target positions, gathered in target order, what each writer
    reads and writes, the embedding's write and the residual stream before the final norm."""

    def __init__(self, n_targets: int, head: torch.device, graph_modules: list[str]):
        self.n_targets, self.head = n_targets, head
        self.graph_out: dict[str, list[torch.Tensor]] = {m: [] for m in graph_modules}
        self.at_targets: dict[tuple, torch.Tensor] = {}  # ("write", module or "embedding"), ("in"/"out", writer)..
        self.rows = self.at = None  # the piece being run: its target indices, and their positions in it

    def keep(self, key: tuple, rows: torch.Tensor) -> None:
        if key not in self.at_targets:
            self.at_targets[key] = rows.new_empty((self.n_targets, *rows.shape[1:]))
        self.at_targets[key][self.rows] = rows

    def embedding(self, _m, _inp, out):
        # A leaf that requires grad makes autograd record the graph downstream of
        # the embedding without ever computing weight gradients.
        out = out.detach().requires_grad_(True)
        self.keep(("write", "embedding"), out.detach()[0, self.at].float().to(self.head))
        return out

    def residual(self, _m, inp) -> None:
        self.keep(("residual",), inp[0].detach()[0, self.at].float().to(self.head))

    def reader(self, path: str):
        def hook(_m, _inp, out):
            self.graph_out[path].append(out)
        return hook

    def writer(self, path: str, post_normed: bool):
        def hook(_m, inp, out):
            self.keep(("in", path), inp[0].detach()[0, self.at].float())
            if post_normed:  # its rms freezes the post-norm; what the stream gets is the norm's output
                self.keep(("out", path), out.detach()[0, self.at].float())
            else:
                self.keep(("write", path), out.detach()[0, self.at].float().to(self.head))
        return hook

    def post_norm(self, path: str):
        def hook(_m, _inp, out):
            self.keep(("write", path), out.detach()[0, self.at].float().to(self.head))
        return hook

    def experts(self, path: str):
        def hook(_m, args, kwargs, out):
            named = dict(zip(("hidden_states", "top_k_index", "top_k_weights"), args, strict=False)) | kwargs
            at = self.at  # the experts see the tokens flattened: [positions of the piece, hidden]
            self.keep(("in", path), named["hidden_states"].detach()[at].float())
            self.keep(("index", path), named["top_k_index"].detach()[at])
            self.keep(("weight", path), named["top_k_weights"].detach()[at].float())
            self.keep(("write", path), out.detach()[at].float().to(self.head))
            self.graph_out[path].append(out)
        return hook

    def attach(self, model: nn.Module, adapter: ArchAdapter, final_norm: nn.Module, readers: dict,
               writers: list[Neurons], experts: dict) -> list:
        """The forward hooks, registered (the caller removes them)."""
        handles = []
        try:
            handles.append(model.get_submodule(adapter.embedding).register_forward_hook(self.embedding))
            handles.append(final_norm.register_forward_pre_hook(self.residual))
            for path in readers:
                handles.append(model.get_submodule(path).register_forward_hook(self.reader(path)))
            for n in writers:
                post = adapter.post_norm(n)
                handles.append(model.get_submodule(n.module).register_forward_hook(
                    self.writer(n.module, post is not None)))
                if post is not None:
                    handles.append(model.get_submodule(post).register_forward_hook(self.post_norm(n.module)))
            for path in experts:
                handles.append(model.get_submodule(path).register_forward_hook(self.experts(path), with_kwargs=True))
        except BaseException:
            for h in handles:
                h.remove()
            raise
        return handles


def _forward_in_pieces(model: nn.Module, adapter: ArchAdapter, capture: _Capture, ids: torch.Tensor,
                       pieces: list[list[int]], targets: list[Target], head: torch.device):
    """The sample's forward, piece by piece (the graph carried across pieces in a KV cache): the final hidden
    state at every target, the device it was computed on, and where each piece starts."""
    backbone = model.get_submodule(adapter.backbone)
    cache = DynamicCache(config=model.config) if len(pieces) > 1 else None
    hidden, starts, start, hidden_device = [], [], 0, None
    with torch.enable_grad():
        for rows in pieces:
            end = targets[rows[-1]].position + 1
            capture.rows = torch.tensor(rows)
            capture.at = torch.tensor([targets[k].position - start for k in rows])
            out = backbone(input_ids=ids[:, start:end], past_key_values=cache, use_cache=cache is not None)
            hidden.append(out.last_hidden_state[0, capture.at].to(head).float())
            hidden_device = out.last_hidden_state.device
            starts.append(start)
            start = end
    return hidden, hidden_device, starts


def attribute_sample(model: nn.Module, adapter: ArchAdapter, neurons: list[Neurons],
                     sample: Sample, targets: list[Target],
                     piece_cost: int | None = None) -> tuple[dict[Neurons, torch.Tensor], torch.Tensor]:
    """Scores [len(targets), n_neurons] per module (float32, on the CPU, in the order of `targets`) and
    |z̃ − z| per target.

    One forward of the sample up to its last target, in the pieces `forward_pieces` chooses (the graph
    carried from piece to piece in a KV cache), then per piece batched backwards (`is_grads_batched`) of
    its targets, as many at a time as `targets_per_backward` allows, each over the positions up to the
    piece's end. The target logit is the unembedding's, before any soft-capping (Gemma 2): cap·tanh(z/cap)
    rises with z, so each target's ranking of neurons, and the reset set, is the same either way.
    """
    weight, bias = _unembed(model, adapter)
    head = weight.device  # per-target vectors are gathered here
    pieces = forward_pieces([t.position for t in targets], piece_cost)
    tokens = torch.tensor([t.token for t in targets], device=head)
    ids = torch.tensor(sample.input_ids[: max(t.position for t in targets) + 1], device=_input_device(model))[None]
    readers, writers, experts = _capture_plan(adapter, neurons)
    final_norm = model.get_submodule(adapter.final_norm)
    capture = _Capture(len(targets), head, [*readers, *experts])
    handles = capture.attach(model, adapter, final_norm, readers, writers, experts)
    try:
        hidden, hidden_device, starts = _forward_in_pieces(model, adapter, capture, ids, pieces, targets, head)
    finally:
        for h in handles:
            h.remove()
    graph_out, at_targets = capture.graph_out, capture.at_targets

    w_y = weight[tokens].float()
    z, point, prefix, experts_grad = _backwards(graph_out, hidden, hidden_device, pieces, starts, targets, w_y,
                                                bias, tokens, readers, experts)

    scores: dict[Neurons, torch.Tensor] = {}
    for m, kinds in readers.items():
        for n in kinds:
            full = prefix[m] if n.kind in ("k_proj", "v_proj") else point[m]
            scores[n] = full if n.span is None else full[:, n.span[0]: n.span[1]]

    d, recon_error = _direction_and_error(adapter, final_norm, at_targets, w_y, z, bias, tokens, head)
    scores.update(_writer_scores(model, adapter, writers, at_targets, d))
    for m, kinds in experts.items():
        kept = {part: at_targets[(part, m)] for part in ("in", "index", "weight")}
        scores.update(_expert_scores(model, m, kinds, kept, experts_grad[m], d))
    return {n: scores[n] for n in neurons}, recon_error
