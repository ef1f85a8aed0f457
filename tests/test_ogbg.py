"""The ogbg workload on tiny ogbg-molpcba shards written in the TFDS TFRecord layout: the
reader and graph packing, the model at AlgoPerf's sizes, the masked loss, the mean average
precision on a hand-made example, one training step and one evaluation through the real
runner for the base workload and every variant, data errors, AlgoPerf's targets, and DDP."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from gloo import assert_same_results, on_two_gloo_processes
from ogbg_data import SIZES, make_ogbg, random_graph, write_record
from tfrecord import TFRecordWriter

from harness.core.errors import PacerUserError
from harness.core.spec import ForwardPassMode, LossType
from harness.experiments.job import run_job
from harness.experiments.run_config import compose
from harness.plugins.workloads import build_workload, resolve_variant, workload_config
from workloads.data.ogbg import LAYOUT, GraphDataset, PackedGraphs, collate_graphs
from workloads.models.ogbg import GNN, GraphNetwork, Graphs
from workloads.ogbg import OgbgWorkload, mean_average_precision

REPO = Path(__file__).resolve().parents[1]
VARIANTS = (None, "gelu", "silu", "model_size")


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, list[dict[str, np.ndarray]]]]:
    root = tmp_path_factory.mktemp("ogbg")
    return root, make_ogbg(root)


def tiny_workload(data_dir: Path, variant: str | None = None, **overrides: object) -> OgbgWorkload:
    settings = {"data_dir": str(data_dir), "num_workers": 0, "eval_num_workers": 0, "eval_batch_size": 4, "eval_train_size": 6}
    return build_workload(workload_config("ogbg") | settings | overrides, variant)


def mlp_parameters(in_dim: int, widths: tuple[int, ...]) -> int:
    """Linear (weights and bias) then LayerNorm (scale and bias) per width."""
    total = 0
    for width in widths:
        total += in_dim * width + width + 2 * width
        in_dim = width
    return total


def algoperf_parameter_count(latent: int, widths: tuple[int, ...], steps: int, outputs: int = 128) -> int:
    """The parameters of AlgoPerf's GNN (algoperf/workloads/ogbg/ogbg_pytorch/models.py), from
    its constructor: embedders Linear(9, latent) and Linear(3, latent); per step an edge, a node
    and a global MLP whose input widths are (3 latent + outputs, latent + 2 h + outputs,
    2 h + outputs) at step 0 and (4 h, 4 h, 3 h) after (h = widths[-1]); decoder Linear(h, outputs)."""
    h = widths[-1]
    total = (9 * latent + latent) + (3 * latent + latent) + (h * outputs + outputs)
    for step in range(steps):
        ins = (3 * latent + outputs, latent + 2 * h + outputs, 2 * h + outputs) if step == 0 else (4 * h, 4 * h, 3 * h)
        total += sum(mlp_parameters(d, widths) for d in ins)
    return total


@pytest.mark.parametrize("variant", VARIANTS)
def test_parameter_count_is_algoperfs(variant: str | None) -> None:
    """3,554,176 for ogbg, ogbg_gelu and ogbg_silu; 2,571,648 for ogbg_model_size."""
    cfg = resolve_variant(workload_config("ogbg"), variant)
    model = GNN(activation=cfg["activation"], latent_dim=cfg["latent_dim"], hidden_dims=cfg["hidden_dims"],
                num_message_passing_steps=cfg["num_message_passing_steps"])
    expected = algoperf_parameter_count(cfg["latent_dim"], tuple(cfg["hidden_dims"]), cfg["num_message_passing_steps"])
    assert sum(p.numel() for p in model.parameters()) == expected == (2_571_648 if variant == "model_size" else 3_554_176)
    layer = model.graph_network[0].update_edge_fn.dense_0.requires_grad_(False)  # AlgoPerf's init: LeCun normal cut at 2 std (float32 rounding aside), zero bias
    std = (1 / layer.in_features) ** 0.5 / 0.87962566103423978
    assert float(layer.weight.abs().max()) <= 2 * std * (1 + 1e-6) and float(layer.weight.std()) == pytest.approx(0.88 * std, rel=0.05)
    assert not layer.bias.any()
    last = cfg["num_message_passing_steps"] - 1  # AlgoPerf's parameter names, e.g. for its `is_output_params`
    assert {"decoder.weight", f"graph_network.{last}.update_global_fn.norm_{len(cfg['hidden_dims']) - 1}.bias"} <= dict(model.named_parameters()).keys()


def test_reader_returns_the_graphs_written_and_collate_packs_them(data: tuple[Path, dict]) -> None:
    root, written = data
    train = GraphDataset(PackedGraphs.read(root, "train"))  # two shards, read in order
    assert len(train) == SIZES["train"]
    for graph, read in zip(written["train"], train, strict=True):
        for key, value in graph.items():
            np.testing.assert_array_equal(read[key], value)
    a = {"node_feat": np.zeros((2, 9), np.float32), "edge_feat": np.array([[1, 2, 3]], np.float32), "edge_index": np.array([[0, 1]]),
         "labels": np.array([1.0, np.nan] * 64, np.float32)}
    b = {"node_feat": np.ones((3, 9), np.float32), "edge_feat": np.array([[4, 5, 6], [7, 8, 9]], np.float32), "edge_index": np.array([[2, 0], [1, 2]]),
         "labels": np.zeros(128, np.float32)}
    batch = collate_graphs([a, b])
    graphs = batch["graphs"]
    assert graphs.n_node.tolist() == [2, 3] and graphs.n_edge.tolist() == [2, 4] and len(graphs) == 2
    assert graphs.senders.tolist() == [0, 1, 4, 3, 2, 4] and graphs.receivers.tolist() == [1, 0, 2, 4, 4, 3]  # each bond both ways
    assert graphs.edges[:, 0].tolist() == [1, 1, 4, 7, 4, 7]
    assert batch["targets"][0, :2].tolist() == [1.0, 0.0] and batch["label_mask"][0, :2].tolist() == [1.0, 0.0]
    assert batch["label_mask"][1].sum() == 128


def test_loss_is_masked_sigmoid_cross_entropy() -> None:
    workload = OgbgWorkload.__new__(OgbgWorkload)  # loss_fn needs no data
    logits = torch.tensor([[0.0, 2.0], [-1.0, 3.0]], requires_grad=True)
    labels = torch.tensor([[1.0, 0.0], [0.0, float("nan")]])
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    loss = workload.loss_fn(labels, logits, mask)
    expected = math.log(2) + math.log(1 + math.e ** 2) + math.log(1 + math.e ** -1)
    assert float(loss["summed"].detach()) == pytest.approx(expected) and float(loss["n_valid_examples"]) == 3
    loss["summed"].backward()
    assert torch.isfinite(logits.grad).all() and logits.grad[1, 1] == 0
    smoothed = workload.loss_fn(labels, logits, mask, label_smoothing=0.1)["per_example"].detach()
    z = 0.9 * 1.0 + 0.1 / 2  # AlgoPerf's smoothing: towards 1 / num_tasks
    assert float(smoothed[0, 0]) == pytest.approx(math.log(2) - 0.0 * z)
    assert float(smoothed[0, 1]) == pytest.approx(math.log(1 + math.e ** 2) - 2.0 * (0.1 / 2))
    assert workload.loss_type is LossType.SIGMOID_CROSS_ENTROPY


def test_mean_average_precision_by_hand() -> None:
    """Task 0: ranked +, -, +, - -> AP (1 + 2/3) / 2 = 5/6. Task 1 has no positive: skipped.
    Task 2: its highest logit is unlabelled and left out; ranked -, +, + -> (1/2 + 2/3) / 2 = 7/12."""
    logits = np.array([[2.0, 0.1, 3.0], [1.0, 0.2, 2.0], [0.0, 0.3, 5.0], [-1.0, 0.4, -2.0]], np.float32)
    labels = np.array([[1, 0, 0], [0, 0, 1], [1, 0, 0], [0, 0, 1]], np.float32)
    mask = np.array([[1, 1, 1], [1, 1, 1], [1, 1, 0], [1, 1, 1]], np.float32)
    assert mean_average_precision(logits, labels, mask) == pytest.approx((5 / 6 + 7 / 12) / 2)
    assert math.isnan(mean_average_precision(logits, np.zeros_like(labels), mask))


def test_batching_does_not_mix_graphs(data: tuple[Path, dict]) -> None:
    """Each graph's logits are the same alone and packed with the others (the scatter sums)."""
    root, _ = data
    validation = GraphDataset(PackedGraphs.read(root, "validation"))
    torch.manual_seed(0)
    model = GNN(latent_dim=16, hidden_dims=(8, 8), num_message_passing_steps=2).eval()
    with torch.no_grad():
        together = model(collate_graphs(list(validation))["graphs"])
        alone = torch.cat([model(collate_graphs([graph])["graphs"]) for graph in validation])
    torch.testing.assert_close(together, alone, rtol=1e-5, atol=1e-5)


def test_message_passing_step_by_loops() -> None:
    """One GraphNetwork step against jraph's definition written as loops over edges and nodes
    (the concatenation orders of AlgoPerf's GraphNetwork.forward)."""
    torch.manual_seed(0)
    step = GraphNetwork(edge_in=2 + 3 + 3 + 1, node_in=3 + 4 + 4 + 1, global_in=4 + 4 + 1, widths=(4,), activation="relu", dropout=0.0).eval()
    graphs = Graphs(nodes=torch.randn(5, 3), edges=torch.randn(4, 2), senders=torch.tensor([0, 1, 3, 4]), receivers=torch.tensor([1, 2, 4, 3]),
                    n_node=torch.tensor([3, 2]), n_edge=torch.tensor([2, 2]))
    globals_ = torch.randn(2, 1)
    with torch.no_grad():
        out, new_globals = step(graphs, globals_)
        graph_of_node, graph_of_edge = [0, 0, 0, 1, 1], [0, 0, 1, 1]
        edges = [step.update_edge_fn(torch.cat([graphs.edges[e], graphs.nodes[graphs.senders[e]], graphs.nodes[graphs.receivers[e]],
                                                globals_[graph_of_edge[e]]])[None])[0] for e in range(4)]
        nodes = []
        for v in range(5):
            sent = sum((edges[e] for e in range(4) if graphs.senders[e] == v), torch.zeros(4))
            received = sum((edges[e] for e in range(4) if graphs.receivers[e] == v), torch.zeros(4))
            nodes.append(step.update_node_fn(torch.cat([graphs.nodes[v], sent, received, globals_[graph_of_node[v]]])[None])[0])
        for g in range(2):
            node_sum = sum(n for n, owner in zip(nodes, graph_of_node, strict=True) if owner == g)
            edge_sum = sum(e for e, owner in zip(edges, graph_of_edge, strict=True) if owner == g)
            torch.testing.assert_close(new_globals[g], step.update_global_fn(torch.cat([node_sum, edge_sum, globals_[g]])[None])[0])
    torch.testing.assert_close(out.edges, torch.stack(edges))
    torch.testing.assert_close(out.nodes, torch.stack(nodes))


@pytest.mark.parametrize("variant", VARIANTS)
def test_one_train_step_and_eval_through_the_runner(variant: str | None, data: tuple[Path, dict], tmp_path: Path) -> None:
    root, _ = data
    workers = int(variant is None)  # the base workload's batches come from a DataLoader worker (collate pickled)
    record = run_job(compose([
        "workload=ogbg", f"variant={variant or 'null'}", "submission=momentum", "submission.module=fixed_batch_submission",
        f"workload.data_dir={root}", f"workload.num_workers={workers}", f"workload.eval_num_workers={workers}", "workload.eval_batch_size=4",
        "workload.eval_train_size=6", f"results_root={tmp_path}", "max_steps=1", "eval_every_steps=1", "quiet=true"]))
    assert record["status"] in ("step_cap", "reached"), record.get("error")  # 5 graphs: a random model may reach the target
    row = record["final"]["last_eval"]
    assert [row[f"{s}/num_examples"] for s in ("train", "validation", "test")] == [6, SIZES["validation"], SIZES["test"]]
    for split in ("train", "validation", "test"):
        assert math.isfinite(row[f"{split}/loss"]) and 0 <= row[f"{split}/mean_average_precision"] <= 1
    cfg = resolve_variant(workload_config("ogbg"), variant)
    assert record["target"]["validation"] == cfg["validation_target"] and record["variant"] == variant


def test_eval_counts_each_graph_once_and_matches_one_at_a_time(data: tuple[Path, dict]) -> None:
    root, written = data
    workload = tiny_workload(root, latent_dim=16, hidden_dims=[8], num_message_passing_steps=2, eval_batch_size=2)
    model, state = workload.init_model_fn(0)
    result = workload.eval_model(2, model, state, 0, 0)
    assert result["validation/num_examples"] == SIZES["validation"]
    rows = []
    for graph in written["validation"]:
        batch = workload.device_batch(collate_graphs([graph]))
        logits, _ = workload.model_fn(model, batch, state, ForwardPassMode.EVAL, 0, update_batch_norm=False)
        rows.append((logits[0].detach().numpy(), batch["targets"][0].numpy(), batch["weights"][0].numpy()))
    logits, labels, mask = (np.stack(column) for column in zip(*rows, strict=True))
    assert result["validation/mean_average_precision"] == pytest.approx(mean_average_precision(logits, labels, mask), rel=1e-5)


def test_synthetic_batch_has_algoperf_shapes() -> None:
    workload = OgbgWorkload.__new__(OgbgWorkload)
    workload.device = torch.device("cpu")
    batch = workload.synthetic_batch(4, seed=1)
    graphs = batch["inputs"]
    assert len(graphs) == 4 and graphs.nodes.shape == (104, 9) and graphs.edges.shape == (224, 3)
    assert batch["targets"].shape == batch["weights"].shape == (4, 128)
    logits = GNN(latent_dim=16, hidden_dims=(8,), num_message_passing_steps=1)(graphs)
    assert logits.shape == (4, 128)


@pytest.mark.parametrize(("breakage", "expected"), [
    ("missing", "does not exist"),
    ("no_test", "no test shards in"),
    ("incomplete", "are not the complete set 00000-of-00002"),
    ("no_feature", "lacks a feature"),
    ("not_tfrecord", "unreadable as TFRecord"),
])
def test_bad_data_dir_is_one_line_naming_the_layout(breakage: str, expected: str, tmp_path: Path) -> None:
    root = tmp_path / "ogbg"
    if breakage != "missing":
        make_ogbg(root, sizes={"train": 2, "validation": 1, "test": 1})
    folder = root / "ogbg_molpcba" / "0.1.3"
    if breakage == "no_test":
        (folder / "ogbg_molpcba-test.tfrecord-00000-of-00001").unlink()
    elif breakage == "incomplete":
        (folder / "ogbg_molpcba-train.tfrecord-00001-of-00002").unlink()
    elif breakage == "no_feature":
        writer = TFRecordWriter(str(folder / "ogbg_molpcba-validation.tfrecord-00000-of-00001"))
        writer.write({"labels": (np.zeros(128).tolist(), "float")})
        writer.close()
    elif breakage == "not_tfrecord":
        (folder / "ogbg_molpcba-validation.tfrecord-00000-of-00001").write_bytes(b"not a tfrecord")
    with pytest.raises(PacerUserError) as error:
        tiny_workload(root)
    message = str(error.value)
    assert "\n" not in message and message.startswith("workload ogbg: ") and expected in message and message.endswith(f"expected {LAYOUT}")


@pytest.mark.parametrize(("settings", "words"), [
    ({"activation": "tanh"}, "activation 'tanh' is not one of relu, gelu, silu"),
    ({"hidden_dims": []}, "hidden_dims=[] must be a non-empty list of widths"),
    ({"hidden_dims": 256}, "hidden_dims=256 must be a non-empty list of widths"),
    ({"latent_dim": 0}, "latent_dim=0 must be an integer >= 1"),
])
def test_a_bad_setting_is_one_line_before_any_data(settings: dict[str, object], words: str, tmp_path: Path) -> None:
    with pytest.raises(PacerUserError) as error:
        build_workload(workload_config("ogbg") | {"data_dir": str(tmp_path / "none")} | settings)
    message = str(error.value)
    assert "\n" not in message and message.startswith(f"workload ogbg: {words}"), message


def test_a_malformed_graph_is_a_user_error_when_read(tmp_path: Path) -> None:
    root = tmp_path / "ogbg"
    make_ogbg(root, sizes={"train": 2, "validation": 1, "test": 1})
    writer = TFRecordWriter(str(root / "ogbg_molpcba" / "0.1.3" / "ogbg_molpcba-test.tfrecord-00000-of-00001"))
    graph = random_graph(np.random.default_rng(0))
    write_record(writer, graph | {"node_feat": graph["node_feat"][:, :4]})
    writer.close()
    with pytest.raises(PacerUserError, match="inconsistent sizes"):
        _ = tiny_workload(root).datasets


@pytest.mark.parametrize("rules", ["v0.6", "v1.0"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_config_has_algoperfs_targets(rules: str, variant: str | None) -> None:
    """Targets, budget and step hint from the tables the scoring ships; the eval period is
    AlgoPerf's module's `4 * 60` in both versions."""
    table = json.loads((REPO / "harness" / "data" / f"algoperf_targets_{rules}.json").read_text())["workloads"]
    row = table["ogbg" if variant is None else f"ogbg_{variant}"]
    cfg = resolve_variant(workload_config("ogbg") | {"rules": rules}, variant)
    assert (cfg["validation_target"], cfg["test_target"]) == (row["validation"], row["test"])
    assert (cfg["max_runtime_sec"], cfg["step_hint"], cfg["eval_period_sec"]) == (row["max_runtime_sec"], row["step_hint"], 240)
    assert row["metric"] == OgbgWorkload.target_metric_name and row["direction"] == "max"


def evaluate(root: Path) -> dict[str, float]:
    workload = tiny_workload(root, latent_dim=16, hidden_dims=[8], num_message_passing_steps=2)
    model, state = workload.init_model_fn(0)
    return workload.eval_model(4, model, state, 0, 0)  # 2 graphs per rank per batch


@pytest.mark.slow  # two spawned processes import torch: most of this file's time on a busy machine
def test_two_gloo_processes_evaluate_as_one(data: tuple[Path, dict], tmp_path: Path) -> None:
    """Each rank evaluates its half of the graphs; the gathered mean AP and the summed loss are
    those of one process."""
    root, _ = data
    assert_same_results(on_two_gloo_processes(evaluate, root, folder=tmp_path), evaluate(root))
