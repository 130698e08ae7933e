// AdamW over flat parameter buffers, global-norm gradient clipping, and the learning-rate schedule (warmup, then
// cosine or warmup-stable-decay).
// A model hands the optimiser ParameterGroups: views of its flat parameter and gradient buffers with their
// layout. The moments are flat buffers of the same layout, so every update is one loop per tensor.
#pragma once
#include <cmath>
#include <map>
#include <string>
#include <vector>

#include "c3/core/parallel.hpp"
#include "c3/model/weights.hpp"
#include "c3/ops/vector_math.hpp"

namespace c3 {

struct AdamWConfig {
    double learning_rate = 1e-3;
    double beta1 = 0.9, beta2 = 0.999, epsilon = 1e-8;
    double weight_decay = 0.0;  // decoupled; applied to matrices and embeddings, never to norms or biases
};

// The trainable tensors of some parameter groups cut into blocks of at most kOptimizerBlock elements, so that
// one parallel loop covers every tensor (a loop per tensor paid a thread wake-up for each small norm or bias).
// The blocks depend only on the layout, never on the thread count, which keeps reductions over them reproducible.
constexpr size_t kOptimizerBlock = 8192;

struct TensorBlock {
    size_t group, offset, count;  // elements [offset, offset + count) of group's flat buffers
    bool decays;                  // the tensor takes weight decay (a matrix or embedding)
};

template <typename T>
std::vector<TensorBlock> trainable_blocks(const std::vector<ParameterGroup<T>>& groups) {
    std::vector<TensorBlock> blocks;
    for (size_t g = 0; g < groups.size(); ++g)
        for (size_t e = 0; e < groups[g].layout->size(); ++e) {
            if (!groups[g].is_trainable(e)) continue;
            const ParameterInfo& info = (*groups[g].layout)[e];
            for (size_t begin = 0; begin < info.size; begin += kOptimizerBlock)
                blocks.push_back({g, info.offset + begin, std::min(kOptimizerBlock, info.size - begin), info.decays()});
        }
    return blocks;
}

// Sum of squares of the gradients in `blocks`, in double: per-block partial sums (in parallel), added in block order.
template <typename T>
double gradient_sum_of_squares(const std::vector<ParameterGroup<T>>& groups, const std::vector<TensorBlock>& blocks) {
    std::vector<double> partial(blocks.size());
    parallel_for(blocks.size(), [&](size_t b) {
        const T* g = groups[blocks[b].group].gradients + blocks[b].offset;
        partial[b] = ops::lane_sum_of_squares(g, blocks[b].count);
    }, kOptimizerBlock * 2);
    double total = 0;
    for (double value : partial) total += value;
    return total;
}

// Scales all trainable gradients so that their global norm is at most max_norm (as torch's clip_grad_norm_).
// Returns the norm before clipping; a non-finite norm leaves the gradients as they were.
template <typename T>
double clip_gradient_norm(std::vector<ParameterGroup<T>>& groups, double max_norm) {
    const std::vector<TensorBlock> blocks = trainable_blocks(groups);
    const double norm = std::sqrt(gradient_sum_of_squares(groups, blocks));
    if (max_norm > 0 && norm > max_norm) {
        const T scale = T(max_norm / (norm + 1e-6));
        parallel_for(blocks.size(), [&](size_t b) {
            T* g = groups[blocks[b].group].gradients + blocks[b].offset;
            for (size_t i = 0; i < blocks[b].count; ++i) g[i] *= scale;
        }, kOptimizerBlock);
    }
    return norm;
}

// Checks optimiser state read from outside (a checkpoint, NumPy arrays) before it is used: a non-finite first
// moment or a negative or non-finite second moment would turn every parameter it touches into NaN at the next
// step. `what` names the source in the error.
template <typename T>
void check_moments(const T* first, const T* second, size_t count, const std::string& what) {
    for (size_t i = 0; i < count; ++i) {
        C3_CHECK(std::isfinite(first[i]), ValueError, what, ": first moment ", first[i], " at index ", i,
                 " is not finite");
        C3_CHECK(std::isfinite(second[i]) && second[i] >= 0, ValueError, what, ": second moment ", second[i],
                 " at index ", i, " is not a finite non-negative number");
    }
}

// AdamW's state by name, as training checkpoints and both Python trainers hold it: the step count and, for every
// parameter group, "<group>.first_moment" and "<group>.second_moment", flat in the group's layout.
template <typename T>
struct AdamWState {
    size_t step = 0;
    std::map<std::string, std::vector<T>> moments;
};

template <typename T>
struct AdamW {
    AdamWConfig config;
    size_t step = 0;
    std::vector<std::vector<T>> first_moment, second_moment;  // per group, same layout as its parameters

    // The state for `groups`; before the first step the moments are zeros, which is where update() starts.
    AdamWState<T> state(const std::vector<ParameterGroup<T>>& groups) const {
        AdamWState<T> result;
        result.step = step;
        const bool started = first_moment.size() == groups.size();
        for (size_t g = 0; g < groups.size(); ++g) {
            result.moments[groups[g].name + ".first_moment"] =
                started ? first_moment[g] : std::vector<T>(groups[g].size(), T(0));
            result.moments[groups[g].name + ".second_moment"] =
                started ? second_moment[g] : std::vector<T>(groups[g].size(), T(0));
        }
        return result;
    }

    // Takes the step and moments of `state` for `groups`. Everything is checked first (both moments of every
    // group present and of its size, finite, second moments >= 0), so a bad state changes nothing. `what`
    // names the source in errors.
    void load_state(const std::vector<ParameterGroup<T>>& groups, AdamWState<T> state, const std::string& what) {
        std::vector<std::vector<T>> first, second;
        for (const ParameterGroup<T>& group : groups) {
            for (const char* kind : {".first_moment", ".second_moment"}) {
                const auto found = state.moments.find(group.name + kind);
                C3_CHECK(found != state.moments.end(), ValueError, what, ": no '", group.name, kind, "'");
                C3_CHECK(found->second.size() == group.size(), ShapeError, what, ": '", group.name, kind, "' holds ",
                         found->second.size(), " values, the parameter group ", group.size());
                (kind[1] == 'f' ? first : second).push_back(std::move(found->second));
            }
            check_moments(first.back().data(), second.back().data(), group.size(),
                          what + " (group '" + group.name + "')");
        }
        first_moment = std::move(first);
        second_moment = std::move(second);
        step = state.step;
    }

    // One update at the given learning rate, times scales[g] for group g (empty: 1 for every group). Frozen
    // tensors are skipped entirely: no decay, no moments.
    void update(std::vector<ParameterGroup<T>>& groups, double learning_rate, const std::vector<double>& scales = {}) {
        if (first_moment.size() != groups.size()) {
            first_moment.clear();
            second_moment.clear();
            for (const auto& group : groups) {
                first_moment.emplace_back(group.size(), T(0));
                second_moment.emplace_back(group.size(), T(0));
            }
        }
        ++step;
        // The arithmetic follows torch.optim.AdamW (single-tensor path) so that float results agree closely.
        const T beta1 = T(config.beta1), beta2 = T(config.beta2), epsilon = T(config.epsilon);
        const T correction2_sqrt = T(std::sqrt(1 - std::pow(config.beta2, double(step))));
        // Per group, as torch.optim.AdamW computes them for a parameter group with its own lr.
        std::vector<T> step_sizes, decays;
        for (size_t g = 0; g < groups.size(); ++g) {
            const double rate = learning_rate * (scales.empty() ? 1.0 : scales[g]);
            step_sizes.push_back(T(rate / (1 - std::pow(config.beta1, double(step)))));
            decays.push_back(T(1 - rate * config.weight_decay));
        }
        const std::vector<TensorBlock> blocks = trainable_blocks(groups);
        parallel_for(blocks.size(), [&](size_t b) {
            const TensorBlock& block = blocks[b];
            const T step_size = step_sizes[block.group], decay = decays[block.group];
            T* p = groups[block.group].parameters + block.offset;
            const T* grad = groups[block.group].gradients + block.offset;
            T* m = first_moment[block.group].data() + block.offset;
            T* v = second_moment[block.group].data() + block.offset;
            const bool decays = block.decays && decay != T(1);
            // kLanes elements at a time as Eigen fixed-size arrays: a loop over std::sqrt stays scalar (the errno
            // check of a negative argument), and Eigen's loops over a dynamic Map start with the elements before
            // the first aligned one, so the same tensor at another address (a resumed run) would round differently.
            using Lanes = ops::LaneArray<T>;
            auto update = [&](T* p_at, const T* grad_at, T* m_at, T* v_at) {
                Eigen::Map<Lanes> p_lanes(p_at), m_lanes(m_at), v_lanes(v_at);
                const Eigen::Map<const Lanes> g_lanes(grad_at);
                if (decays) p_lanes *= decay;
                m_lanes += (g_lanes - m_lanes) * (T(1) - beta1);
                v_lanes = v_lanes * beta2 + g_lanes.square() * (T(1) - beta2);
                p_lanes -= step_size * (m_lanes / (v_lanes.sqrt() / correction2_sqrt + epsilon));
            };
            const size_t whole = block.count / ops::kLanes * ops::kLanes, rest = block.count - whole;
            for (size_t i = 0; i < whole; i += ops::kLanes) update(p + i, grad + i, m + i, v + i);
            if (rest) {  // the tail through padded copies, with the same arithmetic
                Lanes p_tail = ops::load_lanes(p + whole, rest, T(0)), g_tail = ops::load_lanes(grad + whole, rest, T(0)),
                      m_tail = ops::load_lanes(m + whole, rest, T(0)), v_tail = ops::load_lanes(v + whole, rest, T(0));
                update(p_tail.data(), g_tail.data(), m_tail.data(), v_tail.data());
                std::copy(p_tail.data(), p_tail.data() + rest, p + whole);
                std::copy(m_tail.data(), m_tail.data() + rest, m + whole);
                std::copy(v_tail.data(), v_tail.data() + rest, v + whole);
            }
        }, kOptimizerBlock * 12);
    }
};

// Linear warmup from 0 to the peak over warmup_steps, then down to min_ratio * peak at total_steps, in one of two
// shapes:
// - decay_fraction = 0 (the default): a half cosine over every step after warmup (transformers'
//   get_cosine_schedule_with_warmup when min_ratio = 0);
// - decay_fraction in (0, 1]: warmup-stable-decay (WSD), the peak held and then cut linearly over the last
//   decay_fraction of the steps after warmup. A short run then spends more of its steps at the peak rate, where a
//   cosine has already lowered it.
struct LearningRateSchedule {
    double peak = 1e-3;
    size_t warmup_steps = 0, total_steps = 1;
    double min_ratio = 0.0;
    double decay_fraction = 0.0;

    double at(size_t step) const {
        if (warmup_steps > 0 && step < warmup_steps) return peak * double(step) / double(warmup_steps);
        if (total_steps <= warmup_steps) return peak;
        const double progress = std::min(1.0, double(step - warmup_steps) / double(total_steps - warmup_steps));
        if (decay_fraction > 0) {
            const double decayed = std::max(0.0, progress - (1 - decay_fraction)) / decay_fraction;  // 0 .. 1
            return peak * (1 - (1 - min_ratio) * std::min(1.0, decayed));
        }
        return peak * (min_ratio + (1 - min_ratio) * 0.5 * (1 + std::cos(3.141592653589793 * progress)));
    }
};

}  // namespace c3
