"""Adam/AdamW step in Triton: one launch per parameter group and dtype, over all its tensors.

Each program updates ``block`` consecutive elements of one tensor; a table on the device says
which tensor and where (built once per list of sizes), and the tensors' addresses travel in one
packed table per step (gradients are reallocated between steps when zeroed to None). Every
element is read once (parameter, gradient, both moments) and written once (parameter, moments),
in one launch whatever the number of tensors, so a model of hundreds of small tensors does not
pay hundreds of launches. The arithmetic is the compiled CPU kernel's, in its order, in float32;
bfloat16 and float16 parameters keep float32 moments and are rounded once per step.

Schedule (``cuda_space`` of the kernel): ``block`` elements per program, ``num_warps``.
"""

import contextlib
import math

import torch
import triton
import triton.language as tl

MODES = {"none": 0, "l2": 1, "decoupled": 2}
_TL = {torch.float32: tl.float32, torch.bfloat16: tl.bfloat16, torch.float16: tl.float16}


@triton.jit
def _step(ADDRS, SIZES, TENSOR, START, NEG_STEP, BC2, count, beta1, one_minus_beta1, beta2, one_minus_beta2,
          eps, weight_decay, decay, MODE: tl.constexpr, P_TYPE: tl.constexpr, ALIGNED: tl.constexpr, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    t = tl.load(TENSOR + pid)
    n = tl.load(SIZES + t)
    # ADDRS holds four rows of ``count`` addresses: parameters, gradients, first and second moments
    p_ptr = tl.load(ADDRS + t).to(tl.pointer_type(P_TYPE))
    g_ptr = tl.load(ADDRS + count + t).to(tl.pointer_type(P_TYPE))
    m_ptr = tl.load(ADDRS + 2 * count + t).to(tl.pointer_type(tl.float32))
    v_ptr = tl.load(ADDRS + 3 * count + t).to(tl.pointer_type(tl.float32))
    offs = tl.load(START + pid) + tl.arange(0, BLOCK).to(tl.int64)
    if ALIGNED:
        # addresses known 16-byte aligned and sizes a multiple of 16 (checked by the caller), so
        # that the accesses are vectorised: the compiler cannot see it through the address table
        p_ptr, g_ptr = tl.multiple_of(p_ptr, 16), tl.multiple_of(g_ptr, 16)
        m_ptr, v_ptr = tl.multiple_of(m_ptr, 16), tl.multiple_of(v_ptr, 16)
        n = tl.multiple_of(n, 16)
        offs = tl.max_contiguous(tl.multiple_of(offs, BLOCK), BLOCK)
    mask = offs < n
    p = tl.load(p_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    g = tl.load(g_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    m = tl.load(m_ptr + offs, mask=mask, other=0.0)
    v = tl.load(v_ptr + offs, mask=mask, other=0.0)
    if MODE == 1:
        g = tl.fma(p, weight_decay, g)
    if MODE == 2:
        p = p * decay
    m = tl.fma(g, one_minus_beta1, m * beta1)
    v = tl.fma(one_minus_beta2 * g, g, v * beta2)
    tl.store(m_ptr + offs, m, mask=mask)
    tl.store(v_ptr + offs, v, mask=mask)
    # correctly rounded, as torch's sqrt and division are: the update is memory-bound anyway
    denom = tl.div_rn(tl.sqrt_rn(v), tl.load(BC2 + t)) + eps
    p = p + tl.div_rn(tl.load(NEG_STEP + t) * m, denom)
    tl.store(p_ptr + offs, p.to(P_TYPE), mask=mask)


_tables = {}


def _block_table(sizes, block, device):
    """(tensor index, first element) of every program, kept per list of sizes: a model's
    parameter list is the same at every step."""
    key = (tuple(sizes), block, str(device))
    table = _tables.get(key)
    if table is None:
        counts = torch.tensor([triton.cdiv(n, block) for n in sizes], dtype=torch.int64)
        tensor = torch.repeat_interleave(torch.arange(len(sizes)), counts)
        first = torch.cumsum(counts, 0) - counts  # each tensor's first program
        start = (torch.arange(tensor.numel()) - first[tensor]) * block
        table = (tensor.to(device, torch.int32), start.to(device))
        if len(_tables) > 64:
            _tables.clear()
        _tables[key] = table
    return table


def _launch(tensors, steps, lr, betas, eps, weight_decay, mode, schedule, aligned):
    """One launch over ``tensors`` (parameters, gradients, first and second moments, each a list)."""
    beta1, beta2 = betas
    ps = tensors[0]
    device, k, block = ps[0].device, len(ps), schedule["block"]
    sizes = [p.numel() for p in ps]
    addrs = torch.tensor([t.data_ptr() for ts in tensors for t in ts] + sizes, dtype=torch.int64)
    floats = torch.tensor([-(lr / (1 - beta1 ** s)) for s in steps] + [math.sqrt(1 - beta2 ** s) for s in steps], dtype=torch.float32)
    # pageable sources are staged before the copy returns, so the host tensors may go at once
    addrs, floats = addrs.to(device, non_blocking=True), floats.to(device, non_blocking=True)
    tensor, start = _block_table(sizes, block, device)
    hyper = (beta1, 1 - beta1, beta2, 1 - beta2, eps, weight_decay, 1 - lr * weight_decay)
    # Triton launches on the current device, which need not be the parameters'
    with torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext():
        _step[(tensor.numel(),)](addrs, addrs[4 * k:], tensor, start, floats, floats[k:], k, *(float(x) for x in hyper),
                                 MODE=MODES[mode], P_TYPE=_TL[ps[0].dtype], ALIGNED=aligned, BLOCK=block,
                                 num_warps=schedule["num_warps"])


def _is_aligned(tensors, i):
    return tensors[0][i].numel() % 16 == 0 and all(ts[i].data_ptr() % 16 == 0 for ts in tensors)


def apply_step(params, grads, exp_avgs, exp_avg_sqs, steps, lr, betas, eps, weight_decay, mode, *, schedule):
    """One update of same-dtype tensors on one device, in place; ``steps`` are the step numbers
    after this step's increment. Moments are float32 and contiguous; gradients contiguous.
    Returns the updated tensors: the parameters, then the first and the second moments.

    One launch takes the tensors whose addresses are 16-byte aligned and whose sizes are a
    multiple of 16 (a model's usual case), vectorised; another, if any, the rest."""
    tensors = (params, grads, exp_avgs, exp_avg_sqs)
    live = [i for i, p in enumerate(params) if p.numel()]
    for aligned in (True, False):
        pick = [i for i in live if _is_aligned(tensors, i) == aligned]
        if pick:
            _launch([[ts[i] for i in pick] for ts in tensors], [steps[i] for i in pick], lr, betas, eps, weight_decay, mode, schedule, aligned)
    return (*params, *exp_avgs, *exp_avg_sqs)


# the functions the kernel module routes CUDA tensors to
ENTRIES = ("apply_step",)
# the step updates its tensors in place: a failed launch cannot be handed back to torch
IN_PLACE = True

# small odd shapes for the kernel tests (the interpreter runs them on a CPU): uneven tensors
TEST_WORKLOADS = (
    {"params": 5003, "tensors": 3, "dtype": "float32"},
    {"params": 3001, "tensors": 4, "dtype": "bfloat16"},
)
