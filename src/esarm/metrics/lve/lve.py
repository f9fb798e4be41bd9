"""Lip vertex error (LVE) of ARKit blendshape animations on a face rig, as an ``evaluate`` metric.

Load it with ``evaluate.load(esarm.evaluation.metric_path("lve"))`` (or the folder's path). It works offline.
"""

import evaluate

from esarm.evaluation import vertex_error_module

_CITATION = """\
@inproceedings{fan2022faceformer,
  title={FaceFormer: Speech-Driven 3D Facial Animation with Transformers},
  author={Fan, Yingruo and Lin, Zhaojiang and Saito, Jun and Wang, Wenping and Komura, Taku},
  booktitle={CVPR},
  year={2022}
}
"""

_DESCRIPTION = """\
Lip vertex error: the ARKit coefficients of prediction and reference are turned into mesh vertices with a face rig
(neutral mesh + 52 vertex deltas, millimetres); per frame, the maximum over the rig's lip vertices of the vertex
distance; the mean over all frames of all sequences (pooled). Returns the root version in millimetres (`lve_mm`)
and the squared-L2 convention of FaceFormer / CodeTalker / UniTalker and torchmetrics' LipVertexError
(`lve_squared_mm2`, mm², no square root). Numbers compare models evaluated on the same rig, not with numbers
published on FLAME or BIWI meshes.
"""

_KWARGS_DESCRIPTION = vertex_error_module.kwargs_description("lve")


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class LVE(evaluate.Metric):
    def _info(self):
        return vertex_error_module.metric_info(
            "lve", _DESCRIPTION, _CITATION, "https://github.com/EvelynFan/FaceFormer"
        )

    def _compute(self, predictions, references, rig=None):
        return vertex_error_module.compute_scores("lve", predictions, references, rig)
