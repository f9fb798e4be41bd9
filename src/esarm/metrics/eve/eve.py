"""Eye + forehead (emotion) vertex error (EVE) of ARKit blendshapes on a face rig, as an ``evaluate`` metric.

Load it with ``evaluate.load(esarm.evaluation.metric_path("eve"))`` (or the folder's path). It works offline.
"""

import datasets
import evaluate

from esarm.evaluation import metrics as esarm_metrics
from esarm.evaluation.rig import FaceRig

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

_KWARGS_DESCRIPTION = """
Args:
    predictions: list of sequences, each [frames, 52] ARKit coefficients (esarm.blendshapes.ARKIT_NAMES order).
    references: list of sequences of the same lengths as the predictions.
    rig: path of a rig (.npz, .glb/.gltf or ICT-FaceKit folder); default: FaceRig.default() ($ESARM_RIG, the
        user cache, or a download of ICT-FaceKit).
Returns:
    eve_mm: mean over frames of the max eye/forehead-vertex L2 distance (mm).
    eve_squared_mm2: the same with the squared distance (mm²).
Examples:
    >>> import evaluate
    >>> from esarm.evaluation import metric_path
    >>> eve = evaluate.load(metric_path("eve"))
    >>> eve.compute(predictions=[[[0.0] * 52]], references=[[[0.0] * 52]])
    {'eve_mm': 0.0, 'eve_squared_mm2': 0.0}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class EVE(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Sequence(datasets.Sequence(datasets.Value("float32"))),
                    "references": datasets.Sequence(datasets.Sequence(datasets.Value("float32"))),
                }
            ),
            reference_urls=["https://github.com/psyai-net/EmoTalk_release"],
        )

    def _compute(self, predictions, references, rig=None):
        face_rig = FaceRig.default() if rig is None else FaceRig.from_path(rig)
        squared = esarm_metrics.eve(predictions, references, face_rig, squared=True, reduction="frames")
        return {"eve_mm": float((squared**0.5).mean()), "eve_squared_mm2": float(squared.mean())}
