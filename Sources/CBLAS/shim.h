// OpenBLAS's CBLAS interface (Debian: libopenblas-dev).
#include <cblas.h>

// LAPACK's Cholesky factorisation and inverse (OpenBLAS exports them; Debian's openblas-pthread).
void spotrf_(const char *uplo, const int *n, float *a, const int *lda, int *info);
void spotri_(const char *uplo, const int *n, float *a, const int *lda, int *info);
