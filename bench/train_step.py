"""A PyTorch port of one `train-vae` step, for `vaepipe bench train --baseline pytorch`.

The same computation as `src/stages/train_vae.rs` (`StepRunner::step`), written the way a
PyTorch user would: facenet's 64-px DFC-VAE (TF-slim layers: SAME padding, BatchNorm with beta
only, eps 1e-3, momentum 0.005, leaky ReLU 0.1), the TF-legacy bilinear resize as two
interpolation matrices, the frozen Inception-ResNet-v1 stem for the perceptual loss
(originals under no_grad, inference-mode BN), KL averaged and reconstruction summed over the
batch, and TensorFlow's Adam. Eager by default; `--compile` wraps the forward + loss in
`torch.compile`. Prints one JSON line: {"mode", "batch", "depth", "threads", "steps_per_s", "vae_params"}
(the trained parameters' element count, which vaepipe's tests compare with its own VAE).

Run by vaepipe with the bootstrap's torch venv python; it needs nothing but torch.
"""

import argparse
import json
import math
import time

import torch
import torch.nn.functional as F

STEM = [  # (name, c_out, kernel, stride, padding) of Inception-ResNet-v1's first end points
    ("Conv2d_1a_3x3", 32, 3, 2, 0),
    ("Conv2d_2a_3x3", 32, 3, 1, 0),
    ("Conv2d_2b_3x3", 64, 3, 1, 1),
]


def interpolation_matrix(n_in, n_out):
    """TF1 legacy bilinear (src = dst * in / out) as an [out, in] matrix."""
    m = torch.zeros(n_out, n_in)
    scale = n_in / n_out
    for i in range(n_out):
        src = i * scale
        lower = min(max(math.floor(src), 0), n_in - 1)
        upper = min(max(math.ceil(src), 0), n_in - 1)
        lerp = src - math.floor(src)
        m[i, lower] += 1 - lerp
        m[i, upper] += lerp
    return m


class Resize(torch.nn.Module):
    def __init__(self, n_in, n_out):
        super().__init__()
        self.register_buffer("m", interpolation_matrix(n_in, n_out))

    def forward(self, x):
        return self.m @ x @ self.m.t()


class ConvBn(torch.nn.Module):
    """slim.conv2d: conv without bias, BatchNorm with beta only, then an activation."""

    def __init__(self, c_in, c_out, k, stride, padding, act):
        super().__init__()
        self.conv = torch.nn.Conv2d(c_in, c_out, k, stride, padding, bias=False)
        self.bn = torch.nn.BatchNorm2d(c_out, eps=1e-3, momentum=0.005, affine=False)
        self.beta = torch.nn.Parameter(torch.zeros(c_out))
        self.act = act

    def forward(self, x):
        x = self.bn(self.conv(x)) + self.beta.view(1, -1, 1, 1)
        if self.act == "leaky":
            return torch.maximum(x, 0.1 * x)
        if self.act == "relu":
            return F.relu(x)
        return x


class DfcVae(torch.nn.Module):
    def __init__(self, latent=100):
        super().__init__()
        self.enc = torch.nn.Sequential(
            *[ConvBn(a, b, 4, 2, 1, "leaky") for a, b in [(3, 32), (32, 64), (64, 128), (128, 256)]]
        )
        self.fc_mean = torch.nn.Linear(4096, latent)
        self.fc_log_var = torch.nn.Linear(4096, latent)
        self.fc_dec = torch.nn.Linear(latent, 4096)
        acts = ["leaky", "leaky", "leaky", "none"]
        self.dec = torch.nn.ModuleList(
            ConvBn(a, b, 3, 1, 1, act) for (a, b), act in zip([(256, 128), (128, 64), (64, 32), (32, 3)], acts)
        )

    def encode(self, x):
        net = self.enc(x).permute(0, 2, 3, 1).flatten(1)  # NHWC flatten as TF
        return self.fc_mean(net), self.fc_log_var(net)

    def decode(self, z):
        net = self.fc_dec(z).view(-1, 4, 4, 256).permute(0, 3, 1, 2)
        for layer in self.dec:
            net = layer(F.interpolate(net, scale_factor=2, mode="nearest"))
        return net


class Stem(torch.nn.Module):
    def __init__(self, depth):
        super().__init__()
        layers, c = [], 3
        for _, c_out, k, s, p in STEM[:depth]:
            layers.append(ConvBn(c, c_out, k, s, p, "relu"))
            c = c_out
        self.layers = torch.nn.ModuleList(layers)

    def forward(self, x):
        feats = []
        for layer in self.layers:
            x = layer(x)
            feats.append(x)
        return feats


class Step(torch.nn.Module):
    """Forward and loss of one step; returns (total, rec, kl)."""

    def __init__(self, depth, crop=160, size=64):
        super().__init__()
        self.vae = DfcVae()
        self.face = Stem(depth).eval()
        for p in self.face.parameters():
            p.requires_grad_(False)
        self.down = Resize(crop, size)
        self.up = Resize(size, crop)

    def forward(self, originals):
        images = self.down(originals)
        mean, log_var = self.vae.encode(images)
        z = mean + torch.randn_like(mean) * torch.exp(0.5 * log_var)
        recon = self.vae.decode(z)
        with torch.no_grad():
            targets = self.face(originals)
        outputs = self.face(self.up(recon))
        rec = sum(((o - t) ** 2).sum() for o, t in zip(outputs, targets))
        kl = (0.5 * (log_var.exp() + mean**2 - 1 - log_var).sum(1)).mean()
        return kl * 1.0 + rec * 0.5, rec, kl


class TfAdam:
    """TensorFlow 1's Adam: eps on the uncorrected sqrt(v), corrections in the step size."""

    def __init__(self, params, b1=0.9, b2=0.999, eps=1e-8):
        self.params = [p for p in params if p.requires_grad]
        self.m = [torch.zeros_like(p) for p in self.params]
        self.v = [torch.zeros_like(p) for p in self.params]
        self.b1, self.b2, self.eps, self.t = b1, b2, eps, 0

    @torch.no_grad()
    def step(self, lr):
        self.t += 1
        lr_t = lr * math.sqrt(1 - self.b2**self.t) / (1 - self.b1**self.t)
        for p, m, v in zip(self.params, self.m, self.v):
            if p.grad is None:
                continue
            m.mul_(self.b1).add_(p.grad, alpha=1 - self.b1)
            v.mul_(self.b2).addcmul_(p.grad, p.grad, value=1 - self.b2)
            p.sub_(m / (v.sqrt() + self.eps) * lr_t)

    def zero_grad(self):
        for p in self.params:
            p.grad = None


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--depth", type=int, default=3, help="perceptual layers: 1..3 of the stem")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--compile", action="store_true")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(666)
    step = Step(a.depth)
    opt = TfAdam(step.parameters())
    forward = torch.compile(step) if a.compile else step
    x = torch.randn(a.batch, 3, 160, 160)

    def one():
        total, _, _ = forward(x)
        opt.zero_grad()
        total.backward()
        opt.step(1e-4)
        return total.item()

    for _ in range(a.warmup):
        one()
    start = time.perf_counter()
    for _ in range(a.steps):
        one()
    elapsed = time.perf_counter() - start
    print(
        json.dumps(
            {
                "mode": "compile" if a.compile else "eager",
                "batch": a.batch,
                "depth": a.depth,
                "threads": torch.get_num_threads(),
                "steps_per_s": a.steps / elapsed,
                "vae_params": sum(p.numel() for p in step.vae.parameters() if p.requires_grad),
            }
        )
    )


if __name__ == "__main__":
    main()
