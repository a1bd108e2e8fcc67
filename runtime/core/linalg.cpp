#include "core/linalg.hpp"

#include "core/error.hpp"

#include <cblas.h>

#include <algorithm>
#include <climits>
#include <vector>

// LAPACK (column-major, Fortran calling convention), from OpenBLAS.
extern "C" {
void spotrf_(const char* uplo, const int* n, float* a, const int* lda, int* info);
void spotri_(const char* uplo, const int* n, float* a, const int* lda, int* info);
}

namespace xquant::linalg {

namespace {

int as_int(int64_t v, const char* what) {
  if (v < 0 || v > INT_MAX) fail(XQ_ERR_INVALID_ARGUMENT, "{} = {} is out of range for BLAS", what, v);
  return static_cast<int>(v);
}

void check_ld(int64_t ld, int64_t cols, const char* what) {
  if (ld < cols || ld < 1) fail(XQ_ERR_INVALID_ARGUMENT, "{} = {} is smaller than the row length {}", what, ld, cols);
}

// Row-major upper (A = U^T U) is column-major lower of the same array.
char lapack_uplo(bool upper) { return upper ? 'L' : 'U'; }

void mirror(bool from_upper, int64_t n, float* a, int64_t lda) {
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = i + 1; j < n; ++j) {
      if (from_upper) a[j * lda + i] = a[i * lda + j];
      else a[i * lda + j] = a[j * lda + i];
    }
}

}  // namespace

void sgemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda, const float* b,
           int64_t ldb, float beta, float* c, int64_t ldc) {
  check_ld(lda, ta ? m : k, "lda");
  check_ld(ldb, tb ? k : n, "ldb");
  check_ld(ldc, n, "ldc");
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, as_int(m, "m"),
              as_int(n, "n"), as_int(k, "k"), alpha, a, as_int(lda, "lda"), b, as_int(ldb, "ldb"), beta, c,
              as_int(ldc, "ldc"));
}

void ssyrk(int64_t n, int64_t k, float alpha, const float* a, int64_t lda, float beta, float* c, int64_t ldc) {
  check_ld(lda, n, "lda");
  check_ld(ldc, n, "ldc");
  cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, as_int(n, "n"), as_int(k, "k"), alpha, a, as_int(lda, "lda"),
              beta, c, as_int(ldc, "ldc"));
  mirror(true, n, c, ldc);
}

// Whether a[i][j] == a[j][i] everywhere, compared in 64 x 64 tiles: a
// column walk of the whole matrix missed the cache on every element (one
// GPTQ Hessian of 2048 columns: about 14 ms a call, some 2 s of a 69 s
// MoE layer quantization, docs/algorithms.md "GPTQ's cost").
static bool is_symmetric(int64_t n, const float* a, int64_t lda) {
  constexpr int64_t kTile = 64;
  for (int64_t i0 = 0; i0 < n; i0 += kTile)
    for (int64_t j0 = i0; j0 < n; j0 += kTile) {
      const int64_t i1 = std::min(i0 + kTile, n), j1 = std::min(j0 + kTile, n);
      for (int64_t i = i0; i < i1; ++i)
        for (int64_t j = std::max(j0, i + 1); j < j1; ++j)
          if (a[i * lda + j] != a[j * lda + i]) return false;
    }
  return true;
}

void spotrf(bool upper, int64_t n, float* a, int64_t lda) {
  check_ld(lda, n, "lda");
  int in = as_int(n, "n"), ild = as_int(lda, "lda"), info = 0;
  char uplo = lapack_uplo(upper);
  // "A unchanged on failure" without a second n x n copy (GPTQ's Hessians
  // are the largest matrices the host handles): LAPACK only writes the
  // requested triangle, so for a symmetric A (the contract) the other
  // triangle still holds the original and only the diagonal needs a backup.
  // A non-symmetric A gets the full copy.
  const bool symmetric = is_symmetric(n, a, lda);
  std::vector<float> backup;
  if (symmetric) {
    backup.resize(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) backup[i] = a[i * lda + i];
  } else {
    backup.assign(a, a + (n ? (n - 1) * lda + n : 0));
  }
  spotrf_(&uplo, &in, a, &ild, &info);
  if (info != 0) {
    if (symmetric) {
      for (int64_t i = 0; i < n; ++i) a[i * lda + i] = backup[i];
      mirror(!upper, n, a, lda);  // the untouched triangle restores the written one
    } else {
      std::copy(backup.begin(), backup.end(), a);
    }
    if (info > 0)
      fail(XQ_ERR_INVALID_ARGUMENT, "Cholesky failed: the leading minor of order {} of the {}x{} matrix is not positive definite",
           info, n, n);
    fail(XQ_ERR_INVALID_ARGUMENT, "Cholesky: argument {} is invalid", -info);
  }
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < n; ++j)
      if ((upper && j < i) || (!upper && j > i)) a[i * lda + j] = 0.0f;
}

void spotri(bool upper, int64_t n, float* a, int64_t lda) {
  check_ld(lda, n, "lda");
  int in = as_int(n, "n"), ild = as_int(lda, "lda"), info = 0;
  char uplo = lapack_uplo(upper);
  spotri_(&uplo, &in, a, &ild, &info);
  if (info > 0) fail(XQ_ERR_INVALID_ARGUMENT, "Cholesky inverse failed: the factor has a zero diagonal at {}", info);
  if (info < 0) fail(XQ_ERR_INVALID_ARGUMENT, "Cholesky inverse: argument {} is invalid", -info);
  mirror(upper, n, a, lda);
}

void strsm(bool left, bool upper, bool trans, int64_t m, int64_t n, const float* t, int64_t ldt, float* b,
           int64_t ldb) {
  check_ld(ldt, left ? m : n, "ldt");
  check_ld(ldb, n, "ldb");
  cblas_strsm(CblasRowMajor, left ? CblasLeft : CblasRight, upper ? CblasUpper : CblasLower,
              trans ? CblasTrans : CblasNoTrans, CblasNonUnit, as_int(m, "m"), as_int(n, "n"), 1.0f, t,
              as_int(ldt, "ldt"), b, as_int(ldb, "ldb"));
}

}  // namespace xquant::linalg
