"""SGD with momentum, in AlgoPerf's style (list-form search space beside it)."""

from typing import Dict, Iterator, List, Tuple

import torch

from algoperf import spec
from algoperf.pytorch_utils import pytorch_setup

USE_PYTORCH_DDP, RANK, DEVICE, N_GPUS = pytorch_setup()


def init_optimizer_state(workload: spec.Workload,
                         model_params: spec.ParameterContainer,
                         model_state: spec.ModelAuxiliaryState,
                         hyperparameters: spec.Hyperparameters,
                         rng: spec.RandomState) -> spec.OptimizerState:
  del model_state, rng
  return {'optimizer': torch.optim.SGD(model_params.parameters(), lr=hyperparameters.learning_rate, momentum=1.0 - hyperparameters.one_minus_beta1)}


def update_params(workload: spec.Workload,
                  current_param_container: spec.ParameterContainer,
                  current_params_types: spec.ParameterTypeTree,
                  model_state: spec.ModelAuxiliaryState,
                  hyperparameters: spec.Hyperparameters,
                  batch: Dict[str, spec.Tensor],
                  loss_type: spec.LossType,
                  optimizer_state: spec.OptimizerState,
                  eval_results: List[Tuple[int, float]],
                  global_step: int,
                  rng: spec.RandomState,
                  train_state=None) -> spec.UpdateReturn:
  del current_params_types, loss_type, eval_results, train_state
  current_param_container.train()
  optimizer_state['optimizer'].zero_grad()
  logits_batch, new_model_state = workload.model_fn(
      params=current_param_container,
      augmented_and_preprocessed_input_batch=batch,
      model_state=model_state,
      mode=spec.ForwardPassMode.TRAIN,
      rng=rng,
      update_batch_norm=True)
  loss_dict = workload.loss_fn(label_batch=batch['targets'], logits_batch=logits_batch, mask_batch=batch.get('weights'))
  loss = loss_dict['summed'] / loss_dict['n_valid_examples']
  loss.backward()
  optimizer_state['optimizer'].step()
  return (optimizer_state, current_param_container, new_model_state)


def get_batch_size(workload_name):
  return 64


def data_selection(workload: spec.Workload,
                   input_queue: Iterator[Dict[str, spec.Tensor]],
                   optimizer_state: spec.OptimizerState,
                   current_param_container: spec.ParameterContainer,
                   model_state: spec.ModelAuxiliaryState,
                   hyperparameters: spec.Hyperparameters,
                   global_step: int,
                   rng: spec.RandomState) -> Dict[str, spec.Tensor]:
  return next(input_queue)
