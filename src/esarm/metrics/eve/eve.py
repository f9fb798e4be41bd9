"""Eye + forehead (emotion) vertex error (EVE) of ARKit blendshapes on a face rig, as an ``evaluate`` metric.

Load it with ``evaluate.load(esarm.evaluation.metric_path("eve"))`` (or the folder's path). It works offline.
"""

import evaluate

from esarm.evaluation import vertex_error_module

_CITATION = """\
@inproceedings{peng2023emotalk,
  title={EmoTalk: Speech-Driven Emotional Disentanglement for 3D Face Animation},
  author={Peng, Ziqiao and Wu, Haoyu and Song, Zhenbo and Xu, Hao and Zhu, Xiangyu and He, Jun and Liu, Hongyan
          and Fan, Zhaoxin},
  booktitle={ICCV},
  year={2023}
}
"""

_DESCRIPTION = """\
Emotion vertex error (EmoTalk's EVE: the LVE computation on the eye + forehead region): the ARKit coefficients of
prediction and reference are turned into mesh vertices with a face rig (neutral mesh + 52 vertex deltas, mm); per
frame, the maximum over the rig's eye + forehead vertices of the vertex distance; the mean over all frames of all
sequences (pooled). Returns the root version in millimetres (`eve_mm`)
and the squared-L2 convention of FaceFormer / CodeTalker / UniTalker
(`eve_squared_mm2`, mm², no square root). Numbers compare models evaluated on the same rig, not with numbers
published on FLAME or BIWI meshes.
"""

_KWARGS_DESCRIPTION = vertex_error_module.kwargs_description("eve")


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class EVE(evaluate.Metric):
    def _info(self):
        return vertex_error_module.metric_info(
            "eve", _DESCRIPTION, _CITATION, "https://github.com/psyai-net/EmoTalk_release"
        )

    def _compute(self, predictions, references, rig=None):
        return vertex_error_module.compute_scores("eve", predictions, references, rig)
