"""A small LLaMA with plain RoPE or CLEX, written to match Hugging Face's LLaMA layout.

Parameter names are those of `LlamaForCausalLM` (`model.layers.N.self_attn.q_proj.weight`, ...)
plus the CLEX module `model.clex_layer` (`proj_func.ode_up_proj`, `proj_func.ode_down_proj`,
`inv_freq`), so `state_dict()` can be saved as a Hugging Face checkpoint as it is.

RoPE is the Hugging Face half-split form: dimensions i and i + d/2 form pair i, rotated by
`position * freq_i`, with `rotate_half([a, b]) = [-b, a]`.

CLEX (arXiv 2310.16450) in brief, as the reference code does it:
  * the state is y = ln z, the log of the scaled inverse frequencies, with y(1) = ln theta;
  * dy/dt = act((y + ln theta_ntk(2t-1)) U) D + xi(t), where theta_ntk(a) is the NTK-aware
    frequency vector for scale a (base 10000, whatever rope_theta is) and
    xi_j(t) = -4j / ((d-2)(2t-1)) is d/dt of ln theta_ntk(2t-1);
  * solved with torchdiffeq's fixed-step "rk4" (3/8 rule), step `time_dt`;
  * training: one integer t' in 1..T per forward; the n tokens get sorted random distinct
    positions spread over [0, L*t') (first 0, last L*t'-1); t' = 1 is plain RoPE;
  * inference: t = ceil(n / L) capped at T, contiguous positions, t = 1 is plain RoPE.
"""

import math
import random

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

NTK_BASE = 10000.0  # the reference always uses 10000 inside the ODE


class Config:
    def __init__(self, **kw):
        self.vocab_size = kw.get("vocab_size", 8000)
        self.hidden_size = kw.get("hidden_size", 256)
        self.intermediate_size = kw.get("intermediate_size", 704)
        self.num_hidden_layers = kw.get("num_hidden_layers", 4)
        self.num_attention_heads = kw.get("num_attention_heads", 8)
        self.num_key_value_heads = kw.get("num_key_value_heads", 4)
        self.max_position_embeddings = kw.get("max_position_embeddings", 256)  # L
        self.rope_theta = kw.get("rope_theta", 10000.0)
        self.rms_norm_eps = kw.get("rms_norm_eps", 1e-5)
        self.tie_word_embeddings = kw.get("tie_word_embeddings", False)
        # CLEX: None for plain RoPE, else dict(max_factor, param_factor, act, time_dt)
        self.clex = kw.get("clex", None)
        self.log_scale = kw.get("log_scale", False)

    @property
    def head_dim(self):
        return self.hidden_size // self.num_attention_heads

    def to_dict(self):
        return dict(self.__dict__)


class RMSNorm(nn.Module):
    def __init__(self, n, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n))
        self.eps = eps

    def forward(self, x):
        var = x.pow(2).mean(-1, keepdim=True)
        return self.weight * (x * torch.rsqrt(var + self.eps))


def base_inv_freq(theta, d):
    return 1.0 / (theta ** (torch.arange(0, d, 2, dtype=torch.float32) / d))


class ClexOde(nn.Module):
    """The right-hand side f(t, y) of CLEX's ODE, with its two learned matrices."""

    def __init__(self, d, param_factor, act):
        super().__init__()
        self.d = d
        self.ode_up_proj = nn.Parameter(torch.empty(d // 2, param_factor * d))
        self.ode_down_proj = nn.Parameter(torch.empty(param_factor * d, d // 2))
        self.act = {"tanh": torch.tanh, "silu": F.silu}[act]
        self._cache = {}
        nn.init.kaiming_uniform_(self.ode_up_proj, a=math.sqrt(5))
        nn.init.zeros_(self.ode_down_proj)

    def time_terms(self, t, dtype, device):
        """(ln theta_ntk(alpha), xi(t)) at time t, with alpha = 2t - 1 (1 for t < 1, which the
        solver never reaches). They do not depend on y, so they are cached per (t, dtype)."""
        key = (float(t), dtype)
        hit = self._cache.get(key)
        if hit is None:
            d = self.d
            alpha = max(2.0 * float(t) - 1.0, 1.0)
            j2 = torch.arange(0, d, 2, dtype=torch.float64)  # 2j
            # ln theta_ntk_j(alpha) = -(2j/d) * (ln B + (d/(d-2)) ln alpha)
            ln_ntk = -(j2 / d) * (math.log(NTK_BASE) + (d / (d - 2)) * math.log(alpha))
            # xi_j(t) = d/dt ln theta_ntk_j(2t-1) = -2 * (2j)/(d-2) / alpha
            xi = -2.0 * j2 / (d - 2) / alpha
            hit = (ln_ntk.to(dtype), xi.to(dtype))
            if len(self._cache) > 100000:
                self._cache.clear()
            self._cache[key] = hit
        return hit[0].to(device), hit[1].to(device)

    def forward(self, t, y):
        ln_ntk, xi = self.time_terms(t, y.dtype, y.device)
        h = self.act((y + ln_ntk) @ self.ode_up_proj.to(y.dtype))
        return h @ self.ode_down_proj.to(y.dtype) + xi


def solve_ode(func, y0, times, time_dt):
    from torchdiffeq import odeint

    return odeint(func, y0, times, method="rk4", options={"step_size": time_dt})


def _act_np(name, x):
    if name == "tanh":
        a = np.tanh(x)
        return a, 1.0 - a * a
    sig = 1.0 / (1.0 + np.exp(-x))
    return x * sig, sig * (1.0 + x * (1.0 - sig))


class ClexSolve(torch.autograd.Function):
    """z(t1) = exp(y(t1)) of CLEX's ODE from y(1) = ln inv_freq, by the same fixed-step
    3/8-rule RK4 as torchdiffeq's "rk4", in float64 NumPy, with a hand-written backward pass
    through every RK4 stage (the exact gradient of the discretised solve, as autograd through
    torchdiffeq would give). Autograd through torchdiffeq costs seconds per solve on a small
    CPU (thousands of tiny ops); this costs milliseconds. `check_solver()` compares the two."""

    @staticmethod
    def forward(ctx, U, D, inv_freq, t1, time_dt, act):
        Un, Dn = U.detach().double().numpy(), D.detach().double().numpy()
        d2 = Un.shape[0]
        d = 2 * d2
        n = max(1, round((t1 - 1.0) / time_dt))
        h = (t1 - 1.0) / n
        t0 = 1.0 + h * np.arange(n)
        times = t0[:, None] + h * np.array([0.0, 1.0 / 3.0, 2.0 / 3.0, 1.0])[None, :]  # [n, 4]
        alpha = np.maximum(2.0 * times - 1.0, 1.0)[..., None]
        j2 = np.arange(0, d, 2, dtype=np.float64)
        a = -(j2 / d) * (math.log(NTK_BASE) + (d / (d - 2)) * np.log(alpha))  # [n, 4, d2]
        b = -2.0 * j2 / (d - 2) / alpha
        y = np.log(inv_freq.detach().double().numpy())
        m = Un.shape[1]
        X = np.empty((n, 4, d2))  # stage inputs + a
        Dv = np.empty((n, 4, m))  # act'(pre)
        Hh = np.empty((n, 4, m))  # act(pre)
        for i in range(n):
            def f(s, ys):
                x = ys + a[i, s]
                hh, dv = _act_np(act, x @ Un)
                X[i, s], Hh[i, s], Dv[i, s] = x, hh, dv
                return hh @ Dn + b[i, s]
            k1 = f(0, y)
            k2 = f(1, y + h * k1 / 3.0)
            k3 = f(2, y + h * (k2 - k1 / 3.0))
            k4 = f(3, y + h * (k1 - k2 + k3))
            y = y + h * (k1 + 3.0 * k2 + 3.0 * k3 + k4) / 8.0
        z = np.exp(y)
        ctx.saved = (Un, Dn, X, Dv, Hh, h, z)
        return torch.from_numpy(z).to(U.dtype)

    @staticmethod
    def backward(ctx, gz):
        Un, Dn, X, Dv, Hh, h, z = ctx.saved
        gy = gz.detach().double().numpy() * z
        gU, gD = np.zeros_like(Un), np.zeros_like(Dn)
        n = X.shape[0]
        for i in range(n - 1, -1, -1):
            def vjp(s, g):
                nonlocal gU, gD
                gD += np.outer(Hh[i, s], g)
                gp = (Dn @ g) * Dv[i, s]
                gU += np.outer(X[i, s], gp)
                return Un @ gp
            gk1, gk2, gk3, gk4 = h / 8 * gy, 3 * h / 8 * gy, 3 * h / 8 * gy, h / 8 * gy
            g4 = vjp(3, gk4)
            gy = gy + g4
            gk1, gk2, gk3 = gk1 + h * g4, gk2 - h * g4, gk3 + h * g4
            g3 = vjp(2, gk3)
            gy = gy + g3
            gk2, gk1 = gk2 + h * g3, gk1 - h / 3.0 * g3
            g2 = vjp(1, gk2)
            gy = gy + g2
            gk1 = gk1 + h / 3.0 * g2
            gy = gy + vjp(0, gk1)
        return torch.from_numpy(gU).float(), torch.from_numpy(gD).float(), None, None, None, None


class ClexLayer(nn.Module):
    """CLEX's shared module: inv_freq, the ODE, and the choice of frequencies/positions."""

    def __init__(self, cfg):
        super().__init__()
        c = cfg.clex
        self.L = cfg.max_position_embeddings
        self.T = c["max_factor"]
        self.time_dt = c["time_dt"]
        self.register_buffer("inv_freq", base_inv_freq(cfg.rope_theta, cfg.head_dim), persistent=True)
        self.proj_func = ClexOde(cfg.head_dim, c["param_factor"], c["act"])
        self._table = None  # inference table, [T, d/2], built lazily

    def freq_at(self, t):
        """z(t) for one integer t >= 2, with gradients (training)."""
        f = self.proj_func
        act = "tanh" if f.act is torch.tanh else "silu"
        return ClexSolve.apply(f.ode_up_proj, f.ode_down_proj, self.inv_freq, float(t), self.time_dt, act)

    def freq_at_torchdiffeq(self, t):
        """The same by autograd through torchdiffeq (slow; for checking ClexSolve)."""
        y0 = torch.log(self.inv_freq.float())
        sol = solve_ode(self.proj_func, y0, torch.tensor([1.0, float(t)]), self.time_dt)
        return torch.exp(sol[-1])

    @torch.no_grad()
    def table(self, float64=False):
        """z(t) for t = 1..T (row t-1), no gradients. float64 solves the ODE in double."""
        dt = torch.float64 if float64 else torch.float32
        y0 = torch.log(self.inv_freq.to(dt))
        times = torch.arange(1, self.T + 1, dtype=dt)
        sol = solve_ode(lambda t, y: self.proj_func(t, y), y0, times, self.time_dt)
        return torch.exp(sol)

    def train_positions(self, n):
        """One t' in 1..T and n sorted positions over [0, L*t') as the reference trains."""
        t = random.randint(1, self.T)
        s = max(n // self.L, 1)
        span = n * t
        mid = torch.randperm(span - 2)[: n - 2].sort().values.float() + 1
        pos = torch.cat([torch.zeros(1), mid / s, torch.tensor([float(span // s - 1)])])
        return t, pos

    def bucket(self, n):
        return min(max(math.ceil(n / self.L), 1), self.T)


def rope_cos_sin(pos, freq):
    """cos/sin of pos * freq, in float64 if freq is float64 (the test reference), else float32."""
    dt = torch.float64 if freq.dtype == torch.float64 else torch.float32
    ang = torch.outer(pos.to(dt), freq.to(dt))
    emb = torch.cat([ang, ang], dim=-1)
    return emb.cos(), emb.sin()


def rotate_half(x):
    a, b = x.chunk(2, dim=-1)
    return torch.cat([-b, a], dim=-1)


class Attention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        h, hd = cfg.hidden_size, cfg.head_dim
        self.nh, self.nkv, self.hd = cfg.num_attention_heads, cfg.num_key_value_heads, hd
        self.q_proj = nn.Linear(h, self.nh * hd, bias=False)
        self.k_proj = nn.Linear(h, self.nkv * hd, bias=False)
        self.v_proj = nn.Linear(h, self.nkv * hd, bias=False)
        self.o_proj = nn.Linear(self.nh * hd, h, bias=False)

    def forward(self, x, cos, sin, q_scale, lin):
        B, N, _ = x.shape
        q = lin(x, self.q_proj).view(B, N, self.nh, self.hd).transpose(1, 2)
        k = lin(x, self.k_proj).view(B, N, self.nkv, self.hd).transpose(1, 2)
        v = lin(x, self.v_proj).view(B, N, self.nkv, self.hd).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        if q_scale != 1.0:
            q = q * q_scale
        rep = self.nh // self.nkv
        k = k.repeat_interleave(rep, dim=1)
        v = v.repeat_interleave(rep, dim=1)
        o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        o = o.transpose(1, 2).reshape(B, N, self.nh * self.hd)
        return lin(o, self.o_proj)


class MLP(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.gate_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.up_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.down_proj = nn.Linear(cfg.intermediate_size, cfg.hidden_size, bias=False)

    def forward(self, x, lin):
        return lin(F.silu(lin(x, self.gate_proj)) * lin(x, self.up_proj), self.down_proj)


class Block(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.self_attn = Attention(cfg)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.mlp = MLP(cfg)

    def forward(self, x, cos, sin, q_scale, lin):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, q_scale, lin)
        return x + self.mlp(self.post_attention_layernorm(x), lin)


def plain_linear(x, layer):
    return layer(x)


class Inner(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList([Block(cfg) for _ in range(cfg.num_hidden_layers)])
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        if cfg.clex is not None:
            self.clex_layer = ClexLayer(cfg)


class LlamaLM(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.model = Inner(cfg)
        self.lm_head = nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)
        self.register_buffer("rope_inv_freq", base_inv_freq(cfg.rope_theta, cfg.head_dim), persistent=False)
        self.apply(self._init)

    @staticmethod
    def _init(m):
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=0.02)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, std=0.02)

    def compile_blocks(self):
        """torch.compile each decoder block for training forwards (inference stays eager). The
        compiled wrappers share the blocks' parameters and are kept in a plain list, so the
        state dict is unchanged."""
        self._compiled = [torch.compile(b) for b in self.model.layers]

    def rope(self, n, train):
        """(cos, sin, t, q_scale) for a forward over n tokens."""
        clex = getattr(self.model, "clex_layer", None)
        q_scale = 1.0
        if clex is None:
            pos, freq, t = torch.arange(n, dtype=torch.float32), self.rope_inv_freq, 1
        elif train:
            t, pos = clex.train_positions(n)
            freq = clex.inv_freq if t == 1 else clex.freq_at(t)
        else:
            t = clex.bucket(n)
            pos = torch.arange(n, dtype=torch.float32)
            freq = clex.inv_freq if t == 1 else self.clex_table[t - 1]
        if clex is not None and self.cfg.log_scale:
            q_scale = math.log(n) / math.log(self.cfg.max_position_embeddings)
        cos, sin = rope_cos_sin(pos, freq)
        return cos, sin, t, q_scale

    def forward(self, ids, train=False, lin=plain_linear, rope_override=None):
        n = ids.shape[1]
        cos, sin, t, q_scale = rope_override if rope_override is not None else self.rope(n, train)
        x = self.model.embed_tokens(ids)
        blocks = getattr(self, "_compiled", None) if train else None
        for blk in blocks or self.model.layers:
            x = blk(x, cos, sin, q_scale, lin)
        x = self.model.norm(x)
        return lin(x, self.lm_head), t

    def prepare_inference(self, float64_table=True):
        """Solves the CLEX ODE once into the [T, d/2] table used at inference."""
        clex = getattr(self.model, "clex_layer", None)
        if clex is not None:
            self.clex_table = clex.table(float64=float64_table).float()
        return self
