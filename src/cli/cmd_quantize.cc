// qoq quantize MODEL -o OUT [options]: the QoQ quantizer (DESIGN §4) writing a checkpoint directory (DESIGN §5).
// Every pass has a --no-* switch; --rtn turns them all off (round-to-nearest baseline).
#include <cstdio>
#include <memory>

#include "cli/command.h"
#include "io/qoq_checkpoint.h"
#include "qoq/model_weights.h"
#include "qoq/tokenizer.h"
#include "quant/quantizer.h"

namespace qoq::cli {
namespace {

struct QuantizeArgs {
  std::string model, out, calib_dir = "../shared/data/calibration";
  std::vector<std::string> calib_files;
  bool rtn = false, overwrite = false, quiet = false;
  bool no_fuse = false, no_rotate = false, no_reorder = false, no_sa = false, no_smooth = false,
       no_alpha_search = false, no_clip = false, no_gptq = false;
  quant::QuantizeOptions o;
};

int run_quantize(QuantizeArgs& a) {
  quant::QuantizeOptions& o = a.o;
  if (a.rtn) a.no_fuse = a.no_rotate = a.no_reorder = a.no_sa = a.no_smooth = a.no_clip = a.no_gptq = true;
  o.fuse_norms = !a.no_fuse;
  o.rotate = !a.no_rotate;
  o.reorder = !a.no_reorder;
  o.smooth_attention = !a.no_sa;
  o.smooth_linear = !a.no_smooth;
  o.alpha_search = !a.no_alpha_search;
  o.clip_search = !a.no_clip;
  o.gptq = !a.no_gptq;
  o.progress = !a.quiet;
  quant::validate(o);  // before the slow load
  o.calibration.files = a.calib_files.empty() ? quant::text_files_in(a.calib_dir) : a.calib_files;

  LoadOptions lo;
  lo.progress = !a.quiet;
  const ModelWeights w = load_model(a.model, lo);
  const auto tok = load_tokenizer(w.tokenizer);
  quant::QuantizeReport rep;
  const io::QoqCheckpoint ck = quant::quantize_model(w, *tok, o, a.model, &rep);
  io::write_qoq_checkpoint(a.out, ck, a.overwrite);

  std::fprintf(stderr, "wrote %s: W%dA8KV%d %s, %zu linears, calibration %lld tokens\n", a.out.c_str(), o.weight_bits,
               o.kv_bits,
               o.weight_bits == 8 ? "per-channel"
                                  : (o.group_size > 0 ? ("g" + std::to_string(o.group_size)).c_str() : "per-channel"),
               ck.linears.size(), (long long)rep.calibration_tokens);
  std::fprintf(stderr, "time per pass:\n");
  for (const auto& [name, s] : rep.seconds) std::fprintf(stderr, "  %-22s %8.2f s\n", name.c_str(), s);
  std::fprintf(stderr, "  %-22s %8.2f s\n  peak memory            %8.1f MB\n", "total", rep.total_seconds,
               double(rep.peak_rss_bytes) / 1e6);
  return 0;
}

Register reg{
    {"quantize", "QoQ-quantize a model (W4A8KV4 by default) into a checkpoint directory",
     [](CLI::App& sub) -> std::function<int()> {
       auto a = std::make_shared<QuantizeArgs>();
       auto& o = a->o;
       sub.add_option("model", a->model, "Model: GGUF file, HF safetensors directory or llama2.c .bin")->required();
       sub.add_option("-o,--output", a->out, "Checkpoint directory to write")->required();
       sub.add_flag("--overwrite", a->overwrite, "Replace an existing non-empty output directory");
       sub.add_option("--weights", o.weight_bits, "Weight bits: 4 (W4A8) or 8 (W8A8)")->capture_default_str();
       sub.add_option("--group-size", o.group_size, "W4 group size: 128, 64, 32 or -1 (per-channel)")
           ->capture_default_str();
       sub.add_option("--kv-bits", o.kv_bits, "KV cache bits: 4, 8 or 16")->capture_default_str();
       sub.add_flag("--rtn", a->rtn, "Round-to-nearest baseline: every pass below off");
       sub.add_flag("--no-fuse-norms", a->no_fuse, "Keep RMSNorm weights (needs --no-rotate)");
       sub.add_flag("--no-rotate", a->no_rotate, "No Hadamard rotation of the residual stream");
       sub.add_flag("--no-reorder", a->no_reorder, "No channel reordering (groups only)");
       sub.add_flag("--no-smooth-attention", a->no_sa, "No SmoothAttention of the keys");
       sub.add_option("--smooth-attention-alpha", o.smooth_attention_alpha, "SmoothAttention exponent")
           ->capture_default_str();
       sub.add_flag("--no-smooth", a->no_smooth, "No o_proj/down_proj input smoothing");
       sub.add_flag("--no-alpha-search", a->no_alpha_search, "Fixed smoothing alpha instead of the grid search");
       sub.add_option("--smooth-alpha", o.smooth_alpha,
                      "Smoothing alpha (beta = 1 - alpha); default 0.05 per-channel, 0.3 groups");
       sub.add_option("--search-tokens", o.search_tokens, "Calibration tokens scored by the alpha search")
           ->capture_default_str();
       sub.add_flag("--no-clip", a->no_clip, "No clipping search (per-channel W4)");
       sub.add_option("--clip-ratios", o.clip_ratios, "Clipping ratios tried, spread over 1.00..0.20 (max 81)")
           ->capture_default_str();
       sub.add_flag("--no-gptq", a->no_gptq, "Round to nearest on the chosen grid instead of GPTQ");
       sub.add_option("--gptq-damp", o.gptq_damp, "GPTQ relative damping")->capture_default_str();
       sub.add_option("--calib-dir", a->calib_dir, "Calibration text directory (*.txt)")->capture_default_str();
       sub.add_option("--calib", a->calib_files, "Calibration text files (instead of --calib-dir)");
       sub.add_option("--calib-windows", o.calibration.windows, "Calibration windows")->capture_default_str();
       sub.add_option("--calib-len", o.calibration.window_len, "Tokens per calibration window")->capture_default_str();
       sub.add_option("--seed", o.calibration.seed, "Seed of the calibration draw")->capture_default_str();
       sub.add_flag("-q,--quiet", a->quiet, "No progress bars");
       return [a] { return run_quantize(*a); };
     }}};

}  // namespace
}  // namespace qoq::cli
