// AdamW over flat parameter buffers, global-norm gradient clipping, and the warmup + cosine schedule.
// A model hands the optimiser ParameterGroups: views of its flat parameter and gradient buffers with their
// layout. The moments are flat buffers of the same layout, so every update is one loop per tensor.
#pragma once
#include <cmath>
#include <string>
#include <vector>

#include "c3/core/parallel.hpp"
#include "c3/model/weights.hpp"

namespace c3 {

struct AdamWConfig {
    double learning_rate = 1e-3;
    double beta1 = 0.9, beta2 = 0.999, epsilon = 1e-8;
    double weight_decay = 0.0;  // decoupled; applied to matrices and embeddings, never to norms or biases
};

// Sum of squares of the trainable gradients, in double.
template <typename T>
double gradient_sum_of_squares(const ParameterGroup<T>& group) {
    double total = 0;
    for (size_t e = 0; e < group.layout->size(); ++e) {
        if (!group.is_trainable(e)) continue;
        const ParameterInfo& info = (*group.layout)[e];
        const T* g = group.gradients + info.offset;
        for (size_t i = 0; i < info.size; ++i) total += double(g[i]) * double(g[i]);
    }
    return total;
}

// Scales all trainable gradients so that their global norm is at most max_norm (as torch's clip_grad_norm_).
// Returns the norm before clipping.
template <typename T>
double clip_gradient_norm(std::vector<ParameterGroup<T>>& groups, double max_norm) {
    double total = 0;
    for (const auto& group : groups) total += gradient_sum_of_squares(group);
    const double norm = std::sqrt(total);
    if (max_norm > 0 && norm > max_norm) {
        const T scale = T(max_norm / (norm + 1e-6));
        for (auto& group : groups)
            for (size_t e = 0; e < group.layout->size(); ++e) {
                if (!group.is_trainable(e)) continue;
                const ParameterInfo& info = (*group.layout)[e];
                T* g = group.gradients + info.offset;
                for (size_t i = 0; i < info.size; ++i) g[i] *= scale;
            }
    }
    return norm;
}

template <typename T>
struct AdamW {
    AdamWConfig config;
    size_t step = 0;
    std::vector<std::vector<T>> first_moment, second_moment;  // per group, same layout as its parameters

    // One update at the given learning rate. Frozen tensors are skipped entirely: no decay, no moments.
    void update(std::vector<ParameterGroup<T>>& groups, double learning_rate) {
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
        const T step_size = T(learning_rate / (1 - std::pow(config.beta1, double(step))));
        const T correction2_sqrt = T(std::sqrt(1 - std::pow(config.beta2, double(step))));
        const T decay = T(1 - learning_rate * config.weight_decay);
        for (size_t g = 0; g < groups.size(); ++g) {
            ParameterGroup<T>& group = groups[g];
            for (size_t e = 0; e < group.layout->size(); ++e) {
                if (!group.is_trainable(e)) continue;
                const ParameterInfo& info = (*group.layout)[e];
                T* p = group.parameters + info.offset;
                const T* grad = group.gradients + info.offset;
                T* m = first_moment[g].data() + info.offset;
                T* v = second_moment[g].data() + info.offset;
                const bool decays = info.decays() && config.weight_decay != 0;
                const size_t blocks = (info.size + 4095) / 4096;
                parallel_for(blocks, [&](size_t block) {
                    const size_t end = std::min(info.size, (block + 1) * 4096);
                    for (size_t i = block * 4096; i < end; ++i) {
                        if (decays) p[i] *= decay;
                        m[i] += (grad[i] - m[i]) * (T(1) - beta1);
                        v[i] = v[i] * beta2 + grad[i] * grad[i] * (T(1) - beta2);
                        const T denominator = std::sqrt(v[i]) / correction2_sqrt + epsilon;
                        p[i] -= step_size * (m[i] / denominator);
                    }
                }, 4096 * 12);
            }
        }
    }
};

// Linear warmup from 0 to the peak over warmup_steps, then a cosine from the peak down to
// peak * min_ratio at total_steps (transformers' get_cosine_schedule_with_warmup when min_ratio = 0).
struct CosineSchedule {
    double peak = 1e-3;
    size_t warmup_steps = 0, total_steps = 1;
    double min_ratio = 0.0;

    double at(size_t step) const {
        if (warmup_steps > 0 && step < warmup_steps) return peak * double(step) / double(warmup_steps);
        if (total_steps <= warmup_steps) return peak;
        const double progress = std::min(1.0, double(step - warmup_steps) / double(total_steps - warmup_steps));
        return peak * (min_ratio + (1 - min_ratio) * 0.5 * (1 + std::cos(3.141592653589793 * progress)));
    }
};

}  // namespace c3
