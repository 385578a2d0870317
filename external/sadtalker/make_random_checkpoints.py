"""Randomly initialised SadTalker checkpoints, built from SadTalker's own model classes, in the layout its
loaders read: for smoke runs of the real ``inference.py`` without the released weights.

Run it with the ``sadtalker`` environment's Python and a SadTalker checkout (its code is imported from
there, never copied)::

    <sadtalker env, see `podforge envs list`>/bin/python external/sadtalker/make_random_checkpoints.py \\
        --sadtalker-home "$SADTALKER_HOME" --out /tmp/sadtalker-random --size 256

It writes what ``inference.py`` (v0.0.2) loads, each file from the class that loads it:

* ``checkpoints/SadTalker_V0.0.2_<size>.safetensors``: one flat state dict whose keys carry the prefix
  each loader filters on (``src/utils/safetensor_helper.py``, ``AnimateFromCoeff``): ``face_3drecon.``
  (the 3DMM ResNet-50, ``networks.define_net_recon``), ``audio2exp.`` (``SimpleWrapperV2``),
  ``audio2pose.`` (``Audio2Pose`` with ``src/config/auido2pose.yaml``), ``kp_extractor.`` and
  ``generator.`` (``KPDetector``, ``OcclusionAwareSPADEGenerator`` with ``src/config/facerender.yaml``).
  SadTalker's own ``src/utils/model2safetensor.py`` saves the released file the same way;
* ``checkpoints/mapping_00229-model.pth.tar`` and ``mapping_00109-model.pth.tar``: ``{"mapping": state
  dict, "epoch": 0}`` of ``MappingNet`` with the mapping parameters of ``facerender.yaml`` (crop, resize:
  70 coefficients) and ``facerender_still.yaml`` (full: 73);
* ``gfpgan/weights/alignment_WFLW_4HG.pth``: ``{"state_dict": ...}`` of SadTalker's landmark network
  (``src.face3d.util.my_awing_arch.FAN``, 4 hourglass modules, 98 landmarks);
* ``gfpgan/weights/detection_Resnet50_Final.pth``: the state dict of facexlib's ``RetinaFace``
  (``resnet50``), which ``facexlib.detection.init_detection_model`` loads.

Not built, because SadTalker ships it: ``src/config/similarity_Lm3D_all.mat`` (the mean face's five
landmarks; 994 bytes, in every checkout), the only 3DMM file ``inference.py`` reads. The Basel Face Model
(``BFM_Fitting``) is read only with ``--face3dvis``, which Podforge never passes. GFPGAN's weights are
needed only with ``enhancer: gfpgan`` and are not built.

The sizes are the real ones (the configs in the checkout fix the architectures): about 0.8 GB in all.
Random weights make a talking head of noise; what the smoke run proves is that every stage loads and runs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def prefixed(prefix: str, module) -> dict:
    """``module``'s state dict with ``prefix.`` in front of every key, as contiguous tensors of their own."""
    return {f"{prefix}.{key}": value.detach().clone().contiguous() for key, value in module.state_dict().items()}


def facerender_config(home: Path, name: str) -> dict:
    import yaml

    with open(home / "src" / "config" / name, encoding="utf-8") as handle:
        return yaml.safe_load(handle)["model_params"]


def build_sadtalker_safetensors(home: Path, path: Path) -> None:
    import torch
    from safetensors.torch import save_file
    from src.audio2exp_models.networks import SimpleWrapperV2
    from src.audio2pose_models.audio2pose import Audio2Pose
    from src.face3d.models import networks
    from src.facerender.modules.generator import OcclusionAwareSPADEGenerator
    from src.facerender.modules.keypoint_detector import KPDetector
    from yacs.config import CfgNode

    params = facerender_config(home, "facerender.yaml")
    with open(home / "src" / "config" / "auido2pose.yaml", encoding="utf-8") as handle:
        pose_config = CfgNode.load_cfg(handle)
    tensors: dict[str, torch.Tensor] = {}
    tensors |= prefixed("face_3drecon", networks.define_net_recon(net_recon="resnet50", use_last_fc=False, init_path=""))
    tensors |= prefixed("audio2exp", SimpleWrapperV2())
    tensors |= prefixed("audio2pose", Audio2Pose(pose_config, None, device="cpu"))
    tensors |= prefixed("kp_extractor", KPDetector(**params["kp_detector_params"], **params["common_params"]))
    tensors |= prefixed("generator", OcclusionAwareSPADEGenerator(**params["generator_params"], **params["common_params"]))
    save_file(tensors, str(path))


def build_mapping(home: Path, config_name: str, path: Path) -> None:
    import torch
    from src.facerender.modules.mapping import MappingNet

    mapping = MappingNet(**facerender_config(home, config_name)["mapping_params"])
    torch.save({"mapping": mapping.state_dict(), "epoch": 0}, path)


def build_face_models(weights: Path) -> None:
    import torch
    from facexlib.detection.retinaface import RetinaFace
    from src.face3d.util.my_awing_arch import FAN

    torch.save({"state_dict": FAN(num_modules=4, num_landmarks=98, device="cpu").state_dict()}, weights / "alignment_WFLW_4HG.pth")
    torch.save(RetinaFace(network_name="resnet50", half=False, device="cpu").state_dict(), weights / "detection_Resnet50_Final.pth")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sadtalker-home", type=Path, required=True, help="a SadTalker checkout (its inference.py and src/)")
    parser.add_argument("--out", type=Path, required=True, help="gets checkpoints/ and gfpgan/weights/")
    parser.add_argument("--size", type=int, choices=(256, 512), default=256)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    home = args.sadtalker_home.resolve()
    if not (home / "inference.py").is_file():
        parser.error(f"{home} is not a SadTalker checkout (no inference.py)")
    sys.path.insert(0, str(home))
    import torch

    torch.manual_seed(args.seed)
    checkpoints, weights = args.out / "checkpoints", args.out / "gfpgan" / "weights"
    checkpoints.mkdir(parents=True, exist_ok=True)
    weights.mkdir(parents=True, exist_ok=True)
    build_sadtalker_safetensors(home, checkpoints / f"SadTalker_V0.0.2_{args.size}.safetensors")
    build_mapping(home, "facerender.yaml", checkpoints / "mapping_00229-model.pth.tar")
    build_mapping(home, "facerender_still.yaml", checkpoints / "mapping_00109-model.pth.tar")
    build_face_models(weights)
    for path in sorted(p for p in args.out.rglob("*") if p.is_file()):
        print(f"{path.relative_to(args.out)}\t{path.stat().st_size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
