"""An MLServer inference runtime for the models of a Clockwork model repository.

Each model's ``model-settings.json`` (written by ``mlserver_repo.py``) names this runtime,
``mlserver_runtime.ClockworkRuntime``, and carries in ``parameters.extra`` the repository path and
the model's name there; ``load`` builds the module with
``ModelRepository(root).build_module(name, version)``, the very modules and weights Clockwork's
worker serves, in a process whose torch uses one thread (``torch.set_num_threads(1)``, as
Clockwork's worker with ``--threads 1``).

``predict`` decodes the request's tensors (MLServer has already parsed the JSON into its
``InferenceRequest``), runs the model on the batch (MLServer's adaptive batching merges up to
``max_batch_size`` requests of one model along the batch dimension before ``predict`` and splits
the answer after it) and encodes the outputs with MLServer's numpy codec.

Import it by name: ``serve_peer.sh`` puts ``bench/peers`` on ``PYTHONPATH`` (MLServer's inference
workers inherit it).
"""

import numpy as np
import peer_models
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.errors import InferenceError
from mlserver.types import InferenceRequest, InferenceResponse

from clockwork.models.repository import ModelRepository


class ClockworkRuntime(MLModel):
    """One model of a Clockwork repository (``parameters.extra``: ``repository``, ``model``)."""

    async def load(self) -> bool:
        peer_models.use_one_thread()
        extra = (self.settings.parameters.extra if self.settings.parameters else None) or {}
        root = peer_models.repository_root(extra.get("repository"))
        name = extra.get("model") or self.settings.name
        self._model = peer_models.load_model(ModelRepository(root), name)
        self._inputs = [spec.name for spec in self._model.config.inputs]
        self._dtypes = [peer_models.NUMPY_DTYPES[spec.dtype] for spec in self._model.config.inputs]
        self._outputs = [spec.name for spec in self._model.config.outputs]
        print(f"mlserver_runtime: loaded {name} v{self._model.version} from {root}", flush=True)
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        by_name = {i.name: i for i in payload.inputs}
        arrays = []
        for name, dtype in zip(self._inputs, self._dtypes, strict=True):
            request_input = by_name.get(name)
            if request_input is None:
                raise InferenceError(f"input tensor {name!r} is missing")
            arrays.append(np.asarray(NumpyCodec.decode_input(request_input), dtype=dtype))
        outputs = peer_models.run_batch(self._model, arrays)
        return InferenceResponse(
            model_name=self.name,
            model_version=self.version,
            id=payload.id,
            outputs=[
                NumpyCodec.encode_output(name, array)
                for name, array in zip(self._outputs, outputs, strict=True)
            ],
        )
