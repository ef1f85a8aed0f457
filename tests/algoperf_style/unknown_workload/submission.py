"""SGD in AlgoPerf's style whose get_batch_size knows only AlgoPerf's workloads."""

from typing import Dict, Iterator, List, Tuple

import torch

from algoperf import spec


def init_optimizer_state(workload: spec.Workload,
                         model_params: spec.ParameterContainer,
                         model_state: spec.ModelAuxiliaryState,
                         hyperparameters: spec.Hyperparameters,
                         rng: spec.RandomState) -> spec.OptimizerState:
  return {'optimizer': torch.optim.SGD(model_params.parameters(), lr=hyperparameters.learning_rate)}


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
                  rng: spec.RandomState) -> spec.UpdateReturn:
  optimizer_state['optimizer'].zero_grad()
  logits_batch, new_model_state = workload.model_fn(
      params=current_param_container,
      augmented_and_preprocessed_input_batch=batch,
      model_state=model_state,
      mode=spec.ForwardPassMode.TRAIN,
      rng=rng,
      update_batch_norm=True)
  loss_dict = workload.loss_fn(label_batch=batch['targets'], logits_batch=logits_batch, mask_batch=batch.get('weights'))
  (loss_dict['summed'] / loss_dict['n_valid_examples']).backward()
  optimizer_state['optimizer'].step()
  return (optimizer_state, current_param_container, new_model_state)


def get_batch_size(workload_name):
  if workload_name == 'imagenet_resnet':
    return 1024
  elif workload_name == 'wmt':
    return 128
  else:
    raise ValueError(f'Unsupported workload name: {workload_name}.')


def data_selection(workload: spec.Workload,
                   input_queue: Iterator[Dict[str, spec.Tensor]],
                   optimizer_state: spec.OptimizerState,
                   current_param_container: spec.ParameterContainer,
                   model_state: spec.ModelAuxiliaryState,
                   hyperparameters: spec.Hyperparameters,
                   global_step: int,
                   rng: spec.RandomState) -> Dict[str, spec.Tensor]:
  return next(input_queue)
