"""Fused kernels for x86 CPUs in C, compiled on first use: Swin's window attention, and GELU's backward.

Swin's attention (Liu et al., 2021, https://arxiv.org/abs/2103.14030, Section 3.2, Eq. 4) is
softmax(q k^T / sqrt(d) + B + mask) v inside windows of M x M = 49 tokens. PyTorch's eager ops run it as
separate passes over every window's 49 x 49 scores: a gather that shifts and partitions the map, copies that
put the heads in a batch dimension, a batched matmul, the mask add, softmax, a second matmul, copies back, and
twice as many passes in the backward, plus a reduction for the gradient of the bias. Here one window and head
at a time stays in L1 from the q/k/v projection's output to the attention's: scores, mask, softmax and both
products in the forward; the scores' gradient (the bias's too) and the three products in the backward. Rows
are read and written through the shift-and-partition permutation of the map (`window_order`), so the
projection and the output projection run on the map in raster order; the next window's rows are prefetched.

GELU's backward (Hendrycks and Gimpel, https://arxiv.org/abs/1606.08415) multiplies the upstream gradient by
Phi(x) + x phi(x); the kernel also sums the result over tokens, the gradient of fc1's bias, in the same pass.

The C sources below are compiled (window attention for each window's token count and head size, constants so
that the accumulators of a block of rows stay in registers) with the system's C compiler (`cc`, or `$CC`) and
`-march=native`, cached under `$HUBFORMERS_CACHE/hubformers/kernels` (default `$XDG_CACHE_HOME`, or
`~/.cache`) by a hash of the source, the flags and the CPU, and loaded with ctypes. A library is built into a
temporary file, synced and renamed into place, and then the same for a file beside it with its sha256 and size;
it is loaded only when both files are the current user's and writable by no one else, its size and digest
match, and it defines the kernel's functions, else built again (a truncated library would end the process with
SIGBUS). The cache is used only when its folder is the current user's and writable by it alone, and every
folder above it is the user's or root's and writable by others only when sticky (as /tmp): where it is not,
another user could have put a library there, and the kernels are built in a private temporary folder instead
(with a warning). Windows of up to 256 tokens and heads of 16 to 384 floats, in steps of 16, are served
(`serves_window`). Their threads are OpenMP's, shared with PyTorch: the libraries link `libgomp.so.1`, which
resolves to the copy PyTorch has loaded. For other sizes, without a compiler, off Linux x86-64, with a PyTorch
that does not run on GNU OpenMP, or with `HUBFORMERS_CPU_KERNELS=0`, the kernel getters return None (a compiler
failure is logged) and the callers run PyTorch's ops instead. The exponential is Cephes'
polynomial (within 2 ulp) and erf Abramowitz and Stegun's 7.1.26, as PyTorch's vectorised erf, so the results
match PyTorch's to float32 rounding.
"""

import _ctypes
import ctypes
import functools
import hashlib
import logging
import os
import platform
import stat
import subprocess
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

logger = logging.getLogger(__name__)

FLAGS = ["-O3", "-march=native", "-fopenmp", "-shared", "-fPIC", "-std=gnu11"]

VECTORS = r"""
#include <omp.h>
#include <stdint.h>
#include <string.h>

typedef float v16 __attribute__((vector_size(64)));
typedef int32_t v16i __attribute__((vector_size(64)));
typedef float v16u __attribute__((vector_size(64), aligned(4)));

static inline v16 load(const float *p) { return *(const v16u *)p; }
static inline void store(float *p, v16 x) { *(v16u *)p = x; }
static inline v16 splat(float s) { return (v16){s, s, s, s, s, s, s, s, s, s, s, s, s, s, s, s}; }
static inline v16 select(v16i m, v16 a, v16 b) { return (v16)(((v16i)a & m) | ((v16i)b & ~m)); }

/* exp(x) for x <= 0, and 0 below -87 (where exp is denormal): Cephes' expf, 2^n times a polynomial in the
   remainder r = x - n ln2, |r| <= ln2 / 2 */
static inline v16 exp_nonpositive(v16 x) {
    const v16i keep = x >= splat(-87.0f);
    const v16 shifter = splat(12582912.0f); /* 1.5 * 2^23: adding it rounds to an integer, kept in the low bits */
    const v16 t = x * splat(1.44269504088896341f) + shifter;
    const v16 n = t - shifter;
    const v16 r = x - n * splat(0.693359375f) + n * splat(2.12194440e-4f);
    v16 p = splat(1.9875691500e-4f);
    p = p * r + splat(1.3981999507e-3f);
    p = p * r + splat(8.3334519073e-3f);
    p = p * r + splat(4.1665795894e-2f);
    p = p * r + splat(1.6666665459e-1f);
    p = p * r + splat(5.0000001201e-1f);
    p = p * r * r + r + splat(1.0f);
    const v16i two_to_n = ((v16i)t - (v16i)shifter + 127) << 23;
    return select(keep, p * (v16)two_to_n, splat(0.0f));
}

/* the lanes folded in halves: log2(16) shuffles instead of 15 dependent scalar steps */
static inline v16 fold(v16 x, int half) {
    const v16i lanes = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
    return __builtin_shuffle(x, (lanes + half) & 15);
}

static inline float lane_max(v16 x) {
    for (int half = 8; half; half /= 2) x = select(x > fold(x, half), x, fold(x, half));
    return x[0];
}

static inline float lane_sum(v16 x) {
    for (int half = 8; half; half /= 2) x += fold(x, half);
    return x[0];
}
"""

# Swin's attention, compiled with N (tokens per window) and D (floats per head, a multiple of 16) defined
WINDOW_ATTENTION_SOURCE = (
    VECTORS
    + r"""
/* N tokens per window (rows of scores padded to NP, a whole number of vectors), D floats per head */
#define NP (((N) + 15) / 16 * 16)
#define NV (NP / 16)
#define DV (D / 16)
/* the rows of a block, whose accumulators (RB x NV or RB x DV vectors) stay in 24 of the 32 registers; at
   least one, so that the row loops advance whatever the sizes (Python compiles only sizes whose rows fit) */
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))
#define RB MAX(1, MIN(8, MIN(24 / NV, 24 / DV)))
/* runs `call` with `rows` (<= RB) a compile-time constant, so that the compiler can keep the block's
   accumulators in registers */
#define ROWS_CASE(k, call) if (rows == (k) && (k) <= RB) { enum { rows = (k) }; call; }
#define WITH_CONSTANT_ROWS(call)                                                                           \
    do {                                                                                                   \
        ROWS_CASE(8, call) else ROWS_CASE(7, call) else ROWS_CASE(6, call) else ROWS_CASE(5, call)          \
        else ROWS_CASE(4, call) else ROWS_CASE(3, call) else ROWS_CASE(2, call) else ROWS_CASE(1, call)     \
    } while (0)

/* Rows are addressed through offsets: row i of an operand is base + row[i] * stride, so that the kernels read
   and write the windows' tokens where they lie in the (shifted, partitioned) map. */

/* out[r] = a[r] bT for r < rows: a's rows of D floats, bT (D, NP), out (RB, NP) */
static inline __attribute__((always_inline)) void rows_times(const int rows, const float *a, const int64_t *row,
                                                              int64_t stride, const v16 bT[D][NV], v16 out[RB][NV]) {
    v16 acc[RB][NV];
    for (int r = 0; r < rows; r++)
        for (int u = 0; u < NV; u++) acc[r][u] = splat(0.0f);
    for (int c = 0; c < D; c++)
        for (int r = 0; r < rows; r++) {
            const v16 ar = splat(a[row[r] * stride + c]);
            for (int u = 0; u < NV; u++) acc[r][u] += ar * bT[c][u];
        }
    for (int r = 0; r < rows; r++)
        for (int u = 0; u < NV; u++) out[r][u] = acc[r][u];
}

/* out[r] = scale * sum_j w(j, r) b[j] for r < rows, over the N rows j of b (D floats each), with
   w(j, r) = w[j * wj + r * wr] */
static inline __attribute__((always_inline)) void weighted_rows(const int rows, const float *w, int64_t wj,
                                                                 int64_t wr, const float *b, const int64_t *brow,
                                                                 int64_t bstride, float scale, float *out,
                                                                 const int64_t *orow, int64_t ostride) {
    v16 acc[RB][DV];
    for (int r = 0; r < rows; r++)
        for (int u = 0; u < DV; u++) acc[r][u] = splat(0.0f);
    for (int j = 0; j < N; j++) {
        v16 bj[DV];
        for (int u = 0; u < DV; u++) bj[u] = load(b + brow[j] * bstride + 16 * u);
        for (int r = 0; r < rows; r++) {
            const v16 wjr = splat(w[j * wj + r * wr]);
            for (int u = 0; u < DV; u++) acc[r][u] += wjr * bj[u];
        }
    }
    for (int r = 0; r < rows; r++)
        for (int u = 0; u < DV; u++) store(out + orow[r] * ostride + 16 * u, acc[r][u] * splat(scale));
}

/* N rows of D floats -> (D, NP), zero past N */
static void transpose(const float *a, const int64_t *row, int64_t stride, v16 out[D][NV]) {
    float *flat = (float *)out;
    for (int c = 0; c < D; c++) {
        for (int j = 0; j < N; j++) flat[c * NP + j] = a[row[j] * stride + c];
        for (int j = N; j < NP; j++) flat[c * NP + j] = 0.0f;
    }
}

/* the rows of window `position` of `image` among the images' T tokens each: order (T) lists each window's
   tokens, window after window */
static inline void window_rows(const int64_t *order, int64_t image, int64_t T, int64_t position, int64_t row[N]) {
    for (int i = 0; i < N; i++) row[i] = image * T + order[position * N + i];
}

/* asks for the N rows' D floats in L2 ahead of use: a window's rows lie apart in the map, where the hardware
   prefetchers do not follow them */
static inline void prefetch_rows(const float *a, const int64_t row[N], int64_t stride) {
    for (int i = 0; i < N; i++)
        for (int c = 0; c < D; c += 16) __builtin_prefetch(a + row[i] * stride + c, 0, 2);
}

/* qkv (images * T, 3C) with C = H * D, read through `order`; T / N windows per image, window p taking
   mask[p % M], mask (M, H, N, NP) with -inf past N; out (images * T, C), written through `order`; probs
   (images * T / N, H, N, NP) or NULL */
void window_attention_forward(const float *qkv, const int64_t *order, const float *mask, float *out, float *probs,
                              int64_t images, int64_t T, int64_t M, int64_t H, float scale, int threads) {
    const int64_t C = H * D, ld = 3 * C, per_image = T / N;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t pair = 0; pair < images * per_image * H; pair++) {
        const int64_t w = pair / H, h = pair % H, position = w % per_image;
        const float *q = qkv + h * D, *k = q + C, *v = q + 2 * C;
        const float *m = mask + ((position % M) * H + h) * N * NP;
        int64_t row[N], next[N];
        v16 kT[D][NV], s[RB][NV];
        float block[RB][NP];
        window_rows(order, w / per_image, T, position, row);
        if (pair + 1 < images * per_image * H) { /* the next pair's q, k and v */
            const int64_t w_next = (pair + 1) / H, h_next = (pair + 1) % H;
            window_rows(order, w_next / per_image, T, w_next % per_image, next);
            for (int part = 0; part < 3; part++) prefetch_rows(qkv + part * C + h_next * D, next, ld);
        }
        transpose(k, row, ld, kT);
        for (int i0 = 0; i0 < N; i0 += RB) {
            const int rows = N - i0 < RB ? N - i0 : RB;
            WITH_CONSTANT_ROWS(rows_times(rows, q, row + i0, ld, kT, s));
            for (int r = 0; r < rows; r++) {
                const float *mr = m + (i0 + r) * NP;
                v16 top = splat(-3.0e38f);
                for (int u = 0; u < NV; u++) {
                    s[r][u] = s[r][u] * splat(scale) + load(mr + 16 * u);
                    top = select(s[r][u] > top, s[r][u], top);
                }
                const v16 peak = splat(lane_max(top));
                v16 total = splat(0.0f);
                for (int u = 0; u < NV; u++) {
                    s[r][u] = exp_nonpositive(s[r][u] - peak);
                    total += s[r][u];
                }
                const v16 inverse = splat(1.0f / lane_sum(total));
                for (int u = 0; u < NV; u++) store(&block[r][16 * u], s[r][u] * inverse);
            }
            if (probs) memcpy(probs + (pair * N + i0) * NP, block, rows * NP * sizeof(float));
            WITH_CONSTANT_ROWS(weighted_rows(rows, &block[0][0], 1, NP, v, row, ld, 1.0f, out + h * D, row + i0, C));
        }
    }
}

/* grad_out (images * T, C) -> grad_qkv (images * T, 3C), both through `order`, and the mask's gradient when
   grad_mask (G, M, H, N, NP), zeroed, is given: task (g, m, h) takes the windows p = m (mod M) of the g-th of
   G runs of images and sums into its own grad_mask[g, m, h], so no two threads write the same sum */
void window_attention_backward(const float *qkv, const int64_t *order, const float *probs, const float *grad_out,
                               float *grad_qkv, float *grad_mask, int64_t images, int64_t T, int64_t M, int64_t H,
                               int64_t G, float scale, int threads) {
    const int64_t C = H * D, ld = 3 * C, per_image = T / N, run = (images + G - 1) / G;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t task = 0; task < G * M * H; task++) {
        const int64_t g = task / (M * H), m = task / H % M, h = task % H;
        const float *q = qkv + h * D, *k = q + C, *v = q + 2 * C, *go = grad_out + h * D;
        float *gq = grad_qkv + h * D, *gk = gq + C, *gv = gq + 2 * C;
        float *gm = grad_mask ? grad_mask + task * N * NP : NULL;
        float ds[N][NP], qs[N][D];
        int64_t row[N], next[N], local[N];
        v16 vT[D][NV], dp[RB][NV];
        for (int i = 0; i < N; i++) local[i] = i;
        const int64_t last = images < (g + 1) * run ? images : (g + 1) * run;
        for (int64_t image = g * run; image < last; image++)
            for (int64_t position = m; position < per_image; position += M) {
                const float *p = probs + ((image * per_image + position) * H + h) * N * NP;
                window_rows(order, image, T, position, row);
                /* the next window's q, k, v, output gradient and probabilities */
                const int64_t next_image = position + M < per_image ? image : image + 1;
                const int64_t next_position = position + M < per_image ? position + M : m;
                if (next_image < last) {
                    window_rows(order, next_image, T, next_position, next);
                    for (int part = 0; part < 3; part++) prefetch_rows(q + part * C, next, ld);
                    prefetch_rows(go, next, C);
                    const float *next_p = probs + ((next_image * per_image + next_position) * H + h) * N * NP;
                    for (int i = 0; i < N * NP; i += 16) __builtin_prefetch(next_p + i, 0, 2);
                }
                transpose(v, row, ld, vT);
                /* dS = P * (dO V^T - rowsum(P * dO V^T)), the scores' gradient, which is also the mask's */
                for (int i0 = 0; i0 < N; i0 += RB) {
                    const int rows = N - i0 < RB ? N - i0 : RB;
                    WITH_CONSTANT_ROWS(rows_times(rows, go, row + i0, C, vT, dp));
                    for (int r = 0; r < rows; r++) {
                        const float *pr = p + (i0 + r) * NP;
                        v16 delta = splat(0.0f);
                        for (int u = 0; u < NV; u++) delta += load(pr + 16 * u) * dp[r][u];
                        const v16 d = splat(lane_sum(delta));
                        for (int u = 0; u < NV; u++) {
                            const v16 grad = load(pr + 16 * u) * (dp[r][u] - d);
                            store(&ds[i0 + r][16 * u], grad);
                            if (gm) store(gm + (i0 + r) * NP + 16 * u, load(gm + (i0 + r) * NP + 16 * u) + grad);
                        }
                    }
                }
                for (int i = 0; i < N; i++)
                    for (int c = 0; c < D; c++) qs[i][c] = q[row[i] * ld + c] * scale;
                /* dV = P^T dO, dK = dS^T (scale q), dQ = scale dS K, a block of RB rows of each at a time */
                for (int j0 = 0; j0 < N; j0 += RB) {
                    const int rows = N - j0 < RB ? N - j0 : RB;
                    WITH_CONSTANT_ROWS(weighted_rows(rows, p + j0, NP, 1, go, row, C, 1.0f, gv, row + j0, ld));
                    WITH_CONSTANT_ROWS(
                        weighted_rows(rows, &ds[0][j0], NP, 1, &qs[0][0], local, D, 1.0f, gk, row + j0, ld));
                    WITH_CONSTANT_ROWS(weighted_rows(rows, &ds[j0][0], 1, NP, k, row, ld, scale, gq, row + j0, ld));
                }
            }
    }
}
"""
)

GELU_BACKWARD_SOURCE = (
    VECTORS
    + r"""
/* GELU'(x) = Phi(x) + x phi(x), with erf by Abramowitz and Stegun's 7.1.26 (|error| < 1.5e-7, PyTorch's
   vectorised erf), whose exp(-x^2 / 2) is phi's too */
static inline v16 gelu_derivative(v16 x) {
    const v16i sign = (v16i)x & (v16i)splat(-0.0f);
    const v16 magnitude = (v16)((v16i)x & ~(v16i)splat(-0.0f));
    const v16 t = splat(1.0f) / (splat(0.3275911f * 0.70710678118654752f) * magnitude + splat(1.0f));
    v16 r = splat(1.061405429f) * t + splat(-1.453152027f);
    r = r * t + splat(1.421413741f);
    r = r * t + splat(-0.284496736f);
    r = r * t + splat(0.254829592f);
    const v16 gauss = exp_nonpositive(x * x * splat(-0.5f));
    const v16 erf = (v16)(sign ^ (v16i)(splat(1.0f) - r * t * gauss));
    return splat(0.5f) * (splat(1.0f) + erf) + x * gauss * splat(0.39894228040143268f);
}

/* grad_pre = grad * GELU'(pre) for (rows, width) tensors, and its column sums (the bias gradient) added to
   sums (threads, width), each thread's own row */
void gelu_backward(const float *grad, const float *pre, float *grad_pre, float *sums, int64_t rows, int64_t width,
                   int threads) {
#pragma omp parallel num_threads(threads)
    {
        float *sum = sums + omp_get_thread_num() * width;
#pragma omp for schedule(static)
        for (int64_t row = 0; row < rows; row++) {
            const float *g = grad + row * width, *x = pre + row * width;
            float *out = grad_pre + row * width;
            int64_t c = 0;
            for (; c + 16 <= width; c += 16) {
                const v16 d = load(g + c) * gelu_derivative(load(x + c));
                store(out + c, d);
                store(sum + c, load(sum + c) + d);
            }
            if (c < width) { /* the last columns, through zero-padded vectors */
                const size_t bytes = (width - c) * sizeof(float);
                float gs[16] = {0}, xs[16] = {0}, total[16] = {0};
                memcpy(gs, g + c, bytes), memcpy(xs, x + c, bytes), memcpy(total, sum + c, bytes);
                const v16 d = load(gs) * gelu_derivative(load(xs));
                store(total, load(total) + d);
                store(gs, d);
                memcpy(out + c, gs, bytes), memcpy(sum + c, total, bytes);
            }
        }
    }
}
"""
)


# The window attention keeps the accumulators of a block of rows, one row's at the least, in 24 of the 32
# vector registers: heads of up to 24 vectors. Per window and head it keeps the window's operands on the
# thread's stack, the backward the most: the (N, NP) score gradients, the (N, D) scaled queries and the (D, NP)
# transposed values, about 1 MiB at 256 tokens and 384 floats, within the 2 MiB that glibc gives a thread where
# the stack size is unlimited (8 MiB by default). Other sizes run PyTorch's ops.
MAX_TOKENS = 256
MAX_HEAD_DIM = 384


def serves_window(tokens: int, head_dim: int) -> bool:
    """Whether the window attention is compiled for windows of `tokens` tokens and heads of `head_dim` floats:
    at most MAX_TOKENS, and whole vectors of 16 floats up to MAX_HEAD_DIM."""
    return 1 <= tokens <= MAX_TOKENS and 16 <= head_dim <= MAX_HEAD_DIM and head_dim % 16 == 0


def enabled() -> bool:
    """Whether kernels may be compiled and run here (`HUBFORMERS_CPU_KERNELS=0` turns them off)."""
    return (
        os.environ.get("HUBFORMERS_CPU_KERNELS", "1") != "0"
        and platform.system() == "Linux"
        and platform.machine().lower() in ("x86_64", "amd64")
        and "OpenMP" in torch.__config__.parallel_info()
        and loads_gnu_openmp()
    )


def loads_gnu_openmp() -> bool:
    """Whether PyTorch's OpenMP runtime is GNU's (the kernels' `libgomp.so.1` then resolves to it; a second
    runtime would start threads of its own)."""
    try:
        return "libgomp" in Path("/proc/self/maps").read_text()
    except OSError:
        return False


def cache_folder() -> Path:
    root = os.environ.get("HUBFORMERS_CACHE") or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return Path(root) / "hubformers" / "kernels"


def cpu_signature() -> str:
    """The CPU's model and flags: `-march=native` code is only valid on CPUs with the same."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor()
    return "\n".join(sorted({line for line in lines if line.startswith(("model name", "flags"))}))


def compile_command(defines: dict[str, int]) -> list[str]:
    """The compiler (`$CC`, or `cc`) and its flags, the source file and output to follow."""
    return [os.environ.get("CC", "cc"), *FLAGS, *(f"-D{name}={value}" for name, value in sorted(defines.items()))]


def library_name(source: str, command: list[str]) -> str:
    """The cached library's file name: a hash of what its code depends on."""
    return hashlib.sha256("\n".join([source, *command, cpu_signature()]).encode()).hexdigest()[:24] + ".so"


def compile_library(source: str, defines: dict[str, int], symbols: tuple[str, ...]) -> ctypes.CDLL | None:
    """The shared library built from `source` with `defines`, which defines `symbols`: from the cache when the
    cache folder is trusted and the copy there intact (`distrust`, `intact`), else built again (in a private
    temporary folder where the cache is not trusted, with a warning); None (logged) when the compiler is missing
    or fails, or no folder can be written."""
    command = compile_command(defines)
    name = library_name(source, command)
    try:
        folder = cache_folder()
        make_private_folders(folder)
        doubt = distrust(folder)
        if doubt is None:
            return cached_library(source, command, folder / name, symbols)
        warn_once(f"hubformers: {doubt}, so the CPU kernels are built in a private temporary folder instead")
        with tempfile.TemporaryDirectory(prefix="hubformers-kernels-") as private_folder:
            doubt = distrust(Path(private_folder))
            if doubt is not None:
                raise OSError(doubt)
            return cached_library(source, command, Path(private_folder, name), symbols)
    except (OSError, subprocess.CalledProcessError) as error:
        details = getattr(error, "stderr", None) or error
        logger.warning("hubformers: no fused CPU kernel (%s: %s); PyTorch's ops run instead", command[0], details)
        return None


@functools.cache
def warn_once(message: str) -> None:
    logger.warning(message)


def make_private_folders(folder: Path) -> None:
    """Creates `folder` and the folders above it that are missing, each writable by the current user alone
    (`mkdir -p` would leave the ones above to the umask)."""
    for missing in reversed([path for path in (folder, *folder.parents) if not path.exists()]):
        missing.mkdir(mode=0o700, exist_ok=True)


def private(status: os.stat_result) -> bool:
    """Whether a file or folder is the current user's, and no one else may write to it."""
    return status.st_uid == os.geteuid() and not status.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def distrust(folder: Path) -> str | None:
    """Why libraries in `folder` may be another user's, or None: the folder must be the current user's and
    writable by it alone, and each folder above it the user's or root's, writable by others only when sticky
    (as /tmp is), so that no one else can put or rename anything on the way."""
    status = folder.stat()
    if not private(status):
        return f"the cache folder {folder} (owner uid {status.st_uid}, mode {status.st_mode & 0o7777:o}) is not private"
    for above in dict.fromkeys([*folder.absolute().parents, *folder.resolve().parents]):  # links and targets
        status = above.stat()
        shared = status.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not status.st_mode & stat.S_ISVTX
        if status.st_uid not in (0, os.geteuid()) or shared:
            return f"{above}, above the cache folder, may be changed by other users"
    return None


def digest_file(library: Path) -> Path:
    return library.with_name(library.name + ".sha256")


def private_bytes(path: Path) -> bytes | None:
    """The file's contents when it is the current user's and no one else may write to it, else None."""
    with open(path, "rb") as file:
        return file.read() if private(os.fstat(file.fileno())) else None


def intact(library: Path) -> bool:
    """Whether `library` and its digest file are private (`private`) and the library's size and sha256 are the
    ones written beside it when it was built: dlopen of a truncated library ends the process with SIGBUS."""
    try:
        data, record = private_bytes(library), private_bytes(digest_file(library))
    except OSError:
        return False
    return data is not None and record is not None and record.split() == digest(data).split()


def digest(data: bytes) -> bytes:
    return f"{hashlib.sha256(data).hexdigest()} {len(data)}\n".encode()


def cached_library(source: str, command: list[str], library: Path, symbols: tuple[str, ...]) -> ctypes.CDLL:
    """`library`, built again first unless it is intact and defines `symbols`."""
    loaded = open_library(library, symbols)
    if loaded is None:
        build_library(source, command, library)
        loaded = open_library(library, symbols)
    if loaded is None:
        raise OSError(f"{library}, just built, is not intact or does not define {', '.join(symbols)}")
    return loaded


def open_library(library: Path, symbols: tuple[str, ...]) -> ctypes.CDLL | None:
    """`library` loaded when it is intact and defines `symbols`, else None."""
    if not intact(library):
        return None
    loaded = ctypes.CDLL(str(library))
    if all(hasattr(loaded, symbol) for symbol in symbols):
        return loaded
    _ctypes.dlclose(loaded._handle)  # else dlopen would return this library again for the one built in its place
    return None


def build_library(source: str, command: list[str], library: Path) -> None:
    """Compiles `source` into `library`, then writes its digest beside it, each file written under another name,
    synced and renamed into place, so that readers (other processes, or later ones after a crash) find whole
    files, and a library whose digest is not written yet is built again."""
    with tempfile.TemporaryDirectory(dir=library.parent) as build:
        source_file, built, record = Path(build, "kernel.c"), Path(build, "kernel.so"), Path(build, "digest")
        source_file.write_text(source)
        subprocess.run([*command, str(source_file), "-o", str(built)], check=True, capture_output=True, text=True)
        record.write_bytes(digest(built.read_bytes()))
        install(built, library)
        install(record, digest_file(library))


def install(file: Path, target: Path) -> None:
    """Moves `file` to `target` once it is on disk, writable by its owner alone (whatever the umask)."""
    with open(file, "rb") as handle:
        os.fchmod(handle.fileno(), os.fstat(handle.fileno()).st_mode & 0o755)
        os.fsync(handle.fileno())
    os.replace(file, target)


@functools.cache
def window_attention_kernel(tokens: int, head_dim: int) -> ctypes.CDLL | None:
    """The compiled window attention for windows of `tokens` tokens and heads of `head_dim` floats, or None where
    it does not run (`serves_window`, and see the module's docstring)."""
    if not enabled() or not serves_window(tokens, head_dim):
        return None
    symbols = ("window_attention_forward", "window_attention_backward")
    library = compile_library(WINDOW_ATTENTION_SOURCE, {"N": tokens, "D": head_dim}, symbols)
    if library is None:
        return None
    pointer, size = ctypes.c_void_p, ctypes.c_int64
    library.window_attention_forward.argtypes = [pointer] * 5 + [size] * 4 + [ctypes.c_float, ctypes.c_int]
    library.window_attention_backward.argtypes = [pointer] * 6 + [size] * 5 + [ctypes.c_float, ctypes.c_int]
    library.window_attention_forward.restype = library.window_attention_backward.restype = None
    return library


@functools.cache
def gelu_backward_kernel() -> ctypes.CDLL | None:
    """The compiled GELU backward, or None where it does not run (see the module's docstring)."""
    library = compile_library(GELU_BACKWARD_SOURCE, {}, ("gelu_backward",)) if enabled() else None
    if library is not None:
        pointer, size = ctypes.c_void_p, ctypes.c_int64
        library.gelu_backward.argtypes = [pointer] * 4 + [size] * 2 + [ctypes.c_int]
        library.gelu_backward.restype = None
    return library


def gelu_backward(grad: torch.Tensor, pre: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """grad * GELU'(pre), GELU's input gradient, and its sum over all but the last dimension (the gradient of a
    bias added before GELU), in one pass over the two tensors."""
    if grad.shape != pre.shape:
        raise ValueError(f"GELU's gradient {tuple(grad.shape)} does not match its input {tuple(pre.shape)}.")
    grad, pre = grad.contiguous(), pre.contiguous()
    width, threads = pre.shape[-1], torch.get_num_threads()
    grad_pre, sums = torch.empty_like(pre), pre.new_zeros(threads, width)
    gelu_backward_kernel().gelu_backward(
        grad.data_ptr(), pre.data_ptr(), grad_pre.data_ptr(), sums.data_ptr(), pre.numel() // width, width, threads
    )
    return grad_pre, sums.sum(0)


def padded_tokens(tokens: int) -> int:
    """The kernel's row length for the scores: whole vectors of 16 floats."""
    return -(-tokens // 16) * 16


def runs_kernels(*tensors: torch.Tensor) -> bool:
    """Whether the kernels (and fused_linear's oneDNN calls) may take these tensors: plain float32 CPU tensors
    (not tensor subclasses or fake tensors), outside compiler traces (which fuse on their own) and torch.func
    transforms (the ops have no rules for them)."""
    return (
        all(
            type(t) in (torch.Tensor, nn.Parameter) and t.device.type == "cpu" and t.dtype == torch.float32
            for t in tensors
        )
        and not torch.compiler.is_compiling()
        and not torch._C._are_functorch_transforms_active()
    )


def runs_window_attention_kernel(window_tokens: int, head_dim: int, *tensors: torch.Tensor) -> bool:
    """Whether the window attention runs for windows of `window_tokens` and heads of `head_dim` on the tensors
    its operands come from: `runs_kernels`, and a kernel compiled for their size."""
    return runs_kernels(*tensors) and window_attention_kernel(window_tokens, head_dim) is not None


def pad_mask(mask: torch.Tensor) -> torch.Tensor:
    """(M, heads, N, N) -> (M, heads, N, NP), the rows padded with -inf to the kernel's length (whole vectors),
    which gives the padding zero probability."""
    tokens = mask.shape[-1]
    return F.pad(mask, (0, padded_tokens(tokens) - tokens), value=float("-inf")).contiguous()


def fused_window_attention(
    qkv: torch.Tensor,
    mask: torch.Tensor,
    num_heads: int,
    scale: float,
    order: torch.Tensor,
    keep_probs: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """softmax(q k^T * scale + mask) v by the kernel, on q/k/v projections `qkv` of (images, T, 3 * dim), each
    image's T tokens in raster order, `order` (T,) listing the tokens of each of its T / N windows in turn
    (`window_order`: the kernel gathers the shifted windows as it reads, and writes each token's output back in
    its place); mask (M, heads, N, NP) from `pad_mask`, window p of an image taking mask[p % M] (M = 1, or the
    windows per image). Returns (images, T, dim) and, when `keep_probs`, the probabilities (windows, heads, N,
    NP)."""
    check_window_layout(qkv.shape, mask.shape, num_heads, order)
    qkv, mask, order = qkv.contiguous(), mask.contiguous(), order.contiguous()
    (images, tokens, width), window_tokens = qkv.shape, mask.shape[2]
    kernel = window_attention_kernel(window_tokens, width // (3 * num_heads))
    if kernel is None:
        raise ValueError(
            f"Expected windows of at most {MAX_TOKENS} tokens and heads of 16 to {MAX_HEAD_DIM} floats in steps of "
            f"16, on a machine where the kernels run (`runs_window_attention_kernel`); got windows of "
            f"{window_tokens} tokens and heads of {width // (3 * num_heads)} floats."
        )
    output = qkv.new_empty(images, tokens, width // 3)
    probs = None
    if keep_probs:
        probs = qkv.new_empty(images * tokens // window_tokens, num_heads, window_tokens, mask.shape[3])
    kernel.window_attention_forward(
        qkv.data_ptr(),
        order.data_ptr(),
        mask.data_ptr(),
        output.data_ptr(),
        None if probs is None else probs.data_ptr(),
        images,
        tokens,
        mask.shape[0],
        num_heads,
        scale,
        torch.get_num_threads(),
    )
    return output, probs


def check_window_layout(qkv_shape: torch.Size, mask_shape: torch.Size, num_heads: int, order: torch.Tensor) -> None:
    """`fused_window_attention`'s operands fit together: the kernel reads whatever memory the sizes say."""
    positions, _, tokens, padded = mask_shape
    if (
        len(qkv_shape) != 3
        or mask_shape[1] != num_heads
        or padded != padded_tokens(tokens)
        or qkv_shape[1] % tokens
        or (qkv_shape[1] // tokens) % positions
        or order.shape != (qkv_shape[1],)
        or order.dtype != torch.int64
        or qkv_shape[2] % (3 * num_heads)
    ):
        raise ValueError(
            f"Expected q/k/v projections of (images, T, 3 * dim) with T a whole number of windows, a padded mask "
            f"of shape (M, {num_heads}, N, {padded_tokens(tokens)}) with M dividing the windows, and an int64 "
            f"order of T tokens; got {tuple(qkv_shape)}, {tuple(mask_shape)} and {tuple(order.shape)}."
        )
    low, high = (order.min().item(), order.max().item()) if order.numel() else (0, 0)
    if low < 0 or high >= qkv_shape[1]:  # the kernel would address memory past the images' tokens
        raise ValueError(f"The order lists tokens {low}..{high}, outside the image's {qkv_shape[1]}.")


class FusedWindowAttention(torch.autograd.Function):
    """`fused_window_attention`, differentiable in the projections and the padded mask (the relative position
    bias, a parameter). The probabilities are kept for the backward, as PyTorch's attention keeps them."""

    @staticmethod
    def forward(ctx, qkv, mask, num_heads, scale, order):
        qkv, order = qkv.contiguous(), order.contiguous()
        output, probs = fused_window_attention(qkv, mask, num_heads, scale, order, keep_probs=True)
        ctx.save_for_backward(qkv, probs, order)
        ctx.num_heads, ctx.scale, ctx.mask_shape = num_heads, scale, mask.shape
        return output

    @staticmethod
    def backward(ctx, grad_output):
        qkv, probs, order = ctx.saved_tensors  # checked by the forward
        (images, image_tokens, width), (positions, heads, tokens) = qkv.shape, ctx.mask_shape[:3]
        grad_output, grad_qkv = grad_output.contiguous(), torch.empty_like(qkv)
        threads = torch.get_num_threads()
        # the images split into runs, each summing its own mask gradient, so that there are enough
        # (run, window position, head) tasks to keep every thread busy
        groups = min(images, -(-8 * threads // (positions * heads)))
        grad_mask = qkv.new_zeros(groups, *ctx.mask_shape) if ctx.needs_input_grad[1] else None
        window_attention_kernel(tokens, width // (3 * heads)).window_attention_backward(
            qkv.data_ptr(),
            order.data_ptr(),
            probs.data_ptr(),
            grad_output.data_ptr(),
            grad_qkv.data_ptr(),
            None if grad_mask is None else grad_mask.data_ptr(),
            images,
            image_tokens,
            positions,
            heads,
            groups,
            ctx.scale,
            threads,
        )
        return grad_qkv, None if grad_mask is None else grad_mask.sum(0), None, None, None
