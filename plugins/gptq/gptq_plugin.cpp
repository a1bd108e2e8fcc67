// gptq_plugin.cpp: the `gptq` algorithm plugin (GPTQ, arXiv 2210.17323; IST-DASLab
// gptq.py, as AutoGPTQ / GPTQModel / llm-compressor reproduce it).
//
// Per Linear W [rows, cols] with the calibration Hessian X^T X over N tokens:
//   H = (2/N) X^T X; dead columns (H_jj == 0) get H_jj = 1 and W[:, j] = 0;
//   optional act_order: perm = argsort(diag H) descending (stable);
//   H += damp * mean(diag H) * I; U = chol_upper(H^-1), computed as
//   J L^-1 J with L = chol_lower(J H J) (J: order reversal) through the
//   host's spotrf and strsm: the same U as the reference's cholesky ->
//   cholesky_inverse -> cholesky(upper), in half the flops (damp * 10 and
//   retry, with a warning, when the factorisation fails, up to damp_limit);
//   lazy-batch loop over blocks of block_size columns: quantize column k with
//   the current (scale, zp), err = (w - q) / U[k,k], update the rest of the
//   block by err * U[k, k+1:], then the trailing columns with one GEMM
//   W[:, i2:] -= Err * U[i1:i2, i2:].
// Group parameters (GROUP, not static_groups) are computed when the loop
// reaches a group's first column, from W as it was at the last block
// boundary (the reference's quirk for group_size < block_size). With
// static_groups they are computed up front on the original W in original
// column order. CHANNEL/TENSOR parameters come from the original W. The
// arithmetic is the compressed-tensors one (sdk/quantizer.hpp), so the codes
// and scales are what rtn would write for the same values.
//
// Outputs: codes/scales/zero points in original column order; with act_order
// and non-static groups, scales are in quantization (permuted) group order
// and g_idx[c] names column c's group. rel_error is ||W - W_hat|| / ||W||;
// the GPTQ objective sum (w - q)^2 / (2 U_kk^2) is logged.
//
// The rows of W are independent given U, so each block is processed in row
// chunks over the host's threads; the trailing update and the Cholesky work
// run on the host's BLAS/LAPACK services (a GPU provider can take them).
#include <xquant/sdk/plugin.hpp>
#include <xquant/sdk/quantizer.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <mutex>
#include <numeric>
#include <string>
#include <vector>

namespace {

using namespace xquant::sdk;

struct Options {
  double damp = 0.01;
  double damp_limit = 1.0;
  bool act_order = false;
  bool static_groups = false;
  int64_t block = 128;
};

// Rows processed together inside one block: block_size x kRowTile floats of
// the transposed block stay in L2 while the rank-1 updates sweep over them.
constexpr int64_t kRowTile = 128;

class GptqAlgorithm : public PluginBase {
 public:
  using PluginBase::PluginBase;

  uint32_t needs(const KvReader&) { return XQ_NEED_HESSIAN; }

  void quantize(const KvReader& params, xq_layer_group& group, xq_linear_output* outs) {
    Options o;
    o.damp = params.get_float("damp", 0.01);
    o.damp_limit = params.get_float("damp_limit", 1.0);
    o.act_order = params.get_bool("act_order", false);
    o.static_groups = params.get_bool("static_groups", false);
    o.block = params.get_int("block_size", 128);
    if (!(o.damp > 0.0) || !(o.damp_limit >= o.damp))
      fail(XQ_ERR_INVALID_ARGUMENT,
           format("%s: gptq needs damp > 0 and damp_limit >= damp (got %g, %g)", group.name, o.damp, o.damp_limit));
    if (o.block <= 0) fail(XQ_ERR_INVALID_ARGUMENT, format("%s: gptq block_size must be > 0", group.name));
    // Linears that read one input (q, k, v; gate and up; a MoE expert's gate
    // and up) are handed one Hessian: its factorisation is computed for the
    // first and reused by the ones right after it.
    Factorisation shared;
    for (uint64_t i = 0; i < group.n_linears; ++i) quantize_one(group.linears[i], outs[i], o, shared);
  }

 private:
  // What GPTQ derives from a Hessian alone (the weights play no part): its
  // dead columns, the column order, the damping that made it factorisable and
  // U = chol_upper(H^-1). `hessian` names the buffer it came from; the
  // pipeline keeps that buffer alive and unchanged for the whole group.
  struct Factorisation {
    const float* hessian = nullptr;
    int64_t cols = 0;
    uint64_t tokens = 0;
    std::string from;  // the Linear it was computed for
    std::vector<char> dead;
    int64_t n_dead = 0;
    std::vector<int64_t> perm;
    double damp = 0;
    std::vector<float> U;
    bool serves(const xq_linear_stats& st) const {
      return hessian == st.hessian && cols == st.cols && tokens == st.tokens;
    }
  };

  // H = (2/N) X^T X with dead columns fixed and act-order applied:
  // Hp[a][b] = H[perm[a]][perm[b]].
  static void build_hessian(const float* hs, double scale, int64_t n, const std::vector<int64_t>& perm,
                            const std::vector<char>& dead, std::vector<float>& h) {
    h.resize(static_cast<size_t>(n * n));
    const float f = static_cast<float>(scale);
    for (int64_t a = 0; a < n; ++a) {
      const float* src = hs + perm[a] * n;
      float* dst = h.data() + a * n;
      for (int64_t b = 0; b < n; ++b) dst[b] = src[perm[b]] * f;
      if (dead[perm[a]]) dst[a] = 1.0f;
    }
  }

  // In place: the lower-triangular t [n, n] (leading dimension ld) -> t^-1.
  // Recursive blocking over the host's strsm: with t = [[A, 0], [B, C]],
  // t^-1 = [[A^-1, 0], [-C^-1 B A^-1, C^-1]]; n^3/3 flops (as LAPACK's trtri),
  // all of it in level-3 calls the host can run on its device.
  void invert_lower(float* t, int64_t n, int64_t ld) {
    if (n <= 64) {
      std::vector<double> inv(static_cast<size_t>(n * n), 0.0);
      for (int64_t j = 0; j < n; ++j) {
        inv[j * n + j] = 1.0 / t[j * ld + j];
        for (int64_t i = j + 1; i < n; ++i) {
          double acc = 0;
          for (int64_t k = j; k < i; ++k) acc += static_cast<double>(t[i * ld + k]) * inv[k * n + j];
          inv[i * n + j] = -acc / t[i * ld + i];
        }
      }
      for (int64_t i = 0; i < n; ++i)
        for (int64_t j = 0; j <= i; ++j) t[i * ld + j] = static_cast<float>(inv[i * n + j]);
      return;
    }
    const xq_host_api* api = host.api();
    const int64_t n1 = n / 2, n2 = n - n1;
    float* a = t;
    float* b = t + n1 * ld;
    float* c = t + n1 * ld + n1;
    xq_status s = api->strsm(api->ctx, 0, 0, 0, n2, n1, a, ld, b, ld);  // B <- B A^-1
    if (s == XQ_OK) s = api->strsm(api->ctx, 1, 0, 0, n2, n1, c, ld, b, ld);  // B <- C^-1 B
    if (s != XQ_OK) fail(s, "gptq: the triangular inverse (strsm) failed");
    for (int64_t i = 0; i < n2; ++i)
      for (int64_t j = 0; j < n1; ++j) b[i * ld + j] = -b[i * ld + j];
    invert_lower(a, n1, ld);
    invert_lower(c, n2, ld);
  }

  // U = chol_upper(H^-1) into h (rebuilt for each damping attempt). With J
  // the order reversal and L = chol_lower(J H J): H = (J L J)(J L J)^T, so
  // H^-1 = U^T U with U = J L^-1 J upper triangular with a positive
  // diagonal, i.e. exactly chol_upper(H^-1). One Cholesky plus one
  // triangular inverse (2n^3/3 flops) instead of Cholesky, inverse and a
  // second Cholesky (4n^3/3), the reference's torch cholesky ->
  // cholesky_inverse -> cholesky(upper).
  double inverse_factor(const xq_linear_input& in, const Options& o, double scale, const std::vector<int64_t>& perm,
                        const std::vector<char>& dead, std::vector<float>& h) {
    const int64_t n = in.weight.shape[1];
    const xq_host_api* api = host.api();
    const std::vector<int64_t> rev(perm.rbegin(), perm.rend());
    for (double damp = o.damp;; damp *= 10.0) {
      build_hessian(in.stats->hessian, scale, n, rev, dead, h);  // J H J
      double mean = 0;
      for (int64_t j = 0; j < n; ++j) mean += h[j * n + j];
      mean /= static_cast<double>(n);
      const float add = static_cast<float>(damp * mean);
      for (int64_t j = 0; j < n; ++j) h[j * n + j] += add;
      const xq_status s = api->spotrf(api->ctx, 0, n, h.data(), n);
      if (s == XQ_OK) {
        invert_lower(h.data(), n, n);
        std::reverse(h.begin(), h.end());  // (i, j) -> (n-1-i, n-1-j): J L^-1 J
        if (damp != o.damp)
          host.warn(format("%s: the Hessian was not positive definite with damp %g; succeeded with damp %g", in.name,
                           o.damp, damp));
        return damp;
      }
      if (s == XQ_ERR_OUT_OF_MEMORY || s == XQ_ERR_DEVICE) fail(s, format("%s: Hessian factorisation failed", in.name));
      if (damp * 10.0 > o.damp_limit * (1.0 + 1e-9))
        fail(XQ_ERR_INVALID_ARGUMENT,
             format("%s: the Hessian is not positive definite even with damp %g (damp_limit %g); more or more "
                    "varied calibration data may help",
                    in.name, damp, o.damp_limit));
      host.warn(format("%s: Cholesky failed with damp %g, retrying with damp %g", in.name, damp, damp * 10.0));
    }
  }

  // Dead columns, the column order and U for `in`, into f (computed unless f
  // already holds them for this Hessian).
  void factorise(const xq_linear_input& in, const Options& o, Factorisation& f) {
    const xq_linear_stats& st = *in.stats;
    const int64_t cols = st.cols;
    // Release the previous one first: U is this Linear's memory peak.
    f = Factorisation{};
    for (int64_t e = 0; e < cols * cols; ++e)
      if (!std::isfinite(st.hessian[e]))
        fail(XQ_ERR_INVALID_ARGUMENT, format("%s: Hessian entry (%lld, %lld) is not finite", in.name,
                                             static_cast<long long>(e / cols), static_cast<long long>(e % cols)));
    // Dead columns and the column order (from H alone).
    f.dead.assign(static_cast<size_t>(cols), 0);
    for (int64_t j = 0; j < cols; ++j)
      if (st.hessian[j * cols + j] == 0.0f) {
        f.dead[j] = 1;
        ++f.n_dead;
      }
    f.perm.resize(static_cast<size_t>(cols));
    std::iota(f.perm.begin(), f.perm.end(), 0);
    if (o.act_order) {
      // Dead columns count with diag 1 (as the reference sorts after fixing them).
      auto diag = [&](int64_t j) { return f.dead[j] ? 1.0f : st.hessian[j * cols + j]; };
      std::stable_sort(f.perm.begin(), f.perm.end(), [&](int64_t a, int64_t b) { return diag(a) > diag(b); });
    }
    f.damp = inverse_factor(in, o, 2.0 / static_cast<double>(st.tokens), f.perm, f.dead, f.U);
    f.hessian = st.hessian;
    f.cols = cols;
    f.tokens = st.tokens;
    f.from = in.name;
  }

  void quantize_one(const xq_linear_input& in, xq_linear_output& out, const Options& o, Factorisation& f) {
    quant::check_weight(in);
    const quant::Scheme sc = quant::scheme_from(in.scheme, in.name);
    const int64_t rows = in.weight.shape[0], cols = in.weight.shape[1];
    const xq_linear_stats* st = in.stats;
    if (!st || !st->hessian)
      fail(XQ_ERR_INVALID_ARGUMENT, format("%s: gptq needs calibration (the input Hessian X^T X); none was given", in.name));
    if (st->cols != cols)
      fail(XQ_ERR_INVALID_ARGUMENT, format("%s: the Hessian is for %lld columns, the weight has %lld", in.name,
                                           static_cast<long long>(st->cols), static_cast<long long>(cols)));
    if (st->tokens == 0) fail(XQ_ERR_INVALID_ARGUMENT, format("%s: the Hessian was built from 0 tokens", in.name));

    const float* w_in = static_cast<const float*>(in.weight.data);
    const bool grouped = sc.strategy == XQ_STRATEGY_GROUP && sc.groups(cols) > 1;
    const int64_t gs = sc.group_cols(cols), ng = sc.groups(cols);
    const bool static_groups = grouped && o.static_groups;

    // The factorisation first: it is the memory peak (H's working copy plus
    // whatever the host's LAPACK needs), so nothing else of ours is alive yet.
    using Clock = std::chrono::steady_clock;
    const auto t_factor = Clock::now();
    const bool reused = f.serves(*st);
    if (!reused) factorise(in, o, f);
    const double factor_s = std::chrono::duration<double>(Clock::now() - t_factor).count();
    const std::vector<char>& dead = f.dead;
    const std::vector<int64_t>& perm = f.perm;
    const std::vector<float>& U = f.U;
    const double damp = f.damp;
    const int64_t n_dead = f.n_dead;

    QuantTensor owner(host);  // frees the buffers if anything below throws
    xq_quant_tensor& q = owner.get();
    quant::alloc_quant(host, sc, in.scheme, rows, cols, q);
    // Up-front parameters on the original W: TENSOR, CHANNEL, static groups.
    if (sc.strategy == XQ_STRATEGY_TENSOR) {
      quant::Params p = quant::choose_span(sc, w_in, rows * cols);
      q.scales[0] = p.scale;
      if (q.zero_points) q.zero_points[0] = static_cast<int8_t>(p.zp);
    } else if (!grouped || static_groups) {
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t g = 0; g < ng; ++g) {
          const int64_t c0 = g * gs;
          quant::Params p = quant::choose_span(sc, w_in + r * cols + c0, std::min(gs, cols - c0));
          q.scales[r * ng + g] = p.scale;
          if (q.zero_points) q.zero_points[r * ng + g] = static_cast<int8_t>(p.zp);
        }
    }
    // The working W: permuted columns, dead ones zeroed.
    std::vector<float> W(static_cast<size_t>(rows * cols));
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t k = 0; k < cols; ++k) W[r * cols + k] = dead[perm[k]] ? 0.0f : w_in[r * cols + perm[k]];

    const bool write_gidx = grouped && o.act_order && !static_groups;
    if (write_gidx) {
      q.g_idx = host.alloc<int32_t>(static_cast<size_t>(cols));
      for (int64_t k = 0; k < cols; ++k) q.g_idx[perm[k]] = static_cast<int32_t>(k / gs);
    }

    const auto t_loop = Clock::now();
    const double loss = run_blocks(sc, o, rows, cols, gs, ng, grouped, static_groups, perm, U, W, q);
    const double loop_s = std::chrono::duration<double>(Clock::now() - t_loop).count();

    // rel_error against the caller's W, with W_hat un-permuted.
    double d2 = 0, r2 = 0;
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t k = 0; k < cols; ++k) {
        const double ref = w_in[r * cols + perm[k]];
        const double d = ref - W[r * cols + k];
        d2 += d * d;
        r2 += ref * ref;
      }
    out.quant = owner.release();
    out.rel_error = r2 > 0 ? std::sqrt(d2 / r2) : 0.0;
    const std::string factor_note =
        reused ? "factorisation shared with " + f.from : format("factorisation %.2f s", factor_s);
    host.info(format("%s: GPTQ objective %.6g, rel. weight error %.5f (damp %g%s%s, %lld dead columns; "
                     "%s, column loop %.2f s)",
                     in.name, loss, out.rel_error, damp, o.act_order ? ", act_order" : "",
                     static_groups ? ", static groups" : "", static_cast<long long>(n_dead), factor_note.c_str(),
                     loop_s));
  }

  // The lazy-batch loop. W (permuted) holds the dequantized result on return;
  // codes are written in original column order. Returns the GPTQ objective.
  double run_blocks(const quant::Scheme& sc, const Options& o, int64_t rows, int64_t cols, int64_t gs, int64_t ng,
                    bool grouped, bool static_groups, const std::vector<int64_t>& perm, const std::vector<float>& U,
                    std::vector<float>& W, xq_quant_tensor& q) {
    const xq_host_api* api = host.api();
    const int64_t B = std::min(o.block, cols);
    std::vector<float> W1T(static_cast<size_t>(B * rows)), ErrT(static_cast<size_t>(B * rows));
    // The current (scale, zp) of each row; with static groups the group of a
    // column depends on its original index, so they are reloaded per column.
    std::vector<float> cur_scale(static_cast<size_t>(rows)), cur_zp(static_cast<size_t>(rows), 0.0f);
    if (sc.strategy == XQ_STRATEGY_TENSOR || !grouped) {
      for (int64_t r = 0; r < rows; ++r) {
        const int64_t idx = sc.strategy == XQ_STRATEGY_TENSOR ? 0 : r * ng;
        cur_scale[r] = q.scales[idx];
        cur_zp[r] = q.zero_points ? q.zero_points[idx] : 0.0f;
      }
    }
    const float qmin = static_cast<float>(sc.qmin()), qmax = static_cast<float>(sc.qmax());
    double loss = 0;
    std::mutex loss_mutex;
    const uint64_t n_blocks = static_cast<uint64_t>((cols + B - 1) / B);
    for (int64_t i1 = 0; i1 < cols; i1 += B) {
      const int64_t i2 = std::min(i1 + B, cols), count = i2 - i1;
      host.parallel_for(static_cast<uint64_t>(rows), 64, [&](uint64_t rb, uint64_t re) {
        double part = 0;
        for (int64_t t0 = static_cast<int64_t>(rb); t0 < static_cast<int64_t>(re); t0 += kRowTile) {
          const int64_t t1 = std::min(t0 + kRowTile, static_cast<int64_t>(re));
          // W1 = W[t0:t1, i1:i2], transposed so each column is contiguous.
          for (int64_t r = t0; r < t1; ++r)
            for (int64_t i = 0; i < count; ++i) W1T[i * rows + r] = W[r * cols + i1 + i];
          int64_t loaded_group = -1;
          for (int64_t i = 0; i < count; ++i) {
            const int64_t k = i1 + i;
            if (grouped && !static_groups && k % gs == 0) {
              const int64_t g = k / gs, n = std::min(gs, cols - k);
              for (int64_t r = t0; r < t1; ++r) {
                quant::Params p = quant::choose_span(sc, W.data() + r * cols + k, n);  // block-start W
                q.scales[r * ng + g] = p.scale;
                if (q.zero_points) q.zero_points[r * ng + g] = static_cast<int8_t>(p.zp);
                cur_scale[r] = p.scale;
                cur_zp[r] = p.zp;
              }
            } else if (static_groups && perm[k] / gs != loaded_group) {
              loaded_group = perm[k] / gs;
              for (int64_t r = t0; r < t1; ++r) {
                cur_scale[r] = q.scales[r * ng + loaded_group];
                cur_zp[r] = q.zero_points ? q.zero_points[r * ng + loaded_group] : 0.0f;
              }
            }
            const float* urow = U.data() + k * cols;
            const float d = urow[k];
            float* w = W1T.data() + i * rows;
            float* err = ErrT.data() + i * rows;
            const int64_t orig = perm[k];
            for (int64_t r = t0; r < t1; ++r) {
              const float x = w[r];
              const float c = std::clamp(quant::round_even(x / cur_scale[r] + cur_zp[r]), qmin, qmax);
              const float deq = (c - cur_zp[r]) * cur_scale[r];
              q.codes[r * cols + orig] = static_cast<int8_t>(c);
              const float e = (x - deq) / d;
              err[r] = e;
              part += 0.5 * static_cast<double>(e) * e;
              w[r] = deq;
            }
            for (int64_t j = i + 1; j < count; ++j) {
              const float u = urow[i1 + j];
              float* wj = W1T.data() + j * rows;
              for (int64_t r = t0; r < t1; ++r) wj[r] -= err[r] * u;
            }
          }
          // Q back into W (these columns are final).
          for (int64_t r = t0; r < t1; ++r)
            for (int64_t i = 0; i < count; ++i) W[r * cols + i1 + i] = W1T[i * rows + r];
        }
        std::lock_guard<std::mutex> lock(loss_mutex);
        loss += part;
      });
      if (i2 < cols) {
        // W[:, i2:] -= Err[rows, count] * U[i1:i2, i2:]
        xq_status s = api->sgemm(api->ctx, 1, 0, rows, cols - i2, count, -1.0f, ErrT.data(), rows,
                                 U.data() + i1 * cols + i2, cols, 1.0f, W.data() + i2, cols);
        if (s != XQ_OK) fail(s, "gptq: the trailing block update (sgemm) failed");
      }
      host.progress("gptq", static_cast<uint64_t>(i1 / B + 1), n_blocks);
    }
    return loss;
  }
};

constexpr xq_param_spec kParams[] = {
    {"damp", XQ_VALUE_FLOAT, "0.01", "dampening: H += damp * mean(diag H) * I (percdamp)"},
    {"damp_limit", XQ_VALUE_FLOAT, "1.0",
     "when a Cholesky factorisation fails, damp is multiplied by 10 (with a warning) up to this value"},
    {"act_order", XQ_VALUE_BOOL, "false", "quantize columns in descending diag(H) order (desc_act)"},
    {"static_groups", XQ_VALUE_BOOL, "false",
     "compute every group's scale/zero up front on the original W (no g_idx with act_order)"},
    {"block_size", XQ_VALUE_INT, "128", "columns per lazy-batch block"},
    {nullptr, XQ_VALUE_NONE, nullptr, nullptr}};

constexpr const char* kCapabilities[] = {"bits:2-8",          "symmetric",        "asymmetric",
                                         "strategy:tensor", "strategy:channel", "strategy:group",
                                         "act-order",         "needs:hessian",    "scheme-default:group_size=128",
                                         nullptr};

constexpr xq_plugin_descriptor kDescriptor = describe<GptqAlgorithm>(
    XQ_PLUGIN_ALGORITHM, "gptq", "1.0.0",
    "GPTQ: Hessian-aware column-by-column quantization with error propagation (act-order, static groups, "
    "compressed-tensors arithmetic)",
    kCapabilities, kParams, &AlgorithmAdapter<GptqAlgorithm>::vtable);

}  // namespace

XQ_SDK_ENTRY(kDescriptor)
