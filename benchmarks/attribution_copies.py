"""The attribution of rejuv 0.1 before issue 18, kept as the benchmark's "before" and the tests' reference:
the sample repeated once per target along the batch axis, one batched forward and backward per group.

Gradients of different targets never mix: rows of a batch do not interact in a decoder, and copy k
back-propagates only its own target logit. Every copy runs up to the group's last target, so
`group_targets` puts targets of similar position together, within a slack of the per-target floor.
It pays a forward and a backward of each target's prefix; `rejuv.method.attribution.attribute_sample` pays one
forward of the sample and a backward of each target's prefix, with scores equal to float rounding.
"""

from __future__ import annotations

import torch
from torch import nn

from rejuv.data.calibration import Sample
from rejuv.method.arch import READER_KINDS, ArchAdapter, Neurons
from rejuv.method.attribution import Target, _input_device, _unembed, norm_eps


def group_targets(targets: list[Target], max_copies: int, slack: float = 1.25) -> list[list[Target]]:
    """Split one sample's targets into attribution batches of at most `max_copies`.

    A batch runs every copy up to its last target, so it costs copies × longest
    prefix; targets are taken longest first and a batch is closed when that cost
    would exceed `slack` × the sum of its own prefix lengths (the floor).
    """
    groups: list[list[Target]] = []
    for t in sorted(targets, key=lambda t: (-t.position, t.token)):
        group = groups[-1] if groups else None
        if group is not None and len(group) < max_copies:
            longest = group[0].position + 1
            own = sum(g.position + 1 for g in group) + t.position + 1
            if (len(group) + 1) * longest <= slack * own:
                group.append(t)
                continue
        groups.append([t])
    return groups


def attribute_sample_copies(model: nn.Module, adapter: ArchAdapter, neurons: list[Neurons],
                     sample: Sample, targets: list[Target]) -> tuple[dict[Neurons, torch.Tensor], torch.Tensor]:
    """Scores [len(targets), n_neurons] per module (float32, on the CPU) and |z̃ − z| per target."""
    weight, bias = _unembed(model, adapter)
    head = weight.device  # per-target vectors are gathered here
    positions = torch.tensor([t.position for t in targets])  # index tensors stay on the CPU: valid for any device
    tokens = torch.tensor([t.token for t in targets], device=head)
    copies = len(targets)
    length = int(positions.max()) + 1  # nothing after the last target can affect it
    ids = torch.tensor(sample.input_ids[:length], device=_input_device(model)).expand(copies, length)
    rows = torch.arange(copies)

    reader_out: dict[Neurons, torch.Tensor] = {}
    writer_in: dict[Neurons, torch.Tensor] = {}
    writes: list[torch.Tensor] = []
    residual: dict[str, torch.Tensor] = {}
    hooks = []

    def embed_hook(_m, _inp, out):
        # A leaf that requires grad makes autograd record the graph downstream of
        # the embedding without ever computing weight gradients.
        out = out.detach().requires_grad_(True)
        writes.append(out.detach()[rows, positions].float().to(head))
        return out

    def reader_hook(key):
        def hook(_m, _inp, out):
            reader_out[key] = out
        return hook

    def writer_hook(key):
        def hook(_m, inp, out):
            writer_in[key] = inp[0].detach()[rows, positions].float()
            writes.append(out.detach()[rows, positions].float().to(head))
        return hook

    def norm_hook(_m, inp):
        residual["x"] = inp[0].detach()[rows, positions].float().to(head)

    final_norm = model.get_submodule(adapter.final_norm)
    try:
        hooks.append(model.get_submodule(adapter.embedding).register_forward_hook(embed_hook))
        hooks.append(final_norm.register_forward_pre_hook(norm_hook))
        for n in neurons:
            module = model.get_submodule(n.module)
            hook = reader_hook(n) if n.kind in READER_KINDS else writer_hook(n)
            hooks.append(module.register_forward_hook(hook))
        with torch.enable_grad():
            backbone = model.get_submodule(adapter.backbone)
            hidden = backbone(input_ids=ids, use_cache=False).last_hidden_state
            w_y = weight[tokens]
            z = (hidden[rows, positions].to(head).float() * w_y.float()).sum(-1)
            if bias is not None:
                z = z + bias[tokens].float()
            readers = [n for n in neurons if n.kind in READER_KINDS]
            # Copy k's logit depends only on copy k, so one backward of the sum
            # yields every target's own gradient, unmixed.
            grads = torch.autograd.grad(z.sum(), [reader_out[n] for n in readers])
    finally:
        for h in hooks:
            h.remove()

    # Frozen final norm: d_y = γ ⊙ W_U[y] / rms(x_L).
    x_last = residual["x"]
    gamma = final_norm.weight.float().to(head)
    inv_rms = torch.rsqrt(x_last.pow(2).mean(-1, keepdim=True) + norm_eps(final_norm))
    d = inv_rms * gamma * w_y.float().detach()
    z_tilde = (torch.stack(writes).sum(0) * d).sum(-1)
    if bias is not None:
        z_tilde = z_tilde + bias[tokens].float()
    recon_error = (z_tilde - z.detach()).abs().cpu()

    scores: dict[Neurons, torch.Tensor] = {}
    for n, g in zip(readers, grads, strict=True):
        contrib = reader_out[n].detach().float() * g.float()  # [copies, length, out]
        if n.kind in ("k_proj", "v_proj"):
            prefix = torch.arange(length)[None, :] <= positions[:, None]
            scores[n] = (contrib * prefix[..., None].to(contrib.device)).sum(1).cpu()
        else:
            scores[n] = contrib[rows, positions].cpu()
    for n in neurons:
        if n.kind in READER_KINDS:
            continue
        w = model.get_submodule(n.module).weight  # [hidden, in], on its layer's device
        scores[n] = (writer_in[n] * (d.to(w.device) @ w.float())).cpu()
    return scores, recon_error


def attribute_with_copies(model: nn.Module, adapter: ArchAdapter, neurons: list[Neurons], sample: Sample,
                          targets: list[Target], max_copies: int = 8, slack: float = 1.25
                          ) -> tuple[dict[Neurons, torch.Tensor], torch.Tensor]:
    """Scores and |z̃ − z| for `targets` in their order, as `rejuv.method.attribution.attribute_sample` returns them."""
    scores: dict[Neurons, list[torch.Tensor]] = {n: [None] * len(targets) for n in neurons}
    errors = [None] * len(targets)
    index = {t: k for k, t in enumerate(targets)}
    for group in group_targets(targets, max_copies, slack):
        got, err = attribute_sample_copies(model, adapter, neurons, sample, group)
        for row, t in enumerate(group):
            for n in neurons:
                scores[n][index[t]] = got[n][row]
            errors[index[t]] = err[row]
    return {n: torch.stack(v) for n, v in scores.items()}, torch.stack(errors)
