// The vector quantizer, step by step on crafted inputs with known answers: distances, argmin and
// temperature sampling, the straight-through gradient, the EMA bookkeeping, restarts, k-means,
// expansion, the entropy and diversity terms, and the six codebook statistics.
#include <algorithm>
#include <cmath>
#include <numeric>

#include "autograd/autocast.h"
#include "models/codebook_stats.h"
#include "models/vector_quantizer.h"
#include "test_util.h"

namespace vq::models {
namespace {

using test::allclose;

// A quantizer with codes set by hand ([K, D] values) in EMA mode unless said otherwise.
std::unique_ptr<VectorQuantizer> make_vq(const std::vector<float>& codes, int64_t K, int64_t D,
                                         QuantizerConfig c = {}) {
  c.n_embed = K;
  Generator init(7);
  auto vq = std::make_unique<VectorQuantizer>(c, D, 7, init);
  NoGradGuard no_grad;
  vq->table().weight.copy_(from_vector(codes, {K, D}));
  if (vq->table().embed_avg.defined()) vq->table().embed_avg.copy_(from_vector(codes, {K, D}));
  return vq;
}

// z [1, D, 1, M] holding the given M vectors of size D.
Tensor vectors(const std::vector<float>& v, int64_t M, int64_t D) {
  return from_vector(v, {M, D}).t().reshape({1, D, 1, M});
}

TEST(Quantizer, DistancesAndArgmin) {
  auto vq = make_vq({0, 0, 1, 0, 0, 2}, 3, 2);
  const Tensor z = from_vector<float>({0.9f, 0.1f, 0.1f, 1.5f}, {2, 2});
  EXPECT_TRUE(allclose(vq->distances(z),
                       from_vector<float>({0.82f, 0.02f, 4.42f, 2.26f, 3.06f, 0.26f}, {2, 3}),
                       1e-6));
  Generator gen(1);
  EXPECT_EQ(VectorQuantizer::choose_codes(vq->distances(z), 0.0, gen).to_vector<int64_t>(),
            (std::vector<int64_t>{1, 2}));
  vq->eval();
  EXPECT_EQ(vq->lookup(vectors({0.9f, 0.1f, 0.1f, 1.5f}, 2, 2)).to_vector<int64_t>(),
            (std::vector<int64_t>{1, 2}));
}

TEST(Quantizer, TemperatureSamplesFromSoftmaxOfNegativeDistance) {
  auto vq = make_vq({0, 0, 0, 0, 0, 0}, 3, 2);
  const double T = 2.0;
  const std::vector<float> d = {1.0f, 2.0f, 4.0f};
  const int64_t M = 60000;
  std::vector<float> rows;
  for (int64_t i = 0; i < M; ++i) rows.insert(rows.end(), d.begin(), d.end());
  Generator gen(2);
  const auto picks =
      VectorQuantizer::choose_codes(from_vector(rows, {M, 3}), T, gen).to_vector<int64_t>();
  std::vector<double> freq(3, 0.0);
  for (int64_t k : picks) freq[k] += 1.0 / M;
  const double z = std::exp(-0.5) + std::exp(-1.0) + std::exp(-2.0);
  const std::vector<double> expected = {std::exp(-0.5) / z, std::exp(-1.0) / z, std::exp(-2.0) / z};
  for (int k = 0; k < 3; ++k) EXPECT_NEAR(freq[k], expected[k], 0.006) << "code " << k;  // ~4 sigma
}

TEST(Quantizer, StraightThroughGivesCodesForwardAndIdentityBackward) {
  QuantizerConfig c;
  c.temperature = 0.0;
  c.entropy_weight = 0.0;
  auto vq = make_vq({0, 0, 1, 1}, 2, 2, c);
  Tensor z = vectors({0.2f, 0.1f, 0.8f, 0.9f, 0.6f, 0.7f}, 3, 2).detach().requires_grad_();
  const auto out = vq->forward(z);
  EXPECT_TRUE(allclose(out.z_q, vectors({0, 0, 1, 1, 1, 1}, 3, 2), 1e-6));
  EXPECT_EQ(out.indices.to_vector<int64_t>(), (std::vector<int64_t>{0, 1, 1}));
  const Tensor g = test::randn32(z.shape(), 3);
  sum(mul(out.z_q, g)).backward();
  EXPECT_TRUE(allclose(z.grad(), g));
}

TEST(Quantizer, CommitmentLossIsBetaTimesMeanSquaredDistance) {
  QuantizerConfig c;
  c.temperature = 0.0;
  c.entropy_weight = 0.0;
  c.beta = 10.0;
  auto vq = make_vq({0, 0, 1, 1}, 2, 2, c);
  vq->set_commitment_scale(0.5);
  const auto out = vq->forward(vectors({0.2f, 0.1f, 0.8f, 0.9f}, 2, 2));
  const double mse = (0.04 + 0.01 + 0.04 + 0.01) / 4;
  EXPECT_NEAR(out.commit_loss.item(), mse, 1e-7);
  EXPECT_NEAR(out.loss.item(), 0.5 * 10.0 * mse, 1e-6);
}

TEST(Quantizer, EmaBookkeepingIsExact) {
  QuantizerConfig c;
  c.ema_decay = 0.5;
  c.ema_epsilon = 1e-5;
  auto vq = make_vq({0, 0, 10, 10, 20, 20}, 3, 2, c);
  // Two vectors go to code 0, one to code 1, none to code 2.
  const Tensor z = from_vector<float>({1, 1, 3, 1, 11, 9}, {3, 2});
  vq->ema_update(z, from_vector<int64_t>({0, 0, 1}, {3}), ones({}, DType::UInt8));
  // N = 0.5 * 0 + 0.5 * [2, 1, 0];  S = 0.5 * codes + 0.5 * sums
  EXPECT_TRUE(allclose(vq->table().cluster_size, from_vector<float>({1, 0.5f, 0}, {3})));
  EXPECT_TRUE(
      allclose(vq->table().embed_avg, from_vector<float>({2, 1, 10.5f, 9.5f, 10, 10}, {3, 2})));
  // e_k = S_k / N~_k with N~ = (N + eps) / (n + K eps) * n, n = 1.5
  const double eps = 1e-5, n = 1.5;
  const double s0 = (1 + eps) / (n + 3 * eps) * n, s1 = (0.5 + eps) / (n + 3 * eps) * n,
               s2 = eps / (n + 3 * eps) * n;
  EXPECT_TRUE(allclose(vq->table().weight,
                       from_vector<float>({float(2 / s0), float(1 / s0), float(10.5 / s1),
                                           float(9.5 / s1), float(10 / s2), float(10 / s2)},
                                          {3, 2}),
                       0, 1e-5));
}

// A batch with a NaN (a diverging step that the trainer will skip) changes nothing in the
// codebook: the EMA update and the kept maintenance batch are gated on the device (no host read).
TEST(Quantizer, NonFiniteBatchLeavesTheCodebookAlone) {
  QuantizerConfig c;
  c.temperature = 0.0;
  c.cvq_rate = 0.5;  // gated the same way
  auto vq = make_vq({0, 0, 10, 10, 20, 20}, 3, 2, c);
  vq->forward(vectors({1, 1, 11, 9}, 2, 2));  // a finite batch first
  const CodebookTable& t = vq->table();
  const Tensor weight = t.weight.clone(), counts = t.cluster_size.clone(),
               sums = t.embed_avg.clone(), inputs = vq->maintenance_inputs().clone();
  const QuantizerOutput out = vq->forward(vectors({NAN, 1, 11, 9}, 2, 2));
  EXPECT_TRUE(allclose(t.weight, weight, 0, 0));
  EXPECT_TRUE(allclose(t.cluster_size, counts, 0, 0));
  EXPECT_TRUE(allclose(t.embed_avg, sums, 0, 0));
  EXPECT_TRUE(allclose(vq->maintenance_inputs(), inputs, 0, 0));
  EXPECT_TRUE(std::isnan(out.commit_loss.item()));
  // The next finite batch updates again.
  vq->forward(vectors({1, 1, 11, 9}, 2, 2));
  EXPECT_FALSE(allclose(t.cluster_size, counts, 0, 0));
}

TEST(Quantizer, StatisticsTellRealUsageFromEmaCounts) {
  // The seed's collapse: each batch uses 2 of 64 codes while every EMA count is above threshold.
  std::vector<int64_t> batch(64, 0);
  batch[3] = 100;
  batch[17] = 28;
  const std::vector<double> ema(64, 5.0);
  const CodebookStats s = codebook_stats(batch, ema, 1.0, 1.0);
  EXPECT_EQ(s.used_codes, 2);
  EXPECT_NEAR(s.batch_utilization, 2.0 / 64, 1e-12);  // 3.1%
  EXPECT_EQ(s.active_codes_ema, 64);                  // while the EMA claims 100%
  EXPECT_EQ(s.dead_codes, 0);
  const double p = 100.0 / 128, q = 28.0 / 128;
  const double h = -(p * std::log(p) + q * std::log(q));
  EXPECT_NEAR(s.batch_entropy, h, 1e-12);
  EXPECT_NEAR(s.batch_norm_entropy, h / std::log(64.0), 1e-12);
  EXPECT_NEAR(s.perplexity, std::exp(h), 1e-12);
  EXPECT_NEAR(s.ema_entropy, std::log(64.0), 1e-12);
  EXPECT_NEAR(s.ema_norm_entropy, 1.0, 1e-12);
  EXPECT_EQ(s.num_vectors, 128);
  // Uniform use of all codes, and dead codes by EMA count.
  const CodebookStats u =
      codebook_stats(std::vector<int64_t>(8, 3), {0.5, 0.5, 2, 2, 2, 2, 2, 2}, 1.0, 1.0);
  EXPECT_NEAR(u.batch_norm_entropy, 1.0, 1e-12);
  EXPECT_NEAR(u.perplexity, 8.0, 1e-9);
  EXPECT_EQ(u.dead_codes, 2);
  EXPECT_EQ(u.active_codes_ema, 6);
}

TEST(Quantizer, ForwardReportsStatisticsOfTheBatch) {
  QuantizerConfig c;
  c.temperature = 0.0;
  auto vq = make_vq({0, 0, 1, 1, 5, 5, 9, 9}, 4, 2, c);
  const auto out = vq->forward(vectors({0.1f, 0.1f, 0.9f, 1, 1, 0.9f}, 3, 2));
  EXPECT_EQ(out.stats().used_codes, 2);
  EXPECT_NEAR(out.stats().batch_utilization, 0.5, 1e-12);
  EXPECT_EQ(out.stats().num_codes, 4);
}

TEST(Quantizer, DeadCodeRestartSetsCodeCountAndSumConsistently) {
  QuantizerConfig c;
  c.dead_code_threshold = 2.0;
  auto vq = make_vq({0, 0, 1, 1, 2, 2}, 3, 2, c);
  const Tensor z = from_vector<float>({7, 8}, {1, 2});  // the only candidate vector
  Generator gen(3);
  EXPECT_EQ(vq->restart_codes({0, 2}, z, gen), 2);
  // The first code takes the vector itself; the second, a repeat, gets 1% noise so the two split.
  const auto w = vq->table().weight.to_vector<float>();
  EXPECT_EQ(w[0], 7.0f);
  EXPECT_EQ(w[1], 8.0f);
  EXPECT_NE(w[4], 7.0f);
  EXPECT_NEAR(w[4], 7.0f, 0.5f);
  EXPECT_NEAR(w[5], 8.0f, 0.5f);
  EXPECT_TRUE(allclose(vq->table().cluster_size, from_vector<float>({2, 0, 2}, {3})));
  EXPECT_TRUE(allclose(vq->table().embed_avg,
                       mul(vq->table().weight, from_vector<float>({2, 1, 2}, {3, 1}))));
}

// With at least as many batch vectors as codes to restart, every code gets a different vector.
TEST(Quantizer, RestartsDrawDistinctRows) {
  QuantizerConfig c;
  auto vq = make_vq(std::vector<float>(16, 0.0f), 8, 2, c);
  std::vector<float> v;
  for (int i = 0; i < 8; ++i) v.insert(v.end(), {static_cast<float>(i), static_cast<float>(-i)});
  const Tensor h = from_vector(v, {8, 2});
  for (uint64_t seed = 0; seed < 20; ++seed) {
    Generator gen(seed);
    vq->restart_codes({0, 1, 2, 3, 4, 5, 6, 7}, h, gen);
    auto firsts = vq->table().weight.narrow(1, 0, 1).contiguous().to_vector<float>();
    std::sort(firsts.begin(), firsts.end());
    EXPECT_EQ(firsts, (std::vector<float>{0, 1, 2, 3, 4, 5, 6, 7})) << "seed " << seed;
  }
}

TEST(Quantizer, EpochEndResetsDeadAndLeastUsedCodes) {
  QuantizerConfig c;
  c.temperature = 0.0;
  c.entropy_weight = 0.0;
  c.ema_decay = 0.0;  // N = this batch's counts
  c.dead_code_threshold = 1.0;
  c.dead_code_reset = "epoch";
  c.low_usage_reset_interval = 0;
  auto vq = make_vq({0, 0, 1, 1, 50, 50, 60, 60}, 4, 2, c);
  vq->forward(vectors({0.1f, 0, 0, 0.1f, 1, 0.9f}, 3, 2));  // codes 0, 0, 1 used; 2 and 3 dead
  const auto m = vq->end_epoch(0);
  EXPECT_EQ(m.note, "restarted 2 dead codes");
  EXPECT_EQ(m.codes_touched, 2);
  const auto counts = vq->ema_counts();
  EXPECT_EQ(counts, (std::vector<double>{2, 1, 1, 1}));
  // Restarted codes now sit on batch vectors.
  const auto w = vq->table().weight.to_vector<float>();
  EXPECT_LT(std::abs(w[4]) + std::abs(w[6]), 3.0f);
  // The least-used share: 50% of 4 codes -> the two with the smallest counts (1 and 1, first ties).
  c.dead_code_reset = "off";
  c.low_usage_reset_interval = 1;
  c.low_usage_reset_fraction = 0.5;
  auto vq2 = make_vq({0, 0, 1, 1, 50, 50, 60, 60}, 4, 2, c);
  vq2->forward(vectors({0.1f, 0, 0, 0.1f, 1, 0.9f, 49, 50}, 4, 2));  // counts 2, 1, 1, 0
  const auto m2 = vq2->end_epoch(0);
  EXPECT_EQ(m2.note, "reset the 2 least-used codes");
  EXPECT_EQ(m2.codes_touched, 2);
  EXPECT_EQ(vq2->ema_counts(), (std::vector<double>{2, 1, 1, 1}));
  EXPECT_NE(vq2->table().weight.to_vector<float>()[6], 60.0f);  // code 3 (count 0) was reset
}

// The quantizer is a float32 island under mixed precision: a training step under bfloat16
// autocast gives bit for bit what it gives without (distances, sampling, losses, EMA update).
TEST(Quantizer, IsAFloat32IslandUnderAutocast) {
  QuantizerConfig c;
  c.n_embed = 16;
  c.codebook_dim = 4;  // projections in and out: linear layers, which autocast would round
  Generator init_a(5), init_b(5);  // equal projections
  VectorQuantizer plain(c, 8, 3, init_a);
  VectorQuantizer autocast(c, 8, 3, init_b);
  Generator gen(12);
  const Tensor z = randn({2, 8, 4, 4}, gen);
  const QuantizerOutput a = plain.forward(z);
  QuantizerOutput b;
  {
    AutocastScope scope(DType::BFloat16);
    b = autocast.forward(z);
  }
  EXPECT_TRUE(allclose(a.z_q, b.z_q, 0, 0));
  EXPECT_EQ(a.indices.to_vector<int64_t>(), b.indices.to_vector<int64_t>());
  EXPECT_EQ(a.loss.item(), b.loss.item());
  EXPECT_TRUE(allclose(plain.table().weight, autocast.table().weight, 0, 0));
}

TEST(Quantizer, KmeansFindsClustersAndCarriesCounts) {
  QuantizerConfig c;
  c.init = "kmeans";
  c.n_embed = 2;
  Generator init(11);
  VectorQuantizer vq(c, 2, 11, init);
  EXPECT_FALSE(vq.initialized());
  // 30 points around (0, 0) and 10 around (10, 10).
  Generator gen(4);
  const Tensor noise = mul(randn({40, 2}, gen), 0.1);
  std::vector<float> centres_v;
  for (int i = 0; i < 40; ++i)
    centres_v.insert(centres_v.end(), {i < 30 ? 0.0f : 10.0f, i < 30 ? 0.0f : 10.0f});
  const Tensor z = add(from_vector(centres_v, {40, 2}), noise);
  vq.kmeans_init(z);
  EXPECT_TRUE(vq.initialized());
  auto counts = vq.ema_counts();
  std::sort(counts.begin(), counts.end());
  EXPECT_EQ(counts, (std::vector<double>{10, 30}));
  // S_k = e_k N_k, so the EMA mean of each code is its centre.
  EXPECT_TRUE(allclose(vq.table().embed_avg,
                       mul(vq.table().weight, vq.table().cluster_size.unsqueeze(1)), 1e-4));
  const auto w = vq.table().weight.to_vector<float>();
  const bool first_is_small = w[0] < 5;
  EXPECT_NEAR(w[first_is_small ? 2 : 0], 10.0, 0.1);
  EXPECT_NEAR(w[first_is_small ? 0 : 2], 0.0, 0.1);
}

// An empty cluster counts as seen once at its centre, so the EMA update keeps it there.
TEST(Quantizer, KmeansEmptyClusterKeepsItsCentre) {
  QuantizerConfig c;
  c.init = "kmeans";
  c.n_embed = 3;
  c.ema_decay = 0.5;
  Generator init(11);
  VectorQuantizer vq(c, 2, 11, init);
  // Only two distinct points: of three starting centres two coincide, and argmin's ties leave
  // one of them with an empty cluster.
  std::vector<float> v;
  for (int i = 0; i < 20; ++i) v.insert(v.end(), {i < 10 ? 5.0f : 10.0f, i < 10 ? 5.0f : 10.0f});
  const Tensor h = from_vector(v, {20, 2});
  vq.kmeans_init(h);
  const auto counts = vq.ema_counts();
  EXPECT_EQ(std::accumulate(counts.begin(), counts.end(), 0.0), 21.0);
  const int64_t empty = std::find(counts.begin(), counts.end(), 1.0) - counts.begin();
  ASSERT_LT(empty, 3);
  const auto centre = vq.table().weight.to_vector<float>();
  vq.ema_update(h, argmin(vq.distances(h), 1), ones({}, DType::UInt8));
  const auto after = vq.table().weight.to_vector<float>();
  EXPECT_NEAR(after[2 * empty], centre[2 * empty], 1e-3);
  EXPECT_GE(after[2 * empty], 5.0f - 1e-3);
}

TEST(Quantizer, ExpansionDoublesFromTheMostUsedCodes) {
  QuantizerConfig c;
  c.expand = true;
  c.expand_max_codes = 8;
  c.expand_active_fraction = 0.9;
  c.active_threshold = 0.0;  // the seed's original criterion: every code counts as active
  c.dead_code_reset = "off";
  c.low_usage_reset_interval = 0;
  c.temperature = 0.0;
  c.ema_decay = 0.0;
  auto vq = make_vq({0, 0, 1, 1, 2, 2, 3, 3}, 4, 2, c);
  vq->forward(vectors({0, 0, 0, 0, 0.1f, 0, 1, 1}, 4, 2));  // counts 3, 1, 0, 0
  const auto m = vq->end_epoch(0);
  EXPECT_EQ(m.note, "expanded the codebook from 4 to 8 codes (4 of 4 active by EMA counts)");
  EXPECT_EQ(m.codes_touched, 4);
  EXPECT_EQ(vq->num_codes(), 8);
  EXPECT_EQ(vq->table().weight.shape(), (Shape{8, 2}));
  const auto n = vq->ema_counts();
  EXPECT_EQ(n,
            (std::vector<double>{1.5, 0.5, 0, 0, 1.5, 0.5, 0, 0}));  // parents 0, 1, 2, 3 by usage
  EXPECT_TRUE(allclose(vq->table().embed_avg,
                       mul(vq->table().weight, vq->table().cluster_size.unsqueeze(1)), 1e-5));
  EXPECT_EQ(vq->end_epoch(1).note, "");  // at the maximum
}

// Expansion is judged on the epoch's real counts: codes revived by that epoch's dead-code restarts
// (count 1 afterwards) must not make a half-dead codebook look active enough to double.
TEST(Quantizer, ExpansionIsDecidedBeforeTheResets) {
  QuantizerConfig c;
  c.expand = true;
  c.expand_max_codes = 8;
  c.expand_active_fraction = 0.9;
  c.active_threshold = 1.0;
  c.dead_code_reset = "epoch";
  c.dead_code_threshold = 1.0;
  c.low_usage_reset_interval = 0;
  c.temperature = 0.0;
  c.ema_decay = 0.0;
  auto vq = make_vq({0, 0, 1, 1, 2, 2, 3, 3}, 4, 2, c);
  vq->forward(vectors({0, 0, 0, 0, 0.1f, 0, 1, 1}, 4, 2));  // counts 3, 1, 0, 0
  EXPECT_EQ(vq->end_epoch(0).note, "restarted 2 dead codes");
  EXPECT_EQ(vq->num_codes(), 4);
  for (double n : vq->ema_counts()) EXPECT_GE(n, 1.0);  // all four now look active
}

TEST(Quantizer, EntropyLossValueAndGradient) {
  QuantizerConfig c;
  c.temperature = 0.0;
  c.entropy_weight = 1.0;
  c.entropy_temperature = 0.5;
  c.beta = 0.0;
  c.n_embed = 3;
  Generator init(1);
  VectorQuantizer vq(c, 2, 1, init);
  vq.to(DType::Float64);
  {
    NoGradGuard no_grad;
    vq.table().weight.copy_(from_vector<double>({0, 0, 1, 0, 0, 1}, {3, 2}));
  }
  const Tensor z = from_vector<double>({0.2, 0.1, 0.7, 0.4}, {2, 2});
  // log K - H(mean_i softmax(-d_i / T)), with the codes before forward's EMA update
  const Tensor p = mean(softmax(div(vq.distances(z), -0.5), 1), {0});
  const auto out = vq.forward(z.t().reshape({1, 2, 1, 2}));
  const auto pv = p.to_vector<double>();
  double h = 0;
  for (double v : pv) h -= v * std::log(v);
  EXPECT_NEAR(out.entropy_loss.item(), std::log(3.0) - h, 1e-12);
}

// Central differences of f at x (float64, any shape), one element at a time.
Tensor numeric_gradient(const std::function<double(const Tensor&)>& f, const Tensor& x0,
                        double eps = 1e-6) {
  std::vector<double> x = x0.to_vector<double>(), g(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    const double saved = x[i];
    x[i] = saved + eps;
    const double plus = f(from_vector(x, x0.shape()));
    x[i] = saved - eps;
    const double minus = f(from_vector(x, x0.shape()));
    x[i] = saved;
    g[i] = (plus - minus) / (2 * eps);
  }
  return from_vector(g, x0.shape());
}

TEST(Quantizer, LossGradientsMatchTheStopGradientDefinitions) {
  // Every loss term at once, learned codebook. Stop-gradients make the loss not a plain function
  // of (z, E), so each gradient is checked against central differences of the objective it
  // should be the derivative of, written here with plain ops:
  //   d/dz: beta mse(z, e_k) + w (log K - H(mean p)) + w_c mean H(p_i)        (e_k held fixed)
  //   d/dE: mse(z, e_k) + w (log K - H(mean p)) + w_c mean H(p_i) + w_d div(E) (z held fixed)
  QuantizerConfig c;
  c.codebook = "learned";
  c.temperature = 0.0;
  c.beta = 2.0;
  c.entropy_weight = 1.0;
  c.entropy_temperature = 0.5;
  c.confidence_weight = 0.3;
  c.diversity_weight = 0.7;
  c.dead_code_reset = "off";
  c.n_embed = 3;
  Generator init(1);
  VectorQuantizer vq(c, 2, 1, init);
  vq.to(DType::Float64);
  const Tensor E0 = from_vector<double>({0.1, 0, 1, 0.2, 0, 1}, {3, 2});
  {
    NoGradGuard no_grad;
    vq.table().weight.copy_(E0);
  }
  const Tensor z0 = from_vector<double>({0.2, 0.7, 0.1, 0.4, 0.9, 0.3}, {1, 2, 1, 3});
  Tensor z = z0.clone().requires_grad_();
  const auto out = vq.forward(z);
  out.loss.backward();
  const Tensor z_flat = z0.permute({0, 2, 3, 1}).reshape({3, 2});
  const Tensor idx = out.indices.reshape({3});

  auto soft_terms = [&](const Tensor& zf, const Tensor& E) {
    const Tensor d = add(sub(sum(mul(zf, zf), {1}, true), mul(matmul(zf, E.t()), 2.0)),
                         sum(mul(E, E), {1}).unsqueeze(0));
    const Tensor logits = div(d, -0.5);
    const Tensor p = softmax(logits, 1);
    const Tensor avg = mean(p, {0});
    const double entropy = std::log(3.0) + sum(mul(avg, log(avg))).item();
    const double confidence = mean(neg(sum(mul(p, log_softmax(logits, 1)), {1}))).item();
    return 1.0 * entropy + 0.3 * confidence;
  };
  auto diversity = [](const Tensor& E) {
    const Tensor unit = div(E, sqrt(sum(mul(E, E), {1}, true)));
    const Tensor gram = matmul(unit, unit.t());
    return (sum(mul(gram, gram)).item() - 3.0) / 6.0;
  };
  const Tensor codes0 = index_select(E0, 0, idx);
  const Tensor expected_dz = numeric_gradient(
      [&](const Tensor& zz) {
        const Tensor zf = zz.permute({0, 2, 3, 1}).reshape({3, 2});
        return 2.0 * mse_loss(zf, codes0).item() + soft_terms(zf, E0);
      },
      z0);
  const Tensor expected_dE = numeric_gradient(
      [&](const Tensor& E) {
        return mse_loss(z_flat, index_select(E, 0, idx)).item() + soft_terms(z_flat, E) +
               0.7 * diversity(E);
      },
      E0);
  EXPECT_TRUE(allclose(z.grad(), expected_dz, 1e-6, 1e-5));
  EXPECT_TRUE(allclose(vq.table().weight.grad(), expected_dE, 1e-6, 1e-5));
}

TEST(Quantizer, DiversityLossIsZeroForOrthogonalCodes) {
  QuantizerConfig c;
  c.codebook = "learned";
  c.diversity_weight = 1.0;
  c.temperature = 0.0;
  c.n_embed = 2;
  auto vq = make_vq({1, 0, 0, 3}, 2, 2, c);
  EXPECT_NEAR(vq->forward(vectors({1, 0}, 1, 2)).diversity_loss.item(), 0.0, 1e-12);
  auto parallel = make_vq({1, 1, 2, 2}, 2, 2, c);
  EXPECT_NEAR(parallel->forward(vectors({1, 0}, 1, 2)).diversity_loss.item(), 1.0, 1e-6);
}

TEST(Quantizer, ConfigErrorsNameTheField) {
  QuantizerConfig c;
  c.codebook = "fancy";
  EXPECT_VQ_ERROR(c.validate(), "codebook must be 'ema', 'learned' or 'simvq'");
  c = {};
  c.ema_decay = 1.0;
  EXPECT_VQ_ERROR(c.validate(), "ema_decay must be in [0, 1)");
  c = {};
  c.diversity_weight = 1.0;
  EXPECT_VQ_ERROR(c.validate(), "diversity loss applies to learned codebooks");
  c = {};
  c.dead_code_reset = "sometimes";
  EXPECT_VQ_ERROR(c.validate(), "dead_code_reset must be off, epoch or step");
  c = {};
  c.kmeans_iterations = -1;
  EXPECT_VQ_ERROR(c.validate(), "kmeans_iterations (-1) and low_usage_reset_interval (1)");
  c = {};
  c.expand_active_fraction = 0.0;
  EXPECT_VQ_ERROR(c.validate(), "expand_active_fraction must be in (0, 1], got 0");
}

}  // namespace
}  // namespace vq::models
