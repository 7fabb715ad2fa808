// Token sampling on the GPU, one CTA per row of fp32 logits: penalties, temperature, greedy,
// top-k, top-p, min-p, a draw with a host-provided uniform, the sampled token's logprob and the
// top-N logprobs. The semantics are csrc/sampling/sampler.cpp's, step for step:
//   - penalties: repetition over every token of the row's history (prompt + generated), a positive
//     logit divided, a negative one multiplied; then presence + frequency * count subtracted for
//     generated tokens. The history comes as a compact per-row list (one entry per distinct
//     token), so the device needs nothing vocabulary-sized. Applied IN PLACE to `logits`.
//   - temperature 0: greedy, the first maximum (ties to the lowest id).
//   - no truncation (top_k off or >= vocab, top_p = 1, min_p = 0): the first id, in id order,
//     whose running sum of exp((l - max) / T) exceeds u * sum (zero weights skipped).
//   - truncation: candidates sorted by logit descending, ties to the lowest id; top-k, then
//     min-p (w >= min_p, w = exp((l - max) / T)), then top-p (the shortest prefix whose running
//     sum reaches top_p * mass * (1 - 1e-6), mass = the top-k set's sum), at least one kept;
//     renormalised and drawn with u by a running sum in that order.
//   - logprob = (l - max) / T - log(sum), T = 1 when greedy: after penalties and temperature,
//     before truncation. Top-N (N <= 20) by the same order as the candidates.
//   - every float/double operation as sampler.cpp writes it, fused where it uses std::fma (the
//     additive penalty, the logprob) and unfused elsewhere (explicit __*_rn intrinsics).
// Logits are fp32 only (the head GEMM writes fp32); no other dtype is instantiated.
//
// Algorithm: weights and sums in double, as on the CPU. Candidates are the exact top-M keys
// (key = order-preserving logit bits, then inverted id: unique, so ties are decided as on the
// CPU), found by a radix select (8-bit digits, 256-bin shared histogram), compacted into shared
// memory and bitonic-sorted; one thread then runs the CPU's sequential loops over them, so every
// cumulative sum is added in the CPU's order. M = min(top-k set, kSampleMaxCandidates). When the
// cut (min-p or top-p) is not reached within those M, the row's status is kSampleNeedsHost and
// the caller samples that row on the host from the penalised logits (the kernel has written them).
//
// Where results can differ from the CPU (all at the level of one double rounding, so a token
// differs only when u falls within ~1e-15 relative of a boundary): device exp() is within 1 ulp
// of glibc's; the untruncated draw and log-normaliser sum per-thread runs of contiguous ids and
// then the runs in order, the CPU one sequential sum; the top-k mass for top-p is summed in
// sorted order (the CPU's order is whatever nth_element left).
#pragma once

#include <cstdint>

#include "kernels/cuda/cuda_check.h"

namespace jarvis::cuda {

constexpr int kSampleMaxLogprobs = 20;       // OpenAI's top_logprobs limit
constexpr int kSampleMaxCandidates = 4096;   // sorted in shared memory per row

// One distinct token of a row's history.
struct SamplePenaltyToken {
  int32_t token;            // [0, vocab)
  int32_t generated_count;  // occurrences in the generated text
  int32_t in_prompt;        // 1 when it occurs in the prompt
};

struct SampleRowParams {
  float temperature;         // >= 0; 0 = greedy
  int32_t top_k;             // <= 0 or >= vocab: off
  float top_p;               // (0, 1]
  float min_p;               // [0, 1]
  float repetition_penalty;  // > 0; 1 = off
  float presence_penalty;
  float frequency_penalty;
  int32_t n_logprobs;        // [0, kSampleMaxLogprobs]
  int32_t history_offset;    // this row's entries in the history array
  int32_t history_count;
  double u;                  // [0, 1): the row's uniform draw (unused when greedy)
};

enum SampleStatus : int32_t {
  kSampleOk = 0,
  kSampleNeedsHost = 1,  // more than kSampleMaxCandidates candidates: sample on the host
  kSampleNaN = 2,        // a logit is NaN
  kSampleAllNegInf = 3,  // every logit is -inf
  kSampleBadInput = 4,   // a parameter out of range or a history token outside the vocabulary
};

struct SampleRowResult {
  int32_t status;  // SampleStatus
  int32_t token;
  float logprob;
  int32_t n_top;   // = min(n_logprobs, vocab)
  int32_t top_tokens[kSampleMaxLogprobs];
  float top_logprobs[kSampleMaxLogprobs];
};

// logits:  [rows, vocab] float, device; penalties are applied in place.
// params:  [rows] device.
// history: [sum of history_count] device (may be null when every history_count is 0).
// out:     [rows] device.
// cudaErrorInvalidValue for rows < 0, vocab <= 0, vocab >= 2^31 - 1 or a null pointer that is needed.
cudaError_t sample_rows(float* logits, int rows, int vocab, const SampleRowParams* params,
                        const SamplePenaltyToken* history, SampleRowResult* out, cudaStream_t stream);

}  // namespace jarvis::cuda
