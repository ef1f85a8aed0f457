"""M-FAC against a dense inverse of (lambda I + the window's empirical Fisher)."""

from __future__ import annotations

import torch

from submissions.mfac import MFAC, GradientWindow

DAMPING = 1e-2


def dense_inverse_fisher_product(grads: torch.Tensor, x: torch.Tensor, damping: float) -> torch.Tensor:
    fisher = damping * torch.eye(grads.shape[1], dtype=grads.dtype) + grads.T @ grads / len(grads)
    return torch.linalg.solve(fisher, x)


def test_window_product_matches_the_dense_inverse() -> None:
    generator = torch.Generator().manual_seed(0)
    dim, m = 40, 12
    grads = torch.randn(m, dim, dtype=torch.float64, generator=generator)
    window = GradientWindow(GradientWindow.new_state(dim, m, torch.float64, torch.device("cpu")), DAMPING)
    x = torch.randn(dim, dtype=torch.float64, generator=generator)
    for k in range(1, m + 1):  # partly filled windows too: the Fisher of the k gradients so far
        window.add(grads[k - 1])
        torch.testing.assert_close(window.inverse_fisher_product(x), dense_inverse_fisher_product(grads[:k], x, DAMPING), rtol=1e-5, atol=1e-5)


def test_sliding_window_keeps_only_the_last_m_gradients() -> None:
    generator = torch.Generator().manual_seed(1)
    dim, m = 25, 5
    grads = torch.randn(3 * m + 2, dim, dtype=torch.float64, generator=generator)
    window = GradientWindow(GradientWindow.new_state(dim, m, torch.float64, torch.device("cpu")), DAMPING)
    for g in grads:
        window.add(g)
    x = torch.randn(dim, dtype=torch.float64, generator=generator)
    torch.testing.assert_close(window.inverse_fisher_product(x), dense_inverse_fisher_product(grads[-m:], x, DAMPING), rtol=1e-5, atol=1e-5)


def optimizer_state_sizes(optimizer: MFAC) -> int:
    return sum(v.numel() for state in optimizer.state.values() for v in state.values() if isinstance(v, torch.Tensor))


def test_optimizer_steps_along_the_preconditioned_gradient_and_memory_depends_on_m_not_steps() -> None:
    torch.manual_seed(0)
    model = torch.nn.Linear(6, 3).double()
    x, y = torch.randn(64, 6, dtype=torch.float64), torch.randn(64, 3, dtype=torch.float64)
    m = 4
    optimizer = MFAC(model.parameters(), lr=0.5, momentum=0.0, weight_decay=0.0, damping=DAMPING, num_gradients=m)
    seen, sizes = [], []
    for step in range(3 * m):
        optimizer.zero_grad()
        torch.nn.functional.mse_loss(model(x[step::8]), y[step::8]).backward()
        grad = torch.cat([p.grad.reshape(-1) for p in model.parameters()])
        seen.append(grad.clone())
        before = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
        optimizer.step()
        after = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
        expected = -0.5 * DAMPING * dense_inverse_fisher_product(torch.stack(seen[-m:]), grad, DAMPING)
        torch.testing.assert_close(after - before, expected, rtol=1e-5, atol=1e-8)
        sizes.append(optimizer_state_sizes(optimizer))
    dim = sum(p.numel() for p in model.parameters())
    bound = m * dim + m * m * 2 + dim  # window, Gram and Cholesky factor (m x m), momentum
    assert max(sizes) == sizes[m - 1] == sizes[-1] == bound  # full after m steps, then constant

    bigger = MFAC(torch.nn.Linear(6, 3).double().parameters(), lr=0.5, damping=DAMPING, num_gradients=2 * m)
    bigger.param_groups[0]["params"][0].grad = torch.zeros(3, 6, dtype=torch.float64)
    bigger.param_groups[0]["params"][1].grad = torch.zeros(3, dtype=torch.float64)
    bigger.step()
    state = next(iter(bigger.state.values()))
    assert state["grads"].shape == (2 * m, dim) and state["gram"].shape == (2 * m, 2 * m)
