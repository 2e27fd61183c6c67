/* liquid-edge native CPU kernel: one chunk of a causal Liquid-S4 stepwise model, fused.
 *
 * Why it exists: on a CPU the model's cost is its GLU projections (a (2H x C·H) matrix per layer and
 * sample, ~82% of the multiply-adds of the paper's Speech Commands config) plus a per-channel state
 * update. A graph runtime runs the projection well but pays for every elementwise node and every small
 * per-channel matrix product separately (~25 passes over the activations per layer); here each layer
 * is two passes and one register-blocked matrix product:
 *
 *   u = norm(x); the liquid correlations of the chunk (PB terms, or the KB input v)
 *   per group of 8 channels, sample by sample: s += dA s + B v; y = C s + D u   (the recurrence)
 *   g = GELU(y)
 *   x += (g Wa + ba) * sigmoid(g Wb + bb): the GLU projection, gate and residual in one blocked
 *   matrix product (post-norm models: then x = norm(x))
 *
 * The state update is the dense real bilinear system computed in float64 at conversion (never
 * eigen-diagonalised, DESIGN.md section 1); the recurrence is the exact stepwise form, so no chunk
 * operators are needed and any chunk length works. IEEE float32 throughout (no fast-math); the only
 * approximations are exp and erf below, accurate to ~2e-7 absolute.
 *
 * Written with GCC/Clang vector extensions: AVX2+FMA on x86-64, NEON on aarch64, whatever -march
 * gives. Built by runtime/native.py with the system C compiler.
 */
#include <stddef.h>
#include <string.h>
#if defined(__AVX__)
#include <immintrin.h>
#endif

#define VL 8                       /* lanes per vector: channels processed together */
#define PMAX 8                     /* largest liquid degree */
#define NMAX 64                    /* largest real state size per channel */
#define CMAX 4                     /* most SSM output channels */

typedef float vf __attribute__((vector_size(4 * VL)));
typedef int vi __attribute__((vector_size(4 * VL)));

static inline vf ld(const float *p) { vf v; memcpy(&v, p, sizeof v); return v; }
static inline void st(float *p, vf v) { memcpy(p, &v, sizeof v); }
static inline vf bc(float a) { return (vf){0} + a; }
#if defined(__AVX__) && VL == 8
static inline vf bcm(const float *p) { return (vf)_mm256_broadcast_ss(p); }   /* one load uop */
#else
static inline vf bcm(const float *p) { return bc(*p); }
#endif
static inline vi bci(int a) { return (vi){0} + a; }
#define SIGN bci((int)0x80000000u)   /* the float sign bit (bc(-0.0f) would be +0: 0 + -0 = +0) */
#if defined(__AVX__) && VL == 8
static inline vf vmin(vf a, vf b) { return (vf)_mm256_min_ps((__m256)a, (__m256)b); }
static inline vf vmax(vf a, vf b) { return (vf)_mm256_max_ps((__m256)a, (__m256)b); }
#else
static inline vf sel(vi m, vf a, vf b) { return (vf)(((vi)a & m) | ((vi)b & ~m)); }
static inline vf vmin(vf a, vf b) { return sel(a < b, a, b); }
static inline vf vmax(vf a, vf b) { return sel(a > b, a, b); }
#endif
static inline vf vabs(vf a) { return (vf)((vi)a & ~SIGN); }

/* e^x for x in [-87, 87]: x = k ln2 + r, |r| <= ln2/2, Taylor to r^7 (relative error < 6e-9 before
 * rounding; ~1 ulp after). */
static inline vf vexp_core(vf x) {
    vf k = (x * 1.44269504089f + 12582912.0f) - 12582912.0f;      /* round to nearest */
    vf r = x - k * 0.693145751953125f - k * 1.42860682030941723e-6f;  /* ln2 split (Cody-Waite) */
    vf p = bc(1.0f / 5040);
    p = p * r + 1.0f / 720; p = p * r + 1.0f / 120; p = p * r + 1.0f / 24;
    p = p * r + 1.0f / 6; p = p * r + 0.5f; p = p * r + 1.0f; p = p * r + 1.0f;
    vi e = (__builtin_convertvector(k, vi) + 127) << 23;
    return p * (vf)e;
}

static inline vf vexp(vf x) { return vexp_core(vmin(vmax(x, bc(-87.0f)), bc(87.0f))); }

static inline vf vsigmoid(vf x) { return 1.0f / (1.0f + vexp(-x)); }

static inline vf vtanh(vf x) {     /* 1 - 2/(e^2|x| + 1): absolute error ~1e-7 */
    vf a = 1.0f - 2.0f / (vexp(2.0f * vabs(x)) + 1.0f);
    return (vf)((vi)a | ((vi)x & SIGN));
}

/* erf(z) for z >= 0: a degree-18 least-squares polynomial in w = (z - 2)/2 on [0, 4] (float64 fit:
 * scripts/fit_erf.py; erf(4) rounds to 1 in float32), in Estrin's form: no exp, no division, no
 * branch, and a short dependency chain so consecutive vectors overlap. Absolute error ~2.3e-7 in
 * float32 arithmetic (tests/test_native.py). */
static inline vf verf_pos(vf z) {
    static const float E[19] = {
        9.953222683e-01f, 4.133398427e-02f, -1.653365544e-01f, 3.857831039e-01f,
        -5.510971652e-01f, 4.188574053e-01f, 2.910128966e-02f, -4.325004581e-01f,
        4.092368843e-01f, -2.595885597e-02f, -2.765062677e-01f, 2.145036129e-01f,
        3.877986359e-02f, -1.393892927e-01f, 3.924976683e-02f, 4.311803786e-02f,
        -2.294514992e-02f, -5.747546925e-03f, 4.195059714e-03f};
    vf w = vmin(z, bc(4.0f)) * 0.5f - 1.0f, w2 = w * w, w4 = w2 * w2, w8 = w4 * w4, p[10];
    for (int i = 0; i < 9; i++) p[i] = E[2 * i] + w * E[2 * i + 1];
    p[9] = bc(E[18]);
    for (int i = 0; i < 5; i++) p[i] = p[2 * i] + w2 * p[2 * i + 1];      /* degrees 0-3, ..., 16-19 */
    p[0] = p[0] + w4 * p[1];
    p[1] = p[2] + w4 * p[3];                                             /* 0-7, 8-15, 16-19 in p[4] */
    return p[0] + w8 * (p[1] + w8 * p[4]);
}

static inline vf vgelu(vf x) {     /* x Phi(x), the exact (erf) GELU */
    vf e = verf_pos(vabs(x) * 0.70710678118654752f);
    e = (vf)((vi)e | ((vi)x & SIGN));
    return 0.5f * x * (1.0f + e);
}

static inline vf contract(vf x, int kind) {
    if (kind == 1) return vtanh(x);
    if (kind == 2) return 1.7159f * vtanh(0.666f * x);
    return x;
}

/* ---- the matrix products ---------------------------------------------------------------------
 * One register block: rows 0..5 of G (row stride ldg) times two 8-column weight streams wa, wb (K x 8
 * each, k-major, `step` floats apart from one k to the next), added to p (from wa) and q (from wb).
 * Twelve named accumulators, two weight vectors and a broadcast fill the 16 AVX registers (an array
 * of accumulators would live on the stack); the caller's epilogue reads p, q once at the end. */
#define MR 6
static inline void block6(int K, const float *g, int ldg, const float *wa, const float *wb, int step, vf p[MR], vf q[MR]) {
    vf p0 = p[0], p1 = p[1], p2 = p[2], p3 = p[3], p4 = p[4], p5 = p[5];
    vf q0 = q[0], q1 = q[1], q2 = q[2], q3 = q[3], q4 = q[4], q5 = q[5];
    const float *g0 = g, *g1 = g + ldg, *g2 = g + 2 * ldg, *g3 = g + 3 * ldg, *g4 = g + 4 * ldg, *g5 = g + 5 * ldg;
    for (int k = 0; k < K; k++, wa += step, wb += step) {
        vf va = ld(wa), vb = ld(wb), c;
        c = bcm(g0 + k); p0 += c * va; q0 += c * vb;
        c = bcm(g1 + k); p1 += c * va; q1 += c * vb;
        c = bcm(g2 + k); p2 += c * va; q2 += c * vb;
        c = bcm(g3 + k); p3 += c * va; q3 += c * vb;
        c = bcm(g4 + k); p4 += c * va; q4 += c * vb;
        c = bcm(g5 + k); p5 += c * va; q5 += c * vb;
    }
    p[0] = p0; p[1] = p1; p[2] = p2; p[3] = p3; p[4] = p4; p[5] = p5;
    q[0] = q0; q[1] = q1; q[2] = q2; q[3] = q3; q[4] = q4; q[5] = q5;
}

/* Rows i..i+5 of G (M x K, row stride ldg); the last, partial block from a zero-padded copy in pad.
 * Sets *rows (how many are real) and *ldb (the stride of what it returns). */
static const float *row_block(const float *G, int ldg, int M, int K, int i, float *pad, int *rows, int *ldb) {
    *rows = M - i < MR ? M - i : MR;
    *ldb = ldg;
    if (*rows == MR) return G + (size_t)i * ldg;
    memset(pad, 0, sizeof(float) * MR * K);
    for (int r = 0; r < *rows; r++) memcpy(pad + r * K, G + (size_t)(i + r) * ldg, sizeof(float) * K);
    *ldb = K;
    return pad;
}

/* Z (M x N, row stride ldz) = G W + bias, W (K x N) packed as panels of 16 columns (the last may have
 * 8), each K x width, k-major (native.py: pack_panels). */
static void gemm(int M, int N, int K, const float *G, int ldg, const float *W, const float *bias, float *Z, int ldz, float *pad) {
    for (int j0 = 0; j0 < N; j0 += 16) {
        int wide = N - j0 >= 16;
        const float *w = W + (size_t)j0 * K;
        for (int i = 0; i < M; i += MR) {
            int rows, ldb;
            const float *gb = row_block(G, ldg, M, K, i, pad, &rows, &ldb);
            vf p[MR], q[MR];
            for (int r = 0; r < MR; r++) { p[r] = ld(bias + j0); q[r] = wide ? ld(bias + j0 + 8) : p[r]; }
            if (wide) block6(K, gb, ldb, w, w + 8, 16, p, q);   /* constant steps: two inlined copies */
            else block6(K, gb, ldb, w, w, 8, p, q);             /* an 8-wide panel: q unused */
            for (int r = 0; r < rows; r++) {
                st(Z + (size_t)(i + r) * ldz + j0, p[r]);
                if (wide) st(Z + (size_t)(i + r) * ldz + j0 + 8, q[r]);
            }
        }
    }
}

/* The GLU projection with the gate and the residual in the epilogue: X (M x H, row stride H) +=
 * (G Wa + ba) * sigmoid(G Wb + bb), Wa and Wb (K x H) packed as panels of 8 columns (pack_panels(W, 8)):
 * value and gate of the same 8 columns in one block, so z is never written to memory. */
static void glu_gemm(int M, int H, int K, const float *G, int ldg, const float *Wa, const float *Wb,
                     const float *ba, const float *bb, float *X, float *pad) {
    for (int j0 = 0; j0 < H; j0 += 8) {
        const float *wa = Wa + (size_t)j0 * K, *wb = Wb + (size_t)j0 * K;
        for (int i = 0; i < M; i += MR) {
            int rows, ldb;
            const float *gb = row_block(G, ldg, M, K, i, pad, &rows, &ldb);
            vf p[MR], q[MR];
            for (int r = 0; r < MR; r++) { p[r] = ld(ba + j0); q[r] = ld(bb + j0); }
            block6(K, gb, ldb, wa, wb, 8, p, q);
            for (int r = 0; r < rows; r++) {
                float *xr = X + (size_t)(i + r) * H + j0;
                st(xr, ld(xr) + p[r] * vsigmoid(q[r]));
            }
        }
    }
}

/* ---- the model ---------------------------------------------------------------------------------- */
typedef struct {
    int norm;                    /* 0 none, 1 affine (BatchNorm folded), 2 LayerNorm */
    float eps;
    const float *na, *nb;        /* (H) scale and shift, or LayerNorm weight and bias */
    int liquid, degree, contract;/* liquid: 0 none, 1 PB, 2 KB; contract: 0 none, 1 tanh, 2 lecun */
    const float *lc;             /* PB: (P-1, C, H) c_p; KB: (P-1, H) s_p */
    const float *dA, *B, *C, *D; /* s += dA s + B v, y = C s + D u (dA = A - I): dA (H/8, n, n, 8),
                                    B (H/8, n, 8), C (H/8, C, n, 8), D (C, H) */
    const float *Wa, *Wb, *ba, *bb;  /* GLU projection (C·H -> H, twice: value and gate), packed; biases (H) */
} le_layer;

typedef struct {
    int H, n, C, L, d_in, prenorm;
    const float *We, *be;        /* encoder (d_in -> H), packed; bias (H) */
    int fnorm;                   /* final norm (prenorm models), as le_layer.norm */
    float feps;
    const float *fa, *fb;
    const le_layer *layers;
    int K, pool, nwin;           /* classes; pool 0 last sample, 1 mean over nwin chunks (the window) */
    const float *Wd, *bd;        /* decoder (K, H), bias (K) */
} le_model;

/* y (T x H) = norm(x) row by row, in place allowed */
static void norm_rows(int kind, float eps, const float *a, const float *b, int T, int H, const float *x, float *y) {
    for (int t = 0; t < T; t++) {
        const float *xr = x + (size_t)t * H;
        float *yr = y + (size_t)t * H;
        if (kind == 1) {
            for (int h = 0; h < H; h += VL) st(yr + h, ld(xr + h) * ld(a + h) + ld(b + h));
        } else if (kind == 2) {
            float mean = 0, var = 0;
            for (int h = 0; h < H; h++) mean += xr[h];
            mean /= H;
            for (int h = 0; h < H; h++) var += (xr[h] - mean) * (xr[h] - mean);
            float r = 1.0f / __builtin_sqrtf(var / H + eps);
            for (int h = 0; h < H; h += VL) st(yr + h, (ld(xr + h) - mean) * r * ld(a + h) + ld(b + h));
        } else if (yr != xr) {
            memcpy(yr, xr, sizeof(float) * H);
        }
    }
}

/* The liquid correlations of one layer, all samples at once (they only look back P-1 samples):
 * R = [hist; u] ((P-1+T) x H); level p overwrites R[k] = R[k+1] R[k], after which R[k] = U_p[k+p-1-(P-1)].
 * PB: y (T x C·H) = sum_p c_p phi(U_p) (the recurrence adds to it); KB: v = u + sum_p s_p phi(U_p).
 * hist becomes the last P-1 rows of R before the products. */
static void liquid_terms(const le_layer *ly, int H, int Cn, int T, const float *u, float *hist, float *R,
                         float *y, float *v) {
    int P1 = ly->degree - 1;
    if (P1 == 1) {   /* degree 2, the common case: U_2[t] = u[t] u[t-1] straight from u, one pass */
        for (int t = 0; t < T; t++) {
            const float *prev = t ? u + (size_t)(t - 1) * H : hist, *cur = u + (size_t)t * H;
            for (int h = 0; h < H; h += VL) {
                vf U = contract(ld(cur + h) * ld(prev + h), ly->contract);
                if (ly->liquid == 2)
                    st(v + (size_t)t * H + h, ld(cur + h) + ld(ly->lc + h) * U);
                else
                    for (int c = 0; c < Cn; c++) st(y + ((size_t)t * Cn + c) * H + h, ld(ly->lc + (size_t)c * H + h) * U);
            }
        }
        memcpy(hist, u + (size_t)(T - 1) * H, sizeof(float) * H);
        return;
    }
    memcpy(R, hist, sizeof(float) * P1 * H);
    memcpy(R + (size_t)P1 * H, u, sizeof(float) * T * H);
    memcpy(hist, R + (size_t)T * H, sizeof(float) * P1 * H);
    if (ly->liquid == 2) memcpy(v, u, sizeof(float) * T * H);
    else memset(y, 0, sizeof(float) * T * Cn * H);
    for (int p = 0; p < P1; p++) {   /* U_{p+2}[t] = R[t + P1 - 1 - p] after this level */
        for (int k = 0; k < T + P1 - 1 - p; k++)
            for (int h = 0; h < H; h += VL) st(R + (size_t)k * H + h, ld(R + (size_t)(k + 1) * H + h) * ld(R + (size_t)k * H + h));
        const float *Up = R + (size_t)(P1 - 1 - p) * H;
        for (int t = 0; t < T; t++)
            for (int h = 0; h < H; h += VL) {
                vf U = contract(ld(Up + (size_t)t * H + h), ly->contract);
                if (ly->liquid == 2) {
                    float *vr = v + (size_t)t * H + h;
                    st(vr, ld(vr) + ld(ly->lc + (size_t)p * H + h) * U);
                } else {
                    for (int c = 0; c < Cn; c++) {
                        float *yr = y + (size_t)t * Cn * H + (size_t)c * H + h;
                        st(yr, ld(yr) + ld(ly->lc + ((size_t)p * Cn + c) * H + h) * U);
                    }
                }
            }
    }
}

/* The recurrence for channels h0..h0+7: s += dA s + B v, y[t] += C s + D u (y (T x C·H)); the state
 * (H, n) at the interface is updated. The increment form keeps slow modes (A near I) accurate over
 * long streams: the only large rounding per step is the final add. NN: the state size at compile
 * time, so s stays in registers; each sum is split in two chains to halve the step-to-step latency. */
#define RECURRENCE(NAME, NN)                                                                            \
static void NAME(const le_layer *ly, int H, int n, int Cn, int T, int h0, const float *u, const float *v, \
                 float *state, float *y) {                                                             \
    const int N = NN ? NN : n;                                                                         \
    vf s[NN ? NN : NMAX], s2[NN ? NN : NMAX];                                                          \
    for (int i = 0; i < N; i++) {                                                                      \
        float lane[VL];                                                                                \
        for (int l = 0; l < VL; l++) lane[l] = state[(size_t)(h0 + l) * N + i];                        \
        s[i] = ld(lane);                                                                               \
    }                                                                                                  \
    /* this group's parameters are contiguous (native.py: group_major): constant offsets below */      \
    const size_t g = h0 / VL;                                                                          \
    const float *A = ly->dA + g * N * N * VL, *B = ly->B + g * N * VL, *C = ly->C + g * Cn * N * VL;   \
    const float *D = ly->D + h0;                                                                       \
    for (int t = 0; t < T; t++) {                                                                      \
        vf vv = ld(v + (size_t)t * H + h0), uu = ld(u + (size_t)t * H + h0);                           \
        for (int i = 0; i < N; i++) {                                                                  \
            const float *Ai = A + (size_t)i * N * VL;                                                  \
            vf a0 = ld(B + i * VL) * vv, a1 = bc(0);                                                   \
            for (int j = 0; j < N / 2; j++) a0 += ld(Ai + j * VL) * s[j];                              \
            for (int j = N / 2; j < N; j++) a1 += ld(Ai + j * VL) * s[j];                              \
            s2[i] = s[i] + (a0 + a1);                                                                  \
        }                                                                                              \
        for (int i = 0; i < N; i++) s[i] = s2[i];                                                      \
        for (int c = 0; c < Cn; c++) {                                                                 \
            float *yr = y + (size_t)t * Cn * H + (size_t)c * H + h0;                                   \
            const float *Cc = C + (size_t)c * N * VL;                                                  \
            vf a = ld(yr) + ld(D + (size_t)c * H) * uu;                                                \
            for (int i = 0; i < N; i++) a += ld(Cc + i * VL) * s[i];                                   \
            st(yr, a);                                                                                 \
        }                                                                                              \
    }                                                                                                  \
    for (int i = 0; i < N; i++) {                                                                      \
        float lane[VL];                                                                                \
        st(lane, s[i]);                                                                                \
        for (int l = 0; l < VL; l++) state[(size_t)(h0 + l) * N + i] = lane[l];                        \
    }                                                                                                  \
}
RECURRENCE(rec2, 2)
RECURRENCE(rec4, 4)
RECURRENCE(rec6, 6)
RECURRENCE(rec8, 8)
RECURRENCE(rec_any, 0)

typedef void (*rec_fn)(const le_layer *, int, int, int, int, int, const float *, const float *, float *, float *);
static rec_fn recurrence_for(int n) {
    return n == 2 ? rec2 : n == 4 ? rec4 : n == 6 ? rec6 : n == 8 ? rec8 : rec_any;
}

/* The decision: mean pooling over the window (sums of decoder(features) - bias per chunk, shifted
 * by one chunk per call) or the last sample's features through the decoder. f (T x H); tmp (H). */
static void head(const le_model *m, int T, const float *f, float *pool, float *logits, float *tmp) {
    int H = m->H, K = m->K;
    const float *src = f + (size_t)(T - 1) * H;
    if (m->pool) {
        for (int h = 0; h < H; h += VL) {
            vf acc = bc(0);
            for (int t = 0; t < T; t++) acc += ld(f + (size_t)t * H + h);
            st(tmp + h, acc);
        }
        src = tmp;
    }
    float *row = m->pool ? pool + (size_t)(m->nwin - 1) * (K + 1) : logits;
    if (m->pool) memmove(pool, pool + K + 1, sizeof(float) * (m->nwin - 1) * (K + 1));
    for (int k = 0; k < K; k++) {
        vf acc = bc(0);
        for (int h = 0; h < H; h += VL) acc += ld(m->Wd + (size_t)k * H + h) * ld(src + h);
        float sum = 0;
        for (int l = 0; l < VL; l++) sum += acc[l];
        row[k] = m->pool ? sum : sum + m->bd[k];
    }
    if (!m->pool) return;
    row[K] = (float)T;
    for (int k = 0; k <= K; k++) tmp[k] = 0;
    for (int w = 0; w < m->nwin; w++)
        for (int k = 0; k <= K; k++) tmp[k] += pool[(size_t)w * (K + 1) + k];
    for (int k = 0; k < K; k++) logits[k] = tmp[k] / tmp[K] + m->bd[k];
}

#ifndef TILE
#define TILE 256   /* samples per pass through the layers: the working buffers stay in L2 */
#endif

size_t le_work_floats(const le_model *m, int T) {
    size_t H = m->H, CH = (size_t)m->C * m->H, K = CH > (size_t)m->d_in ? CH : (size_t)m->d_in;
    size_t head = (size_t)m->K + 1 > H ? (size_t)m->K + 1 : H, R = T < TILE ? T : TILE;
    return R * (3 * H + CH) + (PMAX - 1) * H + MR * K + head;   /* u, v, R, y, pad, tmp */
}

/* One chunk for B streams. x (B, T, d_in); ssm (B, L, H, n), liq (B, L, P-1, H) (NULL without liquid
 * terms) and pool (B, nwin, K+1) (NULL for last-sample pooling) are updated in place; feat (B, T, H)
 * receives the features (after the final norm), logits (B, K) the decision; work: le_work_floats(m, T)
 * floats. The pool keeps per-chunk sums of decoder(features) - bias and their sample counts, as the
 * stepwise module does. Long chunks go through the layer stack TILE samples at a time with the
 * states carried (the model is causal, so this is the same computation); returns 0, or -1 for a
 * model beyond the kernel's limits. */
int le_chunk(const le_model *m, int B, int T, const float *x, float *ssm, float *liq, float *pool, float *feat,
             float *logits, float *work) {
    int H = m->H, n = m->n, Cn = m->C, L = m->L;
    if (H % VL || n > NMAX || Cn > CMAX) return -1;
    int P1 = 0;
    for (int l = 0; l < L; l++) {
        const le_layer *ly = m->layers + l;
        if (ly->liquid && (ly->degree < 2 || ly->degree > PMAX)) return -1;
        if (ly->liquid && !P1) P1 = ly->degree - 1;
    }
    int rows = T < TILE ? T : TILE;
    float *u = work, *v = u + (size_t)rows * H, *R = v + (size_t)rows * H, *y = R + (size_t)(rows + PMAX - 1) * H;
    float *pad = y + (size_t)rows * Cn * H;
    float *tmp = pad + (size_t)MR * (Cn * H > m->d_in ? Cn * H : m->d_in);
    rec_fn rec = recurrence_for(n);
    for (int b = 0; b < B; b++) {
        for (int t0 = 0; t0 < T; t0 += TILE) {
            int Tt = T - t0 < TILE ? T - t0 : TILE;
            float *h = feat + ((size_t)b * T + t0) * H;
            gemm(Tt, H, m->d_in, x + ((size_t)b * T + t0) * m->d_in, m->d_in, m->We, m->be, h, H, pad);
            for (int l = 0; l < L; l++) {
                const le_layer *ly = m->layers + l;
                float *state = ssm + ((size_t)b * L + l) * H * n;
                norm_rows(m->prenorm ? ly->norm : 0, ly->eps, ly->na, ly->nb, Tt, H, h, u);
                const float *vin = u;
                if (ly->liquid) {
                    liquid_terms(ly, H, Cn, Tt, u, liq + ((size_t)b * L + l) * P1 * H, R, y, v);
                    if (ly->liquid == 2) vin = v;
                }
                if (ly->liquid != 1) memset(y, 0, sizeof(float) * Tt * Cn * H);
                for (int h0 = 0; h0 < H; h0 += VL) rec(ly, H, n, Cn, Tt, h0, u, vin, state, y);
                for (size_t i = 0; i < (size_t)Tt * Cn * H; i += VL) st(y + i, vgelu(ld(y + i)));
                glu_gemm(Tt, H, Cn * H, y, Cn * H, ly->Wa, ly->Wb, ly->ba, ly->bb, h, pad);
                if (!m->prenorm) norm_rows(ly->norm, ly->eps, ly->na, ly->nb, Tt, H, h, h);
            }
            if (m->prenorm) norm_rows(m->fnorm, m->feps, m->fa, m->fb, Tt, H, h, h);
        }
        head(m, T, feat + (size_t)b * T * H, pool ? pool + (size_t)b * m->nwin * (m->K + 1) : 0, logits + (size_t)b * m->K, tmp);
    }
    return 0;
}
