// The anti-collapse mechanisms beyond the seed, on crafted inputs: factorised low-dimensional
// codes, l2-normalised lookup, per-step restarts with noise, the rotation trick, SimVQ, CVQ
// re-seeding, the LFQ-form entropy loss, and finite scalar quantization.
#include <cmath>
#include <set>

#include "models/fsq.h"
#include "models/vector_quantizer.h"
#include "test_util.h"

namespace vq::models {
namespace {

using test::allclose;

QuantizerConfig plain(int64_t K) {
  QuantizerConfig c;
  c.n_embed = K;
  c.temperature = 0.0;
  c.entropy_weight = 0.0;
  c.dead_code_reset = "off";
  c.low_usage_reset_interval = 0;
  return c;
}

TEST(ModernVQ, FactorisedCodesLiveInTheLowDimensionalSpace) {
  QuantizerConfig c = plain(16);
  c.codebook = "learned";
  c.codebook_dim = 4;
  Generator init(1);
  VectorQuantizer vq(c, 32, 1, init);
  EXPECT_EQ(vq.table().weight.shape(), (Shape{16, 4}));
  const auto names = vq.named_parameters();
  EXPECT_EQ(names[0].first, "in_proj.weight");
  EXPECT_EQ(names[0].second.shape(), (Shape{4, 32}));
  const Tensor z = test::randn32({2, 32, 3, 3});
  EXPECT_EQ(vq.to_lookup_space(z.permute({0, 2, 3, 1}).reshape({18, 32})).shape(), (Shape{18, 4}));
  const auto out = vq.forward(z);
  EXPECT_EQ(out.z_q.shape(), (Shape{2, 32, 3, 3}));  // back up through out_proj
  add(sum(out.z_q), out.loss).backward();
  for (const auto& [name, p] : vq.named_parameters()) EXPECT_TRUE(p.grad().defined()) << name;
  // Decoding tokens goes through the same projection.
  vq.eval();
  EXPECT_TRUE(allclose(vq.codes_for(out.indices), vq.forward(z).z_q, 1e-5));
}

TEST(ModernVQ, L2NormalisedLookupUsesUnitVectors) {
  QuantizerConfig c = plain(8);
  c.l2_normalize = true;
  Generator init(2);
  VectorQuantizer vq(c, 6, 2, init);
  const Tensor h = vq.to_lookup_space(mul(test::randn32({5, 6}), 7.0));
  EXPECT_TRUE(allclose(sum(mul(h, h), {1}), ones({5}), 1e-5));
  const Tensor e = vq.codebook();
  EXPECT_TRUE(allclose(sum(mul(e, e), {1}), ones({8}), 1e-5));
  // ||a - b||^2 = 2 - 2 cos(a, b) for unit vectors
  EXPECT_TRUE(allclose(vq.distances(h), rsub(2.0, mul(matmul(h, e.t()), 2.0)), 1e-5));
}

// With l2-normalised codes k-means is spherical: centres are unit vectors (the normalised mean of
// their cluster), so assignment by distance is assignment by cosine.
TEST(ModernVQ, KmeansOfUnitVectorsKeepsUnitCentres) {
  QuantizerConfig c = plain(2);
  c.l2_normalize = true;
  c.init = "kmeans";
  Generator init(5);
  VectorQuantizer vq(c, 2, 5, init);
  // Two fans of unit vectors, spread +-0.6 rad around 0 and around pi/2: each fan's plain mean
  // has length ~0.8.
  std::vector<float> v;
  for (int i = 0; i < 40; ++i) {
    const double angle = (i < 20 ? 0.0 : M_PI / 2) + 0.6 * ((i % 20) / 19.0 * 2 - 1);
    v.insert(v.end(), {static_cast<float>(std::cos(angle)), static_cast<float>(std::sin(angle))});
  }
  vq.kmeans_init(from_vector(v, {40, 2}));
  const auto w = vq.table().weight.to_vector<float>();
  for (int k = 0; k < 2; ++k) {
    EXPECT_NEAR(std::hypot(w[2 * k], w[2 * k + 1]), 1.0, 1e-5) << "centre " << k;
    // The fans are symmetric, so their normalised means point at 0 and at pi/2.
    const double angle = std::atan2(w[2 * k + 1], w[2 * k]);
    EXPECT_NEAR(std::min(std::abs(angle), std::abs(angle - M_PI / 2)), 0.0, 1e-4) << "centre " << k;
  }
  auto counts = vq.ema_counts();
  EXPECT_EQ(counts, (std::vector<double>{20, 20}));
}

// Training draws (the Gumbel noise of sampling) depend on the seed and the step only, not on what
// ran before: a resumed run, or one rank of a data-parallel run, draws what a fresh run would.
TEST(ModernVQ, SamplingDependsOnTheSeedAndStepOnly) {
  QuantizerConfig c = plain(16);
  c.codebook = "learned";  // the table does not move without an optimizer
  c.temperature = 5.0;
  const Tensor z = test::randn32({2, 8, 4, 4});
  auto sample_at = [&](std::vector<int64_t> steps, uint64_t seed) {
    Generator init(seed);
    VectorQuantizer vq(c, 8, seed, init);
    Tensor indices;
    for (int64_t s : steps) {
      vq.set_step(s);
      indices = vq.forward(z).indices;
    }
    return indices.to_vector<int64_t>();
  };
  EXPECT_EQ(sample_at({3}, 1), sample_at({0, 1, 2, 3}, 1));
  EXPECT_NE(sample_at({3}, 1), sample_at({4}, 1));
  EXPECT_NE(sample_at({3}, 1), sample_at({3}, 2));
}

TEST(RandomStreams, PurposesAndSeedsGetDistinctKeys) {
  std::set<uint64_t> keys;
  for (uint64_t seed : {0, 1, 2, 42}) {
    for (auto p :
         {RandomStream::ModelInit, RandomStream::DiscriminatorInit, RandomStream::CodebookInit,
          RandomStream::CodeSampling, RandomStream::StepRestarts, RandomStream::EpochMaintenance,
          RandomStream::KmeansInit, RandomStream::DataOrder, RandomStream::DataFlips}) {
      keys.insert(stream_key(seed, p));
      EXPECT_NE(stream_key(seed, p), seed);  // never the raw seed a plain Generator(seed) uses
    }
  }
  EXPECT_EQ(keys.size(), 36u);
  EXPECT_EQ(stream_generator(7, RandomStream::CodeSampling, 3).offset(), uint64_t{3} << 40);
}

TEST(ModernVQ, PerStepRestartsAddNoiseAndKeepStatisticsConsistent) {
  QuantizerConfig c = plain(8);
  c.dead_code_reset = "step";
  c.dead_code_threshold = 0.5;
  c.restart_noise = 0.01;
  c.ema_decay = 0.99;  // one batch lifts no count above 0.01 * 16 < 0.5
  Generator init(3);
  VectorQuantizer vq(c, 2, 3, init);
  const Tensor z = test::randn32({1, 2, 4, 4}, 5);
  vq.forward(z);  // so every code is dead after the update and is restarted this very step
  const auto counts = vq.ema_counts();
  for (double n : counts) EXPECT_GE(n, 0.5);
  // S_k = e_k N_k for every restarted code (all of them here)
  EXPECT_TRUE(allclose(vq.table().embed_avg,
                       mul(vq.table().weight, vq.table().cluster_size.unsqueeze(1)), 1e-5));
  // Each restarted code sits near some batch vector, but not exactly on one (noise).
  const Tensor d = vq.distances(z.permute({0, 2, 3, 1}).reshape({16, 2}));
  const double nearest = max(min(d, 0).values).item();
  EXPECT_GT(nearest, 0.0);
  EXPECT_LT(nearest, 0.01);
}

// Restarts write the table in place after the forward; backward must still see the codes the
// forward used, also when the lookup codes are derived from the table (l2-normalised, learned).
// The statistics are taken before the restarts, so the revived codes still count as dead.
TEST(ModernVQ, StepRestartsOfALearnedNormalisedCodebookKeepBackwardValid) {
  QuantizerConfig c = plain(8);
  c.codebook = "learned";
  c.l2_normalize = true;
  c.dead_code_reset = "step";
  c.dead_code_threshold = 0.5;
  c.ema_decay = 0.99;
  Generator init(3);
  VectorQuantizer vq(c, 2, 3, init);
  const Tensor z = test::randn32({1, 2, 4, 4}, 5).requires_grad_(true);
  const auto out = vq.forward(z);
  EXPECT_EQ(out.stats().dead_codes, 8);
  EXPECT_NO_THROW(add(out.loss, sum(out.z_q)).backward());
  EXPECT_TRUE(z.grad().defined());
  EXPECT_TRUE(vq.table().weight.grad().defined());
  for (double n : vq.ema_counts()) EXPECT_GE(n, 0.5);
}

TEST(ModernVQ, RotationTrickKeepsTheValueAndRotatesTheGradient) {
  QuantizerConfig c = plain(3);
  c.rotation_trick = true;
  Generator init(4);
  VectorQuantizer vq(c, 3, 4, init);
  vq.to(DType::Float64);
  Tensor h = from_vector<double>({0.5, -1.0, 2.0, 1.5, 0.2, -0.3}, {2, 3}).requires_grad_();
  const Tensor e = from_vector<double>({1.0, 0.5, 0.0, -0.2, 0.9, 1.1}, {2, 3});
  const Tensor hq = vq.quantized_with_gradient(h, e);
  EXPECT_TRUE(allclose(hq, e, 1e-12));
  const Tensor g = from_vector<double>({0.3, -0.7, 0.1, 1.0, 0.4, -0.2}, {2, 3});
  hq.backward(g);
  // Expected gradient per row: l R^T g with R = I - 2 r r^T + 2 q u^T built as explicit matrices.
  const auto hv = h.detach().to_vector<double>(), ev = e.to_vector<double>(),
             gv = g.to_vector<double>();
  std::vector<double> expected;
  for (int row = 0; row < 2; ++row) {
    double u[3], q[3], r[3], hn = 0, en = 0, rn = 0;
    for (int i = 0; i < 3; ++i) {
      hn += hv[row * 3 + i] * hv[row * 3 + i];
      en += ev[row * 3 + i] * ev[row * 3 + i];
    }
    hn = std::sqrt(hn);
    en = std::sqrt(en);
    for (int i = 0; i < 3; ++i) {
      u[i] = hv[row * 3 + i] / hn;
      q[i] = ev[row * 3 + i] / en;
      r[i] = u[i] + q[i];
      rn += r[i] * r[i];
    }
    for (double& v : r) v /= std::sqrt(rn);
    for (int j = 0; j < 3; ++j) {
      double acc = 0;
      for (int i = 0; i < 3; ++i) {
        const double R_ij = (i == j) - 2 * r[i] * r[j] + 2 * q[i] * u[j];  // R[i][j]
        acc += R_ij * gv[row * 3 + i];                                     // (R^T g)_j
      }
      expected.push_back(en / hn * acc);
    }
  }
  EXPECT_TRUE(allclose(h.grad(), from_vector<double>(expected, {2, 3}), 1e-10));
}

TEST(ModernVQ, SimVQLearnsOneMapOverAFrozenBasis) {
  QuantizerConfig c = plain(8);
  c.codebook = "simvq";
  Generator init(6);
  VectorQuantizer vq(c, 4, 6, init);
  const auto names = vq.named_parameters();
  ASSERT_EQ(names.size(), 1u);
  EXPECT_EQ(names[0].first, "embedding_proj.weight");
  // codes = C W^T
  EXPECT_TRUE(allclose(vq.codebook(), matmul(vq.table().weight, names[0].second.t()), 1e-6));
  const auto out = vq.forward(test::randn32({2, 4, 2, 2}));
  out.loss.backward();
  EXPECT_TRUE(names[0].second.grad().defined());
  c.dead_code_reset = "step";
  EXPECT_VQ_ERROR(c.validate(), "a simvq codebook");
}

TEST(ModernVQ, CvqMovesRareCodesToTheirNearestVector) {
  QuantizerConfig c = plain(2);
  c.cvq_rate = 1.0;
  c.ema_decay = 0.0;  // N = this batch's counts
  Generator init(7);
  VectorQuantizer vq(c, 2, 7, init);
  {
    NoGradGuard no_grad;
    vq.table().weight.copy_(from_vector<float>({0, 0, 10, 10}, {2, 2}));
    vq.table().embed_avg.copy_(vq.table().weight);
  }
  // Three vectors near code 0, none near code 1: code 1 (usage 0) jumps onto the batch vector
  // nearest to it; code 0 (usage 1) moves by exp(-2) toward its nearest vector.
  const Tensor z =
      from_vector<float>({0.1f, 0, 0, 0.1f, 0.3f, 0.4f}, {3, 2}).t().reshape({1, 2, 1, 3});
  vq.forward(z);
  const auto w = vq.table().weight.to_vector<float>();
  EXPECT_NEAR(w[2], 0.3f, 1e-5);
  EXPECT_NEAR(w[3], 0.4f, 1e-5);
  const double mean_x = (0.1 + 0 + 0.3) / 3, a = std::exp(-2.0);  // EMA mean of code 0, then CVQ
  EXPECT_NEAR(w[0], (1 - a) * mean_x + a * 0.1, 1e-4);
}

TEST(ModernVQ, LfqEntropyIsPerVectorMinusCodebookEntropy) {
  QuantizerConfig c = plain(3);
  c.entropy_weight = 1.0;
  c.entropy_loss = "lfq";
  c.lfq_gamma = 0.5;
  c.entropy_temperature = 1.0;
  c.codebook = "learned";
  Generator init(8);
  VectorQuantizer vq(c, 2, 8, init);
  vq.to(DType::Float64);
  {
    NoGradGuard no_grad;
    vq.table().weight.copy_(from_vector<double>({0, 0, 1, 0, 0, 1}, {3, 2}));
  }
  const Tensor h = from_vector<double>({0.2, 0.1, 0.7, 0.4}, {2, 2});
  const Tensor p = softmax(neg(vq.distances(h)), 1);
  const auto pv = p.to_vector<double>();
  double per = 0, avg_h = 0;
  for (int i = 0; i < 2; ++i) {
    for (int k = 0; k < 3; ++k) per -= pv[i * 3 + k] * std::log(pv[i * 3 + k]) / 2;
  }
  for (int k = 0; k < 3; ++k) {
    const double m = (pv[k] + pv[3 + k]) / 2;
    avg_h -= m * std::log(m);
  }
  EXPECT_NEAR(vq.forward(h.t().reshape({1, 2, 1, 2})).entropy_loss.item(), per - 0.5 * avg_h,
              1e-10);
}

TEST(ModernVQ, BestSettingsWorkUpTo16384Codes) {
  // The best preset's quantizer with the largest codebook it is meant for, on a batch with fewer
  // vectors than codes (k-means then starts from repeated vectors, restarts fill the rest).
  QuantizerConfig c = plain(16384);
  c.codebook_dim = 8;
  c.l2_normalize = true;
  c.init = "kmeans";
  c.kmeans_iterations = 2;
  c.dead_code_reset = "step";
  c.ema_decay = 0.8;
  Generator init(9);
  VectorQuantizer vq(c, 16, 9, init);
  const auto out = vq.forward(test::randn32({4, 16, 8, 8}, 10));
  EXPECT_EQ(out.stats().num_codes, 16384);
  EXPECT_GT(out.stats().used_codes, 100);
  EXPECT_TRUE(std::isfinite(out.loss.item()));
  const auto idx = out.indices.to_vector<int64_t>();
  EXPECT_LT(*std::max_element(idx.begin(), idx.end()), 16384);
  // Every code was restarted on a batch vector, so all of them sit on the unit sphere's data.
  const auto counts = vq.ema_counts();
  EXPECT_GE(*std::min_element(counts.begin(), counts.end()), 1.0);
}

TEST(FSQ, GridRoundTripAndStraightThrough) {
  QuantizerConfig c;
  c.kind = "fsq";
  c.fsq_levels = {8, 5, 5, 5};
  Generator init(1);
  FiniteScalarQuantizer fsq(c, 16, 1, init);
  EXPECT_EQ(fsq.num_codes(), 1000);
  // Every index maps to a grid point and back to itself.
  const Tensor all = arange(0, 1000);
  const Tensor codes = fsq.indices_to_codes(all);
  EXPECT_EQ(codes.shape(), (Shape{1000, 4}));
  EXPECT_EQ(fsq.codes_to_indices(codes).to_vector<int64_t>(), all.to_vector<int64_t>());
  EXPECT_EQ(max(codes).item(), 1.0);
  EXPECT_EQ(min(codes).item(), -1.0);
  // Rounding lands on the grid, symmetric about 0: 8 levels -> odd multiples of 1/7 in [-1, 1];
  // 5 levels -> multiples of 1/2.
  Tensor h = mul(test::randn32({200, 4}), 3.0).requires_grad_();
  const Tensor q = fsq.quantize(h);
  const auto qv = q.to_vector<float>();
  for (size_t i = 0; i < qv.size(); ++i) {
    const float w = i % 4 == 0 ? 3.5f : 2.0f, o = i % 4 == 0 ? 0.5f : 0.0f;
    EXPECT_NEAR(qv[i] * w - o, std::round(qv[i] * w - o), 1e-5) << i;
    EXPECT_LE(std::abs(qv[i]), 1.0f + 1e-6f);
  }
  // The gradient passes the rounding unchanged: d q / d h = tanh'(h) * a / w.
  sum(q).backward();
  const auto hv = h.detach().to_vector<float>(), gv = h.grad().to_vector<float>();
  const double a8 = 3.5 * 0.999, t = std::tanh(hv[0]);
  EXPECT_NEAR(gv[0], (1 - t * t) * a8 / 3.5, 1e-5);
}

// L = 2 is a common FSQ level (binary codes, as in LFQ); it once made every output NaN.
TEST(FSQ, TwoLevelsGiveFiniteBinaryCodes) {
  QuantizerConfig c;
  c.kind = "fsq";
  c.fsq_levels = {2, 2, 2, 2, 2, 2};
  Generator init(3);
  FiniteScalarQuantizer fsq(c, 8, 3, init);
  EXPECT_EQ(fsq.num_codes(), 64);
  const Tensor all = arange(0, 64);
  EXPECT_EQ(fsq.codes_to_indices(fsq.indices_to_codes(all)).to_vector<int64_t>(),
            all.to_vector<int64_t>());
  const Tensor h = mul(test::randn32({500, 6}), 2.0).requires_grad_();
  const Tensor q = fsq.quantize(h);
  const auto hv = h.detach().to_vector<float>(), qv = q.to_vector<float>();
  for (size_t i = 0; i < qv.size(); ++i) {
    ASSERT_EQ(std::abs(qv[i]), 1.0f) << i;
    EXPECT_EQ(qv[i] > 0, hv[i] > 0) << i;  // the sign of h picks the level
  }
  sum(q).backward();
  for (float g : h.grad().to_vector<float>()) EXPECT_TRUE(std::isfinite(g) && g > 0);
  const auto out = fsq.forward(test::randn32({4, 8, 4, 4}));
  EXPECT_TRUE(std::isfinite(sum(out.z_q).item()));
  EXPECT_GT(out.stats().used_codes, 8);
}

TEST(FSQ, ForwardStatisticsAndErrors) {
  QuantizerConfig c;
  c.kind = "fsq";
  c.fsq_levels = {8, 8};
  Generator init(2);
  FiniteScalarQuantizer fsq(c, 8, 2, init);
  const auto out = fsq.forward(test::randn32({4, 8, 4, 4}));
  EXPECT_EQ(out.stats().num_codes, 64);
  EXPECT_EQ(out.stats().num_vectors, 64);
  EXPECT_GT(out.stats().used_codes, 1);
  EXPECT_EQ(out.indices.shape(), (Shape{4, 4, 4}));
  fsq.eval();
  EXPECT_TRUE(allclose(fsq.codes_for(out.indices), out.z_q, 1e-5));
  EXPECT_VQ_ERROR(fsq.lookup(zeros({1, 8, 2, 2}), 1.0),
                  "a sampling temperature (1) does not apply");
  c.fsq_levels = {8, 1};
  EXPECT_VQ_ERROR(c.validate(), "every FSQ level must be >= 2");
}

// The run header names the settings in effect: the grid for FSQ, the lookup options for VQ.
TEST(QuantizerConfig, DescribeNamesTheSettingsInEffect) {
  QuantizerConfig c;
  c.kind = "fsq";
  EXPECT_EQ(c.describe(256), "FSQ, levels [8, 5, 5, 5] = 1000 codes, D 256 projected to 4 dims");
  c = plain(1024);
  c.codebook_dim = 8;
  c.l2_normalize = true;
  c.entropy_loss = "lfq";
  c.entropy_weight = 0.1;
  EXPECT_EQ(c.describe(256),
            "K 1024 x D 256, ema, lookup in 8 dims, l2-normalised, decay 0.7, temperature 0, beta "
            "10 (warm-up 5 epochs), entropy 0.1 (lfq, gamma 1), init uniform, dead-code reset off "
            "(< 1), low-usage reset off, expansion off");
}

}  // namespace
}  // namespace vq::models
