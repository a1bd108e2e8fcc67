// linalg.hpp: the host's dense F32 linear algebra (OpenBLAS + its LAPACK),
// row-major, behind the xq_host_api compute services. Each function checks
// its shapes and throws Error with a message on bad input or a failed
// factorisation (leaving the input unchanged).
#pragma once

#include <cstdint>

namespace xquant::linalg {

void sgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
           const float* b, int64_t ldb, float beta, float* c, int64_t ldc);
// C[n,n] = alpha A^T A + beta C, A[k,n]; both triangles written.
void ssyrk(int64_t n, int64_t k, float alpha, const float* a, int64_t lda, float beta, float* c, int64_t ldc);
// Cholesky in place (upper: A = U^T U); throws when not positive definite.
void spotrf(bool upper, int64_t n, float* a, int64_t lda);
// Inverse from the Cholesky factor, full symmetric result.
void spotri(bool upper, int64_t n, float* a, int64_t lda);
void strsm(bool left, bool upper, bool trans, int64_t m, int64_t n, const float* t, int64_t ldt, float* b,
           int64_t ldb);

}  // namespace xquant::linalg
