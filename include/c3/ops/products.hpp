// The one dispatch point for the products of a linear layer. Every forward product output = input * W^T + bias and
// every backward product of a model's matrices comes here with the matrix as it is stored (MatrixOperand): float
// [out, in], a step's float copy transposed to [in, out], bf16 (storage or a step's copy) with float or bf16
// compute, a step's bf16 copy transposed for backward's input gradient. The kernel is chosen from those and the row
// count, here and nowhere else, so a new kernel (AMX tiles, say) needs one branch in one place.
#pragma once
#include <cstdint>

#include "c3/ops/linear.hpp"
#include "c3/ops/linear_bf16.hpp"
#include "c3/ops/matmul_bf16.hpp"

namespace c3::ops {

// A matrix W [out, in] as the products read it; null where there is no such form.
template <typename T>
struct MatrixOperand {
    const T* weight = nullptr;                  // float [out, in]
    const T* transposed = nullptr;              // a step's float copy, [in, out]
    const uint16_t* bf16 = nullptr;             // bf16 [out, in]: bf16 storage, or a step's bf16 copy
    bool bf16_compute = false;                  // bf16: round the activations too and use bf16 dot products
    const uint16_t* bf16_transposed = nullptr;  // a step's bf16 copy, [in, out], for backward's input gradient
};

// The operand of backward's products: the float matrix and, with a step's bf16 copies, its bf16 copy transposed.
template <typename T>
MatrixOperand<T> backward_operand(const T* weight, const uint16_t* bf16_transposed) {
    MatrixOperand<T> operand;
    operand.weight = weight;
    operand.bf16_transposed = bf16_transposed;
    return operand;
}

// output [rows, out] = input [rows, in] * W^T + bias (bias may be null).
// bf16 with bf16 compute takes bf16 dot products for more than 4 rows; a decode step (1 to 4 rows) is memory-bound
// and widens the bf16 weights to float either way (small_rows.hpp).
template <typename T>
void product_forward(T* output, const T* input, const MatrixOperand<T>& matrix, const T* bias, size_t rows, size_t in,
                     size_t out) {
    if (matrix.bf16) {
        if (matrix.bf16_compute && rows > 4)
            linear_forward_bf16_compute(output, input, matrix.bf16, bias, rows, in, out);
        else
            linear_forward_bf16(output, input, matrix.bf16, bias, rows, in, out);
    } else if (matrix.transposed) {
        matmul_pretransposed(output, input, matrix.transposed, bias, rows, in, out);
    } else {
        linear_forward(output, input, matrix.weight, bias, rows, in, out);
    }
}

// linear_backward (dinput [rows, in], dweight [out, in], dbias [out] accumulated; any may be null), the input
// gradient dinput += doutput * W on bf16 dot products where the operand has a step's transposed bf16 copy.
template <typename T>
void product_backward(T* dinput, T* dweight, T* dbias, const T* doutput, const T* input, const MatrixOperand<T>& matrix,
                      size_t rows, size_t in, size_t out) {
    if (dinput && matrix.bf16_transposed) {
        linear_backward_input_bf16(dinput, doutput, matrix.bf16_transposed, rows, in, out);
        dinput = nullptr;
    }
    linear_backward(dinput, dweight, dbias, doutput, input, matrix.weight, rows, in, out);
}

}  // namespace c3::ops
