"""critics/networks.py: the batched ensemble is exactly E separate MLPs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from safecritic.critics.networks import (
    MLP, EnsembleLinear, EnsembleMLP, NarrowEnsembleHead, NarrowEnsembleLinear, Normalizer,
)
from safecritic.critics.q_ensemble import QEnsemble


def _as_separate_mlps(ens: EnsembleMLP, in_dim: int, hidden: list[int], out_dim: int) -> list[MLP]:
    mlps = []
    for e in range(ens.members):
        mlp = MLP(in_dim, hidden, out_dim)
        linears = [m for m in mlp.net if isinstance(m, nn.Linear)]
        for lin, ens_lin in zip(linears, [*ens.linears, ens.head]):
            lin.weight.data.copy_(ens_lin.weight.data[e].T)
            lin.bias.data.copy_(ens_lin.bias.data[e, 0])
        mlps.append(mlp)
    return mlps


def test_ensemble_equals_separate_mlps_forward_and_backward():
    torch.manual_seed(0)
    ens = EnsembleMLP(3, 5, [16, 8], 2)
    mlps = _as_separate_mlps(ens, 5, [16, 8], 2)
    x = torch.randn(7, 5)
    out = ens(x)  # shared input
    assert out.shape == (3, 7, 2)
    for e, mlp in enumerate(mlps):
        torch.testing.assert_close(out[e], mlp(x), rtol=1e-5, atol=1e-6)
    per_member = torch.randn(3, 7, 5)  # one input per member
    out = ens(per_member)
    for e, mlp in enumerate(mlps):
        torch.testing.assert_close(out[e], mlp(per_member[e]), rtol=1e-5, atol=1e-6)
    out.sum().backward()
    sum(m(per_member[e]).sum() for e, m in enumerate(mlps)).backward()
    for e, mlp in enumerate(mlps):
        first = [m for m in mlp.net if isinstance(m, nn.Linear)][0]
        torch.testing.assert_close(ens.linears[0].weight.grad[e], first.weight.grad.T, rtol=1e-4, atol=1e-5)


def test_inference_head_computes_the_same_map_and_scripts():
    """The gate's head layout (NarrowEnsembleLinear) changes the kernel, not the values."""
    torch.manual_seed(0)
    ens = EnsembleMLP(2, 5, [16, 8], 2)
    x = torch.randn(30, 5)
    before = ens(x).detach()
    ens.use_inference_head()
    assert isinstance(ens.head, NarrowEnsembleLinear) and (ens.head.in_dim, ens.head.out_dim) == (8, 2)
    torch.testing.assert_close(ens(x), before, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(torch.jit.script(ens)(x), before, rtol=1e-6, atol=1e-6)
    ens.use_inference_head()  # idempotent: already swapped
    assert not isinstance(ens.head, EnsembleLinear)
    assert ens.flops_per_row() == 2 * 2 * (5 * 16 + 16 * 8 + 8 * 2)


@pytest.mark.parametrize("out_dim", [1, 2, 3])
@pytest.mark.parametrize("bf16", [False, True])
def test_narrow_head_trains_with_autograds_exact_gradients(out_dim: int, bf16: bool):
    """The critics' 1-2 wide heads use a hand-written backward (faster MKL layouts): it must
    give autograd's gradients to the bit, in fp32 and under bf16 autocast, or training runs
    would change."""
    torch.manual_seed(0)
    fast = EnsembleMLP(2, 6, [32, 32], out_dim)
    assert type(fast.head) is NarrowEnsembleHead
    plain = EnsembleMLP(2, 6, [32, 32], out_dim)
    plain.load_state_dict(fast.state_dict())  # the same parameter names and shapes
    plain.head.__class__ = EnsembleLinear  # autograd's own backward of baddbmm
    x = torch.randn(2, 300, 6)
    results = []
    for net in (fast, plain):
        xi = x.clone().requires_grad_(True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            y = net(xi)
        assert ("NarrowHead" in type(y.grad_fn).__name__) == (net is fast)  # the hand-written backward runs
        (y.float() ** 2).sum().backward()
        results.append((y.detach(), xi.grad, [p.grad for p in net.parameters()]))
    (y_fast, dx_fast, grads_fast), (y_plain, dx_plain, grads_plain) = results
    assert y_fast.dtype == (torch.bfloat16 if bf16 else torch.float32)
    assert torch.equal(y_fast, y_plain) and torch.equal(dx_fast, dx_plain)
    for g_fast, g_plain in zip(grads_fast, grads_plain):
        assert g_fast.dtype == g_plain.dtype == torch.float32
        assert torch.equal(g_fast, g_plain)
    # Frozen critic, gradients into the actions only (the actor step): no weight gradient.
    weight_grad = fast.head.weight.grad.clone()
    fast.requires_grad_(False)
    xi = x.clone().requires_grad_(True)
    fast(xi).sum().backward()
    assert xi.grad is not None and torch.equal(fast.head.weight.grad, weight_grad)  # nothing accumulated
    # It scripts (a plain baddbmm there), with the eager values.
    torch.testing.assert_close(torch.jit.script(fast)(x), fast(x), rtol=0, atol=0)
    assert type(EnsembleMLP(2, 6, [32], 4).head) is EnsembleLinear  # wider heads keep autograd's backward


def test_members_are_initialised_independently():
    ens = EnsembleMLP(4, 3, [32], 1)
    w = ens.linears[0].weight.data
    assert not torch.allclose(w[0], w[1])
    assert w.abs().max() <= 1 / 3**0.5 + 1e-6  # nn.Linear's default bound 1/sqrt(in)


def test_q_ensemble_has_a_task_head_and_two_accident_heads():
    torch.manual_seed(0)
    obs, act = torch.randn(5, 4), torch.rand(6, 5, 2) * 2 - 1
    q = QEnsemble(4, 2, [8], members=2, cost_heads=2)
    task, cost = q(obs, act)
    assert task.shape == (2, 6, 5) and cost.shape == (2, 6, 5, 2)
    single_task, single_cost = q(obs, act[0])
    torch.testing.assert_close(single_task, task[:, 0])
    torch.testing.assert_close(single_cost, cost[:, 0])
    assert (q.cost_value(cost) >= 0).all() and (q.cost_value(cost) <= 1).all()
    plain = QEnsemble(4, 2, [8], members=2, cost_heads=0)
    assert plain(obs, act)[1] is None and not plain.has_cost
    # The heads share the trunk: two more heads cost a few outputs, not another network.
    wide = lambda heads: QEnsemble(4, 2, [64, 64], 2, heads).flops_per_row()  # noqa: E731
    assert wide(2) < 1.05 * wide(0)
    q.start_cost_heads_at(0.05)
    torch.testing.assert_close(q.cost_value(q(obs, act)[1]).mean(), torch.tensor(0.05), atol=0.03, rtol=0)


def test_normalizer_uses_buffers():
    norm = Normalizer(torch.tensor([1.0, 2.0]), torch.tensor([2.0, 4.0]))
    torch.testing.assert_close(norm(torch.tensor([[3.0, 6.0]])), torch.tensor([[1.0, 1.0]]))
    assert set(dict(norm.named_buffers())) == {"mean", "std"}
