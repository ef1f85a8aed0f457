"""The graph network of AlgoPerf's `ogbg` workload (algoperf/workloads/ogbg/ogbg_pytorch/models.py,
a port of init2winit's GNN): node and edge embedders, `num_message_passing_steps` jraph-style
GraphNetwork blocks (edge, node and global updates, each an MLP of Linear -> LayerNorm ->
activation -> dropout per hidden width), and a linear decoder of the graph's globals to the
128 molpcba tasks. Variants: the activation (ReLU, tanh-GELU, SiLU) and the model size
(latent width, MLP widths, number of steps).

Scatter sums are plain `index_add`; no torch_geometric or jraph.

Base size (latent 256, MLP widths (256,), 5 steps): 3,554,176 parameters; the `model_size`
variant (latent 128, widths (256, 256), 3 steps): 2,571,648 (derived in tests/test_ogbg.py).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace

import torch
from torch import nn

from workloads.models.init import lecun_normal_

NODE_FEATURES = 9
"""Atom features of ogbg-molpcba (atomic number, chirality, ...), small integers as floats."""
EDGE_FEATURES = 3
"""Bond features (type, stereochemistry, conjugated)."""
DROPOUT_RATE = 0.1
ACTIVATIONS = {"relu": nn.ReLU, "gelu": lambda: nn.GELU(approximate="tanh"), "silu": nn.SiLU}


@dataclass(frozen=True)
class Graphs:
    """A batch of G graphs concatenated into one graph (jraph's `GraphsTuple` without
    globals). `len()` is the number of graphs."""

    nodes: torch.Tensor
    """(N, 9) node features of all graphs, graph after graph (N, D inside the network)."""
    edges: torch.Tensor
    """(E, 3) features of the directed edges, each bond twice, once per direction (E, D inside)."""
    senders: torch.Tensor
    """(E,) int64 index into `nodes` of each edge's source."""
    receivers: torch.Tensor
    """(E,) int64 index into `nodes` of each edge's target."""
    n_node: torch.Tensor
    """(G,) int64 nodes per graph; sums to N."""
    n_edge: torch.Tensor
    """(G,) int64 edges per graph; sums to E."""

    def __len__(self) -> int:
        return self.n_node.numel()

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Graphs:
        return Graphs(**{f.name: getattr(self, f.name).to(device, non_blocking=non_blocking) for f in fields(self)})

    def pin_memory(self) -> Graphs:
        """Called by DataLoader's pinning thread (`pin_memory=True`)."""
        return Graphs(**{f.name: getattr(self, f.name).pin_memory() for f in fields(self)})


def scatter_sum(values: torch.Tensor, index: torch.Tensor, size: int) -> torch.Tensor:
    """(M, D) values summed into (size, D) rows by the (M,) row `index` of each."""
    return values.new_zeros(size, values.shape[1]).index_add_(0, index, values)


def mlp(in_dim: int, widths: Sequence[int], activation: str, dropout: float) -> nn.Sequential:
    """Linear -> LayerNorm(eps 1e-6) -> activation -> dropout, once per width (AlgoPerf's `_make_mlp`)."""
    layers: dict[str, nn.Module] = {}
    for i, width in enumerate(widths):  # AlgoPerf's module names, so state dicts carry over
        layers |= {f"dense_{i}": nn.Linear(in_dim, width), f"norm_{i}": nn.LayerNorm(width, eps=1e-6),
                   f"activation_fn_{i}": ACTIVATIONS[activation](), f"dropout_{i}": nn.Dropout(dropout)}
        in_dim = width
    return nn.Sequential(OrderedDict(layers))


class GraphNetwork(nn.Module):
    """One message-passing step (Battaglia et al. 2018, Algorithm 1, as jraph's GraphNetwork):
    edges from (edge, sender, receiver, global); nodes from (node, sum of sent edges, sum of
    received edges, global); globals from (sum of nodes, sum of edges, global)."""

    def __init__(self, edge_in: int, node_in: int, global_in: int, widths: Sequence[int], activation: str, dropout: float):
        super().__init__()
        self.update_edge_fn = mlp(edge_in, widths, activation, dropout)
        self.update_node_fn = mlp(node_in, widths, activation, dropout)
        self.update_global_fn = mlp(global_in, widths, activation, dropout)

    def forward(self, graphs: Graphs, globals_: torch.Tensor) -> tuple[Graphs, torch.Tensor]:
        """`graphs` with (N, node dim) nodes and (E, edge dim) edges, and (G, global dim)
        globals -> the updated graphs and globals (each of dim `widths[-1]`)."""
        n_nodes, n_graphs = graphs.nodes.shape[0], len(graphs)
        edge_globals = globals_.repeat_interleave(graphs.n_edge, dim=0)
        edges = self.update_edge_fn(torch.cat(
            [graphs.edges, graphs.nodes[graphs.senders], graphs.nodes[graphs.receivers], edge_globals], dim=-1))
        sent, received = scatter_sum(edges, graphs.senders, n_nodes), scatter_sum(edges, graphs.receivers, n_nodes)
        node_globals = globals_.repeat_interleave(graphs.n_node, dim=0)
        nodes = self.update_node_fn(torch.cat([graphs.nodes, sent, received, node_globals], dim=-1))
        graph_index = torch.arange(n_graphs, device=nodes.device)
        node_sums = scatter_sum(nodes, graph_index.repeat_interleave(graphs.n_node), n_graphs)
        edge_sums = scatter_sum(edges, graph_index.repeat_interleave(graphs.n_edge), n_graphs)
        globals_ = self.update_global_fn(torch.cat([node_sums, edge_sums, globals_], dim=-1))
        return replace(graphs, nodes=nodes, edges=edges), globals_


class GNN(nn.Module):
    """Graphs -> (G, num_outputs) logits. Globals start at zero with `num_outputs` features
    (AlgoPerf's choice), so the first step's inputs are wider than the later steps'."""

    def __init__(self, *, num_outputs: int = 128, activation: str = "relu", latent_dim: int = 256,
                 hidden_dims: Sequence[int] = (256,), num_message_passing_steps: int = 5, dropout: float = DROPOUT_RATE):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation {activation!r} is not one of {', '.join(ACTIVATIONS)}")
        self.num_outputs = num_outputs
        self.node_embedder = nn.Linear(NODE_FEATURES, latent_dim)
        self.edge_embedder = nn.Linear(EDGE_FEATURES, latent_dim)
        hidden = hidden_dims[-1]
        steps = []
        for step in range(num_message_passing_steps):
            if step == 0:  # latent nodes and edges, zero globals of width num_outputs
                edge_in, node_in, global_in = 3 * latent_dim + num_outputs, latent_dim + 2 * hidden + num_outputs, 2 * hidden + num_outputs
            else:
                edge_in, node_in, global_in = 4 * hidden, 4 * hidden, 3 * hidden
            steps.append(GraphNetwork(edge_in, node_in, global_in, hidden_dims, activation, dropout))
        self.graph_network = nn.ModuleList(steps)
        self.decoder = nn.Linear(hidden, num_outputs)
        for module in self.modules():
            if isinstance(module, nn.Linear):  # AlgoPerf's `pytorch_default_init`: LeCun normal, zero bias
                lecun_normal_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, graphs: Graphs) -> torch.Tensor:
        globals_ = graphs.nodes.new_zeros(len(graphs), self.num_outputs)
        graphs = replace(graphs, nodes=self.node_embedder(graphs.nodes), edges=self.edge_embedder(graphs.edges))
        for step in self.graph_network:
            graphs, globals_ = step(graphs, globals_)
        return self.decoder(globals_)  # (G, num_outputs)
