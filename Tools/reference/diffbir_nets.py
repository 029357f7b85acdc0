"""DiffBIR's networks in PyTorch, written from docs/diffbir.md §2 (which was read off DiffBIR's
code): SwinIR (DiffBIR variant), RRDBNet/BSRNet, SCUNet, the SD 2.1 UNet (controlled), the
IRControlNet, the VAE encoder and decoder, and the OpenCLIP text tower. Module and parameter names
follow the published checkpoints' keys, so `load_state_dict` of a published file works unchanged.

Every width is a constructor argument, so that fixtures can be built at reduced sizes; the defaults
are DiffBIR's. These are references for tests and benchmarks, not training code: no dropout, no
checkpointing, float32.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


# --------------------------------------------------------------------------------------------
# SwinIR (DiffBIR variant: pixel-unshuffle by 8, "nearest+conv" upsampler, §2.6)

def _windows(x, ws):
    """[B, H, W, C] → [B·nW, ws·ws, C], windows in row-major order."""
    b, h, w, c = x.shape
    x = x.view(b, h // ws, ws, w // ws, ws, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, ws * ws, c)


def _unwindows(x, ws, h, w):
    c = x.shape[-1]
    b = x.shape[0] // ((h // ws) * (w // ws))
    x = x.view(b, h // ws, w // ws, ws, ws, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b, h, w, c)


def swin_shift_mask(h, w, ws, shift):
    """Additive mask [nW, ws², ws²]: 0 within a band pair, -100 across (bands [0,h-ws), [h-ws,h-shift), [h-shift,h))."""
    region = torch.zeros(1, h, w, 1)
    count = 0
    for hs in (slice(0, -ws), slice(-ws, -shift), slice(-shift, None)):
        for wsl in (slice(0, -ws), slice(-ws, -shift), slice(-shift, None)):
            region[:, hs, wsl, :] = count
            count += 1
    mw = _windows(region, ws).squeeze(-1)
    diff = mw.unsqueeze(1) - mw.unsqueeze(2)
    return torch.where(diff != 0, torch.tensor(-100.0), torch.tensor(0.0))


def swin_relative_index(ws):
    coords = torch.stack(torch.meshgrid(torch.arange(ws), torch.arange(ws), indexing="ij")).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0)
    return (rel[:, :, 0] + ws - 1) * (2 * ws - 1) + (rel[:, :, 1] + ws - 1)


class SwinAttention(nn.Module):
    def __init__(self, dim, ws, heads):
        super().__init__()
        self.ws, self.heads = ws, heads
        self.scale = (dim // heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * ws - 1) ** 2, heads))
        self.register_buffer("relative_position_index", swin_relative_index(ws))
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x, mask):
        bn, n, c = x.shape
        qkv = self.qkv(x).reshape(bn, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0] * self.scale, qkv[1], qkv[2]
        a = q @ k.transpose(-2, -1)
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)].view(n, n, -1).permute(2, 0, 1)
        a = a + bias.unsqueeze(0)
        if mask is not None:
            nw = mask.shape[0]
            a = (a.view(bn // nw, nw, self.heads, n, n) + mask.unsqueeze(1).unsqueeze(0)).view(-1, self.heads, n, n)
        a = a.softmax(-1)
        return self.proj((a @ v).transpose(1, 2).reshape(bn, n, c))


class SwinMlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class SwinBlock(nn.Module):
    def __init__(self, dim, heads, ws, shift, mlp_ratio, resolution):
        super().__init__()
        self.ws, self.shift = ws, shift
        self.norm1 = nn.LayerNorm(dim)
        self.attn = SwinAttention(dim, ws, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = SwinMlp(dim, int(dim * mlp_ratio))
        # The published files store the mask for the configured resolution; it is recomputed for others.
        self.register_buffer("attn_mask", swin_shift_mask(resolution, resolution, ws, shift) if shift else None)

    def forward(self, x, size):
        h, w = size
        b, _, c = x.shape
        shortcut = x
        x = self.norm1(x).view(b, h, w, c)
        if self.shift:
            x = torch.roll(x, shifts=(-self.shift, -self.shift), dims=(1, 2))
        mask = swin_shift_mask(h, w, self.ws, self.shift) if self.shift else None
        x = _unwindows(self.attn(_windows(x, self.ws), mask), self.ws, h, w)
        if self.shift:
            x = torch.roll(x, shifts=(self.shift, self.shift), dims=(1, 2))
        x = shortcut + x.reshape(b, h * w, c)
        return x + self.mlp(self.norm2(x))


class SwinLayer(nn.Module):
    def __init__(self, dim, depth, heads, ws, mlp_ratio, resolution):
        super().__init__()
        self.blocks = nn.ModuleList(SwinBlock(dim, heads, ws, 0 if i % 2 == 0 else ws // 2, mlp_ratio, resolution) for i in range(depth))

    def forward(self, x, size):
        for blk in self.blocks:
            x = blk(x, size)
        return x


class RSTB(nn.Module):
    def __init__(self, dim, depth, heads, ws, mlp_ratio, resolution):
        super().__init__()
        self.residual_group = SwinLayer(dim, depth, heads, ws, mlp_ratio, resolution)
        self.conv = nn.Conv2d(dim, dim, 3, 1, 1)

    def forward(self, x, size):
        b, _, c = x.shape
        y = self.residual_group(x, size).transpose(1, 2).reshape(b, c, size[0], size[1])
        return self.conv(y).flatten(2).transpose(1, 2) + x


class PatchNorm(nn.Module):
    """`patch_embed`: tokens, then LayerNorm (key `patch_embed.norm`)."""
    def __init__(self, dim):
        super().__init__()
        self.norm = nn.LayerNorm(dim)

    def forward(self, x):
        return self.norm(x.flatten(2).transpose(1, 2))


class SwinIR(nn.Module):
    """DiffBIR's SwinIR: embed_dim 180, depths [6]*8, heads [6]*8, window 8, mlp_ratio 2, unshuffle 8,
    img_size 64 (the resolution whose shift masks are stored), 64 upsampler features."""
    def __init__(self, embed_dim=180, depths=(6,) * 8, num_heads=(6,) * 8, window_size=8, mlp_ratio=2.0,
                 img_size=64, num_feat=64, unshuffle_scale=8):
        super().__init__()
        self.register_buffer("mean", torch.tensor([0.4488, 0.4371, 0.4040]).view(1, 3, 1, 1), persistent=False)
        self.s = unshuffle_scale
        self.conv_first = nn.Sequential(nn.PixelUnshuffle(unshuffle_scale), nn.Conv2d(3 * unshuffle_scale ** 2, embed_dim, 3, 1, 1))
        self.patch_embed = PatchNorm(embed_dim)
        # The shift is kept only when the configured resolution exceeds the window.
        ws = window_size if img_size > window_size else img_size
        self.layers = nn.ModuleList(RSTB(embed_dim, d, h, ws, mlp_ratio, img_size) for d, h in zip(depths, num_heads))
        self.norm = nn.LayerNorm(embed_dim)
        self.conv_after_body = nn.Conv2d(embed_dim, embed_dim, 3, 1, 1)
        self.conv_before_upsample = nn.Sequential(nn.Conv2d(embed_dim, num_feat, 3, 1, 1), nn.LeakyReLU(0.01))
        n_up = int(math.log2(unshuffle_scale))
        self.conv_up1 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        if n_up >= 2:
            self.conv_up2 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        if n_up >= 3:
            self.conv_up3 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.n_up = n_up
        self.conv_hr = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_last = nn.Conv2d(num_feat, 3, 3, 1, 1)

    def forward(self, image):
        x = self.conv_first(image - self.mean)
        size = (x.shape[2], x.shape[3])
        t = self.patch_embed(x)
        for layer in self.layers:
            t = layer(t, size)
        t = self.norm(t)
        b, _, c = t.shape
        x = self.conv_after_body(t.transpose(1, 2).reshape(b, c, size[0], size[1])) + x
        x = self.conv_before_upsample(x)
        for i in range(1, self.n_up + 1):
            x = F.leaky_relu(getattr(self, f"conv_up{i}")(F.interpolate(x, scale_factor=2, mode="nearest")), 0.2)
        x = self.conv_last(F.leaky_relu(self.conv_hr(x), 0.2))
        return x + self.mean


# --------------------------------------------------------------------------------------------
# BSRNet = RRDBNet ×4 (§2.7)

class RDB(nn.Module):
    def __init__(self, nf, gc):
        super().__init__()
        for k in range(1, 5):
            setattr(self, f"conv{k}", nn.Conv2d(nf + (k - 1) * gc, gc, 3, 1, 1))
        self.conv5 = nn.Conv2d(nf + 4 * gc, nf, 3, 1, 1)

    def forward(self, x):
        feats = [x]
        for k in range(1, 5):
            feats.append(F.leaky_relu(getattr(self, f"conv{k}")(torch.cat(feats, 1)), 0.2))
        return self.conv5(torch.cat(feats, 1)) * 0.2 + x


class RRDB(nn.Module):
    def __init__(self, nf, gc):
        super().__init__()
        self.RDB1, self.RDB2, self.RDB3 = RDB(nf, gc), RDB(nf, gc), RDB(nf, gc)

    def forward(self, x):
        return self.RDB3(self.RDB2(self.RDB1(x))) * 0.2 + x


class RRDBNet(nn.Module):
    def __init__(self, nf=64, nb=23, gc=32):
        super().__init__()
        self.conv_first = nn.Conv2d(3, nf, 3, 1, 1)
        self.RRDB_trunk = nn.Sequential(*[RRDB(nf, gc) for _ in range(nb)])
        self.trunk_conv = nn.Conv2d(nf, nf, 3, 1, 1)
        self.upconv1 = nn.Conv2d(nf, nf, 3, 1, 1)
        self.upconv2 = nn.Conv2d(nf, nf, 3, 1, 1)
        self.HRconv = nn.Conv2d(nf, nf, 3, 1, 1)
        self.conv_last = nn.Conv2d(nf, 3, 3, 1, 1)

    def forward(self, image):
        f = self.conv_first(image)
        f = f + self.trunk_conv(self.RRDB_trunk(f))
        f = F.leaky_relu(self.upconv1(F.interpolate(f, scale_factor=2, mode="nearest")), 0.2)
        f = F.leaky_relu(self.upconv2(F.interpolate(f, scale_factor=2, mode="nearest")), 0.2)
        return self.conv_last(F.leaky_relu(self.HRconv(f), 0.2))


# --------------------------------------------------------------------------------------------
# SCUNet (§2.8)

class WMSA(nn.Module):
    def __init__(self, dim, head_dim, ws, shifted):
        super().__init__()
        self.head_dim, self.ws, self.shifted = head_dim, ws, shifted
        self.heads = dim // head_dim
        self.embedding_layer = nn.Linear(dim, 3 * dim)
        self.relative_position_params = nn.Parameter(torch.zeros(self.heads, 2 * ws - 1, 2 * ws - 1))
        self.linear = nn.Linear(dim, dim)

    def mask(self, hw, ww):
        p, s = self.ws, self.ws - self.ws // 2
        m = torch.zeros(hw, ww, p, p, p, p, dtype=torch.bool)
        m[-1, :, :s, :, s:, :] = True
        m[-1, :, s:, :, :s, :] = True
        m[:, -1, :, :s, :, s:] = True
        m[:, -1, :, s:, :, :s] = True
        return m.reshape(1, 1, hw * ww, p * p, p * p)

    def forward(self, x):  # [B, H, W, C]
        p = self.ws
        if self.shifted:
            x = torch.roll(x, shifts=(-(p // 2), -(p // 2)), dims=(1, 2))
        b, h, w, c = x.shape
        hw, ww = h // p, w // p
        x = x.view(b, hw, p, ww, p, c).permute(0, 1, 3, 2, 4, 5).reshape(b, hw * ww, p * p, c)
        qkv = self.embedding_layer(x).view(b, hw * ww, p * p, 3 * self.heads, self.head_dim).permute(3, 0, 1, 2, 4)
        q, k, v = qkv[: self.heads], qkv[self.heads: 2 * self.heads], qkv[2 * self.heads:]
        sim = torch.einsum("hbwpc,hbwqc->hbwpq", q, k) * self.head_dim ** -0.5
        coords = torch.tensor([[i, j] for i in range(p) for j in range(p)])
        rel = coords[:, None, :] - coords[None, :, :] + p - 1
        sim = sim + self.relative_position_params[:, rel[:, :, 0], rel[:, :, 1]].view(self.heads, 1, 1, p * p, p * p)
        if self.shifted:
            sim = sim.masked_fill(self.mask(hw, ww), float("-inf"))
        out = torch.einsum("hbwij,hbwjc->hbwic", sim.softmax(-1), v)
        out = out.permute(1, 2, 3, 0, 4).reshape(b, hw * ww, p * p, c)
        out = self.linear(out).view(b, hw, ww, p, p, c).permute(0, 1, 3, 2, 4, 5).reshape(b, h, w, c)
        if self.shifted:
            out = torch.roll(out, shifts=(p // 2, p // 2), dims=(1, 2))
        return out


class TransBlock(nn.Module):
    def __init__(self, dim, head_dim, ws, shifted):
        super().__init__()
        self.ln1 = nn.LayerNorm(dim)
        self.msa = WMSA(dim, head_dim, ws, shifted)
        self.ln2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x):
        x = x + self.msa(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class ConvTransBlock(nn.Module):
    def __init__(self, conv_dim, trans_dim, head_dim, ws, shifted):
        super().__init__()
        self.conv_dim, self.trans_dim = conv_dim, trans_dim
        self.trans_block = TransBlock(trans_dim, head_dim, ws, shifted)
        self.conv1_1 = nn.Conv2d(conv_dim + trans_dim, conv_dim + trans_dim, 1)
        self.conv1_2 = nn.Conv2d(conv_dim + trans_dim, conv_dim + trans_dim, 1)
        self.conv_block = nn.Sequential(nn.Conv2d(conv_dim, conv_dim, 3, 1, 1, bias=False), nn.ReLU(),
                                        nn.Conv2d(conv_dim, conv_dim, 3, 1, 1, bias=False))

    def forward(self, x):
        a, t = torch.split(self.conv1_1(x), (self.conv_dim, self.trans_dim), dim=1)
        a = self.conv_block(a) + a
        t = self.trans_block(t.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return x + self.conv1_2(torch.cat((a, t), 1))


class SCUNet(nn.Module):
    """DiffBIR's SCUNet: config [4]*7, dim 64, head_dim 32, window 8, input_resolution 256 (blocks at a
    configured resolution not above the window are unshifted). Inputs are padded to multiples of 64."""
    def __init__(self, config=(4,) * 7, dim=64, head_dim=32, window_size=8, input_resolution=256):
        super().__init__()
        ws = window_size

        def ctbs(n, c, res):
            return [ConvTransBlock(c, c, head_dim, ws, i % 2 == 1 and res > ws) for i in range(n)]

        r = input_resolution
        self.m_head = nn.Sequential(nn.Conv2d(3, dim, 3, 1, 1, bias=False))
        self.m_down1 = nn.Sequential(*ctbs(config[0], dim // 2, r), nn.Conv2d(dim, 2 * dim, 2, 2, 0, bias=False))
        self.m_down2 = nn.Sequential(*ctbs(config[1], dim, r // 2), nn.Conv2d(2 * dim, 4 * dim, 2, 2, 0, bias=False))
        self.m_down3 = nn.Sequential(*ctbs(config[2], 2 * dim, r // 4), nn.Conv2d(4 * dim, 8 * dim, 2, 2, 0, bias=False))
        self.m_body = nn.Sequential(*ctbs(config[3], 4 * dim, r // 8))
        self.m_up3 = nn.Sequential(nn.ConvTranspose2d(8 * dim, 4 * dim, 2, 2, 0, bias=False), *ctbs(config[4], 2 * dim, r // 4))
        self.m_up2 = nn.Sequential(nn.ConvTranspose2d(4 * dim, 2 * dim, 2, 2, 0, bias=False), *ctbs(config[5], dim, r // 2))
        self.m_up1 = nn.Sequential(nn.ConvTranspose2d(2 * dim, dim, 2, 2, 0, bias=False), *ctbs(config[6], dim // 2, r))
        self.m_tail = nn.Sequential(nn.Conv2d(dim, 3, 3, 1, 1, bias=False))

    def forward(self, image):
        h, w = image.shape[-2:]
        x0 = F.pad(image, (0, (64 - w % 64) % 64, 0, (64 - h % 64) % 64), mode="replicate")
        x1 = self.m_head(x0)
        x2 = self.m_down1(x1)
        x3 = self.m_down2(x2)
        x4 = self.m_down3(x3)
        x = self.m_body(x4)
        x = self.m_up3(x + x4)
        x = self.m_up2(x + x3)
        x = self.m_up1(x + x2)
        return self.m_tail(x + x1)[..., :h, :w]


# --------------------------------------------------------------------------------------------
# SD 2.1 UNet and IRControlNet (§2.1-2.3)

def group_norm(c, eps):
    return nn.GroupNorm(32, c, eps=eps)


def timestep_embedding(t, dim, max_period=10000):
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32) / half)
    args = t[:, None].float() * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class ResBlock(nn.Module):
    def __init__(self, ch, out, emb_dim):
        super().__init__()
        self.in_layers = nn.Sequential(group_norm(ch, 1e-5), nn.SiLU(), nn.Conv2d(ch, out, 3, 1, 1))
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_dim, out))
        self.out_layers = nn.Sequential(group_norm(out, 1e-5), nn.SiLU(), nn.Dropout(0.0), nn.Conv2d(out, out, 3, 1, 1))
        self.skip_connection = nn.Identity() if out == ch else nn.Conv2d(ch, out, 1)

    def forward(self, x, emb, context):
        h = self.in_layers(x) + self.emb_layers(emb)[:, :, None, None]
        return self.skip_connection(x) + self.out_layers(h)


class CrossAttention(nn.Module):
    def __init__(self, query_dim, context_dim, heads, dim_head):
        super().__init__()
        inner = heads * dim_head
        self.heads, self.scale = heads, dim_head ** -0.5
        self.to_q = nn.Linear(query_dim, inner, bias=False)
        self.to_k = nn.Linear(context_dim, inner, bias=False)
        self.to_v = nn.Linear(context_dim, inner, bias=False)
        self.to_out = nn.Sequential(nn.Linear(inner, query_dim), nn.Dropout(0.0))

    def forward(self, x, context=None):
        context = x if context is None else context
        b, n, _ = x.shape
        h = self.heads
        q = self.to_q(x).view(b, n, h, -1).transpose(1, 2)
        k = self.to_k(context).view(b, context.shape[1], h, -1).transpose(1, 2)
        v = self.to_v(context).view(b, context.shape[1], h, -1).transpose(1, 2)
        a = (q @ k.transpose(-1, -2) * self.scale).softmax(-1)
        return self.to_out((a @ v).transpose(1, 2).reshape(b, n, -1))


class GEGLU(nn.Module):
    def __init__(self, dim, inner):
        super().__init__()
        self.proj = nn.Linear(dim, inner * 2)

    def forward(self, x):
        a, gate = self.proj(x).chunk(2, dim=-1)
        return a * F.gelu(gate)


class FeedForward(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.net = nn.Sequential(GEGLU(dim, 4 * dim), nn.Dropout(0.0), nn.Linear(4 * dim, dim))

    def forward(self, x):
        return self.net(x)


class TransformerBlock(nn.Module):
    def __init__(self, dim, heads, dim_head, context_dim):
        super().__init__()
        self.attn1 = CrossAttention(dim, dim, heads, dim_head)
        self.ff = FeedForward(dim)
        self.attn2 = CrossAttention(dim, context_dim, heads, dim_head)
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)

    def forward(self, x, context):
        x = self.attn1(self.norm1(x)) + x
        x = self.attn2(self.norm2(x), context) + x
        return self.ff(self.norm3(x)) + x


class SpatialTransformer(nn.Module):
    def __init__(self, ch, heads, dim_head, context_dim):
        super().__init__()
        inner = heads * dim_head
        self.norm = group_norm(ch, 1e-6)
        self.proj_in = nn.Linear(ch, inner)
        self.transformer_blocks = nn.ModuleList([TransformerBlock(inner, heads, dim_head, context_dim)])
        self.proj_out = nn.Linear(inner, ch)

    def forward(self, x, emb, context):
        b, c, h, w = x.shape
        t = self.proj_in(self.norm(x).flatten(2).transpose(1, 2))
        for blk in self.transformer_blocks:
            t = blk(t, context)
        return self.proj_out(t).transpose(1, 2).reshape(b, c, h, w) + x


class Downsample(nn.Module):
    def __init__(self, ch):
        super().__init__()
        self.op = nn.Conv2d(ch, ch, 3, 2, 1)

    def forward(self, x, emb, context):
        return self.op(x)


class Upsample(nn.Module):
    def __init__(self, ch):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, 1, 1)

    def forward(self, x, emb, context):
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


class Conv(nn.Conv2d):
    def forward(self, x, emb, context):
        return super().forward(x)


class Step(nn.ModuleList):
    """One `input_blocks.i` / `output_blocks.i` / `middle_block`: modules applied in order."""
    def forward(self, x, emb, context):
        for m in self:
            x = m(x, emb, context)
        return x


class UNetConfig:
    """DiffBIR's cldm.yaml unet_cfg / controlnet_cfg (the keys of the yaml)."""
    def __init__(self, in_channels=4, out_channels=4, model_channels=320, num_res_blocks=2, attention_resolutions=(4, 2, 1),
                 channel_mult=(1, 2, 4, 4), num_head_channels=64, context_dim=1024, hint_channels=4):
        self.in_channels, self.out_channels, self.model_channels = in_channels, out_channels, model_channels
        self.num_res_blocks, self.attention_resolutions, self.channel_mult = num_res_blocks, attention_resolutions, channel_mult
        self.num_head_channels, self.context_dim, self.hint_channels = num_head_channels, context_dim, hint_channels


def encoder_blocks(cfg, in_channels):
    """time_embed, input_blocks, middle_block and the channels of each input block's output."""
    mc = cfg.model_channels
    emb_dim = 4 * mc
    time_embed = nn.Sequential(nn.Linear(mc, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
    blocks = nn.ModuleList([Step([Conv(in_channels, mc, 3, 1, 1)])])
    chans, ch, ds = [mc], mc, 1
    for level, mult in enumerate(cfg.channel_mult):
        for _ in range(cfg.num_res_blocks):
            layers = [ResBlock(ch, mult * mc, emb_dim)]
            ch = mult * mc
            if ds in cfg.attention_resolutions:
                layers.append(SpatialTransformer(ch, ch // cfg.num_head_channels, cfg.num_head_channels, cfg.context_dim))
            blocks.append(Step(layers))
            chans.append(ch)
        if level != len(cfg.channel_mult) - 1:
            blocks.append(Step([Downsample(ch)]))
            chans.append(ch)
            ds *= 2
    middle = Step([ResBlock(ch, ch, emb_dim), SpatialTransformer(ch, ch // cfg.num_head_channels, cfg.num_head_channels, cfg.context_dim),
                   ResBlock(ch, ch, emb_dim)])
    return time_embed, blocks, middle, chans, ds


class ControlledUNet(nn.Module):
    """SD 2.1 UNet with ControlNet residuals added to the middle output and to every skip (§2.3)."""
    def __init__(self, cfg=UNetConfig()):
        super().__init__()
        self.cfg = cfg
        mc = cfg.model_channels
        self.time_embed, self.input_blocks, self.middle_block, chans, ds = encoder_blocks(cfg, cfg.in_channels)
        ch = chans[-1]
        self.output_blocks = nn.ModuleList()
        for level, mult in list(enumerate(cfg.channel_mult))[::-1]:
            for i in range(cfg.num_res_blocks + 1):
                layers = [ResBlock(ch + chans.pop(), mult * mc, 4 * mc)]
                ch = mult * mc
                if ds in cfg.attention_resolutions:
                    layers.append(SpatialTransformer(ch, ch // cfg.num_head_channels, cfg.num_head_channels, cfg.context_dim))
                if level and i == cfg.num_res_blocks:
                    layers.append(Upsample(ch))
                    ds //= 2
                self.output_blocks.append(Step(layers))
        self.out = nn.Sequential(group_norm(ch, 1e-5), nn.SiLU(), nn.Conv2d(mc, cfg.out_channels, 3, 1, 1))

    def forward(self, x, t, context, control):
        emb = self.time_embed(timestep_embedding(t, self.cfg.model_channels))
        hs, h = [], x
        for m in self.input_blocks:
            h = m(h, emb, context)
            hs.append(h)
        h = self.middle_block(h, emb, context) + control[-1]
        for i, m in enumerate(self.output_blocks):
            h = m(torch.cat([h, hs.pop() + control[len(self.output_blocks) - 1 - i]], 1), emb, context)
        return self.out(h)


class ControlNet(nn.Module):
    """IRControlNet: the UNet encoder on cat(x, condition latent), a 1×1 zero conv per input block and one
    after the middle block (`middle_block_out`)."""
    def __init__(self, cfg=UNetConfig()):
        super().__init__()
        self.cfg = cfg
        self.time_embed, self.input_blocks, self.middle_block, chans, _ = encoder_blocks(cfg, cfg.in_channels + cfg.hint_channels)
        self.zero_convs = nn.ModuleList(Step([Conv(c, c, 1)]) for c in chans)
        self.middle_block_out = Step([Conv(chans[-1], chans[-1], 1)])

    def forward(self, x, hint, t, context):
        emb = self.time_embed(timestep_embedding(t, self.cfg.model_channels))
        h = torch.cat([x, hint], 1)
        outs = []
        for m, z in zip(self.input_blocks, self.zero_convs):
            h = m(h, emb, context)
            outs.append(z(h, emb, context))
        h = self.middle_block(h, emb, context)
        outs.append(self.middle_block_out(h, emb, context))
        return outs


class Denoise(nn.Module):
    """ControlNet + UNet as one step: control residuals scaled by `control_scale` (§2.3)."""
    def __init__(self, cfg=UNetConfig()):
        super().__init__()
        self.unet, self.controlnet = ControlledUNet(cfg), ControlNet(cfg)

    def forward(self, x, t, hint, context, control_scale):
        control = [c * control_scale for c in self.controlnet(x, hint, t, context)]
        return self.unet(x, t, context, control)


# --------------------------------------------------------------------------------------------
# VAE (§2.4)

def vae_norm(c):
    return nn.GroupNorm(32, c, eps=1e-6)


class VaeResBlock(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.norm1, self.conv1 = vae_norm(cin), nn.Conv2d(cin, cout, 3, 1, 1)
        self.norm2, self.conv2 = vae_norm(cout), nn.Conv2d(cout, cout, 3, 1, 1)
        if cin != cout:
            self.nin_shortcut = nn.Conv2d(cin, cout, 1)

    def forward(self, x):
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return (self.nin_shortcut(x) if hasattr(self, "nin_shortcut") else x) + h


class VaeAttn(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.norm = vae_norm(c)
        self.q, self.k, self.v, self.proj_out = (nn.Conv2d(c, c, 1) for _ in range(4))

    def forward(self, x):
        b, c, h, w = x.shape
        n = self.norm(x)
        q = self.q(n).reshape(b, c, h * w).transpose(1, 2)
        k = self.k(n).reshape(b, c, h * w)
        v = self.v(n).reshape(b, c, h * w)
        a = (q @ k * c ** -0.5).softmax(-1)
        return x + self.proj_out((v @ a.transpose(1, 2)).reshape(b, c, h, w))


class VaeDown(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, 2, 0)

    def forward(self, x):
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class VaeUp(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, 1, 1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


class VaeLevel(nn.Module):
    def __init__(self, blocks, resample=None, name=None):
        super().__init__()
        self.block = nn.ModuleList(blocks)
        self.attn = nn.ModuleList()
        if resample is not None:
            setattr(self, name, resample)
        self.resample_name = name if resample is not None else None

    def forward(self, x):
        for b in self.block:
            x = b(x)
        return getattr(self, self.resample_name)(x) if self.resample_name else x


class VaeMid(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.block_1, self.attn_1, self.block_2 = VaeResBlock(c, c), VaeAttn(c), VaeResBlock(c, c)

    def forward(self, x):
        return self.block_2(self.attn_1(self.block_1(x)))


class VaeEncoderBody(nn.Module):
    def __init__(self, ch, ch_mult, num_res_blocks, z_channels):
        super().__init__()
        self.conv_in = nn.Conv2d(3, ch, 3, 1, 1)
        self.down = nn.ModuleList()
        cin = ch
        for i, m in enumerate(ch_mult):
            blocks = []
            for _ in range(num_res_blocks):
                blocks.append(VaeResBlock(cin, ch * m))
                cin = ch * m
            last = i == len(ch_mult) - 1
            self.down.append(VaeLevel(blocks, None if last else VaeDown(cin), "downsample"))
        self.mid = VaeMid(cin)
        self.norm_out = vae_norm(cin)
        self.conv_out = nn.Conv2d(cin, 2 * z_channels, 3, 1, 1)

    def forward(self, x):
        h = self.conv_in(x)
        for level in self.down:
            h = level(h)
        return self.conv_out(F.silu(self.norm_out(self.mid(h))))


class VaeDecoderBody(nn.Module):
    def __init__(self, ch, ch_mult, num_res_blocks, z_channels):
        super().__init__()
        cin = ch * ch_mult[-1]
        self.conv_in = nn.Conv2d(z_channels, cin, 3, 1, 1)
        self.mid = VaeMid(cin)
        levels = []
        for i, m in reversed(list(enumerate(ch_mult))):
            blocks = []
            for _ in range(num_res_blocks + 1):
                blocks.append(VaeResBlock(cin, ch * m))
                cin = ch * m
            levels.insert(0, VaeLevel(blocks, VaeUp(cin) if i != 0 else None, "upsample"))
        self.up = nn.ModuleList(levels)  # up[3] runs first
        self.norm_out = vae_norm(cin)
        self.conv_out = nn.Conv2d(cin, 3, 3, 1, 1)

    def forward(self, z):
        h = self.mid(self.conv_in(z))
        for level in reversed(self.up):
            h = level(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class VAEEncoder(nn.Module):
    """`encoder.*` + `quant_conv.*`: image in [-1, 1] → posterior mean × 0.18215."""
    def __init__(self, ch=128, ch_mult=(1, 2, 4, 4), num_res_blocks=2, z_channels=4, embed_dim=4, scale=0.18215):
        super().__init__()
        self.encoder = VaeEncoderBody(ch, ch_mult, num_res_blocks, z_channels)
        self.quant_conv = nn.Conv2d(2 * z_channels, 2 * embed_dim, 1)
        self.embed_dim, self.scale = embed_dim, scale

    def forward(self, image):
        return self.quant_conv(self.encoder(image))[:, : self.embed_dim] * self.scale


class VAEDecoder(nn.Module):
    """`post_quant_conv.*` + `decoder.*`: latent × (1 / 0.18215) → image ≈ [-1, 1]."""
    def __init__(self, ch=128, ch_mult=(1, 2, 4, 4), num_res_blocks=2, z_channels=4, embed_dim=4, scale=0.18215):
        super().__init__()
        self.post_quant_conv = nn.Conv2d(embed_dim, z_channels, 1)
        self.decoder = VaeDecoderBody(ch, ch_mult, num_res_blocks, z_channels)
        self.scale = scale

    def forward(self, latent):
        return self.decoder(self.post_quant_conv(latent / self.scale))


# --------------------------------------------------------------------------------------------
# OpenCLIP ViT-H/14 text tower, penultimate layer then ln_final (§2.5)

class ClipMlp(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.c_fc, self.c_proj = nn.Linear(width, 4 * width), nn.Linear(4 * width, width)

    def forward(self, x):
        return self.c_proj(F.gelu(self.c_fc(x)))


class ClipBlock(nn.Module):
    def __init__(self, width, heads):
        super().__init__()
        self.ln_1 = nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, heads)
        self.ln_2 = nn.LayerNorm(width)
        self.mlp = ClipMlp(width)

    def forward(self, x, mask):  # [L, B, D]
        y = self.ln_1(x)
        x = x + self.attn(y, y, y, need_weights=False, attn_mask=mask)[0]
        return x + self.mlp(self.ln_2(x))


class ClipTransformer(nn.Module):
    def __init__(self, width, layers, heads):
        super().__init__()
        self.resblocks = nn.ModuleList(ClipBlock(width, heads) for _ in range(layers))


class ClipText(nn.Module):
    """Keys `model.token_embedding`, `model.positional_embedding`, `model.transformer.resblocks.N.*`,
    `model.ln_final` (the `cond_stage_model.` prefix is the checkpoint's)."""
    def __init__(self, vocab_size=49408, context_length=77, width=1024, heads=16, layers=24):
        super().__init__()
        self.model = nn.Module()
        self.model.token_embedding = nn.Embedding(vocab_size, width)
        self.model.positional_embedding = nn.Parameter(torch.zeros(context_length, width))
        self.model.transformer = ClipTransformer(width, layers, heads)
        self.model.ln_final = nn.LayerNorm(width)
        self.register_buffer("attn_mask", torch.full((context_length, context_length), float("-inf")).triu(1), persistent=False)

    def forward(self, tokens):
        m = self.model
        x = (m.token_embedding(tokens) + m.positional_embedding).permute(1, 0, 2)
        for block in m.transformer.resblocks[:-1]:  # penultimate layer
            x = block(x, self.attn_mask)
        return m.ln_final(x.permute(1, 0, 2))
