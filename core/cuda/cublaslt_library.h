// cuBLASLt, opened with dlopen on the CUDA backend's first GEMM rather than linked. Linking it
// maps and relocates its 540 MB at every program start: 151 MB of resident pages in every
// process of a CUDA build, CPU runs and `vmoe --help` included, before any GPU work.
#pragma once
#include <cublasLt.h>

#include <string>

namespace vmoe::cuda {

// The cuBLASLt entry points the backend calls, named as in cublasLt.h.
struct CublasLtLibrary {
  decltype(&::cublasLtCreate) cublasLtCreate;
  decltype(&::cublasLtGetStatusName) cublasLtGetStatusName;
  decltype(&::cublasLtGetStatusString) cublasLtGetStatusString;
  decltype(&::cublasLtMatmul) cublasLtMatmul;
  decltype(&::cublasLtMatmulAlgoGetHeuristic) cublasLtMatmulAlgoGetHeuristic;
  decltype(&::cublasLtMatmulDescCreate) cublasLtMatmulDescCreate;
  decltype(&::cublasLtMatmulDescSetAttribute) cublasLtMatmulDescSetAttribute;
  decltype(&::cublasLtMatmulPreferenceCreate) cublasLtMatmulPreferenceCreate;
  decltype(&::cublasLtMatmulPreferenceDestroy) cublasLtMatmulPreferenceDestroy;
  decltype(&::cublasLtMatmulPreferenceSetAttribute) cublasLtMatmulPreferenceSetAttribute;
  decltype(&::cublasLtMatrixLayoutCreate) cublasLtMatrixLayoutCreate;
  decltype(&::cublasLtMatrixLayoutSetAttribute) cublasLtMatrixLayoutSetAttribute;
};

// The library of the major version vmoe was built with ("libcublasLt.so.13"), opened on the first
// call (the loader's search path, then the toolkit's directory found at configure time) and kept
// open. Throws std::runtime_error "cannot load libcublasLt.so.13: <why>; ..." when it is missing
// or lacks an entry point.
const CublasLtLibrary& cublaslt();

// Whether cublaslt() has opened the library in this process (the tests' check that CPU work
// never does).
bool cublaslt_loaded();

// "libcublasLt.so.13": the file cublaslt() opens.
std::string cublaslt_soname();

}  // namespace vmoe::cuda
