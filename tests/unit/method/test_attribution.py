import pytest
import torch

from rejuv.data.calibration import Sample
from rejuv.method.arch import READER_KINDS, adapter_for
from rejuv.method.attribution import (
    Target,
    attribute_sample,
    forward_pieces,
    norm_eps,
    response_token_stats,
    select_targets,
)

from tiny import ARCHS, FAMILIES, build_model, perturbed

SEQ = [1, 30, 42, 40, 43, 48, 47, 32, 4, 8, 15, 9, 19, 5, 6, 33, 7, 2]


def setup(arch):
    model, _ = build_model(arch, seed=3)
    model = perturbed(model, seed=4, scale=0.2).requires_grad_(False)
    adapter = adapter_for(model.config.to_dict())
    return model, adapter, adapter.neurons(model.config.to_dict())


def frozen_norm_direction(model, adapter, ids, position, token):
    """d_y(t) from a plain forward pass, independent of the code under test."""
    captured = {}
    norm = model.get_submodule(adapter.final_norm)
    h = norm.register_forward_pre_hook(lambda _m, inp: captured.__setitem__("x", inp[0][0, position].float()))
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0, position].float()
    h.remove()
    x = captured["x"]
    s = torch.rsqrt(x.pow(2).mean() + norm.variance_epsilon)
    return s * norm.weight.float() * model.lm_head.weight[token].float(), x, logits[token]


@pytest.mark.slow
@pytest.mark.parametrize("arch", ARCHS)
def test_decomposition_reconstructs_the_target_logit(arch):
    model, adapter, neurons = setup(arch)
    sample = Sample(SEQ, 8, 1)
    targets = [Target(0, p, SEQ[p + 1], 0.0) for p in (8, 11, 15)]
    scores, err = attribute_sample(model, adapter, neurons, sample, targets)
    assert err.max() < 1e-3
    # Writers are exact: the sum of their scores plus the embedding's share is the frozen-norm logit.
    for k, t in enumerate(targets):
        d, x_last, z = frozen_norm_direction(model, adapter, SEQ, t.position, t.token)
        emb = model.model.embed_tokens.weight[SEQ[t.position]].float()
        writer_sum = sum(float(scores[n][k].sum()) for n in neurons if n.kind not in READER_KINDS)
        assert abs(float(emb @ d) + writer_sum - float(z)) < 1e-3
        assert abs(float(x_last @ d) - float(z)) < 1e-4


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_writer_scores_match_brute_force_ablation(arch):
    model, adapter, neurons = setup(arch)
    position, token = 12, SEQ[13]
    sample = Sample(SEQ, 8, 1)
    scores, _ = attribute_sample(model, adapter, neurons, sample, [Target(0, position, token, 0.0)])
    d, x_last, _ = frozen_norm_direction(model, adapter, SEQ, position, token)
    ids = torch.tensor([SEQ[: position + 1]])
    last = model.config.num_hidden_layers - 1
    for n in neurons:
        if n.kind in READER_KINDS:
            continue
        module = model.get_submodule(n.module)
        out = {}
        h = module.register_forward_hook(lambda _m, _i, o, out=out: out.__setitem__("y", o[0, position].float()))
        with torch.no_grad():
            model(ids)
            write = out["y"].clone()
            for i in range(0, module.weight.shape[1], 7):
                saved = module.weight[:, i].clone()
                module.weight[:, i] = 0
                captured = {}
                hn = model.get_submodule(adapter.final_norm).register_forward_pre_hook(
                    lambda _m, inp, c=captured: c.__setitem__("x", inp[0][0, position].float()))
                model(ids)
                hn.remove()
                module.weight[:, i] = saved
                direct = float((write - out["y"]) @ d)
                assert abs(direct - float(scores[n][0, i])) < 1e-4, (n, i)
                if n.kind == "down_proj" and n.layer == last:
                    # Nothing reads the last MLP's write but the final norm: the whole
                    # frozen-norm logit moves by exactly the score.
                    assert abs(float((x_last - captured["x"]) @ d) - float(scores[n][0, i])) < 1e-4
        h.remove()


def manual_reader_scores(model, n, ids, position, token):
    """grad×act through a zero perturbation added to the module output (single sequence)."""
    module = model.get_submodule(n.module)
    store = {}

    def hook(_m, _i, out):
        delta = torch.zeros_like(out[0], requires_grad=True)
        store["act"], store["delta"] = out[0].detach(), delta
        return out + delta

    h = module.register_forward_hook(hook)
    with torch.enable_grad():
        z = model(torch.tensor([ids])).logits[0, position, token]
        z.backward()
    h.remove()
    contrib = store["act"] * store["delta"].grad
    return contrib[: position + 1].sum(0) if n.kind in ("k_proj", "v_proj") else contrib[position]


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["qwen3", "mistral"])
def test_reader_scores_are_gradient_times_activation(arch):
    model, adapter, neurons = setup(arch)
    position, token = 10, SEQ[11]
    sample = Sample(SEQ, 8, 1)
    scores, _ = attribute_sample(model, adapter, neurons, sample, [Target(0, position, token, 0.0)])
    for n in neurons:
        if n.kind in READER_KINDS:
            expected = manual_reader_scores(model, n, SEQ[: position + 1], position, token)
            torch.testing.assert_close(scores[n][0], expected.float(), rtol=1e-4, atol=1e-6)


def test_batched_targets_do_not_mix():
    model, adapter, neurons = setup("llama")
    sample = Sample(SEQ, 8, 1)
    targets = [Target(0, p, SEQ[p + 1], 0.0) for p in (8, 12, 16)]
    together, _ = attribute_sample(model, adapter, neurons, sample, targets)
    for k, t in enumerate(targets):
        alone, _ = attribute_sample(model, adapter, neurons, sample, [t])
        for n in neurons:
            torch.testing.assert_close(together[n][k], alone[n][0], rtol=1e-4, atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("tied", [False, True])
@pytest.mark.parametrize("piece_cost", [10**6, 1])
def test_one_forward_per_sample_gives_the_scores_of_a_copy_per_target(arch, tied, piece_cost):
    """One forward per sample equals the previous path (a copy of the sample per target) to float rounding,
    for targets given in any order, far apart or adjacent, with the last position included; in one piece
    and in five (the graph carried through the KV cache)."""
    from attribution_copies import attribute_with_copies

    model, _ = build_model(arch, seed=3, tied=tied, layers=3)
    model = perturbed(model, seed=4, scale=0.2).requires_grad_(False)
    adapter = adapter_for(model.config.to_dict())
    neurons = adapter.neurons(model.config.to_dict())
    ids = [int(i) for i in torch.randint(3, model.config.vocab_size, (41,), generator=torch.Generator().manual_seed(1))]
    sample = Sample(ids, 10, 0)
    targets = [Target(0, p, ids[p + 1], 0.0) for p in (21, 12, 39, 13, 30, 9)]
    with torch.no_grad():  # as the calibration passes call it
        new, new_err = attribute_sample(model, adapter, neurons, sample, targets, piece_cost)
    assert len(forward_pieces([t.position for t in targets], piece_cost)) == (5 if piece_cost == 1 else 1)
    old, old_err = attribute_with_copies(model, adapter, neurons, sample, targets, max_copies=2)
    for n in neurons:
        torch.testing.assert_close(new[n], old[n], rtol=1e-4, atol=1e-6 * float(old[n].abs().max()))
        assert torch.equal(new[n].argsort(dim=1, descending=True)[:, :3], old[n].argsort(dim=1, descending=True)[:, :3])
    torch.testing.assert_close(new_err, old_err, rtol=0, atol=1e-4)


@pytest.mark.parametrize("piece_cost", [10**6, 1])
def test_chunks_of_targets_give_the_same_scores_and_follow_free_memory(monkeypatch, piece_cost):
    """Fewer targets per batched backward (less free memory) changes nothing but the memory (on the CPU not
    a bit, so output bytes do not depend on the machine's load; also checked at hidden 512), in one forward
    piece or several; the chunk is half the free memory over twice a target's reader gradients, at least
    one, at most every target."""
    import rejuv.method.attribution as attribution

    model, _ = build_model("llama", seed=3, layers=2)
    model = perturbed(model, seed=4, scale=0.2).requires_grad_(False)
    adapter = adapter_for(model.config.to_dict())
    neurons = adapter.neurons(model.config.to_dict())
    ids = [int(i) for i in torch.randint(3, model.config.vocab_size, (30,), generator=torch.Generator().manual_seed(2))]
    sample = Sample(ids, 8, 0)
    targets = [Target(0, p, ids[p + 1], 0.0) for p in (20, 9, 28, 15, 11)]
    with torch.no_grad():
        whole, _ = attribute_sample(model, adapter, neurons, sample, targets, piece_cost)
        monkeypatch.setattr(attribution, "targets_per_backward", lambda n, b, d: 2)
        chunked, _ = attribute_sample(model, adapter, neurons, sample, targets, piece_cost)
    assert len(forward_pieces([t.position for t in targets], piece_cost)) == (5 if piece_cost == 1 else 1)
    for n in neurons:  # bit for bit: the chunk follows free memory, and outputs must not depend on it
        assert torch.equal(chunked[n], whole[n]), n
    monkeypatch.undo()
    cpu = torch.device("cpu")
    free = next(int(line.split()[1]) * 1024 for line in open("/proc/meminfo") if line.startswith("MemAvailable:"))
    assert attribution.targets_per_backward(8, free // 20, cpu) in (4, 5)  # free/2 over 2·free/20, to the page
    assert attribution.targets_per_backward(8, free, cpu) == 1
    assert attribution.targets_per_backward(8, 1, cpu) == 8


def test_forward_pieces_minimise_backward_positions_plus_a_cost_per_piece():
    """Targets at 100..255 (8): the optimum by brute force over every contiguous grouping; a large cost per
    piece gives one piece, none gives a piece per distinct position; targets at one position never split."""
    import itertools

    positions = [255, 100, 150, 200, 120, 180, 230, 250]
    order = sorted(range(8), key=lambda k: positions[k])

    def cost(groups, c):
        return sum(len(g) * (positions[g[-1]] + 1) + c for g in groups)

    for c in (0, 16, 64, 1000):
        best = min(cost([order[a:b] for a, b in zip((0, *cuts), (*cuts, 8), strict=True)], c)
                   for r in range(8) for cuts in itertools.combinations(range(1, 8), r))
        pieces = forward_pieces(positions, c)
        assert sorted(k for g in pieces for k in g) == list(range(8))
        assert [positions[g[-1]] for g in pieces] == sorted(positions[g[-1]] for g in pieces)
        assert cost(pieces, c) == best
    assert forward_pieces(positions, 10**6) == [order]
    assert len(forward_pieces(positions, 0)) == 8
    assert forward_pieces([7, 3, 7, 3], 0) == [[1, 3], [0, 2]]


def test_a_model_placed_by_device_map_auto_gives_the_same_scores(tmp_path):
    """device="auto" (accelerate's placement) is accepted and changes nothing; with no GPU here every layer
    lands on the CPU, so the multi-device paths (inputs to the embedding's device, per-target vectors to the
    head's) run but all on one device."""
    from rejuv.modeling import load_frozen_model

    from tiny import save

    model, tok = build_model("llama", seed=3)
    save(perturbed(model, seed=4, scale=0.2), tok, tmp_path / "m")
    placed = load_frozen_model(tmp_path / "m", device="auto", progress=False)
    plain = load_frozen_model(tmp_path / "m", device="cpu", progress=False)
    adapter = adapter_for(plain.config.to_dict())
    neurons = adapter.neurons(plain.config.to_dict())
    sample = Sample(SEQ, 8, 1)
    targets = [Target(0, p, SEQ[p + 1], 0.0) for p in (9, 14)]
    ours, err = attribute_sample(placed, adapter, neurons, sample, targets)
    ref, _ = attribute_sample(plain, adapter, neurons, sample, targets)
    assert err.max() < 1e-3
    for n in neurons:
        torch.testing.assert_close(ours[n], ref[n])
    stats = response_token_stats(placed, adapter, [sample])[0]
    torch.testing.assert_close(stats.entropy, response_token_stats(plain, adapter, [sample])[0].entropy)


def test_entropy_stats_and_target_selection():
    model, adapter, _ = setup("llama")
    samples = [Sample(SEQ, 8, 1), Sample(SEQ[:12], 5, 2)]
    stats = response_token_stats(model, adapter, samples, batch_size=2)
    assert [len(s.entropy) for s in stats] == [len(SEQ) - 8, 12 - 5]
    # Padding in a batch changes nothing.
    alone = response_token_stats(model, adapter, samples[1:], batch_size=1)
    torch.testing.assert_close(stats[1].entropy, alone[0].entropy, rtol=1e-5, atol=1e-6)
    with torch.no_grad():
        logits = model(torch.tensor([SEQ])).logits[0, 7:-1].float()
    p = logits.softmax(-1)
    torch.testing.assert_close(stats[0].entropy, -(p * p.log()).sum(-1), rtol=1e-4, atol=1e-5)
    lowered = [type(s)(s.entropy * 0.5, s.top1, s.argmax, s.gold_logprob) for s in stats]
    targets = select_targets(samples, stats, lowered, per_sample=3)
    assert len(targets) == 6
    first = [t for t in targets if t.sample == 0]
    gaps = (stats[0].entropy * 0.5).abs()
    assert sorted(t.position - 7 for t in first) == sorted(torch.topk(gaps, 3).indices.tolist())
    assert all(t.token == SEQ[t.position + 1] for t in first)
    argmax_targets = select_targets(samples, stats, lowered, per_sample=2, token="argmax")
    assert all(t.token == int(lowered[t.sample].argmax[t.position - samples[t.sample].predict_positions.start])
               for t in argmax_targets)


# -- the families with more roles (issue 33): each check is computed from the model's own forward, with the
# -- roles spelled out here from the modeling code, not taken from the adapter ------------------------------
NORM_OFFSET = {"gemma2": 1.0, "gemma3_text": 1.0}  # Gemma's RMSNorm scales by (1 + weight)
POST_NORMS = {"gemma2", "gemma3_text", "olmo2"}  # post_attention_layernorm / post_feedforward_layernorm
FUSED = {"phi3": {"self_attn.qkv_proj": ((0, 32), (32, 48), (48, 64)), "mlp.gate_up_proj": ((0, 64), (64, 128))}}


def family_setup(arch):
    model, _ = build_model(arch, seed=3)
    model = perturbed(model, seed=4, scale=0.2).requires_grad_(False)
    adapter = adapter_for(model.config.to_dict())
    return model, adapter, adapter.neurons(model.config.to_dict())


def direction_and_logit(model, ids, position, token):
    """d_y(t) through the frozen final norm (with Gemma's 1 + weight), the final norm's input at t, and the
    target's logit before soft-capping, from the backbone's own output."""
    captured = {}
    norm = model.model.norm
    h = norm.register_forward_pre_hook(lambda _m, inp: captured.__setitem__("x", inp[0][0, position].float()))
    with torch.no_grad():
        last = model.model(torch.tensor([ids])).last_hidden_state[0, position].float()
    h.remove()
    x = captured["x"]
    eps = getattr(norm, "variance_epsilon", getattr(norm, "eps", None))
    gain = NORM_OFFSET.get(model.config.model_type, 0.0) + norm.weight.float()
    d = torch.rsqrt(x.pow(2).mean() + eps) * gain * model.lm_head.weight[token].float()
    return d, x, float(last @ model.lm_head.weight[token].float())


@pytest.mark.slow
@pytest.mark.parametrize("arch", FAMILIES)
def test_family_writer_scores_are_measured_ablations_and_sum_to_the_logit(arch):
    """Every writer neuron's score is the change in the target logit when its column is zeroed, measured at
    what the layer adds to the stream, through the frozen final norm and (Gemma, OLMo 2) the frozen post-norm;
    an expert's down neuron is measured at the experts' output, through its routing weight. The scores plus
    the embedding's share add up to the logit."""
    model, adapter, neurons = family_setup(arch)
    position, token = 12, SEQ[13]
    scores, err = attribute_sample(model, adapter, neurons, Sample(SEQ, 8, 1), [Target(0, position, token, 0.0)])
    assert float(err.max()) < 1e-4
    d, x_last, z = direction_and_logit(model, SEQ, position, token)
    assert abs(float(x_last @ d) - z) < 1e-4  # the frozen-norm direction is the real one (offset included)
    ids = torch.tensor([SEQ[: position + 1]])
    total = float(model.model.embed_tokens(torch.tensor(SEQ[position]))[None].float() @ d)
    offset = NORM_OFFSET.get(arch, 0.0)
    for n in neurons:
        if n.kind in READER_KINDS:
            continue
        layer = model.model.layers[n.layer]
        if n.expert is None:
            module = model.get_submodule(n.module)
            column = lambda i, m=module: m.weight[:, i]  # noqa: E731
            watched = module
        else:
            stacked = layer.mlp.experts.down_proj
            column = lambda i, s=stacked, e=n.expert: s[e][:, i]  # noqa: E731
            watched = layer.mlp.experts
        out = {}
        h = watched.register_forward_hook(lambda _m, _i, o, out=out: out.__setitem__("y", o.reshape(-1, o.shape[-1])
                                                                                   [position].float()))
        with torch.no_grad():
            model(ids)
            clean = out["y"].clone()
            scale = torch.ones_like(clean)
            if arch in POST_NORMS:  # the post-norm, frozen at the clean output's rms
                post = layer.post_attention_layernorm if n.kind == "o_proj" else layer.post_feedforward_layernorm
                scale = (offset + post.weight.float()) * torch.rsqrt(clean.pow(2).mean() + norm_eps(post))
            for i in range(0, scores[n].shape[1], 5):
                saved = column(i).clone()
                column(i).zero_()
                model(ids)
                column(i).copy_(saved)
                direct = float(((clean - out["y"]) * scale) @ d)
                assert abs(direct - float(scores[n][0, i])) < 1e-4 * max(1.0, abs(direct)), (n, i)
        h.remove()
        total += float(scores[n][0].sum())
    if arch not in POST_NORMS:  # with post-norms a writer's bias-free share is its whole write
        assert abs(total - z) < 1e-3


def manual_family_reader_scores(model, arch, position, token):
    """grad×act of the pre-cap target logit for every reader kind, through zero perturbations added where
    each kind's values are made: a Linear's output (sliced for Phi-3's fused rows), or, for experts, each
    expert's gate and up outputs at every position in a dense re-implementation of the experts' forward
    (an expert the router skipped gets weight 0, so its gradient is 0)."""
    store, hooks = {}, []

    def linear_hook(name):
        def hook(_m, _i, out):
            delta = torch.zeros_like(out, requires_grad=True)
            store[name] = (out.detach(), delta)
            return out + delta
        return hook

    for layer_index, layer in enumerate(model.model.layers):
        for name, module in layer.named_modules():
            if isinstance(module, torch.nn.Linear) and name.split(".")[-1] in (
                    "q_proj", "k_proj", "v_proj", "gate_proj", "up_proj", "qkv_proj", "gate_up_proj"):
                hooks.append(module.register_forward_hook(linear_hook((layer_index, name))))
        experts = getattr(layer.mlp, "experts", None)
        if experts is not None:
            def dense(hidden, top_k_index, top_k_weights, m=experts, key=layer_index):
                width = m.down_proj.shape[-1]
                out = torch.zeros_like(hidden)
                for e in range(m.gate_up_proj.shape[0]):
                    pre = hidden @ m.gate_up_proj[e].T
                    dg = torch.zeros_like(pre[:, :width], requires_grad=True)
                    du = torch.zeros_like(pre[:, width:], requires_grad=True)
                    store[(key, "experts", e)] = (pre.detach(), dg, du)
                    routed = (top_k_weights * (top_k_index == e)).sum(-1, keepdim=True)
                    out = out + routed * ((m.act_fn(pre[:, :width] + dg) * (pre[:, width:] + du)) @ m.down_proj[e].T)
                return out
            experts.forward = dense
    try:
        with torch.enable_grad():
            hidden = model.model(torch.tensor([SEQ[: position + 1]])).last_hidden_state[0, position]
            (hidden.float() @ model.lm_head.weight[token].float()).backward()
    finally:
        for h in hooks:
            h.remove()
        for layer in model.model.layers:
            if getattr(layer.mlp, "experts", None) is not None:
                del layer.mlp.experts.forward
    found = {}
    for key, value in store.items():
        if key[1] == "experts":
            pre, dg, du = value
            width = dg.shape[-1]
            found[(key[0], "gate_proj", key[2])] = (pre[:, :width] * dg.grad)[position]
            found[(key[0], "up_proj", key[2])] = (pre[:, width:] * du.grad)[position]
            continue
        out, delta = value
        contrib = (out * delta.grad)[0]
        kinds = {"self_attn.qkv_proj": ("q_proj", "k_proj", "v_proj"), "mlp.gate_up_proj": ("gate_proj", "up_proj")}
        for k, (a, b) in zip(kinds.get(key[1], (key[1].split(".")[-1],)),
                             FUSED.get(arch, {}).get(key[1], ((0, contrib.shape[-1]),)), strict=True):
            part = contrib[:, a:b]
            found[(key[0], k, None)] = part.sum(0) if k in ("k_proj", "v_proj") else part[position]
    return found


@pytest.mark.slow
@pytest.mark.parametrize("arch", FAMILIES)
def test_family_reader_scores_are_gradient_times_activation(arch):
    model, adapter, neurons = family_setup(arch)
    position, token = 10, SEQ[11]
    scores, _ = attribute_sample(model, adapter, neurons, Sample(SEQ, 8, 1), [Target(0, position, token, 0.0)])
    expected = manual_family_reader_scores(model, arch, position, token)
    readers = [n for n in neurons if n.kind in READER_KINDS]
    assert {(n.layer, n.kind, n.expert) for n in readers} == set(expected)
    for n in readers:
        torch.testing.assert_close(scores[n][0], expected[n.layer, n.kind, n.expert].float(), rtol=1e-4, atol=1e-6)
    if arch in ("mixtral", "qwen3_moe"):  # experts the router skipped at the target score exactly 0
        assert any(not scores[n].any() for n in readers if n.expert is not None)


@pytest.mark.slow
@pytest.mark.parametrize("arch", FAMILIES)
def test_family_scores_are_the_same_in_one_forward_piece_or_many_and_stats_follow_the_model(arch):
    """Pieces carried through the KV cache (Gemma's sliding window of 8 is shorter than the sequence) give
    the scores of one piece; the token statistics are those of the model's own logits, soft-capped (Gemma 2)."""
    model, adapter, neurons = family_setup(arch)
    targets = [Target(0, p, SEQ[p + 1], 0.0) for p in (8, 11, 15, 16)]
    one, err_one = attribute_sample(model, adapter, neurons, Sample(SEQ, 8, 1), targets, piece_cost=10**6)
    many, err_many = attribute_sample(model, adapter, neurons, Sample(SEQ, 8, 1), targets, piece_cost=1)
    assert float(err_one.max()) < 1e-4 and float(err_many.max()) < 1e-4
    for n in neurons:
        torch.testing.assert_close(many[n], one[n], rtol=1e-4, atol=1e-5 * max(1.0, float(one[n].abs().max())))
    stats = response_token_stats(model, adapter, [Sample(SEQ, 8, 1)])[0]
    with torch.no_grad():
        logits = model(torch.tensor([SEQ])).logits[0, 7:-1].float()
    if arch == "gemma2":
        assert float(logits.abs().max()) < 3.0  # the cap of 3 bites
    p = logits.softmax(-1)
    torch.testing.assert_close(stats.entropy, -(p * p.log()).sum(-1), rtol=1e-4, atol=1e-5)
