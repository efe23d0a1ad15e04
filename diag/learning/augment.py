"""Time-frequency views: the random changes that should *not* change what a window shows.

Used by fine-tuning (:meth:`TimeFrequencyAugment.light`, per batch) and by self-supervised
pretraining (two stronger views of each window). For time-frequency images we know what should not
matter: where in time a window starts, how long a transient lasts, missing time slices or
frequency bands, the overall level (an offset in the log domain) and noise. Nothing flips or
rotates the image. By default nothing shifts it along frequency: the frequency axis carries the
fault. Order images (``envorder``, ``harmonics``) are the exception :func:`views_for` makes: their rows
are orders of a reference rate estimated per recording, so a shift of a row or two (``freq_shift``) is
what a slightly wrong reference does -- and their columns are not time (envorder: demodulation bands;
harmonics: one spectrum repeated), so no time crop or shift there.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from diag.errors import DiagError


class TimeFrequencyAugment:
    """Random views of a batch of time-frequency images ``[B, C, H, W]`` (rows: frequency, columns: time).

    Per image, in this order:

    * time crop-and-resize: a random span of ``s * W`` columns, ``s ~ U[crop_min, 1]``, at a random
      position, stretched back to ``W`` (bilinear along time only; rows are untouched), then
      shifted in time by up to ``shift * W`` columns either way (reflecting at the edges);
    * time masking: up to ``time_mask * W`` consecutive columns set to the image mean;
    * frequency masking: up to ``freq_mask * H`` consecutive rows set to the image mean;
    * gain: an additive offset ``~ N(0, gain^2)`` (a gain in the log-magnitude domain);
    * noise: additive Gaussian noise with standard deviation ``~ U[0, noise]``;
    * frequency shift (``freq_shift > 0`` only): rows moved by a whole number of rows, up to
      ``round(freq_shift * H)`` either way, the edge row repeated.

    No flips, no rotations. All randomness comes from ``generator`` (on
    the images' device), so views are reproducible.
    """

    def __init__(self, crop_min: float = 0.5, time_mask: float = 0.2, freq_mask: float = 0.1, gain: float = 0.3,
                 noise: float = 0.2, shift: float = 0.0, freq_shift: float = 0.0):
        if not 0 < crop_min <= 1:
            raise DiagError(f"crop_min: must be in (0, 1], got {crop_min}")
        if not 0 <= shift < 1:
            raise DiagError(f"shift: must be in [0, 1), got {shift}")
        self.shift = shift
        if not 0 <= freq_shift < 0.5:
            raise DiagError(f"freq_shift: must be in [0, 0.5), got {freq_shift}")
        self.freq_shift = freq_shift
        for name, v in (("time_mask", time_mask), ("freq_mask", freq_mask)):
            if not 0 <= v < 1:
                raise DiagError(f"{name}: must be in [0, 1), got {v}")
        if gain < 0 or noise < 0:
            raise DiagError(f"gain and noise: must be >= 0, got {gain}, {noise}")
        self.crop_min, self.time_mask, self.freq_mask, self.gain, self.noise = crop_min, time_mask, freq_mask, gain, noise

    @classmethod
    def light(cls) -> "TimeFrequencyAugment":
        """The mild setting used while fine-tuning (no frequency masking)."""
        return cls(crop_min=0.8, time_mask=0.1, freq_mask=0.0, gain=0.1, noise=0.05)

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        b, _, h, w = x.shape
        dev = x.device
        u = torch.rand(b, 7 if self.shift > 0 else 6, generator=generator, device=dev)  # 6: same stream as before shift
        if self.crop_min < 1 or self.shift > 0:
            s = self.crop_min + (1 - self.crop_min) * u[:, 0]
            theta = torch.zeros(b, 2, 3, device=dev)
            theta[:, 0, 0] = s
            theta[:, 0, 2] = (1 - s) * (2 * u[:, 1] - 1)
            if self.shift > 0:
                theta[:, 0, 2] += 2 * self.shift * (2 * u[:, 6] - 1)
            theta[:, 1, 1] = 1
            grid = F.affine_grid(theta, list(x.shape), align_corners=False)
            x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        if self.time_mask > 0:
            x = torch.where(band_mask(u[:, 2], u[:, 3], self.time_mask, w)[:, None, None, :], mean, x)
        if self.freq_mask > 0:
            x = torch.where(band_mask(u[:, 4], u[:, 5], self.freq_mask, h)[:, None, :, None], mean, x)
        if self.gain > 0:
            x = x + self.gain * torch.randn(b, 1, 1, 1, generator=generator, device=dev)
        if self.noise > 0:
            sigma = self.noise * torch.rand(b, 1, 1, 1, generator=generator, device=dev)
            x = x + sigma * torch.randn(x.shape, generator=generator, device=dev)
        if self.freq_shift > 0:  # drawn last: the other views' random stream is the same as without it
            x = shift_rows(x, self.freq_shift, generator)
        return x

    def settings(self) -> dict[str, float]:
        return {"crop_min": self.crop_min, "time_mask": self.time_mask, "freq_mask": self.freq_mask,
                "gain": self.gain, "noise": self.noise, "shift": self.shift, "freq_shift": self.freq_shift}


#: image kinds whose columns are not time (see diag.signal.transforms): envorder columns are demodulation
#: bands, harmonics columns repeat one spectrum; their rows are orders of a per-recording reference rate
ORDER_KINDS = ("envorder", "harmonics")


def views_for(kinds: list[str] | tuple[str, ...], settings: dict[str, float]) -> tuple[dict[str, float], list[str]]:
    """View strengths matched to the image kinds (``pretrain.views = "auto"``): the settings given, changed
    where the kind makes them wrong; returns ``(settings, notes saying what changed and why)``.

    * ``envorder`` present: no time crop or time shift (``crop_min = 1``, ``shift = 0``): its columns are
      demodulation bands, so a crop-and-stretch would move a resonance to another band and drop bands;
    * any order kind (``envorder``, ``harmonics``): ``freq_shift`` at least 0.02 (a row or so): a
      reference rate a little off moves every line by the same number of rows.
    """
    out, notes = dict(settings), []
    if "envorder" in kinds and (out["crop_min"] < 1 or out["shift"] > 0):
        out["crop_min"], out["shift"] = 1.0, 0.0
        notes.append("envorder columns are demodulation bands, not time: no time crop or shift")
    if any(k in ORDER_KINDS for k in kinds) and out.get("freq_shift", 0.0) < 0.02:
        out["freq_shift"] = 0.02
        notes.append("order rows follow an estimated reference rate: frequency shift of up to 2 % of the rows")
    return out, notes


def shift_rows(x: torch.Tensor, max_frac: float, generator: torch.Generator) -> torch.Tensor:
    """Each image's rows moved by a random whole number in ``[-round(max_frac * H), round(max_frac * H)]``
    (edge rows repeated)."""
    b, _, h, _ = x.shape
    k = max(1, round(max_frac * h))
    s = torch.randint(-k, k + 1, (b,), generator=generator, device=x.device)
    rows = (torch.arange(h, device=x.device)[None, :] - s[:, None]).clamp(0, h - 1)  # [B, H]
    return torch.gather(x, 2, rows[:, None, :, None].expand(-1, x.shape[1], -1, x.shape[3]))


def band_mask(u_width: torch.Tensor, u_start: torch.Tensor, max_frac: float, n: int) -> torch.Tensor:
    """Boolean ``[B, n]`` masks of one run of up to ``max_frac * n`` consecutive positions each."""
    width = (u_width * max_frac * n).long()
    start = (u_start * (n - width + 1)).long()
    pos = torch.arange(n, device=u_width.device)[None, :]
    return (pos >= start[:, None]) & (pos < (start + width)[:, None])
