"""Frame, object and motion metrics for generated video, each result carrying its convention.

Legend: T frames, H height, W width, C channels (1 or 3), K objects.

Accepted layouts (np.ndarray or torch.Tensor, any device):
  video   [T, H, W, C] channels-last, C = 1 or 3; uint8 in 0..255 (the on-disk
          layout, divided by 255 here) or float in [0, 1]. One clip per call; a
          single image is a 1-frame video (`image[None]`). Model tensors
          ([B, C, T, H, W] in [-1, 1]) must be mapped by the caller:
          `((x.clamp(-1, 1) + 1) / 2)[b].permute(1, 2, 3, 0)`.
  objects [T, H, W] integer object-id maps (0 = empty), as `Episode.masks`.
  motion  [T, H, W] bool (or integers, nonzero = moving), as `motion_masks`.

Scores differ by convention more than by model (PSNR on [0, 1] or 0..255, SSIM's
window, OpenSTL's summed MSE), so every metric returns a `MetricResult` whose
`convention` string says how it was computed; `to_dict()` is what goes to JSON.
All arithmetic is float64: metrics are cheap and reproducing a reference to 1e-5
matters more than speed.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "PSNR_CAP_DB",
    "MetricResult",
    "psnr",
    "ssim",
    "mse_mae_openstl",
    "object_iou",
    "motion_masks",
    "spatial_iou",
    "spatiotemporal_iou",
    "weighted_spatial_iou",
    "physics_iq_mse",
    "physics_iq_scores",
    "physics_iq_score",
    "roc_auc",
]

# PSNR of identical frames is +inf; a finite cap keeps averages and JSON meaningful.
# 100 dB is far above any real reconstruction (uint8 quantisation alone is ~59 dB).
PSNR_CAP_DB = 100.0


@dataclass(frozen=True)
class MetricResult:
    """One metric value, how it was computed, and its breakdown where it has one."""

    name: str
    value: float
    per_frame: tuple[float, ...] | None
    convention: str
    # object id -> value; None where the object has nothing to measure (see object_iou)
    per_object: Mapping[int, float | None] | None = None

    def to_dict(self) -> dict:
        """JSON-safe dict: NaN becomes None, because strict JSON has no NaN."""

        def clean(v):
            return None if v is None or (isinstance(v, float) and math.isnan(v)) else v

        d = {"name": self.name, "value": clean(self.value), "convention": self.convention}
        if self.per_frame is not None:
            d["per_frame"] = [clean(v) for v in self.per_frame]
        if self.per_object is not None:
            # JSON keys are strings; keep ids readable rather than silently converted
            d["per_object"] = {str(k): clean(v) for k, v in self.per_object.items()}
        return d


# ---------------------------------------------------------------- input checking


def _to_tensor(x, name: str) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.detach()
    if isinstance(x, np.ndarray):
        # uint16/uint32 have no torch kernels for most ops; widen them first
        if x.dtype in (np.uint16, np.uint32, np.uint64):
            x = x.astype(np.int64)
        return torch.from_numpy(np.ascontiguousarray(x))
    raise TypeError(f"{name}: expected a numpy.ndarray or torch.Tensor, got {type(x).__name__}")


def _as_video(x, name: str) -> torch.Tensor:
    """Check a video [T, H, W, C] and return it as float64 in [0, 1] on its device."""
    t = _to_tensor(x, name)
    shape = tuple(t.shape)
    if t.ndim != 4:
        raise ValueError(
            f"{name}: expected a video [T, H, W, C] (channels-last, C = 1 or 3), got shape {shape}"
            + (" (a single image? pass image[None])" if t.ndim == 3 else "")
        )
    if shape[-1] not in (1, 3):
        hint = " (looks channels-first: permute to [T, H, W, C])" if shape[1] in (1, 3) else ""
        raise ValueError(f"{name}: expected [T, H, W, C] with C = 1 or 3, got shape {shape}{hint}")
    if min(shape) == 0:
        raise ValueError(f"{name}: expected a non-empty video [T, H, W, C], got shape {shape}")
    if t.dtype == torch.uint8:
        return t.to(torch.float64) / 255.0
    if not t.is_floating_point():
        raise ValueError(f"{name}: expected uint8 (0..255) or float in [0, 1], got dtype {t.dtype}")
    t = t.to(torch.float64)
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name}: expected finite floats in [0, 1], found NaN or inf")
    lo, hi = float(t.min()), float(t.max())
    # strict: a video in [-1, 1] or 0..255 as float would otherwise give plausible wrong numbers
    if lo < 0.0 or hi > 1.0:
        raise ValueError(
            f"{name}: expected floats in [0, 1], got values in [{lo:.4g}, {hi:.4g}]"
            " (map [-1, 1] with (x + 1) / 2, float 0..255 with x / 255, clamp model outputs)"
        )
    return t


def _pair(pred, target, as_fn, names=("pred", "target")) -> tuple[torch.Tensor, torch.Tensor]:
    p, g = as_fn(pred, names[0]), as_fn(target, names[1])
    if p.shape != g.shape:
        raise ValueError(
            f"{names[0]} and {names[1]}: expected the same shape, "
            f"got {tuple(p.shape)} and {tuple(g.shape)}"
        )
    if p.device != g.device:
        g = g.to(p.device)
    return p, g


_MASK_NAMES = ("pred_masks", "target_masks")


def _as_id_masks(x, name: str) -> torch.Tensor:
    """Check an object-id map [T, H, W] and return it as int64."""
    t = _to_tensor(x, name)
    if t.ndim != 3:
        raise ValueError(f"{name}: expected object-id masks [T, H, W], got shape {tuple(t.shape)}")
    if t.is_floating_point() or t.is_complex():
        # float ids are usually a soft mask or a video passed by mistake
        raise ValueError(f"{name}: expected integer object ids (0 = empty), got dtype {t.dtype}")
    return t.to(torch.int64)


def _as_motion(x, name: str) -> torch.Tensor:
    """Check binary motion masks [T, H, W] and return them as bool (nonzero = moving)."""
    t = _to_tensor(x, name)
    if t.ndim != 3:
        raise ValueError(f"{name}: expected motion masks [T, H, W], got shape {tuple(t.shape)}")
    if t.is_floating_point() or t.is_complex():
        raise ValueError(f"{name}: expected bool or integer motion masks, got dtype {t.dtype}")
    return t != 0


def _floats(t: torch.Tensor) -> tuple[float, ...]:
    return tuple(float(v) for v in t.cpu().tolist())


# ---------------------------------------------------------------- frame metrics


def psnr(pred, target) -> MetricResult:
    """PSNR in dB on [0, 1] per frame, averaged over frames; identical frames give PSNR_CAP_DB."""
    p, g = _pair(pred, target, _as_video)
    mse = ((p - g) ** 2).mean(dim=(1, 2, 3))  # [T]
    # log10(1/0) = inf; clamp_min keeps the log finite, the cap makes the value documented
    per_frame = (10.0 * torch.log10(1.0 / mse.clamp_min(1e-300))).clamp_max(PSNR_CAP_DB)
    return MetricResult(
        name="psnr",
        value=float(per_frame.mean()),
        per_frame=_floats(per_frame),
        convention=(
            "PSNR in dB on [0,1] (uint8 divided by 255), data_range=1: per frame "
            "10*log10(1/MSE) with MSE over H*W*C, averaged over frames; "
            f"each frame capped at {PSNR_CAP_DB:g} dB (identical frames give {PSNR_CAP_DB:g}, not inf)"
        ),
    )


# Window, covariance normalisation and border crop of each SSIM mode, matching
# skimage.metrics.structural_similarity(data_range=1, channel_axis=-1, ...).
_SSIM_CONVENTIONS = {
    "skimage": (
        "SSIM as skimage.metrics.structural_similarity(data_range=1, channel_axis=-1) defaults: "
        "7x7 uniform window, sample covariance (N/(N-1), N=49), K1=0.01, K2=0.03, mean over the "
        "valid region (3-px border cropped), channels averaged; per frame on [0,1] (uint8 / 255), "
        "averaged over frames; float64"
    ),
    "wang": (
        "SSIM as skimage.metrics.structural_similarity(data_range=1, channel_axis=-1, "
        "gaussian_weights=True, sigma=1.5, use_sample_covariance=False) (Wang et al. 2004): "
        "11x11 Gaussian window sigma=1.5 (truncate 3.5), population covariance, K1=0.01, K2=0.03, "
        "mean over the valid region (5-px border cropped), channels averaged; per frame on [0,1] "
        "(uint8 / 255), averaged over frames; float64"
    ),
}


def _ssim_window(mode: str) -> tuple[torch.Tensor, float]:
    """1-D separable window and covariance factor for a mode."""
    if mode == "skimage":
        k = 7
        w = torch.full((k,), 1.0 / k, dtype=torch.float64)
        return w, (k * k) / (k * k - 1)  # sample covariance, as skimage's default
    # skimage uses ndimage.gaussian_filter with truncate=3.5: radius int(3.5*1.5+0.5) = 5
    sigma, radius = 1.5, 5
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    w = torch.exp(-0.5 * x**2 / sigma**2)
    return w / w.sum(), 1.0  # population covariance, as Wang et al.


def ssim(pred, target, mode: str = "skimage") -> MetricResult:
    """SSIM per frame (channels averaged), averaged over frames.

    mode "skimage": scikit-image's defaults (7x7 uniform, sample covariance);
    mode "wang": Gaussian sigma=1.5 11x11 window, population covariance.
    Frames must be at least as large as the window (7 or 11 pixels).
    """
    if mode not in _SSIM_CONVENTIONS:
        raise ValueError(f"mode: expected one of {sorted(_SSIM_CONVENTIONS)}, got {mode!r}")
    p, g = _pair(pred, target, _as_video)
    T, H, W, C = p.shape
    w, cov_norm = _ssim_window(mode)
    k = w.numel()
    if H < k or W < k:
        raise ValueError(
            f"pred and target: SSIM mode {mode!r} needs frames of at least {k}x{k}, got {H}x{W}"
        )
    w = w.to(p.device)
    wh = w.view(1, 1, k, 1).expand(5, 1, k, 1)
    ww = w.view(1, 1, 1, k).expand(5, 1, 1, k)
    c1, c2 = (0.01 * 1.0) ** 2, (0.03 * 1.0) ** 2  # K1, K2 with data_range = 1

    # each (frame, channel) plane is an independent 2-D image, as skimage's channel loop
    a = p.permute(0, 3, 1, 2).reshape(T * C, 1, H, W)
    b = g.permute(0, 3, 1, 2).reshape(T * C, 1, H, W)
    # bound the 5 float64 moment maps to ~256 MB whatever the clip length
    step = max(1, (256 << 20) // (5 * 8 * H * W * 2))
    means = []
    for i in range(0, T * C, step):
        x, y = a[i : i + step], b[i : i + step]
        moments = torch.cat([x, y, x * x, y * y, x * y], dim=1)  # [n, 5, H, W]
        # valid (unpadded) filtering yields exactly the region skimage keeps after cropping
        f = F.conv2d(F.conv2d(moments, wh, groups=5), ww, groups=5)
        ux, uy, uxx, uyy, uxy = f.unbind(1)
        vx = cov_norm * (uxx - ux * ux)
        vy = cov_norm * (uyy - uy * uy)
        vxy = cov_norm * (uxy - ux * uy)
        s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux**2 + uy**2 + c1) * (vx + vy + c2))
        means.append(s.mean(dim=(-2, -1)))
    per_frame = torch.cat(means).view(T, C).mean(dim=1)
    return MetricResult(
        name="ssim" if mode == "skimage" else "ssim_wang",
        value=float(per_frame.mean()),
        per_frame=_floats(per_frame),
        convention=_SSIM_CONVENTIONS[mode],
    )


def mse_mae_openstl(pred, target) -> dict[str, MetricResult]:
    """OpenSTL's MSE and MAE: error summed over C*H*W per frame, averaged over frames.

    Returns {"mse": ..., "mae": ...}. Values are on [0, 1] (uint8 / 255); OpenSTL
    itself scores whatever range its dataset is normalised to, so compare only
    with numbers computed on [0, 1].
    """
    p, g = _pair(pred, target, _as_video)
    d = p - g
    se = (d**2).sum(dim=(1, 2, 3))  # [T]
    ae = d.abs().sum(dim=(1, 2, 3))  # [T]
    base = (
        "summed over C*H*W per frame, averaged over frames, on [0,1] (uint8 / 255); OpenSTL "
        "convention np.mean(err, axis=(0, 1)).sum() for [B, T, C, H, W] with B = 1"
    )
    return {
        "mse": MetricResult(
            "mse_openstl", float(se.mean()), _floats(se), "OpenSTL MSE: squared error " + base
        ),
        "mae": MetricResult(
            "mae_openstl", float(ae.mean()), _floats(ae), "OpenSTL MAE: absolute error " + base
        ),
    }


# ---------------------------------------------------------------- object masks


def object_iou(pred_masks, target_masks, ids: Iterable[int] | None = None) -> MetricResult:
    """Average object IoU between object-id maps [T, H, W] (0 = empty).

    For each object id (the nonzero ids present anywhere in `target_masks`, or
    `ids`): IoU per frame, skipping frames where the object is absent from both
    (nothing to agree on there), averaged over the remaining frames; then
    averaged over objects. An object absent from both in every frame has no IoU:
    it is None in `per_object` and left out of the mean; with no object to
    measure at all the value is NaN. Objects that appear only in `pred_masks`
    are not scored unless named in `ids`.
    """
    p, g = _pair(pred_masks, target_masks, _as_id_masks, _MASK_NAMES)
    if ids is None:
        id_list = [int(i) for i in torch.unique(g).tolist() if i != 0]
    else:
        id_list = [int(i) for i in ids]
        if 0 in id_list:
            raise ValueError(f"ids: 0 means empty background and cannot be an object id, got {id_list}")
    per_object: dict[int, float | None] = {}
    for k in id_list:
        pk, gk = p == k, g == k
        inter = (pk & gk).sum(dim=(1, 2))  # [T]
        union = (pk | gk).sum(dim=(1, 2))  # [T]
        valid = union > 0
        if not bool(valid.any()):
            per_object[k] = None
            continue
        per_object[k] = float((inter[valid].double() / union[valid].double()).mean())
    scored = [v for v in per_object.values() if v is not None]
    return MetricResult(
        name="object_iou",
        value=float(np.mean(scored)) if scored else float("nan"),
        per_frame=None,
        convention=(
            "object IoU on integer id maps (0 = empty): per object id (nonzero ids in target, or "
            "the ids given) IoU per frame, frames where the object is absent from both skipped, "
            "averaged over frames, then averaged over objects; objects absent from both in every "
            "frame are None and excluded; NaN if no object is measurable"
        ),
        per_object=per_object,
    )


# ---------------------------------------------------------------- Physics-IQ

_MOTION_CONVENTION = (
    "Physics-IQ motion masks: grey (OpenCV), 5x5 Gaussian blur, running-average background "
    "(alpha={alpha}) updated with each frame before differencing, |grey - round(background)| > "
    "{threshold} on 0..255, morphological open then close with a 5x5 kernel; frame 0 has an empty "
    "mask; computed at the resolution given"
)


def motion_masks(video, threshold: int = 10, alpha: float = 0.3) -> np.ndarray:
    """Physics-IQ motion masks of a video [T, H, W, C]: bool [T, H, W] (True = moving).

    Reproduces Physics-IQ's mask generator step for step: the background starts
    as the first blurred grey frame (whose mask is empty), and each later frame
    is folded into the background *before* the difference is taken, as the
    reference does. Float videos are rounded to 0..255 first, since the
    threshold is on the 8-bit scale. Physics-IQ itself scores masks resized to a
    quarter of its 1080p videos; resize the video before calling to match it.
    """
    v = _as_video(video, "video")
    frames = torch.round(v * 255.0).to(torch.uint8).cpu().numpy()  # [T, H, W, C]
    T, H, W, C = frames.shape
    kernel = np.ones((5, 5), np.uint8)
    out = np.zeros((T, H, W), dtype=bool)

    def grey(f: np.ndarray) -> np.ndarray:
        # RGB2GRAY on RGB frames equals the reference's BGR2GRAY on OpenCV's BGR frames
        g = cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) if C == 3 else np.ascontiguousarray(f[..., 0])
        return cv2.GaussianBlur(g, (5, 5), 0)

    background = grey(frames[0]).astype(np.float64)
    for t in range(1, T):
        g = grey(frames[t])
        cv2.accumulateWeighted(g, background, alpha)
        diff = cv2.absdiff(g, cv2.convertScaleAbs(background))
        _, binary = cv2.threshold(diff, threshold, 255, cv2.THRESH_BINARY)
        # open removes speckle noise, close fills small holes in moving objects
        binary = cv2.morphologyEx(binary, cv2.MORPH_OPEN, kernel)
        binary = cv2.morphologyEx(binary, cv2.MORPH_CLOSE, kernel)
        out[t] = binary > 0
    return out


def _iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU over the last two dims of bool masks; two empty masks agree perfectly (1.0)."""
    inter = (a & b).sum(dim=(-2, -1)).double()
    union = (a | b).sum(dim=(-2, -1)).double()
    return torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(union))


_EMPTY = "IoU of two empty masks is 1.0 (both agree nothing moves), as Physics-IQ"


def spatial_iou(pred_masks, target_masks) -> MetricResult:
    """Physics-IQ Spatial IoU: masks [T, H, W] max-pooled over time, then IoU (where it moved)."""
    p, g = _pair(pred_masks, target_masks, _as_motion, _MASK_NAMES)
    value = _iou(p.any(dim=0), g.any(dim=0))
    return MetricResult(
        "spatial_iou", float(value), None,
        f"Physics-IQ Spatial IoU: binary motion masks max-pooled over time, then IoU; {_EMPTY}",
    )


def spatiotemporal_iou(pred_masks, target_masks) -> MetricResult:
    """Physics-IQ Spatiotemporal IoU: IoU per frame, averaged over frames (where and when)."""
    p, g = _pair(pred_masks, target_masks, _as_motion, _MASK_NAMES)
    per_frame = _iou(p, g)  # [T]
    return MetricResult(
        "spatiotemporal_iou", float(per_frame.mean()), _floats(per_frame),
        "Physics-IQ Spatiotemporal IoU: IoU of binary motion masks per frame, averaged over "
        f"frames; {_EMPTY}",
    )


def weighted_spatial_iou(pred_masks, target_masks) -> MetricResult:
    """Physics-IQ Weighted spatial IoU: sum(min)/sum(max) of time-averaged masks (where and how much)."""
    p, g = _pair(pred_masks, target_masks, _as_motion, _MASK_NAMES)
    pw, gw = p.double().mean(dim=0), g.double().mean(dim=0)  # [H, W] fraction of frames moving
    num, den = torch.minimum(pw, gw).sum(), torch.maximum(pw, gw).sum()
    value = float(num / den) if float(den) > 0 else 1.0
    return MetricResult(
        "weighted_spatial_iou", value, None,
        "Physics-IQ Weighted spatial IoU: binary motion masks averaged over time to [0,1] per pixel, "
        "then sum(min)/sum(max) over pixels; 1.0 when both are empty, as Physics-IQ",
    )


def physics_iq_mse(pred, target) -> MetricResult:
    """Physics-IQ MSE: mean squared error over H*W*C per frame on [0, 1], averaged over frames."""
    p, g = _pair(pred, target, _as_video)
    per_frame = ((p - g) ** 2).mean(dim=(1, 2, 3))
    return MetricResult(
        "physics_iq_mse", float(per_frame.mean()), _floats(per_frame),
        "Physics-IQ MSE: squared error averaged over H*W*C per frame on [0,1] (uint8 / 255), "
        "averaged over frames; lower is better",
    )


def physics_iq_scores(pred, target, target_take2=None) -> dict[str, MetricResult]:
    """All four Physics-IQ metrics of a predicted video against a real one, [T, H, W, C] each.

    Returns {"spatial_iou", "spatiotemporal_iou", "weighted_spatial_iou", "mse"}.
    With `target_take2` (a second recording of the same scene), also returns the
    same four between the two takes under "physical_variance_<name>": the
    ceiling Physics-IQ normalises its score by.
    """
    p, g = _pair(pred, target, _as_video)
    mp, mg = motion_masks(p), motion_masks(g)
    conv = " | masks: " + _MOTION_CONVENTION.format(alpha=0.3, threshold=10)

    def four(m_a, m_b, a, b, prefix: str) -> dict[str, MetricResult]:
        res = {
            "spatial_iou": spatial_iou(m_a, m_b),
            "spatiotemporal_iou": spatiotemporal_iou(m_a, m_b),
            "weighted_spatial_iou": weighted_spatial_iou(m_a, m_b),
        }
        res = {
            k: MetricResult(prefix + r.name, r.value, r.per_frame, r.convention + conv)
            for k, r in res.items()
        }
        mse = physics_iq_mse(a, b)
        res["mse"] = MetricResult(prefix + mse.name, mse.value, mse.per_frame, mse.convention)
        return {prefix + k: r for k, r in res.items()}

    out = four(mp, mg, p, g, "")
    if target_take2 is not None:
        g2 = _as_video(target_take2, "target_take2")
        if g2.shape != g.shape:
            raise ValueError(
                f"target_take2: expected the shape of target {tuple(g.shape)}, got {tuple(g2.shape)}"
            )
        out.update(four(mg, motion_masks(g2), g, g2.to(g.device), "physical_variance_"))
    return out


_IQ_KEYS = ("spatial_iou", "spatiotemporal_iou", "weighted_spatial_iou", "mse")


def physics_iq_score(model: Mapping[str, float], variance: Mapping[str, float]) -> MetricResult:
    """The Physics-IQ score (0..100) from dataset means of the four metrics and of their physical variance.

    `model` and `variance` map "spatial_iou", "spatiotemporal_iou",
    "weighted_spatial_iou" and "mse" to their means over every scored clip
    (model vs real, and real take 1 vs real take 2). As Physics-IQ's original
    score: 100 * (mean of the three IoU ratios model/variance, minus the MSE
    excess model - variance), clipped to [0, 100]. A model as close to the
    real video as a second take of it scores about 100.
    """
    for name, d in (("model", model), ("variance", variance)):
        missing = [k for k in _IQ_KEYS if k not in d]
        if missing:
            raise ValueError(f"{name}: expected the means of {', '.join(_IQ_KEYS)}; missing {', '.join(missing)}")
    ratios = []
    for k in _IQ_KEYS[:3]:
        v = float(variance[k])
        # a zero variance IoU means the two real takes never agree; no ratio can be formed
        ratios.append(float(model[k]) / v if v > 0 else float("nan"))
    raw = 100.0 * (float(np.mean(ratios)) - (float(model["mse"]) - float(variance["mse"])))
    value = float(np.clip(raw, 0.0, 100.0)) if math.isfinite(raw) else float("nan")
    return MetricResult(
        name="physics_iq_score",
        value=value,
        per_frame=None,
        convention=(
            "Physics-IQ score (original formula): 100 * ((sIoU/var_sIoU + stIoU/var_stIoU + wsIoU/var_wsIoU)/3 "
            "- (MSE - var_MSE)), clipped to [0, 100]; each term a mean over all scored clips, var_* the same "
            "metric between two takes of the real scene (physical variance); MSE on [0,1]"
        ),
    )


def roc_auc(scores, labels) -> MetricResult:
    """Area under the ROC curve of `scores` (higher = more likely positive) for binary `labels` (1 = positive).

    Computed as the Mann-Whitney statistic: the probability that a random
    positive scores higher than a random negative, ties counting one half.
    0.5 is chance, 1 a perfect ranking. NaN when one class is empty.
    """
    s = np.asarray(scores, np.float64).reshape(-1)
    y = np.asarray(labels).reshape(-1)
    if s.shape != y.shape:
        raise ValueError(f"scores and labels: expected the same length, got {s.shape[0]} and {y.shape[0]}")
    if not np.all(np.isfinite(s)):
        raise ValueError("scores: expected finite numbers, found NaN or inf")
    if not np.all(np.isin(y, (0, 1))):
        raise ValueError("labels: expected 0 (negative) or 1 (positive)")
    pos, neg = s[y == 1], s[y == 0]
    conv = ("ROC AUC as the Mann-Whitney U statistic: P(score of a random positive > score of a random negative) "
            "+ 0.5 P(tie); 0.5 = chance, 1 = perfect")
    if len(pos) == 0 or len(neg) == 0:
        return MetricResult("roc_auc", float("nan"), None, conv + "; NaN: one class is empty")
    greater = (pos[:, None] > neg[None, :]).sum()
    ties = (pos[:, None] == neg[None, :]).sum()
    return MetricResult("roc_auc", float((greater + 0.5 * ties) / (len(pos) * len(neg))), None, conv)
