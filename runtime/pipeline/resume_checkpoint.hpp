// resume_checkpoint.hpp: what lets `--resume` continue a killed calibrated
// run from its last finished decoder layer instead of layer 0.
//
// After each layer the runner commits, into `<output>.resume/`:
//   layer-NNNNN.bin  every tensor the layer wrote (quantized and dense, in
//                    write order) and its report lines (MoE: its experts'
//                    calibration lines too);
//   hidden.bin       the propagated hidden states after that layer: the next
//                    layer's input for every calibration sample, the only
//                    state a later layer depends on (the engine never re-runs
//                    a finished layer; the calibrator's per-layer RNG seeds
//                    depend on the layer index only).
// Each file is written to a temporary name, fsync'ed and renamed, and ends
// with a checksum, so a kill at any point (SIGKILL included) leaves either
// the whole file or one that is ignored. Every file carries the run's
// fingerprint (pipeline, model files, calibration tokens, xquant version):
// a checkpoint of another run is refused, never mixed in. Resuming replays
// the finished layers' tensors into the writer in their original order, so
// the output is byte-identical to an uninterrupted run. The folder is
// removed when the run succeeds.
#pragma once

#include "checkpoint/checkpoint.hpp"
#include "pipeline/output_writer.hpp"
#include "pipeline/pipeline.hpp"
#include "pipeline/quantize_runner.hpp"

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace xquant {

// `<output path>.resume`, beside the output folder.
std::filesystem::path resume_dir(const Pipeline& pipeline);
void remove_resume_checkpoint(const Pipeline& pipeline);

// What identifies a run: a checkpoint resumes only a run with the same one.
uint64_t run_fingerprint(const Pipeline& pipeline, const Checkpoint& source,
                         const std::vector<std::vector<int32_t>>& samples);

class ResumeCheckpoint {
 public:
  // With `resume`, loads the checkpoint in `dir` (fails when it belongs to
  // another run; none there: starts from layer 0). Without, discards any
  // checkpoint there and starts a new one.
  ResumeCheckpoint(std::filesystem::path dir, uint64_t fingerprint, bool resume);

  // The first layer still to run (0: nothing to resume) and its input
  // hidden states (all samples; empty when next_layer() is 0).
  int next_layer() const { return next_layer_; }
  std::vector<float> take_hidden() { return std::move(hidden_); }

  // Re-adds finished layer `layer`'s tensors to `writer` and its lines to `report`.
  void replay(int layer, OutputWriter& writer, RunReport& report) const;

  // Records what `writer` writes from now on as part of the running layer,
  // and what `report` gains from now on as the running layer's lines.
  void record(OutputWriter& writer, const RunReport& report);
  // Layer `layer` is finished: commits its tensors, the report lines added
  // since the previous commit, and `next_input`, atomically.
  void commit_layer(int layer, const std::vector<float>& next_input, const RunReport& report);

 private:
  std::filesystem::path layer_file(int layer) const;
  void start_fresh();
  void load();
  void require_same_run() const;
  int read_hidden_file();  // the layer hidden.bin follows, -1 when none is whole
  void write_layer_file(int layer, const RunReport& report) const;
  void write_hidden_file(int layer, const std::vector<float>& next_input) const;

  std::filesystem::path dir_;
  uint64_t fingerprint_ = 0;
  int next_layer_ = 0;
  std::vector<float> hidden_;
  std::string recorded_;           // the running layer's tensors, serialized
  uint64_t recorded_count_ = 0;
  size_t report_mark_ = 0;         // report.layers.size() when the layer started
  size_t experts_mark_ = 0;        // report.experts.size() then
  uint64_t bytes_mark_ = 0;        // report.quantized_input_bytes then
};

}  // namespace xquant
