"""Tiny driver for Nsight Compute: one launch of w4a16_v4 per given (M, config) on the full wo shape.

argv[1]: JSON list of [M, nt, mt, warps, minb, db, xpf, ctas_per_sm]. Used by scripts/gpu_wo_profile.py.
"""

import json
import sys

import torch

from workbench.runtime import load_module
from workbench.techniques import nvfp4
from workbench.techniques import wo_gemm as wo


def main() -> None:
    load_module("wo_gemm")  # compile/load before any launch
    N, K = wo.N_OUT, wo.K_IN
    w = (torch.randn((N, K), device="cuda") / K ** 0.5).to(torch.bfloat16)
    pw = wo.prepare_weight(nvfp4.quantize(w, "tensor"))
    del w
    torch.cuda.empty_cache()
    for M, *c in json.loads(sys.argv[1]):
        cfg = wo.V4Config(*c)
        x = torch.randn((M, K), device="cuda").to(torch.bfloat16)
        wo.w4a16_gemm_v4(x, pw, cfg)
        torch.cuda.synchronize()
        print(f"launched M={M} {cfg}", flush=True)


if __name__ == "__main__":
    main()
