"""The face rig: 52 ARKit coefficients -> mesh vertices in millimetres, with the vertex regions of the metrics.

- :class:`FaceRig` and :func:`resolve_rig` (``esarm.rig.face_rig``): the rig and the one rule for which rig is used
  (explicit path > ``$ESARM_RIG`` > a converted ICT-FaceKit rig in the user cache > the rig embedded in the package).
- :mod:`esarm.rig.ict_facekit`: ICT-FaceKit (MIT) -> ARKit-52 converter and its pinned, checksum-verified download.
- :mod:`esarm.rig.obj`, :mod:`esarm.rig.gltf`: the OBJ and glTF readers (writing glTF is :mod:`esarm.export.gltf`).
- :mod:`esarm.rig.regions`: the ``lips`` and ``eye_forehead`` regions from landmarks or from targets.

``python -m esarm.rig download`` fetches and converts the full ICT-FaceKit rig into the cache;
``python -m esarm.rig info`` says which rig is used.
"""

from .face_rig import EMBEDDED_RIG, RIG_ENV, FaceRig, default_cache_dir, resolve_rig
from .regions import REGION_NAMES, regions_from_landmarks, regions_from_targets

__all__ = [
    "EMBEDDED_RIG",
    "REGION_NAMES",
    "RIG_ENV",
    "FaceRig",
    "default_cache_dir",
    "regions_from_landmarks",
    "regions_from_targets",
    "resolve_rig",
]
