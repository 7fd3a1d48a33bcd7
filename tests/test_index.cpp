// Joining and indexing ops: hand-checked values, gradchecks, and index validation.
#include "test_util.h"

namespace vq {
namespace {

using test::allclose;
using test::grads_ok;
using test::randn64;

TEST(Join, ConcatAndStack) {
  const Tensor a = from_vector<float>({1, 2, 3, 4}, {2, 2}), b = from_vector<float>({5, 6}, {2, 1});
  EXPECT_EQ(concat({a, b}, 1).to_vector<float>(), (std::vector<float>{1, 2, 5, 3, 4, 6}));
  EXPECT_EQ(concat({a, a.t()}, 0).shape(), (Shape{4, 2}));
  EXPECT_EQ(stack({a, a}, 1).shape(), (Shape{2, 2, 2}));
  EXPECT_EQ(stack({a, a}, 1).to_vector<float>(), (std::vector<float>{1, 2, 1, 2, 3, 4, 3, 4}));
  EXPECT_VQ_ERROR(concat({a, b}, 0), "concat: shape [2, 1] does not match [2, 2] outside dim 0");
  EXPECT_TRUE(grads_ok(
      [](const std::vector<Tensor>& in) {
        return concat({in[0], in[1].t(), in[0]}, 1);
      },
      {randn64({3, 2}), randn64({1, 3})}));
  EXPECT_TRUE(grads_ok(
      [](const std::vector<Tensor>& in) {
        return stack({in[0], in[1]}, 0);
      },
      {randn64({3, 2}), randn64({3, 2}, 2)}));
}

TEST(Index, IndexSelectAndEmbedding) {
  const Tensor w = from_vector<float>({0, 1, 10, 11, 20, 21}, {3, 2});
  const Tensor idx = from_vector<int64_t>({2, 0, 2}, {3});
  EXPECT_EQ(index_select(w, 0, idx).to_vector<float>(), (std::vector<float>{20, 21, 0, 1, 20, 21}));
  EXPECT_EQ(index_select(w, 1, from_vector<int64_t>({1}, {1})).to_vector<float>(),
            (std::vector<float>{1, 11, 21}));
  const Tensor e = embedding(w, from_vector<int64_t>({1, 2, 0, 1}, {2, 2}));
  EXPECT_EQ(e.shape(), (Shape{2, 2, 2}));
  EXPECT_EQ(e.to_vector<float>(), (std::vector<float>{10, 11, 20, 21, 0, 1, 10, 11}));
  // Repeated indices accumulate in the gradient.
  EXPECT_TRUE(grads_ok([&](const std::vector<Tensor>& in) { return index_select(in[0], 0, idx); },
                       {randn64({3, 4})}));
  EXPECT_TRUE(grads_ok([&](const std::vector<Tensor>& in) { return index_select(in[0], 1, idx); },
                       {randn64({2, 4, 2})}));
  EXPECT_VQ_ERROR(index_select(w, 0, from_vector<int64_t>({3}, {1})),
                  "index 3 at position 0 is out of range [0, 3)");
  EXPECT_VQ_ERROR(index_select(w, 0, zeros({1})), "indices must be int64, got float32");
}

TEST(Index, GatherAndScatterAdd) {
  const Tensor x = from_vector<float>({1, 2, 3, 4, 5, 6}, {2, 3});
  const Tensor idx = from_vector<int64_t>({2, 2, 0, 1}, {2, 2});
  EXPECT_EQ(gather(x, 1, idx).to_vector<float>(), (std::vector<float>{3, 3, 4, 5}));
  const Tensor s = scatter_add(zeros({2, 3}), 1, idx, ones({2, 2}));
  EXPECT_EQ(s.to_vector<float>(), (std::vector<float>{0, 0, 2, 1, 1, 0}));
  const Tensor idx0 = from_vector<int64_t>({1, 0, 1}, {1, 3});
  EXPECT_EQ(gather(x, 0, idx0).to_vector<float>(), (std::vector<float>{4, 2, 6}));
  EXPECT_TRUE(grads_ok([&](const std::vector<Tensor>& in) { return gather(in[0], 1, idx); },
                       {randn64({2, 3})}));
  EXPECT_TRUE(
      grads_ok([&](const std::vector<Tensor>& in) { return scatter_add(in[0], 1, idx, in[1]); },
               {randn64({2, 3}), randn64({2, 2}, 2)}));
  EXPECT_VQ_ERROR(gather(x, 1, from_vector<int64_t>({0}, {1})),
                  "index shape [1] must match input shape [2, 3]");
}

TEST(Index, IndexAddAccumulatesDuplicates) {
  const Tensor base = zeros({3, 2});
  const Tensor out = index_add(base, 0, from_vector<int64_t>({0, 2, 0}, {3}),
                               from_vector<float>({1, 2, 3, 4, 5, 6}, {3, 2}));
  EXPECT_EQ(out.to_vector<float>(), (std::vector<float>{6, 8, 0, 0, 3, 4}));
  EXPECT_EQ(base.to_vector<float>(), std::vector<float>(6, 0.0f));  // not modified
  EXPECT_TRUE(grads_ok(
      [](const std::vector<Tensor>& in) {
        return index_add(in[0], 1, from_vector<int64_t>({1, 1}, {2}), in[1]);
      },
      {randn64({2, 3}), randn64({2, 2}, 3)}));
}

TEST(Index, OneHotAndBincount) {
  const Tensor idx = from_vector<int64_t>({2, 0, 2, 3}, {2, 2});
  const Tensor oh = one_hot(idx, 4);
  EXPECT_EQ(oh.shape(), (Shape{2, 2, 4}));
  EXPECT_EQ(oh.to_vector<float>(),
            (std::vector<float>{0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1}));
  EXPECT_EQ(bincount(idx, 5).to_vector<int64_t>(), (std::vector<int64_t>{1, 0, 2, 1, 0}));
  EXPECT_VQ_ERROR(bincount(idx, 3), "index 3 at position 3 is out of range [0, 3)");
}

}  // namespace
}  // namespace vq
