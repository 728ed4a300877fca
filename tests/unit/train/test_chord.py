"""CHORD and the hard-sample filter against hand computations: µ schedule, φ-weighted SFT loss, expert
batches, constant groups."""

import math

import pytest
import torch

from rejuv.train.chord import ChordSchedule, ExpertBatches, chord_sft_loss


def test_mu_warms_up_linearly_then_decays_on_a_half_cosine_to_the_valley():
    s = ChordSchedule(peak=0.9, valley=0.05, warmup_steps=10, decay_steps=20)
    assert s.mu(0) == 0.0 and s.mu(5) == pytest.approx(0.45) and s.mu(10) == pytest.approx(0.9)
    assert s.mu(20) == pytest.approx(0.05 + 0.85 * 0.5 * (1 + math.cos(math.pi / 2)))  # halfway: 0.475
    assert s.mu(25) == pytest.approx(0.05 + 0.85 * 0.5 * (1 + math.cos(math.pi * 0.75)))
    assert s.mu(30) == pytest.approx(0.05) and s.mu(31) == 0.05 and s.mu(10_000) == 0.05
    paper_mu = ChordSchedule()  # CHORD-µ: peak 0.9 at step 0, valley 0.05 from step 200
    assert paper_mu.mu(0) == pytest.approx(0.9) and paper_mu.mu(100) == pytest.approx(0.475)
    assert paper_mu.mu(200) == pytest.approx(0.05)
    paper_phi = ChordSchedule(peak=0.1, valley=0.1, phi=True)  # CHORD-φ: constant 0.1
    assert [paper_phi.mu(t) for t in (0, 7, 150, 999)] == pytest.approx([0.1] * 4)


def test_sft_loss_and_phi_weights_by_hand():
    p = torch.tensor([[0.5, 0.9], [0.2, 0.7]])
    logps = p.log().requires_grad_(True)
    mask = torch.tensor([[1, 1], [1, 0]])  # the last token is padding
    plain = chord_sft_loss(logps, mask, phi=False)
    assert plain.item() == pytest.approx(-(math.log(0.5) + math.log(0.9) + math.log(0.2)) / 3)
    weighted = chord_sft_loss(logps, mask, phi=True)
    w = [0.5 * 0.5, 0.9 * 0.1, 0.2 * 0.8]  # φ = p(1 − p)
    assert weighted.item() == pytest.approx(-(w[0] * math.log(0.5) + w[1] * math.log(0.9) + w[2] * math.log(0.2)) / 3)
    weighted.backward()  # φ is detached: the gradient is −φ/n per token, not the derivative of φ·log p
    expected = torch.tensor([[-w[0] / 3, -w[1] / 3], [-w[2] / 3, 0.0]])
    torch.testing.assert_close(logps.grad, expected)


def test_expert_batches_cycle_in_a_seeded_order_and_mark_completion_targets():
    rows = [([1, 2], [3, 4, 9]), ([5], [6, 9]), ([7, 8, 8], [9])]
    a, b = ExpertBatches(rows, 2, seed=3, pad_id=0), ExpertBatches(rows, 2, seed=3, pad_id=0)
    seen = []
    for _ in range(3):  # 6 rows drawn: every row exactly twice over two passes
        ids, attention, target = a.next("cpu")
        assert torch.equal(ids, b.next("cpu")[0])
        for i in range(2):
            n = int(attention[i].sum())
            row = next(r for r in rows if r[0] + r[1] == ids[i, :n].tolist())
            seen.append(rows.index(row))
            # targets are the positions whose next token is a completion token
            assert target[i].nonzero().flatten().tolist() == list(range(len(row[0]) - 1, n - 1))
            assert ids[i, n:].eq(0).all()
    assert sorted(seen) == [0, 0, 1, 1, 2, 2]


def test_constant_groups_by_hand():
    from rejuv.train.grpo import constant_groups

    nan = float("nan")
    rewards = torch.tensor([1.0, 1.0, -1.0, 1.0, -1.0, -1.0, -1.0, -1.0, 1.0, 1.0, 1.0, 1.0, nan, 0.5, 0.5, 0.5])
    assert constant_groups(rewards, 4).tolist() == [False] * 4 + [True] * 4 + [True] * 4 + [True] * 4
    assert constant_groups(torch.tensor([0.0, 0.5]), 2).tolist() == [False, False]


def test_pear_weights_by_hand_for_each_variant():
    from rejuv.train.pear import PearSettings, pear_log_weights, pear_loss

    ell = torch.tensor([[0.5, -1.0, 3.0, 9.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])  # the last position is padding: ignored
    token = pear_log_weights(ell, mask, PearSettings("token", clip=2.0))
    torch.testing.assert_close(token, torch.tensor([[0.5, -1.0, 2.0, 0.0]]))  # 3.0 clipped to 2.0
    block = pear_log_weights(ell, mask, PearSettings("block", clip=2.0, gamma=0.5))
    s2 = 3.0
    s1 = -1.0 + 0.5 * s2  # 0.5
    s0 = 0.5 + 0.5 * s1  # 0.75
    torch.testing.assert_close(block, torch.tensor([[s0, s1, 2.0, 0.0]]))  # s2 = 3 clipped
    seq = pear_log_weights(ell, mask, PearSettings("sequence", clip=2.0))
    torch.testing.assert_close(seq, torch.tensor([[2.0, 2.0, 2.0, 0.0]]))  # Σ = 2.5, clipped
    seq_low = pear_log_weights(torch.tensor([[-3.0, -0.5]]), torch.ones(1, 2), PearSettings("sequence", clip=2.0))
    torch.testing.assert_close(seq_low, torch.tensor([[-2.0, -2.0]]))
    # The loss: −Σ w·log p / n with w = exp(log w), weights detached; no behaviour model means log π_β = 0.
    logps = torch.tensor([[-0.1, -2.0]], requires_grad=True)
    loss, mean_w = pear_loss(logps, None, torch.ones(1, 2), PearSettings("token", clip=1.0))
    w = [math.exp(-0.1), math.exp(-1.0)]  # log ratios −0.1 and −2.0, the second clipped to −1
    assert loss.item() == pytest.approx(-(w[0] * -0.1 + w[1] * -2.0) / 2)
    assert mean_w.item() == pytest.approx(sum(w) / 2)
    loss.backward()
    torch.testing.assert_close(logps.grad, torch.tensor([[-w[0] / 2, -w[1] / 2]]))
    behavior = torch.tensor([[-0.1, -2.0]])  # data from the policy itself: every ratio is 1
    loss, mean_w = pear_loss(logps.detach(), behavior, torch.ones(1, 2), PearSettings("block"))
    assert mean_w.item() == pytest.approx(1.0) and loss.item() == pytest.approx(1.05)
