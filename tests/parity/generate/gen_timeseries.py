"""Produce tests/parity/fixtures/timeseries_tsdiff.npz from the official TSDiff code
(amazon-science/unconditional-time-series-diffusion).

Needs a checkout of the official code (not part of steerdiff) and einops + opt_einsum (pure Python; here
installed with `pip install --target /tmp/offdeps einops opt_einsum`); run
    cd /tmp/official/amazon-science+unconditional-time-series-diffusion && OMP_NUM_THREADS=1 python \
        /work/main/tests/parity/generate/gen_timeseries.py /work/main/tests/parity/fixtures
gluonts, pytorch_lightning, pandas, matplotlib, seaborn and sklearn (data, training loop, plots, linear baseline) are replaced by empty stand-ins:
the functions run here use none of them.
"""

import importlib.abc
import importlib.machinery
import json
import sys
import types

import numpy as np
import torch

sys.path[:0] = ["src", "/tmp/offdeps"]


class _Anything(type):
    """A class that stands for any name of a stubbed package (subclassable, callable, any attribute)."""

    def __getattr__(cls, name):
        return _Any

    def __call__(cls, *args, **kwargs):
        if len(args) == 1 and isinstance(args[0], types.FunctionType) and not kwargs:
            return args[0]  # used as a decorator
        return _Any  # e.g. validated() or register(cls), whose result then decorates a function


class _Any(metaclass=_Anything):
    pass


class _StubModule(types.ModuleType):
    __path__ = []

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _Any


class _StubFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    ROOTS = ("gluonts", "pytorch_lightning", "seaborn", "pykeops", "pandas", "matplotlib", "sklearn")

    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in self.ROOTS:
            return importlib.machinery.ModuleSpec(name, self, is_package=True)
        return None

    def create_module(self, spec):
        return _StubModule(spec.name)

    def exec_module(self, module):
        if module.__name__ == "pykeops":
            raise ImportError("no pykeops here")  # the official s4.py then uses its pure-torch kernels


sys.meta_path.insert(0, _StubFinder())

from uncond_ts_diff.arch.s4 import SSKernelDiag  # noqa: E402
from uncond_ts_diff.model.diffusion._base import TSDiffBase  # noqa: E402
from uncond_ts_diff.sampler.observation_guidance import DDIMGuidance, Guidance  # noqa: E402
from uncond_ts_diff.utils import linear_beta_schedule  # noqa: E402

out = sys.argv[1]
SOURCE = "amazon-science/unconditional-time-series-diffusion@3eafeffdffefd4d2f5344ac63e5627a746c331a3"
torch.set_default_dtype(torch.float64)
g = np.random.default_rng(0)

# ------------------------------------------------------------- a stand-in model with the official TSDiff schedule
B, S, L, C, CONTEXT = 2, 3, 24, 2, 16  # windows, samples per window (quantile levels), length, channels
STEPS = 10
W = g.standard_normal((L, L)) / np.sqrt(L)
W_t = torch.tensor(W)


def backbone(x, t, features=None):  # eps-network stand-in: x (rows, L, C), t (rows,)
    tt = t.to(torch.float64)[:, None, None]
    return 0.8 * torch.tanh(torch.einsum("lk,rkc->rlc", W_t, x) * (1 + 0.05 * tt))


model = TSDiffBase.__new__(TSDiffBase)  # no __init__: only the schedule buffers and methods are used
betas = linear_beta_schedule(STEPS).to(torch.float64)  # the official linear schedule
alphas_cumprod = torch.cumprod(1 - betas, 0)
alphas_cumprod_prev = torch.nn.functional.pad(alphas_cumprod[:-1], (1, 0), value=1.0)
model.timesteps = STEPS
model.alphas_cumprod = alphas_cumprod
model.sqrt_alphas_cumprod = alphas_cumprod.sqrt()
model.sqrt_one_minus_alphas_cumprod = (1 - alphas_cumprod).sqrt()
model.posterior_variance = betas * (1 - alphas_cumprod_prev) / (1 - alphas_cumprod)
model.backbone = backbone

observation = torch.tensor(g.standard_normal((B, L, C)))
mask = torch.zeros(B, L, C)
mask[:, :CONTEXT] = 1
mask[1, 3, 0] = 0  # a missing value inside the context
obs_rows = observation.repeat_interleave(S, 0)  # as Guidance.forward does
mask_rows = mask.repeat_interleave(S, 0)
y = torch.tensor(g.standard_normal((B * S, L, C)))  # a fixed noisy sample
t = torch.full((B * S,), 6, dtype=torch.long)

arrays = {
    "W": W,
    "observation": observation.numpy(),
    "mask": mask.numpy(),
    "y": y.numpy(),
    "alphas_cumprod": alphas_cumprod.numpy(),
}
for kind in ("MSE", "quantile"):
    guide = DDIMGuidance(
        model, prediction_length=L - CONTEXT, eta=0.0, scale=4.0, num_samples=S, guidance=kind
    )
    arrays[f"energy_{kind}"] = np.array(guide.energy_func(y.clone(), t, obs_rows, mask_rows, None).item())
    arrays[f"score_{kind}"] = guide.score_func(y.clone(), t, obs_rows, mask_rows, None).numpy()
    # the whole guided DDIM run (DDIMGuidance._reverse_ddim) from a fixed start (its torch.randn_like)
    start = torch.tensor(g.standard_normal((B * S, L, C)))
    arrays[f"ddim_start_{kind}"] = start.numpy()
    real = torch.randn_like
    torch.randn_like = lambda x, s=start: s.clone()
    try:
        arrays[f"ddim_final_{kind}"] = guide._reverse_ddim(obs_rows, mask_rows, None, 4.0).numpy()
    finally:
        torch.randn_like = real
arrays["quantile_loss_elementwise"] = Guidance.quantile_loss(
    types.SimpleNamespace(num_samples=S), model.fast_denoise(y, t), obs_rows
).numpy()

# ------------------------------------------------------------- S4D kernel (SSKernelDiag, zero-order hold)
H, N, KL = 3, 4, 32
A = torch.complex(-torch.tensor(g.uniform(0.2, 1.0, (H, N))), torch.tensor(g.uniform(0, 6, (H, N))))
Cc = torch.complex(torch.tensor(g.standard_normal((2, H, N))), torch.tensor(g.standard_normal((2, H, N))))
log_dt = torch.tensor(g.uniform(np.log(1e-3), np.log(1e-1), H))
kern = SSKernelDiag(A, torch.ones(H, N, dtype=torch.cdouble), Cc, log_dt, disc="zoh")
k, _ = kern(L=KL)
arrays.update(
    s4_A_real=A.real.numpy(),
    s4_A_imag=A.imag.numpy(),
    s4_C_real=Cc.real.numpy(),
    s4_C_imag=Cc.imag.numpy(),
    s4_log_dt=log_dt.numpy(),
    s4_kernel=k.detach().numpy(),
)

meta = {
    "source": SOURCE,
    "files": [
        "src/uncond_ts_diff/sampler/observation_guidance.py",
        "src/uncond_ts_diff/model/diffusion/_base.py",
        "src/uncond_ts_diff/arch/s4.py",
        "src/uncond_ts_diff/utils.py",
    ],
    "functions": {
        "energy_*, score_*": "Guidance.energy_func / Guidance.score_func (guidance='MSE' | 'quantile') of a DDIMGuidance "
        "at t = 6 on the fixed sample y; TSDiffBase.fast_denoise as the clean estimate",
        "ddim_final_*": "DDIMGuidance._reverse_ddim(observation, mask, None, base_scale=4.0), eta = 0, skip_factor = 1, "
        "with TSDiffBase.p_sample_genddim; its torch.randn_like start replaced by ddim_start_*",
        "quantile_loss_elementwise": "Guidance.quantile_loss(fast_denoise(y, t), observation)",
        "s4_kernel": "SSKernelDiag(A, B=1, C, log_dt, disc='zoh')(L=32)[0]: kernels (2, H, L)",
    },
    "model": "TSDiffBase with linear_beta_schedule(10) and an eps-network stand-in "
    "0.8 tanh((W @ x) (1 + 0.05 t)) over the time axis; shapes (rows = windows x samples, L, C)",
    "sizes": {
        "windows": B,
        "samples": S,
        "length": L,
        "channels": C,
        "context": CONTEXT,
        "steps": STEPS,
        "scale": 4.0,
        "t": 6,
    },
    "command": "cd /tmp/official/amazon-science+unconditional-time-series-diffusion && OMP_NUM_THREADS=1 python "
    "/work/main/tests/parity/generate/gen_timeseries.py /work/main/tests/parity/fixtures",
}
np.savez_compressed(f"{out}/timeseries_tsdiff.npz", **arrays, meta=json.dumps(meta))
print({k: v.shape for k, v in arrays.items()})
